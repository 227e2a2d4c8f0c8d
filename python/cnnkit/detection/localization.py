"""Classification with localization: one object (or none) per image.

The target of an image is the course's vector ``[pc, bx, by, bh, bw, c_1 .. c_C]``:
``pc`` is 1 when the image holds an object, ``(bx, by)`` its midpoint and
``(bh, bw)`` its height and width, relative to the image (0..1), and ``c`` a
one-hot class. When ``pc`` is 0 the other entries are "don't care".

The network outputs raw values of the same length: ``pc = sigmoid(t_0)``,
``(bx, by, bh, bw) = sigmoid(t_1 .. t_4)`` (all four lie in [0, 1]) and the
class probabilities ``softmax(t_5 ..)``.

:func:`localization_cnn` is the small network the examples and tests train for
this (and for landmark regression, which needs the same shape of head).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import autograd as ag
from ..autograd import Tensor

__all__ = ["LocalizationLoss", "decode_localization", "localization_cnn"]


def _check(y_true: Any, y_pred: Any, fn: str) -> tuple[np.ndarray, Tensor]:
    pred = y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)
    target = np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true)
    if pred.ndim != 2 or pred.shape[1] < 6:
        raise ValueError(f"{fn}: y_pred must have shape (N, 5 + C) with C >= 1, got {pred.shape}")
    if target.shape != pred.shape:
        raise ValueError(
            f"{fn}: y_true must have the shape of y_pred {pred.shape}, got {target.shape}"
        )
    return target.astype(pred.dtype, copy=False), pred


class LocalizationLoss:
    """Loss for classification with localization, for ``model.compile(loss=...)``.

    Per image: the logistic loss of ``pc``, plus, only where ``pc = 1``, the
    negative log-likelihood of the class (weighted by ``class_weight``) and the
    squared error of the four box numbers (weighted by ``box_weight``); the
    result is the batch mean.
    """

    def __init__(self, *, box_weight: float = 5.0, class_weight: float = 1.0) -> None:
        for name, value in (("box_weight", box_weight), ("class_weight", class_weight)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"LocalizationLoss(): {name} must be finite and >= 0, got {value}")
        self.box_weight = float(box_weight)
        self.class_weight = float(class_weight)
        self.name = "localization_loss"

    def __call__(self, y_true: Any, y_pred: Any) -> Tensor:
        target, t = _check(y_true, y_pred, "LocalizationLoss")
        dtype = t.dtype.type
        obj = target[:, 0:1]
        logit = t[:, 0:1]
        presence = (ag.softplus(logit) - logit * obj).sum()
        box = (ag.square(ag.sigmoid(t[:, 1:5]) - target[:, 1:5]) * obj).sum()
        cls = -(ag.log_softmax(t[:, 5:]) * (target[:, 5:] * obj)).sum()
        total = presence + dtype(self.box_weight) * box + dtype(self.class_weight) * cls
        return total / dtype(max(len(target), 1))

    def get_config(self) -> dict[str, Any]:
        return {"box_weight": self.box_weight, "class_weight": self.class_weight}


def decode_localization(raw: Any) -> dict[str, np.ndarray]:
    """Raw outputs ``(N, 5 + C)`` to probabilities, boxes and classes.

    Returns
    -------
    dict
        ``"pc"`` (N,), ``"box"`` (N, 4) as ``[bx, by, bh, bw]`` relative to the
        image, ``"class_probabilities"`` (N, C) and ``"classes"`` (N,) int64.
    """
    t = np.asarray(raw.data if isinstance(raw, Tensor) else raw)
    if t.ndim != 2 or t.shape[1] < 6:
        raise ValueError(f"decode_localization(): raw must have shape (N, 5 + C), got {t.shape}")
    sig = ag.sigmoid(t[:, :5]).data
    probs = ag.softmax(t[:, 5:]).data
    return {
        "pc": sig[:, 0],
        "box": sig[:, 1:5],
        "class_probabilities": probs,
        "classes": probs.argmax(axis=1).astype(np.int64),
    }


def localization_cnn(
    input_shape: Sequence[int],
    outputs: int,
    *,
    filters: Sequence[int] = (16, 32),
    dense: int = 64,
    seed: int | None = 0,
) -> Any:
    """A small CNN that regresses a fixed-length vector per image.

    One block of ``Conv2D(f, 3, padding="same", activation="relu")`` and 2x2 max
    pooling per entry of ``filters``, then ``Flatten``, ``Dense(dense, "relu")``
    and a linear ``Dense(outputs)``: raw values for :class:`LocalizationLoss`
    (``outputs = 5 + C``) or coordinates for landmark regression (``2 L``).

    Parameters
    ----------
    input_shape : (height, width, channels)
    outputs : int
        Length of the output vector.
    filters : sequence of int, default (16, 32)
        Channels of each convolution block.
    dense : int, default 64
        Units of the hidden dense layer.
    seed : int or None, default 0
        Seed of the weights (see :class:`cnnkit.Sequential`).

    Returns
    -------
    cnnkit.Sequential
        Uncompiled, output ``(N, outputs)``.
    """
    from .. import layers, models

    fn = "localization_cnn()"
    shape = _ints(input_shape, fn, "input_shape")
    if len(shape) != 3 or not all(_positive_int(v) for v in shape):
        raise ValueError(
            f"{fn}: input_shape must be (height, width, channels) of positive ints, "
            f"got {input_shape!r}"
        )
    blocks = _ints(filters, fn, "filters")
    if not blocks or not all(_positive_int(f) for f in blocks):
        raise ValueError(
            f"{fn}: filters must be a non-empty sequence of positive ints, got {filters!r}"
        )
    for name, value in (("outputs", outputs), ("dense", dense)):
        if not _positive_int(value):
            raise ValueError(f"{fn}: {name} must be a positive int, got {value!r}")
    stack: list[Any] = [layers.Input(shape)]
    for f in blocks:
        stack += [
            layers.Conv2D(int(f), 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
        ]
    stack += [
        layers.Flatten(),
        layers.Dense(int(dense), activation="relu"),
        layers.Dense(int(outputs)),
    ]
    return models.Sequential(stack, seed=seed)


def _ints(value: Any, fn: str, name: str) -> tuple:
    # tuple() of an int was "'int' object is not iterable", naming neither function nor argument.
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(
            f"{fn}: {name} must be a sequence of positive ints, got {type(value).__name__} "
            f"{value!r}"
        )
    return tuple(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value > 0)
