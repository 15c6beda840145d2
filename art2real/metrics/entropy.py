"""Entropy analysis (paper Table 3): how confident pretrained models are on an image set.

- classification: entropy of the softmax over ImageNet classes, per image;
- segmentation: entropy of the segmenter's per-pixel class probabilities, averaged over pixels, per image;
- detection: entropy of the class posterior of each detected box (Faster R-CNN), averaged over boxes.
Natural logarithm (nats) by default. Each function returns a :class:`~art2real.outcomes.Measured` (mean over
images, or boxes, with the model that computed it) or a :class:`~art2real.outcomes.NotAvailable`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.dataset import ImageFolder
from ..outcomes import Measured, NotAvailable, Outcome
from .models import classifier, detector

DETECTOR = "fasterrcnn_resnet50_fpn (COCO; the paper: Faster R-CNN on Visual Genome)"


def entropy(p: torch.Tensor, dim: int = -1, base: float = math.e) -> torch.Tensor:
    """-sum p log p along ``dim`` (0 log 0 = 0), in units of ``base``."""
    p = p.double()
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(dim) / math.log(base)


def _batches(folder, size: int, batch_size: int, desc: str):
    images = ImageFolder(folder, size)
    return tqdm(images.batches(batch_size), desc=desc, leave=False, total=-(-len(images) // batch_size))


def _result(values: list[float], model: str, base: float, unit: str) -> Measured:
    units = "nats" if base == math.e else f"log base {base:g}"
    return Measured(float(np.mean(values)), model, len(values), float(np.std(values)), f"{units}, {unit}")


def classification_entropy(folder, model: str = "auto", size: int = 256, batch_size: int = 16, device="cpu",
                           base: float = math.e) -> Outcome:
    net = classifier(model, device)
    if isinstance(net, NotAvailable):
        return net
    values = []
    for batch in _batches(folder, size, batch_size, "classification entropy"):
        logits, _ = net.run(batch.to(device))
        values += entropy(logits.softmax(-1), base=base).tolist()
    return _result(values, net.name, base, "per image")


def segmentation_entropy(folder, segmenter, size: int = 256, batch_size: int = 8, device="cpu",
                         base: float = math.e) -> Outcome:
    if isinstance(segmenter, NotAvailable):
        return segmenter
    values = []
    for batch in _batches(folder, size, batch_size, "segmentation entropy"):
        probs = segmenter.probabilities(batch.to(device))
        values += entropy(probs, dim=1, base=base).mean(dim=(1, 2)).tolist()
    return _result(values, segmenter.name, base, "per pixel, averaged per image")


@torch.no_grad()
def box_class_posteriors(model, images: torch.Tensor) -> list[torch.Tensor]:
    """Softmax over classes (incl. background) of each box a torchvision Faster R-CNN detects, per image."""
    x = [(im + 1) / 2 for im in images]
    detections = model(x)
    transformed, _ = model.transform(x)
    features = model.backbone(transformed.tensors)
    out = []
    for i, det in enumerate(detections):
        if len(det["boxes"]) == 0:
            out.append(torch.zeros(0, model.roi_heads.box_predictor.cls_score.out_features))
            continue
        scale_h = transformed.image_sizes[i][0] / images.shape[-2]
        scale_w = transformed.image_sizes[i][1] / images.shape[-1]
        boxes = det["boxes"] * torch.tensor([scale_w, scale_h, scale_w, scale_h], device=det["boxes"].device)
        pooled = model.roi_heads.box_roi_pool({k: v[i:i + 1] for k, v in features.items()}, [boxes],
                                              [transformed.image_sizes[i]])
        logits, _ = model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))
        out.append(F.softmax(logits, -1))
    return out


def detection_entropy(folder, size: int = 256, batch_size: int = 4, device="cpu", base: float = math.e,
                      model=None) -> Outcome:
    model = model if model is not None else detector(device)
    if isinstance(model, NotAvailable):
        return model
    values = []
    for batch in _batches(folder, size, batch_size, "detection entropy"):
        for posterior in box_class_posteriors(model, batch.to(device)):
            values += entropy(posterior, base=base).tolist()
    if not values:
        return NotAvailable("no box detected in any image")
    return _result(values, DETECTOR, base, "per box")
