"""Learning-rate schedules shared by methods."""
from __future__ import annotations

from typing import Callable


def linear_decay(epochs_constant: int, epochs_decay: int) -> Callable[[int], float]:
    """CycleGAN's schedule: lr constant for ``epochs_constant`` epochs, then linearly to 0 over ``epochs_decay``."""
    return lambda epoch: 1.0 - max(0, epoch + 1 - epochs_constant) / float(epochs_decay + 1)
