"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020), and both with the semantic contextual loss of Art2Real.

One G: X -> Y (paintings -> photos), one PatchGAN D on photos, and the projection head F (H in the paper) of
PatchNCE, which asks each patch of G(x) to be closer to the patch of x at the same place than to other patches
of x (art2real.nn.cut). The step is the authors' ``optimize_parameters``: G(x) (and G(y) for CUT's identity
PatchNCE), a D step, then one G + F step on lambda_GAN * GAN + PatchNCE. FastCUT drops the identity pass, raises
lambda_NCE to 10 and mirrors the input half of the time (flip equivariance).

``CUT + memory banks`` adds lambda_cx times the semantic contextual loss of G(x) against the memory banks (the
same banks, masks, mask schedule and weight as Art2Real's), exactly as Art2Real adds it to Cycle-GAN: retrieval
starts right after G(x), so on CUDA it overlaps the D step and PatchNCE.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..nn.cut import (CutGenerator, CutTranslator, PatchNCELoss, build_cut_networks, check_layers,
                      check_nce_layers, discriminator_loss, generator_input, generator_losses, load_cut_generator)
from ..train.pool import ImagePool
from ..train.schedule import linear_decay
from . import register
from .base import Method

# Sizes per preset beyond the kit's own (art2real.config): demo and cpu keep the Cycle-GAN presets' G and D, so
# the comparison is architecture for architecture. smoke needs 5 residual blocks for the authors' NCE layer 16 (at
# 4 channels they cost nothing) and a small head. Crops keep the authors' 286 / 256 load-to-crop ratio.
SIZES = {
    "smoke": {"model.n_blocks": 5, "cut.netf_nc": 16, "cut.num_patches": 64, "data.crop_margin": 4},
    "demo": {"data.crop_margin": 15},
    "cpu": {"data.crop_margin": 15},
    # the authors train their whole schedule and keep the last generator: no early stop (validation still
    # records best.pt, which the kit evaluates for every method alike)
    "paper": {"data.crop_margin": 30, "train.patience": None},
}
# The authors' data and D settings at every preset: random crop and flip, whole images in the decay epochs, and
# no image pool (D sees the current G(x) only)
COMMON = {"data.flip": True, "data.crop_in_decay": False, "train.pool_size": 0}


@register
class CUT(Method):
    key, row = "cut", "CUT"
    in_paper = False
    loss_names = ("G_GAN", "NCE", "NCE_Y", "D")
    sample_titles = ("painting", "G(x)")
    # the values the authors' --CUT_mode sets, beyond CutConfig's defaults (which are CUT's)
    mode_values: dict = {}
    # (constant, decay) epochs. paper: the authors' 200 + 200. demo: about 3 minutes on 2 idle CPU cores (a CUT
    # step costs one Cycle-GAN step: benchmarks/bench_cut.py), a multiple of the demo's validation period (6) so
    # the last epoch is validated
    epochs = {"smoke": (1, 1), "demo": (9, 9), "cpu": (100, 100), "paper": (200, 200)}

    def __init__(self, cfg, device, context=None):
        super().__init__(cfg, device, context)
        m, c, t = cfg.model, cfg.cut, cfg.train
        # G, D, then F (its MLPs created eagerly from G's feature channels): the authors' order of random draws,
        # and the optimiser, the scheduler and the checkpoint see F's parameters from the first step
        nets = build_cut_networks(m.ngf, m.n_blocks, m.ndf, m.n_layers_d, c.netf_nc, c.nce_layers,
                                  cfg.data.image_size, m.init_gain)
        self.G, self.D, self.F = (net.to(device) for net in nets)
        self.nets = {"G": self.G, "D": self.D, "F": self.F}
        self.optimizers = {k: torch.optim.Adam(net.parameters(), t.lr, t.betas) for k, net in self.nets.items()}
        self.opt_G, self.opt_D, self.opt_F = (self.optimizers[k] for k in ("G", "D", "F"))
        rule = linear_decay(t.epochs_constant, t.epochs_decay)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, rule) for k, o in self.optimizers.items()}
        self.criterion = PatchNCELoss(c.nce_t, c.nce_includes_all_negatives_from_minibatch)
        self.pool = ImagePool(t.pool_size, cfg.seed)  # the authors' CUT has none (size 0: the current G(x))
        # patch locations and FastCUT's coin: the method's own stream, seeded by the run and saved with it, so a
        # resumed run draws what an uninterrupted one draws whatever else uses torch's global RNG meanwhile
        self.rng = torch.Generator().manual_seed(cfg.seed)

    # ------------------------------------------------------------------ configuration
    @classmethod
    def preset_values(cls, preset: str) -> dict:
        constant, decay = cls.epochs[preset]
        return {**COMMON, **SIZES[preset], **cls.mode_values,
                "train.epochs_constant": constant, "train.epochs_decay": decay}

    @classmethod
    def check_config(cls, cfg) -> None:
        layers = cfg.cut.nce_layers
        try:
            check_layers(layers, 10 ** 6)
            check_nce_layers(layers, cfg.model.n_blocks)
        except ValueError as e:
            raise ConfigError(f"cut.nce_layers: {e}") from None

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict) -> dict[str, float]:
        c = self.cfg.cut
        x, y = batch["A"].to(self.device), batch["B"].to(self.device)
        flipped = c.flip_equivariance and bool(torch.rand((), generator=self.rng) < 0.5)  # FastCUT's coin
        fake = self.G(generator_input(x, y, c.nce_idt, flipped))
        fake_y, idt_y = fake[:len(x)], (fake[len(x):] if c.nce_idt else None)
        # the contextual loss matches G(x) with the painting's mask: mirrored back when the input was mirrored
        upright = fake_y.flip(3) if flipped else fake_y
        pending = self.start_contextual(upright, batch)  # retrieval overlaps the rest of the step on CUDA
        loss_D = self._d_step(y, fake_y)
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_F.zero_grad(set_to_none=True)
        losses = generator_losses(self.G, self.D, self.F, self.criterion, x, y, fake_y, idt_y,
                                  layers=c.nce_layers, num_patches=c.num_patches, lambda_gan=c.lambda_gan,
                                  lambda_nce=c.lambda_nce, flipped=flipped, generator=self.rng)
        total = losses.pop("G")
        if pending is not None:
            losses["cx"] = self.contextual_loss(upright, pending)
            total = total + losses["cx"]
        total.backward()
        self.opt_G.step()
        self.opt_F.step()
        losses["D"] = loss_D
        return {k: float(v.detach()) for k, v in losses.items()}

    def _d_step(self, y: torch.Tensor, fake_y: torch.Tensor) -> torch.Tensor:
        """D before G (the authors' order); D is frozen afterwards for G's GAN term."""
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        loss = discriminator_loss(self.D, y, self.pool.query(fake_y))
        loss.backward()
        self.opt_D.step()
        self.D.requires_grad_(False)
        return loss

    def extra_state(self) -> dict:
        return {"pool": self.pool.state_dict(), "rng": self.rng.get_state()}

    def load_extra_state(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"], self.device)
        self.rng.set_state(state["rng"])

    # ------------------------------------------------------------------ translation
    def translator(self) -> torch.nn.Module:
        """G as an authors'-layout translator (its state_dict is a ``latest_net_G.pth``)."""
        return CutTranslator(self.G, self.row)

    @classmethod
    def build_translator(cls, cfg) -> torch.nn.Module:
        return CutTranslator(CutGenerator(ngf=cfg.model.ngf, n_blocks=cfg.model.n_blocks), cls.row)

    @classmethod
    def load_official(cls, state: dict, source: str) -> torch.nn.Module:
        """The authors' released ``latest_net_G.pth`` (CUT and FastCUT share the layout); width and depth are
        read from the weights, keys and shapes must match exactly."""
        return CutTranslator(load_cut_generator(state, name=source), cls.row)

    @torch.no_grad()
    def sample_images(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, self.G(x)]


@register
class CUTBanks(CUT):
    key, row = "cut_banks", "CUT + memory banks"
    chain_default = False  # trained by the chain on request (--methods), as CUT's variants
    uses_banks = True
    loss_names = CUT.loss_names + ("cx",)


@register
class FastCUT(CUT):
    key, row = "fastcut", "FastCUT"
    chain_default = False  # trained by the chain on request (--methods), as CUT's variants
    loss_names = ("G_GAN", "NCE", "D")
    mode_values = {"cut.lambda_nce": 10.0, "cut.nce_idt": False, "cut.flip_equivariance": True}
    # paper: the authors' 150 + 50. demo: FastCUT's 3 : 1 over 36 epochs, about CUT's 3 minutes (a FastCUT step
    # costs 0.6 of CUT's)
    epochs = {"smoke": (1, 1), "demo": (27, 9), "cpu": (150, 50), "paper": (150, 50)}


@register
class FastCUTBanks(FastCUT):
    key, row = "fastcut_banks", "FastCUT + memory banks"
    uses_banks = True
    loss_names = FastCUT.loss_names + ("cx",)
