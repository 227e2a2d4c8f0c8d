"""Verification as binary classification: a learned similarity over two encodings.

The course's alternative to the triplet loss (Taigman et al., DeepFace): one encoder applied
to both images (a Siamese network, one set of weights), and a logistic unit over the
element-wise differences of the two encodings, trained with binary cross-entropy on
same/different pairs.
"""

from __future__ import annotations

from typing import Any

from .. import autograd as ag
from .. import layers
from ..autograd import Tensor
from ..layers import Layer
from ..models import Functional, Model
from ..saving.registry import register_serializable

__all__ = ["VerificationHead", "build_siamese"]

DISTANCES = ("l1", "chi2")

# Keeps the chi-square denominator away from 0 where both components vanish.
_CHI2_EPSILON = 1e-6


@register_serializable(package="cnnkit")
class VerificationHead(Layer):
    """``y = sigmoid(sum_k w_k d_k(f_i, f_j) + b)`` over two encodings ``[f_i, f_j]``.

    Parameters
    ----------
    distance : {"l1", "chi2"}
        ``"l1"``: ``d_k = |f_ik - f_jk|``; ``"chi2"``: the chi-square form
        ``d_k = (f_ik - f_jk)^2 / (|f_ik| + |f_jk|)``. The absolute values in the
        denominator (DeepFace's features are non-negative, unit-normalised encodings are
        not) keep it a distance; a small epsilon keeps it finite.
    from_logits : bool
        Return the logit instead of the probability (then train with
        ``BinaryCrossentropy(from_logits=True)``).
    """

    _list_input = True

    def __init__(self, distance: str = "l1", from_logits: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if distance not in DISTANCES:
            raise ValueError(
                f"VerificationHead(): distance must be 'l1' or 'chi2', got {distance!r}"
            )
        self.distance = distance
        self.from_logits = bool(from_logits)

    def _check(self, shapes: list[tuple[int, ...]]) -> None:
        if len(shapes) != 2:
            raise ValueError(
                f"{self._where()}: expected a list of two encodings, got {len(shapes)} inputs"
            )
        a, b = (tuple(s) for s in shapes)
        if len(a) != 2 or a[1:] != b[1:]:
            raise ValueError(
                f"{self._where()}: expected two encodings of shape (batch, d), got shapes "
                f"{a} and {b}"
            )

    def build(self, input_shape: Any) -> None:
        self._check(list(input_shape))
        d = input_shape[0][-1]
        self.kernel = self.add_weight("kernel", (d, 1), "glorot_uniform")
        self.bias = self.add_weight("bias", (1,), "zeros")

    def call(self, x: Any, training: bool = False) -> Tensor:
        self._check([tuple(t.shape) for t in x])
        a, b = x
        diff = ag.abs(a - b)
        if self.distance == "chi2":
            diff = ag.square(diff) / (ag.abs(a) + ag.abs(b) + _CHI2_EPSILON)
        logit = ag.matmul(diff, self.kernel) + self.bias
        return logit if self.from_logits else ag.sigmoid(logit)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "distance": self.distance, "from_logits": self.from_logits}


def build_siamese(
    encoder: Any,
    distance: str = "l1",
    *,
    from_logits: bool = False,
    seed: int | None = 0,
    name: str = "siamese",
) -> Model:
    """``Model([image_i, image_j], P(same))``: ``encoder`` applied to both inputs (shared
    weights; both applications' gradients add up in them) and a :class:`VerificationHead`.

    Train it with ``binary_crossentropy`` on :class:`cnnkit.face.PairSampler` batches; the
    encoder it trains is ``encoder`` itself, usable in a :class:`FaceDatabase` afterwards.
    """
    shape = getattr(encoder, "_input_shape", None)
    if shape is None:
        raise ValueError(
            "build_siamese(): encoder must be a model with a declared input shape (start it "
            "with layers.Input), got one without"
        )
    dtype = encoder.dtype
    first = layers.Input(tuple(shape), dtype=dtype)
    second = layers.Input(tuple(shape), dtype=dtype)
    head = VerificationHead(
        distance, from_logits=from_logits, name="verification_head", dtype=dtype
    )
    out = head([encoder(first), encoder(second)])
    return Functional([first, second], out, seed=seed, name=name)
