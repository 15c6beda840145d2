"""Atomic, complete checkpoints: a killed run resumes exactly where its last checkpoint left it."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file beside ``path``, fsync, rename: a crash leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    # weights_only=False: the checkpoint holds RNG states and the config, written by this package
    return torch.load(path, map_location=map_location, weights_only=False)
