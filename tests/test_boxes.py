"""Box kernels against cnnkit.reference: formats, areas, clipping, filtering and the IoU family."""

from __future__ import annotations

import contextlib
import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import FLOAT_DTYPES, box_arrays, box_pairs, views_of

import cnnkit
from cnnkit import _core, ops
from cnnkit import reference as ref

FORMATS = ("xyxy", "xywh", "cxcywh")
FORMAT_PAIRS = list(itertools.product(FORMATS, FORMATS))
IOU_FAMILY = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
# The range of each variant: CIoU = DIoU - alpha * v with alpha * v <= 1/2.
IOU_RANGE = {
    "box_iou": (0.0, 1.0),
    "generalized_box_iou": (-1.0, 1.0),
    "distance_box_iou": (-1.0, 1.0),
    "complete_box_iou": (-1.5, 1.0),
}
# CIoU goes through atan2, which may differ from NumPy's by an ulp.
CIOU_TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def assert_same_iou(name: str, got: np.ndarray, want: np.ndarray) -> None:
    """Exact equality with the reference (same arithmetic), except CIoU: close."""
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    if name == "complete_box_iou":
        tol = CIOU_TOL[want.dtype]
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(got, want, strict=True)


def assert_bit_identical(a: np.ndarray, b: np.ndarray) -> None:
    assert (a.dtype, a.shape) == (b.dtype, b.shape)
    assert a.tobytes() == b.tobytes()


@contextlib.contextmanager
def unchanged(*arrays: np.ndarray):
    """Asserts that the block leaves the arrays' values as they were (inputs are read-only)."""
    before = [a.copy() for a in arrays]
    yield
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b, strict=True)


# --- box_convert ---------------------------------------------------------------------


@pytest.mark.parametrize(("in_fmt", "out_fmt"), FORMAT_PAIRS)
@given(data=st.data())
def test_box_convert_matches_reference(in_fmt, out_fmt, data):
    xyxy = data.draw(box_arrays(view=False))
    boxes = data.draw(views_of(ref.box_convert(xyxy, "xyxy", in_fmt)))
    with unchanged(boxes):
        got = ops.box_convert(boxes, in_fmt, out_fmt)
    np.testing.assert_array_equal(got, ref.box_convert(boxes, in_fmt, out_fmt), strict=True)


@pytest.mark.parametrize("fmt", FORMATS)
@given(boxes=box_arrays(regime="grid"))
def test_box_convert_round_trip_is_exact_on_a_grid(fmt, boxes):
    there = ops.box_convert(boxes, "xyxy", fmt)
    np.testing.assert_array_equal(ops.box_convert(there, fmt, "xyxy"), boxes, strict=True)


@pytest.mark.parametrize(("in_fmt", "out_fmt"), FORMAT_PAIRS)
@given(xyxy=box_arrays())
def test_box_convert_round_trip_is_close(in_fmt, out_fmt, xyxy):
    start = ops.box_convert(xyxy, "xyxy", in_fmt)
    back = ops.box_convert(ops.box_convert(start, in_fmt, out_fmt), out_fmt, in_fmt)
    scale = max(1.0, float(np.abs(xyxy).max(initial=0.0)))
    np.testing.assert_allclose(back, start, rtol=0, atol=8 * np.finfo(xyxy.dtype).eps * scale)


@given(xyxy=box_arrays())
def test_xywh_cxcywh_conversions_keep_width_and_height_exactly(xyxy):
    xywh = ref.box_convert(xyxy, "xyxy", "xywh")
    cxcywh = ops.box_convert(xywh, "xywh", "cxcywh")
    np.testing.assert_array_equal(cxcywh[:, 2:], xywh[:, 2:], strict=True)
    np.testing.assert_array_equal(
        ops.box_convert(cxcywh, "cxcywh", "xywh")[:, 2:], xywh[:, 2:], strict=True
    )


@pytest.mark.parametrize(
    ("out_fmt", "expected"),
    [("xyxy", [10, 20, 30, 60]), ("xywh", [10, 20, 20, 40]), ("cxcywh", [20, 40, 20, 40])],
)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_box_convert_known_values(out_fmt, expected, dtype):
    boxes = np.array([[10, 20, 30, 60]], dtype)
    got = ops.box_convert(boxes, "xyxy", out_fmt)
    np.testing.assert_array_equal(got, np.array([expected], dtype), strict=True)
    np.testing.assert_array_equal(ops.box_convert(got, out_fmt, "xyxy"), boxes, strict=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_box_convert_same_format_returns_a_new_equal_array(fmt):
    boxes = np.array([[1.5, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    got = ops.box_convert(boxes, fmt, fmt)
    assert not np.shares_memory(got, boxes)
    np.testing.assert_array_equal(got, boxes, strict=True)


# --- box_area, clip_boxes, remove_small_boxes -----------------------------------------


@given(boxes=box_arrays())
def test_box_area_matches_reference(boxes):
    with unchanged(boxes):
        got = ops.box_area(boxes)
    np.testing.assert_array_equal(got, ref.box_area(boxes), strict=True)
    assert (got >= 0).all()


def test_box_area_known_values():
    got = ops.box_area([[0.0, 0, 2, 3], [1, 1, 1, 5], [-4, -4, -1, -2]])
    np.testing.assert_array_equal(got, np.array([6.0, 0.0, 6.0]), strict=True)


sizes = st.tuples(st.floats(0, 2e7), st.floats(0, 2e7)) | st.tuples(
    st.integers(0, 20), st.integers(0, 20)
)


@given(boxes=box_arrays(), size=sizes)
def test_clip_boxes_matches_reference(boxes, size):
    with unchanged(boxes):
        got = ops.clip_boxes(boxes, size)
    np.testing.assert_array_equal(got, ref.clip_boxes(boxes, size), strict=True)
    height, width = (boxes.dtype.type(v) for v in size)
    assert ((got[:, 0::2] >= 0) & (got[:, 0::2] <= width)).all()
    assert ((got[:, 1::2] >= 0) & (got[:, 1::2] <= height)).all()
    assert ((got[:, 2] >= got[:, 0]) & (got[:, 3] >= got[:, 1])).all()


@pytest.mark.parametrize("size", [(5, 10), [5.0, 10.0], np.array([5, 10]), (np.float32(5), 10)])
def test_clip_boxes_accepts_size_sequences(size):
    boxes = np.array([[-3, -3, 4, 4], [2, 3, 20, 30], [11, 6, 12, 7]], np.float64)
    expected = np.array([[0, 0, 4, 4], [2, 3, 10, 5], [10, 5, 10, 5]], np.float64)
    np.testing.assert_array_equal(ops.clip_boxes(boxes, size), expected, strict=True)


@given(boxes=box_arrays(), min_size=st.floats(0, 10) | st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_remove_small_boxes_matches_reference(boxes, min_size):
    got = ops.remove_small_boxes(boxes, min_size)
    np.testing.assert_array_equal(got, ref.remove_small_boxes(boxes, min_size), strict=True)


@given(boxes=box_arrays())
def test_remove_small_boxes_with_zero_min_size_keeps_everything(boxes):
    got = ops.remove_small_boxes(boxes, 0)
    np.testing.assert_array_equal(got, np.arange(len(boxes), dtype=np.int64), strict=True)


def test_remove_small_boxes_compares_both_sides_inclusively():
    boxes = [[0, 0, 2, 2], [0, 0, 1, 5], [0, 0, 5, 1.5], [0, 0, 1.5, 1.5], [3, 3, 3, 3]]
    np.testing.assert_array_equal(
        ops.remove_small_boxes(boxes, 1.5), np.array([0, 2, 3], np.int64), strict=True
    )


# --- the IoU family -------------------------------------------------------------------


@pytest.mark.parametrize("name", IOU_FAMILY)
@given(pair=box_pairs())
def test_pairwise_iou_family_matches_reference(name, pair):
    a, b = pair
    with unchanged(a, b):
        got = getattr(ops, name)(a, b)
    assert_same_iou(name, got, getattr(ref, name)(a, b))


@pytest.mark.parametrize("name", IOU_FAMILY)
@given(pair=box_pairs(aligned=True))
def test_aligned_iou_family_matches_reference(name, pair):
    a, b = pair
    got = getattr(ops, name)(a, b, aligned=True)
    assert_same_iou(name, got, getattr(ref, name)(a, b, aligned=True))
    # Aligned values are the diagonal of the pairwise matrix, bit for bit.
    assert_bit_identical(got, np.diagonal(getattr(ops, name)(a, b)))


@pytest.mark.parametrize("name", IOU_FAMILY)
@given(pair=box_pairs())
def test_iou_family_is_symmetric(name, pair):
    a, b = pair
    fn = getattr(ops, name)
    assert_bit_identical(fn(a, b), fn(b, a).T)


@pytest.mark.parametrize("name", IOU_FAMILY)
@given(pair=box_pairs())
def test_iou_family_is_finite_and_in_range(name, pair):
    got = getattr(ops, name)(*pair)
    lo, hi = IOU_RANGE[name]
    # IoU's bounds hold exactly in floating point; the others up to rounding.
    slack = 0.0 if name == "box_iou" else 4 * np.finfo(got.dtype).eps
    assert np.isfinite(got).all()
    assert (got >= lo - slack).all()
    assert (got <= hi + slack).all()


@pytest.mark.parametrize("name", IOU_FAMILY)
@given(boxes=box_arrays())
def test_iou_family_of_a_box_with_itself_is_one_unless_empty(name, boxes):
    fn = getattr(ops, name)
    expected = (ref.box_area(boxes) > 0).astype(boxes.dtype)
    np.testing.assert_array_equal(fn(boxes, boxes, aligned=True), expected, strict=True)
    np.testing.assert_array_equal(np.diagonal(fn(boxes, boxes)), expected, strict=True)


EMPTY_BOXES = [[2, 2, 2, 2], [1, 0, 1, 5], [0, 3, 4, 3]]


@pytest.mark.parametrize("name", IOU_FAMILY)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_iou_family_of_empty_boxes_is_zero_not_nan(name, dtype):
    boxes = np.array(EMPTY_BOXES, dtype)
    fn = getattr(ops, name)
    np.testing.assert_array_equal(fn(boxes, boxes, aligned=True), np.zeros(3, dtype), strict=True)
    got = fn(boxes, boxes)
    assert np.isfinite(got).all()
    if name == "box_iou":
        np.testing.assert_array_equal(got, np.zeros((3, 3), dtype), strict=True)


KNOWN_VALUES = [
    # name, boxes1, boxes2, expected
    ("box_iou", [[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]], [[1 / 3, 0]]),
    ("box_iou", [[0, 0, 10, 10]], [[0, 0, 10, 3], [0, 0, 5, 5]], [[0.3, 0.25]]),
    # disjoint unit squares two apart: C = 3, U = 2
    ("generalized_box_iou", [[0, 0, 1, 1]], [[2, 0, 3, 1]], [[-1 / 3]]),
    # d^2 = 4, c^2 = 3^2 + 1^2
    ("distance_box_iou", [[0, 0, 1, 1]], [[2, 0, 3, 1]], [[-0.4]]),
    # same aspect ratio: v = 0, CIoU == DIoU
    ("complete_box_iou", [[0, 0, 1, 1]], [[2, 0, 3, 1]], [[-0.4]]),
    # a horizontal and a vertical segment at opposite corners: below -1
    ("complete_box_iou", [[0, 0, 1, 0]], [[10, 10, 10, 11]], [[-200.5 / 221 - 0.5]]),
]


@pytest.mark.parametrize(("name", "boxes1", "boxes2", "expected"), KNOWN_VALUES)
def test_iou_family_known_values(name, boxes1, boxes2, expected):
    got = getattr(ops, name)(np.array(boxes1, float), np.array(boxes2, float))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", IOU_FAMILY)
@pytest.mark.parametrize(
    ("dtype1", "dtype2", "expected"),
    [
        (np.float32, np.float32, np.float32),
        (np.float64, np.float64, np.float64),
        (np.float32, np.float64, np.float64),
        (np.float64, np.float32, np.float64),
    ],
)
def test_iou_family_dtypes(name, dtype1, dtype2, expected):
    a = np.array([[0, 0, 3, 2], [1, 1, 4, 5.5]], dtype1)
    b = np.array([[0.5, 0, 2, 2], [1, 2, 9, 3], [7, 7, 8, 9]], dtype2)
    got = getattr(ops, name)(a, b)
    assert got.dtype == expected
    assert_same_iou(name, got, getattr(ref, name)(a.astype(expected), b.astype(expected)))
    assert getattr(ops, name)(a, b[:2], aligned=True).dtype == expected


@pytest.mark.parametrize("name", IOU_FAMILY)
def test_iou_family_accepts_lists(name):
    a, b = [[0, 0, 3, 2], [1, 1, 4, 5.5]], [[0.5, 0, 2, 2], [1, 2, 9, 3]]
    got = getattr(ops, name)(a, b)
    assert_same_iou(name, got, getattr(ref, name)(np.array(a), np.array(b)))
    assert_same_iou(
        name, getattr(ops, name)(a, b, aligned=True), getattr(ref, name)(a, b, aligned=True)
    )


@pytest.mark.parametrize("name", IOU_FAMILY)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_iou_family_empty_inputs(name, dtype):
    fn, none, three = getattr(ops, name), np.zeros((0, 4), dtype), np.ones((3, 4), dtype)
    for got, shape in [
        (fn(none, three), (0, 3)),
        (fn(three, none), (3, 0)),
        (fn(none, none), (0, 0)),
        (fn(none, none, aligned=True), (0,)),
    ]:
        assert (got.shape, got.dtype) == (shape, dtype)
    assert fn([], three).shape == (0, 3)
    assert fn(three, np.array([], dtype)).dtype == dtype


# Arrays whose dtype equals float32/float64 but is a distinct descriptor object,
# as arrays that went through pickle (multiprocessing, joblib) are.
PICKLED_INPUT_CALLS = {
    "box_area": lambda b, s: ops.box_area(b),
    "box_convert": lambda b, s: ops.box_convert(b, "xyxy", "cxcywh"),
    "box_iou(boxes2)": lambda b, s: ops.box_iou(b[:1].copy(), b),
    "nms(scores)": lambda b, s: ops.nms(b.copy(), s, 0.5),
}


@pytest.mark.parametrize("call", PICKLED_INPUT_CALLS.values(), ids=PICKLED_INPUT_CALLS.keys())
def test_arrays_with_an_equal_but_distinct_dtype_object_are_accepted(call):
    for dtype in FLOAT_DTYPES:
        boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 2, 2.5]], dtype)
        scores = np.array([0.5, 0.9, 0.7], dtype)
        b2, s2 = pickle.loads(pickle.dumps((boxes, scores)))
        assert b2.dtype == boxes.dtype and s2.dtype == scores.dtype
        np.testing.assert_array_equal(call(b2, s2), call(boxes, scores), strict=True)


@pytest.mark.parametrize("name", IOU_FAMILY)
def test_iou_family_is_not_silently_wrong_when_float32_areas_overflow(name):
    # Valid, finite float32 boxes whose areas (9e38, 4e38) exceed float32's range.
    boxes = np.array([[0, 0, 3e19, 3e19], [1e19, 1e19, 3e19, 3e19]], np.float32)
    try:
        got = getattr(ops, name)(boxes, boxes)
    except ValueError:
        return  # rejecting such boxes is acceptable; a wrong answer is not
    lo, hi = IOU_RANGE[name]
    assert np.isfinite(got).all(), got
    assert ((got >= lo) & (got <= hi)).all(), got


# --- instruction-set paths ------------------------------------------------------------

both_isas = pytest.mark.skipif(
    not {"baseline", "avx2"} <= set(_core.available_isas()),
    reason="needs both the baseline and the avx2 path",
)


@contextlib.contextmanager
def isa(name: str):
    before = _core.get_isa()
    _core.set_isa(name)
    try:
        yield
    finally:
        _core.set_isa(before)


def test_set_isa_switches_paths(restore_isa):
    available = _core.available_isas()
    assert "baseline" in available
    assert restore_isa in available
    for name in available:
        _core.set_isa(name)
        assert _core.get_isa() == name


def iou_family_on_both_isas(name, a, b, aligned):
    """The baseline's and the avx2 path's results, after checking that every other
    available path (avx512) gives the avx2 path's bits."""
    results = []
    for path in ("baseline", "avx2"):
        with isa(path):
            results.append(getattr(ops, name)(a, b, aligned=aligned))
    for path in set(_core.available_isas()) - {"baseline", "avx2"}:
        with isa(path):
            assert_bit_identical(getattr(ops, name)(a, b, aligned=aligned), results[1])
    return results


@both_isas
@pytest.mark.parametrize("aligned", [False, True], ids=["pairwise", "aligned"])
@pytest.mark.parametrize("name", IOU_FAMILY)
@given(data=st.data())
def test_iou_family_is_bit_identical_on_both_isas(name, aligned, data):
    a, b = data.draw(box_pairs(aligned=aligned, max_boxes=40))
    baseline, avx2 = iou_family_on_both_isas(name, a, b, aligned)
    assert_bit_identical(baseline, avx2)


@both_isas
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", IOU_FAMILY)
def test_iou_family_is_bit_identical_on_both_isas_for_larger_inputs(name, dtype):
    rng = np.random.default_rng(7)

    def boxes(n):
        xy = rng.integers(-50, 50, (n, 2)) * rng.choice([0.25, 1.0, 1e5], (n, 1))
        wh = rng.uniform(0, 40, (n, 2)) * (rng.random((n, 2)) > 0.1)
        return np.concatenate([xy, xy + wh], axis=1).astype(dtype)

    a, b = boxes(203), boxes(131)  # odd sizes: vector bodies and remainders
    for aligned, second in [(False, b), (True, boxes(203))]:
        baseline, avx2 = iou_family_on_both_isas(name, a, second, aligned)
        assert_bit_identical(baseline, avx2)
        assert_same_iou(name, avx2, getattr(ref, name)(a, second, aligned=aligned))


# --- many boxes: several blocks, several threads ----------------------------------------


def many_boxes(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    """Valid xyxy boxes, about a tenth of them empty in one direction."""
    xy = rng.uniform(-500, 500, (n, 2))
    wh = rng.uniform(0, 64, (n, 2)) * (rng.random((n, 2)) > 0.1)
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_box_kernels_on_many_boxes_match_reference_at_every_thread_count(dtype, restore_threads):
    # 70,001 rows: over two threads' worth of work, and blocks with a remainder.
    rng = np.random.default_rng(11)
    a, b = many_boxes(rng, 70_001, dtype), many_boxes(rng, 70_001, dtype)
    calls = {
        "area": (lambda: ops.box_area(a), lambda: ref.box_area(a)),
        "clip": (lambda: ops.clip_boxes(a, (100, 200)), lambda: ref.clip_boxes(a, (100, 200))),
        "small": (
            lambda: ops.remove_small_boxes(a, 16),
            lambda: ref.remove_small_boxes(a, 16),
        ),
    }
    for i, o in FORMAT_PAIRS:
        given = ref.box_convert(a, "xyxy", i)
        calls[f"{i}->{o}"] = (
            lambda i=i, o=o, x=given: ops.box_convert(x, i, o),
            lambda i=i, o=o, x=given: ref.box_convert(x, i, o),
        )
    for name in IOU_FAMILY:
        calls[name] = (
            lambda name=name: getattr(ops, name)(a, b, aligned=True),
            lambda name=name: getattr(ref, name)(a, b, aligned=True),
        )
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        for name, (got, want) in calls.items():
            if name in IOU_FAMILY:
                assert_same_iou(name, got(), want())
            else:
                np.testing.assert_array_equal(got(), want(), strict=True, err_msg=name)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("row", [0, 40_000, 69_999])
def test_a_bad_box_among_many_is_named_by_its_row(dtype, row, restore_threads):
    boxes = many_boxes(np.random.default_rng(12), 70_000, dtype)
    boxes[row, 2] = boxes[row, 0] - 1
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        with pytest.raises(ValueError, match=f"x1 <= x2 and y1 <= y2, got .* in row {row}$"):
            ops.box_area(boxes)
        boxes[row, 2] = np.nan
        with pytest.raises(ValueError, match=f"finite coordinates, got .* in row {row}$"):
            ops.box_iou(boxes, boxes, aligned=True)
        boxes[row, 2] = boxes[row, 0] - 1


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_ciou_angles_match_atan2_over_every_aspect_ratio(dtype):
    # CIoU's box angle is a polynomial, not std::atan2: sweep the aspect ratio
    # across the reduction's seams (tan(pi/8), 1 and their reciprocals) and the
    # extremes, including empty sides.
    ratios = np.concatenate(
        [np.geomspace(1e-7, 1e7, 20_001), [np.sqrt(2) - 1, 1, np.sqrt(2) + 1, 0.0]]
    )
    boxes = np.zeros((len(ratios) + 1, 4))
    boxes[:-1, 2], boxes[:-1, 3] = ratios, 1.0
    boxes[-1, 2:] = 0.0  # empty both ways: angle 0
    square = np.tile([[0.0, 0.0, 1.0, 1.0]], (len(boxes), 1))
    boxes, square = boxes.astype(dtype), square.astype(dtype)
    got = ops.complete_box_iou(boxes, square, aligned=True)
    assert_same_iou("complete_box_iou", got, ref.complete_box_iou(boxes, square, aligned=True))
