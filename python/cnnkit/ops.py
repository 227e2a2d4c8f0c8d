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

Boxes may be given as integers (lists, int32/int64 arrays) or float16: like
torchvision's ``_upcast`` they are converted to float32 first (exact for
coordinates up to 2**24). :func:`box_convert`, :func:`box_area` and
:func:`clip_boxes` take any leading shape ``(..., 4)``, a single box ``(4,)``
included, as torchvision's do.

A torch tensor that requires a gradient is rejected with a message that says
to call ``.detach()``: these kernels do not record torch gradients.

:mod:`cnnkit.reference` holds NumPy implementations with the same signatures.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import _core, _proposals, _validate

__all__ = [
    "KMeansAnchors",
    "activation_backward",
    "adam_update",
    "add_relu",
    "avg_pool",
    "avg_pool_backward",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_inference",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "channels_last",
    "clip_boxes",
    "clip_boxes_to_image",
    "complete_box_iou",
    "concat",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_backward",
    "conv_max_pool_backward",
    "conv_stem",
    "distance_box_iou",
    "felzenszwalb",
    "generalized_box_iou",
    "global_avg_pool",
    "global_max_pool",
    "gram",
    "gram_backward",
    "kmeans_anchors",
    "lrn",
    "lrn_backward",
    "masks_to_boxes",
    "matmul",
    "max_pool",
    "max_pool_backward",
    "nms",
    "remove_small_boxes",
    "roi_align",
    "roi_align_backward",
    "roi_pool",
    "roi_pool_backward",
    "selective_search",
    "sgd_update",
    "sigmoid_focal_loss",
    "sliding_windows",
    "soft_nms",
    "window_boxes",
    "yolo_decode",
    "yolo_encode",
    "yolo_encode_batch",
]


def _array(value: object, fn: str, name: str) -> np.ndarray:
    """``np.asarray(value)`` of numbers, with the bindings' messages (src/validate.hpp).

    A torch tensor that requires a gradient is refused first: NumPy would raise torch's own
    RuntimeError, which does not say which argument it was.
    """
    if getattr(value, "requires_grad", False) is True and type(value).__module__.startswith(
        "torch"
    ):
        raise TypeError(
            f"{fn}(): {name} must not require a gradient, got a torch tensor with "
            f"requires_grad=True; pass {name}.detach() (cnnkit does not record torch gradients)"
        )
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(
            f"{fn}(): {name} must be an array-like of numbers, got {type(value).__name__} ({exc})"
        ) from None
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{fn}(): {name} must hold numbers, got an array of dtype {a.dtype}")
    return a


def _upcast(boxes: object, fn: str, name: str = "boxes") -> np.ndarray:
    """Integer and float16 boxes as float32, as torchvision's ``_upcast`` makes them float.

    Anything else is passed on unchanged for the binding to check (and to use without a copy).
    """
    if type(boxes) is np.ndarray and boxes.dtype.kind == "f" and boxes.itemsize >= 4:
        return boxes  # the common case, without the checks' cost on small inputs
    a = _array(boxes, fn, name)
    if a.dtype.kind in "iu" or a.dtype == np.float16:
        return a.astype(np.float32)
    return boxes if isinstance(boxes, np.ndarray) else a


def _box_rows(boxes: object, fn: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Boxes of shape (..., 4) as (M, 4) rows, and the leading shape to restore (None: keep)."""
    a = _upcast(boxes, fn)
    shape = a.shape
    if len(shape) == 2 and shape[1] == 4:
        return a, None
    if len(shape) == 1 and shape[0] == 0:  # [] is no boxes, as everywhere
        return a, None
    if len(shape) == 0 or shape[-1] != 4:
        raise ValueError(f"{fn}(): boxes must have shape (..., 4), got shape {shape}")
    return a.reshape(-1, 4), shape[:-1]


def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str) -> np.ndarray:
    """Convert boxes between the ``"xyxy"``, ``"xywh"`` and ``"cxcywh"`` formats.

    ``xyxy`` is (x1, y1, x2, y2), ``xywh`` is (x1, y1, width, height) and
    ``cxcywh`` is (centre x, centre y, width, height).

    Parameters
    ----------
    boxes : array_like, shape (..., 4)
        Boxes in ``in_fmt``; widths and heights must be non-negative. float32
        and float64 are kept; integers become float32.
    in_fmt, out_fmt : {"xyxy", "xywh", "cxcywh"}

    Returns
    -------
    numpy.ndarray, shape of ``boxes``, float32 or float64
        A new array, also when ``in_fmt == out_fmt``.

    Examples
    --------
    >>> box_convert([[10., 20., 30., 60.]], "xyxy", "cxcywh")
    array([[20., 40., 20., 40.]])
    """
    rows, lead = _box_rows(boxes, "box_convert")
    out = _core.box_convert(rows, in_fmt, out_fmt)
    return out if lead is None else out.reshape(*lead, 4)


def box_area(boxes: ArrayLike) -> np.ndarray:
    """Area of each ``xyxy`` box, ``(x2 - x1) * (y2 - y1)``.

    Parameters
    ----------
    boxes : array_like, shape (..., 4)
        float32 and float64 are kept; integers become float32.

    Returns
    -------
    numpy.ndarray, shape ``boxes.shape[:-1]``, float32 or float64

    Examples
    --------
    >>> box_area([0, 0, 2, 3])
    array(6., dtype=float32)
    """
    rows, lead = _box_rows(boxes, "box_area")
    out = _core.box_area(rows)
    return out if lead is None else out.reshape(lead)


def clip_boxes(boxes: ArrayLike, size: Sequence[float]) -> np.ndarray:
    """Clip ``xyxy`` boxes to an image of ``size = (height, width)``.

    x coordinates are clamped to ``[0, width]`` and y to ``[0, height]``
    (torchvision's ``clip_boxes_to_image``, also available under that name).

    Parameters
    ----------
    boxes : array_like, shape (..., 4)
        float32 and float64 are kept; integers become float32.
    size : (height, width)
        Non-negative, finite.

    Returns
    -------
    numpy.ndarray, shape of ``boxes``, float32 or float64
    """
    return _clip(boxes, size, "clip_boxes")


def clip_boxes_to_image(boxes: ArrayLike, size: Sequence[float]) -> np.ndarray:
    """:func:`clip_boxes` under torchvision's name."""
    return _clip(boxes, size, "clip_boxes_to_image")


def _clip(boxes: ArrayLike, size: Sequence[float], fn: str) -> np.ndarray:
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise TypeError(f"{fn}(): size must be a (height, width) pair, got {size!r}")
    rows, lead = _box_rows(boxes, fn)
    out = _core.clip_boxes(rows, size[0], size[1])
    return out if lead is None else out.reshape(*lead, 4)


def remove_small_boxes(boxes: ArrayLike, min_size: float) -> np.ndarray:
    """Indices of the ``xyxy`` boxes whose width and height are both ``>= min_size``.

    Parameters
    ----------
    boxes : array_like, shape (N, 4)
        float32 or float64; integers become float32.
    min_size : float
        Non-negative.

    Returns
    -------
    numpy.ndarray, shape (K,), int64
        Increasing indices into ``boxes``.
    """
    return _core.remove_small_boxes(_upcast(boxes, "remove_small_boxes"), min_size)


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
    fn = "box_iou"
    a, b = _upcast(boxes1, fn, "boxes1"), _upcast(boxes2, fn, "boxes2")
    return _core.box_iou(a, b, bool(aligned))


def generalized_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False
) -> np.ndarray:
    """Generalized IoU (Rezatofighi et al. 2019): ``IoU - (C - U) / C``.

    ``C`` is the area of the smallest box enclosing both and ``U`` the union.
    Values lie in [-1, 1]. Shapes as in :func:`box_iou`.
    """
    fn = "generalized_box_iou"
    a, b = _upcast(boxes1, fn, "boxes1"), _upcast(boxes2, fn, "boxes2")
    return _core.generalized_box_iou(a, b, bool(aligned))


def distance_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    """Distance IoU (Zheng et al. 2020): ``IoU - d^2 / c^2``.

    ``d`` is the distance between the box centres and ``c`` the diagonal of
    the smallest enclosing box. Values lie in [-1, 1]. Shapes as in
    :func:`box_iou`.
    """
    fn = "distance_box_iou"
    a, b = _upcast(boxes1, fn, "boxes1"), _upcast(boxes2, fn, "boxes2")
    return _core.distance_box_iou(a, b, bool(aligned))


def complete_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, aligned: bool = False) -> np.ndarray:
    """Complete IoU (Zheng et al. 2020): ``DIoU - alpha * v``.

    ``v = 4 / pi^2 * (atan(w1 / h1) - atan(w2 / h2))^2`` measures the
    difference of aspect ratios and ``alpha = v / (1 - IoU + v)``. Aspect
    angles are ``atan2(w, h)``, so empty boxes are well defined; they are
    computed by a polynomial within about 2 ulp of ``atan2`` (the same bits
    on every instruction set), so results may differ from NumPy's in the last
    place. Shapes as in :func:`box_iou`.
    """
    fn = "complete_box_iou"
    a, b = _upcast(boxes1, fn, "boxes1"), _upcast(boxes2, fn, "boxes2")
    return _core.complete_box_iou(a, b, bool(aligned))


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
    boxes = _upcast(boxes, "nms")
    return _core.nms(boxes, scores, iou_threshold, score_threshold, max_output)


def batched_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    idxs: ArrayLike,
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
    idxs : array_like, shape (N,)
        A class label per box (torchvision's name): integers, or floats that
        are whole numbers.

    Returns
    -------
    numpy.ndarray, shape (K,), int64
    """
    fn = "batched_nms"
    return _core.batched_nms(
        _upcast(boxes, fn), scores, _labels(idxs, fn), iou_threshold, score_threshold, max_output
    )


def _labels(idxs: object, fn: str) -> np.ndarray:
    """Float labels that are whole numbers as int64 (a detector's class output is often float)."""
    a = _array(idxs, fn, "idxs")
    if a.dtype.kind != "f" or a.size == 0:
        return idxs if isinstance(idxs, np.ndarray) else a
    bad = ~(np.isfinite(a) & (a == np.floor(a)) & (np.abs(a) < 2.0**63))
    if a.ndim == 1 and bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{fn}(): idxs must hold whole numbers, got {a[i].item()!r} at index {i}")
    return a.astype(np.int64)


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
    boxes = _upcast(boxes, "soft_nms")
    return _core.soft_nms(boxes, scores, method, sigma, iou_threshold, score_threshold)


def matmul(
    a: ArrayLike,
    b: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
) -> np.ndarray:
    """Matrix product on cnnkit's GEMM, optionally ``activation(a @ b + bias)``.

    Parameters
    ----------
    a : array_like, shape (M, K) or (B, M, K), float32 or float64
    b : array_like, shape (K, N) or (B, K, N)
        A 2-D operand is shared by every matrix of a 3-D one.
    bias : array_like, shape (N,), optional
        Added to every row.
    activation : {None, "linear", "relu", "leaky_relu", "sigmoid", "relu6", "hard_swish"}
        Applied after the bias. The bias and the activation are fused into the
        GEMM: applied to each tile of the product as it is stored, while it is
        still in cache, instead of in further passes over the output.
        "hard_swish" is forward only (see :func:`conv`).
    negative_slope : float
        ``leaky_relu``'s slope for negative inputs (>= 0; Keras's default 0.2).

    Returns
    -------
    numpy.ndarray, shape (M, N) or (B, M, N)
        Bit-identical for any number of threads, and to the unfused
        ``matmul(a, b) + bias`` followed by ReLU, leaky ReLU or ReLU6 (``min(max(x, 0),
        6)``); sigmoid uses the C library's ``exp`` (within a few ulp of NumPy's).
    """
    return _core.matmul(a, b, bias, activation, negative_slope)


def activation_backward(
    y: ArrayLike, dy: ArrayLike, activation: str | None, *, negative_slope: float = 0.2
) -> np.ndarray:
    """The gradient through a fused activation, read from its output ``y``.

    ``dy * activation'(input)`` written in terms of ``y = activation(input)``: ``dy``
    where ``y > 0`` else 0 (relu), else ``negative_slope * dy`` (leaky_relu),
    ``dy * y * (1 - y)`` (sigmoid), ``dy`` where ``0 < y < 6`` else 0 (relu6), ``dy``
    (None or "linear"). The backward of
    :func:`matmul` and :func:`conv` with ``activation=...``, in one native pass.

    Parameters
    ----------
    y, dy : array_like, same shape, float32 or float64
    activation : {None, "linear", "relu", "leaky_relu", "sigmoid", "relu6"}
    negative_slope : float
        As given to the forward (>= 0).

    Returns
    -------
    numpy.ndarray, shape of ``dy``
    """
    return _core.activation_backward(y, dy, activation, negative_slope)


def conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str | None = None,
    negative_slope: float = 0.2,
    winograd: bool | None = None,
    residual: ArrayLike | None = None,
    out: np.ndarray | None = None,
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
    activation : {None, "linear", "relu", "leaky_relu", "sigmoid", "relu6", "hard_swish"}
        ``activation(conv(x, w) + b)``. On the GEMM paths (most convolutions) and
        in the depthwise loops the bias and the activation are fused into the
        store of each output tile or value, saving the passes over the output that
        separate ops would make (the depthwise loops leave sigmoid to one pass
        after, as the few-channel loops do every activation but ReLU). The result
        is bit-identical to the unfused convolution followed by ReLU, leaky
        ReLU, ReLU6 (``min(max(x, 0), 6)``, MobileNet's) or hard swish
        (``x * relu6(x + 3) / 6``, MobileNet v3's, computed as ``x * clip(x / 6 +
        0.5, 0, 1)`` as :func:`cnnkit.autograd.hard_swish` does); sigmoid uses the C
        library's ``exp``. The gradient: :func:`conv_backward` with ``y=`` this
        output and the same activation, except for "hard_swish", whose input
        cannot be read back from its output (it is not one-to-one on [-3, 0]):
        :func:`conv_backward` and :func:`activation_backward` refuse it, and a
        network that trains applies it as an op of its own.
    negative_slope : float
        ``leaky_relu``'s slope for negative inputs (>= 0; Keras's default 0.2).
    winograd : bool, optional
        The algorithm for 2-D 3x3 convolutions with stride 1, dilation 1 and one
        group. None (default): Winograd F(4x4, 3x3) where it measured faster than
        the im2col GEMM (at least 8 input and 8 output channels, and at least 16
        tiles of 4x4 outputs over the batch; 32 when C_in * C_out >= 256 * 256, or
        on the AVX-512 float path when fewer than 70% of those tiles' outputs
        exist, as at 13x13 and batch 1, and at most 256 output positions),
        unless :func:`cnnkit.set_winograd` turned it off or the environment has
        ``CNNKIT_WINOGRAD=0``. True: always Winograd (a ValueError for other
        shapes). False: never. Winograd's float32 results differ from the
        GEMM's by a relative error below 1e-4 of the output's magnitude
        (measured in bench/RESULTS.md); float64 loses a similar factor on
        float64's precision.
    residual : array_like, shape of the output, optional
        A residual block's shortcut, added after the bias: ``conv(x, w) + b +
        residual``, with ``activation`` None (or "linear") or "relu". With "relu" the
        result has the bits of :func:`add_relu` of the convolution and ``residual``
        (whose rectifier turns -0.0 into +0.0, where the fused ReLU above keeps it). The
        sum is made as each tile of the output is stored on the Winograd and im2col
        paths, in one pass after the others; inference only (:func:`conv_backward`
        knows nothing of it).
    out : numpy.ndarray, optional
        Where to write the result, which is returned: an array of its dtype (the widest of
        the operands') and shape, either dense or a channel slice ``buf[..., c0:c0 + C_out]``
        of a C-contiguous ``(N, *out, C_total)`` buffer, so that convolutions whose outputs
        are concatenated along the channels write straight into the concatenation (a
        network's inference plan does so). It must not share memory with ``x``, ``w``,
        ``b`` or ``residual``. The bits are those of the call without ``out``; most paths
        store into the slice directly, the direct, depthwise and first-layer loops through a
        scratch copy. Inference only.

    Returns
    -------
    numpy.ndarray, shape (N, *out, C_out)
        ``out = floor((n + pad_before + pad_after - dilation * (k - 1) - 1) / stride) + 1``;
        bit-identical for any number of threads. ``out`` itself when given.

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
    return _core.conv(
        x,
        w,
        b,
        stride,
        padding,
        dilation,
        groups,
        activation,
        negative_slope,
        winograd,
        residual,
        out,
    )


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
        x = _array(x, f"conv{rank}d", "x")
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
    need: Iterable[str] = ("x", "w", "b"),
    y: ArrayLike | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
    winograd: bool | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`conv` with respect to its input, weights and bias.

    Parameters
    ----------
    x, w, stride, padding, dilation, groups, activation, negative_slope, winograd
        As given to :func:`conv`; ``winograd`` chooses the algorithm of ``dx``
        (``dw`` and ``db`` never use Winograd).
    dy : array_like
        The gradient with respect to the output, of the output's shape.
    need : iterable of {"x", "w", "b"}
        Which gradients to compute; the others are returned as None. Any
        iterable but a str (a set, a tuple, a generator) is read once.
    y : array_like, optional
        The forward's output; required with an activation, whose gradient mask
        (:func:`activation_backward`) is read from it and applied to ``dy``
        inside the same native call.

    Returns
    -------
    (dx, dw, db)
        Shapes of x, w and (C_out,).

    Notes
    -----
    A NaN or infinity in ``w`` or ``dy`` may make every entry of ``dx`` NaN,
    also entries that :func:`cnnkit.reference.conv_backward` leaves finite:
    the input gradient is a correlation of ``dy``, zero-padded, with ``w``,
    and ``0 * inf`` is NaN. An entry of ``dx`` is then either the reference's
    value or NaN, never another finite number. Check ``numpy.isfinite(w)``
    when a partly finite gradient matters.
    """
    text = f"conv_backward(): need must be an iterable of 'x', 'w' and 'b', got {need!r}"
    if not hasattr(need, "__iter__"):
        raise TypeError(text)
    if isinstance(need, str):
        raise ValueError(text)
    # Read once: an iterator would be empty at the membership tests below.
    try:
        wanted = set(need)
    except TypeError:  # unhashable items
        raise ValueError(text) from None
    if not wanted <= {"x", "w", "b"}:
        raise ValueError(text)
    return _core.conv_backward(
        x,
        w,
        dy,
        stride,
        padding,
        dilation,
        groups,
        "x" in wanted,
        "w" in wanted,
        "b" in wanted,
        y,
        activation,
        negative_slope,
        winograd,
    )


def conv_max_pool_backward(
    x: ArrayLike,
    w: ArrayLike,
    dy: ArrayLike,
    indices: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    pool_stride: int | Sequence[int] | None = None,
    pool_padding: str | int | Sequence = "valid",
    relu_output: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias gradients of :func:`conv` followed by :func:`max_pool`, from the
    pool's output gradient.

    The same values, bit for bit, as :func:`max_pool_backward` (with ``indices`` and
    ``relu_output``) on the convolution's output followed by
    ``conv_backward(x, w, dx_pool, need=("w", "b"))``. For an input layer with few
    channels (``C_in <= 4``, one group) under a pool whose windows do not overlap, each
    band of the convolution's output gradient is made from ``dy`` while the weight
    gradient reads it, so the pool's full-size gradient is never written or read
    again: a training step's first convolution and pool then move a third of the
    memory. Other shapes take the two calls.

    Parameters
    ----------
    x, w, stride, padding, dilation, groups
        As given to :func:`conv`.
    dy : array_like
        The gradient with respect to the pool's output.
    indices : array_like of int
        The indices ``max_pool(conv_output, ..., return_indices=True)`` returned.
    pool_size, pool_stride, pool_padding
        The pool's ``pool_size``, ``stride`` and ``padding`` (:func:`max_pool`).
    relu_output : array_like, optional
        The pool's output when the convolution applied a ReLU, as
        :func:`max_pool_backward` takes it (the ReLU's mask at the maxima).

    Returns
    -------
    (dw, db)
        Shapes of ``w`` and ``(C_out,)``; bit-identical for any number of threads.
    """
    return _core.conv_max_pool_backward(
        x,
        w,
        dy,
        indices,
        pool_size,
        stride,
        padding,
        dilation,
        groups,
        pool_stride,
        pool_padding,
        relu_output=relu_output,
    )


def conv_stem(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "valid",
    activation: str | None = None,
    negative_slope: float = 0.2,
    channels_first: bool = False,
    pool_size: int | Sequence[int] | None = None,
    pool_stride: int | Sequence[int] | None = None,
    pool_padding: str | int | Sequence | None = None,
) -> np.ndarray:
    """A network's first layers in one call: :func:`conv` with its activation, from a
    channels-last or channels-first ``x``, then :func:`max_pool` when ``pool_size`` is
    given.

    The same values, bit for bit, as ``max_pool(conv(channels_last(x), w, b, ...),
    pool_size, stride=pool_stride, padding=pool_padding)`` (each call only where asked
    for), NaN included. For an image of 1 to 4 channels under a strided window of at
    least 3x3 (ResNet's 7x7, AlexNet's 11x11; float32 on the AVX-512 path) it is one
    pass: the convolution's rows are made a band at a time and pooled while they are in
    cache (ResNet-18's pool read its 3.2 MB input back from memory), and channels-first
    rows are interleaved as they are copied into the band (an imported ONNX network's
    input, otherwise copied channels-last first). Other shapes take the separate calls.

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C_in), or (N, C_in, *spatial) with ``channels_first``
    w, b, stride, padding, activation, negative_slope
        As given to :func:`conv` (one group, no dilation).
    channels_first : bool, default False
        ``x`` is channels-first (ONNX's and torch's layout); the result is channels-last.
    pool_size, pool_stride, pool_padding : optional
        The max pool's ``pool_size``, ``stride`` and ``padding`` (:func:`max_pool`;
        ``pool_padding`` defaults to "valid"); without ``pool_size``, no pool.

    Returns
    -------
    numpy.ndarray, shape (N, *out, C_out)
        Channels-last; bit-identical for any number of threads.
    """
    if pool_size is None and (pool_stride is not None or pool_padding is not None):
        raise ValueError(
            "conv_stem(): pool_stride and pool_padding need pool_size, got pool_size=None"
        )
    if pool_size is not None and pool_padding is None:
        pool_padding = "valid"
    if not isinstance(channels_first, (bool, np.bool_)):
        kind = type(channels_first).__name__
        raise TypeError(f"conv_stem(): channels_first must be True or False, got {kind}")
    return _core.conv_stem(
        x,
        w,
        b,
        stride,
        padding,
        activation,
        negative_slope,
        bool(channels_first),
        pool_size,
        pool_stride,
        pool_padding,
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
    stride: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Max pooling, channels-last (Keras ``MaxPooling1D/2D/3D``).

    The number of spatial dimensions (1 to 3) is chosen by ``x.ndim``. Each
    output is the maximum of the input elements in its window: padded
    positions never win. NaN propagates.

    Parameters
    ----------
    x : array_like, shape (N, *spatial, C), float32 or float64
    pool_size : int or tuple of ints, one per spatial dimension
    stride : int or tuple of ints, optional
        Defaults to ``pool_size``, as in Keras. Named ``stride`` as in :func:`conv` and
        torch; the Keras layers keep their ``strides``.
    padding : "valid", "same", int, tuple of ints, or tuple of (before, after) pairs
        ``"same"`` follows Keras/TensorFlow: the output has ``ceil(n / stride)``
        positions and an odd padding element goes at the end. Explicit padding
        must leave at least one input element in every window.

    return_indices : bool, default False
        Also return where each maximum came from (as torch's ``return_indices``),
        for :func:`max_pool_backward`'s ``indices``.

    Returns
    -------
    numpy.ndarray, shape (N, *out, C), same dtype
        ``out = floor((n + pad_before + pad_after - pool_size) / stride) + 1``;
        bit-identical for any number of threads.
    indices : numpy.ndarray, shape (N, *out, C), int64
        Only with ``return_indices``: the index of each maximum in its image's
        flattened spatial dimensions (``i0 * W + i1`` in 2-D), per channel. Of
        tied elements the first in row-major window order wins (the first NaN,
        when the window holds one): the element :func:`max_pool_backward`
        gives the gradient to.

    Examples
    --------
    >>> max_pool(np.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]]), 2)[..., 0]
    array([[3., 5.]])
    >>> max_pool(np.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]]), 2, padding="same")[..., 0]
    array([[3., 5., 4.]])
    >>> max_pool(np.array([[[1.0], [3.0], [3.0], [5.0]]]), 2, return_indices=True)[1][..., 0]
    array([[1, 3]])
    """
    if return_indices:
        return _core.max_pool_with_indices(x, pool_size, stride, padding)
    return _core.max_pool(x, pool_size, stride, padding)


def avg_pool(
    x: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
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
    return _core.avg_pool(x, pool_size, stride, padding)


def max_pool_backward(
    x: ArrayLike,
    dy: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
    indices: ArrayLike | None = None,
    relu_output: ArrayLike | None = None,
) -> np.ndarray:
    """Gradient of :func:`max_pool` with respect to ``x``.

    Each window's ``dy`` goes to the window's maximal element; when several
    elements tie, to the first of them in row-major window order (the first
    NaN, when the window holds one). Overlapping windows accumulate.

    Parameters
    ----------
    x, pool_size, stride, padding
        As given to :func:`max_pool`.
    dy : array_like, float32 or float64
        The gradient with respect to the output, of the output's shape.
    indices : array_like of int, optional
        The indices ``max_pool(x, ..., return_indices=True)`` returned. With
        them the windows are not searched again (x then gives only the shape
        and dtype): ``dy`` goes to ``indices``, which must lie in
        ``[0, prod(spatial))``. Without them the maxima are recomputed from ``x``;
        both give the same result.
    relu_output : array_like, optional
        Only with ``indices``: this max_pool's output when ``x`` is the output of a
        ReLU. ``dy`` is then first multiplied by ``relu_output > 0``, the ReLU's
        derivative at the maxima, as :func:`activation_backward` does: the gradient
        through the ReLU as well, without reading ``x``-sized arrays for its mask.

    Returns
    -------
    numpy.ndarray, shape of ``x``
        The wider dtype of ``x`` and ``dy``; bit-identical for any number of
        threads.
    """
    if indices is not None:
        return _core.max_pool_backward_indices(
            x, dy, indices, pool_size, stride, padding, relu_output=relu_output
        )
    if relu_output is not None:
        raise ValueError("max_pool_backward(): relu_output needs indices, got indices=None")
    return _core.max_pool_backward(x, dy, pool_size, stride, padding)


def avg_pool_backward(
    x: ArrayLike,
    dy: ArrayLike,
    pool_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
) -> np.ndarray:
    """Gradient of :func:`avg_pool` with respect to ``x``.

    Each window's ``dy``, divided by the number of input elements in the
    window, goes to each of them; overlapping windows accumulate. ``x`` only
    gives the shape. Arguments and result as in :func:`max_pool_backward`.
    """
    return _core.avg_pool_backward(x, dy, pool_size, stride, padding)


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
    rng = _validate.generator("kmeans_anchors()", seed)
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


# --- regions: RoI pooling and RoIAlign (two-stage detectors), masks, focal loss ---------


def _rois(boxes: object, fn: str) -> Any:
    """torchvision's two forms of RoIs as (K, 5) rows ``[batch_index, x1, y1, x2, y2]``.

    A list or tuple whose items are 2-D is one ``(K_i, 4)`` array per image; anything else
    is taken as the (K, 5) rows themselves (a nested list of rows has 1-D items).
    """
    if not isinstance(boxes, (list, tuple)) or not boxes:
        return _array(boxes, fn, "boxes") if isinstance(boxes, (list, tuple)) else boxes
    items = [_array(b, fn, f"boxes[{i}]") for i, b in enumerate(boxes)]
    if any(b.ndim != 2 for b in items):
        return _array(boxes, fn, "boxes")
    rows = []
    for i, b in enumerate(items):
        if b.shape[1] != 4:
            raise ValueError(
                f"{fn}(): boxes[{i}] must have shape (K_i, 4), the boxes of image {i}, "
                f"got shape {b.shape}"
            )
        if b.dtype.kind not in "iuf":
            raise TypeError(f"{fn}(): boxes[{i}] must hold real numbers, got dtype {b.dtype}")
        rows.append(np.concatenate([np.full((len(b), 1), i, np.float64), b], axis=1))
    return np.concatenate(rows, axis=0)


def roi_align(
    x: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> np.ndarray:
    """RoIAlign (He et al., Mask R-CNN): bilinear pooling of each box into a fixed grid.

    torchvision's ``roi_align`` on a channels-last feature map. Each box, scaled by
    ``spatial_scale``, is divided into ``output_size`` bins; each bin is the mean of a
    regular grid of bilinear samples (a sample more than one pixel outside the map counts
    as 0). With ``aligned=False`` (torchvision's default) boxes are at least one pixel wide
    and tall; ``aligned=True`` shifts them by half a pixel, so that a box's corners fall on
    pixel corners, as Detectron2 does.

    Parameters
    ----------
    x : array_like, shape (N, H, W, C), float32 or float64
        Channels-last (torchvision takes (N, C, H, W): pass ``x.transpose(0, 2, 3, 1)``).
    boxes : array_like, shape (K, 5), or a list of N arrays of shape (K_i, 4)
        Rows ``[batch_index, x1, y1, x2, y2]`` in image coordinates, or one ``xyxy`` array
        per image (torchvision's two forms). Finite; converted to ``x``'s dtype; batch
        indices whole numbers in [0, N).
    output_size : int or (height, width)
        Bins per box, positive.
    spatial_scale : float, default 1.0
        Feature-map pixels per image pixel (1/16 for a stride-16 backbone), positive.
    sampling_ratio : int, default -1
        Samples per bin along each axis; ``<= 0``: adaptive, ``ceil(box size / bins)``.
        A box that would need more than 2**26 samples is refused (ValueError): clip the
        boxes to the image or pass a positive ratio.
    aligned : bool, default False

    Returns
    -------
    numpy.ndarray, shape (K, out_h, out_w, C), the dtype of ``x``
        torchvision's (K, C, out_h, out_w) in channels-last order; bit-identical for any
        number of threads.

    See Also
    --------
    roi_align_backward, cnnkit.autograd.roi_align

    Examples
    --------
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> roi_align(x, [[0, 0, 0, 2, 2]], 1)[..., 0]  # samples at (0.5, 0.5) ... (1.5, 1.5)
    array([[[5.]]])
    >>> roi_align(x, [[0, 0, 0, 2, 2]], 1, aligned=True)[..., 0]  # at pixel centres 0, 1
    array([[[2.5]]])
    """
    fn = "roi_align"
    rois = _rois(boxes, fn)
    return _core.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)


def roi_align_backward(
    x: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    dy: ArrayLike,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> np.ndarray:
    """Gradient of :func:`roi_align` with respect to ``x``.

    Each bin's ``dy``, times a sample's bilinear weight over the bin's sample count, goes
    to the sample's four neighbouring pixels; overlapping boxes accumulate. ``x`` only
    gives the shape and dtype (``dy`` is converted to it).

    Parameters
    ----------
    x, boxes, output_size, spatial_scale, sampling_ratio, aligned
        As given to :func:`roi_align`.
    dy : array_like, shape (K, out_h, out_w, C), float32 or float64

    Returns
    -------
    numpy.ndarray, shape and dtype of ``x``
        Bit-identical for any number of threads.
    """
    fn = "roi_align_backward"
    rois = _rois(boxes, fn)
    return _core.roi_align_backward(
        x, rois, dy, output_size, spatial_scale, sampling_ratio, aligned
    )


def roi_pool(
    x: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
) -> np.ndarray:
    """RoI max pooling (Girshick, Fast R-CNN), torchvision's ``roi_pool`` channels-last.

    Each box, scaled by ``spatial_scale``, is rounded to whole pixels (half away from zero),
    at least one pixel wide and tall, and divided into ``output_size`` bins of whole pixels
    (``floor`` of the start, ``ceil`` of the end, clipped to the map); each output is its
    bin's maximum, or 0 for a bin outside the map. Ties go to the first pixel in row-major
    order, which is where :func:`roi_pool_backward` sends the gradient; NaN propagates.

    Parameters
    ----------
    x, boxes, output_size, spatial_scale
        As in :func:`roi_align`; box coordinates times ``spatial_scale`` must lie within
        +-2**30.

    Returns
    -------
    numpy.ndarray, shape (K, out_h, out_w, C), the dtype of ``x``

    Examples
    --------
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> roi_pool(x, [np.array([[0, 0, 3, 3]])], 2)[0, ..., 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    rois = _rois(boxes, "roi_pool")
    return _core.roi_pool(x, rois, output_size, spatial_scale, 0, False)


def roi_pool_backward(
    x: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    dy: ArrayLike,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
) -> np.ndarray:
    """Gradient of :func:`roi_pool` with respect to ``x``: each bin's ``dy`` goes to the
    bin's maximal pixel (the first, on ties); overlapping bins accumulate.

    Arguments as in :func:`roi_align_backward`; returns the shape and dtype of ``x``,
    bit-identical for any number of threads.
    """
    rois = _rois(boxes, "roi_pool_backward")
    return _core.roi_pool_backward(x, rois, dy, output_size, spatial_scale, 0, False)


def masks_to_boxes(masks: ArrayLike) -> np.ndarray:
    """The ``xyxy`` box around the nonzero pixels of each mask (torchvision's ``masks_to_boxes``).

    The box is ``[min x, min y, max x, max y]`` over the nonzero pixels, in pixel indices
    (so a one-pixel mask gives an empty box, as in torchvision).

    Parameters
    ----------
    masks : array_like, shape (N, H, W)
        bool or numbers; nonzero (NaN included) is inside.

    Returns
    -------
    numpy.ndarray, shape (N, 4), float32
        A mask without a nonzero pixel gives ``[0, 0, 0, 0]`` (torchvision raises).

    Examples
    --------
    >>> masks_to_boxes(np.array([[[0, 1, 1], [0, 0, 1]]]))
    array([[1., 0., 2., 1.]], dtype=float32)
    """
    return _core.masks_to_boxes(masks)


def sigmoid_focal_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> np.ndarray:
    """Focal loss (Lin et al., RetinaNet) on logits, torchvision's ``sigmoid_focal_loss``.

    ``loss = alpha_t * (1 - p_t)**gamma * BCE(sigmoid(inputs), targets)`` elementwise, with
    ``p = sigmoid(inputs)``, ``p_t = p t + (1 - p)(1 - t)`` and ``alpha_t = alpha t +
    (1 - alpha)(1 - t)``. The cross-entropy is computed from the logits in the stable form
    ``max(x, 0) - x t + log1p(exp(-|x|))``, and ``1 - p_t`` as ``sigmoid(x)(1 - t) +
    sigmoid(-x) t``, without the cancellation of ``1 - p_t`` (so float32 results are more
    accurate than torchvision's where the model is confident). The mean of no elements is
    NaN. For training, use :class:`cnnkit.losses.SigmoidFocalLoss`, which records gradients.

    Parameters
    ----------
    inputs : array_like, float32 or float64
        Logits, any shape.
    targets : array_like, the shape of ``inputs``
        Labels in [0, 1] (1 for the positive class); converted to ``inputs``' dtype.
    alpha : float, default 0.25
        Weight of the positive class in [0, 1]; a negative value turns weighting off.
    gamma : float, default 2.0
        Focusing exponent, ``>= 0`` (0: plain weighted cross-entropy).
    reduction : {"none", "mean", "sum"}, default "none"

    Returns
    -------
    numpy.ndarray
        The elementwise loss (``"none"``) or a 0-d array, in ``inputs``' dtype.
    """
    fn = "sigmoid_focal_loss"
    x = _array(inputs, fn, "inputs")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}(): inputs must have dtype float32 or float64, got {x.dtype}")
    t = _array(targets, fn, "targets")
    if t.shape != x.shape:
        raise ValueError(
            f"{fn}(): targets must have the shape of inputs {x.shape}, got shape {t.shape}"
        )
    if t.dtype.kind == "c":
        raise TypeError(f"{fn}(): targets must hold real numbers, got dtype {t.dtype}")
    t = t.astype(x.dtype, copy=False)
    alpha = _real(alpha, fn, "alpha")
    gamma = _real(gamma, fn, "gamma")
    if not (alpha <= 1 and np.isfinite(alpha)):
        raise ValueError(f"{fn}(): alpha must be <= 1 (negative: no weighting), got {alpha!r}")
    if not (gamma >= 0 and np.isfinite(gamma)):
        raise ValueError(f"{fn}(): gamma must be a finite number >= 0, got {gamma!r}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{fn}(): reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        # max(x, 0) - x t, without its cancellation where x is large and t near 1
        ce = np.where(x >= 0, x * (one - t), -x * t) + np.log1p(np.exp(-np.abs(x)))
        e = np.exp(-np.abs(x))  # sigmoid(|x|) = 1 / (1 + e), sigmoid(-|x|) = e / (1 + e)
    big, small = one / (one + e), e / (one + e)
    p, q = np.where(x >= 0, big, small), np.where(x >= 0, small, big)  # sigmoid(x), sigmoid(-x)
    loss = ce * (p * (one - t) + q * t) ** x.dtype.type(gamma) if gamma else ce
    if alpha >= 0:
        a = x.dtype.type(alpha)
        loss = (a * t + (one - a) * (one - t)) * loss
    if reduction == "mean" and loss.size == 0:
        return np.asarray(np.nan, x.dtype)
    if reduction == "mean":
        return np.asarray(loss.mean(), x.dtype)
    if reduction == "sum":
        return np.asarray(loss.sum(), x.dtype)
    return loss


def _real(value: object, fn: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}(): {name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int beyond float64's range
        bits = int(value).bit_length()
        raise ValueError(
            f"{fn}(): {name} must be a representable real number, got an int of {bits} bits"
        ) from None


def felzenszwalb(
    image: ArrayLike, *, scale: float = 1.0, sigma: float = 0.8, min_size: int = 20
) -> np.ndarray:
    """Felzenszwalb and Huttenlocher's graph-based segmentation (IJCV 2004).

    The semantics of :func:`skimage.segmentation.felzenszwalb`: each channel is
    smoothed by a Gaussian of width ``sigma`` (scipy's ``reflect`` boundary,
    radius ``int(4 sigma + 0.5)``); the 8-connected pixel graph is weighted by
    the Euclidean colour distance over all channels; edges are visited by
    increasing weight and join two components ``A`` and ``B`` when the weight
    is below ``min(Int(A) + k / |A|, Int(B) + k / |B|)`` with ``k = scale / 255``
    and ``Int`` the largest weight inside a component; finally, components
    smaller than ``min_size`` are merged along the sorted edges. The weights
    are rounded to float32 (scikit-image keeps float64) and sorted by a radix
    sort on their top 24 bits (a relative precision of 2^-15), equal keys in
    pixel order (scikit-image leaves the order of equal weights unspecified):
    the partitions agree closely, not always exactly (on scikit-image's
    photographs an adjusted Rand index above 0.999, segment counts within one).

    Parameters
    ----------
    image : array_like, shape (H, W) or (H, W, C)
        uint8 (divided by 255, as ``skimage.util.img_as_float64`` does), float32
        or float64 (used as they are; finite). A 2-D image is one channel; every
        channel counts in the distance (RGBA included: drop alpha first if it
        should not). Not empty.
    scale : float
        ``k`` of the paper; larger gives larger segments. Positive.
    sigma : float
        Standard deviation of the smoothing, in pixels; 0 smooths nothing.
        In ``[0, 1000]``.
    min_size : int
        Smallest segment after post-processing. At least 1.

    Returns
    -------
    numpy.ndarray, shape (H, W), int64
        Labels ``0 .. n - 1``, numbered by each segment's first pixel in raster
        order (the numbering scikit-image's ``np.unique`` of the roots gives).
    """
    return _core.felzenszwalb(image, scale, sigma, min_size)


def selective_search(
    image: ArrayLike, *, mode: str = "fast", seed: int | np.random.Generator = 0
) -> np.ndarray:
    """Region proposals by selective search (Uijlings et al., IJCV 2013).

    For each colour space and each ``k`` of the mode, the image is segmented by
    :func:`felzenszwalb` (``scale=k``, ``sigma=0.8``, ``min_size=k``) and the regions are
    grouped hierarchically: the most similar pair of 8-connected neighbours is merged
    until one region is left, under each similarity strategy of the mode. A similarity is
    the sum of its terms: colour (histogram intersection, 25 bins per channel), texture
    (histogram intersection of gradient responses in 8 orientations, 10 bins per channel
    and orientation; the image is smoothed with sigma 1 and differentiated by central
    differences), size (``1 - (|a| + |b|) / |image|``) and fill (``1 - (|box(a, b)| - |a|
    - |b|) / |image|``). Every region of every hierarchy gives its box. Boxes are ranked as
    in the paper: within a hierarchy the last region (the whole image) has position 1, the
    one before 2, and so on; each position is multiplied by a random number in [0, 1) and
    all boxes are sorted by that value; repeated boxes keep their first rank. With more than
    one kernel thread (:func:`cnnkit.set_num_threads`) the segmentations run side by side;
    the boxes are the same for any thread count.

    ``mode="single"``: one hierarchy (HSV, ``k`` 100, colour+texture+size+fill), as
    OpenCV's single strategy. ``mode="fast"``: HSV and Lab, ``k`` 50 and 100, strategies
    colour+texture+size+fill and texture+size+fill (8 hierarchies). ``mode="quality"``:
    HSV, Lab, rgI, H and I, ``k`` 50, 100, 150 and 300, those two strategies plus fill
    alone and size alone (80 hierarchies).

    Parameters
    ----------
    image : array_like, shape (H, W, 3)
        RGB, uint8 or float32/float64 in [0, 1]. (H, W) and (H, W, 1) are taken as grey
        (the channel is repeated); (H, W, 4) as RGBA, whose alpha is dropped with a
        ``UserWarning``. Not empty.
    mode : {"fast", "quality", "single"}
    seed : int or numpy.random.Generator
        The randomness of the ranking.

    Returns
    -------
    numpy.ndarray, shape (N, 4), float32
        ``xyxy`` boxes in pixels (integers; ``x2``, ``y2`` exclusive, so the whole image is
        ``[0, 0, W, H]``), best-ranked first, no two equal.
    """
    image = _array(image, "selective_search", "image")
    search = functools.partial(
        _proposals.selective_search,
        image,
        mode,
        seed,
        segment=felzenszwalb,
        group=_core.group_regions,
        fn="selective_search",
        group_many=_core.group_regions_many,
        hsv=_core.hsv_image,
        texture=_core.texture_bins,
    )
    threads = _core.get_num_threads()
    if threads == 1:
        return search()
    with ThreadPoolExecutor(threads) as pool:
        return search(map_jobs=pool.map)


def lrn(
    x: ArrayLike, size: int, *, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0
) -> np.ndarray:
    """Local response normalization across channels, channels-last (AlexNet, GoogLeNet;
    ONNX's ``LRN``, torch's ``LocalResponseNorm``).

    ``y[..., c] = x[..., c] / (bias + alpha / size * sum(x[..., c'] ** 2)) ** beta`` with
    the sum over the ``size`` channels ``c - (size - 1) // 2 <= c' <= c + size // 2``
    that exist (fewer at the edges; the divisor stays ``size``).

    Parameters
    ----------
    x : array_like, shape (N, ..., C), float32 or float64
    size : int
        The window's channel count, >= 1.
    alpha, beta, bias : float
        Finite; ONNX's and torch's defaults (torch calls ``bias`` ``k``).

    Returns
    -------
    numpy.ndarray, shape and dtype of ``x``
        Each window's sum of squares is accumulated in float64 in channel order:
        bit-identical for any number of threads.

    Examples
    --------
    >>> lrn(np.array([[1.0, 2.0, 3.0]]), 3, alpha=3.0, beta=1.0, bias=0.0)
    array([[0.2       , 0.14285714, 0.23076923]])
    """
    return _core.lrn(x, size, alpha, beta, bias)


def lrn_backward(
    x: ArrayLike,
    dy: ArrayLike,
    size: int,
    *,
    alpha: float = 1e-4,
    beta: float = 0.75,
    bias: float = 1.0,
) -> np.ndarray:
    """Gradient of :func:`lrn` with respect to ``x``, given ``dy`` of ``x``'s shape.

    Returns
    -------
    numpy.ndarray, shape of ``x``
        The wider dtype of ``x`` and ``dy``; bit-identical for any number of threads.
    """
    return _core.lrn_backward(x, dy, size, alpha, beta, bias)


def sgd_update(
    var: np.ndarray,
    grad: ArrayLike,
    velocity: np.ndarray | None = None,
    *,
    learning_rate: float,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> None:
    """One SGD step on ``var`` (and its ``velocity``) in place, in one fused pass.

    Without momentum ``var -= learning_rate * grad``. Otherwise, with
    ``step = learning_rate * grad``, ``velocity = velocity * momentum - step`` and then
    ``var += velocity`` or, with Nesterov, ``var += momentum * velocity - step`` (Keras 3's
    formulation, what :class:`cnnkit.optimizers.SGD` applies).

    Parameters
    ----------
    var : numpy.ndarray, float32 or float64
        Updated in place: writeable and C-contiguous.
    grad : array_like, var's shape
        Cast to var's dtype.
    velocity : numpy.ndarray or None
        var's dtype and shape, writeable and C-contiguous; required when momentum is not 0.
    learning_rate : float
        Finite; cast to var's dtype, as are ``momentum`` (in [0, 1]).
    nesterov : bool

    Notes
    -----
    Every element takes the operations of the NumPy formulas above in var's precision
    (:func:`cnnkit.reference.sgd_update`), so the results are bit-identical to them and to
    any number of threads. The arrays must not share memory.

    Examples
    --------
    >>> w, m = np.ones(3, np.float32), np.zeros(3, np.float32)
    >>> sgd_update(w, [1.0, 2.0, 3.0], m, learning_rate=0.5, momentum=0.9)
    >>> w
    array([ 0.5,  0. , -0.5], dtype=float32)
    """
    _core.sgd_update(var, grad, velocity, learning_rate, momentum, bool(nesterov))


def adam_update(
    var: np.ndarray,
    grad: ArrayLike,
    m: np.ndarray,
    v: np.ndarray,
    *,
    step_size: float,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    v_hat: np.ndarray | None = None,
) -> None:
    """One Adam step on ``var`` and its moments ``m``, ``v`` in place, in one fused pass.

    ``m += (grad - m) * (1 - beta_1)``, ``v += (grad**2 - v) * (1 - beta_2)`` and
    ``var -= m * step_size / (sqrt(v) + epsilon)``, where ``step_size`` is the
    bias-corrected rate ``lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` of step ``t``
    (Keras 3's epsilon placement, what :class:`cnnkit.optimizers.Adam` applies). With
    ``v_hat`` (AMSGrad) ``v_hat = maximum(v_hat, v)`` replaces ``v`` in the last formula.

    Parameters
    ----------
    var : numpy.ndarray, float32 or float64
        Updated in place: writeable and C-contiguous.
    grad : array_like, var's shape
        Cast to var's dtype.
    m, v, v_hat : numpy.ndarray
        var's dtype and shape, writeable and C-contiguous (``v_hat`` may be None).
    step_size : float
        Finite; ``1 - beta_1``, ``1 - beta_2`` (betas in [0, 1]) and ``epsilon`` (>= 0,
        finite) are formed in float64 and then cast to var's dtype, as the NumPy formulas do.

    Notes
    -----
    Bit-identical to :func:`cnnkit.reference.adam_update` and to any number of threads.
    The arrays must not share memory.
    """
    _core.adam_update(var, grad, m, v, v_hat, step_size, beta_1, beta_2, epsilon)


def batch_norm(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, *, epsilon: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalisation with the batch's statistics (training), channels-last.

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` with ``mean`` and the biased
    ``var`` of each channel over every axis but the last (Keras's ``BatchNormalization``
    in training, torch's ``F.batch_norm(training=True)`` on channels-last data).

    Parameters
    ----------
    x : array_like, shape (N, ..., C), float32 or float64
        At least one row: the statistics of an empty batch are undefined.
    gamma, beta : array_like, shape (C,), float
    epsilon : float
        Finite, > 0.

    Returns
    -------
    (y, mean, var) : numpy.ndarray
        ``y`` of ``x``'s shape, ``mean`` and ``var`` of shape (C,), in the widest dtype of
        the inputs. The sums are taken in float64 (also for float32) over a fixed split of
        the rows, so the results are bit-identical for any number of threads. ``xhat`` is
        not stored: :func:`batch_norm_backward` recomputes it from ``mean`` and ``var``.

    Examples
    --------
    >>> y, mean, var = batch_norm([[1.0], [3.0]], [2.0], [0.5], epsilon=1e-3)
    >>> y.round(4), mean, var
    (array([[-1.499],
           [ 2.499]]), array([2.]), array([1.]))
    """
    y, mean, var = _core.batch_norm(x, gamma, beta, epsilon)
    return y, mean, var


def batch_norm_backward(
    x: ArrayLike,
    dy: ArrayLike,
    gamma: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    *,
    epsilon: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batch_norm` given ``dy`` of ``x``'s shape and the ``mean`` and
    ``var`` it returned.

    With ``xhat = (x - mean) / sqrt(var + epsilon)`` and ``n`` rows:
    ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)`` and
    ``dx = gamma / sqrt(var + epsilon) / n * (n * dy - dbeta - xhat * dgamma)``
    (the gradient through the batch statistics included).

    Returns
    -------
    (dx, dgamma, dbeta) : numpy.ndarray
        Shapes of ``x``, (C,) and (C,), in the widest dtype of the inputs; sums in float64,
        bit-identical for any number of threads.
    """
    dx, dgamma, dbeta = _core.batch_norm_backward(x, dy, gamma, mean, var, epsilon)
    return dx, dgamma, dbeta


def batch_norm_inference(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    *,
    epsilon: float = 1e-3,
) -> np.ndarray:
    """Batch normalisation with given statistics (inference with the moving ones).

    ``y = (x - mean) * scale + beta`` with ``scale = gamma / sqrt(var + epsilon)`` formed
    in float64 per channel, then rounded to the widest dtype of the inputs; one pass over
    ``x`` (of shape (N, ..., C); may be empty), bit-identical for any number of threads.
    """
    return _core.batch_norm_inference(x, gamma, beta, mean, var, epsilon)


def concat(tensors: Sequence[ArrayLike], axis: int = -1) -> np.ndarray:
    """The arrays joined along ``axis`` (the channels by default), as
    :func:`numpy.concatenate`, copied on every thread: a fire module's or an Inception
    block's channel Concat.

    Parameters
    ----------
    tensors : sequence of array_like, float32 or float64
        At least one array; all of one rank (at least 1) and of equal sizes except along
        ``axis``. Any of them may be empty or non-contiguous (copied once).
    axis : int, default -1
        The axis to join along, negative from the end.

    Returns
    -------
    numpy.ndarray
        A new array in the widest dtype of the inputs, with the bits of
        ``numpy.concatenate(tensors, axis)``; bit-identical for any number of threads.

    Examples
    --------
    >>> concat([np.zeros((1, 2, 1)), np.ones((1, 2, 2))])[0]
    array([[0., 1., 1.],
           [0., 1., 1.]])
    """
    return _core.concat(tensors, axis)


def add_relu(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``max(a + b, 0)`` elementwise in one pass on every thread: a residual block's Add and
    the ReLU that reads it (ResNet), as onnxruntime fuses them.

    Parameters
    ----------
    a, b : array_like, float32 or float64, of one shape (no broadcasting; may be empty)

    Returns
    -------
    numpy.ndarray
        A new array of that shape in the wider dtype of the two, with the bits of
        ``np.maximum(a + b, 0)`` (NaN passes, -0.0 becomes 0.0); bit-identical for any
        number of threads.

    Examples
    --------
    >>> add_relu(np.array([1.0, -2.0]), np.array([0.5, 1.0]))
    array([1.5, 0. ])
    """
    return _core.add_relu(a, b)


def channels_last(x: ArrayLike) -> np.ndarray:
    """``(N, C, *spatial) -> (N, *spatial, C)``: a contiguous channels-last copy of a
    channels-first array (ONNX's and torch's NCHW images into cnnkit's NHWC), on every
    thread. ``np.moveaxis(x, 1, -1)`` copied by NumPy walks the channels a plane apart on
    one thread: 1.2 ms for eight 224 x 224 x 3 images.

    Parameters
    ----------
    x : array_like, shape (N, C, ...), float32 or float64 (may be empty)

    Returns
    -------
    numpy.ndarray
        A new C-contiguous array of shape ``(N, *x.shape[2:], C)`` and x's dtype, the same
        values (any number of threads).

    Examples
    --------
    >>> channels_last(np.arange(8.0).reshape(1, 2, 2, 2))[0, :, :, 1]
    array([[4., 5.],
           [6., 7.]])
    """
    return _core.channels_last(x)
