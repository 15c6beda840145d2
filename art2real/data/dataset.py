"""Unpaired painting/photo dataset with CycleGAN's transforms, and masks that follow them.

Images are resized to ``image_size + crop_margin`` (bicubic), randomly cropped to ``image_size`` and flipped
(``data.crop_margin``, ``data.flip``); from epoch ``crop_until`` on, resized straight to ``image_size`` (CUT's
whole-image decay epochs, ``data.crop_in_decay``). Each training painting carries its :class:`Placement`, so the
semantic contextual loss crops and flips the painting's mask exactly like the painting (masks are stored at the
load size, before the crop).

Every random choice is drawn from a generator seeded by (seed, epoch, position), so an epoch can be replayed
from any iteration: this is what makes a resumed run end with the same weights as an uninterrupted one. The
order of the paintings is shuffled every epoch, as CycleGAN's data loader does, from (seed, epoch) too.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .images import UnreadableImage, load_rgb, scan_images, to_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where an image lands after augmentation: resized to ``load`` px, cropped ``size`` px at (x, y), flipped."""

    load: int
    size: int
    x: int = 0
    y: int = 0
    flip: bool = False

    @classmethod
    def draw(cls, size: int, crop_margin: int = 0, flip: bool = False,
             rng: np.random.Generator | None = None) -> "Placement":
        """A random crop and flip (``rng``), or the centre crop without flip (no ``rng``: evaluation)."""
        if rng is None:
            return cls(size + crop_margin, size, crop_margin // 2, crop_margin // 2, False)
        x, y = (int(v) for v in rng.integers(0, crop_margin + 1, size=2)) if crop_margin else (0, 0)
        return cls(size + crop_margin, size, x, y, bool(flip and rng.random() < 0.5))

    def image(self, im: Image.Image) -> Image.Image:
        if im.size != (self.load, self.load):
            im = im.resize((self.load, self.load), Image.Resampling.BICUBIC)
        if self.load != self.size:
            im = im.crop((self.x, self.y, self.x + self.size, self.y + self.size))
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if self.flip else im

    def labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The same crop and flip on a label map (H, W) stored at the load size. A square map stored at another
        size (masks kept at the cropping load size, in epochs without crop) is first resized, nearest label."""
        if labels.ndim < 2 or labels.shape[-2] != labels.shape[-1]:
            raise ValueError(f"label map of {tuple(labels.shape[-2:])} px, expected a square one")
        if labels.shape[-1] != self.load:
            labels = resize_labels(labels, self.load)
        out = labels[..., self.y:self.y + self.size, self.x:self.x + self.size]
        return out.flip(-1) if self.flip else out

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.load, self.size, self.x, self.y, int(self.flip)])

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "Placement":
        load, size, x, y, flip = (int(v) for v in t)
        return cls(load, size, x, y, bool(flip))


def resize_labels(labels: torch.Tensor, size: int) -> torch.Tensor:
    """A label map (..., H, W) resized to size x size, each pixel taking the label under its centre."""
    resized = torch.nn.functional.interpolate(labels.reshape(-1, 1, *labels.shape[-2:]).float(), (size, size),
                                              mode="nearest-exact")
    return resized.to(labels.dtype).reshape(*labels.shape[:-2], size, size)


class ImageFolder(Dataset):
    """The readable images of one folder, as tensors in [-1, 1]; bad files are skipped and reported."""

    def __init__(self, folder: str | Path, size: int, max_images: int | None = None, crop_margin: int = 0,
                 flip: bool = False):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"image folder not found: {self.folder}")
        self.report = scan_images(self.folder, min_size=size)
        self.paths = self.report.good[:max_images] if max_images else list(self.report.good)
        if not self.paths:
            raise DataError(f"no readable images in {self.folder} ({self.report.summary()})")
        self.size, self.crop_margin, self.flip = size, crop_margin, flip
        self.skipped: list[str] = [str(p) for p, _ in self.report.bad]

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int):
        """Every image in order, as stacked (B, 3, size, size) tensors."""
        for start in range(0, len(self), batch_size):
            yield torch.stack([self[i] for i in range(start, min(start + batch_size, len(self)))])

    def load(self, index: int, rng: np.random.Generator | None = None, crop: bool = True
             ) -> tuple[torch.Tensor, Path, Placement]:
        """Item ``index`` (tensor, its file, its placement); ``crop=False`` resizes straight to the size. A file
        that became unreadable since the scan is replaced by the next one, and the file returned says which image
        it really is (its mask goes with it)."""
        placement = Placement.draw(self.size, self.crop_margin if crop else 0, self.flip, rng)
        for step in range(len(self.paths)):
            path = self.paths[(index + step) % len(self.paths)]
            try:
                im = load_rgb(path)
            except UnreadableImage as e:
                if str(path) not in self.skipped:
                    self.skipped.append(str(path))
                    warnings.warn(f"skipping unreadable image {e}", stacklevel=2)
                continue
            return to_tensor(placement.image(im)), path, placement
        raise DataError(f"no image of {self.folder} can be read any more")

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{index} out of range for {len(self)} images")  # also ends iteration
        return self.load(index % len(self))[0]

    def name(self, index: int) -> str:
        """The file name: the key of an image's mask (two files may share a stem, never a name)."""
        return self.paths[index].name


class UnpairedDataset(Dataset):
    """Item i of epoch e = (painting order_e[i] mod |A|, a photo drawn at random), as in CycleGAN.

    An epoch has max(|A|, |B|) items. ``plan(epoch)`` gives the (a, b) pairs of an epoch; ``item(epoch, i)``
    loads pair i with augmentation drawn from (seed, epoch, i). Epochs from ``crop_until`` on (0-based; None:
    never) are not cropped: both images are resized straight to ``size``.
    """

    def __init__(self, root: str | Path, size: int, split: str = "train", max_images: int | None = None,
                 crop_margin: int = 0, flip: bool = False, seed: int = 0, crop_until: int | None = None):
        root = Path(root)
        self.A = ImageFolder(root / f"{split}A", size, max_images, crop_margin, flip)
        self.B = ImageFolder(root / f"{split}B", size, max_images, crop_margin, flip)
        self.seed, self.crop_until = seed, crop_until
        self._plans: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(len(self.A), len(self.B))

    def plan(self, epoch: int) -> np.ndarray:
        if epoch not in self._plans:
            rng = np.random.default_rng([self.seed, epoch, 0])
            a = rng.permutation(len(self)) % len(self.A)
            b = rng.integers(0, len(self.B), size=len(self))
            self._plans = {epoch: np.stack([a, b], axis=1)}
        return self._plans[epoch]

    def item(self, epoch: int, index: int) -> dict:
        a, b = self.plan(epoch)[index]
        rng = np.random.default_rng([self.seed, epoch, index + 1])
        crop = self.crop_until is None or epoch < self.crop_until
        image_a, path_a, placement = self.A.load(int(a), rng, crop)
        return {"A": image_a, "B": self.B.load(int(b), rng, crop)[0], "A_name": path_a.name,
                "A_place": placement.as_tensor()}


class EpochView(Dataset):
    """Items ``start..`` of one epoch of an UnpairedDataset, for a DataLoader (workers welcome). Each item also
    says where it is: "index" (its position in the epoch) and "epoch_size", for methods whose update depends on
    the position in the epoch (DRIT's last batches)."""

    def __init__(self, dataset: UnpairedDataset, epoch: int, start: int = 0):
        self.dataset, self.epoch, self.start = dataset, epoch, start

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, i: int) -> dict:
        index = self.start + i
        return {**self.dataset.item(self.epoch, index), "index": index, "epoch_size": len(self.dataset)}
