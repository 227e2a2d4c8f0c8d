"""Test time: multi-crop predictions, ensembles, and box fusion for detection.

The course's recipe: average the outputs of several crops of each test image
(ten crops: the four corners and the centre, and their mirrors) and of several
independently trained networks. For detection, boxes from several models or
from flipped inputs are merged by weighted boxes fusion (Solovyev et al.,
2019), with the arguments and results of the ``ensemble-boxes`` package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import image as im

__all__ = [
    "Ensemble",
    "five_crop",
    "flip_tta",
    "predict_tta",
    "ten_crop",
    "weighted_boxes_fusion",
]


def _crop_size(images: np.ndarray, size: Any, fn: str) -> tuple[int, int]:
    h, w = im._size(size, fn)
    if h > images.shape[1] or w > images.shape[2]:
        raise ValueError(
            f"{fn}(): size must fit in the {images.shape[1]}x{images.shape[2]} images, got {size!r}"
        )
    return h, w


def five_crop(images: Any, size: Any) -> np.ndarray:
    """The four corner crops and the centre crop (torchvision's FiveCrop order: top-left,
    top-right, bottom-left, bottom-right, centre).

    Returns ``(5, h, w, C)`` for one image, ``(N, 5, h, w, C)`` for a batch.
    The centre's top-left corner is ``round((H - h) / 2)`` as torchvision.
    """
    x, single = im.as_images(images, "five_crop")
    h, w = _crop_size(x, size, "five_crop")
    height, width = x.shape[1:3]
    top, left = round((height - h) / 2), round((width - w) / 2)
    corners = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w), (top, left)]
    out = np.stack([x[:, t : t + h, c : c + w] for t, c in corners], axis=1)
    return out[0] if single else out


def ten_crop(images: Any, size: Any) -> np.ndarray:
    """:func:`five_crop` of the images, then of their mirrors (torchvision's TenCrop).

    Returns ``(10, h, w, C)`` for one image, ``(N, 10, h, w, C)`` for a batch.
    """
    x, single = im.as_images(images, "ten_crop")
    out = np.concatenate([five_crop(x, size), five_crop(im.hflip(x), size)], axis=1)
    return out[0] if single else out


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def predict_tta(
    model: Any,
    x: Any,
    crops: str = "ten",
    size: Any = None,
    from_logits: bool = False,
    batch_size: int = 32,
) -> np.ndarray:
    """The model's class probabilities averaged over crops of each image.

    Parameters
    ----------
    model
        Anything with ``predict(x, batch_size=...)`` returning ``(N, classes)``.
    x : array_like, (N, H, W, C)
    crops : {"ten", "five", "center", "flip"}
        Ten or five crops of ``size``, the centre crop alone, or the image and
        its mirror (no crop).
    size : int or (height, width)
        The crop size (the model's input); required except for ``"flip"``.
    from_logits : bool
        Apply a softmax to the outputs before averaging.
    """
    fn = "predict_tta"
    images, _ = im.as_images(x, fn, "x")
    if crops not in ("ten", "five", "center", "flip"):
        raise ValueError(f"{fn}(): crops must be one of ten, five, center, flip, got {crops!r}")
    if crops == "flip":
        views = np.stack([images, im.hflip(images)], axis=1)
    else:
        if size is None:
            raise ValueError(f"{fn}(): size is required for {crops!r} crops")
        if crops == "center":
            views = five_crop(images, size)[:, 4:]
        else:
            views = (ten_crop if crops == "ten" else five_crop)(images, size)
    n, k = views.shape[:2]
    out = np.asarray(model.predict(views.reshape(n * k, *views.shape[2:]), batch_size=batch_size))
    if from_logits:
        out = _softmax(out.astype(np.float64))
    return out.reshape(n, k, *out.shape[1:]).mean(axis=1)


class Ensemble:
    """Several models used as one: ``predict`` averages their outputs.

    Parameters
    ----------
    models : sequence of models
        Each built with its own seed (``Sequential(..., seed=k)``), so that
        ``fit`` trains them independently.
    weights : sequence of float, optional
        A weighted mean instead of the plain mean.
    from_logits : bool
        Average the members' softmax probabilities rather than their raw outputs.
    """

    def __init__(
        self,
        models: Sequence[Any],
        weights: Sequence[float] | None = None,
        from_logits: bool = False,
    ) -> None:
        fn = "Ensemble()"
        self.models = list(models)
        if not self.models or not all(hasattr(m, "predict") for m in self.models):
            raise TypeError(f"{fn}: models must be a non-empty list of models with predict()")
        if weights is None:
            w = np.ones(len(self.models))
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(self.models),) or not np.all(w >= 0) or w.sum() <= 0:
                raise ValueError(
                    f"{fn}: weights must be {len(self.models)} numbers >= 0 with a positive sum, "
                    f"got {weights!r}"
                )
        self.weights = w / w.sum()
        self.from_logits = bool(from_logits)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Compile every member alike (give optimizer names, not one shared instance)."""
        for m in self.models:
            m.compile(*args, **kwargs)

    def fit(self, *args: Any, **kwargs: Any) -> list[Any]:
        """Train each member in turn on the same data; their histories."""
        return [m.fit(*args, **kwargs) for m in self.models]

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        outs = []
        for m in self.models:
            out = np.asarray(m.predict(x, batch_size=batch_size, verbose=verbose))
            outs.append(_softmax(out.astype(np.float64)) if self.from_logits else out)
        return np.tensordot(self.weights, np.stack(outs), axes=1)


def _fused_box(members: list[np.ndarray], conf_type: str) -> np.ndarray:
    """One cluster's fused row ``(label, score, weight, -1, x1, y1, x2, y2)``."""
    rows = np.array(members)
    scores = rows[:, 1]
    out = np.empty(8)
    out[0] = rows[0, 0]
    out[1] = scores.max() if conf_type == "max" else scores.sum() / len(rows)
    out[2] = rows[:, 2].sum()
    out[3] = -1
    out[4:] = (scores[:, None] * rows[:, 4:]).sum(0) / scores.sum()
    return out


def _best_match(fused: np.ndarray, box: np.ndarray, iou_thr: float) -> int:
    if not len(fused):
        return -1
    lo = np.maximum(fused[:, 4:6], box[4:6])
    hi = np.minimum(fused[:, 6:8], box[6:8])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(fused[:, 6:8] - fused[:, 4:6], axis=1)
    iou = inter / (area + np.prod(box[6:8] - box[4:6]) - inter)
    best = int(np.argmax(iou))
    return best if iou[best] > iou_thr else -1


def weighted_boxes_fusion(
    boxes_list: Sequence[Any],
    scores_list: Sequence[Any],
    labels_list: Sequence[Any],
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
    allows_overflow: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted boxes fusion (Solovyev et al.), as ``ensemble_boxes.weighted_boxes_fusion``.

    Each model's boxes (normalised ``xyxy`` in [0, 1], clipped there; zero-area
    boxes and scores below ``skip_box_thr`` are dropped) are taken per label in
    decreasing weighted score; a box joins the cluster whose fused box overlaps
    it most when that IoU exceeds ``iou_thr``, else starts a cluster. A fused
    box is the score-weighted mean of its members; its score the mean (or
    ``max``) weighted score, rescaled by how many models agree.

    Returns
    -------
    boxes : (K, 4) float64
    scores : (K,) float64
    labels : (K,) float64
        By decreasing score.
    """
    fn = "weighted_boxes_fusion()"
    conf_types = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
    if conf_type not in conf_types:
        raise ValueError(
            f"{fn}: conf_type must be one of {', '.join(conf_types)}, got {conf_type!r}"
        )
    if not len(boxes_list) == len(scores_list) == len(labels_list):
        raise ValueError(
            f"{fn}: boxes_list, scores_list and labels_list must have one entry per model, got "
            f"{len(boxes_list)}, {len(scores_list)} and {len(labels_list)}"
        )
    n_models = len(boxes_list)
    w = np.ones(n_models) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n_models,):
        raise ValueError(f"{fn}: weights must have one entry per model ({n_models}), got {w.shape}")
    by_label: dict[int, list[np.ndarray]] = {}
    for t in range(n_models):
        b = np.asarray(boxes_list[t], dtype=np.float64).reshape(-1, 4)
        s = np.asarray(scores_list[t], dtype=np.float64).reshape(-1)
        lab = np.asarray(labels_list[t]).reshape(-1)
        if not len(b) == len(s) == len(lab):
            raise ValueError(
                f"{fn}: model {t} has {len(b)} boxes, {len(s)} scores and {len(lab)} labels"
            )
        b = np.clip(
            np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1),
            0,
            1,
        )
        keep = (s >= skip_box_thr) & ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) != 0)
        for j in np.flatnonzero(keep):
            row = np.array([int(lab[j]), s[j] * w[t], w[t], t, *b[j]])
            by_label.setdefault(int(lab[j]), []).append(row)
    if not by_label:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0)
    results = []
    for rows in by_label.values():
        ordered = np.array(rows)
        ordered = ordered[np.argsort(ordered[:, 1], kind="stable")[::-1]]
        clusters: list[list[np.ndarray]] = []
        fused = np.empty((0, 8))
        for row in ordered:
            k = _best_match(fused, row, iou_thr)
            if k < 0:
                clusters.append([row])
                fused = np.vstack([fused, row])
            else:
                clusters[k].append(row)
                fused[k] = _fused_box(clusters[k], conf_type)
        for k, members in enumerate(clusters):
            count = len(members)
            models = np.unique([m[3] for m in members]).astype(int)
            if conf_type == "box_and_model_avg":
                fused[k, 1] *= count / fused[k, 2]
                first = {int(m[3]): m[2] for m in reversed(members)}
                fused[k, 1] *= sum(first.values()) / w.sum()
            elif conf_type == "absent_model_aware_avg":
                absent = np.ones(n_models, bool)
                absent[models] = False
                fused[k, 1] *= count / (fused[k, 2] + w[absent].sum())
            elif conf_type == "max":
                fused[k, 1] /= w.max()
            elif not allows_overflow:
                fused[k, 1] *= min(n_models, count) / w.sum()
            else:
                fused[k, 1] *= count / w.sum()
        results.append(fused)
    merged = np.concatenate(results)
    merged = merged[np.argsort(merged[:, 1], kind="stable")[::-1]]
    return merged[:, 4:], merged[:, 1], merged[:, 0]


def flip_tta(
    detect: Callable[[np.ndarray], list[dict[str, np.ndarray]]],
    images: Any,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
) -> list[dict[str, np.ndarray]]:
    """Detect on the images and on their mirrors, unflip, and fuse per image with
    :func:`weighted_boxes_fusion`.

    ``detect(images)`` returns per image ``{"boxes": (K, 4) xyxy pixels,
    "scores": (K,), "classes": (K,)}`` (as :func:`cnnkit.detection.detect` with
    its other arguments bound); the result has the same form.
    """
    x, _ = im.as_images(images, "flip_tta")
    h, w = x.shape[1:3]
    plain, mirrored = detect(x), detect(im.hflip(x))
    scale = np.array([w, h, w, h], np.float64)
    out = []
    for a, b in zip(plain, mirrored):
        unflipped = im.hflip_boxes(np.asarray(b["boxes"], np.float64), w)
        boxes, scores, labels = weighted_boxes_fusion(
            [np.asarray(a["boxes"], np.float64) / scale, unflipped / scale],
            [a["scores"], b["scores"]],
            [a["classes"], b["classes"]],
            iou_thr=iou_thr,
            skip_box_thr=skip_box_thr,
            conf_type=conf_type,
        )
        out.append({"boxes": boxes * scale, "scores": scores, "classes": labels.astype(np.int64)})
    return out
