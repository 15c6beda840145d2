"""Art2Real: semantically-aware painting-to-photo translation (Tomei et al., CVPR 2019)."""

__version__ = "0.1.0"
