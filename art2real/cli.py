"""The ``art2real`` command: data, banks, train, translate, evaluate, chain."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _config(args):
    from .config import get_config
    from .data.registry import get_setting

    dataset = args.dataset
    if dataset is None:
        dataset = get_setting(args.artist).name
    return get_config(args.preset, [f"data.dataset={dataset}"] + list(args.set or []), method=args.method,
                      seed=args.seed, device=args.device)


def cmd_data(args) -> int:
    from .data.download import download
    from .data.images import scan_images
    from .data.registry import DATASETS, SPLITS, dataset_root, missing_splits

    if args.action == "list":
        for s in DATASETS.values():
            state = "present" if not missing_splits(s.path()) else "missing"
            print(f"{s.name:22s} {s.artist:11s} {state:8s} {s.url or '(embedded)'}")
        return 0
    if args.action == "download":
        print(download(args.name))
        return 0
    root = dataset_root(args.name)
    missing = missing_splits(root)
    problems = len(missing)
    for split in SPLITS:
        if split in missing:
            print(f"{root / split}: MISSING")
            continue
        report = scan_images(root / split)
        print(report.summary())
        problems += len(report.bad) + (not report.good)
    print("clean" if not problems else f"{problems} problem(s)")
    return 0 if not problems else 1


def cmd_banks(args) -> int:
    from .model import artefacts_dir, painting_masks, prepare_banks

    cfg = _config(args)
    banks, segmenter = prepare_banks(cfg)
    painting_masks(cfg, segmenter)
    print(banks.summary())
    print(f"masks and overlays: {artefacts_dir(cfg) / 'masks'}")
    return 0


def cmd_train(args) -> int:
    from .model import build_trainer

    cfg = _config(args)
    summary = build_trainer(cfg, args.run_dir).fit(resume=not args.no_resume)
    print(json.dumps(summary, indent=1))
    return 0


def cmd_translate(args) -> int:
    from .config import pick_device
    from .pretrained import load_release
    from .translate import load_generator, translate_folder

    device = pick_device(args.device)
    G = load_release(args.release, device) if args.release else load_generator(args.checkpoint, device)
    written = translate_folder(G, args.input, args.output, args.size, args.tile)
    print(f"{len(written)} image(s) written to {args.output}")
    return 0


def cmd_evaluate(args) -> int:
    from .config import pick_device
    from .metrics.evaluate import evaluate

    result = evaluate(args.images, args.reference, args.metrics, args.size, args.out, pick_device(args.device))
    print(json.dumps(result, indent=1))
    return 0


def cmd_chain(args) -> int:
    from .pipeline import run_chain

    run_chain(args.artist, args.preset, seed=args.seed, from_notebook=args.start, epochs=args.epochs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="art2real", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="list, download or check datasets")
    d.add_argument("action", choices=["list", "download", "check"])
    d.add_argument("name", nargs="?", default="demo", help="dataset/artist name, or a folder for check")
    d.set_defaults(func=cmd_data)

    def run_options(q):
        q.add_argument("--artist", default="demo", help="demo, monet, cezanne, vangogh, ukiyoe, landscapes, portraits")
        q.add_argument("--dataset", help="a dataset folder instead of --artist")
        q.add_argument("--preset", default="auto", help="smoke, demo, cpu, paper, auto")
        q.add_argument("--method", default="art2real", choices=["art2real", "cyclegan"])
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--device", default="auto")
        q.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. train.lr=1e-4")

    b = sub.add_parser("banks", help="segment photos and paintings, build the memory banks")
    b.add_argument("action", choices=["build"])
    run_options(b)
    b.set_defaults(func=cmd_banks)

    t = sub.add_parser("train", help="train Art2Real or CycleGAN (resumes from the last checkpoint)")
    run_options(t)
    t.add_argument("--run-dir", type=Path)
    t.add_argument("--no-resume", action="store_true")
    t.set_defaults(func=cmd_train)

    tr = sub.add_parser("translate", help="translate an image or a folder at its own resolution")
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a run's last.pt / best_G.pt, or a generator .pth")
    src.add_argument("--release", help="a released generator: art2real_monet, art2real_landscapes, ...")
    tr.add_argument("--input", type=Path, required=True)
    tr.add_argument("--output", type=Path, required=True)
    tr.add_argument("--size", type=int, help="resize to SIZE x SIZE first (default: own resolution)")
    tr.add_argument("--tile", type=int, default=1024, help="tile side for large images")
    tr.add_argument("--device", default="auto")
    tr.set_defaults(func=cmd_translate)

    e = sub.add_parser("evaluate", help="FID / KID / entropy of a folder against reference photos")
    e.add_argument("--images", type=Path, required=True)
    e.add_argument("--reference", type=Path, required=True)
    e.add_argument("--metrics", nargs="+", default=["fid", "kid"])
    e.add_argument("--size", type=int)
    e.add_argument("--out", type=Path, help="write OUT.json and OUT.csv")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("chain", help="run notebooks 00 -> 07 for a setting (papermill)")
    c.add_argument("--artist", default="demo")
    c.add_argument("--preset", default="auto")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--start", default="00", help="resume the chain from this notebook number")
    c.add_argument("--epochs", type=int, default=0, help="epochs of each training (0: the preset's)")
    c.set_defaults(func=cmd_chain)
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
