"""An input layer's convolution under a max pool, backward: the weight and bias gradients
from the pool's output gradient (``ops.conv_max_pool_backward``; see ``__init__.py``).

The shape is the training bench's first layer (``training.py``): 64 x 28 x 28 x 1 images,
Conv2D 32 3x3 with ReLU, MaxPooling2D 2x2. cnnkit makes each band of the convolution's
output gradient from the pooled one as its weight loops reach it; the composition it
replaces is ``max_pool_backward`` (indices, ReLU mask) then
``conv_backward(need=("w", "b"))``.

Peer: ``torch``, its own backward kernels on the same channels-last memory:
``aten.max_pool2d_with_indices_backward``, ``aten.threshold_backward`` (the ReLU) and
``aten.convolution_backward`` for the weight and bias only, with the forward's indices and
output computed beforehand.
"""

from __future__ import annotations

import numpy as np

from . import Call, Case, allclose


def inputs() -> tuple:
    from cnnkit import ops

    rng = np.random.default_rng(28)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    w = (rng.standard_normal((3, 3, 1, 32)) / 3).astype(np.float32)
    b = (rng.standard_normal(32) / 10).astype(np.float32)
    y = ops.conv(x, w, b, activation="relu")
    pooled, indices = ops.max_pool(y, 2, return_indices=True)
    dy = rng.standard_normal(pooled.shape).astype(np.float32)
    return x, w, b, y, pooled, indices, dy


def _cnnkit(data: tuple) -> Call:
    from cnnkit import ops

    x, w, _, _, pooled, indices, dy = data
    return lambda: ops.conv_max_pool_backward(x, w, dy, indices, 2, relu_output=pooled)


def _torch(data: tuple) -> Call:
    import torch

    x, w, _, y, _, _, dy = data
    aten = torch.ops.aten
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).contiguous(
        memory_format=torch.channels_last
    )
    yt = torch.from_numpy(y).permute(0, 3, 1, 2)
    _, indices_t = aten.max_pool2d_with_indices(yt, [2, 2], [2, 2])
    dyt = torch.from_numpy(dy).permute(0, 3, 1, 2)

    def call() -> tuple:
        dpool = aten.max_pool2d_with_indices_backward(
            dyt, yt, [2, 2], [2, 2], [0, 0], [1, 1], False, indices_t
        )
        dout = aten.threshold_backward(dpool, yt, 0)
        _, dw, db = aten.convolution_backward(
            dout, xt, wt, [32], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True]
        )
        return dw.permute(2, 3, 1, 0), db

    return call


def check(ours: tuple, theirs: tuple) -> str | None:
    for name, a, b in zip(("dw", "db"), ours, theirs):
        problem = allclose(rtol=1e-3, atol=1e-3)(np.asarray(a), np.asarray(b))
        if problem:
            return f"{name}: {problem}"
    return None


def cases() -> list[Case]:
    return [
        Case(
            name="conv 3x3 -> 32 relu + max_pool 2x2 backward (dw, db)",
            size="64 x 28 x 28 x 1",
            dtype="float32",
            inputs=inputs,
            impls={"cnnkit": _cnnkit, "torch": _torch},
            check=check,
        )
    ]
