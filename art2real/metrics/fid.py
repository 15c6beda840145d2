"""FID and KID.

FID: Fréchet distance between Gaussians fitted (float64) to Inception pool3 features. The matrix square root is
computed through symmetric eigen-decompositions, tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), which is
real by construction (no complex blow-ups, no eps retries) and equals scipy's sqrtm route where that is stable.

KID: the unbiased MMD^2 estimator with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
random subsets drawn with a fixed seed; reported as mean and std over subsets (Bińkowski et al. 2018).
"""
from __future__ import annotations

import warnings

import numpy as np

FID_MIN_IMAGES = 2048  # below this, FID is biased upwards (more than the feature dimension)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    if len(f) < FID_MIN_IMAGES:
        warnings.warn(f"FID on {len(f)} images (< {FID_MIN_IMAGES}): the estimate is biased upwards and not "
                      "comparable to the paper's; prefer KID for small sets", stacklevel=2)
    return f.mean(0), np.cov(f, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape} vs {mu2.shape}, {s1.shape} vs {s2.shape}")
    root = _psd_sqrt(s1)
    middle = root @ s2 @ root
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID of two feature sets. A set of n < d images has a covariance of rank < n, S = A^T A with A its centred
    features / sqrt(n - 1), so the d x d eigen-decompositions shrink to n x n: tr sqrt(S1 S2) is the sum of the
    singular values of A1 A2^T when both sets are small, else sum sqrt(eig(A S A^T)) with the small set's A
    (the same nonzero eigenvalues as S1 S2). Exact, and seconds instead of minutes on a CPU for test sets."""
    (mu1, s1), (mu2, s2) = statistics(features1), statistics(features2)
    a1, a2 = _factor(features1), _factor(features2)
    if a1 is None and a2 is None:
        return frechet_distance(mu1, s1, mu2, s2)
    if a1 is not None and a2 is not None:
        tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    else:
        a, s = (a1, s2) if a1 is not None else (a2, s1)
        middle = a @ s @ a.T
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _factor(features: np.ndarray) -> np.ndarray | None:
    """A with S = A^T A for a set of fewer images than dimensions (else None: the full route is as cheap)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2 or len(f) >= f.shape[1]:
        return None
    return (f - f.mean(0)) / np.sqrt(len(f) - 1)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(features1: np.ndarray, features2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased KID over random subsets (without replacement within a subset)."""
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    m = min(len(x), len(y), subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 images in each set")
    rng = np.random.default_rng(seed)
    values = [_mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))
