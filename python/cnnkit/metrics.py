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

from collections.abc import Callable, Mapping, Sequence
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
    threshold = _validate.real("binary_accuracy()", "threshold", threshold)
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


# -- confusion-count metrics ----------------------------------------------------------------
# Classification metrics built on confusion counts, with the Keras 3 names and formulas.
#
# :class:`Precision`, :class:`Recall`, :class:`AUC`, :class:`F1Score`,
# :class:`MeanIoU`, :class:`TopKCategoricalAccuracy` and
# :class:`SparseTopKCategoricalAccuracy` (all also in :mod:`cnnkit.metrics`), and
# :func:`confusion_matrix`. Counts are kept in float64 and weighted by
# ``sample_weight`` when given; a ratio whose denominator is 0 is 0 (Keras's
# ``divide_no_nan``).
#
# Keras's choices kept here: a prediction is positive when it is *strictly*
# greater than the threshold; :class:`AUC` counts at ``num_thresholds`` thresholds
# ``[-1e-7, 1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7]`` and integrates the ROC curve with
# the trapezoidal rule and the PR curve with the interpolation of Davis & Goadrich
# (2006), so both are approximations of the exact areas scikit-learn computes,
# exact when no two distinct scores fall between the same pair of thresholds.
# Top-k accuracy counts a label as found when its score is at least the k-th
# largest (ties count, as Keras's ``in_top_k``).

_EPS = 1e-7
_MAX_AUC_THRESHOLDS = 2**24


def _div(a: Any, b: Any) -> Any:
    """``a / b`` with 0 where ``b`` is 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _weights(f: str, sample_weight: ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray:
    if sample_weight is None:
        return np.ones(shape)
    w = _numeric(f, "sample_weight", sample_weight).astype(np.float64)
    while w.ndim < len(shape):
        w = w[..., None]
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"{f}: sample_weight of shape {np.shape(sample_weight)} does not broadcast to "
            f"y_pred of shape {shape}"
        ) from None


def _labels(f: str, arg: str, y: ArrayLike) -> np.ndarray:
    a = _numeric(f, arg, y)
    if a.size and (np.any(a != np.floor(a)) or a.min() < 0):
        raise ValueError(f"{f}: {arg} must hold class indices (integers >= 0)")
    return a.astype(np.int64)


def confusion_matrix(
    labels: ArrayLike,
    predictions: ArrayLike,
    num_classes: int | None = None,
    weights: ArrayLike | None = None,
) -> np.ndarray:
    """The confusion matrix of integer labels and predictions (as ``tf.math.confusion_matrix``).

    Entry ``[i, j]`` is the (weighted) number of samples of class ``i`` predicted as
    ``j``; rows are true classes, as in ``sklearn.metrics.confusion_matrix``.

    Parameters
    ----------
    labels, predictions : array_like of int, the same shape
        Class indices (any shape; all elements count).
    num_classes : int, optional
        Defaults to ``max(labels, predictions) + 1``.
    weights : array_like, optional
        One weight per element (broadcast); the result is then float64.

    Returns
    -------
    numpy.ndarray of shape (num_classes, num_classes)
        int64 without weights, float64 with.
    """
    f = "confusion_matrix()"
    t = _labels(f, "labels", labels).ravel()
    p = _labels(f, "predictions", predictions).ravel()
    if t.shape != p.shape:
        raise ValueError(
            f"{f}: labels and predictions must have the same size, got {np.shape(labels)} and "
            f"{np.shape(predictions)}"
        )
    top = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if num_classes is None:
        n = top
    else:
        # Above 2**31 - 1, num_classes**2 overflows int64 inside np.bincount.
        n = _validate.integer(f, "num_classes", num_classes, minimum=1, maximum=2**31 - 1)
        if top > n:
            raise ValueError(
                f"{f}: labels and predictions must be < num_classes={n}, got {top - 1}"
            )
    w = None
    if weights is not None:
        w = np.broadcast_to(_numeric(f, "weights", weights).astype(np.float64), np.shape(labels))
        w = w.ravel()
    try:
        counts = np.bincount(t * n + p, weights=w, minlength=n * n)
    except (MemoryError, ValueError) as exc:  # NumPy's "array is too big" is a ValueError
        raise MemoryError(
            f"{f}: a {n} x {n} confusion matrix ({8 * n * n} bytes) cannot be allocated"
        ) from exc
    counts = counts.reshape(n, n)
    return counts.astype(np.int64) if w is None else counts


class _ThresholdCounts(Metric):
    """Shared by Precision and Recall: true/false positives and negatives at thresholds."""

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        top_k: int | None = None,
        class_id: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        f = f"{type(self).__name__}()"
        values: list[Any]
        if thresholds is None:
            values = [0.5]
        elif isinstance(thresholds, (list, tuple)):
            values = list(thresholds)
        else:
            values = [thresholds]
        if not values:
            raise ValueError(f"{f}: thresholds must not be empty")
        self.thresholds_list = [
            _validate.real(f, "thresholds", t, low=0.0, high=1.0) for t in values
        ]
        self.thresholds = thresholds
        self.top_k = None if top_k is None else _validate.integer(f, "top_k", top_k, minimum=1)
        self.class_id = (
            None if class_id is None else _validate.integer(f, "class_id", class_id, minimum=0)
        )
        self.reset_state()

    def reset_state(self) -> None:
        n = len(self.thresholds_list)
        self.true_positives = np.zeros(n)
        self.false_positives = np.zeros(n)
        self.false_negatives = np.zeros(n)

    def update_state(  # type: ignore[override]
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> None:
        f = f"{type(self).__name__}.update_state()"
        t = _numeric(f, "y_true", y_true).astype(np.float64)
        p = _numeric(f, "y_pred", y_pred).astype(np.float64)
        if t.shape != p.shape and t.ndim == p.ndim - 1 and p.shape[-1] == 1:
            t = t[..., None]
        if t.shape != p.shape:
            raise ValueError(
                f"{f}: y_true and y_pred must have the same shape, got {t.shape} and {p.shape}"
            )
        w = _weights(f, sample_weight, p.shape)
        if self.top_k is not None:
            # Keras: only the top_k scores of each row can be positive.
            kth = -np.sort(-p, axis=-1)[..., min(self.top_k, p.shape[-1]) - 1 : self.top_k]
            p = np.where(p >= kth[..., :1], p, -np.inf)
        if self.class_id is not None:
            if p.ndim == 0 or self.class_id >= p.shape[-1]:
                raise ValueError(
                    f"{f}: class_id={self.class_id} needs y_pred with more than "
                    f"{self.class_id} classes on its last axis, got shape {p.shape}"
                )
            t, p, w = t[..., self.class_id], p[..., self.class_id], w[..., self.class_id]
        positive: np.ndarray = t.ravel() > 0.5
        scores, weights = p.ravel(), w.ravel()
        for i, thr in enumerate(self.thresholds_list):
            pos: np.ndarray = scores > thr
            self.true_positives[i] += np.sum(weights[pos & positive])
            self.false_positives[i] += np.sum(weights[pos & ~positive])
            self.false_negatives[i] += np.sum(weights[~pos & positive])

    def _value(self, ratio: np.ndarray) -> Any:
        return float(ratio[0]) if len(ratio) == 1 else ratio

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "thresholds": self.thresholds,
            "top_k": self.top_k,
            "class_id": self.class_id,
        }


@register_serializable(package="cnnkit")
class Precision(_ThresholdCounts):
    """``TP / (TP + FP)`` over every element (multi-label), as Keras's ``Precision``.

    Parameters
    ----------
    thresholds : float or list of float in [0, 1], default 0.5
        A prediction is positive when it is greater; a list gives one result per
        threshold (an array).
    top_k : int, optional
        Only the top_k scores of each row can be positive.
    class_id : int, optional
        Only this class (column of the last axis) counts.
    name : str, default "precision"
    """

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        top_k: int | None = None,
        class_id: int | None = None,
        name: str = "precision",
    ) -> None:
        super().__init__(thresholds, top_k, class_id, name)

    def result(self) -> Any:
        return self._value(_div(self.true_positives, self.true_positives + self.false_positives))


@register_serializable(package="cnnkit")
class Recall(_ThresholdCounts):
    """``TP / (TP + FN)`` over every element (multi-label), as Keras's ``Recall``.

    Parameters as :class:`Precision`; ``name`` defaults to ``"recall"``.
    """

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        top_k: int | None = None,
        class_id: int | None = None,
        name: str = "recall",
    ) -> None:
        super().__init__(thresholds, top_k, class_id, name)

    def result(self) -> Any:
        return self._value(_div(self.true_positives, self.true_positives + self.false_negatives))


@register_serializable(package="cnnkit")
class AUC(Metric):
    """Area under the ROC or precision-recall curve, approximated as Keras does.

    Parameters
    ----------
    num_thresholds : int >= 2, default 200
    curve : {"ROC", "PR"}, default "ROC"
    summation_method : {"interpolation", "minoring", "majoring"}, default "interpolation"
        "interpolation": trapezoids for ROC, Davis & Goadrich for PR; the others are
        Riemann sums with the lower or upper of each pair of heights.
    from_logits : bool, default False
        Apply a sigmoid to y_pred first.
    name : str, default "auc"

    All elements count as independent binary decisions (Keras's default
    ``multi_label=False``); ``multi_label`` and ``label_weights`` are not supported.
    """

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        name: str = "auc",
        from_logits: bool = False,
    ) -> None:
        super().__init__(name)
        f = "AUC()"
        # 2**24 thresholds already step by 6e-8, below float32's spacing near 1; a larger count
        # only costs memory (five float64 counters each) and time.
        self.num_thresholds = _validate.integer(
            f, "num_thresholds", num_thresholds, minimum=2, maximum=_MAX_AUC_THRESHOLDS
        )
        if not isinstance(curve, str) or curve.upper() not in ("ROC", "PR"):
            raise ValueError(f"{f}: curve must be 'ROC' or 'PR', got {curve!r}")
        self.curve = curve.upper()
        methods = ("interpolation", "minoring", "majoring")
        if not isinstance(summation_method, str) or summation_method.lower() not in methods:
            raise ValueError(
                f"{f}: summation_method must be one of {', '.join(methods)}, got "
                f"{summation_method!r}"
            )
        self.summation_method = summation_method.lower()
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"{f}: from_logits must be a bool, got {type(from_logits).__name__}")
        self.from_logits = bool(from_logits)
        n = self.num_thresholds
        self.thresholds = np.arange(n, dtype=np.float64) / (n - 1)
        self.thresholds[0], self.thresholds[-1] = 0.0 - _EPS, 1.0 + _EPS
        self.reset_state()

    def reset_state(self) -> None:
        n = self.num_thresholds
        self.true_positives = np.zeros(n)
        self.false_positives = np.zeros(n)
        self.true_negatives = np.zeros(n)
        self.false_negatives = np.zeros(n)

    def update_state(  # type: ignore[override]
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> None:
        f = "AUC.update_state()"
        t = _numeric(f, "y_true", y_true).astype(np.float64)
        p = _numeric(f, "y_pred", y_pred).astype(np.float64)
        if t.shape != p.shape and t.ndim == p.ndim - 1 and p.shape[-1:] == (1,):
            t = t[..., None]
        if t.shape != p.shape:
            raise ValueError(
                f"{f}: y_true and y_pred must have the same shape, got {t.shape} and {p.shape}"
            )
        if self.from_logits:
            p = 1.0 / (1.0 + np.exp(-p))
        w = _weights(f, sample_weight, p.shape).ravel()
        pos = t.ravel() > 0.5
        scores = p.ravel()
        # Per threshold, the weight of the scores above it: a sort and cumulative sums
        # instead of one comparison per threshold.
        order = np.argsort(scores, kind="stable")
        s, wp, wn = scores[order], (w * pos)[order], (w * ~pos)[order]
        above_p = np.concatenate([np.cumsum(wp[::-1])[::-1], [0.0]])
        above_n = np.concatenate([np.cumsum(wn[::-1])[::-1], [0.0]])
        first_above = np.searchsorted(s, self.thresholds, side="right")
        tp, fp = above_p[first_above], above_n[first_above]
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += wp.sum() - tp
        self.true_negatives += wn.sum() - fp

    def result(self) -> float:
        tp, fp, tn, fn = (
            self.true_positives,
            self.false_positives,
            self.true_negatives,
            self.false_negatives,
        )
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr(tp, fp, fn)
        if self.curve == "ROC":
            x, y = _div(fp, fp + tn), _div(tp, tp + fn)
        else:
            x, y = _div(tp, tp + fn), _div(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    @staticmethod
    def _interpolated_pr(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
        # Between two thresholds precision follows tp / (tp + fp) with fp growing linearly
        # in tp; the integral over recall has this closed form (Davis & Goadrich).
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _div(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, _div(p[:-1], np.maximum(p[1:], 0)), 1.0)
        increment = _div(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0))
        return float(np.sum(increment))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "from_logits": self.from_logits,
        }


@register_serializable(package="cnnkit")
class F1Score(Metric):
    """The F1 score of one-hot (or multi-label) targets, as Keras's ``F1Score``.

    Per class: ``2 * precision * recall / (precision + recall)`` from weighted counts.

    Parameters
    ----------
    average : {None, "micro", "macro", "weighted"}, default None
        None returns one score per class (an array: use an averaged form in
        ``compile``); "micro" pools the counts; "macro" is the plain mean over
        classes; "weighted" weighs each class by its (weighted) support.
    threshold : float in (0, 1], optional
        Predictions above it are positive; None marks each row's largest score.
    name : str, default "f1_score"
    """

    def __init__(
        self, average: str | None = None, threshold: float | None = None, name: str = "f1_score"
    ) -> None:
        super().__init__(name)
        f = "F1Score()"
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(
                f"{f}: average must be None, 'micro', 'macro' or 'weighted', got {average!r}"
            )
        self.average = average
        self.threshold = (
            None
            if threshold is None
            else _validate.real(f, "threshold", threshold, low=0.0, high=1.0, low_open=True)
        )
        self._counts: np.ndarray | None = None

    def reset_state(self) -> None:
        self._counts = None

    def update_state(  # type: ignore[override]
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> None:
        f = "F1Score.update_state()"
        t = _numeric(f, "y_true", y_true).astype(np.float64)
        p = _numeric(f, "y_pred", y_pred).astype(np.float64)
        if p.ndim != 2 or t.shape != p.shape:
            raise ValueError(
                f"{f}: y_true and y_pred must have the same shape (batch, classes), got "
                f"{t.shape} and {p.shape}"
            )
        if self.threshold is None:
            p = (p == p.max(axis=-1, keepdims=True)).astype(np.float64)
        else:
            p = (p > self.threshold).astype(np.float64)
        w = _weights(f, sample_weight, p.shape)
        counts = np.stack(
            [
                np.sum(w * p * t, axis=0),
                np.sum(w * p * (1 - t), axis=0),
                np.sum(w * (1 - p) * t, axis=0),
                np.sum(w * t, axis=0),
            ]
        )
        if self._counts is not None and self._counts.shape != counts.shape:
            raise ValueError(
                f"{f}: y_pred has {p.shape[1]} classes, earlier batches had {self._counts.shape[1]}"
            )
        self._counts = counts if self._counts is None else self._counts + counts

    def result(self) -> Any:
        if self._counts is None:
            return 0.0 if self.average is not None else np.zeros(0)
        tp, fp, fn, support = self._counts
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        precision = _div(tp, tp + fp)
        recall = _div(tp, tp + fn)
        f1 = _div(2 * precision * recall, precision + recall)
        if self.average == "weighted":
            return float(_div(np.sum(f1 * support), np.sum(support)))
        if self.average == "macro":
            return float(np.mean(f1))
        if self.average == "micro":
            return float(f1)
        return f1

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "average": self.average, "threshold": self.threshold}


@register_serializable(package="cnnkit")
class MeanIoU(Metric):
    """The mean intersection-over-union of the classes, as Keras's ``MeanIoU``.

    A (weighted) confusion matrix is accumulated; class ``c`` has IoU
    ``cm[c, c] / (row_c + column_c - cm[c, c])`` and the mean is over the classes
    that appear in the targets or the predictions.

    Parameters
    ----------
    num_classes : int >= 2
    ignore_class : int, optional
        Target elements of this class are left out.
    sparse_y_true, sparse_y_pred : bool, default True
        False: the argument has a class axis (``axis``) and its arg-max is taken.
    axis : int, default -1
    name : str, default "mean_io_u"
    """

    def __init__(
        self,
        num_classes: int,
        name: str = "mean_io_u",
        ignore_class: int | None = None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
    ) -> None:
        super().__init__(name)
        f = "MeanIoU()"
        self.num_classes = _validate.integer(f, "num_classes", num_classes, minimum=2)
        self.ignore_class = (
            None if ignore_class is None else _validate.integer(f, "ignore_class", ignore_class)
        )
        self.sparse_y_true = bool(sparse_y_true)
        self.sparse_y_pred = bool(sparse_y_pred)
        self.axis = _validate.integer(f, "axis", axis)
        self.reset_state()

    def reset_state(self) -> None:
        self.total_cm = np.zeros((self.num_classes, self.num_classes))

    def update_state(  # type: ignore[override]
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> None:
        f = "MeanIoU.update_state()"
        t = _numeric(f, "y_true", y_true)
        p = _numeric(f, "y_pred", y_pred)
        if not self.sparse_y_true:
            t = np.argmax(t, axis=self.axis)
        if not self.sparse_y_pred:
            p = np.argmax(p, axis=self.axis)
        t, p = t.ravel(), p.ravel()
        if t.shape != p.shape:
            raise ValueError(
                f"{f}: y_true and y_pred must hold as many labels, got {np.shape(y_true)} and "
                f"{np.shape(y_pred)}"
            )
        w = (
            np.ones(t.shape)
            if sample_weight is None
            else np.broadcast_to(
                _numeric(f, "sample_weight", sample_weight).astype(np.float64), np.shape(y_true)
            ).ravel()
        )
        if self.ignore_class is not None:
            keep = t != self.ignore_class
            t, p, w = t[keep], p[keep], w[keep]
        self.total_cm += confusion_matrix(t, p, self.num_classes, w)

    def result(self) -> float:
        cm = self.total_cm
        tp = np.diag(cm)
        denominator = cm.sum(axis=0) + cm.sum(axis=1) - tp
        valid = np.count_nonzero(denominator)
        return float(_div(np.sum(_div(tp, denominator)), valid))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "ignore_class": self.ignore_class,
            "sparse_y_true": self.sparse_y_true,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


def _in_top_k(f: str, labels: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    # k <= 0 would index the sorted scores from the end: every label "found".
    k = _validate.integer(f, "k", k, minimum=1)
    if p.ndim < 1 or p.shape[-1] == 0:
        raise ValueError(f"{f}: y_pred must have shape (..., classes), got {p.shape}")
    if labels.shape != p.shape[:-1]:
        raise ValueError(
            f"{f}: y_true must hold one label per row of y_pred, shape {p.shape[:-1]}, got "
            f"{labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= p.shape[-1]):
        raise ValueError(f"{f}: y_true must hold class indices in [0, {p.shape[-1]})")
    kth = -np.sort(-p, axis=-1)[..., min(k, p.shape[-1]) - 1]
    target = np.take_along_axis(p, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    return (target >= kth).astype(np.float64)


def top_k_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike, k: int = 5) -> np.ndarray:
    """1.0 where the class of one-hot ``y_true`` is among the ``k`` top scores, per row."""
    f = "top_k_categorical_accuracy()"
    t = _numeric(f, "y_true", y_true)
    p = _numeric(f, "y_pred", y_pred)
    if t.shape != p.shape:
        raise ValueError(
            f"{f}: y_true (one-hot) and y_pred must have the same shape, got {t.shape} and "
            f"{p.shape}"
        )
    return _in_top_k(f, np.argmax(t, axis=-1), p, k)


def sparse_top_k_categorical_accuracy(
    y_true: ArrayLike, y_pred: ArrayLike, k: int = 5
) -> np.ndarray:
    """1.0 where the integer label ``y_true`` is among the ``k`` top scores, per row."""
    f = "sparse_top_k_categorical_accuracy()"
    t = _labels(f, "y_true", y_true)
    p = _numeric(f, "y_pred", y_pred)
    if t.ndim == p.ndim and t.shape[-1:] == (1,):
        t = t[..., 0]
    return _in_top_k(f, t, p, k)


@register_serializable(package="cnnkit")
class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot target's class is among the ``k`` top scores."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy") -> None:
        k = _validate.integer("TopKCategoricalAccuracy()", "k", k, minimum=1)
        super().__init__(top_k_categorical_accuracy, name, k=k)
        self.k = k


@register_serializable(package="cnnkit")
class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer target is among the ``k`` top scores."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy") -> None:
        k = _validate.integer("SparseTopKCategoricalAccuracy()", "k", k, minimum=1)
        super().__init__(sparse_top_k_categorical_accuracy, name, k=k)
        self.k = k


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


_add_confusion_metrics()
