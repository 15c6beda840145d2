"""Seconds per training iteration of each preset, CycleGAN and Art2Real side by side in one process (median, and
min, which other load on a shared machine disturbs least), and where each part of an Art2Real step runs (device,
thread, FAISS index kind). ``ab_train.py`` compares two commits.

On CUDA the retrieval of an Art2Real step overlaps the rest of the generator step: G(x) goes to pinned host
memory in one non-blocking copy and a worker thread searches the banks meanwhile; ``retrieval_s`` is the time
the search takes and ``wait_s`` the time the main thread still waited for it (0 when fully hidden). On the CPU
retrieval runs inline (a second thread would compete for the same cores).

Art2Real at the paper preset uses the paper-scale banks of bench_banks.py when they exist (run it first), else
banks built from the demo photos (stated in the output). ``--stand-in`` shows the CUDA path's structure on a
machine without a GPU (tests/fake_cuda.py computes on the CPU; no timings then).

Run: ``python benchmarks/bench_train.py [--presets smoke demo cpu paper] [--repeat 5] [--device auto]
[--stand-in]``; writes results/benchmarks/train.json (not with --stand-in).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from art2real import methods  # noqa: E402
from art2real.bank.index import is_gpu_index  # noqa: E402
from art2real.bank.memory import MemoryBanks  # noqa: E402
from art2real.config import get_config, pick_device, seed_everything  # noqa: E402
from art2real.data.dataset import UnpairedDataset  # noqa: E402
from art2real.data.registry import dataset_root  # noqa: E402
from art2real.paths import cache_dir  # noqa: E402
from art2real.segment.kmeans import KMeansSegmenter  # noqa: E402
from art2real.semantic import SemanticContext, build_context, painting_masks  # noqa: E402


def paper_scale_context(cfg):
    root = cache_dir() / "bench_banks" / "banks"
    if not (root / "meta.json").exists():
        return build_context(cfg, progress=False), "banks from the demo photos (run bench_banks.py for paper scale)"
    banks = MemoryBanks.load(root, cfg.bank, pick_device(cfg.device))
    segmenter = KMeansSegmenter.load(root / "segmenter.npz")
    counts = {k: sum(v.values()) for k, v in banks.meta["counts"].items()}
    return SemanticContext(cfg, banks, segmenter, painting_masks(cfg, segmenter, progress=False)), \
        f"paper-scale banks {counts}"


def build(cfg, context=None) -> methods.Method:
    seed_everything(cfg.seed)
    return methods.get(cfg.method)(cfg, pick_device(cfg.device), context)


def one_batch(cfg) -> dict:
    d = cfg.data
    item = UnpairedDataset(dataset_root(d.dataset), d.image_size, "train", d.max_images, d.crop_margin, d.flip,
                           cfg.seed).item(0, 0)
    return {"A": item["A"][None], "B": item["B"][None], "A_name": [item["A_name"]], "A_place": item["A_place"][None]}


class Probes:
    """Wraps an Art2Real method's retrieval and the wait for it: where they ran, and how long."""

    def __init__(self, method):
        self.context, self.seen = method.context, {}
        self.retrieval_s: list[float] = []
        self.wait_s: list[float] = []
        loss_fn, retrieve, loss_from = self.context.loss_fn, self.context.loss_fn.retrieve, self.context.loss_from

        def probe_retrieve(fake, labels):
            self.seen["retrieval"] = (threading.current_thread().name, str(fake.device), fake.is_pinned())
            start = time.perf_counter()
            try:
                return retrieve(fake, labels)
            finally:
                self.retrieval_s.append(time.perf_counter() - start)

        def probe_loss_from(fake, pending):
            start = time.perf_counter()
            pending.result()
            self.wait_s.append(time.perf_counter() - start)
            self.seen["loss"] = (threading.current_thread().name, str(fake.device))
            return loss_from(fake, pending)

        loss_fn.retrieve, self.context.loss_from = probe_retrieve, probe_loss_from

    def where(self, method) -> list[str]:
        thread, device, pinned = self.seen["retrieval"]
        indexes = Counter(_describe(bank._index) for banks in self.context.banks.banks for bank in banks.values()
                          if bank._index is not None)
        return [f"networks G, F, D_Y, D_X, their losses and optimisers: {next(method.G.parameters()).device}",
                "G(x) to the host for retrieval: " + ("one non-blocking copy into pinned memory" if pinned else
                                                      f"none (G(x) is on {device} already)"),
                (f"retrieval (patch classes, FAISS search, exact re-ranking, gathering patches): thread {thread}, "
                 f"on {device} tensors"),
                "FAISS indexes searched: " + ", ".join(f"{n} x {kind}" for kind, n in sorted(indexes.items())),
                "contextual loss (eq. 1-6) and its backward: thread {}, on {}".format(*self.seen["loss"])]


def _describe(index) -> str:
    name = type(index).__name__
    if name == "IndexPreTransform":
        import faiss

        name = f"PCA + {type(faiss.downcast_index(index.index)).__name__}"
    return f"{name} ({'GPU' if is_gpu_index(index) else 'CPU'})"


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def structure(preset: str, device: str) -> None:
    cfg = get_config(preset, {"data.dataset": "demo", "train.validate_every": 0}, method="art2real", device=device)
    method = build(cfg, build_context(cfg, progress=False))
    probes = Probes(method)
    method.train_step(one_batch(cfg))
    print(f"{preset}, Art2Real on {cfg.device}: what runs where")
    for line in probes.where(method):
        print("  " + line)


def timings(preset: str, device: str, repeat: int) -> dict:
    over = {"data.dataset": "demo", "train.validate_every": 0}
    cyc_cfg = get_config(preset, over, method="cyclegan", device=device)
    cfg = get_config(preset, over, method="art2real", device=device)
    context, banks_note = paper_scale_context(cfg) if preset == "paper" else (build_context(cfg, False), "")
    cyc, a2r = build(cyc_cfg), build(cfg, context)
    probes = Probes(a2r)
    batch = one_batch(cfg)
    dev = pick_device(device)
    times = {"cyclegan": [], "art2real": []}
    for method in (cyc, a2r):  # warm-up
        method.train_step(batch)
    probes.retrieval_s.clear()
    probes.wait_s.clear()
    for _ in range(repeat):  # interleaved, so drift hits both alike
        for name, method in (("cyclegan", cyc), ("art2real", a2r)):
            _sync(dev)
            start = time.perf_counter()
            method.train_step(batch)
            _sync(dev)
            times[name].append(time.perf_counter() - start)
    med = {k: _median(v) for k, v in times.items()}
    result = {"device": str(dev), "image_size": cfg.data.image_size, "cx_pooling": cfg.cx.pooling,
              "cyclegan_s": round(med["cyclegan"], 4), "art2real_s": round(med["art2real"], 4),
              "cyclegan_min_s": round(min(times["cyclegan"]), 4), "art2real_min_s": round(min(times["art2real"]), 4),
              "ratio": round(med["art2real"] / med["cyclegan"], 3),
              "retrieval_s": round(_median(probes.retrieval_s), 4), "wait_s": round(_median(probes.wait_s), 4),
              "iterations_per_10_min_cyclegan": int(600 / med["cyclegan"]), "banks": banks_note,
              "where": probes.where(a2r)}
    return result


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "demo", "cpu", "paper"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--stand-in", action="store_true",
                        help="the CUDA path's structure under the CUDA stand-in (no GPU needed; no timings)")
    args = parser.parse_args()
    if args.stand_in:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fake_cuda import fake_cuda

        with fake_cuda():
            for preset in args.presets:
                structure(preset, "cuda" if args.device == "auto" else args.device)
        return
    results = {}
    for preset in args.presets:
        results[preset] = timings(preset, args.device, args.repeat)
        print(preset, json.dumps({k: v for k, v in results[preset].items() if k != "where"}))
        for line in results[preset]["where"]:
            print("  " + line)
    save("train", {"repeat": args.repeat, "presets": results})


if __name__ == "__main__":
    main()
