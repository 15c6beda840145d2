"""Eq. 1-6: affinities by hand, limits, the 50% rule inside the loss, gradients, pooled vs per-patch."""
import numpy as np
import pytest
import torch

from art2real.bank.memory import MemoryBanks
from art2real.bank.patches import extract_patches, to_u8, to_unit
from art2real.config import get_config
from art2real.nn import contextual
from art2real.nn.contextual import (SemanticContextualLoss, affinity, contextual_loss, max_affinity,
                                    pooled_contextual_loss, term_losses)


def reference_affinity(gen, real, mean, h=1.0, eps=1e-5):
    """The equations written out element by element, in float64 numpy."""
    A = np.zeros((len(gen), len(real)))
    for i, g in enumerate(gen):
        gc = (g - mean) / np.linalg.norm(g - mean)
        d = np.array([1 - gc @ ((r - mean) / np.linalg.norm(r - mean)) for r in real])  # eq. 1
        dt = d / (d.min() + eps)  # eq. 2
        w = np.exp((1 - dt) / h)  # eq. 3
        A[i] = w / w.sum()
    return A


def test_affinity_by_hand():
    gen = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    real = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    mean = torch.zeros(2)
    A = affinity(gen, real, mean)
    # patch 0: d = [0, 1 - 1/sqrt2, 2]; d~ = d / 1e-5: only the identical patch keeps weight
    assert A[0].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-12)
    # patch 1: d = [1, 1 - 1/sqrt2, 1]; min = 0.2929: d~ = [3.414, 1, 3.414]
    m = 1 - 2 ** -0.5
    e = np.exp(1 - np.array([1.0, m, 1.0]) / (m + 1e-5))
    assert A[1].tolist() == pytest.approx((e / e.sum()).tolist(), rel=1e-5)


@pytest.mark.parametrize("h", [1.0, 0.5, 2.0])
def test_affinity_matches_the_equations_on_random_data(h):
    rng = np.random.default_rng(0)
    gen, real, mean = rng.normal(size=(7, 12)), rng.normal(size=(11, 12)), rng.normal(size=12) * 0.1
    A = affinity(torch.from_numpy(gen), torch.from_numpy(real), torch.from_numpy(mean), h=h)
    assert np.allclose(A.numpy(), reference_affinity(gen, real, mean, h), rtol=1e-10, atol=1e-12)
    expected = -np.log(reference_affinity(gen, real, mean, h).max(1).mean())
    assert contextual_loss(A).item() == pytest.approx(expected, rel=1e-10)


def test_gradcheck_on_a_tiny_case():
    torch.manual_seed(0)
    gen = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    real, mean = torch.randn(5, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64) * 0.1
    assert torch.autograd.gradcheck(lambda g: contextual_loss(affinity(g, real, mean, h=0.5, eps=0.1)), (gen,))


@pytest.mark.parametrize("block", [1 << 22, 7])  # one block; many blocks with a ragged last one
def test_pooled_loss_equals_the_affinity_form(monkeypatch, block):
    monkeypatch.setattr(contextual, "BLOCK", block)
    torch.manual_seed(0)
    gen = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    real, mean = torch.randn(5, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64) * 0.1
    real[:2] = gen[:2].detach()  # two generated patches have an exact match (d_min = 0)
    for h, eps in ((1.0, 1e-5), (0.5, 0.1)):
        expected = contextual_loss(affinity(gen, real, mean, h, eps))
        loss = pooled_contextual_loss(gen, real, mean, h, eps)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
        grad_expected, = torch.autograd.grad(expected, gen)
        grad, = torch.autograd.grad(loss, gen)
        assert torch.allclose(grad, grad_expected, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(lambda g: pooled_contextual_loss(g, real[2:], mean, 0.5, 0.1), (gen,))


@pytest.mark.parametrize("block", [1 << 22, 20, 7])  # one block; blocks across terms; blocks inside terms
def test_several_terms_at_once_equal_each_term_alone(monkeypatch, block):
    monkeypatch.setattr(contextual, "BLOCK", block)
    torch.manual_seed(1)
    rows, cols = [3, 1, 5], [4, 2, 6]  # three (image, class) terms with their own real patches and means
    gen = torch.randn(sum(rows), 6, dtype=torch.float64, requires_grad=True)
    real, mean = torch.randn(sum(cols), 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64) * 0.2
    real[0] = gen[1].detach()  # an exact match inside term 0
    row_term = torch.repeat_interleave(torch.arange(3), torch.tensor(rows))
    loss = term_losses(max_affinity(gen, real, mean, 0.5, 1e-3, row_term, torch.tensor(cols)), row_term, 3)
    g, r = gen.split(rows), real.split(cols)
    expected = torch.stack([contextual_loss(affinity(g[t], r[t], mean[t], 0.5, 1e-3)) for t in range(3)])
    assert torch.allclose(loss, expected, rtol=1e-12)
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)  # distinct weights: no cancellation hides errors
    grad, = torch.autograd.grad((loss * weights).sum(), gen)
    grad_expected, = torch.autograd.grad((expected * weights).sum(), gen)
    assert torch.allclose(grad, grad_expected, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x: term_losses(max_affinity(x, real, mean, 0.5, 1e-3, row_term, torch.tensor(cols)), row_term, 3),
        (gen,))


def _banks_from_image(image_u8, tmp_path, cfg):
    patches = extract_patches(image_u8.float(), 4, 4)[0].to(torch.uint8).numpy()
    return MemoryBanks.from_arrays({(4, 4): {0: patches, -1: patches[:5]}}, tmp_path / "banks", cfg.bank)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_loss_is_zero_when_every_generated_patch_is_in_the_bank(tmp_path, metric):
    cfg = get_config("smoke", {"bank.scales": ((4, 4),), "bank.metric": metric})
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    banks = _banks_from_image(image, tmp_path, cfg)
    fake = torch.from_numpy(to_unit(image.numpy()))
    labels = torch.zeros(1, 16, 16, dtype=torch.int64)
    for pooling in ("pooled", "per_patch"):
        cfg.cx.pooling = pooling
        loss = SemanticContextualLoss(banks, cfg, n_classes=1)(fake, labels)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)
    noisy = (fake + 0.3 * torch.randn_like(fake)).clamp(-1, 1)
    assert SemanticContextualLoss(banks, cfg, 1)(noisy, labels).item() > 1e-3


def test_per_patch_equals_pooled_when_k_covers_the_bank(tmp_path):
    cfg = get_config("smoke", {"bank.scales": ((4, 4),), "cx.k": 16})
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)  # 16 patches in the bank
    banks = _banks_from_image(image, tmp_path, cfg)
    fake = torch.rand(2, 3, 16, 16) * 2 - 1
    labels = torch.zeros(2, 16, 16, dtype=torch.int64)
    labels[1, 8:] = -1  # half background: the background bank (5 patches, k padded) is used there
    cfg.cx.pooling = "pooled"
    pooled = SemanticContextualLoss(banks, cfg, 1)(fake, labels)
    cfg.cx.pooling = "per_patch"
    per_patch = SemanticContextualLoss(banks, cfg, 1)(fake, labels)
    assert per_patch.item() == pytest.approx(pooled.item(), rel=1e-5)


def test_gradients_flow_only_into_the_generated_image(tmp_path):
    cfg = get_config("smoke", {"bank.scales": ((4, 4),)})
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    banks = _banks_from_image(image, tmp_path, cfg)
    fake = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    labels = torch.zeros(1, 16, 16, dtype=torch.int64)
    labels[0, :, :2] = -1  # columns 0-1 are background: patches there are 50% background -> both banks
    SemanticContextualLoss(banks, cfg, 1)(fake, labels).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    # a painting with no class at all (no mask) uses the background bank only
    loss = SemanticContextualLoss(banks, cfg, 1)(fake.detach(), torch.full((1, 16, 16), -1))
    assert torch.isfinite(loss) and loss > 0


def test_loss_reproduces_the_authors_procedure_with_exact_search(tmp_path):
    """The authors' compute_contextual, transcribed in float64 numpy (masks unfolded per scale, the 50% rule with
    background = pixels in no mask, exact L2 k-NN, pooled unique ids, eq. 1-6), against our loss with
    ``bank.index = flat``, pooled, k = 5, h = 1, eps = 1e-5."""
    cfg = get_config("smoke", {"bank.scales": ((4, 4), (8, 4)), "bank.index": "flat", "cx.pooling": "pooled"})
    rng = np.random.default_rng(3)
    sizes = {0: 40, 1: 30, -1: 25}  # patches per class bank (-1: background)
    arrays = {(p, s): {c: rng.integers(0, 256, (n, 3 * p * p), dtype=np.uint8) for c, n in sizes.items()}
              for p, s in cfg.bank.scales}
    banks = MemoryBanks.from_arrays(arrays, tmp_path / "banks", cfg.bank)
    fake = torch.rand(2, 3, 16, 16) * 2 - 1
    labels = torch.full((2, 16, 16), -1)
    labels[0, :9, :] = 0
    labels[0, 9:, 5:] = 1
    labels[1, :, 6:] = 1  # image 1: class 1 and background only
    ours = SemanticContextualLoss(banks, cfg, n_classes=2)(fake, labels).item()

    def unfold(x, p, s):  # (C, H, W) -> (L, C p p), channel-first rows like the authors' unfold chain
        return np.stack([x[:, i:i + p, j:j + p].reshape(-1) for i in range(0, x.shape[1] - p + 1, s)
                         for j in range(0, x.shape[2] - p + 1, s)])

    total = 0.0
    for b in range(2):
        gen, lab = fake[b].double().numpy(), labels[b].numpy()
        for p, s in cfg.bank.scales:
            masks = {c: (lab == c).astype(float)[None] for c in (0, 1) if (lab == c).any()}
            masks[-1] = 1 - np.clip(sum(masks.values()), 0, 1)
            patches = unfold(gen, p, s)
            for c, mask in masks.items():
                rows = patches[unfold(mask, p, s).sum(1) >= p * p / 2]
                if not len(rows):
                    continue
                bank = arrays[p, s][c].astype(np.float64) / 127.5 - 1
                dist = ((rows[:, None] - bank[None]) ** 2).sum(-1)
                ids = np.unique(np.argsort(dist, 1)[:, :5])
                mean = bank.mean(0)
                total += -np.log(reference_affinity(rows, bank[ids], mean).max(1).mean())
    assert ours == pytest.approx(total / 2, rel=1e-5)
