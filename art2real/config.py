"""Every hyperparameter in one place: dataclasses, named presets, YAML load/save, dotted overrides.

Presets are named by intent:
  smoke  seconds; for tests and CI
  demo   128 px, ngf 16 / 6 blocks, ndf 32, 18 + 18 epochs: ~2000 iterations, ~10 min a method on 2 CPU cores
  cpu    128 px, ngf 32 / 6 blocks, ndf 64: about an hour on 2 CPU cores
  paper  256 px, ngf 64 / 9 blocks, ndf 64, 100 + 200 epochs, early stopping on FID (patience 30)
  auto   paper on CUDA, demo on CPU
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

PRESETS = ("smoke", "demo", "cpu", "paper", "auto")
METHODS = ("art2real", "cyclegan")


@dataclass
class DataConfig:
    dataset: str = "demo"  # a registry name (data/<name>/) or a path to a folder with trainA/trainB/testA/testB
    image_size: int = 256  # model resolution (paper: 256)
    # Random crop/flip only make sense when masks follow the image: the paper's painting masks are fixed per file,
    # so by default images are only resized (crop_margin 0, flip off).
    crop_margin: int = 0  # resize to image_size + crop_margin, then random-crop image_size
    flip: bool = False
    max_images: int | None = None  # cap per domain and split (smoke runs)
    num_workers: int = 0


@dataclass
class ModelConfig:
    ngf: int = 64  # generator width (CycleGAN ResNet generator)
    n_blocks: int = 9  # residual blocks
    ndf: int = 64  # PatchGAN width
    n_layers_d: int = 3  # 3 layers = 70x70 receptive field
    init_gain: float = 0.02  # weights ~ N(0, 0.02)


@dataclass
class TrainConfig:
    epochs_constant: int = 100  # lr constant ...
    epochs_decay: int = 200  # ... then linear decay to 0
    batch_size: int = 1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # times lambda_cycle
    pool_size: int = 50
    checkpoint_every: int = 500  # iterations; a checkpoint is also written at each epoch end
    sample_images: int = 4  # paintings in the per-epoch sample grid
    validate_every: int = 1  # epochs; 0 disables validation (and early stopping)
    val_images: int = 50  # paintings translated for the validation metric
    val_metric: str = "fid"  # fid | kid
    patience: int | None = 30  # epochs without improvement before stopping; None = never stop early
    max_iterations: int | None = None  # hard cap (smoke runs, benchmarks)


@dataclass
class BankConfig:
    # (patch size, stride) per scale; the paper's 4/4, 8/5, 16/6
    scales: tuple[tuple[int, int], ...] = ((4, 4), (8, 5), (16, 6))
    class_threshold: float = 0.2  # a photo patch enters bank c when >= 20% of its pixels are class c
    # the search metric: l2 = squared L2 on raw patches (the authors); cosine = eq. 1's distance (centred on the
    # class mean, L2-normalised), so neighbours are the nearest in the loss's own terms
    metric: str = "l2"
    index: str = "auto"  # auto | flat | ivf | pcasq
    ivf_min: int = 20_000  # at or above: IVF (nlist = 4 sqrt(N)) with exact re-ranking (exact search costs N D)
    # at or above: PCA to pca_dim first when patches have more dimensions (the paper's recipe): on paper-scale
    # banks the same recall as without PCA and 2-3x faster queries for 16x16 patches (benchmarks/bench_banks.py)
    pcasq_min: int = 20_000
    nprobe: int = 32  # recall@1 >= 0.97 at every scale on paper-scale banks (16 gave 0.945 at 16/6)
    rerank: int = 64  # candidates re-ranked exactly (k')
    pca_dim: int = 64
    train_size: int = 200_000  # vectors used to train IVF / PCA / SQ
    max_photos: int | None = None


@dataclass
class ContextualConfig:
    """The semantic contextual loss, eq. 1-6 (art2real.nn.contextual)."""

    lambda_cx: float = 0.1  # weight on G(x); 0 = CycleGAN
    k: int = 5  # neighbours retrieved per generated patch
    h: float = 1.0  # bandwidth, eq. 3
    eps: float = 1e-5  # eq. 2
    assign_threshold: float = 0.5  # a generated patch is class c when >= 50% of its pixels are in mask c
    pooling: str = "pooled"  # pooled (paper) | per_patch (each patch against its own k neighbours)
    mask_schedule: str = "paper"  # paper: recompute from G(x) from mask_start every mask_every epochs | fixed
    mask_start: int = 40
    mask_every: int = 20


@dataclass
class SegmentConfig:
    backend: str = "kmeans"  # kmeans (offline) | detectron2 | torchvision
    n_classes: int = 8  # K for k-means
    feature_size: int = 256  # images are resized to this before feature extraction
    smoothing: float = 2.0  # Gaussian sigma (feature cells) on class scores before the argmax; 0 = none
    color_weight: float = 0.5  # weight of the Lab colour term appended to CNN features
    temperature: float = 0.1  # softmax over negative squared distances to centroids
    fit_images: int = 64  # photos used to fit k-means
    model: str = ""  # detectron2 config or torchvision model name


@dataclass
class Config:
    preset: str = "paper"
    method: str = "art2real"  # art2real | cyclegan (= art2real with lambda_cx 0)
    run_name: str = ""  # default: <dataset>_<method>_<preset>
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    cx: ContextualConfig = field(default_factory=ContextualConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)

    @property
    def name(self) -> str:
        return self.run_name or f"{Path(self.data.dataset).name}_{self.method}_{self.preset}"

    @property
    def lambda_cx(self) -> float:
        return 0.0 if self.method == "cyclegan" else self.cx.lambda_cx


def _preset_values(name: str) -> dict[str, Any]:
    """The values a preset changes from the paper defaults, as dotted keys."""
    if name == "paper":
        return {}
    if name == "demo":
        return {"data.image_size": 128, "model.ngf": 16, "model.n_blocks": 6, "model.ndf": 32,
                "train.epochs_constant": 18, "train.epochs_decay": 18, "train.checkpoint_every": 200,
                "train.validate_every": 6, "train.val_images": 8, "train.val_metric": "kid",
                "train.patience": None, "cx.pooling": "per_patch", "cx.mask_schedule": "fixed",
                "bank.scales": ((4, 4), (8, 5)), "segment.fit_images": 32}
    if name == "cpu":
        return {"data.image_size": 128, "model.ngf": 32, "model.n_blocks": 6,
                "train.epochs_constant": 100, "train.epochs_decay": 100, "train.validate_every": 10,
                "train.val_images": 8, "train.val_metric": "kid", "train.patience": None,
                "cx.pooling": "per_patch", "cx.mask_start": 100, "cx.mask_every": 50}
    if name == "smoke":
        return {"data.image_size": 32, "data.max_images": 4, "model.ngf": 4, "model.n_blocks": 1,
                "model.ndf": 4, "model.n_layers_d": 2, "train.epochs_constant": 1, "train.epochs_decay": 1,
                "train.checkpoint_every": 3, "train.sample_images": 2, "train.validate_every": 0,
                "train.pool_size": 4, "bank.scales": ((4, 4), (8, 5)), "segment.n_classes": 3,
                "segment.feature_size": 64, "segment.fit_images": 4, "cx.mask_start": 1, "cx.mask_every": 1}
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def resolve_auto(device: str = "auto") -> str:
    import torch

    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    picked = "paper" if cuda else "demo"
    log.warning("preset 'auto' picked %r (%s)", picked, "CUDA available" if cuda else "no CUDA: CPU")
    return picked


def get_config(preset: str = "paper", overrides: dict[str, Any] | list[str] | None = None, **kwargs) -> Config:
    """Build a Config from a named preset, then apply overrides.

    ``overrides`` is a dict of dotted keys (``{"train.lr": 1e-4}``) or a list of ``key=value`` strings whose values
    are parsed as YAML (``["model.ngf=32", "train.patience=null"]``); keyword arguments set top-level fields.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset == "auto":
        preset = resolve_auto(kwargs.get("device", "auto"))
    cfg = Config(preset=preset)
    apply_overrides(cfg, _preset_values(preset))
    apply_overrides(cfg, _parse_overrides(overrides))
    apply_overrides(cfg, kwargs)
    validate(cfg)
    return cfg


def _parse_overrides(overrides) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def apply_overrides(cfg: Config, values: dict[str, Any]) -> Config:
    for key, value in values.items():
        *parents, leaf = key.split(".")
        target = cfg
        for part in parents:
            if not dataclasses.is_dataclass(getattr(target, part, None)):
                raise KeyError(f"unknown config section {part!r} in {key!r}")
            target = getattr(target, part)
        fields = {f.name: f for f in dataclasses.fields(target)}
        if leaf not in fields:
            raise KeyError(f"unknown config key {key!r}; known: {', '.join(sorted(fields))}")
        setattr(target, leaf, _coerce(value, getattr(target, leaf)))
    return cfg


def _coerce(value, current):
    """YAML gives lists where the config keeps tuples (scales, betas); keep them hashable and comparable."""
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def validate(cfg: Config) -> None:
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.data.image_size % 4:
        raise ValueError(f"data.image_size must be a multiple of 4 (two stride-2 convs), got {cfg.data.image_size}")
    if cfg.cx.pooling not in ("pooled", "per_patch"):
        raise ValueError(f"cx.pooling must be 'pooled' or 'per_patch', got {cfg.cx.pooling!r}")
    if cfg.cx.mask_schedule not in ("paper", "fixed"):
        raise ValueError(f"cx.mask_schedule must be 'paper' or 'fixed', got {cfg.cx.mask_schedule!r}")
    if cfg.train.val_metric not in ("fid", "kid"):
        raise ValueError(f"train.val_metric must be 'fid' or 'kid', got {cfg.train.val_metric!r}")
    if cfg.bank.metric not in ("l2", "cosine"):
        raise ValueError(f"bank.metric must be 'l2' or 'cosine', got {cfg.bank.metric!r}")
    for size, stride in cfg.bank.scales:
        if size > cfg.data.image_size or size < 1 or stride < 1:
            raise ValueError(f"bank scale {size}/{stride} does not fit images of {cfg.data.image_size} px")


def to_dict(cfg: Config) -> dict[str, Any]:
    return _plain(dataclasses.asdict(cfg))


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def from_dict(values: dict[str, Any]) -> Config:
    cfg = Config(preset=values.get("preset", "paper"))
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    apply_overrides(cfg, flat)
    validate(cfg)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    from .io import write_text

    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(path: str | Path) -> Config:
    return from_dict(yaml.safe_load(Path(path).read_text()))


def pick_device(name: str = "auto"):
    """CUDA when present, else CPU; chosen once, from the config."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but CUDA is not available; use device=cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
