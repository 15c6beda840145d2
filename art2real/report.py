"""The paper's tables, and the rendering of ours beside them: Markdown for people, CSV for machines.

Tables arrive as DataFrames whose metric cells hold outcomes (:mod:`art2real.outcomes`); this module is the only
place that turns them into text. A row's status says what was computed with what, and "reproduced" only where a
number is compared with the paper's under the paper's conditions (its preset, >= 2048 images for FID) and lies
within the stated tolerance.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path, write_text
from .outcomes import Measured, NotAvailable

# Table 1: FID (lower is better)
PAPER_FID = {
    "Original paintings": {"Monet": 69.14, "Cezanne": 169.43, "Van Gogh": 159.82, "Ukiyo-e": 177.52,
                           "Landscapes": 59.07, "Portraits": 72.95},
    "Style-transferred reals": {"Monet": 74.43, "Cezanne": 114.39, "Van Gogh": 137.06, "Ukiyo-e": 147.94,
                                "Landscapes": 70.25, "Portraits": 62.35},
    "DRIT": {"Monet": 68.32, "Cezanne": 109.36, "Van Gogh": 108.92, "Ukiyo-e": 117.07, "Landscapes": 59.84,
             "Portraits": 44.33},
    "UNIT": {"Monet": 56.18, "Cezanne": 97.91, "Van Gogh": 98.12, "Ukiyo-e": 89.15, "Landscapes": 47.87,
             "Portraits": 43.47},
    "Cycle-GAN": {"Monet": 49.70, "Cezanne": 85.11, "Van Gogh": 85.10, "Ukiyo-e": 98.13, "Landscapes": 44.79,
                  "Portraits": 30.60},
    "Art2Real": {"Monet": 44.71, "Cezanne": 68.00, "Van Gogh": 78.60, "Ukiyo-e": 80.48, "Landscapes": 35.03,
                 "Portraits": 34.03},
}

# Table 3: mean entropy (lower = more confident), over all settings
PAPER_ENTROPY = {
    "Real photos": (3.99, 0.63, 2.03), "Original paintings": (4.81, 0.67, 2.58),
    "Style-transferred reals": (5.39, 0.70, 2.89), "DRIT": (5.14, 0.67, 2.56), "UNIT": (4.88, 0.69, 2.54),
    "Cycle-GAN": (4.81, 0.67, 2.50), "Art2Real": (4.50, 0.66, 2.42),
}
ENTROPY_COLUMNS = ("classification", "segmentation", "detection")
PAPER_MODELS = {"classification": "ResNet-152 (ImageNet)", "segmentation": "the paper's segmentation model",
                "detection": "Faster R-CNN (Visual Genome)"}

# within this relative distance of the paper's value, under the paper's conditions, a number is "reproduced"
TOLERANCE = 0.10


def fmt(value, digits: int = 2) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table of plain cells (numbers formatted by ``fmt``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(outcome, digits: int = 2) -> str:
    """A measured value as text: one number, or mean ± std over seeds with the 95% interval."""
    if not isinstance(outcome, Measured):
        return fmt(outcome, digits)
    text = fmt(outcome.value, digits)
    interval = outcome.interval95()
    if interval is not None:
        text += f" ± {fmt(outcome.std, digits)} [{fmt(interval[0], digits)}, {fmt(interval[1], digits)}]"
    return text


def comparison(outcome, paper: float | None, comparable: str | None) -> str:
    """What a measured number means next to the paper's: ``comparable`` is None under the paper's conditions,
    else the reason it is not."""
    if not isinstance(outcome, Measured):
        return ""
    if paper is None:
        return "no paper value"
    if comparable is not None:
        return f"not comparable: {comparable}"
    ok = abs(outcome.value - paper) <= TOLERANCE * abs(paper)
    return f"{'reproduced' if ok else 'not reproduced'} (paper {paper:g}, tolerance {TOLERANCE:.0%})"


class Footnotes:
    """Long "not available" reasons, once each, under the table."""

    def __init__(self):
        self.notes: list[str] = []

    def mark(self, outcome: NotAvailable) -> str:
        text = f"{outcome.reason}" + (f"; fix: {outcome.fix}" if outcome.fix else "")
        if text not in self.notes:
            self.notes.append(text)
        return f"not available [{self.notes.index(text) + 1}]"

    def render(self) -> str:
        return "".join(f"\n[{i}] not available: {n}" for i, n in enumerate(self.notes, 1))


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: outcomes as numbers or footnoted reasons; title and notes from ``table.attrs``."""
    notes = Footnotes()
    shown = [c for c in table.columns if not c.startswith("_")]
    rows = [[notes.mark(v) if isinstance(v, NotAvailable) else cell(v) for v in row]
            for row in table[shown].astype(object).values.tolist()]
    md = f"## {table.attrs.get('title', '')}\n\n" + markdown_table(shown, rows) + "\n"
    extra = table.attrs.get("notes", [])
    md += "".join(f"\n{n}\n" for n in extra)
    md += notes.render() + ("\n" if notes.notes else "")
    return md


def flat(table: pd.DataFrame) -> pd.DataFrame:
    """The table with one column per field of each outcome (value, std, n, model, per-seed values, reason)."""
    out = {}
    for col in table.columns:
        series = table[col]
        if not any(isinstance(v, (Measured, NotAvailable)) for v in series):
            out[col.lstrip("_")] = series.tolist()
            continue
        out[col] = [v.value if isinstance(v, Measured) else None for v in series]
        out[f"{col} std"] = [v.std if isinstance(v, Measured) else None for v in series]
        out[f"{col} n"] = [v.n if isinstance(v, Measured) else None for v in series]
        out[f"{col} model"] = [v.model if isinstance(v, Measured) else None for v in series]
        out[f"{col} per seed"] = [" ".join(f"{x:.6g}" for x in v.values) if isinstance(v, Measured) and v.values
                                  else None for v in series]
        out[f"{col} not available"] = [str(v) if isinstance(v, NotAvailable) else None for v in series]
    return pd.DataFrame(out)


def save_table(table: pd.DataFrame, folder: Path, name: str) -> tuple[Path, Path]:
    """``folder/name.csv`` (flat) and ``folder/name.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{name}.csv") as tmp:
        flat(table).to_csv(tmp, index=False)
    write_text(folder / f"{name}.md", markdown(table))
    return folder / f"{name}.csv", folder / f"{name}.md"
