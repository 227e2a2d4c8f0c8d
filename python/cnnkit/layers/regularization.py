"""Regularisation layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .layer import Layer

__all__ = ["Dropout"]


@register_serializable(package="cnnkit")
class Dropout(Layer):
    """Inverted dropout in training; the identity in inference.

    The mask generator comes from ``seed`` when given, else from the model's
    seed; its state is saved with the model, so training resumed from a saved
    model draws the same masks as the original would have.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Dropout({self.name!r})"
        self.rate = _validate.probability(where, "rate", rate, high_open=True)
        self.seed = None if seed is None else _validate.seed(where, "seed", seed)
        self._generator: np.random.Generator | None = None

    @property
    def generator(self) -> np.random.Generator:
        if self._generator is None:
            self._generator = (
                np.random.default_rng(self.seed) if self.seed is not None else self._rng(1)
            )
        return self._generator

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if not training or self.rate == 0:
            return x
        return ag.dropout(x, self.rate, self.generator)

    def get_state(self) -> dict[str, Any]:
        return {"generator": self.generator.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.bit_generator.state = state["generator"]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
