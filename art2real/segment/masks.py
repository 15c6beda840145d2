"""Masks for a folder of paintings or generated images: one label PNG per image, keyed by file stem, at the model
resolution (values = class ids, 255 = background), plus colour overlays so a person can judge them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.dataset import ImageFolder
from ..data.images import file_stamp, to_image
from ..io import atomic_path, write_json
from .base import BACKGROUND

UNLABELLED = 255  # how BACKGROUND is stored in a label PNG


def palette(n: int) -> np.ndarray:
    """n distinct colours (tab20-like), uint8 (n, 3)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"] if n > 10 else matplotlib.colormaps["tab10"]
    return (np.array([cmap(i % cmap.N)[:3] for i in range(n)]) * 255).astype(np.uint8)


def overlay(image: Image.Image, labels: np.ndarray, n_classes: int, alpha: float = 0.5) -> Image.Image:
    """The image with each pixel tinted by its class colour (background left as is), beside the plain mask."""
    colours = palette(n_classes)
    rgb = np.asarray(image, dtype=np.float32)
    tint = np.where(labels[..., None] >= 0, colours[np.clip(labels, 0, None)], rgb)
    blended = ((1 - alpha) * rgb + alpha * tint).astype(np.uint8)
    mask = np.where(labels[..., None] >= 0, colours[np.clip(labels, 0, None)], 0).astype(np.uint8)
    return Image.fromarray(np.concatenate([blended, mask], axis=1))


def save_labels(path: Path, labels: np.ndarray) -> None:
    stored = np.where(labels == BACKGROUND, UNLABELLED, labels).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(stored, "L").save(tmp, format="PNG")


def load_labels(path: Path) -> np.ndarray:
    stored = np.asarray(Image.open(path), dtype=np.int64)
    return np.where(stored == UNLABELLED, BACKGROUND, stored)


@torch.no_grad()
def segment_folder(segmenter, folder: str | Path, out_dir: str | Path, size: int, batch_size: int = 8,
                   overlays: bool = True, progress: bool = True, device="cpu") -> dict[str, np.ndarray]:
    """Label every readable image of ``folder`` at ``size`` x ``size``; writes ``out_dir/<file name>.png`` and
    ``out_dir/overlays/<file name>.jpg``; returns {file name: labels}.

    Incremental: images already labelled by the same segmenter at the same size, unchanged since (size and
    modification time), keep their masks; added or changed images are labelled; masks of images that are gone
    or have become unreadable are removed."""
    images = ImageFolder(folder, size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamps = {p.name: file_stamp(p) for p in images.paths}
    done = _labelled(out_dir, segmenter.name, size)
    todo = [i for i, p in enumerate(images.paths)
            if done.get(p.name) != stamps[p.name] or not (out_dir / f"{p.name}.png").exists()]
    for start in tqdm(range(0, len(todo), batch_size), desc=f"segment {Path(folder).name}",
                      disable=not progress or not todo):
        idx = todo[start:start + batch_size]
        batch = torch.stack([images[i] for i in idx]).to(device)
        for i, image, lab in zip(idx, batch, segmenter.labels(batch).cpu().numpy()):
            name = images.name(i)
            save_labels(out_dir / f"{name}.png", lab)
            if overlays:
                (out_dir / "overlays").mkdir(exist_ok=True)
                with atomic_path(out_dir / "overlays" / f"{name}.jpg") as tmp:
                    overlay(to_image(image), lab, len(segmenter.class_names)).save(tmp, format="JPEG", quality=85)
    for gone in set(done) - set(stamps):
        for path in (out_dir / f"{gone}.png", out_dir / "overlays" / f"{gone}.jpg"):
            path.unlink(missing_ok=True)
    write_json(out_dir / "masks.json", {"segmenter": segmenter.name, "size": size,
                                        "class_names": segmenter.class_names, "images": stamps})
    return load_masks(out_dir)[0]


def _labelled(out_dir: Path, segmenter_name: str, size: int) -> dict[str, list]:
    """{file name: stamp} of the masks already in ``out_dir`` that the same segmenter made at the same size."""
    if not (out_dir / "masks.json").exists():
        return {}
    meta = json.loads((out_dir / "masks.json").read_text())
    if meta.get("segmenter") != segmenter_name or meta.get("size") != size or not isinstance(meta["images"], dict):
        return {}
    return meta["images"]


def load_masks(out_dir: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """({file name: labels}, the folder's masks.json)."""
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "masks.json").read_text())
    return {name: load_labels(out_dir / f"{name}.png") for name in meta["images"]}, meta
