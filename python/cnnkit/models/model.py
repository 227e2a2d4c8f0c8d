"""Keras-style models: :class:`Sequential` and subclassed :class:`Model`.

A model is a layer: it can be called on a :class:`~cnnkit.autograd.Tensor`
(gradients flow through it, and a model applied to several inputs, as in a
Siamese network, accumulates the gradients of every application), used inside
a bigger model, frozen with ``trainable = False``. It trains with
``compile`` / ``fit`` / ``evaluate`` / ``predict`` and is saved with
``save`` / :func:`cnnkit.load_model` (see :mod:`cnnkit.io`).

Differences from Keras, on purpose:

* ``validation_split`` holds out a random subset drawn from the model's
  ``seed`` (the same seed and data give the same split), not the last rows.
* Shuffling is seeded too: each epoch's order is drawn from the model's seed
  and the optimizer's step count, so the same seed gives the same training and
  training resumed from a saved model equals training continued in memory.
* A non-finite loss (or gradient) stops ``fit`` with :class:`NonFiniteLossError`
  (a :class:`FloatingPointError`) naming the epoch and batch; the update of
  that batch is not applied, so the weights are those of the last good step.
  With a :class:`cnnkit.callbacks.TerminateOnNaN` callback, training stops
  cleanly instead, with the same weights.
* ``trainable`` may be changed after ``compile``: the change takes effect at
  the next ``fit`` (Keras needs a new ``compile``).
* There is no functional API (``Model(inputs, outputs)``): subclass
  :class:`Model` and define ``call`` for anything that is not a stack.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Any, Callable

import numpy as np

from .. import _validate
from .. import autograd as ag
from .. import layers as layers_module
from ..autograd import Tensor
from ..layers import InputLayer, Layer
from ..saving.registry import register_serializable

__all__ = ["Model", "NonFiniteLossError", "Sequential"]


class NonFiniteLossError(FloatingPointError):
    """The loss (or a gradient) became NaN or infinite during ``fit``.

    Attributes
    ----------
    epoch, batch : int
        0-based indices of the epoch and of the batch in it (as callbacks see them).
    """

    def __init__(self, message: str, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


# -- nested structures of arrays / tensors (one output, a list or a dict) ---------------------
def _map(fn: Callable[[Any], Any], value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _map(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map(fn, v) for v in value)
    return fn(value)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


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


def _named_outputs(out: Any) -> list[tuple[str | None, Any]]:
    """``(name, tensor)`` per output: None for a single output, ``output_i`` or dict keys."""
    if isinstance(out, dict):
        return list(out.items())
    if isinstance(out, (list, tuple)):
        return [(f"output_{i}", o) for i, o in enumerate(out)]
    return [(None, out)]


def _per_output(where: str, arg: str, value: Any, names: list[str | None]) -> list[Any]:
    """Spread a compile argument (one value, a list or a dict) over the outputs."""
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(
                f"{where}: {arg} has keys {sorted(unknown)} that are not outputs {names}"
            )
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)) and len(names) > 1:
        if len(value) != len(names):
            raise ValueError(
                f"{where}: {arg} must have one entry per output ({len(names)}), got {len(value)}"
            )
        return list(value)
    return [value] * len(names)


def _output_targets(where: str, y: Any, names: list[str | None]) -> list[Any]:
    if names == [None]:
        return [y]
    if isinstance(y, dict):
        missing = [n for n in names if n not in y]
        if missing:
            raise ValueError(f"{where}: y has no targets for outputs {missing}")
        return [y[n] for n in names]
    if isinstance(y, (list, tuple)) and len(y) == len(names):
        return list(y)
    raise ValueError(
        f"{where}: the model has {len(names)} outputs {names}; y must be a list of "
        f"{len(names)} arrays or a dict keyed by output"
    )


def _num_samples(where: str, arg: str, value: Any) -> int:
    leaves = _leaves(value)
    counts = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if -1 in counts:
        raise ValueError(f"{where}: {arg} must be arrays with a batch axis, got a scalar")
    if len(counts) != 1:
        raise ValueError(f"{where}: the arrays of {arg} have different lengths {sorted(counts)}")
    return counts.pop()


def _take(value: Any, index: Any) -> Any:
    return _map(lambda a: a[index], value)


# Attributes that hold layers the model must not count as its own (Sequential's Input).
_UNTRACKED = frozenset({"optimizer", "history", "_input_layer", "_layers", "_output_sink"})


class _Mean:
    """A running mean weighted by batch sizes (the epoch's loss)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, value: float, n: int) -> None:
        self.total += value * n
        self.count += n

    def result(self) -> float:
        return self.total / self.count if self.count else float("nan")


# -- Model -------------------------------------------------------------------------------------
class Model(Layer):
    """Base class of models; subclass it and define ``call(self, x, training=False)``.

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
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self.seed = _validate.seed(where, "seed", seed)
        self._seed_key = (self.seed,)
        self.optimizer: Any = None
        self.compiled = False
        self.stop_training = False
        self.history: Any = None
        self._compile_args: dict[str, Any] | None = None
        self._metric_objects: list[list[Any]] | None = None
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

    @Layer.trainable.setter
    def trainable(self, value: bool) -> None:
        # As Keras 3: freezing a model freezes every layer in it.
        Layer.trainable.fset(self, value)
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
    def __call__(self, x: Any, training: bool = False) -> Any:
        x = _map(lambda a: a if isinstance(a, Tensor) else Tensor(np.asarray(a)), x)
        out = self.call(x, training=bool(training)) if self._call_takes_training else self.call(x)
        if not self.built:
            self.built = True
        self._build_shape = _shape_spec(x)
        self._output_shape = _map(lambda t: (None, *t.shape[1:]), out)
        if self._output_sink is not None:
            self._output_sink[self.name] = out
        return out

    def call(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}: subclasses of Model define call(self, x, training=False)"
        )

    def build(self, input_shape: Sequence[int]) -> None:
        """Create the weights by calling the model on zeros of ``input_shape`` (batch included
        or not: a leading None is dropped)."""
        shape = [int(s) for s in input_shape if s is not None]
        with ag.no_grad():
            self(np.zeros((1, *shape), self.dtype))

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

    # -- compile -------------------------------------------------------------------------------
    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        metrics: Any = None,
        loss_weights: Any = None,
    ) -> None:
        """Set the optimizer, the loss(es) and metrics for ``fit`` / ``evaluate``.

        Parameters
        ----------
        optimizer : str, dict or optimizer
            Through :func:`cnnkit.optimizers.get` (``"adam"``, ``"sgd"``, ...).
        loss : str, Loss, callable, or a list / dict of them (one per output)
            Through :func:`cnnkit.losses.get`. One loss for a multi-output model
            applies to every output.
        metrics : list, or a dict output name -> list
            Through :func:`cnnkit.metrics.get`; ``"accuracy"`` resolves as in Keras.
        loss_weights : list or dict of floats, optional
            Multi-output models: the total loss is ``sum(weight * loss)``.
        """
        from .. import losses
        from .. import optimizers as optimizers_module

        where = "compile()"
        if loss is None:
            raise ValueError(f"{where}: loss is required (a name, a Loss or a callable)")
        resolved_loss = _map(lambda v: None if v is None else losses.get(v), loss)
        if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
            raise TypeError(
                f"{where}: metrics must be a list or a dict, got {type(metrics).__name__}"
            )
        if loss_weights is not None:
            for w in _leaves(loss_weights):
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                    raise ValueError(f"{where}: loss_weights must be finite numbers, got {w!r}")
        self.optimizer = optimizers_module.get(optimizer)
        self._compile_args = {
            "optimizer": optimizer,
            "loss": loss,
            "metrics": metrics,
            "loss_weights": loss_weights,
        }
        self._losses = resolved_loss
        self._metrics_arg = metrics
        self._loss_weights = loss_weights
        self._metric_objects = None
        self.compiled = True

    def _setup_outputs(self, where: str, out: Any, targets: Any) -> None:
        """Resolve per-output losses, weights and metric objects on the first batch."""
        from .. import metrics as metrics_module

        names = [n for n, _ in _named_outputs(out)]
        self._output_names = names
        self._output_losses = _per_output(where, "loss", self._losses, names)
        weights = _per_output(where, "loss_weights", self._loss_weights, names)
        self._output_weights = [1.0 if w is None else float(w) for w in weights]
        per_output = _per_output(where, "metrics", self._metrics_arg or [], names)
        tensors = [t for _, t in _named_outputs(out)]
        ys = _output_targets(where, targets, names)
        objects = []
        for name, mlist, loss_fn, y_true, y_pred in zip(
            names, per_output, self._output_losses, ys, tensors
        ):
            built = []
            for identifier in mlist or []:
                m = metrics_module.get(
                    identifier, loss=loss_fn, y_true=np.asarray(y_true), y_pred=y_pred.data
                )
                built.append((m.name if name is None else f"{name}_{m.name}", m))
            objects.append(built)
        self._metric_objects = objects

    def _compute_loss(
        self, where: str, y: Any, out: Any, sample_weight: Any
    ) -> tuple[Tensor, dict[str, float]]:
        if self._metric_objects is None:
            self._setup_outputs(where, out, y)
        names = self._output_names
        tensors = [t for _, t in _named_outputs(out)]
        if len(tensors) != len(names):
            raise ValueError(f"{where}: the model's outputs changed since the first batch")
        ys = _output_targets(where, y, names)
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name, fn, w, y_true, y_pred in zip(
            names, self._output_losses, self._output_weights, ys, tensors
        ):
            if fn is None:
                continue
            y_true = np.asarray(y_true)
            if len(y_true) != y_pred.shape[0]:
                raise ValueError(
                    f"{where}: y has {len(y_true)} samples but the model gave {y_pred.shape[0]}"
                )
            value = (
                fn(y_true, y_pred)
                if sample_weight is None
                else fn(y_true, y_pred, sample_weight=sample_weight)
            )
            if not isinstance(value, Tensor):
                value = Tensor(np.asarray(value))
            if value.size != 1:
                value = value.mean()
            if name is not None:
                parts[f"{name}_loss"] = float(value.data)
            weighted = value if w == 1.0 else value * w
            total = weighted if total is None else total + weighted
        if total is None:
            raise ValueError(f"{where}: no output has a loss")
        return total, parts

    def _update_metrics(self, y: Any, out: Any) -> None:
        ys = _output_targets("metrics", y, self._output_names)
        for objs, y_true, (_, y_pred) in zip(self._metric_objects, ys, _named_outputs(out)):
            for _, m in objs:
                m.update_state(np.asarray(y_true), y_pred.data)

    def _reset_metrics(self) -> None:
        for objs in self._metric_objects or []:
            for _, m in objs:
                m.reset_state()

    def _metric_logs(self) -> dict[str, float]:
        return {
            name: float(np.asarray(m.result()))
            for objs in self._metric_objects or []
            for name, m in objs
        }

    # -- data ----------------------------------------------------------------------------------
    def _as_model_dtype(self, x: Any) -> Any:
        def convert(a: Any) -> Any:
            if isinstance(a, Tensor):
                a = a.data
            a = np.asarray(a)
            if a.dtype.kind in "biuf" and a.dtype != self.dtype:
                return a.astype(self.dtype)
            return a

        return _map(convert, x)

    def _prepare_xy(self, where: str, x: Any, y: Any) -> tuple[Any, Any, int]:
        """``x`` in the model's dtype and ``y`` as arrays, checked; and the sample count."""
        x = self._as_model_dtype(x)
        y = _map(np.asarray, y)
        self._check_input(where, x)
        n, ny = _num_samples(where, "x", x), _num_samples(where, "y", y)
        if n != ny:
            raise ValueError(
                f"{where}: x and y must have the same number of samples, got {n} and {ny}"
            )
        return x, y, n

    def _check_input(self, where: str, x: Any) -> None:
        expected = getattr(self, "_input_shape", None)
        if expected is None or not isinstance(x, np.ndarray):
            return
        if tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(
                f"{where}: x must have shape (batch, {', '.join(map(str, expected))}) for "
                f"model {self.name!r}, got {x.shape}"
            )

    def _array_batches(
        self, x: Any, y: Any, sw: Any, batch_size: int, order: np.ndarray | None
    ) -> Iterable[tuple[Any, Any, Any]]:
        n = _num_samples("fit()", "x", x)
        index = np.arange(n) if order is None else order
        for start in range(0, n, batch_size):
            chunk = index[start : start + batch_size]
            sl = slice(start, start + len(chunk)) if order is None else chunk
            yield (
                _take(x, sl),
                None if y is None else _take(y, sl),
                None if sw is None else sw[sl],
            )

    @staticmethod
    def _loader_batches(where: str, loader: Any) -> Iterable[tuple[Any, Any, Any]]:
        for item in loader:
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise TypeError(
                    f"{where}: a data iterable must yield (x, y) or (x, y, sample_weight) "
                    f"tuples, got {type(item).__name__}"
                )
            yield item[0], item[1], (item[2] if len(item) == 3 else None)

    @staticmethod
    def _is_loader(x: Any, y: Any) -> bool:
        return (
            y is None and not isinstance(x, (np.ndarray, Tensor, dict)) and hasattr(x, "__iter__")
        )

    def _check_batch_size(self, where: str, batch_size: Any) -> int:
        return _validate.integer(where, "batch_size", batch_size, minimum=1)

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise ValueError(
                f"{where}: the model must be compiled first: call compile(optimizer, loss)"
            )

    # -- fit -----------------------------------------------------------------------------------
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int = 32,
        epochs: int = 1,
        verbose: int = 1,
        callbacks: Sequence[Any] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        sample_weight: Any = None,
    ) -> Any:
        """Train for ``epochs - initial_epoch`` epochs; returns the :class:`History`.

        ``x`` and ``y`` are arrays (or lists / dicts of arrays for several inputs
        or outputs), or ``x`` is an iterable of ``(x, y)`` / ``(x, y, sample_weight)``
        batches (a data loader, iterated once per epoch) and ``y`` is None.
        ``validation_split`` holds out a seeded random subset (see the module
        notes); ``validation_data`` is ``(x_val, y_val)`` or a batch iterable.
        Raises :class:`NonFiniteLossError` when the loss becomes NaN or infinite.
        """
        from .. import callbacks as callbacks_module

        where = "fit()"
        self._require_compiled(where)
        batch_size = self._check_batch_size(where, batch_size)
        epochs = _validate.integer(where, "epochs", epochs, minimum=0)
        initial_epoch = _validate.integer(where, "initial_epoch", initial_epoch, minimum=0)
        if verbose not in (0, 1, 2, "auto"):
            raise ValueError(f"{where}: verbose must be 0, 1 or 2, got {verbose!r}")
        verbose = 1 if verbose == "auto" else verbose
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)):
            raise TypeError(f"{where}: validation_split must be a float in [0, 1)")
        if not 0 <= validation_split < 1:
            raise ValueError(f"{where}: validation_split must be in [0, 1), got {validation_split}")

        loader = self._is_loader(x, y)
        val = None
        if loader:
            if validation_split:
                raise ValueError(
                    f"{where}: validation_split needs arrays, not a data iterable; pass "
                    "validation_data"
                )
            if sample_weight is not None:
                raise ValueError(f"{where}: sample_weight goes in the batches of a data iterable")
            n = None
        else:
            if x is None or y is None:
                raise ValueError(f"{where}: x and y are required (or x as a batch iterable)")
            x, y, n = self._prepare_xy(where, x, y)
            if sample_weight is not None:
                sample_weight = np.asarray(sample_weight)
                if sample_weight.shape[:1] != (n,):
                    raise ValueError(
                        f"{where}: sample_weight must have one value per sample ({n}), got "
                        f"shape {sample_weight.shape}"
                    )
            if n == 0:
                raise ValueError(f"{where}: x has no samples")
            if validation_split:
                n_train = int(n * (1 - validation_split))
                if n_train in (0, n):
                    raise ValueError(
                        f"{where}: validation_split={validation_split} leaves "
                        f"{n_train} of {n} samples for training"
                    )
                perm = np.random.default_rng([self.seed, 7]).permutation(n)
                train_idx, val_idx = np.sort(perm[:n_train]), np.sort(perm[n_train:])
                val = (_take(x, val_idx), _take(y, val_idx), None)
                x, y = _take(x, train_idx), _take(y, train_idx)
                if sample_weight is not None:
                    sample_weight = sample_weight[train_idx]
                n = n_train
        if validation_data is not None:
            if validation_split:
                raise ValueError(f"{where}: give validation_split or validation_data, not both")
            val = self._validation(where, validation_data)

        history = callbacks_module.History()
        user = list(callbacks or [])
        cbs = [*user, history]
        if verbose:
            cbs.append(callbacks_module.ProgbarLogger())
        cblist = callbacks_module.CallbackList(cbs)
        if n is not None:
            steps = math.ceil(n / batch_size)
        else:  # a loader that knows its length gives the progress bar its total
            steps = len(x) if hasattr(x, "__len__") else None
        cblist.set_model(self)
        cblist.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
        terminate_on_nan = any(isinstance(c, callbacks_module.TerminateOnNaN) for c in user)

        self.stop_training = False
        self.history = history
        trainable = self.trainable_weights
        self._refresh_optimizer(trainable)
        cblist.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cblist.on_epoch_begin(epoch)
            loss_mean = _Mean()
            part_means: dict[str, _Mean] = {}
            if loader:
                batches = self._loader_batches(where, x)
            else:
                order = None
                if shuffle:
                    step = int(np.asarray(self.optimizer.iterations))
                    order = np.random.default_rng([self.seed, 1, step]).permutation(n)
                batches = self._array_batches(x, y, sample_weight, batch_size, order)
            seen = 0
            nan_stop = False
            for batch, (xb, yb, swb) in enumerate(batches):
                seen += 1
                cblist.on_train_batch_begin(batch)
                if loader:
                    xb = self._as_model_dtype(xb)
                result = self._train_step(
                    where, trainable, xb, yb, swb, epoch, batch, terminate_on_nan
                )
                if result is None:
                    nan_stop = True
                    self.stop_training = True
                    cblist.on_train_batch_end(batch, {"loss": float("nan")})
                    break
                value, parts, count = result
                loss_mean.add(value, count)
                for k, v in parts.items():
                    part_means.setdefault(k, _Mean()).add(v, count)
                logs = {
                    "loss": loss_mean.result(),
                    **{k: m.result() for k, m in part_means.items()},
                    **self._metric_logs(),
                }
                cblist.on_train_batch_end(batch, dict(logs))
                if self.stop_training:
                    break
            if seen == 0:
                raise ValueError(
                    f"{where}: the data gave no batches in epoch {epoch} (a generator is used "
                    "up after one pass: pass a re-iterable loader)"
                )
            if val is not None and not nan_stop:
                val_logs = self._evaluate_batches(
                    "fit(): validation_data",
                    val if isinstance(val, _Loader) else (val[0], val[1], val[2]),
                    batch_size,
                )
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cblist.on_epoch_end(epoch, dict(logs))
            if self.stop_training:
                break
        cblist.on_train_end(dict(logs))
        return history

    def _refresh_optimizer(self, trainable: list[Any]) -> None:
        """A fresh optimizer (same configuration and step count) when layers were unfrozen
        since it was built: an optimizer keeps the variables it first saw."""
        from .. import optimizers

        opt = self.optimizer
        if not getattr(opt, "built", False):
            return
        known = {id(v) for v in opt.variables}
        if all(id(v) in known for v in trainable):
            return
        fresh = optimizers.deserialize(optimizers.serialize(opt))
        fresh.iterations = opt.iterations
        self.optimizer = fresh

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None) -> Any:
        """One optimizer step on one batch; returns the loss, or ``[loss, *metrics]``.

        Metrics are reset first, so they describe this batch alone (as Keras's default).
        Raises :class:`NonFiniteLossError` (epoch and batch 0) on a non-finite loss.
        """
        where = "train_on_batch()"
        self._require_compiled(where)
        x, y, _ = self._prepare_xy(where, x, y)
        trainable = self.trainable_weights
        self._refresh_optimizer(trainable)
        self._reset_metrics()
        value, parts, _ = self._train_step(where, trainable, x, y, sample_weight, 0, 0, False)
        values = [value, *parts.values(), *self._metric_logs().values()]
        return values[0] if len(values) == 1 else values

    def _statistics(self) -> list[Any]:
        """Non-trainable variables of trainable layers: those a training forward pass may
        update (BatchNormalization's moving averages); frozen weights are left out."""
        owners = [self, *_all_layers(self)]
        return [v for layer in owners if layer.trainable for v in layer._weights if not v.trainable]

    def _validation(self, where: str, data: Any) -> Any:
        if isinstance(data, tuple) and len(data) in (2, 3):
            xv = self._as_model_dtype(data[0])
            yv = _map(np.asarray, data[1])
            self._check_input(f"{where}: validation_data", xv)
            if _num_samples(where, "validation_data x", xv) != _num_samples(
                where, "validation_data y", yv
            ):
                raise ValueError(f"{where}: validation_data x and y have different lengths")
            return (xv, yv, None if len(data) == 2 else np.asarray(data[2]))
        if hasattr(data, "__iter__") and not isinstance(data, (np.ndarray, list, dict)):
            return _Loader(data)
        raise TypeError(
            f"{where}: validation_data must be a tuple (x_val, y_val) or a batch iterable, "
            f"got {type(data).__name__}"
        )

    def _train_step(
        self,
        where: str,
        trainable: list[Any],
        xb: Any,
        yb: Any,
        swb: Any,
        epoch: int,
        batch: int,
        terminate_on_nan: bool,
    ) -> tuple[float, dict[str, float], int] | None:
        # Statistics that the forward pass updates (BatchNormalization's moving averages)
        # are restored with the rest when the batch turns out bad.
        saved = [(v, v.data.copy()) for v in self._statistics()]
        for v in trainable:
            v.grad = None
        with ag.enable_grad():
            out = self(xb, training=True)
            total, parts = self._compute_loss(where, yb, out, swb)
        value = float(total.data)
        bad = "loss" if not math.isfinite(value) else None
        if bad is None:
            total.backward()
            # Every trainable variable goes in (None gradients are skipped by the optimizer),
            # so the optimizer's variable order, its state keys, is the model's.
            grads = [(v.grad, v) for v in trainable]
            if not all(np.isfinite(g).all() for g, _ in grads if g is not None):
                bad = "gradient"
        if bad is not None:
            for v, data in saved:
                v.data[...] = data
            for v in trainable:
                v.grad = None
            if terminate_on_nan:
                return None
            raise NonFiniteLossError(
                f"{where}: the {bad} became {value if bad == 'loss' else 'non-finite'} at "
                f"epoch {epoch}, batch {batch} (0-based); this batch's update was not applied, "
                "so the weights are those of the last good step",
                epoch,
                batch,
            )
        self.optimizer.apply_gradients(grads)
        for v in trainable:
            v.grad = None
        with ag.no_grad():
            self._update_metrics(yb, out)
        count = _num_samples(where, "x", xb)
        return value, parts, count

    # -- evaluate / predict --------------------------------------------------------------------
    def _evaluate_batches(self, where: str, data: Any, batch_size: int) -> dict[str, float]:
        if isinstance(data, _Loader):
            batches = self._loader_batches(where, data.iterable)
        else:
            xv, yv, sw = data
            batches = self._array_batches(xv, yv, sw, batch_size, None)
        self._reset_metrics()
        loss_mean = _Mean()
        part_means: dict[str, _Mean] = {}
        with ag.no_grad():
            for xb, yb, swb in batches:
                xb = self._as_model_dtype(xb)
                out = self(xb, training=False)
                total, parts = self._compute_loss(where, yb, out, swb)
                count = _num_samples(where, "x", xb)
                loss_mean.add(float(total.data), count)
                for k, v in parts.items():
                    part_means.setdefault(k, _Mean()).add(v, count)
                self._update_metrics(yb, out)
        if loss_mean.count == 0:
            raise ValueError(f"{where}: the data gave no batches")
        return {
            "loss": loss_mean.result(),
            **{k: m.result() for k, m in part_means.items()},
            **self._metric_logs(),
        }

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int = 32,
        verbose: int = 0,
        sample_weight: Any = None,
        return_dict: bool = False,
    ) -> Any:
        """Loss (and metrics) on data, without changing anything.

        Returns the loss alone when there are no metrics and one output, else
        ``[loss, *others]`` in the order of ``metrics_names`` (as Keras), or a
        dict when ``return_dict``. ``verbose`` prints one line.
        """
        where = "evaluate()"
        self._require_compiled(where)
        batch_size = self._check_batch_size(where, batch_size)
        if self._is_loader(x, y):
            data: Any = _Loader(x)
        else:
            if x is None or y is None:
                raise ValueError(f"{where}: x and y are required (or x as a batch iterable)")
            x, y, _ = self._prepare_xy(where, x, y)
            data = (x, y, None if sample_weight is None else np.asarray(sample_weight))
        logs = self._evaluate_batches(where, data, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    @property
    def metrics_names(self) -> list[str]:
        """``["loss", *output losses, *metrics]`` once the model has trained or evaluated."""
        names = ["loss"]
        if self._metric_objects is not None:
            names += [f"{n}_loss" for n in self._output_names if n is not None]
            names += [name for objs in self._metric_objects for name, _ in objs]
        return names

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> Any:
        """Outputs for ``x`` (arrays, or an iterable of input batches / (x, y) tuples),
        in inference mode, without recording gradients; works without ``compile``."""
        where = "predict()"
        batch_size = self._check_batch_size(where, batch_size)
        outputs = []
        with ag.no_grad():
            if self._is_loader(x, None) and not isinstance(x, (list, tuple)):
                for item in x:
                    xb = item[0] if isinstance(item, (tuple, list)) else item
                    outputs.append(self(self._as_model_dtype(xb), training=False))
            else:
                x = self._as_model_dtype(x)
                self._check_input(where, x)
                n = _num_samples(where, "x", x)
                for start in range(0, n, batch_size):
                    sl = slice(start, start + batch_size)
                    outputs.append(self(_take(x, sl), training=False))
        if not outputs:
            raise ValueError(f"{where}: x has no samples")
        first = outputs[0]
        if isinstance(first, dict):
            return {k: np.concatenate([o[k].data for o in outputs]) for k in first}
        if isinstance(first, (list, tuple)):
            return [np.concatenate([o[i].data for o in outputs]) for i in range(len(first))]
        return np.concatenate([o.data for o in outputs])

    # -- summary -------------------------------------------------------------------------------
    def summary(self, line_length: int = 80, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print ``Layer (type) | Output Shape | Param #`` rows and the parameter totals.

        Moving statistics (BatchNormalization) and frozen weights count as
        non-trainable.
        """
        if not self.built:
            raise ValueError(
                f"summary(): model {self.name!r} is not built yet: give the first layer an "
                "input shape (Input or input_shape=) or call the model on data"
            )
        emit = print_fn or print
        longest = max((len(f" {x.name} ({type(x).__name__})") for x in self._layers), default=0)
        widths = (max(int(line_length * 0.45), longest + 2), int(line_length * 0.33))
        line_length = max(line_length, widths[0] + widths[1] + 10)
        rule, double = "_" * line_length, "=" * line_length

        def row(a: str, b: str, c: str) -> str:
            return f"{a:<{widths[0]}}{b:<{widths[1]}}{c}"

        emit(f'Model: "{self.name}"')
        emit(rule)
        emit(row(" Layer (type)", "Output Shape", "Param #"))
        emit(double)
        for i, layer in enumerate(self._layers):
            shape = layer._output_shape
            text = "?" if shape is None else str(shape)
            params = sum(v.size for v in layer.weights)
            emit(row(f" {layer.name} ({type(layer).__name__})", text, f"{params:,}"))
            if i != len(self._layers) - 1:
                emit("")
        emit(double)
        total = sum(v.size for v in self.weights)
        trainable = sum(v.size for v in self.trainable_weights)
        emit(f"Total params: {total:,}")
        emit(f"Trainable params: {trainable:,}")
        emit(f"Non-trainable params: {total - trainable:,}")
        emit(rule)

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

    # -- configuration -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["seed"] = self.seed
        return config

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Model:
        return cls(**config)


class _Loader:
    """A batch iterable given as validation_data (kept apart from the array triple)."""

    def __init__(self, iterable: Any) -> None:
        self.iterable = iterable


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


# -- Sequential --------------------------------------------------------------------------------
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
        layers: Sequence[Layer] | None = None,
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

    def add(self, layer: Layer) -> None:
        """Append a layer (an Input declares the input shape); builds once the shape is known."""
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
        for layer in self._layers:
            x = layer(x, training=training)
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
