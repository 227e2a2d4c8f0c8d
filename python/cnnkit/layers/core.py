"""Core layers: the input declaration, the fully connected layer, Rescaling and Lambda."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _validate, initializers, ops
from .. import autograd as ag
from ..autograd import Tensor
from ..saving import registry
from ..saving.registry import register_serializable
from .activations import _activation, _apply_activation, _fused, _fused_inference
from .layer import Layer, add_bias, set_weight_options, weight_options_config
from .symbolic import KerasTensor, Node

_WEIGHT_OPTIONS = ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint")

__all__ = ["Dense", "Input", "InputLayer", "Lambda", "Rescaling"]


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

    kernel_regularizer: Any
    bias_regularizer: Any
    kernel_constraint: Any
    bias_constraint: Any

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"Dense({self.name!r})"
        set_weight_options(
            self,
            where,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.units = _validate.integer(where, "units", units, minimum=1)
        self.activation, self._act = _activation(where, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) < 2:
            raise ValueError(f"{self._where()}: expected input of rank >= 2, got {input_shape}")
        self.kernel = self.add_weight(
            "kernel",
            (input_shape[-1], self.units),
            self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = add_bias(self, self.units)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"{self._where()}: expected inputs with last axis {self.kernel.shape[0]}, "
                f"got shape {x.shape}"
            )
        fused = _fused(self.activation, self._act)
        if x.ndim == 2 and fused is not None:
            return ag.dense(x, self.kernel, self.bias, activation=fused)
        flat = x if x.ndim <= 3 else x.reshape(-1, x.shape[-1])
        y = ag.matmul(flat, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        if x.ndim > 3:
            y = y.reshape(*x.shape[:-1], self.units)
        return _apply_activation(self._act, y)

    def _inference_step(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        # The bias goes into the GEMM's store also without an activation: the same bits as
        # call's product and NumPy add, one pass less (AlexNet's fc8: 0.12 -> 0.02 ms).
        fused = _fused_inference(self.activation, self._act)
        if fused is None and self.activation != "linear":
            return None

        def step(x: np.ndarray) -> np.ndarray | None:
            kernel, bias = self.kernel.data, self.bias
            if x.ndim != 2 or x.shape[1] != kernel.shape[0]:
                return None
            return ops.matmul(x, kernel, bias=None if bias is None else bias.data, activation=fused)

        return step

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            **weight_options_config(self, *_WEIGHT_OPTIONS),
        }


@register_serializable(package="cnnkit")
class Rescaling(Layer):
    """``x * scale + offset`` (for example ``Rescaling(1 / 255)`` on 0-255 images)."""

    def __init__(self, scale: float, offset: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Rescaling({self.name!r})"
        self.scale = _validate.real(where, "scale", scale)
        self.offset = _validate.real(where, "offset", offset)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        y = x * self.dtype.type(self.scale) if self.scale != 1 else x
        return y + self.dtype.type(self.offset) if self.offset != 0 else y

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


@register_serializable(package="cnnkit")
class Lambda(Layer):
    """Wraps ``function(x, **arguments)`` (on autograd tensors) as a layer without weights.

    A model holding a Lambda can be saved only when ``function`` is registered with
    :func:`cnnkit.saving.register_serializable`: the file then names it, and loading finds
    it in the registry or in ``custom_objects``. No code is ever stored in a file.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        output_shape: Any = None,
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"Lambda({self.name!r})"
        if not callable(function):
            raise TypeError(f"{where}: function must be callable, got {type(function).__name__}")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(
                f"{where}: arguments must be a dict of keyword arguments, got "
                f"{type(arguments).__name__}"
            )
        self.function = function
        self.arguments = dict(arguments or {})
        self.output_shape_arg = output_shape

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        y = self.function(x, **self.arguments)
        return y if isinstance(y, Tensor) else Tensor(np.asarray(y))

    def get_config(self) -> dict[str, Any]:
        name = registry.get_registered_name(self.function)
        if name is None:
            raise ValueError(
                f"{self._where()}: cannot be serialised because its function "
                f"{getattr(self.function, '__name__', self.function)!r} is not registered; "
                "decorate the function with @cnnkit.saving.register_serializable() (and pass "
                "it in custom_objects or import it before loading), or subclass Layer"
            )
        config = {**super().get_config(), "function": name, "arguments": self.arguments}
        if self.output_shape_arg is not None:
            config["output_shape"] = self.output_shape_arg
        return config

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Lambda:
        config = dict(config)
        name = config.get("function")
        fn = (
            registry.get_registered_object(name, None, custom_objects)
            if isinstance(name, str)
            else None
        )
        if fn is None:
            raise ValueError(
                f"Lambda.from_config(): function {name!r} is not registered; register it with "
                "@cnnkit.saving.register_serializable() or pass it in custom_objects"
            )
        config["function"] = fn
        return cls(**config)
