"""The channels-first to channels-last copy at an imported network's input (see
``bench/cases/__init__.py``): 224 x 224 RGB images, NCHW to NHWC, at batch 1 and 8. Peers:
NumPy's copy of the transposed view (what the input Permute's next layer made before) and
torch's ``permute(0, 2, 3, 1).contiguous()``."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case, allclose, native

SHAPES = ((1, 3, 224, 224), (8, 3, 224, 224), (8, 64, 56, 56))


def images(shape: tuple[int, ...]) -> tuple:
    return (np.random.default_rng(list(shape)).standard_normal(shape).astype(np.float32),)


def _numpy(inputs: tuple) -> Call:
    (x,) = inputs
    return lambda: np.ascontiguousarray(np.moveaxis(x, 1, -1))


def _torch(inputs: tuple) -> Call:
    import torch

    x = torch.from_numpy(inputs[0])
    return lambda: x.permute(0, *range(2, x.ndim), 1).contiguous()


def _cases() -> Iterator[Case]:
    for shape in SHAPES:
        yield Case(
            "channels_last",
            " x ".join(map(str, shape)),
            "float32",
            partial(images, shape),
            {**native("channels_last"), "numpy": _numpy, "torch": _torch},
            allclose(rtol=0, atol=0),
        )


def cases() -> list[Case]:
    return list(_cases())
