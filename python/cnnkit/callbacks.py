"""Training callbacks with the Keras 3 names, arguments and behaviour.

A callback receives the model (``set_model``) and the run's parameters
(``set_params``: ``verbose``, ``epochs``, ``steps``) and then hook calls from
``fit``/``evaluate``/``predict``: ``on_train_begin/end(logs)``,
``on_epoch_begin/end(epoch, logs)``, ``on_train_batch_begin/end(batch,
logs)``, and the ``on_test_*`` and ``on_predict_*`` counterparts. Epochs and
batches are 0-based in the calls; messages and file names count epochs from 1,
as Keras does.

What the callbacks use of the model: ``model.stop_training`` (a bool
attribute), ``model.get_weights()`` / ``model.set_weights(list)``,
``model.save(path)``, ``model.save_weights(path)`` and
``model.optimizer.learning_rate`` (a settable float). Batch-end logs hold the
running averages of the loss and metrics; epoch-end logs also hold the
``val_*`` entries.

``"auto"`` mode treats a monitored quantity as "higher is better" when its
name (without ``val_``) contains ``acc`` or starts with ``auc``, ``f1``,
``fmeasure``, ``precision`` or ``recall``, and "lower is better" otherwise.
A monitored key missing from the logs gives a :class:`UserWarning` and the
callback does nothing for that epoch, as in Keras. An unknown ``mode`` raises
:class:`ValueError` (Keras warns and falls back to ``"auto"``).

The progress bar of :class:`ProgbarLogger` is drawn with tqdm (imported on
first use), which already handles terminal widths, rates and ETAs.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import math
import numbers
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import numpy as np

from . import _validate
from .saving.registry import register_serializable

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]


class Callback:
    """Base class of the callbacks: every hook does nothing.

    Attributes
    ----------
    model : object or None
        Set by :meth:`set_model` before training.
    params : dict
        Set by :meth:`set_params`: ``verbose``, ``epochs``, ``steps``.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Store the run's parameters (``verbose``, ``epochs``, ``steps``, ...)."""
        self.params = dict(params)

    def set_model(self, model: Any) -> None:
        """Store the model the callback acts on."""
        self.model = model

    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called by :meth:`on_train_batch_begin` (the Keras alias)."""

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called by :meth:`on_train_batch_end` (the Keras alias)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of each training epoch (0-based)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of each training epoch with the epoch's logs, incl. ``val_*``."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before each training batch."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after each training batch with the running averages."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before each evaluation batch."""

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after each evaluation batch."""

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called before each prediction batch."""

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Called after each prediction batch."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of ``fit``."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of ``fit``."""

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of ``evaluate`` (also the validation inside ``fit``)."""

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of ``evaluate``."""

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the start of ``predict``."""

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        """Called at the end of ``predict``."""


class CallbackList:
    """Calls each hook on every callback of a list, in order.

    Parameters
    ----------
    callbacks : iterable of Callback, optional
    add_history : bool, default False
        Append a :class:`History` unless the list has one.
    add_progbar : bool, default False
        Append a :class:`ProgbarLogger` unless the list has one.
    model : object, optional
        Passed to every callback's ``set_model``.
    **params
        Passed to every callback's ``set_params`` (``verbose``, ``epochs``, ``steps``).
    """

    def __init__(
        self,
        callbacks: Iterable[Callback] | None = None,
        add_history: bool = False,
        add_progbar: bool = False,
        model: Any = None,
        **params: Any,
    ) -> None:
        if callbacks is None:
            callbacks = []
        if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
            raise TypeError(
                "CallbackList(): callbacks must be a list of Callback, "
                f"got {type(callbacks).__name__}"
            )
        self.callbacks: list[Callback] = list(callbacks)
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"CallbackList(): callbacks[{i}] must be a Callback, got {type(cb).__name__}"
                )
        histories = [c for c in self.callbacks if isinstance(c, History)]
        self.history: History | None = histories[0] if histories else None
        if self.history is None and add_history:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self.model = None
        self.params: dict[str, Any] = {}
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback: Callback) -> None:
        """Add a callback at the end."""
        if not isinstance(callback, Callback):
            raise TypeError(
                f"CallbackList.append(): callback must be a Callback, got {type(callback).__name__}"
            )
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)

    def set_params(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def set_model(self, model: Any) -> None:
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_batch_end", batch, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)


@register_serializable(package="cnnkit")
class History(Callback):
    """Records the epoch logs; ``Model.fit`` returns it.

    Attributes
    ----------
    history : dict[str, list]
        One list per log key, one entry per epoch that logged it.
    epoch : list[int]
        The (0-based) epochs recorded.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


# -- helpers shared by the monitoring callbacks ---------------------------------------------


def _check_mode(func: str, mode: Any) -> str:
    return _validate.choice(func, "mode", mode, ("auto", "min", "max"))


def _higher_is_better(monitor: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "max"
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "acc" in name or name.startswith(("auc", "f1", "fmeasure", "precision", "recall"))


def _check_monitor(func: str, monitor: Any) -> str:
    if not isinstance(monitor, str):
        raise TypeError(f"{func}: monitor must be a str, got {type(monitor).__name__}")
    return monitor


def _monitor_value(who: str, monitor: str, logs: Mapping[str, Any] | None, what: str) -> Any:
    logs = logs or {}
    value = logs.get(monitor)
    if value is None:
        warnings.warn(
            f"{who} {what} `{monitor}` which is not available. "
            f"Available metrics are: {','.join(logs)}",
            UserWarning,
            stacklevel=3,
        )
    return value


def _optimizer_lr(who: str, model: Any) -> float:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"{who}: the model must have an optimizer with a learning_rate attribute")
    lr = optimizer.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(
            f"{who}: the optimizer's learning_rate must be a float to be changed by a callback, "
            f"got {type(lr).__name__}; an optimizer created with a LearningRateSchedule "
            "already varies its rate: use a float learning_rate with this callback"
        )
    return float(lr)


def _print(*parts: Any) -> None:
    # Resolved at call time so that redirected/captured stdout is honoured.
    print(*parts, file=sys.stdout, flush=True)


@register_serializable(package="cnnkit")
class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving.

    After each epoch (from ``start_from_epoch`` on) the monitored value is
    compared with the best so far; an improvement (by more than
    ``min_delta``) resets the wait counter, and once ``patience`` epochs in a
    row brought none (and the epoch is not the first), ``model.stop_training``
    is set.

    Parameters
    ----------
    monitor : str, default "val_loss"
    min_delta : float, default 0
        Changes smaller than this (in absolute value) do not count as improvements.
    patience : int, default 0
        Epochs without improvement after which training stops.
    verbose : int, default 0
        1 prints a message when training stops and when weights are restored.
    mode : {"auto", "min", "max"}, default "auto"
    baseline : float, optional
        The wait counter resets only when the value beats both the best and the baseline.
    restore_best_weights : bool, default False
        At the end of training, set the weights of the best epoch (also when
        training did not stop early).
    start_from_epoch : int, default 0
        Epochs of warm-up in which the value is not monitored.

    Attributes
    ----------
    stopped_epoch : int
        The 0-based epoch at which training was stopped, 0 if it was not.
    best, best_epoch, wait
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__()
        f = "EarlyStopping()"
        self.monitor = _check_monitor(f, monitor)
        self.min_delta = abs(_validate.real(f, "min_delta", min_delta, finite=False))
        self.patience = _validate.integer(f, "patience", patience, minimum=0)
        self.verbose = _validate.integer(f, "verbose", verbose, minimum=0)
        self.mode = _check_mode(f, mode)
        self.baseline = (
            None if baseline is None else _validate.real(f, "baseline", baseline, finite=False)
        )
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _validate.integer(
            f, "start_from_epoch", start_from_epoch, minimum=0
        )
        self._maximize = _higher_is_better(self.monitor, self.mode)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self._maximize:
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def _weights(self) -> list[np.ndarray]:
        # Copies: the model updates its arrays in place.
        return [np.array(w, copy=True) for w in self.model.get_weights()]

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitor_value("Early stopping", self.monitor, logs, "conditioned on metric")
        if current is None or epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self._weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self._weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)


@register_serializable(package="cnnkit")
class ModelCheckpoint(Callback):
    """Save the model (or its weights) during training.

    Parameters
    ----------
    filepath : str or os.PathLike
        May hold ``str.format`` fields filled from the epoch (1-based) and the
        logs, e.g. ``"ckpt-{epoch:02d}-{val_loss:.2f}.cnnkit"``; with
        ``save_freq`` in batches also ``{batch}`` (1-based). Missing parent
        folders are created.
    monitor : str, default "val_loss"
    verbose : int, default 0
        1 prints a message on each save (or skipped save).
    save_best_only : bool, default False
        Save only when the monitored value improves on the best so far.
    save_weights_only : bool, default False
        Call ``model.save_weights(path)`` instead of ``model.save(path)``.
    mode : {"auto", "min", "max"}, default "auto"
    save_freq : "epoch" or int, default "epoch"
        Save at the end of each epoch, or every ``save_freq`` batches (the
        batch logs then hold the running averages).
    initial_value_threshold : float, optional
        The value to beat for the first save with ``save_best_only``.
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__()
        f = "ModelCheckpoint()"
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"{f}: filepath must be a str or path, got {type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        if not isinstance(self.filepath, str) or not self.filepath:
            raise ValueError(f"{f}: filepath must be a non-empty str path, got {filepath!r}")
        if os.path.isdir(self.filepath):
            # Else the first save, after an epoch of training, failed on the folder.
            raise IsADirectoryError(
                f"{f}: filepath {self.filepath!r} is a folder; give a file name (it may hold "
                "{epoch} fields)"
            )
        self.monitor = _check_monitor(f, monitor)
        self.verbose = _validate.integer(f, "verbose", verbose, minimum=0)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _check_mode(f, mode)
        if save_freq != "epoch":
            if isinstance(save_freq, bool) or not isinstance(save_freq, numbers.Integral):
                raise ValueError(
                    f"{f}: save_freq must be 'epoch' or a positive int, got {save_freq!r}"
                )
            _validate.integer(f, "save_freq", save_freq, minimum=1)
            save_freq = int(save_freq)
        self.save_freq = save_freq
        self._maximize = _higher_is_better(self.monitor, self.mode)
        if initial_value_threshold is None:
            self.best = -math.inf if self._maximize else math.inf
        else:
            self.best = _validate.real(
                f, "initial_value_threshold", initial_value_threshold, finite=False
            )
        self._current_epoch = 0
        self._batches_since_save = 0
        self._last_batch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Batches restart at 0 each epoch; count those seen since the last save.
        seen = batch + 1 if batch <= self._last_batch else batch - self._last_batch
        self._last_batch = batch
        self._batches_since_save += seen
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _path(self, epoch: int, batch: int | None, logs: Mapping[str, Any]) -> str:
        fields = dict(logs)
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError) as e:
            raise ValueError(
                f"ModelCheckpoint: cannot format filepath {self.filepath!r}: the field {e} is "
                f"not among the epoch, the batch and the logs ({', '.join(logs)})"
            ) from None

    def _write(self, path: str) -> None:
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)

    def _save(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> None:
        logs = logs or {}
        path = self._path(epoch, batch, logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if not self.save_best_only:
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: saving model to {path}")
            self._write(path)
            return
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Can save best model only with {self.monitor} available, skipping.",
                UserWarning,
                stacklevel=3,
            )
            return
        current = float(current)
        better = current > self.best if self._maximize else current < self.best
        if better:
            if self.verbose > 0:
                _print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                    f"{current:.5f}, saving model to {path}"
                )
            self.best = current
            self._write(path)
        elif self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")


@register_serializable(package="cnnkit")
class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a quantity stops improving.

    After ``patience`` epochs without an improvement larger than
    ``min_delta`` the rate becomes ``max(lr * factor, min_lr)``, then no
    reduction happens for ``cooldown`` epochs. The rate is also logged as
    ``logs["learning_rate"]`` at each epoch end.

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float in (0, 1), default 0.1
    patience : int, default 10
    verbose : int, default 0
    mode : {"auto", "min", "max"}, default "auto"
    min_delta : float, default 1e-4
    cooldown : int, default 0
    min_lr : float, default 0.0
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        f = "ReduceLROnPlateau()"
        self.monitor = _check_monitor(f, monitor)
        self.factor = _validate.real(f, "factor", factor, finite=False)
        if not 0 < self.factor < 1:
            raise ValueError(f"{f}: factor must be in (0, 1), got {factor}")
        self.patience = _validate.integer(f, "patience", patience, minimum=0)
        self.verbose = _validate.integer(f, "verbose", verbose, minimum=0)
        self.mode = _check_mode(f, mode)
        self.min_delta = _validate.real(f, "min_delta", min_delta, finite=False)
        self.cooldown = _validate.integer(f, "cooldown", cooldown, minimum=0)
        self.min_lr = _validate.real(f, "min_lr", min_lr, finite=False)
        if self.min_lr < 0:
            raise ValueError(f"{f}: min_lr must be >= 0, got {min_lr}")
        self._maximize = _higher_is_better(self.monitor, self.mode)
        self._reset()

    def _reset(self) -> None:
        self.best = -math.inf if self._maximize else math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def _improved(self, current: float) -> bool:
        if self._maximize:
            return current > self.best + self.min_delta
        return current < self.best - self.min_delta

    def in_cooldown(self) -> bool:
        """Whether reductions are suspended after the last one."""
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        who = "ReduceLROnPlateau"
        if logs is None:
            logs = {}
        logs["learning_rate"] = _optimizer_lr(who, self.model)
        current = _monitor_value(
            "Learning rate reduction", self.monitor, logs, "is conditioned on metric"
        )
        if current is None:
            return
        current = float(current)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = _optimizer_lr(who, self.model)
                # float32 comparison as Keras: a rate already at min_lr is left alone.
                if np.float32(old_lr) > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        _print(
                            f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                            f"to {new_lr}."
                        )
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


@register_serializable(package="cnnkit")
class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch from ``schedule``.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new_lr`` with the 0-based epoch and the
        current rate (a function of the epoch alone is accepted too).
    verbose : int, default 0
        1 prints the rate set at each epoch.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        f = "LearningRateScheduler()"
        if not callable(schedule):
            raise TypeError(f"{f}: schedule must be callable, got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = _validate.integer(f, "verbose", verbose, minimum=0)
        self._two_args = _accepts_two_args(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        who = "LearningRateScheduler"
        lr = _optimizer_lr(who, self.model)
        new_lr = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        if isinstance(new_lr, bool) or not isinstance(new_lr, numbers.Real):
            raise ValueError(
                f"{who}: the output of the schedule function should be a float, got {new_lr!r}"
            )
        if not math.isfinite(float(new_lr)) or float(new_lr) < 0:
            raise ValueError(
                f"{who}: the schedule returned {new_lr} for epoch {epoch}; a learning rate must be "
                "finite and >= 0"
            )
        self.model.optimizer.learning_rate = float(new_lr)
        if self.verbose > 0:
            _print(
                f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                f"{float(new_lr)}."
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _optimizer_lr("LearningRateScheduler", self.model)


def _accepts_two_args(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # builtins without a signature: assume the Keras form
    try:
        sig.bind(0, 0.0)
    except TypeError:
        try:
            sig.bind(0)
        except TypeError:
            raise TypeError(
                "LearningRateScheduler(): schedule must accept (epoch, lr) or (epoch), "
                f"got a callable with signature {sig}"
            ) from None
        return False
    return True


@register_serializable(package="cnnkit")
class CSVLogger(Callback):
    """Write the epoch logs to a CSV file, one row per epoch.

    The header is ``epoch`` followed by the sorted log keys of the first
    epoch (plus their ``val_`` forms when the first epoch had no validation);
    epochs are 0-based as in Keras, and missing entries are written as ``NA``.

    Parameters
    ----------
    filename : str or os.PathLike
    separator : str, default ","
        A single character.
    append : bool, default False
        Append to an existing file (writing the header only if it is empty).
    """

    def __init__(
        self, filename: str | os.PathLike, separator: str = ",", append: bool = False
    ) -> None:
        super().__init__()
        f = "CSVLogger()"
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"{f}: filename must be a str or path, got {type(filename).__name__}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"{f}: separator must be a single character, got {separator!r}")
        self.filename = os.fspath(filename)
        if os.path.isdir(self.filename):  # else open()'s bare IsADirectoryError at fit time
            raise IsADirectoryError(f"{f}: filename {self.filename!r} is a folder")
        self.sep = separator
        self.append = bool(append)
        self.keys: list[str] | None = None
        self._file: IO[str] | None = None
        self._writer: csv.DictWriter | None = None
        self._write_header = True

    def on_train_begin(self, logs=None):
        if self.append:
            self._write_header = True
            if os.path.exists(self.filename):
                with open(self.filename, encoding="utf-8") as fh:
                    self._write_header = not fh.readline()
            mode = "a"
        else:
            self._write_header = True
            mode = "w"
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._file = open(self.filename, mode, newline="", encoding="utf-8")
        self._writer = None
        self.keys = None

    @staticmethod
    def _cell(value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, np.ndarray) and value.ndim == 0:
            return value.item()
        if isinstance(value, Iterable):
            return f"[{', '.join(map(str, value))}]"
        return value

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None or self._file.closed:
            raise RuntimeError("CSVLogger: on_epoch_end() called before on_train_begin()")
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            # With validation_freq > 1 the first epoch has no val_ entries.
            if not any(k.startswith("val_") for k in self.keys):
                self.keys.extend(["val_" + k for k in self.keys])
        if self._writer is None:
            sep = self.sep

            class _Dialect(csv.excel):
                delimiter = sep

            self._writer = csv.DictWriter(
                self._file, fieldnames=["epoch", *self.keys], dialect=_Dialect
            )
            if self._write_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, self._cell(logs.get(k, "NA"))) for k in self.keys)
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._writer = None


@register_serializable(package="cnnkit")
class TerminateOnNaN(Callback):
    """Set ``model.stop_training`` when a batch's loss is NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            _print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


def _format_logs(logs: Mapping[str, Any], sep: str, kv: str) -> str:
    parts = []
    for key, value in logs.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            v = float(value)
            text = f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"
        elif isinstance(value, np.ndarray) and value.size == 1:
            v = float(value.reshape(()))
            text = f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"
        else:
            text = str(value)
        parts.append(f"{key}{kv}{text}")
    return sep.join(parts)


@register_serializable(package="cnnkit")
class ProgbarLogger(Callback):
    """Print progress and metrics to stdout during ``fit``, ``evaluate`` and ``predict``.

    ``Model.fit`` adds one when ``verbose != 0``; the verbosity comes from the
    run's params (``verbose``: 1 or ``"auto"`` for a bar, 2 for one line per
    epoch), as do ``epochs`` and ``steps``.

    * ``verbose=1``: a tqdm bar per epoch over the batches (total = ``steps``
      when known) showing elapsed time, ETA and the running loss and metrics;
      at the epoch end the bar shows the epoch's logs, ``val_*`` included.
    * ``verbose=2``: one line per epoch, e.g.
      ``Epoch 3/10 - 1.2s - loss: 0.1234 - accuracy: 0.9500 - val_loss: 0.2345``.

    Parameters
    ----------
    file : text stream, optional
        Where to write; ``sys.stdout`` at the time of writing by default.
    """

    def __init__(self, file: IO[str] | None = None) -> None:
        super().__init__()
        self.file = file
        self.verbose = 1
        self.epochs = 1
        self.target: int | None = None
        self._bar: Any = None
        self._start = 0.0
        self._in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = self.params.get("verbose", 1)
        self.verbose = (
            1
            if verbose == "auto"
            else _validate.integer("ProgbarLogger", "verbose", verbose, minimum=0)
        )
        epochs = self.params.get("epochs", 1)
        self.epochs = 1 if epochs is None else epochs
        steps = self.params.get("steps")
        self.target = None if steps is None else int(steps)

    def _out(self) -> IO[str]:
        return self.file if self.file is not None else sys.stdout

    def _begin(self, desc: str) -> None:
        self._close()
        self._start = time.perf_counter()
        if self.verbose == 1:
            from tqdm import tqdm  # lazily: `import cnnkit` stays light

            self._bar = tqdm(
                total=self.target, desc=desc, unit="step", file=self._out(), leave=True
            )

    def _update(self, batch: int, logs: Mapping[str, Any] | None) -> None:
        if self._bar is None:
            return
        if logs:
            self._bar.set_postfix_str(_format_logs(logs, ", ", "="), refresh=False)
        self._bar.update(max(batch + 1 - self._bar.n, 0))

    def _finish(self, label: str, logs: Mapping[str, Any] | None) -> None:
        if self.verbose == 1 and self._bar is not None:
            if logs:
                self._bar.set_postfix_str(_format_logs(logs, ", ", "="), refresh=False)
            self._bar.refresh()
            self._close()
        elif self.verbose == 2:
            parts = [label, f"{time.perf_counter() - self._start:.1f}s"]
            if logs:
                parts.append(_format_logs(logs, " - ", ": "))
            print(" - ".join(parts), file=self._out(), flush=True)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False
        self._close()

    def on_epoch_begin(self, epoch, logs=None):
        self._begin(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(f"Epoch {epoch + 1}/{self.epochs}", logs)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._begin("Evaluate")

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._finish("Evaluate", logs)

    def on_predict_begin(self, logs=None):
        self._begin("Predict")

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)

    def on_predict_end(self, logs=None):
        self._finish("Predict", None)


_HOOKS = (
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_begin",
    "on_train_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


class LambdaCallback(Callback):
    """A callback made of functions, as Keras's.

    Each argument replaces the hook of the same name: ``on_epoch_begin(epoch, logs)``,
    ``on_train_begin(logs)``, ``on_train_batch_end(batch, logs)``, ... Besides the six
    named arguments any other hook (``on_test_batch_end=...``, ``on_predict_end=...``)
    may be given by keyword; a name that is not a hook raises :class:`TypeError` (Keras
    stores it silently).

    Examples
    --------
    >>> losses = []
    >>> cb = LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))
    """

    def __init__(
        self,
        on_epoch_begin: Callable[..., Any] | None = None,
        on_epoch_end: Callable[..., Any] | None = None,
        on_train_begin: Callable[..., Any] | None = None,
        on_train_end: Callable[..., Any] | None = None,
        on_train_batch_begin: Callable[..., Any] | None = None,
        on_train_batch_end: Callable[..., Any] | None = None,
        **kwargs: Callable[..., Any],
    ) -> None:
        super().__init__()
        hooks = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
            **kwargs,
        }
        for name, fn in hooks.items():
            if name not in _HOOKS:
                raise TypeError(
                    f"LambdaCallback(): {name!r} is not a callback hook; hooks are "
                    f"{', '.join(_HOOKS)}"
                )
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(
                    f"LambdaCallback(): {name} must be callable, got {type(fn).__name__}"
                )
            setattr(self, name, fn)


class BackupAndRestore(Callback):
    """Back up the training state at each epoch end; resume an interrupted ``fit``.

    At the end of each epoch the model is saved with :meth:`cnnkit.Model.save` (an
    atomic write: a crash leaves the previous backup whole) as
    ``backup_dir/epoch-N.cnnkit``, N the number of finished epochs; the older backup is
    then removed. When ``fit`` starts and a backup exists, the weights, the layer state
    (dropout generators, moving statistics) and the optimizer state (slots and step
    count, which also seeds the shuffling) are loaded into the model and training
    continues at epoch N. An interrupted epoch is redone from its start, so a run
    interrupted by an exception (or a killed process) and resumed ends with exactly the
    weights of an uninterrupted run. The backup is deleted when ``fit`` ends normally
    (``delete_checkpoint``).

    Parameters
    ----------
    backup_dir : str or os.PathLike
        A folder for this run's backups only (created when missing).
    save_freq : "epoch"
        Only epoch-end backups are supported (Keras's batch-frequency backups resume at
        the start of the epoch with mid-epoch weights, which is not an exact resume).
    delete_checkpoint : bool, default True

    Not supported from Keras: ``double_checkpoint`` (the atomic write already keeps the
    last good backup).
    """

    _PREFIX = "epoch-"
    _SUFFIX = ".cnnkit"

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        save_freq: str = "epoch",
        delete_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        f = "BackupAndRestore()"
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise TypeError(f"{f}: backup_dir must be a non-empty str or path, got {backup_dir!r}")
        self.backup_dir = os.fspath(backup_dir)
        if save_freq != "epoch":
            raise ValueError(
                f"{f}: save_freq must be 'epoch' (batch-frequency backups cannot resume "
                f"exactly), got {save_freq!r}"
            )
        self.save_freq = save_freq
        if not isinstance(delete_checkpoint, (bool, np.bool_)):
            raise TypeError(
                f"{f}: delete_checkpoint must be a bool, got {type(delete_checkpoint).__name__}"
            )
        self.delete_checkpoint = bool(delete_checkpoint)

    def _backups(self) -> list[tuple[int, str]]:
        if not os.path.isdir(self.backup_dir):
            return []
        found = []
        for name in os.listdir(self.backup_dir):
            stem = name[len(self._PREFIX) : -len(self._SUFFIX)]
            if name.startswith(self._PREFIX) and name.endswith(self._SUFFIX) and stem.isdigit():
                found.append((int(stem), os.path.join(self.backup_dir, name)))
        return sorted(found)

    def on_train_begin(self, logs=None):
        backups = self._backups()
        if not backups:
            return
        model = self.model
        if not model.built:
            raise ValueError(
                "BackupAndRestore: the model must be built (give it an Input) before fit "
                "to restore the backup into it"
            )
        epoch, path = backups[-1]
        model.load_weights(path)
        model.load_optimizer_state(path)
        model._initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        old = self._backups()
        path = os.path.join(self.backup_dir, f"{self._PREFIX}{epoch + 1}{self._SUFFIX}")
        self.model.save(path)
        for _, previous in old:
            if previous != path:
                os.remove(previous)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        for _, path in self._backups():
            os.remove(path)
        with contextlib.suppress(OSError):  # not empty: other files are left alone
            os.rmdir(self.backup_dir)
