"""Layers that change the shape of samples: flatten, reshape, zero padding, cropping,
up-sampling."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _validate, ops
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .layer import Layer
from .layer import data_format as _data_format

__all__ = [
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Flatten",
    "Permute",
    "Reshape",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
]


@register_serializable(package="cnnkit")
class Flatten(Layer):
    """``(N, ...) -> (N, prod(...))``."""

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.ndim < 2:
            raise ValueError(f"{self._where()}: expected input of rank >= 2, got {x.shape}")
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (-1 fails on empty batches)


@register_serializable(package="cnnkit")
class Reshape(Layer):
    """Reshape every sample to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Reshape({self.name!r})"
        self.target_shape = _validate.shape(where, "target_shape", target_shape, allow_unknown=True)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        per_sample = math.prod(x.shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 in self.target_shape and per_sample % known) or (
            -1 not in self.target_shape and known != per_sample
        ):
            raise ValueError(
                f"{self._where()}: cannot reshape samples of shape {x.shape[1:]} to "
                f"{self.target_shape}"
            )
        dims = (per_sample // known if d == -1 else d for d in self.target_shape)
        return x.reshape(x.shape[0], *dims)  # (-1 fails on empty batches)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


@register_serializable(package="cnnkit")
class Permute(Layer):
    """Permute the axes of every sample (Keras's ``Permute``): ``dims`` numbers the axes
    from 1 (the batch axis stays first), ``Permute((2, 1))`` swaps the two axes of
    ``(N, A, B)`` samples."""

    def __init__(self, dims: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Permute({self.name!r})"
        if not isinstance(dims, (list, tuple)) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                f"{where}: dims must be a permutation of 1..n (the batch axis excluded), "
                f"got {dims!r}"
            )
        self.dims = tuple(int(d) for d in dims)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.ndim != len(self.dims) + 1:
            raise ValueError(
                f"{self._where()}: expected input of rank {len(self.dims) + 1}, got {x.shape}"
            )
        return x.transpose(0, *self.dims)

    def _inference_step(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        # Channels first to last (an imported NCHW network's input), or back (before an
        # ONNX Flatten): the copy the next layer would make of the transposed view, made on
        # every thread in one pass. Back is the same copy of (N, positions, C) samples read
        # as (N, C', positions') with C' = positions.
        rank = len(self.dims)
        if rank < 2:
            return None
        if self.dims == (*range(2, rank + 1), 1):
            return lambda x: ops.channels_last(x) if x.ndim == rank + 1 else None
        if self.dims != (rank, *range(1, rank)):
            return None

        def back(x: np.ndarray) -> np.ndarray | None:
            if x.ndim != rank + 1:
                return None
            n, c = x.shape[0], x.shape[-1]
            flat = ops.channels_last(x.reshape(n, math.prod(x.shape[1:-1]), c))
            return flat.reshape(n, c, *x.shape[1:-1])

        return back

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": list(self.dims)}


def _pairs(where: str, arg: str, value: Any, rank: int) -> tuple[tuple[int, int], ...]:
    """Keras's padding/cropping argument: an int (all sides), ``rank`` ints (symmetric per
    axis) or ``rank`` ``(before, after)`` pairs; 1-D also takes one ``(before, after)`` pair."""
    forms = "an int" + (
        ", (before, after)"
        if rank == 1
        else f", a tuple of {rank} ints or a tuple of {rank} (before, after) pairs"
    )
    text = f"{where}: {arg} must be {forms}, got {value!r}"
    pairs: tuple[tuple[Any, ...], ...]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pairs = ((value, value),) * rank
    elif rank == 1 and isinstance(value, (list, tuple)) and len(value) == 2:
        if any(isinstance(p, (list, tuple)) for p in value):
            raise ValueError(text)
        pairs = (tuple(value),)
    elif isinstance(value, (list, tuple)) and len(value) == rank:
        if all(isinstance(p, (list, tuple)) for p in value):
            pairs = tuple(tuple(p) for p in value)
            if any(len(p) != 2 for p in pairs):
                raise ValueError(text)
        elif any(isinstance(p, (list, tuple)) for p in value):
            raise ValueError(text)
        else:
            pairs = tuple((p, p) for p in value)
    else:
        raise ValueError(text)
    return tuple(
        (
            _validate.integer(where, arg, p[0], minimum=0),
            _validate.integer(where, arg, p[1], minimum=0),
        )
        for p in pairs
    )


_LAYOUTS = {1: "(N, L, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}


class _ZeroPadding(Layer):
    rank = 2
    _default: Any = (1, 1)

    def __init__(self, padding: Any = None, data_format: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        self.data_format = _data_format(where, data_format)
        self.padding = _pairs(where, "padding", 1 if padding is None else padding, self.rank)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, _LAYOUTS[self.rank])
        return ag.pad(x, ((0, 0), *self.padding, (0, 0)))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "padding": [list(p) for p in self.padding],
            "data_format": self.data_format,
        }


@register_serializable(package="cnnkit")
class ZeroPadding1D(_ZeroPadding):
    """Zeros before and after the steps of ``(N, L, C)``: ``padding`` is an int or
    ``(before, after)``."""

    rank = 1


@register_serializable(package="cnnkit")
class ZeroPadding2D(_ZeroPadding):
    """Zero rows and columns around ``(N, H, W, C)`` images.

    ``padding``: an int (all sides), ``(rows, cols)`` (symmetric) or
    ``((top, bottom), (left, right))``.
    """

    rank = 2


@register_serializable(package="cnnkit")
class ZeroPadding3D(_ZeroPadding):
    """Zeros around ``(N, D, H, W, C)`` volumes: an int, three ints or three pairs."""

    rank = 3


class _Cropping(Layer):
    rank = 2

    def __init__(self, cropping: Any = 0, data_format: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        self.data_format = _data_format(where, data_format)
        self.cropping = _pairs(where, "cropping", cropping, self.rank)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, _LAYOUTS[self.rank])
        for n, (a, b) in zip(x.shape[1:-1], self.cropping):
            if a + b >= n:
                raise ValueError(
                    f"{self._where()}: cropping {self.cropping} leaves nothing of inputs of "
                    f"shape {x.shape}"
                )
        index = tuple(slice(a, n - b) for n, (a, b) in zip(x.shape[1:-1], self.cropping))
        return x[(slice(None), *index, slice(None))]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "cropping": [list(p) for p in self.cropping],
            "data_format": self.data_format,
        }


@register_serializable(package="cnnkit")
class Cropping1D(_Cropping):
    """Drop steps at the start and end of ``(N, L, C)``: an int or ``(start, end)``."""

    rank = 1

    def __init__(self, cropping: Any = (1, 1), **kwargs: Any) -> None:
        super().__init__(cropping, **kwargs)


@register_serializable(package="cnnkit")
class Cropping2D(_Cropping):
    """Drop rows and columns of ``(N, H, W, C)``: an int, ``(rows, cols)`` or
    ``((top, bottom), (left, right))``."""

    rank = 2


@register_serializable(package="cnnkit")
class Cropping3D(_Cropping):
    """Drop planes of ``(N, D, H, W, C)``: an int, three ints or three pairs."""

    rank = 3


class _UpSampling(Layer):
    rank = 2

    def __init__(
        self,
        size: int | Sequence[int] = 2,
        data_format: Any = None,
        interpolation: str = "nearest",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        self.data_format = _data_format(where, data_format)
        self.size = _validate.integers(where, "size", size, self.rank)
        options = ("nearest", "bilinear") if self.rank == 2 else ("nearest",)
        self.interpolation = _validate.choice(where, "interpolation", interpolation, options)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, _LAYOUTS[self.rank])
        return ag.upsample(x, self.size, self.interpolation)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "size": list(self.size), "data_format": self.data_format}
        if self.rank == 2:
            config["interpolation"] = self.interpolation
        return config


@register_serializable(package="cnnkit")
class UpSampling1D(_UpSampling):
    """Repeat each step of ``(N, L, C)`` ``size`` times."""

    rank = 1

    def __init__(self, size: int = 2, **kwargs: Any) -> None:
        super().__init__(size, **kwargs)


@register_serializable(package="cnnkit")
class UpSampling2D(_UpSampling):
    """Enlarge ``(N, H, W, C)`` images by ``size``: ``interpolation="nearest"`` repeats
    pixels, ``"bilinear"`` interpolates with half-pixel centres (as Keras and torch's
    ``align_corners=False``)."""

    rank = 2


@register_serializable(package="cnnkit")
class UpSampling3D(_UpSampling):
    """Repeat each voxel of ``(N, D, H, W, C)`` by ``size`` along each axis."""

    rank = 3

    def __init__(self, size: int | Sequence[int] = 2, **kwargs: Any) -> None:
        super().__init__(size, **kwargs)
