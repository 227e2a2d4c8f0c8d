"""NumPy reference implementations of :mod:`cnnkit.ops`: the executable specification.

Each function has the signature and the semantics of its namesake in
:mod:`cnnkit.ops` and is written for clarity, not speed (NMS here compares
every candidate with every kept box). The tests check the native kernels
against these. Inputs are assumed valid: argument checking is the kernels'
job and is tested separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from . import _proposals

__all__ = [
    "activation_backward",
    "adam_update",
    "add_noise",
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
    "colour_affine",
    "colour_jitter",
    "complete_box_iou",
    "concat",
    "conv",
    "conv_backward",
    "conv_max_pool_backward",
    "conv_stem",
    "distance_box_iou",
    "felzenszwalb",
    "gaussian_blur",
    "generalized_box_iou",
    "global_avg_pool",
    "global_max_pool",
    "gram",
    "gram_backward",
    "hflip",
    "hsv_shift",
    "kmeans_anchors",
    "lrn",
    "lrn_backward",
    "masks_to_boxes",
    "matmul",
    "max_pool",
    "max_pool_backward",
    "nms",
    "remap",
    "remove_small_boxes",
    "resize",
    "roi_align",
    "roi_align_backward",
    "roi_pool",
    "roi_pool_backward",
    "selective_search",
    "sgd_update",
    "sigmoid_focal_loss",
    "sliding_windows",
    "soft_nms",
    "vflip",
    "warp_affine",
    "window_boxes",
    "yolo_decode",
    "yolo_encode",
    "yolo_encode_batch",
]


def _boxes(boxes: ArrayLike, dtype: np.dtype | None = None) -> np.ndarray:
    """Boxes of shape (..., 4) ([] is (0, 4)); integers and float16 become float32."""
    a = np.asarray(boxes)
    if a.ndim == 1 and a.size == 0:
        a = a.reshape(0, 4)
    if a.dtype.kind in "iu" or a.dtype == np.float16:
        a = a.astype(np.float32)
    return a.astype(dtype or a.dtype, copy=False)


def _common(*arrays: ArrayLike) -> tuple[np.ndarray, ...]:
    arrs = [_boxes(a) if np.ndim(a) != 1 else np.asarray(a) for a in arrays]
    dtype = np.result_type(*arrs)
    return tuple(_boxes(a, dtype) if a.ndim != 1 else a.astype(dtype) for a in arrs)


def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str) -> np.ndarray:
    b = _boxes(boxes)
    half = b.dtype.type(0.5)
    p, q, r, s = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
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
    return np.stack(cols, axis=-1)


def box_area(boxes: ArrayLike) -> np.ndarray:
    b = _boxes(boxes)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def clip_boxes(boxes: ArrayLike, size: Sequence[float]) -> np.ndarray:
    b = _boxes(boxes)
    height, width = b.dtype.type(size[0]), b.dtype.type(size[1])
    out = b.copy()
    out[..., 0::2] = np.clip(b[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(b[..., 1::2], 0, height)
    return out


clip_boxes_to_image = clip_boxes


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
    idxs: ArrayLike,
    iou_threshold: float,
    *,
    score_threshold: float | None = None,
    max_output: int | None = None,
) -> np.ndarray:
    b, s = _common(boxes, scores)
    c = np.asarray(idxs).astype(np.int64)
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


def _per_dim(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


def _window_padding(
    sizes: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    padding,
) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dimension, Keras's rule for "same"."""
    rank = len(sizes)
    if padding == "valid":
        return [(0, 0)] * rank
    if padding == "same":
        pads = []
        for n, k, s, d in zip(sizes, window, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    return [p if isinstance(p, (tuple, list)) else (p, p) for p in _per_dim(padding, rank)]


def _conv_setup(
    x, w, stride, padding, dilation, *others
) -> tuple[np.ndarray, np.ndarray, Any, Any, Any, Any, Any]:
    """x and w in the result dtype of x, w and the other float inputs given."""
    x, w = np.asarray(x), np.asarray(w)
    dtype = np.result_type(x, w, *(np.asarray(o) for o in others if o is not None))
    x, w = x.astype(dtype), w.astype(dtype)
    rank = x.ndim - 2
    kernel = w.shape[:rank]
    strides, dilations = _per_dim(stride, rank), _per_dim(dilation, rank)
    pads = _window_padding(x.shape[1:-1], kernel, strides, dilations, padding)
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    out = [
        (xp.shape[1 + d] - dilations[d] * (kernel[d] - 1) - 1) // strides[d] + 1
        for d in range(rank)
    ]
    return x, w, xp, pads, strides, dilations, out


def _window_slices(offset, strides, dilations, out):
    """The input positions that kernel offset `offset` reads, for every output position."""
    return tuple(
        slice(k * d, k * d + (o - 1) * s + 1, s)
        for k, s, d, o in zip(offset, strides, dilations, out)
    )


def _activate(y: np.ndarray, activation: str | None, negative_slope: float) -> np.ndarray:
    """The activations :func:`conv` and :func:`matmul` fuse, on their output."""
    if activation in (None, "linear"):
        return y
    if activation == "relu":
        return np.maximum(y, 0)
    if activation == "leaky_relu":
        return np.where(y > 0, y, y.dtype.type(negative_slope) * y)
    if activation == "sigmoid":
        e = np.exp(-np.abs(y))
        return np.where(y >= 0, 1 / (1 + e), e / (1 + e)).astype(y.dtype, copy=False)
    if activation == "relu6":
        return np.minimum(np.maximum(y, 0), 6)
    if activation == "hard_swish":  # cnnkit.autograd.hard_swish's rounding order
        return y * np.clip(y / 6 + 0.5, 0, 1)
    raise ValueError(f"unknown activation {activation!r}")


def activation_backward(
    y: ArrayLike, dy: ArrayLike, activation: str | None, *, negative_slope: float = 0.2
) -> np.ndarray:
    if activation == "hard_swish":
        raise ValueError(
            "activation_backward(): activation cannot be 'hard_swish': its gradient cannot be "
            "read from its output y"
        )
    y, dy = np.asarray(y), np.asarray(dy)
    dtype = np.result_type(y, dy)
    y, dy = y.astype(dtype), dy.astype(dtype)
    if activation == "relu":
        return dy * (y > 0)
    if activation == "leaky_relu":
        return dy * np.where(y > 0, dtype.type(1), dtype.type(negative_slope))
    if activation == "sigmoid":
        return dy * (y * (1 - y))
    if activation == "relu6":
        return dy * ((y > 0) & (y < 6))
    return dy.copy()


def conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride=1,
    padding="valid",
    dilation=1,
    groups: int = 1,
    activation: str | None = None,
    negative_slope: float = 0.2,
    winograd: bool | None = None,  # accepted for ops.conv's signature; one algorithm here
    residual: ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    if out is not None:  # the values computed, then written where ops.conv writes them
        y = conv(
            x,
            w,
            b,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            activation=activation,
            negative_slope=negative_slope,
            residual=residual,
        )
        if out.shape != y.shape or out.dtype != y.dtype:
            raise ValueError(
                f"conv(): out must have the output's shape {y.shape} and dtype {y.dtype}, got "
                f"{out.shape} {out.dtype}"
            )
        out[...] = y
        return out
    x, w, xp, _, strides, dilations, out = _conv_setup(x, w, stride, padding, dilation, b)
    rank = x.ndim - 2
    cin_g, cout = w.shape[-2], w.shape[-1]
    cout_g = cout // groups
    y = np.zeros((x.shape[0], *out, cout), dtype=x.dtype)
    for offset in np.ndindex(*w.shape[:rank]):
        window = xp[(slice(None), *_window_slices(offset, strides, dilations, out))]
        for g in range(groups):
            cols = slice(g * cout_g, (g + 1) * cout_g)
            y[..., cols] += window[..., g * cin_g : (g + 1) * cin_g] @ w[offset][:, cols]
    if b is not None:
        y += np.asarray(b, dtype=x.dtype)
    if residual is not None:
        if activation not in (None, "linear", "relu"):
            raise ValueError(
                "conv(): activation must be None, 'linear' or 'relu' with a residual, got "
                f"{activation!r}"
            )
        y = y + np.asarray(residual, dtype=x.dtype)
        return np.where(y <= 0, np.zeros((), y.dtype), y) if activation == "relu" else y
    return _activate(y, activation, negative_slope)


def conv_backward(
    x: ArrayLike,
    w: ArrayLike,
    dy: ArrayLike,
    *,
    stride=1,
    padding="valid",
    dilation=1,
    groups: int = 1,
    need: Sequence[str] = ("x", "w", "b"),
    y: ArrayLike | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
    winograd: bool | None = None,  # accepted for ops.conv_backward's signature
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    x, w, xp, pads, strides, dilations, out = _conv_setup(x, w, stride, padding, dilation, dy)
    dy = np.asarray(dy).astype(x.dtype)
    if activation not in (None, "linear"):
        if y is None:
            raise ValueError(f"conv_backward(): y is required with activation={activation!r}")
        dy = activation_backward(y, dy, activation, negative_slope=negative_slope)
    rank = x.ndim - 2
    cin_g, cout = w.shape[-2], w.shape[-1]
    cout_g = cout // groups
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for offset in np.ndindex(*w.shape[:rank]):
        index = (slice(None), *_window_slices(offset, strides, dilations, out))
        window = xp[index]
        for g in range(groups):
            cin, cols = slice(g * cin_g, (g + 1) * cin_g), slice(g * cout_g, (g + 1) * cout_g)
            dxp[index][..., cin] += dy[..., cols] @ w[offset][:, cols].T
            batch_axes = list(range(x.ndim - 1))
            dw[offset][:, cols] += np.tensordot(window[..., cin], dy[..., cols], (batch_axes,) * 2)
    inner = tuple(slice(p[0], xp.shape[1 + d] - p[1]) for d, p in enumerate(pads))
    dx = dxp[(slice(None), *inner)]
    db = dy.sum(axis=tuple(range(dy.ndim - 1)))
    return (
        dx if "x" in need else None,
        dw if "w" in need else None,
        db if "b" in need else None,
    )


def matmul(
    a: ArrayLike,
    b: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    dtype = np.result_type(a, b) if bias is None else np.result_type(a, b, np.asarray(bias))
    y = np.matmul(a.astype(dtype), b.astype(dtype))
    if bias is not None:
        y += np.asarray(bias, dtype=dtype)
    return _activate(y, activation, negative_slope)


def _features(x: np.ndarray) -> np.ndarray:
    """``x`` (N, *spatial, C) as (N, positions, C)."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:-1]), x.shape[-1])


def _gram_divisor(normalize: str | None, f: np.ndarray):
    """The divisor of :func:`gram`, or None when nothing is divided."""
    positions, channels = f.shape[1], f.shape[2]
    if normalize is None or positions == 0:
        return None
    return f.dtype.type(positions if normalize == "positions" else positions * channels)


def gram(x: ArrayLike, *, normalize: str | None = None) -> np.ndarray:
    f = _features(np.asarray(x))
    g = np.einsum("npc,npd->ncd", f, f)
    d = _gram_divisor(normalize, f)
    return g if d is None else g / d


def gram_backward(x: ArrayLike, dG: ArrayLike, *, normalize: str | None = None) -> np.ndarray:
    x, dG = np.asarray(x), np.asarray(dG)
    dtype = np.result_type(x, dG)
    f = _features(x.astype(dtype))
    s = dG.astype(dtype) + dG.astype(dtype).transpose(0, 2, 1)
    d = _gram_divisor(normalize, f)
    if d is not None:
        s = s / d
    return np.einsum("npc,ncd->npd", f, s).reshape(x.shape)


def _pool_setup(x: ArrayLike, pool_size, stride, padding) -> tuple[np.ndarray, Any, Any, Any]:
    x = np.asarray(x)
    rank = x.ndim - 2
    window = _per_dim(pool_size, rank)
    steps = window if stride is None else _per_dim(stride, rank)
    pads = _window_padding(x.shape[1:-1], window, steps, (1,) * rank, padding)
    return x, window, steps, pads


def _windows(a: np.ndarray, window, steps, pads, fill) -> np.ndarray:
    """Every pooling window of ``a`` (N, *spatial, C) padded with ``fill``.

    Shape (N, *out, C, prod(window)): each window's elements in row-major window order.
    """
    rank = len(window)
    padded = np.pad(a, [(0, 0), *pads, (0, 0)], constant_values=fill)
    views = sliding_window_view(padded, window, axis=tuple(range(1, rank + 1)))
    views = views[(slice(None), *(slice(None, None, s) for s in steps))]
    return views.reshape(*views.shape[: rank + 2], -1)


def _real(x: np.ndarray, window, steps, pads) -> np.ndarray:
    """Which window elements are input elements rather than padding: (1, *out, 1, prod(window))."""
    return _windows(np.ones((1, *x.shape[1:-1], 1), bool), window, steps, pads, False)


def _unwindow(grads: np.ndarray, shape, window, steps, pads) -> np.ndarray:
    """The adjoint of :func:`_windows`: adds each window element's value to its input position."""
    rank = len(window)
    out = grads.shape[1 : rank + 1]
    sizes = shape[1:-1]
    padded = np.zeros(
        (shape[0], *(n + b + a for n, (b, a) in zip(sizes, pads)), shape[-1]), grads.dtype
    )
    grads = grads.reshape(*grads.shape[:-1], *window)
    for offset in np.ndindex(*window):
        padded[(slice(None), *_window_slices(offset, steps, (1,) * rank, out))] += grads[
            (..., *offset)
        ]
    return padded[(slice(None), *(slice(b, b + n) for n, (b, _) in zip(sizes, pads)))]


def _first_maximal(x: np.ndarray, window, steps, pads) -> np.ndarray:
    """Each window's first maximal real element (the first NaN if any), as an offset in
    row-major window order: (N, *out, C)."""
    values = _windows(x, window, steps, pads, -np.inf)
    peak = values.max(axis=-1, keepdims=True)
    # Padding is masked out so that it cannot tie with a real -inf.
    maximal = ((values == peak) | np.isnan(values)) & _real(x, window, steps, pads)
    return maximal.argmax(axis=-1)  # argmax of booleans: the first True


def max_pool(
    x: ArrayLike, pool_size, *, stride=None, padding="valid", return_indices=False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    x, window, steps, pads = _pool_setup(x, pool_size, stride, padding)
    y = _windows(x, window, steps, pads, -np.inf).max(axis=-1)  # -inf padding never wins
    if not return_indices:
        return y
    offsets = np.unravel_index(_first_maximal(x, window, steps, pads), window)
    sizes, rank = x.shape[1:-1], len(window)
    flat = np.zeros(y.shape, np.int64)
    for d in range(rank):
        starts = np.arange(y.shape[1 + d]) * steps[d] - pads[d][0]
        along = starts.reshape([-1 if a == d else 1 for a in range(rank)] + [1])
        flat = flat * sizes[d] + (along + offsets[d])
    return y, flat


def avg_pool(x: ArrayLike, pool_size, *, stride=None, padding="valid") -> np.ndarray:
    x, window, steps, pads = _pool_setup(x, pool_size, stride, padding)
    count = _real(x, window, steps, pads).sum(axis=-1).astype(x.dtype)
    return _windows(x, window, steps, pads, 0).sum(axis=-1) / count


def max_pool_backward(
    x: ArrayLike,
    dy: ArrayLike,
    pool_size,
    *,
    stride=None,
    padding="valid",
    indices=None,
    relu_output=None,
) -> np.ndarray:
    x, window, steps, pads = _pool_setup(x, pool_size, stride, padding)
    dtype = np.result_type(x, np.asarray(dy))
    if relu_output is not None:
        dtype = np.result_type(dtype, np.asarray(relu_output))
    x, dy = x.astype(dtype), np.asarray(dy, dtype)
    if relu_output is not None:
        dy = np.asarray(dy * (np.asarray(relu_output, dtype) > 0).astype(dtype), dtype)
    if indices is not None:
        n, c = x.shape[0], x.shape[-1]
        dx = np.zeros((n, math.prod(x.shape[1:-1]), c), dtype)
        at = np.asarray(indices, np.int64).reshape(n, -1, c)
        np.add.at(dx, (np.arange(n)[:, None, None], at, np.arange(c)), dy.reshape(n, -1, c))
        return dx.reshape(x.shape)
    first = _first_maximal(x, window, steps, pads)[..., None]
    grads = np.where(np.arange(math.prod(window)) == first, dy[..., None], 0)
    return _unwindow(grads, x.shape, window, steps, pads)


def conv_stem(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride=1,
    padding="valid",
    activation: str | None = None,
    negative_slope: float = 0.2,
    channels_first: bool = False,
    pool_size=None,
    pool_stride=None,
    pool_padding=None,
) -> np.ndarray:
    if channels_first:
        x = channels_last(x)
    spec = {"stride": stride, "padding": padding, "activation": activation}
    y = conv(x, w, b, negative_slope=negative_slope, **spec)
    if pool_size is None:
        return y
    padding = "valid" if pool_padding is None else pool_padding
    return max_pool(y, pool_size, stride=pool_stride, padding=padding)  # type: ignore[return-value]


def conv_max_pool_backward(
    x: ArrayLike,
    w: ArrayLike,
    dy: ArrayLike,
    indices: ArrayLike,
    pool_size,
    *,
    stride=1,
    padding="valid",
    dilation=1,
    groups: int = 1,
    pool_stride=None,
    pool_padding="valid",
    relu_output=None,
) -> tuple[np.ndarray, np.ndarray]:
    spec = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    out = conv(x, w, **spec)
    dtype = np.result_type(out, np.asarray(dy))
    if relu_output is not None:
        dtype = np.result_type(dtype, np.asarray(relu_output))
    if out.size == 0:  # no gradient to route (max_pool_backward's reshape needs elements)
        w = np.asarray(w)
        return np.zeros(w.shape, dtype), np.zeros(w.shape[-1], dtype)
    dout = max_pool_backward(
        np.zeros(out.shape, dtype),
        dy,
        pool_size,
        stride=pool_stride,
        padding=pool_padding,
        indices=indices,
        relu_output=relu_output,
    )
    _, dw, db = conv_backward(x, w, dout, need=("w", "b"), **spec)
    assert dw is not None and db is not None
    return dw, db


def avg_pool_backward(
    x: ArrayLike, dy: ArrayLike, pool_size, *, stride=None, padding="valid"
) -> np.ndarray:
    x, window, steps, pads = _pool_setup(x, pool_size, stride, padding)
    dtype = np.result_type(x, np.asarray(dy))
    real = _real(x, window, steps, pads)
    share = np.asarray(dy, dtype) / real.sum(axis=-1).astype(dtype)
    grads = np.where(real, share[..., None], 0)
    return _unwindow(grads, x.shape, window, steps, pads)


def global_max_pool(x: ArrayLike) -> np.ndarray:
    x = np.asarray(x)
    return x.max(axis=tuple(range(1, x.ndim - 1)))


def global_avg_pool(x: ArrayLike) -> np.ndarray:
    x = np.asarray(x)
    return x.mean(axis=tuple(range(1, x.ndim - 1)))


# --- detection: YOLO targets, anchors, sliding windows ---------------------------------
# Every step is the float64 operation the kernels do, in the same order, so that
# results agree bit for bit (sums that must be sequential use np.bincount and
# np.cumsum, which add in index order).


def _pair(value) -> tuple:
    return (value[0], value[1]) if isinstance(value, (tuple, list)) else (value, value)


def _centred_iou(wh: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(M, K) IoU of float64 shapes (M, 2) and (K, 2), every pair centred at one point."""
    w, h = wh[:, 0:1], wh[:, 1:2]
    cw, ch = centres[None, :, 0], centres[None, :, 1]
    inter = np.minimum(w, cw) * np.minimum(h, ch)
    return inter / (w * h + cw * ch - inter)


def _yolo_encode_image(boxes, classes, grid, anchors, num_classes, image_size, dtype):
    gh, gw = _pair(grid)
    height, width = (float(v) for v in _pair(image_size))
    a = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(boxes).astype(np.float64).reshape(-1, 4)
    cls = np.asarray(classes).astype(np.int64).reshape(-1)
    x1, y1, x2, y2 = b.T
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) * 0.5, (y1 + y2) * 0.5
    ok = (w > 0) & (h > 0) & (cx >= 0) & (cx <= width) & (cy >= 0) & (cy <= height)
    idx = np.flatnonzero(ok)
    u, v = cx[idx] * gw / width, cy[idx] * gh / height
    # A midpoint on the right or bottom edge goes to the last cell.
    col = np.minimum(np.floor(u), gw - 1)
    row = np.minimum(np.floor(v), gh - 1)
    ious = _centred_iou(np.stack([w[idx], h[idx]], axis=1), a)
    best = np.argmax(ious, axis=1)
    best_iou = ious[np.arange(len(idx)), best]
    slot = (row.astype(np.int64) * gw + col.astype(np.int64)) * len(a) + best
    # Per slot the highest anchor IoU wins, then the lowest index.
    order = np.lexsort((idx, -best_iou, slot))
    first = np.ones(len(order), dtype=bool)
    first[1:] = slot[order][1:] != slot[order][:-1]
    win = order[first]
    y = np.zeros((gh * gw * len(a), 5 + num_classes), dtype=dtype)
    s = slot[win]
    y[s, 0] = 1
    # (capped at 1: u and v can round to just above the grid's size on the edge)
    y[s, 1] = np.minimum(u[win] - col[win], 1.0)
    y[s, 2] = np.minimum(v[win] - row[win], 1.0)
    y[s, 3] = h[idx[win]] * gh / height
    y[s, 4] = w[idx[win]] * gw / width
    y[s, 5 + cls[idx[win]]] = 1
    return y.reshape(gh, gw, len(a), 5 + num_classes), len(b) - len(win)


def yolo_encode(boxes, classes, *, grid, anchors, num_classes, image_size):
    dtype = np.asarray(boxes).dtype
    return _yolo_encode_image(boxes, classes, grid, anchors, num_classes, image_size, dtype)


def yolo_encode_batch(boxes_list, classes_list, *, grid, anchors, num_classes, image_size):
    wide = any(np.asarray(b).dtype == np.float64 for b in boxes_list)
    dtype = np.dtype(np.float64 if wide else np.float32)
    gh, gw = _pair(grid)
    shape = (len(boxes_list), gh, gw, len(np.asarray(anchors)), 5 + num_classes)
    y = np.zeros(shape, dtype=dtype)
    dropped = np.zeros(len(boxes_list), dtype=np.int64)
    for i, (b, c) in enumerate(zip(boxes_list, classes_list)):
        y[i], dropped[i] = _yolo_encode_image(b, c, grid, anchors, num_classes, image_size, dtype)
    return y, dropped


def _yolo_decode_image(y: np.ndarray, image_size, score_threshold: float):
    gh, gw = y.shape[:2]
    height, width = (float(v) for v in _pair(image_size))
    cls = np.argmax(y[..., 5:], axis=-1)
    best = np.take_along_axis(y[..., 5:], cls[..., None], axis=-1)[..., 0]
    score = y[..., 0].astype(np.float64) * best.astype(np.float64)
    r, c, a = np.nonzero(score >= score_threshold)  # row-major: by row, column, anchor
    rows = y[r, c, a].astype(np.float64)
    cell_w, cell_h = width / gw, height / gh
    cx, cy = (c + rows[:, 1]) * cell_w, (r + rows[:, 2]) * cell_h
    half_h, half_w = rows[:, 3] * cell_h * 0.5, rows[:, 4] * cell_w * 0.5
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    boxes = boxes.reshape(-1, 4).astype(y.dtype)
    return boxes, score[r, c, a].astype(y.dtype), cls[r, c, a].astype(np.int64)


def yolo_decode(Y, *, anchors, image_size, score_threshold=0.6):
    y = np.asarray(Y)
    if y.ndim == 5:
        return [_yolo_decode_image(img, image_size, score_threshold) for img in y]
    return _yolo_decode_image(y, image_size, score_threshold)


def _kmeans_seed(wh: np.ndarray, k: int, uniforms: np.ndarray) -> np.ndarray:
    m = len(wh)
    picks = [min(int(uniforms[0] * m), m - 1)]
    d2 = (1.0 - _centred_iou(wh, wh[picks[0]][None])[:, 0]) ** 2
    for j in range(1, k):
        cum = np.cumsum(d2)
        if cum[-1] > 0:
            pick = int(np.searchsorted(cum, uniforms[j] * cum[-1], side="right"))
            if pick == m:  # only by rounding
                pick = int(np.flatnonzero(d2 > 0)[-1])
        else:
            chosen = wh[picks]
            pick = next(p for p in range(m) if not (wh[p] == chosen).all(axis=1).any())
        picks.append(pick)
        d2 = np.minimum(d2, (1.0 - _centred_iou(wh, wh[pick][None])[:, 0]) ** 2)
    return wh[picks].copy()


class KMeansAnchors(NamedTuple):
    """The result of :func:`kmeans_anchors`: the fields of ``cnnkit.ops.KMeansAnchors``
    (defined here too, so that the specification depends on NumPy only)."""

    anchors: np.ndarray
    mean_iou: float
    recall: float


def kmeans_anchors(wh, k, *, iterations=100, seed=0, iou_threshold=0.5):
    raw = np.asarray(wh)
    shapes = raw.astype(np.float64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    centres = _kmeans_seed(shapes, k, rng.random(k))
    labels = None
    for _ in range(iterations):
        new = np.argmax(_centred_iou(shapes, centres), axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        full = counts > 0  # an empty cluster keeps its centre
        for d in range(2):
            sums = np.bincount(labels, weights=shapes[:, d], minlength=k)
            centres[full, d] = sums[full] / counts[full]
    # Sorted by the area of the returned (rounded) shapes, so the order holds for them.
    rounded = centres.astype(raw.dtype)
    wide = rounded.astype(np.float64)
    anchors = rounded[np.argsort(wide[:, 0] * wide[:, 1], kind="stable")]
    best = _centred_iou(shapes, anchors.astype(np.float64)).max(axis=1)
    mean_iou = float(np.cumsum(best)[-1] / len(best))
    recall = float(np.count_nonzero(best >= iou_threshold) / len(best))
    return KMeansAnchors(anchors, mean_iou, recall)


def sliding_windows(images, window, stride):
    x = np.asarray(images)
    (h, w), (sh, sw) = _pair(window), _pair(stride)
    views = sliding_window_view(x, (h, w), axis=(1, 2))[:, ::sh, ::sw]  # (N, rows, cols, C, h, w)
    return np.ascontiguousarray(views.transpose(0, 1, 2, 4, 5, 3))


def window_boxes(image_size, window, stride):
    (height, width), (h, w), (sh, sw) = _pair(image_size), _pair(window), _pair(stride)
    rows, cols = (height - h) // sh + 1, (width - w) // sw + 1
    out = np.empty((rows, cols, 4), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = (c * sw, r * sh, c * sw + w, r * sh + h)
    return out


# --- regions: RoI pooling and RoIAlign, masks, focal loss -------------------------------
# The loops mirror torchvision's CPU kernels, in the input's dtype.


def _roi_rows(boxes, dtype) -> np.ndarray:
    if isinstance(boxes, (list, tuple)) and boxes and np.ndim(boxes[0]) == 2:
        rows = [
            np.concatenate([np.full((len(b), 1), i, np.float64), np.asarray(b, np.float64)], 1)
            for i, b in enumerate(boxes)
        ]
        return np.concatenate(rows).astype(dtype)
    return np.asarray(boxes, dtype).reshape(-1, 5)


def _align_window(roi, scale, pooled, sampling_ratio, aligned, T):
    offset, s = T(0.5 if aligned else 0.0), T(scale)  # all in T, as torchvision
    x1, y1, x2, y2 = (T(v) * s - offset for v in roi[1:])
    w, h = x2 - x1, y2 - y1
    if not aligned:
        w, h = max(w, T(1)), max(h, T(1))
    bin_h, bin_w = h / T(pooled[0]), w / T(pooled[1])
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(h / T(pooled[0]))
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(w / T(pooled[1]))
    return y1, x1, bin_h, bin_w, grid_h, grid_w


def _align_samples(window, ph, pw, height, width, T):
    """(y_low, y_high, x_low, x_high, w1, w2, w3, w4) of each in-range sample of a bin."""
    y1, x1, bin_h, bin_w, grid_h, grid_w = window
    for iy in range(grid_h):
        y = y1 + T(ph) * bin_h + T(iy + 0.5) * bin_h / T(grid_h)
        for ix in range(grid_w):
            x = x1 + T(pw) * bin_w + T(ix + 0.5) * bin_w / T(grid_w)
            if y < -1.0 or y > height or x < -1.0 or x > width:
                continue
            yy, xx = max(y, T(0)), max(x, T(0))
            y_low, x_low = int(yy), int(xx)
            if y_low >= height - 1:
                y_low = y_high = height - 1
                yy = T(y_low)
            else:
                y_high = y_low + 1
            if x_low >= width - 1:
                x_low = x_high = width - 1
                xx = T(x_low)
            else:
                x_high = x_low + 1
            ly, lx = yy - T(y_low), xx - T(x_low)
            hy, hx = T(1) - ly, T(1) - lx
            yield y_low, y_high, x_low, x_high, hy * hx, hy * lx, ly * hx, ly * lx


def _pooled(output_size) -> tuple[int, int]:
    return tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2


def roi_align(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    x = np.asarray(x)
    T, (_n, height, width, c) = x.dtype.type, x.shape
    pooled, rois = _pooled(output_size), _roi_rows(boxes, x.dtype)
    y = np.zeros((len(rois), *pooled, c), x.dtype)
    for r, roi in enumerate(rois):
        img = x[int(roi[0])]
        window = _align_window(roi, spatial_scale, pooled, sampling_ratio, aligned, T)
        count = T(max(window[4] * window[5], 1))
        for ph in range(pooled[0]):
            for pw in range(pooled[1]):
                acc = np.zeros(c, x.dtype)
                for yl, yh, xl, xh, w1, w2, w3, w4 in _align_samples(
                    window, ph, pw, height, width, T
                ):
                    acc += w1 * img[yl, xl] + w2 * img[yl, xh] + w3 * img[yh, xl] + w4 * img[yh, xh]
                y[r, ph, pw] = acc / count
    return y


def roi_align_backward(
    x, boxes, dy, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False
):
    x = np.asarray(x)
    T, (_n, height, width, _c) = x.dtype.type, x.shape
    pooled, rois = _pooled(output_size), _roi_rows(boxes, x.dtype)
    dy = np.asarray(dy, x.dtype)
    dx = np.zeros_like(x)
    for r, roi in enumerate(rois):
        img = dx[int(roi[0])]
        window = _align_window(roi, spatial_scale, pooled, sampling_ratio, aligned, T)
        count = T(max(window[4] * window[5], 1))
        for ph in range(pooled[0]):
            for pw in range(pooled[1]):
                g = dy[r, ph, pw]
                for yl, yh, xl, xh, w1, w2, w3, w4 in _align_samples(
                    window, ph, pw, height, width, T
                ):
                    img[yl, xl] += g * w1 / count
                    img[yl, xh] += g * w2 / count
                    img[yh, xl] += g * w3 / count
                    img[yh, xh] += g * w4 / count
    return dx


def _round_half_away(v: float) -> int:
    """std::round: to the nearest integer, halves away from zero (exactly)."""
    whole = math.floor(abs(v))
    whole += abs(v) - whole >= 0.5
    return int(math.copysign(whole, v))


def _pool_bins(roi, scale, pooled, height, width, T):
    """(ph, pw, h0, h1, w0, w1) of each bin of one RoI, clipped to the map."""
    x1, y1, x2, y2 = (_round_half_away(T(v) * T(scale)) for v in roi[1:])
    bin_h = T(max(y2 - y1 + 1, 1)) / T(pooled[0])
    bin_w = T(max(x2 - x1 + 1, 1)) / T(pooled[1])
    for ph in range(pooled[0]):
        for pw in range(pooled[1]):
            h0 = min(max(math.floor(T(ph) * bin_h) + y1, 0), height)
            h1 = min(max(math.ceil(T(ph + 1) * bin_h) + y1, 0), height)
            w0 = min(max(math.floor(T(pw) * bin_w) + x1, 0), width)
            w1 = min(max(math.ceil(T(pw + 1) * bin_w) + x1, 0), width)
            yield ph, pw, h0, h1, w0, w1


def _first_max(cells: np.ndarray) -> np.ndarray:
    """Index of the first maximum (or first NaN) along axis 0 of (P, C) cells."""
    nan = np.isnan(cells)
    first_max = np.argmax(np.where(nan, -np.inf, cells), axis=0)
    return np.where(nan.any(axis=0), np.argmax(nan, axis=0), first_max)


def roi_pool(x, boxes, output_size, spatial_scale=1.0):
    x = np.asarray(x)
    T, (_n, height, width, c) = x.dtype.type, x.shape
    pooled, rois = _pooled(output_size), _roi_rows(boxes, x.dtype)
    y = np.zeros((len(rois), *pooled, c), x.dtype)
    for r, roi in enumerate(rois):
        for ph, pw, h0, h1, w0, w1 in _pool_bins(roi, spatial_scale, pooled, height, width, T):
            if h1 > h0 and w1 > w0:
                cells = x[int(roi[0]), h0:h1, w0:w1].reshape((h1 - h0) * (w1 - w0), c)
                y[r, ph, pw] = cells[_first_max(cells), np.arange(c)]
    return y


def roi_pool_backward(x, boxes, dy, output_size, spatial_scale=1.0):
    x = np.asarray(x)
    T, (_n, height, width, c) = x.dtype.type, x.shape
    pooled, rois = _pooled(output_size), _roi_rows(boxes, x.dtype)
    dy = np.asarray(dy, x.dtype)
    dx = np.zeros_like(x)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        for ph, pw, h0, h1, w0, w1 in _pool_bins(roi, spatial_scale, pooled, height, width, T):
            if h1 > h0 and w1 > w0:
                at = _first_max(x[b, h0:h1, w0:w1].reshape((h1 - h0) * (w1 - w0), c))
                hh, ww = h0 + at // (w1 - w0), w0 + at % (w1 - w0)
                np.add.at(dx, (b, hh, ww, np.arange(c)), dy[r, ph, pw])
    return dx


def masks_to_boxes(masks) -> np.ndarray:
    masks = np.asarray(masks)
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            boxes[i] = [xs.min(), ys.min(), xs.max(), ys.max()]
    return boxes


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    x = np.asarray(inputs)
    t = np.asarray(targets).astype(np.float64)
    z = x.astype(np.float64)
    p, q = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(z))  # sigmoid(x) and 1 - sigmoid(x)
    ce = t * np.logaddexp(0, -z) + (1 - t) * np.logaddexp(0, z)  # -t log p - (1 - t) log q
    loss = ce * (p * (1 - t) + q * t) ** gamma  # (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if reduction == "mean":
        loss = loss.mean() if loss.size else np.nan
    elif reduction == "sum":
        loss = loss.sum()
    return np.asarray(loss, x.dtype)


# -- image geometry (cnnkit.image) and augmentation kernels (cnnkit._augment) -------------
# Images are (N, H, W, C) here; the results are computed in float64 and stored
# like the kernels store them: uint8 rounded half up and saturated. The kernels'
# uint8 results may differ by 1 where a value lies near a rounding boundary: they
# sum in float32, and uint8 bilinear warps use fixed-point coordinates (1/2048 pixel).


def _store(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.dtype(dtype) == np.uint8:
        return np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8)
    return values.astype(dtype)


def _resize_weights(n_in: int, n_out: int, interpolation: str) -> np.ndarray:
    """The dense (n_out, n_in) matrix that resizes one axis."""
    weights = np.zeros((n_out, n_in))
    scale = n_in / n_out
    rows = np.arange(n_out)
    if interpolation == "nearest":
        weights[rows, np.minimum(np.floor((rows + 0.5) * scale).astype(int), n_in - 1)] = 1
    elif interpolation == "bilinear":
        pos = np.clip((rows + 0.5) * scale - 0.5, 0, n_in - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        np.add.at(weights, (rows, low), 1 - (pos - low))
        np.add.at(weights, (rows, high), pos - low)
    else:  # area: the overlap of [k s, (k + 1) s) with each input pixel [i, i + 1)
        cells = np.arange(n_in)
        lo = np.maximum(rows[:, None] * scale, cells[None])
        hi = np.minimum((rows[:, None] + 1) * scale, cells[None] + 1)
        weights = np.clip(hi - lo, 0, None) / scale
    return weights


def resize(images: ArrayLike, size: Sequence[int], interpolation: str = "bilinear") -> np.ndarray:
    x = np.asarray(images)
    wy = _resize_weights(x.shape[1], size[0], interpolation)
    wx = _resize_weights(x.shape[2], size[1], interpolation)
    return _store(np.einsum("ai,bj,nijc->nabc", wy, wx, x.astype(np.float64)), x.dtype)


def _border_index(index: np.ndarray, n: int, border_mode: str) -> np.ndarray:
    """Indices inside [0, n), or -1 where the fill value is used."""
    if border_mode == "constant":
        return np.where((index >= 0) & (index < n), index, -1)
    if border_mode == "replicate" or n == 1:
        return np.clip(index, 0, n - 1)
    period = 2 * n - 2
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def _sample(
    x: np.ndarray, xs: np.ndarray, ys: np.ndarray, interpolation: str, border_mode: str, fill: float
) -> np.ndarray:
    """Image batch ``x`` sampled at the continuous points ``(xs, ys)``, each ``(N, h, w)``."""
    n = np.arange(len(x))[:, None, None]
    h, w = x.shape[1:3]
    src = x.astype(np.float64)

    def gather(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        c = _border_index(cols, w, border_mode)
        r = _border_index(rows, h, border_mode)
        valid = ((c >= 0) & (r >= 0))[..., None]
        return np.where(valid, src[n, np.maximum(r, 0), np.maximum(c, 0)], fill)

    if interpolation == "nearest":
        return gather(np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64))
    xs, ys = xs - 0.5, ys - 0.5
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    top = gather(x0, y0) * (1 - fx) + gather(x0 + 1, y0) * fx
    bottom = gather(x0, y0 + 1) * (1 - fx) + gather(x0 + 1, y0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def warp_affine(
    images: ArrayLike,
    matrix: ArrayLike,
    size: Sequence[int] | None = None,
    interpolation: str = "bilinear",
    border_mode: str = "constant",
    fill: float = 0.0,
) -> np.ndarray:
    x = np.asarray(images)
    h, w = x.shape[1:3] if size is None else size
    m = np.asarray(matrix, dtype=np.float64)
    m = np.broadcast_to(m[..., :2, :] if m.ndim == 3 else m[None, :2], (len(x), 2, 3))
    inverse = np.array([np.linalg.inv(np.vstack([a, [0, 0, 1]]))[:2] for a in m]).reshape(-1, 2, 3)
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    xs = inverse[:, 0, 0, None, None] * u + inverse[:, 0, 1, None, None] * v
    xs = xs + inverse[:, 0, 2, None, None]
    ys = inverse[:, 1, 0, None, None] * u + inverse[:, 1, 1, None, None] * v
    ys = ys + inverse[:, 1, 2, None, None]
    return _store(_sample(x, xs, ys, interpolation, border_mode, fill), x.dtype)


def remap(
    images: ArrayLike,
    dx: ArrayLike,
    dy: ArrayLike,
    interpolation: str = "bilinear",
    border_mode: str = "constant",
    fill: float = 0.0,
) -> np.ndarray:
    """Each output pixel ``(i, j)`` samples the input at ``(j + 0.5 + dx, i + 0.5 + dy)``."""
    x = np.asarray(images)
    h, w = x.shape[1:3]
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    xs = u + np.asarray(dx, dtype=np.float64)
    ys = v + np.asarray(dy, dtype=np.float64)
    return _store(_sample(x, xs, ys, interpolation, border_mode, fill), x.dtype)


def hflip(images: ArrayLike) -> np.ndarray:
    return np.asarray(images)[:, :, ::-1].copy()


def vflip(images: ArrayLike) -> np.ndarray:
    return np.asarray(images)[:, ::-1].copy()


def colour_affine(images: ArrayLike, scale: ArrayLike, offset: ArrayLike) -> np.ndarray:
    """``images * scale + offset`` with ``scale`` and ``offset`` ``(N, C)``."""
    x = np.asarray(images)
    s = np.asarray(scale, dtype=np.float64)[:, None, None, :]
    o = np.asarray(offset, dtype=np.float64)[:, None, None, :]
    return _store(x.astype(np.float64) * s + o, x.dtype)


def add_noise(images: ArrayLike, noise: ArrayLike) -> np.ndarray:
    x = np.asarray(images)
    return _store(x.astype(np.float64) + np.asarray(noise, dtype=np.float64), x.dtype)


def hsv_shift(
    images: ArrayLike, hue: ArrayLike, saturation: ArrayLike, value: ArrayLike
) -> np.ndarray:
    """Per image: hue + ``hue`` degrees (wrapping), saturation and value + shifts, clipped."""
    x = np.asarray(images)
    top = 255.0 if x.dtype == np.uint8 else 1.0
    out = _shift_hsv(x.astype(np.float64) / top, hue, saturation, value)
    return _store(out * top, x.dtype)


def _shift_hsv(rgb: np.ndarray, hue: ArrayLike, saturation: ArrayLike, value: ArrayLike):
    """``(N, H, W, 3)`` RGB in [0, 1] shifted in HSV (hue in degrees), float64."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    d = mx - mn
    safe = np.where(d > 0, d, 1)
    h = np.select(
        [d <= 0, mx == r, mx == g],
        [0.0, 60 * np.mod((g - b) / safe + 6, 6), 60 * ((b - r) / safe + 2)],
        60 * ((r - g) / safe + 4),
    )
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1), 0)
    shape = (-1, 1, 1)
    h = np.mod(np.mod(h + np.reshape(hue, shape), 360) + 360, 360)
    s = np.clip(s + np.reshape(saturation, shape), 0, 1)
    v = np.clip(mx + np.reshape(value, shape), 0, 1)
    h6 = h / 60
    sector = np.floor(h6).astype(int)
    f = h6 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros_like(rgb)
    for k, channels in enumerate(table):
        mask = np.minimum(sector, 5) == k
        for c in range(3):
            out[..., c] = np.where(mask, channels[c], out[..., c])
    return out


def colour_jitter(
    images: ArrayLike,
    brightness: ArrayLike,
    contrast: ArrayLike,
    saturation: ArrayLike,
    hue: ArrayLike,
    order: ArrayLike,
) -> np.ndarray:
    """torchvision's ColorJitter steps per image: factors ``(N,)`` (hue in turns), ``order``
    ``(N, 4)`` of 0 brightness, 1 contrast, 2 saturation, 3 hue; each step clipped to
    [0, full scale] (float32 input is clipped first), float64 between steps, rounded once."""
    x = np.asarray(images)
    top = 255.0 if x.dtype == np.uint8 else 1.0
    rgb = np.clip(x.astype(np.float64) / top, 0, 1)
    factors = [np.asarray(f, dtype=np.float64) for f in (brightness, contrast, saturation)]
    turns = np.asarray(hue, dtype=np.float64)
    grey_weights = np.array([0.2989, 0.587, 0.114])
    out = np.empty_like(rgb)
    for n in range(len(x)):
        y = rgb[n : n + 1]
        for step in np.asarray(order)[n]:
            f = turns[n] if step == 3 else factors[step][n]
            if f == (0 if step == 3 else 1):
                continue  # the identity (skipped: no rounding noise)
            if step == 0:
                y = np.clip(y * f, 0, 1)
            elif step == 1:
                mean = (y @ grey_weights).mean()
                y = np.clip(y * f + (1 - f) * mean, 0, 1)
            elif step == 2:
                grey = (y @ grey_weights)[..., None]
                y = np.clip(y * f + (1 - f) * grey, 0, 1)
            else:
                y = _shift_hsv(y, [360.0 * f], [0.0], [0.0])
        out[n] = y[0]
    return _store(out * top, x.dtype)


def gaussian_blur(fields: ArrayLike, taps: ArrayLike) -> np.ndarray:
    """``(N, H, W)`` fields convolved with the odd ``taps`` along both axes, reflect border."""
    f = np.asarray(fields, dtype=np.float64)
    k = np.asarray(taps, dtype=np.float64)
    half = len(k) // 2

    def along(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        index = _border_index(np.arange(-half, n + half), n, "reflect")
        padded = np.take(a, index, axis=axis)
        windows = sliding_window_view(padded, len(k), axis=axis)
        return windows @ k

    return along(along(f, 2), 1).astype(np.float32)


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    i = np.mod(i, 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def _gaussian_rows(x: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d (mode "reflect"), summed tap by tap."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1, dtype=np.float64) ** 2)
    taps = taps / np.sum(taps)
    n = x.shape[axis]
    out = np.zeros_like(x)
    for t, weight in enumerate(taps):
        out = out + weight * np.take(x, _reflect(np.arange(n) + t - radius, n), axis=axis)
    return out


def _felzenszwalb_edges(h: int, w: int) -> np.ndarray:
    """(E, 2) endpoints, ordered by id 4 p + group (right, down, down-right, up-right)."""
    p = np.arange(h * w).reshape(h, w)
    x, y = p % w, p // w
    a = np.stack([p, p, p, p + 1], axis=-1)
    b = np.stack([p + 1, p + w, p + w + 1, p + w], axis=-1)
    valid = np.stack(
        [x + 1 < w, y + 1 < h, (x + 1 < w) & (y + 1 < h), (x + 1 < w) & (y + 1 < h)], axis=-1
    )
    return np.stack([a[valid], b[valid]], axis=-1)


def _root(parent: Any, i: int) -> int:
    while parent[i] != i:
        i = parent[i]
    return i


def felzenszwalb(image, *, scale=1.0, sigma=0.8, min_size=20) -> np.ndarray:
    image = np.asarray(image)
    x = image * (1.0 / 255.0) if image.dtype == np.uint8 else image.astype(np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    h, w, _ = x.shape
    if sigma > 1e-15:
        x = _gaussian_rows(_gaussian_rows(x, sigma, 0), sigma, 1)
    edges = _felzenszwalb_edges(h, w)
    diff = x.reshape(h * w, -1)[edges[:, 1]] - x.reshape(h * w, -1)[edges[:, 0]]
    # float32 weights sorted on the top 24 bits of their IEEE representation, ties
    # in edge order (csrc/segmentation.cpp's radix sort)
    with np.errstate(over="ignore"):  # beyond float32's range: inf, as in C++
        weights = np.sqrt(np.sum(diff * diff, axis=-1)).astype(np.float32)
    order = np.argsort(weights.view(np.uint32) >> 8, kind="stable")
    edges, weights = edges[order].tolist(), weights[order].tolist()
    parent = list(range(h * w))
    size = [1] * (h * w)
    inner = [0.0] * (h * w)
    k = scale / 255.0
    for (a, b), weight in zip(edges, weights):
        a, b = _root(parent, a), _root(parent, b)
        if a == b:
            continue
        # float32 thresholds, as scikit-image keeps them
        limit = min(np.float32(inner[a] + k / size[a]), np.float32(inner[b] + k / size[b]))
        if weight < float(limit):
            a, b = min(a, b), max(a, b)
            parent[b] = a
            size[a] += size[b]
            inner[a] = weight
    for a, b in edges:
        a, b = _root(parent, a), _root(parent, b)
        if a != b and (size[a] < min_size or size[b] < min_size):
            a, b = min(a, b), max(a, b)
            parent[b] = a
            size[a] += size[b]
    roots = np.array([_root(parent, i) for i in range(h * w)])
    return np.unique(roots, return_inverse=True)[1].reshape(h, w).astype(np.int64)


def group_regions(labels, colour_bins, texture_bins, colour, texture, size, fill) -> np.ndarray:
    """Selective search's hierarchical grouping of one segmentation (csrc/grouping.cpp)."""
    import heapq

    h, w = labels.shape
    n = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n).tolist()
    ys, xs = np.divmod(np.arange(h * w), w)
    boxes = [
        [int(xs[flat == r].min()), int(ys[flat == r].min()), int(xs[flat == r].max()) + 1,
         int(ys[flat == r].max()) + 1]
        for r in range(n)
    ]  # fmt: skip

    def histograms(bins: np.ndarray, count: int) -> list:
        channels = bins.shape[2]
        index = bins.reshape(h * w, channels).astype(np.int64) + np.arange(channels) * count
        out = np.zeros((n, channels * count))
        np.add.at(out, (np.repeat(flat, channels), index.ravel()), 1.0)
        return list(out / (np.array(sizes, dtype=np.float64)[:, None] * channels))

    colours, textures = histograms(colour_bins, 25), histograms(texture_bins, 10)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # 8-connected, each pair once
        x0, x1 = max(0, -dx), w - max(0, dx)
        a = labels[: h - dy, x0:x1]
        b = labels[dy:, x0 + dx : x1 + dx]
        for p, q in zip(a.ravel().tolist(), b.ravel().tolist()):
            if p != q:
                neighbours[p].add(q)
                neighbours[q].add(p)

    def intersection(p: np.ndarray, q: np.ndarray) -> float:
        s = 0.0
        for v in np.minimum(p, q).tolist():  # summed in index order, as the kernel
            s += v
        return s

    pixels = float(h * w)

    def similarity(a: int, b: int) -> float:
        s = 0.0
        if colour:
            s += intersection(colours[a], colours[b])
        if texture:
            s += intersection(textures[a], textures[b])
        if size:
            s += 1.0 - (sizes[a] + sizes[b]) / pixels
        if fill:
            bw = max(boxes[a][2], boxes[b][2]) - min(boxes[a][0], boxes[b][0])
            bh = max(boxes[a][3], boxes[b][3]) - min(boxes[a][1], boxes[b][1])
            s += 1.0 - (bw * bh - sizes[a] - sizes[b]) / pixels
        return s

    queue = [(-similarity(a, b), a, b) for a in range(n) for b in sorted(neighbours[a]) if a < b]
    heapq.heapify(queue)
    alive = [True] * n
    while queue:
        _, a, b = heapq.heappop(queue)
        if not (alive[a] and alive[b]):
            continue
        t = len(sizes)
        sizes.append(sizes[a] + sizes[b])
        boxes.append(
            [min(boxes[a][0], boxes[b][0]), min(boxes[a][1], boxes[b][1]),
             max(boxes[a][2], boxes[b][2]), max(boxes[a][3], boxes[b][3])]
        )  # fmt: skip
        sa, sb = float(sizes[a]), float(sizes[b])
        colours.append((sa * colours[a] + sb * colours[b]) / sizes[t])
        textures.append((sa * textures[a] + sb * textures[b]) / sizes[t])
        alive[a] = alive[b] = False
        alive.append(True)
        around = sorted(v for v in neighbours[a] | neighbours[b] if alive[v])
        neighbours.append(set(around))
        for v in around:
            neighbours[v].add(t)
            heapq.heappush(queue, (-similarity(v, t), v, t))
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def selective_search(image, *, mode="fast", seed=0) -> np.ndarray:
    return _proposals.selective_search(
        image, mode, seed, segment=felzenszwalb, group=group_regions, fn="selective_search"
    )


def _lrn_scale(x: np.ndarray, size: int, alpha: float, bias: float) -> np.ndarray:
    alpha, bias = float(alpha), float(bias)  # in float64 (the kernel's), whatever was given
    c = x.shape[-1]
    lo, hi = (size - 1) // 2, size // 2
    sq = np.pad(np.square(x, dtype=np.float64), [(0, 0)] * (x.ndim - 1) + [(lo, hi)])
    window = np.sum([sq[..., i : i + c] for i in range(size)], axis=0)
    return np.asarray(bias + alpha / size * window)


def lrn(x, size, *, alpha=1e-4, beta=0.75, bias=1.0) -> np.ndarray:
    x = np.asarray(x)
    return (x * _lrn_scale(x, size, alpha, bias) ** -float(beta)).astype(x.dtype)


def lrn_backward(x, dy, size, *, alpha=1e-4, beta=0.75, bias=1.0) -> np.ndarray:
    x, dy = np.asarray(x), np.asarray(dy)
    dtype = np.result_type(x, dy)
    s = _lrn_scale(x, size, alpha, bias)
    alpha, beta = float(alpha), float(beta)
    q = dy * x * s ** (-beta - 1)
    c = x.shape[-1]
    lo, hi = (size - 1) // 2, size // 2
    # The windows holding channel c are those of channels c - hi .. c + lo.
    qp = np.pad(q, [(0, 0)] * (x.ndim - 1) + [(hi, lo)])
    held = np.sum([qp[..., i : i + c] for i in range(size)], axis=0)
    return (dy * s**-beta - 2 * beta * alpha / size * x * held).astype(dtype)


def sgd_update(var, grad, velocity=None, *, learning_rate, momentum=0.0, nesterov=False) -> None:
    t = var.dtype.type
    grad = np.asarray(grad).astype(var.dtype, copy=False)
    if momentum == 0:
        var -= t(learning_rate) * grad
        return
    mom = t(momentum)
    step = t(learning_rate) * grad
    velocity *= mom
    velocity -= step
    if nesterov:
        var += mom * velocity - step
    else:
        var += velocity


def adam_update(
    var, grad, m, v, *, step_size, beta_1=0.9, beta_2=0.999, epsilon=1e-7, v_hat=None
) -> None:
    t = var.dtype.type
    grad = np.asarray(grad).astype(var.dtype, copy=False)
    m += (grad - m) * t(1.0 - beta_1)
    v += (np.square(grad) - v) * t(1.0 - beta_2)
    if v_hat is not None:
        np.maximum(v_hat, v, out=v_hat)
        v = v_hat
    var -= m * t(step_size) / (np.sqrt(v) + t(epsilon))


def _batch_norm_args(*arrays):
    """The arrays in float64 and the dtype of the result (the widest float among them)."""
    arrays = [np.asarray(a) for a in arrays]
    return [a.astype(np.float64) for a in arrays], np.result_type(*arrays)


def batch_norm(x, gamma, beta, *, epsilon=1e-3):
    (x, gamma, beta), dtype = _batch_norm_args(x, gamma, beta)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = np.square(x - mean).mean(axis=axes)
    y = gamma * (x - mean) / np.sqrt(var + epsilon) + beta
    return y.astype(dtype), mean.astype(dtype), var.astype(dtype)


def batch_norm_backward(x, dy, gamma, mean, var, *, epsilon=1e-3):
    (x, dy, gamma, mean, var), dtype = _batch_norm_args(x, dy, gamma, mean, var)
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    inv_std = 1 / np.sqrt(var + epsilon)
    xhat = (x - mean) * inv_std
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dx = gamma * inv_std / n * (n * dy - dbeta - xhat * dgamma)
    return dx.astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)


def batch_norm_inference(x, gamma, beta, mean, var, *, epsilon=1e-3):
    (x, gamma, beta, mean, var), dtype = _batch_norm_args(x, gamma, beta, mean, var)
    return (gamma * (x - mean) / np.sqrt(var + epsilon) + beta).astype(dtype)


def concat(tensors, axis=-1):
    return np.concatenate([np.asarray(t) for t in tensors], axis=axis)


def add_relu(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"add_relu(): b must have the shape of a {a.shape}, got shape {b.shape}")
    total = np.add(a, b)
    return np.where(total <= 0, np.zeros((), total.dtype), total)


def channels_last(x):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"channels_last(): x must have dtype float32 or float64, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"channels_last(): x must have shape (N, C, ...), got shape {x.shape}")
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))
