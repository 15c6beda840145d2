"""The registry of translation methods: a method is one module with one ``@register``-ed class.

Everything else iterates this registry: the CLI's ``--method`` choices, the chain's trainings, the rows of
Tables 1 and 3, the panels of Figure 4 and the columns of the comparison figures. Adding a method is one module
and one import line below.
"""
from __future__ import annotations

from .base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.key in _REGISTRY:
        raise ValueError(f"method {cls.key!r} is registered twice")
    _REGISTRY[cls.key] = cls
    return cls


def get(name: str) -> type[Method]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def names(trained: bool | None = None, in_paper: bool | None = None) -> list[str]:
    """Registered methods in table order (the paper's order, then the ones beyond it)."""
    return [k for k, c in _REGISTRY.items()
            if (trained is None or c.trained == trained) and (in_paper is None or c.in_paper == in_paper)]


def by_row(row: str) -> type[Method] | None:
    return next((c for c in _REGISTRY.values() if c.row == row), None)


# the registry, in table order
from . import gatys  # noqa: E402,F401  Style-transferred reals (Gatys et al.)
from . import drit  # noqa: E402,F401  DRIT
from . import unit  # noqa: E402,F401  UNIT
from . import cyclegan  # noqa: E402,F401  Cycle-GAN and Art2Real
from . import cut  # noqa: E402,F401  beyond the paper: CUT, FastCUT, and both with memory banks
