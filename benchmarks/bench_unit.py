"""Seconds per UNIT training iteration (one discriminator update + one generator update, batch 1, as the
authors' train.py alternates them) at the proposed preset sizes, next to CycleGAN's demo step in the same process,
taking turns step by step.

Run: ``python benchmarks/bench_unit.py [--sizes smoke demo cpu paper] [--repeat 7]`` (paper is slow on a CPU);
prints a table and writes results/benchmarks/unit.json. The proposed preset sizes keep the authors' depth and
scale the widths; CycleGAN runs the kit's demo preset.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

from art2real.nn.unit import UnitNetworks, discriminator_losses, generator_losses  # noqa: E402

# image size, then UnitNetworks sizes; paper = the authors' unit_summer2winter_yosemite256_folder.yaml
SIZES = {
    "smoke": (32, dict(dim=4, n_res=1, dis_dim=4, dis_n_layer=2, dis_num_scales=2)),
    "demo": (128, dict(dim=16, n_res=4, dis_dim=16, dis_n_layer=4, dis_num_scales=3)),
    "cpu": (128, dict(dim=32, n_res=4, dis_dim=32, dis_n_layer=4, dis_num_scales=3)),
    "paper": (256, dict(dim=64, n_res=4, dis_dim=64, dis_n_layer=4, dis_num_scales=3)),
}


def unit_stepper(size: int, sizes: dict):
    nets = UnitNetworks(**sizes)
    adam = dict(lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
    opt_d = torch.optim.Adam(nets.discriminator_parameters(), **adam)
    opt_g = torch.optim.Adam(nets.generator_parameters(), **adam)
    x_a, x_b = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1

    def step():
        opt_d.zero_grad()
        discriminator_losses(nets, x_a, x_b)["total"].backward()
        opt_d.step()
        opt_g.zero_grad()
        generator_losses(nets, x_a, x_b)["total"].backward()
        opt_g.step()
    n_params = {"gen": sum(p.numel() for p in nets.gen_a.parameters()),
                "dis": sum(p.numel() for p in nets.dis_a.parameters())}
    return step, n_params


def cyclegan_demo_stepper():
    """The kit's CycleGAN method at the demo preset, one train_step on one demo pair."""
    from torch.utils.data import default_collate

    from art2real.config import get_config
    from art2real.data.dataset import UnpairedDataset
    from art2real.train.trainer import build_method, check_dataset
    cfg = get_config("demo", {"data.dataset": "demo", "train.validate_every": 0}, method="cyclegan")
    d = cfg.data
    dataset = UnpairedDataset(check_dataset(cfg), d.image_size, "train", d.max_images, d.crop_margin, d.flip,
                              cfg.seed)
    batch = default_collate([dataset.item(0, 0)])
    method = build_method(cfg, progress=False)
    return lambda: method.train_step(batch)


def interleaved_medians(steps: dict, repeat: int) -> dict:
    """Median seconds of each step, run in turns so that load changes on a shared machine hit all alike."""
    for step in steps.values():  # warm-up
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
    parser.add_argument("--sizes", nargs="+", default=["smoke", "demo", "cpu"], choices=list(SIZES))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    steps, results = {"cyclegan_demo": cyclegan_demo_stepper()}, {"machine": machine(), "repeat": args.repeat}
    for name in args.sizes:
        size, sizes = SIZES[name]
        steps[name], n_params = unit_stepper(size, sizes)
        results[name] = {"image_size": size, **sizes, "params": n_params}
    load_before = os.getloadavg()[0]
    seconds = interleaved_medians(steps, args.repeat)
    # other work on a shared machine slows every step, unevenly: the load shows how far to trust the ratios
    results["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    results["cyclegan_demo_s"] = round(seconds["cyclegan_demo"], 4)
    print(f"load average before / after: {results['load_average_1min']}")
    print(f"cyclegan demo (128 px, ngf 16 / 6 blocks, ndf 32): {seconds['cyclegan_demo']:.3f} s/iteration")
    for name in args.sizes:
        results[name].update(seconds=round(seconds[name], 4),
                             vs_cyclegan_demo=round(seconds[name] / seconds["cyclegan_demo"], 2))
        print(f"unit {name:5s} ({results[name]['image_size']} px, {SIZES[name][1]}): {seconds[name]:.3f} "
              f"s/iteration ({results[name]['vs_cyclegan_demo']:.2f}x cyclegan demo), params per network "
              f"{results[name]['params']}")
    save("unit", results)


if __name__ == "__main__":
    main()
