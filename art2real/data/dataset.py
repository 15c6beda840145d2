"""Unpaired painting/photo dataset with the paper's transforms.

Images are resized to the model size (bicubic). Random crop and flip are off by default: the paper's painting
masks are fixed per file, and a crop or flip would move the image under its mask. Turn them on
(``data.crop_margin``, ``data.flip``) for CycleGAN-style augmentation when masks are recomputed or unused.

Every random choice is drawn from a generator seeded by (seed, epoch, position), so an epoch can be replayed
from any iteration: this is what makes a resumed run end with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import UnreadableImage, load_rgb, scan_images, to_tensor

log = logging.getLogger(__name__)


def prepare(im: Image.Image, size: int, crop_margin: int = 0, flip: bool = False,
            rng: np.random.Generator | None = None) -> Image.Image:
    """Resize to ``size + crop_margin``, random-crop ``size``, random horizontal flip."""
    load = size + crop_margin
    if im.size != (load, load):
        im = im.resize((load, load), Image.Resampling.BICUBIC)
    if crop_margin:
        x, y = (rng.integers(0, crop_margin + 1, size=2) if rng is not None else (crop_margin // 2,) * 2)
        im = im.crop((int(x), int(y), int(x) + size, int(y) + size))
    if flip and rng is not None and rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return im


class ImageFolder(Dataset):
    """The readable images of one folder, as tensors in [-1, 1]; bad files are skipped and reported."""

    def __init__(self, folder: str | Path, size: int, max_images: int | None = None, crop_margin: int = 0,
                 flip: bool = False, seed: int = 0):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.folder}")
        self.report = scan_images(self.folder, min_size=size)
        self.paths = self.report.good[:max_images] if max_images else list(self.report.good)
        if not self.paths:
            raise ValueError(f"no readable images in {self.folder} ({self.report.summary()})")
        self.size, self.crop_margin, self.flip, self.seed = size, crop_margin, flip, seed
        self.skipped: list[str] = [str(p) for p, _ in self.report.bad]

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int):
        """Every image in order, as stacked (B, 3, size, size) tensors."""
        for start in range(0, len(self), batch_size):
            yield torch.stack([self[i] for i in range(start, min(start + batch_size, len(self)))])

    def load(self, index: int, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Load item ``index``; a file that became unreadable since the scan is replaced by the next one."""
        for step in range(len(self.paths)):
            path = self.paths[(index + step) % len(self.paths)]
            try:
                im = load_rgb(path)
            except UnreadableImage as e:
                if str(path) not in self.skipped:
                    self.skipped.append(str(path))
                    warnings.warn(f"skipping unreadable image {e}", stacklevel=2)
                continue
            return to_tensor(prepare(im, self.size, self.crop_margin, self.flip, rng))
        raise RuntimeError(f"no image of {self.folder} can be read any more")

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{index} out of range for {len(self)} images")  # also ends iteration
        return self.load(index % len(self))

    def name(self, index: int) -> str:
        return self.paths[index].stem


class UnpairedDataset(Dataset):
    """Item i of epoch e = (painting i mod |A|, a photo drawn at random), as in CycleGAN.

    An epoch has max(|A|, |B|) items. ``plan(epoch)`` gives the (a, b) pairs of an epoch; ``item(epoch, i)``
    loads pair i with augmentation drawn from (seed, epoch, i).
    """

    def __init__(self, root: str | Path, size: int, split: str = "train", max_images: int | None = None,
                 crop_margin: int = 0, flip: bool = False, seed: int = 0):
        root = Path(root)
        self.A = ImageFolder(root / f"{split}A", size, max_images, crop_margin, flip)
        self.B = ImageFolder(root / f"{split}B", size, max_images, crop_margin, flip)
        self.seed = seed
        self._plans: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(len(self.A), len(self.B))

    def plan(self, epoch: int) -> np.ndarray:
        if epoch not in self._plans:
            rng = np.random.default_rng([self.seed, epoch, 0])
            a = np.arange(len(self)) % len(self.A)
            b = rng.integers(0, len(self.B), size=len(self))
            self._plans = {epoch: np.stack([a, b], axis=1)}
        return self._plans[epoch]

    def item(self, epoch: int, index: int) -> dict:
        a, b = self.plan(epoch)[index]
        rng = np.random.default_rng([self.seed, epoch, index + 1])
        return {"A": self.A.load(int(a), rng), "B": self.B.load(int(b), rng), "A_name": self.A.name(int(a)),
                "A_index": int(a)}


class EpochView(Dataset):
    """Items ``start..`` of one epoch of an UnpairedDataset, for a DataLoader (workers welcome)."""

    def __init__(self, dataset: UnpairedDataset, epoch: int, start: int = 0):
        self.dataset, self.epoch, self.start = dataset, epoch, start

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, i: int) -> dict:
        return self.dataset.item(self.epoch, self.start + i)
