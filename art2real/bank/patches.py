"""Patches and their classes.

A patch vector is the (C, p, p) block flattened channel-first, the order of ``torch.nn.functional.unfold`` and
of the authors' code, so banks built here and theirs share one layout. Patches are read row-major over the
sliding-window positions.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def extract_patches(images: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, C*size*size); differentiable (used on G(x))."""
    return F.unfold(images, size, stride=stride).transpose(1, 2)


def class_fractions(labels: torch.Tensor, n_classes: int, size: int, stride: int) -> torch.Tensor:
    """Share of each patch's pixels in each class.

    labels: (N, H, W) int64 with -1 = background (no class). Returns (N, L, n_classes + 1) where the last column
    is the background share, so each row sums to 1.
    """
    onehot = F.one_hot(torch.where(labels < 0, n_classes, labels), n_classes + 1).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, size, stride).flatten(2).transpose(1, 2)


def bank_membership(fractions: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Photo patches -> banks (the paper's 20% rule): a patch enters bank c when >= ``threshold`` of its pixels
    are class c, so it may enter several banks; a patch in no class bank goes to the background bank (last
    column). Returns bool (..., n_classes + 1)."""
    classes = fractions[..., :-1] >= threshold - 1e-6
    background = ~classes.any(-1, keepdim=True)
    return torch.cat([classes, background], -1)


def patch_assignment(fractions: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Generated patches -> classes (the authors' 50% rule): class c when >= ``threshold`` of its pixels are in
    mask c; background (last column) when >= ``threshold`` of its pixels are in no class mask. A patch spread
    over several classes, none reaching the threshold, takes part in no class. Returns bool (..., K + 1)."""
    return fractions >= threshold - 1e-6


def to_unit(patches_u8: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 in [-1, 1], the space of G's outputs and of every index."""
    return patches_u8.astype(np.float32) / 127.5 - 1.0


def to_u8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 0..255 (lossless for images that came from 8-bit files)."""
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
