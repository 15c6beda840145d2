"""Seconds per CUT / FastCUT training iteration at candidate preset sizes, beside CycleGAN's demo iteration.

One iteration is the authors' ``optimize_parameters``: G forward, D step, then G and F step on GAN + PatchNCE
(+ identity PatchNCE for CUT). Every candidate and CycleGAN's demo step are timed interleaved in one process, so
load from other work hits them alike; both wall-clock and process CPU seconds are recorded. Run: ``python benchmarks/bench_cut.py [--repeat 5]``;
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
from art2real.nn.cut import (PatchNCELoss, build_cut_networks, discriminator_loss, generator_input,  # noqa: E402
                             generator_losses)
from art2real.nn.networks import count_parameters  # noqa: E402
from art2real.paths import cache_dir  # noqa: E402
from art2real.train.trainer import Trainer  # noqa: E402

# name: (image_size, ngf, n_blocks, ndf, n_layers_d, netF_nc, num_patches)
CANDIDATES = {
    "smoke": (32, 4, 5, 4, 2, 16, 64),
    "demo": (128, 16, 6, 32, 3, 256, 256),
    "demo_nc64_p64": (128, 16, 6, 32, 3, 64, 64),
    "cpu": (128, 32, 6, 64, 3, 256, 256),
    "paper": (256, 64, 9, 64, 3, 256, 256),
}
MODES = {"CUT": dict(nce_idt=True, lambda_nce=1.0, flip=False), "FastCUT": dict(nce_idt=False, lambda_nce=10.0,
                                                                               flip=True)}


class CutStep:
    """The authors' iteration, written out for timing (the training loop proper lives with the method)."""

    def __init__(self, size, ngf, n_blocks, ndf, n_layers_d, nc, num_patches, nce_idt, lambda_nce, flip):
        torch.manual_seed(0)
        self.G, self.D, self.F = build_cut_networks(ngf, n_blocks, ndf, n_layers_d, nc, image_size=size)
        self.opts = [torch.optim.Adam(n.parameters(), 2e-4, betas=(0.5, 0.999)) for n in (self.G, self.D, self.F)]
        self.crit = PatchNCELoss(0.07)
        self.num_patches, self.nce_idt, self.lambda_nce, self.flip = num_patches, nce_idt, lambda_nce, flip
        self.x, self.y = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1
        self.params = {n: count_parameters(net) for n, net in zip("GDF", (self.G, self.D, self.F))}
        self.calls = 0

    def __call__(self) -> None:
        opt_G, opt_D, opt_F = self.opts
        flipped = self.flip and self.calls % 2 == 0  # FastCUT's coin, made even for timing
        self.calls += 1
        fake = self.G(generator_input(self.x, self.y, self.nce_idt, flipped))
        fake_B, idt_B = fake[:1], (fake[1:] if self.nce_idt else None)
        self.D.requires_grad_(True)
        opt_D.zero_grad(set_to_none=True)
        discriminator_loss(self.D, self.y, fake_B).backward()
        opt_D.step()
        self.D.requires_grad_(False)
        opt_G.zero_grad(set_to_none=True)
        opt_F.zero_grad(set_to_none=True)
        generator_losses(self.G, self.D, self.F, self.crit, self.x, self.y, fake_B, idt_B,
                         num_patches=self.num_patches, lambda_nce=self.lambda_nce, flipped=flipped)["G"].backward()
        opt_G.step()
        opt_F.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--candidates", nargs="+", default=[c for c in CANDIDATES if c != "paper"])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 makes CPU seconds a fair "
                        "measure on a busy machine, as no thread spins waiting for a descheduled sibling")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cyc = Trainer(get_config("demo", {"data.dataset": "demo", "train.validate_every": 0}, method="cyclegan"),
                  cache_dir() / "bench_cut" / "cyclegan_demo", validator=None, progress=False)
    batch = default_collate([cyc.dataset.item(0, 0)])
    steps = {"cyclegan_demo": lambda: cyc.method.train_step(batch)}
    meta = {}
    for cand in args.candidates:
        for mode, flags in MODES.items():
            step = CutStep(*CANDIDATES[cand], **flags)
            steps[f"{mode}_{cand}"] = step
            meta[f"{mode}_{cand}"] = dict(zip(("image_size", "ngf", "n_blocks", "ndf", "n_layers_d", "netF_nc",
                                               "num_patches"), CANDIDATES[cand]), params=step.params)
    wall, cpu = {k: [] for k in steps}, {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    for _ in range(args.repeat):  # interleaved, so drift hits all alike
        for name, fn in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    # CPU seconds (all threads) are what a step costs; on a machine shared with other work the wall clock also
    # counts waiting, so the ratios are taken on CPU time
    base = median(cpu["cyclegan_demo"])
    results = {name: {"wall_s": round(median(wall[name]), 4), "cpu_s": round(median(cpu[name]), 4),
                      "cpu_over_cyclegan_demo": round(median(cpu[name]) / base, 3), **meta.get(name, {})}
               for name in steps}
    for name, r in results.items():
        print(name, json.dumps(r))
    save("cut" if not args.threads else f"cut_threads{args.threads}", {"repeat": args.repeat, "steps": results})


if __name__ == "__main__":
    main()
