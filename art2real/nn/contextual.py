"""The semantic, multi-scale contextual loss of Art2Real (paper eq. 1-6).

For each generated image, scale and class present in its mask:
  1. generated patches (values in [-1, 1]) belong to class c when >= 50% of their pixels lie in mask c
     (background = pixels in no class; an image with no mask is all background);
  2. the k nearest real patches of each are retrieved from the memory bank of class c (no autograd);
  3. pooled form (paper, authors): the neighbour ids of all patches of the class are pooled (union) and every
     generated patch is compared with every pooled real patch;
     per-patch form (cheaper): each generated patch is compared with its own k neighbours only;
  4. eq. 1: centre both sides on the bank mean, L2-normalise, d_ij = 1 - cos;
     eq. 2: d~_ij = d_ij / (min_l d_il + eps);
     eq. 3: A_ij = softmax_j((1 - d~_ij) / h);
     eq. 4-5: CX = mean_i max_j A_ij;  eq. 6: L = -log CX;
  5. summed over classes and scales, averaged over the batch; the trainer weights it by lambda_cx.

How the per-patch form differs: its softmax runs over k candidates instead of the pooled set (up to k x the
number of patches), so each A_ij is larger and the loss is smaller than the pooled one; both are 0 when every
generated patch equals a bank patch, and they coincide when k covers the whole bank.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..bank.patches import class_fractions, extract_patches, patch_assignment
from ..segment.base import BACKGROUND


def affinity(gen: torch.Tensor, real: torch.Tensor, mean: torch.Tensor, h: float = 1.0,
             eps: float = 1e-5, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1-3. gen (..., n, D), real (..., m, D) or, per patch, (n, k, D); mean (D,). Returns A (..., n, m|k).
    ``valid`` (n, k) excludes padded candidates (a bank smaller than k) from the minimum and the softmax.

    The authors write the softmax's argument as 1 - d~/h; softmax ignores the constant, so it equals eq. 3's
    (1 - d~)/h for every h.
    """
    g = F.normalize(gen - mean, dim=-1)
    r = F.normalize(real - mean, dim=-1)
    if r.dim() == g.dim() + 1:  # per-patch candidates: (n, k, D)
        cos = torch.einsum("nd,nkd->nk", g, r)
    else:
        cos = g @ r.transpose(-1, -2)
    d = 1 - cos  # eq. 1
    if valid is not None:
        d = d.masked_fill(~valid, 1e4)  # d <= 2 otherwise; finite, so gradients stay finite
    d_tilde = d / (d.min(dim=-1, keepdim=True).values + eps)  # eq. 2
    return torch.softmax((1 - d_tilde) / h, dim=-1)  # eq. 3 (padded candidates get ~0 weight)


def contextual_loss(A: torch.Tensor) -> torch.Tensor:
    """Eq. 4-6: -log(mean_i max_j A_ij)."""
    return -torch.log(A.max(dim=-1).values.mean())


class SemanticContextualLoss:
    """Retrieval from the memory banks + eq. 1-6, for a batch of G(x) and the masks of their paintings."""

    def __init__(self, banks, cfg, n_classes: int):
        self.banks, self.cx, self.n_classes = banks, cfg.cx, n_classes
        self.keys = list(range(n_classes)) + [BACKGROUND]  # columns of class_fractions

    def __call__(self, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """fake (B, 3, H, W) in [-1, 1] with grad; labels (B, H, W) int64, -1 = background."""
        total = fake.new_zeros(())
        for b in range(fake.shape[0]):
            for s, (size, stride) in enumerate(self.banks.scales):
                patches = extract_patches(fake[b:b + 1], size, stride)[0]
                member = patch_assignment(class_fractions(labels[b:b + 1], self.n_classes, size, stride)[0],
                                          self.cx.assign_threshold)
                for col in torch.nonzero(member.any(0)).flatten().tolist():
                    bank = self.banks.resolve(s, self.keys[col])
                    if bank is not None:
                        total = total + self.class_loss(s, bank, patches[member[:, col]])
        return total / fake.shape[0]

    def class_loss(self, scale: int, bank: int, gen: torch.Tensor) -> torch.Tensor:
        ids = self.banks.search(scale, bank, gen.detach().float().cpu().numpy(), self.cx.k)
        mean = torch.from_numpy(self.banks.mean(scale, bank)).to(gen)
        if self.cx.pooling == "pooled":
            pooled = np.unique(ids[ids >= 0])
            real = torch.from_numpy(self.banks.patches(scale, bank, pooled)).to(gen)
            return contextual_loss(affinity(gen, real, mean, self.cx.h, self.cx.eps))
        valid = torch.from_numpy(ids >= 0).to(gen.device)
        flat = np.where(ids >= 0, ids, ids.max(initial=0))
        pooled, inverse = np.unique(flat, return_inverse=True)
        real = torch.from_numpy(self.banks.patches(scale, bank, pooled)).to(gen)[torch.from_numpy(inverse).to(
            gen.device).view(ids.shape)]
        return contextual_loss(affinity(gen, real, mean, self.cx.h, self.cx.eps, valid))
