"""The semantic contextual loss as a training companion: its segmenter, memory banks, masks and mask schedule.

``build_context(cfg)`` assembles what a method with ``uses_banks`` needs: it fits (or loads) the segmenter on the
setting's photos, builds (or loads) the memory banks, and segments the training paintings. Everything is cached
under ``<cache>/banks/<setting>/<key>``, keyed by the resolved dataset folder and every setting that changes the
content, and rebuilt (or completed) only when inputs change.

Masks are stored at the load size (image_size + crop_margin) and cropped and flipped with each painting
(:class:`art2real.data.dataset.Placement`), so augmentation moves a painting and its mask together.

Mask schedule (``cx.mask_schedule``): ``paper`` uses the paintings' masks first, then from epoch ``mask_start``
on, every ``mask_every`` epochs, recomputes them from G(x) with the same segmenter; ``fixed`` keeps the
paintings' masks, as the authors' released code does.
"""
from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .bank.memory import MemoryBanks, build_banks
from .config import Config, pick_device
from .data.dataset import ImageFolder, Placement
from .data.registry import dataset_root
from .nn.contextual import SemanticContextualLoss
from .paths import cache_dir
from .runs import setting_key
from .segment.base import BACKGROUND
from .segment.kmeans import KMeansSegmenter
from .segment.masks import segment_folder

log = logging.getLogger(__name__)


# Segmenter fit and index training use this seed whatever the run's seed: banks are data, shared by the runs of
# every method and seed of a setting (the paper builds them once)
ARTEFACT_SEED = 0


def load_size(cfg: Config) -> int:
    """The resolution paintings (and their masks) have before the random crop."""
    return cfg.data.image_size + cfg.data.crop_margin


_BACKENDS: dict[tuple, tuple[str, str]] = {}


def segmenter_backend(cfg: Config) -> tuple[str, str]:
    """(backend, why) that ``segment.backend`` resolves to, once per process: ``auto`` takes the best available
    (a transformers ADE20K model, detectron2, else k-means); the paper preset never falls back to k-means
    silently (it stops and says how to get a semantic segmenter, or to ask for k-means explicitly)."""
    from .segment.hf import resolve_backend

    key = (cfg.segment.backend, cfg.segment.model, cfg.preset == "paper")
    if key not in _BACKENDS:
        _BACKENDS[key] = resolve_backend(cfg, strict=cfg.preset == "paper")
    return _BACKENDS[key]


def artefacts_dir(cfg: Config) -> Path:
    """Where a setting's segmenter, banks and masks live: one folder per dataset (resolved path) and per
    segmentation and patch settings; bank index settings are handled inside (only the indexes are rebuilt)."""
    backend = segmenter_backend(cfg)[0]
    key = {"dataset": str(dataset_root(cfg.data.dataset).resolve()), "segment": {**vars(cfg.segment),
                                                                                   "backend": backend},
           "image_size": cfg.data.image_size, "scales": cfg.bank.scales}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_dir() / "banks" / setting_key(cfg.data.dataset) / f"{backend}-{digest}"


def fit_segmenter(cfg: Config, progress: bool = True):
    """The setting's segmenter: a pretrained one (see ``segmenter_backend``), or k-means loaded when saved, else
    fitted on the setting's training photos."""
    backend, why = segmenter_backend(cfg)
    if backend != "kmeans":
        from .segment.hf import create

        return create(cfg, backend, str(pick_device(cfg.device)))
    path = artefacts_dir(cfg) / "segmenter.npz"
    if path.exists():
        return KMeansSegmenter.load(path)
    photos = ImageFolder(dataset_root(cfg.data.dataset) / "trainB", cfg.segment.feature_size,
                         cfg.segment.fit_images)
    log.info("fitting the k-means segmenter on %d photos", len(photos))
    segmenter = KMeansSegmenter.from_config(cfg, ARTEFACT_SEED).fit(photos[i] for i in range(len(photos)))
    segmenter.save(path)
    return segmenter


def prepare_banks(cfg: Config, segmenter=None, progress: bool = True) -> tuple[MemoryBanks, object]:
    segmenter = segmenter or fit_segmenter(cfg, progress)
    root = dataset_root(cfg.data.dataset)
    banks = build_banks(root / "trainB", segmenter, artefacts_dir(cfg) / "banks", cfg.bank, cfg.data.image_size,
                        progress=progress, device=pick_device(cfg.device), seed=ARTEFACT_SEED)
    return banks, segmenter


def masks_dir(cfg: Config, split: str) -> Path:
    return artefacts_dir(cfg) / "masks" / f"{split}-{load_size(cfg)}px"


def painting_masks(cfg: Config, segmenter, split: str = "trainA", progress: bool = True) -> dict[str, np.ndarray]:
    """{file name: labels at the load size} of a split's paintings, labelling only added or changed ones."""
    return segment_folder(segmenter, dataset_root(cfg.data.dataset) / split, masks_dir(cfg, split), load_size(cfg),
                          progress=progress, device=pick_device(cfg.device))


class SemanticContext:
    """What a method with the semantic contextual loss calls: retrieval and the loss on G(x), the masks of its
    paintings (cropped and flipped with them) and the mask schedule."""

    def __init__(self, cfg: Config, banks: MemoryBanks, segmenter, masks: dict[str, np.ndarray]):
        self.cfg, self.banks, self.segmenter = cfg, banks, segmenter
        self.masks = {name: torch.from_numpy(m) for name, m in masks.items()}
        self.masks_from = "paintings"
        self.loss_fn = SemanticContextualLoss(banks, cfg, len(segmenter.class_names))
        # FAISS keeps its OpenMP threads: on CUDA the CPU cores are free while the GPU runs the generator step
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieval")
        root = dataset_root(cfg.data.dataset)
        self.paintings = ImageFolder(root / "trainA", load_size(cfg), cfg.data.max_images)

    def labels(self, names: list[str], placements: torch.Tensor | None = None) -> torch.Tensor:
        """Masks of a batch, cropped and flipped like its paintings; a painting without a mask is background."""
        size = self.cfg.data.image_size
        out = []
        for i, name in enumerate(names):
            place = Placement.from_tensor(placements[i]) if placements is not None else \
                Placement.draw(size, self.cfg.data.crop_margin)
            mask = self.masks.get(name)
            out.append(place.labels(mask) if mask is not None
                       else torch.full((size, size), BACKGROUND, dtype=torch.int64))
        return torch.stack(out).long()

    def retrieve_async(self, fake: torch.Tensor, names: list[str], placements=None) -> Future:
        """Retrieval for G(x), collected with ``loss_from``. On CUDA, G(x) is copied once into pinned memory
        without blocking, and a worker thread waits for that copy alone (an event), then searches while the GPU
        computes the rest of the generator step; on CPU the two would compete for the same cores, so it runs at
        once."""
        labels = self.labels(names, placements)
        if fake.is_cuda:
            host = torch.empty(fake.shape, dtype=fake.dtype, pin_memory=True)
            host.copy_(fake.detach(), non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
            return self._worker.submit(self._retrieve_after, copied, host, labels)
        done: Future = Future()
        done.set_result(self.loss_fn.retrieve(fake.detach(), labels))
        return done

    def _retrieve_after(self, copied, host: torch.Tensor, labels: torch.Tensor):
        copied.synchronize()
        return self.loss_fn.retrieve(host, labels)

    def loss_from(self, fake: torch.Tensor, pending: Future) -> torch.Tensor:
        return self.loss_fn.loss(fake, pending.result())

    def due(self, epoch: int) -> bool:
        c = self.cfg.cx
        return c.mask_schedule == "paper" and epoch >= c.mask_start and (epoch - c.mask_start) % c.mask_every == 0

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, translator: torch.nn.Module) -> None:
        """Recompute the masks from G(x) when the schedule says so (paper: epoch 40, then every 20), at the load
        size (the generator is fully convolutional), so later crops and flips still apply."""
        if not self.due(epoch):
            return
        device = next(translator.parameters()).device
        for i in range(len(self.paintings)):
            fake = translator(self.paintings[i].unsqueeze(0).to(device))
            self.masks[self.paintings.name(i)] = self.segmenter.labels(fake)[0].cpu().long()
        self.masks_from = f"G(x) at epoch {epoch}"
        log.info("masks recomputed from G(x) at epoch %d", epoch)

    def state_dict(self) -> dict:
        return {"masks_from": self.masks_from,
                "masks": None if self.masks_from == "paintings" else
                {k: v.to(torch.int16) for k, v in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        """The masks a run recomputed from G(x), for the paintings it still has; a painting added since keeps
        the mask of its own segmentation (until the schedule recomputes them all), one removed is dropped."""
        self.masks_from = state["masks_from"]
        if state["masks"] is not None:
            saved = {k: v.long() for k, v in state["masks"].items()}
            self.masks = {name: saved.get(name, mask) for name, mask in self.masks.items()}


def build_context(cfg: Config, progress: bool = True) -> SemanticContext:
    """The semantic contextual loss of a config: segmenter, memory banks and the training paintings' masks."""
    banks, segmenter = prepare_banks(cfg, progress=progress)
    return SemanticContext(cfg, banks, segmenter, painting_masks(cfg, segmenter, progress=progress))
