"""The fused residual add and ReLU (see ``bench/cases/__init__.py``).

Sizes are ResNet-18's residual blocks channels-last: layer1 at batch 1 (56 x 56 x 64,
the largest at batch 1) and at batch 8. Peers: NumPy's ``np.maximum(a + b, 0)`` (what
the ONNX AddReLU layer ran before, on one thread) and torch's ``relu(a + b)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case, allclose, native

SHAPES = ((1, 56, 56, 64), (8, 56, 56, 64), (8, 14, 14, 256))


def operands(shape: tuple[int, ...], dtype: type = np.float32) -> tuple:
    rng = np.random.default_rng(list(shape))
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def _numpy(inputs: tuple) -> Call:
    a, b = inputs

    def call() -> object:
        out = np.add(a, b)
        return np.maximum(out, 0, out=out)

    return call


def _torch(inputs: tuple) -> Call:
    import torch

    a, b = (torch.from_numpy(v) for v in inputs)
    return lambda: torch.relu(a + b)


def _cases() -> Iterator[Case]:
    for shape in SHAPES:
        yield Case(
            "add_relu",
            " x ".join(map(str, shape)),
            "float32",
            partial(operands, shape),
            {**native("add_relu"), "numpy": _numpy, "torch": _torch},
            allclose(rtol=0, atol=0),
        )


def cases() -> list[Case]:
    return list(_cases())
