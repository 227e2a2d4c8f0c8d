"""Keras-named losses on :mod:`cnnkit.autograd` tensors.

A loss is called as ``loss(y_true, y_pred, sample_weight=None)`` and returns a
scalar :class:`~cnnkit.autograd.Tensor`: the per-element loss (reduced over the
class axis where there is one) averaged over everything else, Keras's
``"sum_over_batch_size"``. ``y_true`` is data (an array); ``y_pred`` carries the
gradient. Every formula is the numerically stable form: log-softmax and
softplus for logits, clipped probabilities otherwise (as Keras clips to
``[1e-7, 1 - 1e-7]``), so no ``log(0)`` appears.

Any callable ``(y_true, y_pred) -> Tensor`` also works as a loss in
:meth:`cnnkit.Model.compile`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import _validate
from . import autograd as ag
from .autograd import Tensor
from .saving import registry
from .saving.registry import register_serializable, snake_case

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SigmoidFocalLoss",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "deserialize",
    "get",
    "huber",
    "mean_absolute_error",
    "mean_squared_error",
    "serialize",
    "sigmoid_focal_loss",
    "sparse_categorical_crossentropy",
]

_EPSILON = 1e-7


def _pred(y_pred: Any) -> Tensor:
    t = y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)
    if t.dtype.kind != "f":
        raise TypeError(f"loss: y_pred must be a floating-point tensor, got dtype {t.dtype}")
    return t


def labels_message(what: str, y: np.ndarray) -> str:
    """The message for non-numeric labels ``y``; ``what`` starts it (``"fit(): y"``)."""
    sample = ", ".join(repr(str(v)) for v in np.unique(y.ravel()[:1000].astype(str))[:3])
    return (
        f"{what} must hold numbers, got dtype {y.dtype} (values such as {sample}); "
        "allowed labels are class indices 0..C-1 (sparse_categorical_crossentropy), one-hot "
        "rows (categorical_crossentropy), 0/1 (binary_crossentropy) or real targets: map "
        "string labels to integers first, e.g. classes, y = np.unique(y, return_inverse=True)"
    )


def _numeric(y: np.ndarray, name: str) -> np.ndarray:
    if y.dtype.kind in "biuf":
        return y
    if y.dtype.kind == "O":
        try:
            return y.astype(np.float64)
        except (TypeError, ValueError):
            pass
    raise TypeError(labels_message(f"{name}(): y_true", y))


def _true(y_true: Any, like: Tensor, name: str) -> np.ndarray:
    y = _numeric(np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true), name)
    if y.ndim == like.ndim - 1 and like.shape[-1:] == (1,) and y.shape == like.shape[:-1]:
        # Labels (N,) against predictions (N, 1), as Keras expands them.
        y = y[..., None]
    if y.shape != like.shape:
        raise ValueError(
            f"{name}(): y_true must have the shape of y_pred {like.shape}, got {y.shape}"
        )
    return y.astype(like.dtype, copy=False)


_warned_softmax_logits = False


def _warn_if_probabilities(p: Tensor, name: str) -> None:
    """Keras warns when a from_logits=True loss gets a softmax output; cnnkit's tensors do
    not record the op that made them, so the test is on the values: rows that are all in
    [0, 1] and sum to 1 (random logits essentially never do)."""
    global _warned_softmax_logits
    if _warned_softmax_logits or p.shape[-1] < 2 or p.size == 0:
        return
    d = p.data
    if d.min() >= 0 and d.max() <= 1 and np.allclose(d.sum(axis=-1), 1, atol=1e-4):
        _warned_softmax_logits = True
        warnings.warn(
            f"{name}: a crossentropy loss with from_logits=True got y_pred that looks like "
            "probabilities (every row is in [0, 1] and sums to 1, as a softmax output is): "
            "drop the softmax activation of the last layer, or use from_logits=False",
            UserWarning,
            stacklevel=3,
        )


def _clipped_log(p: Tensor, eps: float) -> Tensor:
    return ag.log(ag.clip(p, eps, 1 - eps))


def _smoothing(where: str, value: Any) -> float:
    # Outside [0, 1] the smoothed targets leave [0, 1]; NaN made every loss NaN.
    return _validate.probability(where, "label_smoothing", value)


def _real(where: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: {arg} must be a real number, got {type(value).__name__}")
    return float(value)


def _delta(where: str, value: Any) -> float:
    # inf and NaN made every loss NaN.
    delta = _real(where, "delta", value)
    if not (0 < delta < np.inf):
        raise ValueError(f"{where}: delta must be positive and finite, got {delta!r}")
    return delta


def _focal(where: str, alpha: Any, gamma: Any) -> tuple[float, float]:
    # A NaN alpha silently turned the class weighting off; NaN or -inf gamma gave NaN or inf.
    alpha, gamma = _real(where, "alpha", alpha), _real(where, "gamma", gamma)
    if not (alpha <= 1 and np.isfinite(alpha)):
        raise ValueError(f"{where}: alpha must be <= 1 (negative: no weighting), got {alpha!r}")
    if not (gamma >= 0 and np.isfinite(gamma)):
        raise ValueError(f"{where}: gamma must be a finite number >= 0, got {gamma!r}")
    return alpha, gamma


def categorical_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0
) -> Tensor:
    """Per-sample cross-entropy with one-hot (or soft) targets on the last axis."""
    p = _pred(y_pred)
    y = _true(y_true, p, "categorical_crossentropy")
    label_smoothing = _smoothing("categorical_crossentropy()", label_smoothing)
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    if from_logits:
        _warn_if_probabilities(p, "loss")
        logp = ag.log_softmax(p, axis=-1)
    else:
        logp = _clipped_log(p / p.sum(axis=-1, keepdims=True), _EPSILON)
    return -(logp * y).sum(axis=-1)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> Tensor:
    """Per-sample cross-entropy with integer class targets (y_pred without its class axis)."""
    p = _pred(y_pred)
    labels = _numeric(
        np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true),
        "sparse_categorical_crossentropy",
    )
    if labels.ndim == p.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != p.shape[:-1]:
        raise ValueError(
            "sparse_categorical_crossentropy(): y_true must hold one class index per row of "
            f"y_pred, shape {p.shape[:-1]}, got {labels.shape}"
        )
    if labels.size and (
        labels.dtype.kind not in "iuf"
        or np.any(labels != np.floor(labels))
        or labels.min() < 0
        or labels.max() >= p.shape[-1]
    ):
        raise ValueError(
            "sparse_categorical_crossentropy(): y_true must hold integer class indices in "
            f"[0, {p.shape[-1]}), got values from {labels.min()} to {labels.max()}"
        )
    one_hot = np.eye(p.shape[-1], dtype=p.dtype)[labels.astype(np.int64)]
    return categorical_crossentropy(one_hot, p, from_logits=from_logits)


def binary_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0
) -> Tensor:
    """Per-sample binary cross-entropy, averaged over the last axis."""
    p = _pred(y_pred)
    y = _true(y_true, p, "binary_crossentropy")
    label_smoothing = _smoothing("binary_crossentropy()", label_smoothing)
    if label_smoothing:
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        # -y log(sigmoid(x)) - (1 - y) log(1 - sigmoid(x)) = softplus(x) - y x
        elementwise = ag.softplus(p) - p * y
    else:
        elementwise = -(y * _clipped_log(p, _EPSILON) + (1 - y) * _clipped_log(1 - p, _EPSILON))
    return elementwise.mean(axis=-1)


def mean_squared_error(y_true: Any, y_pred: Any) -> Tensor:
    p = _pred(y_pred)
    return ag.square(p - _true(y_true, p, "mean_squared_error")).mean(axis=-1)


def mean_absolute_error(y_true: Any, y_pred: Any) -> Tensor:
    p = _pred(y_pred)
    return ag.abs(p - _true(y_true, p, "mean_absolute_error")).mean(axis=-1)


def huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> Tensor:
    """Squared error for residuals within ``delta``, linear beyond (Keras's Huber)."""
    p = _pred(y_pred)
    delta = _delta("huber()", delta)
    r = ag.abs(p - _true(y_true, p, "huber"))
    quadratic = ag.minimum(r, delta)
    return (0.5 * ag.square(quadratic) + delta * (r - quadratic)).mean(axis=-1)


def sigmoid_focal_loss(y_true: Any, y_pred: Any, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Per-sample focal loss on logits (Lin et al., RetinaNet), averaged over the last axis.

    Elementwise it is torchvision's ``sigmoid_focal_loss``:
    ``alpha_t * (1 - p_t)**gamma * BCE(sigmoid(y_pred), y_true)`` (see
    :func:`cnnkit.ops.sigmoid_focal_loss`); a negative ``alpha`` turns the class weighting off.
    ``1 - p_t`` is taken as ``sigmoid(x) (1 - y) + sigmoid(-x) y``, which stays accurate
    where the sigmoid saturates.
    """
    p = _pred(y_pred)
    y = _true(y_true, p, "sigmoid_focal_loss")
    alpha, gamma = _focal("sigmoid_focal_loss()", alpha, gamma)
    # softplus(x) - x y without its cancellation where x is large and y = 1.
    loss = ag.softplus(-p) * y + ag.softplus(p) * (1 - y)
    if gamma:
        miss = ag.sigmoid(p) * (1 - y) + ag.sigmoid(-p) * y
        if gamma < 1:  # the derivative of m**gamma is infinite at m = 0
            miss = ag.maximum(miss, np.finfo(p.dtype).tiny)
        loss = loss * miss**gamma
    if alpha >= 0:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss.mean(axis=-1)


class Loss:
    """Base class: subclasses define :meth:`call` returning per-sample losses."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or snake_case(type(self).__name__)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        per_sample = self.call(y_true, y_pred)
        if sample_weight is None:
            return per_sample.mean()
        w = np.asarray(sample_weight, dtype=per_sample.dtype)
        try:
            w = np.broadcast_to(
                w.reshape(w.shape + (1,) * (per_sample.ndim - w.ndim)), per_sample.shape
            )
        except ValueError:
            raise ValueError(
                f"{self.name}: sample_weight must broadcast to the per-sample loss shape "
                f"{per_sample.shape}, got {w.shape}"
            ) from None
        return (per_sample * w).sum() / per_sample.dtype.type(max(per_sample.size, 1))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)


@register_serializable(package="cnnkit")
class CategoricalCrossentropy(Loss):
    def __init__(
        self, from_logits: bool = False, label_smoothing: float = 0.0, name: str | None = None
    ) -> None:
        super().__init__(name or "categorical_crossentropy")
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(f"{type(self).__name__}()", label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        return categorical_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


@register_serializable(package="cnnkit")
class SparseCategoricalCrossentropy(Loss):
    def __init__(self, from_logits: bool = False, name: str | None = None) -> None:
        super().__init__(name or "sparse_categorical_crossentropy")
        self.from_logits = bool(from_logits)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


@register_serializable(package="cnnkit")
class BinaryCrossentropy(Loss):
    def __init__(
        self, from_logits: bool = False, label_smoothing: float = 0.0, name: str | None = None
    ) -> None:
        super().__init__(name or "binary_crossentropy")
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(f"{type(self).__name__}()", label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        return binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


@register_serializable(package="cnnkit")
class MeanSquaredError(Loss):
    def __init__(self, name: str | None = None) -> None:
        super().__init__(name or "mean_squared_error")

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        return mean_squared_error(y_true, y_pred)


@register_serializable(package="cnnkit")
class MeanAbsoluteError(Loss):
    def __init__(self, name: str | None = None) -> None:
        super().__init__(name or "mean_absolute_error")

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        return mean_absolute_error(y_true, y_pred)


@register_serializable(package="cnnkit")
class Huber(Loss):
    def __init__(self, delta: float = 1.0, name: str | None = None) -> None:
        super().__init__(name or "huber_loss")
        self.delta = _delta("Huber()", delta)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        return huber(y_true, y_pred, self.delta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}


@register_serializable(package="cnnkit")
class SigmoidFocalLoss(Loss):
    """Focal loss on logits for dense detectors (RetinaNet), torchvision's ``sigmoid_focal_loss``
    with ``reduction="mean"`` (the Loss base class averages)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, name: str | None = None) -> None:
        super().__init__(name or "sigmoid_focal_loss")
        self.alpha, self.gamma = _focal("SigmoidFocalLoss()", alpha, gamma)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        return sigmoid_focal_loss(y_true, y_pred, self.alpha, self.gamma)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


# Keras's names for the built-in losses, in lower case (the class names work too).
_ALIASES: dict[str, type[Loss]] = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber,
    "huber_loss": Huber,
    "sigmoid_focal_loss": SigmoidFocalLoss,
}


def get(identifier: Any) -> Any:
    """A loss from a Keras name (``"mse"``, ``"categorical_crossentropy"``, ...) or a
    registered class name, a serialized dict, a :class:`Loss`, or any callable
    ``(y_true, y_pred) -> Tensor``."""
    where = "losses.get()"
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower()) or registry.get_registered_object(identifier, Loss)
        if cls is None:
            raise ValueError(
                f"{where}: unknown name {identifier!r}; known losses: {', '.join(sorted(_ALIASES))}"
            )
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(
        f"{where}: identifier must be a name, a dict, a Loss or a callable, got "
        f"{type(identifier).__name__}"
    )


def serialize(loss: Any) -> dict[str, Any]:
    """``{"class_name", "config"}`` of a loss of a registered class.

    Raises
    ------
    TypeError
        For other losses (plain functions, unregistered classes): a model compiled with
        them is saved with their name and loads with ``custom_objects``.
    """
    return registry.serialize(loss, "losses.serialize()")


def deserialize(config: Any, custom_objects: dict[str, Any] | None = None) -> Loss:
    """The inverse of :func:`serialize`; only registered classes are constructed."""
    return registry.deserialize(config, Loss, "losses.deserialize()", custom_objects)
