"""Native kernels for NumPy arrays: the API that other projects call.

Every function takes array-likes (converted with :func:`numpy.asarray`; a
C-contiguous float array is used without a copy), validates its arguments
(raising :class:`ValueError` or :class:`TypeError` whose message names the
argument), releases the GIL while it computes, and is safe to call from several
threads at once. Float outputs keep the input dtype (float32 or float64; when
two float inputs differ, the wider one); indices are int64.

Box operations follow :mod:`torchvision.ops` names and semantics, with these
documented differences:

* the IoU of two empty boxes is 0, not NaN (likewise GIoU/DIoU/CIoU need no
  epsilon: zero denominators give a zero penalty);
* boxes must be valid: finite, with ``x1 <= x2`` and ``y1 <= y2``;
* NMS breaks score ties by index, lower first, so the result is stable;
* conversions between ``xywh`` and ``cxcywh`` keep width and height exactly.

:mod:`cnnkit.reference` holds NumPy implementations with the same signatures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import _core

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


def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str) -> np.ndarray:
    """Convert boxes between the ``"xyxy"``, ``"xywh"`` and ``"cxcywh"`` formats.

    ``xyxy`` is (x1, y1, x2, y2), ``xywh`` is (x1, y1, width, height) and
    ``cxcywh`` is (centre x, centre y, width, height).

    Parameters
    ----------
    boxes : array_like, shape (N, 4), float32 or float64
        Boxes in ``in_fmt``; widths and heights must be non-negative.
    in_fmt, out_fmt : {"xyxy", "xywh", "cxcywh"}

    Returns
    -------
    numpy.ndarray, shape (N, 4), same dtype
        A new array, also when ``in_fmt == out_fmt``.

    Examples
    --------
    >>> box_convert([[10., 20., 30., 60.]], "xyxy", "cxcywh")
    array([[20., 40., 20., 40.]])
    """
    return _core.box_convert(boxes, in_fmt, out_fmt)


def box_area(boxes: ArrayLike) -> np.ndarray:
    """Area of each ``xyxy`` box, ``(x2 - x1) * (y2 - y1)``.

    Parameters
    ----------
    boxes : array_like, shape (N, 4), float32 or float64

    Returns
    -------
    numpy.ndarray, shape (N,), same dtype
    """
    return _core.box_area(boxes)


def clip_boxes(boxes: ArrayLike, size: Sequence[float]) -> np.ndarray:
    """Clip ``xyxy`` boxes to an image of ``size = (height, width)``.

    x coordinates are clamped to ``[0, width]`` and y to ``[0, height]``
    (torchvision's ``clip_boxes_to_image``).

    Parameters
    ----------
    boxes : array_like, shape (N, 4), float32 or float64
    size : (height, width)
        Non-negative, finite.

    Returns
    -------
    numpy.ndarray, shape (N, 4), same dtype
    """
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise TypeError(f"clip_boxes(): size must be a (height, width) pair, got {size!r}")
    return _core.clip_boxes(boxes, size[0], size[1])


def remove_small_boxes(boxes: ArrayLike, min_size: float) -> np.ndarray:
    """Indices of the ``xyxy`` boxes whose width and height are both ``>= min_size``.

    Parameters
    ----------
    boxes : array_like, shape (N, 4), float32 or float64
    min_size : float
        Non-negative.

    Returns
    -------
    numpy.ndarray, shape (K,), int64
        Increasing indices into ``boxes``.
    """
    return _core.remove_small_boxes(boxes, min_size)


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    """Intersection over union of ``xyxy`` boxes.

    Parameters
    ----------
    boxes1 : array_like, shape (N, 4)
    boxes2 : array_like, shape (M, 4)
    aligned : bool, default False
        If True, ``boxes1[i]`` is paired with ``boxes2[i]`` only (N == M).

    Returns
    -------
    numpy.ndarray
        Shape (N, M), or (N,) when ``aligned``; values in [0, 1]. Two empty
        boxes have IoU 0.

    Examples
    --------
    >>> box_iou([[0., 0., 2., 2.]], [[1., 0., 3., 2.], [5., 5., 6., 6.]])
    array([[0.33333333, 0.        ]])
    """
    return _core.box_iou(boxes1, boxes2, bool(aligned))


def generalized_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False
) -> np.ndarray:
    """Generalized IoU (Rezatofighi et al. 2019): ``IoU - (C - U) / C``.

    ``C`` is the area of the smallest box enclosing both and ``U`` the union.
    Values lie in [-1, 1]. Shapes as in :func:`box_iou`.
    """
    return _core.generalized_box_iou(boxes1, boxes2, bool(aligned))


def distance_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    """Distance IoU (Zheng et al. 2020): ``IoU - d^2 / c^2``.

    ``d`` is the distance between the box centres and ``c`` the diagonal of
    the smallest enclosing box. Values lie in [-1, 1]. Shapes as in
    :func:`box_iou`.
    """
    return _core.distance_box_iou(boxes1, boxes2, bool(aligned))


def complete_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    """Complete IoU (Zheng et al. 2020): ``DIoU - alpha * v``.

    ``v = 4 / pi^2 * (atan(w1 / h1) - atan(w2 / h2))^2`` measures the
    difference of aspect ratios and ``alpha = v / (1 - IoU + v)``. Aspect
    angles use ``atan2(w, h)``, so empty boxes are well defined. Shapes as in
    :func:`box_iou`.
    """
    return _core.complete_box_iou(boxes1, boxes2, bool(aligned))


def nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float,
    *,
    score_threshold: float | None = None,
    max_output: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score; a box is suppressed when its IoU
    with an already kept box is greater than ``iou_threshold``. Equal scores
    are visited lower index first, so the result is deterministic. When scores
    are distinct the kept set equals ``torchvision.ops.nms``.

    Only overlapping boxes are compared (kept boxes are indexed in a spatial
    grid), so spread-out inputs cost about N log N.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    scores : array_like, shape (N,)
        Finite scores.
    iou_threshold : float
        ``>= 0``.
    score_threshold : float, optional
        Boxes with a score below it are dropped first.
    max_output : int, optional
        Keep at most this many boxes.

    Returns
    -------
    numpy.ndarray, shape (K,), int64
        Indices of the kept boxes, by decreasing score.

    Examples
    --------
    >>> nms([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.]], [0.9, 0.8, 0.7], 0.5)
    array([0, 2])
    """
    return _core.nms(boxes, scores, iou_threshold, score_threshold, max_output)


def batched_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    classes: ArrayLike,
    iou_threshold: float,
    *,
    score_threshold: float | None = None,
    max_output: int | None = None,
) -> np.ndarray:
    """Non-maximum suppression within each class independently.

    The per-class results are merged by decreasing score (ties: lower index
    first). The cost follows the per-class sizes, not the square of the total.

    Parameters
    ----------
    boxes, scores, iou_threshold, score_threshold, max_output
        As in :func:`nms`; ``max_output`` caps the merged result.
    classes : array_like, shape (N,), integer
        A class label per box.

    Returns
    -------
    numpy.ndarray, shape (K,), int64
    """
    return _core.batched_nms(boxes, scores, classes, iou_threshold, score_threshold, max_output)


def soft_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    *,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS (Bodla et al. 2017).

    Repeatedly selects the box with the highest current score (ties: lower
    index) and decays the scores of the remaining boxes by their IoU ``o``
    with it: ``"gaussian"`` multiplies by ``exp(-o^2 / sigma)``, ``"linear"``
    by ``1 - o`` when ``o > iou_threshold``. Boxes whose score is, or decays,
    below ``score_threshold`` are dropped.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        ``xyxy`` boxes.
    scores : array_like, shape (N,)
        Finite, non-negative scores.
    method : {"gaussian", "linear"}
    sigma : float
        ``> 0``; used by ``"gaussian"``.
    iou_threshold : float
        ``>= 0``; used by ``"linear"``.
    score_threshold : float
        ``>= 0``.

    Returns
    -------
    indices : numpy.ndarray, shape (K,), int64
        In the order the boxes were selected.
    scores : numpy.ndarray, shape (K,)
        The decayed score of each selected box.
    """
    return _core.soft_nms(boxes, scores, method, sigma, iou_threshold, score_threshold)
