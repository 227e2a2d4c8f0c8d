"""Detection over region proposals: R-CNN (Girshick et al. 2014) and Fast R-CNN (Girshick 2015).

The course's contrast with YOLO: instead of one pass over a grid, a segmentation-driven
proposal step (:func:`cnnkit.ops.selective_search`, about 2,000 boxes on a photograph) picks
candidate windows and a classifier looks only at those.

* R-CNN (:func:`rcnn_detect`) warps every proposal to the classifier's input size and runs
  the classifier on each crop. The warp is one native :func:`cnnkit.ops.roi_align` call over
  all proposals (bilinear crop-and-resize, pixel-edge boxes), not a Python loop per box.
* Fast R-CNN (:func:`fast_rcnn_detect`) runs the convolutional backbone once per image and
  pools each proposal's window from the feature map with ``roi_align``; a small head gives
  the class scores and the box regression.

Both heads output, per proposal, ``1 + C`` class logits (class 0 is background) followed by
``4 C`` box deltas, one set per foreground class (R-CNN's class-specific bounding-box
regression, in Fast R-CNN's parametrisation: :func:`box_deltas`). :class:`ProposalLoss`
trains them: cross-entropy on the class plus smooth-L1 on the true class's deltas of the
positive proposals. Training samples proposals per image as the papers do
(:func:`sample_proposals`): positives at IoU >= 0.5 with a ground-truth box, background
below 0.3, a quarter of each sample positive when there are enough.

Detections are per image ``{"boxes", "scores", "classes"}`` with 0-based foreground classes
(background removed), the format :func:`cnnkit.detection.evaluate` takes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import _proposals, _validate, ops
from .. import autograd as ag
from ..autograd import Tensor
from ..losses import Loss
from ..models import Model, Sequential
from ..saving import register_serializable

__all__ = [
    "BOX_WEIGHTS",
    "FastRCNN",
    "ProposalLoss",
    "RCNNClassifier",
    "apply_deltas",
    "box_deltas",
    "fast_rcnn",
    "fast_rcnn_detect",
    "proposal_recall",
    "propose",
    "rcnn_classifier",
    "rcnn_detect",
    "sample_proposals",
    "train_fast_rcnn",
    "train_rcnn",
    "warp_proposals",
]

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
"""Scales of the deltas (dx, dy, dw, dh): Fast R-CNN's target normalisation (1 / 0.1, 1 / 0.2)."""
# exp() of a larger log-size delta makes boxes 1000/16 times their proposal (Detectron's bound).
_MAX_LOG_SIZE = float(np.log(1000.0 / 16))


# -- checks ----------------------------------------------------------------------------------
def _rgb(image: Any, fn: str) -> np.ndarray:
    """The image as (H, W, 3) float32 in [0, 1]; grey is repeated into RGB and RGBA loses its
    alpha, each with a warning that says so."""
    x = np.asarray(image)
    if x.ndim == 2 or (x.ndim == 3 and x.shape[2] == 1):
        warnings.warn(
            f"{fn}(): image has one channel; taken as grey and repeated into RGB",
            UserWarning,
            stacklevel=3,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the RGBA warning is ours, with our stack level
        out = _proposals.rgb_image(x, fn)
    if x.ndim == 3 and x.shape[2] == 4:
        warnings.warn(
            f"{fn}(): image has 4 channels; taken as RGBA and the alpha channel is ignored",
            UserWarning,
            stacklevel=3,
        )
    return out.astype(np.float32)


def _check_proposals(proposals: Any, height: int, width: int, fn: str) -> np.ndarray:
    """(K, 4) float32 xyxy boxes with positive size inside the image."""
    b = np.asarray(proposals)
    if b.dtype.kind not in "iuf":
        raise TypeError(f"{fn}(): proposals must hold real numbers, got dtype {b.dtype}")
    if b.size == 0:
        return np.zeros((0, 4), np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{fn}(): proposals must have shape (K, 4) (xyxy), got {b.shape}")
    b = b.astype(np.float32)
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{fn}(): proposals must be finite")
    outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > width) | (b[:, 3] > height)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(
            f"{fn}(): proposals must lie inside the {width} x {height} image "
            f"(0 <= x1, y1 and x2 <= {width}, y2 <= {height}), got {b[i].tolist()} at row {i} "
            "(clip them with cnnkit.ops.clip_boxes)"
        )
    empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if empty.any():
        i = int(np.argmax(empty))
        raise ValueError(
            f"{fn}(): proposals must have x2 > x1 and y2 > y1, got {b[i].tolist()} at row {i}"
        )
    return b


def _positive_int(value: Any, fn: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{fn}(): {name} must be a positive int, got {value!r}")
    return int(value)


def _unit(value: Any, fn: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}(): {name} must be a real number, got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{fn}(): {name} must lie in [0, 1], got {value}")
    return float(value)


def _boxes(value: Any, fn: str, name: str, *, finite: bool = True) -> np.ndarray:
    """(K, 4) float64; any empty array is (0, 4). Reshaping anything else to (-1, 4) would pair
    the wrong coordinates without a word."""
    b = np.asarray(value)
    if b.dtype.kind not in "iuf":
        raise TypeError(f"{fn}(): {name} must hold real numbers, got dtype {b.dtype}")
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{fn}(): {name} must have shape (K, 4), got {b.shape}")
    b = b.astype(np.float64)
    if finite and not np.all(np.isfinite(b)):
        i = int(np.argmax(~np.isfinite(b).all(axis=1)))
        raise ValueError(f"{fn}(): {name} must be finite, got {b[i].tolist()} at row {i}")
    return b


def _same_length(a: np.ndarray, b: np.ndarray, fn: str, names: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{fn}(): {names} must have the same length, got {len(a)} and {len(b)}")


def _positive_size(b: np.ndarray, fn: str, name: str) -> None:
    empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if empty.any():
        i = int(np.argmax(empty))
        raise ValueError(
            f"{fn}(): {name} must have x2 > x1 and y2 > y1, got {b[i].tolist()} at row {i}"
        )


# -- boxes -----------------------------------------------------------------------------------
def box_deltas(proposals: Any, targets: Any) -> np.ndarray:
    """Regression targets that move ``proposals`` onto ``targets`` (both (K, 4) xyxy).

    R-CNN's parametrisation, scaled by :data:`BOX_WEIGHTS`: ``10 (gx - px) / pw``,
    ``10 (gy - py) / ph``, ``5 log(gw / pw)``, ``5 log(gh / ph)`` with centres ``x, y`` and
    sizes ``w, h``. :func:`apply_deltas` inverts it.
    """
    fn = "box_deltas"
    p, g = _boxes(proposals, fn, "proposals"), _boxes(targets, fn, "targets")
    _same_length(p, g, fn, "proposals and targets")
    # A box without area has no log-size: the deltas would be inf or NaN.
    _positive_size(p, fn, "proposals")
    _positive_size(g, fn, "targets")
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    wx, wy, ww, wh = BOX_WEIGHTS
    out = np.stack(
        [
            wx * ((g[:, 0] + g[:, 2]) - (p[:, 0] + p[:, 2])) / (2 * pw),
            wy * ((g[:, 1] + g[:, 3]) - (p[:, 1] + p[:, 3])) / (2 * ph),
            ww * np.log(gw / pw),
            wh * np.log(gh / ph),
        ],
        axis=1,
    )
    return out.astype(np.float32)


def apply_deltas(proposals: Any, deltas: Any) -> np.ndarray:
    """The boxes (K, 4) xyxy that ``deltas`` (K, 4, from :func:`box_deltas`) make of
    ``proposals``; log-size deltas are bounded at ``log(1000 / 16)``."""
    fn = "apply_deltas"
    p = _boxes(proposals, fn, "proposals")
    # A diverged network's NaN deltas give NaN boxes, visible to the caller, not an error.
    d = _boxes(deltas, fn, "deltas", finite=False) / np.asarray(BOX_WEIGHTS)
    _same_length(p, d, fn, "proposals and deltas")
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    cx = (p[:, 0] + p[:, 2]) / 2 + d[:, 0] * pw
    cy = (p[:, 1] + p[:, 3]) / 2 + d[:, 1] * ph
    w = pw * np.exp(np.minimum(d[:, 2], _MAX_LOG_SIZE))
    h = ph * np.exp(np.minimum(d[:, 3], _MAX_LOG_SIZE))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def warp_proposals(image: Any, proposals: Any, size: int | Sequence[int]) -> np.ndarray:
    """Every proposal's window of ``image`` resized to ``size``: R-CNN's warp.

    One :func:`cnnkit.ops.roi_align` call (``aligned=True``: box edges on pixel edges; two
    bilinear samples per output pixel and axis, so shrinking averages rather than skips).

    Parameters
    ----------
    image : array_like, shape (H, W, 3)
        As :func:`rcnn_detect` takes it.
    proposals : array_like, shape (K, 4)
        ``xyxy`` pixels inside the image.
    size : int or (height, width)

    Returns
    -------
    numpy.ndarray, shape (K, height, width, 3), float32
    """
    fn = "warp_proposals"
    x = _rgb(image, fn)
    boxes = _check_proposals(proposals, x.shape[0], x.shape[1], fn)
    # 2.5 was "'float' object is not iterable"; with no proposals, -1 was NumPy's
    # "negative dimensions".
    size = _validate.integers(f"{fn}()", "size", size, 2)
    return _warp(x, boxes, size)


def _warp(x: np.ndarray, boxes: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    out_size = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(boxes) == 0:
        return np.zeros((0, *out_size, 3), np.float32)
    return ops.roi_align(x[None], [boxes], out_size, 1.0, 2, True)


def propose(image: Any, *, mode: str = "fast", max_proposals: int = 2000, seed: int = 0):
    """Selective-search proposals of one image (float32 (K, 4) xyxy, best-ranked first)."""
    x = _rgb(image, "propose")
    max_proposals = _positive_int(max_proposals, "propose", "max_proposals")
    return ops.selective_search(x, mode=mode, seed=seed)[:max_proposals]


def proposal_recall(
    proposals: Sequence[Any],
    targets: Sequence[dict],
    *,
    counts: Sequence[int] = (100, 500, 2000),
    thresholds: Sequence[float] = (0.5, 0.7),
) -> dict[tuple[int, float], float]:
    """The share of ground-truth boxes that one of an image's first ``count`` proposals
    covers at IoU >= ``threshold``, over all images: ``{(count, threshold): recall}``.

    ``proposals`` holds one (K_i, 4) xyxy array per image, best-ranked first; ``targets``
    one dict with ``"boxes"`` per image.
    """
    fn = "proposal_recall"
    if len(proposals) != len(targets):
        raise ValueError(
            f"{fn}(): proposals and targets must have the same length, got {len(proposals)} "
            f"and {len(targets)}"
        )
    for name, value in (("counts", counts), ("thresholds", thresholds)):
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            # A lone number was "'int' object is not iterable".
            raise TypeError(
                f"{fn}(): {name} must be a sequence, got {type(value).__name__} {value!r}"
            )
    counts = [_positive_int(n, fn, "counts") for n in counts]
    thresholds = [_unit(t, fn, "thresholds") for t in thresholds]
    hits = dict.fromkeys(((n, t) for n in counts for t in thresholds), 0)
    objects = 0
    for i, (boxes, target) in enumerate(zip(proposals, targets)):
        if not isinstance(target, Mapping) or "boxes" not in target:
            raise ValueError(f"{fn}(): targets[{i}] must be a dict with 'boxes', got {target!r}")
        gt = _boxes(target["boxes"], fn, f"targets[{i}]['boxes']").astype(np.float32)
        objects += len(gt)
        b = _boxes(boxes, fn, f"proposals[{i}]").astype(np.float32)
        for n in counts:
            if len(gt) == 0:
                continue
            best = ops.box_iou(gt, b[:n]).max(axis=1) if len(b) else np.zeros(len(gt))
            for t in thresholds:
                hits[n, t] += int(np.sum(best >= t))
    return {key: (value / objects if objects else float("nan")) for key, value in hits.items()}


def sample_proposals(
    proposals: Any,
    boxes: Any,
    classes: Any,
    *,
    count: int,
    positive_fraction: float = 0.25,
    positive_iou: float = 0.5,
    background_iou: float = 0.3,
    rng: np.random.Generator | int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A training sample of one image's proposals, as R-CNN and Fast R-CNN draw it.

    The ground-truth boxes join the proposals (as in both papers). A proposal whose best
    IoU with a ground-truth box is at least ``positive_iou`` is a positive of that box's
    class; below ``background_iou`` it is background; in between it is not used. Up to
    ``positive_fraction * count`` positives are drawn, the rest of ``count`` from the
    background (fewer when the image has fewer).

    Returns
    -------
    boxes : numpy.ndarray, shape (k, 4), float32
    targets : numpy.ndarray, shape (k, 5), float32
        ``[class, dx, dy, dw, dh]``: ``class`` is 0 for background and ``1 + c`` for
        foreground class ``c``; the deltas (:func:`box_deltas`) are zero for background.
    """
    fn = "sample_proposals"
    count = _positive_int(count, fn, "count")
    positive_fraction = _unit(positive_fraction, fn, "positive_fraction")
    positive_iou = _unit(positive_iou, fn, "positive_iou")
    background_iou = _unit(background_iou, fn, "background_iou")
    if background_iou > positive_iou:
        # The same proposal would be drawn as a positive and as background.
        raise ValueError(
            f"{fn}(): background_iou must be <= positive_iou, got {background_iou} and "
            f"{positive_iou}"
        )
    gen = _validate.generator(f"{fn}()", rng, "rng")
    gt = _boxes(boxes, fn, "boxes").astype(np.float32)
    c = np.asarray(classes)
    if c.size and (c.dtype.kind not in "iu" or c.ndim != 1 or c.min() < 0):
        # A negative class would become background (class + 1 = 0) without a word.
        raise ValueError(
            f"{fn}(): classes must be a 1-D array of class indices >= 0, got "
            f"{c.tolist() if c.size < 20 else c.shape} (dtype {c.dtype})"
        )
    gt_classes = c.astype(np.int64).reshape(-1)
    _same_length(gt, gt_classes, fn, "boxes and classes")
    pool = np.concatenate([_boxes(proposals, fn, "proposals").astype(np.float32), gt])
    if len(gt):
        iou = ops.box_iou(pool, gt)
        best, which = iou.max(axis=1), iou.argmax(axis=1)
    else:
        best, which = np.zeros(len(pool), np.float32), np.zeros(len(pool), np.int64)
    positive = np.flatnonzero(best >= positive_iou)
    background = np.flatnonzero(best < background_iou)
    take_pos = min(len(positive), round(positive_fraction * count))
    pos = gen.choice(positive, take_pos, replace=False)
    neg = gen.choice(background, min(len(background), count - take_pos), replace=False)
    chosen = np.concatenate([pos, neg]).astype(np.int64)
    targets = np.zeros((len(chosen), 5), np.float32)
    targets[:take_pos, 0] = gt_classes[which[pos]] + 1
    if take_pos:
        targets[:take_pos, 1:] = box_deltas(pool[pos], gt[which[pos]])
    return pool[chosen], targets


# -- the heads' loss -------------------------------------------------------------------------
@register_serializable(package="cnnkit")
class ProposalLoss(Loss):
    """Classification plus box regression over proposals (Fast R-CNN's multi-task loss).

    ``y_pred`` is ``(K, 1 + 5 C)``: ``1 + C`` class logits (0 = background), then four
    deltas per foreground class. ``y_true`` is ``(K, 5)`` from :func:`sample_proposals`.
    Per proposal: the cross-entropy of its class, plus ``box_weight`` times the smooth-L1
    (Huber with delta 1) of its class's deltas when it is a positive.
    """

    def __init__(self, num_classes: int, box_weight: float = 1.0, name: str | None = None):
        super().__init__(name or "proposal_loss")
        self.num_classes = _positive_int(num_classes, "ProposalLoss", "num_classes")
        # NaN or inf made every loss NaN.
        self.box_weight = _validate.real("ProposalLoss()", "box_weight", box_weight, low=0.0)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        p = y_pred if isinstance(y_pred, Tensor) else Tensor(np.asarray(y_pred))
        c = self.num_classes
        target = np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true)
        if p.ndim != 2 or p.shape[1] != 1 + 5 * c:
            raise ValueError(
                f"ProposalLoss(): y_pred must have shape (K, {1 + 5 * c}) for {c} classes, "
                f"got {tuple(p.shape)}"
            )
        if target.shape != (p.shape[0], 5):
            raise ValueError(
                f"ProposalLoss(): y_true must have shape ({p.shape[0]}, 5), got {target.shape}"
            )
        labels = target[:, 0].astype(np.int64)
        if labels.min(initial=0) < 0 or labels.max(initial=0) > c:
            raise ValueError(f"ProposalLoss(): y_true classes must lie in [0, {c}]")
        dtype = p.dtype
        onehot = np.zeros((len(labels), 1 + c), dtype)
        onehot[np.arange(len(labels)), labels] = 1
        ce = -(ag.log_softmax(p[:, : 1 + c], axis=-1) * onehot).sum(axis=-1)
        mask = np.zeros((len(labels), c, 4), dtype)
        goal = np.zeros((len(labels), c, 4), dtype)
        fg = np.flatnonzero(labels > 0)
        mask[fg, labels[fg] - 1] = 1
        goal[fg, labels[fg] - 1] = target[fg, 1:]
        r = ag.abs(p[:, 1 + c :] - goal.reshape(len(labels), 4 * c))
        q = ag.minimum(r, 1.0)
        smooth = (0.5 * ag.square(q) + (r - q)) * mask.reshape(len(labels), 4 * c)
        return ce + dtype.type(self.box_weight) * smooth.sum(axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "box_weight": self.box_weight, "name": self.name}


# -- post-processing shared by both detectors ------------------------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _detections(
    boxes: np.ndarray,
    probs: np.ndarray,
    deltas: np.ndarray | None,
    size: tuple[int, int],
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> dict[str, np.ndarray]:
    """Per foreground class: its score for every proposal, the class's regressed box, then
    NMS within each class; the best ``max_detections`` overall."""
    out_boxes, out_scores, out_classes = [], [], []
    for c in range(probs.shape[1] - 1):
        keep = np.flatnonzero(probs[:, c + 1] >= score_threshold)
        if len(keep) == 0:
            continue
        b = boxes[keep]
        if deltas is not None:
            b = ops.clip_boxes(apply_deltas(b, deltas[keep, 4 * c : 4 * c + 4]), size)
        out_boxes.append(b)
        out_scores.append(probs[keep, c + 1].astype(np.float32))
        out_classes.append(np.full(len(keep), c, np.int64))
    if not out_boxes:
        return {
            "boxes": np.zeros((0, 4), np.float32),
            "scores": np.zeros(0, np.float32),
            "classes": np.zeros(0, np.int64),
        }
    b, s, k = np.concatenate(out_boxes), np.concatenate(out_scores), np.concatenate(out_classes)
    keep = ops.batched_nms(b, s, k, iou_threshold, max_output=max_detections)
    return {"boxes": b[keep], "scores": s[keep], "classes": k[keep]}


def _predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    if hasattr(model, "predict"):
        return model.predict(x, batch_size=batch_size, verbose=0)
    return model(x)


def _check_detect_args(fn, score_threshold, iou_threshold, max_detections, max_proposals):
    _unit(score_threshold, fn, "score_threshold")
    _unit(iou_threshold, fn, "iou_threshold")
    _positive_int(max_detections, fn, "max_detections")
    _positive_int(max_proposals, fn, "max_proposals")


# -- R-CNN ------------------------------------------------------------------------------------
@register_serializable(package="cnnkit")
class RCNNClassifier(Sequential):
    """An R-CNN network over warped proposals: a :class:`cnnkit.Sequential` whose output is
    ``(K, 1 + 5 C)`` raw -- ``1 + C`` class logits (0 = background) and ``4 C`` box deltas --
    carrying ``num_classes`` and ``class_names`` into its file. Build it with
    :func:`rcnn_classifier`."""

    def __init__(
        self,
        layers: Sequence[Any] | None = None,
        name: str | None = None,
        seed: int | None = None,
        *,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, name=name, seed=seed, **kwargs)
        self.num_classes = _positive_int(num_classes, "RCNNClassifier", "num_classes")
        self.class_names = None if class_names is None else tuple(class_names)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "class_names": None if self.class_names is None else list(self.class_names),
        }


def _conv_blocks(stack: list, width: int, blocks: int, pooled: int) -> int:
    """Conv-BN-leaky-ReLU blocks, the first ``pooled`` followed by 2x2 max pooling (the
    YOLO demo's backbone); returns the last block's channels."""
    from .. import layers

    filters = width
    for block in range(blocks):
        stack += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            # Momentum 0.9, not Keras's 0.99: short trainings (a few hundred steps) otherwise
            # end with moving statistics far from the batches' and detect poorly.
            layers.BatchNormalization(momentum=0.9),
            layers.Activation("leaky_relu"),
        ]
        if block < pooled:
            stack.append(layers.MaxPooling2D(2))
            filters *= 2
    return filters // 2 if pooled == blocks else filters


def _head(stack: list, hidden: int, num_classes: int) -> None:
    from .. import layers

    stack += [
        layers.Flatten(),
        layers.Dense(hidden, activation="relu"),
        layers.Dense(1 + 5 * num_classes),
    ]


def rcnn_classifier(
    input_size: int = 32,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    width: int = 16,
    hidden: int = 128,
    seed: int | None = 0,
) -> RCNNClassifier:
    """A small R-CNN network for ``input_size`` x ``input_size`` RGB crops.

    Three conv blocks (the YOLO demo's: 3x3 convolution, batch normalisation, leaky ReLU,
    2x2 max pooling; channels ``width``, ``2 width``, ``4 width``), a hidden dense layer and
    one linear layer giving ``1 + C`` class logits and ``4 C`` box deltas.
    """
    from .. import layers

    fn = "rcnn_classifier"
    input_size = _positive_int(input_size, fn, "input_size")
    if input_size % 8:
        raise ValueError(f"{fn}(): input_size must be divisible by 8, got {input_size}")
    stack: list[Any] = [layers.Input((input_size, input_size, 3))]
    _conv_blocks(stack, _positive_int(width, fn, "width"), 3, 3)
    _head(stack, _positive_int(hidden, fn, "hidden"), _positive_int(num_classes, fn, "num_classes"))
    return RCNNClassifier(
        stack, name="rcnn", seed=seed, num_classes=num_classes, class_names=class_names
    )


def _input_size(classifier: Any, input_size: Any, fn: str) -> tuple[int, int]:
    if input_size is None:
        shape = getattr(classifier, "_input_shape", None)
        if shape is None or len(shape) != 3:
            raise ValueError(
                f"{fn}(): input_size must be given when the classifier does not declare its "
                "input shape (a Sequential built from layers.Input does)"
            )
        return int(shape[0]), int(shape[1])
    if isinstance(input_size, (int, np.integer)):
        input_size = (input_size, input_size)
    h, w = (_positive_int(v, fn, "input_size") for v in input_size)
    return h, w


def _class_outputs(classifier, regressor, crops, batch_size, fn):
    """(probabilities (K, 1 + C), deltas (K, 4 C) or None) of the crops."""
    raw = np.asarray(_predict(classifier, crops, batch_size), np.float64)
    k = len(crops)
    joint = getattr(classifier, "num_classes", None)
    if joint is not None:
        if raw.shape != (k, 1 + 5 * joint):
            raise ValueError(
                f"{fn}(): classifier with num_classes={joint} must output (K, {1 + 5 * joint}), "
                f"got {raw.shape}"
            )
        probs, deltas = _softmax(raw[:, : 1 + joint]), raw[:, 1 + joint :]
    else:
        if raw.ndim != 2 or raw.shape[0] != k or raw.shape[1] < 2:
            raise ValueError(
                f"{fn}(): classifier must output class probabilities of shape (K, 1 + C) "
                f"(background first), got {raw.shape} for {k} crops"
            )
        if k and (raw.min() < 0 or not np.allclose(raw.sum(axis=1), 1.0, atol=1e-3)):
            raise ValueError(
                f"{fn}(): classifier must output probabilities (rows >= 0 summing to 1; end "
                "it with a softmax), got rows summing to "
                f"{float(raw.sum(axis=1).min()):.3g} .. {float(raw.sum(axis=1).max()):.3g}"
            )
        probs, deltas = raw, None
    if regressor is not None:
        deltas = np.asarray(_predict(regressor, crops, batch_size), np.float64)
        want = (k, 4 * (probs.shape[1] - 1))
        if deltas.shape != want:
            raise ValueError(
                f"{fn}(): regressor must output box deltas of shape {want} (4 per foreground "
                f"class), got {deltas.shape}"
            )
    return probs, deltas


def rcnn_detect(
    classifier: Any,
    image: Any,
    *,
    proposals: Any = None,
    max_proposals: int = 2000,
    input_size: int | Sequence[int] | None = None,
    batch_size: int = 256,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.3,
    max_detections: int = 100,
    regressor: Any = None,
    mode: str = "fast",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """R-CNN on one image: warp every proposal, classify the crops, regress, NMS per class.

    Parameters
    ----------
    classifier
        A model (``predict(x, batch_size=...)``) or callable on ``(K, h, w, 3)`` float32
        crops in [0, 1]. Either an :class:`RCNNClassifier` (output ``(K, 1 + 5 C)``: logits
        and per-class deltas), or any classifier giving class probabilities ``(K, 1 + C)``
        with background as class 0.
    image : array_like, shape (H, W, 3)
        RGB, uint8 or float in [0, 1]. Grey ``(H, W)``/``(H, W, 1)`` is repeated into RGB and
        RGBA loses its alpha, each with a ``UserWarning``.
    proposals : array_like, shape (K, 4), optional
        ``xyxy`` boxes inside the image; by default selective search (``mode``, ``seed``).
    max_proposals : int
        The first (best-ranked) proposals used.
    input_size : int or (height, width), optional
        The crop size; by default the classifier's declared input shape.
    batch_size : int
        Crops per classifier call.
    score_threshold, iou_threshold : float in [0, 1]
        A class's score a proposal needs; the IoU above which NMS suppresses (per class).
    max_detections : int
    regressor : optional
        A model or callable giving box deltas ``(K, 4 C)`` (:func:`box_deltas`, one set per
        foreground class) of the crops; overrides an :class:`RCNNClassifier`'s own.
    mode, seed
        Of :func:`cnnkit.ops.selective_search` when ``proposals`` is None.

    Returns
    -------
    dict
        ``{"boxes": (D, 4) float32 xyxy, "scores": (D,), "classes": (D,) int64}`` by
        decreasing score; classes are 0-based foreground classes.
    """
    fn = "rcnn_detect"
    _check_detect_args(fn, score_threshold, iou_threshold, max_detections, max_proposals)
    batch_size = _positive_int(batch_size, fn, "batch_size")
    x = _rgb(image, fn)
    size = _input_size(classifier, input_size, fn)
    if proposals is None:
        boxes = ops.selective_search(x, mode=mode, seed=seed)
    else:
        boxes = _check_proposals(proposals, x.shape[0], x.shape[1], fn)
    boxes = boxes[:max_proposals]
    probs, deltas = _class_outputs(classifier, regressor, _warp(x, boxes, size), batch_size, fn)
    return _detections(
        boxes, probs, deltas, x.shape[:2], score_threshold, iou_threshold, max_detections
    )


class _ProposalCrops:
    """Re-iterable training batches of warped proposal crops: each pass draws new samples
    (:func:`sample_proposals`) from every image's proposals, in a new seeded image order."""

    def __init__(self, images, targets, proposals, size, per_image, images_per_batch, seed):
        self.images, self.targets, self.proposals = images, targets, proposals
        self.size, self.per_image, self.images_per_batch = size, per_image, images_per_batch
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.images) // self.images_per_batch)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.rng.permutation(len(self.images))
        for start in range(0, len(order), self.images_per_batch):
            crops, ys = [], []
            for i in order[start : start + self.images_per_batch]:
                t = self.targets[i]
                boxes, y = sample_proposals(
                    self.proposals[i], t["boxes"], t["classes"], count=self.per_image, rng=self.rng
                )
                crops.append(_warp(self.images[i], boxes, self.size))
                ys.append(y)
            yield np.concatenate(crops), np.concatenate(ys)


def _training_images(images: Any, targets: Any, fn: str, num_classes: Any) -> list[np.ndarray]:
    if len(images) != len(targets):
        raise ValueError(
            f"{fn}(): images and targets must have the same length, got {len(images)} and "
            f"{len(targets)}"
        )
    if len(images) == 0:
        raise ValueError(f"{fn}(): images must not be empty")
    xs = [_rgb(im, fn) for im in images]
    # Checked before any selective search or epoch: a class >= num_classes was found by the
    # loss only when a sample happened to draw it (after minutes of proposals), and a
    # missing key was a bare KeyError there.
    num_classes = _positive_int(num_classes, fn, "num_classes")
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping) or not {"boxes", "classes"} <= t.keys():
            raise ValueError(f"{fn}(): targets[{i}] must be a dict with 'boxes' and 'classes'")
        boxes = _boxes(t["boxes"], fn, f"targets[{i}]['boxes']")
        _positive_size(boxes, fn, f"targets[{i}]['boxes']")
        c = np.asarray(t["classes"])
        if c.size and (c.dtype.kind not in "iu" or c.ndim != 1):
            raise ValueError(
                f"{fn}(): targets[{i}]['classes'] must be a 1-D array of ints, got {c.dtype} "
                f"{c.shape}"
            )
        if len(c) != len(boxes):
            raise ValueError(
                f"{fn}(): targets[{i}] must have one class per box, got {len(boxes)} boxes and "
                f"{len(c)} classes"
            )
        if c.size and (c.min() < 0 or c.max() >= num_classes):
            raise ValueError(
                f"{fn}(): targets[{i}]['classes'] must lie in [0, {num_classes}) (num_classes), "
                f"got {c.tolist()}"
            )
    return xs


def _all_proposals(images: list[np.ndarray], mode: str, max_proposals: int, seed: int) -> list:
    return [ops.selective_search(x, mode=mode, seed=seed)[:max_proposals] for x in images]


def train_rcnn(
    images: Any,
    targets: Sequence[dict],
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    input_size: int = 32,
    epochs: int = 4,
    proposals_per_image: int = 16,
    images_per_batch: int = 8,
    learning_rate: float = 2e-3,
    width: int = 16,
    mode: str = "fast",
    max_proposals: int = 2000,
    proposals: Sequence[Any] | None = None,
    seed: int = 0,
    verbose: int = 0,
) -> RCNNClassifier:
    """Train an :func:`rcnn_classifier` on warped proposals of ``images``.

    Each epoch draws ``proposals_per_image`` proposals of every image (a quarter positive
    where possible, :func:`sample_proposals`) and trains on their crops with
    :class:`ProposalLoss` (Adam, cosine-decayed rate). ``targets`` are per-image dicts with
    ``"boxes"`` (xyxy) and ``"classes"`` (0-based), as :func:`cnnkit.datasets.shapes` gives.
    ``proposals`` (one (K, 4) array per image) skips the selective search.
    """
    from ..optimizers import Adam
    from ..schedules import CosineDecay

    fn = "train_rcnn"
    xs = _training_images(images, targets, fn, num_classes)
    if proposals is None:
        proposals = _all_proposals(xs, mode, max_proposals, seed)
    model = rcnn_classifier(
        input_size, num_classes=num_classes, class_names=class_names, width=width, seed=seed
    )
    batches = _ProposalCrops(
        xs,
        targets,
        proposals,
        input_size,
        _positive_int(proposals_per_image, fn, "proposals_per_image"),
        _positive_int(images_per_batch, fn, "images_per_batch"),
        seed,
    )
    epochs = _positive_int(epochs, fn, "epochs")
    schedule = CosineDecay(learning_rate, decay_steps=epochs * len(batches), alpha=0.02)
    model.compile(optimizer=Adam(learning_rate=schedule), loss=ProposalLoss(num_classes))
    model.fit(batches, epochs=epochs, verbose=verbose)
    return model


# -- Fast R-CNN ------------------------------------------------------------------------------
def _short_repr(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


@register_serializable(package="cnnkit")
class FastRCNN(Model):
    """Fast R-CNN: a convolutional ``backbone`` run once per image, ``roi_align`` of each
    proposal from its feature map (``pool_size`` bins, ``spatial_scale = 1 / stride``) and
    a ``head`` giving ``1 + C`` class logits and ``4 C`` box deltas. Build it with
    :func:`fast_rcnn`, train it with :func:`train_fast_rcnn`.

    A :class:`cnnkit.Model` of two inputs, called as ``model([images, rois])``: ``save``
    writes it (both networks, ``num_classes``, ``class_names``, ``stride``,
    ``pool_size``) and :func:`cnnkit.load_model` reads it back.
    """

    def __init__(
        self,
        backbone: Sequential,
        head: Sequential,
        *,
        num_classes: int,
        stride: int,
        pool_size: int,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (("backbone", backbone), ("head", head)):
            if not isinstance(value, Sequential):
                raise TypeError(
                    f"FastRCNN(): {name} must be a Sequential, got {type(value).__name__}"
                )
        super().__init__(**kwargs)
        self.backbone, self.head = backbone, head
        self.num_classes = _positive_int(num_classes, "FastRCNN", "num_classes")
        self.stride = _positive_int(stride, "FastRCNN", "stride")
        self.pool_size = _positive_int(pool_size, "FastRCNN", "pool_size")
        self.class_names = None if class_names is None else tuple(class_names)
        # Built when its networks are (they declare their inputs): it can be saved before
        # it has been called, and loading rebuilds it from the networks' files.
        self.built = backbone.built and head.built

    def call(self, inputs: Any, training: bool = False) -> Tensor:
        """Raw ``(K, 1 + 5 C)`` outputs for ``inputs = [images, rois]``: ``rois`` (K, 5) =
        ``[image index, x1, y1, x2, y2]`` in pixels of ``images`` (N, H, W, 3)."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"FastRCNN(): inputs must be [images, rois], got {_short_repr(inputs)}"
            )
        images, rois = inputs
        features = self.backbone(images, training=training)
        pooled = ag.roi_align(
            features, rois, self.pool_size, 1.0 / self.stride, sampling_ratio=2, aligned=True
        )
        return self.head(pooled, training=training)

    def get_config(self) -> dict[str, Any]:
        from .. import layers

        return {
            **super().get_config(),
            "backbone": layers.serialize(self.backbone),
            "head": layers.serialize(self.head),
            "num_classes": self.num_classes,
            "stride": self.stride,
            "pool_size": self.pool_size,
            "class_names": None if self.class_names is None else list(self.class_names),
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> FastRCNN:
        from .. import layers

        config = dict(config)
        for key in ("backbone", "head"):
            config[key] = layers.deserialize(config.get(key), custom_objects)
        return cls(**config)


def fast_rcnn(
    image_size: int = 64,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    width: int = 16,
    hidden: int = 128,
    pool_size: int = 4,
    seed: int | None = 0,
) -> FastRCNN:
    """A small Fast R-CNN for ``image_size`` x ``image_size`` RGB images.

    Backbone: four of the YOLO demo's conv blocks, the first two pooled (stride 4; channels
    ``width``, ``2 width``, ``4 width``, ``4 width``). Each proposal is pooled to
    ``pool_size`` x ``pool_size`` by ``roi_align``; head: a hidden dense layer and one linear
    layer giving ``1 + C`` logits and ``4 C`` deltas.
    """
    from .. import layers

    fn = "fast_rcnn"
    image_size = _positive_int(image_size, fn, "image_size")
    if image_size % 4:
        raise ValueError(f"{fn}(): image_size must be divisible by 4, got {image_size}")
    num_classes = _positive_int(num_classes, fn, "num_classes")
    pool_size = _positive_int(pool_size, fn, "pool_size")
    stack: list[Any] = [layers.Input((image_size, image_size, 3))]
    channels = _conv_blocks(stack, _positive_int(width, fn, "width"), 4, 2)
    backbone = Sequential(stack, name="fast_rcnn_backbone", seed=seed)
    head_stack: list[Any] = [layers.Input((pool_size, pool_size, channels))]
    _head(head_stack, _positive_int(hidden, fn, "hidden"), num_classes)
    head = Sequential(head_stack, name="fast_rcnn_head", seed=None if seed is None else seed + 1)
    return FastRCNN(
        backbone,
        head,
        num_classes=num_classes,
        stride=4,
        pool_size=pool_size,
        class_names=class_names,
    )


def _rois(boxes: Sequence[np.ndarray]) -> np.ndarray:
    """Per-image (K_i, 4) boxes as (sum K_i, 5) ``[image index, x1, y1, x2, y2]`` rows."""
    index = [np.full((len(b), 1), i, np.float32) for i, b in enumerate(boxes)]
    return np.concatenate([np.concatenate(pair, axis=1) for pair in zip(index, boxes)])


def train_fast_rcnn(
    images: Any,
    targets: Sequence[dict],
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    epochs: int = 4,
    proposals_per_image: int = 32,
    images_per_batch: int = 8,
    learning_rate: float = 2e-3,
    width: int = 16,
    mode: str = "fast",
    max_proposals: int = 2000,
    proposals: Sequence[Any] | None = None,
    seed: int = 0,
    verbose: int = 0,
    print_fn: Callable[[str], Any] = print,
) -> FastRCNN:
    """Train a :func:`fast_rcnn` on ``images`` (N, S, S, 3) with :class:`ProposalLoss`.

    Fast R-CNN's hierarchical sampling: each step takes ``images_per_batch`` images and
    ``proposals_per_image`` sampled proposals of each (:func:`sample_proposals`), runs the
    backbone once per image and the head once per proposal; Adam with a cosine-decayed
    rate. ``targets`` and ``proposals`` as in :func:`train_rcnn`.
    """
    from ..optimizers import Adam
    from ..schedules import CosineDecay

    fn = "train_fast_rcnn"
    xs = _training_images(images, targets, fn, num_classes)
    shapes = {x.shape for x in xs}
    if len(shapes) != 1 or xs[0].shape[0] != xs[0].shape[1]:
        raise ValueError(f"{fn}(): images must be square and of one size, got shapes {shapes}")
    if proposals is None:
        proposals = _all_proposals(xs, mode, max_proposals, seed)
    model = fast_rcnn(
        xs[0].shape[0], num_classes=num_classes, class_names=class_names, width=width, seed=seed
    )
    stack = np.stack(xs)
    epochs = _positive_int(epochs, fn, "epochs")
    per_image = _positive_int(proposals_per_image, fn, "proposals_per_image")
    per_batch = _positive_int(images_per_batch, fn, "images_per_batch")
    steps = -(-len(xs) // per_batch)
    schedule = CosineDecay(learning_rate, decay_steps=epochs * steps, alpha=0.02)
    optimizer = Adam(learning_rate=schedule)
    loss_fn = ProposalLoss(num_classes)
    rng = np.random.default_rng(seed)
    weights = model.trainable_weights
    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        order = rng.permutation(len(xs))
        for start in range(0, len(order), per_batch):
            index = order[start : start + per_batch]
            boxes, ys = [], []
            for i in index:
                t = targets[i]
                b, y = sample_proposals(
                    proposals[i], t["boxes"], t["classes"], count=per_image, rng=rng
                )
                boxes.append(b)
                ys.append(y)
            for v in weights:
                v.grad = None
            with ag.enable_grad():
                raw = model([stack[index], _rois(boxes)], training=True)
                loss = loss_fn(np.concatenate(ys), raw)
            loss.backward()
            optimizer.apply_gradients([(v.grad, v) for v in weights])
            total += float(loss.data)
        if verbose:
            print_fn(
                f"epoch {epoch + 1}/{epochs}: loss {total / steps:.4f} "
                f"({time.perf_counter() - started:.1f} s)"
            )
    for v in weights:
        v.grad = None
    return model


def fast_rcnn_detect(
    model: FastRCNN,
    images: Any,
    *,
    proposals: Sequence[Any] | None = None,
    max_proposals: int = 2000,
    batch_size: int = 16,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.3,
    max_detections: int = 100,
    mode: str = "fast",
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Fast R-CNN on a batch of images: the backbone once per image, each proposal pooled
    from the feature map, the head on all proposals, NMS per class.

    Parameters
    ----------
    model : FastRCNN
    images : array_like, shape (N, H, W, 3)
        As :func:`rcnn_detect` takes one image (a single (H, W, 3) image is a batch of one).
    proposals : sequence of N arrays (K_i, 4), optional
        By default selective search of each image.
    batch_size : int
        Images per backbone call.
    max_proposals, score_threshold, iou_threshold, max_detections, mode, seed
        As in :func:`rcnn_detect`.

    Returns
    -------
    list of dict
        One :func:`rcnn_detect` result per image.
    """
    fn = "fast_rcnn_detect"
    if not isinstance(model, FastRCNN):
        raise TypeError(f"{fn}(): model must be a FastRCNN, got {type(model).__name__}")
    _check_detect_args(fn, score_threshold, iou_threshold, max_detections, max_proposals)
    batch_size = _positive_int(batch_size, fn, "batch_size")
    arr = np.asarray(images)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[None]
    xs = [_rgb(im, fn) for im in arr] if arr.ndim in (3, 4) else None
    if xs is None:
        raise ValueError(f"{fn}(): images must have shape (N, H, W, 3), got {arr.shape}")
    if proposals is None:
        boxes = _all_proposals(xs, mode, max_proposals, seed)
    else:
        if len(proposals) != len(xs):
            raise ValueError(
                f"{fn}(): proposals must hold one array per image ({len(xs)}), got {len(proposals)}"
            )
        boxes = [
            _check_proposals(p, x.shape[0], x.shape[1], fn)[:max_proposals]
            for p, x in zip(proposals, xs)
        ]
    results = []
    c = model.num_classes
    with ag.no_grad():
        for start in range(0, len(xs), batch_size):
            part = boxes[start : start + batch_size]
            raw = model([np.stack(xs[start : start + batch_size]), _rois(part)]).data
            offsets = np.cumsum([0, *(len(b) for b in part)])
            for j, b in enumerate(part):
                r = raw[offsets[j] : offsets[j + 1]].astype(np.float64)
                results.append(
                    _detections(
                        b,
                        _softmax(r[:, : 1 + c]),
                        r[:, 1 + c :],
                        xs[0].shape[:2],
                        score_threshold,
                        iou_threshold,
                        max_detections,
                    )
                )
    return results
