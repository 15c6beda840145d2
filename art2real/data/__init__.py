"""Datasets: registry and downloads, robust image loading, the unpaired dataset."""
from .images import IMAGE_EXTENSIONS, ImageReport, list_images, load_rgb, scan_images  # noqa: F401
