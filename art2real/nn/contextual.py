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

from dataclasses import dataclass

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


@dataclass
class Retrieved:
    """One (image, scale, class) term of the loss, found without autograd: which generated patches take part,
    their real neighbours and the bank mean; ``inverse`` / ``valid`` index each patch's own k neighbours
    (per-patch form)."""

    image: int
    scale: int
    rows: torch.Tensor
    real: np.ndarray
    mean: np.ndarray
    inverse: np.ndarray | None = None
    valid: np.ndarray | None = None


class SemanticContextualLoss:
    """Retrieval from the memory banks + eq. 1-6, for a batch of G(x) and the masks of their paintings.

    ``retrieve`` (no autograd: patch classes, FAISS search, gathering real patches) is separate from ``loss``
    (the differentiable part), so the trainer can run retrieval in a worker thread while the rest of the
    generator step is computed.
    """

    def __init__(self, banks, cfg, n_classes: int):
        self.banks, self.cx, self.n_classes = banks, cfg.cx, n_classes
        self.keys = list(range(n_classes)) + [BACKGROUND]  # columns of class_fractions

    def __call__(self, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """fake (B, 3, H, W) in [-1, 1] with grad; labels (B, H, W) int64, -1 = background."""
        return self.loss(fake, self.retrieve(fake.detach(), labels))

    @torch.no_grad()
    def retrieve(self, fake: torch.Tensor, labels: torch.Tensor) -> list[Retrieved]:
        terms = []
        for b in range(fake.shape[0]):
            for s, (size, stride) in enumerate(self.banks.scales):
                patches = extract_patches(fake[b:b + 1], size, stride)[0].float().cpu().numpy()
                member = patch_assignment(class_fractions(labels[b:b + 1], self.n_classes, size, stride)[0],
                                          self.cx.assign_threshold).cpu()
                for col in torch.nonzero(member.any(0)).flatten().tolist():
                    bank = self.banks.resolve(s, self.keys[col])
                    if bank is not None:
                        terms.append(self._neighbours(b, s, bank, member[:, col], patches[member[:, col].numpy()]))
        return terms

    def _neighbours(self, image: int, scale: int, bank: int, rows: torch.Tensor, gen: np.ndarray) -> Retrieved:
        ids = self.banks.search(scale, bank, gen, self.cx.k)
        mean = self.banks.mean(scale, bank)
        if self.cx.pooling == "pooled":  # the union of the class's neighbours
            return Retrieved(image, scale, rows, self.banks.patches(scale, bank, np.unique(ids[ids >= 0])), mean)
        pooled, inverse = np.unique(np.where(ids >= 0, ids, ids.max(initial=0)), return_inverse=True)
        return Retrieved(image, scale, rows, self.banks.patches(scale, bank, pooled), mean,
                         inverse.reshape(ids.shape), ids >= 0)

    def loss(self, fake: torch.Tensor, terms: list[Retrieved]) -> torch.Tensor:
        """Eq. 1-6 summed over classes and scales, averaged over the batch; gradients flow into ``fake`` only."""
        total = fake.new_zeros(())
        patches = {}
        for t in terms:
            if (t.image, t.scale) not in patches:
                size, stride = self.banks.scales[t.scale]
                patches[t.image, t.scale] = extract_patches(fake[t.image:t.image + 1], size, stride)[0]
            gen = patches[t.image, t.scale][t.rows.to(fake.device)]
            real = torch.from_numpy(t.real).to(gen)
            mean = torch.from_numpy(t.mean).to(gen)
            if t.inverse is None:
                A = affinity(gen, real, mean, self.cx.h, self.cx.eps)
            else:
                real = real[torch.from_numpy(t.inverse).to(fake.device)]
                A = affinity(gen, real, mean, self.cx.h, self.cx.eps, torch.from_numpy(t.valid).to(fake.device))
            total = total + contextual_loss(A)
        return total / fake.shape[0]
