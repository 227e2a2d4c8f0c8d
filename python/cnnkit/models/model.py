"""The :class:`Model` class: a layer that holds layers, and trains.

A model is a layer: it can be called on a :class:`~cnnkit.autograd.Tensor`
(gradients flow through it, and a model applied to several inputs, as in a
Siamese network, accumulates the gradients of every application), used inside
a bigger model, frozen with ``trainable = False``. It trains with
``compile`` / ``fit`` / ``evaluate`` / ``predict`` (from
:class:`cnnkit.training.Trainer`, where the loops and their differences from Keras
are described) and is saved with ``save`` / :func:`cnnkit.load_model` (see
:mod:`cnnkit.saving`).

``Model(inputs, outputs)`` on symbolic tensors from :func:`cnnkit.layers.Input` builds a
functional model (:class:`cnnkit.models.functional.Functional`); otherwise subclass
:class:`Model` and define ``call``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from .. import _nest, _random, _validate
from .. import autograd as ag
from ..autograd import Tensor
from ..layers import Layer
from ..layers.symbolic import is_symbolic, symbolic_call
from ..training.trainer import NonFiniteLossError, Trainer
from .memory import reusing_memory

__all__ = ["Model", "NonFiniteLossError"]


def _shape_spec(value: Any) -> Any:
    """The per-sample shapes of a structure of tensors (JSON-friendly)."""
    if isinstance(value, dict):
        return {k: _shape_spec(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shape_spec(v) for v in value]
    return list(value.shape[1:])


def _zeros_for(spec: Any, dtype: np.dtype) -> Any:
    if isinstance(spec, dict):
        return {k: _zeros_for(v, dtype) for k, v in spec.items()}
    if spec and isinstance(spec[0], (list, dict)):
        return [_zeros_for(v, dtype) for v in spec]
    return np.zeros((1, *spec), dtype)


# Attributes that hold layers the model must not count as its own (Sequential's Input).
_UNTRACKED = frozenset({"optimizer", "history", "_input_layer", "_layers", "_output_sink"})


def _basic(value: Any) -> bool:
    """Whether a constructor argument can go into a JSON config as it is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_basic(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _basic(v) for k, v in value.items())
    return False


def _capture_init_args(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The arguments of a user subclass's ``__init__`` by name, when all are basic types
    (Keras 3's auto-config); None for cnnkit's own classes or anything else."""
    if cls.__module__.split(".")[0] == "cnnkit":
        return None
    try:
        signature = inspect.signature(cls.__init__)  # type: ignore[misc]
        bound = signature.bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return None
    captured: dict[str, Any] = {}
    params = signature.parameters
    for i, (key, value) in enumerate(bound.arguments.items()):
        if i == 0:
            continue  # self
        kind = params[key].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None
        elif kind is inspect.Parameter.VAR_KEYWORD:
            captured.update(value)
        else:
            captured[key] = value
    return captured if _basic(captured) else None


# -- Model -------------------------------------------------------------------------------------
class Model(Trainer, Layer):
    """Base class of models; subclass it and define ``call(self, x, training=False)``, or
    call it as ``Model(inputs, outputs)`` on symbolic tensors from
    :func:`cnnkit.layers.Input` for a functional model (:mod:`cnnkit.models.functional`).

    Layers assigned as attributes (or in lists or tuples), private ones included, are
    tracked in assignment order: they make up ``layers``, ``weights`` and ``summary()``.

    Parameters
    ----------
    name : str, optional
    seed : int, optional
        Seeds every random thing of the model: the initial weights (each layer
        draws from a generator derived from the seed and its position), dropout
        masks, shuffling and the validation split. None draws a seed once.
    trainable : bool, default True
        False freezes every layer of the model.
    dtype : {"float32", "float64"}, optional
        float32 by default; when given, layers added without a dtype of their own
        take it (``Sequential(..., dtype="float64")`` for gradient checks).
    """

    _kind = "model"
    _layers: list[Layer]  # tracked in assignment order (set up before Layer.__init__ runs)
    _auto_config: Any = None

    # The class Model(inputs, outputs) makes: set by cnnkit.models.functional, which the
    # cnnkit.models package imports (so it is set before any Model can be reached).
    _functional_class: type | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Model(inputs, outputs) is the functional API, as keras.Model(inputs, outputs).
        functional = Model._functional_class
        if cls is Model and functional and (args or "inputs" in kwargs or "outputs" in kwargs):
            return object.__new__(functional)
        # As Keras 3: a subclass's constructor arguments of basic types are recorded, so
        # that get_config (when not overridden) can rebuild it: MyModel(num_classes=5).
        obj = object.__new__(cls)
        obj.__dict__["_auto_config"] = _capture_init_args(cls, args, kwargs)
        return obj

    def __init__(
        self,
        *,
        name: str | None = None,
        seed: int | None = None,
        trainable: bool = True,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        self.__dict__.setdefault("_layers", [])
        super().__init__(name=name, trainable=trainable, dtype=dtype, **kwargs)
        where = f"{type(self).__name__}()"
        if seed is None:
            seed = _random.draw_seed()
        self.seed: int = _validate.seed(where, "seed", seed)
        self._seed_key = (self.seed,)
        self._init_trainer()
        try:
            self._call_takes_training = "training" in inspect.signature(self.call).parameters
        except (TypeError, ValueError):
            self._call_takes_training = False
        for i, layer in enumerate(self._layers):
            _assign_seed(layer, (*self._seed_key, i))

    # -- layer tracking ------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("__") and name not in _UNTRACKED:
            found = (
                [value]
                if isinstance(value, Layer)
                else [v for v in value if isinstance(v, Layer)]
                if isinstance(value, (list, tuple))
                else []
            )
            for layer in found:
                self._track(layer)
        object.__setattr__(self, name, value)

    def _track(self, layer: Layer) -> None:
        own = self.__dict__.setdefault("_layers", [])
        if layer is self or any(layer is existing for existing in own):
            return
        if any(layer.name == existing.name for existing in own):
            raise ValueError(
                f"{type(self).__name__} {getattr(self, 'name', '')!r}: a layer named "
                f"{layer.name!r} is already in the model; layer names must be unique"
            )
        own.append(layer)
        if self.__dict__.get("_dtype_given") and not layer.built:
            _inherit_dtype(layer, self.dtype)
        if not self.__dict__.get("_trainable", True):
            layer.trainable = False  # a frozen model freezes what is added to it
        if "_seed_key" in self.__dict__ and self._seed_key is not None:
            _assign_seed(layer, (*self._seed_key, len(own) - 1))

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name (searching nested models too) or by index in ``layers``."""
        if index is not None:
            if not isinstance(index, int) or not -len(self._layers) <= index < len(self._layers):
                raise ValueError(
                    f"get_layer(): index must be in [0, {len(self._layers)}), got {index!r}"
                )
            return self._layers[index]
        for layer in _all_layers(self):
            if layer.name == name:
                return layer
        raise ValueError(
            f"get_layer(): no layer named {name!r}; layers: {[x.name for x in self._layers]}"
        )

    def _set_trainable(self, value: bool) -> None:
        # As Keras 3: freezing a model freezes every layer in it.
        super()._set_trainable(value)
        for layer in self.__dict__.get("_layers", []):
            layer.trainable = value

    @property
    def weights(self) -> list[Any]:
        seen: set[int] = set()
        out = []
        for v in [*self._weights, *(w for layer in self._layers for w in layer.weights)]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def trainable_weights(self) -> list[Any]:
        if not self.trainable:
            return []
        return [v for v in self.weights if v.requires_grad]

    @property
    def non_trainable_weights(self) -> list[Any]:
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    def get_state(self) -> dict[str, Any]:
        return {layer.name: layer.get_state() for layer in _all_layers(self) if layer.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        for layer in _all_layers(self):
            if layer.name in state:
                layer.set_state(state[layer.name])

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, x: Any, training: bool | None = None) -> Any:
        if is_symbolic(x):  # a model used as a layer of a functional model
            return symbolic_call(self, x, training)
        x = _nest.map_structure(lambda a: a if isinstance(a, Tensor) else Tensor(np.asarray(a)), x)
        if ag.is_grad_enabled():
            out = self._call_with(x, training)
        else:  # inference: activations in blocks kept mapped across calls (see .memory)
            with reusing_memory():
                out = self._call_with(x, training)
        if not self.built:
            self.built = True
        self._build_shape = _shape_spec(x)
        self._output_shape = _nest.map_structure(lambda t: (None, *t.shape[1:]), out)
        if self._output_sink is not None:
            self._output_sink[self.name] = out
        return out

    def _call_with(self, x: Any, training: bool | None) -> Any:
        return self.call(x, training=bool(training)) if self._call_takes_training else self.call(x)

    def call(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}: subclasses of Model define call(self, x, training=False)"
        )

    def build(self, input_shape: Any) -> None:
        """Create the weights by calling the model on zeros of ``input_shape``: one shape
        (with or without the batch axis: a leading None is dropped) or, for several
        inputs, a list or dict of per-sample shapes (as :meth:`save` records them)."""
        if isinstance(input_shape, dict) or (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple, dict))
        ):
            zeros = _zeros_for(input_shape, self.dtype)
        else:
            shape = [int(s) for s in input_shape if s is not None]
            zeros = np.zeros((1, *shape), self.dtype)
        with ag.no_grad():
            self(zeros)

    def activations(
        self, x: Any, names: Sequence[str], training: bool = False
    ) -> dict[str, Tensor]:
        """Outputs of the named layers (nested models included) from one forward pass.

        Gradients flow through the returned tensors when ``x`` requires them (as in
        style transfer or unit visualisation); a layer applied several times
        reports its last output.

        Examples
        --------
        >>> feats = model.activations(image, ["conv2d", "conv2d_1"])
        >>> feats["conv2d"].shape
        """
        if isinstance(names, str):
            names = [names]
        targets = [self.get_layer(n) for n in names]
        record: dict[str, Tensor] = {}
        for layer in targets:
            layer._output_sink = record
        try:
            self(x, training=training)
        finally:
            for layer in targets:
                layer._output_sink = None
        return {n: record[n] for n in names}

    def _check_input(self, where: str, x: Any) -> None:
        expected = getattr(self, "_input_shape", None)
        if expected is None or not isinstance(x, np.ndarray):
            return
        if tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(
                f"{where}: x must have shape (batch, {', '.join(map(str, expected))}) for "
                f"model {self.name!r}, got {x.shape}"
            )

    def _statistics(self) -> list[Any]:
        """Non-trainable variables of trainable layers: those a training forward pass may
        update (BatchNormalization's moving averages); frozen weights are left out."""
        owners = [self, *_all_layers(self)]
        return [v for layer in owners if layer.trainable for v in layer._weights if not v.trainable]

    # -- summary -------------------------------------------------------------------------------
    def summary(
        self,
        line_length: int | None = None,
        print_fn: Callable[[str], Any] | None = None,
        expand_nested: bool = False,
        show_trainable: bool = False,
    ) -> None:
        """Print the Keras 3 table: ``Layer (type) | Output Shape | Param #`` in a box,
        then the total, trainable, non-trainable (and optimizer) counts with their sizes.

        Moving statistics (BatchNormalization) and frozen weights count as
        non-trainable. ``expand_nested`` lists the layers of nested models under them;
        ``show_trainable`` adds a Trainable (Y/N) column. ``line_length`` defaults to 88.
        """
        from .summary import print_summary

        print_summary(self, line_length, print_fn, expand_nested, show_trainable)

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: Any, include_optimizer: bool = True) -> None:
        """Save architecture, weights, optimizer state and compile settings (:mod:`cnnkit.io`)."""
        from ..saving import model_files as io

        io.save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path: Any) -> None:
        """Save the weights alone (a zip file; see :func:`cnnkit.io.save_weights`)."""
        from ..saving import model_files as io

        io.save_weights(self, path)

    def load_weights(self, path: Any) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save` into this built model."""
        from ..saving import model_files as io

        io.load_weights(self, path)

    def load_optimizer_state(self, path: Any) -> None:
        """Load the optimizer state (slots, step count) of a model file written by
        :meth:`save` into this compiled model's optimizer (resuming training in place,
        as :class:`cnnkit.callbacks.BackupAndRestore` does)."""
        from ..saving import model_files as io

        io.load_optimizer_state(self, path)

    # -- configuration -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The base settings (name, trainable, dtype, seed) and, for a subclass that does
        not override this method, the arguments its constructor was called with when they
        are all of basic types (numbers, strings, None, lists and dicts of them)."""
        config = super().get_config()
        config["seed"] = self.seed
        if self._auto_config is not None:
            config.update(self._auto_config)
        return config

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Model:
        """``cls(**config)``; base settings the constructor does not take (a subclass
        ``__init__`` without ``**kwargs``) are left out and the name is set afterwards."""
        config = dict(config)
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            base = {
                k: config.pop(k)
                for k in ("name", "trainable", "dtype", "seed", "input_shape")
                if k in config and k not in params
            }
            try:
                model = cls(**config)
            except TypeError as exc:
                raise TypeError(
                    f"{cls.__name__}.from_config(): the config does not fit the constructor "
                    f"({exc}); override get_config to return the constructor's arguments"
                ) from None
            if "name" in base:
                model.name = base["name"]
            return model
        try:
            return cls(**config)
        except TypeError as exc:
            raise TypeError(
                f"{cls.__name__}.from_config(): the config does not fit the constructor "
                f"({exc}); override get_config to return the constructor's arguments"
            ) from None


def _assign_seed(layer: Layer, key: tuple[int, ...]) -> None:
    layer._seed_key = key
    for i, sub in enumerate(getattr(layer, "_layers", [])):
        _assign_seed(sub, (*key, i))


def _inherit_dtype(layer: Layer, dtype: np.dtype) -> None:
    """Give an unbuilt layer (and what it holds) the model's dtype unless it has its own."""
    if layer._dtype_given or layer.built:
        return
    layer.dtype = dtype
    for sub in getattr(layer, "_layers", []):
        _inherit_dtype(sub, dtype)


def _all_layers(model: Model) -> list[Layer]:
    out: list[Layer] = []
    for layer in model._layers:
        out.append(layer)
        if isinstance(layer, Model):
            out.extend(_all_layers(layer))
    return out
