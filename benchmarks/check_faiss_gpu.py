"""The kit's FAISS-GPU code against the real faiss-gpu wheel, in a fresh virtual environment.

Creates a venv, downloads and installs ``faiss-gpu`` (with its CUDA runtime wheels) from the package index, and
runs the kit's bank code there (torch and the rest come from the kit's environment; faiss from the venv) as far
as the machine allows: with no GPU, that faiss-gpu imports, its GPU classes exist, ``GpuParameterSpace`` sets
nprobe through the paper's PCA pre-transform, ``to_gpu`` keeps the CPU index and search works; with GPUs, also
that the index moves to the configured GPU and is searched there with the same results.

Run: ``python benchmarks/check_faiss_gpu.py [--venv DIR] [--no-save]``; writes results/benchmarks/faiss_gpu.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

FAISS_GPU = "faiss-gpu==1.15.1"
MARK = "RESULT "


def _run(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - start


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def setup(venv: Path) -> dict:
    """A fresh venv with faiss-gpu; the kit's own packages (torch, ...) are reachable after the venv's."""
    import numpy

    venv.mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    wheels = venv / "wheels"
    pins = [FAISS_GPU, f"numpy=={numpy.__version__}"]  # numpy as the kit's, which torch was built against
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    download_s = _run(pip + ["download", "--no-cache-dir", "--only-binary=:all:", "-d", str(wheels), *pins])
    install_s = _run(pip + ["install", "--no-index", "--find-links", str(wheels), *pins])
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_art2real_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # appended: venv first
    downloaded = {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(wheels.glob("*.whl"))}
    return {"python": str(python), "wheels_mb": downloaded, "download_mb": round(sum(downloaded.values()), 1),
            "download_s": round(download_s, 1), "install_s": round(install_s, 1),
            "installed_mb": round(_size_mb(site), 1)}


def child() -> dict:
    """Runs inside the venv: the kit's bank code with the real faiss-gpu."""
    import faiss
    import numpy as np

    from art2real.bank.index import build_index, is_gpu_index, parameter_space, search, to_gpu
    from art2real.bank.patches import to_unit
    from art2real.config import get_config

    out = {"faiss": faiss.__version__, "faiss_file": faiss.__file__}
    assert faiss.__file__.startswith(sys.prefix), f"faiss came from {faiss.__file__}, not the fresh venv"
    print(f"faiss-gpu {faiss.__version__} imported from the fresh environment ({faiss.__file__})")
    for name in ("StandardGpuResources", "GpuParameterSpace", "index_cpu_to_gpu"):
        assert hasattr(faiss, name), f"faiss-gpu has no {name}"
        print(f"{name}: present")
    gpus = out["gpus"] = faiss.get_num_gpus()
    print(f"GPUs FAISS sees: {gpus}")

    # the paper's recipe at a size the CPU builds in seconds: 8x8 patches (192-d), PCA64, IVF, SQ8
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (200, 192))
    data = np.clip(centres[rng.integers(0, 200, 30_000)] + rng.normal(0, 12, (30_000, 192)), 0, 255).astype(np.uint8)
    queries = to_unit(np.clip(centres[rng.integers(0, 200, 200)] + rng.normal(0, 12, (200, 192)), 0, 255))
    cfg = get_config("paper", {"bank.train_size": 30_000}).bank
    index, spec = build_index(data, cfg)
    out["spec"] = spec
    print(f"built {spec} ({type(index).__name__}) over {len(data):,} patches")

    space = faiss.GpuParameterSpace()
    space.set_index_parameter(index, "nprobe", cfg.nprobe)
    assert faiss.extract_index_ivf(index).nprobe == cfg.nprobe
    print(f"GpuParameterSpace sets nprobe through a CPU pre-transform (nprobe={cfg.nprobe} on the IVF inside)")

    moved = to_gpu(index, "cuda:0")
    if gpus == 0:
        assert moved is index and not is_gpu_index(moved)
        print("to_gpu('cuda:0') with 0 GPUs returns the CPU index; search uses the CPU ParameterSpace")
    else:
        inner = faiss.downcast_index(moved.index) if hasattr(moved, "index") else moved
        assert is_gpu_index(moved) and type(parameter_space(moved)).__name__ == "GpuParameterSpace"
        print(f"to_gpu('cuda:0') -> {type(moved).__name__} around {type(inner).__name__}; GpuParameterSpace")
    d = (to_unit(data) ** 2).sum(1)[None] - 2 * queries @ to_unit(data).T
    exact = np.argsort(d, 1, kind="stable")[:, :5]
    ids = search(moved, data, queries, 5, cfg)
    out["recall_at_5"] = float((ids == exact).mean())
    print(f"search recall@5 after re-ranking: {out['recall_at_5']:.3f} (nprobe {cfg.nprobe}, rerank {cfg.rerank})")
    if gpus > 0:
        cpu_ids = search(index, data, queries, 5, cfg)
        out["gpu_equals_cpu"] = float((ids == cpu_ids).mean())
        print(f"GPU and CPU search agree on {out['gpu_equals_cpu']:.3f} of the neighbours")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="where to create the venv (default: <cache>/faiss-gpu-venv)")
    parser.add_argument("--no-save", action="store_true", help="do not write results/benchmarks/faiss_gpu.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    if args.child:
        print(MARK + json.dumps(child()))
        return
    sys.path[:0] = [str(repo), str(Path(__file__).resolve().parent)]
    from art2real.paths import cache_dir

    venv = args.venv or cache_dir() / "faiss-gpu-venv"
    env_info = setup(venv)
    print(f"{FAISS_GPU}: downloaded {env_info['download_mb']} MB in {env_info['download_s']} s "
          f"({', '.join(f'{k} {v} MB' for k, v in env_info['wheels_mb'].items())}); installed in "
          f"{env_info['install_s']} s, {env_info['installed_mb']} MB on disk")
    run = subprocess.run([env_info["python"], __file__, "--child"], check=False, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    print("".join(line + "\n" for line in run.stdout.splitlines() if not line.startswith(MARK)), end="")
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        sys.exit(run.returncode)
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith(MARK))[len(MARK):])
    if not args.no_save:
        from common import save

        save("faiss_gpu", {"environment": env_info, "check": result})


if __name__ == "__main__":
    main()
