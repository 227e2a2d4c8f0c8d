"""Pooling layers: max and average over windows, and global pooling."""

from __future__ import annotations

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
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
]


class _Pool(Layer):
    rank = 2
    layout = "(N, H, W, C)"
    kind = "max"

    def __init__(
        self,
        pool_size: int | Sequence[int] = 2,
        strides: int | Sequence[int] | None = None,
        padding: str = "valid",
        data_format: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        self.data_format = _data_format(where, data_format)
        self.pool_size = _validate.integers(where, "pool_size", pool_size, self.rank)
        self.strides = (
            self.pool_size
            if strides is None
            else _validate.integers(where, "strides", strides, self.rank)
        )
        self.padding = _validate.choice(where, "padding", padding, ("valid", "same"))

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        spec: dict[str, Any] = {"stride": self.strides, "padding": self.padding}
        if self.kind == "max" and not (ag.is_grad_enabled() and getattr(x, "requires_grad", False)):
            # Nothing to differentiate: without the argmax indices ag.max_pool keeps for a
            # backward, as OnnxPooling.
            data = x.data if isinstance(x, Tensor) else x
            return Tensor(ops.max_pool(data, self.pool_size, **spec))
        pool = ag.max_pool if self.kind == "max" else ag.avg_pool
        return pool(x, self.pool_size, **spec)

    def _inference_step(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        # The kernel's own call on arrays, for inference plans.
        pool = ops.max_pool if self.kind == "max" else ops.avg_pool
        spec: dict[str, Any] = {"stride": self.strides, "padding": self.padding}
        rank = self.rank + 2
        return lambda x: pool(x, self.pool_size, **spec) if x.ndim == rank else None  # type: ignore[return-value]

    def _max_pool_args(self, spatial: Sequence[int]) -> dict[str, Any] | None:
        # For inference plans (functional._fold_pools): the pool as ops.conv_stem's
        # arguments, for an input of these spatial sizes.
        if self.kind != "max" or len(spatial) != self.rank:
            return None
        return {
            "pool_size": self.pool_size,
            "pool_stride": self.strides,
            "pool_padding": self.padding,
        }

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "data_format": self.data_format,
        }


@register_serializable(package="cnnkit")
class MaxPooling1D(_Pool):
    rank, layout, kind = 1, "(N, L, C)", "max"


@register_serializable(package="cnnkit")
class MaxPooling2D(_Pool):
    rank, layout, kind = 2, "(N, H, W, C)", "max"


@register_serializable(package="cnnkit")
class MaxPooling3D(_Pool):
    rank, layout, kind = 3, "(N, D, H, W, C)", "max"


@register_serializable(package="cnnkit")
class AveragePooling1D(_Pool):
    """Average pooling; with ``padding="same"`` padded positions are not counted (as Keras)."""

    rank, layout, kind = 1, "(N, L, C)", "avg"


@register_serializable(package="cnnkit")
class AveragePooling2D(_Pool):
    """Average pooling; with ``padding="same"`` padded positions are not counted (as Keras)."""

    rank, layout, kind = 2, "(N, H, W, C)", "avg"


@register_serializable(package="cnnkit")
class AveragePooling3D(_Pool):
    """Average pooling; with ``padding="same"`` padded positions are not counted (as Keras)."""

    rank, layout, kind = 3, "(N, D, H, W, C)", "avg"


class _GlobalPool(Layer):
    rank = 2
    layout = "(N, H, W, C)"
    kind = "avg"

    def __init__(self, data_format: Any = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = _data_format(f"{type(self).__name__}({self.name!r})", data_format)
        self.keepdims = bool(keepdims)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        y = (ag.global_avg_pool if self.kind == "avg" else ag.global_max_pool)(x)
        if self.keepdims:
            y = y.reshape(x.shape[0], *([1] * self.rank), x.shape[-1])
        return y

    def _inference_step(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        pool = ops.global_avg_pool if self.kind == "avg" else ops.global_max_pool
        rank = self.rank + 2

        def step(x: np.ndarray) -> np.ndarray | None:
            if x.ndim != rank:
                return None
            y = pool(x)
            return y.reshape(x.shape[0], *([1] * self.rank), x.shape[-1]) if self.keepdims else y

        return step

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


@register_serializable(package="cnnkit")
class GlobalAveragePooling1D(_GlobalPool):
    rank, layout, kind = 1, "(N, L, C)", "avg"


@register_serializable(package="cnnkit")
class GlobalAveragePooling2D(_GlobalPool):
    rank, layout, kind = 2, "(N, H, W, C)", "avg"


@register_serializable(package="cnnkit")
class GlobalAveragePooling3D(_GlobalPool):
    rank, layout, kind = 3, "(N, D, H, W, C)", "avg"


@register_serializable(package="cnnkit")
class GlobalMaxPooling1D(_GlobalPool):
    rank, layout, kind = 1, "(N, L, C)", "max"


@register_serializable(package="cnnkit")
class GlobalMaxPooling2D(_GlobalPool):
    rank, layout, kind = 2, "(N, H, W, C)", "max"


@register_serializable(package="cnnkit")
class GlobalMaxPooling3D(_GlobalPool):
    rank, layout, kind = 3, "(N, D, H, W, C)", "max"
