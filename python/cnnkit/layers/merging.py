"""Merging layers: combine a list of tensors (residual sums, Siamese heads, ONNX graphs).

Each takes a list, as Keras's do: ``layers.Add()([x, y])``, or the functional aliases
``layers.add([x, y])``. The element-wise ones need equal shapes (Keras 3 also broadcasts;
here a mismatch is a message, since in a CNN it is almost always a wiring mistake).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _validate
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .layer import Layer

__all__ = [
    "Add",
    "Average",
    "Concatenate",
    "Dot",
    "Maximum",
    "Minimum",
    "Multiply",
    "Subtract",
    "add",
    "average",
    "concatenate",
    "dot",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]


class _Merge(Layer):
    """A layer of a list of inputs of equal shapes, reduced pairwise by ``_merge``."""

    _list_input = True
    _exactly: int | None = None  # Subtract and Dot take exactly two inputs

    def _check_count(self, shapes: Sequence[tuple[int, ...]]) -> None:
        n = len(shapes)
        if self._exactly is not None and n != self._exactly:
            raise ValueError(
                f"{self._where()}: expected a list of exactly {self._exactly} inputs, got {n}"
            )
        if n < 2:
            raise ValueError(f"{self._where()}: expected a list of at least 2 inputs, got {n}")

    def build(self, input_shape: Any) -> None:
        self._check_count(input_shape)
        self._check_shapes(input_shape)

    def _check_shapes(self, shapes: Sequence[tuple[int, ...]]) -> None:
        first = tuple(shapes[0][1:])
        for i, s in enumerate(shapes[1:], 1):
            if tuple(s[1:]) != first:
                raise ValueError(
                    f"{self._where()}: inputs must have equal shapes, got input 0 of shape "
                    f"{(None, *first)} and input {i} of shape {(None, *s[1:])}"
                )

    def call(self, x: Any, training: bool = False) -> Tensor:
        shapes = [tuple(t.shape) for t in x]
        self._check_count(shapes)
        self._check_shapes(shapes)
        if len({t.shape[0] for t in x}) != 1:
            raise ValueError(
                f"{self._where()}: inputs must have the same batch size, got shapes {shapes}"
            )
        out = x[0]
        for t in x[1:]:
            out = self._merge(out, t)
        return out

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError


@register_serializable(package="cnnkit")
class Add(_Merge):
    """The element-wise sum of the inputs."""

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


@register_serializable(package="cnnkit")
class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    _exactly = 2

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return a - b


@register_serializable(package="cnnkit")
class Multiply(_Merge):
    """The element-wise product of the inputs."""

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b


@register_serializable(package="cnnkit")
class Average(_Merge):
    """The element-wise mean of the inputs."""

    def call(self, x: Any, training: bool = False) -> Tensor:
        return super().call(x, training) * (1.0 / len(x))

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


@register_serializable(package="cnnkit")
class Maximum(_Merge):
    """The element-wise maximum of the inputs (a tie sends the gradient to the first)."""

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return ag.maximum(a, b)


@register_serializable(package="cnnkit")
class Minimum(_Merge):
    """The element-wise minimum of the inputs (a tie sends the gradient to the first)."""

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        return ag.minimum(a, b)


@register_serializable(package="cnnkit")
class Concatenate(_Merge):
    """The inputs joined along ``axis`` (the channels by default); the other axes must
    agree."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _validate.integer(f"Concatenate({self.name!r})", "axis", axis)

    def _check_shapes(self, shapes: Sequence[tuple[int, ...]]) -> None:
        ndim = len(shapes[0])
        if not -ndim < self.axis < ndim or self.axis % ndim == 0:
            raise ValueError(
                f"{self._where()}: axis must be a non-batch axis in [{-ndim + 1}, {ndim - 1}] "
                f"for inputs of rank {ndim}, got {self.axis}"
            )
        axis = self.axis % ndim
        first = [d for i, d in enumerate(shapes[0]) if i not in (0, axis)]
        for i, s in enumerate(shapes[1:], 1):
            if len(s) != ndim or [d for j, d in enumerate(s) if j not in (0, axis)] != first:
                raise ValueError(
                    f"{self._where()}: inputs must have equal shapes except along axis "
                    f"{self.axis}, got input 0 of shape {(None, *shapes[0][1:])} and input {i} "
                    f"of shape {(None, *s[1:])}"
                )

    def call(self, x: Any, training: bool = False) -> Tensor:
        shapes = [tuple(t.shape) for t in x]
        self._check_count(shapes)
        self._check_shapes(shapes)
        return ag.concat(x, axis=self.axis % len(shapes[0]))

    def _inference_step(self) -> Callable[[Any], np.ndarray | None] | None:
        # The copy without the tape, for inputs call() would accept (else call() says what
        # is wrong).
        def step(x: Any) -> np.ndarray | None:
            shapes = [tuple(a.shape) for a in x]
            try:
                self._check_count(shapes)
                self._check_shapes(shapes)
            except ValueError:
                return None
            return ag.concat_arrays(x, self.axis % len(shapes[0]))

        return step

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


@register_serializable(package="cnnkit")
class Dot(_Merge):
    """Dot products of two inputs along ``axes`` (one int for both, or one per input),
    per sample; ``normalize=True`` L2-normalises both along those axes first, giving the
    cosine similarity. As Keras, for inputs ``(batch, n)`` the output is ``(batch, 1)``.
    """

    _exactly = 2

    def __init__(self, axes: int | Sequence[int], normalize: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Dot({self.name!r})"
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2:
                raise ValueError(f"{where}: axes must be an int or a pair of ints, got {axes!r}")
            pair = [_validate.integer(where, "axes", a) for a in axes]
        else:
            pair = [_validate.integer(where, "axes", axes)] * 2
        self.axes = pair
        self.normalize = bool(normalize)

    def _resolved(self, shapes: Sequence[tuple[int, ...]]) -> list[int]:
        out = []
        for a, s in zip(self.axes, shapes):
            ndim = len(s)
            if not -ndim < a < ndim or a % ndim == 0:
                raise ValueError(
                    f"{self._where()}: axes must name non-batch axes in [{-ndim + 1}, {ndim - 1}], "
                    f"got {a} for an input of shape {(None, *s[1:])}"
                )
            out.append(a % ndim)
        return out

    def _check_shapes(self, shapes: Sequence[tuple[int, ...]]) -> None:
        a, b = shapes
        if len(a) != len(b) or len(a) not in (2, 3):
            raise ValueError(
                f"{self._where()}: inputs must both be of rank 2 or both of rank 3, got shapes "
                f"{(None, *a[1:])} and {(None, *b[1:])}"
            )
        i, j = self._resolved(shapes)
        if a[i] != b[j]:
            raise ValueError(
                f"{self._where()}: axis {i} of input 0 {(None, *a[1:])} and axis {j} of input 1 "
                f"{(None, *b[1:])} must have equal sizes"
            )

    def call(self, x: Any, training: bool = False) -> Tensor:
        shapes = [tuple(t.shape) for t in x]
        self._check_count(shapes)
        self._check_shapes(shapes)
        i, j = self._resolved(shapes)
        a, b = x
        if self.normalize:
            a = a / ag.sqrt((a * a).sum(axis=i, keepdims=True) + 1e-12)
            b = b / ag.sqrt((b * b).sum(axis=j, keepdims=True) + 1e-12)
        if a.ndim == 2:
            return (a * b).sum(axis=1, keepdims=True)
        # rank 3: batched matrices with the contracted axes moved inside the product
        left = a if i == 2 else a.transpose(0, 2, 1)
        right = b if j == 1 else b.transpose(0, 2, 1)
        return ag.matmul(left, right)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": list(self.axes), "normalize": self.normalize}


def _functional(cls: type, inputs: Any, **kwargs: Any) -> Any:
    return cls(**kwargs)(inputs)


def add(inputs: Any, **kwargs: Any) -> Any:
    """``Add(**kwargs)(inputs)``."""
    return _functional(Add, inputs, **kwargs)


def subtract(inputs: Any, **kwargs: Any) -> Any:
    """``Subtract(**kwargs)(inputs)``."""
    return _functional(Subtract, inputs, **kwargs)


def multiply(inputs: Any, **kwargs: Any) -> Any:
    """``Multiply(**kwargs)(inputs)``."""
    return _functional(Multiply, inputs, **kwargs)


def average(inputs: Any, **kwargs: Any) -> Any:
    """``Average(**kwargs)(inputs)``."""
    return _functional(Average, inputs, **kwargs)


def maximum(inputs: Any, **kwargs: Any) -> Any:
    """``Maximum(**kwargs)(inputs)``."""
    return _functional(Maximum, inputs, **kwargs)


def minimum(inputs: Any, **kwargs: Any) -> Any:
    """``Minimum(**kwargs)(inputs)``."""
    return _functional(Minimum, inputs, **kwargs)


def concatenate(inputs: Any, axis: int = -1, **kwargs: Any) -> Any:
    """``Concatenate(axis, **kwargs)(inputs)``."""
    return _functional(Concatenate, inputs, axis=axis, **kwargs)


def dot(inputs: Any, axes: int | Sequence[int] = -1, normalize: bool = False, **kwargs: Any) -> Any:
    """``Dot(axes, normalize, **kwargs)(inputs)``."""
    return _functional(Dot, inputs, axes=axes, normalize=normalize, **kwargs)
