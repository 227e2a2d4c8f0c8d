"""Sliding windows, copied into one contiguous (N, rows, cols, h, w, C) array.

Peers make the same copy: ``numpy`` a strided view
(``numpy.lib.stride_tricks.sliding_window_view``, every stride-th window, channels moved
last) copied by ``np.ascontiguousarray`` (what cnnkit's reference does), ``torch`` two
``Tensor.unfold`` calls, a ``permute`` and ``.contiguous()``.

Size: the issue's (8, 256, 256, 3) batch with 64 x 64 windows at stride 16 (8 x 169
windows, 66 MB of float32 output), in float32 and uint8.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import Call, Case, equal, native

SHAPE = (8, 256, 256, 3)
WINDOW, STRIDE = 64, 16


def images(shape: tuple[int, ...], dtype: type) -> tuple:
    """``(images,)``: uniform values (0..255 for uint8)."""
    x = np.random.default_rng(list(shape)).random(shape) * 255
    return (x.astype(dtype),)


def _numpy(inputs: tuple) -> Call:
    x = inputs[0]

    def call() -> np.ndarray:
        view = sliding_window_view(x, (WINDOW, WINDOW), axis=(1, 2))[:, ::STRIDE, ::STRIDE]
        return np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3))

    return call


def _torch(inputs: tuple) -> Call:
    import torch

    x = torch.from_numpy(inputs[0])
    return lambda: (
        x.unfold(1, WINDOW, STRIDE).unfold(2, WINDOW, STRIDE).permute(0, 1, 2, 4, 5, 3).contiguous()
    )


def cases() -> list[Case]:
    """float32, then uint8."""
    size = " x ".join(map(str, SHAPE)) + f", {WINDOW} / {STRIDE}"
    return [
        Case(
            "sliding_windows",
            size,
            np.dtype(dtype).name,
            partial(images, SHAPE, dtype),
            {**native("sliding_windows", WINDOW, STRIDE), "numpy": _numpy, "torch": _torch},
            equal,
        )
        for dtype in (np.float32, np.uint8)
    ]
