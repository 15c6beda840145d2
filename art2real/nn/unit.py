"""UNIT (Liu, Breuel & Kautz, NIPS 2017) as its authors' PyTorch code (mingyuliutw/UNIT, master) builds it.

Two VAE-like generators (one per domain: encoder -> latent h, decoder h -> image) and two multi-scale LSGAN
discriminators. The released code (the 2018 re-release in MUNIT's structure) has no weight sharing between the two
generators: the shared latent space comes from the losses alone (both decoders read both encoders' codes, cycle
and KL terms). The module tree reproduces the authors' attribute names, so ``state_dict()`` keys and shapes are
theirs (``enc.model.0.conv.weight`` ... ``dec.model.5.conv.bias``; ``cnns.0.0.conv.weight`` ...) and their
``gen_XXXXXXXX.pt`` files (``{'a': gen_a.state_dict(), 'b': gen_b.state_dict()}``) load with strict key matching.

Domains follow the kit: A = paintings, B = photos; painting -> photo is ``gen_b.dec(gen_a.enc(x))``.
Images are float in [-1, 1], NCHW. The defaults of constructors and loss weights are the authors'
(configs/unit_summer2winter_yosemite256_folder.yaml).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..train.checkpoint import load_checkpoint
from .networks import ReflectionPad2d, state_mismatch

# ---------------------------------------------------------------------------------------------------------------
# Building blocks (attribute names are the authors': pad, norm, activation, conv -- registered in that order, so
# state_dict keys come out in their order too)
# ---------------------------------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """The authors' layer norm: one mean and one *unbiased* std per sample over (C, H, W), ``(x - mean) /
    (std + eps)``, then a per-channel affine. Not ``nn.GroupNorm(1, C)``, which uses the biased variance and puts
    eps under the square root. gamma starts uniform in [0, 1), as theirs does."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_features, self.eps, self.affine = num_features, eps, affine
        if affine:
            self.gamma = nn.Parameter(torch.empty(num_features).uniform_())
            self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        x = (x - flat.mean(1).view(shape)) / (flat.std(1).view(shape) + self.eps)
        if self.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = x * self.gamma.view(shape) + self.beta.view(shape)
        return x


def _padding(kind: str, size: int) -> nn.Module:
    pads = {"reflect": ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": nn.ZeroPad2d}
    if kind not in pads:
        raise ValueError(f"pad_type must be one of {sorted(pads)}, got {kind!r}")
    return pads[kind](size)


def _normalisation(kind: str, channels: int) -> nn.Module | None:
    # 'in' is InstanceNorm2d without affine and without running statistics (PyTorch >= 0.4 defaults): it adds no
    # state_dict keys. Files saved with PyTorch 0.3 carry running_mean/var for it; the loader drops those.
    norms = {"none": lambda: None, "in": lambda: nn.InstanceNorm2d(channels), "ln": lambda: LayerNorm(channels),
             "bn": lambda: nn.BatchNorm2d(channels)}
    if kind not in norms:
        raise ValueError(f"norm must be one of {sorted(norms)}, got {kind!r}")
    return norms[kind]()


def _activation(kind: str) -> nn.Module | None:
    acts = {"relu": lambda: nn.ReLU(inplace=True), "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
            "prelu": nn.PReLU, "selu": lambda: nn.SELU(inplace=True), "tanh": nn.Tanh, "none": lambda: None}
    if kind not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {kind!r}")
    return acts[kind]()


class Conv2dBlock(nn.Module):
    """Explicit padding layer, conv (with bias), optional norm, optional activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int = 0, norm: str = "none",
                 activation: str = "relu", pad_type: str = "zero"):
        super().__init__()
        self.pad = _padding(pad_type, padding)
        self.norm = _normalisation(norm, out_ch)
        self.activation = _activation(activation)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class ResBlock(nn.Module):
    """x + (conv3-norm-act, conv3-norm); no activation after the sum."""

    def __init__(self, dim: int, norm: str = "in", activation: str = "relu", pad_type: str = "zero"):
        super().__init__()
        self.model = nn.Sequential(Conv2dBlock(dim, dim, 3, 1, 1, norm, activation, pad_type),
                                   Conv2dBlock(dim, dim, 3, 1, 1, norm, "none", pad_type))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class ResBlocks(nn.Module):
    def __init__(self, n_blocks: int, dim: int, norm: str = "in", activation: str = "relu", pad_type: str = "zero"):
        super().__init__()
        self.model = nn.Sequential(*[ResBlock(dim, norm, activation, pad_type) for _ in range(n_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# ---------------------------------------------------------------------------------------------------------------
# Generator (the authors' VAEGen), discriminator (their MsImageDis)
# ---------------------------------------------------------------------------------------------------------------


class UnitEncoder(nn.Module):
    """The authors' ContentEncoder with instance norm: c7s1-dim, n_downsample x (4x4 stride-2 conv, doubling the
    channels), n_res residual blocks. Its output is the mean h of the latent Gaussian (std fixed to 1)."""

    def __init__(self, in_ch: int = 3, dim: int = 64, n_downsample: int = 2, n_res: int = 4, activ: str = "relu",
                 pad_type: str = "reflect"):
        super().__init__()
        layers = [Conv2dBlock(in_ch, dim, 7, 1, 3, "in", activ, pad_type)]
        for _ in range(n_downsample):
            layers.append(Conv2dBlock(dim, 2 * dim, 4, 2, 1, "in", activ, pad_type))
            dim *= 2
        layers.append(ResBlocks(n_res, dim, "in", activ, pad_type))
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnitDecoder(nn.Module):
    """n_res residual blocks (instance norm), n_upsample x (nearest x2 upsampling, 5x5 conv halving the channels,
    layer norm), c7s1-out with tanh. Upsample + conv instead of transposed convs avoids checkerboard artefacts."""

    def __init__(self, n_upsample: int = 2, n_res: int = 4, dim: int = 256, out_ch: int = 3, activ: str = "relu",
                 pad_type: str = "reflect"):
        super().__init__()
        layers: list[nn.Module] = [ResBlocks(n_res, dim, "in", activ, pad_type)]
        for _ in range(n_upsample):
            layers += [nn.Upsample(scale_factor=2), Conv2dBlock(dim, dim // 2, 5, 1, 2, "ln", activ, pad_type)]
            dim //= 2
        layers.append(Conv2dBlock(dim, out_ch, 7, 1, 3, "none", "tanh", pad_type))
        self.model = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.model(h)


class UnitGenerator(nn.Module):
    """One domain's VAE (the authors' VAEGen): ``enc`` and ``dec``.

    The authors' "reduced VAE": the encoder gives the mean h; the std is fixed to 1, so sampling is h + N(0, I)
    and the KL term reduces to a penalty on h**2 (``kl_loss``)."""

    def __init__(self, in_ch: int = 3, dim: int = 64, n_downsample: int = 2, n_res: int = 4, activ: str = "relu",
                 pad_type: str = "reflect"):
        super().__init__()
        self.enc = UnitEncoder(in_ch, dim, n_downsample, n_res, activ, pad_type)
        self.dec = UnitDecoder(n_downsample, n_res, self.enc.output_dim, in_ch, activ, pad_type)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, noise): the latent mean and a fresh N(0, I) draw of its shape; training decodes h + noise.
        Noise is drawn whatever the mode, as in the authors' encode."""
        h = self.enc(x)
        return h, torch.randn_like(h)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.dec(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, h): sampled latent in training mode, the mean in eval mode."""
        h, noise = self.encode(x)
        return self.decode(h + noise if self.training else h), h


class MultiScaleDiscriminator(nn.Module):
    """The authors' MsImageDis (after pix2pixHD): ``num_scales`` identical PatchGANs, scale s sees the image
    average-pooled s times (3x3, stride 2, pad 1, padding not counted). Each: 4x4 stride-2 conv to ``dim`` (no
    norm), n_layer - 1 more 4x4 stride-2 convs doubling the channels (``norm``), a 1x1 conv to one channel."""

    def __init__(self, in_ch: int = 3, dim: int = 64, n_layer: int = 4, num_scales: int = 3, norm: str = "none",
                 activ: str = "lrelu", pad_type: str = "reflect"):
        super().__init__()
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.cnns = nn.ModuleList(self._make_net(in_ch, dim, n_layer, norm, activ, pad_type)
                                  for _ in range(num_scales))
        # the coarsest scale's last 4x4 conv needs 2 px under its reflection padding
        self.min_size = 2 ** (num_scales + n_layer - 1)

    @staticmethod
    def _make_net(in_ch, dim, n_layer, norm, activ, pad_type) -> nn.Sequential:
        layers: list[nn.Module] = [Conv2dBlock(in_ch, dim, 4, 2, 1, "none", activ, pad_type)]
        for _ in range(n_layer - 1):
            layers.append(Conv2dBlock(dim, dim * 2, 4, 2, 1, norm, activ, pad_type))
            dim *= 2
        layers.append(nn.Conv2d(dim, 1, 1, 1, 0))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"the multi-scale discriminator ({len(self.cnns)} scales, {len(self.cnns[0]) - 1} "
                             f"stride-2 convs) needs images of at least {self.min_size} px, got "
                             f"{tuple(x.shape[-2:])}; use fewer scales or layers (dis_num_scales, dis_n_layer)")
        outputs = []
        for net in self.cnns:
            outputs.append(net(x))
            x = self.downsample(x)
        return outputs


def init_weights(net: nn.Module, kind: str = "kaiming") -> nn.Module:
    """The authors' weights_init on every Conv/Linear weight, biases 0. Their trainer applies 'kaiming' (normal,
    fan_in, gain sqrt(2)) to everything, then 'gaussian' N(0, 0.02) to the discriminators. LayerNorm's gamma keeps
    its uniform start."""
    for m in net.modules():
        if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            continue
        if kind == "gaussian":
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif kind == "kaiming":
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
        elif kind == "xavier":
            nn.init.xavier_normal_(m.weight, gain=math.sqrt(2))
        elif kind == "orthogonal":
            nn.init.orthogonal_(m.weight, gain=math.sqrt(2))
        elif kind != "default":
            raise ValueError(f"init must be gaussian, kaiming, xavier, orthogonal or default, got {kind!r}")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return net


class UnitNetworks(nn.Module):
    """gen_a, gen_b, dis_a, dis_b as the authors' UNIT_Trainer holds them, initialised as it does."""

    def __init__(self, in_ch: int = 3, dim: int = 64, n_downsample: int = 2, n_res: int = 4, activ: str = "relu",
                 pad_type: str = "reflect", dis_dim: int = 64, dis_n_layer: int = 4, dis_num_scales: int = 3,
                 dis_norm: str = "none", dis_activ: str = "lrelu", dis_pad_type: str = "reflect",
                 init: str = "kaiming", dis_init: str = "gaussian"):
        super().__init__()
        self.gen_a = UnitGenerator(in_ch, dim, n_downsample, n_res, activ, pad_type)
        self.gen_b = UnitGenerator(in_ch, dim, n_downsample, n_res, activ, pad_type)
        self.dis_a = MultiScaleDiscriminator(in_ch, dis_dim, dis_n_layer, dis_num_scales, dis_norm, dis_activ,
                                             dis_pad_type)
        self.dis_b = MultiScaleDiscriminator(in_ch, dis_dim, dis_n_layer, dis_num_scales, dis_norm, dis_activ,
                                             dis_pad_type)
        init_weights(self, init)
        init_weights(self.dis_a, dis_init)
        init_weights(self.dis_b, dis_init)

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.gen_a.parameters()) + list(self.gen_b.parameters())

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.dis_a.parameters()) + list(self.dis_b.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------


def recon_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error; the authors' recon_criterion for both the within-domain and the cycle terms."""
    return (x - target).abs().mean()


def kl_loss(h: torch.Tensor) -> torch.Tensor:
    """KL(N(h, I) || N(0, I)) as the authors compute it: mean(h**2). The exact KL is 0.5 * sum(h**2) per sample;
    with the std fixed to 1 the log-variance terms vanish, and the constant factor is left to the weight (0.01)."""
    return h.pow(2).mean()


def gan_dis_loss(fake_outs: list[torch.Tensor], real_outs: list[torch.Tensor], gan_type: str = "lsgan"
                 ) -> torch.Tensor:
    """Discriminator loss summed (not averaged) over the scales. lsgan: mean(D(fake)^2) + mean((D(real) - 1)^2);
    nsgan: binary cross-entropy on the logits."""
    loss = 0
    for fake, real in zip(fake_outs, real_outs):
        if gan_type == "lsgan":
            loss = loss + fake.pow(2).mean() + (real - 1).pow(2).mean()
        elif gan_type == "nsgan":
            loss = loss + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)) \
                + F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
        else:
            raise ValueError(f"gan_type must be 'lsgan' or 'nsgan', got {gan_type!r}")
    return loss


def gan_gen_loss(fake_outs: list[torch.Tensor], gan_type: str = "lsgan") -> torch.Tensor:
    """Generator's adversarial loss summed over the scales: mean((D(fake) - 1)^2) for lsgan."""
    loss = 0
    for fake in fake_outs:
        if gan_type == "lsgan":
            loss = loss + (fake - 1).pow(2).mean()
        elif gan_type == "nsgan":
            loss = loss + F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        else:
            raise ValueError(f"gan_type must be 'lsgan' or 'nsgan', got {gan_type!r}")
    return loss


def generator_losses(nets: UnitNetworks, x_a: torch.Tensor, x_b: torch.Tensor, *, gan_w: float = 1.0,
                     recon_x_w: float = 10.0, recon_kl_w: float = 0.01, recon_x_cyc_w: float = 10.0,
                     recon_kl_cyc_w: float = 0.01, gan_type: str = "lsgan") -> dict[str, torch.Tensor]:
    """The authors' gen_update objective, term by term, plus ``total`` (their weighted sum; defaults = theirs).

    Every decode reads a sampled latent h + noise. Cross-domain: x_ab = dec_b(h_a + n), x_ba = dec_a(h_b + n);
    cycle: re-encode x_ab with enc_b and decode with dec_a (x_aba), likewise x_bab. The KL terms act on the
    first and the re-encoded latent means. The domain-invariant perceptual (VGG) term is off (vgg_w 0) in the 256 px
    folder config and not provided here."""
    h_a, n_a = nets.gen_a.encode(x_a)
    h_b, n_b = nets.gen_b.encode(x_b)
    x_a_recon, x_b_recon = nets.gen_a.decode(h_a + n_a), nets.gen_b.decode(h_b + n_b)
    x_ba, x_ab = nets.gen_a.decode(h_b + n_b), nets.gen_b.decode(h_a + n_a)
    h_b_recon, n_b_recon = nets.gen_a.encode(x_ba)
    h_a_recon, n_a_recon = nets.gen_b.encode(x_ab)
    x_aba, x_bab = nets.gen_a.decode(h_a_recon + n_a_recon), nets.gen_b.decode(h_b_recon + n_b_recon)
    terms = {
        "adv_a": gan_gen_loss(nets.dis_a(x_ba), gan_type), "adv_b": gan_gen_loss(nets.dis_b(x_ab), gan_type),
        "recon_x_a": recon_loss(x_a_recon, x_a), "recon_x_b": recon_loss(x_b_recon, x_b),
        "kl_a": kl_loss(h_a), "kl_b": kl_loss(h_b),
        "cyc_x_a": recon_loss(x_aba, x_a), "cyc_x_b": recon_loss(x_bab, x_b),
        "kl_cyc_aba": kl_loss(h_a_recon), "kl_cyc_bab": kl_loss(h_b_recon),
    }
    terms["total"] = (gan_w * (terms["adv_a"] + terms["adv_b"])
                      + recon_x_w * (terms["recon_x_a"] + terms["recon_x_b"])
                      + recon_kl_w * (terms["kl_a"] + terms["kl_b"])
                      + recon_x_cyc_w * (terms["cyc_x_a"] + terms["cyc_x_b"])
                      + recon_kl_cyc_w * (terms["kl_cyc_aba"] + terms["kl_cyc_bab"]))
    return terms


def discriminator_losses(nets: UnitNetworks, x_a: torch.Tensor, x_b: torch.Tensor, *, gan_w: float = 1.0,
                         gan_type: str = "lsgan") -> dict[str, torch.Tensor]:
    """The authors' dis_update objective: fresh translations from sampled latents, detached from the generators
    (here computed without a graph, which gives the same values and gradients); dis_a judges x_ba against x_a."""
    with torch.no_grad():
        h_a, n_a = nets.gen_a.encode(x_a)
        h_b, n_b = nets.gen_b.encode(x_b)
        x_ba, x_ab = nets.gen_a.decode(h_b + n_b), nets.gen_b.decode(h_a + n_a)
    terms = {"dis_a": gan_dis_loss(nets.dis_a(x_ba), nets.dis_a(x_a), gan_type),
             "dis_b": gan_dis_loss(nets.dis_b(x_ab), nets.dis_b(x_b), gan_type)}
    terms["total"] = gan_w * (terms["dis_a"] + terms["dis_b"])
    return terms


# ---------------------------------------------------------------------------------------------------------------
# Released generator files and the painting -> photo translator
# ---------------------------------------------------------------------------------------------------------------

_PT03_STATS = ("running_mean", "running_var", "num_batches_tracked")


def generator_sizes(state: dict) -> dict:
    """in_ch, dim, n_downsample, n_res of one generator's state_dict in the authors' layout (activation and
    padding leave no trace in the weights: the authors' defaults relu / reflect are assumed)."""
    if "enc.model.0.conv.weight" not in state:
        raise ValueError("not a UNIT generator state_dict (no 'enc.model.0.conv.weight'); "
                         f"first keys: {list(state)[:3]}")
    dim, in_ch = state["enc.model.0.conv.weight"].shape[:2]
    # enc.model: 0 = c7s1, 1..n = downsampling convs, n + 1 = ResBlocks
    n_downsample = sum(f"enc.model.{i}.conv.weight" in state for i in range(1, len(state)))
    res_prefix = f"enc.model.{n_downsample + 1}.model."
    n_res = len({k[len(res_prefix):].split(".")[0] for k in state if k.startswith(res_prefix)})
    return {"in_ch": int(in_ch), "dim": int(dim), "n_downsample": n_downsample, "n_res": n_res}


def _drop_pt03_instance_norm_stats(net: nn.Module, state: dict) -> dict:
    """PyTorch 0.3 saved running statistics for InstanceNorm2d; the authors' test.py deletes them
    (pytorch03_to_pytorch04). Drop exactly those: keys of this net's InstanceNorm2d modules."""
    modules = dict(net.named_modules())
    out = {}
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        if leaf in _PT03_STATS and isinstance(modules.get(owner), nn.InstanceNorm2d):
            continue
        out[key] = value
    return out


def load_generator_state(net: UnitGenerator, state: dict, source: str = "state_dict") -> UnitGenerator:
    """Strict loading of one authors'-layout generator state_dict, naming what does not match."""
    state = _drop_pt03_instance_norm_stats(net, dict(state))
    why = state_mismatch(net.state_dict(), state)
    if why:
        hint = ""
        if "enc.model.0.conv.weight" in state:
            hint = f" The file's generator sizes are {generator_sizes(state)}; build the network with those."
        raise ValueError(f"{source} does not match the UNIT generator: {why}.{hint}")
    net.load_state_dict(state, strict=True)
    return net


def read_generator_file(source, name: str | None = None) -> dict:
    """The ``{'a': state_dict, 'b': state_dict}`` of an authors' ``gen_XXXXXXXX.pt`` (a path or the loaded dict;
    ``name`` says where a loaded dict came from, for the messages)."""
    name = name or (str(source)[:200] if isinstance(source, (str, Path)) else "generator dict")
    state = load_checkpoint(source) if isinstance(source, (str, Path)) else source
    if not isinstance(state, dict) or not {"a", "b"} <= set(state):
        keys = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{name} is not a UNIT generator file: expected {{'a': ..., 'b': ...}} as the authors' "
                         f"trainer saves gen_XXXXXXXX.pt, got {keys}")
    if any(k.startswith("cnns.") for k in state["a"]):
        raise ValueError(f"{name} holds discriminators (dis_XXXXXXXX.pt); pass the gen_XXXXXXXX.pt file instead")
    return state


def load_official_generators(source, gen_a: UnitGenerator, gen_b: UnitGenerator) -> None:
    """Load an authors' generator file into gen_a and gen_b, strictly."""
    state = read_generator_file(source)
    load_generator_state(gen_a, state["a"], "generator 'a' of the file")
    load_generator_state(gen_b, state["b"], "generator 'b' of the file")


def save_official_generators(path, gen_a: UnitGenerator, gen_b: UnitGenerator) -> None:
    """Write generators in the authors' layout, so their test.py reads what this kit trains."""
    torch.save({"a": gen_a.state_dict(), "b": gen_b.state_dict()}, path)


class UnitTranslator(nn.Module):
    """Painting -> photo: the encoder of domain A and the decoder of domain B, reading the latent *mean* (no
    noise), as the authors' test.py does; deterministic. Its state_dict has a generator's keys (enc.*, dec.*).

    H and W must be multiples of 2 ** n_downsample (4 at the paper size); ``translate.translate_tensor`` pads."""

    def __init__(self, enc: UnitEncoder, dec: UnitDecoder):
        super().__init__()
        self.enc, self.dec = enc, dec
        self.factor = 2 ** sum(isinstance(m, Conv2dBlock) and m.conv.stride == (2, 2) for m in enc.model)

    @classmethod
    def from_generators(cls, gen_a: UnitGenerator, gen_b: UnitGenerator) -> "UnitTranslator":
        """Shares (does not copy) gen_a.enc and gen_b.dec; translating A -> B."""
        return cls(gen_a.enc, gen_b.dec)

    @classmethod
    def from_file(cls, source, a2b: bool = True, activ: str = "relu", pad_type: str = "reflect",
                  name: str | None = None) -> "UnitTranslator":
        """From an authors' gen_XXXXXXXX.pt (a path or its loaded dict; ``name`` names a dict in messages).
        ``a2b=False`` translates B -> A (their test.py ``--a2b 0``), for files trained with photos as domain A."""
        name = name or (str(source)[:200] if isinstance(source, (str, Path)) else "generator dict")
        state = read_generator_file(source, name)
        src, dst = ("a", "b") if a2b else ("b", "a")
        gens = {}
        for key in (src, dst):
            gens[key] = UnitGenerator(**generator_sizes(state[key]), activ=activ, pad_type=pad_type)
            load_generator_state(gens[key], state[key], f"generator {key!r} of {name}")
        return cls(gens[src].enc, gens[dst].dec).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-2] % self.factor or x.shape[-1] % self.factor:
            raise ValueError(f"UNIT needs NCHW images with H and W multiples of {self.factor}, got "
                             f"{tuple(x.shape)}; resize, or pad with art2real.translate.translate_tensor")
        return self.dec(self.enc(x))


def stretch_like_authors(y: torch.Tensor) -> torch.Tensor:
    """What the authors' test.py writes: ``save_image(..., normalize=True)`` of one image min-max stretches it to
    the full range. Per image, back in [-1, 1]; only for reproducing their saved files, not used by default."""
    lo = y.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = y.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (y - lo) / (hi - lo).clamp_min(1e-5) * 2 - 1
