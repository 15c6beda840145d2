"""Downloads: pooch with a resumable HTTP downloader, sha256 recorded on first download, safe extraction.

- Progress bar (tqdm), retries on transfer errors, resumption from a ``.part`` file with an HTTP Range request.
- The sha256 of each archive is recorded in ``<cache>/sha256.json`` on first download and verified afterwards.
- Extraction refuses members that would land outside the target (absolute paths, ``..``, links, devices); a
  truncated or corrupt archive is an error and leaves nothing half-extracted (extraction goes to a temporary
  folder that is renamed into place only when complete).
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
import zipfile
from pathlib import Path, PurePosixPath

import pooch
import requests
from tqdm.auto import tqdm

from ..io import write_json
from ..paths import cache_dir
from .registry import SPLITS, Setting, get_setting, missing_splits

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download could not be made or verified; the message says what to fetch by hand and where to put it."""


class UnsafeArchive(ValueError):
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
        self.part.unlink()


def _hash_book(cache: Path) -> Path:
    return cache / "sha256.json"


def fetch(url: str, cache: Path | None = None, retries: int = 3, progressbar: bool = True,
          fill_by_hand: str | None = None) -> Path:
    """Download ``url`` into the cache (once), verify it against its recorded sha256, return the local path."""
    cache = Path(cache or cache_dir() / "downloads")
    cache.mkdir(parents=True, exist_ok=True)
    fname = PurePosixPath(requests.utils.urlparse(url).path).name.replace("%20", "_")
    book_path = _hash_book(cache)
    book = json.loads(book_path.read_text()) if book_path.exists() else {}
    known = book.get(url)
    store = pooch.create(path=cache, base_url="", registry={fname: f"sha256:{known}" if known else None},
                         urls={fname: url}, retry_if_failed=retries, allow_updates=True)
    downloader = ResumableDownloader(cache / f"{fname}.part", progressbar=progressbar)
    hint = f" Download it by hand and {fill_by_hand}." if fill_by_hand else f" Download it by hand into {cache}/."
    if os.environ.get("ART2REAL_OFFLINE") and not (cache / fname).exists():
        raise DownloadError(f"could not download {url}: offline mode (ART2REAL_OFFLINE is set).{hint}")
    try:
        path = Path(store.fetch(fname, downloader=downloader))
    except ValueError as e:
        raise DownloadError(f"{url}: checksum does not match the recorded sha256 {known} ({e}).{hint}") from e
    except (OSError, requests.RequestException) as e:
        raise DownloadError(f"could not download {url}: {e}.{hint}") from e
    if not known:
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


def extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a zip or tar archive into ``target`` safely and atomically (see the module docstring)."""
    archive, target = Path(archive), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                kinds = [(i.filename, "link" if stat.S_ISLNK(i.external_attr >> 16) else
                          "dir" if i.is_dir() else "file") for i in z.infolist()]
                _safe_members(kinds, tmp)
                bad = z.testzip()
                if bad:
                    raise zipfile.BadZipFile(f"member {bad} is corrupt")
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                members = t.getmembers()
                _safe_members([(m.name, "file" if m.isfile() else "dir" if m.isdir() else
                                "link" if m.issym() or m.islnk() else "device") for m in members], tmp)
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


def download(name: str, retries: int = 3, progressbar: bool = True, root: Path | None = None) -> Path:
    """Download and normalise a setting to ``data/<name>/{trainA,trainB,testA,testB}``; a no-op when present."""
    setting: Setting = get_setting(name)
    target = Path(root) if root else setting.path()
    if not missing_splits(target):
        return target
    if setting.url is None:
        raise DownloadError(f"{setting.name} is embedded in the repository but {target} is incomplete "
                            f"(missing {', '.join(missing_splits(target))}); restore it with git checkout")
    hand = f"unpack it so that {target}/{{{','.join(SPLITS)}}} exist (A = paintings, B = photos)"
    archive = fetch(setting.url, retries=retries, progressbar=progressbar, fill_by_hand=hand)
    staging = extract(archive, target.parent / f".{target.name}.extracted")
    try:
        found = _find_split_root(staging)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        for split in SPLITS:
            os.replace(found / split, tmp / split)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
