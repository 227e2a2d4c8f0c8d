"""ONNX interchange: :func:`load_model` imports an ONNX network as a cnnkit model.

Parsing needs the optional ``onnx`` package (``pip install 'cnnkit[onnx]'``); an imported
model does not: its layers (:mod:`cnnkit.onnx._layers`) are ordinary cnnkit layers, saved
and loaded by :func:`cnnkit.saving` like any other.
"""

from __future__ import annotations

from ._import import load_model, supported_operators

__all__ = ["load_model", "supported_operators"]
