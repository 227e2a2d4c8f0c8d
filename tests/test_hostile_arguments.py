"""Hostile arguments at the binding boundary get the promised exception (issue 9, sections 2-3).

Ints beyond int64, NumPy unsigned ints, lone surrogates and allocations that
fail were RuntimeError, OverflowError or a swallowed error; zero-size inputs
with huge other extents looped for hours with the GIL released. The calls
that could hang run in their own process with a time limit (tests/isolated.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from isolated import run_isolated

import cnnkit
from cnnkit import ops, reference

BOX = [[0.0, 0.0, 1.0, 1.0]]
X = np.ones((1, 5, 1), np.float32)
W = np.ones((3, 1, 1), np.float32)
HUGE = 2**64
ANCHORS = [[1.0, 1.0]]

BEYOND_INT64 = [
    (lambda v: ops.conv(X, W, stride=v), "conv(): stride"),
    (lambda v: ops.conv(X, W, padding=v), "conv(): padding"),
    (lambda v: ops.conv(X, W, groups=v), "conv(): groups"),
    (lambda v: ops.conv(X, W, dilation=(v,)), "conv(): dilation"),
    (lambda v: ops.max_pool(X, v), "max_pool(): pool_size"),
    (lambda v: ops.sliding_windows(np.ones((1, 4, 4, 1)), v, 1), "sliding_windows(): window"),
    (lambda v: ops.nms(BOX, [1.0], 0.5, max_output=v), "nms(): max_output"),
    (
        lambda v: ops.batched_nms(BOX, [1.0], [0], 0.5, max_output=v),
        "batched_nms(): max_output",
    ),
    (
        lambda v: ops.yolo_encode(
            BOX, [0], grid=v, anchors=ANCHORS, num_classes=1, image_size=10.0
        ),
        "yolo_encode(): grid",
    ),
    (
        lambda v: ops.yolo_encode(
            BOX, [0], grid=2, anchors=ANCHORS, num_classes=v, image_size=10.0
        ),
        "yolo_encode(): num_classes",
    ),
    (lambda v: ops.kmeans_anchors([[1.0, 2.0]], v), "kmeans_anchors(): k"),
    (lambda v: cnnkit.set_num_threads(v), "set_num_threads(): n"),
    (lambda v: ops.window_boxes(v, 3, 2), "window_boxes(): image_size"),
]


@pytest.mark.parametrize("value", [HUGE, 2**1100, np.uint64(2**64 - 1)], ids=str)
@pytest.mark.parametrize(("call", "named"), BEYOND_INT64)
def test_ints_beyond_int64_are_a_value_error_naming_the_argument(call, named, value):
    with pytest.raises(ValueError, match="^" + re.escape(named)):
        call(value)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: ops.nms(BOX, [1.0], 2**1100), "nms(): iou_threshold"),
        (lambda: ops.soft_nms(BOX, [1.0], sigma=2**1100), "soft_nms(): sigma"),
        (
            lambda: ops.yolo_decode(np.zeros((1, 1, 1, 6)), anchors=ANCHORS, image_size=2**1100),
            "yolo_decode(): image_size",
        ),
    ],
)
def test_reals_beyond_float64_are_a_value_error(call, named):
    with pytest.raises(ValueError, match="^" + re.escape(named) + ".* float64 range"):
        call()


SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda s: ops.box_convert(BOX, s, "xyxy"), "box_convert(): in_fmt"),
        (lambda s: ops.box_convert(BOX, "xyxy", s), "box_convert(): out_fmt"),
        (lambda s: ops.soft_nms(BOX, [1.0], method=s), "soft_nms(): method"),
        (lambda s: ops.conv(X, W, padding=s), "conv(): padding"),
        (lambda s: ops.avg_pool(X, 2, padding=s), "avg_pool(): padding"),
        (lambda s: ops.gram(X, normalize=s), "gram(): normalize"),
    ],
)
def test_lone_surrogates_are_a_value_error(call, named):
    with pytest.raises(ValueError, match="^" + re.escape(named) + ".*not encodable as UTF-8"):
        call(SURROGATE)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda a: ops.box_area(a), "box_area(): boxes"),
        (lambda a: ops.box_iou(a, np.float32(BOX)), "box_iou(): boxes1"),
        (lambda a: ops.nms(a, np.broadcast_to(np.float32(1), (len(a),)), 0.5), "nms(): boxes"),
    ],
)
def test_a_copy_that_cannot_be_allocated_is_a_memory_error_naming_the_bytes(call, named):
    # A broadcast view costs nothing; its contiguous float32 copy is 128 GiB.
    boxes = np.broadcast_to(np.float32(1), (2**33, 4))
    with pytest.raises(MemoryError, match="^" + re.escape(named) + r" needs .* 137438953472 bytes"):
        call(boxes)


def test_need_may_be_an_iterator():
    x, w, dy = np.ones((1, 5, 1)), np.ones((3, 1, 1)), np.ones((1, 3, 1))
    dx, dw, db = ops.conv_backward(x, w, dy, need=iter(["x", "w"]))
    want = reference.conv_backward(x, w, dy)
    np.testing.assert_allclose(dx, want[0])
    np.testing.assert_allclose(dw, want[1])
    assert db is None


def test_kmeans_refuses_anchors_it_cannot_separate():
    wh = [[1e-300, 1e-300], [1e150, 1e150], [1.0, 1e150]]
    with pytest.raises(ValueError, match=r"^kmeans_anchors\(\): k must be at most .* 2 distinct"):
        ops.kmeans_anchors(wh, 3)


@pytest.mark.parametrize(
    ("image_size", "window", "stride"),
    [((8, 8), 3, 2**63), ((8, 8), 3, 2**70), ((9, 8), (3, 2), (2**70, 3))],
)
def test_window_boxes_with_huge_strides_matches_the_reference(image_size, window, stride):
    np.testing.assert_array_equal(
        ops.window_boxes(image_size, window, stride),
        reference.window_boxes(image_size, window, stride),
    )


def test_non_finite_weights_give_the_reference_value_or_nan_in_dx():
    """The documented decision (ops.conv_backward, Notes): never another finite value."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        x = rng.normal(size=(2, 7, 2))
        w = rng.normal(size=(3, 2, 2))
        w.flat[rng.integers(w.size)] = [np.nan, np.inf, -np.inf][trial % 3]
        kw = {"padding": int(rng.integers(0, 3)), "stride": int(rng.integers(1, 3))}
        with np.errstate(invalid="ignore"):
            y = reference.conv(x, w, **kw)
        dy = rng.normal(size=y.shape)
        got = ops.conv_backward(x, w, dy, **kw)[0]
        with np.errstate(invalid="ignore"):
            want = reference.conv_backward(x, w, dy, **kw)[0]
        same = np.isclose(got, want, rtol=1e-12, atol=1e-12) | (np.isnan(want) & np.isnan(got))
        assert (same | np.isnan(got)).all(), (got, want)
        # Entries the reference leaves NaN or infinite are never finite here.
        assert not np.isfinite(got[~np.isfinite(want)]).any()


HANGS = [
    "ops.matmul(np.zeros((2**40, 0, 5), np.float32), np.zeros((5, 3), np.float32)).shape",
    "ops.sliding_windows(np.zeros((1, 2**20, 2**20, 0), np.uint8), 1, 1).shape",
    "len(ops.yolo_decode(np.zeros((2**40, 0, 1, 6), np.float32), anchors=[[1., 1.]],"
    " image_size=100.)[0])",
    "len(ops.yolo_decode(np.zeros((3, 2**40, 0, 1, 6), np.float32), anchors=[[1., 1.]],"
    " image_size=100.))",
    "ops.conv(np.zeros((2**40, 5, 0)), np.zeros((3, 0, 0))).shape",
    "[g.shape for g in ops.conv_backward(np.zeros((2**40, 5, 0)), np.zeros((3, 0, 0)),"
    " np.zeros((2**40, 3, 0)))]",
    "ops.max_pool(np.zeros((2**40, 5, 0)), 2).shape",
    "ops.avg_pool_backward(np.zeros((2**40, 5, 0)), np.zeros((2**40, 2, 0)), 2).shape",
    "ops.global_max_pool(np.zeros((2**10, 2**20, 2**20, 0))).shape",
    "ops.gram(np.zeros((2**40, 5, 0))).shape",
    "ops.gram_backward(np.zeros((2**40, 5, 0)), np.zeros((2**40, 0, 0))).shape",
]


@pytest.mark.parametrize("call", HANGS)
def test_zero_size_inputs_return_at_once(call):
    out = run_isolated(f"print({call})", timeout=30)
    assert out.strip()


def test_huge_batches_of_empty_yolo_results_fail_at_once_with_memory_error():
    out = run_isolated(
        """
        try:
            ops.yolo_decode(np.zeros((2**40, 0, 1, 1, 6), np.float32), anchors=[[1., 1.]],
                            image_size=100.)
        except MemoryError as e:
            print(e)
        """,
        timeout=30,
    )
    assert out.startswith("yolo_decode(): Y holds 1099511627776 images")
