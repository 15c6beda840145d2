"""What a metric gives: a measured value, or a reason it could not be measured. Values travel as these objects
from the metrics to the tables; only the report turns them into text.

Never a made-up number: a missing model or data set is :class:`NotAvailable` with its reason and its fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NotAvailable:
    reason: str
    fix: str = ""  # the command or step that makes it available

    def __str__(self) -> str:
        return f"not available: {self.reason}" + (f" ({self.fix})" if self.fix else "")


@dataclass(frozen=True)
class Measured:
    """A measured value: one number, or the mean of several runs (``values``: one per seed)."""

    value: float
    model: str = ""  # what computed it (network, weights)
    n: int | None = None  # images (or boxes) it was computed on
    std: float | None = None  # spread over images (entropies) or KID subsets
    note: str = ""  # a caveat that goes with the number
    values: tuple[float, ...] = field(default=())  # per seed, when aggregated

    @classmethod
    def over_seeds(cls, outcomes: list["Measured"]) -> "Measured":
        """The mean of per-seed measurements; ``std`` becomes the spread over seeds (sample std)."""
        values = tuple(o.value for o in outcomes)
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        first = outcomes[0]
        return cls(mean, first.model, first.n, std, first.note, values)

    def interval95(self) -> tuple[float, float] | None:
        """Student-t 95% interval of the mean over seeds (None for a single run)."""
        if len(self.values) < 2:
            return None
        from scipy.stats import t

        half = t.ppf(0.975, len(self.values) - 1) * self.std / math.sqrt(len(self.values))
        return self.value - half, self.value + half


Outcome = Measured | NotAvailable


def value(outcome) -> float | None:
    """The number of an outcome, or None."""
    return outcome.value if isinstance(outcome, Measured) else None
