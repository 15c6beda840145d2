"""Shared pieces of the user-study tests: small studies, a study server in a child process, rater clients."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from art2real.study import Manifest, build_study
from art2real.study.demo import stand_in_translations

from .conftest import DEMO, REPO

COMPETITORS = ("Cycle-GAN", "UNIT", "DRIT")


def random_paintings(folder: Path, n: int, size: int = 24, seed: int = 0) -> Path:
    """``n`` tiny random paintings (JPEG, to check that any extension works)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"painting_{i:03d}.jpg")
    return folder


_STAND_INS: dict[Path, dict[str, Path]] = {}


def stand_ins(paintings: Path, tmp_root: Path) -> dict[str, Path]:
    """Stand-in translation folders of ``paintings``, made once per test session."""
    if paintings not in _STAND_INS:
        _STAND_INS[paintings] = stand_in_translations(paintings, tmp_root / f"stand_ins_{len(_STAND_INS)}")
    return dict(_STAND_INS[paintings])


def make_study(tmp_path: Path, paintings: Path = DEMO / "testA", name: str = "study", competitors=COMPETITORS,
               **build_options) -> Path:
    """A study of stand-in translations of ``paintings`` against competitors of the paper."""
    folders = stand_ins(paintings, tmp_path.parent)
    art2real = folders.pop("Art2Real")
    return build_study(tmp_path / name, paintings, art2real, {c: folders[c] for c in competitors}, **build_options)


def gold_choice(manifest: Manifest, item_id: str) -> str | None:
    """The right answer of a gold pair, None for a pair."""
    return manifest.items[item_id].answer


class StudyServer:
    """``python -m art2real.study serve`` in a child process on a free port of 127.0.0.1."""

    def __init__(self, study: Path, *args: str, log: Path | None = None):
        self.study, self.args = study, args
        self.log = log or study.parent / "server.log"
        self.proc = None
        self.url = None

    def start(self, timeout: float = 30.0) -> StudyServer:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "art2real.study", "serve", "--study", str(self.study), "--port", "0",
                 *self.args], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if "listening on" in line:
                    self.url = line.split("listening on", 1)[1].strip()
                    return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"study server did not start; see {self.log}:\n{self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
