"""An input layer's convolution under a max pool: forward in one pass
(``ops.conv_stem``), and backward, the weight and bias gradients from the pool's output
gradient (``ops.conv_max_pool_backward``; see ``__init__.py``).

Forward: ResNet-18's and AlexNet's first layers on a channels-first image, as an imported
network gets it (7x7 stride 2 padding 3 and 11x11 stride 4 padding 2, 3 -> 64 channels,
ReLU, max pool 3x3 stride 2, ResNet's with padding 1). cnnkit pools the convolution's
rows as they are made and interleaves the channels as it copies the image's rows; its
separate calls (``channels_last``, ``conv``, ``max_pool``) are the "reference" here.
Peer: ``torch``, ``conv2d``, ``relu`` and ``max_pool2d`` on the NCHW image (its layout).

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


def _stem_inputs(batch: int, kernel: int, stride: int, padding: int) -> tuple:
    rng = np.random.default_rng(7)
    x = rng.random((batch, 3, 224, 224), dtype=np.float32)
    w = (rng.standard_normal((kernel, kernel, 3, 64)) / kernel / 2).astype(np.float32)
    b = (rng.standard_normal(64) / 10).astype(np.float32)
    return x, w, b, {"stride": stride, "padding": padding}, 1 if kernel == 7 else 0


def _stem_cnnkit(data: tuple) -> Call:
    from cnnkit import ops

    x, w, b, spec, pad = data
    pool = {"pool_size": 3, "pool_stride": 2, "pool_padding": pad}
    return lambda: ops.conv_stem(x, w, b, **spec, activation="relu", channels_first=True, **pool)


def _stem_separate(data: tuple) -> Call:
    from cnnkit import ops

    x, w, b, spec, pad = data

    def call() -> np.ndarray:
        y = ops.conv(ops.channels_last(x), w, b, **spec, activation="relu")
        return ops.max_pool(y, 3, stride=2, padding=pad)

    return call


def _stem_torch(data: tuple) -> Call:
    import torch

    x, w, b, spec, pad = data
    f = torch.nn.functional
    xt, bt = torch.from_numpy(x), torch.from_numpy(b)
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))

    def call() -> np.ndarray:
        with torch.no_grad():
            y = f.relu(f.conv2d(xt, wt, bt, stride=spec["stride"], padding=spec["padding"]))
            return f.max_pool2d(y, 3, 2, pad).permute(0, 2, 3, 1).numpy()

    return call


def check(ours: tuple, theirs: tuple) -> str | None:
    for name, a, b in zip(("dw", "db"), ours, theirs):
        problem = allclose(rtol=1e-3, atol=1e-3)(np.asarray(a), np.asarray(b))
        if problem:
            return f"{name}: {problem}"
    return None


def cases() -> list[Case]:
    stems = [
        Case(
            name=f"conv_stem {k}x{k} stride {s} -> 64 relu + max_pool 3x3/2, channels-first",
            size=f"{n} x 3 x 224 x 224",
            dtype="float32",
            inputs=lambda n=n, k=k, s=s, p=p: _stem_inputs(n, k, s, p),
            impls={"cnnkit": _stem_cnnkit, "reference": _stem_separate, "torch": _stem_torch},
            check=allclose(rtol=1e-4, atol=1e-4),
        )
        for k, s, p in ((7, 2, 3), (11, 4, 2))
        for n in (1, 8)
    ]
    return [
        *stems,
        Case(
            name="conv 3x3 -> 32 relu + max_pool 2x2 backward (dw, db)",
            size="64 x 28 x 28 x 1",
            dtype="float32",
            inputs=inputs,
            impls={"cnnkit": _cnnkit, "torch": _torch},
            check=check,
        ),
    ]
