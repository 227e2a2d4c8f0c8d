"""Weight constraints, applied to a layer's weights after each optimizer step (as Keras).

A constraint maps a weight's array to the projected array: ``MaxNorm`` caps the norm of
slices along ``axis``, ``NonNeg`` zeroes negative values, ``UnitNorm`` scales slices to
norm 1. Norms are taken over ``axis`` (Keras's default 0: the input axis of a Dense
kernel; use ``[0, 1, 2]`` for a Conv2D kernel so each filter is one slice).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _validate
from .saving import registry
from .saving.registry import register_serializable

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "deserialize", "get", "serialize"]

_EPSILON = 1e-7  # Keras's backend epsilon, which keeps a zero slice at zero


class Constraint:
    """Base class: ``constraint(w)`` returns the constrained array of ``w``'s shape."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constraint:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _axis(where: str, axis: Any) -> int | list[int]:
    if isinstance(axis, (list, tuple)):
        if not axis:
            raise ValueError(f"{where}: axis must be an int or a non-empty list of ints, got []")
        return [_validate.integer(where, "axis", a) for a in axis]
    return _validate.integer(where, "axis", axis)


def _norms(w: np.ndarray, axis: int | list[int], where: str) -> np.ndarray:
    axes = tuple(axis) if isinstance(axis, list) else (axis,)
    if any(not -w.ndim <= a < w.ndim for a in axes):
        raise ValueError(f"{where}: axis {axis} is out of range for a weight of shape {w.shape}")
    return np.sqrt(np.sum(np.square(w), axis=axes, keepdims=True))


@register_serializable(package="cnnkit")
class MaxNorm(Constraint):
    """Scale slices whose L2 norm along ``axis`` exceeds ``max_value`` down to it."""

    def __init__(self, max_value: float = 2.0, axis: int | Sequence[int] = 0) -> None:
        where = "MaxNorm()"
        self.max_value = _validate.real(where, "max_value", max_value, low=0.0)
        self.axis = _axis(where, axis)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        norms = _norms(w, self.axis, "MaxNorm()")
        desired = np.clip(norms, 0, self.max_value)
        return (w * (desired / (_EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


@register_serializable(package="cnnkit")
class NonNeg(Constraint):
    """Zero the negative values."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return w * (w >= 0)


@register_serializable(package="cnnkit")
class UnitNorm(Constraint):
    """Scale slices to L2 norm 1 along ``axis``."""

    def __init__(self, axis: int | Sequence[int] = 0) -> None:
        self.axis = _axis("UnitNorm()", axis)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return (w / (_EPSILON + _norms(w, self.axis, "UnitNorm()"))).astype(w.dtype, copy=False)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


_NAMES = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm}


def serialize(constraint: Constraint | None) -> dict[str, Any] | None:
    return None if constraint is None else registry.serialize(constraint, "constraints")


def deserialize(config: Any, custom_objects: dict[str, Any] | None = None) -> Constraint:
    return registry.deserialize(config, Constraint, "constraints.deserialize()", custom_objects)


def get(identifier: Any, where: str = "constraints.get()", arg: str = "constraint") -> Any:
    """A :class:`Constraint` from an instance, a name (``"max_norm"``, ``"non_neg"``,
    ``"unit_norm"``), a configuration dict, a callable, or None."""
    return registry.get_object(identifier, Constraint, _NAMES, where, arg)
