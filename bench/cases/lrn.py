"""Local response normalization and its gradient (see ``bench/cases/__init__.py``).

Sizes are AlexNet's two LRN layers (after conv1 and conv2, batch 8, channels-last) and
GoogLeNet's first. The peer is torch's ``local_response_norm`` on the same values in
NCHW (its own layout: a channels-last tensor would be copied by the average pooling it
is written with), and its autograd for the gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case, allclose, native

SHAPES = ((8, 55, 55, 96), (8, 27, 27, 256), (8, 56, 56, 64))
SPEC = {"alpha": 1e-4, "beta": 0.75, "bias": 2.0}


def maps(shape: tuple[int, ...], dtype: type = np.float32) -> tuple:
    rng = np.random.default_rng(list(shape))
    return (rng.standard_normal(shape).astype(dtype),)


def with_gradient(shape: tuple[int, ...], dtype: type = np.float32) -> tuple:
    rng = np.random.default_rng([*shape, 1])
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def _torch_lrn(inputs: tuple) -> Call:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(inputs[0], -1, 1)))
    f = torch.nn.functional.local_response_norm
    return lambda: f(x, 5, SPEC["alpha"], SPEC["beta"], SPEC["bias"]).permute(0, 2, 3, 1)


def _torch_backward(inputs: tuple) -> Call:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(inputs[0], -1, 1))).requires_grad_()
    g = torch.from_numpy(np.ascontiguousarray(np.moveaxis(inputs[1], -1, 1)))
    f = torch.nn.functional.local_response_norm

    def call() -> object:
        (dx,) = torch.autograd.grad(f(x, 5, SPEC["alpha"], SPEC["beta"], SPEC["bias"]), x, g)
        return dx.permute(0, 2, 3, 1)

    return call


def _cases() -> Iterator[Case]:
    for shape in SHAPES:
        size = " x ".join(map(str, shape))
        yield Case(
            "lrn",
            size,
            "float32",
            partial(maps, shape),
            {**native("lrn", 5, **SPEC), "torch": _torch_lrn},
            allclose(rtol=1e-5, atol=1e-6),
        )
        yield Case(
            "lrn_backward",
            size,
            "float32",
            partial(with_gradient, shape),
            {**native("lrn_backward", 5, **SPEC), "torch": _torch_backward},
            allclose(rtol=1e-4, atol=1e-5),
        )


def cases() -> list[Case]:
    return list(_cases())
