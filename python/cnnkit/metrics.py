"""Stateful training metrics on NumPy arrays, with the Keras 3 names and semantics.

A metric accumulates over batches: ``update_state(y_true, y_pred,
sample_weight=None)`` adds a batch, ``result()`` returns the running value as a
float and ``reset_state()`` starts again. The per-sample functions
(:func:`accuracy`, :func:`categorical_accuracy`, ...) are public as in Keras.

Accumulation follows Keras's ``Mean``: per-sample values are averaged over
every axis after the first; with ``sample_weight`` the running result is
``sum(w * value) / sum(w)``. Sums are kept in float64.

:func:`get` resolves names the way ``Model.compile(metrics=[...])`` does,
including ``"accuracy"``/``"acc"``, which becomes binary, sparse categorical
or categorical accuracy according to the loss or the shapes of the targets and
predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _validate
from .saving import registry
from .saving.registry import register_serializable, snake_case

__all__ = [
    "AUC",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "F1Score",
    "Mean",
    "MeanAbsoluteError",
    "MeanIoU",
    "MeanMetricWrapper",
    "MeanSquaredError",
    "Metric",
    "Precision",
    "Recall",
    "SparseCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "confusion_matrix",
    "get",
    "mean_absolute_error",
    "mean_squared_error",
    "serialize",
    "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
]


def _numeric(func: str, arg: str, x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        return arr.astype(np.float64)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{func}: {arg} must be a numeric array, got dtype {arr.dtype}")
    return arr


def _same_rank(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Keras's squeeze_or_expand_to_same_rank: reconcile (N,) with (N, 1).
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        if b.ndim == 1:
            b = b[..., None]
        else:
            a = a[..., 0]
    elif b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        if a.ndim == 1:
            a = a[..., None]
        else:
            b = b[..., 0]
    return a, b


def _pair(func: str, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = _numeric(func, "y_true", y_true)
    p = _numeric(func, "y_pred", y_pred)
    t, p = _same_rank(t, p)
    if t.shape != p.shape:
        raise ValueError(
            f"{func}: y_true and y_pred must have the same shape, "
            f"got {np.shape(y_true)} and {np.shape(y_pred)}"
        )
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """1.0 where ``y_pred`` equals ``y_true`` exactly, else 0.0 (element-wise)."""
    t, p = _pair("accuracy()", y_true, y_pred)
    return (t == p).astype(np.float64)


def binary_accuracy(y_true: ArrayLike, y_pred: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """1.0 where ``y_pred > threshold`` matches the 0/1 label ``y_true`` (element-wise)."""
    t, p = _pair("binary_accuracy()", y_true, y_pred)
    return (t == (p > threshold)).astype(np.float64)


def categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """1.0 where the arg-max of one-hot ``y_true`` equals that of ``y_pred``, per sample."""
    f = "categorical_accuracy()"
    t = _numeric(f, "y_true", y_true)
    p = _numeric(f, "y_pred", y_pred)
    if t.shape != p.shape or p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(
            f"{f}: y_true (one-hot) and y_pred must have the same shape (..., classes), "
            f"got {t.shape} and {p.shape}"
        )
    return (np.argmax(t, axis=-1) == np.argmax(p, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """1.0 where the integer label ``y_true`` equals the arg-max of ``y_pred``, per sample.

    ``y_true`` has ``y_pred``'s shape without the class axis, or with a class
    axis of size 1.
    """
    f = "sparse_categorical_accuracy()"
    t = _numeric(f, "y_true", y_true)
    p = _numeric(f, "y_pred", y_pred)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(f"{f}: y_pred must have shape (..., classes), got {p.shape}")
    if t.ndim == p.ndim and t.shape[-1] == 1:
        t = t[..., 0]
    if t.shape != p.shape[:-1]:
        raise ValueError(
            f"{f}: y_true must have shape {p.shape[:-1]} or {(*p.shape[:-1], 1)} "
            f"for y_pred of shape {p.shape}, got {np.shape(y_true)}"
        )
    return (t == np.argmax(p, axis=-1)).astype(np.float64)


def mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """``mean((y_true - y_pred) ** 2)`` over the last axis."""
    t, p = _pair("mean_squared_error()", y_true, y_pred)
    d = t.astype(np.float64) - p.astype(np.float64)
    return np.mean(np.square(d), axis=-1) if d.ndim else np.square(d)


def mean_absolute_error(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """``mean(abs(y_true - y_pred))`` over the last axis."""
    t, p = _pair("mean_absolute_error()", y_true, y_pred)
    d = t.astype(np.float64) - p.astype(np.float64)
    return np.mean(np.abs(d), axis=-1) if d.ndim else np.abs(d)


class Metric:
    """Base class: a value accumulated over batches.

    Subclasses implement ``update_state``, ``result`` and ``reset_state``.
    Calling a metric updates it with the batch and returns the result.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"{type(self).__name__}(): name must be a str, got {type(name).__name__}"
            )
        self.name = name if name is not None else snake_case(type(self).__name__)

    def update_state(self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight=None) -> None:
        raise NotImplementedError(f"{type(self).__name__}.update_state() is not implemented")

    def result(self) -> float:
        raise NotImplementedError(f"{type(self).__name__}.result() is not implemented")

    def reset_state(self) -> None:
        raise NotImplementedError(f"{type(self).__name__}.reset_state() is not implemented")

    def __call__(self, *args: Any, **kwargs: Any) -> float:
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Metric:
        """Create a metric from the dictionary returned by :meth:`get_config`."""
        if not isinstance(config, Mapping):
            raise TypeError(
                f"{cls.__name__}.from_config(): config must be a dict, got {type(config).__name__}"
            )
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


@register_serializable(package="cnnkit")
class Mean(Metric):
    """The (weighted) mean of the values passed to ``update_state``.

    Values of shape ``(N, ...)`` count as ``N`` samples, each the mean of its
    row. ``sample_weight`` of shape ``(N,)`` (or broadcastable to the values)
    weights the samples; the result is ``sum(w * value) / sum(w)`` and 0.0
    before any update.

    Parameters
    ----------
    name : str, default "mean"
    """

    def __init__(self, name: str = "mean") -> None:
        super().__init__(name)
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values: ArrayLike, sample_weight: ArrayLike | None = None) -> None:  # type: ignore[override]
        f = f"{type(self).__name__}.update_state()"
        v = _numeric(f, "values", values).astype(np.float64)
        if sample_weight is not None:
            w = _numeric(f, "sample_weight", sample_weight).astype(np.float64)
            v, w = _same_rank(v, w)
            if v.ndim > w.ndim:
                v = np.mean(v, axis=tuple(range(w.ndim, v.ndim)))
            try:
                w = np.broadcast_to(w, v.shape)
            except ValueError:
                raise ValueError(
                    f"{f}: sample_weight of shape {np.shape(sample_weight)} does not broadcast "
                    f"to the values of shape {v.shape}"
                ) from None
            v = v * w
            if w.ndim > 1:
                w = np.mean(w, axis=tuple(range(1, w.ndim)))
        if v.ndim > 1:
            v = np.mean(v, axis=tuple(range(1, v.ndim)))
        self.total += float(np.sum(v))
        if sample_weight is not None:
            self.count += float(np.sum(w))
        else:
            self.count += v.shape[0] if v.ndim else 1

    def result(self) -> float:
        return self.total / self.count if self.count != 0 else 0.0

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0


class MeanMetricWrapper(Mean):
    """The mean of a per-sample function ``fn(y_true, y_pred, **kwargs)``.

    Parameters
    ----------
    fn : callable
        Returns per-sample (or per-element) values for a batch.
    name : str, optional
        Defaults to ``fn.__name__``.
    **kwargs
        Passed to ``fn``.
    """

    def __init__(
        self, fn: Callable[..., ArrayLike], name: str | None = None, **kwargs: Any
    ) -> None:
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper(): fn must be callable, got {type(fn).__name__}")
        super().__init__(name if name is not None else getattr(fn, "__name__", "mean_metric"))
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(  # type: ignore[override]
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> None:
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self._fn_kwargs}


@register_serializable(package="cnnkit")
class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly (see :func:`accuracy`)."""

    def __init__(self, name: str = "accuracy") -> None:
        super().__init__(accuracy, name)


@register_serializable(package="cnnkit")
class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches the binary label (see :func:`binary_accuracy`).

    Parameters
    ----------
    name : str, default "binary_accuracy"
    threshold : float, default 0.5
    """

    def __init__(self, name: str = "binary_accuracy", threshold: float = 0.5) -> None:
        threshold = _validate.probability("BinaryAccuracy()", "threshold", threshold)
        super().__init__(binary_accuracy, name, threshold=float(threshold))
        self.threshold = float(threshold)


@register_serializable(package="cnnkit")
class CategoricalAccuracy(MeanMetricWrapper):
    """How often the arg-max of ``y_pred`` matches that of the one-hot ``y_true``."""

    def __init__(self, name: str = "categorical_accuracy") -> None:
        super().__init__(categorical_accuracy, name)


@register_serializable(package="cnnkit")
class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the arg-max of ``y_pred`` matches the integer label ``y_true``."""

    def __init__(self, name: str = "sparse_categorical_accuracy") -> None:
        super().__init__(sparse_categorical_accuracy, name)


@register_serializable(package="cnnkit")
class MeanSquaredError(MeanMetricWrapper):
    """The mean squared error (see :func:`mean_squared_error`)."""

    def __init__(self, name: str = "mean_squared_error") -> None:
        super().__init__(mean_squared_error, name)


@register_serializable(package="cnnkit")
class MeanAbsoluteError(MeanMetricWrapper):
    """The mean absolute error (see :func:`mean_absolute_error`)."""

    def __init__(self, name: str = "mean_absolute_error") -> None:
        super().__init__(mean_absolute_error, name)


# Names that `get` knows, in lower case, and the class each builds.
_BY_NAME: dict[str, type[Metric]] = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "meansquarederror": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "meanabsoluteerror": MeanAbsoluteError,
    "binary_accuracy": BinaryAccuracy,
    "binaryaccuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "categoricalaccuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "sparsecategoricalaccuracy": SparseCategoricalAccuracy,
    "mean": Mean,
}


def _add_confusion_metrics() -> None:
    # The confusion-count metrics live in their own module (which imports this one).
    for cls in (
        Precision,
        Recall,
        AUC,
        TopKCategoricalAccuracy,
        SparseTopKCategoricalAccuracy,
    ):
        _BY_NAME[snake_case(cls.__name__)] = cls
        _BY_NAME[cls.__name__.lower()] = cls


def _accuracy_from_loss(loss: Any) -> type[Metric] | None:
    if loss is None:
        return None
    if isinstance(loss, str):
        name = loss
    elif isinstance(loss, type):
        name = loss.__name__
    elif callable(loss) and hasattr(loss, "__name__"):
        name = loss.__name__  # a loss function
    else:
        name = type(loss).__name__  # a loss object
    key = name.lower().replace("_", "")
    if "sparsecategorical" in key:
        return SparseCategoricalAccuracy
    if key.startswith("binary") or key == "bce":
        return BinaryAccuracy
    if key.startswith("categorical") or key == "cce":
        return CategoricalAccuracy
    return None


def _shape(x: Any) -> tuple[int, ...]:
    if isinstance(x, tuple) and all(isinstance(d, (int, np.integer)) for d in x):
        return tuple(int(d) for d in x)
    shape = getattr(x, "shape", None)
    if shape is None:
        shape = np.shape(x)
    return tuple(int(d) for d in shape)


def _accuracy_from_shapes(true_shape: tuple[int, ...], pred_shape: tuple[int, ...]) -> type[Metric]:
    if len(pred_shape) <= 1 or pred_shape[-1] == 1:
        return BinaryAccuracy
    if len(true_shape) < len(pred_shape) or (true_shape and true_shape[-1] == 1):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


def get(
    identifier: str | Metric | Mapping[str, Any] | Callable[..., ArrayLike],
    *,
    loss: Any = None,
    y_true: Any = None,
    y_pred: Any = None,
) -> Metric:
    """Return a metric for a name, a metric object, a serialized dict or a function.

    Parameters
    ----------
    identifier : str, Metric, dict or callable
        A Metric is returned as it is. ``"accuracy"`` and ``"acc"`` (any case)
        become :class:`BinaryAccuracy`, :class:`SparseCategoricalAccuracy` or
        :class:`CategoricalAccuracy`: chosen by ``loss`` (binary, sparse
        categorical or categorical cross-entropy) when it tells, else by the
        shapes: ``y_pred`` with a last axis of 1 (or 1-D) means binary;
        ``y_true`` without the class axis, or with a last axis of 1, while
        ``y_pred``'s is larger means sparse; otherwise categorical. Other
        names: ``"mse"``/``"mean_squared_error"``, ``"mae"``/
        ``"mean_absolute_error"``, ``"binary_accuracy"``,
        ``"categorical_accuracy"``, ``"sparse_categorical_accuracy"``,
        ``"mean"`` and the class names. A string's metric is named by the
        string as written, as Keras logs it. A function ``fn(y_true, y_pred)``
        returning per-sample values is wrapped in :class:`MeanMetricWrapper`.
    loss : str, loss object or function, optional
        The compiled loss; its name (or class name) decides "accuracy".
    y_true, y_pred : array or shape tuple, optional
        A batch of targets and predictions (or their shapes) for "accuracy".

    Raises
    ------
    ValueError
        For an unknown name, or "accuracy" that neither the loss nor the
        shapes resolve.
    """
    f = "metrics.get()"
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, Mapping):
        return registry.deserialize(identifier, Metric, f)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            cls = _accuracy_from_loss(loss)
            if cls is None:
                if y_true is None or y_pred is None:
                    raise ValueError(
                        f"{f}: cannot tell which accuracy {identifier!r} means: the loss "
                        f"{loss!r} does not tell; pass y_true and y_pred (or their shapes)"
                    )
                cls = _accuracy_from_shapes(_shape(y_true), _shape(y_pred))
            return cls(name=identifier)
        if key not in _BY_NAME:
            raise ValueError(
                f"{f}: unknown metric {identifier!r}, expected 'accuracy', 'acc', 'mse', 'mae', "
                "'binary_accuracy', 'categorical_accuracy', 'sparse_categorical_accuracy', "
                "'mean_squared_error', 'mean_absolute_error', 'precision', 'recall', 'auc', "
                "'top_k_categorical_accuracy', 'sparse_top_k_categorical_accuracy', 'mean' or "
                "a class name"
            )
        return _BY_NAME[key](name=identifier)
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(
        f"{f}: identifier must be a str, a Metric, a dict or a function, "
        f"got {type(identifier).__name__}"
    )


def serialize(metric: Metric) -> dict[str, Any]:
    """Return ``{"class_name": ..., "config": ...}`` for a metric of a registered class
    (TypeError for others)."""
    return registry.serialize(metric, "metrics.serialize()")


from .confusion_metrics import (  # noqa: E402  (they subclass Metric, defined above)
    AUC,
    F1Score,
    MeanIoU,
    Precision,
    Recall,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    confusion_matrix,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)

_add_confusion_metrics()
