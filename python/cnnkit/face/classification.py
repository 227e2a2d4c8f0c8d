"""Classification pre-training of a face encoder: cosine logits with an additive margin.

The triplet loss sees, per step, the few negatives of one P x K batch; a softmax over every
training identity compares each image with all of them at once, through one learned
"proxy" encoding per identity. Normalising both the encodings and the proxies makes the
logits cosines, so the decision is the same angle the verification distance measures
(NormFace, Wang et al. 2017), and subtracting a margin from the true class's cosine
(CosFace / AM-softmax, Wang et al. 2018) asks every image to be closer to its own proxy
than to any other by that margin -- the one-shot recognition problem, trained directly.
The classifier is discarded afterwards: only the encoder is kept, and it applies to people
it never saw exactly as a triplet-trained one does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from .. import autograd as ag
from ..autograd import Tensor
from ..layers import Layer
from ..layers.normalization import unit_normalize
from ..losses import Loss, sparse_categorical_crossentropy
from ..saving.registry import register_serializable

__all__ = ["CosineClassifier", "MarginSoftmaxLoss", "cosines", "pretrain_encoder"]


def cosines(x: Any, kernel: Any) -> Tensor:
    """``cos(x_i, kernel[:, c])``: rows of ``x`` (N, d) against columns of ``kernel`` (d, C)."""
    a, w = (v if isinstance(v, Tensor) else Tensor(np.asarray(v)) for v in (x, kernel))
    return ag.matmul(unit_normalize(a, 1), unit_normalize(w, 0))


@register_serializable(package="cnnkit")
class CosineClassifier(Layer):
    """``cos(x, w_c)`` for every class ``c``: encodings ``(N, d)`` -> cosines ``(N, units)``.

    Both the inputs (rows) and the kernel's columns, one proxy encoding per class, are
    scaled to unit length before their product, so every output lies in [-1, 1]. Train it
    with :class:`MarginSoftmaxLoss`.
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = _validate.integer("CosineClassifier()", "units", units, minimum=1)

    def build(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) != 2:
            raise ValueError(
                f"{self._where()}: expected encodings of shape (batch, d), got {input_shape}"
            )
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), "glorot_uniform")

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.kernel.shape[0]:
            raise ValueError(
                f"{self._where()}: expected encodings of shape (batch, {self.kernel.shape[0]}), "
                f"got {x.shape}"
            )
        return cosines(x, self.kernel)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@register_serializable(package="cnnkit")
class MarginSoftmaxLoss(Loss):
    """CosFace's loss on cosines: cross-entropy of ``scale * (cos - margin * [c == y])``.

    ``y_true`` holds integer class indices ``(N,)``, ``y_pred`` the cosines ``(N, C)`` of
    a :class:`CosineClassifier`. ``margin = 0`` is NormFace's normalised softmax.

    Parameters
    ----------
    scale : float
        ``s`` > 0. Cosines span only [-1, 1]; without a scale the softmax over thousands
        of classes cannot approach a confident answer. CosFace's bound
        ``s >= (C - 1) / C * log((C - 1) p / (1 - p))`` is about 10 for 2,000 classes at
        ``p = 0.9``; 30 is AM-softmax's value.
    margin : float
        ``m`` >= 0 subtracted from the true class's cosine (0.35 in CosFace and AM-softmax).
    """

    def __init__(self, scale: float = 30.0, margin: float = 0.35, name: str | None = None) -> None:
        super().__init__(name or "margin_softmax_loss")
        where = "MarginSoftmaxLoss()"
        self.scale = _validate.real(where, "scale", scale, low=0.0, low_open=True)
        self.margin = _validate.real(where, "margin", margin, low=0.0)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        cos = y_pred if isinstance(y_pred, Tensor) else Tensor(np.asarray(y_pred))
        if cos.ndim != 2:
            raise ValueError(
                f"{self.name}(): y_pred must be cosines of shape (batch, classes), got {cos.shape}"
            )
        labels = np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.shape != (cos.shape[0],) or labels.dtype.kind not in "iuf":
            raise ValueError(
                f"{self.name}(): y_true must hold one class index per row of y_pred, shape "
                f"({cos.shape[0]},), got shape {labels.shape} dtype {labels.dtype}"
            )
        index = labels.astype(np.int64)
        if labels.size and (
            np.any(index != labels) or index.min() < 0 or index.max() >= cos.shape[1]
        ):
            raise ValueError(
                f"{self.name}(): y_true must hold integer class indices in [0, {cos.shape[1]}), "
                f"got values from {labels.min()} to {labels.max()}"
            )
        one_hot = np.zeros(cos.shape, dtype=cos.dtype)
        one_hot[np.arange(len(index)), index] = self.scale * self.margin
        logits = cos * cos.dtype.type(self.scale) - one_hot
        return sparse_categorical_crossentropy(index, logits, from_logits=True)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "margin": self.margin}


def pretrain_encoder(
    encoder: Any,
    images: np.ndarray,
    labels: Any,
    *,
    steps: int,
    p: int = 16,
    k: int = 4,
    learning_rate: float = 1e-3,
    scale: float = 30.0,
    margin: float = 0.35,
    cosine_decay: bool = True,
    seed: int = 0,
    verbose: Any = 0,
    transform: Any = None,
) -> Any:
    """Train ``encoder`` as a classifier of the identities in ``labels`` for ``steps``
    steps of ``p x k`` batches (:class:`PKSampler`): a :class:`CosineClassifier` over its
    encodings, :class:`MarginSoftmaxLoss` (``scale``, ``margin``), Adam at
    ``learning_rate`` (cosine decay to 1% over the steps unless ``cosine_decay=False``).

    Returns the classifier model ``image -> cosines``; ``encoder`` is trained in place
    (its weights are shared with it) and is what to keep.
    """
    from .. import layers, optimizers, schedules
    from ..models import Functional
    from .sampling import PKSampler

    where = "pretrain_encoder()"
    steps = _validate.integer(where, "steps", steps, minimum=1)
    shape = getattr(encoder, "_input_shape", None)
    if shape is None:
        raise ValueError(
            f"{where}: encoder must be a model with a declared input shape (start it with "
            "layers.Input), got one without"
        )
    names, classes = np.unique(np.asarray(labels), return_inverse=True)
    image = layers.Input(tuple(shape), dtype=encoder.dtype)
    head = CosineClassifier(len(names), name="identity_proxies", dtype=encoder.dtype)
    model = Functional([image], head(encoder(image)), seed=seed, name="face_classifier")
    rate: Any = learning_rate
    if cosine_decay:
        rate = schedules.CosineDecay(learning_rate, steps, alpha=0.01)
    model.compile(optimizers.Adam(rate), MarginSoftmaxLoss(scale, margin))
    batches = PKSampler(classes, p, k, x=images, seed=seed, steps=steps, transform=transform)
    model.fit(batches, epochs=1, verbose=verbose)
    return model
