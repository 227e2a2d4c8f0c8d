"""NumPy reference implementations of :mod:`cnnkit.ops`: the executable specification.

Each function has the signature and the semantics of its namesake in
:mod:`cnnkit.ops` and is written for clarity, not speed (NMS here compares
every candidate with every kept box). The tests check the native kernels
against these. Inputs are assumed valid: argument checking is the kernels'
job and is tested separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes",
    "complete_box_iou",
    "distance_box_iou",
    "generalized_box_iou",
    "nms",
    "remove_small_boxes",
    "soft_nms",
]


def _boxes(boxes: ArrayLike, dtype: np.dtype | None = None) -> np.ndarray:
    a = np.asarray(boxes)
    if a.size == 0:
        a = a.reshape(0, 4)
    return a.astype(dtype or a.dtype, copy=False)


def _common(*arrays: ArrayLike) -> tuple[np.ndarray, ...]:
    arrs = [np.asarray(a) for a in arrays]
    dtype = np.result_type(*arrs)
    return tuple(_boxes(a, dtype) if a.ndim != 1 else a.astype(dtype) for a in arrs)


def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str) -> np.ndarray:
    b = _boxes(boxes)
    half = b.dtype.type(0.5)
    p, q, r, s = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    if in_fmt == out_fmt:
        return b.copy()
    if in_fmt == "xyxy":
        x1, y1, x2, y2 = p, q, r, s
    elif in_fmt == "xywh":
        x1, y1, x2, y2 = p, q, p + r, q + s
    else:
        x1, y1, x2, y2 = p - half * r, q - half * s, p + half * r, q + half * s
    if out_fmt == "xyxy":
        cols = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        cols = (x1, y1, r, s) if in_fmt == "cxcywh" else (x1, y1, x2 - x1, y2 - y1)
    elif in_fmt == "xywh":
        cols = (p + half * r, q + half * s, r, s)
    else:
        cols = (half * (x1 + x2), half * (y1 + y2), x2 - x1, y2 - y1)
    return np.stack(cols, axis=1)


def box_area(boxes: ArrayLike) -> np.ndarray:
    b = _boxes(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def clip_boxes(boxes: ArrayLike, size: Sequence[float]) -> np.ndarray:
    b = _boxes(boxes)
    height, width = b.dtype.type(size[0]), b.dtype.type(size[1])
    out = b.copy()
    out[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    out[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    return out


def remove_small_boxes(boxes: ArrayLike, min_size: float) -> np.ndarray:
    b = _boxes(boxes)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return np.flatnonzero((w >= min_size) & (h >= min_size)).astype(np.int64)


def _pairs(boxes1: ArrayLike, boxes2: ArrayLike, aligned: bool):
    """Columns of both box sets, broadcast to (N, M) or kept (N,) when aligned."""
    a, b = _common(boxes1, boxes2)
    if aligned:
        return a.T, b.T
    return a.T[:, :, None], b.T[:, None, :]


def _iou_parts(a: np.ndarray, b: np.ndarray):
    """IoU, union and the enclosing box's width and height, elementwise."""
    zero, one = a.dtype.type(0), a.dtype.type(1)
    iw = np.maximum(np.minimum(a[2], b[2]) - np.maximum(a[0], b[0]), zero)
    ih = np.maximum(np.minimum(a[3], b[3]) - np.maximum(a[1], b[1]), zero)
    inter = iw * ih
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    union = (area_a + area_b) - inter
    iou = inter / np.where(union > 0, union, one)  # two empty boxes: 0, not NaN
    cw = np.maximum(a[2], b[2]) - np.minimum(a[0], b[0])
    ch = np.maximum(a[3], b[3]) - np.minimum(a[1], b[1])
    return iou, union, cw, ch


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    a, b = _pairs(boxes1, boxes2, aligned)
    return _iou_parts(a, b)[0]


def generalized_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False
) -> np.ndarray:
    a, b = _pairs(boxes1, boxes2, aligned)
    iou, union, cw, ch = _iou_parts(a, b)
    enclosing = cw * ch
    return iou - (enclosing - union) / np.where(enclosing > 0, enclosing, 1)


def _diou(a: np.ndarray, b: np.ndarray):
    iou, _, cw, ch = _iou_parts(a, b)
    half = a.dtype.type(0.5)
    diag = cw * cw + ch * ch
    dx = (a[0] + a[2]) * half - (b[0] + b[2]) * half
    dy = (a[1] + a[3]) * half - (b[1] + b[3]) * half
    return iou - (dx * dx + dy * dy) / np.where(diag > 0, diag, 1), iou


def distance_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    a, b = _pairs(boxes1, boxes2, aligned)
    return _diou(a, b)[0]


def complete_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    a, b = _pairs(boxes1, boxes2, aligned)
    diou, iou = _diou(a, b)
    angle_a = np.arctan2(a[2] - a[0], a[3] - a[1])
    angle_b = np.arctan2(b[2] - b[0], b[3] - b[1])
    v = a.dtype.type(4 / np.pi**2) * (angle_a - angle_b) ** 2
    denom = (1 - iou) + v
    alpha = v / np.where(denom > 0, denom, 1)
    return diou - alpha * v


def _score_order(scores: np.ndarray, score_threshold: float | None) -> np.ndarray:
    """Indices passing the threshold, by decreasing score, ties by increasing index.

    Thresholds are compared in float64, as the kernels do (NumPy would round a
    Python float threshold to a float32 array's dtype first).
    """
    idx = np.arange(len(scores))
    if score_threshold is not None:
        idx = idx[scores.astype(np.float64) >= score_threshold]
    return idx[np.lexsort((idx, -scores[idx]))]


def _greedy(boxes: np.ndarray, order: np.ndarray, iou_threshold: float) -> list[int]:
    kept: list[int] = []
    for i in order:
        iou = box_iou(boxes[i : i + 1], boxes[kept])[0].astype(np.float64)
        if not kept or not np.any(iou > iou_threshold):
            kept.append(int(i))
    return kept


def nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float,
    *,
    score_threshold: float | None = None,
    max_output: int | None = None,
) -> np.ndarray:
    b, s = _common(boxes, scores)
    kept = _greedy(b, _score_order(s, score_threshold), iou_threshold)
    return np.asarray(kept[:max_output], dtype=np.int64)


def batched_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    classes: ArrayLike,
    iou_threshold: float,
    *,
    score_threshold: float | None = None,
    max_output: int | None = None,
) -> np.ndarray:
    b, s = _common(boxes, scores)
    c = np.asarray(classes).astype(np.int64)
    order = _score_order(s, score_threshold)
    keep = np.zeros(len(s), dtype=bool)
    for label in np.unique(c[order]):
        keep[_greedy(b, order[c[order] == label], iou_threshold)] = True
    return order[keep[order]][:max_output].astype(np.int64)


def soft_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    *,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> tuple[np.ndarray, np.ndarray]:
    b, s = _common(boxes, scores)
    current = s.copy()
    alive = current.astype(np.float64) >= score_threshold
    indices: list[int] = []
    selected: list = []
    while alive.any():
        candidates = np.flatnonzero(alive)
        m = int(candidates[np.argmax(current[candidates])])  # first maximum: lowest index
        indices.append(m)
        selected.append(current[m])
        alive[m] = False
        rest = np.flatnonzero(alive)
        iou = box_iou(b[m : m + 1], b[rest])[0].astype(np.float64)
        if method == "gaussian":
            factor = np.exp(-(iou * iou) / sigma)
        else:
            factor = np.where(iou > iou_threshold, 1.0 - iou, 1.0)
        current[rest] = (current[rest].astype(np.float64) * factor).astype(s.dtype)
        alive[rest] = current[rest].astype(np.float64) >= score_threshold
    return np.asarray(indices, dtype=np.int64), np.asarray(selected, dtype=s.dtype)
