"""The process-wide generator behind everything random that was given no seed.

Models and layers created without a seed draw theirs from here, so
:func:`cnnkit.utils.set_random_seed` makes such runs repeatable, as Keras's does.
"""

from __future__ import annotations

from typing import Any

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


# SeedSequence's constants (numpy/random/bit_generator.pyx, Melissa O'Neill's seed_seq).
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_WORD = 0xFFFFFFFF


class _State(np.random.bit_generator.ISeedSequence):
    """A seed sequence whose state is already computed (see :func:`seeded_generators`)."""

    __slots__ = ("words",)

    def __init__(self, words: np.ndarray) -> None:
        self.words = words

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        return self.words


def _pcg64_states(seeds: np.ndarray) -> np.ndarray:
    """``SeedSequence(s).generate_state(4, np.uint64)`` for each ``s < 2**64`` of ``seeds``
    (``(N,)`` uint64), all at once: the same uint32 hashing, on arrays.

    The hash constants evolve the same way for every seed, so they are Python ints;
    NumPy's uint32 array arithmetic wraps as the C code's does.
    """
    u32 = np.uint32
    pool = [(seeds & _WORD).astype(u32), (seeds >> np.uint64(32)).astype(u32)]
    pool += [np.zeros(len(seeds), u32), np.zeros(len(seeds), u32)]
    const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal const
        value = value ^ u32(const)
        const = (const * _MULT_A) & _WORD
        value = value * u32(const)
        return value ^ (value >> u32(16))

    # an int of at most 64 bits is two words; SeedSequence pads the pool of 4 with zeros
    pool = [hashmix(word) for word in pool]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                mixed: np.ndarray = u32(_MIX_L) * pool[dst] - u32(_MIX_R) * hashmix(pool[src])
                pool[dst] = mixed ^ (mixed >> u32(16))
    const = _INIT_B
    words = []
    for k in range(8):
        value = pool[k % 4] ^ u32(const)
        const = (const * _MULT_B) & _WORD
        value = value * u32(const)
        words.append(value ^ (value >> u32(16)))
    return np.ascontiguousarray(np.stack(words, 1).astype("<u4")).view("<u8").astype(np.uint64)


def seeded_generators(seeds: Any) -> list[np.random.Generator]:
    """``[np.random.default_rng(int(s)) for s in seeds]``, bit for bit, about 8x cheaper.

    Most of ``default_rng(s)``'s cost is building and hashing a SeedSequence per seed
    (about 8 us each): here the hashing of all seeds at once is a few NumPy calls, and
    each PCG64 is seeded from its precomputed state. Seeds of 2**64 or more (more
    entropy words) take ``default_rng``. The generators' ``bit_generator.seed_seq``
    is not a SeedSequence (no ``spawn``).
    """
    values = [int(s) for s in seeds]
    if not values or max(values) >= 2**64 or min(values) < 0:
        return [np.random.default_rng(v) for v in values]
    states = _pcg64_states(np.array(values, np.uint64))
    # (NumPy accepts any ISeedSequence; its stubs name only SeedSequence)
    return [np.random.Generator(np.random.PCG64(_State(row))) for row in states]  # type: ignore[arg-type]
