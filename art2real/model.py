"""The Art2Real model: CycleGAN + the semantic contextual loss, with its memory banks, masks and mask schedule.

``build_context(cfg)`` assembles what the trainer needs for lambda_cx > 0: it fits (or loads) the segmenter on
the setting's photos, builds (or loads) the memory banks, and segments the training paintings. Everything is
cached under ``<cache>/banks/<dataset>/<key>`` and rebuilt only when inputs change.

Mask schedule (``cx.mask_schedule``): ``paper`` uses the paintings' masks first, then from epoch ``mask_start``
on, every ``mask_every`` epochs, recomputes them from G(x) with the same segmenter; ``fixed`` keeps the paintings'
masks, as the authors' released code does.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import torch

from .bank.memory import MemoryBanks, build_banks
from .config import Config, pick_device
from .data.dataset import ImageFolder
from .data.registry import dataset_root
from .nn.contextual import SemanticContextualLoss
from .paths import cache_dir
from .segment.base import BACKGROUND
from .segment.kmeans import KMeansSegmenter
from .segment.masks import load_masks, segment_folder

log = logging.getLogger(__name__)


def artefacts_dir(cfg: Config) -> Path:
    """Where a setting's segmenter, banks and masks live, keyed by what determines them."""
    s, scales = cfg.segment, "-".join(f"{p}_{st}" for p, st in cfg.bank.scales)
    key = f"{s.backend}{s.n_classes}_{cfg.data.image_size}px_{scales}"
    return cache_dir() / "banks" / Path(cfg.data.dataset).name / key


def fit_segmenter(cfg: Config, progress: bool = True):
    """The setting's segmenter: loaded when saved, else fitted on its training photos."""
    if cfg.segment.backend != "kmeans":
        from .segment import backends

        return backends.create(cfg, str(pick_device(cfg.device)))
    path = artefacts_dir(cfg) / "segmenter.npz"
    if path.exists():
        return KMeansSegmenter.load(path)
    photos = ImageFolder(dataset_root(cfg.data.dataset) / "trainB", cfg.segment.feature_size,
                         cfg.segment.fit_images)
    log.info("fitting the k-means segmenter on %d photos", len(photos))
    segmenter = KMeansSegmenter.from_config(cfg).fit(photos[i] for i in range(len(photos)))
    path.parent.mkdir(parents=True, exist_ok=True)
    segmenter.save(path)
    return segmenter


def prepare_banks(cfg: Config, segmenter=None, progress: bool = True) -> tuple[MemoryBanks, object]:
    segmenter = segmenter or fit_segmenter(cfg, progress)
    root = dataset_root(cfg.data.dataset)
    banks = build_banks(root / "trainB", segmenter, artefacts_dir(cfg) / "banks", cfg.bank, cfg.data.image_size,
                        progress=progress, device=pick_device(cfg.device), seed=cfg.seed)
    return banks, segmenter


def painting_masks(cfg: Config, segmenter, split: str = "trainA", progress: bool = True) -> dict[str, np.ndarray]:
    out = artefacts_dir(cfg) / "masks" / split
    if (out / "masks.json").exists():
        masks, meta = load_masks(out)
        if meta["segmenter"] == segmenter.name and meta["size"] == cfg.data.image_size:
            return masks
    return segment_folder(segmenter, dataset_root(cfg.data.dataset) / split, out, cfg.data.image_size,
                          progress=progress, device=pick_device(cfg.device))


class SemanticContext:
    """What the trainer calls when lambda_cx > 0: the loss on G(x), and the mask schedule."""

    def __init__(self, cfg: Config, banks: MemoryBanks, segmenter, masks: dict[str, np.ndarray]):
        self.cfg, self.banks, self.segmenter = cfg, banks, segmenter
        self.masks = masks
        self.masks_from = "paintings"
        self.loss_fn = SemanticContextualLoss(banks, cfg, len(segmenter.class_names))
        # one OpenMP thread for FAISS in the worker: per-step searches are small, and idle OpenMP threads
        # spinning after each search would steal the cores the generator step runs on
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieval",
                                          initializer=faiss.omp_set_num_threads, initargs=(1,))
        root = dataset_root(cfg.data.dataset)
        self.paintings = ImageFolder(root / "trainA", cfg.data.image_size, cfg.data.max_images)

    def labels(self, names: list[str], shape) -> torch.Tensor:
        """Masks of a batch; a painting without a mask is all background."""
        return torch.stack([torch.from_numpy(self.masks[n]) if n in self.masks
                            else torch.full(shape, BACKGROUND, dtype=torch.int64) for n in names])

    def retrieve_async(self, fake: torch.Tensor, names: list[str]) -> Future:
        """Retrieval for G(x). On CUDA it runs in a worker thread (FAISS and the memmap reads release the GIL)
        while the GPU computes the rest of the generator step; on CPU the two would compete for the same
        cores (measured slower), so it runs at once. Collected with ``loss_from``."""
        labels = self.labels(names, fake.shape[-2:])
        if fake.is_cuda:
            return self._worker.submit(self.loss_fn.retrieve, fake.detach(), labels)
        done: Future = Future()
        done.set_result(self.loss_fn.retrieve(fake.detach(), labels))
        return done

    def loss_from(self, fake: torch.Tensor, pending: Future) -> torch.Tensor:
        return self.loss_fn.loss(fake, pending.result())

    def due(self, epoch: int) -> bool:
        c = self.cfg.cx
        return c.mask_schedule == "paper" and epoch >= c.mask_start and (epoch - c.mask_start) % c.mask_every == 0

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, G: torch.nn.Module) -> None:
        """Recompute the masks from G(x) when the schedule says so (paper: epoch 40, then every 20)."""
        if not self.due(epoch):
            return
        device = next(G.parameters()).device
        for i in range(len(self.paintings)):
            fake = G(self.paintings[i].unsqueeze(0).to(device))
            self.masks[self.paintings.name(i)] = self.segmenter.labels(fake)[0].cpu().numpy()
        self.masks_from = f"G(x) at epoch {epoch}"
        log.info("masks recomputed from G(x) at epoch %d", epoch)

    def state_dict(self) -> dict:
        return {"masks_from": self.masks_from,
                "masks": None if self.masks_from == "paintings" else
                {k: v.astype(np.int16) for k, v in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.masks_from = state["masks_from"]
        if state["masks"] is not None:
            self.masks = {k: v.astype(np.int64) for k, v in state["masks"].items()}


def build_context(cfg: Config, progress: bool = True) -> SemanticContext | None:
    """The semantic contextual loss for a config (None for CycleGAN, lambda_cx = 0)."""
    if cfg.lambda_cx == 0:
        return None
    banks, segmenter = prepare_banks(cfg, progress=progress)
    return SemanticContext(cfg, banks, segmenter, painting_masks(cfg, segmenter, progress=progress))


def build_trainer(cfg: Config, run_dir=None, progress: bool = True):
    """A Trainer for either method, with the contextual loss and the validation metric wired in."""
    from .train.trainer import Trainer, check_dataset

    check_dataset(cfg)
    validator = None
    if cfg.train.validate_every:
        from .metrics.validation import Validator

        validator = Validator(cfg)
    return Trainer(cfg, run_dir, context=build_context(cfg, progress), validator=validator)
