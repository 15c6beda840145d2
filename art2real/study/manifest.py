"""The study manifest: every pair, which side shows which method, the gold answers, the seed and the sources.

``manifest.json`` lives in the study folder next to ``images/`` and is never served: the images carry opaque
names, and only the manifest maps them to methods. Analysis needs nothing else (plus the vote store).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

FORMAT = "art2real-study/1"
MANIFEST = "manifest.json"
TOKEN_FILE = "organiser_token"
ALLOW_LIST = "raters.txt"
IMAGES = "images"

ART2REAL = "Art2Real"
TESTS = ("realism", "coherence")
SIDES = ("left", "right")
QUESTIONS = {
    "realism": "Which image looks more like a real photo?",
    "coherence": "Which image is more faithful to the painting?",
}
# Table 2 of the paper: % of votes for the competitor against Art2Real (2AFC, 650 pairs a test, 3 raters a pair).
PAPER_TABLE2 = {
    ("realism", "Cycle-GAN"): 36.5, ("realism", "UNIT"): 27.9, ("realism", "DRIT"): 25.5,
    ("coherence", "Cycle-GAN"): 48.4, ("coherence", "UNIT"): 14.2, ("coherence", "DRIT"): 7.3,
}


class TargetExists(FileExistsError, ValueError):
    """A target that would be overwritten; a ValueError too, so command lines report it as a bad argument."""


@dataclass(frozen=True)
class Side:
    image: str   # file name under images/
    method: str  # for gold pairs: the method whose translation the image is (clean or degraded)


@dataclass(frozen=True)
class Item:
    """One 2AFC question: a pair to vote on, or a gold pair with a known answer."""

    id: str
    test: str
    left: Side
    right: Side
    painting: str                 # stem of the painting
    painting_image: str | None    # shown above the pair in the coherence test
    competitor: str | None = None  # None for gold pairs
    answer: str | None = None      # "left" / "right" for gold pairs

    @property
    def gold(self) -> bool:
        return self.answer is not None

    def side(self, choice: str) -> Side:
        return self.left if choice == "left" else self.right

    @classmethod
    def from_json(cls, d: dict) -> Item:
        return cls(d["id"], d["test"], Side(**d["left"]), Side(**d["right"]), d["painting"],
                   d.get("painting_image"), d.get("competitor"), d.get("answer"))


class Manifest:
    """The parsed manifest of a study folder."""

    def __init__(self, data: dict, folder: Path | None = None):
        if data.get("format") != FORMAT:
            raise ValueError(f"{folder or 'manifest'}: not a study manifest of format {FORMAT!r} "
                             f"(found {data.get('format')!r}); build one with `art2real study build`")
        self.data, self.folder = data, folder
        self.pairs = [Item.from_json(d) for d in data["pairs"]]
        self.golds = [Item.from_json(d) for d in data["golds"]]
        self.items = {it.id: it for it in self.pairs + self.golds}

    @classmethod
    def load(cls, study_dir: str | Path) -> Manifest:
        path = Path(study_dir) / MANIFEST
        if not path.is_file():
            raise DataError(f"no {MANIFEST} in {study_dir}: build the study first "
                                    "(`art2real study build --out DIR ...`)")
        return cls(json.loads(path.read_text()), Path(study_dir))

    @property
    def tests(self) -> list[str]:
        return list(self.data["tests"])

    @property
    def competitors(self) -> list[str]:
        return list(self.data["sources"]["competitors"])

    @property
    def raters_per_pair(self) -> int:
        return int(self.data["raters_per_pair"])

    @property
    def gold_min_correct(self) -> int:
        return int(self.data["gold_min_correct"])

    def golds_of(self, test: str) -> list[Item]:
        return [g for g in self.golds if g.test == test]

    def pairs_of(self, test: str) -> list[Item]:
        return [p for p in self.pairs if p.test == test]

    def gate_passed(self, correct: int, answered: int) -> bool:
        """The gold gate: at least ``gold_min_correct`` of every ``gold`` gold pairs right (all, by default).
        Crowd raters may answer the golds once per task; the same share applies to all their answers."""
        per_test = int(self.data["gold"])
        if per_test == 0:
            return True
        return answered > 0 and correct * per_test >= self.gold_min_correct * answered
