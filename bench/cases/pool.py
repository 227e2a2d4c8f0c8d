"""Pooling kernels: max/avg pooling forward and backward, global pooling (see ``__init__.py``).

Peer: ``torch``. Its ``max_pool{1,2,3}d`` and ``avg_pool{1,2,3}d`` (``count_include_pad=False``,
which is cnnkit's average) run on channels-last tensors: the same memory as the NumPy
input, seen as (N, C, *spatial) in torch's ``channels_last``/``channels_last_3d`` formats (a
permuted view for 1-D), and the result is viewed back as channels-last (no copy). Torch's
backward is timed as its own backward kernels (``aten.max_pool2d_with_indices_backward``,
``aten.avg_pool{2,3}d_backward``) with the argmax indices computed beforehand by the forward;
so is cnnkit's max-pool backward (``max_pool(..., return_indices=True)``, then
``max_pool_backward(..., indices=...)``, as the autograd op does). Every case uses padding
that torch can express (symmetric, at most half the window); "same" with a 3x3 window and
stride 1 is padding 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import Call, Case, Prepare, allclose, equal, native

REFERENCE = frozenset({"reference"})
NOTHING: frozenset[str] = frozenset()
REFERENCE_LIMIT = 30_000_000  # elements: the NumPy reference is skipped above this


@dataclass(frozen=True)
class Pool:
    """One pooling configuration: square windows, symmetric padding."""

    kind: str  # "max" or "avg"
    shape: tuple[int, ...]  # channels-last input
    window: int
    stride: int
    padding: int | str  # what cnnkit gets; torch gets `torch_padding`
    dtype: type = np.float32

    @property
    def rank(self) -> int:
        return len(self.shape) - 2

    @property
    def torch_padding(self) -> int:
        if self.padding == "same":
            return (self.window - 1) // 2
        return 0 if self.padding == "valid" else int(self.padding)

    @property
    def name(self) -> str:
        k = "x".join([str(self.window)] * self.rank)
        pad = f" pad {self.padding}" if self.padding not in ("valid", 0) else ""
        return f"{self.kind}_pool{self.rank}d {k}/{self.stride}{pad}"

    @property
    def size(self) -> str:
        return " x ".join(map(str, self.shape))

    @property
    def kwargs(self) -> dict:
        return {"stride": self.stride, "padding": self.padding}

    def too_slow(self) -> frozenset[str]:
        return REFERENCE if math.prod(self.shape) > REFERENCE_LIMIT else NOTHING


FORWARD = [
    Pool("max", (32, 112, 112, 64), 2, 2, "valid"),
    Pool("max", (64, 28, 28, 32), 2, 2, "valid"),
    Pool("max", (64, 28, 28, 32), 2, 2, "valid", np.float64),
    Pool("max", (8, 112, 112, 64), 3, 2, 1),  # the ResNet stem
    Pool("avg", (8, 56, 56, 128), 3, 1, "same"),
    Pool("max", (32, 4096, 64), 3, 2, 1),
    Pool("avg", (8, 32, 32, 32, 32), 2, 2, "valid"),
    Pool("max", (4, 16, 32, 32, 64), 3, 2, 1),
]
BACKWARD = [
    Pool("max", (64, 28, 28, 32), 2, 2, "valid"),
    Pool("max", (8, 112, 112, 64), 3, 2, 1),
    Pool("avg", (8, 56, 56, 128), 3, 1, "same"),
    Pool("avg", (8, 32, 32, 32, 32), 2, 2, "valid"),
]
GLOBAL = [(32, 7, 7, 2048), (8, 56, 56, 256)]


# --- seeded inputs (never timed) ---------------------------------------------------------


def forward_inputs(p: Pool) -> tuple:
    """``(x,)``: standard normal, so max-pool ties are (almost) impossible."""
    return (np.random.default_rng(list(p.shape)).standard_normal(p.shape).astype(p.dtype),)


def backward_inputs(p: Pool) -> tuple:
    """``(x, dy)``."""
    import cnnkit.ops

    (x,) = forward_inputs(p)
    y_shape = cnnkit.ops.max_pool(x[:1], p.window, **p.kwargs).shape[1:]
    dy = np.random.default_rng(len(p.shape)).standard_normal((p.shape[0], *y_shape))
    return x, dy.astype(p.dtype)


# --- torch: prepare(inputs) -> timed call ------------------------------------------------


def _channels_first_view(torch, a: np.ndarray):
    """The channels-last array as torch's (N, C, *spatial) in channels-last memory, no copy."""
    return torch.from_numpy(a).movedim(-1, 1)


def _torch_forward(p: Pool) -> Prepare:
    def prepare(inputs: tuple) -> Call:
        import torch
        import torch.nn.functional as F

        x = _channels_first_view(torch, inputs[0])
        fn = getattr(F, f"{p.kind}_pool{p.rank}d")
        extra = {"count_include_pad": False} if p.kind == "avg" else {}
        args = (p.window, p.stride, p.torch_padding)
        return lambda: fn(x, *args, **extra).movedim(1, -1)

    return prepare


def _torch_backward(p: Pool) -> Prepare:
    def prepare(inputs: tuple) -> Call:
        import torch
        import torch.nn.functional as F

        x, dy = (_channels_first_view(torch, a) for a in inputs)
        window, stride, padding = ([v] * p.rank for v in (p.window, p.stride, p.torch_padding))
        if p.kind == "max":
            pool = getattr(F, f"max_pool{p.rank}d")
            _, indices = pool(x, window, stride, padding, return_indices=True)
            backward = getattr(torch.ops.aten, f"max_pool{p.rank}d_with_indices_backward")
            dilation = [1] * p.rank
            return lambda: backward(
                dy, x, window, stride, padding, dilation, False, indices
            ).movedim(1, -1)
        backward = getattr(torch.ops.aten, f"avg_pool{p.rank}d_backward")
        return lambda: backward(dy, x, window, stride, padding, False, False, None).movedim(1, -1)

    return prepare


def _torch_global(kind: str) -> Prepare:
    def prepare(inputs: tuple) -> Call:
        import torch

        x = _channels_first_view(torch, inputs[0])
        dims = tuple(range(2, x.dim()))
        if kind == "max":
            return lambda: x.amax(dim=dims)
        return lambda: x.mean(dim=dims)

    return prepare


# --- cases -------------------------------------------------------------------------------


def _forward_cases() -> Iterator[Case]:
    for p in FORWARD:
        yield Case(
            p.name,
            p.size,
            np.dtype(p.dtype).name,
            partial(forward_inputs, p),
            {**native(f"{p.kind}_pool", p.window, **p.kwargs), "torch": _torch_forward(p)},
            equal if p.kind == "max" else allclose(1e-5, 1e-6),
            p.too_slow(),
        )


def _cnnkit_max_backward(p: Pool) -> Prepare:
    def prepare(inputs: tuple) -> Call:
        import cnnkit.ops

        x, dy = inputs
        _, indices = cnnkit.ops.max_pool(x, p.window, return_indices=True, **p.kwargs)
        backward = cnnkit.ops.max_pool_backward
        return lambda: backward(x, dy, p.window, indices=indices, **p.kwargs)

    return prepare


def _backward_cases() -> Iterator[Case]:
    for p in BACKWARD:
        impls = native(f"{p.kind}_pool_backward", p.window, **p.kwargs)
        if p.kind == "max":
            impls["cnnkit"] = _cnnkit_max_backward(p)
        yield Case(
            f"{p.name} backward",
            p.size,
            np.dtype(p.dtype).name,
            partial(backward_inputs, p),
            {**impls, "torch": _torch_backward(p)},
            allclose(1e-5, 1e-6),
            p.too_slow(),
        )


def _global_cases() -> Iterator[Case]:
    for shape in GLOBAL:
        for kind in ("avg", "max"):
            p = Pool(kind, shape, 1, 1, "valid")
            yield Case(
                f"global_{kind}_pool",
                p.size,
                "float32",
                partial(forward_inputs, p),
                {**native(f"global_{kind}_pool"), "torch": _torch_global(kind)},
                equal if kind == "max" else allclose(1e-5, 1e-6),
            )


def cases() -> list[Case]:
    """Forward, backward, then global pooling."""
    return [*_forward_cases(), *_backward_cases(), *_global_cases()]
