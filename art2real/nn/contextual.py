"""The semantic, multi-scale contextual loss of Art2Real (paper eq. 1-6).

For each generated image, scale and class present in its mask:
  1. generated patches (values in [-1, 1]) belong to class c when >= 50% of their pixels lie in mask c
     (background = pixels in no class; an image with no mask is all background);
  2. the k nearest real patches of each are retrieved from the memory bank of class c (no autograd), by
     ``bank.metric``: squared L2 on raw patches (authors) or eq. 1's cosine distance;
  3. pooled form (paper, authors): the neighbour ids of all patches of the class are pooled (union) and every
     generated patch is compared with every pooled real patch;
     per-patch form (cheaper): each generated patch is compared with its own k neighbours only;
  4. eq. 1: centre both sides on the bank mean, L2-normalise, d_ij = 1 - cos;
     eq. 2: d~_ij = d_ij / (min_l d_il + eps);
     eq. 3: A_ij = softmax_j((1 - d~_ij) / h);
     eq. 4-5: CX = mean_i max_j A_ij;  eq. 6: L = -log CX;
  5. summed over classes and scales, averaged over the batch; the trainer weights it by lambda_cx.

``affinity`` computes A itself (for checks and the per-patch form); the pooled form in training goes through
``max_affinity``, the same numbers without keeping the (patches x pooled neighbours) matrix. The differentiable
part handles all images and classes of a scale together; only retrieval goes class by class (one index each).

Configured like the authors' release (exact L2 search on raw patches, pooled neighbours, k = 5, h = 1,
eps = 1e-5) with ``--preset paper --set bank.index=flat`` (``bank.metric`` is ``l2`` by default);
tests/test_contextual.py checks the loss against a float64 transcription of their ``compute_contextual``.

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
    """Eq. 1-3. gen (..., n, D), real (..., m, D) or, per patch, (n, k, D); mean (D,), or per patch (n, D) (one
    bank mean per generated patch). Returns A (..., n, m|k). ``valid`` (n, k) excludes padded candidates (a bank
    smaller than k) from the minimum and the softmax.

    The authors write the softmax's argument as 1 - d~/h; softmax ignores the constant, so it equals eq. 3's
    (1 - d~)/h for every h.
    """
    per_patch = real.dim() == gen.dim() + 1  # candidates (n, k, D)
    g = F.normalize(gen - mean, dim=-1)
    r = F.normalize(real - (mean.unsqueeze(-2) if per_patch and mean.dim() > 1 else mean), dim=-1)
    cos = torch.einsum("nd,nkd->nk", g, r) if per_patch else g @ r.transpose(-1, -2)
    d = 1 - cos  # eq. 1
    if valid is not None:
        d = d.masked_fill(~valid, 1e4)  # d <= 2 otherwise; finite, so gradients stay finite
    d_tilde = d / (d.min(dim=-1, keepdim=True).values + eps)  # eq. 2
    return torch.softmax((1 - d_tilde) / h, dim=-1)  # eq. 3 (padded candidates get ~0 weight)


def contextual_loss(A: torch.Tensor) -> torch.Tensor:
    """Eq. 4-6: -log(mean_i max_j A_ij)."""
    return -torch.log(A.max(dim=-1).values.mean())


def max_affinity(gen: torch.Tensor, real: torch.Tensor, mean: torch.Tensor, h: float = 1.0, eps: float = 1e-5,
                 row_term: torch.Tensor | None = None, col_counts: torch.Tensor | None = None) -> torch.Tensor:
    """max_j A_ij (eq. 1-3, pooled form) of every generated patch, without keeping A: value and gradient equal
    ``affinity(gen, real, mean, h, eps).max(-1).values``.

    Several terms (image, class) at once: ``row_term`` (n,) is the term of each generated row (rows grouped by
    term, in term order), ``col_counts`` (T,) the number of real rows of each term (grouped the same way) and
    ``mean`` (T, D) each term's bank mean; a generated patch is compared with the real patches of its term only.
    """
    if row_term is None:
        row_term = torch.zeros(len(gen), dtype=torch.long, device=gen.device)
        col_counts = torch.tensor([len(real)], device=gen.device)
    mean = mean.reshape(-1, gen.shape[-1])
    ends = col_counts.cumsum(0)
    col_term = torch.repeat_interleave(torch.arange(len(col_counts), device=gen.device), col_counts)
    g = F.normalize(gen - mean[row_term], dim=-1)  # eq. 1's centring and normalisation
    r = F.normalize(real - mean[col_term], dim=-1)
    first, stop = (ends - col_counts)[row_term], ends[row_term]
    return torch.exp(-_NegLogMaxAffinity.apply(g, r.detach(), first, stop, h, eps))


def term_losses(max_a: torch.Tensor, row_term: torch.Tensor, n_terms: int) -> torch.Tensor:
    """Eq. 4-6 for each term: -log(mean over its generated patches of max_j A_ij). max_j A_ij >= 1 / m, so the
    mean is taken on A itself, not in log space."""
    sums = max_a.new_zeros(n_terms).index_add(0, row_term, max_a)
    return -torch.log(sums / torch.bincount(row_term, minlength=n_terms))


def pooled_contextual_loss(gen: torch.Tensor, real: torch.Tensor, mean: torch.Tensor, h: float = 1.0,
                           eps: float = 1e-5) -> torch.Tensor:
    """Eq. 1-6, pooled form, for one class: equals ``contextual_loss(affinity(gen, real, mean, h, eps))``."""
    return -torch.log(max_affinity(gen, real, mean, h, eps).mean())


BLOCK = 1 << 22  # affinities per block of rows (16 MB in float32)


class _NegLogMaxAffinity(torch.autograd.Function):
    """-log max_j A_ij for unit rows g (n, D) against the columns [first_i, stop_i) of unit rows r (m, D); gradients
    into g only. max_j A_ij is the weight of the nearest real patch j* (d~ grows with d), so with
    cm_i = max_j cos_ij:  -log max_j A_ij = logsumexp_j((cos_ij - cm_i) / ((1 - cm_i + eps) h)).

    Blocks of rows keep the temporaries small; the backward pass recomputes them.
    """

    @staticmethod
    def _blocks(g, r):
        step = max(1, BLOCK // max(1, len(r)))
        return [slice(i, min(len(g), i + step)) for i in range(0, len(g), step)]

    @staticmethod
    def _block(g, r, first, stop, rows, h, eps):
        """z = (cos - cm) s with s = 1 / ((d_min + eps) h) over the columns the block's terms span (-inf outside
        a row's own term), with j* (from column ``lo``), s, ``lo`` and the mask of foreign columns."""
        lo, hi = int(first[rows.start]), int(stop[rows.stop - 1])  # rows are grouped by term
        cos = g[rows] @ r[lo:hi].T
        foreign = None
        if int(first[rows.stop - 1]) != lo:  # the block spans several terms
            cols = torch.arange(lo, hi, device=g.device)
            foreign = (cols < first[rows, None]) | (cols >= stop[rows, None])
            cos.masked_fill_(foreign, -math.inf)
        cm, best = cos.max(dim=1)
        scale = 1 / ((1 - cm + eps) * h)
        return cos.sub_(cm[:, None]).mul_(scale[:, None]), best, scale, lo, foreign

    @staticmethod
    def forward(ctx, g, r, first, stop, h, eps):
        out = g.new_empty(len(g))
        for rows in _NegLogMaxAffinity._blocks(g, r):
            z = _NegLogMaxAffinity._block(g, r, first, stop, rows, h, eps)[0]
            out[rows] = torch.logsumexp(z, dim=1)
        ctx.save_for_backward(g, r, first, stop, out)
        ctx.h, ctx.eps = h, eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        g, r, first, stop, lse = ctx.saved_tensors
        grad = torch.empty_like(g)
        for rows in _NegLogMaxAffinity._blocks(g, r):
            z, best, scale, lo, foreign = _NegLogMaxAffinity._block(g, r, first, stop, rows, ctx.h, ctx.eps)
            p = torch.exp(z - lse[rows, None])  # the softmax of z (0 on foreign columns)
            w = grad_out[rows] * scale
            pz = p * z if foreign is None else (p * z).masked_fill_(foreign, 0)
            # d lse / d cos_ij = p_ij s_i, plus through cm_i (column j*): s_i (h sum_j p_ij z_ij - 1)
            through_max = w * (ctx.h * pz.sum(1) - 1)
            dcos = p.mul_(w[:, None])
            dcos[torch.arange(len(best), device=g.device), best] += through_max
            grad[rows] = dcos @ r[lo:lo + dcos.shape[1]]
        return grad, None, None, None, None, None


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
        for s in range(len(self.banks.scales)):
            mine = [t for t in terms if t.scale == s]
            if mine:
                total = total + self.scale_losses(fake, s, mine).sum()
        return total / fake.shape[0]

    def scale_losses(self, fake: torch.Tensor, scale: int, terms: list[Retrieved]) -> torch.Tensor:
        """The loss of every (image, class) term of one scale, all computed together."""
        size, stride = self.banks.scales[scale]
        patches = extract_patches(fake, size, stride)
        gen = torch.cat([patches[t.image][t.rows.to(fake.device)] for t in terms])
        counts = torch.tensor([int(t.rows.sum()) for t in terms], device=fake.device)
        row_term = torch.repeat_interleave(torch.arange(len(terms), device=fake.device), counts)
        mean = torch.from_numpy(np.stack([t.mean for t in terms])).to(gen)
        if self.cx.pooling == "pooled":
            real = torch.from_numpy(np.concatenate([t.real for t in terms])).to(gen)
            col_counts = torch.tensor([len(t.real) for t in terms], device=fake.device)
            best = max_affinity(gen, real, mean, self.cx.h, self.cx.eps, row_term, col_counts)
        else:
            real = torch.from_numpy(np.concatenate([t.real[t.inverse] for t in terms])).to(gen)
            valid = torch.from_numpy(np.concatenate([t.valid for t in terms])).to(fake.device)
            best = affinity(gen, real, mean[row_term], self.cx.h, self.cx.eps, valid).max(dim=-1).values
        return term_losses(best, row_term, len(terms))
