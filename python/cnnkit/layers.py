"""Keras-named layers on :mod:`cnnkit.autograd` tensors, channels-last.

A layer is called on a :class:`~cnnkit.autograd.Tensor` (or an array) as
``layer(x, training=False)`` and builds its weights on the first call, from the
input's shape. Weights are :class:`Variable` tensors whose ``data`` optimizers
update in place. Each layer has a Keras-style ``name`` (``conv2d``,
``conv2d_1``, ... counted per process; :func:`reset_names` restarts the count
like ``keras.backend.clear_session``), a ``trainable`` flag, ``get_weights`` /
``set_weights``, and ``get_config`` / ``from_config``.

Weights are drawn from the layer's random generator: inside a model it is
derived from the model's ``seed`` and the layer's position, so the same seed
gives the same weights. A layer used on its own draws fresh entropy unless its
initializers have their own ``seed``.

``dtype`` (``"float32"`` by default, or ``"float64"``) is the dtype of the
weights and of the computation; inputs of another dtype are cast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autograd as ag
from . import initializers
from .autograd import Tensor

__all__ = [
    "Activation",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "BatchNormalization",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Dense",
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
    "Layer",
    "LeakyReLU",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "ReLU",
    "Reshape",
    "Softmax",
    "Variable",
    "ZeroPadding2D",
    "deserialize",
    "reset_names",
    "serialize",
]

_name_counts: dict[str, int] = {}


def _snake(name: str) -> str:
    out = ""
    for i, c in enumerate(name):
        # "Conv2D" -> "conv2d", "MaxPooling2D" -> "max_pooling2d", "ReLU" -> "re_lu" (as Keras)
        if c.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            if not (name[i - 1].isdigit() and c == "D"):
                out += "_"
        out += c.lower()
    return out


def _unique_name(base: str) -> str:
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def reset_names() -> None:
    """Restart the automatic layer names (``dense``, ``dense_1``, ...) from zero."""
    _name_counts.clear()


class Variable(Tensor):
    """A layer weight: a leaf tensor that optimizers update in place through ``data``.

    ``trainable`` says whether it is a parameter (False for statistics such as
    BatchNormalization's moving mean); ``requires_grad`` is True only while the
    variable and its layer are trainable.
    """

    __slots__ = ("trainable",)

    def __init__(self, data: np.ndarray, trainable: bool, name: str) -> None:
        super().__init__(data, requires_grad=trainable, name=name)
        self.trainable = bool(trainable)


# -- argument checks --------------------------------------------------------------------------
def _int(where: str, arg: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {arg} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {arg} must be >= {minimum}, got {value!r}")
    return int(value)


def _ints(where: str, arg: str, value: Any, rank: int, minimum: int = 1) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ValueError(
                f"{where}: {arg} must be an int or a tuple of {rank} ints, got {value!r}"
            )
        return tuple(_int(where, arg, v, minimum) for v in value)
    return (_int(where, arg, value, minimum),) * rank


def _padding(where: str, value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        raise ValueError(f"{where}: padding must be 'valid' or 'same', got {value!r}")
    return value.lower()


def _float(where: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}: {arg} must be a number, got {type(value).__name__}")
    return float(value)


def _softmax_last(x: Tensor) -> Tensor:
    return ag.softmax(x, axis=-1)


def _linear(x: Tensor) -> Tensor:
    return x


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": _linear,
    "relu": ag.relu,
    "tanh": ag.tanh,
    "sigmoid": ag.sigmoid,
    "softmax": _softmax_last,
    "leaky_relu": ag.leaky_relu,
}


def _activation(where: str, value: Any) -> tuple[str, Callable[[Tensor], Tensor]]:
    """``(name, function)`` for an activation given by name, None (linear) or a callable."""
    if value is None:
        return "linear", _linear
    if isinstance(value, str):
        fn = _ACTIVATIONS.get(value.lower())
        if fn is None:
            raise ValueError(
                f"{where}: unknown activation {value!r}; known: {', '.join(sorted(_ACTIVATIONS))}"
            )
        return value.lower(), fn
    if callable(value):
        return getattr(value, "__name__", type(value).__name__), value
    raise TypeError(
        f"{where}: activation must be a name, None or a callable, got {type(value).__name__}"
    )


def _relu_in_place(y: Tensor) -> Tensor:
    """ReLU written over ``y``'s own array, for a fresh layer output ``y`` that nothing else
    sees and whose backward does not read it (a convolution or matmul-plus-bias result).

    Training profiles of the reference CNN spend a tenth of the step in ReLU: reusing the
    array saves an allocation (fresh pages for large maps) and one pass over memory.
    """
    out = y.data
    np.maximum(out, 0, out=out)
    return ag._record(out, (y,), lambda g: (g * (out > 0),))


# Activations the convolution and dense kernels fuse into their output (forward and
# backward): the layers hand these to ag.conv / ag.dense instead of applying them after.
_FUSED = ("relu", "leaky_relu", "sigmoid")


def _fused(name: str, act: Callable[[Tensor], Tensor]) -> str | None:
    """The kernel's activation name for a layer's activation, or None when not fusable."""
    return name if name in _FUSED and act is _ACTIVATIONS[name] else None


def _apply_activation(act: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
    if act is ag.relu and y.data.flags.writeable:
        return _relu_in_place(y)
    return act(y)


# -- the base class ---------------------------------------------------------------------------
class Layer:
    """Base class of layers (and of :class:`cnnkit.Model`).

    Parameters
    ----------
    name : str, optional
        Unique within a model; by default the snake-case class name made unique
        per process (``dense``, ``dense_1``, ...).
    trainable : bool, default True
        False freezes the weights: fit does not change them, and
        BatchNormalization runs in inference mode.
    dtype : {"float32", "float64"}, optional
        float32 unless given, or taken from the model the layer is added to
        (before it is built).
    input_shape : tuple of int, optional
        The input shape without the batch axis, so that a Sequential model can
        build at once (as Keras's ``input_shape`` argument).

    Subclasses define ``build(input_shape)`` (creating weights with
    :meth:`add_weight`) and ``call(x, training)``.
    """

    _kind = "layer"  # how messages name the object

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        where = f"{type(self).__name__}()"
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"{where}: name must be a non-empty string without '/', got {name!r}")
        self._dtype_given = dtype is not None
        try:
            dt = np.dtype("float32" if dtype is None else dtype)
        except TypeError:
            dt = None
        if dt not in (np.float32, np.float64):
            raise ValueError(f"{where}: dtype must be 'float32' or 'float64', got {dtype!r}")
        self.name = name or _unique_name(_snake(type(self).__name__))
        self.dtype = dt
        self._trainable = bool(trainable)
        self._weights: list[Variable] = []
        self.built = False
        self._build_shape: tuple[int, ...] | None = None
        self._seed_key: tuple[int, ...] | None = None
        self._output_shape: Any = None
        self._record: dict[str, Any] | None = None
        self.input_shape_arg = (
            None
            if input_shape is None
            else tuple(_int(where, "input_shape", int(s), 1) for s in input_shape)
        )

    # -- trainable ----------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for v in self._weights:
            v.requires_grad = v.trainable and self._trainable

    # -- weights --------------------------------------------------------------------------
    def _rng(self, stream: int = 0) -> np.random.Generator:
        if self._seed_key is None:
            return np.random.default_rng()
        return np.random.default_rng([*self._seed_key, stream])

    def add_weight(
        self,
        name: str,
        shape: Sequence[int],
        initializer: Any = "glorot_uniform",
        trainable: bool = True,
    ) -> Variable:
        """Create a weight from an initializer and the layer's generator."""
        rng = getattr(self, "_init_rng", None) or self._rng()
        data = initializers.get(initializer)(tuple(shape), self.dtype, rng)
        var = Variable(data, trainable, f"{self.name}/{name}")
        var.requires_grad = var.trainable and self._trainable
        self._weights.append(var)
        return var

    @property
    def weights(self) -> list[Variable]:
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v in self.weights if v.trainable and self.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [v for v in self.weights if not (v.trainable and self.trainable)]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in creation order (Keras order)."""
        return [v.data.copy() for v in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Copy arrays into the weights (same count and shapes as :meth:`get_weights`)."""
        own = self.weights
        weights = list(weights)
        if len(weights) != len(own):
            raise ValueError(
                f"set_weights(): {self._kind} {self.name!r} has {len(own)} weights, "
                f"got {len(weights)}"
            )
        arrays = [np.asarray(w) for w in weights]
        for v, a in zip(own, arrays):
            if a.shape != v.shape:
                owner = v.name.split("/")[0]  # weights are named "<layer>/<weight>"
                raise ValueError(
                    f"set_weights(): layer {owner!r} weight {v.name!r} has shape "
                    f"{v.shape}, got {a.shape}"
                )
        for v, a in zip(own, arrays):
            v.data[...] = a

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"count_params(): layer {self.name!r} is not built yet (call it on data or "
                "give the model an input shape)"
            )
        return sum(v.size for v in self.weights)

    # -- calling -----------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    def _cast(self, x: Any) -> Tensor:
        if isinstance(x, Tensor):
            if x.dtype == self.dtype:
                return x
            if x.dtype.kind == "f":
                return x.astype(self.dtype)
            return Tensor(x.data.astype(self.dtype))
        try:
            return Tensor(np.asarray(x, dtype=self.dtype))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{self._where()}: input must be numeric array-like ({exc})") from None

    def __call__(self, x: Any, training: bool = False) -> Any:
        x = self._cast(x)
        if not self.built:
            self._init_rng = self._rng()
            try:
                self.build(tuple(x.shape))
            finally:
                del self._init_rng
            self.built = True
            self._build_shape = tuple(x.shape[1:])
        out = self.call(x, training=bool(training))
        self._output_shape = (None, *out.shape[1:])
        if self._record is not None:
            self._record[self.name] = out
        return out

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included)."""

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        raise NotImplementedError

    def _need_rank(self, shape: tuple[int, ...], rank: int, layout: str) -> None:
        if len(shape) != rank:
            raise ValueError(
                f"{self._where()}: expected input of rank {rank} {layout}, got shape {shape}"
            )

    @property
    def output_shape(self) -> Any:
        """The output shape of the last call, batch axis None."""
        if self._output_shape is None:
            raise ValueError(f"{self._where()}: output_shape is known after the first call")
        return self._output_shape

    # -- state beyond weights (random generators) ---------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state that is not a weight (Dropout's generator); saved with models."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    # -- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype.name,
        }
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


# -- input ----------------------------------------------------------------------------------
class InputLayer(Layer):
    """Declares the input shape (without batch) of a Sequential model; passes data through.

    There is no functional API: an input layer only makes sense as the first
    layer of a :class:`cnnkit.Sequential`.
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
        if shape is None or isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
            raise TypeError(f"{where}: shape must be a tuple of ints, got {shape!r}")
        dims = tuple(_int(where, "shape", s, 1) for s in shape)
        super().__init__(name=name, dtype=dtype, input_shape=dims, **kwargs)
        self.batch_size = None if batch_size is None else _int(where, "batch_size", batch_size)
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape_arg:
            raise ValueError(
                f"{self._where()}: expected input of shape (batch, "
                f"{', '.join(map(str, self.input_shape_arg))}), got {tuple(x.shape)}"
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
) -> InputLayer:
    """An :class:`InputLayer` declaring the input shape, as the first element of Sequential."""
    return InputLayer(shape, batch_size=batch_size, name=name, dtype=dtype)


# -- dense and convolution ---------------------------------------------------------------------
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
        self.units = _int(where, "units", units)
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

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }


class _Conv(Layer):
    rank = 2
    layout = "(N, H, W, C)"

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        dilation_rate: int | Sequence[int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        r = self.rank
        self.filters = _int(where, "filters", filters)
        self.kernel_size = _ints(where, "kernel_size", kernel_size, r)
        self.strides = _ints(where, "strides", strides, r)
        self.padding = _padding(where, padding)
        self.dilation_rate = _ints(where, "dilation_rate", dilation_rate, r)
        self.groups = _int(where, "groups", groups)
        if self.filters % self.groups:
            raise ValueError(
                f"{where}: filters ({self.filters}) must be divisible by groups ({self.groups})"
            )
        self.activation, self._act = _activation(where, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._need_rank(input_shape, self.rank + 2, self.layout)
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(
                f"{self._where()}: input channels ({channels}) must be divisible by groups "
                f"({self.groups})"
            )
        shape = (*self.kernel_size, channels // self.groups, self.filters)
        self.kernel = self.add_weight("kernel", shape, self.kernel_initializer)
        self.bias = (
            self.add_weight("bias", (self.filters,), self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        fused = _fused(self.activation, self._act)
        y = ag.conv(
            x,
            self.kernel,
            self.bias,
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation_rate,
            groups=self.groups,
            activation=fused,
        )
        return y if fused is not None else _apply_activation(self._act, y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }


class Conv1D(_Conv):
    """1-D convolution over ``(N, L, C)``; kernel ``(k, C_in // groups, filters)``."""

    rank, layout = 1, "(N, L, C)"


class Conv2D(_Conv):
    """2-D convolution over ``(N, H, W, C)``; kernel ``(kh, kw, C_in // groups, filters)``.

    ``padding="same"`` follows Keras (``ceil(n / stride)`` outputs, odd pixel at the end).
    """

    rank, layout = 2, "(N, H, W, C)"


class Conv3D(_Conv):
    """3-D convolution over ``(N, D, H, W, C)``."""

    rank, layout = 3, "(N, D, H, W, C)"


# -- pooling --------------------------------------------------------------------------------
class _Pool(Layer):
    rank = 2
    layout = "(N, H, W, C)"
    kind = "max"

    def __init__(
        self,
        pool_size: int | Sequence[int] = 2,
        strides: int | Sequence[int] | None = None,
        padding: str = "valid",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        self.pool_size = _ints(where, "pool_size", pool_size, self.rank)
        self.strides = (
            self.pool_size if strides is None else _ints(where, "strides", strides, self.rank)
        )
        self.padding = _padding(where, padding)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        pool = ag.max_pool if self.kind == "max" else ag.avg_pool
        return pool(x, self.pool_size, strides=self.strides, padding=self.padding)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }


class MaxPooling1D(_Pool):
    rank, layout, kind = 1, "(N, L, C)", "max"


class MaxPooling2D(_Pool):
    rank, layout, kind = 2, "(N, H, W, C)", "max"


class MaxPooling3D(_Pool):
    rank, layout, kind = 3, "(N, D, H, W, C)", "max"


class AveragePooling1D(_Pool):
    """Average pooling; with ``padding="same"`` padded positions are not counted (as Keras)."""

    rank, layout, kind = 1, "(N, L, C)", "avg"


class AveragePooling2D(_Pool):
    """Average pooling; with ``padding="same"`` padded positions are not counted (as Keras)."""

    rank, layout, kind = 2, "(N, H, W, C)", "avg"


class AveragePooling3D(_Pool):
    """Average pooling; with ``padding="same"`` padded positions are not counted (as Keras)."""

    rank, layout, kind = 3, "(N, D, H, W, C)", "avg"


class _GlobalPool(Layer):
    rank = 2
    layout = "(N, H, W, C)"
    kind = "avg"

    def __init__(self, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        y = (ag.global_avg_pool if self.kind == "avg" else ag.global_max_pool)(x)
        if self.keepdims:
            y = y.reshape(x.shape[0], *([1] * self.rank), x.shape[-1])
        return y

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPool):
    rank, layout, kind = 1, "(N, L, C)", "avg"


class GlobalAveragePooling2D(_GlobalPool):
    rank, layout, kind = 2, "(N, H, W, C)", "avg"


class GlobalAveragePooling3D(_GlobalPool):
    rank, layout, kind = 3, "(N, D, H, W, C)", "avg"


class GlobalMaxPooling1D(_GlobalPool):
    rank, layout, kind = 1, "(N, L, C)", "max"


class GlobalMaxPooling2D(_GlobalPool):
    rank, layout, kind = 2, "(N, H, W, C)", "max"


class GlobalMaxPooling3D(_GlobalPool):
    rank, layout, kind = 3, "(N, D, H, W, C)", "max"


# -- normalisation and regularisation ------------------------------------------------------------
class BatchNormalization(Layer):
    """Batch normalisation over the channel (last) axis.

    In training (``fit``, or a call with ``training=True``) it normalises with
    the batch statistics and updates ``moving_mean`` / ``moving_variance`` as
    ``moving = momentum * moving + (1 - momentum) * batch`` (biased batch
    variance, as Keras 3); otherwise, and always when ``trainable`` is False
    (as in Keras), it uses the moving statistics. Only ``axis=-1`` (the
    channels-last axis) is supported.
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"BatchNormalization({self.name!r})"
        self.axis = _int(where, "axis", axis, minimum=-(2**31))
        self.momentum = _float(where, "momentum", momentum)
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"{where}: momentum must be in [0, 1], got {momentum!r}")
        self.epsilon = _float(where, "epsilon", epsilon)
        if not self.epsilon > 0:
            raise ValueError(f"{where}: epsilon must be positive, got {epsilon!r}")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        ndim = len(input_shape)
        if ndim < 2 or self.axis not in (-1, ndim - 1):
            raise ValueError(
                f"{self._where()}: axis must be the last (channels) axis, -1 or {ndim - 1}, "
                f"got {self.axis} for inputs of shape {input_shape}"
            )
        c = (input_shape[-1],)
        self.gamma = self.add_weight("gamma", c, self.gamma_initializer) if self.scale else None
        self.beta = self.add_weight("beta", c, self.beta_initializer) if self.center else None
        self.moving_mean = self.add_weight(
            "moving_mean", c, self.moving_mean_initializer, trainable=False
        )
        self.moving_variance = self.add_weight(
            "moving_variance", c, self.moving_variance_initializer, trainable=False
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        c = x.shape[-1]
        if c != self.moving_mean.shape[0]:
            raise ValueError(
                f"{self._where()}: expected {self.moving_mean.shape[0]} channels, got shape "
                f"{x.shape}"
            )
        gamma = self.gamma if self.gamma is not None else Tensor(np.ones(c, self.dtype))
        beta = self.beta if self.beta is not None else Tensor(np.zeros(c, self.dtype))
        if training and self.trainable:
            y, mean, var = ag.batch_norm(x, gamma, beta, epsilon=self.epsilon)
            m = self.dtype.type(self.momentum)
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
                moving.data *= m
                moving.data += (1 - m) * batch.astype(self.dtype, copy=False)
            return y
        inv = 1 / np.sqrt(self.moving_variance.data + self.dtype.type(self.epsilon))
        factor = gamma * inv
        return x * factor + (beta - factor * self.moving_mean.data)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
        }


class Dropout(Layer):
    """Inverted dropout in training; the identity in inference.

    The mask generator comes from ``seed`` when given, else from the model's
    seed; its state is saved with the model, so training resumed from a saved
    model draws the same masks as the original would have.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Dropout({self.name!r})"
        self.rate = _float(where, "rate", rate)
        if not 0 <= self.rate < 1:
            raise ValueError(f"{where}: rate must be in [0, 1), got {rate!r}")
        self.seed = None if seed is None else _int(where, "seed", seed, 0)
        self._generator: np.random.Generator | None = None

    @property
    def generator(self) -> np.random.Generator:
        if self._generator is None:
            self._generator = (
                np.random.default_rng(self.seed) if self.seed is not None else self._rng(1)
            )
        return self._generator

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if not training or self.rate == 0:
            return x
        return ag.dropout(x, self.rate, self.generator)

    def get_state(self) -> dict[str, Any]:
        return {"generator": self.generator.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.bit_generator.state = state["generator"]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


# -- shapes ------------------------------------------------------------------------------------
class Flatten(Layer):
    """``(N, ...) -> (N, prod(...))``."""

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.ndim < 2:
            raise ValueError(f"{self._where()}: expected input of rank >= 2, got {x.shape}")
        return x.reshape(x.shape[0], -1)


class Reshape(Layer):
    """Reshape every sample to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Reshape({self.name!r})"
        if isinstance(target_shape, (str, bytes)) or not hasattr(target_shape, "__len__"):
            raise TypeError(f"{where}: target_shape must be a tuple of ints, got {target_shape!r}")
        dims = tuple(_int(where, "target_shape", d, -1) for d in target_shape)
        if 0 in dims or dims.count(-1) > 1:
            raise ValueError(
                f"{where}: target_shape must hold positive ints and at most one -1, got {dims}"
            )
        self.target_shape = dims

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        per_sample = math.prod(x.shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 in self.target_shape and per_sample % known) or (
            -1 not in self.target_shape and known != per_sample
        ):
            raise ValueError(
                f"{self._where()}: cannot reshape samples of shape {x.shape[1:]} to "
                f"{self.target_shape}"
            )
        return x.reshape(x.shape[0], *self.target_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class ZeroPadding2D(Layer):
    """Zero rows and columns around ``(N, H, W, C)`` images.

    ``padding``: an int (all sides), ``(rows, cols)`` (symmetric) or
    ``((top, bottom), (left, right))``.
    """

    def __init__(self, padding: Any = (1, 1), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"ZeroPadding2D({self.name!r})"
        text = f"{where}: padding must be an int, (rows, cols) or ((top, bottom), (left, right))"
        if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            pairs = ((padding, padding), (padding, padding))
        elif isinstance(padding, (list, tuple)) and len(padding) == 2:
            if all(isinstance(p, (list, tuple)) for p in padding):
                pairs = tuple(tuple(p) for p in padding)
                if any(len(p) != 2 for p in pairs):
                    raise ValueError(f"{text}, got {padding!r}")
            else:
                pairs = tuple((p, p) for p in padding)
        else:
            raise ValueError(f"{text}, got {padding!r}")
        self.padding = tuple(tuple(_int(where, "padding", v, 0) for v in p) for p in pairs)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, 4, "(N, H, W, C)")
        return ag.pad(x, ((0, 0), *self.padding, (0, 0)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


# -- activations --------------------------------------------------------------------------------
class Activation(Layer):
    """An activation by name: relu, tanh, sigmoid, softmax, linear, leaky_relu."""

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation, self._act = _activation(f"Activation({self.name!r})", activation)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return self._act(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


class ReLU(Layer):
    """Keras's ReLU: ``x`` above ``threshold`` (capped at ``max_value``), else
    ``negative_slope * (x - threshold)``."""

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"ReLU({self.name!r})"
        self.max_value = None if max_value is None else _float(where, "max_value", max_value)
        if self.max_value is not None and self.max_value < 0:
            raise ValueError(f"{where}: max_value must be >= 0, got {max_value!r}")
        self.negative_slope = _float(where, "negative_slope", negative_slope)
        if self.negative_slope < 0:
            raise ValueError(f"{where}: negative_slope must be >= 0, got {negative_slope!r}")
        self.threshold = _float(where, "threshold", threshold)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if self.negative_slope == 0 and self.threshold == 0:
            y = ag.relu(x)
        else:
            y = ag.where(x.data > self.threshold, x, (x - self.threshold) * self.negative_slope)
        if self.max_value is not None:
            y = ag.minimum(y, self.max_value)
        return y

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }


class LeakyReLU(Layer):
    """``x`` where positive, ``negative_slope * x`` elsewhere (Keras's default 0.3)."""

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.negative_slope = _float(f"LeakyReLU({self.name!r})", "negative_slope", negative_slope)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return ag.leaky_relu(x, self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class Softmax(Layer):
    """Softmax along ``axis``."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = _int(f"Softmax({self.name!r})", "axis", axis, minimum=-(2**31))

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"{self._where()}: axis {self.axis} out of range for {x.shape}")
        return ag.softmax(x, axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


# -- serialisation --------------------------------------------------------------------------------
_CLASSES: dict[str, type[Layer]] = {
    c.__name__: c
    for c in (
        InputLayer,
        Dense,
        Conv1D,
        Conv2D,
        Conv3D,
        MaxPooling1D,
        MaxPooling2D,
        MaxPooling3D,
        AveragePooling1D,
        AveragePooling2D,
        AveragePooling3D,
        GlobalAveragePooling1D,
        GlobalAveragePooling2D,
        GlobalAveragePooling3D,
        GlobalMaxPooling1D,
        GlobalMaxPooling2D,
        GlobalMaxPooling3D,
        BatchNormalization,
        Dropout,
        Flatten,
        Reshape,
        ZeroPadding2D,
        Activation,
        ReLU,
        LeakyReLU,
        Softmax,
    )
}


def serialize(layer: Layer) -> dict[str, Any]:
    """``{"class_name", "config"}`` of a layer (or model)."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config: Any, custom_objects: dict[str, Any] | None = None) -> Layer:
    """Build a layer from :func:`serialize`'s output.

    Only the classes of this module, :class:`cnnkit.Sequential` and the classes
    named in ``custom_objects`` are instantiated: a configuration never runs
    code of its own.
    """
    from . import models

    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(
            f"layers.deserialize(): expected {{'class_name', 'config'}}, got {config!r}"
        )
    name = config["class_name"]
    custom = custom_objects or {}
    cls = custom.get(name) or _CLASSES.get(name) or {"Sequential": models.Sequential}.get(name)
    if cls is None:
        raise ValueError(
            f"layers.deserialize(): unknown layer class {name!r}; pass it in custom_objects"
        )
    kwargs = dict(config.get("config") or {})
    if name == "Sequential" or (isinstance(cls, type) and issubclass(cls, models.Model)):
        return cls.from_config(kwargs, custom_objects=custom_objects)
    try:
        return cls.from_config(kwargs)
    except TypeError as exc:
        raise ValueError(f"layers.deserialize(): bad configuration for {name}: {exc}") from None
