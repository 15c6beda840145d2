"""Segmenter cost: seconds per 256 px image and peak memory of the transformers backends at the size of the real
ADE20K checkpoints (SegFormer-B4 at 512 px, Mask2Former Swin-L at 384 px), beside the k-means segmenter.

The transformers models are the checkpoints' architectures with random weights (the weights cannot be fetched
here): their speed and memory are the checkpoints', their classes are meaningless. Run:
``python benchmarks/bench_segment.py [--images 8] [--batch 4] [--models segformer,mask2former,kmeans]``; writes
results/benchmarks/segment.json. On a shared machine wall time overstates the cost: cpu_s_per_image / threads
is the wall time an idle machine would show.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_gb, save, timed  # noqa: E402

from art2real.data.dataset import ImageFolder  # noqa: E402
from art2real.paths import data_dir  # noqa: E402

ADE_CLASSES = 150


def _labels() -> dict:
    names = {i: f"class {i}" for i in range(ADE_CLASSES)}
    return {"num_labels": ADE_CLASSES, "id2label": names, "label2id": {v: k for k, v in names.items()}}


def segformer_b4(folder: Path) -> Path:
    """nvidia/segformer-b4-finetuned-ade-512-512's architecture (MiT-B4 encoder, 768-d all-MLP decoder)."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    config = SegformerConfig(depths=[3, 8, 27, 3], hidden_sizes=[64, 128, 320, 512],
                             num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=768, **_labels())
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 512, "width": 512}).save_pretrained(folder)
    return folder


def mask2former_swin_large(folder: Path) -> Path:
    """facebook/mask2former-swin-large-ade-semantic's architecture (Swin-L, 100 queries, 10 decoder layers)."""
    from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor,
                              SwinConfig)

    swin = SwinConfig(image_size=384, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48],
                      window_size=12, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=swin, num_queries=100, use_pretrained_backbone=False, **_labels())
    Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    Mask2FormerImageProcessor(size={"height": 384, "width": 384}).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--models", default="segformer,mask2former,kmeans")
    args = parser.parse_args()
    images = torch.stack(list(ImageFolder(data_dir() / "demo" / "trainA", 256, max_images=args.images)))
    result = {"images": len(images), "image_size": 256, "batch": args.batch, "segmenters": {}}

    def per_image(seg) -> dict:
        """Wall and CPU seconds per image (CPU time / threads is what an idle machine's wall time would be)."""
        seg.probabilities(images[:1])  # warm-up
        cpu = time.process_time()
        wall = timed(lambda: [seg.probabilities(images[i:i + args.batch]) for i in range(0, len(images), args.batch)],
                     repeat=1, warmup=0)
        cpu = time.process_time() - cpu
        return {"s_per_image": round(wall / len(images), 3), "cpu_s_per_image": round(cpu / len(images), 3)}

    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models.split(","):
            if kind == "kmeans":
                from art2real.segment.kmeans import KMeansSegmenter

                photos = ImageFolder(data_dir() / "demo" / "trainB", 256, max_images=16)
                seg = KMeansSegmenter(8, 256).fit(photos[i] for i in range(len(photos)))
                entry = {"name": seg.name}
            else:
                from art2real.segment.hf import HFSegmenter

                build = {"segformer": segformer_b4, "mask2former": mask2former_swin_large}[kind]
                seg = HFSegmenter(str(build(Path(tmp) / kind)))
                entry = {"name": seg.name, "parameters_m": round(sum(p.numel() for p in seg.net.parameters()) / 1e6, 1),
                         "model_input": seg.preprocess.output_size(256, 256)}
            entry.update(per_image(seg))
            entry["peak_rss_gb_so_far"] = round(peak_rss_gb(), 2)
            result["segmenters"][kind] = entry
            print(kind, entry, flush=True)
            del seg
    save("segment", result)


if __name__ == "__main__":
    main()
