"""The trainer's validation metric: FID or KID of G(x) on a fixed subset of training paintings against the real
photos, each ``validate_every`` epochs; lower is better, and it drives early stopping."""
from __future__ import annotations

import numpy as np
import torch

from ..bank.patches import to_u8
from ..data.dataset import ImageFolder
from ..data.registry import dataset_root
from .fid import frechet_distance, kid, statistics
from .inception import cached_features, inception_features


class Validator:
    def __init__(self, cfg):
        root = dataset_root(cfg.data.dataset)
        self.metric = cfg.train.val_metric
        self.paintings = ImageFolder(root / "trainA", cfg.data.image_size, cfg.train.val_images)
        self.reference = cached_features(root / "trainB", progress=False, size=cfg.data.image_size)
        # the photos' statistics are the same at every validation: computed once
        self.reference_stats = statistics(self.reference) if self.metric == "fid" else None
        self.seed = cfg.seed

    @torch.no_grad()
    def __call__(self, trainer) -> float:
        device = trainer.device
        feats = []
        for i in range(len(self.paintings)):
            fake = trainer.G(self.paintings[i].unsqueeze(0).to(device))
            feats.append(inception_features(to_u8(fake)))
        feats = np.concatenate(feats)
        if self.metric == "fid":
            return frechet_distance(*statistics(feats), *self.reference_stats)
        return kid(feats, self.reference, subsets=50, seed=self.seed)[0]
