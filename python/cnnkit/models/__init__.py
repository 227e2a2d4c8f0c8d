"""Keras-style models: :class:`Model`, :class:`Sequential`."""

from __future__ import annotations

from .model import Model, NonFiniteLossError, Sequential

__all__ = ["Model", "NonFiniteLossError", "Sequential"]
