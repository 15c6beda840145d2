"""Seconds per training iteration of each preset, CycleGAN and Art2Real side by side in one process.

Art2Real at the paper preset uses the paper-scale banks of bench_banks.py when they exist (run it first), else
banks built from the demo photos (stated in the output). Run: ``python benchmarks/bench_train.py
[--presets smoke demo cpu paper] [--repeat 5]``; writes results/benchmarks/train.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from art2real.bank.memory import MemoryBanks  # noqa: E402
from art2real.config import get_config  # noqa: E402
from art2real.model import SemanticContext, build_context, painting_masks  # noqa: E402
from art2real.paths import cache_dir  # noqa: E402
from art2real.segment.kmeans import KMeansSegmenter  # noqa: E402
from art2real.train.trainer import Trainer  # noqa: E402


def paper_scale_context(cfg):
    root = cache_dir() / "bench_banks" / "banks"
    if not (root / "meta.json").exists():
        return build_context(cfg, progress=False), "banks from the demo photos (run bench_banks.py for paper scale)"
    banks = MemoryBanks.load(root, cfg.bank)
    segmenter = KMeansSegmenter.load(root / "segmenter.npz")
    counts = {k: sum(v.values()) for k, v in banks.meta["counts"].items()}
    return SemanticContext(cfg, banks, segmenter, painting_masks(cfg, segmenter, progress=False)), \
        f"paper-scale banks {counts}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "demo", "cpu", "paper"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for preset in args.presets:
        over = {"data.dataset": "demo", "train.validate_every": 0}
        cyc = Trainer(get_config(preset, over, method="cyclegan"), cache_dir() / "bench_train" / f"c_{preset}")
        cfg = get_config(preset, over, method="art2real")
        context, banks_note = paper_scale_context(cfg) if preset == "paper" else (build_context(cfg, False), "")
        a2r = Trainer(cfg, cache_dir() / "bench_train" / f"a_{preset}", context=context)
        item = cyc.dataset.item(0, 0)
        batch = {"A": item["A"][None], "B": item["B"][None], "A_name": [item["A_name"]]}
        times = {"cyclegan": [], "art2real": []}
        for trainer in (cyc, a2r):  # warm-up
            trainer.step(batch)
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            for name, trainer in (("cyclegan", cyc), ("art2real", a2r)):
                start = time.perf_counter()
                trainer.step(batch)
                times[name].append(time.perf_counter() - start)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        results[preset] = {"image_size": cfg.data.image_size, "cx_pooling": cfg.cx.pooling,
                           "cyclegan_s": round(med["cyclegan"], 4), "art2real_s": round(med["art2real"], 4),
                           "ratio": round(med["art2real"] / med["cyclegan"], 3),
                           "iterations_per_10_min_cyclegan": int(600 / med["cyclegan"]), "banks": banks_note}
        print(preset, json.dumps(results[preset]))
    save("train", {"repeat": args.repeat, "presets": results})


if __name__ == "__main__":
    main()
