"""Robust image loading shared by every stage.

Conversions (documented, lossless where possible): EXIF orientation applied; grayscale, palette, CMYK, 16-bit and
32-bit integer/float images become 8-bit RGB (16-bit is scaled by 1/257, float by 255); RGBA and LA are composited
on white. Unreadable, truncated and non-image files raise :class:`UnreadableImage`; folder scans skip them and list
them in an :class:`ImageReport`, so a bad file never stops an epoch.

Images smaller than the model size are upsampled (bicubic) by the dataset transform, like any other image; the
report counts them, and names those smaller than half the model size (enlarged more than 2x: blurry inputs).

Images whose header claims more pixels than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``,
89.5 MP by default) are refused as unreadable before anything is decoded: a 100000 x 100000 PNG of a few bytes
would otherwise take tens of GB. Downscale such an image, or raise that limit, to use it.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class UnreadableImage(Exception):
    """The file is not an image, or it is truncated or corrupt."""


def open_rgb(path: str | Path) -> tuple[Image.Image, str]:
    """(the image as 8-bit RGB, its mode in the file); see the module docstring for the conversions."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # above the limit Pillow only warns (up to 2x, then it raises): both are refusals here
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                mode = im.mode
                im.load()  # decode now: truncated files fail here, not later in a worker
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im), mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage(f"{path}: too many pixels for an image ({e}); downscale it or raise "
                              "PIL.Image.MAX_IMAGE_PIXELS") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as e:
        raise UnreadableImage(f"{path}: {e}") from e


def load_rgb(path: str | Path) -> Image.Image:
    """Open any image as 8-bit RGB (see the module docstring for the conversions)."""
    return open_rgb(path)[0]


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im, dtype=np.uint16)
        im = Image.fromarray((arr.astype(np.float32) / 257.0).round().astype(np.uint8), "L")
    elif im.mode == "I":
        arr = np.asarray(im, dtype=np.int64)
        scale = 257.0 if arr.max() > 255 else 1.0  # 16-bit PNGs often decode as mode I
        im = Image.fromarray(np.clip(arr / scale, 0, 255).round().astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        im = Image.fromarray(np.clip(arr * scale, 0, 255).round().astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def list_images(folder: str | Path) -> list[Path]:
    """Image-like files of a folder (by extension), sorted by name; hidden files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def file_stamp(path: Path) -> list[int]:
    """What stands for a file's content in cache keys without reading it: its size and modification time."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


@dataclass
class ImageReport:
    folder: Path
    good: list[Path] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files without an image extension
    smaller_than: dict[Path, tuple[int, int]] = field(default_factory=dict)
    min_size: int | None = None
    modes: dict[str, int] = field(default_factory=dict)

    @property
    def tiny(self) -> dict[Path, tuple[int, int]]:
        """Images under half the model size: upsampled more than 2x, so they come out blurry."""
        return {p: s for p, s in self.smaller_than.items() if self.min_size and 2 * min(s) < self.min_size}

    @property
    def ok(self) -> bool:
        return not self.bad

    def summary(self) -> str:
        lines = [f"{self.folder}: {len(self.good)} readable images, {len(self.bad)} unreadable"
                 + (f", {len(self.ignored)} non-image files ignored" if self.ignored else "")]
        if self.modes:
            lines.append("  modes: " + ", ".join(f"{m} {n}" for m, n in sorted(self.modes.items())))
        if self.smaller_than:
            lines.append(f"  {len(self.smaller_than)} images smaller than the model size of {self.min_size} px "
                         "(upsampled when loaded)")
        lines += [f"  SMALL {p.name}: {w}x{h}, under half the model size (upsampled more than 2x: blurry)"
                  for p, (w, h) in self.tiny.items()]
        lines += [f"  UNREADABLE {p.name}: {why}" for p, why in self.bad]
        return "\n".join(lines)


def scan_images(folder: str | Path, min_size: int | None = None) -> ImageReport:
    """Try to decode every image of ``folder``; never raises for a bad file."""
    report = ImageReport(Path(folder), min_size=min_size)
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            report.ignored.append(path)
            continue
        try:
            im, mode = open_rgb(path)
        except UnreadableImage as e:
            report.bad.append((path, str(e).split(": ", 1)[-1]))
            continue
        report.good.append(path)
        report.modes[mode] = report.modes.get(mode, 0) + 1
        if min_size and min(im.size) < min_size:
            report.smaller_than[path] = im.size
    if report.bad:
        named = "; ".join(f"{p.name}: {why}" for p, why in report.bad[:10])
        more = f"; and {len(report.bad) - 10} more" if len(report.bad) > 10 else ""
        warnings.warn(f"{len(report.bad)} unreadable image(s) in {folder} skipped ({named}{more})", stacklevel=2)
    return report


def to_tensor(im: Image.Image):
    """uint8 HWC RGB -> float CHW in [-1, 1]."""
    import torch

    arr = np.array(im, dtype=np.uint8)  # a writable copy for torch
    return torch.from_numpy(arr).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_image(t) -> Image.Image:
    """float CHW in [-1, 1] -> uint8 RGB image."""
    arr = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr, "RGB")
