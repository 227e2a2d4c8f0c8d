"""ONNX export (and import) of cnnkit models; needs the ``onnx`` extra."""

from ._export import save_model, supported_layers

__all__ = ["save_model", "supported_layers"]
