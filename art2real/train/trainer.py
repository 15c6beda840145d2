"""The Trainer: CycleGAN (eq. 7-10) plus, when lambda_cx > 0, the semantic contextual loss on G(x) (Art2Real).

Naming follows the paper: X = paintings (A), Y = photos (B); G: X -> Y, F: Y -> X; D_Y judges photos, D_X
paintings. CycleGAN is the same model with lambda_cx = 0, so both are trained and compared on equal footing.

Everything that a resumed run needs is in the checkpoint: the four networks, both optimizers and schedulers,
the image pools, the RNG states, epoch / iteration counters, the early-stopping state, the contextual loss's
masks, and the resolved config. Data order and augmentation depend only on (seed, epoch, position), so a run
killed mid-epoch and resumed ends with the same weights as one that was never interrupted (on CPU).
"""
from __future__ import annotations

import csv
import itertools
import logging
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import Config, pick_device, save_config, seed_everything, to_dict
from ..data.dataset import EpochView, ImageFolder, UnpairedDataset
from ..data.images import to_image
from ..data.registry import dataset_root, missing_splits
from ..nn.losses import l1, lsgan_loss
from ..nn.networks import build_discriminator, build_generator
from ..paths import results_dir
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .pool import ImagePool

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["iteration", "epoch", "G_gan", "F_gan", "cycle_X", "cycle_Y", "idt_X", "idt_Y", "cx",
                "D_Y", "D_X", "lr", "seconds"]


def linear_decay(epochs_constant: int, epochs_decay: int) -> Callable[[int], float]:
    """CycleGAN's schedule: lr constant for ``epochs_constant`` epochs, then linearly to 0 over ``epochs_decay``."""
    return lambda epoch: 1.0 - max(0, epoch + 1 - epochs_constant) / float(epochs_decay + 1)


def check_dataset(cfg: Config) -> Path:
    """Stop before any compute when the dataset is absent or incomplete, naming the fix."""
    root = dataset_root(cfg.data.dataset)
    missing = missing_splits(root)
    if missing:
        raise FileNotFoundError(
            f"dataset {cfg.data.dataset!r}: {root} is missing {', '.join(missing)}. "
            f"Run `art2real data download {cfg.data.dataset}` or put the images in {root}/{{trainA,trainB,testA,testB}} "
            "(A = paintings, B = photos).")
    return root


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path | None = None, context=None,
                 validator: Callable[["Trainer"], float] | None = None):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.run_dir = Path(run_dir) if run_dir else results_dir() / "runs" / cfg.name
        self.root = check_dataset(cfg)
        d = cfg.data
        self.dataset = UnpairedDataset(self.root, d.image_size, "train", d.max_images, d.crop_margin, d.flip,
                                       cfg.seed)
        self.samples = ImageFolder(self.root / "testA", d.image_size, cfg.train.sample_images)
        seed_everything(cfg.seed)
        self.G, self.F = build_generator(cfg).to(self.device), build_generator(cfg).to(self.device)
        self.D_Y, self.D_X = build_discriminator(cfg).to(self.device), build_discriminator(cfg).to(self.device)
        t = cfg.train
        self.opt_G = torch.optim.Adam(itertools.chain(self.G.parameters(), self.F.parameters()), t.lr, t.betas)
        self.opt_D = torch.optim.Adam(itertools.chain(self.D_Y.parameters(), self.D_X.parameters()), t.lr, t.betas)
        rule = linear_decay(t.epochs_constant, t.epochs_decay)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, rule)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, rule)
        self.pool_Y, self.pool_X = ImagePool(t.pool_size, cfg.seed), ImagePool(t.pool_size, cfg.seed + 1)
        self.context = context if cfg.lambda_cx > 0 else None
        if cfg.lambda_cx > 0 and context is None:
            raise ValueError("method 'art2real' needs the semantic contextual loss (memory banks and masks): "
                             "build one with art2real.model.build_context(cfg), or set method='cyclegan'")
        self.validator = validator
        self.epoch, self.epoch_iter, self.iteration = 0, 0, 0
        self.best: float | None = None
        self.bad_epochs = 0
        self.history: list[dict] = []  # one row per validated epoch
        self.writer = _tensorboard(self.run_dir)

    # ----------------------------------------------------------------- state
    @property
    def epochs(self) -> int:
        return self.cfg.train.epochs_constant + self.cfg.train.epochs_decay

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "F": self.F.state_dict(), "D_Y": self.D_Y.state_dict(),
                "D_X": self.D_X.state_dict(), "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "sched_G": self.sched_G.state_dict(), "sched_D": self.sched_D.state_dict(),
                "pool_Y": self.pool_Y.state_dict(), "pool_X": self.pool_X.state_dict(), "rng": rng_state(),
                "epoch": self.epoch, "epoch_iter": self.epoch_iter, "iteration": self.iteration,
                "best": self.best, "bad_epochs": self.bad_epochs, "history": self.history,
                "context": self.context.state_dict() if self.context is not None else None,
                "config": to_dict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        saved_model = state["config"]["model"]
        if saved_model != to_dict(self.cfg)["model"]:
            raise ValueError(f"checkpoint architecture {saved_model} differs from the config's "
                             f"{to_dict(self.cfg)['model']}; resume with the run's own config.yaml")
        for name in ("G", "F", "D_Y", "D_X", "opt_G", "opt_D", "sched_G", "sched_D"):
            getattr(self, name).load_state_dict(state[name])
        self.pool_Y.load_state_dict(state["pool_Y"], self.device)
        self.pool_X.load_state_dict(state["pool_X"], self.device)
        set_rng_state(state["rng"])
        self.epoch, self.epoch_iter, self.iteration = state["epoch"], state["epoch_iter"], state["iteration"]
        self.best, self.bad_epochs, self.history = state["best"], state["bad_epochs"], state["history"]
        if self.context is not None and state.get("context") is not None:
            self.context.load_state_dict(state["context"])

    def save(self) -> None:
        save_checkpoint(self.checkpoint_path, self.state_dict())

    # ----------------------------------------------------------------- one iteration
    def step(self, batch: dict) -> dict[str, float]:
        t = self.cfg.train
        x, y = batch["A"].to(self.device), batch["B"].to(self.device)
        fake_y = self.G(x)
        # retrieval needs only G(x): it runs in a worker thread while the rest of the step is computed
        pending = self.context.retrieve_async(fake_y, list(batch["A_name"])) if self.context is not None else None
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
            losses["cx"] = self.context.loss_from(fake_y, pending) * self.cfg.lambda_cx
        sum(losses.values()).backward()
        self.opt_G.step()
        for d in (self.D_Y, self.D_X):
            d.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        losses["D_Y"] = self._d_loss(self.D_Y, y, self.pool_Y.query(fake_y))
        losses["D_X"] = self._d_loss(self.D_X, x, self.pool_X.query(fake_x))
        (losses["D_Y"] + losses["D_X"]).backward()
        self.opt_D.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    @staticmethod
    def _d_loss(d, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (lsgan_loss(d(real), True) + lsgan_loss(d(fake.detach()), False))

    # ----------------------------------------------------------------- the loop
    def fit(self, resume: bool = True, progress: bool = True) -> dict:
        """Train to the end of the schedule (or early stop); returns a summary. Resumes from the last checkpoint."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.checkpoint_path.exists():
            self.load_state_dict(load_checkpoint(self.checkpoint_path, self.device))
            log.info("resumed %s at epoch %d, iteration %d", self.run_dir, self.epoch, self.iteration)
        save_config(self.cfg, self.run_dir / "config.yaml")
        self._trim_loss_log()
        stopped_early = False
        with open(self.run_dir / "losses.csv", "a", newline="") as f:
            writer = csv.DictWriter(f, LOSS_COLUMNS, extrasaction="ignore")
            if f.tell() == 0:
                writer.writeheader()
            while self.epoch < self.epochs and not self._capped():
                if self.context is not None and self.epoch_iter == 0:
                    self.context.on_epoch_start(self.epoch, self.G)
                self._run_epoch(writer, f, progress)
                if self._capped() and self.epoch_iter < len(self.dataset):
                    break  # stopped mid-epoch by max_iterations; the checkpoint says where
                stopped_early = self._end_epoch()
                if stopped_early:
                    break
        summary = {"run_dir": str(self.run_dir), "epochs_done": self.epoch, "iterations": self.iteration,
                   "best": self.best, "stopped_early": stopped_early, "history": self.history}
        return summary

    def _capped(self) -> bool:
        cap = self.cfg.train.max_iterations
        return cap is not None and self.iteration >= cap

    def _run_epoch(self, writer, f, progress: bool) -> None:
        view = EpochView(self.dataset, self.epoch, self.epoch_iter)
        loader = DataLoader(view, batch_size=self.cfg.train.batch_size, shuffle=False,
                            num_workers=self.cfg.data.num_workers)
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.epochs}", disable=not progress, leave=False)
        for batch in bar:
            start = time.perf_counter()
            losses = self.step(batch)
            self.iteration += 1
            self.epoch_iter += len(batch["A"])
            row = {"iteration": self.iteration, "epoch": self.epoch + 1, "lr": self.opt_G.param_groups[0]["lr"],
                   "seconds": round(time.perf_counter() - start, 4), **{k: round(v, 6) for k, v in losses.items()}}
            writer.writerow(row)
            f.flush()
            if self.writer is not None:
                for k, v in losses.items():
                    self.writer.add_scalar(f"loss/{k}", v, self.iteration)
            bar.set_postfix(G=f"{losses['G_gan']:.3f}", cyc=f"{losses['cycle_X']:.3f}",
                            **({"cx": f"{losses['cx']:.3f}"} if "cx" in losses else {}))
            if self.iteration % self.cfg.train.checkpoint_every == 0:
                self.save()
            if self._capped():
                self.save()
                return

    def _end_epoch(self) -> bool:
        """Scheduler step, sample grid, validation and early stopping, checkpoint. True = stop early."""
        self.sched_G.step()
        self.sched_D.step()
        self.epoch += 1
        self.epoch_iter = 0
        self.save_samples()
        stop = False
        t = self.cfg.train
        if self.validator is not None and t.validate_every and self.epoch % t.validate_every == 0:
            value = float(self.validator(self))
            improved = self.best is None or value < self.best
            if improved:
                self.best, self.bad_epochs = value, 0
                save_checkpoint(self.run_dir / "checkpoints" / "best_G.pt",
                                {"G": self.G.state_dict(), "epoch": self.epoch, t.val_metric: value,
                                 "config": to_dict(self.cfg)})
            else:
                self.bad_epochs += t.validate_every
            self.history.append({"epoch": self.epoch, t.val_metric: value, "best": self.best})
            if self.writer is not None:
                self.writer.add_scalar(f"val/{t.val_metric}", value, self.epoch)
            stop = t.patience is not None and self.bad_epochs >= t.patience
        self.save()
        return stop

    def _trim_loss_log(self) -> None:
        """After a resume, drop logged iterations that the checkpoint does not contain (they will be redone)."""
        path = self.run_dir / "losses.csv"
        if not path.exists():
            return
        lines = path.read_text().splitlines(keepends=True)
        keep = lines[:1] + [l for l in lines[1:] if l.split(",", 1)[0].isdigit()
                            and int(l.split(",", 1)[0]) <= self.iteration]
        path.write_text("".join(keep))

    @torch.no_grad()
    def save_samples(self) -> Path:
        """Grid of painting | G(x) | F(G(x)) rows for fixed test paintings, one PNG per epoch."""
        from PIL import Image

        rows = []
        for i in range(len(self.samples)):
            x = self.samples[i].unsqueeze(0).to(self.device)
            y = self.G(x)
            rows.append([to_image(x[0]), to_image(y[0]), to_image(self.F(y)[0])])
        s = self.cfg.data.image_size
        grid = Image.new("RGB", (3 * s, len(rows) * s), "white")
        for r, row in enumerate(rows):
            for c, im in enumerate(row):
                grid.paste(im, (c * s, r * s))
        path = self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        return path


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: CSV logs only
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
