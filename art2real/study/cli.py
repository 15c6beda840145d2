"""``art2real study build|serve|export|import|simulate|table``: the user study from the command line.

Hooked into the ``art2real`` command by ``add_study_commands(sub)`` in ``art2real/cli.py``'s ``build_parser``;
``python -m art2real.study ...`` runs the same actions on their own.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .manifest import TESTS


def _competitor(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (e.g. Cycle-GAN=results/demo/translations/cyclegan), "
                                         f"got {text!r}")
    return name.strip(), Path(folder)


def _sources(args) -> None:
    """Fill --paintings, --art2real and --competitor from a setting's run layout (--artist)."""
    from .. import chain
    from ..errors import ConfigError

    if args.artist is None:
        if not (args.paintings and args.art2real and args.competitor and args.out):
            raise ConfigError("give --artist (a setting with runs), or --out, --paintings, --art2real and "
                              "--competitor")
        return
    cfg = chain.stage_config(args.artist, args.preset, seed=args.seed)
    paintings, art2real_dir, competitors = chain.study_sources(cfg, args.seed)
    if not art2real_dir or not competitors:
        raise ConfigError(f"no translations of Art2Real and a competitor for {cfg.data.dataset} ({cfg.preset} "
                          f"preset, seed {args.seed}): train them and run 03_translate (or `art2real chain`)")
    args.paintings, args.art2real = paintings, Path(art2real_dir)
    args.competitor = [(row, Path(folder)) for row, folder in competitors.items()]
    args.out = args.out or chain.results(cfg, "user_study")


def cmd_build(args) -> int:
    from .build import build_study
    from .server import read_allow_list

    _sources(args)
    competitors = dict(args.competitor)
    if len(competitors) != len(args.competitor):
        raise ValueError("a competitor name is given twice")
    raters = sorted(read_allow_list(args.raters)) if args.raters else None
    out = build_study(args.out, args.paintings, args.art2real, competitors, tests=args.tests,
                      pairs_per_test=args.pairs_per_test, raters_per_pair=args.raters_per_pair, gold=args.gold,
                      seed=args.seed, gold_min_correct=args.gold_min_correct, raters=raters,
                      overwrite=args.overwrite, link=args.link)
    from .manifest import Manifest

    m = Manifest.load(out)
    print(f"{out}: {len(m.pairs)} pairs, {len(m.golds)} gold pairs")
    for s in m.data["sampling"]:
        print(f"  {s['test']:9s} {s['competitor']:12s} {s['sampled']}/{s['requested']} {s['note']}")
    return 0


def cmd_serve(args) -> int:
    from .server import serve

    serve(args.study, args.host, args.port, threads=args.threads, token=args.token, allow_list=args.raters,
          pairs_per_rater=args.pairs_per_rater, lease_s=args.lease, completion_url=args.completion_url)
    return 0


def cmd_export(args) -> int:
    from .crowd import export_tasks

    for name, path in export_tasks(args.study, args.base_url, args.pairs_per_task, args.overwrite).items():
        print(f"{name}: {path}")
    return 0


def cmd_import(args) -> int:
    from .crowd import import_results

    print(json.dumps(import_results(args.study, args.results, args.platform), indent=1))
    return 0


def cmd_simulate(args) -> int:
    from ..config import pick_device
    from .simulate import simulate_votes

    summary = simulate_votes(args.study, args.photos, noise=args.noise, attention=args.attention, seed=args.seed,
                             pairs_per_rater=args.pairs_per_rater, device=pick_device(args.device))
    print(json.dumps(summary, indent=1))
    return 0


def cmd_table(args) -> int:
    from .analysis import table2, table2_markdown, write_table2

    table = table2(args.study)
    print(table2_markdown(table))
    if args.out:
        from .figure import table2_figure

        written = write_table2(table, args.out)
        png = Path(args.out).with_suffix(".png")
        table2_figure(table).savefig(png, dpi=120)
        print("written: " + ", ".join(map(str, written + [png])))
    return 0


def add_actions(sub) -> None:
    """The study's actions on a subparsers object (``art2real study <action>`` or ``python -m art2real.study``)."""
    b = sub.add_parser("build", help="build a study folder from a setting's runs (--artist, --preset) or from "
                                     "translation folders (--paintings, --art2real, --competitor)")
    b.add_argument("--artist", help="a setting (demo, monet, ... or a dataset folder): its test paintings, Art2Real's "
                                    "translations and every competitor's, from the run layout (one seed: --seed)")
    b.add_argument("--preset", default="auto", help="with --artist: the preset of the runs")
    b.add_argument("--out", type=Path, help="the study folder to write (new or empty); default with --artist: "
                                            "results/<setting>/user_study")
    b.add_argument("--paintings", type=Path, help="the paintings (any image extension)")
    b.add_argument("--art2real", type=Path, help="Art2Real's translations, <painting stem>.png")
    b.add_argument("--competitor", type=_competitor, action="append", metavar="NAME=DIR",
                   help="a competitor's translations, repeatable: --competitor Cycle-GAN=DIR --competitor UNIT=DIR")
    b.add_argument("--tests", nargs="+", choices=TESTS, default=list(TESTS))
    b.add_argument("--pairs-per-test", type=int, default=650, help="paintings sampled per test and competitor")
    b.add_argument("--raters-per-pair", type=int, default=3)
    b.add_argument("--gold", type=int, default=8, help="gold pairs per test, answered before any pair")
    b.add_argument("--gold-min-correct", type=int, help="gold pairs a rater must get right (default: all)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--raters", type=Path, help="allow-list of rater ids, one a line (copied to raters.txt)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing study there, votes included")
    b.add_argument("--link", action="store_true", help="hard-link images instead of copying them")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("serve", help="serve the web study (raters at /r/<id>, organiser at /results)")
    s.add_argument("--study", type=Path, required=True)
    s.add_argument("--host", default="127.0.0.1", help="127.0.0.1 by default: only this machine can connect")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    s.add_argument("--threads", type=int, default=8)
    s.add_argument("--token", help="organiser token (default: the study's organiser_token file)")
    s.add_argument("--raters", type=Path, help="allow-list of rater ids (default: the study's raters.txt if any)")
    s.add_argument("--pairs-per-rater", type=int, default=20)
    s.add_argument("--lease", type=float, default=900.0, help="seconds an unanswered assignment holds its pair")
    s.add_argument("--completion-url", help="link shown at the end (e.g. a Prolific completion URL)")
    s.set_defaults(func=cmd_serve)

    e = sub.add_parser("export", help="task CSVs and HIT layouts for MTurk / Prolific")
    e.add_argument("--study", type=Path, required=True)
    e.add_argument("--base-url", required=True, help="where images/ will be hosted, e.g. https://host/study/img/")
    e.add_argument("--pairs-per-task", type=int, default=20)
    e.add_argument("--overwrite", action="store_true", help="replace an earlier export (its results then no "
                                                            "longer import)")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import", help="import an MTurk batch results CSV or a Prolific-style CSV")
    i.add_argument("--study", type=Path, required=True)
    i.add_argument("--results", type=Path, required=True)
    i.add_argument("--platform", choices=["auto", "mturk", "prolific"], default="auto")
    i.set_defaults(func=cmd_import)

    m = sub.add_parser("simulate", help="fill the study with SIMULATED votes (Inception distances), for demos")
    m.add_argument("--study", type=Path, required=True)
    m.add_argument("--photos", type=Path, required=True, help="real photos (realism reference)")
    m.add_argument("--noise", type=float, default=1.0, help="0: deterministic; 1: a median difference is "
                                                            "followed 73%% of the time")
    m.add_argument("--attention", type=float, default=0.9, help="share of attentive simulated raters")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--pairs-per-rater", type=int, default=20)
    m.add_argument("--device", default="auto")
    m.set_defaults(func=cmd_simulate)

    t = sub.add_parser("table", help="Table 2 from the votes, beside the paper's values")
    t.add_argument("--study", type=Path, required=True)
    t.add_argument("--out", type=Path, help="also write OUT.md, OUT.csv and OUT.png")
    t.set_defaults(func=cmd_table)


def add_study_commands(subparsers) -> argparse.ArgumentParser:
    """Add ``study <action>`` to the ``art2real`` command's subparsers."""
    p = subparsers.add_parser("study", help="Table 2 user study: build, serve, export, import, simulate, table")
    add_actions(p.add_subparsers(dest="study_command", required=True))
    return p
