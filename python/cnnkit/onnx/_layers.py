"""Layers for ONNX operators that no Keras layer expresses exactly: pooling with explicit
pads, ``ceil_mode`` and ``count_include_pad``; local response normalization; elementwise
operations and comparisons with a constant or with NumPy broadcasting between two tensors;
parametrised unary functions (Clip, HardSigmoid, Elu, Selu, Erf, Exp, Sqrt, ...); PRelu's
learned slopes; the softmax of opsets before 13; Split, Slice and constant Pad; Where;
the product of two tensors (MatMul); Resize with ONNX's interpolation rules.

They are ordinary cnnkit layers (registered, saved and loaded with the model, trained by
``fit``) and need only NumPy: an imported model does not need the ``onnx`` package to run,
save or load. Every axis here is an axis of the channels-last tensor the layer receives;
the importer (:mod:`cnnkit.onnx._import`) translates ONNX's axes before building them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from .. import _validate, ops
from .. import autograd as ag
from ..autograd import Tensor
from ..layers import Layer
from ..saving.registry import register_serializable

__all__ = [
    "LRN",
    "ConstantOperand",
    "ElementwiseUnary",
    "MatMul",
    "OnnxPad",
    "OnnxPooling",
    "OnnxSoftmax",
    "PRelu",
    "Reduce",
    "Resize",
    "Select",
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

    def _pads(self, shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """The kernels' explicit padding for an input of ``shape`` (see pooled_padding)."""
        self._need_rank(shape, len(self.pool_size) + 2, "(N, *spatial, C)")
        try:
            return [
                pooled_padding(n, k, s, b, a, self.ceil_mode)
                for n, k, s, (b, a) in zip(shape[1:-1], self.pool_size, self.strides, self.padding)
            ]
        except ValueError as exc:
            raise ValueError(f"{self._where()}: {exc} (input shape {shape})") from None

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        pads = self._pads(x.shape)
        if self.kind == "max":
            if not (ag.is_grad_enabled() and getattr(x, "requires_grad", False)):
                # Inference: without the argmax indices a backward would need (ResNet-18's
                # 112x112x64 pooling: 0.25 ms instead of 0.41).
                data = x.data if isinstance(x, Tensor) else x
                return Tensor(
                    ops.max_pool(data, self.pool_size, stride=self.strides, padding=tuple(pads))
                )
            return ag.max_pool(x, self.pool_size, stride=self.strides, padding=tuple(pads))
        if self.count_include_pad and any(b or a for b, a in self.padding):
            x = ag.pad(x, [(0, 0), *((b, a) for b, a in self.padding), (0, 0)])
            pads = [(0, p[1] - a) for p, (_, a) in zip(pads, self.padding)]
        return ag.avg_pool(x, self.pool_size, stride=self.strides, padding=tuple(pads))

    def _inference_step(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        if self.kind != "max":
            return None
        # The input's shape is the same from call to call: its padding is worked out once.
        known: dict[tuple[int, ...], tuple[tuple[int, int], ...]] = {}

        def step(x: np.ndarray) -> np.ndarray | None:
            pads = known.get(x.shape)
            if pads is None:
                pads = known[x.shape] = tuple(self._pads(x.shape))
            return cast(
                np.ndarray, ops.max_pool(x, self.pool_size, stride=self.strides, padding=pads)
            )

        return step

    def _max_pool_args(self, spatial: Sequence[int]) -> dict[str, Any] | None:
        # For inference plans (cnnkit.models.functional._fold_pools): the pool as
        # ops.conv_stem's arguments, for an input of these spatial sizes; None where the
        # layer's call would raise (its message, then, from the call).
        if self.kind != "max" or len(spatial) != len(self.pool_size):
            return None
        try:
            pads = self._pads((1, *spatial, 1))
        except ValueError:
            return None
        return {"pool_size": self.pool_size, "pool_stride": self.strides, "pool_padding": pads}

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
    # Comparisons give a mask of 0 and 1 in the model's float type (a cnnkit model has no
    # boolean tensors), which Where (:class:`Select`) reads as its condition; a mask has no
    # gradient.
    "greater": lambda a, b: _mask(np.greater, a, b),
    "less": lambda a, b: _mask(np.less, a, b),
    "greater_equal": lambda a, b: _mask(np.greater_equal, a, b),
    "less_equal": lambda a, b: _mask(np.less_equal, a, b),
    "equal": lambda a, b: _mask(np.equal, a, b),
    "not_equal": lambda a, b: _mask(np.not_equal, a, b),  # ONNX's Cast to bool, with 0
}

COMPARISONS = ("greater", "less", "greater_equal", "less_equal", "equal", "not_equal")


def _mask(compare: Any, a: Tensor, b: Tensor) -> Tensor:
    return Tensor(compare(a.data, b.data).astype(np.result_type(a.dtype, b.dtype)))


@register_serializable(package="cnnkit")
class ConstantOperand(Layer):
    """``x op constant`` (or ``constant op x`` with ``constant_first``) with NumPy
    broadcasting; ``op`` one of add, sub, mul, div, max, min, pow (by a scalar), or a
    comparison (greater, less, greater_equal, less_equal, equal, not_equal: a 0/1 mask).
    The constant is a
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


@register_serializable(package="cnnkit")
class AddReLU(Layer):
    """``relu(a + b)`` of two tensors of equal shapes: a residual block's Add and the Relu
    that alone reads it (onnxruntime fuses them too): one output array and one layer call
    instead of two, in one pass on every thread (:func:`cnnkit.ops.add_relu`, the bits of
    ``np.maximum(a + b, 0)``)."""

    _list_input = True
    # Inference plans may fold it into the convolution that makes one of its operands
    # (cnnkit.models.functional._fold_residuals).
    _adds_then_rectifies = True

    def call(self, x: Any, training: bool = False) -> Tensor:
        if len(x) != 2 or tuple(x[0].shape) != tuple(x[1].shape):
            raise ValueError(
                f"{self._where()}: expected 2 inputs of equal shapes, got "
                f"{[tuple(t.shape) for t in x]}"
            )
        a, b = x
        out = ops.add_relu(a.data, b.data)
        return ag._record(out, (a, b), lambda g: (g * (out > 0),) * 2)

    def _inference_step(self) -> Callable[[list[np.ndarray]], np.ndarray | None] | None:
        def step(x: list[np.ndarray]) -> np.ndarray | None:
            if len(x) != 2 or x[0].shape != x[1].shape:
                return None
            return ops.add_relu(x[0], x[1])

        return step


def _clip(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.clip(x, a, b)


def _hard_sigmoid(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.clip(x * a + b, 0.0, 1.0)


def _elu(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.elu(x, a if a is not None else 1.0)


def _selu(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.elu(x, ag._SELU_ALPHA if a is None else a) * (ag._SELU_SCALE if b is None else b)


def _erf_values(x: np.ndarray) -> np.ndarray:
    """erf elementwise. NumPy has no erf and SciPy is no dependency: float64 uses
    math.erf (exact, for gradient checks); float32 evaluates, in float64, the power series
    below |x| = 0.5 (where ``1 - erfc`` would cancel) and autograd's erfc fit above it
    (relative error about 1e-7, one float32 ulp)."""
    if x.dtype != np.float32:
        return np.asarray(_math_erf(x), dtype=np.float64).astype(x.dtype, copy=False)
    z = x.astype(np.float64)
    a = np.abs(z)
    term, series, z2 = z.copy(), z.copy(), z * z
    for n in range(1, 9):  # sum of (-1)^n z^(2n+1) / (n! (2n+1)); the next term < 1e-10
        term = term * -z2 / n
        series += term / (2 * n + 1)
    series *= 2 / math.sqrt(math.pi)
    t = 1 / (1 + 0.5 * a)
    poly = np.full_like(t, ag._ERFC[-1])
    for c in ag._ERFC[-2::-1]:
        poly = poly * t + c
    tail = np.sign(z) * (1 - t * np.exp(-a * a + poly))
    return np.where(a < 0.5, series, tail).astype(np.float32)


_math_erf = np.frompyfunc(math.erf, 1, 1)
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def _erf(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag._unary(x, _erf_values, lambda x, out: _TWO_OVER_SQRT_PI * np.exp(-x * x))


def _gelu_tanh(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.gelu(x, approximate=True)


def _thresholded_relu(x: Tensor, a: float | None, b: float | None) -> Tensor:
    return ag.where(x.data > (1.0 if a is None else a), x, 0.0)


def _quietly(fn: Any, x: Tensor) -> Tensor:
    # ONNX's Log and Sqrt give NaN (and -inf) outside their domain, as NumPy does; its
    # warnings would only be noise (and errors under strict warning filters).
    with np.errstate(invalid="ignore", divide="ignore"):
        return fn(x)


def _plain(fn: Any) -> Any:
    return lambda x, a, b: fn(x)


_UNARY = {
    "clip": _clip,
    "hard_sigmoid": _hard_sigmoid,
    "elu": _elu,
    "selu": _selu,
    "erf": _erf,
    "gelu_tanh": _gelu_tanh,
    "thresholded_relu": _thresholded_relu,
    "exp": _plain(ag.exp),
    "log": lambda x, a, b: _quietly(ag.log, x),
    "sqrt": lambda x, a, b: _quietly(ag.sqrt, x),
    "abs": _plain(ag.abs),
    "softplus": _plain(ag.softplus),
    "softsign": _plain(ag.softsign),
    "reciprocal": lambda x, a, b: 1.0 / x,
}


@register_serializable(package="cnnkit")
class ElementwiseUnary(Layer):
    """ONNX's elementwise functions that no cnnkit activation matches exactly: ``clip``
    (``alpha``/``beta`` the bounds, None unbounded), ``hard_sigmoid`` (``clip(alpha * x +
    beta, 0, 1)``), ``elu`` (``alpha``), ``selu`` (``beta * elu(x, alpha)``, by default
    the self-normalising constants), ``thresholded_relu`` (``x`` above ``alpha``, else 0),
    ``gelu_tanh`` (the tanh approximation), and ``erf``, ``exp``, ``log``, ``sqrt``,
    ``abs``, ``softplus``, ``softsign``, ``reciprocal``. All differentiable."""

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
    """The mean, maximum, minimum, sum, sum of squares, L1 or L2 norm (``kind`` "mean",
    "max", "min", "sum", "sum_square", "l1", "l2") over ``axes`` (never the batch axis),
    keeping them as length 1 with ``keepdims``."""

    def __init__(self, kind: str, axes: Sequence[int], keepdims: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        where = f"Reduce({self.name!r})"
        kinds = ("mean", "max", "min", "sum", "sum_square", "l1", "l2")
        self.kind = _validate.choice(where, "kind", kind, kinds)
        self.axes = tuple(_validate.integer(where, "axes", i, minimum=1) for i in axes)
        self.keepdims = bool(keepdims)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if any(i >= x.ndim for i in self.axes):
            raise ValueError(f"{self._where()}: axes {list(self.axes)} out of range for {x.shape}")
        if self.kind == "max":
            return x.max(axis=self.axes, keepdims=self.keepdims)
        if self.kind == "min":
            return -((-x).max(axis=self.axes, keepdims=self.keepdims))
        if self.kind in ("sum_square", "l2"):
            x = x * x
        elif self.kind == "l1":
            x = ag.abs(x)
        total = x.sum(axis=self.axes, keepdims=self.keepdims)
        if self.kind == "l2":
            return ag.sqrt(total)
        if self.kind != "mean":
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


@register_serializable(package="cnnkit")
class Select(Layer):
    """ONNX's Where: ``a`` where the condition is nonzero, else ``b``, with NumPy
    broadcasting. ``constants`` has one entry per operand (condition, a, b): None for a
    tensor the layer receives (in that order, as a list), or the shape of a constant,
    a non-trainable weight set by the importer (batch axis first, of length 1). The
    gradient flows to ``a`` and ``b``; a condition is a mask (see :class:`ConstantOperand`'s
    comparisons) and has none."""

    _list_input = True

    def __init__(self, constants: Sequence[Sequence[int] | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Select({self.name!r})"
        if not isinstance(constants, (list, tuple)) or len(constants) != 3:
            raise ValueError(f"{where}: constants must have 3 entries, got {constants!r}")
        self.constants = tuple(
            None if c is None else (_validate.shape(where, "constants", c) if c else ())
            for c in constants
        )
        if all(c is not None for c in self.constants):
            raise ValueError(f"{where}: at least one operand must be a tensor input")

    def build(self, input_shape: Any) -> None:
        self._constant = {
            i: self.add_weight(f"constant{i}", shape, "zeros", trainable=False)
            for i, shape in enumerate(self.constants)
            if shape is not None
        }

    def call(self, x: Any, training: bool = False) -> Tensor:
        given = list(x)
        count = sum(c is None for c in self.constants)
        if len(given) != count:
            raise ValueError(f"{self._where()}: expected {count} tensor inputs, got {len(given)}")
        operands = [self._constant[i] if i in self._constant else given.pop(0) for i in range(3)]
        condition, a, b = operands
        try:
            np.broadcast_shapes(condition.shape, a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"{self._where()}: shapes {condition.shape}, {a.shape} and {b.shape} do not "
                "broadcast"
            ) from None
        return ag.where(condition.data != 0, a, b)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "constants": [None if c is None else list(c) for c in self.constants],
        }


@register_serializable(package="cnnkit")
class MatMul(Layer):
    """The matrix product of two tensors over their last two axes (attention scores,
    Keras's Dot of sequences), the other axes broadcast as NumPy does. Both share the
    batch axis, so it is never contracted."""

    _list_input = True

    def call(self, x: Any, training: bool = False) -> Tensor:
        if len(x) != 2:
            raise ValueError(f"{self._where()}: expected 2 inputs, got {len(x)}")
        a, b = x
        if a.ndim < 3 or b.ndim < 3 or a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"{self._where()}: expected (N, ..., M, K) and (N, ..., K, P), got {a.shape} "
                f"and {b.shape}"
            )
        return ag.matmul(a, b)


_RESIZE_COORDINATES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
)
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def resize_source(n_in: int, n_out: int, scale: float, coordinates: str) -> np.ndarray:
    """ONNX Resize's source coordinate of every output index along one axis (float64).
    The "length" of align_corners and pytorch_half_pixel is ``scale * n_in``, as in the
    operator's reference implementation (it differs from ``n_out`` when the scale does not
    divide evenly)."""
    y = np.arange(n_out, dtype=np.float64)
    length = scale * n_in
    if coordinates == "align_corners":
        return np.zeros(n_out) if length == 1 else y * (n_in - 1) / (length - 1)
    if coordinates == "asymmetric":
        return y / scale
    if coordinates == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if length == 1 else (y + 0.5) / scale - 0.5
    if coordinates == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    offset = n_in / 2 * (1 - n_out / length) if coordinates == "half_pixel_symmetric" else 0.0
    return offset + (y + 0.5) / scale - 0.5


def resize_nearest_index(source: np.ndarray, n_in: int, mode: str) -> np.ndarray:
    """The input index each output copies: ``source`` rounded by ONNX's ``nearest_mode``
    (an integral source is itself), clamped to the input."""
    low = np.floor(source)
    frac = source - low
    if mode == "round_prefer_floor":
        up = frac > 0.5
    elif mode == "round_prefer_ceil":
        up = frac >= 0.5
    elif mode == "floor":
        up = np.zeros(source.shape, bool)
    else:
        up = frac > 0
    return np.clip(low + up, 0, n_in - 1).astype(np.intp)


def resize_matrix(
    n_in: int,
    source: np.ndarray,
    scale: float,
    mode: str,
    cubic_a: float = -0.75,
    exclude_outside: bool = False,
    antialias: bool = False,
) -> np.ndarray:
    """The ``(n_out, n_in)`` weights of ONNX's linear or cubic interpolation (float64).
    Each output takes an even number of taps around its source coordinate (the left one
    preferred, so an integral source ``s`` has taps ``s - n/2 .. s + n/2 - 1`` with the
    weight 1 on ``s`` for plain linear); taps past an edge repeat the edge sample, or get
    no weight with ``exclude_outside``. ``antialias`` widens the kernel by ``1 / scale``
    when shrinking."""
    low = np.floor(source)
    ratio = np.where(source == low, 1.0, source - low)
    s = min(scale, 1.0) if antialias else 1.0
    if mode == "linear" and not antialias:
        # (1 - r, r) as written, rather than the kernel: the weights of autograd.upsample.
        offsets = np.array([0.0, 1.0])
        weights = np.stack([1 - ratio, ratio], axis=1)
    elif mode == "linear":
        start = int(np.floor(-1 / s) + 1)
        offsets = np.arange(start, 2 - start, dtype=np.float64)
        weights = np.clip(1 - np.abs((offsets[None, :] - ratio[:, None]) * s), 0, 1)
    else:  # cubic, Keys' kernel with coefficient a
        start = int(np.floor(-2 / s) + 1) if antialias else -1
        offsets = np.arange(start, 2 - start, dtype=np.float64)
        d = np.abs((offsets[None, :] - ratio[:, None]) * s)
        a = cubic_a
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        weights = np.where(d <= 1, near, np.where(d < 2, far, 0.0))
    taps = low[:, None] + np.where((source == low)[:, None], offsets - 1, offsets)
    if antialias:
        weights = weights / weights.sum(axis=1, keepdims=True)
    if exclude_outside:
        weights = np.where((taps < 0) | (taps >= n_in), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    m = np.zeros((len(source), n_in))
    rows = np.broadcast_to(np.arange(len(source))[:, None], taps.shape)
    np.add.at(m, (rows, np.clip(taps, 0, n_in - 1).astype(np.intp)), weights)
    return m


@register_serializable(package="cnnkit")
class Resize(Layer):
    """ONNX's Resize (and Upsample) of the ``axes`` given (never the batch axis), each to
    its length in ``sizes`` with its factor in ``scales`` (the factor enters the
    coordinate rule: ONNX computes ``floor(n * scale)`` outputs but maps them with the
    exact factor).

    Parameters
    ----------
    mode : {"nearest", "linear", "cubic"}
    coordinates : str
        ONNX's ``coordinate_transformation_mode``: "half_pixel", "half_pixel_symmetric",
        "pytorch_half_pixel", "align_corners", "asymmetric" or "tf_half_pixel_for_nn".
    nearest_mode : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}
    cubic_a, exclude_outside, antialias
        As ONNX's ``cubic_coeff_a``, ``exclude_outside`` and ``antialias``.

    Interpolation is separable: one axis after another, each a product with a small
    matrix (linear, cubic) or a gather (nearest), whose gradient is the transposed product
    or a scatter-add, so imported networks stay trainable.
    """

    def __init__(
        self,
        axes: Sequence[int],
        sizes: Sequence[int],
        scales: Sequence[float],
        mode: str = "nearest",
        coordinates: str = "half_pixel",
        nearest_mode: str = "round_prefer_floor",
        cubic_a: float = -0.75,
        exclude_outside: bool = False,
        antialias: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"Resize({self.name!r})"
        self.axes = tuple(_validate.integer(where, "axes", a, minimum=1) for a in axes)
        self.sizes = tuple(_validate.integer(where, "sizes", n, minimum=1) for n in sizes)
        self.scales = tuple(float(s) for s in scales)
        if not len(self.axes) == len(self.sizes) == len(self.scales):
            raise ValueError(f"{where}: axes, sizes and scales must have one entry per axis")
        if any(not s > 0 for s in self.scales):
            raise ValueError(f"{where}: scales must be positive, got {list(self.scales)}")
        self.mode = _validate.choice(where, "mode", mode, ("nearest", "linear", "cubic"))
        self.coordinates = _validate.choice(where, "coordinates", coordinates, _RESIZE_COORDINATES)
        self.nearest_mode = _validate.choice(where, "nearest_mode", nearest_mode, _NEAREST_MODES)
        self.cubic_a = float(cubic_a)
        self.exclude_outside = bool(exclude_outside)
        self.antialias = bool(antialias)
        if self.antialias and self.mode == "nearest":
            raise ValueError(f"{where}: antialias applies to linear and cubic modes only")

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if any(a >= x.ndim for a in self.axes):
            raise ValueError(f"{self._where()}: axes {list(self.axes)} out of range for {x.shape}")
        steps = []
        for axis, n_out, scale in zip(self.axes, self.sizes, self.scales):
            n_in = x.shape[axis]
            if n_out == n_in and math.isclose(scale, 1.0):
                continue  # ONNX leaves such an axis as it is, whatever the mode
            source = resize_source(n_in, n_out, scale, self.coordinates)
            if self.mode == "nearest":
                steps.append((axis, resize_nearest_index(source, n_in, self.nearest_mode)))
            else:
                m = resize_matrix(
                    n_in, source, scale, self.mode, self.cubic_a, self.exclude_outside,
                    self.antialias,
                )  # fmt: skip
                steps.append((axis, m.astype(x.dtype)))
        if not steps:
            return x
        if self.mode == "nearest":
            for axis, index in steps:
                x = x[(slice(None),) * axis + (index,)]
            return x
        return _apply_matrices(x, steps)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axes": list(self.axes),
            "sizes": list(self.sizes),
            "scales": list(self.scales),
            "mode": self.mode,
            "coordinates": self.coordinates,
            "nearest_mode": self.nearest_mode,
            "cubic_a": self.cubic_a,
            "exclude_outside": self.exclude_outside,
            "antialias": self.antialias,
        }


def _apply_matrices(x: Tensor, steps: list[tuple[int, np.ndarray]]) -> Tensor:
    """``x`` multiplied along each axis by its matrix, in the order of ``steps`` (the order
    and the products of :func:`cnnkit.autograd.upsample`, so UpSampling's bilinear mode and
    the Resize it exports to give the same bits)."""

    def apply(a: np.ndarray, transpose: bool) -> np.ndarray:
        for axis, m in reversed(steps) if transpose else steps:
            a = np.moveaxis(np.tensordot(m.T if transpose else m, a, axes=(1, axis)), 0, axis)
        return np.ascontiguousarray(a)

    return ag._record(apply(x.data, False), (x,), lambda g: (apply(g, True),))
