"""Multi-scale, class-specific memory banks of real photo patches with FAISS search."""
from .memory import MemoryBanks  # noqa: F401
