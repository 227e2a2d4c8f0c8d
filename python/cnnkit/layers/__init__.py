"""Keras-named layers on :mod:`cnnkit.autograd` tensors, channels-last.

One module per family: :mod:`.layer` (the base class), :mod:`.core` (Input, Dense),
:mod:`.convolutional`, :mod:`.pooling`, :mod:`.normalization`, :mod:`.regularization`
(Dropout), :mod:`.merging` (Add, Concatenate, ...), :mod:`.reshaping` (Flatten, Reshape,
ZeroPadding2D), :mod:`.activations` and :mod:`.symbolic` (the functional API's tensors).
Every class is registered with :func:`cnnkit.saving.register_serializable`, so model
files name it by its class name.

A layer is called on a :class:`~cnnkit.autograd.Tensor` (or an array) as
``layer(x, training=False)`` and builds its weights on the first call, from the
input's shape. Called on a symbolic tensor (:func:`Input`, :class:`KerasTensor`) it
records the call instead, for ``cnnkit.Model(inputs, outputs)``. Weights are
:class:`Variable` tensors whose ``data`` optimizers update in place. Each layer has a
Keras-style ``name`` (``conv2d``, ``conv2d_1``, ... counted per process;
:func:`reset_names` restarts the count like ``keras.backend.clear_session``), a
``trainable`` flag, ``get_weights`` / ``set_weights``, and ``get_config`` /
``from_config``.

Weights are drawn from the layer's random generator: inside a model it is
derived from the model's ``seed`` and the layer's position, so the same seed
gives the same weights. A layer used on its own draws fresh entropy unless its
initializers have their own ``seed``.

``dtype`` (``"float32"`` by default, or ``"float64"``) is the dtype of the
weights and of the computation; inputs of another dtype are cast.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..saving import registry
from .activations import Activation, LeakyReLU, ReLU, Softmax
from .convolutional import (
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    DepthwiseConv2D,
    SeparableConv2D,
)
from .core import Dense, Input, InputLayer, Lambda, Rescaling
from .layer import Layer, Variable, reset_names
from .merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from .normalization import BatchNormalization, UnitNormalization
from .pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from .regularization import Dropout
from .reshaping import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Flatten,
    Permute,
    Reshape,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from .symbolic import KerasTensor

__all__ = [
    "Activation",
    "Add",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "BatchNormalization",
    "Concatenate",
    "Conv1D",
    "Conv1DTranspose",
    "Conv2D",
    "Conv2DTranspose",
    "Conv3D",
    "Conv3DTranspose",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Dense",
    "DepthwiseConv2D",
    "Dot",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "Input",
    "InputLayer",
    "KerasTensor",
    "Lambda",
    "Layer",
    "LeakyReLU",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Maximum",
    "Minimum",
    "Multiply",
    "Permute",
    "ReLU",
    "Rescaling",
    "Reshape",
    "SeparableConv2D",
    "Softmax",
    "Subtract",
    "UnitNormalization",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "Variable",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "add",
    "average",
    "concatenate",
    "deserialize",
    "dot",
    "maximum",
    "minimum",
    "multiply",
    "reset_names",
    "serialize",
    "subtract",
]


def serialize(layer: Layer) -> dict[str, Any]:
    """``{"class_name", "config"}`` of a layer or model.

    A class that is not registered is named by its ``__name__``: loading it then needs
    the class in ``custom_objects`` (as subclassed models always did).
    """
    name = registry.get_registered_name(type(layer)) or type(layer).__name__
    return {"class_name": name, "config": layer.get_config()}


def deserialize(config: Any, custom_objects: dict[str, Any] | None = None) -> Layer:
    """Build a layer (or model) from :func:`serialize`'s output.

    Only registered classes (:func:`cnnkit.saving.register_serializable`) and the
    classes named in ``custom_objects`` are instantiated: a configuration never runs
    code of its own. Models receive ``custom_objects`` for the layers they hold.
    """
    where = "layers.deserialize()"
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = registry.get_registered_object(name, Layer, custom_objects) if name else None
    takes_custom = cls is not None and "custom_objects" in _parameters(cls.from_config)
    extra = {"custom_objects": custom_objects} if takes_custom else {}
    try:
        return registry.deserialize(config, Layer, where, custom_objects, extra)
    except TypeError as exc:
        # A malformed configuration (not a dict, or arguments the class does not take) is
        # a bad value here, as it always was.
        text = str(exc) if str(exc).startswith(where) else f"{where}: bad configuration: {exc}"
        raise ValueError(text) from None


def _parameters(fn: Any) -> Any:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
