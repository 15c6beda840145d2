"""CycleGAN's objective: least-squares GAN loss (eq. 8), cycle consistency (eq. 9), identity."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """LSGAN: mean squared error to 1 (real) or 0 (fake), over every PatchGAN output."""
    target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(a, b)
