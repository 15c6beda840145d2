"""Seconds per training iteration of CUT, FastCUT and both with memory banks, beside Cycle-GAN and Art2Real.

Every step is the registered method's own ``train_step`` on a batch of the demo data, built as the Trainer builds it
(``art2real.train.trainer.build_method``: the preset's sizes, the method's preset values, the memory banks of the
setting for the ``+ memory banks`` rows). All steps of all presets are timed interleaved in one process, so load
from other work hits them alike; wall-clock and process CPU seconds are recorded, and each step's CPU time is
divided by Cycle-GAN's at the same preset. Run: ``python benchmarks/bench_cut.py [--repeat 5] [--threads 1]``;
writes results/benchmarks/cut.json (cut_threads<N>.json with ``--threads N``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from art2real.config import get_config  # noqa: E402
from art2real.nn.networks import count_parameters  # noqa: E402
from art2real.paths import cache_dir  # noqa: E402
from art2real.train.trainer import Trainer  # noqa: E402

METHODS = ("cyclegan", "art2real", "cut", "cut_banks", "fastcut", "fastcut_banks")
# extra candidates: a preset with overrides (the demo with a smaller PatchNCE head)
VARIANTS = {"demo_nc64_p64": ("demo", {"cut.netf_nc": 64, "cut.num_patches": 64})}


def build(method: str, preset: str, overrides: dict):
    """(the step, its metadata) for a method at a preset, on the demo data."""
    cfg = get_config(preset, {"data.dataset": "demo", "train.validate_every": 0, **overrides}, method=method)
    trainer = Trainer(cfg, cache_dir() / "bench_cut" / f"{method}_{preset}", validator=None, progress=False)
    batch = default_collate([trainer.dataset.item(0, 0)])
    meta = {"image_size": cfg.data.image_size, "ngf": cfg.model.ngf, "n_blocks": cfg.model.n_blocks,
            "ndf": cfg.model.ndf, "params": {k: count_parameters(n) for k, n in trainer.method.nets.items()}}
    if method.startswith(("cut", "fastcut")):
        meta.update(netF_nc=cfg.cut.netf_nc, num_patches=cfg.cut.num_patches)
    return (lambda: trainer.method.train_step(batch)), meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=["smoke", "demo", "cpu"],
                        help=f"presets (paper is slow on a CPU) or variants: {', '.join(VARIANTS)}")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 makes CPU seconds a fair "
                        "measure on a busy machine, as no thread spins waiting for a descheduled sibling")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, meta = {}, {}
    for name in args.presets:
        preset, overrides = VARIANTS.get(name, (name, {}))
        if ("cyclegan", preset) not in steps:  # Cycle-GAN at the same preset is every step's reference
            steps[("cyclegan", preset)], meta[("cyclegan", preset)] = build("cyclegan", preset, {})
        for method in args.methods:
            if name in VARIANTS and not method.startswith(("cut", "fastcut")):
                continue  # the variants change CUT settings only
            if (method, name) not in steps:
                steps[(method, name)], meta[(method, name)] = build(method, preset, overrides)
    wall, cpu = {k: [] for k in steps}, {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    for _ in range(args.repeat):  # interleaved, so drift hits all alike
        for key, fn in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    # CPU seconds (all threads) are what a step costs; on a machine shared with other work the wall clock also
    # counts waiting, so the ratios are taken on CPU time
    results = {}
    for (method, name), times in cpu.items():
        base = median(cpu[("cyclegan", VARIANTS.get(name, (name,))[0])])
        results[f"{method}_{name}"] = {"wall_s": round(median(wall[(method, name)]), 4),
                                       "cpu_s": round(median(times), 4),
                                       "cpu_over_cyclegan": round(median(times) / base, 3), **meta[(method, name)]}
    for name, r in results.items():
        print(name, json.dumps(r))
    save("cut" if not args.threads else f"cut_threads{args.threads}", {"repeat": args.repeat, "steps": results})


if __name__ == "__main__":
    main()
