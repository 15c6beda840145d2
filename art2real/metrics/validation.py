"""The trainer's validation metric: FID or KID of translated training paintings against the real photos, each
``validate_every`` epochs; lower is better, and it drives early stopping and the choice of ``best.pt``.

Which paintings: ``train.val_images`` of them (None = all, the paper preset). FID on a few dozen images in 2048
dimensions is dominated by its bias, so the small presets validate on KID, which is unbiased on small sets; the
paper preset validates on FID over every training painting, as the paper chose its epochs by FID.

Paintings and photos are whole images at the load size (``data.image_size + data.crop_margin``: the training scale,
uncropped), as the test paintings are translated. A stochastic translator (``reseed``) gets each painting's own
attribute, drawn from its file name, so a validation does not depend on what the translator did before.
"""
from __future__ import annotations

import numpy as np
import torch

from ..bank.patches import to_u8
from ..data.dataset import ImageFolder
from ..data.registry import dataset_root
from ..translate import translate_tensor
from .fid import fid, kid
from .inception import cached_features, inception_features


class Validator:
    def __init__(self, cfg):
        root = dataset_root(cfg.data.dataset)
        self.metric, self.seed, self.size = cfg.train.val_metric, cfg.seed, cfg.data.load_size
        self.paintings = ImageFolder(root / "trainA", self.size, cfg.train.val_images)
        self.photos = root / "trainB"
        self._reference: dict[str, np.ndarray] = {}  # per device, computed once

    def reference(self, device: torch.device) -> np.ndarray:
        """The photos' features on the device G(x) is measured on (features differ in the last bits between
        devices)."""
        key = str(device)
        if key not in self._reference:
            self._reference[key] = cached_features(self.photos, device, progress=False, size=self.size)
        return self._reference[key]

    @torch.no_grad()
    def __call__(self, translator: torch.nn.Module) -> float:
        device = next(translator.parameters()).device
        feats = []
        for start, batch in zip(range(0, len(self.paintings), 8), self.paintings.batches(8)):
            if hasattr(translator, "reseed"):
                translator.reseed([self.paintings.name(i) for i in range(start, start + len(batch))])
            # padded to a multiple of 4 and cropped back, as at test time (the load size may be any)
            feats.append(inception_features(to_u8(translate_tensor(translator, batch.to(device),
                                                                   tile=max(1024, self.size)))))
        feats = np.concatenate(feats)
        reference = self.reference(device)
        if self.metric == "fid":  # fid() takes the exact n x n route when there are fewer images than dimensions
            return fid(feats, reference)
        return kid(feats, reference, subsets=50, seed=self.seed)[0]
