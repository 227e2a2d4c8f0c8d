"""The triplet loss on encodings, and its online mining over identity-balanced batches.

FaceNet's loss (Schroff et al. 2015) is ``max(||f(A) - f(P)||^2 - ||f(A) - f(N)||^2 + margin,
0)`` on squared Euclidean distances. :class:`TripletLoss` takes a batch's identity labels as
``y_true`` and its encodings as ``y_pred`` (TensorFlow Addons' convention) and chooses the
triplets inside the batch.

Every mining mode is computed on the batch's matrix of pairwise squared distances, one GEMM
``|a|^2 + |b|^2 - 2 E E^T``. The choice of triplets is piecewise constant in the encodings,
so it is made on the values alone (NumPy over boolean masks); what goes back through the tape
is then a linear function of that matrix, ``sum_ij W_ij D_ij + c``, where ``W_ij`` counts how
often the pair enters the chosen, active triplets (with sign and the reduction's scale). That
gives every mode -- including ``"all"``, whose triplets number ``N^3`` -- one elementwise
product on the tape instead of a cube of tensors, and the exact gradient of the mined loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import autograd as ag
from ..autograd import Tensor
from ..losses import Loss
from ..saving.registry import register_serializable

__all__ = ["MINING_MODES", "TripletLoss", "pairwise_squared_distances", "triplet_loss"]

MINING_MODES = ("batch_hard", "semi_hard", "all", "random")


def _margin(where: str, margin: Any) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.number)):
        raise TypeError(f"{where}: margin must be a real number, got {type(margin).__name__}")
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"{where}: margin must be a finite number >= 0, got {margin!r}")
    return float(margin)


def _encodings(where: str, name: str, value: Any) -> Tensor:
    t = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
    if t.dtype.kind != "f":
        raise TypeError(f"{where}: {name} must be floating-point encodings, got dtype {t.dtype}")
    if t.ndim != 2:
        raise ValueError(
            f"{where}: {name} must be encodings of shape (batch, dim), got shape {t.shape}"
        )
    return t


def pairwise_squared_distances(e: Any) -> Tensor:
    """``D[i, j] = ||e_i - e_j||^2`` for the rows of ``e`` (N, d), differentiable.

    One GEMM for the cross terms; the diagonal is exactly 0 and rounding below 0 is clipped
    (the clip passes no gradient where it acts, which only the diagonal reaches in practice).
    """
    t = _encodings("pairwise_squared_distances()", "e", e)
    squares = (t * t).sum(axis=1, keepdims=True)
    d = squares + squares.T - 2.0 * ag.matmul(t, t.T)
    off_diagonal = ~np.eye(t.shape[0], dtype=bool)
    return ag.maximum(d * off_diagonal.astype(d.dtype), 0.0)


def triplet_loss(
    anchor: Any, positive: Any, negative: Any, *, margin: float, reduction: str = "sum"
) -> Tensor:
    """FaceNet's triplet loss on given triplets of encodings.

    ``max(||a - p||^2 - ||a - n||^2 + margin, 0)`` per row, summed (as in the paper) or
    averaged over the rows.

    Parameters
    ----------
    anchor, positive, negative : Tensor or array_like, shape (N, d)
        Encodings; rows at the same index form a triplet.
    margin : float
        ``alpha`` >= 0.
    reduction : {"sum", "mean"}

    Returns
    -------
    Tensor
        A scalar (0 for N = 0).
    """
    where = "triplet_loss()"
    m = _margin(where, margin)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"{where}: reduction must be 'sum' or 'mean', got {reduction!r}")
    a = _encodings(where, "anchor", anchor)
    p = _encodings(where, "positive", positive)
    n = _encodings(where, "negative", negative)
    if not (a.shape == p.shape == n.shape):
        raise ValueError(
            f"{where}: anchor, positive and negative must have one shape, got {a.shape}, "
            f"{p.shape} and {n.shape}"
        )
    d_ap = ag.square(a - p).sum(axis=1)
    d_an = ag.square(a - n).sum(axis=1)
    per_triplet = ag.relu(d_ap - d_an + m)
    if reduction == "sum" or a.shape[0] == 0:
        return per_triplet.sum()
    return per_triplet.mean()


def _labels(where: str, y_true: Any, n: int) -> np.ndarray:
    y = np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise ValueError(
            f"{where}: y_true must hold one identity label per encoding, shape ({n},), got "
            f"shape {y.shape}"
        )
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not np.all(y == np.round(y))):
        raise TypeError(f"{where}: y_true must hold integer identity labels, got dtype {y.dtype}")
    return y.astype(np.int64)


def mine_weights(
    d: np.ndarray, labels: np.ndarray, margin: float, mining: str, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """``(W, c)`` with the mined loss equal to ``sum(W * D) + c`` at the distances ``d``.

    NumPy only: the choice of triplets, which carries no gradient.
    """
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(n, dtype=bool)
    negative = ~same
    w = np.zeros_like(d)
    rows = np.arange(n)
    if mining in ("batch_hard", "random"):
        valid = positive.any(axis=1) & negative.any(axis=1)
        if mining == "batch_hard":
            p = np.argmax(np.where(positive, d, -np.inf), axis=1)
            q = np.argmin(np.where(negative, d, np.inf), axis=1)
        else:
            # One uniform positive and negative per anchor: the first index of the largest
            # random key among the allowed columns.
            keys = rng.random((2, n, n))
            p = np.argmax(np.where(positive, keys[0], -1.0), axis=1)
            q = np.argmax(np.where(negative, keys[1], -1.0), axis=1)
        losses = d[rows, p] - d[rows, q] + margin
        active = valid & (losses > 0)
        scale = 1.0 / max(int(valid.sum()), 1)
        np.add.at(w, (rows[active], p[active]), scale)
        np.add.at(w, (rows[active], q[active]), -scale)
        return w, margin * scale * int(active.sum())
    if mining == "semi_hard":
        # Per anchor-positive pair (TensorFlow Addons' rule): the closest negative farther
        # than the positive; when every negative is closer, the farthest negative.
        i, j = np.nonzero(positive & negative.any(axis=1)[:, None])
        d_ap = d[i, j]
        cand = d[i]  # (pairs, n)
        neg = negative[i]
        outside = neg & (cand > d_ap[:, None])
        k_out = np.argmin(np.where(outside, cand, np.inf), axis=1)
        k_in = np.argmax(np.where(neg, cand, -np.inf), axis=1)
        k = np.where(outside.any(axis=1), k_out, k_in)
        losses = d_ap - d[i, k] + margin
        active = losses > 0
        scale = 1.0 / max(len(i), 1)
        np.add.at(w, (i[active], j[active]), scale)
        np.add.at(w, (i[active], k[active]), -scale)
        return w, margin * scale * int(active.sum())
    if mining == "all":
        # Hermans et al.'s batch-all: the mean over the triplets whose loss is positive.
        valid = positive[:, :, None] & negative[:, None, :]
        losses = d[:, :, None] - d[:, None, :] + margin
        active = valid & (losses > 0)
        count = int(active.sum())
        scale = 1.0 / max(count, 1)
        w += active.sum(axis=2) * scale
        w -= active.sum(axis=1) * scale
        return w, margin * scale * count
    raise ValueError(f"mining must be one of {', '.join(MINING_MODES)}, got {mining!r}")


@register_serializable(package="cnnkit")
class TripletLoss(Loss):
    """Triplet loss with online mining, for ``compile(loss=...)`` on an encoder.

    ``y_true`` is the batch's identity labels (N,) and ``y_pred`` its encodings (N, d);
    train on batches of P identities x K images (:class:`cnnkit.face.PKSampler`).

    Parameters
    ----------
    margin : float
        ``alpha`` >= 0 (FaceNet used 0.2 on unit-norm encodings).
    mining : {"batch_hard", "semi_hard", "all", "random"}
        ``"batch_hard"``: per anchor, its farthest positive and closest negative, averaged
        over the anchors (Hermans et al. 2017). ``"semi_hard"``: per anchor-positive pair,
        the closest negative farther than the positive (else the farthest negative),
        averaged over the pairs (FaceNet; TensorFlow Addons' rule). ``"all"``: the mean
        over the valid triplets with a positive loss. ``"random"``: a random positive and
        negative per anchor, averaged over the anchors (the baseline the course warns about).
    squared : bool
        Mine and compare squared Euclidean distances (FaceNet's loss, the default) or
        Euclidean ones (Hermans et al.'s choice for batch-hard: near a collapse, where all
        encodings crowd together, the squared distance's gradient vanishes with the distance
        and batch-hard mining from random weights stays collapsed; the plain distance's does
        not).
    seed : int
        For ``"random"``: the generator of the choices (advanced each call).

    Anchors without a positive or a negative in the batch are left out; a batch without any
    triplet gives 0.
    """

    # The loss of a sample depends on the rest of its batch: fit() does not pre-check the
    # whole y against it (see Trainer._check_against_losses).
    couples_batch = True

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "batch_hard",
        squared: bool = True,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name or "triplet_loss")
        where = "TripletLoss()"
        self.margin = _margin(where, margin)
        if mining not in MINING_MODES:
            raise ValueError(
                f"{where}: mining must be one of {', '.join(MINING_MODES)}, got {mining!r}"
            )
        self.mining = mining
        self.squared = bool(squared)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"{where}: seed must be an int >= 0, got {seed!r}")
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        where = f"{self.name}()"
        e = _encodings(where, "y_pred", y_pred)
        labels = _labels(where, y_true, e.shape[0])
        d = pairwise_squared_distances(e)
        if not self.squared:
            # 1e-12 as UnitNormalization: a finite slope where two encodings coincide.
            off_diagonal = ~np.eye(e.shape[0], dtype=bool)
            d = ag.sqrt(ag.maximum(d, 1e-12)) * off_diagonal.astype(d.dtype)
        w, c = mine_weights(d.data, labels, self.margin, self.mining, self._rng)
        return (d * w.astype(d.dtype)).sum() + d.dtype.type(c)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        if sample_weight is not None:
            raise ValueError(
                f"{self.name}(): sample_weight is not supported (a mined triplet mixes "
                "samples); balance the identities with PKSampler instead"
            )
        return self.call(y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "margin": self.margin,
            "mining": self.mining,
            "squared": self.squared,
            "seed": self.seed,
        }
