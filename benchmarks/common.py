"""Shared helpers for the benchmark scripts: timing, peak memory, writing results/benchmarks/*.json."""
from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

import torch

from art2real.io import write_json
from art2real.paths import results_dir


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def timed(fn, repeat: int = 3, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__}


def save(name: str, result: dict) -> Path:
    path = results_dir() / "benchmarks" / f"{name}.json"
    write_json(path, {"machine": machine(), **result})
    print(json.dumps(result, indent=1, default=str))
    print(f"written: {path}")
    return path
