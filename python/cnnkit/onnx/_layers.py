"""Layers for ONNX operators that no Keras layer expresses exactly: pooling with explicit
pads, ``ceil_mode`` and ``count_include_pad``; local response normalization; elementwise
operations with a constant or with NumPy broadcasting between two tensors; parametrised
unary functions (Clip, HardSigmoid, Elu); PRelu's learned slopes; the softmax of opsets
before 13; Split, Slice and constant Pad.

They are ordinary cnnkit layers (registered, saved and loaded with the model, trained by
``fit``) and need only NumPy: an imported model does not need the ``onnx`` package to run,
save or load. Every axis here is an axis of the channels-last tensor the layer receives;
the importer (:mod:`cnnkit.onnx._import`) translates ONNX's axes before building them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate
from .. import autograd as ag
from ..autograd import Tensor
from ..layers import Layer
from ..saving.registry import register_serializable

__all__ = [
    "LRN",
    "ConstantOperand",
    "ElementwiseUnary",
    "OnnxPad",
    "OnnxPooling",
    "OnnxSoftmax",
    "PRelu",
    "Reduce",
    "SliceAxes",
    "Split",
    "TensorBroadcast",
]


def pooled_padding(
    n: int, k: int, s: int, before: int, after: int, ceil_mode: bool
) -> tuple[int, int]:
    """The padding that turns ONNX's (and torch's) ``ceil_mode`` into the floor rule of the
    kernels: extra elements after the end, never so many that a window would start in the
    padding after the input (the last such window is dropped, as torch and ONNX do)."""
    span = n + before + after - k
    if span < 0:
        raise ValueError(f"window {k} is larger than the padded input {n + before + after}")
    if not ceil_mode:
        return before, after
    out = -(-span // s) + 1
    if (out - 1) * s >= n + before:
        out -= 1
    return before, after + max((out - 1) * s + k - (n + before + after), 0)


@register_serializable(package="cnnkit")
class OnnxPooling(Layer):
    """Max or average pooling of channels-last inputs with ONNX's attributes.

    Parameters
    ----------
    kind : {"max", "avg"}
    pool_size, strides : tuple of int, one per spatial axis
    padding : tuple of (before, after) pairs, one per spatial axis
    ceil_mode : bool
        Output sizes rounded up; a window that would start in the end padding is dropped.
    count_include_pad : bool
        Average only: the explicit padding counts in the divisor (the ceil-mode overhang
        never does, as in torch and onnxruntime).

    Padded positions never win a maximum. Built on the kernels' explicit padding, so ceil
    mode and both averaging rules need no kernel of their own: ``count_include_pad`` pads
    zeros first and pools with the overhang only.
    """

    def __init__(
        self,
        kind: str,
        pool_size: Sequence[int],
        strides: Sequence[int],
        padding: Sequence[Sequence[int]],
        ceil_mode: bool = False,
        count_include_pad: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"OnnxPooling({self.name!r})"
        self.kind = _validate.choice(where, "kind", kind, ("max", "avg"))
        rank = len(pool_size) if isinstance(pool_size, (list, tuple)) else 0
        if not 1 <= rank <= 3:
            raise ValueError(f"{where}: pool_size must be 1 to 3 ints, got {pool_size!r}")
        self.pool_size = _validate.integers(where, "pool_size", pool_size, rank)
        self.strides = _validate.integers(where, "strides", strides, rank)
        if not isinstance(padding, (list, tuple)) or len(padding) != rank:
            raise ValueError(f"{where}: padding must be {rank} (before, after) pairs")
        self.padding = tuple(
            tuple(_validate.integers(where, "padding", p, 2, minimum=0)) for p in padding
        )
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        rank = len(self.pool_size)
        self._need_rank(x.shape, rank + 2, "(N, *spatial, C)")
        spatial = x.shape[1:-1]
        try:
            pads = [
                pooled_padding(n, k, s, b, a, self.ceil_mode)
                for n, k, s, (b, a) in zip(spatial, self.pool_size, self.strides, self.padding)
            ]
        except ValueError as exc:
            raise ValueError(f"{self._where()}: {exc} (input shape {x.shape})") from None
        if self.kind == "max":
            return ag.max_pool(x, self.pool_size, stride=self.strides, padding=tuple(pads))
        if self.count_include_pad and any(b or a for b, a in self.padding):
            x = ag.pad(x, [(0, 0), *((b, a) for b, a in self.padding), (0, 0)])
            pads = [(0, p[1] - a) for p, (_, a) in zip(pads, self.padding)]
        return ag.avg_pool(x, self.pool_size, stride=self.strides, padding=tuple(pads))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kind": self.kind,
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": [list(p) for p in self.padding],
            "ceil_mode": self.ceil_mode,
            "count_include_pad": self.count_include_pad,
        }


@register_serializable(package="cnnkit")
class LRN(Layer):
    """Local response normalization across channels (AlexNet, GoogLeNet), channels-last:
    ``y = x / (bias + alpha / size * sum(x[c'] ** 2))) ** beta`` over the ``size``
    channels ``c - (size - 1) // 2 <= c' <= c + size // 2`` (ONNX's and torch's window)."""

    def __init__(
        self,
        size: int,
        alpha: float = 1e-4,
        beta: float = 0.75,
        bias: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"LRN({self.name!r})"
        self.size = _validate.integer(where, "size", size, minimum=1)
        self.alpha = _validate.real(where, "alpha", alpha)
        self.beta = _validate.real(where, "beta", beta)
        self.bias = _validate.real(where, "bias", bias)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.ndim < 2:
            raise ValueError(f"{self._where()}: expected (N, ..., C), got shape {x.shape}")
        return ag.lrn(x, self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "bias": self.bias,
        }


_BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "max": lambda a, b: ag.maximum(a, b),
    "min": lambda a, b: ag.minimum(a, b),
    # A power by a constant scalar (the importer checks): torch writes LRN out with it.
    "pow": lambda a, b: a ** float(b.data.reshape(-1)[0]),
}


@register_serializable(package="cnnkit")
class ConstantOperand(Layer):
    """``x op constant`` (or ``constant op x`` with ``constant_first``) with NumPy
    broadcasting; ``op`` one of add, sub, mul, div, max, min, pow (by a scalar). The constant is a
    non-trainable weight of shape ``shape`` (batch axis first, of length 1), set by the
    importer, so it is saved with the model."""

    def __init__(
        self, op: str, shape: Sequence[int], constant_first: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        where = f"ConstantOperand({self.name!r})"
        self.op = _validate.choice(where, "op", op, tuple(_BINARY))
        self.shape = _validate.shape(where, "shape", shape, minimum=1) if shape else ()
        self.constant_first = bool(constant_first)

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.constant = self.add_weight("constant", self.shape, "zeros", trainable=False)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        a, b = (self.constant, x) if self.constant_first else (x, self.constant)
        return _BINARY[self.op](a, b)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "op": self.op,
            "shape": list(self.shape),
            "constant_first": self.constant_first,
        }


@register_serializable(package="cnnkit")
class TensorBroadcast(Layer):
    """``a op b`` of two tensors of equal rank with NumPy broadcasting (a squeeze-and-
    excitation gate multiplies ``(N, H, W, C)`` by ``(N, 1, 1, C)``); the Keras merging
    layers need equal shapes."""

    _list_input = True

    def __init__(self, op: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op = _validate.choice(f"TensorBroadcast({self.name!r})", "op", op, tuple(_BINARY))

    def call(self, x: Any, training: bool = False) -> Tensor:
        if len(x) != 2:
            raise ValueError(f"{self._where()}: expected 2 inputs, got {len(x)}")
        try:
            np.broadcast_shapes(x[0].shape, x[1].shape)
        except ValueError:
            raise ValueError(
                f"{self._where()}: shapes {x[0].shape} and {x[1].shape} do not broadcast"
            ) from None
        return _BINARY[self.op](x[0], x[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op}


def _clip(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.clip(x, a, b)


def _hard_sigmoid(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.clip(x * a + b, 0.0, 1.0)


def _elu(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.elu(x, a if a is not None else 1.0)


_UNARY = {"clip": _clip, "hard_sigmoid": _hard_sigmoid, "elu": _elu}


@register_serializable(package="cnnkit")
class ElementwiseUnary(Layer):
    """ONNX's parametrised activations: ``clip`` (``alpha``/``beta`` the bounds, None
    unbounded), ``hard_sigmoid`` (``clip(alpha * x + beta, 0, 1)``) and ``elu``
    (``alpha``)."""

    def __init__(
        self, function: str, alpha: float | None = None, beta: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        where = f"ElementwiseUnary({self.name!r})"
        self.function = _validate.choice(where, "function", function, tuple(_UNARY))
        self.alpha = None if alpha is None else float(alpha)
        self.beta = None if beta is None else float(beta)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return _UNARY[self.function](x, self.alpha, self.beta)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "function": self.function,
            "alpha": self.alpha,
            "beta": self.beta,
        }


@register_serializable(package="cnnkit")
class PRelu(Layer):
    """``x`` where positive, ``slope * x`` elsewhere, the slope a trainable weight of shape
    ``shape`` broadcast against the input (batch axis first, of length 1)."""

    def __init__(self, shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shape = (
            _validate.shape(f"PRelu({self.name!r})", "shape", shape, minimum=1) if shape else ()
        )

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.slope = self.add_weight("slope", self.shape, "zeros")

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return ag.where(x.data > 0, x, x * self.slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shape": list(self.shape)}


@register_serializable(package="cnnkit")
class OnnxSoftmax(Layer):
    """Softmax (or its logarithm) over ``axis``; with ``coerce`` over all axes from ``axis``
    on together, as ONNX's Softmax and LogSoftmax before opset 13."""

    def __init__(self, axis: int, log: bool = False, coerce: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _validate.integer(f"OnnxSoftmax({self.name!r})", "axis", axis)
        self.log = bool(log)
        self.coerce = bool(coerce)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        axis = self.axis % x.ndim if -x.ndim <= self.axis < x.ndim else None
        if axis is None or axis == 0:
            raise ValueError(f"{self._where()}: axis {self.axis} out of range for {x.shape}")
        fn = ag.log_softmax if self.log else ag.softmax
        if not self.coerce:
            return fn(x, axis=axis)
        rest = math.prod(x.shape[axis:])
        return fn(x.reshape(*x.shape[:axis], rest), axis=-1).reshape(x.shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "log": self.log, "coerce": self.coerce}


@register_serializable(package="cnnkit")
class Split(Layer):
    """Split along ``axis`` (not the batch axis) into pieces of ``sizes``; returns a list."""

    def __init__(self, axis: int, sizes: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Split({self.name!r})"
        self.axis = _validate.integer(where, "axis", axis, minimum=1)
        self.sizes = tuple(_validate.integer(where, "sizes", s, minimum=0) for s in sizes)

    def call(self, x: Tensor, training: bool = False) -> list[Tensor]:
        if self.axis >= x.ndim or sum(self.sizes) != x.shape[self.axis]:
            raise ValueError(
                f"{self._where()}: cannot split axis {self.axis} of shape {x.shape} into "
                f"{list(self.sizes)}"
            )
        out, start = [], 0
        for s in self.sizes:
            index = (slice(None),) * self.axis + (slice(start, start + s),)
            out.append(x[index])
            start += s
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "sizes": list(self.sizes)}


@register_serializable(package="cnnkit")
class SliceAxes(Layer):
    """``x[..., start:stop:step, ...]`` on the axes given (``[axis, start, stop, step]``
    rows; ``stop`` None runs to the end, backwards to the start for negative steps)."""

    def __init__(self, slices: Sequence[Sequence[Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"SliceAxes({self.name!r})"
        rows = []
        for row in slices:
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                raise ValueError(f"{where}: slices must be [axis, start, stop, step] rows")
            axis, start, stop, step = row
            rows.append(
                (
                    _validate.integer(where, "axis", axis, minimum=1),
                    _validate.integer(where, "start", start, minimum=None),
                    None if stop is None else _validate.integer(where, "stop", stop, minimum=None),
                    _validate.integer(where, "step", step, minimum=None),
                )
            )
        self.slices = tuple(rows)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        index: list[Any] = [slice(None)] * x.ndim
        for axis, start, stop, step in self.slices:
            if axis >= x.ndim:
                raise ValueError(f"{self._where()}: axis {axis} out of range for {x.shape}")
            index[axis] = slice(start, stop, step)
        return x[tuple(index)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "slices": [list(r) for r in self.slices]}


@register_serializable(package="cnnkit")
class OnnxPad(Layer):
    """Pad every axis after the batch axis by a (before, after) pair of ``padding``
    (negative values crop, as ONNX's Pad): ``mode`` "constant" with ``value``, or
    "reflect", "edge" and "wrap" as NumPy's modes of those names."""

    def __init__(
        self,
        padding: Sequence[Sequence[int]],
        mode: str = "constant",
        value: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"OnnxPad({self.name!r})"
        self.padding = tuple(
            tuple(_validate.integers(where, "padding", p, 2, minimum=None)) for p in padding
        )
        self.mode = _validate.choice(where, "mode", mode, ("constant", "reflect", "edge", "wrap"))
        self.value = float(value)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.ndim != len(self.padding) + 1:
            raise ValueError(
                f"{self._where()}: expected input of rank {len(self.padding) + 1}, got {x.shape}"
            )
        grow = ((0, 0), *((max(b, 0), max(a, 0)) for b, a in self.padding))
        if self.mode == "constant":
            y = ag.pad(x, grow, value=self.value) if any(b or a for b, a in grow) else x
        else:
            # Index arrays made by NumPy's own padding of 0..n-1: the gradient of the
            # gather adds each output's gradient to the element it copied.
            y = x
            for axis, (b, a) in enumerate(grow[1:], 1):
                if b or a:
                    n = y.shape[axis]
                    if n == 0 or (self.mode == "reflect" and max(b, a) >= n):
                        raise ValueError(
                            f"{self._where()}: cannot {self.mode}-pad axis {axis} of length "
                            f"{n} by {(b, a)}"
                        )
                    index = np.pad(np.arange(n), (b, a), mode=self.mode)  # type: ignore[call-overload]
                    y = y[(slice(None),) * axis + (index,)]
        crop = [slice(None)] + [
            slice(-min(b, 0), y.shape[i + 1] + min(a, 0)) for i, (b, a) in enumerate(self.padding)
        ]
        return y[tuple(crop)] if any(b < 0 or a < 0 for b, a in self.padding) else y

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "padding": [list(p) for p in self.padding],
            "mode": self.mode,
            "value": self.value,
        }


@register_serializable(package="cnnkit")
class Reduce(Layer):
    """The mean, maximum or sum over ``axes`` (never the batch axis), keeping them as
    length 1 with ``keepdims``."""

    def __init__(self, kind: str, axes: Sequence[int], keepdims: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        where = f"Reduce({self.name!r})"
        self.kind = _validate.choice(where, "kind", kind, ("mean", "max", "sum"))
        self.axes = tuple(_validate.integer(where, "axes", i, minimum=1) for i in axes)
        self.keepdims = bool(keepdims)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if any(i >= x.ndim for i in self.axes):
            raise ValueError(f"{self._where()}: axes {list(self.axes)} out of range for {x.shape}")
        if self.kind == "max":
            return x.max(axis=self.axes, keepdims=self.keepdims)
        total = x.sum(axis=self.axes, keepdims=self.keepdims)
        if self.kind == "sum":
            return total
        # The count from the shape: Tensor.mean would divide by zero on the empty batch of
        # a symbolic call.
        return total * (1.0 / math.prod(x.shape[i] for i in self.axes))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kind": self.kind,
            "axes": list(self.axes),
            "keepdims": self.keepdims,
        }
