import os
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


# a training in its own process: python -c TRAIN DATASET RUN_DIR METHOD SETTINGS_JSON (smoke preset, CPU)
TRAIN = """
import json, sys
from art2real.config import get_config
from art2real.train.trainer import Trainer
dataset, run, method, settings = sys.argv[1:5]
cfg = get_config("smoke", {"data.dataset": dataset, **json.loads(settings)}, method=method, device="cpu")
Trainer(cfg, run, progress=False).fit(progress=False)
"""


def kill_and_resume(method: str, settings: dict, dataset: Path, tmp_path: Path, kill_after: int,
                    timeout: float = 120) -> tuple[dict, dict, dict]:
    """Train ``method`` at the smoke preset with ``settings`` in its own process twice: straight through
    (``tmp_path/straight``), and killed with SIGKILL once its log has more than ``kill_after`` lines, then resumed
    (``tmp_path/killed``). Returns the straight run's last.pt, the killed run's last.pt at the kill and after the
    resume."""
    import json
    import subprocess
    import sys

    from art2real.train.checkpoint import load_checkpoint

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    def command(run: Path) -> list[str]:
        return [sys.executable, "-c", TRAIN, str(dataset), str(run), method, json.dumps(settings)]

    subprocess.run(command(straight), check=True, env=env)
    proc = subprocess.Popen(command(killed), env=env)
    sigkill_when_logged(proc, killed / "losses.csv", kill_after, timeout)
    at_kill = load_checkpoint(killed / "checkpoints" / "last.pt")
    subprocess.run(command(killed), check=True, env=env)
    return (load_checkpoint(straight / "checkpoints" / "last.pt"), at_kill,
            load_checkpoint(killed / "checkpoints" / "last.pt"))


def six_a_side(dataset: Path) -> None:
    """tiny_dataset with 6 paintings and 6 photos (copies): 6 iterations an epoch at batch 1."""
    for split, n in (("trainA", 2), ("trainB", 1)):
        for i in range(n):
            (dataset / split / f"extra_{i}.png").write_bytes((dataset / split / f"{split}_0.png").read_bytes())


def assert_same_nets(a: dict, b: dict) -> None:
    """Two checkpoints hold bit-identical network weights."""
    import torch

    assert a["method"]["nets"].keys() == b["method"]["nets"].keys()
    for net, weights in a["method"]["nets"].items():
        for key, value in weights.items():
            assert torch.equal(value, b["method"]["nets"][net][key]), f"{net}.{key} differs after resume"
