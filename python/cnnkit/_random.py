"""The process-wide generator behind everything random that was given no seed.

Models and layers created without a seed draw theirs from here, so
:func:`cnnkit.utils.set_random_seed` makes such runs repeatable, as Keras's does.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def generator() -> np.random.Generator:
    """The current process-wide generator."""
    return _generator


def draw_seed() -> int:
    """A seed for a model created without one."""
    return int(_generator.integers(2**63))


def set_seed(seed: int) -> None:
    """Restart the process-wide generator from ``seed``."""
    global _generator
    _generator = np.random.default_rng(seed)
