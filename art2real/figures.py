"""Figures as matplotlib ``Figure`` objects built with the object API (no pyplot, no backend switch): a notebook
shows them, the chain saves them (``fig.savefig``)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from .data.images import load_rgb
from .segment.masks import palette


def _grid(n: int, cols: int, cell: float = 2.2, extra_height: float = 0.0):
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(cell * cols, cell * rows + extra_height), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def thumbnails(paths: list[Path], title: str, cols: int = 6) -> Figure:
    """A grid of images with their file names."""
    fig, axes = _grid(len(paths), cols)
    for ax, path in zip(axes.flat, paths):
        ax.imshow(load_rgb(path))
        ax.set_title(path.name[:24], fontsize=7)
    fig.suptitle(title)
    return fig


def mask_overlays(paths: list[Path], title: str, cols: int = 2) -> Figure:
    """Mask overlays (image tinted by class | classes), as written by ``segment_folder``."""
    fig, axes = _grid(len(paths), cols, cell=3.2)
    for ax, path in zip(axes.flat, paths):
        ax.imshow(Image.open(path))
        ax.set_title(path.stem[:40], fontsize=7)
    fig.suptitle(title)
    return fig


def bank_chart(statistics: pd.DataFrame, class_names: list[str]) -> Figure:
    """Patches per scale and class, stacked."""
    pivot = statistics.pivot(index="scale", columns="class", values="patches").fillna(0)
    colours = {name: tuple(c / 255) for name, c in zip(class_names + ["background"],
                                                         palette(len(class_names) + 1))}
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(pivot))
    for name in pivot.columns:
        ax.bar(pivot.index, pivot[name], bottom=bottom, label=name, color=colours.get(name))
        bottom += pivot[name].to_numpy()
    ax.set_ylabel("patches in the memory banks")
    ax.set_xlabel("patch size / stride")
    ax.set_title("Memory banks per scale and class")
    ax.legend(fontsize=7, ncols=2)
    return fig


def neighbours(queries: np.ndarray, found: np.ndarray, size: int, titles: list[str]) -> Figure:
    """Generated patches (first column) and their nearest real patches from the memory banks; ``queries``
    (n, 3 p p) and ``found`` (n, k, 3 p p) uint8 in the banks' layout (channel-first)."""
    n, k = found.shape[:2]
    fig, axes = _grid(n * (k + 1), k + 1, cell=1.1, extra_height=0.4)

    def show(ax, vector):
        ax.imshow(vector.reshape(3, size, size).transpose(1, 2, 0), interpolation="nearest")

    for i in range(n):
        show(axes[i, 0], queries[i])
        axes[i, 0].set_title(titles[i], fontsize=6)
        for j in range(k):
            show(axes[i, j + 1], found[i, j])
            if i == 0:
                axes[i, j + 1].set_title(f"neighbour {j + 1}", fontsize=6)
    fig.suptitle(f"{size}x{size} patches and their nearest real patches (same class bank)", fontsize=9)
    return fig


def loss_curves(losses: pd.DataFrame, title: str) -> Figure:
    """Moving averages of the logged losses against the iteration."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    cols = [c for c in losses.columns if c not in ("iteration", "epoch", "lr", "seconds")
            and losses[c].notna().any()]
    window = max(1, len(losses) // 50)
    smooth = losses[cols].rolling(window, min_periods=1).mean()
    for c in cols:
        ax.plot(losses["iteration"], smooth[c], label=c)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(f"{title} (moving average of {window})")
    ax.legend(fontsize=7, ncols=3)
    return fig


def comparison_sheet(paintings: list[Path], columns: list[tuple[str, dict[str, Path]]], first: str = "painting"
                     ) -> Figure:
    """Figures 5-6: one row per painting; the painting, then one column per image set ({painting file name:
    image}); a missing image leaves its cell empty. ``first`` titles the first column (the photos of
    style-transferred reals use the same sheet)."""
    cols = 1 + len(columns)
    fig, axes = _grid(len(paintings) * cols, cols, cell=2.0)
    for r, painting in enumerate(paintings):
        axes[r, 0].imshow(load_rgb(painting))
        for c, (_, images) in enumerate(columns, 1):
            if painting.name in images:
                axes[r, c].imshow(load_rgb(images[painting.name]))
    for c, title in enumerate([first] + [t for t, _ in columns]):
        axes[0, c].set_title(title, fontsize=8)
    return fig


def tsne(table: pd.DataFrame, title: str) -> Figure:
    """Figure 4: one panel per method, each with the paintings, the real photos and its generated images."""
    panels = [m for m in dict.fromkeys(table["method"]) if m != "-"] or ["-"]
    fig = Figure(figsize=(4.2 * len(panels), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    colours = {"painting": "tab:orange", "photo": "tab:green", "generated": "tab:blue"}
    for ax, method in zip(axes, panels):
        part = table[(table["method"] == "-") | (table["method"] == method)]
        for domain, group in part.groupby("domain"):
            ax.scatter(group["x"], group["y"], s=12, c=colours[domain], label=domain, alpha=0.8)
        ax.set_title(textwrap.fill(method, 45) if method != "-" else "paintings and photos", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig
