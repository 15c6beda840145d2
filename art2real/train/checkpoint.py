"""Checkpoints that a kill, a full disk or a hostile file cannot turn into lost work or a security hole.

- Plain data only: a checkpoint holds tensors, numbers, strings, lists, tuples and dicts, and every file is read
  with ``torch.load(weights_only=True)``; a file that needs pickled code (which can run any command) is refused.
- The previous checkpoint is kept: ``last.pt`` is written to a temporary file, fsynced, and only then does the
  old ``last.pt`` become ``previous.pt``; a corrupt or missing ``last.pt`` falls back to ``previous.pt``.
- One trainer per run folder: an exclusive lock (``train.lock``) names its holder; the kernel releases it when
  the holder dies, so a killed run never leaves a stale lock.
"""
from __future__ import annotations

import fcntl
import logging
import os
import pickle
import random
import socket
import time
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, RunLocked
from ..io import atomic_path, fsync_dir

log = logging.getLogger(__name__)

FORMAT = 2  # 1: the first release's layout (pickled numpy RNG state, no method section)
NAMES = ("last.pt", "previous.pt")


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict, moved: tuple[int, int] | None = None) -> None:
    """Restore the RNG states of ``rng_state``. ``moved`` = (GPU the run used, GPU it continues on): that GPU's
    stream continues on the new one, so a run moved from cuda:1 to cuda:0 draws what it would have drawn."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        saved, count = state["cuda"], torch.cuda.device_count()
        if count < len(saved):
            log.warning("the checkpoint holds RNG states of %d CUDA devices, this machine has %d: the states of "
                        "the devices it lacks are not restored", len(saved), count)
        states = dict(enumerate(saved[:count]))
        if moved is not None and moved[0] < len(saved) and moved[1] < count:
            states[moved[1]] = saved[moved[0]]
        for index, device_state in states.items():
            torch.cuda.set_rng_state(device_state.cpu(), index)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint or generator file as plain data on the CPU; refuses pickled code, names corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only load failed" in str(e):
            raise CheckpointError(
                f"refused {path}: it needs pickled code to load, and loading it could run any command. "
                "art2real loads only files of tensors, numbers, strings, lists and dicts; if you trust the file, "
                "re-save its state_dict with torch.save(model.state_dict(), ...).") from None
        raise CheckpointError(f"{path} is corrupt ({e})") from None
    except (EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile) as e:
        reason = "empty" if path.stat().st_size == 0 else f"truncated or corrupt: {str(e).splitlines()[0]}"
        raise CheckpointError(f"{path} is {reason}") from None


def save_checkpoint(folder: str | Path, state: dict, name: str = "last.pt") -> Path:
    """Write ``folder/name``; for ``last.pt`` the one it replaces stays as ``previous.pt``."""
    folder = Path(folder)

    def keep_previous(tmp: str, target: Path) -> None:
        if name == "last.pt" and target.exists():
            os.replace(target, folder / "previous.pt")
        os.replace(tmp, target)

    with atomic_path(folder / name, commit=keep_previous) as tmp:
        torch.save(state, tmp)
    fsync_dir(folder)
    return folder / name


def load_latest(folder: str | Path) -> tuple[dict, Path] | None:
    """The newest checkpoint of a run that loads: ``last.pt``, else ``previous.pt`` (saying why); None when the
    run has none. Raises when checkpoints exist but none loads."""
    folder = Path(folder)
    problems = []
    for name in NAMES:
        path = folder / name
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
            _check_format(state, path)
        except CheckpointError as e:
            problems.append(str(e))
            log.warning("%s; trying the previous checkpoint", e)
            continue
        if problems:
            log.warning("resuming from %s instead (%s)", path, "; ".join(problems))
            # the unreadable last.pt moves aside: the next save must not rotate it into previous.pt, the only
            # good checkpoint until then
            broken = folder / "last.pt"
            if broken.exists():
                os.replace(broken, folder / f"last.pt.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        return state, path
    if problems:
        raise CheckpointError("no checkpoint of this run can be read: " + "; ".join(problems)
                              + ". Start it again with --no-resume (the run folder is kept aside, not deleted).")
    return None


def _check_format(state: dict, path: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint of this version of art2real (format "
                              f"{state.get('format') if isinstance(state, dict) else type(state).__name__}, "
                              f"expected {FORMAT}); its generator can still be used with `art2real translate`")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files left by a write that was killed (only call while holding the run's lock)."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


class RunLock:
    """An exclusive lock on a run folder, held while training; ``with RunLock(run_dir): ...``."""

    # run folders this process holds: POSIX locks do not exclude their own process, and closing any descriptor
    # of the lock file would release them
    _held: ClassVar[set[str]] = set()

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "train.lock"
        self._fd: int | None = None

    def _refuse(self, holder: str) -> None:
        raise RunLocked(f"{self.path.parent} is being trained by {holder or 'another process'} (it holds "
                        f"{self.path}); wait for it to finish or stop it (the lock goes with the process)")

    def check(self) -> None:
        """Raise :class:`RunLocked` when the run is being trained now; holds nothing. A trainer calls it before
        its expensive setup (memory banks), so a second one stops at once."""
        if str(self.path.resolve()) in self._held:
            self._refuse(f"this process (pid {os.getpid()})")
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise ConfigError(f"the run folder {self.path.parent} cannot be used: it, or a folder above it, is a "
                              "file; give another run folder") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._refuse(os.pread(fd, 512, 0).decode(errors="replace").strip())
        finally:
            os.close(fd)  # also releases the probe's own lock

    def __enter__(self) -> "RunLock":
        self.check()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # POSIX locks also hold on NFS
        except OSError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            os.close(fd)
            self._refuse(holder)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        self._fd = fd
        self._held.add(str(self.path.resolve()))
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            self._held.discard(str(self.path.resolve()))
            os.ftruncate(self._fd, 0)
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
