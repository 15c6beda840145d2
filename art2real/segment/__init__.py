"""Semantic segmentation: a common interface and its backends (offline k-means, detectron2, torchvision)."""
from .base import BACKGROUND, Segmenter, load_segmenter  # noqa: F401
