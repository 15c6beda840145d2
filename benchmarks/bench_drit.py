"""Seconds per DRIT training iteration at each preset (2-image batches, the authors' update order).

A content-discriminator-only iteration (2 of every d_iter = 3) and a full one (forward, the five discriminator
steps, the two encoder/generator steps) are timed separately; ``mean_iteration_s`` weighs them as train.py does.
CycleGAN's step at the kit preset of the same name is timed interleaved with them, in the same process. Wall
seconds (``*_s``) and process CPU seconds (``*_cpu_s``) are both recorded; the ratios use CPU seconds, which
other work on a shared machine inflates far less than wall time.
Run: ``python benchmarks/bench_drit.py [--presets smoke demo cpu paper] [--repeat 5]``; writes
results/benchmarks/drit.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from art2real.config import get_config  # noqa: E402
from art2real.nn.drit import (NETWORKS, DritNets, build_optimizers, count_parameters, drit_forward,  # noqa: E402
                              drit_preset, update_content_discriminator, update_discriminators,
                              update_encoders_generator)
from art2real.paths import cache_dir  # noqa: E402
from art2real.train.trainer import Trainer  # noqa: E402


def bench_preset(preset: str, repeat: int) -> dict:
    torch.manual_seed(0)
    cfg = drit_preset(preset)
    nets = DritNets(cfg)
    opts = build_optimizers(nets, cfg)
    a = torch.rand(cfg.batch_size, 3, cfg.crop_size, cfg.crop_size) * 2 - 1
    b = torch.rand_like(a)

    def full():
        f = drit_forward(nets, a, b, cfg.mode_seeking)
        update_discriminators(nets, opts, f, cfg)
        update_encoders_generator(nets, opts, f, cfg)

    cyclegan = Trainer(get_config(preset, {"data.dataset": "demo", "train.validate_every": 0}, method="cyclegan"),
                       cache_dir() / "bench_drit" / preset)
    item = cyclegan.dataset.item(0, 0)
    batch = {"A": item["A"][None], "B": item["B"][None], "A_name": [item["A_name"]]}
    jobs = {"content_only": lambda: update_content_discriminator(nets, opts, a, b, cfg), "full": full,
            "cyclegan": lambda: cyclegan.step(batch)}
    wall = {name: [] for name in jobs}
    cpu = {name: [] for name in jobs}
    for job in jobs.values():  # warm-up
        job()
    for _ in range(repeat):  # interleaved, so drift hits all alike
        for name, job in jobs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            job()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    med = {k: sorted(v)[len(v) // 2] for k, v in wall.items()}
    med_cpu = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}

    def mean_iteration(m):
        return (m["full"] + (cfg.d_iter - 1) * m["content_only"]) / cfg.d_iter

    return {"crop_size": cfg.crop_size,
            **{f"{k}_s": round(v, 4) for k, v in med.items()},
            "mean_iteration_s": round(mean_iteration(med), 4),
            **{f"{k}_cpu_s": round(v, 4) for k, v in med_cpu.items()},
            "mean_iteration_cpu_s": round(mean_iteration(med_cpu), 4),
            "full_over_cyclegan": round(med_cpu["full"] / med_cpu["cyclegan"], 2),
            "mean_iteration_over_cyclegan": round(mean_iteration(med_cpu) / med_cpu["cyclegan"], 2),
            "params": {n: count_parameters(getattr(nets, n)) for n in NETWORKS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "demo", "cpu", "paper"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for preset in args.presets:
        results[preset] = bench_preset(preset, args.repeat)
        print(preset, json.dumps(results[preset]))
    save("drit", {"repeat": args.repeat, "presets": results})


if __name__ == "__main__":
    main()
