"""torchvision.ops habits the box functions accept: integer boxes, a single box, any leading
shape, torchvision's argument names, and whole-number float class ids."""

from __future__ import annotations

import numpy as np
import peers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import box_arrays

from cnnkit import ops
from cnnkit import reference as ref

INT_DTYPES = (np.int32, np.int64, np.uint8, np.int16)
INT_BOXES = np.array([[0, 0, 4, 4], [2, 1, 6, 5], [10, 10, 12, 20]])
SCORES = np.array([0.9, 0.8, 0.7], np.float32)

# Each box function, on cnnkit.ops or cnnkit.reference (m), with integer boxes equals the
# same call with float32 boxes.
BOX_CALLS = {
    "box_area": lambda m, b: m.box_area(b),
    "box_convert": lambda m, b: m.box_convert(b, "xyxy", "cxcywh"),
    "clip_boxes": lambda m, b: m.clip_boxes(b, (8, 9)),
    "clip_boxes_to_image": lambda m, b: m.clip_boxes_to_image(b, (8, 9)),
    "remove_small_boxes": lambda m, b: m.remove_small_boxes(b, 3),
    "box_iou": lambda m, b: m.box_iou(b, np.asarray(b)[:2]),
    "generalized_box_iou": lambda m, b: m.generalized_box_iou(np.asarray(b)[:2], b),
    "distance_box_iou": lambda m, b: m.distance_box_iou(b, b, aligned=True),
    "complete_box_iou": lambda m, b: m.complete_box_iou(b, b),
    "nms": lambda m, b: m.nms(b, SCORES, 0.1),
    "batched_nms": lambda m, b: m.batched_nms(b, SCORES, [0, 0, 1], 0.1),
    "soft_nms": lambda m, b: m.soft_nms(b, SCORES)[1],
}


@pytest.mark.parametrize("name", sorted(BOX_CALLS))
@pytest.mark.parametrize("dtype", [*INT_DTYPES, np.float16, "list"], ids=str)
def test_integer_boxes_are_upcast_to_float32(name, dtype):
    call = BOX_CALLS[name]
    boxes = INT_BOXES.tolist() if dtype == "list" else INT_BOXES.astype(dtype)
    got, want = call(ops, boxes), call(ops, INT_BOXES.astype(np.float32))
    assert got.dtype == want.dtype
    if got.dtype.kind == "f":
        assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want, strict=True)
    np.testing.assert_allclose(got, call(ref, boxes), rtol=1e-6, strict=True)


def test_integer_boxes_with_float64_scores_give_float64():
    got = ops.soft_nms(INT_BOXES, SCORES.astype(np.float64))[1]
    assert got.dtype == np.float64


@given(boxes=box_arrays(view=False), lead=st.sampled_from([(), (1,), (2, 3), (3, 1, 2)]))
def test_leading_shapes_match_rows(boxes, lead):
    n = int(np.prod(lead, dtype=np.int64))
    rows = np.resize(boxes, (n, 4)) if len(boxes) else np.zeros((n, 4), boxes.dtype)
    shaped = rows.reshape(*lead, 4)
    np.testing.assert_array_equal(ops.box_area(shaped), ops.box_area(rows).reshape(lead))
    np.testing.assert_array_equal(ops.box_area(shaped), ref.box_area(shaped), strict=True)
    np.testing.assert_array_equal(
        ops.clip_boxes_to_image(shaped, (4, 6)),
        ref.clip_boxes_to_image(shaped, (4, 6)),
        strict=True,
    )
    np.testing.assert_array_equal(
        ops.box_convert(shaped, "xyxy", "cxcywh"),
        ref.box_convert(shaped, "xyxy", "cxcywh"),
        strict=True,
    )
    for fmt in ("xywh", "cxcywh"):
        np.testing.assert_array_equal(
            ops.box_convert(shaped, "xyxy", fmt),
            ops.box_convert(rows, "xyxy", fmt).reshape(shaped.shape),
        )
    np.testing.assert_array_equal(
        ops.clip_boxes(shaped, (5, 7)), ops.clip_boxes(rows, (5, 7)).reshape(shaped.shape)
    )


def test_a_single_box():
    box = [1, 2, 4, 8]
    area = ops.box_area(box)
    assert area.shape == () and area.dtype == np.float32 and area == 18
    np.testing.assert_array_equal(ops.box_convert(box, "xyxy", "xywh"), [1, 2, 3, 6])
    np.testing.assert_array_equal(ops.clip_boxes_to_image(box, (5, 3)), [1, 2, 3, 5])


def test_empty_leading_shapes():
    assert ops.box_area(np.zeros((0, 3, 4))).shape == (0, 3)
    assert ops.box_area([]).shape == (0,)
    assert ops.box_convert(np.zeros((2, 0, 4)), "xyxy", "xywh").shape == (2, 0, 4)


def test_clip_boxes_to_image_is_clip_boxes():
    boxes = np.array([[-1.5, 2, 9, 30], [3, 3, 4, 4]], np.float64)
    np.testing.assert_array_equal(
        ops.clip_boxes_to_image(boxes, size=(10, 8)), ops.clip_boxes(boxes, (10, 8)), strict=True
    )


def test_clip_boxes_to_image_names_itself_in_errors():
    with pytest.raises(TypeError, match=r"^clip_boxes_to_image\(\): size must be a \(height"):
        ops.clip_boxes_to_image(INT_BOXES, 5)
    with pytest.raises(ValueError, match=r"^clip_boxes_to_image\(\): boxes must have shape"):
        ops.clip_boxes_to_image(np.zeros((2, 5)), (5, 5))


def test_batched_nms_takes_torchvision_argument_names():
    boxes = INT_BOXES.astype(np.float32)
    got = ops.batched_nms(boxes=boxes, scores=SCORES, idxs=[0, 0, 0], iou_threshold=0.1)
    np.testing.assert_array_equal(got, ops.nms(boxes, SCORES, 0.1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_nms_accepts_whole_number_float_idxs(dtype):
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]], np.float32)
    labels = np.array([2.0, -1.0, 2.0], dtype)
    got = ops.batched_nms(boxes, SCORES, labels, 0.5)
    np.testing.assert_array_equal(got, ops.batched_nms(boxes, SCORES, [2, -1, 2], 0.5))
    np.testing.assert_array_equal(got, [0, 1])


# --- against torchvision (skipped where it is not installed) --------------------------------


def test_box_habits_match_torchvision():
    torch = pytest.importorskip("torch")
    tv = peers.torchvision("ops")
    boxes = INT_BOXES.astype(np.int64)
    t = torch.from_numpy(boxes)
    # torchvision keeps integer areas integer; the values agree.
    np.testing.assert_array_equal(ops.box_area(boxes), tv.box_area(t).numpy())
    np.testing.assert_allclose(ops.box_iou(boxes, boxes), tv.box_iou(t, t).numpy(), rtol=1e-6)
    one = torch.tensor([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(
        ops.box_convert([1.0, 2.0, 4.0, 8.0], "xyxy", "cxcywh"),
        tv.box_convert(one, "xyxy", "cxcywh").numpy(),
    )
    np.testing.assert_array_equal(
        ops.clip_boxes_to_image(boxes.astype(np.float32), (8, 9)),
        tv.clip_boxes_to_image(t.float(), (8, 9)).numpy(),
    )
    scores = torch.from_numpy(SCORES)
    np.testing.assert_array_equal(
        ops.batched_nms(boxes, SCORES, [0.0, 0.0, 1.0], 0.1),
        tv.batched_nms(t.float(), scores, torch.tensor([0, 0, 1]), 0.1).numpy(),
    )
