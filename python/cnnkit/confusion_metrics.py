"""Classification metrics built on confusion counts, with the Keras 3 names and formulas.

:class:`Precision`, :class:`Recall`, :class:`AUC`, :class:`F1Score`,
:class:`MeanIoU`, :class:`TopKCategoricalAccuracy` and
:class:`SparseTopKCategoricalAccuracy` (all also in :mod:`cnnkit.metrics`), and
:func:`confusion_matrix`. Counts are kept in float64 and weighted by
``sample_weight`` when given; a ratio whose denominator is 0 is 0 (Keras's
``divide_no_nan``).

Keras's choices kept here: a prediction is positive when it is *strictly*
greater than the threshold; :class:`AUC` counts at ``num_thresholds`` thresholds
``[-1e-7, 1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7]`` and integrates the ROC curve with
the trapezoidal rule and the PR curve with the interpolation of Davis & Goadrich
(2006), so both are approximations of the exact areas scikit-learn computes,
exact when no two distinct scores fall between the same pair of thresholds.
Top-k accuracy counts a label as found when its score is at least the k-th
largest (ties count, as Keras's ``in_top_k``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _validate
from .metrics import MeanMetricWrapper, Metric, _numeric
from .saving.registry import register_serializable

__all__ = [
    "AUC",
    "F1Score",
    "MeanIoU",
    "Precision",
    "Recall",
    "SparseTopKCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "confusion_matrix",
    "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
]

_EPS = 1e-7


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
        n = _validate.integer(f, "num_classes", num_classes, minimum=1)
        if top > n:
            raise ValueError(
                f"{f}: labels and predictions must be < num_classes={n}, got {top - 1}"
            )
    if weights is None:
        return np.bincount(t * n + p, minlength=n * n).reshape(n, n).astype(np.int64)
    w = np.broadcast_to(_numeric(f, "weights", weights).astype(np.float64), np.shape(labels))
    return np.bincount(t * n + p, weights=w.ravel(), minlength=n * n).reshape(n, n)


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
        self.num_thresholds = _validate.integer(f, "num_thresholds", num_thresholds, minimum=2)
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
        inner = [(i + 1) / (n - 1) for i in range(n - 2)]
        self.thresholds = np.array([0.0 - _EPS, *inner, 1.0 + _EPS])
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
