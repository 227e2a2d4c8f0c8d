"""Layers that change the shape of samples: flatten, reshape, zero padding."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .layer import Layer

__all__ = ["Flatten", "Reshape", "ZeroPadding2D"]


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
class ZeroPadding2D(Layer):
    """Zero rows and columns around ``(N, H, W, C)`` images.

    ``padding``: an int (all sides), ``(rows, cols)`` (symmetric) or
    ``((top, bottom), (left, right))``.
    """

    def __init__(self, padding: Any = (1, 1), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"ZeroPadding2D({self.name!r})"
        text = f"{where}: padding must be an int, (rows, cols) or ((top, bottom), (left, right))"
        pairs: tuple[tuple[Any, ...], ...]
        if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            pairs = ((padding, padding), (padding, padding))
        elif isinstance(padding, (list, tuple)) and len(padding) == 2:
            if all(isinstance(p, (list, tuple)) for p in padding):
                pairs = tuple(tuple(p) for p in padding)
                if any(len(p) != 2 for p in pairs):
                    raise ValueError(f"{text}, got {padding!r}")
            else:
                pairs = tuple((p, p) for p in padding)
        else:
            raise ValueError(f"{text}, got {padding!r}")
        self.padding: tuple[tuple[int, int], ...] = tuple(
            (
                _validate.integer(where, "padding", p[0], minimum=0),
                _validate.integer(where, "padding", p[1], minimum=0),
            )
            for p in pairs
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, 4, "(N, H, W, C)")
        return ag.pad(x, ((0, 0), *self.padding, (0, 0)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}
