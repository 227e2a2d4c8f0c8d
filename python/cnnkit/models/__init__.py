"""Keras-style models: :class:`Model` (subclass it), :class:`Sequential` (a stack),
and ``summary()``; the training loops they run live in :mod:`cnnkit.training`."""

from __future__ import annotations

from . import memory
from .functional import Functional
from .model import Model, NonFiniteLossError
from .sequential import Sequential

__all__ = ["Functional", "Model", "NonFiniteLossError", "Sequential", "memory"]
