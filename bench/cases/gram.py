"""Gram matrices of feature maps and their gradient (see ``bench/cases/__init__.py``).

Peers compute each batch item's ``F^T F`` (``F`` the features as a positions x channels
matrix): ``numpy`` with ``np.matmul`` (OpenBLAS, which sees the transposed operand and may
use a symmetric rank-k update), ``torch`` with ``torch.bmm(F.transpose(1, 2), F)``. The
``reference`` is cnnkit's einsum. The gradient ``F (dG + dG^T)`` is timed the same way.

Sizes are VGG-like style layers: (N, H, W, C) from a wide shallow map to a deep small one.
Features and gradients are standard normal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case, Check, Prepare, allclose, native

SHAPES = ((1, 64, 64, 256), (1, 128, 128, 128), (4, 32, 32, 512), (1, 256, 256, 64))


def features(shape: tuple[int, ...], dtype: type = np.float32) -> tuple:
    """``(x,)``: a channels-last feature map."""
    return (np.random.default_rng(list(shape)).standard_normal(shape).astype(dtype),)


def with_gradient(shape: tuple[int, ...], dtype: type = np.float32) -> tuple:
    """``(x, dG)``: a feature map and a gradient for its Gram matrices."""
    rng = np.random.default_rng([*shape, 1])
    c = shape[-1]
    x = rng.standard_normal(shape).astype(dtype)
    return x, rng.standard_normal((shape[0], c, c)).astype(dtype)


def _matrices(x: np.ndarray) -> np.ndarray:
    """``x`` as (N, positions, C), a view."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _numpy_gram(inputs: tuple) -> Call:
    f = _matrices(inputs[0])
    return lambda: np.matmul(f.transpose(0, 2, 1), f)


def _torch_gram(inputs: tuple) -> Call:
    import torch

    f = torch.from_numpy(_matrices(inputs[0]))
    return lambda: torch.bmm(f.transpose(1, 2), f)


def _numpy_backward(inputs: tuple) -> Call:
    x, dg = inputs
    f = _matrices(x)
    return lambda: np.matmul(f, dg + dg.transpose(0, 2, 1)).reshape(x.shape)


def _torch_backward(inputs: tuple) -> Call:
    import torch

    x, dg = inputs
    f, g = torch.from_numpy(_matrices(x)), torch.from_numpy(dg)
    return lambda: torch.bmm(f, g + g.transpose(1, 2)).reshape(x.shape)


def _check(dtype: type, terms: int) -> Check:
    """Agreement up to rounding, for sums of ``terms`` products of standard normals.

    Summation order differs between implementations. The rounding error grows like
    ``eps * terms`` for sums of mixed signs (off-diagonal entries, about ``sqrt(terms)`` in
    size) and like ``eps * terms**1.5`` for sums of squares (the diagonal, about ``terms``);
    allow 100 times both.
    """
    eps = float(np.finfo(dtype).eps)
    return allclose(rtol=100 * eps * math.sqrt(terms), atol=100 * eps * terms)


def _cases() -> Iterator[Case]:
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        shapes = SHAPES if dtype == np.float32 else SHAPES[:1]
        for shape in shapes:
            size = " x ".join(map(str, shape))
            positions = math.prod(shape[1:-1])
            yield Case(
                "gram",
                size,
                name,
                partial(features, shape, dtype),
                {**native("gram"), "numpy": _numpy_gram, "torch": _torch_gram},
                _check(dtype, positions),
            )
            impls: dict[str, Prepare] = {
                **native("gram_backward"),
                "numpy": _numpy_backward,
                "torch": _torch_backward,
            }
            yield Case(
                "gram_backward",
                size,
                name,
                partial(with_gradient, shape, dtype),
                impls,
                _check(dtype, shape[-1]),
            )


def cases() -> list[Case]:
    """Forward and gradient at each size, float32 first, then float64 at one size."""
    return list(_cases())
