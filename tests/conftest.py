import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Downloads and cached statistics of a test never touch the user's data/cache."""
    monkeypatch.setenv("ART2REAL_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """A dataset folder with 4 random paintings and 5 random photos per split (64 px)."""
    rng = np.random.default_rng(0)
    for split, n in (("trainA", 4), ("trainB", 5), ("testA", 2), ("testB", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / split / f"{split}_{i}.png")
    return tmp_path


from .fake_cuda import cuda_stand_in  # noqa: F401  (the CUDA stand-in fixture, for any test)


def sigkill_when_logged(proc, log: Path, lines: int, timeout: float = 120) -> None:
    """SIGKILL a training process once its ``losses.csv`` has more than ``lines`` lines (a point past a
    checkpoint the test chose); fails when the run ended before that."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) > lines:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
