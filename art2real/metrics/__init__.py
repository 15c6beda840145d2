"""Evaluation: FID / KID on Inception-v3 pool3, entropies of pretrained models, CNN features for t-SNE."""
