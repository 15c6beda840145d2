"""Released generators, served from 127.0.0.1 as state_dicts the test saves."""
import io
import zipfile

import pytest
import torch

from art2real import pretrained
from art2real.nn.networks import ResnetGenerator

from .test_download import Files, server  # noqa: F401  (the local HTTP server fixture)


def _bytes(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def test_release_zip_and_plain_pth_load_strictly(server, monkeypatch):  # noqa: F811
    torch.manual_seed(0)
    authors = ResnetGenerator(ngf=8, n_blocks=3)
    old = dict(authors.state_dict(), **{"model.2.running_mean": torch.zeros(8)})  # pre-0.4 key layout
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("monet2photo/latest_net_G_B.pth", _bytes(ResnetGenerator(ngf=8, n_blocks=3).state_dict()))
        z.writestr("monet2photo/latest_net_G_A.pth", _bytes(old))
    Files.files["/ckpt/monet2photo.zip"] = archive.getvalue()
    cyclegan = ResnetGenerator(ngf=8, n_blocks=2)
    Files.files["/cyclegan/monet2photo.pth"] = _bytes(cyclegan.state_dict())
    monkeypatch.setitem(pretrained.RELEASES, "art2real_monet", pretrained.Release(
        "art2real_monet", f"{server}/ckpt/monet2photo.zip", "art2real", "monet2photo"))
    monkeypatch.setitem(pretrained.RELEASES, "cyclegan_monet", pretrained.Release(
        "cyclegan_monet", f"{server}/cyclegan/monet2photo.pth", "cyclegan", "monet2photo"))

    x = torch.rand(1, 3, 32, 32) * 2 - 1
    G = pretrained.load_release("art2real_monet", progressbar=False)
    assert torch.allclose(G(x), authors(x))  # G_A (painting -> photo), not G_B
    assert torch.allclose(pretrained.load_release("cyclegan_monet", progressbar=False)(x), cyclegan(x))
    assert [r.name for r in pretrained.releases_for("monet2photo")] == ["art2real_monet", "cyclegan_monet"]


def test_unknown_release():
    with pytest.raises(KeyError, match="unknown release"):
        pretrained.fetch_release("picasso")
