"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): networks and the PatchNCE loss.

The module layout follows the authors' code (taesungp/contrastive-unpaired-translation), so their released
``latest_net_G.pth`` files load with strict key matching:

- ``CutGenerator``: CycleGAN's ResNet generator with anti-aliased resampling (Zhang, ICML 2019). Each stride-2 conv
  becomes a stride-1 conv followed by a fixed [1, 2, 1] blur with stride 2; each transposed conv becomes a fixed
  [1, 3, 3, 1] blur upsampling followed by a 3x3 conv. The blur kernels are buffers named ``filt`` and are part of
  the state_dict (``model.7.filt``, ``model.11.filt``, ``model.21.filt``, ``model.25.filt`` at 9 blocks).
- ``CutDiscriminator``: the 70x70 PatchGAN with the same anti-aliased downsampling.
- ``PatchSampleF``: the projection head H: one 2-layer MLP per NCE layer applied to randomly sampled locations.
- ``PatchNCELoss``: cross-entropy over one positive and the other sampled patches of the same image, temperature tau.

Images are float in [-1, 1], NCHW, RGB.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..train.checkpoint import load_checkpoint
from .losses import lsgan_loss
from .networks import ReflectionPad2d, ResnetBlock, _norm, clean_state_dict, load_generator_state, pad_reflect

# The authors' encoder layers for PatchNCE: the padded input (0), the first and second downsampling convs (4, 8),
# and the outputs of the first and fifth residual blocks (12, 16).
NCE_LAYERS = (0, 4, 8, 12, 16)
ENCODER_HEAD = 12  # modules before the first residual block; layer 12 + i is residual block i


def binomial_filter(size: int) -> torch.Tensor:
    """The size x size blur kernel outer(b, b) / sum, b the binomial coefficients ([1, 2, 1], [1, 3, 3, 1], ...)."""
    b = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    kernel = b[:, None] * b[None, :]
    return (kernel / kernel.sum()).float()


class BlurDownsample(nn.Module):
    """Reflect-pad 1, depthwise 3x3 [1, 2, 1] blur, stride 2: anti-aliased subsampling (ceil(H / 2) rows)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("filt", binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(pad_reflect(x, (1, 1, 1, 1)), self.filt, stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """2x upsampling by a depthwise transposed conv with the 4x4 [1, 3, 3, 1] kernel (times 4, so a constant image
    stays constant), on a replicate-padded input, cropped to exactly 2H x 2W."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("filt", (binomial_filter(4) * 4)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.filt, stride=2, padding=2,
                                groups=x.shape[1])
        return up[:, :, 1:-1, 1:-1]


class CutGenerator(nn.Module):
    """c7s1-ngf, [conv3 s1, blur-down] x2, n_blocks residual blocks, [blur-up, conv3] x2, c7s1-3, tanh.

    ``encode(x, layers)`` returns the outputs of ``self.model[i]`` for i in ``layers``: the features PatchNCE
    compares (the authors' ``netG(x, layers, encode_only=True)``)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        layers: list[nn.Module] = [ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for mult in (1, 2):  # downsampling: blur after the non-linearity, as in anti-aliased CNNs
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, padding=1), _norm(ngf * mult * 2), nn.ReLU(True),
                       BlurDownsample(ngf * mult * 2)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):  # upsampling: fixed blur-upsampling, then a learned 3x3 conv
            layers += [BlurUpsample(ngf * mult), nn.Conv2d(ngf * mult, ngf * mult // 2, 3, padding=1),
                       _norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.n_blocks = n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def encode(self, x: torch.Tensor, layers: Sequence[int] = NCE_LAYERS) -> list[torch.Tensor]:
        """Features after the modules ``layers`` (increasing indices into ``self.model``); stops at the last."""
        check_layers(layers, len(self.model))
        feats, wanted = [], set(layers)
        for i, module in enumerate(self.model[:layers[-1] + 1]):
            x = module(x)
            if i in wanted:
                feats.append(x)
        return feats


def check_layers(layers: Sequence[int], n_modules: int) -> None:
    layers = list(layers)
    if not layers or any(not isinstance(i, int) or i < 0 or i >= n_modules for i in layers):
        raise ValueError(f"feature layers {layers} must be a non-empty list of module indices in [0, {n_modules})")
    if layers != sorted(set(layers)):
        raise ValueError(f"feature layers {layers} must be strictly increasing (features come back in model order)")


def check_nce_layers(layers: Sequence[int], n_blocks: int) -> None:
    """PatchNCE is defined on encoder features: every layer must lie before the decoder (index < 12 + n_blocks).
    With fewer than 5 residual blocks the authors' layer 16 would be a decoder layer."""
    last = ENCODER_HEAD + n_blocks - 1
    if any(i > last for i in layers):
        raise ValueError(f"nce_layers {tuple(layers)} reach past the encoder of a {n_blocks}-block generator "
                         f"(last encoder layer: {last}); use n_blocks >= {max(layers) - ENCODER_HEAD + 1} or drop "
                         f"layers above {last}")


class CutDiscriminator(nn.Module):
    """PatchGAN (4x4 convs, LeakyReLU 0.2, InstanceNorm) whose stride-2 convs are stride-1 convs + blur-down."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, padding=1), nn.LeakyReLU(0.2, True),
                                   BlurDownsample(ndf)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1), _norm(ndf * mult), nn.LeakyReLU(0.2, True),
                       BlurDownsample(ndf * mult)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1), _norm(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_xavier(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The authors' CUT init (``--init_type xavier --init_gain 0.02``): xavier-normal conv and linear weights,
    zero biases, visited in module registration order (so a seeded run draws the same numbers as theirs)."""
    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net.apply(init)


def l2_normalize(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """x / (||x|| + eps) over channels: the authors' ``Normalize`` (eps added to the norm, not inside the root).

    The same values everywhere; one deliberate difference in the gradient: for an all-zero vector (an MLP whose
    hidden ReLUs are all off, which happens with small ``nc``) the authors' sqrt'(0) gives NaN gradients that
    poison the whole MLP; here that vector gets a zero gradient through the norm."""
    sq = x.pow(2).sum(1, keepdim=True)
    norm = torch.where(sq > 0, sq.clamp_min(1e-30).sqrt(), torch.zeros_like(sq))
    return x / (norm + eps)


class PatchSampleF(nn.Module):
    """H in the paper: sample ``num_patches`` locations per feature map (the same locations for every image of the
    batch), project each feature with its layer's MLP (Linear-ReLU-Linear to ``nc``), L2-normalise.

    The authors create the MLPs lazily in the first forward, when the channel counts are known, and only then
    build F's optimiser (``data_dependent_initialize``). Here ``channels`` (or :meth:`create_mlp`) creates them at
    construction, so an optimiser and a checkpoint built right after see every parameter; the lazy path remains for
    a head built without channels. Locations come from ``torch.randperm`` on the CPU with the given generator (the
    global torch RNG when None), so a seeded run is reproducible and a resumed run continues the same stream.
    """

    def __init__(self, nc: int = 256, channels: Sequence[int] | None = None, use_mlp: bool = True,
                 init_gain: float = 0.02):
        super().__init__()
        self.nc, self.use_mlp, self.init_gain = nc, use_mlp, init_gain
        self.mlp_init = False
        if channels is not None:
            self.create_mlp(channels)

    def create_mlp(self, channels: Sequence[int]) -> None:
        """One MLP per layer, then the xavier init over all of them (the authors' order of random draws)."""
        if self.mlp_init:
            raise RuntimeError("PatchSampleF's MLPs already exist")
        if self.use_mlp:
            for i, c in enumerate(channels):
                setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(c, self.nc), nn.ReLU(), nn.Linear(self.nc, self.nc)))
            init_xavier(self, self.init_gain)
        self.mlp_init = True

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int = 256,
                patch_ids: Sequence[torch.Tensor] | None = None, generator: torch.Generator | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """feats: (B, C_l, H_l, W_l) per layer -> (B * S_l, nc) unit vectors per layer, and the sampled location
        indices (pass them back as ``patch_ids`` to sample G(x)'s features where x's were sampled)."""
        if num_patches < 1:
            raise ValueError(f"num_patches must be >= 1, got {num_patches}")
        if not self.mlp_init:
            self.create_mlp([f.shape[1] for f in feats])
            self.to(feats[0].device)
        out, ids = [], []
        for i, feat in enumerate(feats):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)  # (B, H*W, C)
            if patch_ids is None:
                idx = torch.randperm(flat.shape[1], generator=generator)[:num_patches]
            else:
                idx = patch_ids[i]
            idx = idx.to(feat.device)
            x = flat[:, idx, :].flatten(0, 1)  # (B * S, C): patch s of image b at row b * S + s
            if self.use_mlp:
                x = getattr(self, f"mlp_{i}")(x)
            out.append(l2_normalize(x))
            ids.append(idx)
        return out, ids

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A state with MLP weights loads into a head whose MLPs do not exist yet: create them from its shapes."""
        if not self.mlp_init and self.use_mlp:
            n = 0
            while f"{prefix}mlp_{n}.0.weight" in state_dict:
                n += 1
            if n:
                self.nc = state_dict[f"{prefix}mlp_0.0.weight"].shape[0]
                self.create_mlp([state_dict[f"{prefix}mlp_{i}.0.weight"].shape[1] for i in range(n)])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PatchNCELoss(nn.Module):
    """Per-patch InfoNCE (eq. 2): -log exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_n exp(q.k-_n / tau)).

    q: a patch of G(x) (after H), k+: the same location of x, k-: the other sampled locations of x. Negatives come
    from the same image only (``all_negatives_from_minibatch=False``, the authors' choice for CUT and FastCUT); True
    pools them over the batch (their single-image setting). Keys are detached: gradients reach G and H through the
    queries only. Returns the loss of each patch, shape (B * S,).
    """

    def __init__(self, tau: float = 0.07, all_negatives_from_minibatch: bool = False):
        super().__init__()
        self.tau, self.all_negatives_from_minibatch = tau, all_negatives_from_minibatch

    def forward(self, feat_q: torch.Tensor, feat_k: torch.Tensor, batch_size: int) -> torch.Tensor:
        if feat_q.shape != feat_k.shape or feat_q.ndim != 2 or feat_q.shape[0] % batch_size:
            raise ValueError(f"PatchNCE wants q and k of equal shape (B * S, C) with B = {batch_size}, got "
                             f"{tuple(feat_q.shape)} and {tuple(feat_k.shape)}")
        feat_k = feat_k.detach()
        l_pos = (feat_q * feat_k).sum(1, keepdim=True)  # (B * S, 1)
        groups = 1 if self.all_negatives_from_minibatch else batch_size
        q = feat_q.view(groups, -1, feat_q.shape[1])
        k = feat_k.view(groups, -1, feat_k.shape[1])
        l_neg = torch.bmm(q, k.transpose(1, 2))  # (groups, n, n): every query against every key of its group
        # the diagonal is the positive itself, not a negative: the authors fill it with -10 (exp(-10 / tau) ~ 1e-62)
        eye = torch.eye(q.shape[1], device=q.device, dtype=torch.bool)[None]
        l_neg = l_neg.masked_fill(eye, -10.0).view(-1, q.shape[1])
        logits = torch.cat([l_pos, l_neg], 1) / self.tau
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target, reduction="none")


# ---------------------------------------------------------------- the authors' losses, as functions

def generator_input(real_A: torch.Tensor, real_B: torch.Tensor, nce_idt: bool, flipped: bool) -> torch.Tensor:
    """What G translates in one step: x, plus y for identity NCE (CUT); mirrored when FastCUT's coin says so."""
    real = torch.cat([real_A, real_B]) if nce_idt else real_A
    return real.flip(3) if flipped else real


def discriminator_loss(D: nn.Module, real_B: torch.Tensor, fake_B: torch.Tensor) -> torch.Tensor:
    """LSGAN, 0.5 * (D(G(x)) -> 0 + D(y) -> 1), with G(x) detached."""
    return 0.5 * (lsgan_loss(D(fake_B.detach()), False) + lsgan_loss(D(real_B), True))


def multilayer_patch_nce(G: CutGenerator, F_head: PatchSampleF, criterion: PatchNCELoss, src: torch.Tensor,
                         tgt: torch.Tensor, layers: Sequence[int] = NCE_LAYERS, num_patches: int = 256,
                         lambda_nce: float = 1.0, flipped: bool = False, generator: torch.Generator | None = None
                         ) -> torch.Tensor:
    """lambda_NCE * the mean over layers of the mean patch loss, between src (x) and tgt (G(x)).

    Both go through G's encoder; tgt's features are mirrored back when the step's input was mirrored (FastCUT's
    flip equivariance), so location s of G(x) is compared with location s of x."""
    feat_q = G.encode(tgt, layers)
    if flipped:
        feat_q = [f.flip(3) for f in feat_q]
    feat_k = G.encode(src, layers)
    k_pool, ids = F_head(feat_k, num_patches, None, generator)
    q_pool, _ = F_head(feat_q, num_patches, ids)
    total = sum((criterion(q, k, src.shape[0]) * lambda_nce).mean() for q, k in zip(q_pool, k_pool))
    return total / len(layers)


def generator_losses(G: CutGenerator, D: nn.Module, F_head: PatchSampleF, criterion: PatchNCELoss,
                     real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor, idt_B: torch.Tensor | None,
                     *, layers: Sequence[int] = NCE_LAYERS, num_patches: int = 256, lambda_gan: float = 1.0,
                     lambda_nce: float = 1.0, flipped: bool = False, generator: torch.Generator | None = None
                     ) -> dict[str, torch.Tensor]:
    """The authors' ``compute_G_loss``: G = lambda_GAN * GAN(G(x)) + NCE, where NCE is PatchNCE(x, G(x)) or, with
    identity NCE (CUT), the average of PatchNCE(x, G(x)) and PatchNCE(y, G(y)). ``idt_B`` is G(y), or None."""
    zero = fake_B.new_zeros(())
    # a term whose weight is 0 is not computed at all (the authors skip D's pass and F's sampling likewise)
    losses = {"G_GAN": lsgan_loss(D(fake_B), True) * lambda_gan if lambda_gan > 0 else zero}
    nce = dict(layers=layers, num_patches=num_patches, lambda_nce=lambda_nce, flipped=flipped, generator=generator)
    losses["NCE"] = multilayer_patch_nce(G, F_head, criterion, real_A, fake_B, **nce) if lambda_nce > 0 else zero
    nce_both = losses["NCE"]
    if idt_B is not None and lambda_nce > 0:
        losses["NCE_Y"] = multilayer_patch_nce(G, F_head, criterion, real_B, idt_B, **nce)
        nce_both = (losses["NCE"] + losses["NCE_Y"]) * 0.5
    losses["G"] = losses["G_GAN"] + nce_both
    return losses


# ---------------------------------------------------------------- building and loading

def nce_feature_channels(G: CutGenerator, layers: Sequence[int] = NCE_LAYERS, image_size: int = 64) -> list[int]:
    """Channels of G's features at ``layers``, from one forward pass on a blank image of the training size."""
    param = next(G.parameters())
    with torch.no_grad():
        feats = G.encode(torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype), layers)
    return [f.shape[1] for f in feats]


def build_cut_networks(ngf: int = 64, n_blocks: int = 9, ndf: int = 64, n_layers_d: int = 3, nc: int = 256,
                       layers: Sequence[int] = NCE_LAYERS, image_size: int = 256, init_gain: float = 0.02
                       ) -> tuple[CutGenerator, CutDiscriminator, PatchSampleF]:
    """G, D and F initialised as the authors' (xavier, gain 0.02), F's MLPs created eagerly. The order (G, D, then
    F) is the authors' order of random draws, so the same seed gives the same weights."""
    check_nce_layers(layers, n_blocks)
    G = init_xavier(CutGenerator(ngf=ngf, n_blocks=n_blocks), init_gain)
    D = init_xavier(CutDiscriminator(ndf=ndf, n_layers=n_layers_d), init_gain)
    F_head = PatchSampleF(nc, nce_feature_channels(G, layers, image_size), init_gain=init_gain)
    return G, D, F_head


def infer_cut_architecture(state: dict) -> tuple[int, int]:
    """(ngf, n_blocks) of a CUT generator state_dict; refuses other layouts with the reason."""
    if "model.1.weight" not in state:
        raise CheckpointError("not a ResNet generator state_dict (no 'model.1.weight'); expected the authors' "
                              "latest_net_G.pth or a state_dict of art2real.nn.cut.CutGenerator")
    if not any(k.endswith(".filt") for k in state):
        raise CheckpointError("this is a CycleGAN-layout generator (stride-2 convs, no anti-aliasing 'filt' "
                              "buffers), not CUT's; load it as a Cycle-GAN generator (method 'cyclegan')")
    ngf = state["model.1.weight"].shape[0]
    blocks = {k.split(".")[1] for k in state if ".conv_block." in k}
    return int(ngf), len(blocks)


def load_cut_generator(source, device="cpu", name: str | None = None) -> CutGenerator:
    """A CUT / FastCUT generator, in eval mode, from the authors' ``latest_net_G.pth`` (a path, read with
    weights_only) or a state_dict; strict key and shape matching (a mismatch is refused with the keys named)."""
    if isinstance(source, (str, Path)):
        name, state = name or str(source)[:200], load_checkpoint(source)
    else:
        name, state = name or "state_dict", source
    if not isinstance(state, dict):
        raise CheckpointError(f"{name} holds a {type(state).__name__}, not a state_dict")
    state = clean_state_dict(state)
    ngf, n_blocks = infer_cut_architecture(state)
    G = load_generator_state(CutGenerator(ngf=ngf, n_blocks=n_blocks), state, name)
    return G.to(device).eval()


class CutTranslator(nn.Module):
    """painting -> photo with a CUT or FastCUT generator: (N, 3, H, W) in [-1, 1] -> the same shape.

    Shares the generator's modules (training G trains the translator) and its state_dict keys are the authors'
    (``model.1.weight``, ...), so ``translator.state_dict()`` is a file in their layout. Any H, W: a batch whose
    sides are multiples of 4 and at most ``tile`` goes through G at once; otherwise each image is reflect-padded
    to a multiple of 4 (two blur-downsamplings) and large ones are tiled (art2real.translate.translate_tensor)."""

    def __init__(self, G: CutGenerator, name: str = "CUT", tile: int = 1024):
        super().__init__()
        self.model, self.name, self.tile = G.model, name, tile

    @classmethod
    def from_file(cls, source, device="cpu", name: str = "CUT") -> "CutTranslator":
        return cls(load_cut_generator(source, device), name).to(device).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"CutTranslator wants RGB images as (N, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 4 == 0 and w % 4 == 0 and max(h, w) <= self.tile:
            return self.model(x)
        from ..translate import translate_tensor

        return torch.cat([translate_tensor(self.model, x[i:i + 1], self.tile) for i in range(len(x))])
