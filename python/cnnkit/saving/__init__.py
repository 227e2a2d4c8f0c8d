"""Saving and loading: model and weights files (zip of JSON and ``.npz``, never pickle).

``cnnkit.io`` is the former name of :mod:`cnnkit.saving.model_files` and still works.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]


def __getattr__(name: str) -> Any:
    # The file functions load on first use: layers import the registry from here at
    # start-up, and should not pay for zipfile and json.
    if name in __all__:
        from . import model_files

        return getattr(model_files, name)
    raise AttributeError(f"module 'cnnkit.saving' has no attribute {name!r}")
