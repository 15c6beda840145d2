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

``affinity`` computes A itself (for checks and the per-patch form); the pooled loss in training goes through
``pooled_contextual_loss``, the same numbers without keeping the (patches x pooled neighbours) matrix.

How the per-patch form differs: its softmax runs over k candidates instead of the pooled set (up to k x the
number of patches), so each A_ij is larger and the loss is smaller than the pooled one; both are 0 when every
generated patch equals a bank patch, and they coincide when k covers the whole bank.
"""
from __future__ import annotations

import math
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


def pooled_contextual_loss(gen: torch.Tensor, real: torch.Tensor, mean: torch.Tensor, h: float = 1.0,
                           eps: float = 1e-5) -> torch.Tensor:
    """Eq. 1-6 for the pooled form: equals ``contextual_loss(affinity(gen, real, mean, h, eps))`` (value and
    gradient), computed block of rows by block of rows without keeping A (n x m) for the backward pass.

    max_j A_ij is the weight of the nearest real patch j* (d~ grows with d), so with cm_i = max_j cos_ij:
    -log max_j A_ij = logsumexp_j((cos_ij - cm_i) / ((1 - cm_i + eps) h)).
    """
    g = F.normalize(gen - mean, dim=-1)  # eq. 1's centring and normalisation, differentiable as usual
    r = F.normalize(real - mean, dim=-1)
    neg_log_max = _NegLogMaxAffinity.apply(g, r.detach(), h, eps)
    return -(torch.logsumexp(-neg_log_max, 0) - math.log(len(neg_log_max)))  # eq. 4-6: -log mean_i max_j A_ij


BLOCK = 1 << 22  # affinities per block of rows in the pooled loss (16 MB in float32)


class _NegLogMaxAffinity(torch.autograd.Function):
    """-log max_j A_ij per generated patch, for unit rows g (n, D) and r (m, D); gradients into g only.

    Blocks of rows keep the (rows x m) temporaries small; the backward pass recomputes them.
    """

    @staticmethod
    def _block(g, r, h, eps):
        """z = (cos - cm) s with s = 1 / ((d_min + eps) h), j* and s, for a block of rows."""
        cos = g @ r.T
        cm, best = cos.max(dim=1)
        scale = 1 / ((1 - cm + eps) * h)
        return cos.sub_(cm[:, None]).mul_(scale[:, None]), best, scale

    @staticmethod
    def _rows(g, r):
        step = max(1, BLOCK // max(1, len(r)))
        return range(0, len(g), step), step

    @staticmethod
    def forward(ctx, g, r, h, eps):
        out = g.new_empty(len(g))
        blocks, step = _NegLogMaxAffinity._rows(g, r)
        for i in blocks:
            z, _, _ = _NegLogMaxAffinity._block(g[i:i + step], r, h, eps)
            out[i:i + step] = torch.logsumexp(z, dim=1)
        ctx.save_for_backward(g, r, out)
        ctx.h, ctx.eps = h, eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        g, r, lse = ctx.saved_tensors
        grad = torch.empty_like(g)
        blocks, step = _NegLogMaxAffinity._rows(g, r)
        for i in blocks:
            rows = slice(i, i + step)
            z, best, scale = _NegLogMaxAffinity._block(g[rows], r, ctx.h, ctx.eps)
            p = torch.exp(z - lse[rows, None])  # the softmax of z
            w = grad_out[rows] * scale
            # d lse / d cos_ij = p_ij s_i, plus through cm_i (column j*): s_i (h sum_j p_ij z_ij - 1)
            through_max = w * (ctx.h * (p * z).sum(1) - 1)
            dcos = p.mul_(w[:, None])
            dcos[torch.arange(len(best), device=g.device), best] += through_max
            grad[rows] = dcos @ r
        return grad, None, None, None


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
                total = total + pooled_contextual_loss(gen, real, mean, self.cx.h, self.cx.eps)
            else:
                real = real[torch.from_numpy(t.inverse).to(fake.device)]
                A = affinity(gen, real, mean, self.cx.h, self.cx.eps, torch.from_numpy(t.valid).to(fake.device))
                total = total + contextual_loss(A)
        return total / fake.shape[0]
