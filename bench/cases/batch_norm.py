"""Batch normalisation in training mode: forward and backward, as one training step runs it
(see ``bench/cases/__init__.py``).

Sizes: the four BatchNormalization inputs of the face encoder with ``batch_norm=True``
(:func:`cnnkit.face.build_encoder`, P=16 x K=4 = 64 images of 64x64, convolutions of
16/32/64/128 channels with 2x2 pooling between them), channels-last float32. A call is
:func:`cnnkit.ops.batch_norm` then :func:`cnnkit.ops.batch_norm_backward` and returns ``(y,
dx)``. ``reference`` is the NumPy formulas ``cnnkit.autograd.batch_norm`` ran before the
kernel (float32, written out below). Peer: torch's ``F.batch_norm(training=True)`` on the
same values as an NCHW tensor in ``channels_last`` memory (no copy), with its autograd for
``dx``, ``dgamma`` and ``dbeta``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case

SHAPES = ((64, 64, 64, 16), (64, 32, 32, 32), (64, 16, 16, 64), (64, 8, 8, 128))
EPSILON = 1e-3


def step_inputs(shape: tuple[int, ...]) -> tuple:
    rng = np.random.default_rng(list(shape))
    c = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    return x, dy, gamma, beta


def _cnnkit(inputs: tuple) -> Call:
    from cnnkit import ops

    x, dy, gamma, beta = inputs

    def call() -> object:
        y, mean, var = ops.batch_norm(x, gamma, beta, epsilon=EPSILON)
        dx, _, _ = ops.batch_norm_backward(x, dy, gamma, mean, var, epsilon=EPSILON)
        return y, dx

    return call


def _numpy(inputs: tuple) -> Call:
    x, dy, gamma, beta = inputs
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]

    def call() -> object:
        mean = x.mean(axis=axes)
        centred = x - mean
        var = np.mean(centred * centred, axis=axes)
        inv_std = 1 / np.sqrt(var + np.float32(EPSILON))
        xhat = centred * inv_std
        y = gamma * xhat + beta
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * xhat).sum(axis=axes)
        dx = (gamma * inv_std / count) * (count * dy - dbeta - xhat * dgamma)
        return y, dx

    return call


def _torch(inputs: tuple) -> Call:
    import torch

    x, dy, gamma, beta = (torch.from_numpy(a) for a in inputs)
    xt = x.permute(0, 3, 1, 2).requires_grad_()  # NCHW, channels_last strides
    gt = dy.permute(0, 3, 1, 2)
    w, b = gamma.clone().requires_grad_(), beta.clone().requires_grad_()
    f = torch.nn.functional.batch_norm

    def call() -> object:
        y = f(xt, None, None, w, b, training=True, eps=EPSILON)
        dx, _, _ = torch.autograd.grad(y, (xt, w, b), gt)
        return y.detach().permute(0, 2, 3, 1), dx.permute(0, 2, 3, 1)

    return call


def _check(ours: tuple, theirs: tuple) -> str | None:
    for name, a, b in zip(("y", "dx"), ours, theirs):
        scale = float(np.abs(b).max())
        err = float(np.abs(a.astype(np.float64) - b).max())
        if err > 1e-4 * scale:
            return f"{name}: max error {err:.3g} against values up to {scale:.3g}"
    return None


def _cases() -> Iterator[Case]:
    for shape in SHAPES:
        yield Case(
            "batch_norm forward+backward",
            " x ".join(map(str, shape)),
            "float32",
            partial(step_inputs, shape),
            {"cnnkit": _cnnkit, "reference": _numpy, "torch": _torch},
            _check,
        )


def cases() -> list[Case]:
    return list(_cases())
