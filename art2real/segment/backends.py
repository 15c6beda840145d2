"""Segmenters with downloaded weights: detectron2 panoptic models and torchvision's semantic models.

Both are imported lazily. detectron2 is not on PyPI; torchvision's weights are used only when they are already
in the torch cache (downloaded once when online). When either is missing, the error says how to get it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import imagenet_input
from ..bank.patches import to_u8
from ..errors import DataError
from .base import BACKGROUND

DETECTRON2_DEFAULT = "COCO-PanopticSegmentation/panoptic_fpn_R_101_3x.yaml"
DETECTRON2_INSTALL = ("detectron2 is not installed. It is not on PyPI: install it from source with "
                      "`pip install 'git+https://github.com/facebookresearch/detectron2.git'` "
                      "(or see environment.yml), then its model zoo downloads the weights once.")


def panoptic_vocabulary(thing_classes: list[str], stuff_classes: list[str]) -> list[str]:
    """One class list for things and stuff (detectron2's separated metadata puts a 'things' entry in stuff)."""
    return list(thing_classes) + [s for s in stuff_classes if s != "things" and s not in thing_classes]


def panoptic_to_labels(panoptic_seg: torch.Tensor, segments_info: list[dict], thing_classes: list[str],
                       stuff_classes: list[str]) -> np.ndarray:
    """detectron2's (segment-id map, segments_info) -> class ids in :func:`panoptic_vocabulary`; void = -1."""
    names = panoptic_vocabulary(thing_classes, stuff_classes)
    seg = np.asarray(panoptic_seg.cpu() if hasattr(panoptic_seg, "cpu") else panoptic_seg)
    labels = np.full(seg.shape, BACKGROUND, dtype=np.int64)
    for info in segments_info:
        table = thing_classes if info.get("isthing", False) else stuff_classes
        name = table[info["category_id"]]
        if name in names:
            labels[seg == info["id"]] = names.index(name)
    return labels


class Detectron2Segmenter:
    def __init__(self, config: str = DETECTRON2_DEFAULT, device: str = "cpu"):
        try:
            from detectron2 import model_zoo
            from detectron2.config import get_cfg
            from detectron2.data import MetadataCatalog
            from detectron2.engine import DefaultPredictor
        except ImportError as e:
            raise ImportError(DETECTRON2_INSTALL) from e
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(config))
        cfg.MODEL.WEIGHTS = model_zoo.get_checkpoint_url(config)
        cfg.MODEL.DEVICE = device
        self.predictor = DefaultPredictor(cfg)
        meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        self.thing_classes, self.stuff_classes = meta.thing_classes, meta.stuff_classes
        self.class_names = panoptic_vocabulary(self.thing_classes, self.stuff_classes)
        self.name = f"detectron2-{Path(config).stem}"

    def _run(self, images: torch.Tensor) -> list[dict]:
        bgr = to_u8(images).permute(0, 2, 3, 1).flip(-1).cpu().numpy()
        return [self.predictor(im) for im in bgr]

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.from_numpy(panoptic_to_labels(*o["panoptic_seg"], self.thing_classes,
                                                                self.stuff_classes)) for o in self._run(images)])

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax of the semantic head (stuff classes + 'things'); panoptic output itself has none."""
        return torch.stack([o["sem_seg"].softmax(0).cpu() for o in self._run(images)])


class TorchvisionSegmenter:
    """torchvision.models.segmentation (VOC classes), only from weights already in the torch cache."""

    def __init__(self, model: str = "deeplabv3_resnet50", device: str = "cpu"):
        import torchvision

        from ..metrics.models import NotAvailable, cached_weights

        weights = cached_weights(model)
        if isinstance(weights, NotAvailable):
            raise DataError(str(weights))
        self.net = torchvision.models.get_model(model, weights=weights).eval().to(device)
        self.class_names = list(weights.meta["categories"])
        self.name = f"torchvision-{model}"

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(imagenet_input(images))["out"]
        return F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False).softmax(1)

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images).argmax(1)
