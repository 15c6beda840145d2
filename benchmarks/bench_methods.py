"""Seconds per training iteration of every registered trained method, next to Cycle-GAN, at each preset.

Each method is built by the kit (``build_method``, the preset's sizes on the demo set) and timed through its
``train_step`` on demo pairs at the method's batch size (1; DRIT 2, its full update), methods taking turns step
by step, so that other load on a shared machine slows all of them alike; the median of the repeats is kept, with
the 1-minute load average before and after.
A newly registered method is timed without any change here. Methods with memory banks (Art2Real) use banks from
the demo photos (k-means segmentation), so at the paper preset their retrieval is cheaper than on paper-scale
banks: benchmarks/bench_banks.py times that.

Run: ``python benchmarks/bench_methods.py [--presets demo paper] [--methods unit cyclegan ...] [--repeat 5]
[--device cpu]``; prints a table and writes results/benchmarks/methods.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from art2real import methods  # noqa: E402
from art2real.config import get_config  # noqa: E402
from art2real.data.dataset import UnpairedDataset  # noqa: E402
from art2real.train.trainer import build_method, check_dataset  # noqa: E402

BASELINE = "cyclegan"


def config(preset: str, key: str, device: str):
    values = {"data.dataset": "demo", "train.validate_every": 0}
    if methods.get(key).uses_banks:  # banks of the demo photos, offline at every preset
        values["segment.backend"] = "kmeans"
    return get_config(preset, values, method=key, device=device)


def stepper(cfg):
    """(one train_step on a fixed demo pair, parameter counts per network)."""
    d = cfg.data
    dataset = UnpairedDataset(check_dataset(cfg), d.image_size, "train", d.max_images, d.crop_margin, d.flip,
                              cfg.seed)
    # a batch of the method's size (DRIT trains on pairs); without an epoch position DRIT does its full update,
    # which 1 iteration in d_iter is (benchmarks/bench_drit.py times the mix)
    batch = default_collate([dataset.item(i, 0) for i in range(cfg.train.batch_size)])
    method = build_method(cfg, progress=False)
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in method.nets.items()}
    return (lambda: method.train_step(batch)), params


def interleaved_medians(steps: dict, repeat: int) -> dict[str, float]:
    for step in steps.values():  # warm-up: first-call allocations, lazy inits
        step()
    times = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"], choices=["smoke", "demo", "cpu", "paper"])
    parser.add_argument("--methods", nargs="+", default=methods.names(trained=True),
                        choices=methods.names(trained=True))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    keys = [BASELINE] + [k for k in args.methods if k != BASELINE]
    results = {"repeat": args.repeat, "device": args.device, "presets": {}}
    for preset in args.presets:
        torch.manual_seed(0)
        steps, rows = {}, {}
        for key in keys:
            cfg = config(preset, key, args.device)
            steps[key], params = stepper(cfg)
            rows[key] = {"image_size": cfg.data.image_size, "batch_size": cfg.train.batch_size, "params": params}
        load_before = os.getloadavg()[0]
        seconds = interleaved_medians(steps, args.repeat)
        load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        for key in keys:
            rows[key].update(seconds=round(seconds[key], 4), vs_cyclegan=round(seconds[key] / seconds[BASELINE], 2))
        results["presets"][preset] = {"load_average_1min": load, "methods": rows}
        print(f"{preset}: load average before / after {load}")
        for key, row in rows.items():
            print(f"  {key:10s} {row['image_size']:4d} px  {row['seconds']:7.3f} s/iteration  "
                  f"{row['vs_cyclegan']:5.2f}x {BASELINE}  params {sum(row['params'].values()):,}")
    save("methods", results)


if __name__ == "__main__":
    main()
