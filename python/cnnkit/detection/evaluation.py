"""Detection metrics: COCO mean average precision and recall, Pascal VOC average precision.

:func:`evaluate` computes the twelve COCO box metrics exactly as ``pycocotools``'
``COCOeval`` (``iouType="bbox"``) does, quirks included, so that numbers are comparable with
published ones. It is written here rather than wrapping ``pycocotools`` because the run-time
dependency is NumPy only, and because ``COCOeval`` matches detections in Python loops (one per
image, category, area range, IoU threshold, detection and ground-truth box); here the greedy
matching runs for all images, categories, area ranges and IoU thresholds at once, one step per
detection rank, and IoUs come from the native :func:`cnnkit.ops.box_iou`.

:func:`voc_ap` and :func:`voc_evaluate` give Pascal VOC average precision (11-point VOC2007 or
all-point VOC2010+ interpolation).

Boxes are ``xyxy`` (``x1, y1, x2, y2``) throughout, as everywhere in cnnkit; ``pycocotools``
takes ``xywh``. IoU is continuous (no ``+ 1`` pixel as in the VOC devkit's MATLAB code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .. import ops

__all__ = ["COCO_IOU_THRESHOLDS", "COCO_METRIC_KEYS", "evaluate", "voc_ap", "voc_evaluate"]

COCO_IOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, 10)
"""0.50:0.05:0.95, computed as pycocotools does (``linspace``, so 0.5 and 0.75 are exact)."""

COCO_METRIC_KEYS: tuple[str, ...] = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
"""The twelve scalar keys of :func:`evaluate` (default ``max_detections``), in the order of
pycocotools' ``COCOeval.stats``: ``dict(zip(COCO_METRIC_KEYS, coco_eval.stats))`` compares."""

_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
# (label, min area, max area), both ends inclusive; pycocotools' 1e5 ** 2 caps "all" and "large".
_AREA_RANGES = (
    ("", 0.0, 1e5**2),
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, 1e5**2),
)
# pycocotools caps every threshold so that an IoU of exactly 1 still matches at 1.0.
_MAX_THRESHOLD = 1 - 1e-10

_STEP_ELEMENTS = 1 << 22
_DET_KEYS = ("boxes", "scores", "classes")
_GT_KEYS = ("boxes", "classes")


# --- input validation ---------------------------------------------------------------------


class _Flat:
    """Every image's boxes concatenated, with the image index of each box."""

    def __init__(self, n_images: int) -> None:
        self.n_images = n_images
        self.image = np.zeros(0, np.int64)
        self.boxes = np.zeros((0, 4))
        self.classes = np.zeros(0, np.int64)
        self.scores = np.zeros(0)
        self.crowd = np.zeros(0, bool)
        self.area = np.zeros(0)
        self.difficult = np.zeros(0, bool)


def _check_list(fn: str, name: str, value: Any) -> Sequence:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{fn}(): {name} must be a list with one dict per image, got {type(value).__name__}"
        )
    return value


def _array(
    fn: str, where: str, value: Any, shape: str, n: int | None, kinds: str = "iuf"
) -> np.ndarray:
    """``value`` as an array of shape (n, 4) or (n,) (``shape`` names it; ``n=None``: any n)
    whose dtype kind is one of ``kinds``."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{fn}(): {where} must be an array of shape {shape}, got {value!r}"
        ) from exc
    if a.dtype.kind not in kinds:
        kind = "booleans or numbers" if "b" in kinds else "numbers"
        raise TypeError(f"{fn}(): {where} must be an array of {kind}, got dtype {a.dtype}")
    if shape == "(K, 4)":
        if a.shape == (0,):  # an empty list: no boxes
            a = a.reshape(0, 4)
        well_formed = a.ndim == 2 and a.shape[1] == 4
    else:
        well_formed = a.ndim == 1
    if not well_formed or (n is not None and a.shape[0] != n):
        rows = "" if n is None else f" with K = {n} as in 'boxes'"
        raise ValueError(f"{fn}(): {where} must have shape {shape}{rows}, got {a.shape}")
    return a


def _first_bad(fn: str, name: str, image: np.ndarray, bad: Any, what: str) -> None:
    """Raise for the first image with a True in ``bad`` (one flag per box)."""
    if bad.any():
        raise ValueError(f"{fn}(): {name}[{int(image[np.argmax(bad)])}]{what}")


def _parse(fn: str, name: str, items: Sequence, required: tuple, optional: tuple) -> _Flat:
    """Check each image's dict (keys, dtypes, shapes) and concatenate; the values are then
    checked all at once, the message naming the first image at fault."""
    flat = _Flat(len(items))
    allowed = (*required, *optional)
    parts: dict[str, list] = {key: [] for key in allowed}
    counts = np.zeros(len(items), np.int64)
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, Mapping):
            raise TypeError(f"{fn}(): {where} must be a dict, got {type(item).__name__}")
        missing = [key for key in required if key not in item]
        unknown = [key for key in item if key not in allowed]
        if missing or unknown:
            raise ValueError(
                f"{fn}(): {where} must have the keys {list(required)} (optionally "
                f"{list(optional)}), got {sorted(map(str, item))}"
            )
        boxes = _array(fn, f"{where}['boxes']", item["boxes"], "(K, 4)", None)
        k = counts[i] = boxes.shape[0]
        parts["boxes"].append(boxes)
        classes = _array(fn, f"{where}['classes']", item["classes"], "(K,)", k, "iuf")
        if classes.dtype.kind == "f" and classes.size:  # np.asarray([]) is float64
            raise TypeError(
                f"{fn}(): {where}['classes'] must be integers, got dtype {classes.dtype}"
            )
        parts["classes"].append(classes)
        for key in ("scores", "area"):
            if key in item:
                parts[key].append(_array(fn, f"{where}[{key!r}]", item[key], "(K,)", k))
            elif key in allowed:
                parts[key].append(None)
        for key in ("iscrowd", "difficult"):
            if key in item:
                parts[key].append(_array(fn, f"{where}[{key!r}]", item[key], "(K,)", k, "biuf"))
            elif key in allowed:
                parts[key].append(np.zeros(k, bool))
    flat.image = np.repeat(np.arange(len(items), dtype=np.int64), counts)
    if not items:
        return flat
    image = flat.image
    boxes = flat.boxes = np.concatenate(parts["boxes"]).astype(np.float64, copy=False)
    _first_bad(
        fn, name, image, ~np.isfinite(boxes).all(1), "['boxes'] must be finite, got NaN or infinity"
    )
    _first_bad(
        fn,
        name,
        image,
        (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]),
        "['boxes'] must be xyxy with x1 <= x2 and y1 <= y2, got a negative width or height",
    )
    flat.classes = np.concatenate(parts["classes"]).astype(np.int64, copy=False)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for key in ("scores", "area"):
        if key not in allowed:
            continue
        got = parts[key]
        if key == "area":  # the box area where no "area" is given
            starts = np.r_[0, np.cumsum(counts)]
            got = [
                box_area[starts[i] : starts[i + 1]] if a is None else a for i, a in enumerate(got)
            ]
        values = np.concatenate(got).astype(np.float64, copy=False)
        _first_bad(
            fn, name, image, ~np.isfinite(values), f"[{key!r}] must be finite, got NaN or infinity"
        )
        if key == "area":  # a negative area fell in no size range: the box was ignored
            _first_bad(fn, name, image, values < 0, "['area'] must be >= 0")
        setattr(flat, key, values)
    for key, attr in (("iscrowd", "crowd"), ("difficult", "difficult")):
        if key in allowed:
            values = np.concatenate(parts[key])
            _first_bad(
                fn,
                name,
                image,
                (values != 0) & (values != 1),
                f"[{key!r}] must be booleans (0 or 1)",
            )
            setattr(flat, attr, values.astype(bool))
    return flat


def _parse_pair(
    fn: str, detections: Any, ground_truth: Any, gt_optional: tuple
) -> tuple[_Flat, _Flat]:
    detections = _check_list(fn, "detections", detections)
    ground_truth = _check_list(fn, "ground_truth", ground_truth)
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"{fn}(): detections and ground_truth must have one entry per image each, got "
            f"{len(detections)} and {len(ground_truth)}"
        )
    dt = _parse(fn, "detections", detections, _DET_KEYS, ())
    gt = _parse(fn, "ground_truth", ground_truth, _GT_KEYS, gt_optional)
    return dt, gt


# --- matching -----------------------------------------------------------------------------


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique values, start and length of each run of equal values in sorted ``keys``."""
    if keys.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    lengths = np.diff(np.r_[starts, keys.size])
    return keys[starts], starts, lengths


def _rank_in_runs(keys: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal values in sorted ``keys``."""
    _, starts, lengths = _segments(keys)
    return np.arange(keys.size) - np.repeat(starts, lengths)


def _find_groups(
    group_keys: np.ndarray, group_count: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``keys``, its group's index and size (0 when no group has that key)."""
    if group_keys.size == 0:
        return np.zeros(keys.size, np.int64), np.zeros(keys.size, np.int64)
    pos = np.minimum(np.searchsorted(group_keys, keys), group_keys.size - 1)
    return pos, np.where(group_keys[pos] == keys, group_count[pos], 0)


def _pair_ious(
    dt_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_crowd: np.ndarray | None,
    gt_first: np.ndarray,
    gt_count: np.ndarray,
    width: int,
) -> np.ndarray:
    """IoU of each detection with the ground truth of its group, ``(D, width)``, -inf padded.

    Detection ``i`` is paired with ground-truth rows ``gt_first[i] : gt_first[i] + gt_count[i]``.
    For a crowd box the union is the detection's area (pycocotools' convention).
    """
    out = np.full((dt_boxes.shape[0], width), -np.inf)
    total = int(gt_count.sum())
    if total == 0:
        return out
    det = np.repeat(np.arange(dt_boxes.shape[0]), gt_count)
    col = np.arange(total) - np.repeat(np.cumsum(gt_count) - gt_count, gt_count)
    gt = np.repeat(gt_first, gt_count) + col
    d, g = dt_boxes[det], gt_boxes[gt]
    values = ops.box_iou(d, g, aligned=True)
    if gt_crowd is not None and gt_crowd[gt].any():
        crowd = np.flatnonzero(gt_crowd[gt])
        dc, gc = d[crowd], g[crowd]
        iw = np.minimum(dc[:, 2], gc[:, 2]) - np.maximum(dc[:, 0], gc[:, 0])
        ih = np.minimum(dc[:, 3], gc[:, 3]) - np.maximum(dc[:, 1], gc[:, 1])
        area = (dc[:, 2] - dc[:, 0]) * (dc[:, 3] - dc[:, 1])
        hit = (iw > 0) & (ih > 0)
        values[crowd] = np.where(hit, iw * ih / np.where(hit, area, 1.0), 0.0)
    out[det, col] = values
    return out


def _coco_match(
    ious: np.ndarray,
    group: np.ndarray,
    rank: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching for detections that share a padded ground-truth width.

    ``ious`` is ``(D, W)``; detection ``i`` belongs to group ``group[i]`` (rows of
    ``gt_ignore`` ``(A, n_groups, W)`` and ``gt_crowd`` ``(n_groups, W)``) and is the
    ``rank[i]``-th by score there. Returns ``matched`` and ``matched_ignored``, ``(A, T, D)``.

    Per group, detections take turns by score; each takes, among the ground truth not yet
    matched (crowd boxes stay available) whose IoU reaches the threshold, the one with the
    highest IoU, preferring boxes not ignored, the later one on ties: what pycocotools' loop
    over the ground truth sorted by ignore flag (stable) does.
    """
    n_area, n_groups, width = gt_ignore.shape
    n_thr, n_det = thresholds.size, ious.shape[0]
    taken = np.zeros((n_area, n_thr, n_groups, width), bool)
    matched = np.zeros((n_area, n_thr, n_det), bool)
    matched_ignored = np.zeros((n_area, n_thr, n_det), bool)
    thr = np.minimum(thresholds, _MAX_THRESHOLD)[None, :, None, None]
    a_index = np.arange(n_area)[:, None, None]
    by_rank = np.argsort(rank, kind="stable")
    _, starts, lengths = _segments(rank[by_rank])
    # Rows per step bounded so the (A, T, rows, W) temporaries stay near 32 MiB.
    chunk = max(1, _STEP_ELEMENTS // (n_area * n_thr * width))
    steps = [
        by_rank[first : min(start + length, first + chunk)]
        for start, length in zip(starts, lengths)
        for first in range(start, start + length, chunk)
    ]
    for rows in steps:  # at most one detection per group in a step
        g = group[rows]
        iou = ious[rows][None, None]
        candidate = (iou >= thr) & (~taken[:, :, g] | gt_crowd[g][None, None])
        regular = ~gt_ignore[:, g][:, None]
        has_regular = (candidate & regular).any(-1, keepdims=True)
        chosen = candidate & (regular == has_regular)
        value = np.where(chosen, iou, -np.inf)
        best = width - 1 - np.argmax(value[..., ::-1], axis=-1)
        hit = chosen.any(-1)
        ai, ti, ni = np.nonzero(hit)
        taken[ai, ti, g[ni], best[ai, ti, ni]] = True
        matched[:, :, rows] = hit
        matched_ignored[:, :, rows] = hit & gt_ignore[a_index, g[None, None], best]
    return matched, matched_ignored


def _width_buckets(counts: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Groups of indices whose counts share a power-of-two bound (padding at most doubles)."""
    out: list[tuple[int, np.ndarray]] = []
    nonzero = counts > 0
    if not nonzero.any():
        return out
    level = np.zeros(counts.shape, np.int64)
    level[nonzero] = np.ceil(np.log2(counts[nonzero])).astype(np.int64)
    for lv in np.unique(level[nonzero]):
        members = np.flatnonzero(nonzero & (level == lv))
        out.append((int(counts[members].max()), members))
    return out


# --- COCO ---------------------------------------------------------------------------------


def _check_thresholds(fn: str, iou_thresholds: Any) -> np.ndarray:
    if iou_thresholds is None:
        return COCO_IOU_THRESHOLDS.copy()
    try:
        t = np.asarray(iou_thresholds, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{fn}(): iou_thresholds must be a 1-D sequence of numbers, got {iou_thresholds!r}"
        ) from exc
    if t.ndim != 1 or t.size == 0:
        raise ValueError(
            f"{fn}(): iou_thresholds must be a non-empty 1-D sequence, got shape {t.shape}"
        )
    if not (np.isfinite(t).all() and (t >= 0).all() and (t <= 1).all()):
        raise ValueError(f"{fn}(): iou_thresholds must lie in [0, 1], got {t.tolist()}")
    return t


def _check_max_detections(fn: str, max_detections: Any) -> tuple[int, ...]:
    if isinstance(max_detections, (int, np.integer)):
        max_detections = (max_detections,)
    try:
        values = tuple(max_detections)
    except TypeError as exc:
        raise TypeError(
            f"{fn}(): max_detections must be a sequence of positive integers, "
            f"got {max_detections!r}"
        ) from exc
    if not values or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ValueError(
            f"{fn}(): max_detections must be positive integers, got {max_detections!r}"
        )
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{fn}(): max_detections must be increasing, got {max_detections!r}")
    return tuple(int(v) for v in values)


def evaluate(
    detections: Sequence[Mapping[str, ArrayLike]],
    ground_truth: Sequence[Mapping[str, ArrayLike]],
    *,
    iou_thresholds: ArrayLike | None = None,
    max_detections: Sequence[int] = (1, 10, 100),
) -> dict[str, Any]:
    """COCO box metrics (mAP and mAR), identical to pycocotools' ``COCOeval`` (``bbox``).

    Parameters
    ----------
    detections : list of dict, one per image
        ``{"boxes": (K, 4) xyxy, "scores": (K,), "classes": (K,) int}``.
    ground_truth : list of dict, one per image, same length and order as ``detections``
        ``{"boxes": (G, 4) xyxy, "classes": (G,) int}``, optionally ``"iscrowd"`` ``(G,)``
        booleans and ``"area"`` ``(G,)`` (the area that decides a box's size range; by
        default the box area ``(x2 - x1) * (y2 - y1)``. pycocotools reads the annotation's
        ``area`` field, which for COCO is the segmentation's area: pass it to get the same
        numbers on COCO itself). A detection's area is always its box area.
    iou_thresholds : array_like, optional
        IoU thresholds in [0, 1]; default 0.50:0.05:0.95 (:data:`COCO_IOU_THRESHOLDS`).
    max_detections : sequence of int, default (1, 10, 100)
        Increasing limits on the number of detections kept per image and class (the best
        scored ones), as pycocotools' ``maxDets``.

    Returns
    -------
    dict
        ``map`` (AP at IoU averaged over ``iou_thresholds``), ``map_50``, ``map_75`` (AP at
        IoU 0.5 and 0.75), ``map_small``, ``map_medium``, ``map_large`` (areas below 32**2,
        between 32**2 and 96**2, above 96**2 pixels; both ends inclusive, as pycocotools),
        ``mar_<m>`` for each ``m`` in ``max_detections`` (recall averaged over thresholds and
        classes), ``mar_small``, ``mar_medium``, ``mar_large``: Python floats. The AP and the
        size-range recalls use the largest ``max_detections`` (pycocotools hard-codes 100 for
        ``map``: the same with the default). ``map_per_class`` is a dict
        ``{class: AP at the thresholds}`` over every class in either argument, sorted.

        A value that is undefined is -1, as in pycocotools: a class without ground truth (in
        that area range) does not enter the averages, and a metric whose averages are all
        empty (no ground truth at all, or no ground truth in that size range) is -1, as is
        ``map_50`` / ``map_75`` when 0.5 / 0.75 is not among ``iou_thresholds``. A class
        with ground truth but no detections has AP 0.

    Notes
    -----
    The definitions are pycocotools': detections of each image and class sorted by score
    (stable), at most ``max(max_detections)`` kept; greedy matching by score to the unmatched
    ground truth of the same class with the highest IoU >= threshold (regular boxes before
    ignored ones, the later box on IoU ties); ground truth outside the area range and crowd
    boxes are ignored, a crowd box can absorb any number of detections and its IoU divides by
    the detection's area; unmatched detections outside the area range are ignored; precision
    is made monotone and read at 101 recall points (first point whose recall reaches each).

    Examples
    --------
    >>> det = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "classes": [1]}]
    >>> gt = [{"boxes": [[0, 0, 10, 10]], "classes": [1]}]
    >>> round(evaluate(det, gt)["map"], 12)  # precision is tp / (tp + fp + 2e-16)
    1.0
    """
    fn = "evaluate"
    thresholds = _check_thresholds(fn, iou_thresholds)
    max_dets = _check_max_detections(fn, max_detections)
    dt, gt = _parse_pair(fn, detections, ground_truth, ("iscrowd", "area"))
    precision, recall, classes = _coco_tables(dt, gt, thresholds, max_dets)
    return _summarize(precision, recall, classes, thresholds, max_dets)


def _coco_tables(
    dt: _Flat, gt: _Flat, thresholds: np.ndarray, max_dets: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pycocotools' ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M), -1 undefined."""
    n_images = dt.n_images
    classes = np.union1d(dt.classes, gt.classes)
    n_cls, n_thr, n_area, n_max = classes.size, thresholds.size, len(_AREA_RANGES), len(max_dets)
    lo = np.array([r[1] for r in _AREA_RANGES])[:, None]
    hi = np.array([r[2] for r in _AREA_RANGES])[:, None]

    # Ground truth by (class, image), input order within a group.
    gt_key = np.searchsorted(classes, gt.classes) * n_images + gt.image
    order = np.argsort(gt_key, kind="stable")
    gt_key, gt_boxes, gt_crowd = gt_key[order], gt.boxes[order], gt.crowd[order]
    gt_cls = np.searchsorted(classes, gt.classes[order])
    gt_ignore = gt_crowd[None] | (gt.area[order][None] < lo) | (gt.area[order][None] > hi)
    group_keys, group_first, group_count = _segments(gt_key)

    # Detections by (class, image, -score, input order); the best max_dets[-1] of each group.
    dt_cls = np.searchsorted(classes, dt.classes)
    dt_key = dt_cls * n_images + dt.image
    order = np.lexsort((-dt.scores, dt_key))
    rank = _rank_in_runs(dt_key[order])
    order = order[rank < max_dets[-1]]
    rank = rank[rank < max_dets[-1]]
    dt_key, dt_cls, dt_boxes = dt_key[order], dt_cls[order], dt.boxes[order]
    dt_scores = dt.scores[order]
    dt_area = (dt_boxes[:, 2] - dt_boxes[:, 0]) * (dt_boxes[:, 3] - dt_boxes[:, 1])

    pos, det_count = _find_groups(group_keys, group_count, dt_key)

    matched = np.zeros((n_area, n_thr, dt_key.size), bool)
    matched_ignored = np.zeros_like(matched)
    for width, members in _width_buckets(det_count):
        groups, local = np.unique(pos[members], return_inverse=True)
        cols = group_first[groups][:, None] + np.arange(width)
        valid = np.arange(width) < group_count[groups][:, None]
        cols = np.where(valid, cols, 0)
        ious = _pair_ious(
            dt_boxes[members],
            gt_boxes,
            gt_crowd,
            group_first[pos[members]],
            det_count[members],
            width,
        )
        m, m_ignored = _coco_match(
            ious,
            local.ravel(),
            rank[members],
            gt_ignore[:, cols] & valid,
            gt_crowd[cols] & valid,
            thresholds,
        )
        matched[:, :, members] = m
        matched_ignored[:, :, members] = m_ignored
    dt_outside = (dt_area[None] < lo) | (dt_area[None] > hi)
    ignored = matched_ignored | (~matched & dt_outside[:, None, :])
    tps = matched & ~ignored
    fps = ~matched & ~ignored

    npig = np.stack([np.bincount(gt_cls[~ig], minlength=n_cls) for ig in gt_ignore])

    precision = -np.ones((n_thr, _RECALL_THRESHOLDS.size, n_cls, n_area, n_max))
    recall = -np.ones((n_thr, n_cls, n_area, n_max))
    _, cls_first, cls_count = _segments(dt_cls)
    cls_present = dt_cls[cls_first] if dt_cls.size else np.zeros(0, np.int64)
    det_range = {int(k): (int(f), int(c)) for k, f, c in zip(cls_present, cls_first, cls_count)}
    for k in range(n_cls):
        defined = npig[:, k] > 0
        if not defined.any():
            continue
        first, count = det_range.get(k, (0, 0))
        kept = -1
        for mi, max_det in enumerate(max_dets):
            idx = first + np.flatnonzero(rank[first : first + count] < max_det)
            if idx.size != kept:  # else the same detections as for the smaller limit
                kept = idx.size
                idx = idx[np.argsort(-dt_scores[idx], kind="stable")]
                p, r = _precision_at_recalls(tps[:, :, idx], fps[:, :, idx], npig[:, k])
            precision[:, :, k, defined, mi] = p[defined].transpose(1, 2, 0)
            recall[:, k, defined, mi] = r[defined].T
    return precision, recall, classes


def _first_counts(npig: np.ndarray) -> np.ndarray:
    """For each count of ground truth (A,) and recall point, the fewest true positives ``c``
    with ``c / npig >= point`` in floating point (A, R): where pycocotools' recall reaches it.
    """
    n = np.maximum(npig, 1).astype(np.float64)[:, None]
    c = np.ceil(_RECALL_THRESHOLDS[None] * n)
    # thr * n may round either way: step to the exact boundary of the division c / n.
    for _ in range(2):
        c = np.where((c > 0) & ((c - 1) / n >= _RECALL_THRESHOLDS), c - 1, c)
        c = np.where(c / n < _RECALL_THRESHOLDS, c + 1, c)
    return c.astype(np.int64)


def _precision_at_recalls(
    tps: np.ndarray, fps: np.ndarray, npig: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at the 101 recall points, (A, T, R), and final recall, (A, T).

    ``tps`` and ``fps`` are (A, T, D) in score order; ``npig`` (A,) counts the ground truth
    that is not ignored (rows with none come out meaningless: the caller leaves them at -1).
    """
    n_area, n_thr, nd = tps.shape
    n_rec = _RECALL_THRESHOLDS.size
    if nd == 0:
        return np.zeros((n_area, n_thr, n_rec)), np.zeros((n_area, n_thr))
    tp_count = np.cumsum(tps, axis=2)
    tp = tp_count.astype(np.float64)
    fp = np.cumsum(fps, axis=2).astype(np.float64)
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1]
    # searchsorted(recall, points, "left") for every row at once: recall = tp / npig is
    # monotone in the integer tp, so search the counts, rows kept apart by integer offsets.
    offset = (np.arange(n_area * n_thr, dtype=np.int64) * (nd + 1)).reshape(n_area, n_thr, 1)
    needed = _first_counts(npig)[:, None, :] + offset
    found = np.searchsorted((tp_count + offset).ravel(), needed.ravel()).reshape(needed.shape)
    found -= (np.arange(n_area * n_thr) * nd).reshape(n_area, n_thr, 1)
    inside = found < nd
    out = np.where(inside, np.take_along_axis(pr, np.minimum(found, nd - 1), axis=2), 0.0)
    return out, tp[..., -1] / np.maximum(npig, 1)[:, None]


def _mean_defined(values: np.ndarray) -> float:
    """pycocotools' average: over the entries > -1, or -1 when there are none."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def _summarize(
    precision: np.ndarray,
    recall: np.ndarray,
    classes: np.ndarray,
    thresholds: np.ndarray,
    max_dets: tuple[int, ...],
) -> dict[str, Any]:
    last = len(max_dets) - 1
    out: dict[str, Any] = {"map": _mean_defined(precision[:, :, :, 0, last])}
    for name, value in (("map_50", 0.5), ("map_75", 0.75)):
        at = np.flatnonzero(thresholds == value)
        out[name] = _mean_defined(precision[at][:, :, :, 0, last])
    for a, (label, _, _) in enumerate(_AREA_RANGES[1:], 1):
        out[f"map_{label}"] = _mean_defined(precision[:, :, :, a, last])
    for m, max_det in enumerate(max_dets):
        out[f"mar_{max_det}"] = _mean_defined(recall[:, :, 0, m])
    for a, (label, _, _) in enumerate(_AREA_RANGES[1:], 1):
        out[f"mar_{label}"] = _mean_defined(recall[:, :, a, last])
    out["map_per_class"] = {
        int(c): _mean_defined(precision[:, :, k, 0, last]) for k, c in enumerate(classes)
    }
    return out


# --- Pascal VOC ---------------------------------------------------------------------------


def _check_bool(fn: str, name: str, value: Any) -> None:
    # The string 'no' is truthy: it chose the 11-point average without a word.
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}(): {name} must be a bool, got {type(value).__name__} {value!r}")


def _curve(fn: str, name: str, value: Any) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{fn}(): {name} must be a 1-D array of numbers, got {value!r}") from exc
    if a.ndim != 1:
        raise ValueError(f"{fn}(): {name} must be 1-D, got shape {a.shape}")
    if not (np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()):
        raise ValueError(f"{fn}(): {name} must lie in [0, 1] (finite), got {a.tolist()}")
    return a


def voc_ap(recall: ArrayLike, precision: ArrayLike, *, use_11_point: bool = False) -> float:
    """Pascal VOC average precision of a precision-recall curve.

    Parameters
    ----------
    recall : array_like, shape (N,)
        Non-decreasing recall values in [0, 1], one per detection in score order.
    precision : array_like, shape (N,)
        The precision at each of those points, in [0, 1].
    use_11_point : bool, default False
        True: the VOC2007 11-point interpolation, the mean over ``t = 0, 0.1, ..., 1`` of the
        highest precision at a recall ``>= t`` (0 where there is none). The points are
        ``k / 10`` exactly (the devkit's Python ports use ``np.arange(0, 1.1, 0.1)``, whose
        0.3, 0.6 and 0.7 lie slightly above, which differs only when a recall equals one of
        those exactly). False: the VOC2010+ all-point interpolation, the area under the
        precision envelope (precision made non-increasing in recall), summed where recall
        changes.

    Returns
    -------
    float
        In [0, 1]; 0 for an empty curve.

    Examples
    --------
    >>> voc_ap([0.5, 1.0], [1.0, 0.5])
    0.75
    """
    fn = "voc_ap"
    rec = _curve(fn, "recall", recall)
    prec = _curve(fn, "precision", precision)
    if rec.shape != prec.shape:
        raise ValueError(
            f"{fn}(): recall and precision must have the same shape, got {rec.shape} and "
            f"{prec.shape}"
        )
    if (np.diff(rec) < 0).any():
        raise ValueError(f"{fn}(): recall must be non-decreasing (points in score order)")
    _check_bool(fn, "use_11_point", use_11_point)
    if use_11_point:
        points = np.arange(11) / 10
        total = 0.0
        for t in points:
            reached = prec[rec >= t]
            total += float(reached.max()) if reached.size else 0.0
        return total / 11
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc_evaluate(
    detections: Sequence[Mapping[str, ArrayLike]],
    ground_truth: Sequence[Mapping[str, ArrayLike]],
    *,
    iou_threshold: float = 0.5,
    use_11_point: bool = False,
) -> dict[str, Any]:
    """Pascal VOC per-class average precision and their mean.

    Parameters
    ----------
    detections, ground_truth : list of dict, one per image
        As in :func:`evaluate`; ground truth may carry ``"difficult"`` ``(G,)`` booleans
        (instead of ``iscrowd`` / ``area``).
    iou_threshold : float, default 0.5
        A detection matches when its IoU with a ground-truth box is above this (strictly, as
        the VOC devkit).
    use_11_point : bool, default False
        The interpolation of :func:`voc_ap`: VOC2007 11-point, or all-point (VOC2010+).

    Returns
    -------
    dict
        ``map`` (the mean over the classes that have ground truth, -1 when none has) and
        ``map_per_class``, ``{class: AP}`` over every class in either argument, sorted; -1 for
        a class without (non-difficult) ground truth.

    Notes
    -----
    VOC matching: each class's detections over all images are taken by score (highest
    first; ties by image, then input order). A detection is compared with every ground-truth
    box of its image and class and takes the one of highest IoU (the first on ties). Above
    the threshold it is a true positive if that box is still unmatched, a false positive if
    it was matched already, and left out if the box is difficult; otherwise it is a false
    positive. Difficult boxes do not count towards recall. Every detection is used (no
    per-image limit).
    """
    fn = "voc_evaluate"
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float, np.number)):
        raise TypeError(f"{fn}(): iou_threshold must be a number, got {iou_threshold!r}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"{fn}(): iou_threshold must lie in [0, 1], got {iou_threshold!r}")
    _check_bool(fn, "use_11_point", use_11_point)
    dt, gt = _parse_pair(fn, detections, ground_truth, ("difficult",))
    n_images = dt.n_images
    classes = np.union1d(dt.classes, gt.classes)

    gt_key = np.searchsorted(classes, gt.classes) * n_images + gt.image
    order = np.argsort(gt_key, kind="stable")
    gt_key, gt_boxes, difficult = gt_key[order], gt.boxes[order], gt.difficult[order]
    gt_cls = np.searchsorted(classes, gt.classes[order])
    group_keys, group_first, group_count = _segments(gt_key)

    dt_cls = np.searchsorted(classes, dt.classes)
    dt_key = dt_cls * n_images + dt.image
    # Class, then score, then image, then input order: the VOC ranking within each class.
    order = np.lexsort((dt.image, -dt.scores, dt_cls))
    dt_cls, dt_key, dt_boxes = dt_cls[order], dt_key[order], dt.boxes[order]
    # The rank of each detection within its (class, image) group follows the same order.
    by_group = np.argsort(dt_key, kind="stable")
    rank = np.empty(dt_key.size, np.int64)
    rank[by_group] = _rank_in_runs(dt_key[by_group])

    pos, det_count = _find_groups(group_keys, group_count, dt_key)

    outcome = np.full(dt_key.size, -1, np.int8)  # 1 true positive, -1 false, 0 left out
    for width, members in _width_buckets(det_count):
        groups, local = np.unique(pos[members], return_inverse=True)
        local = local.ravel()
        ious = _pair_ious(
            dt_boxes[members], gt_boxes, None, group_first[pos[members]], det_count[members], width
        )
        best = np.argmax(ious, axis=1)
        hit = ious[np.arange(members.size), best] > iou_threshold
        best_gt = group_first[groups][local] + best
        taken = np.zeros(gt_boxes.shape[0], bool)
        by_rank = np.argsort(rank[members], kind="stable")
        _, starts, lengths = _segments(rank[members][by_rank])
        for start, length in zip(starts, lengths):
            rows = by_rank[start : start + length]  # at most one per group: no collisions
            g = best_gt[rows]
            h = hit[rows]
            result = np.where(difficult[g], 0, np.where(taken[g], -1, 1))
            outcome[members[rows]] = np.where(h, result, -1)
            taken[g[h & ~difficult[g]]] = True

    npos = np.bincount(gt_cls[~difficult], minlength=classes.size)
    per_class: dict[int, float] = {}
    _, cls_first, cls_count = _segments(dt_cls)
    det_range = {int(dt_cls[f]): (int(f), int(c)) for f, c in zip(cls_first, cls_count)}
    for k, c in enumerate(classes):
        if npos[k] == 0:
            per_class[int(c)] = -1.0
            continue
        first, count = det_range.get(k, (0, 0))
        used = outcome[first : first + count]
        used = used[used != 0]
        tp = np.cumsum(used == 1).astype(np.float64)
        fp = np.cumsum(used == -1).astype(np.float64)
        rec = tp / npos[k]
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class[int(c)] = voc_ap(rec, prec, use_11_point=use_11_point)
    defined = [ap for ap in per_class.values() if ap > -1]
    return {
        "map": float(np.mean(defined)) if defined else -1.0,
        "map_per_class": per_class,
    }
