"""ONNX graphs as cnnkit functional models: :func:`load_model`.

The file is parsed by the ``onnx`` package (no protobuf reader of our own). Nothing in it is
executed: each node is looked up in :data:`CONVERTERS`, a table of Python functions that
build cnnkit layers from the node's attributes and constant inputs, and nodes whose inputs
are all constants (the shape arithmetic exporters put before a Reshape) are folded with
NumPy at import. External data is read only from files beside the model.

Layouts. ONNX tensors are channels-first (``(N, C, H, W)``); cnnkit's layers are
channels-last. Every tensor of the graph is tracked with a permutation: the cnnkit tensor is
the ONNX tensor with its axes in the order ``perm`` (``(0, 2, 3, 1)`` for a feature map,
the identity for a vector). Convolutions, pooling and normalization need channels-last
and get it; elementwise operations keep what they receive; Transpose only changes the
permutation; Squeeze/Unsqueeze renumber it; Flatten, Reshape and MatMul over the last axis
first restore ONNX's order where it matters (a ``Permute`` layer, or a mere ``Reshape``
when only axes of length 1 move), so ``Flatten`` after a feature map reproduces ONNX's
channel-major vector and the classifier's weights apply unchanged. The batch axis is
cnnkit's axis 0 throughout: operators that would move, split or mix it are refused.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import layers as L
from ..layers import Layer
from ..layers.activations import _activation
from ..layers.layer import weight_source
from ..layers.symbolic import KerasTensor
from ..models import Model
from ..models.functional import Functional
from ._layers import (
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

__all__ = ["CONVERTERS", "load_model"]

_WHERE = "cnnkit.onnx.load_model()"
# Folded constants are bounded: a ConstantOfShape or Range in a hostile file must not
# allocate gigabytes (2**26 elements is 256 MiB of float32).
_MAX_FOLDED = 1 << 26


class _BatchSize:
    """The batch size in folded shape arithmetic: unknown at import, so any arithmetic on
    it raises TypeError (and the node is refused) while indexing, concatenating and
    reshaping carry it to the Reshape that uses it."""

    def __repr__(self) -> str:
        return "N"


BATCH = _BatchSize()


class Unsupported(NotImplementedError):
    """An operator, or a use of one, that cnnkit cannot express."""


@dataclass
class _Value:
    """A symbolic tensor of the graph: cnnkit's tensor, its permutation, ONNX's shape."""

    tensor: KerasTensor
    perm: tuple[int, ...]  # cnnkit axis i holds ONNX axis perm[i]
    shape: tuple[int | None, ...]  # the ONNX shape, None for the batch axis

    @property
    def rank(self) -> int:
        return len(self.shape)


def _sizes(dims: Sequence[int | None]) -> list[int]:
    """Sizes after the batch axis, which are all known."""
    return [int(d) for d in dims if d is not None]


def _identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def _channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1) if rank >= 3 else _identity(rank)


class _Graph:
    """The state of one import: constants, symbolic values, layer names, weights."""

    def __init__(self, opset: int, dtype: np.dtype, batch: int | None) -> None:
        self.opset = opset
        self.dtype = dtype
        self.batch = batch  # the static batch size the inputs declare, if any
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, _Value] = {}
        self.names: set[str] = set()
        self.pending: dict[str, np.ndarray] = {}  # weight name -> array, read at build
        # value name -> how many node inputs and graph outputs read it (subgraphs included)
        self.readers: dict[str, int] = {}
        # value name -> the last top-level node reading it (the only one when readers is 1)
        self.reader: dict[str, Any] = {}
        # Conv outputs whose BatchNormalization is folded into the Conv's weights
        self.folded_bn: set[str] = set()
        self.fold_batch_norm = False
        # Add outputs that an AddReLU layer already rectified for the Relu reading them
        self.fused_relu: set[str] = set()

    # -- names and layers --------------------------------------------------------------------
    def name(self, base: str) -> str:
        base = base.strip("/").replace("/", ".") or "node"
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def call(self, layer: Layer, x: Any, weights: dict[str, np.ndarray] | None = None) -> Any:
        """Call ``layer`` on symbolic ``x``, its weights taken from ``weights`` (by the
        weight's name) instead of being drawn."""
        for key, array in (weights or {}).items():
            self.pending[f"{layer.name}/{key}"] = np.asarray(array, self.dtype)
        return layer(x)

    def weight(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array = self.pending.pop(name, None)
        if array is None:
            raise Unsupported(f"internal: no weight {name!r} was given")  # a converter bug
        if array.shape != shape:
            raise ValueError(f"{_WHERE}: weight {name!r} has shape {array.shape}, expected {shape}")
        # C order: a transposed kernel (Gemm's transB) would otherwise stay a Fortran-ordered
        # array, which the GEMM copies on every call (400 MB per call for VGG's fc6).
        return np.ascontiguousarray(array, dtype=dtype).copy()

    # -- layouts -----------------------------------------------------------------------------
    def to_perm(self, v: _Value, perm: tuple[int, ...], name: str) -> _Value:
        """``v`` with its cnnkit axes in the order ``perm``: a Reshape when only axes of
        length 1 move, else a Permute."""
        if v.perm == perm:
            return v
        position = {a: i for i, a in enumerate(v.perm)}
        dims = [position[a] for a in perm]
        shape = [v.shape[a] for a in perm]
        moving = [a for a in v.perm if a and v.shape[a] != 1]
        if moving == [a for a in perm if a and v.shape[a] != 1]:
            layer: Layer = L.Reshape(_sizes(shape[1:]), name=self.name(name), dtype=self.dtype)
        else:
            layer = L.Permute(dims[1:], name=self.name(name), dtype=self.dtype)
        return _Value(layer(v.tensor), perm, v.shape)

    def value(self, node: Any, i: int) -> _Value:
        name = node.input[i] if i < len(node.input) else ""
        if name in self.values:
            return self.values[name]
        what = "a constant" if name in self.consts else "missing"
        raise Unsupported(
            f"input {i} ({name!r}) must be a tensor computed from the graph inputs, got {what}"
        )

    def const(self, node: Any, i: int, default: Any = None, *, required: bool = True) -> Any:
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if required and default is None:
                raise Unsupported(f"input {i} is required")
            return default
        if name in self.consts:
            return self.consts[name]
        raise Unsupported(
            f"input {i} ({name!r}) must be a constant (an initializer or computable at import), "
            "but it depends on the graph inputs"
        )

    def is_const(self, node: Any, i: int) -> bool:
        return i < len(node.input) and node.input[i] in self.consts


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _onnx_axis(where: str, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise Unsupported(f"{where} {axis} is out of range for rank {rank}")
    return axis % rank


def _no_batch(axis: int, what: str) -> None:
    if axis == 0:
        raise Unsupported(f"{what} the batch axis (axis 0), which a cnnkit model keeps")


# -- constant folding --------------------------------------------------------------------------
def _check_size(shape: Sequence[int]) -> None:
    if math.prod(int(s) for s in shape) > _MAX_FOLDED:
        raise ValueError(f"{_WHERE}: a folded constant of shape {tuple(shape)} is too large")


def _slice_params(
    shape: Sequence[Any], starts: Any, ends: Any, axes: Any, steps: Any
) -> list[tuple[int, int, int | None, int]]:
    """ONNX Slice's clamping, as ``(axis, start, stop, step)`` for Python slices."""
    rank = len(shape)
    starts, ends = [int(s) for s in starts], [int(e) for e in ends]
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    out = []
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise ValueError(f"{_WHERE}: Slice step must not be 0")
        n = shape[a]
        if n is None:
            raise Unsupported("Slice of the batch axis")
        if s < 0:
            s += n
        if e < 0:
            e += n
        if st > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
            out.append((a, s, e, st))
        else:
            s, e = min(max(s, 0), n - 1), min(max(e, -1), n - 1)
            out.append((a, s, None if e < 0 else e, st))
    return out


def _fold(g: _Graph, node: Any, a: dict[str, Any]) -> list[np.ndarray] | None:
    """The node's outputs when every input is a constant and the operator is pure
    arithmetic on them (NumPy), else None. Shapes hold None for the batch axis, as
    object arrays: arithmetic on them raises, and the importer refuses the node."""
    op = node.op_type
    if op == "Constant":
        from onnx import numpy_helper

        if "value" in a:
            return [numpy_helper.to_array(a["value"])]
        for key in ("value_float", "value_int"):
            if key in a:
                return [np.array(a[key], np.float32 if key == "value_float" else np.int64)]
        for key in ("value_floats", "value_ints"):
            if key in a:
                return [np.array(a[key], np.float32 if key == "value_floats" else np.int64)]
        raise Unsupported(f"Constant with attributes {sorted(a)}")
    if op == "Shape" and node.input[0] in g.values:
        shape = list(g.values[node.input[0]].shape)
        start, end = a.get("start", 0), a.get("end", len(shape))
        dims = [BATCH if d is None else d for d in shape]
        return [np.array(dims[start:end] if g.opset >= 15 else dims, dtype=object)]
    if any(n and n not in g.consts for n in node.input):
        return None
    ins: list[Any] = [g.consts[n] if n else None for n in node.input]
    x: Any = ins[0] if ins else None
    if op in ("Identity", "Dropout"):
        return [x]
    if op == "Cast":
        from onnx import helper

        if x is not None and x.dtype == object:
            return [x]
        return [x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op == "Gather":
        axis = a.get("axis", 0)
        return [np.asarray(np.take(x, np.asarray(ins[1]).astype(np.int64), axis=axis), x.dtype)]
    if op == "Concat":
        parts = [np.atleast_1d(p) for p in ins if p is not None]
        kind = object if any(p.dtype == object for p in parts) else None
        return [np.concatenate([p.astype(kind) if kind else p for p in parts], axis=a["axis"])]
    if op in ("Unsqueeze", "Squeeze"):
        axes = a.get("axes") if g.opset < 13 else (None if len(ins) < 2 else ins[1])
        if op == "Squeeze":
            squeeze_axes = None if axes is None else tuple(int(i) for i in axes)
            return [np.squeeze(x, axis=squeeze_axes)]
        out = x
        listed = [] if axes is None else [int(i) for i in axes]
        rank = x.ndim + len(listed)
        for ax in sorted(i % rank for i in listed):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Slice":
        if g.opset < 10:
            params = _slice_params(x.shape, a["starts"], a["ends"], a.get("axes"), None)
        else:
            params = _slice_params(
                x.shape, ins[1], ins[2], ins[3] if len(ins) > 3 else None,
                ins[4] if len(ins) > 4 else None,
            )  # fmt: skip
        index: list[Any] = [slice(None)] * x.ndim
        for ax, s, e, st in params:
            index[ax] = slice(s, e, st)
        return [x[tuple(index)]]
    if op == "ConstantOfShape":
        from onnx import numpy_helper

        sizes = [int(s) for s in x]
        _check_size(sizes)
        fill = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return [np.full(sizes, fill.reshape(-1)[0], fill.dtype)]
    if op == "Reshape" and x.dtype != object:
        shape = [int(s) for s in ins[1]]
        shape = [
            x.shape[i] if s == 0 and not a.get("allowzero") else s for i, s in enumerate(shape)
        ]
        return [x.reshape(shape)]
    if op == "Transpose":
        return [np.transpose(x, a.get("perm"))]
    if op == "Range":
        count = max(math.ceil((float(ins[1]) - float(ins[0])) / float(ins[2])), 0)
        _check_size([count])
        return [np.arange(ins[0], ins[1], ins[2]).astype(np.asarray(ins[0]).dtype)]
    if op in _FOLD_NARY:
        return [np.asarray(functools.reduce(_FOLD_NARY[op], [p for p in ins if p is not None]))]
    folded = _FOLD_ELEMENTWISE.get(op)
    if folded is not None:
        return [np.asarray(folded(*[p for p in ins if p is not None]))]
    return None


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    if object in (a.dtype, b.dtype):  # shape values: ints (None, the batch, raises)
        return np.vectorize(lambda p, q: int(p / q), otypes=[object])(a, b)
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))
    return a / b


_FOLD_NARY: dict[str, Callable[..., Any]] = {
    "Sum": np.add,
    "Max": np.maximum,
    "Min": np.minimum,
}


_FOLD_ELEMENTWISE: dict[str, Callable[..., Any]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": _int_div,
    "Relu": lambda x: np.maximum(x, 0),
    "Sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "Tanh": np.tanh,
    "Sqrt": np.sqrt,
    "Neg": np.negative,
    "Abs": np.abs,
    "Exp": np.exp,
    "Log": np.log,
    "Reciprocal": np.reciprocal,
    "Pow": np.power,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Equal": np.equal,
    "Greater": np.greater,
    "Less": np.less,
    "GreaterOrEqual": np.greater_equal,
    "LessOrEqual": np.less_equal,
    "Not": np.logical_not,
    "Where": np.where,
}


# -- converters ------------------------------------------------------------------------------
Converter = Callable[[_Graph, Any, dict[str, Any], str], list[Any]]
CONVERTERS: dict[str, Converter] = {}


def _converter(*ops: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = fn
        return fn

    return register


def _spatial_padding(
    a: dict[str, Any], spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
    dilations: Sequence[int],
) -> list[tuple[int, int]]:  # fmt: skip
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    r = len(spatial)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small = total // 2
            out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * r
    pads = list(a.get("pads", [0] * (2 * r)))
    if any(p < 0 for p in pads):
        raise Unsupported(f"negative pads {pads}")
    return [(pads[i], pads[i + r]) for i in range(r)]


def _feature_map(g: _Graph, node: Any, name: str, ranks: Sequence[int] = (3, 4, 5)) -> _Value:
    x = g.value(node, 0)
    if x.rank not in ranks:
        raise Unsupported(f"input of rank {x.rank} (expected {' or '.join(map(str, ranks))})")
    return g.to_perm(x, _channels_last(x.rank), f"{name}.to_channels_last")


def _out(v: _Value, tensor: KerasTensor, shape: Sequence[int | None]) -> _Value:
    return _Value(tensor, v.perm, (None, *shape[1:]))


def _onnx_shape(t: KerasTensor, perm: Sequence[int]) -> tuple[int | None, ...]:
    shape: list[int | None] = [None] * len(perm)
    for i, axis in enumerate(perm):
        shape[axis] = t.shape[i]
    shape[0] = None
    return tuple(shape)


def _emit(g: _Graph, layer: Layer, x: _Value, weights: dict[str, Any] | None = None) -> _Value:
    """``layer`` on ``x``, the result in ``x``'s permutation."""
    t = g.call(layer, x.tensor, weights)
    return _Value(t, x.perm, _onnx_shape(t, x.perm))


@_converter("Conv")
def _conv(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = _feature_map(g, node, name)
    w = g.const(node, 1)
    b = g.const(node, 2, required=False)
    r = x.rank - 2
    kernel = tuple(a.get("kernel_shape", w.shape[2:]))
    strides = tuple(a.get("strides", [1] * r))
    dilations = tuple(a.get("dilations", [1] * r))
    group = int(a.get("group", 1))
    c_in = x.shape[1]
    if w.ndim != r + 2 or tuple(w.shape[2:]) != kernel or w.shape[1] * group != c_in:
        raise Unsupported(
            f"weight of shape {w.shape} with group {group} does not fit an input with {c_in} "
            f"channels and kernel {kernel}"
        )
    pads = _spatial_padding(a, x.shape[2:], kernel, strides, dilations)  # type: ignore[arg-type]
    folded = _fold_batch_norm(g, node, w, b)
    if folded is not None:
        w, b = folded
    filters = w.shape[0]
    common: dict[str, Any] = {
        "name": name,
        "dtype": g.dtype,
        "use_bias": b is not None,
        "strides": strides,
    }
    weights = {} if b is None else {"bias": b}
    if group > 1 and group == c_in and r == 2 and filters % c_in == 0:
        # Depthwise: output channel c * m + j reads input channel c (ONNX's order, Keras's).
        mult = filters // c_in
        weights["kernel"] = w.reshape(c_in, mult, *kernel).transpose(2, 3, 0, 1)
        layer: Layer = L.DepthwiseConv2D(
            kernel, padding=pads, depth_multiplier=mult, dilation_rate=dilations, **common
        )
    else:
        cls = {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}[r]
        weights["kernel"] = w.transpose(*range(2, r + 2), 1, 0)
        layer = cls(filters, kernel, padding=pads, dilation_rate=dilations, groups=group, **common)
    return [_emit(g, layer, x, weights)]


@_converter("ConvTranspose")
def _conv_transpose(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = _feature_map(g, node, name)
    w = g.const(node, 1)
    b = g.const(node, 2, required=False)
    r = x.rank - 2
    if int(a.get("group", 1)) != 1:
        raise Unsupported(f"group {a['group']} (only 1)")
    kernel = tuple(a.get("kernel_shape", w.shape[2:]))
    strides = tuple(a.get("strides", [1] * r))
    dilations = tuple(a.get("dilations", [1] * r))
    out_pad = tuple(a.get("output_padding", [0] * r))
    if w.ndim != r + 2 or w.shape[0] != x.shape[1] or tuple(w.shape[2:]) != kernel:
        raise Unsupported(f"weight of shape {w.shape} does not fit input shape {x.shape}")
    spatial = x.shape[2:]
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    target = a.get("output_shape")
    if target is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if target is None:
            target = [n * s for n, s in zip(spatial, strides)]  # type: ignore[operator]
        target = list(target)[-r:]
        pads, grow = [], []
        for n, k, s, d, op, m in zip(spatial, kernel, strides, dilations, out_pad, target):
            total = s * (n - 1) + op + (k - 1) * d + 1 - m  # type: ignore[operator]
            if total < 0:  # a larger output: zeros after the end, as output_padding
                grow.append(-total)
                pads.append((0, 0))
                continue
            grow.append(0)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        out_pad = tuple(p + e for p, e in zip(out_pad, grow))
    else:
        pads = _spatial_padding(a, spatial, kernel, strides, dilations)  # type: ignore[arg-type]
    cls = {1: L.Conv1DTranspose, 2: L.Conv2DTranspose, 3: L.Conv3DTranspose}[r]
    layer = cls(
        w.shape[1], kernel, strides=strides, padding=pads,
        output_padding=out_pad if any(out_pad) else None, dilation_rate=dilations,
        use_bias=b is not None, name=name, dtype=g.dtype,
    )  # fmt: skip
    weights = {"kernel": w.transpose(*range(2, r + 2), 1, 0)}
    if b is not None:
        weights["bias"] = b
    return [_emit(g, layer, x, weights)]


def _pool(g: _Graph, node: Any, a: dict[str, Any], name: str, kind: str) -> list[Any]:
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("the Indices output")
    x = _feature_map(g, node, name)
    r = x.rank - 2
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides", [1] * r))
    dilations = tuple(a.get("dilations", [1] * r))
    if any(d != 1 for d in dilations):
        raise Unsupported(f"dilations {list(dilations)}")
    if a.get("storage_order", 0):
        raise Unsupported("storage_order 1 (only the Indices output depends on it)")
    pads = _spatial_padding(a, x.shape[2:], kernel, strides, dilations)  # type: ignore[arg-type]
    layer = OnnxPooling(
        kind, kernel, strides, pads, ceil_mode=bool(a.get("ceil_mode", 0)),
        count_include_pad=bool(a.get("count_include_pad", 0)), name=name, dtype=g.dtype,
    )  # fmt: skip
    return [_emit(g, layer, x)]


@_converter("MaxPool")
def _max_pool(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    return _pool(g, node, a, name, "max")


@_converter("AveragePool")
def _avg_pool(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    return _pool(g, node, a, name, "avg")


@_converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = _feature_map(g, node, name)
    avg = node.op_type == "GlobalAveragePool"
    cls = {
        1: (L.GlobalAveragePooling1D, L.GlobalMaxPooling1D),
        2: (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D),
        3: (L.GlobalAveragePooling3D, L.GlobalMaxPooling3D),
    }[x.rank - 2][0 if avg else 1]
    return [_emit(g, cls(keepdims=True, name=name, dtype=g.dtype), x)]


def _fold_batch_norm(g: _Graph, node: Any, w: Any, b: Any) -> tuple[Any, Any] | None:
    """The Conv's weight and bias with the BatchNormalization that alone reads its output
    folded in (``w * s`` and ``(b - mean) * s + beta`` per output channel, ``s = gamma /
    sqrt(var + eps)``, in float64), or None when there is none to fold. onnxruntime does
    the same. torch's exporters (2.13, both) fold BN themselves, but cnnkit's own
    save_model and other exporters write Conv then BatchNormalization, and the separate
    layer costs a pass over every convolution's output. The BN's output
    then names the Conv's (see _batch_norm); the float32 results differ from the unfolded
    ones by rounding only."""
    out = node.output[0]
    bn = g.reader.get(out) if g.fold_batch_norm else None
    if (
        bn is None or bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx")
        or g.readers.get(out, 0) != 1 or list(bn.input[:1]) != [out] or len(bn.input) != 5
        or any(bn.output[1:]) or not all(g.is_const(bn, i) for i in range(1, 5))
    ):  # fmt: skip
        return None
    a = _attrs(bn)
    if a.get("training_mode", 0):
        return None
    gamma, beta, mean, var = (np.asarray(g.const(bn, i), np.float64) for i in range(1, 5))
    filters = w.shape[0]
    if any(p.shape != (filters,) for p in (gamma, beta, mean, var)):
        return None
    s = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
    w = np.asarray(w, np.float64) * s.reshape(-1, *([1] * (w.ndim - 1)))
    b = np.zeros(filters) if b is None else np.asarray(b, np.float64)
    g.folded_bn.add(out)
    return w, (b - mean) * s + beta


@_converter("BatchNormalization")
def _batch_norm(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    if node.input[0] in g.folded_bn:  # folded into the Conv that alone feeds it
        return [g.values.pop(node.input[0])]
    if a.get("training_mode", 0) or any(n for n in node.output[1:]):
        raise Unsupported("training mode (only inference)")
    x = _feature_map(g, node, name, ranks=(2, 3, 4, 5))
    scale, bias, mean, var = (g.const(node, i) for i in range(1, 5))
    layer = L.BatchNormalization(
        epsilon=float(a.get("epsilon", 1e-5)), momentum=float(a.get("momentum", 0.9)),
        name=name, dtype=g.dtype,
    )  # fmt: skip
    weights = {"gamma": scale, "beta": bias, "moving_mean": mean, "moving_variance": var}
    return [_emit(g, layer, x, weights)]


@_converter("LRN")
def _lrn(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = _feature_map(g, node, name, ranks=(3, 4, 5))
    layer = LRN(
        int(a["size"]), alpha=float(a.get("alpha", 1e-4)), beta=float(a.get("beta", 0.75)),
        bias=float(a.get("bias", 1.0)), name=name, dtype=g.dtype,
    )  # fmt: skip
    return [_emit(g, layer, x)]


# -- elementwise ------------------------------------------------------------------------------
def _unary_layer(g: _Graph, node: Any, a: dict[str, Any], name: str) -> Layer:
    op, d = node.op_type, g.dtype
    if op == "Relu":
        return L.ReLU(name=name, dtype=d)
    if op == "LeakyRelu":
        return L.LeakyReLU(negative_slope=float(a.get("alpha", 0.01)), name=name, dtype=d)
    if op in ("Sigmoid", "Tanh", "HardSwish"):
        return L.Activation(
            {"Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hard_swish"}[op],
            name=name, dtype=d,
        )  # fmt: skip
    if op == "Elu":
        return ElementwiseUnary("elu", alpha=float(a.get("alpha", 1.0)), name=name, dtype=d)
    if op == "HardSigmoid":
        return ElementwiseUnary(
            "hard_sigmoid", alpha=float(a.get("alpha", 0.2)), beta=float(a.get("beta", 0.5)),
            name=name, dtype=d,
        )  # fmt: skip
    if op in ("Exp", "Softplus", "Softsign", "Mish"):
        # cnnkit's activations of these names compute ONNX's functions exactly.
        return L.Activation(
            {"Exp": "exponential", "Softplus": "softplus", "Softsign": "softsign"}.get(
                op, op.lower()
            ),
            name=name, dtype=d,
        )  # fmt: skip
    if op == "Gelu":
        approximate = a.get("approximate", b"none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        if approximate == "tanh":
            return ElementwiseUnary("gelu_tanh", name=name, dtype=d)
        if approximate != "none":
            raise Unsupported(f"approximate {approximate!r}")
        return L.Activation("gelu", name=name, dtype=d)
    if op == "Selu":
        alpha, gamma = float(a.get("alpha", _SELU_ALPHA)), float(a.get("gamma", _SELU_GAMMA))
        if alpha == _SELU_ALPHA and gamma == _SELU_GAMMA:  # the defaults, in float32
            return L.Activation("selu", name=name, dtype=d)
        return ElementwiseUnary("selu", alpha=alpha, beta=gamma, name=name, dtype=d)
    if op == "ThresholdedRelu":
        alpha = float(a.get("alpha", 1.0))
        return ElementwiseUnary("thresholded_relu", alpha=alpha, name=name, dtype=d)
    if op in ("Erf", "Log", "Sqrt", "Abs", "Reciprocal"):
        return ElementwiseUnary(op.lower(), name=name, dtype=d)
    if op == "Clip":
        low, high = _clip_bounds(g, node, a)
        if low == 0 and high is not None and high >= 0:
            return L.ReLU(max_value=high, name=name, dtype=d)
        if low == 0 and high is None:
            return L.ReLU(name=name, dtype=d)
        return ElementwiseUnary("clip", alpha=low, beta=high, name=name, dtype=d)
    raise Unsupported(op)  # pragma: no cover - the table lists only the ops above


# Layers whose fused activation the kernels apply in their output store (csrc/gemm.hpp's
# epilogue, the depthwise loops' store): ReLU and ReLU6 (a Clip to [0, 6], MobileNet's
# activation), and HardSwish (MobileNet v3's) at inference (cnnkit.layers.activations.
# _fused_inference; Dense applies it after its product, in the same call). Depthwise
# convolutions included: without them MobileNet v3-small's first block and its
# expansions ran ReLU as layers of their own.
_FUSES_RELU = (L.Conv1D, L.Conv2D, L.Conv3D, L.Dense, L.DepthwiseConv2D)


def _fuse_activation(
    g: _Graph, node: Any, activation: str, classes: tuple[type[Any], ...]
) -> _Value | None:
    """The output of the layer before an activation node (Relu, a Clip to [0, 6] or
    HardSwish), with the activation made that layer's own, when the layer has no
    activation yet and the node is the only reader of its output (no other node, no graph
    output sees the values before the activation): onnxruntime's fusion, saving a layer
    call and a pass over the feature map. The bits are those of the separate activation.
    None when the node must stay a layer of its own."""
    x = g.value(node, 0)
    layer = getattr(getattr(x.tensor, "node", None), "layer", None)
    if not isinstance(layer, classes) or type(layer) not in classes:
        return None  # exactly these classes: a subclass may compute something else
    if layer.activation != "linear":
        return None
    # Identity, Dropout and Cast alias values: the tensor must go by this one name alone.
    names = [n for n, v in g.values.items() if v.tensor is x.tensor]
    if names != [node.input[0]] or g.readers.get(node.input[0], 0) != 1:
        return None
    layer.activation, layer._act = _activation(layer._where(), activation)
    return x


def _clip_bounds(g: _Graph, node: Any, a: dict[str, Any]) -> tuple[float | None, float | None]:
    """A Clip node's (min, max): attributes before opset 11, constant inputs after."""
    if g.opset < 11:
        low, high = a.get("min"), a.get("max")
        return (None if low is None else float(low), None if high is None else float(high))
    low_c, high_c = g.const(node, 1, required=False), g.const(node, 2, required=False)
    return (None if low_c is None else float(low_c), None if high_c is None else float(high_c))


# ONNX's Selu defaults: the self-normalising constants rounded to float32.
_SELU_ALPHA = float(np.float32(1.6732632423543772))
_SELU_GAMMA = float(np.float32(1.0507009873554805))


@_converter(
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "Elu", "HardSigmoid", "Clip", "Exp",
    "Softplus", "Softsign", "Mish", "Gelu", "Selu", "ThresholdedRelu", "Erf", "Log", "Sqrt",
    "Abs", "Reciprocal",
)  # fmt: skip
def _unary(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    if node.input[0] in g.fused_relu:  # the Add before applied it (see _binary)
        return [g.values.pop(node.input[0])]
    x = g.value(node, 0)
    fused = None
    if node.op_type == "Relu":
        fused = _fuse_activation(g, node, "relu", _FUSES_RELU)
    elif node.op_type == "Clip" and _clip_bounds(g, node, a) == (0.0, 6.0):
        fused = _fuse_activation(g, node, "relu6", _FUSES_RELU)
    elif node.op_type == "HardSwish":
        fused = _fuse_activation(g, node, "hard_swish", _FUSES_RELU)
    return [fused if fused is not None else _emit(g, _unary_layer(g, node, a, name), x)]


@_converter("Identity", "Dropout", "Cast")
def _passthrough(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    if node.op_type == "Dropout":
        training = g.const(node, 2, np.array(False), required=False)
        if a.get("is_test", 1) == 0 or bool(np.asarray(training)):
            raise Unsupported("training mode (only inference, where Dropout is the identity)")
        if len(node.output) > 1 and node.output[1]:
            raise Unsupported("the mask output")
    if node.op_type == "Cast":
        from onnx import helper

        to = helper.tensor_dtype_to_np_dtype(a["to"])
        if to == np.bool_:  # a Where's condition: nonzero, as cnnkit's 0/1 masks
            c = np.zeros((1,) * x.rank)
            layer = ConstantOperand("not_equal", c.shape, name=name, dtype=g.dtype)
            return [_emit(g, layer, x, {"constant": c})]
        if to not in (np.float32, np.float64):
            raise Unsupported(f"Cast of a tensor to {to} (only float32, float64 and bool)")
    return [x]


@_converter("Neg")
def _neg(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    c = np.full((1,) * x.rank, -1.0)
    return [_emit(g, ConstantOperand("mul", c.shape, name=name, dtype=g.dtype), x, {"constant": c})]


def _constant_operand(g: _Graph, x: _Value, c: np.ndarray, what: str) -> np.ndarray:
    """A constant of ONNX's layout broadcast against ``x``, in ``x``'s cnnkit layout."""
    c = np.asarray(c)
    if c.ndim > x.rank:
        raise Unsupported(f"{what} of rank {c.ndim} above the tensor's {x.rank}")
    c = c.reshape((1,) * (x.rank - c.ndim) + c.shape).transpose(x.perm)
    if c.shape[0] != 1:
        raise Unsupported(f"{what} of shape {c.shape} varies along the batch axis")
    return c


_BINARY_OPS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min"}
_BINARY_OPS.update(
    {"Greater": "greater", "Less": "less", "GreaterOrEqual": "greater_equal"}
    | {"LessOrEqual": "less_equal", "Equal": "equal"}
)


@_converter("Pow")
def _pow(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    c = np.asarray(g.const(node, 1))
    if c.size != 1:
        raise Unsupported(f"an exponent of shape {c.shape} (only a constant scalar)")
    c = c.astype(np.float64).reshape((1,) * x.rank)
    layer = ConstantOperand("pow", c.shape, name=name, dtype=g.dtype)
    return [_emit(g, layer, x, {"constant": c})]


@_converter("Add", "Sub", "Mul", "Div", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal")
def _binary(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    op = _BINARY_OPS[node.op_type]
    if a.get("broadcast") == 0 and g.opset < 7:  # pragma: no cover - opsets below 9
        raise Unsupported("broadcast=0")
    if g.is_const(node, 0) or g.is_const(node, 1):
        first = g.is_const(node, 0)
        x = g.value(node, 1 if first else 0)
        c = _constant_operand(g, x, g.const(node, 0 if first else 1), "a constant operand")
        layer = ConstantOperand(op, c.shape, constant_first=first, name=name, dtype=g.dtype)
        out = _emit(g, layer, x, {"constant": c})
        return [_Value(out.tensor, x.perm, _onnx_shape(out.tensor, x.perm))]
    values = [g.value(node, 0), g.value(node, 1)]
    if op == "add" and _relu_alone_reads(g, node.output[0]):
        lhs, rhs = values
        if lhs.rank == rhs.rank:
            values[1] = rhs = g.to_perm(rhs, lhs.perm, f"{name}.input1")
            if tuple(lhs.tensor.shape) == tuple(rhs.tensor.shape):
                t = AddReLU(name=name, dtype=g.dtype)([lhs.tensor, rhs.tensor])
                g.fused_relu.add(node.output[0])
                return [_Value(t, lhs.perm, _onnx_shape(t, lhs.perm))]
    return [_merge(g, values, op, name)]


def _relu_alone_reads(g: _Graph, name: str) -> bool:
    """Whether a Relu is the only reader of value ``name`` (no other node, no graph
    output sees it unrectified), so that the producer may apply the ReLU itself."""
    r = g.reader.get(name)
    return (
        r is not None and r.op_type == "Relu" and r.domain in ("", "ai.onnx")
        and list(r.input) == [name] and g.readers.get(name, 0) == 1
    )  # fmt: skip


def _merge(g: _Graph, values: list[_Value], op: str, name: str) -> _Value:
    """An elementwise op of tensors: a Keras merging layer for equal shapes, else a chain of
    broadcasting layers (Sum and Mean of several inputs)."""
    rank = values[0].rank
    if any(v.rank != rank for v in values):
        raise Unsupported(
            f"inputs of ranks {[v.rank for v in values]}: the batch axis of a lower-rank tensor "
            "would broadcast against another axis"
        )
    perm = values[0].perm
    values = [g.to_perm(v, perm, f"{name}.input{i}") for i, v in enumerate(values)]
    shapes = {tuple(v.tensor.shape) for v in values}
    keras = {"add": L.Add, "sub": L.Subtract, "mul": L.Multiply, "max": L.Maximum}
    keras.update({"min": L.Minimum, "mean": L.Average})
    if len(shapes) == 1 and op in keras and (op != "sub" or len(values) == 2):
        layer: Layer = keras[op](name=name, dtype=g.dtype)
        t = layer([v.tensor for v in values])
        return _Value(t, perm, _onnx_shape(t, perm))
    if op == "mean":
        total = _merge(g, values, "add", f"{name}.sum")
        c = np.full((1,) * rank, 1.0 / len(values))
        layer = ConstantOperand("mul", c.shape, name=name, dtype=g.dtype)
        return _emit(g, layer, total, {"constant": c})
    acc = values[0]
    for i, v in enumerate(values[1:], 1):
        last = i == len(values) - 1
        layer = TensorBroadcast(op, name=name if last else f"{name}.{i}", dtype=g.dtype)
        t = layer([acc.tensor, v.tensor])
        acc = _Value(t, perm, _onnx_shape(t, perm))
    return acc


@_converter("Sum", "Mean", "Max", "Min")
def _nary(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    count = len(node.input)
    consts = [np.asarray(g.const(node, i)) for i in range(count) if g.is_const(node, i)]
    values = [g.value(node, i) for i in range(count) if not g.is_const(node, i)]
    op = {"Sum": "add", "Mean": "mean", "Max": "max", "Min": "min"}[node.op_type]
    if not values:
        raise Unsupported("only constant inputs")
    if not consts:
        return [values[0] if len(values) == 1 else _merge(g, values, op, name)]
    tensor_op = "add" if op == "mean" else op
    acc = values[0] if len(values) == 1 else _merge(g, values, tensor_op, f"{name}.tensors")
    # The constants combine at import, then meet the tensors in one layer
    # (Max(x, epsilon) of a written-out normalization; a Sum with a bias).
    fold = {"add": np.add, "mean": np.add, "max": np.maximum, "min": np.minimum}[op]
    c = functools.reduce(fold, consts)
    c = _constant_operand(g, acc, c, "a constant operand")
    layer = ConstantOperand(
        "add" if op == "mean" else op, c.shape, name=f"{name}.constants" if op == "mean" else name,
        dtype=g.dtype,
    )  # fmt: skip
    out = _emit(g, layer, acc, {"constant": c})
    if op == "mean":
        scale = np.full((1,) * acc.rank, 1.0 / count)
        out = _emit(g, ConstantOperand("mul", scale.shape, name=name, dtype=g.dtype), out,
                    {"constant": scale})  # fmt: skip
    return [out]


@_converter("Where")
def _where(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    tensors = [i for i in range(3) if not g.is_const(node, i)]
    values = [g.value(node, i) for i in tensors]
    rank = values[0].rank
    if any(v.rank != rank for v in values):
        raise Unsupported(
            f"tensor operands of ranks {[v.rank for v in values]}: the batch axis of a "
            "lower-rank tensor would broadcast against another axis"
        )
    perm = values[0].perm
    values = [g.to_perm(v, perm, f"{name}.input{i}") for i, v in zip(tensors, values)]
    ref = values[0]
    shapes: list[Any] = [None] * 3
    weights = {}
    for i in range(3):
        if i not in tensors:
            c = np.asarray(g.const(node, i))
            c = _constant_operand(g, ref, c.astype(np.float64), f"constant operand {i}")
            shapes[i], weights[f"constant{i}"] = list(c.shape), c
    layer = Select(shapes, name=name, dtype=g.dtype)
    t = g.call(layer, [v.tensor for v in values], weights)
    return [_Value(t, perm, _onnx_shape(t, perm))]


@_converter("PRelu")
def _prelu(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    slope = np.asarray(g.const(node, 1))
    if x.rank >= 3 and slope.ndim == 1 and slope.shape[0] == x.shape[1] != 1:
        slope = slope.reshape(-1, *([1] * (x.rank - 2)))  # opset < 9 channel slopes
    c = _constant_operand(g, x, slope, "the slope")
    return [_emit(g, PRelu(c.shape, name=name, dtype=g.dtype), x, {"slope": c})]


@_converter("Softmax", "LogSoftmax")
def _softmax(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    log = node.op_type == "LogSoftmax"
    axis = _onnx_axis("axis", int(a.get("axis", 1 if g.opset < 13 else -1)), x.rank)
    _no_batch(axis, "softmax over")
    coerce = g.opset < 13 and axis != x.rank - 1
    if coerce:
        x = g.to_perm(x, _identity(x.rank), f"{name}.to_onnx_layout")
    layer = OnnxSoftmax(x.perm.index(axis), log=log, coerce=coerce, name=name, dtype=g.dtype)
    return [_emit(g, layer, x)]


# -- dense -----------------------------------------------------------------------------------
@_converter("Gemm")
def _gemm(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    if a.get("transA", 0):
        raise Unsupported("transA=1 (A's rows are the batch)")
    x = g.value(node, 0)
    if x.rank != 2:
        raise Unsupported(f"A of rank {x.rank}")
    w = np.asarray(g.const(node, 1), np.float64)
    w = (w.T if a.get("transB", 0) else w) * float(a.get("alpha", 1.0))
    c = g.const(node, 2, required=False)
    bias = None
    if c is not None:
        c = np.asarray(c, np.float64) * float(a.get("beta", 1.0))
        if c.ndim == 2 and c.shape[0] != 1:
            raise Unsupported(f"C of shape {c.shape} varies along the batch axis")
        bias = np.broadcast_to(c.reshape(-1) if c.ndim else c, (w.shape[1],))
    layer = L.Dense(w.shape[1], use_bias=bias is not None, name=name, dtype=g.dtype)
    weights = {"kernel": w} if bias is None else {"kernel": w, "bias": bias}
    return [_emit(g, layer, x, weights)]


@_converter("MatMul")
def _matmul(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    if not g.is_const(node, 1):
        y = g.value(node, 1)
        if x.rank < 3 or y.rank != x.rank:
            raise Unsupported(
                f"two tensors of ranks {x.rank} and {y.rank}: a product of tensors needs "
                "equal ranks of 3 or more (otherwise it would contract or broadcast the "
                "batch axis)"
            )
        x = g.to_perm(x, _identity(x.rank), f"{name}.a_to_onnx_layout")
        y = g.to_perm(y, _identity(y.rank), f"{name}.b_to_onnx_layout")
        t = MatMul(name=name, dtype=g.dtype)([x.tensor, y.tensor])
        return [_Value(t, _identity(x.rank), _onnx_shape(t, _identity(x.rank)))]
    w = np.asarray(g.const(node, 1))
    if w.ndim != 2 or x.rank < 2:
        raise Unsupported(f"B of rank {w.ndim} with A of rank {x.rank} (B must be a matrix)")
    if x.perm[-1] != x.rank - 1:
        x = g.to_perm(x, _identity(x.rank), f"{name}.to_onnx_layout")
    return [
        _emit(g, L.Dense(w.shape[1], use_bias=False, name=name, dtype=g.dtype), x, {"kernel": w})
    ]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@_converter("Resize", "Upsample")
def _resize(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    r = x.rank
    mode = _text(a.get("mode", "nearest"))
    mode = {"bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear", "cubic"):
        raise Unsupported(f"mode {mode!r}")
    options: dict[str, Any] = {}
    axes: list[int] = list(range(r))
    policy = "stretch"
    sizes = None
    if node.op_type == "Upsample" or g.opset < 11:
        # Upsample and Resize-10: scales only, mapped as x / scale (onnxruntime's rule;
        # nearest takes the sample at or before it).
        legacy_attr = node.op_type == "Upsample" and g.opset < 9
        scales = a.get("scales") if legacy_attr else g.const(node, 1)
        options.update(coordinates="asymmetric", nearest_mode="floor")
    else:
        coordinates = _text(a.get("coordinate_transformation_mode", "half_pixel"))
        if coordinates == "tf_crop_and_resize":
            raise Unsupported("coordinate_transformation_mode 'tf_crop_and_resize' (a crop)")
        options.update(
            coordinates=coordinates,
            nearest_mode=_text(a.get("nearest_mode", "round_prefer_floor")),
            cubic_a=float(a.get("cubic_coeff_a", -0.75)),
            exclude_outside=bool(a.get("exclude_outside", 0)),
            antialias=bool(a.get("antialias", 0)),
        )
        policy = _text(a.get("keep_aspect_ratio_policy", "stretch"))
        if "axes" in a:
            axes = [_onnx_axis("axes", int(i), r) for i in a["axes"]]
        scales = g.const(node, 2, required=False)
        sizes = g.const(node, 3, required=False)
    if sizes is not None and np.asarray(sizes).size:
        sizes = [n if n is BATCH else int(n) for n in np.asarray(sizes).reshape(-1)]
        if len(sizes) != len(axes):
            raise Unsupported(f"sizes {sizes} for {len(axes)} axes")
        given = dict(zip(axes, sizes))
        if 0 in given:  # the batch size: the model's own, or the one the file declares
            if given.pop(0) not in (BATCH, g.batch):
                raise Unsupported(f"sizes {sizes} resize the batch axis")
        if any(n is BATCH for n in given.values()):
            raise Unsupported(f"sizes {sizes} put the batch size on another axis")
        factor = {i: n / x.shape[i] for i, n in given.items()}  # type: ignore[operator]
        if policy in ("not_larger", "not_smaller"):
            pick = min if policy == "not_larger" else max
            scale = pick(factor.values())
            factor = dict.fromkeys(factor, scale)
            given = {i: int(scale * x.shape[i] + 0.5) for i in factor}  # type: ignore[operator]
        elif policy != "stretch":
            raise Unsupported(f"keep_aspect_ratio_policy {policy!r}")
    elif scales is not None and np.asarray(scales).size:
        values = [float(v) for v in np.asarray(scales).reshape(-1)]
        if len(values) != len(axes):
            raise Unsupported(f"scales {values} for {len(axes)} axes")
        factor = dict(zip(axes, values))
        if factor.pop(0, 1.0) != 1.0:
            raise Unsupported(f"scales {values} resize the batch axis")
        if any(not f > 0 for f in factor.values()):
            raise Unsupported(f"scales {values} (they must be positive)")
        given = {i: int(f * x.shape[i]) for i, f in factor.items()}  # type: ignore[operator]
    else:
        raise Unsupported("neither scales nor sizes given")
    if any(n < 1 for n in given.values()):
        raise Unsupported(f"an output size of 0 ({given})")
    order = sorted(given, key=x.perm.index)
    layer = Resize(
        [x.perm.index(i) for i in order], [given[i] for i in order], [factor[i] for i in order],
        mode=mode, name=name, dtype=g.dtype, **options,
    )  # fmt: skip
    return [_emit(g, layer, x)]


# -- shapes ----------------------------------------------------------------------------------
@_converter("Flatten")
def _flatten(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    axis = int(a.get("axis", 1))
    axis = axis + x.rank if axis < 0 else axis
    if axis != 1 or x.rank < 1:
        raise Unsupported(f"axis {a.get('axis', 1)} (only 1: other axes merge the batch axis)")
    if x.rank == 1:
        t = L.Reshape([1], name=name, dtype=g.dtype)(x.tensor)
        return [_Value(t, (0, 1), (None, 1))]
    x = g.to_perm(x, _identity(x.rank), f"{name}.to_onnx_layout")
    t = L.Flatten(name=name, dtype=g.dtype)(x.tensor)
    return [_Value(t, (0, 1), (None, t.shape[1]))]


@_converter("Reshape")
def _reshape(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    target = list(g.const(node, 1) if g.opset >= 5 else a["shape"])
    allowzero = bool(a.get("allowzero", 0))
    dims: list[int | None] = []
    for i, s in enumerate(target):
        if s is BATCH or (s == 0 and not allowzero and i < x.rank):
            dims.append(x.shape[i] if s is not BATCH else None)
        else:
            dims.append(int(s))
    per_sample = math.prod(_sizes(x.shape[1:]))
    rest = dims[1:]
    if any(d is None for d in rest):
        raise Unsupported(f"target shape {target} puts the batch size on another axis")
    known = math.prod(d for d in rest if d != -1)  # type: ignore[misc]
    first = dims[0]
    if first is None or (first == -1 and -1 not in rest and known == per_sample):
        pass
    elif first == g.batch and known == per_sample and -1 not in rest:
        pass  # the batch size the file was exported with, written out
    elif first == g.batch and -1 in rest:
        pass
    else:
        raise Unsupported(f"target shape {target} changes the batch axis")
    if -1 in rest:
        if known == 0 or per_sample % known:
            raise Unsupported(f"target shape {target} does not fit input shape {x.shape}")
        rest = [per_sample // known if d == -1 else d for d in rest]
    if math.prod(rest) != per_sample:  # type: ignore[arg-type]
        raise Unsupported(f"target shape {target} does not fit input shape {x.shape}")
    x = g.to_perm(x, _identity(x.rank), f"{name}.to_onnx_layout")
    t = L.Reshape(rest, name=name, dtype=g.dtype)(x.tensor)  # type: ignore[arg-type]
    return [_Value(t, _identity(len(dims)), (None, *rest))]  # type: ignore[arg-type]


@_converter("Transpose")
def _transpose(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    p = list(a.get("perm", reversed(range(x.rank))))
    if sorted(p) != list(range(x.rank)):
        raise Unsupported(f"perm {p} for rank {x.rank}")
    if p[0] != 0:
        raise Unsupported(f"perm {p} moves the batch axis, which a cnnkit model keeps first")
    inverse = {axis: i for i, axis in enumerate(p)}
    # No data moves: the next layer that needs a layout gets it (a Permute, or nothing).
    return [_Value(x.tensor, tuple(inverse[q] for q in x.perm), tuple(x.shape[q] for q in p))]


def _axes(g: _Graph, node: Any, a: dict[str, Any]) -> list[int] | None:
    if g.opset < 13:
        axes = a.get("axes")
    else:
        axes = g.const(node, 1, required=False) if len(node.input) > 1 else None
    return None if axes is None else [int(i) for i in np.asarray(axes).reshape(-1)]


@_converter("Squeeze")
def _squeeze(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    axes = _axes(g, node, a)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    axes = sorted({_onnx_axis("axes", i, x.rank) for i in axes})
    for i in axes:
        _no_batch(i, "Squeeze of")
        if x.shape[i] != 1:
            raise Unsupported(f"Squeeze of axis {i} of length {x.shape[i]}")
    keep = [i for i in range(x.rank) if i not in axes]
    renumber = {old: new for new, old in enumerate(keep)}
    perm = tuple(renumber[q] for q in x.perm if q in renumber)
    shape = tuple(x.shape[i] for i in keep)
    cnnkit_shape = _sizes([shape[q] for q in perm[1:]])
    t = L.Reshape(cnnkit_shape, name=name, dtype=g.dtype)(x.tensor)
    return [_Value(t, perm, shape)]


@_converter("Unsqueeze")
def _unsqueeze(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    axes = _axes(g, node, a)
    if not axes:
        raise Unsupported("Unsqueeze without axes")
    rank = x.rank + len(axes)
    new = sorted({_onnx_axis("axes", i, rank) for i in axes})
    for i in new:
        _no_batch(i, "Unsqueeze before")
    old = [i for i in range(rank) if i not in new]  # old axis j becomes old[j]
    perm = [old[q] for q in x.perm]
    for axis in new:  # each new axis of length 1 right after its ONNX predecessor
        perm.insert(perm.index(axis - 1) + 1, axis)
    shape: list[int | None] = [1] * rank
    for j, i in enumerate(old):
        shape[i] = x.shape[j]
    cnnkit_shape = _sizes([shape[q] for q in perm[1:]])
    t = L.Reshape(cnnkit_shape, name=name, dtype=g.dtype)(x.tensor)
    return [_Value(t, tuple(perm), tuple(shape))]


_REDUCE_KINDS = {"ReduceMean": "mean", "ReduceMax": "max", "ReduceSum": "sum", "ReduceMin": "min"}
_REDUCE_KINDS |= {"ReduceSumSquare": "sum_square", "ReduceL1": "l1", "ReduceL2": "l2"}


@_converter(
    "ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceSumSquare", "ReduceL1",
    "ReduceL2",
)  # fmt: skip
def _reduce(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    axes = a.get("axes") if g.opset < (13 if node.op_type == "ReduceSum" else 18) else None
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = [int(i) for i in np.asarray(g.const(node, 1)).reshape(-1)]
    if axes is None or not len(axes):
        if a.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(x.rank))
    axes = sorted({_onnx_axis("axes", int(i), x.rank) for i in axes})
    _no_batch(axes[0], f"{node.op_type} over")
    keepdims = bool(a.get("keepdims", 1))
    kind = _REDUCE_KINDS[node.op_type]
    if kind in ("mean", "max") and x.rank in (3, 4, 5) and axes == list(range(2, x.rank)):
        # The mean or max over the whole feature map (ShuffleNet's x.mean([2, 3])).
        x = g.to_perm(x, _channels_last(x.rank), f"{name}.to_channels_last")
        cls = {
            ("mean", 3): L.GlobalAveragePooling1D,
            ("mean", 4): L.GlobalAveragePooling2D,
            ("mean", 5): L.GlobalAveragePooling3D,
            ("max", 3): L.GlobalMaxPooling1D,
            ("max", 4): L.GlobalMaxPooling2D,
            ("max", 5): L.GlobalMaxPooling3D,
        }[kind, x.rank]
        t = cls(keepdims=keepdims, name=name, dtype=g.dtype)(x.tensor)
        if keepdims:
            return [_Value(t, x.perm, _onnx_shape(t, x.perm))]
        return [_Value(t, (0, 1), (None, x.shape[1]))]
    cnnkit_axes = sorted(x.perm.index(i) for i in axes)
    t = Reduce(kind, cnnkit_axes, keepdims=keepdims, name=name, dtype=g.dtype)(x.tensor)
    if keepdims:
        return [_Value(t, x.perm, _onnx_shape(t, x.perm))]
    keep = [i for i in range(x.rank) if i not in axes]
    renumber = {old: new for new, old in enumerate(keep)}
    perm = tuple(renumber[q] for q in x.perm if q in renumber)
    return [_Value(t, perm, _onnx_shape(t, perm))]


@_converter("Concat")
def _concat(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    names = [n for n in node.input if n]
    if any(n in g.consts for n in names):
        raise Unsupported("a constant input (only tensors computed from the graph inputs)")
    values = [g.values[n] for n in names]
    rank = values[0].rank
    axis = _onnx_axis("axis", int(a["axis"]), rank)
    _no_batch(axis, "Concat along")
    perm = values[0].perm
    values = [g.to_perm(v, perm, f"{name}.input{i}") for i, v in enumerate(values)]
    if len(values) == 1:
        return [values[0]]
    t = L.Concatenate(axis=perm.index(axis), name=name, dtype=g.dtype)([v.tensor for v in values])
    return [_Value(t, perm, _onnx_shape(t, perm))]


@_converter("Split")
def _split(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    axis = _onnx_axis("axis", int(a.get("axis", 0)), x.rank)
    _no_batch(axis, "Split along")
    n = x.shape[axis]
    count = len(node.output)
    sizes = a.get("split") if g.opset < 13 else g.const(node, 1, required=False)
    if sizes is None:
        parts = int(a.get("num_outputs", count))
        size = -(-n // parts)  # type: ignore[operator]
        sizes = [min(size, n - i * size) for i in range(parts)]  # type: ignore[operator]
    sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
    if sum(sizes) != n or len(sizes) != count:
        raise Unsupported(f"split {sizes} of an axis of length {n} into {count} outputs")
    t = Split(x.perm.index(axis), sizes, name=name, dtype=g.dtype)(x.tensor)
    return [_Value(p, x.perm, _onnx_shape(p, x.perm)) for p in t]


@_converter("Slice")
def _slice(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    if g.opset < 10:
        params = _slice_params(x.shape, a["starts"], a["ends"], a.get("axes"), None)
    else:
        axes = g.const(node, 3, required=False)
        steps = g.const(node, 4, required=False)
        params = _slice_params(x.shape, g.const(node, 1), g.const(node, 2), axes, steps)
    rows = [[x.perm.index(ax), s, e, st] for ax, s, e, st in params]
    t = SliceAxes(rows, name=name, dtype=g.dtype)(x.tensor)
    return [_Value(t, x.perm, _onnx_shape(t, x.perm))]


@_converter("Pad")
def _pad(g: _Graph, node: Any, a: dict[str, Any], name: str) -> list[Any]:
    x = g.value(node, 0)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise Unsupported(f"mode {mode!r}")
    if g.opset < 11:
        pads, value = list(a.get("pads", a.get("paddings", []))), float(a.get("value", 0.0))
    else:
        pads = [int(p) for p in g.const(node, 1)]
        v = g.const(node, 2, required=False)
        value = 0.0 if v is None or np.asarray(v).size == 0 else float(np.asarray(v).reshape(-1)[0])
    axes = g.const(node, 3, required=False)
    r = x.rank
    axes = list(range(r)) if axes is None else [int(i) % r for i in axes]
    if len(pads) != 2 * len(axes):
        raise Unsupported(f"pads {pads} for axes {axes}")
    pairs = {ax: (pads[i], pads[i + len(axes)]) for i, ax in enumerate(axes)}
    if pairs.get(0, (0, 0)) != (0, 0):
        raise Unsupported("padding the batch axis")
    padding = [pairs.get(q, (0, 0)) for q in x.perm[1:]]
    t = OnnxPad(padding, mode, value, name=name, dtype=g.dtype)(x.tensor)
    return [_Value(t, x.perm, _onnx_shape(t, x.perm))]


# Nodes folded at import when their inputs are constants; as tensors they need a converter.
_FOLD_ONLY = {
    "Constant",
    "ConstantOfShape",
    "Shape",
    "Gather",
    "Range",
}


def supported_operators() -> list[str]:
    """The ONNX operators :func:`load_model` converts (the folded-only ones included)."""
    return sorted(set(CONVERTERS) | _FOLD_ONLY)


# -- the model -------------------------------------------------------------------------------
def _read(path_or_bytes: Any) -> tuple[Any, str]:
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(f"{_WHERE} needs the 'onnx' package: pip install 'cnnkit[onnx]'") from exc
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, label, base = bytes(path_or_bytes), "the bytes given", None
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        label = os.fspath(path_or_bytes)
        try:
            with open(label, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ValueError(f"{_WHERE}: cannot read {label!r}: {exc}") from None
        base = os.path.dirname(os.path.abspath(label))
    else:
        raise TypeError(
            f"{_WHERE}: path_or_bytes must be a path or bytes, got {type(path_or_bytes).__name__}"
        )
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{_WHERE}: {label!r} is not a valid ONNX file ({exc})") from None
    if not model.HasField("graph") or not model.graph.output:
        raise ValueError(f"{_WHERE}: {label!r} is not a valid ONNX file (no graph or no outputs)")
    _check_wiring(model.graph, label)
    _load_external(model, base, label)
    return model, label


def _check_wiring(graph: Any, label: str) -> None:
    """Every tensor a node reads is made before it (ONNX requires the order): a truncated
    file often still parses, losing the nodes or initializers at its end."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        for name in node.input:
            if name not in known:
                raise ValueError(
                    f"{_WHERE}: {label!r} is not a valid ONNX file: node {node.name!r} "
                    f"({node.op_type}) reads {name!r}, which no input, initializer or earlier "
                    "node makes (truncated?)"
                )
        known.update(node.output)
    missing = [o.name for o in graph.output if o.name not in known]
    if missing:
        raise ValueError(
            f"{_WHERE}: {label!r} is not a valid ONNX file: outputs {missing} are never made"
        )


def _load_external(model: Any, base: str | None, label: str) -> None:
    """Read external-data tensors from files beside the model only (no absolute paths, no
    '..'), and only within their declared offsets."""
    from onnx import external_data_helper as ext

    onnx_default_location = 0  # TensorProto.DEFAULT: the data is in the file now

    for tensor in ext._get_all_tensors(model):
        if not ext.uses_external_data(tensor):
            continue
        info = ext.ExternalDataInfo(tensor)
        if base is None:
            raise ValueError(
                f"{_WHERE}: {label} refer to external data file {info.location!r}: load the "
                "model from its path so the file beside it can be read"
            )
        loc = info.location
        full = os.path.realpath(os.path.join(base, loc))
        if os.path.isabs(loc) or os.path.dirname(full) != os.path.realpath(base):
            raise ValueError(
                f"{_WHERE}: {label!r}: external data location {loc!r} is not a file beside "
                "the model"
            )
        try:
            with open(full, "rb") as f:
                if info.offset:
                    f.seek(info.offset)
                raw = f.read(info.length) if info.length else f.read()
        except OSError as exc:
            raise ValueError(f"{_WHERE}: {label!r}: cannot read external data: {exc}") from None
        tensor.raw_data = raw
        tensor.data_location = onnx_default_location  # type: ignore[assignment]
        del tensor.external_data[:]


def _layout_perm(declared: str, wanted: str, rank: int) -> tuple[int, ...]:
    """The permutation (cnnkit axis i holds ONNX axis perm[i]) of a tensor the file
    declares in layout ``declared`` and the caller sees in layout ``wanted``."""
    if declared == wanted or rank < 3:
        return _identity(rank)
    if wanted == "NHWC":  # channels at ONNX's axis 1 move last
        return _channels_last(rank)
    return (0, rank - 1, *range(1, rank - 1))  # a channels-last file, seen channels-first


def _declared_layout(model: Any, label: str) -> str:
    """The layout of the file's inputs and outputs: ``"NHWC"`` when cnnkit exported them
    channels-last (its ``cnnkit.layout`` metadata), else ONNX's own ``"NCHW"``."""
    for prop in model.metadata_props:
        if prop.key == "cnnkit.layout":
            if prop.value not in ("NCHW", "NHWC"):
                raise ValueError(
                    f"{_WHERE}: {label!r} has metadata cnnkit.layout={prop.value!r}; expected "
                    "'NCHW' or 'NHWC'"
                )
            return prop.value
    return "NCHW"


def load_model(
    path_or_bytes: Any, *, input_layout: str | None = None, fold_batch_norm: bool = False
) -> Model:
    """Import an ONNX network as a cnnkit model.

    Parameters
    ----------
    path_or_bytes : str, path-like or bytes
        An ``.onnx`` file (external-data files are read from beside it) or its contents.
    input_layout : {"NCHW", "NHWC"}, optional
        The layout the caller passes images in: ``"NCHW"`` (channels first, as ONNX
        networks from torch declare them) or ``"NHWC"`` (channels last, cnnkit's own).
        Applies to every input of rank 3 or more. The file's own layout is ONNX's
        channels-first, unless it was written by :func:`cnnkit.onnx.save_model` with
        ``layout="NHWC"`` (its default), whose ``cnnkit.layout`` metadata says so. When
        omitted, the file's own layout is used: a torch export takes NCHW arrays, a
        cnnkit export NHWC ones, so ``load_model(path)`` round-trips either. When given,
        it wins: the model then takes (and returns) that layout, transposing at its
        boundary where the file's differs (no transpose between channels-last layers).
    fold_batch_norm : bool
        False (default) keeps every BatchNormalization a layer with its moving
        statistics, so that ``fit`` fine-tunes the network the file describes and a
        cnnkit -> ONNX -> cnnkit round trip is bit-identical. True, for inference: a
        BatchNormalization that alone reads a Conv's output is folded into that Conv's
        weights and bias, as onnxruntime does (one pass over the feature map fewer; the
        float32 results change by rounding only). torch's exporters fold it already.

    Returns
    -------
    cnnkit.Model
        A functional model, channels-last inside, with one layer per ONNX node named after
        it (``/`` becomes ``.``; helper layers that restore a layout get the node's name and
        a suffix such as ``.to_channels_last``), except a Relu that alone reads a Conv's or
        Gemm's output: it becomes that layer's fused ``activation="relu"`` (as onnxruntime
        fuses it), so the layer's own output is then the rectified one; likewise a Clip
        to [0, 6] ("relu6") or a HardSwish ("hard_swish") that alone reads a Conv's
        (depthwise included) or Gemm's output; and a Relu that alone reads an Add of two
        equal-shape tensors (a residual block's end) makes the Add an ``AddReLU`` layer.
        Outputs of rank 2 (logits, embeddings) are exactly ONNX's; outputs of rank 3 or
        more come back in the caller's layout: ``(N, C, H, W)`` for ``input_layout="NCHW"``,
        ``(N, H, W, C)`` for ``"NHWC"``.
        Convolution weights are converted once (OIHW to HWIO). Unless folded (see
        ``fold_batch_norm``), BatchNormalization keeps its moving statistics, so ``fit``
        fine-tunes the network like any cnnkit model; ``save``/``cnnkit.load_model`` do
        not need the ``onnx`` package.

    Raises
    ------
    ValueError
        A file that is not ONNX (malformed, truncated), that names external data outside
        its folder, or whose inputs have dynamic sizes other than the batch.
    NotImplementedError
        An operator (or a use of one) that cnnkit does not convert; the message names the
        operator, the node and its inputs, and lists the supported operators.
    """
    layout = input_layout.upper() if isinstance(input_layout, str) else input_layout
    if layout not in ("NCHW", "NHWC", None):
        raise ValueError(
            f"{_WHERE}: input_layout must be 'NCHW', 'NHWC' or None, got {input_layout!r}"
        )
    model, label = _read(path_or_bytes)
    declared = _declared_layout(model, label)
    layout = layout or declared
    from onnx import helper, numpy_helper

    opset = 0
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            opset = int(entry.version)
    if not opset:
        raise ValueError(f"{_WHERE}: {label!r} imports no version of the default ONNX domain")
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    dtypes, batches = set(), set()
    specs = []
    for info in inputs:
        tt = info.type.tensor_type
        np_dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
        if np_dtype not in (np.float32, np.float64):
            raise NotImplementedError(
                f"{_WHERE}: input {info.name!r} has element type {np_dtype}; cnnkit models "
                "compute in float32 or float64"
            )
        dims: list[int | None] = [
            d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim
        ]
        if not dims:
            raise NotImplementedError(f"{_WHERE}: input {info.name!r} is a scalar")
        if any(d is None for d in dims[1:]):
            raise ValueError(
                f"{_WHERE}: input {info.name!r} has shape {dims}: cnnkit needs every size but "
                "the batch (the first) fixed; export with a fixed input size"
            )
        dtypes.add(np.dtype(np_dtype))
        batches.add(dims[0])
        specs.append((info.name, dims))
    if len(dtypes) > 1:
        raise NotImplementedError(
            f"{_WHERE}: inputs of mixed element types {sorted(map(str, dtypes))}"
        )
    dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
    batch = batches.pop() if len(batches) == 1 else None
    if not isinstance(fold_batch_norm, bool):
        raise TypeError(f"{_WHERE}: fold_batch_norm must be a bool, got {fold_batch_norm!r}")
    g = _Graph(opset, dtype, batch)
    g.fold_batch_norm = fold_batch_norm
    for t in graph.initializer:
        g.consts[t.name] = numpy_helper.to_array(t)

    model_inputs = []
    for name, dims in specs:
        rank = len(dims)
        perm = _layout_perm(declared, layout, rank)
        given = tuple(dims[q] for q in perm[1:])
        t = L.Input(given, name=g.name(name), dtype=dtype)  # type: ignore[arg-type]
        model_inputs.append(t)
        g.values[name] = _Value(t, perm, (None, *dims[1:]))

    g.readers = _readers(graph)
    g.reader = {name: node for node in graph.node for name in node.input}
    token = weight_source.set(g.weight)
    try:
        for node in graph.node:
            _convert_node(g, node)
    finally:
        weight_source.reset(token)

    outputs = []
    for info in graph.output:
        if info.name not in g.values:
            raise NotImplementedError(
                f"{_WHERE}: output {info.name!r} is a constant (it does not depend on the inputs)"
            )
        v = g.values[info.name]
        v = g.to_perm(v, _layout_perm(declared, layout, v.rank), f"{info.name}.to_{layout}")
        outputs.append(v.tensor)
    if not model_inputs:
        raise NotImplementedError(f"{_WHERE}: {label!r} has no inputs besides initializers")
    return Functional(
        model_inputs if len(model_inputs) > 1 else model_inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=g.name(graph.name or "onnx_model"),
    )


def _readers(graph: Any) -> dict[str, int]:
    """Value name -> how many node inputs (of ``graph`` and of its subgraphs, which may
    read the outer graph's values) and graph outputs read it."""
    counts: dict[str, int] = {}

    def count(graph: Any) -> None:
        for node in graph.node:
            for name in node.input:
                counts[name] = counts.get(name, 0) + 1
            for attr in node.attribute:
                for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                    count(sub)
        for info in graph.output:
            counts[info.name] = counts.get(info.name, 0) + 1

    count(graph)
    return counts


def _convert_node(g: _Graph, node: Any) -> None:
    where = f"{_WHERE}: operator {node.op_type!r} (node {node.name!r}, inputs {list(node.input)})"
    if node.domain not in ("", "ai.onnx"):
        raise NotImplementedError(
            f"{where} of domain {node.domain!r} is not supported; supported: the default "
            f"domain's {', '.join(supported_operators())}"
        )
    a = _attrs(node)
    try:
        folded = _fold(g, node, a)
    except (TypeError, IndexError, KeyError, np.exceptions.AxisError) as exc:
        raise NotImplementedError(f"{where}: cannot fold its constant inputs ({exc})") from None
    if folded is not None:
        for name, value in zip(node.output, folded):
            if name:
                _check_size(np.shape(value))
                g.consts[name] = value
        return
    if node.op_type == "If" and node.input[0] in g.consts:
        _inline_branch(g, node, a)
        return
    fn = CONVERTERS.get(node.op_type)
    if fn is None:
        raise NotImplementedError(
            f"{where} is not supported; supported operators: {', '.join(supported_operators())}"
        )
    try:
        results = fn(g, node, a, g.name(node.name or node.op_type.lower()))
    except Unsupported as exc:
        raise NotImplementedError(f"{where}: unsupported use: {exc}") from None
    except (KeyError, IndexError) as exc:
        raise ValueError(f"{where}: malformed node ({type(exc).__name__}: {exc})") from None
    for name, value in zip(node.output, results):
        if name:
            g.values[name] = value


def _inline_branch(g: _Graph, node: Any, a: dict[str, Any]) -> None:
    """An If whose condition is known at import (exporters test ranks and sizes): the
    nodes of the branch taken join the graph; its outputs become the If's."""
    from onnx import numpy_helper

    condition = np.asarray(g.consts[node.input[0]])
    if condition.dtype == object or condition.size != 1:
        raise NotImplementedError(
            f"{_WHERE}: operator 'If' (node {node.name!r}): its condition depends on the "
            "batch size, which is unknown at import"
        )
    branch = a["then_branch" if bool(condition.reshape(-1)[0]) else "else_branch"]
    for t in branch.initializer:
        g.consts[t.name] = numpy_helper.to_array(t)
    for inner in branch.node:
        _convert_node(g, inner)
    for out, inner in zip(node.output, branch.output):
        if inner.name in g.consts:
            g.consts[out] = g.consts[inner.name]
        elif inner.name in g.values:
            g.values[out] = g.values[inner.name]
