"""Keras-named layers on :mod:`cnnkit.autograd` tensors, channels-last (see :mod:`.layer`)."""

from __future__ import annotations

from .layer import *  # noqa: F403
from .layer import __all__ as __all__
