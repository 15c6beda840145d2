"""Learning-rate schedules shared by methods."""
from __future__ import annotations

from typing import Callable


def linear_decay(epochs_constant: int, epochs_decay: int) -> Callable[[int], float]:
    """CycleGAN's schedule: lr constant for ``epochs_constant`` epochs, then linearly to 0 over ``epochs_decay``."""
    return lambda epoch: 1.0 - max(0, epoch + 1 - epochs_constant) / float(epochs_decay + 1)


def step_decay(step_size: int, gamma: float) -> Callable[[int], float]:
    """UNIT's schedule, for a LambdaLR stepped after every iteration: the lr is multiplied by ``gamma`` every
    ``step_size`` iterations. The authors step their StepLR at the *start* of each iteration, so 0-based iteration
    i runs at gamma ** ((i + 1) // step_size): the first halving comes one iteration before step_size iterations
    are done. After i steps this rule gives that factor for iteration i."""
    return lambda iteration: gamma ** ((iteration + 1) // step_size)
