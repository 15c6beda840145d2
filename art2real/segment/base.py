"""The segmenter interface: images in; per-pixel class probabilities, class ids and class names out.

Images are float tensors (N, 3, H, W) in [-1, 1]. ``probabilities`` returns (N, K, H, W) summing to 1 over K;
``labels`` returns (N, H, W) int64 class ids, with ``BACKGROUND`` (-1) where a backend labels nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

BACKGROUND = -1


@runtime_checkable
class Segmenter(Protocol):
    class_names: list[str]
    name: str  # identifies the backend and its weights / fit (recorded with banks and masks)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor: ...

    def labels(self, images: torch.Tensor) -> torch.Tensor: ...


def load_segmenter(path: str | Path) -> Segmenter:
    """A saved segmenter (``segmenter.npz`` of the k-means backend)."""
    from .kmeans import KMeansSegmenter

    return KMeansSegmenter.load(path)
