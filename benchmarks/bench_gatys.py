"""Style-transferred reals: seconds for a preset's whole row on the demo photos, and a sheet of style weights.

The row (``gatys``'s ``produce``: every demo test photo at the preset's size and iterations) is made in a fresh
temporary folder, so nothing is skipped; the feature network is the one ``gatys.feature_network=auto`` picks here.
``--compare-threads`` times 1 against 2 torch threads; ``--sheet PNG`` draws content | style | one result per
``--weights`` value for a few demo photos (how Lite0's default style weight was chosen). Run:
``python benchmarks/bench_gatys.py [--presets smoke demo] [--threads N] [--compare-threads 4] [--sheet x.png]``;
writes results/benchmarks/gatys.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from art2real import methods  # noqa: E402
from art2real.config import get_config  # noqa: E402
from art2real.data.images import to_image  # noqa: E402
from art2real.data.registry import dataset_root  # noqa: E402
from art2real.methods.gatys import _load, plan  # noqa: E402
from art2real.nn.style import feature_network, stylise  # noqa: E402


def row_seconds(preset: str, threads: int | None) -> dict:
    cfg = get_config(preset, {"data.dataset": "demo", "gatys.cpu_threads": threads}, method="gatys", device="cpu")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        start, cpu = time.perf_counter(), time.process_time()
        source = methods.get("gatys").produce(cfg, Path(folder), progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"preset": preset, "images": source["images"], "image_size": cfg.data.image_size,
            "iterations": cfg.gatys.iterations, "network": source["substitute"] or source["feature_network"],
            "seconds": round(seconds, 1), "seconds_per_image": round(seconds / source["images"], 2),
            "cpu_seconds": round(cpu, 1), "threads": threads or torch.get_num_threads(),
            "load_average_before": round(load, 2)}


def thread_seconds(repeat: int, iterations: int = 50) -> dict:
    """Seconds for ``iterations`` iterations on one demo photo at 128 px, 1 and 2 threads taking turns (sorted:
    the smallest is the least disturbed by other processes)."""
    cfg = get_config("demo", {"data.dataset": "demo"}, method="gatys", device="cpu")
    net = feature_network(cfg.gatys.feature_network, "cpu", cfg.gatys.pooling)
    pair, root, before = plan(cfg)[0], dataset_root("demo"), torch.get_num_threads()
    content, style = _load(root / pair["content"], 128, "cpu"), _load(root / pair["style"], 128, "cpu")
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeat):
        for n in times:
            torch.set_num_threads(n)
            start = time.perf_counter()
            stylise(net, content, style, beta=1e2, iterations=iterations)
            times[n].append(round(time.perf_counter() - start, 2))
    torch.set_num_threads(before)
    return {"iterations": iterations, "seconds_by_threads": {n: sorted(v) for n, v in times.items()},
            "load_average": round(os.getloadavg()[0], 2)}


def weight_sheet(path: Path, weights: list[float], preset: str, photos: int) -> None:
    cfg = get_config(preset, {"data.dataset": "demo"}, method="gatys", device="cpu")
    g, root, size = cfg.gatys, dataset_root("demo"), cfg.data.image_size
    net = feature_network(g.feature_network, "cpu", g.pooling)
    rows = []
    for pair in plan(cfg)[::max(1, len(plan(cfg)) // photos)][:photos]:
        content, style = _load(root / pair["content"], size, "cpu"), _load(root / pair["style"], size, "cpu")
        results = [stylise(net, content, style, content_layer=g.content_layer, style_layers=g.style_layers,
                           alpha=g.content_weight, beta=w, iterations=g.iterations, init=g.init).image
                   for w in weights]
        rows.append(torch.cat([content, style, *results], dim=3))
    to_image(torch.cat(rows, dim=2)[0]).save(path)
    print(f"sheet: {path} (columns: content, style, beta = {', '.join(f'{w:g}' for w in weights)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "demo"])
    parser.add_argument("--threads", type=int, default=1, help="gatys.cpu_threads for the rows (0: torch's default)")
    parser.add_argument("--compare-threads", type=int, default=0, metavar="REPEAT",
                        help="also time 50 iterations with 1 and 2 threads, taking turns REPEAT times")
    parser.add_argument("--sheet", type=Path, help="also draw a sheet of style weights to this PNG")
    parser.add_argument("--weights", nargs="+", type=float, default=[1e1, 1e2, 1e3, 1e4])
    parser.add_argument("--photos", type=int, default=3)
    args = parser.parse_args()
    result = {"rows": [row_seconds(p, args.threads or None) for p in args.presets]}
    if args.compare_threads:
        result["threads"] = thread_seconds(args.compare_threads)
    save("gatys", result)
    if args.sheet:
        weight_sheet(args.sheet, args.weights, "demo", args.photos)


if __name__ == "__main__":
    main()
