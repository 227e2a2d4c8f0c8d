"""Export a cnnkit model to ONNX: :func:`save_model`.

The graph is built with the ``onnx`` package's helpers (the ``onnx`` extra); cnnkit writes
no protobuf itself.

Layout. cnnkit is channels-last; ONNX's Conv, pooling, BatchNormalization and Resize are
channels-first. Every value of the exported graph carries one of two layouts: cnnkit's
order (``"cl"``) or channels moved to axis 1 (``"cf"``). Layout-sensitive operators take
their input in ``"cf"`` and leave it there, so a chain of convolutions, pooling and
normalisation runs in ONNX's own layout with no Transpose between the layers. A Transpose
is emitted only where the two worlds meet: after a graph input that a convolution reads,
before a layer whose result depends on the element order (Flatten, Reshape, Dense on a
rank > 2 tensor, Dot), and before a graph output. Element-wise layers work in whichever
layout their inputs have; axis arguments (Softmax, Concatenate, UnitNormalization,
cropping and padding) are translated. Each value is transposed at most once per layout.

By default the graph's inputs and outputs are declared channels-last (``layout="NHWC"``),
so the ONNX file takes and returns exactly the arrays the cnnkit model does;
``layout="NCHW"`` declares them channels-first, as torch-exported networks are.

Shapes. The batch axis is symbolic (``"N"``); the other axes are the model's. Paddings
("same", causal) are written out per axis from those shapes, which every runtime reads
the same way (ONNX's ``auto_pad`` is deprecated).

Coverage: every layer of :mod:`cnnkit.layers` except ``Lambda`` (its function is Python
code), the importer's own layers (:mod:`cnnkit.onnx._layers`, so an imported network,
fine-tuned, exports again), and Sequential and functional models, nested
too. Subclassed models (a ``call`` of their own) and user subclasses of cnnkit layers
raise ``NotImplementedError``: their ``call`` could compute anything, so they are never
exported as their base class. Activations given as Python callables are refused the same
way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _nest, activations
from .. import autograd as ag
from .. import layers as L
from ..models import Functional, Model, Sequential
from ..saving.model_files import atomic_write
from ._layers import (
    COMPARISONS,
    LRN,
    AddReLU,
    ConstantOperand,
    ElementwiseUnary,
    MatMul,
    OnnxPad,
    OnnxPooling,
    OnnxSoftmax,
    PRelu,
    Reduce,
    Resize,
    Select,
    SliceAxes,
    Split,
    TensorBroadcast,
)

__all__ = ["save_model", "supported_layers"]

MIN_OPSET = 13  # Squeeze/ReduceSum take axes as inputs from 13 on; Softmax's axis semantics
MAX_OPSET = 21
LAYOUTS = ("NHWC", "NCHW")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "cnnkit.onnx needs the onnx package: pip install 'cnnkit[onnx]'"
        ) from None
    return onnx


class _Value:
    """A value of the graph: its ONNX name, cnnkit (channels-last) shape with batch 0, and
    its layout ("cl": cnnkit's axis order; "cf": channels at axis 1)."""

    __slots__ = ("layout", "name", "shape")

    def __init__(self, name: str, shape: tuple[int, ...], layout: str = "cl") -> None:
        self.name = name
        self.shape = tuple(shape)
        self.layout = layout if len(shape) >= 3 else "cl"

    @property
    def rank(self) -> int:
        return len(self.shape)


def _to_cf(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def _to_cl(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


def _axis_in(value: _Value, axis: int) -> int:
    """Where cnnkit's axis ``axis`` (non-negative) of ``value`` lies in its layout."""
    if value.layout == "cl":
        return axis
    return 0 if axis == 0 else 1 if axis == value.rank - 1 else axis + 1


def _same_pads(
    sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> list[tuple[int, int]]:
    """Keras's "same" padding (the odd pixel at the end), as cnnkit's kernels do it."""
    pads = []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _onnx_pads(pairs: Sequence[tuple[int, int]]) -> list[int]:
    return [int(p[0]) for p in pairs] + [int(p[1]) for p in pairs]


class _Graph:
    """Nodes, initializers and the layout bookkeeping of the graph being built."""

    def __init__(self, onnx: Any, opset: int, dtype: np.dtype) -> None:
        self.onnx = onnx
        self.opset = opset
        self.dtype = dtype
        self.nodes: list[Any] = []
        self.initializers: dict[str, Any] = {}
        self.used: set[str] = set()
        self.transposed: dict[tuple[str, str], _Value] = {}

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name

    def const(self, name: str, array: Any, dtype: Any = None) -> str:
        """An initializer; the same name given twice (a shared layer's weight) is one."""
        if name in self.initializers:
            return name
        a = np.array(array, dtype=dtype or self.dtype, order="C")  # 0-d stays 0-d: scalars
        self.used.add(name)
        self.initializers[name] = self.onnx.numpy_helper.from_array(a, name)
        return name

    def scalar(self, owner: str, what: str, value: float) -> str:
        return self.const(self.unique(f"{owner}.{what}"), np.asarray(value, self.dtype))

    def ints(self, owner: str, what: str, values: Sequence[int]) -> str:
        return self.const(self.unique(f"{owner}.{what}"), np.asarray(values, np.int64), np.int64)

    def node(self, op: str, inputs: Sequence[str], name: str, **attrs: Any) -> str:
        """Emit ``op`` as node ``name`` (made unique); its one output has the same name."""
        out = self.unique(name)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def layout(self, value: _Value, layout: str) -> _Value:
        if value.rank < 3 or value.layout == layout:
            return value
        key = (value.name, layout)
        if key not in self.transposed:
            perm = _to_cf(value.rank) if layout == "cf" else _to_cl(value.rank)
            suffix = "to_channels_first" if layout == "cf" else "to_channels_last"
            out = self.node("Transpose", [value.name], f"{value.name}.{suffix}", perm=perm)
            self.transposed[key] = _Value(out, value.shape, layout)
        return self.transposed[key]

    def reduce_sum(self, x: str, axes: Sequence[int], name: str) -> str:
        return self.node("ReduceSum", [x, self.ints(name, "axes", axes)], name, keepdims=1)


# -- activations -------------------------------------------------------------------------------
_ACTIVATION_BY_FUNCTION = {id(fn): name for name, fn in activations.NAMES.items()}


def _activation_name(where: str, name: str, fn: Callable[..., Any]) -> str:
    """The cnnkit activation name of ``fn`` (a function of :data:`cnnkit.activations.NAMES`
    or the autograd function it wraps); any other callable cannot be exported."""
    known = _ACTIVATION_BY_FUNCTION.get(id(fn))
    if known is not None:
        return known
    if fn is ag.relu:
        return "relu"
    raise NotImplementedError(
        f"save_model(): {where} has the activation {name!r}, a Python callable that ONNX "
        f"cannot express; use one of the named activations: {', '.join(sorted(activations.NAMES))}"
    )


def _activation(g: _Graph, x: _Value, name: str, owner: str) -> _Value:
    """The nodes of activation ``name`` applied to ``x`` (last axis for softmax)."""
    n = f"{owner}.{name}" if name not in ("linear",) else owner
    v = x.name

    def unary(op: str, **attrs: Any) -> str:
        return g.node(op, [v], n, **attrs)

    def mul(a: str, b: str, suffix: str) -> str:
        return g.node("Mul", [a, b], f"{n}.{suffix}")

    if name == "linear":
        return x
    if name == "relu":
        out = unary("Relu")
    elif name == "relu6":
        out = g.node("Clip", [v, g.scalar(n, "min", 0.0), g.scalar(n, "max", 6.0)], n)
    elif name == "leaky_relu":
        out = unary("LeakyRelu", alpha=0.2)  # activations.leaky_relu's default slope
    elif name == "elu":
        out = unary("Elu", alpha=1.0)
    elif name == "selu":
        out = unary("Selu", alpha=ag._SELU_ALPHA, gamma=ag._SELU_SCALE)
    elif name == "gelu":
        if g.opset >= 20:
            out = unary("Gelu")
        else:  # 0.5 * x * (1 + erf(x / sqrt(2)))
            e = g.node(
                "Erf", [mul(v, g.scalar(n, "rsqrt2", 1 / math.sqrt(2)), "scaled")], f"{n}.erf"
            )
            e1 = g.node("Add", [e, g.scalar(n, "one", 1.0)], f"{n}.one_plus")
            out = g.node("Mul", [mul(v, g.scalar(n, "half", 0.5), "half_x"), e1], n)
    elif name in ("silu", "swish"):
        out = g.node("Mul", [v, g.node("Sigmoid", [v], f"{n}.sigmoid")], n)
    elif name == "hard_sigmoid":
        out = unary("HardSigmoid", alpha=1 / 6, beta=0.5)
    elif name in ("hard_silu", "hard_swish"):
        if g.opset >= 14:
            out = unary("HardSwish")
        else:
            hs = g.node("HardSigmoid", [v], f"{n}.hard_sigmoid", alpha=1 / 6, beta=0.5)
            out = g.node("Mul", [v, hs], n)
    elif name == "mish":
        if g.opset >= 18:
            out = unary("Mish")
        else:
            sp = g.node("Softplus", [v], f"{n}.softplus")
            out = g.node("Mul", [v, g.node("Tanh", [sp], f"{n}.tanh")], n)
    elif name == "sigmoid":
        out = unary("Sigmoid")
    elif name == "tanh":
        out = unary("Tanh")
    elif name == "softplus":
        out = unary("Softplus")
    elif name == "softsign":
        out = unary("Softsign")
    elif name == "exponential":
        out = unary("Exp")
    elif name in ("softmax", "log_softmax"):
        axis = _axis_in(x, x.rank - 1)
        out = unary("Softmax" if name == "softmax" else "LogSoftmax", axis=axis)
    else:  # pragma: no cover - NAMES and this table are kept in step by a test
        raise NotImplementedError(f"save_model(): activation {name!r} has no ONNX mapping")
    return _Value(out, x.shape, x.layout)


def _layer_activation(g: _Graph, layer: Any, x: _Value, owner: str) -> _Value:
    name = _activation_name(f"{type(layer).__name__} {layer.name!r}", layer.activation, layer._act)
    return _activation(g, x, name, owner)


# -- layers ------------------------------------------------------------------------------------
def _oihw(kernel: np.ndarray) -> np.ndarray:
    """cnnkit's ``(*kernel, I, O)`` as ONNX's ``(O, I, *kernel)``."""
    r = kernel.ndim - 2
    return kernel.transpose(r + 1, r, *range(r))


def _conv_node(
    g: _Graph,
    x: _Value,
    w: np.ndarray,
    w_name: str,
    b: Any,
    b_name: str,
    *,
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilations: Sequence[int],
    group: int,
    name: str,
) -> str:
    inputs = [x.name, g.const(w_name, _oihw(w))]
    if b is not None:
        inputs.append(g.const(b_name, b))
    return g.node(
        "Conv",
        inputs,
        name,
        kernel_shape=list(w.shape[:-2]),
        strides=list(strides),
        pads=_onnx_pads(pads),
        dilations=list(dilations),
        group=group,
    )


def _conv(g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str) -> _Value:
    x = g.layout(xs[0], "cf")
    spatial = x.shape[1:-1]
    if not isinstance(layer.padding, str):  # explicit (before, after) pairs
        pads = [tuple(p) for p in layer.padding]
    elif layer.padding == "causal":
        pads = [(d * (k - 1), 0) for k, d in zip(layer.kernel_size, layer.dilation_rate)]
    elif layer.padding == "same":
        pads = _same_pads(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)
    else:
        pads = [(0, 0)] * len(spatial)
    bias = None if layer.bias is None else layer.bias.data
    out = _conv_node(
        g,
        x,
        layer.kernel.data,
        layer.kernel.name,
        bias,
        f"{layer.name}/bias",
        strides=layer.strides,
        pads=pads,
        dilations=layer.dilation_rate,
        group=layer.groups,
        name=name,
    )
    return _layer_activation(g, layer, _Value(out, out_shape, "cf"), name)


def _conv_transpose(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cf")
    small, big = x.shape[1:-1], out_shape[1:-1]
    k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
    if not isinstance(layer.padding, str):
        pads = [tuple(p) for p in layer.padding]
    elif layer.padding == "same":
        pads = _same_pads(big, k, s, d)
    else:
        pads = [(0, 0)] * len(big)
    # ONNX's output size is s*(n-1) + k_eff - pads + output_padding; the rest of the
    # convolution's input that its windows never reached gets only the bias, as in cnnkit.
    extra = [
        m - (si * (n - 1) + di * (ki - 1) + 1 - pb - pa)
        for m, n, ki, si, di, (pb, pa) in zip(big, small, k, s, d, pads)
    ]
    w = layer.kernel.data  # (*kernel, F, C_in) -> ONNX (C_in, F, *kernel)
    inputs = [x.name, g.const(layer.kernel.name, _oihw(w))]
    if layer.bias is not None:
        inputs.append(g.const(layer.bias.name, layer.bias.data))
    out = g.node(
        "ConvTranspose",
        inputs,
        name,
        kernel_shape=list(k),
        strides=list(s),
        dilations=list(d),
        pads=_onnx_pads(pads),
        output_padding=extra,
    )
    return _layer_activation(g, layer, _Value(out, out_shape, "cf"), name)


def _depthwise(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cf")
    separable = isinstance(layer, L.SeparableConv2D)
    kernel = layer.depthwise_kernel if separable else layer.kernel
    kh, kw, c, m = kernel.shape
    spatial = x.shape[1:-1]
    pads = (
        [tuple(p) for p in layer.padding]
        if not isinstance(layer.padding, str)
        else _same_pads(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)
        if layer.padding == "same"
        else [(0, 0), (0, 0)]
    )
    bias = None if separable or layer.bias is None else layer.bias.data
    out = _conv_node(
        g,
        x,
        kernel.data.reshape(kh, kw, 1, c * m),
        kernel.name,
        bias,
        f"{layer.name}/bias",
        strides=layer.strides,
        pads=pads,
        dilations=layer.dilation_rate,
        group=c,
        name=name if not separable else f"{name}.depthwise",
    )
    if separable:
        depth = _Value(out, (*out_shape[:-1], c * m), "cf")
        bias = None if layer.bias is None else layer.bias.data
        out = _conv_node(
            g,
            depth,
            layer.pointwise_kernel.data,
            layer.pointwise_kernel.name,
            bias,
            f"{layer.name}/bias",
            strides=(1, 1),
            pads=[(0, 0), (0, 0)],
            dilations=(1, 1),
            group=1,
            name=name,
        )
    return _layer_activation(g, layer, _Value(out, out_shape, "cf"), name)


def _dense(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cl")
    w = g.const(layer.kernel.name, layer.kernel.data)
    if x.rank == 2:
        inputs = [x.name, w] + (
            [] if layer.bias is None else [g.const(layer.bias.name, layer.bias.data)]
        )
        out = g.node("Gemm", inputs, name)
    else:
        out = g.node("MatMul", [x.name, w], name if layer.bias is None else f"{name}.matmul")
        if layer.bias is not None:
            out = g.node("Add", [out, g.const(layer.bias.name, layer.bias.data)], name)
    return _layer_activation(g, layer, _Value(out, out_shape, "cl"), name)


def _pool(g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str) -> _Value:
    x = g.layout(xs[0], "cf")
    spatial = x.shape[1:-1]
    ones = [1] * len(spatial)
    pads = (
        _same_pads(spatial, layer.pool_size, layer.strides, ones)
        if layer.padding == "same"
        else [(0, 0)] * len(spatial)
    )
    attrs: dict[str, Any] = {
        "kernel_shape": list(layer.pool_size),
        "strides": list(layer.strides),
        "pads": _onnx_pads(pads),
    }
    if layer.kind == "avg":
        attrs["count_include_pad"] = 0  # Keras: padded positions are not counted
    op = "MaxPool" if layer.kind == "max" else "AveragePool"
    return _Value(g.node(op, [x.name], name, **attrs), out_shape, "cf")


def _global_pool(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cf")
    op = "GlobalAveragePool" if layer.kind == "avg" else "GlobalMaxPool"
    if layer.keepdims:
        return _Value(g.node(op, [x.name], name), out_shape, "cf")
    pooled = g.node(op, [x.name], f"{name}.pool")
    return _Value(g.node("Flatten", [pooled], name, axis=1), out_shape, "cl")


def _batch_norm(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cf")
    c = layer.moving_mean.shape[0]
    gamma = layer.gamma.data if layer.gamma is not None else np.ones(c, layer.dtype)
    beta = layer.beta.data if layer.beta is not None else np.zeros(c, layer.dtype)
    inputs = [
        x.name,
        g.const(f"{layer.name}/gamma", gamma),
        g.const(f"{layer.name}/beta", beta),
        g.const(layer.moving_mean.name, layer.moving_mean.data),
        g.const(layer.moving_variance.name, layer.moving_variance.data),
    ]
    out = g.node("BatchNormalization", inputs, name, epsilon=float(layer.epsilon))
    return _Value(out, out_shape, x.layout)


def _unit_norm(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    axes = layer.axis if isinstance(layer.axis, list) else [layer.axis]
    onnx_axes = sorted({_axis_in(x, a % x.rank) for a in axes})
    sq = g.node("Mul", [x.name, x.name], f"{name}.square")
    total = g.reduce_sum(sq, onnx_axes, f"{name}.sum")
    floor = g.node("Max", [total, g.scalar(name, "epsilon", 1e-12)], f"{name}.max")
    norm = g.node("Sqrt", [floor], f"{name}.sqrt")
    return _Value(g.node("Div", [x.name, norm], name), out_shape, x.layout)


def _activation_layer(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    return _layer_activation(g, layer, xs[0], name)


def _relu_layer(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    capped = layer.max_value is not None
    base = f"{name}.relu" if capped else name
    if layer.threshold == 0:
        if layer.negative_slope == 0:
            y = g.node("Relu", [x.name], base)
        else:
            y = g.node("LeakyRelu", [x.name], base, alpha=float(layer.negative_slope))
    else:  # x > t ? x : (x - t) * slope
        t = g.scalar(name, "threshold", layer.threshold)
        above = g.node("Greater", [x.name, t], f"{name}.above")
        below = g.node("Sub", [x.name, t], f"{name}.shifted")
        below = g.node(
            "Mul", [below, g.scalar(name, "slope", layer.negative_slope)], f"{name}.below"
        )
        y = g.node("Where", [above, x.name, below], base)
    if capped:  # Clip with no lower bound: the min(y, max_value) cnnkit computes
        y = g.node("Clip", [y, "", g.scalar(name, "max_value", layer.max_value)], name)
    return _Value(y, out_shape, x.layout)


def _leaky_relu(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    return _Value(
        g.node("LeakyRelu", [x.name], name, alpha=float(layer.negative_slope)), out_shape, x.layout
    )


def _softmax(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    axis = _axis_in(x, layer.axis % x.rank)
    return _Value(g.node("Softmax", [x.name], name, axis=axis), out_shape, x.layout)


def _rescaling(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    y = x.name
    if layer.scale != 1:
        y = g.node(
            "Mul",
            [y, g.scalar(name, "scale", layer.scale)],
            name if layer.offset == 0 else f"{name}.scale",
        )
    if layer.offset != 0:
        y = g.node("Add", [y, g.scalar(name, "offset", layer.offset)], name)
    if y == x.name:
        y = g.node("Identity", [y], name)
    return _Value(y, out_shape, x.layout)


def _dropout(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    return xs[0]  # the identity at inference


def _same_layout(g: _Graph, xs: list[_Value]) -> list[_Value]:
    """The inputs of a merging layer in one layout: channels-first when any already is
    (the convolutions around a residual sum run there), else cnnkit's."""
    layout = "cf" if any(x.layout == "cf" for x in xs) else "cl"
    return [g.layout(x, layout) for x in xs]


_MERGE_OPS = {
    L.Add: "Add",
    L.Subtract: "Sub",
    L.Multiply: "Mul",
    L.Maximum: "Max",
    L.Minimum: "Min",
}


def _merge(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    xs = _same_layout(g, xs)
    op = "Add" if isinstance(layer, L.Average) else _MERGE_OPS[type(layer)]
    # Pairwise, left to right, as cnnkit reduces them (so the sums round the same way).
    out = xs[0].name
    last = len(xs) - 1
    for i, x in enumerate(xs[1:], 1):
        final = i == last and not isinstance(layer, L.Average)
        out = g.node(op, [out, x.name], name if final else f"{name}.{op.lower()}")
    if isinstance(layer, L.Average):
        out = g.node("Mul", [out, g.scalar(name, "inverse_count", 1.0 / len(xs))], name)
    return _Value(out, out_shape, xs[0].layout)


def _add_relu(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    """The importer's fused residual end, written back as ONNX's Add and Relu."""
    xs = _same_layout(g, xs)
    total = g.node("Add", [xs[0].name, xs[1].name], f"{name}.add")
    return _Value(g.node("Relu", [total], name), out_shape, xs[0].layout)


def _concatenate(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    xs = _same_layout(g, xs)
    axis = _axis_in(xs[0], layer.axis % xs[0].rank)
    return _Value(g.node("Concat", [x.name for x in xs], name, axis=axis), out_shape, xs[0].layout)


def _dot(g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str) -> _Value:
    a, b = (g.layout(x, "cl") for x in xs)
    i, j = layer._resolved([a.shape, b.shape])
    an, bn = a.name, b.name
    if layer.normalize:
        normed = []
        for v, axis, tag in ((an, i, "a"), (bn, j, "b")):
            sq = g.node("Mul", [v, v], f"{name}.{tag}_square")
            total = g.reduce_sum(sq, [axis], f"{name}.{tag}_sum")
            total = g.node(
                "Add", [total, g.scalar(name, f"{tag}_epsilon", 1e-12)], f"{name}.{tag}_eps"
            )
            norm = g.node("Sqrt", [total], f"{name}.{tag}_norm")
            normed.append(g.node("Div", [v, norm], f"{name}.{tag}_normalized"))
        an, bn = normed
    if a.rank == 2:
        prod = g.node("Mul", [an, bn], f"{name}.product")
        out = g.reduce_sum(prod, [1], name)
    else:
        left = an if i == 2 else g.node("Transpose", [an], f"{name}.a_t", perm=[0, 2, 1])
        right = bn if j == 1 else g.node("Transpose", [bn], f"{name}.b_t", perm=[0, 2, 1])
        out = g.node("MatMul", [left, right], name)
    return _Value(out, out_shape, "cl")


def _flatten(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cl")
    return _Value(g.node("Flatten", [x.name], name, axis=1), out_shape, "cl")


def _reshape(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cl")
    shape = g.ints(name, "shape", [0, *out_shape[1:]])  # 0: keep the (symbolic) batch
    return _Value(g.node("Reshape", [x.name, shape], name), out_shape, "cl")


def _permute(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cl")
    return _Value(g.node("Transpose", [x.name], name, perm=[0, *layer.dims]), out_shape, "cl")


def _pad(g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str) -> _Value:
    x = xs[0]
    pairs_cl = [(0, 0), *layer.padding, (0, 0)]
    pairs = pairs_cl if x.layout == "cl" else [pairs_cl[p] for p in _to_cf(x.rank)]
    pads = g.ints(name, "pads", _onnx_pads(pairs))
    return _Value(g.node("Pad", [x.name, pads], name, mode="constant"), out_shape, x.layout)


def _crop(g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str) -> _Value:
    x = xs[0]
    sizes = x.shape[1:-1]
    axes = [_axis_in(x, i + 1) for i in range(len(sizes))]
    starts = [a for a, _ in layer.cropping]
    ends = [n - b for n, (_, b) in zip(sizes, layer.cropping)]
    inputs = [
        x.name,
        g.ints(name, "starts", starts),
        g.ints(name, "ends", ends),
        g.ints(name, "axes", axes),
    ]
    return _Value(g.node("Slice", inputs, name), out_shape, x.layout)


def _upsample(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cf")
    scales = g.const(
        g.unique(f"{name}.scales"), np.asarray([1, 1, *layer.size], np.float32), np.float32
    )
    if layer.interpolation == "nearest":  # out[i] = in[floor(i / size)]: repeats
        attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
    else:  # half-pixel centres, clamped at the edges, as cnnkit (and Keras, torch)
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    return _Value(g.node("Resize", [x.name, "", scales], name, **attrs), out_shape, "cf")


def _lambda(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    raise NotImplementedError(
        f"save_model(): Lambda layer {layer.name!r} cannot be exported: its function is Python "
        "code, which an ONNX graph cannot hold; write the computation with cnnkit layers, or "
        "export the part of the model before it"
    )


# -- the importer's layers (cnnkit.onnx._layers): an imported network exports again --------
def _in_layout(array: np.ndarray, x: _Value) -> np.ndarray:
    """A constant broadcast against ``x`` (same rank, cnnkit's axes) in ``x``'s layout."""
    if x.layout == "cf" and array.ndim == x.rank:
        return array.transpose(_to_cf(x.rank))
    return array


_BINARY_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min"}
_BINARY_OPS.update(
    {"pow": "Pow", "greater": "Greater", "less": "Less", "greater_equal": "GreaterOrEqual"}
    | {"less_equal": "LessOrEqual", "equal": "Equal", "not_equal": "Equal"}
)


def _binary_node(g: _Graph, op: str, args: list[str], name: str) -> str:
    """``op`` of two values; a comparison's boolean result is cast to the model's float
    type (cnnkit's masks are 0 and 1)."""
    if op not in COMPARISONS:
        return g.node(_BINARY_OPS[op], args, name)
    out = g.node(_BINARY_OPS[op], args, f"{name}.{op}")
    if op == "not_equal":
        out = g.node("Not", [out], f"{name}.not")
    elem = g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype)
    return g.node("Cast", [out], name, to=elem)


def _onnx_pooling(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = g.layout(xs[0], "cf")
    attrs: dict[str, Any] = {
        "kernel_shape": list(layer.pool_size),
        "strides": list(layer.strides),
        "pads": _onnx_pads(layer.padding),
        "ceil_mode": int(layer.ceil_mode),
    }
    if layer.kind == "avg":
        attrs["count_include_pad"] = int(layer.count_include_pad)
    op = "MaxPool" if layer.kind == "max" else "AveragePool"
    return _Value(g.node(op, [x.name], name, **attrs), out_shape, "cf")


def _onnx_softmax(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    op = "LogSoftmax" if layer.log else "Softmax"
    x = xs[0]
    axis = layer.axis % x.rank
    if not layer.coerce or axis == x.rank - 1:
        return _Value(g.node(op, [x.name], name, axis=_axis_in(x, axis)), out_shape, x.layout)
    # Before opset 13: over all axes from ``axis`` on together.
    x = g.layout(x, "cl")
    flat = g.node("Flatten", [x.name], f"{name}.flatten", axis=axis)
    soft = g.node(op, [flat], f"{name}.{op.lower()}", axis=1)
    shape = g.ints(name, "shape", [0, *x.shape[1:]])
    return _Value(g.node("Reshape", [soft, shape], name), out_shape, "cl")


def _elementwise_unary(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    if layer.function == "clip":
        low = "" if layer.alpha is None else g.scalar(name, "min", layer.alpha)
        high = "" if layer.beta is None else g.scalar(name, "max", layer.beta)
        out = g.node("Clip", [x.name, low, high], name)
    elif layer.function == "hard_sigmoid":
        out = g.node("HardSigmoid", [x.name], name, alpha=layer.alpha, beta=layer.beta)
    elif layer.function == "elu":
        alpha = 1.0 if layer.alpha is None else layer.alpha
        out = g.node("Elu", [x.name], name, alpha=alpha)
    elif layer.function == "selu":
        alpha = ag._SELU_ALPHA if layer.alpha is None else layer.alpha
        gamma = ag._SELU_SCALE if layer.beta is None else layer.beta
        out = g.node("Selu", [x.name], name, alpha=alpha, gamma=gamma)
    elif layer.function == "thresholded_relu":
        alpha = 1.0 if layer.alpha is None else layer.alpha
        out = g.node("ThresholdedRelu", [x.name], name, alpha=alpha)
    elif layer.function == "gelu_tanh" and g.opset >= 20:
        out = g.node("Gelu", [x.name], name, approximate="tanh")
    elif layer.function == "gelu_tanh":  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        v = x.name
        cube = g.node("Mul", [v, g.node("Mul", [v, v], f"{name}.square")], f"{name}.cube")
        inner = g.node(
            "Add", [v, g.node("Mul", [cube, g.scalar(name, "k", 0.044715)], f"{name}.kx3")],
            f"{name}.inner",
        )  # fmt: skip
        scaled = g.node("Mul", [inner, g.scalar(name, "c", math.sqrt(2 / math.pi))], f"{name}.c")
        one = g.node("Add", [g.node("Tanh", [scaled], f"{name}.tanh"), g.scalar(name, "one", 1.0)],
                     f"{name}.one_plus")  # fmt: skip
        out = g.node("Mul", [g.node("Mul", [v, g.scalar(name, "half", 0.5)], f"{name}.half_x"),
                             one], name)  # fmt: skip
    else:
        op = {"erf": "Erf", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs"}
        op |= {"softplus": "Softplus", "softsign": "Softsign", "reciprocal": "Reciprocal"}
        out = g.node(op[layer.function], [x.name], name)
    return _Value(out, out_shape, x.layout)


def _prelu(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    slope = g.const(g.unique(layer.slope.name), _in_layout(layer.slope.data, x))
    return _Value(g.node("PRelu", [x.name, slope], name), out_shape, x.layout)


def _lrn(g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str) -> _Value:
    x = g.layout(xs[0], "cf")
    attrs = {"size": layer.size, "alpha": layer.alpha, "beta": layer.beta, "bias": layer.bias}
    return _Value(g.node("LRN", [x.name], name, **attrs), out_shape, "cf")


def _constant_operand(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    if 0 < layer.constant.ndim != x.rank:
        x = g.layout(x, "cl")  # NumPy's right-aligned broadcasting on cnnkit's axes
    c = g.const(g.unique(layer.constant.name), _in_layout(layer.constant.data, x))
    args = [c, x.name] if layer.constant_first else [x.name, c]
    return _Value(_binary_node(g, layer.op, args, name), out_shape, x.layout)


def _tensor_broadcast(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    a, b = _same_layout(g, xs)
    return _Value(_binary_node(g, layer.op, [a.name, b.name], name), out_shape, a.layout)


def _onnx_pad(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    if layer.mode == "wrap" and g.opset < 19:
        raise NotImplementedError(
            f"save_model(): OnnxPad layer {layer.name!r} pads in 'wrap' mode, an ONNX Pad "
            f"mode from opset 19 on; export with opset=19 or later, got {g.opset}"
        )
    pairs_cl = [(0, 0), *layer.padding]
    pairs = pairs_cl if x.layout == "cl" else [pairs_cl[p] for p in _to_cf(x.rank)]
    inputs = [x.name, g.ints(name, "pads", _onnx_pads(pairs))]
    if layer.mode == "constant":
        inputs.append(g.scalar(name, "value", layer.value))
    return _Value(g.node("Pad", inputs, name, mode=layer.mode), out_shape, x.layout)


_REDUCE_OPS = {"mean": "ReduceMean", "max": "ReduceMax", "sum": "ReduceSum", "min": "ReduceMin"}
_REDUCE_OPS |= {"sum_square": "ReduceSumSquare", "l1": "ReduceL1", "l2": "ReduceL2"}


def _reduce(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0] if layer.keepdims else g.layout(xs[0], "cl")  # dropped axes: cnnkit's order
    axes = sorted(_axis_in(x, a) for a in layer.axes)
    op = _REDUCE_OPS[layer.kind]
    keep = int(layer.keepdims)
    if op == "ReduceSum" or g.opset >= 18:  # axes an input (ReduceSum from 13, others 18)
        out = g.node(op, [x.name, g.ints(name, "axes", axes)], name, keepdims=keep)
    else:
        out = g.node(op, [x.name], name, axes=axes, keepdims=keep)
    return _Value(out, out_shape, x.layout)


def _select(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    given = _same_layout(g, xs) if len(xs) > 1 else list(xs)
    if any(0 < len(shape) != given[0].rank for shape in layer.constants if shape is not None):
        given = [g.layout(v, "cl") for v in given]  # NumPy's broadcasting on cnnkit's axes
    ref = given[0]
    args = []
    for i, shape in enumerate(layer.constants):
        if shape is None:
            args.append(given.pop(0).name)
        else:
            w = layer._constant[i]
            args.append(g.const(g.unique(w.name), _in_layout(w.data, ref)))
    args[0] = g.node("Cast", [args[0]], f"{name}.condition", to=g.onnx.TensorProto.BOOL)
    return _Value(g.node("Where", args, name), out_shape, ref.layout)


def _matmul(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    a, b = (g.layout(x, "cl") for x in xs)  # the product is over cnnkit's last two axes
    return _Value(g.node("MatMul", [a.name, b.name], name), out_shape, "cl")


def _resize(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    where = f"save_model(): Resize layer {layer.name!r}"
    if layer.coordinates == "tf_half_pixel_for_nn":
        raise NotImplementedError(f"{where}: 'tf_half_pixel_for_nn' is an ONNX mode of opsets "
                                  "11 and 12 only; cnnkit exports opset 13 on")  # fmt: skip
    if layer.antialias and g.opset < 18:
        raise NotImplementedError(f"{where}: antialias needs opset 18 or later, got {g.opset}")
    if layer.coordinates == "half_pixel_symmetric" and g.opset < 19:
        raise NotImplementedError(
            f"{where}: 'half_pixel_symmetric' needs opset 19 or later, got {g.opset}"
        )
    scales = [1.0] * x.rank
    shape = list(x.shape) if x.layout == "cl" else [x.shape[p] for p in _to_cf(x.rank)]
    sizes = list(shape)
    for axis, n, s in zip(layer.axes, layer.sizes, layer.scales):
        scales[_axis_in(x, axis)] = s
        sizes[_axis_in(x, axis)] = n
    attrs: dict[str, Any] = {
        "mode": layer.mode,
        "coordinate_transformation_mode": layer.coordinates,
        "nearest_mode": layer.nearest_mode,
        "cubic_coeff_a": layer.cubic_a,
        "exclude_outside": int(layer.exclude_outside),
    }
    if layer.antialias:
        attrs["antialias"] = 1
    by_scale = all(
        int(np.float32(s) * m) == n and float(np.float32(s)) == s
        for s, m, n in zip(scales[1:], shape[1:], sizes[1:])
    )
    if by_scale:  # the factors the coordinate rule uses, as the layer has them
        inputs = [x.name, "", g.const(g.unique(f"{name}.scales"), scales, np.float32)]
    else:  # sizes imply the factors n_out / n_in, which is what the layer has then
        batch = g.node("Shape", [x.name], f"{name}.shape", start=0, end=1)
        rest = g.ints(name, "sizes", sizes[1:])
        full = g.node("Concat", [batch, rest], f"{name}.sizes_with_batch", axis=0)
        inputs = [x.name, "", "", full]
    return _Value(g.node("Resize", inputs, name, **attrs), out_shape, x.layout)


def _split(g: _Graph, layer: Any, xs: list[_Value], out_shape: Any, name: str) -> list[_Value]:
    x = xs[0]
    sizes = g.ints(name, "split", list(layer.sizes))
    node = g.unique(name)
    outs = [g.unique(f"{node}.{i}") for i in range(len(layer.sizes))]
    attrs = {"axis": _axis_in(x, layer.axis)}
    g.nodes.append(g.onnx.helper.make_node("Split", [x.name, sizes], outs, name=node, **attrs))
    return [_Value(o, shape, x.layout) for o, shape in zip(outs, out_shape)]


def _slice_axes(
    g: _Graph, layer: Any, xs: list[_Value], out_shape: tuple[int, ...], name: str
) -> _Value:
    x = xs[0]
    big = np.iinfo(np.int64).max
    rows = layer.slices
    stops = [(big if step > 0 else -big - 1) if stop is None else stop for _, _, stop, step in rows]
    inputs = [
        x.name,
        g.ints(name, "starts", [r[1] for r in rows]),
        g.ints(name, "ends", stops),
        g.ints(name, "axes", [_axis_in(x, r[0]) for r in rows]),
        g.ints(name, "steps", [r[3] for r in rows]),
    ]
    return _Value(g.node("Slice", inputs, name), out_shape, x.layout)


_HANDLERS: dict[type, Callable[..., Any]] = {
    **{cls: _conv for cls in (L.Conv1D, L.Conv2D, L.Conv3D)},
    **{cls: _conv_transpose for cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)},
    L.DepthwiseConv2D: _depthwise,
    L.SeparableConv2D: _depthwise,
    L.Dense: _dense,
    **{
        cls: _pool
        for cls in (
            L.MaxPooling1D,
            L.MaxPooling2D,
            L.MaxPooling3D,
            L.AveragePooling1D,
            L.AveragePooling2D,
            L.AveragePooling3D,
        )
    },
    **{
        cls: _global_pool
        for cls in (
            L.GlobalAveragePooling1D,
            L.GlobalAveragePooling2D,
            L.GlobalAveragePooling3D,
            L.GlobalMaxPooling1D,
            L.GlobalMaxPooling2D,
            L.GlobalMaxPooling3D,
        )
    },
    L.BatchNormalization: _batch_norm,
    L.UnitNormalization: _unit_norm,
    L.Activation: _activation_layer,
    L.ReLU: _relu_layer,
    L.LeakyReLU: _leaky_relu,
    L.Softmax: _softmax,
    L.Rescaling: _rescaling,
    L.Dropout: _dropout,
    **{cls: _merge for cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)},
    AddReLU: _add_relu,
    L.Concatenate: _concatenate,
    L.Dot: _dot,
    L.Flatten: _flatten,
    L.Reshape: _reshape,
    L.Permute: _permute,
    **{cls: _pad for cls in (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)},
    **{cls: _crop for cls in (L.Cropping1D, L.Cropping2D, L.Cropping3D)},
    **{cls: _upsample for cls in (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)},
    L.Lambda: _lambda,
    OnnxPooling: _onnx_pooling,
    OnnxSoftmax: _onnx_softmax,
    ElementwiseUnary: _elementwise_unary,
    PRelu: _prelu,
    LRN: _lrn,
    ConstantOperand: _constant_operand,
    TensorBroadcast: _tensor_broadcast,
    OnnxPad: _onnx_pad,
    Reduce: _reduce,
    Select: _select,
    MatMul: _matmul,
    Resize: _resize,
    Split: _split,
    SliceAxes: _slice_axes,
}


def supported_layers() -> list[str]:
    """The names of the layer classes that :func:`save_model` exports."""
    return sorted(cls.__name__ for cls in _HANDLERS if cls is not L.Lambda)


# -- models ------------------------------------------------------------------------------------
def _empty(v: _Value, dtype: np.dtype) -> ag.Tensor:
    return ag.Tensor(np.zeros((0, *v.shape[1:]), dtype))


def _run_layer(g: _Graph, layer: Any, xs: Any, prefix: str) -> Any:
    """Export one layer (or nested model) called on the structure of values ``xs``."""
    if isinstance(layer, Model):
        return _export_model(g, layer, xs, f"{prefix}{layer.name}.")
    handler = _HANDLERS.get(type(layer))
    if handler is None:
        raise NotImplementedError(
            f"save_model(): layer {layer.name!r} of class {type(layer).__name__} has no ONNX "
            f"mapping (a user layer's call could compute anything); exported layers: "
            f"{', '.join(supported_layers())}"
        )
    flat = _nest.flatten(xs)
    # The cnnkit layer itself gives the output shape, on an empty batch.
    with ag.no_grad():
        args = (
            [_empty(v, layer.dtype) for v in flat]
            if layer._list_input
            else _empty(flat[0], layer.dtype)
        )
        out = layer(args)
    shape: Any = [(0, *t.shape[1:]) for t in out] if isinstance(out, list) else (0, *out.shape[1:])
    return handler(g, layer, flat, shape, f"{prefix}{layer.name}")


def _export_model(g: _Graph, model: Any, xs: Any, prefix: str) -> Any:
    if type(model) is Sequential:
        x = _nest.flatten(xs)
        if len(x) != 1:
            raise ValueError(
                f"save_model(): Sequential {model.name!r} takes one input, got {len(x)}"
            )
        v = x[0]
        for layer in model.layers:
            v = _run_layer(g, layer, v, prefix)
        return v
    if type(model) is Functional:
        feed = _nest.flatten(xs)
        values: dict[int, Any] = {id(t): v for t, v in zip(model.inputs, feed)}
        for node in model._graph_nodes:
            if isinstance(node.layer, L.InputLayer):
                continue
            args = _nest.map_structure(lambda t: values[id(t)], node.args)
            result = _run_layer(g, node.layer, args, prefix)
            for t, v in zip(_nest.flatten(node.outputs), _nest.flatten(result)):
                values[id(t)] = v
        return _nest.map_structure(lambda t: values[id(t)], model.output)
    raise NotImplementedError(_untraceable(model))


def _untraceable(model: Any) -> str:
    return (
        f"save_model(): model {model.name!r} is a {type(model).__name__} with a call of its own "
        "(a subclassed Model), which cannot be traced to a graph; build it as a Sequential or "
        "a functional Model(inputs, outputs)"
    )


def _input_specs(model: Any) -> tuple[list[str], list[tuple[int, ...]]]:
    """Names and per-sample shapes of the model's inputs, in the order of ``inputs``."""
    if type(model) is Functional:
        leaves = model.inputs
        names = [t.node.layer.name for t in leaves]  # type: ignore[union-attr]
        shapes = [tuple(int(d) for d in t.shape[1:]) for t in leaves]  # type: ignore[arg-type]
        return names, shapes
    shape = model._input_shape
    if shape is None and model.built and isinstance(model._build_shape, list):
        spec = model._build_shape
        shape = tuple(spec) if all(isinstance(s, int) for s in spec) else None
    if shape is None:
        raise ValueError(
            f"save_model(): model {model.name!r} has no known input shape; start it with "
            "layers.Input(shape) or build it (model.build(shape), or call it on data) first"
        )
    name = model._input_layer.name if model._input_layer is not None else "input"
    return [name], [tuple(shape)]


def _build(model: Any, opset: int, layout: str) -> Any:
    onnx = _onnx()
    helper = onnx.helper
    if not isinstance(model, Model):
        raise TypeError(
            "save_model(): model must be a cnnkit Sequential or functional Model, got "
            f"{type(model).__name__}"
        )
    if type(model) not in (Sequential, Functional):
        raise NotImplementedError(_untraceable(model))
    dtype = np.dtype(model.dtype)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    g = _Graph(onnx, opset, dtype)
    names, shapes = _input_specs(model)
    graph_inputs = []
    feed = []
    for name, shape in zip(names, shapes):
        name = g.unique(name)
        rank = len(shape) + 1
        declared = ["N", *shape]
        if layout == "NCHW" and rank >= 3:
            declared = [declared[p] for p in _to_cf(rank)]
        graph_inputs.append(helper.make_tensor_value_info(name, elem, declared))
        feed.append(_Value(name, (0, *shape), "cf" if layout == "NCHW" else "cl"))
    out = _export_model(g, model, feed, "")
    keys = list(out) if isinstance(out, dict) else None
    graph_outputs = []
    seen: set[str] = {i.name for i in graph_inputs}
    for i, v in enumerate(_nest.flatten(out)):
        v = g.layout(v, "cf" if layout == "NCHW" else "cl")
        wanted = keys[i] if keys else None
        name = v.name
        if name in seen or (wanted and wanted != name):
            name = g.node("Identity", [v.name], wanted or f"{v.name}.output")
        seen.add(name)
        declared = ["N", *v.shape[1:]]
        if v.layout == "cf":
            declared = [declared[p] for p in _to_cf(v.rank)]
        graph_outputs.append(helper.make_tensor_value_info(name, elem, declared))
    graph = helper.make_graph(
        g.nodes, model.name, graph_inputs, graph_outputs, list(g.initializers.values())
    )
    from .. import __version__

    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="cnnkit",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    helper.set_model_props(proto, {"cnnkit.layout": layout})
    onnx.checker.check_model(proto)
    return proto


def save_model(
    model: Model, path: str | os.PathLike[str], *, opset: int = 17, layout: str = "NHWC"
) -> None:
    """Write ``model`` as an ONNX file that onnxruntime and other runtimes execute.

    Parameters
    ----------
    model : cnnkit.Sequential or functional cnnkit.Model
        Built (its input shape known). Nested models are inlined; every layer of
        :mod:`cnnkit.layers` except ``Lambda`` is exported (see :func:`supported_layers`),
        in inference mode: Dropout is the identity, BatchNormalization uses its moving
        statistics.
    path : str or os.PathLike
        The file to write (replaced atomically: an interrupted export leaves no partial file).
    opset : int, default 17
        The ONNX operator set, 13 to 21.
    layout : {"NHWC", "NCHW"}
        How the graph's inputs and outputs of rank >= 3 are declared. ``"NHWC"``
        (channels-last, any rank): the file takes and returns the arrays the cnnkit
        model does. ``"NCHW"``: channels-first, as torch-exported networks. Inside, the
        convolutions run channels-first either way (see the module notes).

    Raises
    ------
    NotImplementedError
        A Lambda layer, a user-defined layer or subclassed model, or an activation given
        as a Python callable: the message names the layer.

    Examples
    --------
    >>> cnnkit.onnx.save_model(model, "model.onnx")
    >>> import onnxruntime as ort
    >>> sess = ort.InferenceSession("model.onnx")
    >>> probs = sess.run(None, {sess.get_inputs()[0].name: x})[0]   # x: (N, H, W, C)
    """
    where = "save_model()"
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"{where}: opset must be an int, got {type(opset).__name__}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"{where}: opset must be in [{MIN_OPSET}, {MAX_OPSET}], got {opset}")
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: layout must be 'NHWC' or 'NCHW', got {layout!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    proto = _build(model, int(opset), layout)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{where}: path {path!r}: the folder {folder!r} does not exist")
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
