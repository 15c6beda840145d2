"""Seconds per DRIT training iteration at each preset, through the method's ``train_step``, beside Cycle-GAN's.

Both methods are built by the kit (``build_method``, the preset's sizes) and fed pairs of the demo set at their
own crop size and batch (DRIT 2, Cycle-GAN 1). DRIT's two kinds of iteration are timed separately: a
content-discriminator-only one (a batch at position 0 of a long epoch; 2 of every d_iter = 3) and a full one
(a batch that says no position: the forward, the five discriminator steps, the two encoder/generator steps);
``mean_iteration`` weighs them as the authors' loop does. The three jobs take turns, so drift on a shared machine
hits them alike; wall seconds (``*_s``) and process CPU seconds (``*_cpu_s``) are both recorded, with the
1-minute load average before and after, and the ratios use CPU seconds, which other work inflates far less.
Per epoch: DRIT sees 2 pairs an iteration, so an epoch has half as many iterations as Cycle-GAN's.

Run: ``python benchmarks/bench_drit.py [--presets smoke demo cpu paper] [--repeat 5] [--threads N]``; writes
results/benchmarks/drit.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from art2real.config import get_config  # noqa: E402
from art2real.data.dataset import UnpairedDataset  # noqa: E402
from art2real.train.trainer import build_method, check_dataset  # noqa: E402


def batch_of(cfg, n: int) -> dict:
    d = cfg.data
    data = UnpairedDataset(check_dataset(cfg), d.image_size, "train", d.max_images, d.crop_margin, d.flip,
                           cfg.seed)
    return default_collate([data.item(0, i) for i in range(n)])


def bench_preset(preset: str, repeat: int) -> dict:
    values = {"data.dataset": "demo", "train.validate_every": 0, "data.max_images": None}
    drit_cfg = get_config(preset, values, method="drit", device="cpu")
    cycle_cfg = get_config(preset, values, method="cyclegan", device="cpu")
    drit, cyclegan = build_method(drit_cfg, progress=False), build_method(cycle_cfg, progress=False)
    pair = batch_of(drit_cfg, drit_cfg.train.batch_size)
    content_only = {**pair, "index": torch.tensor([0, 1]), "epoch_size": torch.tensor([10 ** 6] * 2)}
    single = batch_of(cycle_cfg, 1)
    assert list(drit.train_step(content_only)) == ["disContent"] and len(drit.train_step(pair)) > 1
    jobs = {"content_only": lambda: drit.train_step(content_only), "full": lambda: drit.train_step(pair),
            "cyclegan": lambda: cyclegan.train_step(single)}
    wall = {name: [] for name in jobs}
    cpu = {name: [] for name in jobs}
    load_before = os.getloadavg()[0]
    for _ in range(repeat):  # interleaved, so drift hits all alike
        for name, job in jobs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            job()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    med = {k: sorted(v)[len(v) // 2] for k, v in wall.items()}
    med_cpu = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
    d_iter = drit_cfg.drit.d_iter

    def mean_iteration(m):
        return (m["full"] + (d_iter - 1) * m["content_only"]) / d_iter

    return {"crop_size": drit_cfg.data.image_size, "cyclegan_size": cycle_cfg.data.image_size,
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            **{f"{k}_s": round(v, 4) for k, v in med.items()},
            "mean_iteration_s": round(mean_iteration(med), 4),
            **{f"{k}_cpu_s": round(v, 4) for k, v in med_cpu.items()},
            "mean_iteration_cpu_s": round(mean_iteration(med_cpu), 4),
            "full_over_cyclegan": round(med_cpu["full"] / med_cpu["cyclegan"], 2),
            "mean_iteration_over_cyclegan": round(mean_iteration(med_cpu) / med_cpu["cyclegan"], 2),
            "params": {n: sum(p.numel() for p in net.parameters()) for n, net in drit.nets.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "demo", "cpu", "paper"],
                        choices=["smoke", "demo", "cpu", "paper"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for preset in args.presets:
        torch.manual_seed(0)
        results[preset] = bench_preset(preset, args.repeat)
        print(preset, json.dumps({k: v for k, v in results[preset].items() if k != "params"}), flush=True)
    save("drit", {"repeat": args.repeat, "threads": torch.get_num_threads(), "presets": results})


if __name__ == "__main__":
    main()
