"""The one training loop for every method: data order, checkpoints, resume, validation, early stopping, logs.

A method (art2real.methods) owns its networks, optimisers and losses and does one step; the Trainer owns
everything around it. Everything a resumed run needs is in the checkpoint: the method's whole state, the RNG
states, the epoch / iteration counters, the early-stopping state and the resolved config. Data order and
augmentation depend only on (seed, epoch, position), so a run killed mid-epoch and resumed ends with the same
weights as one that was never interrupted: bit for bit on the CPU. On CUDA, kernels such as cuDNN's
convolutions and the backward of reflection padding sum in an order that varies from run to run, so two CUDA
runs, resumed or not, differ in the last bits and drift apart. ``train.deterministic`` switches torch to
deterministic kernels (convolutions, matrix products, index_add) and the kit's reflection padding to a form
built from slices (``art2real.nn.networks.ReflectionPad2d``, since torch has no deterministic CUDA kernel for its
backward; CUT, DRIT and UNIT pad through it too); with it every op of the Cycle-GAN / Art2Real step is
deterministic as listed by torch (the other methods' ops were not audited), which is expected to make CUDA
resume exact too (not yet checked on a GPU). A run may resume on another device
(``device`` is free on resume): it warns, and the random stream of the GPU it used continues on the GPU it moves
to.

A job scheduler's signal (preemption, an approaching time limit) must not save a half-done step: its handler calls
:meth:`Trainer.request_stop`, which only sets a flag; the loop finishes the iteration in progress, saves
``last.pt`` and returns with ``interrupted`` in its summary, and a later ``fit`` resumes from there to the same
weights.

A run folder is trained by one process at a time (a lock names the holder). Resuming with other settings stops
and lists the differences unless forced; ``config.yaml`` always describes what the run does. Starting over
(``resume=False``) moves the old run aside instead of deleting it.
"""
from __future__ import annotations

import csv
import itertools
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import methods
from ..config import Config, cuda_index, pick_device, save_config, seed_everything, to_dict
from ..data.dataset import EpochView, ImageFolder, UnpairedDataset
from ..data.images import to_image
from ..data.registry import ARTISTS, DATASETS, dataset_root, missing_splits
from ..errors import CheckpointError, ConfigError, DataError
from ..io import write_text
from ..runs import Run
from .checkpoint import (FORMAT, RunLock, load_latest, remove_stale_temporaries, rng_state, save_checkpoint,
                         set_rng_state)

log = logging.getLogger(__name__)

# settings that may differ on resume: where and how fast it runs, and when it stops or saves; not what it learns
FREE_ON_RESUME = ("device", "data.num_workers", "train.max_iterations", "train.checkpoint_every")


def check_dataset(cfg: Config) -> Path:
    """Stop before any compute when the dataset is absent or incomplete, naming the fix."""
    root = dataset_root(cfg.data.dataset)
    missing = missing_splits(root)
    if missing:
        registered = str(cfg.data.dataset).lower() in ARTISTS or cfg.data.dataset in DATASETS
        fix = f"Run `art2real data download {cfg.data.dataset}` or put" if registered else "Put"
        raise DataError(f"dataset {cfg.data.dataset!r}: {root} is missing {', '.join(missing)}. {fix} the images in "
                        f"{root}/{{trainA,trainB,testA,testB}} (A = paintings, B = photos).")
    return root


def build_method(cfg: Config, progress: bool = True) -> methods.Method:
    """The config's method on the config's device, with its memory banks when it uses them; seeded first, so
    the initial weights depend on ``cfg.seed`` alone."""
    cls = methods.get(cfg.method)
    context = None
    if cls.uses_banks:
        from ..semantic import build_context

        context = build_context(cfg, progress)
    seed_everything(cfg.seed)
    return cls(cfg, pick_device(cfg.device), context)


def flat_config(cfg_dict: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg_dict.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: dict, now: dict) -> dict[str, tuple]:
    """{dotted key: (saved, now)} for the settings that differ, except those free on resume. A key the saved
    config lacks (a run from before the key existed) counts as its default, the value that run trained with."""
    a, b = {**flat_config(to_dict(Config())), **flat_config(saved)}, flat_config(now)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in FREE_ON_RESUME}


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path | None = None, method: methods.Method | None = None,
                 validator: Callable[[torch.nn.Module], float] | str | None = "auto", progress: bool = True):
        if method is None and not methods.get(cfg.method).trained:
            raise ConfigError(f"method {cfg.method!r} has no training: 03_translate makes its images "
                              f"(`art2real chain --artist ... --start 03`)")
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.run_dir = Path(run_dir) if run_dir else Run.of(cfg).dir
        RunLock(self.run_dir).check()  # another trainer on this run: stop before building anything
        self.root = check_dataset(cfg)
        d = cfg.data
        t = cfg.train
        self.dataset = UnpairedDataset(self.root, d.image_size, "train", d.max_images, d.crop_margin, d.flip,
                                       cfg.seed, crop_until=None if d.crop_in_decay else t.epochs_constant)
        # whole test paintings at the training scale (resized to the load size, not cropped), as translated later
        self.samples = ImageFolder(self.root / "testA", d.load_size, t.sample_images) if t.sample_images else None
        if validator == "auto":
            from ..metrics.validation import Validator

            validator = Validator(cfg) if t.validate_every else None
        self.validator = validator
        self.method = method if method is not None else build_method(cfg, progress)
        self.epoch, self.epoch_iter, self.iteration = 0, 0, 0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.history: list[dict] = []  # one row per validated epoch
        self.stop_requested = False  # set by request_stop(), read at iteration boundaries

    def request_stop(self) -> None:
        """Finish the current iteration, save and return from ``fit``; safe to call from a signal handler (it
        only sets a flag), so a preempted job saves a consistent state instead of a half-updated one."""
        self.stop_requested = True

    # ----------------------------------------------------------------- state
    @property
    def epochs(self) -> int:
        return self.cfg.train.epochs_constant + self.cfg.train.epochs_decay

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def columns(self) -> list[str]:
        return ["iteration", "epoch", *self.method.loss_names, "lr", "seconds"]

    def state_dict(self) -> dict:
        return {"format": FORMAT, "method": self.method.state_dict(), "translator": self.method.translator_state(),
                "rng": rng_state(), "device": _device_name(self.device), "epoch": self.epoch,
                "epoch_iter": self.epoch_iter, "iteration": self.iteration,
                "best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "history": self.history, "config": to_dict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.method.load_state_dict(state["method"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"the checkpoint's {state['config']['method']} state does not fit these settings "
                                  f"({str(e).splitlines()[0]})") from None
        set_rng_state(state["rng"], self._moved_from(state.get("device")))
        self.epoch, self.epoch_iter, self.iteration = state["epoch"], state["epoch_iter"], state["iteration"]
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.bad_epochs, self.history = state["bad_epochs"], state["history"]

    def _moved_from(self, saved: str | None) -> tuple[int, int] | None:
        """Warn when the checkpoint was written on another device; (its GPU, this GPU) when both are GPUs."""
        here = _device_name(self.device)
        if saved is None or saved == here:
            return None
        log.warning("%s was trained on %s and continues on %s; it matches the run it would have been on %s only "
                    "where both compute alike (the same kind of device and model of GPU)", self.run_dir, saved, here,
                    saved)
        there, now = cuda_index(saved), cuda_index(self.device)
        return (there, now) if there is not None and now is not None else None

    def save(self) -> None:
        save_checkpoint(self.checkpoints, self.state_dict())

    # ----------------------------------------------------------------- the loop
    def fit(self, resume: bool = True, progress: bool = True, force: bool = False,
            on_epoch: Callable[["Trainer"], None] | None = None) -> dict:
        """Train to the end of the schedule (or an early stop) and return a summary. Resumes from the last
        checkpoint that loads; ``force`` continues with settings that differ from the run's; ``on_epoch`` is
        called after every epoch (a notebook shows the grid and the losses there)."""
        with _deterministic(self.cfg.train.deterministic), RunLock(self.run_dir):
            if not resume:
                self._set_aside()
            for folder in (self.checkpoints, self.run_dir):  # config.yaml and losses.csv are written atomically too
                if folder.exists():
                    remove_stale_temporaries(folder)
            found = load_latest(self.checkpoints) if resume else None
            if found is not None:
                state, path = found
                changes = self._accept_settings(state["config"], force)
                self.load_state_dict(state)
                self._record_changes(changes, state["iteration"])  # only once they apply
                log.info("resumed %s from %s at epoch %d, iteration %d", self.run_dir, path.name, self.epoch,
                         self.iteration)
            save_config(self.cfg, self.run_dir / "config.yaml")
            self._trim_loss_log()
            stopped_early = self._loop(progress, on_epoch)
        return {"run_dir": str(self.run_dir), "method": self.cfg.method, "epochs_done": self.epoch,
                "iterations": self.iteration, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_early": stopped_early, "interrupted": self.stop_requested and not self.finished(),
                "history": self.history}

    def finished(self) -> bool:
        """The schedule is done: every epoch, the ``max_iterations`` cap, or an early stop."""
        return finished({"epoch": self.epoch, "iteration": self.iteration, "bad_epochs": self.bad_epochs}, self.cfg)

    def _loop(self, progress: bool, on_epoch) -> bool:
        with open(self.run_dir / "losses.csv", "a", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if f.tell() == 0:
                writer.writeheader()
            while not self.finished() and not self.stop_requested:  # an early-stopped run resumed stays stopped
                if self.epoch_iter == 0:
                    self.method.on_epoch_start(self.epoch)
                self._run_epoch(writer, f, progress)
                if self.stop_requested or (self._capped() and self.epoch_iter < len(self.dataset)):
                    return False  # stopped mid-epoch (a request or max_iterations); the checkpoint says where
                stop = self._end_epoch()
                if on_epoch is not None:
                    on_epoch(self)
                if stop:
                    return True
        t = self.cfg.train
        return bool(t.validate_every and t.patience is not None and self.bad_epochs >= t.patience)

    def _capped(self) -> bool:
        cap = self.cfg.train.max_iterations
        return cap is not None and self.iteration >= cap

    def _run_epoch(self, writer, f, progress: bool) -> None:
        view = EpochView(self.dataset, self.epoch, self.epoch_iter)
        # the loader's own generator: starting an iterator draws a base seed, which from torch's global RNG
        # would shift the random numbers of methods that sample in their step (DRIT, UNIT) after a mid-epoch resume
        loader = DataLoader(view, batch_size=self.cfg.train.batch_size, shuffle=False,
                            num_workers=self.cfg.data.num_workers, drop_last=self.method.drop_last,
                            generator=torch.Generator().manual_seed(self.cfg.seed))
        bar = tqdm(loader, desc=f"{self.cfg.method} epoch {self.epoch + 1}/{self.epochs}", disable=not progress,
                   leave=False)
        for batch in bar:
            start = time.perf_counter()
            losses = self.method.train_step(batch)
            self.iteration += 1
            self.epoch_iter += len(batch["A"])
            writer.writerow({"iteration": self.iteration, "epoch": self.epoch + 1, "lr": self.method.lr,
                             "seconds": round(time.perf_counter() - start, 4),
                             **{k: round(v, 6) for k, v in losses.items()}})
            f.flush()
            bar.set_postfix({k: f"{v:.3f}" for k, v in list(losses.items())[:3]})
            if self.iteration % self.cfg.train.checkpoint_every == 0 or self._capped() or self.stop_requested:
                self.save()
            if self._capped() or self.stop_requested:
                return

    def _end_epoch(self) -> bool:
        """Schedules, sample grid, validation and early stopping, checkpoint. True = stop early."""
        self.method.end_epoch(self.epoch)
        self.epoch += 1
        self.epoch_iter = 0
        if self.samples is not None:
            self.save_samples()
        stop = False
        t = self.cfg.train
        if self.validator is not None and t.validate_every and self.epoch % t.validate_every == 0:
            value = float(self.validator(self.method.translator()))
            if self.best is None or value < self.best:
                self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
                save_checkpoint(self.checkpoints, {"format": FORMAT, "translator": self.method.translator_state(),
                                                   "epoch": self.epoch, "metric": t.val_metric, "value": value,
                                                   "config": to_dict(self.cfg)}, name="best.pt")
            else:
                self.bad_epochs += t.validate_every
            self.history.append({"epoch": self.epoch, t.val_metric: value, "best": self.best})
            stop = t.patience is not None and self.bad_epochs >= t.patience
        self.save()
        return stop

    # ----------------------------------------------------------------- run folder
    def _set_aside(self) -> None:
        """Starting over: what the run folder holds moves to ``<run>.replaced-<time>/`` (nothing is deleted)."""
        entries = [p for p in self.run_dir.iterdir() if p.name != "train.lock"] if self.run_dir.exists() else []
        if not entries:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.run_dir.with_name(f"{self.run_dir.name}.replaced-{stamp}")
        for n in itertools.count(2):  # started over twice within a second: never merge two old runs
            try:
                aside.mkdir(parents=True)
                break
            except FileExistsError:
                aside = self.run_dir.with_name(f"{self.run_dir.name}.replaced-{stamp}-{n}")
        for p in entries:
            os.replace(p, aside / p.name)
        log.warning("starting %s over; its previous contents are in %s", self.run_dir, aside)

    def _accept_settings(self, saved: dict, force: bool) -> dict[str, tuple]:
        """The settings that differ from the run's, when they may; else a ConfigError that lists them."""
        changes = config_changes(saved, to_dict(self.cfg))
        if not changes:
            return changes
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        if "method" in changes:  # another method's networks may load (Art2Real = Cycle-GAN + a loss): still another run
            raise ConfigError(f"{self.run_dir} is a {saved['method']} run; it cannot continue as {self.cfg.method} "
                              f"(not even with --force):\n{lines}\nTrain {self.cfg.method} in its own run folder, or "
                              "start this one over with --no-resume (the old run is kept aside).")
        if not force:
            raise ConfigError(f"{self.run_dir} was trained with other settings:\n{lines}\nResume with the run's own "
                              f"settings ({self.run_dir / 'config.yaml'}), start over with --no-resume (the old run "
                              "is kept aside), or continue with the new settings with --force.")
        return changes

    def _record_changes(self, changes: dict[str, tuple], iteration: int) -> None:
        """Append the settings a forced resume changed to ``config_changes.yaml``."""
        if not changes:
            return
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        log.warning("continuing %s with changed settings:\n%s", self.run_dir, lines)
        history = self.run_dir / "config_changes.yaml"
        entries = yaml.safe_load(history.read_text()) if history.exists() else []
        entries.append({"iteration": iteration, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "changes": {k: {"was": a, "now": b} for k, (a, b) in changes.items()}})
        write_text(history, yaml.safe_dump(entries, sort_keys=False))

    def _trim_loss_log(self) -> None:
        """Drop logged iterations that the checkpoint does not contain (they will be redone)."""
        path = self.run_dir / "losses.csv"
        if not path.exists():
            return
        lines = path.read_text().splitlines(keepends=True)
        keep = lines[:1] + [line for line in lines[1:] if line.split(",", 1)[0].isdigit()
                            and int(line.split(",", 1)[0]) <= self.iteration]
        if len(keep) != len(lines):
            write_text(path, "".join(keep))

    @torch.no_grad()
    def save_samples(self) -> Path:
        """A grid of the method's sample columns (painting | translation | ...) for fixed test paintings, one
        PNG per epoch."""
        from PIL import Image

        s = self.cfg.data.load_size
        pad = (-s) % 4  # translators take multiples of 4 (two stride-2 stages): pad, translate, crop back
        rows = []
        for i in range(len(self.samples)):
            x = self.samples[i].unsqueeze(0).to(self.device)
            columns = self.method.sample_images(F.pad(x, (0, pad, 0, pad), mode="reflect") if pad else x)
            rows.append([to_image(t[0, :, :s, :s]) for t in columns])
        grid = Image.new("RGB", (len(rows[0]) * s, len(rows) * s), "white")
        for r, row in enumerate(rows):
            for c, im in enumerate(row):
                grid.paste(im, (c * s, r * s))
        path = self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        return path


def finished(state: dict, cfg: Config) -> bool:
    """Whether a checkpoint's counters (``epoch``, ``iteration``, ``bad_epochs``) mark the end of ``cfg``'s
    schedule, by the loop's own stopping rules: all epochs, the iteration cap, or no improvement for
    ``patience`` epochs."""
    t = cfg.train
    if state["epoch"] >= t.epochs_constant + t.epochs_decay:
        return True
    if t.max_iterations is not None and state["iteration"] >= t.max_iterations:
        return True
    return bool(t.validate_every and t.patience is not None and state["bad_epochs"] >= t.patience)


def _device_name(device: torch.device) -> str:
    index = cuda_index(device)
    return str(device) if index is None else f"cuda:{index}"


@contextmanager
def _deterministic(on: bool):
    """While training with ``train.deterministic``: deterministic kernels where torch has them (ops without one,
    the reflection-padding backward, only warn), no cuDNN autotuning; the previous settings come back after.
    cuBLAS reads CUBLAS_WORKSPACE_CONFIG when a process first uses it, so a process that ran CUDA matrix
    products before training should set it itself (``CUBLAS_WORKSPACE_CONFIG=:4096:8``)."""
    if not on:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
