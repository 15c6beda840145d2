"""The Table 2 bar chart, built with matplotlib's object API (no pyplot state, no backend switch): the caller
shows the Figure (a notebook displays it) or saves it (``fig.savefig``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def table2_figure(table: pd.DataFrame) -> Figure:
    """One panel per test: % of votes for each competitor over Art2Real with its Wilson 95% interval, the
    paper's value beside it, and the 50% line of no preference."""
    tests = list(dict.fromkeys(table["test"]))
    fig = Figure(figsize=(4.2 * len(tests), 4.1), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tests), sharey=True))
    width = 0.38
    for ax, test in zip(axes, tests):
        rows = table[table["test"] == test]
        x = np.arange(len(rows))
        ours = rows["competitor_pct"].to_numpy(dtype=float)
        err = np.stack([ours - rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float) - ours])
        err = np.clip(err, 0, None)  # k = n: the bound equals the share up to rounding
        ax.bar(x - width / 2, ours, width, yerr=err, capsize=4, color="#4c72b0", label="this study (95% CI)")
        ax.bar(x + width / 2, rows["paper_pct"].to_numpy(dtype=float), width, color="#c9c9c9", hatch="//",
               edgecolor="#777", label="paper")
        ax.axhline(50, color="#b22", lw=1, ls="--", label="no preference")
        ax.set_xticks(x, rows["competitor"])
        ax.set_title(f"{test.capitalize()} (n = {int(rows['votes'].sum())} votes)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("% of votes for the competitor\nover Art2Real")
    # below the panels: inside one, the legend would hide a bar that reaches the top
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    label = table.attrs.get("label")
    fig.suptitle("Table 2: user study" + (f" ({label})" if label else ""))
    return fig
