"""Did a change make training slower? CycleGAN and Art2Real step times of another commit and of the working tree,
measured alternately in fresh processes on the same machine, so drift and other load hit both alike.

The other commit's ``art2real`` package is taken with ``git archive`` into a temporary folder; both sides use the
same data, cache (memory banks) and interpreter. The timed part uses only what every version since the method
registry has: ``methods.get``, ``get_config``, ``semantic.build_context`` and ``Method.train_step``.

Run: ``python benchmarks/ab_train.py --before main [--preset demo] [--rounds 3] [--repeat 20] [--device cpu]``;
prints one line per process and the best (min) and median step times of each side.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(preset: str, repeat: int, device: str) -> dict:
    import art2real
    from art2real import methods
    from art2real.config import get_config, pick_device, seed_everything
    from art2real.data.dataset import UnpairedDataset
    from art2real.data.registry import dataset_root
    from art2real.semantic import build_context

    over = {"data.dataset": "demo", "train.validate_every": 0}
    steps = {}
    for key in ("cyclegan", "art2real"):
        cfg = get_config(preset, over, method=key, device=device)
        context = build_context(cfg, progress=False) if methods.get(key).uses_banks else None
        seed_everything(cfg.seed)
        steps[key] = methods.get(key)(cfg, pick_device(device), context).train_step
    d = cfg.data
    item = UnpairedDataset(dataset_root(d.dataset), d.image_size, "train", d.max_images, d.crop_margin, d.flip,
                           cfg.seed).item(0, 0)
    batch = {"A": item["A"][None], "B": item["B"][None], "A_name": [item["A_name"]],
             "A_place": item["A_place"][None]}
    times = {key: [] for key in steps}
    for step in steps.values():  # warm-up
        step(batch)
    for _ in range(repeat):
        for key, step in steps.items():
            start = time.perf_counter()
            step(batch)
            times[key].append(time.perf_counter() - start)
    return {"code": str(Path(art2real.__file__).parents[1]), "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="a commit, branch or tag (default: main)")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--rounds", type=int, default=3, help="before/after process pairs")
    parser.add_argument("--repeat", type=int, default=20, help="timed steps of each method per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2])))
        return
    with tempfile.TemporaryDirectory(prefix="art2real-before-") as before:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "art2real"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
        sides = {f"before ({args.before})": before, "after (working tree)": str(REPO)}
        times: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
        for _ in range(args.rounds):
            for side, code in sides.items():
                out = subprocess.run([sys.executable, __file__, "--child", args.preset, str(args.repeat),
                                      args.device], check=True, capture_output=True, text=True,
                                     env={**os.environ, "PYTHONPATH": code, "ART2REAL_HOME": str(REPO)})
                result = json.loads(out.stdout.strip().splitlines()[-1])
                for key, values in result["times"].items():
                    times[side].setdefault(key, []).extend(values)
                print(side, {k: round(min(v), 4) for k, v in result["times"].items()}, flush=True)
    print(f"{args.preset} on {args.device}, {args.rounds} x {args.repeat} steps per method and side (seconds):")
    for side, per in times.items():
        print(f"  {side:28s}" + "  ".join(f"{k} min {min(v):.4f} median {sorted(v)[len(v) // 2]:.4f}"
                                           for k, v in per.items()))


if __name__ == "__main__":
    main()
