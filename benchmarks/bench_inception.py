"""Inception feature extraction: this kit's extractor against pytorch-fid's, same weights, same images, one run.

pytorch-fid's network is filled offline with the weights this kit loads (art2real.metrics.inception.
pytorch_fid_network). Run: ``python benchmarks/bench_inception.py [--images 64]``; writes
results/benchmarks/inception.json with both speeds and the largest feature difference.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, timed  # noqa: E402

from art2real.data.images import load_rgb, scan_images  # noqa: E402
from art2real.metrics.inception import inception_features, pytorch_fid_network  # noqa: E402
from art2real.paths import data_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    paths = (scan_images(data_dir() / "demo" / "trainB").good + scan_images(data_dir() / "demo" / "trainA").good)
    images = torch.stack([torch.from_numpy(np.array(load_rgb(p))).permute(2, 0, 1) for p in paths[:args.images]])
    reference = pytorch_fid_network()

    def theirs():
        with torch.no_grad():
            return np.concatenate([reference(images[i:i + args.batch].float() / 255)[0].flatten(1).double().numpy()
                                   for i in range(0, len(images), args.batch)])

    def ours():
        return np.concatenate([inception_features(images[i:i + args.batch])
                               for i in range(0, len(images), args.batch)])

    diff = float(np.abs(ours() - theirs()).max())
    t_theirs, t_ours = timed(theirs, repeat=3), timed(ours, repeat=3)
    save("inception", {"images": len(images), "image_size": list(images.shape[-2:]),
                       "pytorch_fid_s_per_image": round(t_theirs / len(images), 4),
                       "art2real_s_per_image": round(t_ours / len(images), 4),
                       "speedup": round(t_theirs / t_ours, 3), "max_abs_feature_difference": diff,
                       "max_abs_feature": float(np.abs(ours()).max())})


if __name__ == "__main__":
    main()
