"""The channel concatenation (see ``bench/cases/__init__.py``).

Sizes are SqueezeNet 1.1's fire modules channels-last: two 55 x 55 x 64 and two
27 x 27 x 128 expand outputs at batch 1, and the first at batch 8. Peers: NumPy's
``np.concatenate`` (what the Concatenate layer ran before, on one thread) and torch's
``cat``.

``fire_expand``: a whole fire module's expands and their concat, as an inference plan runs
them (two ``ops.conv(..., activation="relu", out=)`` into the channels of one buffer, no
copy); ``reference`` is the two convolutions and ``ops.concat``, what the plan ran before,
and torch's peer is ``conv2d`` + ``relu`` twice and ``cat`` on channels-last tensors.
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


# (batch, side, squeeze channels, expand channels per branch): SqueezeNet 1.1's fire2 and fire4.
FIRES = ((1, 55, 16, 64), (1, 27, 32, 128))


def fire_operands(batch: int, side: int, squeeze: int, expand: int) -> tuple:
    rng = np.random.default_rng([batch, side, squeeze, expand])
    x = rng.standard_normal((batch, side, side, squeeze)).astype(np.float32)
    w1 = (rng.standard_normal((1, 1, squeeze, expand)) / np.sqrt(squeeze)).astype(np.float32)
    w3 = (rng.standard_normal((3, 3, squeeze, expand)) / np.sqrt(9 * squeeze)).astype(np.float32)
    b1, b3 = (rng.standard_normal(expand).astype(np.float32) for _ in range(2))
    return x, w1, b1, w3, b3


def _fire_into_slices(inputs: tuple) -> Call:
    from cnnkit import ops

    x, w1, b1, w3, b3 = inputs
    e = w1.shape[-1]

    def call() -> np.ndarray:
        out = np.empty((*x.shape[:-1], 2 * e), np.float32)
        ops.conv(x, w1, b1, activation="relu", out=out[..., :e])
        ops.conv(x, w3, b3, padding=1, activation="relu", out=out[..., e:])
        return out

    return call


def _fire_copied(inputs: tuple) -> Call:
    from cnnkit import ops

    x, w1, b1, w3, b3 = inputs

    def call() -> np.ndarray:
        a = ops.conv(x, w1, b1, activation="relu")
        return ops.concat([a, ops.conv(x, w3, b3, padding=1, activation="relu")], -1)

    return call


def _fire_torch(inputs: tuple) -> Call:
    import torch

    x, w1, b1, w3, b3 = (torch.from_numpy(a) for a in inputs)
    xt = x.permute(0, 3, 1, 2)  # channels-last memory seen as NCHW
    w1t, w3t = (
        w.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last) for w in (w1, w3)
    )
    conv2d = torch.nn.functional.conv2d

    def call() -> object:
        with torch.inference_mode():
            a = torch.relu(conv2d(xt, w1t, b1))
            b = torch.relu(conv2d(xt, w3t, b3, padding=1))
            return torch.cat([a, b], dim=1).permute(0, 2, 3, 1)

    return call


def cases() -> list[Case]:
    fires = [
        Case(
            "fire_expand",
            f"{b} x {s} x {s} x {c} -> {e} + {e}",
            "float32",
            partial(fire_operands, b, s, c, e),
            {"cnnkit": _fire_into_slices, "reference": _fire_copied, "torch": _fire_torch},
            allclose(rtol=1e-4, atol=1e-4),
        )
        for b, s, c, e in FIRES
    ]
    return [*_cases(), *fires]
