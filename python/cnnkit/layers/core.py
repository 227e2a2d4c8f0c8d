"""Core layers: the input declaration and the fully connected layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _validate, initializers
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .activations import _activation, _apply_activation
from .layer import Layer
from .symbolic import KerasTensor, Node

__all__ = ["Dense", "Input", "InputLayer"]


@register_serializable(package="cnnkit")
class InputLayer(Layer):
    """Declares the input shape (without batch); passes data through.

    It is the first layer of a :class:`cnnkit.Sequential`, or the source of a symbolic
    tensor (``output``) that a functional :class:`cnnkit.Model` starts from; see
    :func:`Input`.
    """

    def __init__(
        self,
        shape: Sequence[int] | None = None,
        batch_size: int | None = None,
        name: str | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        where = "InputLayer()"
        shape = kwargs.pop("input_shape", shape)
        dims = _validate.shape(where, "shape", shape)
        super().__init__(name=name, dtype=dtype, input_shape=dims, **kwargs)
        self.batch_size = (
            None
            if batch_size is None
            else _validate.integer(where, "batch_size", batch_size, minimum=1)
        )
        self.built = True
        tensor = KerasTensor((None, *dims), self.dtype, self.name)
        tensor.node = Node(self, None, tensor, None)
        self._nodes = [tensor.node]  # its output is the symbolic input (Layer.output)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape_arg:
            raise ValueError(
                f"{self._where()}: expected input of shape (batch, "
                f"{', '.join(map(str, self.input_shape_arg or ()))}), got {tuple(x.shape)}"
            )
        return x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["shape"] = config.pop("input_shape")
        config.pop("trainable")
        config["batch_size"] = self.batch_size
        return config


def Input(
    shape: Sequence[int],
    batch_size: int | None = None,
    name: str | None = None,
    dtype: Any = None,
) -> KerasTensor:
    """A symbolic input of per-sample ``shape``, as Keras's ``keras.Input``.

    Call layers on it and pass it to ``cnnkit.Model(inputs, outputs)``; or make it the
    first element of a :class:`cnnkit.Sequential` to declare the input shape.

    Examples
    --------
    >>> inputs = layers.Input((28, 28, 1))
    >>> outputs = layers.Dense(10)(layers.Flatten()(inputs))
    >>> model = cnnkit.Model(inputs, outputs)
    """
    return InputLayer(shape, batch_size=batch_size, name=name, dtype=dtype).output


@register_serializable(package="cnnkit")
class Dense(Layer):
    """``activation(x @ kernel + bias)`` on the last axis; kernel ``(in, units)``."""

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"Dense({self.name!r})"
        self.units = _validate.integer(where, "units", units, minimum=1)
        self.activation, self._act = _activation(where, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) < 2:
            raise ValueError(f"{self._where()}: expected input of rank >= 2, got {input_shape}")
        self.kernel = self.add_weight(
            "kernel", (input_shape[-1], self.units), self.kernel_initializer
        )
        self.bias = (
            self.add_weight("bias", (self.units,), self.bias_initializer) if self.use_bias else None
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"{self._where()}: expected inputs with last axis {self.kernel.shape[0]}, "
                f"got shape {x.shape}"
            )
        flat = x if x.ndim <= 3 else x.reshape(-1, x.shape[-1])
        y = ag.matmul(flat, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        if x.ndim > 3:
            y = y.reshape(*x.shape[:-1], self.units)
        return _apply_activation(self._act, y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }
