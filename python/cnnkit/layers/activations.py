"""Activations: by name inside other layers (``Dense(..., activation="relu")``) and as layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _validate, activations
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .layer import Layer

__all__ = ["Activation", "LeakyReLU", "ReLU", "Softmax"]


_ACTIVATIONS = activations.NAMES
_linear = activations.linear


def _activation(where: str, value: Any) -> tuple[str, Callable[[Tensor], Tensor]]:
    """``(name, function)`` for an activation given by name, None (linear) or a callable."""
    if value is None:
        return "linear", _linear
    if isinstance(value, str):
        fn = _ACTIVATIONS.get(value.lower())
        if fn is None:
            raise ValueError(
                f"{where}: unknown activation {value!r}; known: {', '.join(sorted(_ACTIVATIONS))}"
            )
        return value.lower(), fn
    if callable(value):
        return getattr(value, "__name__", type(value).__name__), value
    raise TypeError(
        f"{where}: activation must be a name, None or a callable, got {type(value).__name__}"
    )


def _relu_in_place(y: Tensor) -> Tensor:
    """ReLU written over ``y``'s own array, for a fresh layer output ``y`` that nothing else
    sees and whose backward does not read it (a convolution or matmul-plus-bias result).

    Training profiles of the reference CNN spend a tenth of the step in ReLU: reusing the
    array saves an allocation (fresh pages for large maps) and one pass over memory.
    """
    out = y.data
    np.maximum(out, 0, out=out)
    return ag._record(out, (y,), lambda g: (g * (out > 0),))


# Activations the convolution and dense kernels fuse into their output (forward and
# backward): the layers hand these to ag.conv / ag.dense instead of applying them after.
_FUSED = ("relu", "leaky_relu", "sigmoid", "relu6")


def _fused(name: str, act: Callable[[Tensor], Tensor]) -> str | None:
    """The kernel's activation name for a layer's activation, or None when not fusable."""
    return name if name in _FUSED and act is _ACTIVATIONS[name] else None


def _fused_inference(name: str, act: Callable[[Tensor], Tensor]) -> str | None:
    """:func:`_fused`, plus "hard_swish" (Keras's hard_silu), which the kernels apply in
    their store but whose gradient cannot be read from their output: for inference
    steps only, while call() keeps it as an op of its own on the tape."""
    if name in ("hard_swish", "hard_silu") and act is _ACTIVATIONS[name]:
        return "hard_swish"
    return _fused(name, act)


def _relu6_in_place(y: Tensor) -> Tensor:
    """ReLU6 (``min(max(y, 0), 6)``, MobileNet's activation) over ``y``'s own array, for
    the same fresh outputs as :func:`_relu_in_place`. The gradient mask, read from the
    output, is ``ag.relu6``'s: inputs strictly between 0 and 6 are exactly the outputs
    strictly between 0 and 6."""
    out = y.data
    np.clip(out, 0, 6, out=out)
    return ag._record(out, (y,), lambda g: (g * ((out > 0) & (out < 6)),))


def _apply_activation(act: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
    if act in (activations.relu, ag.relu) and y.data.flags.writeable:
        return _relu_in_place(y)
    if act in (activations.relu6, ag.relu6) and y.data.flags.writeable:
        return _relu6_in_place(y)
    return act(y)


@register_serializable(package="cnnkit")
class Activation(Layer):
    """An activation by name (any of :data:`cnnkit.activations.NAMES`) or a callable."""

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation, self._act = _activation(f"Activation({self.name!r})", activation)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return self._act(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


@register_serializable(package="cnnkit")
class ReLU(Layer):
    """Keras's ReLU: ``x`` above ``threshold`` (capped at ``max_value``), else
    ``negative_slope * (x - threshold)``."""

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"ReLU({self.name!r})"
        self.max_value = (
            None
            if max_value is None
            else _validate.real(where, "max_value", max_value, low=0.0, finite=False)
        )
        self.negative_slope = _validate.real(where, "negative_slope", negative_slope, low=0.0)
        self.threshold = _validate.real(where, "threshold", threshold)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if self.negative_slope == 0 and self.threshold == 0 and self.max_value == 6:
            return ag.relu6(x)  # one pass, not two
        if self.negative_slope == 0 and self.threshold == 0:
            y = ag.relu(x)
        else:
            y = ag.where(x.data > self.threshold, x, (x - self.threshold) * self.negative_slope)
        if self.max_value is not None:
            y = ag.minimum(y, self.max_value)
        return y

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }


@register_serializable(package="cnnkit")
class LeakyReLU(Layer):
    """``x`` where positive, ``negative_slope * x`` elsewhere (Keras's default 0.3)."""

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.negative_slope = _validate.real(
            f"LeakyReLU({self.name!r})", "negative_slope", negative_slope
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return ag.leaky_relu(x, self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


@register_serializable(package="cnnkit")
class Softmax(Layer):
    """Softmax along ``axis``."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _validate.integer(f"Softmax({self.name!r})", "axis", axis)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"{self._where()}: axis {self.axis} out of range for {x.shape}")
        return ag.softmax(x, axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
