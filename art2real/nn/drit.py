"""DRIT (Lee et al., ECCV 2018): networks, losses and a painting -> photo translator.

Faithful to the authors' PyTorch code (github.com/HsinYingLee/DRIT, the DRIT version before the DRIT++ mode-seeking
commit of April 2019, i.e. what a CVPR 2019 comparison could use), with its defaults: concatenation generator
(``--concat 1``), three-scale image discriminators (``--dis_scale 3``), and spectral normalisation in the image
discriminators as the Art2Real paper used (``--dis_spectral_norm``). The module structure and attribute names are
theirs, so the state_dict keys and shapes equal theirs and their ``.pth`` files load with strict key matching.
Sizes are constructor arguments; the defaults are the authors'.

Domains: A = paintings, B = photos (as in Art2Real and CycleGAN's folders). Images are float in [-1, 1], NCHW.
Where this differs from running their code: ``update_encoders_generator`` (their second E/G backward cannot run on
current PyTorch) and ``SpectralNormConv2d`` (no aliasing of ``weight`` and ``weight_orig``); both say why.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DritConfig
from ..errors import DataError
from ..train.checkpoint import load_checkpoint
from .networks import ReflectionPad2d, state_mismatch

# ----------------------------------------------------------------------------------------------------------------
# Building blocks. Attribute names (``model``, ``conv``, ``shortcut``) are the authors', so keys match theirs.
# ----------------------------------------------------------------------------------------------------------------


class SpectralNormConv2d(nn.Conv2d):
    """Conv2d divided by the largest singular value of its weight (Miyato et al. 2018), one power iteration per
    training forward.

    State layout is the authors' (their copy of PyTorch's pre-1.0 ``spectral_norm``): ``weight_orig`` is the
    trained parameter, ``weight`` a buffer holding the last normalised weight (used in eval mode, as theirs does),
    ``weight_u`` the left singular vector estimate. There is no ``weight_v``: that key came with PyTorch 1.0.
    """

    def __init__(self, *args, eps: float = 1e-12, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps
        weight = self.weight
        del self.weight
        self.weight_orig = weight  # registered after ``bias``: the authors' key order
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("weight_u", F.normalize(torch.randn(weight.shape[0]), dim=0, eps=eps))

    def normalised_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        with torch.no_grad():  # the power iteration is not differentiated, only sigma's dependence on W
            v = F.normalize(w.t() @ self.weight_u, dim=0, eps=self.eps)
            u = F.normalize(w @ v, dim=0, eps=self.eps)
        sigma = torch.dot(u, w @ v)
        return self.weight_orig / sigma, u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._conv_forward(x, self.weight, self.bias)
        weight, u = self.normalised_weight()
        with torch.no_grad():
            self.weight_u.copy_(u)
            self.weight.copy_(weight)
        return self._conv_forward(x, weight, self.bias)


def _conv(n_in: int, n_out: int, kernel: int, stride: int = 1, sn: bool = False) -> nn.Conv2d:
    return (SpectralNormConv2d if sn else nn.Conv2d)(n_in, n_out, kernel, stride, padding=0, bias=True)


class LeakyReLUConv2d(nn.Module):
    """Reflection pad, conv, LeakyReLU(0.01). The authors' version takes a ``norm`` argument but tests the string
    literal ``'norm' == 'Instance'``, so no normalisation is ever added (content discriminator included)."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, padding: int = 0, sn: bool = False):
        super().__init__()
        self.model = nn.Sequential(ReflectionPad2d(padding), _conv(n_in, n_out, kernel, stride, sn),
                                   nn.LeakyReLU(0.01, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ReLUINSConv2d(nn.Module):
    """Reflection pad, conv, InstanceNorm (no affine), ReLU: the content encoder's downsampling."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, padding: int = 0):
        super().__init__()
        self.model = nn.Sequential(ReflectionPad2d(padding), _conv(n_in, n_out, kernel, stride),
                                   nn.InstanceNorm2d(n_out), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class INSResBlock(nn.Module):
    """x + IN(conv3x3(ReLU(IN(conv3x3(x))))), reflection padded."""

    def __init__(self, dim: int):
        super().__init__()
        self.model = nn.Sequential(ReflectionPad2d(1), _conv(dim, dim, 3), nn.InstanceNorm2d(dim),
                                   nn.ReLU(inplace=True), ReflectionPad2d(1), _conv(dim, dim, 3),
                                   nn.InstanceNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class LayerNorm2d(nn.Module):
    """MUNIT's LayerNorm: normalise over (C, H, W) per sample, per-channel affine stored as (C, 1, 1)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape), self.eps)


class ReLULNConvTranspose2d(nn.Module):
    """Transposed conv (3x3, stride 2) doubling the size, LayerNorm, ReLU. (The authors call it ReLUINS..., but
    the norm is a LayerNorm.)"""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.model = nn.Sequential(nn.ConvTranspose2d(n_in, n_out, 3, 2, padding=1, output_padding=1, bias=True),
                                   LayerNorm2d(n_out), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GaussianNoise(nn.Module):
    """Adds N(0, 1) to the content code in training only: the content space is made robust to small shifts, so
    the generator cannot hide attribute information in tiny content values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x) if self.training else x


class BasicBlock(nn.Module):
    """The attribute encoder's pre-activation residual block that halves the size (BicycleGAN's E_ResNet block):
    LReLU, conv3x3, LReLU, conv3x3 + avgpool; shortcut avgpool + conv1x1."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.LeakyReLU(0.2), ReflectionPad2d(1), _conv(n_in, n_in, 3), nn.LeakyReLU(0.2),
            nn.Sequential(ReflectionPad2d(1), _conv(n_in, n_out, 3), nn.AvgPool2d(2, 2)))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), _conv(n_in, n_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------


def _content_branch(in_ch: int, dim: int, n_res: int) -> nn.Sequential:
    layers: list[nn.Module] = [LeakyReLUConv2d(in_ch, dim, 7, 1, 3)]
    for _ in range(2):
        layers.append(ReLUINSConv2d(dim, dim * 2, 3, 2, 1))
        dim *= 2
    layers += [INSResBlock(dim) for _ in range(n_res)]
    return nn.Sequential(*layers)


class ContentEncoder(nn.Module):
    """E^c_A, E^c_B (the authors' E_content): one branch per domain, then one residual block and the noise layer
    shared by both, so both domains' content lands in one space. Output: 4 * dim channels at 1/4 resolution."""

    def __init__(self, in_a: int = 3, in_b: int = 3, dim: int = 64, n_res: int = 3):
        super().__init__()
        self.conv_share = nn.Sequential(INSResBlock(dim * 4), GaussianNoise())
        self.convA = _content_branch(in_a, dim, n_res)
        self.convB = _content_branch(in_b, dim, n_res)

    def forward_a(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_share(self.convA(x))

    def forward_b(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_share(self.convB(x))

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.convA(xa), self.convB(xb)  # the authors' order: both branches, then the shared layers
        return self.conv_share(a), self.conv_share(b)


def _attribute_branch(in_ch: int, dim: int, n_blocks: int, max_mult: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = [ReflectionPad2d(1), _conv(in_ch, dim, 4, 2)]
    out = dim
    for n in range(1, n_blocks):
        out = dim * min(max_mult, n + 1)
        layers.append(BasicBlock(dim * min(max_mult, n), out))
    layers += [nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(*layers), out


class AttributeEncoder(nn.Module):
    """E^a_A, E^a_B, the concat version (E_attr_concat): a Gaussian posterior (mu, logvar) of length nz per image.
    Adaptive average pooling makes it size-agnostic."""

    def __init__(self, in_a: int = 3, in_b: int = 3, nz: int = 8, dim: int = 64, n_blocks: int = 4,
                 max_mult: int = 4):
        super().__init__()
        conv_a, width = _attribute_branch(in_a, dim, n_blocks, max_mult)
        conv_b, _ = _attribute_branch(in_b, dim, n_blocks, max_mult)
        self.fc_A = nn.Sequential(nn.Linear(width, nz))  # attribute order matches the authors' keys
        self.fcVar_A = nn.Sequential(nn.Linear(width, nz))
        self.conv_A = conv_a
        self.fc_B = nn.Sequential(nn.Linear(width, nz))
        self.fcVar_B = nn.Sequential(nn.Linear(width, nz))
        self.conv_B = conv_b

    @staticmethod
    def _head(conv, fc, fc_var, x):
        h = conv(x).flatten(1)
        return fc(h), fc_var(h)

    def forward_a(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._head(self.conv_A, self.fc_A, self.fcVar_A, x)

    def forward_b(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._head(self.conv_B, self.fc_B, self.fcVar_B, x)

    def forward(self, xa: torch.Tensor, xb: torch.Tensor):
        """(mu_a, logvar_a, mu_b, logvar_b)."""
        return (*self.forward_a(xa), *self.forward_b(xb))


def _with_z(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Concatenate the attribute vector, broadcast over space, to the feature map."""
    return torch.cat([x, z[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])], 1)


class Generator(nn.Module):
    """G_A, G_B, the concat version (G_concat): a shared residual block, then per domain ``n_res`` residual blocks,
    two LayerNorm'd transposed convs and a 1x1 transposed conv with tanh; the attribute is concatenated before
    each of the four stages, so it cannot be ignored at any scale."""

    def __init__(self, out_a: int = 3, out_b: int = 3, nz: int = 8, content_dim: int = 256, n_res: int = 3):
        super().__init__()
        self.nz = nz
        self.dec_share = nn.Sequential(INSResBlock(content_dim))
        for domain, out in (("A", out_a), ("B", out_b)):
            ch = content_dim + nz
            setattr(self, f"dec{domain}1", nn.Sequential(*[INSResBlock(ch) for _ in range(n_res)]))
            ch += nz
            setattr(self, f"dec{domain}2", nn.Sequential(ReLULNConvTranspose2d(ch, ch // 2)))
            ch = ch // 2 + nz
            setattr(self, f"dec{domain}3", nn.Sequential(ReLULNConvTranspose2d(ch, ch // 2)))
            ch = ch // 2 + nz
            setattr(self, f"dec{domain}4", nn.Sequential(nn.ConvTranspose2d(ch, out, 1, 1, 0), nn.Tanh()))

    def _decode(self, stages, x, z):
        out = self.dec_share(x)
        for stage in stages:
            out = stage(_with_z(out, z))
        return out

    def forward_a(self, content: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._decode((self.decA1, self.decA2, self.decA3, self.decA4), content, z)

    def forward_b(self, content: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._decode((self.decB1, self.decB2, self.decB3, self.decB4), content, z)


class MultiScaleDiscriminator(nn.Module):
    """D_A, D_B (MultiScaleDis): ``n_scale`` PatchGAN-like nets on the image downsampled by 2 each time (3x3
    average pooling); returns one logit map per scale. No normalisation (``--dis_norm None``)."""

    def __init__(self, in_ch: int = 3, n_scale: int = 3, n_layer: int = 4, dim: int = 64, sn: bool = False):
        super().__init__()
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.Diss = nn.ModuleList([self._net(in_ch, n_layer, dim, sn) for _ in range(n_scale)])

    @staticmethod
    def _net(in_ch, n_layer, dim, sn):
        layers: list[nn.Module] = [LeakyReLUConv2d(in_ch, dim, 4, 2, 1, sn)]
        for _ in range(1, n_layer):
            layers.append(LeakyReLUConv2d(dim, dim * 2, 4, 2, 1, sn))
            dim *= 2
        layers.append(_conv(dim, 1, 1, 1, sn))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for net in self.Diss:
            outs.append(net(x))
            x = self.downsample(x)
        return outs


def content_min_size(kernel: int, n_layers: int) -> int:
    """The smallest content map side the content discriminator accepts: its final 4x4 conv needs 4 positions,
    and each stride-2 conv (padding 1) before it needs 2 * (side - 1) + kernel - 2."""
    side = 4
    for _ in range(n_layers):
        side = 2 * (side - 1) + kernel - 2
    return side


class ContentDiscriminator(nn.Module):
    """D^c (Dis_content): tells domain A's content codes from domain B's. Its output is flattened to one logit per
    position (one per image at the paper size: 54 -> 25 -> 11 -> 4 -> 1 for 216 px crops)."""

    def __init__(self, in_ch: int = 256, dim: int = 256, kernel: int = 7, n_layers: int = 3):
        super().__init__()
        self.kernel, self.n_layers = kernel, n_layers
        layers = [LeakyReLUConv2d(in_ch if i == 0 else dim, dim, kernel, 2, 1) for i in range(n_layers)]
        layers += [LeakyReLUConv2d(dim, dim, 4, 1, 0), _conv(dim, 1, 1)]
        self.model = nn.Sequential(*layers)

    def min_size(self) -> int:
        return content_min_size(self.kernel, self.n_layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size():
            raise ValueError(f"content map {tuple(x.shape[-2:])} is smaller than the content discriminator accepts "
                             f"({self.min_size()} = crops of {4 * self.min_size()} px at kernel {self.kernel}, "
                             f"{self.n_layers} layers): use a larger crop or fewer/smaller dis_content layers")
        return [self.model(x).flatten()]


# ----------------------------------------------------------------------------------------------------------------
# All networks, initialisation, optimisers, schedule
# ----------------------------------------------------------------------------------------------------------------

NETWORKS = ("disA", "disB", "disA2", "disB2", "disContent", "enc_c", "enc_a", "gen")


class DritNets(nn.Module):
    """The eight networks under the authors' names (the top-level keys of their checkpoints). disA/disB judge
    translations with encoded attributes, disA2/disB2 those with random attributes."""

    def __init__(self, cfg: DritConfig | None = None):
        super().__init__()
        cfg = cfg or DritConfig()
        self.cfg = cfg
        for name in ("disA", "disB", "disA2", "disB2"):
            setattr(self, name, MultiScaleDiscriminator(3, cfg.dis_scale, cfg.dis_layers, cfg.dis_dim,
                                                        cfg.dis_spectral_norm))
        self.disContent = ContentDiscriminator(4 * cfg.enc_dim, cfg.dis_content_dim, cfg.dis_content_kernel,
                                               cfg.dis_content_layers)
        self.enc_c = ContentEncoder(3, 3, cfg.enc_dim, cfg.enc_res)
        self.enc_a = AttributeEncoder(3, 3, cfg.nz, cfg.attr_dim, cfg.attr_blocks, cfg.attr_max_mult)
        self.gen = Generator(3, 3, cfg.nz, 4 * cfg.enc_dim, cfg.gen_res)
        init_weights(self, cfg.init_gain)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The authors' gaussian_weights_init: every Conv2d / ConvTranspose2d weight ~ N(0, gain) (with spectral
    norm, the trained ``weight_orig``); biases, Linear layers and LayerNorm keep PyTorch's default init."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SpectralNormConv2d):
                m.weight_orig.normal_(0.0, gain)
                m.weight.copy_(m.weight_orig)  # theirs aliases the two until the first training forward
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, gain)
    return net


def build_optimizers(nets: DritNets, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.999),
                     cfg: DritConfig | None = None) -> dict[str, torch.optim.Adam]:
    """One Adam per network, keyed by network name (the authors save them as ``<name>_opt``); the content
    discriminator's lr is ``lr / cfg.dis_content_lr_div``."""
    cfg = cfg or nets.cfg
    return {name: torch.optim.Adam(getattr(nets, name).parameters(),
                                   lr=lr / cfg.dis_content_lr_div if name == "disContent" else lr,
                                   betas=betas, weight_decay=cfg.weight_decay) for name in NETWORKS}


# ----------------------------------------------------------------------------------------------------------------
# One training forward (the authors' DRIT.forward) and the loss terms
# ----------------------------------------------------------------------------------------------------------------


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps: a differentiable sample of the attribute posterior."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


@dataclass
class DritForward:
    """Every tensor of one training forward, named as in the authors' code. ``*_encoded`` use the attribute
    encoded from the other image, ``*_random`` a prior sample z_random, ``fake_AA``/``fake_BB`` reconstruct an
    image from its own codes, ``*_recon`` close the cross cycle."""

    real_A_encoded: torch.Tensor
    real_A_random: torch.Tensor
    real_B_encoded: torch.Tensor
    real_B_random: torch.Tensor
    z_content_a: torch.Tensor
    z_content_b: torch.Tensor
    mu_a: torch.Tensor
    logvar_a: torch.Tensor
    mu_b: torch.Tensor
    logvar_b: torch.Tensor
    z_random: torch.Tensor
    fake_A_encoded: torch.Tensor
    fake_AA_encoded: torch.Tensor
    fake_A_random: torch.Tensor
    fake_B_encoded: torch.Tensor
    fake_BB_encoded: torch.Tensor
    fake_B_random: torch.Tensor
    fake_A_recon: torch.Tensor
    fake_B_recon: torch.Tensor
    mu2_a: torch.Tensor
    mu2_b: torch.Tensor
    z_random2: torch.Tensor | None = None  # mode seeking only
    fake_A_random2: torch.Tensor | None = None
    fake_B_random2: torch.Tensor | None = None


def drit_forward(nets: DritNets, real_A: torch.Tensor, real_B: torch.Tensor,
                 mode_seeking: bool = False) -> DritForward:
    """The authors' DRIT.forward, random draws in their order (so a seeded run draws the same numbers).

    The first image of each batch is "encoded", the rest "random" (their half_size = 1; batch size 2 by default).
    """
    a_enc, a_rand, b_enc, b_rand = real_A[:1], real_A[1:], real_B[:1], real_B[1:]
    z_content_a, z_content_b = nets.enc_c(a_enc, b_enc)
    mu_a, logvar_a, mu_b, logvar_b = nets.enc_a(a_enc, b_enc)
    z_attr_a, z_attr_b = reparameterize(mu_a, logvar_a), reparameterize(mu_b, logvar_b)
    z_random = torch.randn_like(mu_a)
    z_random2 = torch.randn_like(mu_a) if mode_seeking else None

    # first cross translation, batched: (swap content, own content, random attribute[, second random attribute])
    content_for_a = [z_content_b, z_content_a, z_content_b] + ([z_content_b] if mode_seeking else [])
    content_for_b = [z_content_a, z_content_b, z_content_a] + ([z_content_a] if mode_seeking else [])
    extra = [z_random2] if mode_seeking else []
    fakes_a = nets.gen.forward_a(torch.cat(content_for_a), torch.cat([z_attr_a, z_attr_a, z_random, *extra]))
    fakes_b = nets.gen.forward_b(torch.cat(content_for_b), torch.cat([z_attr_b, z_attr_b, z_random, *extra]))
    fakes_a, fakes_b = fakes_a.split(1), fakes_b.split(1)

    # second cross translation: encode the translations and swap back
    z_content_recon_b, z_content_recon_a = nets.enc_c(fakes_a[0], fakes_b[0])
    mu_ra, logvar_ra, mu_rb, logvar_rb = nets.enc_a(fakes_a[0], fakes_b[0])
    z_attr_recon_a, z_attr_recon_b = reparameterize(mu_ra, logvar_ra), reparameterize(mu_rb, logvar_rb)
    fake_A_recon = nets.gen.forward_a(z_content_recon_a, z_attr_recon_a)
    fake_B_recon = nets.gen.forward_b(z_content_recon_b, z_attr_recon_b)

    # latent regression: the posterior mean of a random-attribute output should give back z_random
    mu2_a, _, mu2_b, _ = nets.enc_a(fakes_a[2], fakes_b[2])
    return DritForward(a_enc, a_rand, b_enc, b_rand, z_content_a, z_content_b, mu_a, logvar_a, mu_b, logvar_b,
                       z_random, fakes_a[0], fakes_a[1], fakes_a[2], fakes_b[0], fakes_b[1], fakes_b[2],
                       fake_A_recon, fake_B_recon, mu2_a, mu2_b, z_random2,
                       fakes_a[3] if mode_seeking else None, fakes_b[3] if mode_seeking else None)


def bce_on_sigmoid(logits: torch.Tensor, target: float) -> torch.Tensor:
    """The authors' adversarial criterion: binary cross-entropy of sigmoid(logits) against a constant.

    Kept as sigmoid + BCE rather than BCE-with-logits: where the sigmoid saturates, theirs clamps log at -100 and
    passes no gradient, and a faithful baseline should train the same way."""
    p = torch.sigmoid(logits)
    return F.binary_cross_entropy(p, torch.full_like(p, target))


def discriminator_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Sum over scales of BCE(D(real), 1) + BCE(D(fake), 0); fake is detached. The fake pass runs first, as in
    theirs (with spectral norm each training pass advances the power iteration)."""
    outs_fake, outs_real = D(fake.detach()), D(real)
    return sum(bce_on_sigmoid(r, 1.0) + bce_on_sigmoid(f, 0.0) for f, r in zip(outs_fake, outs_real))


def generator_adversarial_loss(D: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss: sum over scales of BCE(D(fake), 1)."""
    return sum(bce_on_sigmoid(out, 1.0) for out in D(fake))


def content_discriminator_loss(Dc: nn.Module, z_content_a: torch.Tensor, z_content_b: torch.Tensor):
    """D^c learns to output 1 for domain B's content codes and 0 for domain A's (codes detached)."""
    out_a, out_b = Dc(z_content_a.detach())[0], Dc(z_content_b.detach())[0]
    return bce_on_sigmoid(out_b, 1.0) + bce_on_sigmoid(out_a, 0.0)


def content_adversarial_loss(Dc: nn.Module, z_content: torch.Tensor) -> torch.Tensor:
    """The encoders push D^c's output to 0.5 for either domain: a content code should not reveal its domain."""
    return bce_on_sigmoid(Dc(z_content)[0], 0.5)


def kl_attribute(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the batch and the nz dimensions (the authors sum, not
    average): keeps the attribute posterior near the prior sampled at test time."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def kl_content(z: torch.Tensor) -> torch.Tensor:
    """mean(z^2): the KL of N(z, I) against N(0, I) up to a factor 1/2 and constants (z is the mean of the
    unit-variance posterior the noise layer implies); keeps content codes small."""
    return z.pow(2).mean()


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error: cross-cycle and self-reconstruction terms."""
    return (x - y).abs().mean()


def latent_regression(mu: torch.Tensor, z_random: torch.Tensor) -> torch.Tensor:
    """mean |E^a(G(c, z)) - z| on the posterior *mean* of the generated image: the generator must use z."""
    return (mu - z_random).abs().mean()


def mode_seeking(fake1: torch.Tensor, fake2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                 eps: float = 1e-5) -> torch.Tensor:
    """DRIT++ / MSGAN: 1 / (mean|G(c,z2) - G(c,z1)| / mean|z2 - z1| + eps); large when two attributes collapse
    to one output, so minimising it spreads the outputs."""
    ratio = (fake2 - fake1).abs().mean() / (z2 - z1).abs().mean()
    return 1.0 / (ratio + eps)


def encoder_generator_loss(nets: DritNets, f: DritForward, cfg: DritConfig) -> tuple[torch.Tensor, dict]:
    """The authors' backward_EG objective (steps E^c, E^a and G): image adversarial on the encoded-attribute
    translations, content adversarial, self-reconstruction and cross-cycle L1, KL on attributes and content."""
    terms = {
        "gan_a": generator_adversarial_loss(nets.disA, f.fake_A_encoded) * cfg.lambda_adv,
        "gan_b": generator_adversarial_loss(nets.disB, f.fake_B_encoded) * cfg.lambda_adv,
        "gan_acontent": content_adversarial_loss(nets.disContent, f.z_content_a) * cfg.lambda_adv_content,
        "gan_bcontent": content_adversarial_loss(nets.disContent, f.z_content_b) * cfg.lambda_adv_content,
        "l1_rec_aa": l1(f.fake_AA_encoded, f.real_A_encoded) * cfg.lambda_rec,
        "l1_rec_bb": l1(f.fake_BB_encoded, f.real_B_encoded) * cfg.lambda_rec,
        "l1_cc_a": l1(f.fake_A_recon, f.real_A_encoded) * cfg.lambda_cc,
        "l1_cc_b": l1(f.fake_B_recon, f.real_B_encoded) * cfg.lambda_cc,
        "kl_zc_a": kl_content(f.z_content_a) * cfg.lambda_kl_content,
        "kl_zc_b": kl_content(f.z_content_b) * cfg.lambda_kl_content,
        "kl_za_a": kl_attribute(f.mu_a, f.logvar_a) * cfg.lambda_kl_attr,
        "kl_za_b": kl_attribute(f.mu_b, f.logvar_b) * cfg.lambda_kl_attr,
    }
    return sum(terms.values()), terms


def generator_alone_loss(nets: DritNets, f: DritForward, cfg: DritConfig) -> tuple[torch.Tensor, dict]:
    """The authors' backward_G_alone objective (steps E^c and G only, not E^a): the random-attribute outputs
    against disA2/disB2, latent regression, and with DRIT++'s option mode seeking."""
    terms = {
        "gan2_a": generator_adversarial_loss(nets.disA2, f.fake_A_random) * cfg.lambda_adv,
        "gan2_b": generator_adversarial_loss(nets.disB2, f.fake_B_random) * cfg.lambda_adv,
    }
    if f.z_random2 is not None:
        terms["gan2_a2"] = generator_adversarial_loss(nets.disA2, f.fake_A_random2) * cfg.lambda_adv
        terms["gan2_b2"] = generator_adversarial_loss(nets.disB2, f.fake_B_random2) * cfg.lambda_adv
        terms["ms_ab"] = mode_seeking(f.fake_B_random, f.fake_B_random2, f.z_random, f.z_random2,
                                      cfg.ms_eps) * cfg.lambda_ms
        terms["ms_ba"] = mode_seeking(f.fake_A_random, f.fake_A_random2, f.z_random, f.z_random2,
                                      cfg.ms_eps) * cfg.lambda_ms
    terms["latent_a"] = latent_regression(f.mu2_a, f.z_random) * cfg.lambda_latent
    terms["latent_b"] = latent_regression(f.mu2_b, f.z_random) * cfg.lambda_latent
    return sum(terms.values()), terms


# ----------------------------------------------------------------------------------------------------------------
# The authors' update order (train.py + DRIT.update_D_content / update_D / update_EG)
# ----------------------------------------------------------------------------------------------------------------


def is_full_update(it: int, n_batches: int, d_iter: int) -> bool:
    """train.py: batch ``it`` of an epoch updates only the content discriminator unless (it + 1) is a multiple of
    d_iter or it is one of the epoch's last two batches; otherwise it updates everything."""
    return (it + 1) % d_iter == 0 or it >= n_batches - 2


def _step_content_discriminator(nets: DritNets, opts: dict, z_a, z_b, cfg: DritConfig) -> float:
    opts["disContent"].zero_grad()
    loss = content_discriminator_loss(nets.disContent, z_a, z_b)
    loss.backward()
    nn.utils.clip_grad_norm_(nets.disContent.parameters(), cfg.clip_dis_content)
    opts["disContent"].step()
    return loss.item()


def update_content_discriminator(nets: DritNets, opts: dict, real_A: torch.Tensor, real_B: torch.Tensor,
                                 cfg: DritConfig) -> float:
    """update_D_content: encode the first image of each domain (content noise on) and step D^c alone."""
    z_a, z_b = nets.enc_c(real_A[:1], real_B[:1])
    return _step_content_discriminator(nets, opts, z_a, z_b, cfg)


def update_discriminators(nets: DritNets, opts: dict, f: DritForward, cfg: DritConfig) -> dict[str, float]:
    """update_D, after drit_forward: disA, disA2, disB, disB2, disContent in turn, one Adam step each. With mode
    seeking, disA2/disB2 also see the second random-attribute output (a second backward before their step)."""
    jobs = (("disA", f.real_A_encoded, (f.fake_A_encoded,)),
            ("disA2", f.real_A_random, (f.fake_A_random, f.fake_A_random2)),
            ("disB", f.real_B_encoded, (f.fake_B_encoded,)),
            ("disB2", f.real_B_random, (f.fake_B_random, f.fake_B_random2)))
    losses = {}
    for name, real, fakes in jobs:
        opts[name].zero_grad()
        losses[name] = 0.0
        for fake in fakes:
            if fake is not None:
                loss = discriminator_loss(getattr(nets, name), real, fake)
                loss.backward()
                losses[name] += loss.item()
        opts[name].step()
    losses["disContent"] = _step_content_discriminator(nets, opts, f.z_content_a, f.z_content_b, cfg)
    return losses


def update_encoders_generator(nets: DritNets, opts: dict, f: DritForward, cfg: DritConfig) -> dict[str, float]:
    """update_EG, after update_discriminators on the same forward: step E^c, E^a and G on the EG objective, then
    E^c and G again on the G-alone objective (E^a gets no step from latent regression).

    Both gradients are taken at the parameters of the forward pass. The authors' code (PyTorch 0.4) ran the second
    backward through the first forward's graph after the first step; 0.4's optimisers wrote ``.data`` unseen by
    autograd, while current PyTorch refuses it (their issue #62). So the second gradient is computed before any
    step, with autograd.grad, which leaves E^a's ``.grad`` alone."""
    loss_eg, terms = encoder_generator_loss(nets, f, cfg)
    loss_alone, terms_alone = generator_alone_loss(nets, f, cfg)
    trained = ("enc_c", "enc_a", "gen")
    for name in trained:
        opts[name].zero_grad()
    loss_eg.backward(retain_graph=True)
    params = [*nets.enc_c.parameters(), *nets.gen.parameters()]
    grads = torch.autograd.grad(loss_alone, params, allow_unused=True)
    for name in trained:
        opts[name].step()
    for p, g in zip(params, grads):
        p.grad = torch.zeros_like(p) if g is None else g
    opts["enc_c"].step()
    opts["gen"].step()
    return {k: v.item() for k, v in {**terms, **terms_alone}.items()}


# ----------------------------------------------------------------------------------------------------------------
# Official checkpoints
# ----------------------------------------------------------------------------------------------------------------


def read_official_checkpoint(source: str | Path | dict) -> dict:
    """The authors' ``.pth`` (a dict: one state_dict per network, one per optimiser ``<name>_opt``, ``ep``,
    ``total_it``). Plain tensors, dicts and numbers, so ``weights_only=True`` reads it."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise DataError(f"no DRIT checkpoint at {path}; the authors' example model is "
                        "http://vllab.ucmerced.edu/hylee/DRIT/models/example.pth (models/download_model.sh)")
    return load_checkpoint(path)


def checkpoint_uses_spectral_norm(state: dict) -> bool | None:
    """True / False from the image discriminators' keys; None when the file holds no discriminator (test-only)."""
    if "disA" not in state:
        return None
    return any(k.endswith("weight_orig") for k in state["disA"])


def load_official_state(nets: DritNets, state: dict, networks: tuple[str, ...] | None = None,
                        optimizers: dict[str, torch.optim.Optimizer] | None = None,
                        source: str = "checkpoint") -> tuple[int, int]:
    """Load the authors' checkpoint dict into ``nets`` with strict key matching; returns (ep, total_it).

    ``networks``: the ones to load (default: all eight when present, else the generator side, as their test.py
    does with ``resume(train=False)``). Refuses, naming the keys, when any network does not match exactly."""
    if networks is None:
        networks = NETWORKS if all(n in state for n in NETWORKS) else ("enc_c", "enc_a", "gen")
    absent = [n for n in networks if n not in state]
    if absent:
        raise KeyError(f"{source} lacks {absent}; a DRIT checkpoint holds {list(NETWORKS)} (+ '<name>_opt', "
                       f"'ep', 'total_it'); found top-level keys {sorted(state)[:12]}")
    problems = {}
    for name in networks:
        why = state_mismatch(getattr(nets, name).state_dict(), state[name])
        if why:
            problems[name] = why
    if problems:
        sn = checkpoint_uses_spectral_norm(state)
        hint = "" if sn is None or sn == nets.cfg.dis_spectral_norm else \
            f" The file's discriminators {'use' if sn else 'do not use'} spectral norm: set dis_spectral_norm={sn}."
        raise ValueError(f"{source} does not match the DRIT networks: "
                         + " | ".join(f"{k}: {v}" for k, v in problems.items())
                         + f".{hint} The paper sizes are DritConfig()'s defaults.")
    for name in networks:
        getattr(nets, name).load_state_dict(state[name], strict=True)
    for name, opt in (optimizers or {}).items():
        opt.load_state_dict(state[f"{name}_opt"])
    return int(state.get("ep", -1)), int(state.get("total_it", 0))


def official_checkpoint_state(nets: DritNets, optimizers: dict[str, torch.optim.Optimizer] | None = None,
                              ep: int = -1, total_it: int = 0) -> dict:
    """The authors' checkpoint layout (their DRIT.save), e.g. to hand a trained model to their test.py."""
    state = {name: getattr(nets, name).state_dict() for name in NETWORKS}
    for name, opt in (optimizers or {}).items():
        state[f"{name}_opt"] = opt.state_dict()
    state.update(ep=ep, total_it=total_it)
    return state


def infer_config(state: dict) -> DritConfig:
    """The network sizes of a checkpoint (the authors' or a scaled-down one), read from its key shapes."""
    enc_c, enc_a, gen = state["enc_c"], state["enc_a"], state["gen"]
    cfg = DritConfig(
        nz=enc_a["fc_A.0.weight"].shape[0],
        enc_dim=enc_c["convA.0.model.1.weight"].shape[0],
        enc_res=len({k.split(".")[1] for k in enc_c if k.startswith("convA.")}) - 3,
        gen_res=len({k.split(".")[1] for k in gen if k.startswith("decA1.")}),
        attr_dim=enc_a["conv_A.1.weight"].shape[0],
        attr_blocks=len({k.split(".")[1] for k in enc_a if k.startswith("conv_A.") and ".conv." in k}) + 1)
    mult = enc_a["fc_A.0.weight"].shape[1] // cfg.attr_dim  # widths stop growing at max_mult, or at the last block
    cfg.attr_max_mult = mult if mult < cfg.attr_blocks else max(mult, DritConfig.attr_max_mult)
    sn = checkpoint_uses_spectral_norm(state)
    if sn is not None:
        dis = state["disA"]
        cfg.dis_spectral_norm = sn
        cfg.dis_dim = dis["Diss.0.0.model.1.bias"].shape[0]
        cfg.dis_scale = len({k.split(".")[1] for k in dis})
        cfg.dis_layers = len({k.split(".")[2] for k in dis if k.startswith("Diss.0.")}) - 1
        dc = state["disContent"]
        cfg.dis_content_dim = dc["model.0.model.1.weight"].shape[0]
        cfg.dis_content_kernel = dc["model.0.model.1.weight"].shape[-1]
        cfg.dis_content_layers = len({k.split(".")[1] for k in dc}) - 2
    return cfg


# ----------------------------------------------------------------------------------------------------------------
# Test time: painting -> photo with one sampled attribute per painting
# ----------------------------------------------------------------------------------------------------------------


def key_seed(seed: int, key: str) -> int:
    """A 63-bit seed from (seed, key), stable across processes and machines (Python's hash() is salted)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


class DritTranslator(nn.Module):
    """Painting (domain A) -> photo (domain B): E^c_A then G_B with an attribute z ~ N(0, I), as the authors'
    test.py does; the Art2Real paper uses one such sample per test painting.

    ``reseed(key)`` draws the attribute from (seed, key), e.g. the painting's file stem, and keeps it until the
    next reseed, so every tile of one painting shares it and a rerun reproduces it. Without a key each forward
    call draws one attribute per image from a generator seeded with ``seed``. The networks run in eval mode (no
    content noise) and get their previous mode back, so a translator may share them with a training run.
    """

    def __init__(self, enc_c: ContentEncoder, gen: Generator, nz: int = 8, seed: int = 0,
                 painting_domain: str = "a"):
        super().__init__()
        if painting_domain not in ("a", "b"):
            raise ValueError(f"painting_domain must be 'a' or 'b', not {painting_domain!r}")
        self.enc_c, self.gen, self.nz, self.seed = enc_c, gen, nz, seed
        self.painting_domain = painting_domain
        self._stream = torch.Generator().manual_seed(seed)
        self.z: torch.Tensor | None = None

    def reseed(self, key: str | list[str] | tuple[str, ...]) -> torch.Tensor:
        """Pin the attribute drawn from (seed, key); returns it, shape (1, nz). A list of keys pins one attribute
        per item of the next batches, shape (len(keys), nz), as each key alone would (a batch of paintings)."""
        keys = [key] if isinstance(key, str) else list(key)
        z = torch.cat([torch.randn(1, self.nz, generator=torch.Generator().manual_seed(key_seed(self.seed, k)))
                       for k in keys])
        return self.pin(z)

    def pin(self, z: torch.Tensor | None) -> torch.Tensor | None:
        """Use the attribute(s) ``z`` ((1, nz) for any batch, or one row per item) until the next pin or reseed;
        None goes back to the seeded stream."""
        if z is not None and (z.ndim != 2 or z.shape[1] != self.nz):
            raise ValueError(f"an attribute must be (n, {self.nz}), got {tuple(z.shape)}")
        self.z = z
        return z

    def attributes(self, n: int) -> torch.Tensor:
        """(n, nz): the pinned attribute(s), or n fresh draws from the seeded stream."""
        if self.z is None:
            return torch.randn(n, self.nz, generator=self._stream)
        if len(self.z) == 1:
            return self.z.expand(n, -1)
        if len(self.z) != n:
            raise ValueError(f"{len(self.z)} attributes are pinned for a batch of {n}; reseed with one key per "
                             "image, or one key for all")
        return self.z

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"DRIT needs sides divisible by 4 (two stride-2 stages), got {tuple(x.shape[-2:])}; "
                             "pad the input (art2real.translate.translate_tensor does)")
        z = self.attributes(x.shape[0]).to(x.device, x.dtype)
        modes = self.enc_c.training, self.gen.training
        self.enc_c.eval(), self.gen.eval()
        try:
            if self.painting_domain == "a":
                return self.gen.forward_b(self.enc_c.forward_a(x), z)
            return self.gen.forward_a(self.enc_c.forward_b(x), z)
        finally:
            self.enc_c.train(modes[0]), self.gen.train(modes[1])

    @classmethod
    def from_checkpoint(cls, source: str | Path | dict, seed: int = 0, painting_domain: str = "a",
                        device="cpu", label: str | None = None) -> DritTranslator:
        """From the authors' ``.pth`` (or a dict in their layout, ``label`` saying where it came from); sizes are
        read from the file."""
        state = read_official_checkpoint(source)
        label = label or ("the given dict" if isinstance(source, dict) else str(source)[:200])
        for name in ("enc_c", "enc_a", "gen"):
            if name not in state:
                raise KeyError(f"{label} is not a DRIT checkpoint: no '{name}' (keys: {sorted(state)[:12]})")
        try:
            cfg = infer_config(state)
        except KeyError as e:
            raise KeyError(f"{label} is not in the DRIT layout: no {e}") from None
        enc_c = ContentEncoder(3, 3, cfg.enc_dim, cfg.enc_res)
        gen = Generator(3, 3, cfg.nz, 4 * cfg.enc_dim, cfg.gen_res)
        for name, net in (("enc_c", enc_c), ("gen", gen)):
            why = state_mismatch(net.state_dict(), state[name])
            if why:
                raise ValueError(f"{label}: '{name}' does not match the DRIT layout: {why}")
            net.load_state_dict(state[name], strict=True)
        return cls(enc_c, gen, cfg.nz, seed, painting_domain).to(device)
