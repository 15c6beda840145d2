"""CycleGAN's ResNet generator and 70x70 PatchGAN, with CycleGAN's module layout.

The module structure (``model.1.weight``, ``model.10.conv_block.1.weight``, ...) is CycleGAN's, so the authors'
Art2Real checkpoints and CycleGAN's ``monet2photo.pth`` load with strict key matching. InstanceNorm has no affine
parameters and keeps no running statistics, as in CycleGAN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReflectionPad2d(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` with a deterministic backward under torch's deterministic mode: CUDA has no
    deterministic kernel for the backward of reflection padding (it accumulates with atomics), so there the
    padding is built from slices, flips and concatenations, whose backward only copies. Same values, no
    parameters, the same state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_reflect(x, self.padding)


def pad_reflect(x: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflection padding for every network of the kit: torch's kernel, or slices under deterministic CUDA."""
    if x.is_cuda and torch.are_deterministic_algorithms_enabled():
        return reflect_pad(x, padding)
    return F.pad(x, padding, mode="reflect")


def reflect_pad(x: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(x, padding, mode="reflect")`` (left, right, top, bottom) from slices and flips."""
    left, right, top, bottom = padding
    x = torch.cat([x[..., 1:left + 1].flip(-1), x, x[..., x.shape[-1] - right - 1:-1].flip(-1)], -1)
    return torch.cat([x[..., 1:top + 1, :].flip(-2), x, x[..., x.shape[-2] - bottom - 1:-1, :].flip(-2)], -2)


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True),
            ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.: c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf, u2ngf, ungf, c7s1-3, tanh."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        layers: list[nn.Module] = [ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=True), _norm(ngf),
                                   nn.ReLU(True)]
        for i in range(2):  # downsampling
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                       _norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # upsampling
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=True), _norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs, ndf-2ndf-4ndf-8ndf, LeakyReLU 0.2; n_layers 3 = 70x70 receptive field."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), _norm(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), _norm(ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """CycleGAN's 'normal' init: conv weights ~ N(0, gain), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def build_generator(cfg) -> ResnetGenerator:
    return init_weights(ResnetGenerator(ngf=cfg.model.ngf, n_blocks=cfg.model.n_blocks), cfg.model.init_gain)


def build_discriminator(cfg) -> NLayerDiscriminator:
    return init_weights(NLayerDiscriminator(ndf=cfg.model.ndf, n_layers=cfg.model.n_layers_d), cfg.model.init_gain)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def clean_state_dict(state: dict) -> dict:
    """Drop what old CycleGAN checkpoints carry and this layout does not: InstanceNorm running stats, a
    DataParallel ``module.`` prefix, and the ``_metadata`` attribute."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        out[key] = value
    return out


def state_mismatch(own: dict, state: dict) -> str:
    """What keeps ``state`` from loading strictly into a module whose state_dict is ``own`` ("" when nothing):
    missing and unexpected keys and shape mismatches, a few of each named."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} in the file vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = [f"{len(missing)} missing keys (e.g. {missing[:3]})"] if missing else []
    parts += [f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"] if unexpected else []
    parts += [f"{len(shapes)} shape mismatches (e.g. {shapes[:2]})"] if shapes else []
    return "; ".join(parts)


def load_generator_state(net: nn.Module, state: dict, source: str = "checkpoint") -> nn.Module:
    """Strict loading with a message that names the architecture mismatch."""
    state = clean_state_dict(state)
    why = state_mismatch(net.state_dict(), state)
    if why:
        raise ValueError(f"{source} does not match the network architecture: {why}. Check model.ngf / "
                         "model.n_blocks (paper: 64 / 9).")
    net.load_state_dict(state, strict=True)
    return net
