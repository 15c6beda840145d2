"""Released generators: the authors' Art2Real checkpoints and CycleGAN's monet2photo.

Downloads go through :func:`art2real.data.download.fetch` (cached by URL, verified, sha256 recorded then
checked). The authors' archives hold CycleGAN-layout checkpoints; the painting -> photo generator is CycleGAN's
``G_A``. Every file is loaded as plain data (``weights_only``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data.download import DownloadError, cache_name, extract, fetch, sha256
from .data.registry import AUTHORS, CYCLEGAN
from .paths import cache_dir
from .translate import load_translator


@dataclass(frozen=True)
class Release:
    name: str
    url: str
    method: str  # the registered method whose layout the file has, and whose table row it reproduces
    dataset: str


RELEASES = {r.name: r for r in [
    Release("art2real_monet", f"{AUTHORS}/checkpoints/monet2photo.zip", "art2real", "monet2photo"),
    Release("art2real_landscapes", f"{AUTHORS}/checkpoints/landscape2photo.zip", "art2real", "landscape2photo"),
    Release("art2real_portraits", f"{AUTHORS}/checkpoints/portrait2photo.zip", "art2real", "portrait2photo"),
    Release("cyclegan_monet", f"{CYCLEGAN}/pretrained_models/monet2photo.pth", "cyclegan", "monet2photo"),
]}


def releases_for(dataset: str) -> list[Release]:
    return [r for r in RELEASES.values() if r.dataset == dataset]


def fetch_release(name: str, retries: int = 3, progressbar: bool = True) -> Path:
    """Local path of a released painting -> photo generator state_dict (downloaded once)."""
    if name not in RELEASES:
        raise KeyError(f"unknown release {name!r}; known: {', '.join(RELEASES)}")
    release = RELEASES[name]
    hint = f"save it as {cache_dir() / 'downloads' / cache_name(release.url)}"
    path = fetch(release.url, retries=retries, progressbar=progressbar, fill_by_hand=hint)
    if not release.url.endswith(".zip"):  # a bare state_dict (torch.save files are zips too: go by the URL)
        return path
    folder = cache_dir() / "pretrained" / f"{name}-{sha256(path)[:12]}"  # a new archive never reuses an old folder
    if not folder.exists():
        extract(path, folder)
    candidates = sorted(folder.rglob("*net_G_A.pth")) or sorted(folder.rglob("*G*.pth"))
    if not candidates:
        raise DownloadError(f"{path} holds no generator (*net_G_A.pth); files: "
                            f"{[p.name for p in folder.rglob('*') if p.is_file()][:10]}")
    latest = [p for p in candidates if "latest" in p.name]  # CycleGAN also saves <epoch>_net_G_A.pth
    return (latest or candidates)[-1]


def load_release(name: str, device="cpu", **kwargs):
    """The released translator: painting -> photo, ready for :mod:`art2real.translate`."""
    return load_translator(fetch_release(name, **kwargs), device, RELEASES[name].method)
