"""Cycle-GAN (paper eq. 7-10) and Art2Real = Cycle-GAN + the semantic contextual loss on G(x) (eq. 1-6).

Naming follows the paper: X = paintings (A), Y = photos (B); G: X -> Y, F: Y -> X; D_Y judges photos, D_X
paintings. Both methods share every network, loss and schedule, so they are compared on equal footing; Art2Real
adds lambda_cx times the contextual loss of G(x) against its memory banks.
"""
from __future__ import annotations

import itertools

import torch

from ..errors import CheckpointError
from ..nn.losses import l1, lsgan_loss
from ..nn.networks import (ResnetGenerator, build_discriminator, build_generator, clean_state_dict,
                           load_generator_state)
from ..train.pool import ImagePool
from ..train.schedule import linear_decay
from . import register
from .base import Method


@register
class CycleGAN(Method):
    key, row = "cyclegan", "Cycle-GAN"
    loss_names = ("G_gan", "F_gan", "cycle_X", "cycle_Y", "idt_X", "idt_Y", "D_Y", "D_X")
    sample_titles = ("painting", "G(x)", "F(G(x))")

    def __init__(self, cfg, device, context=None):
        super().__init__(cfg, device, context)
        self.G, self.F = build_generator(cfg).to(device), build_generator(cfg).to(device)
        self.D_Y, self.D_X = build_discriminator(cfg).to(device), build_discriminator(cfg).to(device)
        self.nets = {"G": self.G, "F": self.F, "D_Y": self.D_Y, "D_X": self.D_X}
        t = cfg.train
        self.opt_G = torch.optim.Adam(itertools.chain(self.G.parameters(), self.F.parameters()), t.lr, t.betas)
        self.opt_D = torch.optim.Adam(itertools.chain(self.D_Y.parameters(), self.D_X.parameters()), t.lr, t.betas)
        self.optimizers = {"G": self.opt_G, "D": self.opt_D}
        rule = linear_decay(t.epochs_constant, t.epochs_decay)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, rule) for k, o in self.optimizers.items()}
        self.pool_Y, self.pool_X = ImagePool(t.pool_size, cfg.seed), ImagePool(t.pool_size, cfg.seed + 1)

    def train_step(self, batch: dict) -> dict[str, float]:
        t = self.cfg.train
        x, y = batch["A"].to(self.device), batch["B"].to(self.device)
        fake_y = self.G(x)
        pending = self.start_contextual(fake_y, batch)  # retrieval overlaps the rest of the G step on CUDA
        fake_x = self.F(y)
        rec_x, rec_y = self.F(fake_y), self.G(fake_x)
        for d in (self.D_Y, self.D_X):
            d.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        losses = {"G_gan": lsgan_loss(self.D_Y(fake_y), True), "F_gan": lsgan_loss(self.D_X(fake_x), True),
                  "cycle_X": l1(rec_x, x) * t.lambda_cycle, "cycle_Y": l1(rec_y, y) * t.lambda_cycle}
        if t.lambda_identity > 0:
            losses["idt_X"] = l1(self.F(x), x) * t.lambda_cycle * t.lambda_identity
            losses["idt_Y"] = l1(self.G(y), y) * t.lambda_cycle * t.lambda_identity
        if pending is not None:
            losses["cx"] = self.contextual_loss(fake_y, pending)
        sum(losses.values()).backward()
        self.opt_G.step()
        for d in (self.D_Y, self.D_X):
            d.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        losses["D_Y"] = _d_loss(self.D_Y, y, self.pool_Y.query(fake_y))
        losses["D_X"] = _d_loss(self.D_X, x, self.pool_X.query(fake_x))
        (losses["D_Y"] + losses["D_X"]).backward()
        self.opt_D.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def extra_state(self) -> dict:
        return {"pool_Y": self.pool_Y.state_dict(), "pool_X": self.pool_X.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.pool_Y.load_state_dict(state["pool_Y"], self.device)
        self.pool_X.load_state_dict(state["pool_X"], self.device)

    def translator(self) -> torch.nn.Module:
        return self.G

    @classmethod
    def build_translator(cls, cfg) -> torch.nn.Module:
        return ResnetGenerator(ngf=cfg.model.ngf, n_blocks=cfg.model.n_blocks)

    @classmethod
    def load_official(cls, state: dict, source: str) -> torch.nn.Module:
        """CycleGAN's released ``*_net_G_A.pth`` and the authors' Art2Real generators (same key layout); the
        width and depth are read from the weights."""
        if any(k.endswith(".filt") for k in clean_state_dict(state)):
            raise CheckpointError(f"{source}: this looks like a CUT generator (blur filters): use --method cut")
        ngf, n_blocks = infer_architecture(state)
        return load_generator_state(ResnetGenerator(ngf=ngf, n_blocks=n_blocks), state, source)

    @torch.no_grad()
    def sample_images(self, x: torch.Tensor) -> list[torch.Tensor]:
        fake = self.G(x)
        return [x, fake, self.F(fake)]


@register
class Art2Real(CycleGAN):
    key, row = "art2real", "Art2Real"
    uses_banks = True
    loss_names = CycleGAN.loss_names + ("cx",)


def _d_loss(d, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (lsgan_loss(d(real), True) + lsgan_loss(d(fake.detach()), False))


def infer_architecture(state: dict) -> tuple[int, int]:
    """(ngf, n_blocks) of a CycleGAN-layout generator state_dict."""
    state = clean_state_dict(state)
    if "model.1.weight" not in state:
        raise ValueError("not a CycleGAN ResNet generator state_dict (no 'model.1.weight')")
    blocks = {k.split(".")[1] for k in state if ".conv_block." in k}
    return int(state["model.1.weight"].shape[0]), len(blocks)
