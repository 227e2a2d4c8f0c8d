"""The base class of layers, :class:`Layer`, their weights (:class:`Variable`) and names.

Weights are drawn from the layer's random generator: inside a model it is
derived from the model's ``seed`` and the layer's position, so the same seed
gives the same weights. A layer used on its own draws fresh entropy unless its
initializers have their own ``seed``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _random, _validate, constraints, initializers, regularizers
from ..autograd import Tensor
from ..saving import registry
from ..saving.registry import snake_case
from .symbolic import is_symbolic, symbolic_call

__all__ = ["Layer", "Variable", "reset_names"]

_name_counts: dict[str, int] = {}

# Set by cnnkit.saving while it rebuilds a saved model: add_weight calls it instead of the
# initializer, with the weight's full name, shape and the layer's dtype, and it returns the
# file's array after checking both, so a loaded architecture never allocates (or draws) a
# weight the file does not hold.
weight_source: contextvars.ContextVar[
    Callable[[str, tuple[int, ...], np.dtype], np.ndarray] | None
] = contextvars.ContextVar("cnnkit_weight_source", default=None)

# Also set by cnnkit.saving while it rebuilds a saved model: every layer then runs on an empty
# batch, since building needs only shapes, so the building pass allocates no activations
# however large the input shape a file declares.
shapes_only: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cnnkit_shapes_only", default=False
)


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
        activity_regularizer: Any = None,
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
        self.name = name or _unique_name(snake_case(type(self).__name__))
        self.dtype = dt
        self._trainable = bool(trainable)
        self._weights: list[Variable] = []
        self.built = False
        self._build_shape: tuple[int, ...] | None = None
        self._seed_key: tuple[int, ...] | None = None
        self._output_shape: Any = None
        self._output_sink: dict[str, Any] | None = None
        self.input_shape_arg = (
            None if input_shape is None else _validate.shape(where, "input_shape", input_shape)
        )
        self.activity_regularizer = regularizers.get(
            activity_regularizer, where, "activity_regularizer"
        )
        self._activity_losses: list[Tensor] = []
        # (variable, regularizer) and (variable, constraint) pairs made by add_weight.
        self._weight_regularizers: list[tuple[Variable, Any]] = []
        self._weight_constraints: list[tuple[Variable, Any]] = []

    # -- trainable ----------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._set_trainable(bool(value))

    def _set_trainable(self, value: bool) -> None:
        self._trainable = value
        for v in self._weights:
            v.requires_grad = v.trainable and self._trainable

    # -- weights --------------------------------------------------------------------------
    def _rng(self, stream: int = 0) -> np.random.Generator:
        if self._seed_key is None:
            return _random.generator()
        return np.random.default_rng([*self._seed_key, stream])

    def add_weight(
        self,
        name: str,
        shape: Sequence[int],
        initializer: Any = "glorot_uniform",
        trainable: bool = True,
        regularizer: Any = None,
        constraint: Any = None,
    ) -> Variable:
        """Create a weight from an initializer and the layer's generator.

        ``regularizer`` (a :mod:`cnnkit.regularizers` penalty) adds ``regularizer(weight)``
        to :attr:`losses`; ``constraint`` (a :mod:`cnnkit.constraints` projection) is
        applied to the weight after each optimizer step of ``fit``.
        """
        source = weight_source.get()
        if source is not None:
            data = source(f"{self.name}/{name}", tuple(int(s) for s in shape), self.dtype)
        else:
            rng = getattr(self, "_init_rng", None) or self._rng()
            data = initializers.get(initializer)(tuple(shape), self.dtype, rng)
        var = Variable(data, trainable, f"{self.name}/{name}")
        var.requires_grad = var.trainable and self._trainable
        self._weights.append(var)
        if regularizer is not None:
            self._weight_regularizers.append((var, regularizer))
        if constraint is not None:
            self._weight_constraints.append((var, constraint))
        return var

    # -- regularization penalties and constraints ---------------------------------------------
    def _self_and_sublayers(self) -> list[Layer]:
        out: list[Layer] = []
        todo: list[Layer] = [self]
        while todo:
            layer = todo.pop()
            if any(layer is seen for seen in out):
                continue
            out.append(layer)
            todo.extend(reversed(layer.__dict__.get("_layers", [])))
        return out

    @property
    def losses(self) -> list[Tensor]:
        """Regularization penalties of this layer and the layers inside it, as scalar
        tensors: penalties of the trainable weights computed from their current values,
        activity penalties from the last call. ``fit`` adds their sum to the compiled loss,
        as Keras does."""
        out: list[Tensor] = []
        for layer in self._self_and_sublayers():
            # Trainable weights only, as Keras 3: a frozen layer's penalty is a constant.
            out += [
                reg(v)
                for v, reg in layer.__dict__.get("_weight_regularizers", ())
                if v.trainable and layer.trainable
            ]
            out += layer.__dict__.get("_activity_losses", [])
        return out

    def _apply_constraints(self) -> None:
        """Project every constrained weight (this layer's and its sublayers') in place."""
        for layer in self._self_and_sublayers():
            for v, constraint in layer.__dict__.get("_weight_constraints", ()):
                v.data[...] = constraint(v.data)

    def _clear_weights(self) -> None:
        """Forget the weights, with their penalties and constraints, before building again."""
        self._weights = []
        self._weight_regularizers = []
        self._weight_constraints = []

    def _draws_fresh_weights(self) -> bool:
        """Whether building now would draw weights from fresh entropy (no model's seed, no
        file being loaded)."""
        return not self.built and self._seed_key is None and weight_source.get() is None

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
                owner = (v.name or "").split("/")[0]  # weights are named "<layer>/<weight>"
                raise ValueError(
                    f"set_weights(): layer {owner!r} weight {v.name!r} has shape "
                    f"{v.shape}, got {a.shape}"
                )
        for v, a in zip(own, arrays):
            v.data[...] = a
        self.__dict__.pop("_unseeded_build", None)  # chosen weights: a model keeps them

    def count_params(self) -> int:
        """The number of weight values (trainable or not) of the layer or model."""
        if not self.built:
            raise ValueError(
                f"count_params(): {self._kind} {self.name!r} is not built yet (call it on data "
                "or give the model an input shape)"
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
        if isinstance(x, Layer) or x is None:
            what = "None" if x is None else f"{type(x).__name__} {x.name!r}, a layer"
            raise TypeError(
                f"{self._where()}: input must be a tensor or array, got {what}; in a functional "
                "model call each layer on the output of another, starting from layers.Input(...)"
            )
        try:
            return Tensor(np.asarray(x, dtype=self.dtype))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{self._where()}: input must be numeric array-like ({exc})") from None

    # Merging layers take a list of inputs: each is cast, and build receives the list of shapes.
    _list_input = False

    def __call__(self, x: Any, training: bool | None = None) -> Any:
        if is_symbolic(x):  # the functional API: record a node instead of computing
            return symbolic_call(self, x, training)
        if self._list_input:
            x = self._cast_list(x)
        else:
            if shapes_only.get() and isinstance(x, (Tensor, np.ndarray)) and x.ndim:
                x = (x.data if isinstance(x, Tensor) else x)[:0]
            x = self._cast(x)
        if not self.built:
            self._init_rng = self._rng()
            try:
                self.build([tuple(t.shape) for t in x] if self._list_input else tuple(x.shape))
            finally:
                del self._init_rng
            self.built = True
            self._build_shape = tuple(x[0].shape[1:] if self._list_input else x.shape[1:])
        out = self.call(x, training=bool(training))
        if self.activity_regularizer is not None:
            self._activity_losses = [self.activity_regularizer(out)]
        self._output_shape = (
            [(None, *o.shape[1:]) for o in out]  # a layer of several outputs (Split)
            if isinstance(out, (list, tuple))
            else (None, *out.shape[1:])
        )
        if self._output_sink is not None:
            self._output_sink[self.name] = out
        return out

    def _cast_list(self, x: Any) -> list[Tensor]:
        if not isinstance(x, (list, tuple)):
            raise TypeError(
                f"{self._where()}: input must be a list of tensors, got {type(x).__name__}"
            )
        out = [self._cast(t) for t in x]
        if shapes_only.get():
            out = [Tensor(t.data[:0]) if t.ndim else t for t in out]
        return out

    def build(self, input_shape: Any) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included)."""

    def call(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def _inference_step(self) -> Callable[[Any], np.ndarray | None] | None:
        """A shortcut for inference plans (:meth:`cnnkit.models.functional.Functional.call`
        without a gradient tape): a function of the input array (a list of arrays for a
        merging layer) that returns what ``call`` would return, as an array with the same
        bits, or None for an input it leaves to ``call``. None (here) when the layer has
        none. Only used for layers whose ``call`` is the one of the class defining it."""
        return None

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

    @property
    def output(self) -> Any:
        """The symbolic output of the layer's one call on symbolic tensors, as Keras's
        ``layer.output``: ``Model(model.inputs, model.get_layer("conv").output)`` extracts
        features from a functional model."""
        nodes = self.__dict__.get("_nodes", [])
        if len(nodes) != 1:
            raise ValueError(
                f"{self._where()}: output needs exactly one call on symbolic tensors, the "
                f"layer has {len(nodes)}; use the tensor that each call returned"
            )
        return nodes[0].outputs

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
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = option_config(
                self, "activity_regularizer", self.activity_regularizer
            )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def data_format(where: str, value: Any) -> str:
    """Check a Keras ``data_format`` argument: cnnkit's layers are channels-last only."""
    if value is None or value == "channels_last":
        return "channels_last"
    if value == "channels_first":
        raise ValueError(
            f"{where}: data_format must be 'channels_last' (cnnkit's layers are channels-last "
            "only), got 'channels_first'; transpose the inputs instead, e.g. "
            "np.moveaxis(x, 1, -1) turns (N, C, H, W) into (N, H, W, C)"
        )
    raise ValueError(f"{where}: data_format must be 'channels_last', got {value!r}")


def option_config(layer: Layer, arg: str, value: Any) -> Any:
    """A regularizer or constraint in a configuration: its ``{"class_name", "config"}``, or
    the registered name of a plain function; None stays None."""
    if value is None:
        return None
    if isinstance(value, (regularizers.Regularizer, constraints.Constraint)):
        return registry.serialize(value, f"{layer._where()}: {arg}")
    name = registry.get_registered_name(value)
    if name is None:
        raise ValueError(
            f"{layer._where()}: {arg} {value!r} cannot be saved: it is neither a cnnkit "
            "regularizer/constraint nor a function registered with "
            "cnnkit.saving.register_serializable()"
        )
    return name


def set_weight_options(layer: Layer, where: str, **options: Any) -> None:
    """Resolve ``*_regularizer`` / ``*_constraint`` arguments and set them as attributes."""
    for arg, value in options.items():
        module: Any = regularizers if arg.endswith("_regularizer") else constraints
        setattr(layer, arg, module.get(value, where, arg))


def add_bias(layer: Any, size: int) -> Any:
    """The bias weight of a layer with Keras's ``use_bias`` and ``bias_*`` options, or None."""
    if not layer.use_bias:
        return None
    return layer.add_weight(
        "bias",
        (size,),
        layer.bias_initializer,
        regularizer=layer.bias_regularizer,
        constraint=layer.bias_constraint,
    )


def weight_options_config(layer: Layer, *args: str) -> dict[str, Any]:
    return {arg: option_config(layer, arg, getattr(layer, arg)) for arg in args}
