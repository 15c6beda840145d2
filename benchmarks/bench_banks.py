"""Memory banks at paper scale: build time and peak memory, retrieval recall against exact search, query time.

Paper scale is 2048 photos at 256 px (8.4M / 5.1M / 3.4M patches at 4/4, 8/5, 16/6). The photos are the demo's
training photos, replicated with random crops, flips and colour jitter to 2048; held-out queries come from the
demo's test photos. Run: ``python benchmarks/bench_banks.py [--photos 2048]``; writes results/benchmarks/banks.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_gb, save, timed  # noqa: E402

from art2real.bank.memory import build_banks  # noqa: E402
from art2real.bank.patches import class_fractions, extract_patches, patch_assignment, to_unit  # noqa: E402
from art2real.config import get_config  # noqa: E402
from art2real.data.dataset import ImageFolder  # noqa: E402
from art2real.data.images import load_rgb, scan_images  # noqa: E402
from art2real.paths import cache_dir, data_dir  # noqa: E402
from art2real.segment.kmeans import KMeansSegmenter  # noqa: E402
from art2real.train.trainer import Trainer  # noqa: E402


def augmented_photos(target: Path, n: int, size: int = 256, seed: int = 0) -> Path:
    sources = scan_images(data_dir() / "demo" / "trainB").good
    if target.exists() and len(list(target.glob("*.jpg"))) == n:
        return target
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        im = load_rgb(sources[i % len(sources)])
        s = int(im.width * rng.uniform(0.6, 1.0))
        x, y = rng.integers(0, im.width - s + 1), rng.integers(0, im.height - s + 1)
        im = im.crop((x, y, x + s, y + s)).resize((size, size), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im = ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(rng.uniform(0.85, 1.15))).enhance(
            rng.uniform(0.8, 1.2))
        im.save(target / f"aug_{i:05d}.jpg", quality=95)
    return target


def exact_knn(patches_u8: np.ndarray, queries: np.ndarray, k: int, chunk: int = 500_000) -> np.ndarray:
    """Brute-force k-NN over a uint8 memmap, chunk by chunk (float32 in [-1, 1], squared L2)."""
    best_d = np.full((len(queries), k), np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for start in range(0, len(patches_u8), chunk):
        d, i = faiss.knn(queries, to_unit(patches_u8[start:start + chunk]), k)
        d_all, i_all = np.concatenate([best_d, d], 1), np.concatenate([best_i, i + start], 1)
        order = np.argsort(d_all, 1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)
    return best_i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, help="override bank.nprobe (a search-time setting: no rebuild)")
    args = parser.parse_args()
    cfg = get_config("paper", {"data.dataset": "demo", **({"bank.nprobe": args.nprobe} if args.nprobe else {})})
    work = cache_dir() / "bench_banks"
    photos = augmented_photos(work / f"photos_{args.photos}", args.photos)
    fit = ImageFolder(data_dir() / "demo" / "trainB", 256)
    segmenter = KMeansSegmenter.from_config(cfg).fit(fit[i] for i in range(len(fit)))

    start = time.perf_counter()
    banks = build_banks(photos, segmenter, work / "banks", cfg.bank, 256, batch_size=16)
    reused = time.perf_counter() - start < 0.5 * banks.meta["build_seconds"]  # same inputs: no rebuild
    build_rss = None if reused else round(peak_rss_gb(), 2)  # a reused build says nothing about memory
    print(banks.summary())

    # held-out queries: the demo's test photos, assigned to classes like generated patches (50% rule)
    held = ImageFolder(data_dir() / "demo" / "testB", 256)
    images = torch.stack([held[i] for i in range(len(held))])
    labels = segmenter.labels(images)
    rng = np.random.default_rng(0)
    recall = {}
    for s, (size, stride) in enumerate(banks.scales):
        patches = extract_patches(images, size, stride).reshape(-1, 3 * size * size).numpy()
        member = patch_assignment(class_fractions(labels, len(segmenter.class_names), size, stride), 0.5)
        member = member.reshape(-1, member.shape[-1]).numpy()
        keys = list(range(len(segmenter.class_names))) + [-1]
        hits1 = hits5 = total = 0
        for col, c in enumerate(keys):
            bank = banks.resolve(s, c)
            rows = np.flatnonzero(member[:, col])
            if bank is None or not len(rows):
                continue
            take = rng.choice(rows, min(len(rows), max(1, args.queries * len(rows) // member.shape[0])), replace=False)
            q = np.ascontiguousarray(patches[take], np.float32)
            approx = banks.search(s, bank, q, 5)
            exact = exact_knn(banks.banks[s][bank].patches, q, 5)
            hits1 += (approx[:, 0] == exact[:, 0]).sum()
            hits5 += sum(len(set(a) & set(e)) for a, e in zip(approx, exact))
            total += len(q)
        recall[f"{size}/{stride}"] = {"recall@1": hits1 / total, "recall@5": hits5 / (5 * total), "queries": total}
        print(f"{size}/{stride}: {recall[f'{size}/{stride}']}")

    def query_one_image():
        for s, (size, stride) in enumerate(banks.scales):
            patches = extract_patches(images[:1], size, stride)[0].numpy()
            member = patch_assignment(class_fractions(labels[:1], len(segmenter.class_names), size, stride)[0], 0.5)
            for col, c in enumerate(list(range(len(segmenter.class_names))) + [-1]):
                rows = member[:, col].numpy()
                bank = banks.resolve(s, c)
                if bank is not None and rows.any():
                    banks.search(s, bank, np.ascontiguousarray(patches[rows]), cfg.cx.k)

    query_s = timed(query_one_image, repeat=3)
    trainer = Trainer(get_config("paper", {"data.dataset": "demo", "train.validate_every": 0}, method="cyclegan"),
                      work / "cyclegan_run")
    batch = trainer.dataset.item(0, 0)
    batch = {"A": batch["A"][None], "B": batch["B"][None], "A_name": [batch["A_name"]], "A_place": batch["A_place"][None]}
    step_s = timed(lambda: trainer.method.train_step(batch), repeat=3)
    counts = {k: sum(v.values()) for k, v in banks.meta["counts"].items()}
    save("banks", {"photos": args.photos, "nprobe": cfg.bank.nprobe, "rerank": cfg.bank.rerank,
                   "patches_per_scale": counts, "build_seconds": banks.meta["build_seconds"],
                   "index_seconds_last_reindex": banks.meta.get("index_seconds"),
                   "banks_reused": reused, "peak_rss_gb_after_build": build_rss,
                   "index_specs": banks.meta["index_specs"],
                   "recall": recall, "query_seconds_one_256px_image_all_scales": round(query_s, 3),
                   "cyclegan_paper_iteration_seconds": round(step_s, 3),
                   "query_over_iteration": round(query_s / step_s, 3),
                   "disk_gb": round(sum(p.stat().st_size for p in (work / "banks").rglob("*")) / 1e9, 2)})


if __name__ == "__main__":
    main()
