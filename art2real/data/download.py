"""Downloads: pooch with a resumable HTTP downloader, sha256 recorded once a download verified, safe extraction.

- Progress bar (tqdm), retries on transfer errors, resumption from a ``.part`` file with an HTTP Range request.
- Cached files are keyed by their URL (a hash of it before the file name): two URLs that end in the same name
  (the authors' and CycleGAN's ``monet2photo.zip``, a dataset and a checkpoint) never share a file.
- The sha256 of a file is recorded in ``<cache>/sha256.json`` only after the file verified (an archive opens,
  is within the extraction limits below, and its members read back whole; a checkpoint loads); later fetches
  check it. A file that fails is deleted,
  so the retry the message suggests downloads it afresh.
- Extraction refuses members that would land outside the target (absolute paths, ``..``, links, devices) and
  archives that would unpack to more than ``ART2REAL_MAX_EXTRACT_GB`` (default 200) or more than
  ``ART2REAL_MAX_EXTRACT_RATIO`` (default 100) times their own size (a zip bomb); a truncated or corrupt archive
  is an error and leaves nothing half-extracted (extraction goes to a temporary folder that is renamed into
  place only when complete).
- An incomplete dataset folder that a download completes is moved aside (``<name>.replaced-<time>``), not
  deleted: it may hold images put there by hand.
- Offline (or with ``ART2REAL_OFFLINE=1``), a download fails at once (no retries for a refused connection) with
  a message naming the URL and the folder to fill by hand.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

import pooch
import requests
from tqdm.auto import tqdm

from ..errors import UserError
from ..io import follow_umask, write_json
from ..paths import cache_dir
from .registry import SPLITS, Setting, get_setting, missing_splits

log = logging.getLogger(__name__)


class DownloadError(UserError, RuntimeError):
    """A download could not be made or verified; the message says what to fetch by hand and where to put it."""


class UnsafeArchive(UserError, ValueError):
    """An archive member would land outside the target folder, or is a link or a device."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ResumableDownloader:
    """A pooch downloader that keeps a ``.part`` file and asks the server for the rest (HTTP Range)."""

    def __init__(self, part: Path, progressbar: bool = True, timeout: float = 30.0, chunk: int = 1 << 16):
        self.part, self.progressbar, self.timeout, self.chunk = part, progressbar, timeout, chunk

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        if check_only:
            return requests.head(url, timeout=self.timeout, allow_redirects=True).status_code == 200
        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            response = requests.get(url, headers=headers, stream=True, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as e:
            # not a RequestException subclass pooch retries: offline must fail at once
            raise ConnectionRefusedError(str(e)) from None
        with response:
            if response.status_code == 416:  # the .part is already whole
                response.close()
            else:
                response.raise_for_status()
                if response.status_code != 206:
                    have = 0  # the server ignored the range: start over
                total = int(response.headers.get("content-length", 0)) + have
                with open(self.part, "ab" if have else "wb") as f, tqdm(
                        total=total or None, initial=have, unit="B", unit_scale=True, disable=not self.progressbar,
                        desc=Path(self.part.name).stem) as bar:
                    for block in response.iter_content(self.chunk):
                        f.write(block)
                        bar.update(len(block))
                got = self.part.stat().st_size
                if total and got < total:
                    raise requests.exceptions.ChunkedEncodingError(f"connection closed at {got} of {total} bytes")
        shutil.copyfile(self.part, output_file)
        follow_umask(output_file)  # pooch's temporary file is 0600, and it becomes the cached file
        self.part.unlink()


def _hash_book(cache: Path) -> Path:
    return cache / "sha256.json"


def cache_name(url: str) -> str:
    """The cached file of a URL: a hash of the whole URL, then its file name (for people reading the folder)."""
    name = PurePosixPath(requests.utils.urlparse(url).path).name.replace("%20", "_") or "download"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def verify_file(path: Path) -> None:
    """Raise ValueError unless the file is whole: an archive opens and its members read back (CRC checked), a
    torch file loads as plain data. Other kinds are taken as they are."""
    name = path.name.lower()
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as z:
                # the sizes the archive declares bound what reading it gives (zipfile stops there), so a bomb is
                # refused before its members are decompressed
                _check_limits(path, sum(i.file_size for i in z.infolist()))
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"not a readable zip archive ({e})") from None
        if bad:
            raise ValueError(f"member {bad} of the archive is corrupt")
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        try:
            with tarfile.open(path) as t:
                total = 0
                for member in t:
                    if member.isfile():
                        total += member.size
                        _check_limits(path, total)
                        t.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"not a readable tar archive ({e})") from None
    elif name.endswith((".pth", ".pt")):
        from ..train.checkpoint import load_checkpoint

        try:
            load_checkpoint(path)
        except Exception as e:  # noqa: BLE001  any reason is a reason to refuse it
            raise ValueError(str(e)) from None


def fetch(url: str, cache: Path | None = None, retries: int = 3, progressbar: bool = True,
          fill_by_hand: str | None = None) -> Path:
    """Download ``url`` into the cache (once), verify it (see the module docstring), return the local path."""
    cache = Path(cache or cache_dir() / "downloads")
    cache.mkdir(parents=True, exist_ok=True)
    fname = cache_name(url)
    book_path = _hash_book(cache)
    book = json.loads(book_path.read_text()) if book_path.exists() else {}
    known = book.get(url)
    store = pooch.create(path=cache, base_url="", registry={fname: f"sha256:{known}" if known else None},
                         urls={fname: url}, retry_if_failed=retries, allow_updates=True)
    downloader = ResumableDownloader(cache / f"{fname}.part", progressbar=progressbar)
    hint = (f" Download it by hand and {fill_by_hand}." if fill_by_hand
            else f" Download it by hand and save it as {cache / fname}.")
    if os.environ.get("ART2REAL_OFFLINE") and not (cache / fname).exists():
        raise DownloadError(f"could not download {url}: offline mode (ART2REAL_OFFLINE is set).{hint}")
    try:
        path = Path(store.fetch(fname, downloader=downloader))
    except ValueError as e:
        raise DownloadError(f"{url}: checksum does not match the recorded sha256 {known} ({e}). If the server "
                            f"changed the file on purpose, remove its line from {book_path} and fetch again."
                            f"{hint}") from e
    except (OSError, requests.RequestException) as e:
        raise DownloadError(f"could not download {url}: {e}.{hint}") from e
    if not known:
        try:
            verify_file(path)
        except ValueError as e:
            path.unlink(missing_ok=True)
            raise DownloadError(f"{url} gave a broken file ({e}); it was deleted, so fetching again downloads it "
                                f"afresh.{hint}") from None
        book = json.loads(book_path.read_text()) if book_path.exists() else {}
        book[url] = sha256(path)
        write_json(book_path, book)
        log.info("recorded sha256 %s for %s", book[url], url)
    return path


def _safe_members(names_and_kinds, target: Path) -> None:
    root = target.resolve()
    for name, kind in names_and_kinds:
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
            raise UnsafeArchive(f"archive member {name!r} would be written outside {target}")
        if kind not in ("file", "dir"):
            raise UnsafeArchive(f"archive member {name!r} is a {kind}; links and devices are refused")
        if not (root / pure).resolve().is_relative_to(root):
            raise UnsafeArchive(f"archive member {name!r} would be written outside {target}")


def extraction_limits() -> tuple[int, float]:
    """(max total bytes, max ratio of unpacked to packed size) for archives, from the environment."""
    gb = float(os.environ.get("ART2REAL_MAX_EXTRACT_GB", 200))
    return int(gb * 1e9), float(os.environ.get("ART2REAL_MAX_EXTRACT_RATIO", 100))


def _check_limits(archive: Path, total: int) -> None:
    """Refuse an archive that unpacks to ``total`` bytes when that is over the limits (a zip bomb)."""
    max_bytes, max_ratio = extraction_limits()
    packed = max(archive.stat().st_size, 1)
    if total > max_bytes or total > max_ratio * packed:
        raise UnsafeArchive(f"{archive} would unpack to {total / 1e9:.2f} GB, {total / packed:.0f} times its size "
                            f"(limits: {max_bytes / 1e9:g} GB, ratio {max_ratio:g}); refused as a possible zip bomb. "
                            "Raise ART2REAL_MAX_EXTRACT_GB / ART2REAL_MAX_EXTRACT_RATIO if you trust it.")


def _check_size(archive: Path, total: int, target: Path) -> None:
    _check_limits(archive, total)
    free = shutil.disk_usage(target).free
    if total > free:
        raise DownloadError(f"{archive} unpacks to {total / 1e9:.2f} GB but {target} has {free / 1e9:.2f} GB free")


def extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a zip or tar archive into ``target`` safely and atomically (see the module docstring)."""
    archive, target = Path(archive), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    follow_umask(tmp, directory=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                infos = z.infolist()
                kinds = [(i.filename, "link" if stat.S_ISLNK(i.external_attr >> 16) else
                          "dir" if i.is_dir() else "file") for i in infos]
                _safe_members(kinds, tmp)
                _check_size(archive, sum(i.file_size for i in infos), tmp)
                bad = z.testzip()
                if bad:
                    raise zipfile.BadZipFile(f"member {bad} is corrupt")
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                members = t.getmembers()
                _safe_members([(m.name, "file" if m.isfile() else "dir" if m.isdir() else
                                "link" if m.issym() or m.islnk() else "device") for m in members], tmp)
                _check_size(archive, sum(m.size for m in members if m.isfile()), tmp)
                t.extractall(tmp, filter="data")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        return target
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"{archive} is truncated or corrupt ({e}); delete it and download again") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _find_split_root(folder: Path) -> Path:
    """The folder inside an extracted archive that holds trainA/trainB/testA/testB."""
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if not missing_splits(candidate):
            return candidate
    raise DownloadError(f"no folder with {'/'.join(SPLITS)} found in the archive extracted at {folder}")


def _set_aside(folder: Path) -> None:
    """An incomplete dataset folder may hold images a user put there by hand: keep them beside it."""
    if not any(folder.iterdir()):
        folder.rmdir()
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f"{folder.name}.replaced-{stamp}")
    n = 2
    while aside.exists():
        aside, n = folder.with_name(f"{folder.name}.replaced-{stamp}-{n}"), n + 1
    os.replace(folder, aside)
    log.warning("%s was incomplete; what it held is now in %s", folder, aside)


def _unpack(url: str, staging: Path, retries: int, progressbar: bool, hand: str) -> Path:
    """The folder with the four splits inside a downloaded archive."""
    archive = fetch(url, retries=retries, progressbar=progressbar, fill_by_hand=hand)
    return _find_split_root(extract(archive, staging))


def download(name: str, retries: int = 3, progressbar: bool = True, root: Path | None = None) -> Path:
    """Download and normalise a setting to ``data/<name>/{trainA,trainB,testA,testB}``; a no-op when present.
    A setting with ``photos_url`` takes its paintings from ``url`` and its photos from ``photos_url``."""
    setting: Setting = get_setting(name)
    target = Path(root) if root else setting.path()
    if not missing_splits(target):
        return target
    if setting.url is None:
        raise DownloadError(f"{setting.name} is embedded in the repository but {target} is incomplete "
                            f"(missing {', '.join(missing_splits(target))}); restore it with git checkout")
    hand = f"unpack it so that {target}/{{{','.join(SPLITS)}}} exist (A = paintings, B = photos)"
    sources = {split: setting.url for split in SPLITS}
    if setting.photos_url:
        hand += f"; the photos (trainB, testB) come from {setting.photos_url}"
        sources.update(trainB=setting.photos_url, testB=setting.photos_url)
    target.parent.mkdir(parents=True, exist_ok=True)
    stagings = {}
    try:
        for i, url in enumerate(dict.fromkeys(sources.values())):
            staging = target.parent / f".{target.name}.extracted-{i}"
            stagings[url] = _unpack(url, staging, retries, progressbar, hand)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        follow_umask(tmp, directory=True)
        for split, url in sources.items():
            os.replace(stagings[url] / split, tmp / split)
        if target.exists():
            _set_aside(target)
        os.replace(tmp, target)
    finally:
        for staging in target.parent.glob(f".{target.name}.extracted-*"):
            shutil.rmtree(staging, ignore_errors=True)
    return target
