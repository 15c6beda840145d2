"""UNIT (Liu, Breuel & Kautz, NIPS 2017), a competitor in the paper's tables, as its authors' code trains it.

Networks and losses are art2real.nn.unit (the authors' module layout); the settings are the config's ``unit``
section (their 256 px folder config). Domains follow the kit: A = paintings, B = photos, so painting -> photo is
``gen_b.dec(gen_a.enc(x))`` from the latent mean (deterministic, as their test.py).

One iteration is theirs: the discriminators' update, then the generators' (each draws its own latent noise), both
with Adam (lr 1e-4, betas (0.5, 0.999), weight decay 1e-4); the lr is multiplied by ``unit.gamma`` every
``unit.step_size`` iterations, so the scheduler steps inside ``train_step`` and not at epoch ends.

Where the kit's loop differs from their ``train.py``:
- pairs: an epoch is max(|A|, |B|) iterations, paintings in a new order each epoch, each with a random photo
  (the kit's unpaired dataset); theirs zips two shuffled loaders and ends an epoch with the shorter domain. With
  training counted in iterations this only changes which photo meets which painting.
- augmentation: resize to ``data.image_size`` (bicubic), no crop (``data.crop_margin`` 0), random flip. Theirs
  resizes the shorter side to 256 (bilinear) and crops 256 x 256, which is no crop for the square 256 px images
  of the paper's settings; non-square images are squeezed here instead of cropped.
- the loss log records each term times its weight (the parts of the two objectives), as Cycle-GAN's log does.

Presets (``preset_values``): paper = the authors' schedule, 1,000,000 iterations (``train.max_iterations``; the
epoch count is set as high, so the cap always ends the run) with the lr halved every 100,000. No validation and
no early stopping at any preset: the Art2Real paper chose DRIT's epoch by FID but evaluated the other competitors'
final models, so UNIT's translations come from ``last.pt`` (set ``train.validate_every`` to watch a validation
curve; a ``best.pt`` it writes is then what the chain translates). smoke / demo / cpu keep the authors' depth
and scale the widths (generators and discriminators alike); demo trains in minutes on two CPU cores.
"""
from __future__ import annotations

import torch

from ..errors import CheckpointError, ConfigError
from ..nn.unit import (UnitDecoder, UnitEncoder, UnitNetworks, UnitTranslator, discriminator_losses,
                       generator_losses)
from ..train.schedule import step_decay
from . import register
from .base import Method

# loss log columns: the discriminators' objective first (their update comes first), then the generators'
_D_TERMS = ("dis_a", "dis_b")
_G_TERMS = ("adv_a", "adv_b", "recon_x_a", "recon_x_b", "kl_a", "kl_b", "cyc_x_a", "cyc_x_b", "kl_cyc_aba",
            "kl_cyc_bab")

# demo: epochs of the 54-iteration demo set that train in about 3-4 minutes on two CPU cores; the lr halves ten
# times over the run, as over the authors' 1M iterations
DEMO_EPOCHS = 16
DEMO_STEP = DEMO_EPOCHS * 54 // 10


@register
class UNIT(Method):
    key, row = "unit", "UNIT"
    loss_names = _D_TERMS + _G_TERMS
    sample_titles = ("painting", "A->B", "A->B->A")

    def __init__(self, cfg, device, context=None):
        super().__init__(cfg, device, context)
        u = cfg.unit
        self.networks = UnitNetworks(dim=u.dim, n_downsample=u.n_downsample, n_res=u.n_res, activ=u.activ,
                                     pad_type=u.pad_type, dis_dim=u.dis_dim, dis_n_layer=u.dis_n_layer,
                                     dis_num_scales=u.dis_num_scales, dis_norm=u.dis_norm, dis_activ=u.dis_activ,
                                     dis_pad_type=u.pad_type, init=u.init, dis_init=u.dis_init).to(device)
        n = self.networks
        self.nets = {"gen_a": n.gen_a, "gen_b": n.gen_b, "dis_a": n.dis_a, "dis_b": n.dis_b}
        adam = dict(lr=cfg.train.lr, betas=cfg.train.betas, weight_decay=u.weight_decay)
        self.opt_gen = torch.optim.Adam(n.generator_parameters(), **adam)
        self.opt_dis = torch.optim.Adam(n.discriminator_parameters(), **adam)
        self.optimizers = {"gen": self.opt_gen, "dis": self.opt_dis}  # the keys of their optimizer.pt
        rule = step_decay(u.step_size, u.gamma)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, rule) for k, o in self.optimizers.items()}
        self._translator = UnitTranslator.from_generators(n.gen_a, n.gen_b)
        self._lr_used: float | None = None

    # ------------------------------------------------------------------ configuration
    @classmethod
    def preset_values(cls, preset: str) -> dict:
        # the authors' optimiser and data handling at every preset; their final model, never an early stop
        common = {"train.lr": 1e-4, "train.betas": (0.5, 0.999), "train.batch_size": 1, "data.crop_margin": 0,
                  "data.flip": True, "train.validate_every": 0, "train.patience": None, "train.epochs_decay": 0}
        sizes = {
            "smoke": {"unit.dim": 4, "unit.n_res": 1, "unit.dis_dim": 4, "unit.dis_n_layer": 2,
                      "unit.dis_num_scales": 2, "unit.step_size": 2, "train.epochs_constant": 2},
            "demo": {"unit.dim": 16, "unit.dis_dim": 16, "unit.step_size": DEMO_STEP,
                     "train.epochs_constant": DEMO_EPOCHS},
            # as many epochs as iterations: the iteration cap always ends the run, whatever the dataset
            "cpu": {"unit.dim": 32, "unit.dis_dim": 32, "unit.step_size": 1000, "train.max_iterations": 10_000,
                    "train.epochs_constant": 10_000},
            "paper": {"train.max_iterations": 1_000_000, "train.epochs_constant": 1_000_000},
        }
        return {**common, **sizes[preset]}

    @classmethod
    def check_config(cls, cfg) -> None:
        u = cfg.unit
        smallest = 2 ** (u.dis_num_scales + u.dis_n_layer - 1)
        if cfg.data.image_size < smallest:
            raise ConfigError(f"UNIT's discriminator ({u.dis_num_scales} scales of {u.dis_n_layer} stride-2 convs) "
                              f"needs images of at least {smallest} px, data.image_size is {cfg.data.image_size}: "
                              "lower unit.dis_num_scales or unit.dis_n_layer, or raise data.image_size")

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict) -> dict[str, float]:
        u = self.cfg.unit
        x_a, x_b = batch["A"].to(self.device), batch["B"].to(self.device)
        self._lr_used = self.opt_gen.param_groups[0]["lr"]
        self.opt_dis.zero_grad(set_to_none=True)
        d = discriminator_losses(self.networks, x_a, x_b, gan_w=u.gan_w, gan_type=u.gan_type)
        d["total"].backward()
        self.opt_dis.step()
        # the discriminators need no parameter gradients from the generators' objective (theirs computes and
        # later discards them: their next update zeroes them first)
        for dis in (self.networks.dis_a, self.networks.dis_b):
            dis.requires_grad_(False)
        self.opt_gen.zero_grad(set_to_none=True)
        g = generator_losses(self.networks, x_a, x_b, gan_w=u.gan_w, recon_x_w=u.recon_x_w,
                             recon_kl_w=u.recon_kl_w, recon_x_cyc_w=u.recon_x_cyc_w,
                             recon_kl_cyc_w=u.recon_kl_cyc_w, gan_type=u.gan_type)
        g["total"].backward()
        self.opt_gen.step()
        for dis in (self.networks.dis_a, self.networks.dis_b):
            dis.requires_grad_(True)
        for scheduler in self.schedulers.values():  # per iteration, as the authors' loop
            scheduler.step()
        weights = {"dis_a": u.gan_w, "dis_b": u.gan_w, "adv_a": u.gan_w, "adv_b": u.gan_w,
                   "recon_x_a": u.recon_x_w, "recon_x_b": u.recon_x_w, "kl_a": u.recon_kl_w, "kl_b": u.recon_kl_w,
                   "cyc_x_a": u.recon_x_cyc_w, "cyc_x_b": u.recon_x_cyc_w, "kl_cyc_aba": u.recon_kl_cyc_w,
                   "kl_cyc_bab": u.recon_kl_cyc_w}
        terms = {**d, **g}
        return {k: float(terms[k].detach()) * weights[k] for k in self.loss_names}

    def end_epoch(self, epoch: int) -> None:
        """Nothing: UNIT's lr follows iterations, and ``train_step`` steps it."""

    @property
    def lr(self) -> float:
        """The lr the last iteration ran with (what the loss log shows beside its losses); before any iteration
        of this process, the one the next iteration will use."""
        return self._lr_used if self._lr_used is not None else self.opt_gen.param_groups[0]["lr"]

    # ------------------------------------------------------------------ translation
    def translator(self) -> torch.nn.Module:
        return self._translator

    @classmethod
    def build_translator(cls, cfg) -> torch.nn.Module:
        u = cfg.unit
        enc = UnitEncoder(3, u.dim, u.n_downsample, u.n_res, u.activ, u.pad_type)
        return UnitTranslator(enc, UnitDecoder(u.n_downsample, u.n_res, enc.output_dim, 3, u.activ, u.pad_type))

    @classmethod
    def load_official(cls, state: dict, source: str) -> torch.nn.Module:
        """The authors' ``gen_XXXXXXXX.pt`` (``{'a': gen_a, 'b': gen_b}``), trained with paintings as domain a;
        the sizes are read from the weights, activation and padding are their defaults (relu, reflect)."""
        try:
            return UnitTranslator.from_file(state, a2b=True, name=source)
        except ValueError as e:
            raise CheckpointError(str(e) if source in str(e) else f"{source}: {e}") from None

    @torch.no_grad()
    def sample_images(self, x: torch.Tensor) -> list[torch.Tensor]:
        """painting | its photo (A->B) | that photo translated back (A->B->A), all from latent means."""
        n = self.networks
        x_ab = n.gen_b.decode(n.gen_a.enc(x))
        return [x, x_ab, n.gen_a.decode(n.gen_b.enc(x_ab))]
