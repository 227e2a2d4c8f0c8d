"""The training loops apart from the model: :class:`Trainer` (``compile`` / ``fit`` /
``evaluate`` / ``predict`` and the overridable ``train_step`` / ``test_step`` /
``predict_step``) and the data adapters that turn arrays, iterables of batches and
loaders into batches."""

from __future__ import annotations

from .data_adapters import unpack_x_y_sample_weight
from .trainer import NonFiniteLossError, Trainer

__all__ = ["NonFiniteLossError", "Trainer", "unpack_x_y_sample_weight"]
