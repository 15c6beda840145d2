"""Where data and results live: resolved from the repository root, never from the working directory.

Papermill runs a kernel in the caller's directory and JupyterLab in ``notebooks/``; both must find the same
``data/`` and ``results/``. ``ART2REAL_HOME`` overrides the root (an installed package outside a checkout).
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    if "ART2REAL_HOME" in os.environ:
        return Path(os.environ["ART2REAL_HOME"]).resolve()
    return Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return repo_root() / "data"


def results_dir() -> Path:
    return Path(os.environ.get("ART2REAL_RESULTS", repo_root() / "results"))


def cache_dir() -> Path:
    """Downloads (archives, weights) and cached statistics."""
    return Path(os.environ.get("ART2REAL_CACHE", repo_root() / "data" / "cache"))
