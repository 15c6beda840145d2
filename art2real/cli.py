"""The ``art2real`` command: data, banks, train, translate, evaluate, chain, study, sweep.

A user error (a wrong setting, missing data, a refused file) prints one line and exits with 2; anything else is
a bug and keeps its traceback (exit 1). ``--debug`` shows the traceback of user errors too.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from . import methods
from .errors import UserError


def _config(args):
    from .chain import stage_config

    return stage_config(args.dataset or args.artist, args.preset, method=args.method, seed=args.seed,
                        **{k.replace(".", "__"): v for k, v in _overrides(args).items()}, device=args.device)


def _overrides(args) -> dict:
    from .config import _parse_overrides

    return _parse_overrides(list(args.set or []))


def cmd_data(args) -> int:
    from .data.download import download
    from .data.images import scan_images
    from .data.registry import ARTISTS, DATASETS, SPLITS, dataset_root, missing_splits
    from .errors import DataError

    if args.action == "list":
        for s in DATASETS.values():
            state = "present" if not missing_splits(s.path()) else "missing"
            print(f"{s.name:22s} {s.artist:11s} {state:8s} {s.url or '(embedded)'}")
        return 0
    if args.action == "download":
        print(download(args.name))
        return 0
    root = dataset_root(args.name)
    if not root.is_dir():
        registered = str(args.name).lower() in ARTISTS or args.name in DATASETS
        raise DataError(f"{root} does not exist" + (f": run `art2real data download {args.name}`" if registered
                                                     else " (give a dataset name or a folder)"))
    missing = missing_splits(root)
    top = scan_images(root, min_size=args.size) if len(missing) == len(SPLITS) else None
    plain = top is not None and bool(top.good or top.bad)  # a plain folder of images (readable or not)
    folders = [root] if plain else [root / s for s in SPLITS]
    problems, flagged = (0 if plain else len(missing)), 0
    for folder in folders:
        if not folder.is_dir():
            print(f"{folder}: MISSING")
            continue
        report = top if plain else scan_images(folder, min_size=args.size)
        print(report.summary())
        problems += len(report.bad) + (not report.good)
        flagged += len(report.tiny)
    small = f"; {flagged} image(s) under half of {args.size} px (usable, but blurry once upsampled)" if flagged else ""
    print(("clean" if not problems else f"{problems} problem(s)") + small)
    return 0 if not problems else 1


def cmd_banks(args) -> int:
    from .semantic import artefacts_dir, painting_masks, prepare_banks

    cfg = _config(args)
    banks, segmenter = prepare_banks(cfg)
    painting_masks(cfg, segmenter)
    print(banks.summary())
    print(f"masks and overlays: {artefacts_dir(cfg) / 'masks'}")
    return 0


def cmd_train(args) -> int:
    from .train.trainer import Trainer

    cfg = _config(args)
    summary = Trainer(cfg, args.run_dir).fit(resume=not args.no_resume, force=args.force)
    print(json.dumps(summary, indent=1))
    return 0


def cmd_translate(args) -> int:
    from .config import pick_device
    from .errors import ConfigError, DataError
    from .pretrained import load_release
    from .runs import Run
    from .translate import check_options, load_translator, translate_folder

    check_options(args.tile, args.size)  # before a release is downloaded or a network loaded
    device = pick_device(args.device)
    if args.release:
        translator = load_release(args.release, device)
    elif args.checkpoint:
        translator = load_translator(args.checkpoint, device, args.method if args.method_given else None)
    else:
        cfg = _config(args)
        if not methods.get(cfg.method).trained:
            raise ConfigError(f"method {cfg.method!r} has no generator to translate with: it stylises the setting's "
                              "test photos, which 03_translate makes (`art2real chain --artist ... --start 03`)")
        run = Run.of(cfg)
        if run.best_checkpoint() is None:
            raise DataError(f"no {cfg.method} run at {run.dir}: train it first (`art2real train ...`) or give "
                            "--checkpoint / --release")
        translator = load_translator(run.best_checkpoint(), device)
        args.output = args.output or run.translations("custom")
    if args.output is None:
        raise UserError("--output is needed with --checkpoint or --release")
    written = translate_folder(translator, args.input, args.output, args.size, args.tile)
    skipped = "".join(f"\n  skipped {p.name}: {why}" for p, why in written.skipped)
    print(f"{len(written)} image(s) written to {args.output}"
          + (f"; {len(written.skipped)} skipped:{skipped}" if written.skipped else ""))
    return 0


def cmd_evaluate(args) -> int:
    from .config import pick_device
    from .data.registry import dataset_root
    from .metrics.evaluate import evaluate
    from .runs import Run

    images = args.images
    if images is None:
        run = Run.of(_config(args))
        images = run.translations("testA")
    reference = args.reference or dataset_root(args.dataset or args.artist) / "trainB"
    result = evaluate(images, reference, args.metrics, args.size, args.out, pick_device(args.device))
    print(json.dumps(result, indent=1))
    return 0


def cmd_chain(args) -> int:
    from .chain import run_chain

    run_chain(args.artist, args.preset, seed=args.seed, start=args.start, epochs=args.epochs,
              method_list=args.methods)
    return 0


class _MethodAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.method_given = True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="art2real", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="list, download or check datasets")
    d.add_argument("action", choices=["list", "download", "check"])
    d.add_argument("name", nargs="?", default="demo", help="dataset/artist name, or a folder for check")
    d.add_argument("--size", type=int, default=256, help="model resolution that check compares image sizes with")
    d.set_defaults(func=cmd_data)

    def run_options(q):
        q.add_argument("--artist", default="demo", help="demo, monet, cezanne, vangogh, ukiyoe, landscapes, portraits")
        q.add_argument("--dataset", help="a dataset folder (trainA/trainB/testA/testB) instead of --artist")
        q.add_argument("--preset", default="auto", help="smoke, demo, cpu, paper, auto")
        q.add_argument("--method", default="art2real", choices=methods.names(), action=_MethodAction)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--device", default="auto")
        q.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. train.lr=1e-4")
        q.set_defaults(method_given=False)

    b = sub.add_parser("banks", help="segment photos and paintings, build the memory banks")
    b.add_argument("action", choices=["build"])
    run_options(b)
    b.set_defaults(func=cmd_banks)

    t = sub.add_parser("train", help="train a method (resumes from the last checkpoint)")
    run_options(t)
    t.add_argument("--run-dir", type=Path, help="default: results/<setting>/runs/<method>/<preset>-seed<seed>")
    t.add_argument("--no-resume", action="store_true", help="start over (the old run is moved aside, not deleted)")
    t.add_argument("--force", action="store_true", help="resume although the settings differ from the run's")
    t.set_defaults(func=cmd_train)

    tr = sub.add_parser("translate", help="translate an image or a folder at its own resolution")
    src = tr.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="last.pt / best.pt of a run, or a generator file "
                                                     "(--method names its layout; default CycleGAN's)")
    src.add_argument("--release", help="a released generator: art2real_monet, art2real_landscapes, ...")
    tr.add_argument("--input", type=Path, required=True)
    tr.add_argument("--output", type=Path, help="default with a run: its translations/custom folder")
    tr.add_argument("--size", type=int, help="resize to SIZE x SIZE first (default: own resolution)")
    tr.add_argument("--tile", type=int, default=1024, help="tile side for large images (>= 64)")
    run_options(tr)
    tr.set_defaults(func=cmd_translate)

    e = sub.add_parser("evaluate", help="FID / KID / entropy of a folder (default: a run's translations) "
                                        "against reference photos (default: the setting's trainB)")
    e.add_argument("--images", type=Path)
    e.add_argument("--reference", type=Path)
    e.add_argument("--metrics", nargs="+", default=["fid", "kid"])
    e.add_argument("--size", type=int)
    e.add_argument("--out", type=Path, help="write OUT.json and OUT.csv")
    run_options(e)
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("chain", help="run notebooks 00 -> 08 for a setting (papermill)")
    c.add_argument("--artist", default="demo")
    c.add_argument("--preset", default="auto")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--start", default="00", help="resume the chain from this notebook number (00-08)")
    c.add_argument("--epochs", type=int, default=0, help="epochs of each training (0: the preset's)")
    c.add_argument("--methods", nargs="+", choices=methods.names(trained=True),
                   help="methods trained by 02 (default: every registered one but variants trained on request: "
                   f"{', '.join(m for m in methods.names(trained=True) if not methods.get(m).chain_default)})")
    c.set_defaults(func=cmd_chain)

    from .study.cli import add_study_commands

    add_study_commands(sub)
    from .sweep import add_sweep_commands

    add_sweep_commands(sub)
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("art2real").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001  a bug: the traceback is what a report needs
        traceback.print_exc()
        print("error: this is a bug in art2real (the traceback above says where); please report it",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
