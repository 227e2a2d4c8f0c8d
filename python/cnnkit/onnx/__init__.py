"""ONNX interchange: :func:`load_model` imports an ONNX network as a cnnkit model, and
:func:`save_model` exports a cnnkit model to ONNX.

Parsing and writing need the optional ``onnx`` package (``pip install 'cnnkit[onnx]'``); an
imported model does not: its layers (:mod:`cnnkit.onnx._layers`) are ordinary cnnkit layers,
saved and loaded by :func:`cnnkit.saving` like any other.
"""

from __future__ import annotations

from ._export import save_model, supported_layers
from ._import import load_model, supported_operators

__all__ = ["load_model", "save_model", "supported_layers", "supported_operators"]
