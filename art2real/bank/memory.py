"""Memory banks: per scale and per class, the real photo patches, their mean and a FAISS index.

On disk (one folder per setting and segmenter)::

    meta.json                       scales, classes and counts, segmenter, sources, versions, index specs
    manifest.json                   the input fingerprint: building again is a no-op unless it changed
    segmenter.npz                   the fitted segmenter (k-means backend), so masks share the vocabulary
    s<p>_<stride>/c<id>.u8          patches, uint8 (N, 3 p p), memory-mapped (lossless for 8-bit photos)
    s<p>_<stride>/c<id>.mean.npy    class mean in [-1, 1] (eq. 1 centres both sides on it)
    s<p>_<stride>/c<id>.faiss       the index

Class ``-1`` is the background bank (photo patches in no class). A build writes into a temporary folder that
replaces the old one only when complete, so an interrupted build never leaves a bank that would be loaded.
When only the index settings changed, the patches on disk are kept and only the indexes are rebuilt.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import cuda_index
from ..data.dataset import ImageFolder
from ..data.images import file_stamp, list_images
from ..errors import DataError
from ..io import atomic_path, write_json
from ..segment.base import BACKGROUND
from .index import build_index, search, to_gpu
from .patches import bank_membership, class_fractions, extract_patches, to_u8, to_unit

FORMAT = 1


def _scale_dir(size: int, stride: int) -> str:
    return f"s{size}_{stride}"


@dataclass
class ClassBank:
    path: Path  # the .u8 file; the mean and index sit beside it
    count: int
    dim: int
    device: str = "cpu"  # where its index is searched: a CUDA device moves it to that GPU (with faiss-gpu)
    _patches: np.ndarray | None = field(default=None, repr=False)
    _mean: np.ndarray | None = field(default=None, repr=False)
    _index: faiss.Index | None = field(default=None, repr=False)

    @property
    def patches(self) -> np.ndarray:
        if self._patches is None:
            self._patches = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.count, self.dim))
        return self._patches

    @property
    def mean(self) -> np.ndarray:
        if self._mean is None:
            self._mean = np.load(self.path.with_suffix(".mean.npy"))
        return self._mean

    @property
    def index(self) -> faiss.Index:
        if self._index is None:
            self._index = to_gpu(faiss.read_index(str(self.path.with_suffix(".faiss"))), self.device)
        return self._index


class MemoryBanks:
    """The banks of one setting. ``device`` is where indexes are searched: ``cpu``, or a CUDA device (``cuda``,
    ``cuda:1``), which moves each index to that GPU when it is first searched (with faiss-gpu; else CPU)."""

    def __init__(self, root: Path, meta: dict, cfg, device="cpu"):
        self.root, self.meta, self.cfg, self.device = Path(root), meta, cfg, _device_name(device)
        self.scales: list[tuple[int, int]] = [tuple(s) for s in meta["scales"]]
        self.banks: list[dict[int, ClassBank]] = []
        for size, stride in self.scales:
            counts = meta["counts"][_scale_dir(size, stride)]
            self.banks.append({int(c): ClassBank(self.root / _scale_dir(size, stride) / f"c{c}.u8", n,
                                                 3 * size * size, self.device)
                               for c, n in counts.items() if n > 0})

    # ------------------------------------------------------------------ queries
    def resolve(self, scale: int, cls: int) -> int | None:
        """The bank a class uses: its own, else the background bank (as the authors do), else None."""
        if cls in self.banks[scale]:
            return cls
        return BACKGROUND if BACKGROUND in self.banks[scale] else None

    def search(self, scale: int, cls: int, queries: np.ndarray, k: int) -> np.ndarray:
        bank = self.banks[scale][cls]
        return search(bank.index, bank.patches, queries, k, self.cfg, bank.mean)

    def patches(self, scale: int, cls: int, ids: np.ndarray) -> np.ndarray:
        """Float32 [-1, 1] patches of a class bank (sorted ids read the memmap sequentially)."""
        return to_unit(self.banks[scale][cls].patches[ids])

    def mean(self, scale: int, cls: int) -> np.ndarray:
        return self.banks[scale][cls].mean

    def summary(self) -> str:
        lines = [f"memory banks at {self.root} (segmenter {self.meta.get('segmenter')})"]
        for (size, stride), banks in zip(self.scales, self.banks):
            counts = ", ".join(f"{'bg' if c == BACKGROUND else c}: {b.count:,}" for c, b in sorted(banks.items()))
            lines.append(f"  {size}x{size}/{stride}: {sum(b.count for b in banks.values()):,} entries ({counts})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ storage
    @classmethod
    def load(cls, root: str | Path, cfg, device="cpu") -> "MemoryBanks":
        root = Path(root)
        if not (root / "meta.json").exists():
            raise DataError(f"no memory banks at {root} (meta.json missing): build them with "
                                    "`art2real banks build` or art2real.bank.memory.build_banks")
        return cls(root, json.loads((root / "meta.json").read_text()), cfg, device)

    @classmethod
    def from_arrays(cls, arrays: dict[tuple[int, int], dict[int, np.ndarray]], root: str | Path, cfg,
                    meta: dict | None = None, device="cpu") -> "MemoryBanks":
        """Banks from given uint8 patch arrays {(size, stride): {class: (N, 3 p p)}} (tests, imports)."""
        root = Path(root)
        tmp = _fresh_tmp(root)
        counts = {}
        for (size, stride), classes in arrays.items():
            folder = tmp / _scale_dir(size, stride)
            folder.mkdir(parents=True)
            counts[_scale_dir(size, stride)] = {}
            for c, patches in classes.items():
                patches = np.ascontiguousarray(patches, dtype=np.uint8)
                patches.tofile(folder / f"c{c}.u8")
                _finish_class(folder / f"c{c}.u8", len(patches), patches.shape[1],
                              to_unit(patches).mean(0, dtype=np.float64), cfg)
                counts[_scale_dir(size, stride)][str(c)] = len(patches)
        meta = {"format": FORMAT, "scales": [list(s) for s in arrays], "counts": counts, **(meta or {})}
        write_json(tmp / "meta.json", meta)
        _commit(tmp, root)
        return cls.load(root, cfg, device)


def _device_name(device) -> str:
    """``cuda`` resolved to the current GPU now (in the thread that builds the banks), as torch places tensors."""
    gpu = cuda_index(device)
    return "cpu" if gpu is None else f"cuda:{gpu}"


def _fresh_tmp(root: Path) -> Path:
    tmp = root.parent / f".{root.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _commit(tmp: Path, root: Path) -> None:
    """Swap the finished build into place; the old banks are removed only afterwards."""
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        os.replace(root, old)
    os.replace(tmp, root)
    shutil.rmtree(old, ignore_errors=True)


def _finish_class(path: Path, count: int, dim: int, mean: np.ndarray, cfg, seed: int = 0) -> str:
    np.save(path.with_suffix(".mean.npy"), mean.astype(np.float32))
    patches = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, dim))
    index, spec = build_index(patches, cfg, seed, mean=mean.astype(np.float32))
    faiss.write_index(index, str(path.with_suffix(".faiss")))
    return spec


def fingerprint(paths: list[Path], segmenter_name: str, size: int, cfg) -> dict:
    """What a build depends on; file names, sizes and times stand for the photos, so checking it decodes none."""
    return {"format": FORMAT, "segmenter": segmenter_name, "size": size, "max_photos": cfg.max_photos,
            "scales": [list(s) for s in cfg.scales], "class_threshold": cfg.class_threshold,
            "index": [cfg.metric, cfg.index, cfg.ivf_min, cfg.pcasq_min, cfg.pca_dim, cfg.train_size],
            "photos": [[p.name, *file_stamp(p)] for p in paths]}


@torch.no_grad()
def build_banks(photos: str | Path, segmenter, root: str | Path, cfg, size: int, batch_size: int = 8,
                progress: bool = True, device="cpu", seed: int = 0) -> MemoryBanks:
    """Segment every readable photo of a folder and stream its patches into per-scale, per-class banks.

    Peak memory is one batch of patches plus the index being built: patches go straight to disk. ``device``
    runs the segmenter, and the returned banks search on it (see :class:`MemoryBanks`).
    """
    root = Path(root)
    stamp = fingerprint(list_images(photos), segmenter.name, size, cfg)
    if (root / "manifest.json").exists():
        built = json.loads((root / "manifest.json").read_text())
        if built == stamp:
            return MemoryBanks.load(root, cfg, device)
        if {**built, "index": None} == {**stamp, "index": None}:  # same patches, other index settings
            return _reindex(root, cfg, stamp, progress, seed, device)
    start = time.perf_counter()
    images = ImageFolder(photos, size, cfg.max_photos)
    tmp = _fresh_tmp(root)
    try:
        counts, sums = _stream_patches(images, segmenter, cfg, tmp, batch_size, progress, device)
        meta_counts, specs = {}, {}
        for (size_p, stride, c), n in tqdm(counts.items(), desc="memory banks: indexes", disable=not progress):
            scale_key = _scale_dir(size_p, stride)
            path = tmp / scale_key / f"c{c}.u8"
            meta_counts.setdefault(scale_key, {})[str(c)] = n
            if n == 0:
                path.unlink()
                continue
            mean = sums[size_p, stride, c] / n / 127.5 - 1.0
            specs.setdefault(scale_key, {})[str(c)] = _finish_class(path, n, 3 * size_p ** 2, mean, cfg, seed)
        import art2real

        meta = {"format": FORMAT, "scales": [list(s) for s in cfg.scales], "counts": meta_counts,
                "segmenter": segmenter.name, "class_names": segmenter.class_names, "size": size,
                "class_threshold": cfg.class_threshold, "index_specs": specs,
                "sources": {"folder": str(Path(photos).resolve()), "photos": len(images),
                            "skipped": [str(p) for p, _ in images.report.bad]},
                "versions": {"art2real": art2real.__version__, "faiss": faiss.__version__,
                             "torch": torch.__version__},
                "build_seconds": round(time.perf_counter() - start, 2)}
        write_json(tmp / "meta.json", meta)
        if hasattr(segmenter, "save"):
            segmenter.save(tmp / "segmenter.npz")
        write_json(tmp / "manifest.json", stamp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an interrupted build leaves nothing that could be loaded
        raise
    _commit(tmp, root)
    return MemoryBanks.load(root, cfg, device)


def _reindex(root: Path, cfg, stamp: dict, progress: bool, seed: int, device="cpu") -> MemoryBanks:
    """New indexes over the patches already on disk. Each index file is replaced atomically and the manifest is
    written last, so an interrupted run is redone (whole) by the next build."""
    meta = json.loads((root / "meta.json").read_text())
    start = time.perf_counter()
    dims = {_scale_dir(p, s): 3 * p * p for p, s in meta["scales"]}
    classes = [(scale_key, c, n) for scale_key, per in meta["counts"].items() for c, n in per.items() if n > 0]
    for scale_key, c, n in tqdm(classes, desc="memory banks: indexes", disable=not progress):
        path = root / scale_key / f"c{c}.u8"
        patches = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, dims[scale_key]))
        index, spec = build_index(patches, cfg, seed, mean=np.load(path.with_suffix(".mean.npy")))
        with atomic_path(path.with_suffix(".faiss")) as tmp:
            faiss.write_index(index, str(tmp))
        meta["index_specs"][scale_key][c] = spec
    meta["index_seconds"] = round(time.perf_counter() - start, 2)
    write_json(root / "meta.json", meta)
    write_json(root / "manifest.json", stamp)
    return MemoryBanks.load(root, cfg, device)


def _stream_patches(images, segmenter, cfg, tmp: Path, batch_size, progress, device):
    """Append each batch's patches to the class files; returns per-(size, stride, class) counts and sums."""
    n_classes = len(segmenter.class_names)
    keys = list(range(n_classes)) + [BACKGROUND]
    sums = {(p, s, c): np.zeros(3 * p * p, np.float64) for p, s in cfg.scales for c in keys}
    counts = {key: 0 for key in sums}
    with ExitStack() as stack:
        files = {}
        for p, s in cfg.scales:
            (tmp / _scale_dir(p, s)).mkdir()
            for c in keys:
                files[p, s, c] = stack.enter_context(open(tmp / _scale_dir(p, s) / f"c{c}.u8", "wb"))
        for batch in tqdm(images.batches(batch_size), desc="memory banks: patches", disable=not progress,
                          total=-(-len(images) // batch_size)):
            batch = batch.to(device)
            labels = segmenter.labels(batch)
            pixels = to_u8(batch).float()
            for p, s in cfg.scales:
                patches = extract_patches(pixels, p, s).to(torch.uint8).reshape(-1, 3 * p * p)
                member = bank_membership(class_fractions(labels, n_classes, p, s),
                                         cfg.class_threshold).reshape(-1, n_classes + 1)
                for col, c in enumerate(keys):
                    rows = patches[member[:, col]].cpu().numpy()
                    files[p, s, c].write(rows.tobytes())
                    sums[p, s, c] += rows.sum(0, dtype=np.float64)
                    counts[p, s, c] += len(rows)
    return counts, sums


def import_authors(source: str | Path, root: str | Path, cfg, scales=((4, 4), (8, 5), (16, 6)),
                   chunk: int = 1 << 20, device="cpu") -> MemoryBanks:
    """Convert the authors' ``data_for_patch_retrieval`` layout into this one.

    Theirs: ``patch_size_<p>/memory_bank_patches_binary/<class>.bin`` (float32 in [0, 1], rows of 3 p p),
    ``means/<class>.npy`` and ``faiss_indexes/<class>.index``; class 0 is their background. Patches become
    uint8 (x 255, rounded: lossless for 8-bit photos), means are kept, and their indexes are reused as they are
    (they were searched with [-1, 1] queries).
    """
    source, root = Path(source), Path(root)
    tmp = _fresh_tmp(root)
    counts = {}
    for size, stride in scales:
        src = source / f"patch_size_{size}"
        if not src.is_dir():
            raise DataError(f"{src} not found: expected the authors' data_for_patch_retrieval layout")
        out = tmp / _scale_dir(size, stride)
        out.mkdir()
        counts[_scale_dir(size, stride)] = {}
        dim = 3 * size * size
        for binary in sorted((src / "memory_bank_patches_binary").glob("*.bin")):
            c = BACKGROUND if binary.stem == "0" else int(binary.stem)
            data = np.memmap(binary, dtype=np.float32, mode="r").reshape(-1, dim)
            with open(out / f"c{c}.u8", "wb") as f:
                for start in range(0, len(data), chunk):
                    f.write(np.clip(np.rint(data[start:start + chunk] * 255), 0, 255).astype(np.uint8).tobytes())
            shutil.copyfile(src / "means" / f"{binary.stem}.npy", out / f"c{c}.mean.npy")
            index = src / "faiss_indexes" / f"{binary.stem}.index"
            if index.exists() and cfg.metric == "l2":  # theirs search raw patches by L2
                shutil.copyfile(index, out / f"c{c}.faiss")
            else:
                _finish_class(out / f"c{c}.u8", len(data), dim, np.load(out / f"c{c}.mean.npy"), cfg)
            counts[_scale_dir(size, stride)][str(c)] = len(data)
    write_json(tmp / "meta.json", {"format": FORMAT, "scales": [list(s) for s in scales], "counts": counts,
                                   "segmenter": "authors (imported)", "sources": {"folder": str(source)}})
    _commit(tmp, root)
    return MemoryBanks.load(root, cfg, device)
