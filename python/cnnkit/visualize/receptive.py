"""Receptive fields: which input pixels a unit of a layer can see.

Two descriptions are computed together, axis by axis, layer by layer:

* the affine one of the course (Dang-Ha's recurrences), in a virtual input plane without
  borders: a window layer of kernel ``k``, dilation ``d``, stride ``s`` and padding ``p``
  before the input maps ``size -> size + (k - 1) * d * jump``, ``jump -> jump * s`` and
  ``start -> start - p * jump``, so unit ``i`` of the layer covers the input pixels
  ``start + i * jump ... start + i * jump + size - 1``;
* the exact one, per output position: the first and last input pixel its value depends
  on, with every border clipped where it happens (zero padding after a crop, a unit that
  sees only padding), through every tap of every layer. This is what :func:`top_patches`
  cuts, and what the tests compare with the support of an input gradient.

They agree for ordinary networks away from the borders. They differ, and
``ReceptiveField.regular`` is False, after a transposed convolution or an up-sampling
(the jump is then a fraction: the affine form only describes the field on average, and
``size`` is its largest extent) and where branches of different jumps merge. A merge of
branches (Add, Concatenate, ...) reports the union (the bounding box) of their fields and
sets ``merged``. The field is the bounding box of the support: dilated kernels leave holes
in it.

Written here rather than taken from a library: none knows cnnkit's layers, and the
"same" padding rule (Keras's, which depends on the input size) has to be the one the
kernels use.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Union

import numpy as np

from .. import layers as L
from ..layers import Layer
from ..models import Model, Sequential
from ..models.functional import Functional

__all__ = ["ReceptiveField", "receptive_field"]

Number = Union[int, Fraction]
_EMPTY_LO = np.iinfo(np.int64).max  # a position that depends on no input pixel
_EMPTY_HI = -1


def _plain(value: Fraction) -> Number:
    return int(value) if value.denominator == 1 else value


@dataclass(frozen=True, eq=False)
class ReceptiveField:
    """The receptive field of the units of one layer (one value per spatial axis).

    Attributes
    ----------
    layer : str
        The layer's name.
    size : tuple of int
        Extent in input pixels (the largest, when ``regular`` is False).
    jump : tuple of int or Fraction
        Input pixels between the fields of neighbouring units (the effective stride).
    start : tuple of int or Fraction
        Input coordinate of the first pixel of unit 0's field; negative where it reaches
        into padding. Unit ``i`` covers ``start + i * jump`` to ``start + i * jump + size - 1``
        before clipping at the image border.
    input_shape, output_shape : tuple of int
        Spatial sizes of the model's input and of the layer's output.
    regular : bool
        Whether the affine form above is exact (False after transposed convolutions,
        up-sampling, or merges of branches with different jumps).
    merged : bool
        Whether branches were merged on the way (the union of their fields is reported).
    """

    layer: str
    size: tuple[int, ...]
    jump: tuple[Number, ...]
    start: tuple[Number, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    regular: bool
    merged: bool
    lo: tuple[np.ndarray, ...] = field(repr=False)  # per axis and unit: first input pixel
    hi: tuple[np.ndarray, ...] = field(repr=False)  # last input pixel (lo > hi: none)

    def box(self, position: Sequence[int]) -> tuple[tuple[int, int], ...] | None:
        """The exact field of the unit at ``position`` (output indices, one per spatial
        axis): ``(first, stop)`` input pixels per axis, clipped at the image; None when the
        unit sees no input pixel (it lies in padding)."""
        where = "ReceptiveField.box()"
        pos = tuple(int(p) for p in position)
        if len(pos) != len(self.output_shape) or not all(
            0 <= p < n for p, n in zip(pos, self.output_shape)
        ):
            raise ValueError(
                f"{where}: position must be {len(self.output_shape)} indices within the "
                f"layer's output {self.output_shape}, got {tuple(position)}"
            )
        out = []
        for p, lo, hi in zip(pos, self.lo, self.hi):
            if hi[p] < lo[p]:
                return None
            out.append((int(lo[p]), int(hi[p]) + 1))
        return tuple(out)

    def origin(self, axis: int, index: np.ndarray) -> np.ndarray:
        """Where a ``size``-long window for the units ``index`` along ``axis`` starts: the
        affine field's first pixel, moved (only where the affine form and the exact field
        disagree) so that the exact field lies inside the window."""
        index = np.asarray(index, dtype=np.int64)
        start, jump = Fraction(self.start[axis]), Fraction(self.jump[axis])
        # floor(start + index * jump) in integers
        first = (
            start.numerator * jump.denominator + index * (jump.numerator * start.denominator)
        ) // (start.denominator * jump.denominator)
        lo, hi = self.lo[axis][index], self.hi[axis][index]
        size = self.size[axis]
        empty = hi < lo
        low_bound = np.where(empty, first, hi - size + 1)
        high_bound = np.where(empty, first, lo)
        return np.clip(first, low_bound, high_bound).astype(np.int64)


# -- per-axis state -------------------------------------------------------------------------
@dataclass
class _Axis:
    """One spatial axis of a tensor: its length, the exact field of each position
    (``lo``/``hi`` input pixels, clipped) and the affine description."""

    n: int
    lo: np.ndarray
    hi: np.ndarray
    size: Fraction
    jump: Fraction
    start: Fraction
    regular: bool = True
    merged: bool = False

    @classmethod
    def input(cls, n: int) -> _Axis:
        pixels = np.arange(n, dtype=np.int64)
        return cls(n, pixels, pixels.copy(), Fraction(1), Fraction(1), Fraction(0))

    def through(self, taps: list[tuple[np.ndarray, np.ndarray]], n_out: int) -> tuple:
        """The exact fields of ``n_out`` outputs that read, for each tap, input ``index``
        where ``valid``."""
        lo = np.full(n_out, _EMPTY_LO, np.int64)
        hi = np.full(n_out, _EMPTY_HI, np.int64)
        for index, valid in taps:
            ok = valid & (index >= 0) & (index < self.n)
            safe = np.where(ok, index, 0)
            lo = np.minimum(lo, np.where(ok, self.lo[safe], _EMPTY_LO))
            hi = np.maximum(hi, np.where(ok, self.hi[safe], _EMPTY_HI))
        return lo, hi


class _NoField(Exception):
    """A layer whose units have no receptive field (the reason is the message)."""


def _same_before(n: int, k: int, s: int, d: int) -> int:
    # Keras's "same" rule, as the kernels apply it (cnnkit.reference): ceil(n / s) outputs,
    # the odd padded pixel after the input.
    out = -(-n // s)
    return max((out - 1) * s + d * (k - 1) + 1 - n, 0) // 2


def _window(axis: _Axis, k: int, s: int, d: int, padding: str) -> _Axis:
    if padding == "same":
        p, n_out = _same_before(axis.n, k, s, d), -(-axis.n // s)
    elif padding == "causal":
        p, n_out = d * (k - 1), (axis.n - 1) // s + 1
    else:
        p, n_out = 0, (axis.n - d * (k - 1) - 1) // s + 1
    if n_out < 1:
        raise _NoField(f"its output is empty for an input of length {axis.n}")
    o = np.arange(n_out, dtype=np.int64)
    ones = np.ones(n_out, bool)
    lo, hi = axis.through([(o * s - p + t * d, ones) for t in range(k)], n_out)
    return _Axis(
        n_out,
        lo,
        hi,
        axis.size + (k - 1) * d * axis.jump,
        axis.jump * s,
        axis.start - p * axis.jump,
        axis.regular,
    )


def _transposed(axis: _Axis, k: int, s: int, d: int, padding: str, n_out: int) -> _Axis:
    # Output o of a transposed convolution receives input i through tap t when
    # i * s - p + t * d == o, p the padding of the convolution it transposes (which maps
    # the n_out-long output back to the input).
    p = _same_before(n_out, k, s, d) if padding == "same" else 0
    o = np.arange(n_out, dtype=np.int64)
    taps = []
    for t in range(k):
        num = o + p - t * d
        taps.append((num // s, num % s == 0))
    lo, hi = axis.through(taps, n_out)
    # Affine description: the inputs seen by output o, unclipped, over one period of o.
    spans, firsts = [], []
    for r in range(s):
        seen = [(r + p - t * d) // s for t in range(k) if (r + p - t * d) % s == 0]
        if seen:
            spans.append(max(seen) - min(seen))
            firsts.append(Fraction(min(seen)) - Fraction(r, s))
    extent = axis.size + max(spans, default=0) * axis.jump
    offset = min(firsts, default=Fraction(0))
    return _Axis(
        n_out,
        lo,
        hi,
        extent,
        axis.jump / s,
        axis.start + offset * axis.jump,
        axis.regular and s == 1,
    )


def _upsample(axis: _Axis, f: int, interpolation: str) -> _Axis:
    n_out = axis.n * f
    o = np.arange(n_out, dtype=np.int64)
    ones = np.ones(n_out, bool)
    if interpolation == "nearest":
        taps = [(o // f, ones)]
        extent, offset = axis.size, Fraction(0)
    else:
        # The weights of cnnkit.autograd.upsample: half-pixel centres, clamped at the border;
        # the second neighbour only where its weight is not zero.
        src = np.maximum((o + 0.5) / f - 0.5, 0)
        low = np.floor(src).astype(np.int64)
        taps = [(low, ones), (np.minimum(low + 1, axis.n - 1), src > low)]
        extent = axis.size + (axis.jump if f > 1 else 0)
        offset = Fraction(math.floor(0.5 / f - 0.5))
    lo, hi = axis.through(taps, n_out)
    return _Axis(
        n_out,
        lo,
        hi,
        extent,
        axis.jump / f,
        axis.start + offset * axis.jump,
        axis.regular and f == 1,
    )


def _shift(axis: _Axis, before: int, after: int, sign: int) -> _Axis:
    """Zero padding (sign +1) or cropping (sign -1) of ``before``/``after`` pixels."""
    n_out = axis.n + sign * (before + after)
    o = np.arange(n_out, dtype=np.int64)
    lo, hi = axis.through([(o - sign * before, np.ones(n_out, bool))], n_out)
    start = axis.start - sign * before * axis.jump
    return _Axis(n_out, lo, hi, axis.size, axis.jump, start, axis.regular)


def _whole(axis: _Axis) -> _Axis:
    """Global pooling with keepdims: one position that sees the whole axis."""
    nonempty = axis.hi >= axis.lo
    lo = np.array([axis.lo[nonempty].min() if nonempty.any() else _EMPTY_LO], np.int64)
    hi = np.array([axis.hi[nonempty].max() if nonempty.any() else _EMPTY_HI], np.int64)
    size = axis.size + (axis.n - 1) * axis.jump
    return _Axis(1, lo, hi, size, axis.jump, axis.start, axis.regular)


def _union(branches: list[list[_Axis]]) -> list[_Axis]:
    out = []
    for axes in zip(*branches):
        n = axes[0].n
        if any(a.n != n for a in axes):
            raise _NoField("its inputs differ in spatial size")
        lo = np.minimum.reduce([a.lo for a in axes])
        hi = np.maximum.reduce([a.hi for a in axes])
        start = min(a.start for a in axes)
        end = max(a.start + a.size for a in axes)
        jumps = {a.jump for a in axes}
        out.append(
            _Axis(
                n,
                lo,
                hi,
                end - start,
                max(jumps),
                start,
                all(a.regular for a in axes) and len(jumps) == 1,
            )
        )
    return out


# -- layers -----------------------------------------------------------------------------------
_POINTWISE = (
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.BatchNormalization,
    L.Dropout,
    L.Rescaling,
    L.InputLayer,
)
_MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
_CONVS: tuple[type[Layer], ...] = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D)  # + separable
_TRANSPOSED: tuple[type[Layer], ...] = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_POOLS: tuple[type[Layer], ...] = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
)
_GLOBAL_POOLS: tuple[type[Layer], ...] = (
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
)
_PADDINGS: tuple[type[Layer], ...] = (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)
_CROPPINGS: tuple[type[Layer], ...] = (L.Cropping1D, L.Cropping2D, L.Cropping3D)
_UPSAMPLINGS: tuple[type[Layer], ...] = (L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)


def _on_channels(axis: Any, rank: int) -> bool:
    """Whether an ``axis`` argument names only the channel axis of a rank-``rank`` tensor."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return all(a % rank == rank - 1 for a in axes)


def _layer_field(layer: Layer, inputs: list[list[_Axis]]) -> list[_Axis]:
    """The fields of a layer's output from those of its inputs (raises :class:`_NoField`)."""
    if isinstance(layer, _MERGES) or isinstance(layer, L.Concatenate):
        if isinstance(layer, L.Concatenate) and not _on_channels(layer.axis, len(inputs[0]) + 2):
            raise _NoField("it concatenates along a spatial axis")
        return _union(inputs)
    if len(inputs) != 1:
        raise _NoField(f"it takes {len(inputs)} inputs and is not a merge layer")
    axes = inputs[0]
    rank = len(axes)
    if isinstance(layer, _POINTWISE):
        return axes
    if isinstance(layer, (L.Softmax, L.UnitNormalization)):
        if _on_channels(layer.axis, rank + 2):
            return axes
        raise _NoField(f"it normalises along axis {layer.axis}, across positions")
    if isinstance(layer, L.Dense):
        return axes  # on a (N, ..., C) input, Dense acts on the channels at each position
    if isinstance(layer, _TRANSPOSED):
        t: Any = layer
        n_out = t.output_size([a.n for a in axes])
        return [
            _transposed(a, k, s, d, t.padding, m)
            for a, k, s, d, m in zip(axes, t.kernel_size, t.strides, t.dilation_rate, n_out)
        ]
    if isinstance(layer, _CONVS):
        c: Any = layer
        return [
            _window(a, k, s, d, c.padding)
            for a, k, s, d in zip(axes, c.kernel_size, c.strides, c.dilation_rate)
        ]
    g: Any = layer
    if isinstance(layer, _POOLS):
        return [_window(a, k, s, 1, g.padding) for a, k, s in zip(axes, g.pool_size, g.strides)]
    if isinstance(layer, _PADDINGS):
        return [_shift(a, b, e, +1) for a, (b, e) in zip(axes, g.padding)]
    if isinstance(layer, _CROPPINGS):
        return [_shift(a, b, e, -1) for a, (b, e) in zip(axes, g.cropping)]
    if isinstance(layer, _UPSAMPLINGS):
        return [_upsample(a, f, g.interpolation) for a, f in zip(axes, g.size)]
    if isinstance(layer, _GLOBAL_POOLS):
        if g.keepdims:
            return [_whole(a) for a in axes]
        raise _NoField("global pooling removes the spatial axes (each unit sees the whole input)")
    if isinstance(layer, (L.Flatten, L.Reshape)):
        raise _NoField("it removes the spatial axes")
    raise _NoField(
        f"cnnkit does not know the geometry of {type(layer).__name__} layers (only its "
        "convolution, pooling, padding, cropping, up-sampling, merge and pointwise layers)"
    )


# -- walking a model --------------------------------------------------------------------------
State = Union[list[_Axis], str]  # the fields, or why there are none


def _walk(model: Model, entry: State, record: dict[str, tuple[Layer, State]]) -> State:
    """Apply the model's layers to the fields ``entry`` of its input; record every layer's
    fields (or the reason it has none) by name; return the fields of the output."""
    if isinstance(model, Sequential):
        state = entry
        for layer in model.layers:
            state = _apply(layer, [state], record)
        return state
    if isinstance(model, Functional):
        if len(model.inputs) != 1:
            return f"it is inside a model with {len(model.inputs)} inputs"
        values: dict[int, State] = {}
        for node in model._graph_nodes:
            layer = node.layer
            if isinstance(layer, L.InputLayer):
                values[id(node.outputs)] = entry
                continue
            ins = [values[id(t)] for t in node.inputs]
            out = _apply(layer, ins, record)
            for t in _flat_outputs(node.outputs):
                values[id(t)] = out
        outs = _flat_outputs(model._graph_outputs)
        return values[id(outs[0])] if len(outs) == 1 else "the model has several outputs"
    return (
        f"{type(model).__name__} is a subclassed model: its call() cannot be followed "
        "(use a Sequential or functional model)"
    )


def _flat_outputs(value: Any) -> list[Any]:
    from .. import _nest

    return list(_nest.flatten(value))


def _apply(layer: Layer, inputs: list[State], record: dict[str, tuple[Layer, State]]) -> State:
    blocked = [s for s in inputs if isinstance(s, str)]
    if isinstance(layer, Model):
        entry = blocked[0] if blocked else inputs[0] if len(inputs) == 1 else "several inputs"
        out = _walk(layer, entry, record)
    elif blocked:
        out = blocked[0]
    else:
        try:
            out = _layer_field(layer, inputs)  # type: ignore[arg-type]
        except _NoField as exc:
            out = f"layer {layer.name!r} ({type(layer).__name__}): {exc}"
        else:
            merged = len(inputs) > 1 or any(a.merged for s in inputs for a in s)  # type: ignore[union-attr]
            out = [dataclasses.replace(a, merged=merged) for a in out]
    record[layer.name] = (layer, out)
    return out


def _input_spatial(fn: str, model: Any, input_shape: Any) -> tuple[int, ...]:
    shape: Any
    if input_shape is not None:
        from .. import _validate

        shape = _validate.shape(fn, "input_shape", [d for d in input_shape if d is not None])
    else:
        shape = getattr(model, "_input_shape", None)
        if shape is None:
            build = getattr(model, "_build_shape", None)
            shape = tuple(build) if isinstance(build, (list, tuple)) and build else None
            if shape is not None and not all(isinstance(d, int) for d in shape):
                shape = None
        if shape is None:
            raise ValueError(
                f"{fn}: model {getattr(model, 'name', '')!r} has no known input shape; build "
                "it (layers.Input or input_shape=) or pass input_shape=(H, W, C)"
            )
    if len(shape) < 2:
        raise ValueError(
            f"{fn}: the model's input must have spatial axes and channels, (H, W, C) or "
            f"(L, C) or (D, H, W, C), got input shape {tuple(shape)}"
        )
    return tuple(int(d) for d in shape[:-1])


def fields(
    fn: str, model: Any, input_shape: Any = None
) -> tuple[tuple[int, ...], dict[str, tuple[Layer, State]]]:
    """Every layer's fields (or the reason it has none), by name, for the model's input
    spatial size."""
    if not isinstance(model, Model):
        raise TypeError(f"{fn}: model must be a cnnkit Model, got {type(model).__name__}")
    spatial = _input_spatial(fn, model, input_shape)
    record: dict[str, tuple[Layer, State]] = {}
    if isinstance(model, (Sequential, Functional)):
        _walk(model, [_Axis.input(n) for n in spatial], record)
    else:
        raise TypeError(
            f"{fn}: model must be a Sequential or functional cnnkit model (a subclassed "
            f"model's call() cannot be followed), got {type(model).__name__}"
        )
    return spatial, record


def resolve(fn: str, record: dict[str, tuple[Layer, State]], layer: Any) -> tuple[str, State]:
    """The name and fields of the layer ``layer`` names, with clear errors."""
    name = layer.name if isinstance(layer, Layer) else layer
    if not isinstance(name, str):
        raise TypeError(f"{fn}: layer must be a layer name (str) or a Layer, got {layer!r}")
    valid = [n for n, (_, s) in record.items() if not isinstance(s, str)]
    if name not in record:
        raise ValueError(
            f"{fn}: layer must name a layer of the model, got {name!r}; layers with a "
            f"receptive field: {valid}"
        )
    state = record[name][1]
    if isinstance(state, str):
        raise ValueError(
            f"{fn}: layer {name!r} has no receptive field: {state}; layers with one: {valid}"
        )
    return name, state


def receptive_field(model: Any, layer: Any, *, input_shape: Any = None) -> ReceptiveField:
    """The receptive field of the units of ``layer`` in ``model``.

    Parameters
    ----------
    model : Sequential or functional cnnkit Model
        A convolutional network (1-D, 2-D or 3-D, channels-last), nested models included.
    layer : str or Layer
        A layer whose output keeps the input's spatial axes (conv, pooling, padding,
        cropping, up-sampling, merge, pointwise layers, global pooling with keepdims).
        A layer applied several times reports its last application, as
        :meth:`cnnkit.Model.activations`.
    input_shape : tuple of int, optional
        The input shape without the batch axis; the model's by default. "same" padding
        depends on it.

    Returns
    -------
    ReceptiveField
        ``size``, ``jump`` and ``start`` per spatial axis, and the exact field of every
        unit (:meth:`ReceptiveField.box`); see the module docstring.

    Examples
    --------
    >>> rf = receptive_field(model, "conv2d_1")
    >>> rf.size, rf.jump, rf.start
    ((5, 5), (1, 1), (0, 0))
    """
    fn = "receptive_field()"
    spatial, record = fields(fn, model, input_shape)
    name, state = resolve(fn, record, layer)
    assert not isinstance(state, str)
    return ReceptiveField(
        layer=name,
        size=tuple(math.ceil(a.size) for a in state),
        jump=tuple(_plain(a.jump) for a in state),
        start=tuple(_plain(a.start) for a in state),
        input_shape=spatial,
        output_shape=tuple(a.n for a in state),
        regular=all(a.regular for a in state),
        merged=any(a.merged for a in state),
        lo=tuple(a.lo for a in state),
        hi=tuple(a.hi for a in state),
    )
