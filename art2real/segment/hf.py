"""Semantic segmenters with stuff classes from Hugging Face ``transformers``: ADE20K-trained SegFormer and
Mask2Former (150 classes: sky, tree, grass, water, mountain, building, person, ...).

``segment.model`` picks the model: a hub id (``nvidia/segformer-b4-finetuned-ade-512-512``, optionally
``id@revision``), a short name (``segformer``, ``mask2former``), or a local folder written by ``save_pretrained``.
The default is SegFormer-B4 (ADE20K, 512 px, 50.3 mIoU): a per-pixel classifier, so its probabilities are the
softmax it was trained with, pixel by pixel (the segmentation entropy of the paper's Table 3 reads them), 64M
parameters (256 MB to download) and 0.6x the CPU time of Mask2Former Swin-L at 384 px (216M parameters, 56.1
mIoU; benchmarks/bench_segment.py). ``segment.model=mask2former`` picks Mask2Former for its higher mIoU.

Weights come from the hub on first use and stay in the Hugging Face cache (``HF_HOME``, default
``~/.cache/huggingface``). The cache is read first; the hub is asked only when the model is not there. Offline
(``HF_HUB_OFFLINE=1``, ``ART2REAL_OFFLINE=1``, or no route to the hub) a model that is not cached fails at once
with the command that fetches it: ``python -m art2real.segment.hf fetch MODEL``.

Preprocessing is the model's own image processor, reproduced in torch on the input's device and batched: [-1, 1]
images -> [0, 1] -> resize (the processor's size rule; bilinear, antialiased, as torchvision resizes in the
processors) -> x 255 x rescale_factor -> (x - mean) / std. On float input the processor gives the same numbers
(to 1e-6); on uint8 images it rounds the resized pixels to 8 bits, a difference of at most one grey level.

Per-pixel probabilities:
- per-pixel classifiers (SegFormer, UperNet, ...): softmax over classes of the logits, upsampled bilinearly to
  the input resolution (transformers' ``post_process_semantic_segmentation`` takes the argmax of the same logits).
- mask classification (Mask2Former, MaskFormer): Q queries each predict a class distribution p_q (K classes +
  "no object") and a mask m_q(x) = sigmoid(mask logit). The semantic score of class c at pixel x is
  s_c(x) = sum_q p_q(c) m_q(x), as in transformers' ``post_process_semantic_segmentation`` (mask logits upsampled
  to the preprocessed image size before the sigmoid; transformers hard-codes 384 x 384, the size the ADE
  checkpoints are fed). s is upsampled to the input resolution and normalised over classes,
  p(c | x) = s_c(x) / sum_k s_k(x); the argmax is transformers' semantic map.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from ..errors import DataError, UserError

log = logging.getLogger(__name__)

SEGFORMER = "nvidia/segformer-b4-finetuned-ade-512-512"
MASK2FORMER = "facebook/mask2former-swin-large-ade-semantic"
DEFAULT_MODEL = SEGFORMER
ALIASES = {"segformer": SEGFORMER, "mask2former": MASK2FORMER}
MASK_CLASSIFICATION = ("mask2former", "maskformer")  # model types whose output is (class, mask) per query
# processors whose preprocessing is reproduced here (UperNet and SegFormer checkpoints use SegFormer's)
PROCESSORS = ("SegformerImageProcessor", "Mask2FormerImageProcessor", "MaskFormerImageProcessor")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HUB_TIMEOUT = 3.0  # seconds to open a connection to the hub before calling it unreachable


class WeightsUnavailable(DataError):
    """A model is neither cached nor downloadable now; the message names it and the command that fetches it."""


class NoSemanticSegmenter(UserError, RuntimeError):
    """Strict mode found no segmenter with real classes; the message says what is missing and the ways out."""


# ---------------------------------------------------------------------------------------------- where weights are
@dataclass(frozen=True)
class ModelSpec:
    source: str  # hub id or local folder
    revision: str | None = None
    local: bool = False

    def __str__(self) -> str:
        return self.source + (f"@{self.revision}" if self.revision else "")


def parse_model(model: str = "") -> ModelSpec:
    """``segment.model`` -> where the weights are. Empty = :data:`DEFAULT_MODEL`."""
    model = ALIASES.get(model, model) or DEFAULT_MODEL
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelSpec(str(path.resolve()), local=True)
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise DataError(f"segment.model={model!r}: no such folder. Give a folder written by "
                                f"save_pretrained, or a hub id such as {DEFAULT_MODEL!r}")
    source, _, revision = model.partition("@")
    return ModelSpec(source, revision or None)


def hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def offline_reason() -> str | None:
    """Why the hub must not be asked, or None."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ART2REAL_OFFLINE"):
        if _truthy(os.environ.get(var)):
            return f"offline mode ({var} is set)"
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = HUB_TIMEOUT) -> bool:
    """One TCP connection to the hub; the libraries' own retries would take half a minute to say no."""
    url = urlparse(hub_endpoint())
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def fetch_command(spec: ModelSpec) -> str:
    return f"python -m art2real.segment.hf fetch {spec}"


def _cached_file(spec: ModelSpec, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.source, filename, cache_dir=str(hub_cache()), revision=spec.revision)
    return Path(found) if isinstance(found, str) and Path(found).exists() else None


def _weights_in(folder: Path) -> list[Path]:
    return [folder / f for f in WEIGHT_FILES if (folder / f).exists()]


def is_cached(spec: ModelSpec) -> bool:
    """Config, image processor and weights are on disk (no network)."""
    if spec.local:
        folder = Path(spec.source)
        return (folder / "config.json").exists() and bool(_weights_in(folder))
    config = _cached_file(spec, "config.json")
    return (config is not None and _cached_file(spec, "preprocessor_config.json") is not None
            and bool(_weights_in(config.parent)))


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def availability(model: str = "") -> tuple[bool, str]:
    """(usable now, why), without loading anything."""
    if not installed("transformers"):
        return False, "transformers is not installed (pip install transformers)"
    try:
        spec = parse_model(model)
    except FileNotFoundError as e:
        return False, str(e)
    if is_cached(spec):
        return True, f"{spec}: {'local folder' if spec.local else f'in the Hugging Face cache ({hub_cache()})'}"
    if spec.local:
        return False, f"{spec}: the folder has no config.json or weights"
    why_not = offline_reason() or (None if hub_reachable() else f"the hub ({hub_endpoint()}) cannot be reached")
    if why_not:
        return False, f"{spec} is not in the Hugging Face cache ({hub_cache()}) and {why_not}"
    return True, f"{spec}: downloadable from {hub_endpoint()}"


def _unavailable(spec: ModelSpec, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"segmentation model {spec} is not in the Hugging Face cache ({hub_cache()}) and {why}. Fetch it once "
        f"with network: `{fetch_command(spec)}` (it stays in $HF_HOME, default ~/.cache/huggingface), or set "
        f"segment.model to a folder written by save_pretrained.")


def _from_pretrained(spec: ModelSpec, local_only: bool):
    from transformers import (AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation,
                              AutoModelForUniversalSegmentation)

    kw = {"revision": spec.revision, "local_files_only": local_only}
    if not spec.local:
        kw["cache_dir"] = str(hub_cache())
    config = AutoConfig.from_pretrained(spec.source, **kw)
    auto = AutoModelForUniversalSegmentation if config.model_type in MASK_CLASSIFICATION \
        else AutoModelForSemanticSegmentation
    try:
        model = auto.from_pretrained(spec.source, **kw)
    except ValueError as e:  # a model type that is neither a per-pixel nor a mask-classification segmenter
        raise ValueError(f"{spec} ({config.model_type}) is not a semantic segmentation model: {e}") from None
    return model, AutoImageProcessor.from_pretrained(spec.source, **kw)


def load_pretrained(spec: ModelSpec):
    """(model, image processor): from a local folder or the cache, else downloaded once; never a slow failure
    (the cache and the route to the hub are checked before transformers is even imported)."""
    if spec.local:
        if not is_cached(spec):
            raise DataError(f"segment.model={spec.source}: not a model folder (config.json, "
                                    f"preprocessor_config.json and {' or '.join(WEIGHT_FILES[::2])} expected)")
        return _from_pretrained(spec, local_only=True)
    if is_cached(spec):
        try:
            return _from_pretrained(spec, local_only=True)
        except OSError:
            pass  # partly cached: fetch the rest
    why_not = offline_reason() or (None if hub_reachable() else f"the hub ({hub_endpoint()}) cannot be reached")
    if why_not:
        raise _unavailable(spec, why_not)
    log.info("downloading %s into %s", spec, hub_cache())
    try:
        return _from_pretrained(spec, local_only=False)
    except OSError as e:
        raise _unavailable(spec, f"the download failed: {e}") from e


def weights_id(spec: ModelSpec) -> str:
    """What identifies the weights: the hub commit, or a digest of a local folder's files."""
    if not spec.local:
        config = _cached_file(spec, "config.json")
        return config.parent.name[:12] if config else (spec.revision or "main")
    from ..data.download import sha256

    folder = Path(spec.source)
    files = [folder / "config.json", folder / "preprocessor_config.json", *_weights_in(folder)]
    digest = hashlib.sha256("".join(f"{f.name}:{sha256(f)}\n" for f in files if f.exists()).encode())
    return f"sha256-{digest.hexdigest()[:12]}"


# ---------------------------------------------------------------------------------------------- preprocessing
def _field(size, key):
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


@dataclass(frozen=True)
class Preprocess:
    """An image processor's resize and normalisation, in torch on the input's device."""

    size: dict  # one of {height, width} | {shortest_edge[, longest_edge]} | {max_height, max_width}
    size_divisor: int  # Mask2Former rounds the resized size up to a multiple of this
    scale: float  # [0, 1] -> the model's pixel range (255 x rescale_factor)
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    resize: bool = True

    @classmethod
    def from_processor(cls, processor) -> "Preprocess":
        kind = type(processor).__name__
        if not kind.startswith(PROCESSORS):
            raise ValueError(f"the preprocessing of {kind} is not reproduced here; supported: {', '.join(PROCESSORS)}")
        resample = int(getattr(processor, "resample", 2))
        if resample != 2:
            # torch's antialiased bicubic differs between uint8 (PIL's kernel) and float tensors, so only
            # bilinear, the filter of the SegFormer and Mask2Former checkpoints, is reproduced exactly
            raise ValueError(f"{kind} resamples with PIL filter {resample}; only bilinear (2) is reproduced")
        keys = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")
        size = {k: _field(processor.size, k) for k in keys if _field(processor.size, k)}
        divisor = (getattr(processor, "size_divisor", 0) or 0) if kind.startswith(("Mask2Former", "MaskFormer")) else 0
        rescale = processor.rescale_factor if processor.do_rescale else 1.0
        normalize = processor.do_normalize
        return cls(size, int(divisor), 255.0 * rescale,
                   tuple(map(float, processor.image_mean)) if normalize else None,
                   tuple(map(float, processor.image_std)) if normalize else None, bool(processor.do_resize))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        from transformers.image_transforms import get_size_with_aspect_ratio
        from transformers.image_utils import get_image_size_for_max_height_width

        s = self.size
        if "height" in s and "width" in s:
            h, w = s["height"], s["width"]
        elif "shortest_edge" in s and "longest_edge" in s:
            h, w = get_size_with_aspect_ratio((height, width), s["shortest_edge"], s["longest_edge"])
        elif "shortest_edge" in s:  # torchvision's rule: the short side to the size, the long one truncated
            short, long = sorted((height, width))
            new_short, new_long = s["shortest_edge"], int(s["shortest_edge"] * long / short)
            h, w = (new_short, new_long) if height <= width else (new_long, new_short)
        elif "max_height" in s and "max_width" in s:
            h, w = get_image_size_for_max_height_width((height, width), s["max_height"], s["max_width"])
        else:
            raise ValueError(f"image processor size {s} is not understood")
        if self.size_divisor:
            d = self.size_divisor
            h, w = -(-h // d) * d, -(-w // d) * d
        return int(h), int(w)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> the model's pixel_values."""
        x = (images.float() + 1) / 2
        if self.resize:
            size = self.output_size(*x.shape[-2:])
            if size != tuple(x.shape[-2:]):
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = x * self.scale
        if self.mean is not None:
            x = (x - x.new_tensor(self.mean).view(1, 3, 1, 1)) / x.new_tensor(self.std).view(1, 3, 1, 1)
        return x


# ---------------------------------------------------------------------------------------------- the segmenter
class HFSegmenter:
    """A transformers semantic segmentation model behind the kit's Segmenter interface (see the module doc)."""

    def __init__(self, model: str = "", device: str | torch.device = "cpu"):
        self.spec = parse_model(model)
        net, processor = load_pretrained(self.spec)
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.preprocess = Preprocess.from_processor(processor)
        self.model_type = net.config.model_type
        self.mask_classification = self.model_type in MASK_CLASSIFICATION
        id2label = {int(k): v for k, v in net.config.id2label.items()}
        self.class_names = [id2label[i] for i in range(len(id2label))]
        if len(self.class_names) >= 255:  # label PNGs store ids as uint8 with 255 = background
            raise ValueError(f"{self.spec} has {len(self.class_names)} classes; masks hold at most 255")
        label = Path(self.spec.source).name if self.spec.local else self.spec.source
        self.name = f"hf:{label}@{weights_id(self.spec)}"
        log.info("segmenter %s (%s, %d classes) on %s", self.name, self.model_type, len(self.class_names),
                 self.device)

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) unnormalised class scores at the input resolution, on the input's device: logits of a
        per-pixel classifier, s_c(x) = sum_q p_q(c) m_q(x) of a mask classifier."""
        pixel_values = self.preprocess(images).to(self.device)
        out = self.net(pixel_values=pixel_values)
        if self.mask_classification:
            masks = F.interpolate(out.masks_queries_logits, size=pixel_values.shape[-2:], mode="bilinear",
                                  align_corners=False).sigmoid()
            classes = out.class_queries_logits.softmax(-1)[..., :-1]  # drop "no object"
            s = torch.einsum("nqk,nqhw->nkhw", classes, masks)
        else:
            s = out.logits
        s = F.interpolate(s, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return s.to(images.device)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        s = self.scores(images)
        if not self.mask_classification:
            return s.softmax(1)
        s = s.clamp_min(1e-20)  # every pixel keeps a distribution even where all masks vanish
        return s / s.sum(1, keepdim=True)

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        return self.scores(images).argmax(1)


# ---------------------------------------------------------------------------------------------- choosing a backend
EXPLICIT = ("kmeans", "hf", "detectron2", "torchvision")


def hf_model(cfg) -> str:
    """``segment.model`` when it names a transformers model (a detectron2 .yaml does not), else the default."""
    model = cfg.segment.model
    return "" if model.endswith((".yaml", ".yml")) else model


def resolve_backend(cfg, strict: bool = False) -> tuple[str, str]:
    """(backend, reason) for ``segment.backend``; ``auto`` = a transformers model when its weights are cached or
    downloadable, else detectron2 when installed, else k-means. ``strict`` (the paper preset) refuses to fall back
    to k-means: it raises :class:`NoSemanticSegmenter` saying what is missing and how to get out."""
    backend = cfg.segment.backend
    if backend in EXPLICIT:
        return backend, f"segment.backend={backend} was set explicitly"
    if backend != "auto":
        raise ValueError(f"unknown segmenter backend {backend!r}; choose auto, {', '.join(EXPLICIT)}")
    ok, why = availability(hf_model(cfg))
    if ok:
        backend, reason = "hf", f"auto: transformers model {why}"
    elif installed("detectron2"):
        backend, reason = "detectron2", f"auto: detectron2 is installed; no transformers model ({why})"
    elif strict:
        spec = parse_model(hf_model(cfg)) if "no such folder" not in why else ModelSpec(DEFAULT_MODEL)
        raise NoSemanticSegmenter(
            f"this preset needs a semantic segmenter with real classes (sky, tree, water, ...) and none is "
            f"available: {why}; detectron2 is not installed. Either fetch the weights once with network: "
            f"`{fetch_command(spec)}` (or set segment.model to a local model folder), or use the unsupervised "
            f"k-means regions knowingly with segment.backend=kmeans.")
    else:
        backend, reason = "kmeans", f"auto: no semantic segmenter available ({why}; detectron2 is not installed)"
    (log.warning if backend == "kmeans" else log.info)("segmenter backend %s: %s", backend, reason)
    return backend, reason


def create(cfg, backend: str, device: str | torch.device = "cpu"):
    """The segmenter of a resolved backend other than k-means (which is fitted by art2real.semantic)."""
    if backend == "hf":
        return HFSegmenter(hf_model(cfg), device)
    if backend in ("detectron2", "torchvision"):
        from .backends import DETECTRON2_DEFAULT, Detectron2Segmenter, TorchvisionSegmenter

        own = cfg.segment.model if cfg.segment.backend == backend else ""  # auto: segment.model names an HF model
        if backend == "detectron2":
            return Detectron2Segmenter(own or DETECTRON2_DEFAULT, str(device))
        return TorchvisionSegmenter(own or "deeplabv3_resnet50", str(device))
    raise ValueError(f"create() builds pretrained segmenters; {backend!r} is not one")


# ---------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m art2real.segment.hf",
                                     description="Fetch a transformers segmentation model into the HF cache.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download a model (config, image processor, weights) once")
    fetch.add_argument("model", nargs="?", default="", help=f"hub id[@revision] or alias (default {DEFAULT_MODEL})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    segmenter = HFSegmenter(args.model)
    print(f"{segmenter.name}: {len(segmenter.class_names)} classes, cached in {hub_cache()}")


if __name__ == "__main__":
    main()
