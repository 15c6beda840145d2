"""Helpers of the hostile-input tests: files that lie about themselves, and short runs of the CLI."""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from art2real.cli import main


class RunsCommand:
    """A pickle whose loading runs ``touch <marker>``: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_pickle(path: Path, marker: Path, torch_format: bool = True) -> Path:
    """A file that looks like a state_dict and runs a shell command when unpickled: saved by ``torch.save``
    (a zip) or as a bare pickle (what old ``torch.save`` files are)."""
    import torch

    payload = {"model.1.weight": RunsCommand(marker)}
    if torch_format:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A few bytes of PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def random_png(path: Path, size: tuple[int, int] = (64, 64), seed: int = 0) -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def zeros_zip(path: Path, megabytes: int) -> Path:
    """A zip of one member of ``megabytes`` MB of zeros: about a thousandth of that on disk."""
    block = b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("zeros/zeros.bin", "w") as f:
        for _ in range(megabytes):
            f.write(block)
    return path


def cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``art2real ARGV``."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> bool:
    """A user error: one ``error:`` line on stderr (progress bars aside), no traceback."""
    return [line.startswith("error: ") for line in err.splitlines()].count(True) == 1 and "Traceback" not in err


def smoke_train(capsys, dataset: Path, run_dir: Path, *extra, method: str = "cyclegan", iterations: int = 1):
    """``art2real train`` at the smoke preset for ``iterations`` iterations (checkpoints at each)."""
    return cli(capsys, "train", "--dataset", dataset, "--preset", "smoke", "--method", method, "--device", "cpu",
               "--run-dir", run_dir, "--set", f"train.max_iterations={iterations}", "--set",
               "train.checkpoint_every=1", *extra)


def modes(root: Path) -> dict[str, set[int]]:
    """{"files": modes, "dirs": modes} of everything under ``root`` (itself included)."""
    found = {"files": set(), "dirs": {root.stat().st_mode & 0o777}}
    for p in root.rglob("*"):
        found["dirs" if p.is_dir() else "files"].add(p.stat().st_mode & 0o777)
    return found


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file and folder under ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}
