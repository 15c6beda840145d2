"""Build a study folder from translation folders: sampled pairs, random sides, opaque image names, gold pairs.

Every translations folder holds ``<painting stem>.png`` for each painting of the paintings folder. For each test
(realism, coherence) and competitor, ``pairs_per_test`` paintings are sampled (all of them when fewer exist; the
manifest says so), the side of Art2Real is a fair coin, and each side of each pair gets its own file under an
opaque random name: the same translation shown in two pairs has two names, so URLs reveal neither the method
nor which images recur. The whole folder is written beside the target and renamed into place, so a failed build
leaves nothing half-made.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..data.images import list_images, load_rgb
from ..errors import DataError
from . import gold as gold_recipe
from .manifest import (
    ALLOW_LIST,
    ART2REAL,
    FORMAT,
    IMAGES,
    MANIFEST,
    QUESTIONS,
    TESTS,
    TOKEN_FILE,
    TargetExists,
)


def build_study(out_dir, paintings_dir, art2real_dir, competitors: dict[str, Path], tests=TESTS,
                pairs_per_test: int = 650, raters_per_pair: int = 3, gold: int = 8, seed: int = 0, *,
                gold_min_correct: int | None = None, raters: list[str] | None = None, overwrite: bool = False,
                link: bool = False) -> Path:
    """Write a study folder (see the package docstring for its layout) and return its path.

    ``gold`` gold pairs per test; a rater passes the gate with ``gold_min_correct`` of them right (default all).
    ``raters``: an allow-list of rater ids (written to raters.txt); without one, any well-formed id may rate.
    ``overwrite`` replaces an existing study folder (its votes included); ``link`` hard-links images instead of
    copying them (falls back to a copy across file systems).
    """
    out_dir = Path(out_dir)
    tests = _check_options(tests, competitors, pairs_per_test, raters_per_pair, gold, gold_min_correct)
    _check_target(out_dir, overwrite)
    paintings = _paintings(paintings_dir)
    folders = {ART2REAL: Path(art2real_dir), **{name: Path(p) for name, p in competitors.items()}}
    translations = {method: _translations(folder, paintings, method) for method, folder in folders.items()}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".building", dir=out_dir.parent))
    try:
        writer = _ImageWriter(staging / IMAGES, link)
        rng = random.Random(seed)
        pairs, sampling = _pairs(tests, list(competitors), paintings, translations, pairs_per_test, rng, writer)
        golds = _golds(tests, list(folders), paintings, translations, gold, rng, np.random.default_rng(seed),
                       writer)
        manifest = {
            "format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seed": seed, "tests": tests, "questions": {t: QUESTIONS[t] for t in tests},
            "pairs_per_test": pairs_per_test, "raters_per_pair": raters_per_pair, "gold": gold,
            "gold_min_correct": gold if gold_min_correct is None else gold_min_correct,
            "gold_recipe": gold_recipe.RECIPE, "images_linked": link,
            "sources": {"paintings": str(Path(paintings_dir).resolve()),
                        "art2real": str(folders[ART2REAL].resolve()),
                        "competitors": {n: str(folders[n].resolve()) for n in competitors}},
            "sampling": sampling, "pairs": pairs, "golds": golds,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        token = staging / TOKEN_FILE
        token.write_text(secrets.token_urlsafe(24) + "\n")
        token.chmod(0o600)
        if raters:
            (staging / ALLOW_LIST).write_text("".join(f"{r}\n" for r in raters))
        _move_into_place(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def _check_options(tests, competitors, pairs_per_test, raters_per_pair, gold, gold_min_correct) -> list[str]:
    tests = [tests] if isinstance(tests, str) else list(tests)
    unknown = [t for t in tests if t not in TESTS]
    if not tests or unknown or len(set(tests)) != len(tests):
        raise ValueError(f"tests must be distinct names among {TESTS}, got {tests}")
    if not competitors:
        raise ValueError("no competitor given: pass at least one, e.g. competitors={'Cycle-GAN': Path(...)}")
    if ART2REAL in competitors:
        raise ValueError(f"{ART2REAL!r} is the reference method; it cannot also be a competitor")
    for name, value, low in (("pairs_per_test", pairs_per_test, 1), ("raters_per_pair", raters_per_pair, 1),
                             ("gold", gold, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if gold_min_correct is not None and not 0 <= gold_min_correct <= gold:
        raise ValueError(f"gold_min_correct must be between 0 and gold={gold}, got {gold_min_correct}")
    return tests


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise TargetExists(f"{out_dir} exists and is not a folder")
    if any(out_dir.iterdir()):
        if not overwrite:
            raise TargetExists(f"{out_dir} is not empty: choose a new folder, or pass overwrite=True "
                                  "(--overwrite) to replace the study there, votes included")
        if not (out_dir / MANIFEST).is_file():
            raise TargetExists(f"{out_dir} is not empty and holds no study ({MANIFEST}); refusing to replace "
                                  "it even with overwrite: choose another folder")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished folder onto the target; an old study is moved aside first and removed last."""
    old = None
    if out_dir.exists():
        if any(out_dir.iterdir()):
            old = out_dir.with_name(f".{out_dir.name}.old-{secrets.token_hex(4)}")
            out_dir.rename(old)
        else:
            out_dir.rmdir()
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old)


def _paintings(paintings_dir) -> dict[str, Path]:
    paths = list_images(paintings_dir)
    if not paths:
        raise DataError(f"no images in the paintings folder {paintings_dir}")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise ValueError(f"two paintings share the stem {p.stem!r} ({stems[p.stem].name}, {p.name}): "
                             "translations are named <stem>.png, so stems must be unique")
        stems[p.stem] = p
    return stems


def _translations(folder: Path, paintings: dict[str, Path], method: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"translations folder of {method} not found: {folder}")
    found = {s: folder / f"{s}.png" for s in paintings}
    missing = sorted(s for s, p in found.items() if not p.is_file())
    if missing:
        raise DataError(f"{method}: {len(missing)} of {len(paintings)} paintings have no translation "
                                f"in {folder} (expected <stem>.png), e.g. {', '.join(m + '.png' for m in missing[:3])}")
    return found


class _ImageWriter:
    """Copies (or hard-links) images into images/ under fresh opaque names."""

    def __init__(self, folder: Path, link: bool):
        self.folder, self.link = folder, link
        folder.mkdir(parents=True)

    def _name(self, suffix: str) -> Path:
        return self.folder / f"{secrets.token_hex(16)}{suffix.lower()}"

    def add(self, source: Path) -> str:
        target = self._name(source.suffix)
        if self.link:
            try:
                os.link(source, target)
                return target.name
            except OSError:  # another file system, or links not supported
                pass
        shutil.copyfile(source, target)
        return target.name

    def add_image(self, image) -> str:
        target = self._name(".png")
        image.save(target, compress_level=1)  # noisy images compress poorly; favour speed
        return target.name


def _pairs(tests, competitors, paintings, translations, pairs_per_test, rng, writer):
    stems = sorted(paintings)
    pairs, sampling = [], []
    for test in tests:
        for competitor in competitors:
            chosen = rng.sample(stems, min(pairs_per_test, len(stems)))
            sampling.append({"test": test, "competitor": competitor, "requested": pairs_per_test,
                             "available": len(stems), "sampled": len(chosen),
                             "note": "" if len(chosen) == pairs_per_test else
                             f"only {len(stems)} paintings exist: all of them are used"})
            for stem in chosen:
                methods = [ART2REAL, competitor]
                if rng.random() < 0.5:
                    methods.reverse()
                pairs.append({
                    "test": test, "competitor": competitor, "painting": stem,
                    "painting_image": writer.add(paintings[stem]) if test == "coherence" else None,
                    **{side: {"image": writer.add(translations[m][stem]), "method": m}
                       for side, m in zip(("left", "right"), methods)},
                })
    rng.shuffle(pairs)  # ids and order say nothing about test or competitor
    for pair, pid in zip(pairs, _ids(rng, "p", len(pairs))):
        pair["id"] = pid
    return pairs, sampling


def _golds(tests, methods, paintings, translations, n, rng, noise_rng, writer):
    stems = sorted(paintings)
    golds = []
    for test in tests:
        order = rng.sample(stems, len(stems))
        for i in range(n):
            stem, other = order[i % len(order)], order[(i + 1) % len(order)]
            method = methods[i % len(methods)]
            clean = translations[method][stem]
            wrong_source = translations[method][other if test == "coherence" else stem]
            sides = {"good": {"image": writer.add(clean), "method": method},
                     "bad": {"image": writer.add_image(gold_recipe.degrade(load_rgb(wrong_source), noise_rng)),
                             "method": method}}
            answer = "left" if rng.random() < 0.5 else "right"
            golds.append({
                "test": test, "painting": stem, "answer": answer,
                "painting_image": writer.add(paintings[stem]) if test == "coherence" else None,
                "left": sides["good" if answer == "left" else "bad"],
                "right": sides["bad" if answer == "left" else "good"],
            })
    for g, gid in zip(golds, _ids(rng, "g", len(golds))):
        g["id"] = gid
    return golds


def _ids(rng: random.Random, prefix: str, n: int) -> list[str]:
    """Distinct short ids from the seeded generator (the same seed gives the same ids)."""
    ids: dict[str, None] = {}  # ordered and fast to test
    while len(ids) < n:
        ids.setdefault(f"{prefix}{rng.getrandbits(40):010x}")
    return list(ids)
