"""The offline default: unsupervised semantic classes from k-means over dense pretrained CNN features.

Features per cell of stride 8: EfficientNet-Lite0 activations at strides 8 and 16 (the latter upsampled), each
L2-normalised, plus a CIE Lab colour term weighted by ``color_weight`` (sky and foliage differ first by colour).
K-means is fitted on the real photos of a setting and saved with its banks, so paintings, photos and generated
images share one class vocabulary. Class probabilities: softmax over negative squared distances to the
centroids divided by ``temperature``; the scores are smoothed with a Gaussian (``smoothing`` cells) before the
softmax to avoid speckled masks, then upsampled bilinearly to the image resolution.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import lite0_dense
from ..io import atomic_path


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] sRGB -> CIE Lab (D65) scaled to roughly unit range (L/100, a/100, b/100)."""
    rgb = (images + 1) / 2
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
                     device=images.device, dtype=images.dtype)
    xyz = torch.einsum("ij,njhw->nihw", m, linear) / torch.tensor([0.9505, 1.0, 1.089], device=images.device,
                                                                   dtype=images.dtype).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-8) ** (1 / 3), 7.787 * xyz + 16 / 116)
    L, a, b = 116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], 1) / 100


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    radius = max(1, int(round(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum())
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


class KMeansSegmenter:
    def __init__(self, n_classes: int = 8, feature_size: int = 256, smoothing: float = 2.0,
                 color_weight: float = 0.5, temperature: float = 0.1, centroids: np.ndarray | None = None,
                 seed: int = 0):
        self.n_classes, self.feature_size, self.smoothing = n_classes, feature_size, smoothing
        self.color_weight, self.temperature, self.seed = color_weight, temperature, seed
        self.centroids = None if centroids is None else torch.as_tensor(centroids, dtype=torch.float32)

    @classmethod
    def from_config(cls, cfg, seed: int = 0) -> "KMeansSegmenter":
        s = cfg.segment
        return cls(s.n_classes, s.feature_size, s.smoothing, s.color_weight, s.temperature, seed=seed)

    @property
    def class_names(self) -> list[str]:
        return [f"region {i}" for i in range(self.n_classes)]

    @property
    def name(self) -> str:
        if self.centroids is None:
            return f"kmeans{self.n_classes}-lite0-unfitted"
        digest = hashlib.sha256(self.centroids.numpy().tobytes()).hexdigest()[:8]
        return f"kmeans{self.n_classes}-lite0-{digest}"

    # ------------------------------------------------------------------ features
    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) cell features at stride 8 of images resized to ``feature_size``."""
        x = F.interpolate(images, size=(self.feature_size,) * 2, mode="bilinear", align_corners=False,
                          antialias=True)
        f8, f16 = lite0_dense(x)
        f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        lab = F.adaptive_avg_pool2d(rgb_to_lab(x), f8.shape[-2:])
        return torch.cat([F.normalize(f8, dim=1), F.normalize(f16, dim=1), self.color_weight * lab], 1)

    def fit(self, images, batch_size: int = 8, max_vectors: int = 50_000) -> "KMeansSegmenter":
        """Fit the centroids on an iterable of (3, H, W) photo tensors in [-1, 1]."""
        from sklearn.cluster import KMeans

        feats = []
        batch = []
        for image in images:
            batch.append(image)
            if len(batch) == batch_size:
                feats.append(self._flat(torch.stack(batch)))
                batch = []
        if batch:
            feats.append(self._flat(torch.stack(batch)))
        data = np.concatenate(feats)
        if len(data) < self.n_classes:
            raise ValueError(f"{len(data)} feature vectors cannot fit {self.n_classes} classes")
        rng = np.random.default_rng(self.seed)
        if len(data) > max_vectors:
            data = data[rng.choice(len(data), max_vectors, replace=False)]
        km = KMeans(self.n_classes, n_init=4, random_state=self.seed).fit(data)
        # order classes by mean lightness of the colour term, so class ids are stable and readable
        order = np.argsort(km.cluster_centers_[:, -3])[::-1]
        self.centroids = torch.as_tensor(km.cluster_centers_[order], dtype=torch.float32)
        return self

    def _flat(self, images: torch.Tensor) -> np.ndarray:
        f = self.features(images)
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).cpu().numpy()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        if self.centroids is None:
            raise RuntimeError("the k-means segmenter is not fitted: call fit() on photos, or load() a saved one")
        f = self.features(images)
        c = self.centroids.to(f.device)
        d2 = (f.pow(2).sum(1, keepdim=True) - 2 * torch.einsum("ndhw,kd->nkhw", f, c)
              + c.pow(2).sum(1).view(1, -1, 1, 1))
        scores = _gaussian_blur(-d2 / self.temperature, self.smoothing)
        probs = F.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return probs.softmax(1)

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images).argmax(1)

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, centroids=self.centroids.numpy(), n_classes=self.n_classes,
                         feature_size=self.feature_size, smoothing=self.smoothing, color_weight=self.color_weight,
                         temperature=self.temperature, seed=self.seed)

    @classmethod
    def load(cls, path: str | Path) -> "KMeansSegmenter":
        z = np.load(path)
        return cls(int(z["n_classes"]), int(z["feature_size"]), float(z["smoothing"]), float(z["color_weight"]),
                   float(z["temperature"]), z["centroids"], int(z["seed"]))
