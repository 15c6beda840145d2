"""Semantic segmentation: a common interface and its backends (offline k-means, transformers ADE20K models,
detectron2, torchvision); hf.resolve_backend picks one for segment.backend=auto."""
from .base import BACKGROUND, Segmenter, load_segmenter  # noqa: F401
