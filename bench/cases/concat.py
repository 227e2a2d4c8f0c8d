"""The channel concatenation (see ``bench/cases/__init__.py``).

Sizes are SqueezeNet 1.1's fire modules channels-last: two 55 x 55 x 64 and two
27 x 27 x 128 expand outputs at batch 1, and the first at batch 8. Peers: NumPy's
``np.concatenate`` (what the Concatenate layer ran before, on one thread) and torch's
``cat``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case, allclose, native

SHAPES = ((1, 55, 55, 64), (1, 27, 27, 128), (8, 55, 55, 64))


def operands(shape: tuple[int, ...], dtype: type = np.float32) -> tuple:
    rng = np.random.default_rng(list(shape))
    return [rng.standard_normal(shape).astype(dtype) for _ in range(2)], -1


def _numpy(inputs: tuple) -> Call:
    arrays, axis = inputs
    return lambda: np.concatenate(arrays, axis=axis)


def _torch(inputs: tuple) -> Call:
    import torch

    arrays, axis = inputs
    tensors = [torch.from_numpy(a) for a in arrays]
    return lambda: torch.cat(tensors, dim=axis)


def _cases() -> Iterator[Case]:
    for shape in SHAPES:
        yield Case(
            "concat",
            " x ".join(map(str, shape)) + " twice",
            "float32",
            partial(operands, shape),
            {**native("concat"), "numpy": _numpy, "torch": _torch},
            allclose(rtol=0, atol=0),
        )


def cases() -> list[Case]:
    return list(_cases())
