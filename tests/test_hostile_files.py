"""Hostile files from outside: checkpoints that run code, broken and oversized downloads, clashing cache names.

Downloads are served by a local HTTP server on 127.0.0.1 (``tests/test_download.py``)."""
import json
import os

import pytest
import torch

from art2real import pretrained
from art2real.data import download as dl
from art2real.data import registry
from art2real.data.download import UnsafeArchive, extract, fetch
from art2real.nn.networks import ResnetGenerator
from art2real.translate import load_translator

from .hostile import cli, hostile_pickle, modes, one_error_line, random_png, smoke_train, zeros_zip, zip_of
from .test_download import Files, dataset_zip, server  # noqa: F401  (the local HTTP server fixture)


def _state_bytes(state, legacy: bool = False) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.fixture
def painting(tmp_path):
    folder = tmp_path / "paintings"
    folder.mkdir()
    random_png(folder / "p.png", (40, 36))
    return folder


# ------------------------------------------------------------------------------------------------ D1
def test_d1_the_payload_really_runs_a_command_when_unpickled(tmp_path):
    """The hostile file of the D1 tests is what it claims: an unsafe load runs its command."""
    marker = tmp_path / "ran"
    torch.load(hostile_pickle(tmp_path / "evil.pth", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("torch_format", [True, False], ids=["torch.save", "bare-pickle"])
def test_d1_translate_refuses_a_checkpoint_that_needs_code(tmp_path, painting, capsys, torch_format):
    marker = tmp_path / "owned"
    evil = hostile_pickle(tmp_path / "evil.pth", marker, torch_format)
    code, _, err = cli(capsys, "translate", "--checkpoint", evil, "--input", painting, "--output", tmp_path / "out")
    assert code == 2 and "needs pickled code" in err and one_error_line(err)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_d1_resume_refuses_a_last_pt_that_needs_code(tiny_dataset, tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "owned"
    assert smoke_train(capsys, tiny_dataset, run)[0] == 0
    assert not (run / "checkpoints" / "previous.pt").exists()  # only last.pt: nothing to fall back to
    hostile_pickle(run / "checkpoints" / "last.pt", marker)
    code, _, err = smoke_train(capsys, tiny_dataset, run, iterations=2)
    assert code == 2 and "last.pt" in err and "needs pickled code" in err and "--no-resume" in err
    assert not marker.exists()


def test_d1_releases_that_need_code_are_refused(server, tmp_path, painting, capsys, monkeypatch):  # noqa: F811
    marker = tmp_path / "owned"
    evil = hostile_pickle(tmp_path / "evil.pth", marker).read_bytes()
    Files.files["/cyclegan/monet2photo.pth"] = evil
    Files.files["/ckpt/monet2photo.zip"] = zip_of({"monet2photo/latest_net_G_A.pth": evil})
    monkeypatch.setitem(pretrained.RELEASES, "cyclegan_monet", pretrained.Release(
        "cyclegan_monet", f"{server}/cyclegan/monet2photo.pth", "cyclegan", "monet2photo"))
    monkeypatch.setitem(pretrained.RELEASES, "art2real_monet", pretrained.Release(
        "art2real_monet", f"{server}/ckpt/monet2photo.zip", "art2real", "monet2photo"))
    for release in ("cyclegan_monet", "art2real_monet"):
        code, _, err = cli(capsys, "translate", "--release", release, "--input", painting, "--output",
                           tmp_path / "out")
        assert code == 2 and "needs pickled code" in err, (release, err)
    assert not marker.exists() and not (tmp_path / "out").exists()
    book = dl.cache_dir() / "downloads" / "sha256.json"  # the refused .pth was not taken as verified
    assert not book.exists() or f"{server}/cyclegan/monet2photo.pth" not in json.loads(book.read_text())


def test_d1_the_chain_marks_a_release_that_needs_code_not_available(server, tmp_path, monkeypatch):  # noqa: F811
    from art2real import chain

    marker = tmp_path / "owned"
    Files.files["/ckpt/monet2photo.zip"] = zip_of({"monet2photo/latest_net_G_A.pth": hostile_pickle(
        tmp_path / "evil.pth", marker).read_bytes()})
    monkeypatch.setitem(pretrained.RELEASES, "art2real_monet", pretrained.Release(
        "art2real_monet", f"{server}/ckpt/monet2photo.zip", "art2real", "monet2photo"))
    monkeypatch.setenv("ART2REAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    for split in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / "home" / "data" / "monet2photo" / split).mkdir(parents=True)
        random_png(tmp_path / "home" / "data" / "monet2photo" / split / "0.png")
    table = chain.translate_stage(chain.stage_config("monet", "smoke", method="cyclegan", device="cpu"))
    row = table.set_index("method").loc["art2real_monet"]
    assert str(row["translated"]).startswith("not available") and "needs pickled code" in row["translated"]
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "legacy-format"])
def test_d1_official_cyclegan_layout_state_dicts_still_load(tmp_path, painting, capsys, legacy):
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=8, n_blocks=2).eval()
    # an old CycleGAN/Art2Real file: DataParallel prefix, InstanceNorm running stats, saved as an OrderedDict
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.model.2.running_mean"] = torch.zeros(8)
    path = tmp_path / "latest_net_G_A.pth"
    path.write_bytes(_state_bytes(state, legacy))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(load_translator(path)(x), net(x))
    code, out, _ = cli(capsys, "translate", "--checkpoint", path, "--input", painting, "--output", tmp_path / "out",
                       "--device", "cpu")
    assert code == 0 and "1 image(s) written" in out and (tmp_path / "out" / "p.png").exists()


@pytest.mark.parametrize("state, message", [
    ({"foo": torch.zeros(3)}, "is not a cyclegan generator file"),
    ({k: v for k, v in ResnetGenerator(ngf=8, n_blocks=2).state_dict().items() if k != "model.1.bias"},
     "does not match the network architecture"),
    ({"model.1.weight": "not a tensor"}, "is not a cyclegan generator file"),
    (torch.zeros(3), "holds a Tensor, not a checkpoint"),
], ids=["other-dict", "missing-key", "not-tensors", "tensor"])
def test_files_that_are_not_generators_are_user_errors(tmp_path, painting, capsys, state, message):
    torch.save(state, tmp_path / "g.pth")
    code, _, err = cli(capsys, "translate", "--checkpoint", tmp_path / "g.pth", "--input", painting, "--output",
                       tmp_path / "out")
    assert code == 2 and one_error_line(err) and message in err and "g.pth" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ D2
@pytest.fixture
def toy(server, monkeypatch, tmp_path):  # noqa: F811
    setting = registry.Setting("toy2photo", "Toy", f"{server}/toy2photo.zip", "test setting")
    monkeypatch.setitem(registry.DATASETS, "toy2photo", setting)
    monkeypatch.setenv("ART2REAL_HOME", str(tmp_path / "home"))  # data/ of the CLI
    return setting


def test_d2_a_bad_first_download_is_retried_afresh(toy, capsys):
    Files.files["/toy2photo.zip"] = b"<html><body>502 Bad Gateway</body></html>"  # a proxy's page saved as .zip
    code, _, err = cli(capsys, "data", "download", "toy2photo")
    assert code == 2 and "broken file" in err and "downloads it afresh" in err
    book = dl.cache_dir() / "downloads" / "sha256.json"
    assert not book.exists() or toy.url not in json.loads(book.read_text())  # no hash of the bad file
    Files.files["/toy2photo.zip"] = dataset_zip()  # the server is fixed; the user retries
    code, _, _ = cli(capsys, "data", "download", "toy2photo")
    assert code == 0 and sorted(p.name for p in toy.path().iterdir()) == ["testA", "testB", "trainA", "trainB"]
    cached = dl.cache_dir() / "downloads" / dl.cache_name(toy.url)
    assert json.loads(book.read_text())[toy.url] == dl.sha256(cached)


def test_downloading_over_an_incomplete_dataset_folder_keeps_what_it_held(toy, capsys):
    Files.files["/toy2photo.zip"] = dataset_zip()
    mine = toy.path() / "trainA" / "mine.png"
    mine.parent.mkdir(parents=True)
    painted = random_png(mine).read_bytes()  # put there by hand, as the message about a missing dataset suggests
    assert cli(capsys, "data", "download", "toy2photo")[0] == 0
    assert sorted(p.name for p in toy.path().iterdir()) == ["testA", "testB", "trainA", "trainB"]
    kept = list(toy.path().parent.glob("toy2photo.replaced-*/trainA/mine.png"))
    assert len(kept) == 1 and kept[0].read_bytes() == painted


# ------------------------------------------------------------------------------------------------ D14
def test_d14_dataset_and_release_of_the_same_file_name_do_not_share_a_cache_file(server, tmp_path, painting,  # noqa: F811
                                                                               capsys, monkeypatch):
    monkeypatch.setenv("ART2REAL_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(registry.DATASETS, "monet2photo", registry.Setting(
        "monet2photo", "Monet", f"{server}/datasets/monet2photo.zip", "Monet (test server)", 4))
    monkeypatch.setitem(pretrained.RELEASES, "art2real_monet", pretrained.Release(
        "art2real_monet", f"{server}/checkpoints/monet2photo.zip", "art2real", "monet2photo"))
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=8, n_blocks=2).eval()
    Files.files["/datasets/monet2photo.zip"] = dataset_zip("monet2photo/")
    Files.files["/checkpoints/monet2photo.zip"] = zip_of({"monet2photo/latest_net_G_A.pth":
                                                          _state_bytes(net.state_dict())})
    assert cli(capsys, "data", "download", "monet")[0] == 0
    code, out, err = cli(capsys, "translate", "--release", "art2real_monet", "--input", painting, "--output",
                         tmp_path / "out", "--device", "cpu")
    assert code == 0, err
    assert "1 image(s) written" in out
    archives = sorted(p.name for p in (dl.cache_dir() / "downloads").glob("*monet2photo.zip"))
    assert len(archives) == 2 and len({name.split("-")[0] for name in archives}) == 2
    with torch.no_grad():  # the release is the generator served, not the dataset archive
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        assert torch.allclose(pretrained.load_release("art2real_monet", progressbar=False)(x), net(x))


# ------------------------------------------------------------------------------------------------ archives
@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """~400 KB on disk, 400 MB unpacked."""
    return zeros_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip", 400)


def test_zip_bomb_is_refused_before_anything_is_written(bomb, tmp_path):
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(UnsafeArchive, match="zip bomb.*ART2REAL_MAX_EXTRACT"):
        extract(bomb, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "target").exists() and not list((tmp_path / "out").iterdir())


def test_zip_bomb_download_is_refused_and_deleted(server, tmp_path, bomb, toy, capsys):  # noqa: F811
    Files.files["/toy2photo.zip"] = bomb.read_bytes()
    code, _, err = cli(capsys, "data", "download", "toy2photo")
    assert code == 2 and "zip bomb" in err and one_error_line(err)
    assert not toy.path().exists()
    # never taken as verified: a bomb is refused before its members are decompressed, and deleted
    assert not list((dl.cache_dir() / "downloads").glob("*toy2photo.zip"))
    book = dl.cache_dir() / "downloads" / "sha256.json"
    assert not book.exists() or toy.url not in json.loads(book.read_text())


def test_extraction_limits_can_be_raised(tmp_path, monkeypatch):
    archive = zeros_zip(tmp_path / "big.zip", 8)  # ratio ~1000
    with pytest.raises(UnsafeArchive, match="ratio 100"):
        extract(archive, tmp_path / "a")
    monkeypatch.setenv("ART2REAL_MAX_EXTRACT_RATIO", "5000")
    assert (extract(archive, tmp_path / "a") / "zeros" / "zeros.bin").stat().st_size == 8 << 20
    monkeypatch.setenv("ART2REAL_MAX_EXTRACT_GB", "0.001")
    with pytest.raises(UnsafeArchive, match="limits: 0.001 GB"):
        extract(archive, tmp_path / "b")
    monkeypatch.setenv("ART2REAL_MAX_EXTRACT_GB", "1")
    assert extract(archive, tmp_path / "b").is_dir()


# ------------------------------------------------------------------------------------------------ umask
@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["umask-022", "umask-002"])
def test_downloads_and_extracted_folders_follow_the_umask(toy, mask, server, monkeypatch):  # noqa: F811
    Files.files["/toy2photo.zip"] = dataset_zip()
    Files.files["/a.pth"] = _state_bytes(ResnetGenerator(ngf=4, n_blocks=1).state_dict())
    Files.files["/ckpt/monet2photo.zip"] = zip_of({"monet2photo/latest_net_G_A.pth": Files.files["/a.pth"]})
    monkeypatch.setitem(pretrained.RELEASES, "art2real_monet", pretrained.Release(
        "art2real_monet", f"{server}/ckpt/monet2photo.zip", "art2real", "monet2photo"))
    old = os.umask(mask)
    try:
        root = dl.download("toy2photo", progressbar=False)
        fetch(f"{server}/a.pth", progressbar=False)
        pretrained.fetch_release("art2real_monet", progressbar=False)
    finally:
        os.umask(old)
    for folder in (root, dl.cache_dir() / "downloads", dl.cache_dir() / "pretrained"):
        assert modes(folder) == {"files": {0o666 & ~mask}, "dirs": {0o777 & ~mask}}, folder
