"""DRIT (Lee et al., ECCV 2018), a competitor in the paper's tables, trained as the Art2Real paper trained it:
the authors' code and defaults, spectral normalisation in the image discriminators, the best epoch chosen by FID
and one randomly sampled attribute per test painting.

Networks, losses and update functions are art2real.nn.drit (the authors' module layout, checked step for step
against their code); the settings are the config's ``drit`` section plus the kit's shared keys that DRIT's
presets set (see ``DritConfig``). Domains follow the kit: A = paintings, B = photos.

One iteration is theirs (train.py): batch b of an epoch updates only the content discriminator unless (b + 1) is
a multiple of ``drit.d_iter`` or b is one of the epoch's last two batches; otherwise a full update: one forward,
then disA, disA2, disB, disB2 and the content discriminator, each with its own Adam step, then the encoders and
the generator (E^c, E^a and G on the EG objective; E^c and G again on the random-attribute objective). The batch
position comes from the Trainer (the items' "index" in the epoch), so a run resumed mid-epoch continues with the
update it would have made; ``total_it``, the authors' count of full updates, is part of the checkpoint. Eight
Adams (lr ``train.lr``, the content discriminator's divided by ``drit.dis_content_lr_div``) decay linearly per
epoch as theirs: constant for ``train.epochs_constant`` epochs, then towards 0 over ``train.epochs_decay``.

Where the kit's loop differs from their train.py:
- pairs: an epoch is max(|A|, |B|) items, paintings in a new order each epoch, each with a random photo (the
  kit's unpaired dataset); theirs indexes the larger domain and draws the other at random. Batches of 2 items,
  the last one skipped when it is smaller (theirs skips it too).
- augmentation: resize to ``data.load_size`` (bicubic, aspect ratio not kept) and a random crop of
  ``data.image_size``, flipped at random, independently for the painting and the photo: theirs.
- their cap of 500,000 full updates is not applied (see ``DritConfig``).

Test time: E^c_A then G_B with an attribute z ~ N(0, I) drawn from (seed, file name) by ``reseed``, so a
painting always gets the same sample and every tile of it shares one. Paintings are translated whole, at the
size the caller gives (the kit's: the load size, 256 px at the paper preset), **not** as the 216 px centre crop
of the authors' test.py: the crop would cut a fifth of every painting out of the comparison, and the networks
are fully convolutional, so the whole 256 px resize keeps the training scale. Validation translates the whole
training paintings at the load size too, each with its own attribute.

Presets: paper = the authors' sizes and schedule (1200 epochs, decay from 600), FID validation every epoch over
every training painting with no early stop, so the whole schedule runs and ``best.pt`` keeps the best epoch.
smoke / demo / cpu scale the widths down (benchmarks/bench_drit.py) and keep the authors' structure.
"""
from __future__ import annotations

import torch

from ..errors import CheckpointError, ConfigError
from ..nn.drit import (NETWORKS, ContentEncoder, DritNets, DritTranslator, Generator, build_optimizers,
                       content_min_size, drit_forward, is_full_update, official_checkpoint_state,
                       update_content_discriminator, update_discriminators, update_encoders_generator)
from ..train.schedule import linear_decay
from . import register
from .base import Method

# loss log columns: the discriminators' updates first (their order), then the encoders' and generator's terms
_D_TERMS = ("disContent", "disA", "disA2", "disB", "disB2")
_EG_TERMS = ("gan_a", "gan_b", "gan_acontent", "gan_bcontent", "l1_rec_aa", "l1_rec_bb", "l1_cc_a", "l1_cc_b",
             "kl_zc_a", "kl_zc_b", "kl_za_a", "kl_za_b")
_ALONE_TERMS = ("gan2_a", "gan2_b", "latent_a", "latent_b")
_MS_TERMS = ("gan2_a2", "gan2_b2", "ms_ab", "ms_ba")  # DRIT++'s mode seeking, when drit.mode_seeking is on

# Epochs of the demo preset, sized by time: the demo set (54 photos) gives 27 iterations an epoch, 10 of them full
# updates, about a third of a Cycle-GAN demo epoch in CPU time (4.6 vs 14.1 s on one thread). A whole demo run of
# 30 epochs (300 full updates, 5 validations, grids, checkpoints) took 164 CPU seconds on one thread, about 3-3.5
# minutes at the kit's 2-core reference speed (Cycle-GAN's demo step 0.32 s, results/benchmarks/train.json).
# The authors' half constant, half decay is kept.
DEMO_EPOCHS = 30


@register
class DRIT(Method):
    key, row = "drit", "DRIT"
    drop_last = True  # theirs skips a last batch of another size: one image would have no "random" partner
    loss_names = _D_TERMS + _EG_TERMS + _ALONE_TERMS
    sample_titles = ("painting", "photo (z1)", "photo (z2)", "photo (z3)")  # three fixed attributes

    def __init__(self, cfg, device, context=None):
        super().__init__(cfg, device, context)
        d, t = cfg.drit, cfg.train
        self.networks = DritNets(d).to(device)
        self.nets = {name: getattr(self.networks, name) for name in NETWORKS}
        self.optimizers = build_optimizers(self.networks, t.lr, t.betas, d)
        # theirs: LambdaLR at epoch e gives 1 - max(0, e - n_ep_decay) / (n_ep - n_ep_decay + 1), i.e. Cycle-GAN's
        # rule one epoch later (their epoch n_ep_decay still runs at the full rate)
        rule = linear_decay(t.epochs_constant + 1, t.epochs_decay)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, rule) for k, o in self.optimizers.items()}
        if d.mode_seeking:
            self.loss_names = self.loss_names + _MS_TERMS
        self.total_it = 0  # full updates done (the authors' total_it)
        self._translator = DritTranslator(self.networks.enc_c, self.networks.gen, d.nz, cfg.seed)
        # the sample grid's attributes: fixed for the run, so grids of successive epochs compare
        stream = torch.Generator().manual_seed(cfg.seed)
        self._sample_z = torch.randn(len(self.sample_titles) - 1, d.nz, generator=stream)

    # ------------------------------------------------------------------ configuration
    @classmethod
    def preset_values(cls, preset: str) -> dict:
        # the authors' optimiser, batch and augmentation at every preset; crops keep their 216 / 256 ratio
        common = {"train.lr": 1e-4, "train.betas": (0.5, 0.999), "train.batch_size": 2, "data.flip": True,
                  "train.patience": None}
        sizes = {
            # 28 px crops: content maps of 7 px, so the content discriminator gets kernel 3 and one stride-2 conv
            "smoke": {"drit.enc_dim": 8, "drit.enc_res": 1, "drit.gen_res": 1, "drit.attr_dim": 8,
                      "drit.attr_blocks": 3, "drit.dis_dim": 8, "drit.dis_layers": 3, "drit.dis_scale": 2,
                      "drit.dis_content_dim": 32, "drit.dis_content_kernel": 3, "drit.dis_content_layers": 1,
                      "data.image_size": 28, "data.crop_margin": 4,
                      "train.epochs_constant": 1, "train.epochs_decay": 1},
            # a quarter of the widths (2x Cycle-GAN's demo step for a full update, 0.7x on average); 108 px
            # crops give 27 px content maps: two 7x7 stride-2 convs in the content discriminator (27 -> 12 -> 4)
            "demo": {"drit.enc_dim": 16, "drit.attr_dim": 16, "drit.dis_dim": 16, "drit.dis_content_dim": 64,
                     "drit.dis_content_layers": 2, "data.image_size": 108, "data.crop_margin": 20,
                     "train.epochs_constant": DEMO_EPOCHS // 2, "train.epochs_decay": DEMO_EPOCHS // 2},
            "cpu": {"drit.enc_dim": 32, "drit.attr_dim": 32, "drit.dis_dim": 32, "drit.dis_content_dim": 128,
                    "drit.dis_content_layers": 2, "data.image_size": 108, "data.crop_margin": 20,
                    "train.epochs_constant": 200, "train.epochs_decay": 200},
            # theirs: Resize 256, RandomCrop 216, n_ep 1200, n_ep_decay 600; the paper picked the epoch by FID
            "paper": {"data.image_size": 216, "data.crop_margin": 40, "train.epochs_constant": 600,
                      "train.epochs_decay": 600, "train.validate_every": 1, "train.val_metric": "fid",
                      "train.val_images": None, "train.max_iterations": None},
        }
        return {**common, **sizes[preset]}

    @classmethod
    def check_config(cls, cfg) -> None:
        d, size = cfg.drit, cfg.data.image_size
        if cfg.train.batch_size < 2:
            raise ConfigError(f"DRIT needs train.batch_size >= 2 (the first image of each domain is encoded, the "
                              f"others judged against random attributes; the authors use 2), got "
                              f"{cfg.train.batch_size}")
        need = 4 * content_min_size(d.dis_content_kernel, d.dis_content_layers)
        if size < need:
            raise ConfigError(f"DRIT's content discriminator ({d.dis_content_layers} stride-2 convs of kernel "
                              f"{d.dis_content_kernel}) needs crops of at least {need} px, data.image_size is "
                              f"{size}: raise data.image_size or lower drit.dis_content_layers / "
                              "drit.dis_content_kernel")
        smallest = size
        for _ in range(d.dis_scale - 1):
            smallest = -(-smallest // 2)
        if smallest < 2 ** d.dis_layers or size < 2 ** d.attr_blocks:
            raise ConfigError(f"DRIT's image discriminators ({d.dis_scale} scales of {d.dis_layers} stride-2 convs) "
                              f"and attribute encoder ({d.attr_blocks} halvings) do not fit crops of {size} px: "
                              "lower drit.dis_scale, drit.dis_layers or drit.attr_blocks, or raise data.image_size")

    # ------------------------------------------------------------------ training
    def full_update(self, batch: dict) -> bool:
        """Whether this batch gets the full update (train.py's rule on its position in the epoch). A batch that
        does not say where it is (a benchmark, a test) gets the full update."""
        if "index" not in batch:
            return True
        b = self.cfg.train.batch_size
        return is_full_update(int(batch["index"][0]) // b, int(batch["epoch_size"][0]) // b, self.cfg.drit.d_iter)

    def train_step(self, batch: dict) -> dict[str, float]:
        a, b = batch["A"].to(self.device), batch["B"].to(self.device)
        if len(a) < 2 or len(b) != len(a):
            raise ValueError(f"DRIT trains on batches of >= 2 paintings and as many photos, got {len(a)} and "
                             f"{len(b)}")
        d, nets, opts = self.cfg.drit, self.networks, self.optimizers
        if not self.full_update(batch):
            return {"disContent": update_content_discriminator(nets, opts, a, b, d)}
        f = drit_forward(nets, a, b, d.mode_seeking)
        losses = update_discriminators(nets, opts, f, d)
        losses.update(update_encoders_generator(nets, opts, f, d))
        self.total_it += 1
        return losses

    def extra_state(self) -> dict:
        return {"total_it": self.total_it}

    def load_extra_state(self, state: dict) -> None:
        self.total_it = int(state["total_it"])

    def official_state(self, epoch: int) -> dict:
        """The run in the authors' checkpoint layout (their DRIT.save: networks, ``<name>_opt``, ``ep``,
        ``total_it``), e.g. for their test.py; ``epoch`` 0-based, as their ``ep``."""
        return official_checkpoint_state(self.networks, self.optimizers, epoch, self.total_it)

    # ------------------------------------------------------------------ translation
    def translator(self) -> torch.nn.Module:
        return self._translator

    @classmethod
    def build_translator(cls, cfg) -> torch.nn.Module:
        d = cfg.drit
        return DritTranslator(ContentEncoder(3, 3, d.enc_dim, d.enc_res),
                              Generator(3, 3, d.nz, 4 * d.enc_dim, d.gen_res), d.nz, cfg.seed)

    @classmethod
    def load_official(cls, state: dict, source: str) -> torch.nn.Module:
        """The authors' ``.pth`` (their DRIT.save: ``enc_c``, ``gen``, ... state_dicts; e.g. their example.pth);
        the sizes are read from the weights. Paintings are their domain A, as in the kit."""
        try:
            return DritTranslator.from_checkpoint(state, label=source)
        except (KeyError, ValueError) as e:
            raise CheckpointError(e.args[0]) from None

    @torch.no_grad()
    def sample_images(self, x: torch.Tensor) -> list[torch.Tensor]:
        """painting | its photo with each of three fixed attributes (the same for every epoch of the run)."""
        translator, pinned = self._translator, self._translator.z
        outs = [x]
        try:
            for z in self._sample_z:
                translator.pin(z[None])
                outs.append(translator(x))
        finally:
            translator.pin(pinned)
        return outs
