"""Learning-rate schedules with the Keras 3 names, arguments and formulas.

A schedule maps the optimizer's step counter (``optimizer.iterations``, 0 for
the first update) to a learning rate. Optimizers accept one in place of a
float ``learning_rate``. Schedules serialize to plain dictionaries
(``{"class_name": ..., "config": ...}``) that :func:`deserialize` turns back
into objects of the known classes only: no code is imported or run.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _validate
from .saving import registry
from .saving.registry import register_serializable

__all__ = [
    "CosineDecay",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LearningRateSchedule",
    "PiecewiseConstantDecay",
    "deserialize",
    "serialize",
]


def _step(func: str, step: Any) -> float:
    # Steps come from the optimizer as ints, but NumPy scalars are fine too.
    return _validate.real(func, "step", step, low=0.0, finite=False)


def _flag(where: str, arg: str, value: Any) -> bool:
    # bool('no') is True: staircase='no' stepped the rate.
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {arg} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


class LearningRateSchedule:
    """Base class: a callable from the step counter to a learning rate.

    Subclasses implement ``__call__(step) -> float`` and ``get_config()``;
    ``from_config(config)`` calls the constructor with the config's entries.
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError(
            f"{type(self).__name__}.__call__(): a LearningRateSchedule subclass must implement it"
        )

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-compatible dictionary."""
        raise NotImplementedError(
            f"{type(self).__name__}.get_config(): a LearningRateSchedule subclass must implement it"
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LearningRateSchedule:
        """Create a schedule from the dictionary returned by :meth:`get_config`."""
        if not isinstance(config, Mapping):
            raise TypeError(
                f"{cls.__name__}.from_config(): config must be a dict, got {type(config).__name__}"
            )
        try:
            inspect.signature(cls).bind(**config)
        except TypeError as e:
            raise TypeError(f"{cls.__name__}.from_config(): config does not fit: {e}") from None
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register_serializable(package="cnnkit")
class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : int or float, > 0
    decay_rate : float
    staircase : bool, default False
        If True, ``step / decay_steps`` is floored, so the rate drops in steps.
    name : str, default "ExponentialDecay"
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        decay_rate: float,
        staircase: bool = False,
        name: str = "ExponentialDecay",
    ) -> None:
        f = "ExponentialDecay()"
        self.initial_learning_rate = _validate.real(
            f, "initial_learning_rate", initial_learning_rate
        )
        self.decay_steps = _validate.real(f, "decay_steps", decay_steps, low=0.0, low_open=True)
        # A negative rate to a fractional power is complex: (-0.9) ** 0.5 gave a complex
        # learning rate.
        self.decay_rate = _validate.real(f, "decay_rate", decay_rate, low=0.0)
        self.staircase = _flag(f, "staircase", staircase)
        self.name = name

    def __call__(self, step: int) -> float:
        p = _step("ExponentialDecay()", step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate**p

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


@register_serializable(package="cnnkit")
class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant rate between boundaries.

    ``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]`` and ``values[-1]`` after the
    last boundary.

    Parameters
    ----------
    boundaries : sequence of numbers, strictly increasing
    values : sequence of floats, one more than ``boundaries``
    name : str, default "PiecewiseConstant"
    """

    def __init__(
        self,
        boundaries: Sequence[float],
        values: Sequence[float],
        name: str = "PiecewiseConstant",
    ) -> None:
        f = "PiecewiseConstantDecay()"
        if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
            raise TypeError(f"{f}: boundaries must be a list, got {type(boundaries).__name__}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"{f}: values must be a list, got {type(values).__name__}")
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{f}: the length of boundaries should be 1 less than the length of values, "
                f"got {len(boundaries)} boundaries and {len(values)} values"
            )
        b = [_validate.real(f, f"boundaries[{i}]", v) for i, v in enumerate(boundaries)]
        if any(b1 >= b2 for b1, b2 in zip(b, b[1:])):
            raise ValueError(f"{f}: boundaries must be strictly increasing, got {list(boundaries)}")
        self.boundaries = b
        self.values = [_validate.real(f, f"values[{i}]", v) for i, v in enumerate(values)]
        self.name = name

    def __call__(self, step: int) -> float:
        s = _step("PiecewiseConstantDecay()", step)
        for boundary, value in zip(self.boundaries, self.values):
            if s <= boundary:
                return value
        return self.values[-1]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


@register_serializable(package="cnnkit")
class CosineDecay(LearningRateSchedule):
    """Cosine decay with an optional linear warm-up (Loshchilov & Hutter, SGDR).

    Without warm-up (``warmup_target=None``) the rate is
    ``initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * t)) + alpha)``
    with ``t = min(step, decay_steps) / decay_steps``. With warm-up, the rate
    rises linearly from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps`` steps and then decays from ``warmup_target`` as above over
    the next ``decay_steps`` steps.

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : int or float, > 0
    alpha : float, default 0.0
        The final rate as a fraction of the decayed-from rate.
    warmup_target : float or None, default None
    warmup_steps : int or float, default 0
    name : str, default "CosineDecay"
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        alpha: float = 0.0,
        name: str = "CosineDecay",
        warmup_target: float | None = None,
        warmup_steps: float = 0,
    ) -> None:
        f = "CosineDecay()"
        self.initial_learning_rate = _validate.real(
            f, "initial_learning_rate", initial_learning_rate
        )
        self.decay_steps = _validate.real(f, "decay_steps", decay_steps, low=0.0, low_open=True)
        self.alpha = _validate.real(f, "alpha", alpha)
        self.warmup_target = (
            None if warmup_target is None else _validate.real(f, "warmup_target", warmup_target)
        )
        self.warmup_steps = _validate.real(f, "warmup_steps", warmup_steps, low=0.0)
        self.name = name

    def _decay(self, step: float, decay_from: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        s = _step("CosineDecay()", step)
        if self.warmup_target is None:
            return self._decay(min(s, self.decay_steps), self.initial_learning_rate)
        s = min(s, self.decay_steps + self.warmup_steps)
        if s < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return self.initial_learning_rate + delta * s / self.warmup_steps
        return self._decay(s - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


@register_serializable(package="cnnkit")
class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``.

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : int or float, > 0
    decay_rate : float, >= 0
    staircase : bool, default False
        If True, ``step / decay_steps`` is floored.
    name : str, default "InverseTimeDecay"
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        decay_rate: float,
        staircase: bool = False,
        name: str = "InverseTimeDecay",
    ) -> None:
        f = "InverseTimeDecay()"
        self.initial_learning_rate = _validate.real(
            f, "initial_learning_rate", initial_learning_rate
        )
        self.decay_steps = _validate.real(f, "decay_steps", decay_steps, low=0.0, low_open=True)
        # A negative rate would make the denominator cross zero.
        self.decay_rate = _validate.real(f, "decay_rate", decay_rate, low=0.0)
        self.staircase = _flag(f, "staircase", staircase)
        self.name = name

    def __call__(self, step: int) -> float:
        p = _step("InverseTimeDecay()", step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """Return ``{"class_name": ..., "config": ...}`` for a schedule of a registered class.

    Raises
    ------
    TypeError
        If the schedule's class is not registered.
    """
    return registry.serialize(schedule, "schedules.serialize()")


def deserialize(config: Mapping[str, Any]) -> LearningRateSchedule:
    """Create a schedule from the output of :func:`serialize`.

    Only registered classes are known; nothing is imported or executed.
    """
    return registry.deserialize(config, LearningRateSchedule, "schedules.deserialize()")
