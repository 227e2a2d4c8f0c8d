"""Hypothesis strategies for box and detection tests.

Boxes are drawn as valid ``xyxy`` arrays: a corner plus a non-negative width and
height, added in the array's own dtype (so ``x1 <= x2`` holds after rounding).
A "regime" sets the scale of the coordinates:

* ``grid``: small integers and halves, so overlaps, equal boxes, zero-width,
  zero-height and point boxes, and exactly equal IoUs are common;
* ``float``: arbitrary (non-dyadic) values in [-1000, 1000], sizes up to 500;
* ``large``: coordinates of magnitude 1e6 to 1e7 (either sign) around a common
  offset, so the boxes still overlap;
* ``mixed``: many small boxes and some huge ones.

The values come from one ``st.binary`` draw per array, mapped so that zero
bytes give the simplest boxes (points at the origin): generation stays fast and
failing examples still shrink. Arrays are then handed out in one of several
memory layouts, most of them non-contiguous views of a bigger array whose other
elements are NaN (a kernel that ignored the strides would read them).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
REGIMES = ("grid", "float", "large", "mixed")
LAYOUTS = ("contiguous", "fortran", "column_slice", "row_stride", "reversed_rows")

float_dtypes = st.sampled_from(FLOAT_DTYPES)
regimes = st.sampled_from(REGIMES)


def strided_view(array: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``array`` (1-D or 2-D) in the memory layout ``layout``."""
    if layout == "contiguous":
        return array
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "reversed_rows":
        return np.ascontiguousarray(array[::-1])[::-1]
    if layout == "row_stride":
        big = np.full((2 * len(array), *array.shape[1:]), np.nan, dtype=array.dtype)
        big[1::2] = array
        return big[1::2]
    if layout == "column_slice":
        if array.ndim == 1:
            return strided_view(array, "row_stride")
        big = np.full((array.shape[0], 2 * array.shape[1] + 1), np.nan, dtype=array.dtype)
        big[:, 1::2] = array
        return big[:, 1::2]
    raise ValueError(f"unknown layout {layout!r}")


def views_of(array: np.ndarray) -> st.SearchStrategy[np.ndarray]:
    """``array`` in each of the memory layouts."""
    return st.sampled_from(LAYOUTS).map(lambda layout: strided_view(array, layout))


def _words(draw, count: int) -> np.ndarray:
    """``count`` uint32 values from one binary draw (zeros when shrunk)."""
    raw = draw(st.binary(min_size=4 * count, max_size=4 * count))
    return np.frombuffer(raw, dtype="<u4").astype(np.int64)


def _centred(words: np.ndarray, half_span: int) -> np.ndarray:
    """Integers in [-half_span, half_span], with 0 for a zero word."""
    span = 2 * half_span + 1
    return (words + half_span) % span - half_span


def _corners_and_sizes(regime: str, words: np.ndarray, offset: float):
    """float64 corner coordinates and side lengths, both of shape (n, 2)."""
    c, s = words[:, :2], words[:, 2:]
    if regime == "grid":
        sizes = np.array([0, 1, 2, 0.5, 3, 0, 6, 1.5])[s % 8]
        return _centred(c, 12) * 0.5, sizes
    if regime == "float":
        corners = _centred(c, 2**30) * (1000.0 / 2**30) * 0.999
        sizes = np.where(s % 5 == 0, 0.0, (s / 2.0**32) * 500.0)
        return corners, sizes
    if regime == "large":
        sizes = np.where(s % 6 == 0, 0.0, (s % 81).astype(float))
        return offset + 2.0 * _centred(c, 64), sizes
    if regime == "mixed":
        sizes = np.where(s % 7 == 6, 300 + s % 701, s % 9).astype(float)
        return _centred(c, 100).astype(float), sizes
    raise ValueError(f"unknown regime {regime!r}")


@st.composite
def box_arrays(
    draw,
    n: int | None = None,
    dtype: np.dtype | None = None,
    regime: str | None = None,
    *,
    min_boxes: int = 0,
    max_boxes: int = 20,
    view: bool = True,
) -> np.ndarray:
    """A valid ``(n, 4)`` xyxy float array (float32 or float64 unless ``dtype``)."""
    dtype = np.dtype(draw(float_dtypes) if dtype is None else dtype)
    regime = draw(regimes) if regime is None else regime
    n = draw(st.integers(min_boxes, max_boxes)) if n is None else n
    offset = 0.0
    if regime == "large":
        offset = draw(st.floats(1e6, 1e7)) * draw(st.sampled_from([1.0, -1.0]))
    corners, sizes = _corners_and_sizes(regime, _words(draw, 4 * n).reshape(n, 4), offset)
    xy, wh = corners.astype(dtype), sizes.astype(dtype)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if n > 1 and draw(st.booleans()):  # make some boxes exact copies of others
        rows = st.integers(0, n - 1)
        for dst, src in draw(st.lists(st.tuples(rows, rows), max_size=4)):
            boxes[dst] = boxes[src]
    return draw(views_of(boxes)) if view else boxes


@st.composite
def box_pairs(draw, *, aligned: bool = False, max_boxes: int = 20):
    """Two box arrays of one dtype and regime (equal lengths when ``aligned``)."""
    dtype, regime = draw(float_dtypes), draw(regimes)
    n = draw(st.integers(0, max_boxes))
    m = n if aligned else draw(st.integers(0, max_boxes))
    return draw(box_arrays(n, dtype, regime)), draw(box_arrays(m, dtype, regime))


# Thresholds are float32-representable, so a float32 IoU compares with them
# the same way in float32 and in float64 arithmetic (the boundary case where
# it does not is tested on its own, in test_nms.py).
iou_thresholds = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5]), st.floats(0, 1, width=32)
)
score_thresholds = st.one_of(st.none(), st.floats(-1, 1.5, width=32))
max_outputs = st.one_of(st.none(), st.integers(0, 8))


@st.composite
def score_arrays(draw, n: int, dtype: np.dtype, *, min_value: float = -2.0, view: bool = True):
    """``n`` finite float32-representable scores in [min_value, 2]: tied, spread or both."""
    words = _words(draw, n)
    tied = np.array([0.5, 1.0, 0.25, max(min_value, 0.0)])[words % 4]
    spread = (min_value + (words / 2.0**32) * (2.0 - min_value)).astype(np.float32)
    mode = draw(st.sampled_from(["tied", "spread", "both"]))
    if mode == "both":
        scores = np.where(words % 3 == 0, tied, spread)
    else:
        scores = tied if mode == "tied" else spread
    scores = scores.astype(dtype)
    return draw(views_of(scores)) if view else scores


@st.composite
def detections(
    draw,
    *,
    max_boxes: int = 30,
    regime: str | None = None,
    min_score: float = -2.0,
    dtype: np.dtype | None = None,
):
    """``(boxes, scores)`` of one float dtype."""
    dtype = np.dtype(draw(float_dtypes) if dtype is None else dtype)
    boxes = draw(box_arrays(dtype=dtype, regime=regime, max_boxes=max_boxes))
    scores = draw(score_arrays(len(boxes), dtype, min_value=min_score))
    return boxes, scores


@st.composite
def class_arrays(draw, n: int, *, max_class: int = 3):
    """``n`` integer class labels in [0, max_class], in one of several integer dtypes."""
    dtype = draw(st.sampled_from([np.int64, np.int32, np.int8, np.uint8, np.uint64]))
    return (_words(draw, n) % (max_class + 1)).astype(dtype)
