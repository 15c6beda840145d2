"""FAISS indexes chosen by bank size, with exact re-ranking.

- below ``ivf_min`` vectors: exact search (IndexFlatL2);
- below ``pcasq_min``: IVF (nlist = 4 sqrt(N)) over 8-bit scalar-quantised codes, nprobe probes, then the
  ``rerank`` best candidates are re-ranked with exact L2 on the raw patches;
- from ``pcasq_min`` (by default, every IVF bank): PCA to ``pca_dim`` dimensions when patches have more, then
  IVF + SQ8 (the paper's recipe), then exact re-ranking.

Raw patches stay in the bank's uint8 memory-mapped file, so an index holds codes only (1 byte a dimension).
Patches and queries are [-1, 1] float32, the space of G's outputs. The search metric (``bank.metric``) is
``l2``, squared L2 on the raw patches as in the authors' code, or ``cosine``, eq. 1's distance: both sides centred
on the class mean and L2-normalised (L2 between unit vectors ranks as 1 - cos).
"""
from __future__ import annotations

import logging
import math
import threading

import faiss
import numpy as np

from ..config import cuda_index
from .patches import to_unit

log = logging.getLogger(__name__)


def choose_kind(n: int, cfg) -> str:
    if cfg.index != "auto":
        return cfg.index
    if n < cfg.ivf_min:
        return "flat"
    return "ivf" if n < cfg.pcasq_min else "pcasq"


def factory_string(kind: str, n: int, dim: int, cfg) -> str:
    nlist = max(1, int(4 * math.sqrt(n)))
    if kind == "flat":
        return "Flat"
    if kind == "ivf":
        return f"IVF{nlist},SQ8"
    if kind == "pcasq":
        pca = f"PCA{cfg.pca_dim}," if dim > cfg.pca_dim else ""
        return f"{pca}IVF{nlist},SQ8"
    raise ValueError(f"unknown index kind {kind!r}; choose auto, flat, ivf or pcasq")


def search_space(vectors: np.ndarray, cfg, mean: np.ndarray | None = None) -> np.ndarray:
    """[-1, 1] float32 rows -> the vectors the index compares under ``cfg.metric``."""
    if cfg.metric == "l2":
        return vectors
    if mean is None:
        raise ValueError("the cosine search metric needs the class mean (eq. 1 centres on it)")
    centred = vectors - mean.astype(np.float32)
    return centred / np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-12)


def build_index(patches_u8: np.ndarray, cfg, seed: int = 0, chunk: int = 200_000,
                mean: np.ndarray | None = None) -> tuple[faiss.Index, str]:
    """Train (on a random subset) and fill an index over the rows of a uint8 (N, D) array or memmap; ``mean`` is
    the class mean (needed by the cosine metric)."""
    n, dim = patches_u8.shape
    kind = choose_kind(n, cfg)
    spec = factory_string(kind, n, dim, cfg)
    index = faiss.index_factory(dim, spec, faiss.METRIC_L2)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, min(n, cfg.train_size), replace=False))
        index.train(search_space(to_unit(patches_u8[sample]), cfg, mean))
    for start in range(0, n, chunk):
        index.add(search_space(to_unit(patches_u8[start:start + chunk]), cfg, mean))
    return index, spec


def search(index: faiss.Index, patches_u8: np.ndarray, queries: np.ndarray, k: int, cfg,
           mean: np.ndarray | None = None) -> np.ndarray:
    """Ids (n, k) of the k nearest bank patches of each query row (float32 in [-1, 1]) under ``cfg.metric``;
    -1 pads when the bank has fewer than k patches. Approximate indexes are re-ranked exactly over ``rerank``
    candidates."""
    queries = np.ascontiguousarray(search_space(np.asarray(queries, np.float32), cfg, mean), dtype=np.float32)
    k_eff = min(k, index.ntotal)
    if "Flat" in type(index).__name__ and "IVF" not in type(index).__name__:
        _, ids = index.search(queries, k_eff)
    else:
        parameter_space(index).set_index_parameter(index, "nprobe", cfg.nprobe)
        _, candidates = index.search(queries, max(k_eff, min(cfg.rerank, index.ntotal)))
        ids = rerank(patches_u8, queries, candidates, k_eff, lambda v: search_space(v, cfg, mean))
    if k_eff < k:
        ids = np.concatenate([ids, -np.ones((len(ids), k - k_eff), ids.dtype)], 1)
    return ids


def rerank(patches_u8: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int, space=None,
           chunk: int = 256) -> np.ndarray:
    """Exact L2 among each query's candidates, after ``space`` (the metric's transform of bank vectors; queries
    come transformed); returns the k best ids per query (chunks bound the memory)."""
    out = np.empty((len(queries), k), dtype=candidates.dtype)
    for start in range(0, len(queries), chunk):
        cand = candidates[start:start + chunk]
        valid = cand >= 0
        flat = np.unique(cand[valid])
        vectors = to_unit(patches_u8[flat])  # one sorted gather from the memmap
        vectors = space(vectors) if space is not None else vectors
        pos = np.searchsorted(flat, np.where(valid, cand, flat[0]))
        q = queries[start:start + chunk]
        d = (vectors ** 2).sum(-1)[pos] - 2 * np.einsum("nkd,nd->nk", vectors[pos], q)  # + |q|^2, same per row
        d[~valid] = np.inf
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        out[start:start + chunk] = np.take_along_axis(cand, order, 1)
    return out


def is_gpu_index(index) -> bool:
    """True for a FAISS GPU index and for a pre-transform (PCA) around one. ``index_cpu_to_gpu`` keeps an
    ``IndexPreTransform`` on the CPU and moves only the index inside it, so the paper's ``PCA64,IVFn,SQ8`` comes
    back as a CPU ``IndexPreTransform`` around a ``GpuIndexIVFScalarQuantizer``."""
    while type(index).__name__ == "IndexPreTransform":
        index = index.index
        if isinstance(index, faiss.Index):
            index = faiss.downcast_index(index)  # the attribute is typed as the base class
    return type(index).__name__.startswith("Gpu")


def parameter_space(index):
    """The parameter space that can set ``nprobe`` on this index. The CPU ``ParameterSpace`` looks through a
    pre-transform but knows only CPU IVF indexes (a GPU IVF inside raises "could not set parameter nprobe");
    ``GpuParameterSpace`` handles GPU IVF indexes and hands everything else, pre-transforms included, to the CPU
    rules, which call back into it for the index inside (faiss/gpu/GpuAutoTune.cpp, faiss/AutoTune.cpp)."""
    return faiss.GpuParameterSpace() if is_gpu_index(index) else faiss.ParameterSpace()


_GPU_RESOURCES: dict[int, object] = {}  # one StandardGpuResources per GPU and process, kept alive
_GPU_LOCK = threading.Lock()  # banks load lazily, in the retrieval thread as well as the main one


def to_gpu(index: faiss.Index, device="cuda") -> faiss.Index:
    """The index on the GPU of ``device`` when that is a CUDA device, FAISS has GPU support (faiss-gpu) and sees
    that GPU; otherwise, or when the index type has no GPU version, the index unchanged (CPU search)."""
    gpu = cuda_index(device)  # as torch places tensors; FAISS numbers GPUs alike (both follow CUDA_VISIBLE_DEVICES)
    if gpu is None or not hasattr(faiss, "StandardGpuResources"):
        return index
    count = faiss.get_num_gpus()
    if gpu >= count:
        if count:
            log.warning("FAISS sees %d GPU(s), not GPU %d: memory bank search stays on the CPU", count, gpu)
        return index
    try:
        with _GPU_LOCK:
            if gpu not in _GPU_RESOURCES:
                _GPU_RESOURCES[gpu] = faiss.StandardGpuResources()
            resources = _GPU_RESOURCES[gpu]
        return faiss.index_cpu_to_gpu(resources, gpu, index)
    except RuntimeError as e:
        log.warning("FAISS could not move a %s to GPU %d (%s): it is searched on the CPU", type(index).__name__,
                    gpu, str(e).splitlines()[0] if str(e) else "no reason given")
        return index
