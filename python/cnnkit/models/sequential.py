"""The :class:`Sequential` model: a stack of layers, each feeding the next."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import autograd as ag
from .. import layers as layers_module
from ..autograd import Tensor
from ..layers import InputLayer, KerasTensor, Layer
from ..saving.registry import register_serializable
from .model import Model

__all__ = ["Sequential"]


def _channels_first_hint(x: Any) -> str | None:
    """A hint when an image batch looks channels-first (batch, 1 or 3, H, W), which
    cnnkit's channels-last layers would read as a 1- or 3-pixel-high image."""
    shape = tuple(np.shape(x.data if isinstance(x, Tensor) else x))
    if len(shape) in (4, 5) and shape[1] in (1, 3) and shape[-1] >= 8:
        axes = ", ".join(map(str, (0, *range(2, len(shape)), 1)))
        return (
            f"the input of shape {shape} looks channels-first (batch, channels, ...); cnnkit "
            "layers are channels-last (batch, ..., channels): transpose the data, e.g. "
            f"x.transpose({axes}), and declare it with layers.Input"
        )
    return None


@register_serializable(package="cnnkit")
class Sequential(Model):
    """A stack of layers, each feeding the next.

    Parameters
    ----------
    layers : list of Layer, optional
        May start with :func:`cnnkit.layers.Input`; or the first layer may take
        ``input_shape=``. Either way the model is built at once (its weights exist
        and ``summary()`` works); otherwise it is built by its first call.
    name, seed, trainable, dtype
        As :class:`Model`.

    Examples
    --------
    >>> from cnnkit import layers
    >>> model = Sequential([
    ...     layers.Input((8, 8, 1)),
    ...     layers.Conv2D(16, 3, activation="relu"),
    ...     layers.Flatten(),
    ...     layers.Dense(10),
    ... ], seed=0)
    """

    def __init__(
        self,
        layers: Sequence[Layer | KerasTensor] | None = None,
        name: str | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, seed=seed, **kwargs)
        self._input_layer: InputLayer | None = None
        self._input_shape: tuple[int, ...] | None = None
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise TypeError(f"Sequential(): layers must be a list, got {type(layers).__name__}")
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer | KerasTensor) -> None:
        """Append a layer (an Input declares the input shape); builds once the shape is known."""
        source = layer.node.layer if isinstance(layer, KerasTensor) and layer.node else None
        if isinstance(source, InputLayer):
            layer = source  # layers.Input(...) as the first element, as in Keras
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Sequential.add(): layer must be a cnnkit layer, got {type(layer).__name__}"
            )
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("Sequential.add(): an Input can only be the first layer")
            if self._dtype_given and not layer._dtype_given:
                layer.dtype = self.dtype
            self._input_layer = layer
            self._input_shape = layer.input_shape_arg
            return
        self._track(layer)
        if len(self._layers) == 1 and self._input_shape is None and layer.input_shape_arg:
            self._input_shape = layer.input_shape_arg
        if self._input_shape is not None:
            self.build(self._input_shape)

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError("Sequential.pop(): the model has no layers")
        layer = self._layers.pop()
        if self._input_shape is not None and self._layers:
            self.build(self._input_shape)
        return layer

    def build(self, input_shape: Sequence[int] | None = None) -> None:
        if input_shape is not None:
            shape = tuple(int(s) for s in input_shape if s is not None)
            self._input_shape = shape
        if self._input_shape is None:
            raise ValueError(f"Sequential {self.name!r}: build() needs an input shape")
        with ag.no_grad():
            self(np.zeros((1, *self._input_shape), self.dtype))

    def call(self, x: Any, training: bool = False) -> Any:
        if self._input_shape is not None and isinstance(x, Tensor):
            if tuple(x.shape[1:]) != tuple(self._input_shape):
                raise ValueError(
                    f"Sequential {self.name!r}: expected input of shape (batch, "
                    f"{', '.join(map(str, self._input_shape))}), got {tuple(x.shape)}"
                )
        hint = None
        if self._input_layer is None and not self.built:
            hint = _channels_first_hint(x)
            if hint is not None:
                warnings.warn(f"Sequential {self.name!r}: {hint}", UserWarning, stacklevel=2)
        first = x
        for layer in self._layers:
            try:
                x = layer(x, training=training)
            except ValueError as exc:
                hint = _channels_first_hint(first) if self._input_layer is None else None
                if hint is None:
                    raise
                raise ValueError(
                    f"Sequential {self.name!r}: layer {layer.name!r} ({type(layer).__name__}) "
                    f"failed on an input of shape {tuple(np.shape(first))}: {exc}; {hint}"
                ) from exc
        return x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("input_shape", None)
        config["layers"] = [layers_module.serialize(layer) for layer in self._layers]
        if self._input_layer is not None:
            config["input_layer"] = layers_module.serialize(self._input_layer)
        config["build_input_shape"] = (
            list(self._input_shape)
            if self._input_shape is not None
            else (self._build_shape if self.built else None)
        )
        return config

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Sequential:
        config = dict(config)
        layer_configs = config.pop("layers", [])
        input_layer = config.pop("input_layer", None)
        shape = config.pop("build_input_shape", None)
        if not isinstance(layer_configs, list):
            raise ValueError("Sequential.from_config(): layers must be a list")
        built = [layers_module.deserialize(c, custom_objects) for c in layer_configs]
        if input_layer is not None:
            built.insert(0, layers_module.deserialize(input_layer, custom_objects))
        model = cls(built, **config)
        if not model.built and shape is not None:
            model.build(shape)
        return model
