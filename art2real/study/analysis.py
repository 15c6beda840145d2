"""Table 2 from the votes: % of votes for the competitor over Art2Real with a Wilson 95% interval, the number of
votes, pairs and raters, the raters the gold gate excluded, Fleiss' kappa per test, and the paper's value.

Only raters who passed the gold gate count. Agreement is Fleiss' kappa over the two categories "competitor" and
"Art2Real" (not left/right, whose meaning changes from pair to pair), on pairs with at least two counted votes;
when pairs have different numbers of votes the per-pair agreement uses each pair's own count (the usual
generalisation, equal to Fleiss 1971 when the counts are equal).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .manifest import ART2REAL, PAPER_TABLE2, Manifest
from .store import VoteStore

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
SIMULATED = "simulated rater, not human votes"
HUMAN = "human raters"


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (Wilson 1927); (nan, nan) for n = 0."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa of an (N subjects, k categories) matrix of rating counts; rows with fewer than two ratings
    are left out; nan when no row is left or when chance agreement is already perfect."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=1)
    counts, n = counts[n >= 2], n[n >= 2]
    if len(counts) == 0:
        return math.nan
    p_i = ((counts ** 2).sum(axis=1) - n) / (n * (n - 1))  # agreement within each subject
    p_j = counts.sum(axis=0) / n.sum()                       # share of each category
    p_bar, p_e = p_i.mean(), (p_j ** 2).sum()
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_bar - p_e) / (1 - p_e))


def counted_votes(votes: pd.DataFrame, raters: pd.DataFrame) -> pd.DataFrame:
    """The votes of raters who passed the gold gate, with a boolean column ``for_competitor``."""
    passed = set(raters.loc[raters["gold_passed"] == 1, "rater_id"])
    out = votes[votes["rater_id"].isin(passed)].copy()
    out["for_competitor"] = out["chosen_method"] == out["competitor"]
    return out


def kappa_of_test(votes: pd.DataFrame) -> float:
    """Fleiss' kappa of one test's counted votes (categories: competitor, Art2Real)."""
    if votes.empty:
        return math.nan
    per_pair = votes.groupby("item_id")["for_competitor"].agg(["sum", "count"])
    return fleiss_kappa(np.stack([per_pair["sum"], per_pair["count"] - per_pair["sum"]], axis=1))


def votes_from(votes: pd.DataFrame) -> str:
    if votes.empty:
        return "no votes"
    simulated = votes["simulated"].astype(bool)
    if simulated.all():
        return SIMULATED
    return HUMAN if not simulated.any() else f"mixed: {int(simulated.sum())} of {len(votes)} simulated"


def table2_from(votes: pd.DataFrame, raters: pd.DataFrame, tests: list[str], competitors: list[str]) -> pd.DataFrame:
    """Table 2 from vote and rater frames (the columns of :meth:`VoteStore.frames`)."""
    counted = counted_votes(votes, raters)
    rows = []
    for test in tests:
        of_test = counted[counted["test"] == test]
        kappa = kappa_of_test(of_test)
        failed = raters[(raters["test"] == test) & (raters["gold_passed"] == 0)]["rater_id"]
        for competitor in competitors:
            sel = of_test[of_test["competitor"] == competitor]
            k, n = int(sel["for_competitor"].sum()), len(sel)
            low, high = wilson_interval(k, n)
            excluded = votes[(votes["test"] == test) & (votes["competitor"] == competitor)
                             & votes["rater_id"].isin(failed)]
            rows.append({
                "test": test, "competitor": competitor, "versus": ART2REAL,
                "competitor_pct": 100 * k / n if n else math.nan, "ci_low": 100 * low, "ci_high": 100 * high,
                "paper_pct": PAPER_TABLE2.get((test, competitor), math.nan),
                "votes": n, "pairs": sel["item_id"].nunique(), "raters": sel["rater_id"].nunique(),
                "raters_excluded": len(failed), "votes_excluded": len(excluded), "fleiss_kappa": kappa,
                "votes_from": votes_from(sel),
            })
    table = pd.DataFrame(rows)
    table.attrs["label"] = votes_from(counted)
    return table


def table2(study_dir: str | Path, store: VoteStore | None = None) -> pd.DataFrame:
    """Table 2 of a study folder. ``table.attrs['label']`` says whether the votes are human or simulated."""
    manifest = store.manifest if store else Manifest.load(study_dir)
    store = store or VoteStore(study_dir, manifest)
    votes, raters = store.frames()
    return table2_from(votes, raters, manifest.tests, manifest.competitors)


def table2_markdown(table: pd.DataFrame) -> str:
    """Table 2 as Markdown, our share with its interval beside the paper's."""
    from ..report import markdown_table

    def share(r):
        if not r["votes"]:
            return "-"
        return f"{r['competitor_pct']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]"

    def paper(r):
        return "-" if math.isnan(r["paper_pct"]) else f"{r['paper_pct']:.1f}"

    rows = [[r["test"], f"{r['competitor']} vs {r['versus']}", share(r), paper(r), r["votes"], r["pairs"],
             r["raters"], r["raters_excluded"], r["fleiss_kappa"]] for _, r in table.iterrows()]
    header = ["Test", "Pair", "% for competitor [95% CI]", "paper %", "votes", "pairs", "raters",
              "raters excluded (gold)", "Fleiss' kappa (test)"]
    label = table.attrs.get("label", "")
    return (f"*Votes: {label}.*\n\n" if label else "") + markdown_table(header, rows)


def write_table2(table: pd.DataFrame, prefix: str | Path) -> list[Path]:
    """PREFIX.md (with its label) and PREFIX.csv."""
    from ..io import write_text

    prefix = Path(prefix)
    md, csv = prefix.with_suffix(".md"), prefix.with_suffix(".csv")
    write_text(md, table2_markdown(table) + "\n")
    write_text(csv, table.to_csv(index=False))
    return [md, csv]
