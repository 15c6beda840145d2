"""The downloader against a local HTTP server on 127.0.0.1 serving archives the tests build."""
import io
import json
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from art2real.data import download as dl
from art2real.data import registry
from art2real.data.download import DownloadError, UnsafeArchive, extract, fetch


class Files(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_first: set[str] = set()  # paths whose first response stops half-way
    requests: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        self.requests.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.cut_first:
            self.cut_first.discard(self.path)
            self.wfile.write(body[start:start + len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Files.files, Files.cut_first, Files.requests = {}, set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def dataset_zip(prefix="toy2photo/", extra: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for split in ("trainA", "trainB", "testA", "testB"):
            z.writestr(f"{prefix}{split}/img_0.jpg", b"\xff\xd8 not really a jpeg, content is irrelevant here")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def toy_setting(server, monkeypatch, tmp_path):
    setting = registry.Setting("toy2photo", "Toy", f"{server}/toy2photo.zip", "test setting")
    monkeypatch.setitem(registry.DATASETS, "toy2photo", setting)
    return tmp_path / "data" / "toy2photo"


def test_download_extracts_normalises_and_records_sha256(toy_setting, tmp_path, monkeypatch):
    Files.files["/toy2photo.zip"] = dataset_zip()
    root = dl.download("toy2photo", root=toy_setting, progressbar=False)
    assert sorted(p.name for p in root.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    cache = dl.cache_dir() / "downloads"
    book = json.loads((cache / "sha256.json").read_text())
    url = registry.DATASETS["toy2photo"].url
    assert book[url] == dl.sha256(cache / dl.cache_name(url))
    n = len(Files.requests)
    dl.download("toy2photo", root=toy_setting, progressbar=False)  # already there: no request
    assert len(Files.requests) == n
    assert not [p for p in toy_setting.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_recorded_hash_is_verified(server):
    Files.files["/a.bin"] = b"first version"
    path = fetch(f"{server}/a.bin", retries=0, progressbar=False)
    assert path.read_bytes() == b"first version"
    Files.files["/a.bin"] = b"the server now serves something else"
    path.write_bytes(b"corrupted on disk")
    with pytest.raises(DownloadError, match="checksum does not match the recorded sha256"):
        fetch(f"{server}/a.bin", retries=0, progressbar=False)


def test_interrupted_download_resumes_with_range(server):
    body = bytes(range(256)) * 4000
    Files.files["/big.bin"] = body
    Files.cut_first.add("/big.bin")
    path = fetch(f"{server}/big.bin", retries=2, progressbar=False)
    assert path.read_bytes() == body
    ranges = [r for p, r in Files.requests if p == "/big.bin"]
    assert ranges[0] is None
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(body) // 2  # asked only for what was missing


def test_truncated_archive_leaves_nothing(toy_setting):
    Files.files["/toy2photo.zip"] = dataset_zip()[:-200]
    with pytest.raises(DownloadError, match="broken file .* deleted, so fetching again downloads it afresh"):
        dl.download("toy2photo", root=toy_setting, progressbar=False)
    assert not toy_setting.exists()
    assert not toy_setting.parent.exists() or not list(toy_setting.parent.iterdir())


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "toy2photo/../../evil.txt"])
def test_path_traversal_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(dataset_zip(extra={member: b"owned"}))
    with pytest.raises(UnsafeArchive):
        extract(archive, tmp_path / "out" / "target")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "target").exists()


def test_links_in_tar_are_refused(tmp_path):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("x/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    with pytest.raises(UnsafeArchive, match="link"):
        extract(archive, tmp_path / "target")
    good = tmp_path / "good.tar"
    with tarfile.open(good, "w") as t:
        info = tarfile.TarInfo("trainA/a.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"ok"))
    assert (extract(good, tmp_path / "target") / "trainA" / "a.txt").read_bytes() == b"ok"


def test_server_down_fails_at_once_with_instructions(monkeypatch, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    setting = registry.Setting("gone2photo", "Gone", f"http://127.0.0.1:{port}/gone2photo.zip", "unreachable")
    monkeypatch.setitem(registry.DATASETS, "gone2photo", setting)
    start = time.perf_counter()
    with pytest.raises(DownloadError) as err:
        dl.download("gone2photo", root=tmp_path / "gone2photo", retries=3, progressbar=False)
    assert time.perf_counter() - start < 5  # no retries with back-off for a refused connection
    assert setting.url in str(err.value) and str(tmp_path / "gone2photo") in str(err.value)


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="unknown dataset or artist 'picasso'"):
        registry.get_setting("picasso")


def test_paintings_and_photos_from_two_archives(server, monkeypatch, tmp_path):
    """Cezanne, Van Gogh and Ukiyo-e: CycleGAN's paintings with the paper's landscape photos."""
    def archive(tag):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for split in ("trainA", "trainB", "testA", "testB"):
                z.writestr(f"x/{split}/{tag}.jpg", tag.encode())
        return buf.getvalue()

    Files.files["/cyclegan/cezanne2photo.zip"] = archive("cyclegan")
    Files.files["/authors/landscape2photo.zip"] = archive("authors")
    setting = registry.Setting("mix2photo", "Mix", f"{server}/cyclegan/cezanne2photo.zip", "test", 1,
                               photos_url=f"{server}/authors/landscape2photo.zip")
    monkeypatch.setitem(registry.DATASETS, "mix2photo", setting)
    root = dl.download("mix2photo", root=tmp_path / "data" / "mix2photo", progressbar=False)
    assert [p.name for p in (root / "trainA").iterdir()] == ["cyclegan.jpg"]
    assert [p.name for p in (root / "testB").iterdir()] == ["authors.jpg"]
    assert sorted(p.name for p in root.parent.iterdir()) == ["mix2photo"]  # no staging left
    assert registry.get_setting("cezanne").photos_url == registry.LANDSCAPE_PHOTOS
    assert registry.get_setting("cezanne2photo_cyclegan").photos_url is None
