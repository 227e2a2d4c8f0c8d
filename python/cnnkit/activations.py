"""Activation functions on :class:`cnnkit.autograd.Tensor`, by Keras name.

Each function takes a tensor (or an array) and returns a tensor whose gradient the tape
knows. :func:`get` resolves the names that layers accept as ``activation=``; the table
:data:`NAMES` lists them. Formulas are Keras 3's: ``gelu`` is the exact erf form unless
``approximate=True``, ``hard_sigmoid`` is ``relu6(x + 3) / 6``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import autograd as ag
from .autograd import Tensor

__all__ = [
    "elu",
    "exponential",
    "gelu",
    "get",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "softsign",
    "swish",
    "tanh",
]


def linear(x: Any) -> Tensor:
    """The identity."""
    return ag._as_tensor(x)


def relu(x: Any) -> Tensor:
    return ag.relu(x)


def relu6(x: Any) -> Tensor:
    return ag.relu6(x)


def leaky_relu(x: Any, negative_slope: float = 0.2) -> Tensor:
    return ag.leaky_relu(x, negative_slope)


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    return ag.elu(x, alpha)


def selu(x: Any) -> Tensor:
    return ag.selu(x)


def gelu(x: Any, approximate: bool = False) -> Tensor:
    return ag.gelu(x, approximate)


def silu(x: Any) -> Tensor:
    return ag.silu(x)


swish = silu


def hard_sigmoid(x: Any) -> Tensor:
    return ag.hard_sigmoid(x)


def hard_silu(x: Any) -> Tensor:
    return ag.hard_swish(x)


hard_swish = hard_silu


def mish(x: Any) -> Tensor:
    return ag.mish(x)


def sigmoid(x: Any) -> Tensor:
    return ag.sigmoid(x)


def tanh(x: Any) -> Tensor:
    return ag.tanh(x)


def softplus(x: Any) -> Tensor:
    return ag.softplus(x)


def softsign(x: Any) -> Tensor:
    return ag.softsign(x)


def exponential(x: Any) -> Tensor:
    return ag.exp(x)


def softmax(x: Any, axis: int = -1) -> Tensor:
    return ag.softmax(x, axis=axis)


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    return ag.log_softmax(x, axis=axis)


NAMES: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": linear,
    "relu": relu,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "silu": silu,
    "swish": swish,
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": hard_silu,
    "hard_swish": hard_swish,
    "mish": mish,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softplus": softplus,
    "softsign": softsign,
    "exponential": exponential,
    "softmax": softmax,
    "log_softmax": log_softmax,
}


def get(identifier: Any) -> Callable[[Tensor], Tensor]:
    """The function of an activation name (see :data:`NAMES`), None (linear) or a callable."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = NAMES.get(identifier.lower())
        if fn is None:
            raise ValueError(
                f"activations.get(): identifier must be one of {', '.join(sorted(NAMES))}, "
                f"got {identifier!r}"
            )
        return fn
    if callable(identifier):
        return identifier
    raise TypeError(
        "activations.get(): identifier must be a name, None or a callable, got "
        f"{type(identifier).__name__}"
    )
