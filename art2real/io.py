"""Atomic file writes: a crash never leaves a half-written file where a whole one is expected.

Files are created with the permissions the user's umask gives (a temporary file would otherwise stay 0600, and a
group sharing results on a server could not read them).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def follow_umask(path: str | Path, directory: bool = False) -> None:
    """Give a file made by ``tempfile`` (0600 / 0700) the mode a plain ``open`` / ``mkdir`` would have."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def fsync_dir(folder: str | Path) -> None:
    """Make renames in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, commit: Callable[[str, Path], None] = os.replace) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and ``commit(tmp, path)`` moves it into
    place (a rename by default). A temporary file left by a kill starts with a dot and ends in ``.tmp``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            follow_umask(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
