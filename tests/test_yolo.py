"""YOLO targets: ``cnnkit.ops.yolo_encode``, ``yolo_encode_batch`` and ``yolo_decode``.

The kernels do the reference's float64 operations in the same order, so targets
and decoded boxes are compared for exact equality. Independent of both, a plain
loop decides which objects a target keeps, and decoding a target gives back
exactly the kept boxes (to rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import strided_view

import cnnkit
from cnnkit import ops
from cnnkit import reference as ref

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "fortran", "column_slice", "row_stride", "reversed_rows")
CLASS_DTYPES = (np.int64, np.int32, np.uint8, np.uint64)


@st.composite
def layouts(draw):
    """Grid, anchors, num_classes and image size shared by a batch."""
    grid = draw(st.one_of(st.integers(1, 9), st.tuples(st.integers(1, 9), st.integers(1, 9))))
    a = draw(st.integers(1, 5))
    anchors = np.array(
        draw(st.lists(st.tuples(st.floats(1, 200), st.floats(1, 200)), min_size=a, max_size=a))
    )
    if draw(st.booleans()):  # whole-pixel anchors make exactly equal anchor IoUs common
        anchors = np.ceil(anchors)
    num_classes = draw(st.integers(1, 6))
    size = draw(
        st.one_of(
            st.integers(1, 640),
            st.tuples(st.integers(1, 640), st.integers(1, 640)),
            st.tuples(st.floats(0.5, 700), st.floats(0.5, 700)),
        )
    )
    return {"grid": grid, "anchors": anchors, "num_classes": num_classes, "image_size": size}


def hw(value) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value, value)


@st.composite
def objects(draw, layout, dtype=None, *, max_boxes: int = 25):
    """``(boxes, classes)`` for one image: mostly inside it, some crossing or outside its
    border, some of zero width or height, some on cell lines, some duplicated."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    height, width = (float(v) for v in hw(layout["image_size"]))
    gh, gw = hw(layout["grid"])
    k = draw(st.integers(0, max_boxes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cx = rng.uniform(-0.2, 1.2, k) * width
    cy = rng.uniform(-0.2, 1.2, k) * height
    on_lines = rng.random(k) < 0.3  # midpoints on cell boundaries, the image edges included
    cx[on_lines] = rng.integers(0, gw + 1, on_lines.sum()) * width / gw
    cy[on_lines] = rng.integers(0, gh + 1, on_lines.sum()) * height / gh
    w = rng.uniform(0, 1.5, k) * width * (rng.random(k) > 0.1)
    h = rng.uniform(0, 1.5, k) * height * (rng.random(k) > 0.1)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(dtype)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])  # valid after rounding to dtype
    if k > 1 and draw(st.booleans()):
        boxes[rng.integers(0, k, k // 2)] = boxes[rng.integers(0, k, k // 2)]
    classes = rng.integers(0, layout["num_classes"], k).astype(draw(st.sampled_from(CLASS_DTYPES)))
    return draw(st.sampled_from(LAYOUTS).map(lambda lay: strided_view(boxes, lay))), classes


@st.composite
def problems(draw, *, max_images: int = 4):
    layout = draw(layouts())
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, max_images))
    images = [draw(objects(layout, dtype)) for _ in range(n)]
    return layout, [b for b, _ in images], [c for _, c in images]


def kept_by_loop(boxes, classes, layout) -> dict[int, int]:
    """Slot -> index of the object a target keeps there, decided one object at a time."""
    gh, gw = hw(layout["grid"])
    height, width = (float(v) for v in hw(layout["image_size"]))
    anchors = layout["anchors"]
    kept: dict[int, tuple[float, int]] = {}
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64)):
        w, h, cx, cy = x2 - x1, y2 - y1, (x1 + x2) / 2, (y1 + y2) / 2
        if w <= 0 or h <= 0 or not (0 <= cx <= width and 0 <= cy <= height):
            continue
        col, row = min(int(cx * gw / width), gw - 1), min(int(cy * gh / height), gh - 1)
        ious = [
            min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah))
            for aw, ah in anchors
        ]
        slot = (row * gw + col) * len(anchors) + int(np.argmax(ious))
        if slot not in kept or max(ious) > kept[slot][0]:
            kept[slot] = (max(ious), i)
    return {s: i for s, (_, i) in kept.items()}


# --- encode -----------------------------------------------------------------------------


@given(problems(max_images=1).filter(lambda p: len(p[1]) == 1))
def test_encode_matches_reference(problem):
    layout, (boxes,), (classes,) = problem
    y, dropped = ops.yolo_encode(boxes, classes, **layout)
    want, want_dropped = ref.yolo_encode(boxes, classes, **layout)
    assert y.dtype == boxes.dtype
    gh, gw = hw(layout["grid"])
    assert y.shape == (gh, gw, len(layout["anchors"]), 5 + layout["num_classes"])
    assert np.array_equal(y, want)
    assert isinstance(dropped, int) and dropped == want_dropped


@given(problems())
def test_batch_matches_reference_and_single_images(problem):
    layout, boxes_list, classes_list = problem
    y, dropped = ops.yolo_encode_batch(boxes_list, classes_list, **layout)
    want, want_dropped = ref.yolo_encode_batch(boxes_list, classes_list, **layout)
    assert y.dtype == want.dtype and dropped.dtype == np.int64
    assert np.array_equal(y, want) and np.array_equal(dropped, want_dropped)
    for i, (b, c) in enumerate(zip(boxes_list, classes_list)):
        single, d = ops.yolo_encode(b, c, **layout)
        assert np.array_equal(y[i], single.astype(y.dtype)) and dropped[i] == d


@given(problems(max_images=1).filter(lambda p: len(p[1]) == 1))
def test_target_keeps_the_objects_a_plain_loop_keeps(problem):
    layout, (boxes,), (classes,) = problem
    y, dropped = ops.yolo_encode(boxes, classes, **layout)
    kept = kept_by_loop(boxes, classes, layout)
    rows = y.reshape(-1, y.shape[-1])
    assert dropped == len(boxes) - len(kept)
    assert set(np.flatnonzero(rows[:, 0]).tolist()) == set(kept)
    for slot, i in kept.items():
        assert rows[slot, 0] == 1
        assert 0 <= rows[slot, 1] <= 1 and 0 <= rows[slot, 2] <= 1
        assert np.array_equal(np.flatnonzero(rows[slot, 5:]), [classes[i]])
    assert not rows[rows[:, 0] == 0].any()  # rows without an object are all zero


# Threshold 0 would also return the empty rows (score 0 >= 0).
@given(problems(max_images=1).filter(lambda p: len(p[1]) == 1), st.floats(1e-6, 1.0))
def test_decode_of_a_target_gives_back_the_kept_boxes(problem, threshold):
    layout, (boxes,), (classes,) = problem
    y, _ = ops.yolo_encode(boxes, classes, **layout)
    out_boxes, scores, out_classes = ops.yolo_decode(
        y, anchors=layout["anchors"], image_size=layout["image_size"], score_threshold=threshold
    )
    kept = kept_by_loop(boxes, classes, layout)
    order = [kept[s] for s in sorted(kept)]  # by row, column, anchor: the slot order
    assert out_boxes.dtype == boxes.dtype and scores.dtype == boxes.dtype
    assert out_classes.dtype == np.int64
    np.testing.assert_array_equal(out_classes, np.asarray(classes, np.int64)[order])
    np.testing.assert_array_equal(scores, np.ones(len(order)))
    height, width = (float(v) for v in hw(layout["image_size"]))
    scale = max(height, width, np.abs(boxes).max(initial=0))
    tol = scale * (1e-5 if boxes.dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(out_boxes, np.asarray(boxes)[order], rtol=0, atol=tol)


def test_course_example():
    y, dropped = ops.yolo_encode(
        [[10.0, 20.0, 50.0, 40.0]], [1], grid=4, anchors=[[40, 20]], num_classes=2, image_size=100
    )
    assert dropped == 0 and y.shape == (4, 4, 1, 7) and y.dtype == np.float64
    np.testing.assert_allclose(y[1, 1, 0], [1, 0.2, 0.2, 0.8, 1.6, 0, 1])
    assert np.count_nonzero(y) == 6


def test_grid_and_image_size_pairs_are_height_then_width():
    # A 20 x 10 box centred at (x=75, y=30) in a 60-high, 100-wide image on a 3 x 5 grid.
    y, _ = ops.yolo_encode(
        [[65.0, 20.0, 85.0, 40.0]],
        [0],
        grid=(3, 5),
        anchors=[[1, 1]],
        num_classes=1,
        image_size=(60, 100),
    )
    assert y.shape == (3, 5, 1, 6)
    np.testing.assert_allclose(y[1, 3, 0], [1, 0.75, 0.5, 1.0, 1.0, 1])


def test_midpoint_on_the_right_and_bottom_edge_goes_to_the_last_cell():
    y, dropped = ops.yolo_encode(
        [[90.0, 90.0, 110.0, 110.0]],
        [0],
        grid=4,
        anchors=[[20, 20]],
        num_classes=1,
        image_size=100,
    )
    assert dropped == 0
    np.testing.assert_allclose(y[3, 3, 0], [1, 1, 1, 0.8, 0.8, 1])


def test_a_midpoint_on_the_edge_is_at_offset_1_not_beyond():
    # 5.238652216247234 * 7 / 5.238652216247234 rounds to 7.000000000000001: the offset
    # in the last cell must still be 1 (Hypothesis found 1.0000000000000009).
    h = 5.238652216247234
    boxes = np.array([[h - 1, h - 1, h + 1, h + 1]])  # centre (h, h), exactly
    assert (boxes[0, 1] + boxes[0, 3]) * 0.5 == h
    for encode in (ops.yolo_encode, ref.yolo_encode):
        y, dropped = encode(boxes, [0], grid=7, anchors=[[1, 1]], num_classes=1, image_size=h)
        assert dropped == 0
        assert y[6, 6, 0, 0] == 1
        assert y[6, 6, 0, 1] == 1 and y[6, 6, 0, 2] == 1


def test_skipped_objects_are_counted():
    boxes = [
        [10.0, 10.0, 10.0, 30.0],  # zero width
        [10.0, 10.0, 30.0, 10.0],  # zero height
        [-30.0, 10.0, -10.0, 30.0],  # midpoint left of the image
        [10.0, 95.0, 30.0, 115.0],  # midpoint below it
        [-10.0, -10.0, 30.0, 30.0],  # crosses the border, midpoint inside: kept
    ]
    y, dropped = ops.yolo_encode(
        boxes, [0] * 5, grid=2, anchors=[[5, 5]], num_classes=1, image_size=100
    )
    assert dropped == 4
    assert np.count_nonzero(y[..., 0]) == 1 and y[0, 0, 0, 0] == 1


def test_each_object_goes_to_the_anchor_of_highest_centred_iou():
    anchors = [[10, 40], [40, 10], [20, 20]]
    boxes = [[0.0, 0.0, 12.0, 36.0], [50.0, 0.0, 94.0, 12.0], [0.0, 50.0, 22.0, 70.0]]
    y, dropped = ops.yolo_encode(
        boxes, [0, 1, 2], grid=1, anchors=anchors, num_classes=3, image_size=100
    )
    assert dropped == 0
    np.testing.assert_array_equal(np.argmax(y[0, 0, :, 5:], axis=1), [0, 1, 2])


def test_collisions_keep_the_higher_anchor_iou_then_the_lower_index():
    common = {"grid": 1, "anchors": [[20, 20]], "num_classes": 3, "image_size": 100}
    # Object 1 matches the anchor better than object 0.
    y, dropped = ops.yolo_encode([[0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 22.0, 22.0]], [0, 1], **common)
    assert dropped == 1 and y[0, 0, 0, 6] == 1
    # Equal IoU (same shape, different place): the lower index stays.
    y, dropped = ops.yolo_encode(
        [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [5.0, 5.0, 15.0, 15.0]],
        [2, 1, 0],
        **common,
    )
    assert dropped == 2 and y[0, 0, 0, 7] == 1


def test_empty_inputs():
    y, dropped = ops.yolo_encode(
        np.zeros((0, 4), np.float32), [], grid=3, anchors=[[1, 2]], num_classes=4, image_size=10
    )
    assert y.shape == (3, 3, 1, 9) and y.dtype == np.float32 and not y.any() and dropped == 0
    y, dropped = ops.yolo_encode_batch(
        [], [], grid=3, anchors=[[1, 2]], num_classes=4, image_size=10
    )
    assert y.shape == (0, 3, 3, 1, 9) and y.dtype == np.float32 and dropped.shape == (0,)


def test_batch_dtype_is_float64_when_any_image_is():
    boxes = [np.zeros((0, 4), np.float32), np.array([[0.0, 0.0, 1.0, 1.0]])]
    y, _ = ops.yolo_encode_batch(
        boxes, [[], [0]], grid=1, anchors=[[1, 1]], num_classes=1, image_size=2
    )
    assert y.dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_does_not_depend_on_thread_count(restore_threads, dtype):
    rng = np.random.default_rng(5)
    layout = {
        "grid": 13,
        "anchors": rng.uniform(10, 300, (5, 2)),
        "num_classes": 20,
        "image_size": 416,
    }
    boxes, classes = [], []
    for _ in range(40):
        c = rng.uniform(0, 416, (30, 2))
        s = rng.uniform(4, 300, (30, 2))
        boxes.append(np.concatenate([c - s / 2, c + s / 2], axis=1).astype(dtype))
        classes.append(rng.integers(0, 20, 30))
    results = []
    for n in (1, 2, 3):
        cnnkit.set_num_threads(n)
        results.append(ops.yolo_encode_batch(boxes, classes, **layout))
    for y, d in results[1:]:
        assert np.array_equal(y, results[0][0]) and np.array_equal(d, results[0][1])


# --- decode -----------------------------------------------------------------------------


@st.composite
def targets(draw, *, batched: bool | None = None):
    """An activated output: random pc, offsets, sizes and class probabilities."""
    dtype = draw(st.sampled_from(DTYPES))
    batched = draw(st.booleans()) if batched is None else batched
    shape = (
        *((draw(st.integers(0, 3)),) if batched else ()),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 4)),
        5 + draw(st.integers(1, 5)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.random(shape)
    y[..., 3:5] *= 3
    if draw(st.booleans()):  # coarse values: ties between classes and scores on the threshold
        y = np.round(y * 4) / 4
    y = y.astype(dtype)
    if draw(st.booleans()):  # a strided view whose skipped values would fail the checks
        big = np.full((*shape[:-1], 2 * shape[-1]), np.nan, dtype=dtype)
        big[..., ::2] = y
        y = big[..., ::2]
    size = draw(st.one_of(st.integers(1, 640), st.tuples(st.floats(1, 700), st.floats(1, 700))))
    anchors = np.ones((shape[-2], 2))
    return y, anchors, size


@given(targets(batched=False), st.sampled_from([0.0, 0.25, 0.5, 0.6, 1.0]))
def test_decode_matches_reference(target, threshold):
    y, anchors, size = target
    got = ops.yolo_decode(y, anchors=anchors, image_size=size, score_threshold=threshold)
    want = ref.yolo_decode(y, anchors=anchors, image_size=size, score_threshold=threshold)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)


@given(targets(batched=True))
def test_batched_decode_is_a_list_of_single_decodes(target):
    y, anchors, size = target
    got = ops.yolo_decode(y, anchors=anchors, image_size=size, score_threshold=0.3)
    assert isinstance(got, list) and len(got) == len(y)
    for g, image in zip(got, y):
        single = ops.yolo_decode(image, anchors=anchors, image_size=size, score_threshold=0.3)
        for a, b in zip(g, single):
            assert np.array_equal(a, b)


def test_decode_order_scores_and_first_maximal_class():
    y = np.zeros((2, 2, 2, 8))
    y[1, 0, 1] = [0.9, 0.5, 0.5, 1, 1, 0.2, 0.8, 0.8]  # tie between classes 1 and 2
    y[0, 1, 0] = [0.8, 0.5, 0.5, 1, 1, 1.0, 0.0, 0.0]
    y[0, 1, 1] = [1.0, 0.5, 0.5, 1, 1, 0.5, 0.0, 0.0]  # score 0.5: below the default 0.6
    boxes, scores, classes = ops.yolo_decode(y, anchors=np.ones((2, 2)), image_size=(20, 40))
    np.testing.assert_allclose(scores, [0.8, 0.72])
    np.testing.assert_array_equal(classes, [0, 1])
    np.testing.assert_allclose(boxes, [[20, 0, 40, 10], [0, 10, 20, 20]])
    _, scores, _ = ops.yolo_decode(y, anchors=np.ones((2, 2)), image_size=1, score_threshold=0.5)
    assert len(scores) == 3


def test_batched_decode_does_not_depend_on_thread_count(restore_threads):
    y = np.random.default_rng(6).random((32, 13, 13, 5, 25)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        cnnkit.set_num_threads(n)
        results.append(ops.yolo_decode(y, anchors=np.ones((5, 2)), image_size=416))
    for r in results[1:]:
        for image, first in zip(r, results[0]):
            assert all(np.array_equal(a, b) for a, b in zip(image, first))
