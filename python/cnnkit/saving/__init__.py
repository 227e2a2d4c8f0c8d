"""Saving and loading: the one registry of serialisable classes (:mod:`.registry`) and
model and weights files (:mod:`.model_files`: a zip of JSON and ``.npz``, never pickle).

``cnnkit.io``, the former name of :mod:`cnnkit.saving.model_files`, still works.
"""

from __future__ import annotations

from typing import Any

from .registry import get_registered_name, get_registered_object, register_serializable

__all__ = [
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "load_weights",
    "register_serializable",
    "save_model",
    "save_weights",
]

_FILES = {"load_model", "load_weights", "save_model", "save_weights"}


def __getattr__(name: str) -> Any:
    # The file functions load on first use: layers import the registry from here at
    # start-up, and should not pay for zipfile and json.
    if name in _FILES:
        from . import model_files

        return getattr(model_files, name)
    raise AttributeError(f"module 'cnnkit.saving' has no attribute {name!r}")
