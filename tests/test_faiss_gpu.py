"""FAISS on a GPU without one: the parameter space chosen for GPU indexes (bare, and inside the PCA pre-transform
that ``index_cpu_to_gpu`` keeps on the CPU), the GPU ``to_gpu`` picks from the configured device, and the banks
passing their device down. Fakes stand for faiss-gpu's classes (faiss-cpu has none of them); they follow
faiss/gpu/GpuAutoTune.cpp and faiss/gpu/GpuCloner.cpp in what they do. The ``slow`` test installs the real
faiss-gpu wheel in a fresh virtual environment (benchmarks/check_faiss_gpu.py)."""
import logging
import subprocess
import sys
from typing import ClassVar

import faiss
import numpy as np
import pytest
import torch

from art2real.bank import index as bank_index
from art2real.bank.index import build_index, is_gpu_index, parameter_space, search, to_gpu
from art2real.bank.memory import MemoryBanks
from art2real.bank.patches import to_unit
from art2real.config import GPU_MAX_K, get_config
from art2real.errors import ConfigError

from .conftest import REPO
from .fake_cuda import fake_cuda


# ---------------------------------------------------------------------------------------------- fakes
class GpuIndexIVFScalarQuantizer:
    """faiss-gpu's IVF index as far as the kit touches it: ``nprobe`` is its own attribute (the CPU
    ParameterSpace cannot reach it), ``ntotal``, ``search`` (here by the CPU index it was copied from)."""

    def __init__(self, cpu, gpu: int):
        self.cpu, self.gpu, self.nprobe = cpu, gpu, 1
        self.searched_with: list[int] = []

    @property
    def ntotal(self) -> int:
        return self.cpu.ntotal

    def search(self, x, k):
        if k > GPU_MAX_K or self.nprobe > GPU_MAX_K:
            raise RuntimeError(f"GPU index only supports min/max-K selection up to {GPU_MAX_K}")
        self.searched_with.append(self.nprobe)
        self.cpu.nprobe = self.nprobe
        return self.cpu.search(x, k)


class IndexPreTransform:
    """What index_cpu_to_gpu makes of ``PCA64,IVFn,SQ8``: a CPU pre-transform (the real PCA) around the GPU copy
    of the index inside."""

    def __init__(self, source, inner):
        self.source, self.index = source, inner  # faiss copies the transform; the fake keeps its source alive
        self.cpu = faiss.downcast_VectorTransform(source.chain.at(0))

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, x, k):
        return self.index.search(self.cpu.apply(x), k)


class GpuParameterSpace:
    """GpuParameterSpace::set_index_parameter: nprobe of a GPU IVF index, anything else to the CPU rules, which
    look through a pre-transform and call back (the method is virtual) for the index inside."""

    calls: ClassVar[list[tuple[str, str, float]]] = []

    def set_index_parameter(self, index, name, value):
        GpuParameterSpace.calls.append((type(index).__name__, name, value))
        if name == "nprobe" and type(index).__name__.startswith("GpuIndexIVF"):
            index.nprobe = int(value)
        elif type(index).__name__ == "IndexPreTransform":
            self.set_index_parameter(index.index, name, value)
        else:
            raise RuntimeError(f"ParameterSpace::set_index_parameter:could not set parameter {name}")


class GpuFaiss:
    """faiss-gpu's module-level entry points, recording what they are asked."""

    def __init__(self, gpus: int):
        self.gpus, self.resources, self.moves = gpus, [], []

    def get_num_gpus(self):
        return self.gpus

    def StandardGpuResources(self):  # faiss's name
        self.resources.append(object())
        return self.resources[-1]

    def index_cpu_to_gpu(self, resources, gpu, index):
        self.moves.append((resources, gpu, type(index).__name__))
        if isinstance(index, faiss.IndexPreTransform):
            return IndexPreTransform(index, self.index_cpu_to_gpu(resources, gpu, faiss.downcast_index(index.index)))
        if isinstance(index, faiss.IndexIVFScalarQuantizer):
            return GpuIndexIVFScalarQuantizer(index, gpu)
        raise RuntimeError(f"no GPU version of {type(index).__name__}")


@pytest.fixture
def gpu_faiss(monkeypatch):
    """faiss as faiss-gpu on a machine with 2 GPUs (set ``.gpus`` to change)."""
    fake = GpuFaiss(2)
    for name in ("get_num_gpus", "StandardGpuResources", "index_cpu_to_gpu"):
        monkeypatch.setattr(faiss, name, getattr(fake, name), raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", GpuParameterSpace, raising=False)
    monkeypatch.setattr(bank_index, "_GPU_RESOURCES", {})
    GpuParameterSpace.calls = []
    return fake


def _bank_cfg(**kw):
    return get_config("smoke", {f"bank.{k}": v for k, v in kw.items()}).bank


def _clustered(n=3000, dim=48, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (40, dim))
    data = np.clip(centres[rng.integers(0, 40, n)] + rng.normal(0, 20, (n, dim)), 0, 255).astype(np.uint8)
    queries = to_unit(np.clip(centres[rng.integers(0, 40, 50)] + rng.normal(0, 20, (50, dim)), 0, 255))
    return data, queries


# ---------------------------------------------------------------------------------------------- tests
def test_cpu_indexes_are_not_gpu_indexes_even_inside_a_pre_transform():
    data, _ = _clustered()
    cfg = _bank_cfg(index="pcasq", pca_dim=16, train_size=3000)
    index, spec = build_index(data, cfg)
    assert spec.startswith("PCA16,IVF") and type(index).__name__ == "IndexPreTransform"
    assert not is_gpu_index(index) and type(parameter_space(index)).__name__ == "ParameterSpace"
    assert not is_gpu_index(faiss.IndexFlatL2(4))


@pytest.mark.parametrize("kind", ["ivf", "pcasq"])
def test_gpu_indexes_are_searched_with_nprobe_set_through_the_gpu_parameter_space(kind, gpu_faiss):
    data, queries = _clustered()
    cfg = _bank_cfg(index=kind, nprobe=48, rerank=128, pca_dim=16, train_size=3000)
    cpu, _ = build_index(data, cfg)
    expected = search(cpu, data, queries, 5, cfg)  # the CPU index, nprobe set by the CPU ParameterSpace
    gpu = to_gpu(cpu, "cuda:1")
    inner = gpu.index if kind == "pcasq" else gpu
    assert type(gpu).__name__ == ("IndexPreTransform" if kind == "pcasq" else "GpuIndexIVFScalarQuantizer")
    assert is_gpu_index(gpu) and inner.gpu == 1
    # faiss's own CPU ParameterSpace cannot set nprobe on what index_cpu_to_gpu returns
    with pytest.raises((RuntimeError, TypeError)):
        faiss.ParameterSpace().set_index_parameter(gpu, "nprobe", 48)
    ids = search(gpu, data, queries, 5, cfg)
    assert GpuParameterSpace.calls[0] == (type(gpu).__name__, "nprobe", 48)
    assert inner.searched_with == [48]  # set before the search, on the GPU index itself
    assert np.array_equal(ids, expected)


def test_to_gpu_takes_the_configured_gpu(gpu_faiss, caplog):
    index, _ = build_index(_clustered()[0], _bank_cfg(index="ivf", train_size=3000))
    assert to_gpu(index, "cpu") is index and to_gpu(index, torch.device("cpu")) is index
    assert gpu_faiss.moves == [] and gpu_faiss.resources == []  # the CPU config moves nothing
    assert to_gpu(index, "cuda:1").gpu == 1
    assert to_gpu(index, torch.device("cuda", 0)).gpu == 0
    assert to_gpu(index, "cuda:1").gpu == 1
    assert [gpu for _, gpu, _ in gpu_faiss.moves] == [1, 0, 1]
    assert len(gpu_faiss.resources) == 2 and gpu_faiss.moves[0][0] is gpu_faiss.moves[2][0]  # one per GPU, kept
    with fake_cuda(device_count=2):  # "cuda" is the current device, as for torch tensors
        assert to_gpu(index, "cuda").gpu == 0
        with torch.cuda.device(1):
            assert to_gpu(index, "cuda").gpu == 1
    gpu_faiss.gpus = 1
    with caplog.at_level(logging.WARNING, "art2real.bank.index"):
        assert to_gpu(index, "cuda:1") is index  # FAISS sees fewer GPUs than torch was told: CPU search
    assert "FAISS sees 1 GPU(s), not GPU 1" in caplog.text
    gpu_faiss.gpus = 0
    assert to_gpu(index, "cuda:0") is index


def test_to_gpu_keeps_the_cpu_index_without_faiss_gpu_or_a_gpu_version(gpu_faiss, monkeypatch, caplog):
    flat = faiss.IndexFlatL2(8)
    with caplog.at_level(logging.WARNING, "art2real.bank.index"):
        assert to_gpu(flat, "cuda:0") is flat  # the fake cloner has no GPU flat index
    assert "could not move a IndexFlatL2 to GPU 0 (no GPU version of IndexFlatL2)" in caplog.text
    monkeypatch.delattr(faiss, "StandardGpuResources")  # faiss-cpu
    moves = len(gpu_faiss.moves)
    assert to_gpu(flat, "cuda:0") is flat and len(gpu_faiss.moves) == moves


def test_banks_search_on_the_device_they_were_loaded_for(gpu_faiss, tmp_path):
    data, queries = _clustered(seed=2)
    cfg = _bank_cfg(index="pcasq", ivf_min=100, pcasq_min=100, pca_dim=16, train_size=3000, nprobe=40)
    MemoryBanks.from_arrays({(4, 4): {0: data}}, tmp_path / "b", cfg)
    on_cpu = MemoryBanks.load(tmp_path / "b", cfg)
    on_gpu1 = MemoryBanks.load(tmp_path / "b", cfg, device="cuda:1")
    assert (on_cpu.device, on_gpu1.device) == ("cpu", "cuda:1")
    expected = on_cpu.search(0, 0, queries, 5)
    assert gpu_faiss.moves == []  # CPU banks stay on the CPU even where FAISS has GPUs
    assert np.array_equal(on_gpu1.search(0, 0, queries, 5), expected)
    assert [gpu for _, gpu, _ in gpu_faiss.moves] == [1, 1]  # the pre-transform and the IVF index inside
    assert on_gpu1.banks[0][0].index.index.searched_with == [40]


def test_gpu_k_selection_limit_is_checked_by_the_config():
    for key in ("bank.nprobe", "bank.rerank", "cx.k"):
        with pytest.raises(ConfigError, match=f"{key} must be >= 1 and <= {GPU_MAX_K}; got {GPU_MAX_K + 1}"):
            get_config("smoke", {"bank.rerank": GPU_MAX_K, key: GPU_MAX_K + 1})
    get_config("smoke", {"bank.nprobe": GPU_MAX_K, "bank.rerank": GPU_MAX_K, "cx.k": GPU_MAX_K})  # the limit passes


@pytest.mark.slow
def test_faiss_gpu_wheel_in_a_fresh_environment(tmp_path):
    """The real faiss-gpu wheel from PyPI (about 1.6 GB installed with its CUDA runtime wheels)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "check_faiss_gpu.py"), "--venv",
                          str(tmp_path / "venv"), "--no-save"], check=False, capture_output=True, text=True,
                         timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("faiss-gpu 1.15.1 imported from the fresh environment", "StandardGpuResources: present",
                 "GpuParameterSpace: present", "GpuParameterSpace sets nprobe through a CPU pre-transform",
                 "search recall@5 after re-ranking"):
        assert line in out.stdout, out.stdout
