"""Every rejection path of the box and NMS kernels: exception type and message.

Each message must start with the function's name, name the argument, and say
what was received.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnkit
from cnnkit import _core, ops

NAN, INF = float("nan"), float("inf")
IOU_FAMILY = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")

BOXES = np.array([[0, 0, 1, 1], [0, 0, 2, 2]], np.float32)
SCORES = np.array([0.5, 0.6], np.float32)
CLASSES = np.array([0, 1])


def message(*parts: str) -> str:
    """A regex matching a message that starts with parts[0] and contains the rest in order."""
    return "^" + ".*".join(re.escape(p) for p in parts)


def case(id, call, exc, *parts):
    return pytest.param(call, exc, message(*parts), id=id)


def check(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# --- shapes -----------------------------------------------------------------------------

SHAPE_CASES = [
    case(
        "box_area-last-dim-3",
        lambda: ops.box_area(np.zeros(3, np.float32)),
        ValueError,
        "box_area(): boxes must have shape (..., 4), got shape (3,)",
    ),
    case(
        "box_iou-3d",
        lambda: ops.box_iou(BOXES, np.zeros((1, 2, 4), np.float32)),
        ValueError,
        "box_iou(): boxes2 must have shape (N, 4), got shape (1, 2, 4)",
    ),
    case(
        "nms-0d",
        lambda: ops.nms(np.float32(1), SCORES, 0.5),
        ValueError,
        "nms(): boxes must have shape (N, 4), got shape ()",
    ),
    case(
        "box_convert-last-dim-5",
        lambda: ops.box_convert(np.zeros((2, 5)), "xyxy", "xywh"),
        ValueError,
        "box_convert(): boxes must have shape (..., 4), got shape (2, 5)",
    ),
    case(
        "clip_boxes-last-dim-3",
        lambda: ops.clip_boxes(np.zeros((2, 3)), (4, 4)),
        ValueError,
        "clip_boxes(): boxes must have shape (..., 4), got shape (2, 3)",
    ),
    case(
        "remove_small_boxes-transposed",
        lambda: ops.remove_small_boxes(np.zeros((4, 2)), 1.0),
        ValueError,
        "remove_small_boxes(): boxes must have shape (N, 4), got shape (4, 2)",
    ),
    case(
        "batched_nms-last-dim-2",
        lambda: ops.batched_nms(np.zeros((2, 2)), SCORES, CLASSES, 0.5),
        ValueError,
        "batched_nms(): boxes must have shape (N, 4), got shape (2, 2)",
    ),
    case(
        "nms-scores-length",
        lambda: ops.nms(BOXES, SCORES[:1], 0.5),
        ValueError,
        "nms(): scores must have shape (2,) to match boxes, got shape (1,)",
    ),
    case(
        "soft_nms-scores-2d",
        lambda: ops.soft_nms(BOXES, SCORES[:, None]),
        ValueError,
        "soft_nms(): scores must have shape (2,) to match boxes, got shape (2, 1)",
    ),
    case(
        "batched_nms-scores-length",
        lambda: ops.batched_nms(BOXES, np.ones(3, np.float32), CLASSES, 0.5),
        ValueError,
        "batched_nms(): scores must have shape (2,) to match boxes, got shape (3,)",
    ),
    case(
        "batched_nms-classes-length",
        lambda: ops.batched_nms(BOXES, SCORES, np.zeros(3, np.int64), 0.5),
        ValueError,
        "batched_nms(): idxs must have shape (2,) to match boxes, got shape (3,)",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), SHAPE_CASES)
def test_wrong_shapes_are_rejected(call, exc, pattern):
    check(call, exc, pattern)


@pytest.mark.parametrize("name", IOU_FAMILY)
def test_aligned_lengths_must_match(name):
    with pytest.raises(
        ValueError,
        match=message(
            f"{name}(): with aligned=True, boxes1 and boxes2 must have the same length",
            "got 2 and 1",
        ),
    ):
        getattr(ops, name)(BOXES, BOXES[:1], aligned=True)
    getattr(ops, name)(BOXES, BOXES[:1])  # fine when not aligned


# --- coordinate values ------------------------------------------------------------------


def with_row(values, row, dtype, n=4):
    """n valid boxes with `values` in row `row`."""
    boxes = np.tile(np.array([[0, 0, 1, 1]], dtype), (n, 1))
    boxes[row] = values
    return boxes


VALUE_CASES = {
    "nan": (
        lambda d: ops.box_area(with_row([0, NAN, 1, 1], 1, d)),
        "box_area(): boxes must hold finite coordinates, got [0, nan, 1, 1] in row 1",
    ),
    "inf": (
        lambda d: ops.generalized_box_iou(BOXES, with_row([0, 0, INF, 1], 2, d)),
        "generalized_box_iou(): boxes2 must hold finite coordinates, got [0, 0, inf, 1] in row 2",
    ),
    "-inf": (
        lambda d: ops.nms(with_row([-INF, 0, 1, 1], 0, d), np.ones(4, d), 0.5),
        "nms(): boxes must hold finite coordinates, got [-inf, 0, 1, 1] in row 0",
    ),
    "x2<x1": (
        lambda d: ops.box_iou(
            with_row([[2, 0, 1, 1], [0, 0, 1, 1], [3, 0, 2, 1]], [1, 2, 3], d), BOXES
        ),
        "box_iou(): boxes1 must hold valid xyxy boxes with x1 <= x2 and y1 <= y2, "
        "got [2, 0, 1, 1] in row 1",
    ),
    "y2<y1": (
        lambda d: ops.clip_boxes(with_row([0, 5, 1, 4], 3, d), (10, 10)),
        "clip_boxes(): boxes must hold valid xyxy boxes with x1 <= x2 and y1 <= y2, "
        "got [0, 5, 1, 4] in row 3",
    ),
    "y2<y1-soft_nms": (
        lambda d: ops.soft_nms(with_row([0, 1, 1, 0], 2, d), np.ones(4, d)),
        "soft_nms(): boxes must hold valid xyxy boxes",
    ),
    "xywh-negative-width": (
        lambda d: ops.box_convert(with_row([0, 0, -1, 1], 0, d), "xywh", "xyxy"),
        "box_convert(): boxes must hold valid xywh boxes with a non-negative width and height, "
        "got [0, 0, -1, 1] in row 0",
    ),
    "cxcywh-negative-height": (
        lambda d: ops.box_convert(with_row([5, 5, 1, -2], 2, d), "cxcywh", "xywh"),
        "box_convert(): boxes must hold valid cxcywh boxes with a non-negative width and height, "
        "got [5, 5, 1, -2] in row 2",
    ),
    "xyxy-in-box_convert": (
        lambda d: ops.box_convert(with_row([1, 0, 0, 1], 1, d), "xyxy", "cxcywh"),
        "box_convert(): boxes must hold valid xyxy boxes with x1 <= x2 and y1 <= y2",
        "in row 1",
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("call_and_parts", VALUE_CASES.values(), ids=VALUE_CASES.keys())
def test_bad_coordinates_are_rejected_with_their_row(call_and_parts, dtype):
    call, *parts = call_and_parts
    with pytest.raises(ValueError, match=message(*parts)):
        call(dtype)


def test_xywh_box_with_x2_below_x1_as_xyxy_is_a_valid_xywh_box():
    # The same numbers are invalid as xyxy but valid as xywh (width 1 >= 0).
    boxes = np.array([[3, 0, 1, 1]], np.float64)
    np.testing.assert_array_equal(ops.box_convert(boxes, "xywh", "xyxy"), [[3, 0, 4, 1]])


# --- formats ----------------------------------------------------------------------------

FORMAT_CASES = [
    case(
        "unknown-in_fmt",
        lambda: ops.box_convert(BOXES, "yolo", "xyxy"),
        ValueError,
        "box_convert(): in_fmt must be one of 'xyxy', 'xywh', 'cxcywh', got 'yolo'",
    ),
    case(
        "unknown-out_fmt-case",
        lambda: ops.box_convert(BOXES, "xyxy", "XYWH"),
        ValueError,
        "box_convert(): out_fmt must be one of 'xyxy', 'xywh', 'cxcywh', got 'XYWH'",
    ),
    case(
        "int-in_fmt",
        lambda: ops.box_convert(BOXES, 1, "xyxy"),
        TypeError,
        "box_convert(): in_fmt must be a str, got int",
    ),
    case(
        "none-out_fmt",
        lambda: ops.box_convert(BOXES, "xyxy", None),
        TypeError,
        "box_convert(): out_fmt must be a str, got NoneType",
    ),
    case(
        "bytes-in_fmt",
        lambda: ops.box_convert(BOXES, b"xyxy", "xyxy"),
        TypeError,
        "box_convert(): in_fmt must be a str, got bytes",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), FORMAT_CASES)
def test_bad_formats_are_rejected(call, exc, pattern):
    check(call, exc, pattern)


# --- thresholds and counts --------------------------------------------------------------

THRESHOLD_CASES = [
    case(
        "nms-negative-iou_threshold",
        lambda: ops.nms(BOXES, SCORES, -0.1),
        ValueError,
        "nms(): iou_threshold must be a number >= 0, got -0.1",
    ),
    case(
        "nms-nan-iou_threshold",
        lambda: ops.nms(BOXES, SCORES, NAN),
        ValueError,
        "nms(): iou_threshold must be a number >= 0, got nan",
    ),
    case(
        "batched_nms-nan-iou_threshold",
        lambda: ops.batched_nms(BOXES, SCORES, CLASSES, NAN),
        ValueError,
        "batched_nms(): iou_threshold must be a number >= 0, got nan",
    ),
    case(
        "soft_nms-negative-iou_threshold",
        lambda: ops.soft_nms(BOXES, SCORES, iou_threshold=-1),
        ValueError,
        "soft_nms(): iou_threshold must be a number >= 0, got -1",
    ),
    case(
        "nms-str-iou_threshold",
        lambda: ops.nms(BOXES, SCORES, "0.5"),
        TypeError,
        "nms(): iou_threshold must be a real number, got str",
    ),
    case(
        "nms-none-iou_threshold",
        lambda: ops.nms(BOXES, SCORES, None),
        TypeError,
        "nms(): iou_threshold must be a real number, got NoneType",
    ),
    case(
        "nms-nan-score_threshold",
        lambda: ops.nms(BOXES, SCORES, 0.5, score_threshold=NAN),
        ValueError,
        "nms(): score_threshold must be a number",
        "got nan",
    ),
    case(
        "batched_nms-nan-score_threshold",
        lambda: ops.batched_nms(BOXES, SCORES, CLASSES, 0.5, score_threshold=NAN),
        ValueError,
        "batched_nms(): score_threshold must be a number",
        "got nan",
    ),
    case(
        "soft_nms-negative-score_threshold",
        lambda: ops.soft_nms(BOXES, SCORES, score_threshold=-0.5),
        ValueError,
        "soft_nms(): score_threshold must be a number >= 0, got -0.5",
    ),
    case(
        "soft_nms-nan-score_threshold",
        lambda: ops.soft_nms(BOXES, SCORES, score_threshold=NAN),
        ValueError,
        "soft_nms(): score_threshold must be a number >= 0, got nan",
    ),
    case(
        "nms-negative-max_output",
        lambda: ops.nms(BOXES, SCORES, 0.5, max_output=-1),
        ValueError,
        "nms(): max_output must be >= 0, got -1",
    ),
    case(
        "batched_nms-negative-max_output",
        lambda: ops.batched_nms(BOXES, SCORES, CLASSES, 0.5, max_output=-2),
        ValueError,
        "batched_nms(): max_output must be >= 0, got -2",
    ),
    case(
        "nms-float-max_output",
        lambda: ops.nms(BOXES, SCORES, 0.5, max_output=1.0),
        TypeError,
        "nms(): max_output must be an int or None, got float",
    ),
    case(
        "nms-bool-max_output",
        lambda: ops.nms(BOXES, SCORES, 0.5, max_output=True),
        TypeError,
        "nms(): max_output must be an int or None, got bool",
    ),
    case(
        "batched_nms-str-max_output",
        lambda: ops.batched_nms(BOXES, SCORES, CLASSES, 0.5, max_output="3"),
        TypeError,
        "batched_nms(): max_output must be an int or None, got str",
    ),
    case(
        "remove_small_boxes-negative-min_size",
        lambda: ops.remove_small_boxes(BOXES, -1),
        ValueError,
        "remove_small_boxes(): min_size must be a number >= 0, got -1",
    ),
    case(
        "remove_small_boxes-nan-min_size",
        lambda: ops.remove_small_boxes(BOXES, NAN),
        ValueError,
        "remove_small_boxes(): min_size must be a number >= 0, got nan",
    ),
    case(
        "remove_small_boxes-str-min_size",
        lambda: ops.remove_small_boxes(BOXES, "1"),
        TypeError,
        "remove_small_boxes(): min_size must be a real number, got str",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), THRESHOLD_CASES)
def test_bad_thresholds_and_counts_are_rejected(call, exc, pattern):
    check(call, exc, pattern)


def test_numpy_integer_max_output_is_accepted():
    np.testing.assert_array_equal(ops.nms(BOXES, SCORES, 0.9, max_output=np.int64(1)), [1])


def test_none_max_output_means_no_limit():
    # The type message says "an int or None": None must really be accepted, by both NMS calls.
    np.testing.assert_array_equal(ops.nms(BOXES, SCORES, 0.9, max_output=None), [1, 0])
    np.testing.assert_array_equal(
        ops.batched_nms(BOXES, SCORES, CLASSES, 0.9, max_output=None), [1, 0]
    )


# --- dtypes -----------------------------------------------------------------------------

BAD_FLOAT_DTYPES = [np.int64, np.int32, np.uint8, bool, np.float16, np.complex64]
# Boxes are upcast to float32 from integers and float16, as torchvision does.
BAD_BOX_DTYPES = [bool, np.complex64]


@pytest.mark.parametrize("dtype", BAD_BOX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    ("call", "fn", "arg"),
    [
        (lambda b: ops.box_area(b), "box_area", "boxes"),
        (lambda b: ops.box_convert(b, "xyxy", "xywh"), "box_convert", "boxes"),
        (lambda b: ops.complete_box_iou(BOXES, b), "complete_box_iou", "boxes2"),
        (lambda b: ops.nms(b, SCORES, 0.5), "nms", "boxes"),
    ],
    ids=["box_area", "box_convert", "complete_box_iou", "nms"],
)
def test_boxes_must_be_float32_or_float64(call, fn, arg, dtype):
    boxes = BOXES.astype(dtype)
    name = np.dtype(dtype).name
    with pytest.raises(
        TypeError, match=message(f"{fn}(): {arg} must have dtype float32 or float64, got {name}")
    ):
        call(boxes)


@pytest.mark.parametrize("dtype", BAD_FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    ("call", "fn"),
    [
        (lambda s: ops.nms(BOXES, s, 0.5), "nms"),
        (lambda s: ops.batched_nms(BOXES, s, CLASSES, 0.5), "batched_nms"),
        (lambda s: ops.soft_nms(BOXES, s), "soft_nms"),
    ],
    ids=["nms", "batched_nms", "soft_nms"],
)
def test_scores_must_be_float32_or_float64(call, fn, dtype):
    scores = np.array([1, 0], dtype)
    name = np.dtype(dtype).name
    with pytest.raises(
        TypeError, match=message(f"{fn}(): scores must have dtype float32 or float64, got {name}")
    ):
        call(scores)


OBJECT_CASES = [
    case(
        "object-boxes",
        lambda: ops.box_area(BOXES.astype(object)),
        TypeError,
        "box_area(): boxes must hold numbers, got an array of dtype object",
    ),
    case(
        "object-scores",
        lambda: ops.nms(BOXES, SCORES.astype(object), 0.5),
        TypeError,
        "nms(): scores must hold numbers, got an array of dtype object",
    ),
    case(
        "none-boxes",
        lambda: ops.box_area(None),
        TypeError,
        "box_area(): boxes must hold numbers",
    ),
    case(
        "none-boxes1",
        lambda: ops.distance_box_iou(None, BOXES),
        TypeError,
        "distance_box_iou(): boxes1 must hold numbers",
    ),
    case(
        "none-scores",
        lambda: ops.soft_nms(BOXES, None),
        TypeError,
        "soft_nms(): scores must hold numbers",
    ),
    case(
        "none-idxs",
        lambda: ops.batched_nms(BOXES, SCORES, None, 0.5),
        TypeError,
        "batched_nms(): idxs must hold numbers",
    ),
    case(
        "ragged-boxes",
        lambda: ops.box_iou([[0, 0, 1, 1], [0, 0, 1]], BOXES),
        TypeError,
        "box_iou(): boxes1 must be an array-like of numbers, got list",
    ),
    case(
        "ragged-scores",
        lambda: ops.nms(BOXES, [[0.5], [0.5, 0.6]], 0.5),
        TypeError,
        "nms(): scores must be an array-like of numbers, got list",
    ),
    case(
        "fractional-idxs",
        lambda: ops.batched_nms(BOXES, SCORES, np.array([0.0, 1.5]), 0.5),
        ValueError,
        "batched_nms(): idxs must hold whole numbers, got 1.5 at index 1",
    ),
    case(
        "nan-idxs",
        lambda: ops.batched_nms(BOXES, SCORES, np.array([NAN, 1.0], np.float32), 0.5),
        ValueError,
        "batched_nms(): idxs must hold whole numbers, got nan at index 0",
    ),
    case(
        "huge-idxs",
        lambda: ops.batched_nms(BOXES, SCORES, np.array([0.0, 1e19]), 0.5),
        ValueError,
        "batched_nms(): idxs must hold whole numbers, got 1e+19 at index 1",
    ),
    case(
        "complex-idxs",
        lambda: ops.batched_nms(BOXES, SCORES, np.array([0j, 1j]), 0.5),
        TypeError,
        "batched_nms(): idxs must have an integer dtype (or whole-number floats), got complex128",
    ),
    case(
        "bool-idxs",
        lambda: ops.batched_nms(BOXES, SCORES, np.array([True, False]), 0.5),
        TypeError,
        "batched_nms(): idxs must have an integer dtype (or whole-number floats), got bool",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), OBJECT_CASES)
def test_non_numeric_inputs_are_rejected(call, exc, pattern):
    check(call, exc, pattern)


# --- scores -----------------------------------------------------------------------------

SCORE_CASES = [
    case(
        "nms-nan",
        lambda: ops.nms(BOXES, np.array([0.5, NAN], np.float32), 0.5),
        ValueError,
        "nms(): scores must be finite, got nan at index 1",
    ),
    case(
        "batched_nms-inf",
        lambda: ops.batched_nms(BOXES, np.array([INF, 0.5]), CLASSES, 0.5),
        ValueError,
        "batched_nms(): scores must be finite, got inf at index 0",
    ),
    case(
        "soft_nms-nan",
        lambda: ops.soft_nms(BOXES, np.array([NAN, 0.5])),
        ValueError,
        "soft_nms(): scores must be finite, got nan at index 0",
    ),
    case(
        "soft_nms-negative",
        lambda: ops.soft_nms(BOXES, np.array([0.5, -0.25], np.float32)),
        ValueError,
        "soft_nms(): scores must be >= 0",
        "-0.25",
        "at index 1",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), SCORE_CASES)
def test_bad_scores_are_rejected(call, exc, pattern):
    check(call, exc, pattern)


# --- soft_nms options -------------------------------------------------------------------

SOFT_NMS_CASES = [
    case(
        "unknown-method",
        lambda: ops.soft_nms(BOXES, SCORES, method="hard"),
        ValueError,
        "soft_nms(): method must be 'gaussian' or 'linear', got 'hard'",
    ),
    case(
        "non-str-method",
        lambda: ops.soft_nms(BOXES, SCORES, method=None),
        TypeError,
        "soft_nms(): method must be a str, got NoneType",
    ),
    case(
        "zero-sigma",
        lambda: ops.soft_nms(BOXES, SCORES, sigma=0.0),
        ValueError,
        "soft_nms(): sigma must be a finite number > 0, got 0",
    ),
    case(
        "negative-sigma",
        lambda: ops.soft_nms(BOXES, SCORES, sigma=-1.0),
        ValueError,
        "soft_nms(): sigma must be a",
        "got -1",
    ),
    case(
        "nan-sigma",
        lambda: ops.soft_nms(BOXES, SCORES, sigma=NAN),
        ValueError,
        "soft_nms(): sigma must be a",
        "got nan",
    ),
    case(
        "inf-sigma",
        lambda: ops.soft_nms(BOXES, SCORES, sigma=INF),
        ValueError,
        "soft_nms(): sigma must be a finite number > 0, got inf",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), SOFT_NMS_CASES)
def test_bad_soft_nms_options_are_rejected(call, exc, pattern):
    check(call, exc, pattern)


# --- clip_boxes size --------------------------------------------------------------------

CLIP_CASES = [
    case(
        "one-value",
        lambda: ops.clip_boxes(BOXES, (5,)),
        TypeError,
        "clip_boxes(): size must be a (height, width) pair, got (5,)",
    ),
    case(
        "three-values",
        lambda: ops.clip_boxes(BOXES, [5, 5, 5]),
        TypeError,
        "clip_boxes(): size must be a (height, width) pair, got [5, 5, 5]",
    ),
    case(
        "scalar",
        lambda: ops.clip_boxes(BOXES, 5),
        TypeError,
        "clip_boxes(): size must be a (height, width) pair, got 5",
    ),
    case(
        "string",
        lambda: ops.clip_boxes(BOXES, "hw"),
        TypeError,
        "clip_boxes(): size must be a (height, width) pair, got 'hw'",
    ),
    case(
        "negative-height",
        lambda: ops.clip_boxes(BOXES, (-1, 5)),
        ValueError,
        "clip_boxes(): size[0] (height) must be a number >= 0, got -1",
    ),
    case(
        "nan-width",
        lambda: ops.clip_boxes(BOXES, (5, NAN)),
        ValueError,
        "clip_boxes(): size[1] (width) must be a number >= 0, got nan",
    ),
    case(
        "inf-width",
        lambda: ops.clip_boxes(BOXES, (5, INF)),
        ValueError,
        "clip_boxes(): size must be finite",
        "inf",
    ),
    case(
        "str-height",
        lambda: ops.clip_boxes(BOXES, ("5", 5)),
        TypeError,
        "clip_boxes(): size[0] (height) must be a real number, got str",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), CLIP_CASES)
def test_bad_clip_sizes_are_rejected(call, exc, pattern):
    check(call, exc, pattern)


# --- global settings --------------------------------------------------------------------

SETTING_CASES = [
    case(
        "threads-zero",
        lambda: cnnkit.set_num_threads(0),
        ValueError,
        "set_num_threads(): n must be between 1 and 4096, got 0",
    ),
    case(
        "threads-negative",
        lambda: cnnkit.set_num_threads(-2),
        ValueError,
        "set_num_threads(): n must be between 1 and 4096, got -2",
    ),
    case(
        "threads-float",
        lambda: cnnkit.set_num_threads(1.5),
        TypeError,
        "set_num_threads(): n must be an int, got float",
    ),
    case(
        "threads-bool",
        lambda: cnnkit.set_num_threads(True),
        TypeError,
        "set_num_threads(): n must be an int, got bool",
    ),
    case(
        "threads-str",
        lambda: cnnkit.set_num_threads("2"),
        TypeError,
        "set_num_threads(): n must be an int, got str",
    ),
    case(
        "isa-unknown",
        lambda: _core.set_isa("sse9"),
        ValueError,
        "set_isa(): name must be 'baseline', 'avx2' or 'avx512', got 'sse9'",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), SETTING_CASES)
def test_bad_settings_are_rejected_and_change_nothing(call, exc, pattern):
    threads, isa = cnnkit.get_num_threads(), _core.get_isa()
    check(call, exc, pattern)
    assert (cnnkit.get_num_threads(), _core.get_isa()) == (threads, isa)


@pytest.mark.parametrize("name", ["avx2", "avx512"])
def test_set_isa_rejects_an_unavailable_path(name):
    if name in _core.available_isas():
        pytest.skip(f"the {name} path is available")
    with pytest.raises(ValueError, match=message("set_isa(): ", name, "not available")):
        _core.set_isa(name)
