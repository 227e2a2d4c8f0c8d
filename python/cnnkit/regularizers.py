"""Weight and activity regularizers: penalties added to the training loss (Keras 3 formulas).

A layer given ``kernel_regularizer=``, ``bias_regularizer=`` or ``activity_regularizer=``
reports the penalties in its ``losses`` (a model's ``losses`` gathers its layers'), and
``fit`` adds their sum to the compiled loss. ``L2`` is ``l2 * sum(x ** 2)``, without
Keras 2's factor of one half in some texts, and the activity penalty is not divided by
the batch size (Keras 3).
"""

from __future__ import annotations

from typing import Any

from . import _validate
from . import autograd as ag
from .autograd import Tensor
from .saving import registry
from .saving.registry import register_serializable

__all__ = ["L1", "L1L2", "L2", "Regularizer", "deserialize", "get", "serialize"]


class Regularizer:
    """Base class: ``regularizer(x)`` returns a scalar tensor to add to the loss."""

    def __call__(self, x: Any) -> Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regularizer:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register_serializable(package="cnnkit")
class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x ** 2)``."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        where = f"{type(self).__name__}()"
        self.l1 = _validate.real(where, "l1", l1, low=0.0)
        self.l2 = _validate.real(where, "l2", l2, low=0.0)

    def __call__(self, x: Any) -> Tensor:
        t = ag._as_tensor(x)
        parts = []
        if self.l1:
            parts.append(ag.abs(t).sum() * self.l1)
        if self.l2:
            parts.append(ag.square(t).sum() * self.l2)
        if not parts:  # still a function of x, so backward through it works
            return t.sum() * 0.0
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


@register_serializable(package="cnnkit")
class L1(L1L2):
    """``l1 * sum(|x|)``."""

    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


@register_serializable(package="cnnkit")
class L2(L1L2):
    """``l2 * sum(x ** 2)``."""

    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def serialize(regularizer: Regularizer | None) -> dict[str, Any] | None:
    return None if regularizer is None else registry.serialize(regularizer, "regularizers")


def deserialize(config: Any, custom_objects: dict[str, Any] | None = None) -> Regularizer:
    return registry.deserialize(config, Regularizer, "regularizers.deserialize()", custom_objects)


def get(identifier: Any, where: str = "regularizers.get()", arg: str = "regularizer") -> Any:
    """A :class:`Regularizer` from an instance, a name (``"l1"``, ``"l2"``, ``"l1_l2"``),
    a configuration dict, a callable, or None."""
    return registry.get_object(identifier, Regularizer, _NAMES, where, arg)
