"""What a translation method is to the rest of the kit.

A method owns its networks, optimisers, schedulers and losses; does one training step on a batch; saves and
loads its whole state; and gives the painting -> photo translator. The generic Trainer (art2real.train) runs the
loop, checkpoints, resume, validation, early stopping and logs for every method alike.

A translator is an ``nn.Module`` mapping paintings (N, 3, H, W) in [-1, 1] to photos of the same size. A
stochastic translator (one sampled attribute per image, as DRIT is evaluated) also has ``reseed(key)``, called
with the image's file name before each image, so tiles of one image share one sample and results repeat.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import ClassVar

import torch
from torch import nn

from ..errors import ConfigError


class Method:
    key: ClassVar[str]  # registry name, the CLI's --method
    row: ClassVar[str]  # its row in the paper's tables
    in_paper: ClassVar[bool] = True  # False: marked "not in the paper" in tables and figures
    uses_banks: ClassVar[bool] = False  # trained with the semantic contextual loss (memory banks, masks)
    trained: ClassVar[bool] = True  # False: no training loop; ``produce`` makes its images (style transfer)
    # False: its images are not translations of the test paintings (style-transferred reals): the comparison
    # figures and the user study leave it out
    translates_paintings: ClassVar[bool] = True
    # False: the chain trains it only when its --methods names it (variants of another row, to keep `make demo`
    # within its time); its table rows say how to train it
    chain_default: ClassVar[bool] = True
    loss_names: ClassVar[tuple[str, ...]] = ()  # columns of losses.csv, in order
    # True: an epoch's last batch is skipped when it is smaller than train.batch_size (DRIT's loop skips it)
    drop_last: ClassVar[bool] = False
    sample_titles: ClassVar[tuple[str, ...]] = ("painting", "translation")

    def __init__(self, cfg, device: torch.device, context=None):
        if self.uses_banks and context is None:
            raise ConfigError(f"method {self.key!r} needs the semantic contextual loss (memory banks and masks): "
                              "build it with art2real.semantic.build_context(cfg)")
        self.cfg, self.device, self.context = cfg, device, context
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}

    # ------------------------------------------------------------------ configuration
    @classmethod
    def preset_values(cls, preset: str) -> dict:
        """Dotted config values this method changes for a preset (applied after the preset's own)."""
        return {}

    @classmethod
    def check_config(cls, cfg) -> None:
        """Rules that tie this method's settings to the rest of the config (``config.validate`` calls it last);
        raises ConfigError naming the keys and the fix."""

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict) -> dict[str, float]:
        """One iteration on ``batch`` ("A": paintings, "B": photos, (N, 3, H, W) on the CPU in [-1, 1];
        "A_name": file names; "A_place": placements; from the Trainer also "index": each item's position in
        its epoch and "epoch_size": the items of the epoch, (N,) tensors); returns the loss values by name."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        if self.context is not None:
            self.context.on_epoch_start(epoch, self.translator())

    def end_epoch(self, epoch: int) -> None:
        """After epoch ``epoch`` (0-based) ended: learning-rate schedules."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    @property
    def lr(self) -> float:
        first = next(iter(self.optimizers.values()), None)
        return first.param_groups[0]["lr"] if first is not None else float("nan")

    # ------------------------------------------------------------------ the semantic contextual loss
    def start_contextual(self, fake: torch.Tensor, batch: dict) -> Future | None:
        """Start retrieving real neighbours of the patches of G(x) (the rest of the step runs meanwhile)."""
        if self.context is None:
            return None
        return self.context.retrieve_async(fake, list(batch["A_name"]), batch.get("A_place"))

    def contextual_loss(self, fake: torch.Tensor, pending: Future) -> torch.Tensor:
        return self.context.loss_from(fake, pending) * self.cfg.cx.lambda_cx

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything a resumed run needs, as tensors and plain values (checkpoints load with weights_only)."""
        return {"nets": {k: v.state_dict() for k, v in self.nets.items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
                "extra": self.extra_state(),
                "context": self.context.state_dict() if self.context is not None else None}

    def load_state_dict(self, state: dict) -> None:
        configured = self._hyperparameters()
        for group in ("nets", "optimizers", "schedulers"):
            mine = getattr(self, group)
            if set(state[group]) != set(mine):
                raise ValueError(f"{group} {sorted(state[group])} in the checkpoint, {sorted(mine)} here")
            for name, part in mine.items():
                part.load_state_dict(state[group][name])
        self._restore_hyperparameters(configured)
        self.load_extra_state(state["extra"])
        if self.context is not None and state.get("context") is not None:
            self.context.load_state_dict(state["context"])

    def _hyperparameters(self) -> dict:
        """The optimisers' settings as the config made them (lr, betas, ...), and the schedulers' base rates."""
        return {"optimizers": {k: [{h: v for h, v in g.items() if h != "params"} for g in o.param_groups]
                               for k, o in self.optimizers.items()},
                "schedulers": {k: list(s.base_lrs) for k, s in self.schedulers.items() if hasattr(s, "base_lrs")}}

    def _restore_hyperparameters(self, configured: dict) -> None:
        """Loading an optimiser also loads the learning rate and betas it was saved with; the config's win, so a
        run resumed with a new ``train.lr`` (forced) trains at it, at the same point of its schedule: the current
        rate is scaled by new / old initial rate. Without a change this multiplies by exactly 1."""
        for key, optimizer in self.optimizers.items():
            for group, wanted in zip(optimizer.param_groups, configured["optimizers"][key]):
                old, new = group.get("initial_lr", group["lr"]), wanted.get("initial_lr", wanted["lr"])
                group.update({h: v for h, v in wanted.items() if h != "lr"})
                group["lr"] = group["lr"] * (new / old) if old else wanted["lr"]
        for key, base_lrs in configured["schedulers"].items():
            self.schedulers[key].base_lrs = base_lrs
            self.schedulers[key]._last_lr = [g["lr"] for g in self.schedulers[key].optimizer.param_groups]

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------------ untrained methods
    @classmethod
    def produce(cls, cfg, target, progress: bool = True) -> dict:
        """A method without training writes its table row's images into ``target`` and returns what
        ``source.json`` records (a "summary" line at least)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ translation
    def translator(self) -> nn.Module:
        """The painting -> photo network, sharing weights with the trained networks."""
        raise NotImplementedError

    @classmethod
    def build_translator(cls, cfg) -> nn.Module:
        """A translator of the config's architecture (weights loaded by the caller from ``translator_state``)."""
        raise NotImplementedError

    def translator_state(self) -> dict:
        return self.translator().state_dict()

    @classmethod
    def load_official(cls, state: dict, source: str) -> nn.Module:
        """A translator from a generator file in the method's authors' layout (released checkpoints)."""
        raise ConfigError(f"{cls.row} has no loader for released files ({source})")

    @torch.no_grad()
    def sample_images(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The columns of the per-epoch sample grid for paintings ``x`` (titles: ``sample_titles``)."""
        return [x, self.translator()(x)]
