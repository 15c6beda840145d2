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

import math

import faiss
import numpy as np

from .patches import to_unit


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
        space = faiss.GpuParameterSpace() if "Gpu" in type(index).__name__ else faiss.ParameterSpace()
        space.set_index_parameter(index, "nprobe", cfg.nprobe)
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


_GPU_RESOURCES = []


def to_gpu(index: faiss.Index) -> faiss.Index:
    """Move an index to the GPU when FAISS has GPU support (faiss-gpu) and a GPU is present; otherwise, or when
    the index type has no GPU version, return it unchanged (CPU search)."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    try:
        if not _GPU_RESOURCES:
            _GPU_RESOURCES.append(faiss.StandardGpuResources())  # one per process, kept alive
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)
    except RuntimeError:
        return index
