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
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import _core

__all__ = [
    "KMeansAnchors",
    "avg_pool",
    "avg_pool_backward",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes",
    "complete_box_iou",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_backward",
    "distance_box_iou",
    "generalized_box_iou",
    "global_avg_pool",
    "global_max_pool",
    "gram",
    "gram_backward",
    "kmeans_anchors",
    "matmul",
    "max_pool",
    "max_pool_backward",
    "nms",
    "remove_small_boxes",
    "sliding_windows",
    "soft_nms",
    "window_boxes",
    "yolo_decode",
    "yolo_encode",
    "yolo_encode_batch",
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


def matmul(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Matrix product on cnnkit's packed GEMM.

    Parameters
    ----------
    a : array_like, shape (M, K) or (B, M, K), float32 or float64
    b : array_like, shape (K, N) or (B, K, N)
        A 2-D operand is shared by every matrix of a 3-D one.

    Returns
    -------
    numpy.ndarray, shape (M, N) or (B, M, N)
        Bit-identical for any number of threads.
    """
    return _core.matmul(a, b)


def conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Convolution (cross-correlation, as in every deep-learning library), channels-last.

    The number of spatial dimensions (1 to 3) is chosen by ``x.ndim``.

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C_in), float32 or float64
    w : array_like, shape (*kernel, C_in // groups, C_out)
    b : array_like, shape (C_out,), optional
    stride, dilation : int or tuple of ints, one per spatial dimension
    padding : "valid", "same", int, tuple of ints, or tuple of (before, after) pairs
        ``"same"`` follows Keras/TensorFlow: the output has ``ceil(n / stride)``
        positions and an odd padding pixel goes at the end.
    groups : int
        Splits the channels into groups convolved independently;
        ``groups == C_in`` is a depthwise convolution.

    Returns
    -------
    numpy.ndarray, shape (N, *out, C_out)
        ``out = floor((n + pad_before + pad_after - dilation * (k - 1) - 1) / stride) + 1``.

    Raises
    ------
    ValueError
        Also when the dilated kernel or the padded input, as if materialised
        in float64, would exceed 2**60 (the addressable size): any int64 is
        accepted for stride, padding and dilation, and only sizes are bounded.

    Examples
    --------
    >>> conv(np.zeros((1, 14, 1)), np.zeros((5, 1, 16))).shape
    (1, 10, 16)
    """
    return _core.conv(x, w, b, stride, padding, dilation, groups)


def _conv_of_rank(rank: int):
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[rank]

    def conv_nd(
        x: ArrayLike,
        w: ArrayLike,
        b: ArrayLike | None = None,
        *,
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence = "valid",
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != rank + 2:
            raise ValueError(
                f"conv{rank}d(): x must have shape (N, {spatial}, C_in), got shape {x.shape}"
            )
        return conv(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

    conv_nd.__name__ = conv_nd.__qualname__ = f"conv{rank}d"
    conv_nd.__doc__ = f"{rank}-D convolution: :func:`conv` for x of rank {rank + 2} only."
    return conv_nd


conv1d = _conv_of_rank(1)
conv2d = _conv_of_rank(2)
conv3d = _conv_of_rank(3)


def conv_backward(
    x: ArrayLike,
    w: ArrayLike,
    dy: ArrayLike,
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    need: Sequence[str] = ("x", "w", "b"),
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`conv` with respect to its input, weights and bias.

    Parameters
    ----------
    x, w, stride, padding, dilation, groups
        As given to :func:`conv`.
    dy : array_like
        The gradient with respect to the output, of the output's shape.
    need : iterable of {"x", "w", "b"}
        Which gradients to compute; the others are returned as None. Any
        iterable but a str (a set, a tuple, a generator) is read once.

    Notes
    -----
    A NaN or infinity in ``w`` or ``dy`` may make every entry of ``dx`` NaN,
    also entries that :func:`cnnkit.reference.conv_backward` leaves finite:
    the input gradient is a correlation of ``dy``, zero-padded, with ``w``,
    and ``0 * inf`` is NaN. An entry of ``dx`` is then either the reference's
    value or NaN, never another finite number. Check ``numpy.isfinite(w)``
    when a partly finite gradient matters.

    Returns
    -------
    (dx, dw, db)
        Shapes of x, w and (C_out,).
    """
    text = f"conv_backward(): need must be an iterable of 'x', 'w' and 'b', got {need!r}"
    if not hasattr(need, "__iter__"):
        raise TypeError(text)
    if isinstance(need, str):
        raise ValueError(text)
    # Read once: an iterator would be empty at the membership tests below.
    try:
        need = set(need)
    except TypeError:  # unhashable items
        raise ValueError(text) from None
    if not need <= {"x", "w", "b"}:
        raise ValueError(text)
    return _core.conv_backward(
        x, w, dy, stride, padding, dilation, groups, "x" in need, "w" in need, "b" in need
    )


def gram(x: ArrayLike, *, normalize: str | None = None) -> np.ndarray:
    """Gram matrices of channels-last feature maps (the style matrix of style transfer).

    Each batch item's features are flattened to ``F`` of shape (P, C), with
    ``P = prod(spatial)`` positions, and its Gram matrix is ``F^T F / d``.

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C), float32 or float64
        One to three spatial dimensions: ``x.ndim`` is 3, 4 or 5.
    normalize : {None, "positions", "size"}, default None
        The divisor ``d``: 1, ``P``, or ``P * C``.

    Returns
    -------
    numpy.ndarray, shape (N, C, C), same dtype
        Exactly symmetric, and bit-identical for any number of threads. With
        zero positions (an empty spatial dimension) it is all zeros, whatever
        ``normalize`` says: nothing is divided by zero.

    Examples
    --------
    >>> gram(np.array([[[1.0, 2.0], [3.0, 4.0]]]))
    array([[[10., 14.],
            [14., 20.]]])
    """
    return _core.gram(x, normalize)


def gram_backward(x: ArrayLike, dG: ArrayLike, *, normalize: str | None = None) -> np.ndarray:
    """Gradient of :func:`gram` with respect to ``x``.

    With ``F`` and ``d`` as in :func:`gram`, each batch item's gradient is
    ``F (dG + dG^T) / d``, reshaped like ``x``.

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C), float32 or float64
        As given to :func:`gram`.
    dG : array_like, shape (N, C, C), float32 or float64
        The gradient with respect to the Gram matrices.
    normalize : {None, "positions", "size"}, default None
        As given to :func:`gram`.

    Returns
    -------
    numpy.ndarray, shape of ``x``
        The wider dtype of ``x`` and ``dG``; bit-identical for any number of
        threads.
    """
    return _core.gram_backward(x, dG, normalize)


def max_pool(
    x: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    strides: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
) -> np.ndarray:
    """Max pooling, channels-last (Keras ``MaxPooling1D/2D/3D``).

    The number of spatial dimensions (1 to 3) is chosen by ``x.ndim``. Each
    output is the maximum of the input elements in its window: padded
    positions never win. NaN propagates.

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C), float32 or float64
    pool_size : int or tuple of ints, one per spatial dimension
    strides : int or tuple of ints, optional
        Defaults to ``pool_size``, as in Keras.
    padding : "valid", "same", int, tuple of ints, or tuple of (before, after) pairs
        ``"same"`` follows Keras/TensorFlow: the output has ``ceil(n / strides)``
        positions and an odd padding element goes at the end. Explicit padding
        must leave at least one input element in every window.

    Returns
    -------
    numpy.ndarray, shape (N, *out, C), same dtype
        ``out = floor((n + pad_before + pad_after - pool_size) / strides) + 1``;
        bit-identical for any number of threads.

    Examples
    --------
    >>> max_pool(np.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]]), 2)[..., 0]
    array([[3., 5.]])
    >>> max_pool(np.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]]), 2, padding="same")[..., 0]
    array([[3., 5., 4.]])
    """
    return _core.max_pool(x, pool_size, strides, padding)


def avg_pool(
    x: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    strides: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
) -> np.ndarray:
    """Average pooling, channels-last (Keras ``AveragePooling1D/2D/3D``).

    Each output is the mean of the input elements in its window: padded
    positions are left out of both the sum and the count, as Keras does with
    ``padding="same"`` (PyTorch's ``count_include_pad=False``). Arguments and
    output shape as in :func:`max_pool`.

    Examples
    --------
    >>> avg_pool(np.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]]), 2, padding="same")[..., 0]
    array([[2. , 3.5, 4. ]])
    """
    return _core.avg_pool(x, pool_size, strides, padding)


def max_pool_backward(
    x: ArrayLike,
    dy: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    strides: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
) -> np.ndarray:
    """Gradient of :func:`max_pool` with respect to ``x``.

    Each window's ``dy`` goes to the window's maximal element; when several
    elements tie, to the first of them in row-major window order (the first
    NaN, when the window holds one). Overlapping windows accumulate.

    Parameters
    ----------
    x, pool_size, strides, padding
        As given to :func:`max_pool`.
    dy : array_like, float32 or float64
        The gradient with respect to the output, of the output's shape.

    Returns
    -------
    numpy.ndarray, shape of ``x``
        The wider dtype of ``x`` and ``dy``; bit-identical for any number of
        threads.
    """
    return _core.max_pool_backward(x, dy, pool_size, strides, padding)


def avg_pool_backward(
    x: ArrayLike,
    dy: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    strides: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
) -> np.ndarray:
    """Gradient of :func:`avg_pool` with respect to ``x``.

    Each window's ``dy``, divided by the number of input elements in the
    window, goes to each of them; overlapping windows accumulate. ``x`` only
    gives the shape. Arguments and result as in :func:`max_pool_backward`.
    """
    return _core.avg_pool_backward(x, dy, pool_size, strides, padding)


def global_max_pool(x: ArrayLike) -> np.ndarray:
    """Maximum over all spatial positions (Keras ``GlobalMaxPooling1D/2D/3D``).

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C), float32 or float64
        One to three spatial dimensions, at least one position.

    Returns
    -------
    numpy.ndarray, shape (N, C), same dtype
        NaN propagates.
    """
    return _core.global_max_pool(x)


def global_avg_pool(x: ArrayLike) -> np.ndarray:
    """Mean over all spatial positions (Keras ``GlobalAveragePooling1D/2D/3D``).

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C), float32 or float64
        One to three spatial dimensions, at least one position.

    Returns
    -------
    numpy.ndarray, shape (N, C), same dtype
        Sums are accumulated in float64, also for float32 input.
    """
    return _core.global_avg_pool(x)


# --- detection: YOLO targets, anchors, sliding windows ---------------------------------


def yolo_encode(
    boxes: ArrayLike,
    classes: ArrayLike,
    *,
    grid: int | Sequence[int],
    anchors: ArrayLike,
    num_classes: int,
    image_size: float | Sequence[float],
) -> tuple[np.ndarray, int]:
    """Encode one image's ground-truth boxes as a YOLO target (the course's encoding).

    Each object goes to the grid cell holding its midpoint and to the anchor
    whose shape has the highest IoU with the object's shape, both centred at
    the same point (ties: the lower anchor index). Its row is
    ``[pc, bx, by, bh, bw, c_1, ..., c_C]``: ``pc = 1``; ``(bx, by)`` the
    midpoint relative to the cell, in ``[0, 1)``, except that a midpoint on
    the right or bottom image edge goes to the last cell with ``bx`` (``by``)
    ``= 1``, as may one within rounding of a cell's far edge; ``bh`` and
    ``bw`` the object's height and width in units of the cell's height and
    width (they may exceed 1); then a one-hot class. Rows without an object
    are all zero.

    Objects that are not in the target are counted in ``dropped``:

    * a box of zero width or height;
    * a box whose midpoint lies outside the image, ``[0, width] x [0, height]``
      (a box may cross the border as long as its midpoint is inside);
    * an object whose cell and anchor another object takes: the one with the
      higher anchor IoU stays, on a tie the lower index.

    Parameters
    ----------
    boxes : array_like, shape (K, 4), float32 or float64
        ``xyxy`` boxes in pixels; finite, with ``x1 <= x2`` and ``y1 <= y2``
        (else ValueError).
    classes : array_like, shape (K,), integer
        Class ids in ``[0, num_classes)`` (else ValueError).
    grid : int or (grid_h, grid_w)
        Cells per column and per row.
    anchors : array_like, shape (A, 2)
        Anchor shapes as (width, height) in pixels, positive.
    num_classes : int
        ``>= 1``.
    image_size : float or (height, width)
        The image size in pixels, positive.

    Returns
    -------
    Y : numpy.ndarray, shape (grid_h, grid_w, A, 5 + num_classes)
        The dtype of ``boxes``.
    dropped : int
        The number of objects not in ``Y``.

    See Also
    --------
    yolo_encode_batch : the same for a batch of images.
    yolo_decode : the inverse.

    Examples
    --------
    >>> y, dropped = yolo_encode([[10.0, 20.0, 50.0, 40.0]], [1], grid=4, anchors=[[40, 20]],
    ...                          num_classes=2, image_size=100)
    >>> y[1, 1, 0]
    array([1. , 0.2, 0.2, 0.8, 1.6, 0. , 1. ])
    """
    return _core.yolo_encode(boxes, classes, grid, anchors, num_classes, image_size, False)


def yolo_encode_batch(
    boxes_list: Sequence[ArrayLike],
    classes_list: Sequence[ArrayLike],
    *,
    grid: int | Sequence[int],
    anchors: ArrayLike,
    num_classes: int,
    image_size: float | Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`yolo_encode` for a batch of images with different numbers of boxes.

    Images are encoded in parallel; the result does not depend on the number
    of threads.

    Parameters
    ----------
    boxes_list : list or tuple of array_like, each of shape (K_i, 4)
        Each image's ``xyxy`` boxes, float32 or float64.
    classes_list : list or tuple of array_like, each of shape (K_i,)
        Each image's class ids, one entry per entry of ``boxes_list``.
    grid, anchors, num_classes, image_size
        As in :func:`yolo_encode`, shared by every image.

    Returns
    -------
    Y : numpy.ndarray, shape (N, grid_h, grid_w, A, 5 + num_classes)
        float64 if any image's boxes are float64, else float32 (also for N = 0).
    dropped : numpy.ndarray, shape (N,), int64
        Each image's number of objects not in ``Y``.
    """
    return _core.yolo_encode(boxes_list, classes_list, grid, anchors, num_classes, image_size, True)


def yolo_decode(
    Y: ArrayLike,
    *,
    anchors: ArrayLike,
    image_size: float | Sequence[float],
    score_threshold: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Boxes of a YOLO target or activated network output (the inverse of :func:`yolo_encode`).

    Every (cell row, cell column, anchor), in that order, whose score
    ``pc * max_c p_c`` is ``>= score_threshold`` gives a detection of the
    first class with the maximal probability. Its midpoint is
    ``((column + bx) * width / grid_w, (row + by) * height / grid_h)`` and its
    size ``(bw * width / grid_w, bh * height / grid_h)``. The output is not
    sorted by score and not suppressed: that is NMS's job.

    Parameters
    ----------
    Y : array_like, float32 or float64
        Shape (grid_h, grid_w, A, 5 + C) for one image, or
        (N, grid_h, grid_w, A, 5 + C) for a batch, C >= 1. Rows are
        ``[pc, bx, by, bh, bw, p_1, ..., p_C]``, already activated: every
        value finite, ``pc`` and ``p_c`` in [0, 1], ``bh``, ``bw >= 0`` (else
        ValueError).
    anchors : array_like, shape (A, 2)
        Positive (width, height) rows; A must match Y's anchor axis (the box
        sizes are in ``Y``, so only the count is used).
    image_size : float or (height, width)
        In pixels, positive.
    score_threshold : float, default 0.6
        ``>= 0``.

    Returns
    -------
    (boxes, scores, classes) or a list of them, one per image for a batched Y
        ``boxes`` (K, 4) ``xyxy`` in pixels and ``scores`` (K,) in Y's dtype;
        ``classes`` (K,) int64.
    """
    return _core.yolo_decode(Y, anchors, image_size, score_threshold)


class KMeansAnchors(NamedTuple):
    """The result of :func:`kmeans_anchors`."""

    anchors: np.ndarray
    """(k, 2) anchor shapes (width, height), sorted by increasing area."""
    mean_iou: float
    """The mean over boxes of the best IoU with an anchor (boxes and anchors centred)."""
    recall: float
    """The fraction of boxes whose best IoU is ``>= iou_threshold``."""


def _generator(seed: int | np.random.Generator, fn: str) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"{fn}(): seed must be an int or a numpy.random.Generator, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"{fn}(): seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def kmeans_anchors(
    wh: ArrayLike,
    k: int,
    *,
    iterations: int = 100,
    seed: int | np.random.Generator = 0,
    iou_threshold: float = 0.5,
) -> KMeansAnchors:
    """Anchor shapes by k-means over box shapes with ``1 - IoU`` as the distance (darknet).

    Boxes and centres are compared as if centred at the same point, so only
    their widths and heights matter. The initial centres are chosen k-means++
    style, with ``(1 - IoU)^2`` as the weight, by ``seed`` (one call of the
    generator's ``random(k)``). Each iteration assigns every box to the centre
    of highest IoU (ties: the lower index) and moves each centre to the mean
    width and height of its boxes; a centre that gets no box keeps its place.
    Iterations stop when no assignment changes, or after ``iterations``.

    Parameters
    ----------
    wh : array_like, shape (M, 2), float32 or float64
        Box (width, height) rows, positive and finite, M >= 1.
    k : int
        The number of anchors, at most the number of distinct rows of ``wh``.
    iterations : int, default 100
        The maximum number of assignment steps, ``>= 0`` (0: the initial centres).
    seed : int or numpy.random.Generator, default 0
    iou_threshold : float, default 0.5
        In [0, 1]; sets ``recall``.

    Returns
    -------
    KMeansAnchors
        ``(anchors, mean_iou, recall)``: ``anchors`` (k, 2) in the dtype of
        ``wh``, sorted by area (stable); the statistics compare every box with
        these anchors.
    """
    rng = _generator(seed, "kmeans_anchors")
    anchors, mean_iou, recall, _ = _core.kmeans_anchors(wh, k, iterations, iou_threshold, rng)
    # k distinct shapes can still end as fewer distinct centres when their IoUs
    # round to ties; k anchors with duplicates would not be k anchors.
    distinct = len(np.unique(anchors, axis=0))
    if distinct < len(anchors):
        raise ValueError(
            f"kmeans_anchors(): k must be at most the number of clusters k-means can separate in "
            f"wh, got k={len(anchors)} with only {distinct} distinct anchors found (the IoUs of "
            f"the shapes tie or underflow); use a smaller k"
        )
    return KMeansAnchors(anchors, mean_iou, recall)


def sliding_windows(
    images: ArrayLike, window: int | Sequence[int], stride: int | Sequence[int]
) -> np.ndarray:
    """Every window of a batch of images, copied into one contiguous array.

    Window ``(r, c)`` is the region starting at row ``r * stride_h`` and
    column ``c * stride_w``; windows that would cross the bottom or right edge
    are left out. :func:`window_boxes` gives each window's box.

    Parameters
    ----------
    images : array_like, shape (N, H, W, C)
        Any dtype (the copy is byte for byte).
    window : int or (h, w)
        Window size, positive and at most (H, W) (else ValueError).
    stride : int or (stride_h, stride_w)
        Positive.

    Returns
    -------
    numpy.ndarray, shape (N, rows, cols, h, w, C), the dtype of ``images``
        ``rows = (H - h) // stride_h + 1`` and ``cols = (W - w) // stride_w + 1``;
        a new C-contiguous array, copied in parallel.
    """
    return _core.sliding_windows(images, window, stride)


def _size_pair(value: object, fn: str, name: str, what: str, *, integer: bool) -> tuple:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{fn}(): {name} must be {what}, got {len(items)} entries")
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, kinds):
            raise TypeError(f"{fn}(): {name} must be {what}, got {type(v).__name__}")
        if not (v > 0 and (integer or np.isfinite(v))):
            raise ValueError(f"{fn}(): {name} must be positive, got {v!r}")
    # Python ints: NumPy integer arithmetic would wrap (np.uint64) or overflow.
    return tuple(int(v) for v in items) if integer else items


_INT64_MAX = 2**63 - 1


def window_boxes(
    image_size: int | Sequence[int], window: int | Sequence[int], stride: int | Sequence[int]
) -> np.ndarray:
    """The ``xyxy`` box of every window of :func:`sliding_windows`, in pixels.

    Parameters
    ----------
    image_size : int or (height, width)
    window : int or (h, w)
        At most ``image_size`` (else ValueError).
    stride : int or (stride_h, stride_w)

    Returns
    -------
    numpy.ndarray, shape (rows, cols, 4), float32
        Box ``(r, c)`` is ``[c * stride_w, r * stride_h, c * stride_w + w, r * stride_h + h]``.
    """
    fn = "window_boxes"
    height, width = _size_pair(
        image_size, fn, "image_size", "an int or a (height, width) pair", integer=True
    )
    h, w = _size_pair(window, fn, "window", "an int or an (h, w) pair", integer=True)
    sh, sw = _size_pair(stride, fn, "stride", "an int or a (stride_h, stride_w) pair", integer=True)
    if max(height, width) > _INT64_MAX:
        raise ValueError(f"{fn}(): image_size must be at most 2**63 - 1, got ({height}, {width})")
    if h > height or w > width:
        raise ValueError(
            f"{fn}(): window must fit in the image, at most ({height}, {width}), got ({h}, {w})"
        )
    # A stride beyond the image gives one window whichever it is; reduced, it
    # keeps the int64 products below within the image size.
    sh, sw = min(sh, height), min(sw, width)
    # Integer arithmetic, rounded to float32 once.
    y1 = np.arange((height - h) // sh + 1, dtype=np.int64) * sh
    x1 = np.arange((width - w) // sw + 1, dtype=np.int64) * sw
    yy, xx = np.meshgrid(y1, x1, indexing="ij")
    return np.stack([xx, yy, xx + w, yy + h], axis=-1).astype(np.float32)
