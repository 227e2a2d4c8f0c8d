"""Normalisation layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate, initializers, ops
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .layer import Layer

__all__ = ["BatchNormalization", "UnitNormalization"]


@register_serializable(package="cnnkit")
class BatchNormalization(Layer):
    """Batch normalisation over the channel (last) axis.

    In training (``fit``, or a call with ``training=True``) it normalises with
    the batch statistics and updates ``moving_mean`` / ``moving_variance`` as
    ``moving = momentum * moving + (1 - momentum) * batch`` (biased batch
    variance, as Keras 3); otherwise, and always when ``trainable`` is False
    (as in Keras), it uses the moving statistics. Only ``axis=-1`` (the
    channels-last axis) is supported.
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"BatchNormalization({self.name!r})"
        self.axis = _validate.integer(where, "axis", axis)
        self.momentum = _validate.probability(where, "momentum", momentum)
        self.epsilon = _validate.real(where, "epsilon", epsilon, low=0.0, low_open=True)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        ndim = len(input_shape)
        if ndim < 2 or self.axis not in (-1, ndim - 1):
            raise ValueError(
                f"{self._where()}: axis must be the last (channels) axis, -1 or {ndim - 1}, "
                f"got {self.axis} for inputs of shape {input_shape}"
            )
        c = (input_shape[-1],)
        self.gamma = self.add_weight("gamma", c, self.gamma_initializer) if self.scale else None
        self.beta = self.add_weight("beta", c, self.beta_initializer) if self.center else None
        self.moving_mean = self.add_weight(
            "moving_mean", c, self.moving_mean_initializer, trainable=False
        )
        self.moving_variance = self.add_weight(
            "moving_variance", c, self.moving_variance_initializer, trainable=False
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        c = x.shape[-1]
        if c != self.moving_mean.shape[0]:
            raise ValueError(
                f"{self._where()}: expected {self.moving_mean.shape[0]} channels, got shape "
                f"{x.shape}"
            )
        gamma = self.gamma if self.gamma is not None else Tensor(np.ones(c, self.dtype))
        beta = self.beta if self.beta is not None else Tensor(np.zeros(c, self.dtype))
        if training and self.trainable:
            y, mean, var = ag.batch_norm(x, gamma, beta, epsilon=self.epsilon)
            m = self.dtype.type(self.momentum)
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
                moving.data *= m
                moving.data += (1 - m) * batch.astype(self.dtype, copy=False)
            return y
        if not ag.is_grad_enabled() or not any(t.requires_grad for t in (x, gamma, beta)):
            # Nothing to differentiate (predict runs under no_grad): one native pass.
            stats = (self.moving_mean.data, self.moving_variance.data)
            if _native_floats(x.data, gamma.data, beta.data, *stats):
                return Tensor(
                    ops.batch_norm_inference(
                        x.data, gamma.data, beta.data, *stats, epsilon=self.epsilon
                    )
                )
        inv = 1 / np.sqrt(self.moving_variance.data + self.dtype.type(self.epsilon))
        factor = gamma * inv
        return x * factor + (beta - factor * self.moving_mean.data)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
        }


def _native_floats(*arrays: np.ndarray) -> bool:
    return all(a.dtype in ag._NATIVE_FLOATS for a in arrays)


def unit_normalize(x: Tensor, axis: int | tuple[int, ...]) -> Tensor:
    """``x / sqrt(max(sum(x ** 2, axis), 1e-12))``: :class:`UnitNormalization`'s formula
    (the floor keeps a finite slope at a zero vector)."""
    return x / ag.sqrt(ag.maximum((x * x).sum(axis=axis, keepdims=True), 1e-12))


@register_serializable(package="cnnkit")
class UnitNormalization(Layer):
    """Scale each sample to unit L2 norm along ``axis`` (an int or a list of ints, not the
    batch axis): ``x / sqrt(max(sum(x ** 2), 1e-12))`` as Keras."""

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"UnitNormalization({self.name!r})"
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not axes:
            raise ValueError(f"{where}: axis must be an int or a non-empty list of ints, got []")
        self.axis: int | list[int] = (
            [_validate.integer(where, "axis", a) for a in axes]
            if isinstance(axis, (list, tuple))
            else _validate.integer(where, "axis", axis)
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        norm = [a % x.ndim if -x.ndim <= a < x.ndim else None for a in axes]
        if any(a is None or a == 0 for a in norm):
            raise ValueError(
                f"{self._where()}: axis {self.axis} must name non-batch axes of inputs of "
                f"shape {x.shape}"
            )
        return unit_normalize(x, tuple(a for a in norm if a is not None))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
