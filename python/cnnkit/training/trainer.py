"""The training loops, apart from the model: ``compile`` / ``fit`` / ``evaluate`` /
``predict`` and the steps they run.

:class:`Trainer` is a mixin of :class:`cnnkit.Model` (as Keras 3 keeps ``trainers/``
apart from ``models/``). The loops call three public, overridable steps, each given one
batch as ``data`` (a tuple ``(x, y, sample_weight)``; unpack it with
:func:`~cnnkit.training.unpack_x_y_sample_weight`):

* ``train_step(data)`` -- forward, loss, backward, optimizer update; returns the logs;
* ``test_step(data)`` -- forward and loss in inference mode; returns the logs;
* ``predict_step(data)`` -- the outputs for ``x``.

A subclass overrides a step to train in its own way (triplet mining, style transfer on
an input image) with the public pieces: ``self(x, training=True)``,
:meth:`Trainer.compute_loss`, :meth:`Trainer.compute_metrics`, ``self.optimizer`` and
``self.trainable_weights``. The loops keep what is common: batching, shuffling,
callbacks, validation, the progress bar, stopping.

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
* Array inputs are checked whole before the first step (numeric dtypes, finite
  targets, targets that fit the built-in losses), so bad data never leaves a
  half-trained model. Batches from an iterable are checked as they come; an error
  in a later batch says that the earlier batches were already applied.

Shared machines: the loops keep NumPy's BLAS to one thread while they run (with
threadpoolctl, when it is installed), so that its idle threads do not spin against
cnnkit's OpenMP threads; cnnkit's kernels do the heavy work.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import _nest, _validate
from .. import autograd as ag
from ..autograd import Tensor
from .data_adapters import (
    ArrayDataAdapter,
    IterableDataAdapter,
    check_class_weight,
    check_targets,
    class_weight_to_sample_weight,
    is_batch_iterable,
    lists_to_arrays,
    num_samples,
    take,
    to_model_dtype,
    unpack_x_y_sample_weight,
)
from .memory import keep_freed_memory

__all__ = ["NonFiniteLossError", "Trainer"]


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


class _Mean:
    """A running mean weighted by batch sizes (the epoch's loss)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, value: float, n: int) -> None:
        self.total += value * n
        self.count += n

    def result(self) -> float:
        return self.total / self.count if self.count else float("nan")


# -- several outputs ---------------------------------------------------------------------------
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


def _outputs_as_arrays(out: Any) -> Any:
    return _nest.map_structure(lambda t: t.data if isinstance(t, Tensor) else np.asarray(t), out)


_BLAS_CONTROLLER: list[Any] = []  # threadpoolctl's controller, made once (it scans libraries)


@contextlib.contextmanager
def _blas_single_thread() -> Iterator[None]:
    """NumPy's BLAS at one thread for the duration (threadpoolctl, if installed).

    OpenBLAS threads spin after each call; on a machine whose cores cnnkit's OpenMP
    threads already use, that spinning halved training throughput. Without threadpoolctl
    nothing changes (the hot path avoids NumPy's BLAS anyway; see autograd's Dense).
    The controller is made once: entering its limit then costs microseconds, so
    ``predict`` called per image pays nothing noticeable.
    """
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS_CONTROLLER.append(None)
        else:
            _BLAS_CONTROLLER.append(ThreadpoolController())
    controller = _BLAS_CONTROLLER[0]
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


class Trainer:
    """The compile/fit/evaluate/predict half of :class:`cnnkit.Model`.

    The methods here use of the model: ``self(x, training=...)``, ``trainable_weights``,
    ``weights`` of its layers (``_statistics``), ``seed``, ``dtype``, ``name``,
    ``stop_training``, ``_check_input(where, x)``.
    """

    # Set by compile(); read by the steps.
    optimizer: Any
    compiled: bool
    stop_training: bool
    history: Any
    _compile_args: dict[str, Any] | None
    _metric_objects: list[list[Any]] | None

    def _init_trainer(self) -> None:
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._compile_args = None
        self._metric_objects = None
        self._loss_trackers: dict[str, _Mean] = {}
        # (where, epoch, batch) of the step being run: messages of the steps name it
        self._step_context: tuple[str, int, int] = ("fit()", 0, 0)

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
        resolved_loss = _nest.map_structure(lambda v: None if v is None else losses.get(v), loss)
        if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
            raise TypeError(
                f"{where}: metrics must be a list or a dict, got {type(metrics).__name__}"
            )
        if loss_weights is not None:
            for w in _nest.flatten(loss_weights):
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

    def get_compile_config(self) -> dict[str, Any] | None:
        """The arguments of the last ``compile`` (None before it), as Keras 3 names it."""
        return None if not self.compiled else self._compile_args

    def _require_compiled(self, where: str) -> None:
        if not self.compiled:
            raise ValueError(
                f"{where}: the model must be compiled first: call compile(optimizer, loss)"
            )

    # -- loss and metrics ----------------------------------------------------------------------
    def _setup_outputs(self, where: str, out: Any, targets: Any) -> None:
        """Resolve per-output losses, weights and metric objects on the first batch."""
        from .. import metrics as metrics_module

        names = [n for n, _ in _named_outputs(out)]
        self._output_names = names
        self._output_losses = _per_output(where, "loss", self._losses, names)
        weights = _per_output(where, "loss_weights", self._loss_weights, names)
        self._output_weights = [1.0 if w is None else float(w) for w in weights]
        # No metrics: none for any output (an empty list is not "one entry per output").
        metrics_arg = self._metrics_arg or {}
        per_output = _per_output(where, "metrics", metrics_arg, names)
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

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None
    ) -> Tensor:
        """The total loss of a batch (a scalar tensor to call ``backward`` on), as compiled;
        also added to the running loss that the logs report."""
        where = self._step_context[0]
        if self._metric_objects is None:
            self._setup_outputs(where, y_pred, y)
        names = self._output_names
        tensors = [t for _, t in _named_outputs(y_pred)]
        if len(tensors) != len(names):
            raise ValueError(f"{where}: the model's outputs changed since the first batch")
        ys = _output_targets(where, y, names)
        total: Tensor | None = None
        parts: dict[str, float] = {}
        count = 0
        for name, fn, w, y_true, pred in zip(
            names, self._output_losses, self._output_weights, ys, tensors
        ):
            if fn is None:
                continue
            y_true = np.asarray(y_true)
            count = pred.shape[0]
            if len(y_true) != count:
                raise ValueError(
                    f"{where}: y has {len(y_true)} samples but the model gave {pred.shape[0]}"
                )
            value = (
                fn(y_true, pred)
                if sample_weight is None
                else fn(y_true, pred, sample_weight=sample_weight)
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
        # Regularization penalties (the layers' `losses`) count in the loss, as in Keras.
        for penalty in self.losses:  # type: ignore[attr-defined]
            total = total + penalty
        self._loss_trackers.setdefault("loss", _Mean()).add(float(total.data), count)
        for k, v in parts.items():
            self._loss_trackers.setdefault(k, _Mean()).add(v, count)
        return total

    def compute_metrics(
        self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None
    ) -> dict[str, float]:
        """Update the compiled metrics with a batch; return :meth:`get_metrics_result`."""
        if self._metric_objects is not None:
            ys = _output_targets("metrics", y, self._output_names)
            for objs, y_true, (_, pred) in zip(self._metric_objects, ys, _named_outputs(y_pred)):
                for _, m in objs:
                    m.update_state(np.asarray(y_true), pred.data)
        return self.get_metrics_result()

    def get_metrics_result(self) -> dict[str, float]:
        """The running loss, per-output losses and metrics since the last reset."""
        logs = {k: m.result() for k, m in self._loss_trackers.items()}
        for objs in self._metric_objects or []:
            for name, m in objs:
                value = np.asarray(m.result())
                if value.size != 1:
                    raise TypeError(
                        f"metric {name!r} returns {value.size} values (one per class or "
                        "threshold); the logs take one number: give it an average (e.g. "
                        "F1Score(average='macro')) or a single threshold"
                    )
                logs[name] = float(value)
        return logs

    def reset_metrics(self) -> None:
        """Reset the running loss and the metrics (each epoch, and before evaluating)."""
        self._loss_trackers = {}
        for objs in self._metric_objects or []:
            for _, m in objs:
                m.reset_state()

    @property
    def metrics_names(self) -> list[str]:
        """``["loss", *output losses, *metrics]`` once the model has trained or evaluated."""
        names = ["loss"]
        if self._metric_objects is not None:
            names += [f"{n}_loss" for n in self._output_names if n is not None]
            names += [name for objs in self._metric_objects for name, _ in objs]
        return names

    # -- the steps ---------------------------------------------------------------------------
    def train_step(self, data: Any) -> dict[str, float]:
        """One optimizer step on one batch ``data = (x, y, sample_weight)``; returns the logs.

        A non-finite loss or gradient raises :class:`NonFiniteLossError` without
        changing any weight (BatchNormalization's statistics included).
        """
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        keep_freed_memory()  # else each step faults its arrays' pages in afresh
        where, epoch, batch = self._step_context
        trainable = self.trainable_weights  # type: ignore[attr-defined]
        # Statistics that the forward pass updates (BatchNormalization's moving averages)
        # are restored with the rest when the batch turns out bad.
        saved = [(v, v.data.copy()) for v in self._statistics()]  # type: ignore[attr-defined]
        for v in trainable:
            v.grad = None
        with ag.enable_grad():
            y_pred = self(x, training=True)  # type: ignore[operator]
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        value = float(loss.data)
        bad = "loss" if not math.isfinite(value) else None
        if bad is None:
            loss.backward()
            # Every trainable variable goes in (None gradients are skipped by the optimizer),
            # so the optimizer's variable order, its state keys, is the model's.
            grads = [(v.grad, v) for v in trainable]
            if not all(np.isfinite(g).all() for g, _ in grads if g is not None):
                bad = "gradient"
        if bad is not None:
            for v, old in saved:
                v.data[...] = old
            for v in trainable:
                v.grad = None
            raise NonFiniteLossError(
                f"{where}: the {bad} became {value if bad == 'loss' else 'non-finite'} at "
                f"epoch {epoch}, batch {batch} (0-based); this batch's update was not applied, "
                "so the weights are those of the last good step",
                epoch,
                batch,
            )
        self.optimizer.apply_gradients(grads)
        self._apply_constraints()  # type: ignore[attr-defined]
        for v in trainable:
            v.grad = None
        with ag.no_grad():
            return self.compute_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data: Any) -> dict[str, float]:
        """Loss and metrics of one batch ``data = (x, y, sample_weight)`` in inference mode;
        returns the running logs."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)  # type: ignore[operator]
        self.compute_loss(x, y, y_pred, sample_weight)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def predict_step(self, data: Any) -> Any:
        """The outputs for one batch ``data = (x,)`` (or ``(x, y)``), in inference mode."""
        x, _, _ = unpack_x_y_sample_weight(data)
        return self(x, training=False)  # type: ignore[operator]

    # -- data --------------------------------------------------------------------------------
    def _as_model_dtype(self, where: str, x: Any) -> Any:
        # A model that starts by rescaling takes raw uint8 pixels by design, also when the
        # rescaling opens a nested model (a Siamese model's shared encoder).
        first: Any = self
        while hasattr(first, "layers"):
            first = next((la for la in first.layers if type(la).__name__ != "InputLayer"), None)
        rescales = type(first).__name__ == "Rescaling"
        return to_model_dtype(where, x, self.dtype, warn_uint8=not rescales)  # type: ignore[attr-defined]

    def _prepare_xy(self, where: str, x: Any, y: Any) -> tuple[Any, Any, int]:
        """``x`` in the model's dtype and ``y`` as checked arrays; and the sample count."""
        x = self._as_model_dtype(where, lists_to_arrays(where, "x", x))
        y = check_targets(where, lists_to_arrays(where, "y", y))
        self._check_input(where, x)  # type: ignore[attr-defined]
        n, ny = num_samples(where, "x", x), num_samples(where, "y", y)
        if n != ny:
            raise ValueError(
                f"{where}: x and y must have the same number of samples, got {n} and {ny}"
            )
        return x, y, n

    def _check_against_losses(self, where: str, x: Any, y: Any) -> None:
        """Run the built-in losses over all of ``y`` before the first step, against the
        model's output for one sample repeated, so that targets that do not fit (a class
        index out of range, a wrong shape) fail before any weight changes."""
        from ..losses import Loss
        from ..saving.registry import get_registered_name

        losses = _nest.flatten(self._losses)
        if not any(isinstance(fn, Loss) and get_registered_name(fn) for fn in losses):
            return
        with ag.no_grad():
            out = self(take(x, slice(0, 1)), training=False)  # type: ignore[operator]
        names = [n for n, _ in _named_outputs(out)]
        fns = _per_output(where, "loss", self._losses, names)
        ys = _output_targets(where, y, names)
        chunk = 4096
        with ag.no_grad():
            for name, fn, y_true, (_, pred) in zip(names, fns, ys, _named_outputs(out)):
                if not (isinstance(fn, Loss) and get_registered_name(fn)):
                    continue
                if getattr(fn, "couples_batch", False):
                    # A loss over the pairs or triplets of a batch (TripletLoss) costs N^2 or
                    # more on 4096 rows at once; it checks its labels on every batch instead.
                    continue
                y_true = np.asarray(y_true)
                for start in range(0, len(y_true), chunk):
                    rows = y_true[start : start + chunk]
                    like = np.broadcast_to(pred.data[:1], (len(rows), *pred.shape[1:]))
                    try:
                        fn.call(rows, Tensor(like))
                    except (ValueError, TypeError) as exc:
                        output = "" if name is None else f" for output {name!r}"
                        raise type(exc)(
                            f"{where}: y{output} does not fit the loss {fn.name!r} (rows "
                            f"{start} to {start + len(rows) - 1}; checked before the first "
                            f"step, no weight was changed): {exc}"
                        ) from None

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

    def _validation(self, where: str, data: Any, batch_size: int) -> Any:
        if isinstance(data, tuple) and len(data) in (2, 3):
            arg = f"{where}: validation_data"
            xv, yv, _ = self._prepare_xy(arg, data[0], data[1])
            sw = None if len(data) == 2 else np.asarray(data[2])
            return ArrayDataAdapter(xv, yv, sw, batch_size)
        if hasattr(data, "__iter__") and not isinstance(data, (np.ndarray, list, dict)):
            return IterableDataAdapter(
                where, data, lambda xb: self._as_model_dtype(f"{where}: validation_data", xb)
            )
        raise TypeError(
            f"{where}: validation_data must be a tuple (x_val, y_val) or a batch iterable, "
            f"got {type(data).__name__}"
        )

    # -- fit -----------------------------------------------------------------------------------
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int = 32,
        epochs: int = 1,
        verbose: Any = 1,
        callbacks: Sequence[Any] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
    ) -> Any:
        """Train for ``epochs - initial_epoch`` epochs; returns the :class:`History`.

        ``x`` and ``y`` are arrays (or lists / dicts of arrays for several inputs
        or outputs), or ``x`` is an iterable of ``(x, y)`` / ``(x, y, sample_weight)``
        batches (a data loader, iterated once per epoch) and ``y`` is None.
        ``validation_split`` holds out a seeded random subset (see the module
        notes); ``validation_data`` is ``(x_val, y_val)`` or a batch iterable.
        Each batch goes through :meth:`train_step`.
        Raises :class:`NonFiniteLossError` when the loss becomes NaN or infinite.

        As Keras: ``class_weight`` (``{class index: weight}``, one output only, not
        together with ``sample_weight``) weighs each sample by the weight of its label
        (argmax of a one-hot row; classes left out weigh 1). ``steps_per_epoch`` makes
        an epoch that many batches, drawn from a stream that continues across epochs
        and starts a new (reshuffled) pass when the data is used up; a data iterable
        that runs out stops training with a warning. ``validation_steps`` limits
        validation to its first that many batches. ``initial_epoch`` is the epoch to
        start at (to resume a run: ``History.epoch`` and the callbacks count from it).
        """
        from .. import callbacks as callbacks_module

        where = "fit()"
        self._require_compiled(where)
        batch_size = _validate.integer(where, "batch_size", batch_size, minimum=1)
        epochs = _validate.integer(where, "epochs", epochs, minimum=0)
        initial_epoch = _validate.integer(where, "initial_epoch", initial_epoch, minimum=0)
        verbose = _verbose(where, verbose)
        validation_split = _validate.probability(
            where, "validation_split", validation_split, high_open=True
        )
        if steps_per_epoch is not None:
            steps_per_epoch = _validate.integer(
                where, "steps_per_epoch", steps_per_epoch, minimum=1
            )
        if validation_steps is not None:
            validation_steps = _validate.integer(
                where, "validation_steps", validation_steps, minimum=1
            )
        class_weight = check_class_weight(where, class_weight)
        if class_weight is not None and sample_weight is not None:
            raise ValueError(f"{where}: give class_weight or sample_weight, not both (as Keras)")

        loader = is_batch_iterable(x, y)
        val = None
        data: Any
        if loader:
            if validation_split:
                raise ValueError(
                    f"{where}: validation_split needs arrays, not a data iterable; pass "
                    "validation_data"
                )
            if sample_weight is not None:
                raise ValueError(f"{where}: sample_weight goes in the batches of a data iterable")
            data = IterableDataAdapter(where, x, lambda xb: self._as_model_dtype(where, xb))
            steps = data.num_batches
            if class_weight is not None:
                data = _ClassWeighted(where, data, class_weight)
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
            if class_weight is not None:
                sample_weight = class_weight_to_sample_weight(where, class_weight, y)
            self._check_against_losses(where, x, y)
            if validation_split:
                n_train = int(n * (1 - validation_split))
                if n_train in (0, n):
                    raise ValueError(
                        f"{where}: validation_split={validation_split} leaves "
                        f"{n_train} of {n} samples for training"
                    )
                perm = np.random.default_rng([self.seed, 7]).permutation(n)  # type: ignore[attr-defined]
                train_idx, val_idx = np.sort(perm[:n_train]), np.sort(perm[n_train:])
                val = ArrayDataAdapter(take(x, val_idx), take(y, val_idx), None, batch_size)
                x, y = take(x, train_idx), take(y, train_idx)
                if sample_weight is not None:
                    sample_weight = sample_weight[train_idx]
            data = ArrayDataAdapter(x, y, sample_weight, batch_size)
            steps = data.num_batches
        if validation_data is not None:
            if validation_split:
                raise ValueError(f"{where}: give validation_split or validation_data, not both")
            val = self._validation(where, validation_data, batch_size)

        history = callbacks_module.History()
        user = list(callbacks or [])
        cbs = [*user, history]
        if verbose:
            cbs.append(callbacks_module.ProgbarLogger())
        cblist = callbacks_module.CallbackList(cbs)
        cblist.set_model(self)
        if steps_per_epoch is not None:
            steps = steps_per_epoch
        cblist.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
        terminate_on_nan = any(isinstance(c, callbacks_module.TerminateOnNaN) for c in user)

        self.stop_training = False
        self.history = history
        self._refresh_optimizer(self.trainable_weights)  # type: ignore[attr-defined]

        def one_pass() -> Iterator[Any]:
            if loader:
                return data.batches()  # type: ignore[no-any-return]
            order = None
            if shuffle:
                step = int(np.asarray(self.optimizer.iterations))
                seed = self.seed  # type: ignore[attr-defined]
                order = np.random.default_rng([seed, 1, step]).permutation(data.num_samples)
            return data.batches(order)  # type: ignore[no-any-return]

        def stream() -> Iterator[Any]:
            # steps_per_epoch: one stream across epochs, a new pass when one is used up.
            while True:
                got = False
                for item in one_pass():
                    got = True
                    yield item
                if not got:
                    return

        batch_stream = stream() if steps_per_epoch is not None else None
        self._initial_epoch: int | None = None
        with _blas_single_thread():
            cblist.on_train_begin()
            if self._initial_epoch is not None:  # set by BackupAndRestore, as in Keras
                initial_epoch, self._initial_epoch = self._initial_epoch, None
            logs: dict[str, float] = {}
            for epoch in range(initial_epoch, epochs):
                self.reset_metrics()
                cblist.on_epoch_begin(epoch)
                if batch_stream is not None:
                    batches: Iterator[Any] = itertools.islice(batch_stream, steps_per_epoch)
                else:
                    batches = one_pass()
                seen = 0
                nan_stop = False
                for batch, step_data in enumerate(batches):
                    seen += 1
                    cblist.on_train_batch_begin(batch)
                    self._step_context = (where, epoch, batch)
                    try:
                        logs = self.train_step(step_data)
                    except NonFiniteLossError:
                        if not terminate_on_nan:
                            raise
                        nan_stop = True
                        self.stop_training = True
                        cblist.on_train_batch_end(batch, {"loss": float("nan")})
                        break
                    except (ValueError, TypeError) as exc:
                        if (
                            loader
                            and (epoch > initial_epoch or batch > 0)
                            and type(exc)
                            in (
                                ValueError,
                                TypeError,
                            )
                        ):
                            raise type(exc)(
                                f"{exc} [in batch {batch} of epoch {epoch} (0-based) of the data "
                                "iterable: the batches before it were already applied to the "
                                "weights]"
                            ) from exc
                        raise
                    logs = dict(logs)
                    cblist.on_train_batch_end(batch, dict(logs))
                    if self.stop_training:
                        break
                if seen == 0 and not (batch_stream is not None and epoch > initial_epoch):
                    raise ValueError(
                        f"{where}: the data gave no batches in epoch {epoch} (a generator is "
                        "used up after one pass: pass a re-iterable loader)"
                    )
                short = steps_per_epoch is not None and seen < steps_per_epoch
                if short and not self.stop_training:
                    warnings.warn(
                        f"{where}: the data ran out after {seen} of steps_per_epoch="
                        f"{steps_per_epoch} batches in epoch {epoch}; training stops (give a "
                        "re-iterable loader, or fewer steps_per_epoch * epochs)",
                        UserWarning,
                        stacklevel=2,
                    )
                    self.stop_training = True
                    if seen == 0:
                        break
                if val is not None and not nan_stop:
                    # As Keras: validation fires the test hooks (the progress bar ignores them).
                    cblist.on_test_begin()
                    val_logs = self._test_loop(
                        "fit(): validation_data", val, cblist, validation_steps
                    )
                    cblist.on_test_end(dict(val_logs))
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                cblist.on_epoch_end(epoch, dict(logs))
                if self.stop_training:
                    break
            if epochs > initial_epoch and hasattr(self.optimizer, "finalize_variable_values"):
                self.optimizer.finalize_variable_values()  # use_ema: the averages go in, as Keras
            cblist.on_train_end(dict(logs))
        return history

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None) -> Any:
        """One optimizer step on one batch; returns the loss, or ``[loss, *metrics]``.

        Metrics are reset first, so they describe this batch alone (as Keras's default).
        Raises :class:`NonFiniteLossError` (epoch and batch 0) on a non-finite loss.
        """
        where = "train_on_batch()"
        self._require_compiled(where)
        x, y, _ = self._prepare_xy(where, x, y)
        self._refresh_optimizer(self.trainable_weights)  # type: ignore[attr-defined]
        self.reset_metrics()
        self._step_context = (where, 0, 0)
        with _blas_single_thread():
            logs = self.train_step((x, y, sample_weight))
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    # -- evaluate ------------------------------------------------------------------------------
    def _one_pass_callbacks(self, callbacks: Any, verbose: int, steps: int | None) -> Any:
        """The callbacks of evaluate / predict (one pass; a progress bar when verbose)."""
        from .. import callbacks as callbacks_module

        return callbacks_module.CallbackList(
            list(callbacks or []),
            add_progbar=bool(verbose),
            model=self,
            verbose=verbose,
            epochs=1,
            steps=steps,
        )

    def _test_loop(
        self, where: str, data: Any, cblist: Any, max_steps: int | None = None
    ) -> dict[str, float]:
        self.reset_metrics()
        batches = data.batches()
        if max_steps is not None:
            batches = itertools.islice(batches, max_steps)
        logs: dict[str, float] = {}
        seen = 0
        with ag.no_grad(), _blas_single_thread():
            for batch, step_data in enumerate(batches):
                seen += 1
                if cblist is not None:
                    cblist.on_test_batch_begin(batch)
                self._step_context = (where, 0, batch)
                logs = dict(self.test_step(step_data))
                if cblist is not None:
                    cblist.on_test_batch_end(batch, dict(logs))
        if seen == 0:
            raise ValueError(f"{where}: the data gave no batches")
        return logs

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int = 32,
        verbose: Any = 0,
        sample_weight: Any = None,
        callbacks: Sequence[Any] | None = None,
        return_dict: bool = False,
    ) -> Any:
        """Loss (and metrics) on data, without changing anything.

        Each batch goes through :meth:`test_step`; ``callbacks`` receive
        ``on_test_begin``, ``on_test_batch_begin/end`` and ``on_test_end``.
        Returns the loss alone when there are no metrics and one output, else
        ``[loss, *others]`` in the order of ``metrics_names`` (as Keras), or a
        dict when ``return_dict``. ``verbose=1`` draws a progress bar, ``2`` prints
        one line.
        """
        where = "evaluate()"
        self._require_compiled(where)
        batch_size = _validate.integer(where, "batch_size", batch_size, minimum=1)
        verbose = _verbose(where, verbose)
        data: Any
        if is_batch_iterable(x, y):
            data = IterableDataAdapter(where, x, lambda xb: self._as_model_dtype(where, xb))
        else:
            if x is None or y is None:
                raise ValueError(f"{where}: x and y are required (or x as a batch iterable)")
            x, y, _ = self._prepare_xy(where, x, y)
            sw = None if sample_weight is None else np.asarray(sample_weight)
            data = ArrayDataAdapter(x, y, sw, batch_size)
        cblist = self._one_pass_callbacks(callbacks, verbose, data.num_batches)
        cblist.on_test_begin()
        logs = self._test_loop(where, data, cblist)
        cblist.on_test_end(dict(logs))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    # -- predict -------------------------------------------------------------------------------
    def predict(
        self,
        x: Any,
        batch_size: int = 32,
        verbose: Any = 0,
        callbacks: Sequence[Any] | None = None,
    ) -> Any:
        """Outputs for ``x`` (arrays, or an iterable of input batches / (x, y) tuples),
        in inference mode, without recording gradients; works without ``compile``.

        Each batch goes through :meth:`predict_step`; ``callbacks`` receive
        ``on_predict_begin``, ``on_predict_batch_begin/end`` (logs ``{"outputs": ...}``)
        and ``on_predict_end``. ``verbose=1`` draws a progress bar.
        """
        where = "predict()"
        batch_size = _validate.integer(where, "batch_size", batch_size, minimum=1)
        verbose = _verbose(where, verbose)
        data: Any
        if is_batch_iterable(x, None) and not isinstance(x, (list, tuple)):
            data = IterableDataAdapter(
                where, x, lambda xb: self._as_model_dtype(where, xb), targets=False
            )
        else:
            x = self._as_model_dtype(where, lists_to_arrays(where, "x", x))
            self._check_input(where, x)  # type: ignore[attr-defined]
            data = ArrayDataAdapter(x, None, None, batch_size)
        cblist = self._one_pass_callbacks(callbacks, verbose, data.num_batches)
        outputs = []
        cblist.on_predict_begin()
        with ag.no_grad(), _blas_single_thread():
            for batch, (xb, _, _) in enumerate(data.batches()):
                cblist.on_predict_batch_begin(batch)
                self._step_context = (where, 0, batch)
                out = _outputs_as_arrays(self.predict_step((xb,)))
                outputs.append(out)
                cblist.on_predict_batch_end(batch, {"outputs": out})
        cblist.on_predict_end()
        if not outputs:
            raise ValueError(f"{where}: x has no samples")
        first = outputs[0]
        if isinstance(first, dict):
            return {k: np.concatenate([o[k] for o in outputs]) for k in first}
        if isinstance(first, (list, tuple)):
            return [np.concatenate([o[i] for o in outputs]) for i in range(len(first))]
        return np.concatenate(outputs)


class _ClassWeighted:
    """A data iterable's batches with ``class_weight`` turned into sample weights."""

    def __init__(self, where: str, data: Any, class_weight: dict[int, float]) -> None:
        self.where, self.data, self.class_weight = where, data, class_weight

    @property
    def num_batches(self) -> int | None:
        return self.data.num_batches  # type: ignore[no-any-return]

    def batches(self) -> Iterator[Any]:
        for xb, yb, sw in self.data.batches():
            if sw is not None:
                raise ValueError(
                    f"{self.where}: give class_weight or sample_weight in the batches, not both"
                )
            yield xb, yb, class_weight_to_sample_weight(self.where, self.class_weight, yb)


def _verbose(where: str, verbose: Any) -> int:
    if verbose not in (0, 1, 2, "auto"):  # True and False count as 1 and 0, as before
        raise ValueError(f"{where}: verbose must be 0, 1 or 2, got {verbose!r}")
    return 1 if verbose == "auto" else int(verbose)
