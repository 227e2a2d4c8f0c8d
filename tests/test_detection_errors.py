"""Bad input to the detection kernels: one test per rejection path.

Each asserts the exception type and the message: it starts with the function's
name, names the argument, and says what was expected and what came.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit import ops

BOX = [[0.0, 0.0, 10.0, 10.0]]
ENCODE = {"grid": 2, "anchors": [[4, 4]], "num_classes": 3, "image_size": 20}


def message(fn: str, text: str) -> str:
    """A regex for a message that starts with ``fn(): `` and contains ``text`` literally."""
    return "^" + re.escape(f"{fn}(): ") + ".*" + re.escape(text)


def encode(fn: str, boxes=BOX, classes=(0,), **kwargs):
    """Call yolo_encode, or yolo_encode_batch with the image as the second of two."""
    args = {**ENCODE, **kwargs}
    if fn == "yolo_encode":
        return ops.yolo_encode(boxes, classes, **args)
    return ops.yolo_encode_batch([BOX, boxes], [[1], classes], **args)


ENCODERS = ("yolo_encode", "yolo_encode_batch")


def boxes_name(fn: str) -> str:
    return "boxes" if fn == "yolo_encode" else "boxes_list[1]"


def classes_name(fn: str) -> str:
    return "classes" if fn == "yolo_encode" else "classes_list[1]"


# --- yolo_encode and yolo_encode_batch --------------------------------------------------


@pytest.mark.parametrize("fn", ENCODERS)
@pytest.mark.parametrize(
    ("grid", "error", "text"),
    [
        ("13", TypeError, "grid must be an int or a tuple of ints, got str"),
        (2.0, TypeError, "grid must be an int or a tuple of ints, got float"),
        (0, ValueError, "grid must be >= 1, got 0"),
        ((4, -1), ValueError, "grid must be >= 1, got -1"),
        ((1, 2, 3), ValueError, "grid must have 2 entries"),
    ],
)
def test_encode_rejects_bad_grid(fn, grid, error, text):
    with pytest.raises(error, match=message(fn, text)):
        encode(fn, grid=grid)


@pytest.mark.parametrize("fn", ENCODERS)
@pytest.mark.parametrize(
    ("anchors", "error", "text"),
    [
        (object(), TypeError, "anchors must hold numbers"),
        ([[1 + 1j, 2]], TypeError, "anchors must hold real numbers, got dtype complex128"),
        ([4, 4], ValueError, "anchors must have shape (A, 2) with A >= 1"),
        (np.zeros((0, 2)), ValueError, "got shape (0, 2)"),
        ([[4, 4, 4]], ValueError, "got shape (1, 3)"),
        ([[4, 0]], ValueError, "anchors must hold positive, finite widths and heights, got 0"),
        ([[4, 4], [-1, 2]], ValueError, "got -1 in row 1"),
        ([[np.nan, 4]], ValueError, "got nan in row 0"),
        ([[np.inf, 4]], ValueError, "got inf in row 0"),
    ],
)
def test_encode_rejects_bad_anchors(fn, anchors, error, text):
    with pytest.raises(error, match=message(fn, text)):
        encode(fn, anchors=anchors)


@pytest.mark.parametrize("fn", ENCODERS)
@pytest.mark.parametrize(
    ("num_classes", "error", "text"),
    [
        (3.0, TypeError, "num_classes must be an int, got float"),
        (True, TypeError, "num_classes must be an int, got bool"),
        (None, TypeError, "num_classes must be an int, got NoneType"),
        (0, ValueError, "num_classes must be >= 1, got 0"),
        (2**70, ValueError, "num_classes must be at most 2**40"),
    ],
)
def test_encode_rejects_bad_num_classes(fn, num_classes, error, text):
    with pytest.raises(error, match=message(fn, text)):
        encode(fn, num_classes=num_classes)


@pytest.mark.parametrize("fn", ENCODERS)
@pytest.mark.parametrize(
    ("size", "error", "text"),
    [
        ("20", TypeError, "image_size must be a real number, got str"),
        (None, TypeError, "image_size must be a real number, got NoneType"),
        ((20, 20, 3), ValueError, "image_size must be a number or a (height, width) pair, got 3"),
        (np.zeros((2, 2)), ValueError, "got an array of shape (2, 2)"),
        (0, ValueError, "image_size must be positive and finite"),
        ((20, -5), ValueError, "got -5"),
        (float("nan"), ValueError, "got nan"),
        (float("inf"), ValueError, "got inf"),
    ],
)
def test_encode_rejects_bad_image_size(fn, size, error, text):
    with pytest.raises(error, match=message(fn, text)):
        encode(fn, image_size=size)


@pytest.mark.parametrize("fn", ENCODERS)
def test_encode_accepts_image_size_as_an_array(fn):
    y, _ = encode(fn, image_size=np.array([20, 40]))
    assert y.shape[-4:-2] == (2, 2)


@pytest.mark.parametrize("fn", ENCODERS)
@pytest.mark.parametrize(
    ("boxes", "error", "text"),
    [
        (np.zeros((3, 5)), ValueError, "must have shape (N, 4), got shape (3, 5)"),
        (np.zeros(4), ValueError, "must have shape (N, 4), got shape (4,)"),
        ([[0, 0, 1, 1]], TypeError, "must have dtype float32 or float64, got int64"),
        ("abc", TypeError, "must hold numbers"),
        ([[0.0, np.nan, 1.0, 1.0]], ValueError, "must hold finite coordinates"),
        ([[0.0, 0.0, np.inf, 1.0]], ValueError, "must hold finite coordinates"),
        ([[5.0, 0.0, 1.0, 1.0]], ValueError, "must hold valid xyxy boxes with x1 <= x2"),
    ],
)
def test_encode_rejects_bad_boxes(fn, boxes, error, text):
    with pytest.raises(error, match=message(fn, f"{boxes_name(fn)} {text}")):
        encode(fn, boxes=boxes, classes=[0] * max(1, np.shape(boxes)[0] if np.ndim(boxes) else 1))


@pytest.mark.parametrize("fn", ENCODERS)
@pytest.mark.parametrize(
    ("classes", "error", "text"),
    [
        ([0, 1], ValueError, "must have shape (1,) to match"),
        ([[0]], ValueError, "must have shape (1,) to match"),
        ([0.0], TypeError, "must hold integer class ids, got dtype float64"),
        ([True], TypeError, "must hold integer class ids, got dtype bool"),
        (["a"], TypeError, "must hold numbers"),
        ([3], ValueError, "must hold class ids in [0, 3), got 3 at index 0"),
        ([-1], ValueError, "must hold class ids in [0, 3), got -1 at index 0"),
        (
            np.array([2**63], np.uint64),
            ValueError,
            "must hold class ids in [0, 3), got 9223372036854775808",
        ),
    ],
)
def test_encode_rejects_bad_classes(fn, classes, error, text):
    with pytest.raises(error, match=message(fn, f"{classes_name(fn)} {text}")):
        encode(fn, classes=classes)


@pytest.mark.parametrize(
    ("boxes_list", "classes_list", "error", "text"),
    [
        (np.zeros((2, 1, 4)), [[0], [0]], TypeError, "boxes_list must be a list or tuple"),
        ([BOX], np.zeros((1, 1), int), TypeError, "classes_list must be a list or tuple"),
        ([BOX, BOX], [[0]], ValueError, "classes_list must have one entry per image, 2 to match"),
    ],
)
def test_encode_batch_rejects_bad_lists(boxes_list, classes_list, error, text):
    with pytest.raises(error, match=message("yolo_encode_batch", text)):
        ops.yolo_encode_batch(boxes_list, classes_list, **ENCODE)


# --- yolo_decode ------------------------------------------------------------------------


def target(shape=(2, 2, 1, 7), dtype=np.float64):
    return np.zeros(shape, dtype)


def decode(y, anchors=((4, 4),), image_size=20, **kwargs):
    return ops.yolo_decode(y, anchors=anchors, image_size=image_size, **kwargs)


@pytest.mark.parametrize(
    ("y", "error", "text"),
    [
        (np.zeros((2, 2, 7)), ValueError, "Y must have shape (grid_h, grid_w, A, 5 + num_classes)"),
        (np.zeros((1, 1, 2, 2, 1, 7)), ValueError, "got shape (1, 1, 2, 2, 1, 7)"),
        (np.zeros((2, 2, 1, 5)), ValueError, "Y must have 5 + num_classes >= 6 values per row"),
        (np.zeros((2, 2, 1, 7), int), TypeError, "Y must have dtype float32 or float64, got int64"),
        ("Y", TypeError, "Y must hold numbers"),
    ],
)
def test_decode_rejects_bad_shape_or_dtype(y, error, text):
    with pytest.raises(error, match=message("yolo_decode", text)):
        decode(y)


@pytest.mark.parametrize(
    ("where", "value", "text"),
    [
        (0, np.nan, "Y must hold finite values, got nan at index (1, 0, 0, 0)"),
        (1, np.inf, "Y must hold finite values, got inf at index (1, 0, 0, 1)"),
        (0, 1.5, "Y must hold pc in [0, 1], got 1.5 at index (1, 0, 0, 0)"),
        (6, -0.25, "Y must hold class probabilities in [0, 1], got -0.25 at index (1, 0, 0, 6)"),
        (3, -1.0, "Y must hold bh >= 0, got -1 at index (1, 0, 0, 3)"),
        (4, -2.0, "Y must hold bw >= 0, got -2 at index (1, 0, 0, 4)"),
    ],
)
def test_decode_rejects_values_outside_the_encoded_form(where, value, text):
    y = target()
    y[1, 0, 0, where] = value
    with pytest.raises(ValueError, match=message("yolo_decode", text)):
        decode(y)
    batch = np.stack([target(), y])
    batched_text = text.replace("index (", "index (1, ")
    with pytest.raises(ValueError, match=message("yolo_decode", batched_text)):
        decode(batch)


def test_decode_rejects_anchors_that_do_not_match_y():
    text = "anchors must have 1 rows to match Y's anchor axis, got shape (2, 2)"
    with pytest.raises(ValueError, match=message("yolo_decode", text)):
        decode(target(), anchors=[[1, 1], [2, 2]])
    with pytest.raises(ValueError, match=message("yolo_decode", "anchors must hold positive")):
        decode(target(), anchors=[[1, 0]])


@pytest.mark.parametrize(
    ("size", "error", "text"),
    [
        ("x", TypeError, "image_size must be a real number, got str"),
        (-1, ValueError, "image_size must be positive and finite"),
    ],
)
def test_decode_rejects_bad_image_size(size, error, text):
    with pytest.raises(error, match=message("yolo_decode", text)):
        decode(target(), image_size=size)


@pytest.mark.parametrize(
    ("threshold", "error", "text"),
    [
        ("0.5", TypeError, "score_threshold must be a real number, got str"),
        (None, TypeError, "score_threshold must be a real number, got NoneType"),
        (-0.1, ValueError, "score_threshold must be a number >= 0, got -0.1"),
        (float("nan"), ValueError, "score_threshold must be a number >= 0, got nan"),
    ],
)
def test_decode_rejects_bad_score_threshold(threshold, error, text):
    with pytest.raises(error, match=message("yolo_decode", text)):
        decode(target(), score_threshold=threshold)


# --- kmeans_anchors ---------------------------------------------------------------------

WH = [[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]


@pytest.mark.parametrize(
    ("wh", "error", "text"),
    [
        ([[1, 2], [3, 4]], TypeError, "wh must have dtype float32 or float64, got int64"),
        ("wh", TypeError, "wh must hold numbers"),
        ([1.0, 2.0], ValueError, "wh must have shape (M, 2) with M >= 1"),
        (np.zeros((0, 2)), ValueError, "got shape (0, 2)"),
        ([[1.0, 2.0, 3.0]], ValueError, "got shape (1, 3)"),
        ([[1.0, 0.0]], ValueError, "wh must hold positive, finite widths and heights"),
        ([[1.0, 2.0], [-3.0, 4.0]], ValueError, "got -3 in row 1"),
        ([[np.nan, 2.0]], ValueError, "got nan in row 0"),
        ([[1.0, np.inf]], ValueError, "got inf in row 0"),
    ],
)
def test_kmeans_rejects_bad_wh(wh, error, text):
    with pytest.raises(error, match=message("kmeans_anchors", text)):
        ops.kmeans_anchors(wh, 1)


@pytest.mark.parametrize(
    ("k", "error", "text"),
    [
        (2.0, TypeError, "k must be an int, got float"),
        ("2", TypeError, "k must be an int, got str"),
        (0, ValueError, "k must be >= 1, got 0"),
        (3, ValueError, "k must be at most the number of distinct box shapes in wh, 2, got 3"),
    ],
)
def test_kmeans_rejects_bad_k(k, error, text):
    with pytest.raises(error, match=message("kmeans_anchors", text)):
        ops.kmeans_anchors(WH, k)


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"iterations": None}, TypeError, "iterations must be an int, got NoneType"),
        ({"iterations": 1.5}, TypeError, "iterations must be an int, got float"),
        ({"iterations": -1}, ValueError, "iterations must be >= 0, got -1"),
        ({"iou_threshold": "a"}, TypeError, "iou_threshold must be a real number, got str"),
        ({"iou_threshold": -0.5}, ValueError, "iou_threshold must be a number >= 0"),
        ({"iou_threshold": float("nan")}, ValueError, "iou_threshold must be a number >= 0"),
        ({"iou_threshold": 1.5}, ValueError, "iou_threshold must be a number in [0, 1], got 1.5"),
        ({"seed": "a"}, TypeError, "seed must be an int or a numpy.random.Generator, got str"),
        ({"seed": 1.0}, TypeError, "got float"),
        ({"seed": True}, TypeError, "got bool"),
        ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
    ],
)
def test_kmeans_rejects_bad_options(kwargs, error, text):
    with pytest.raises(error, match=message("kmeans_anchors", text)):
        ops.kmeans_anchors(WH, 2, **kwargs)


# --- sliding_windows and window_boxes ---------------------------------------------------

IMAGES = np.zeros((2, 8, 6, 3), np.float32)


@pytest.mark.parametrize(
    ("images", "error", "text"),
    [
        (np.zeros((8, 6, 3)), ValueError, "images must have shape (N, H, W, C), got shape (8, 6,"),
        (np.zeros((1, 2, 8, 6, 3)), ValueError, "got shape (1, 2, 8, 6, 3)"),
        (np.array([[[["a"]]]]), TypeError, "images must hold numbers"),
        (np.empty((1, 2, 2, 1), object), TypeError, "images must hold numbers"),
    ],
)
def test_sliding_windows_rejects_bad_images(images, error, text):
    with pytest.raises(error, match=message("sliding_windows", text)):
        ops.sliding_windows(images, 1, 1)


@pytest.mark.parametrize(
    ("window", "stride", "error", "text"),
    [
        (9, 1, ValueError, "window must fit in the images, at most (8, 6), got (9, 9)"),
        ((4, 7), 1, ValueError, "window must fit in the images, at most (8, 6), got (4, 7)"),
        (0, 1, ValueError, "window must be >= 1, got 0"),
        ("2", 1, TypeError, "window must be an int or a tuple of ints, got str"),
        ((2, 2, 2), 1, ValueError, "window must have 2 entries"),
        (2, 0, ValueError, "stride must be >= 1, got 0"),
        (2, 1.5, TypeError, "stride must be an int or a tuple of ints, got float"),
        (2, (1,), ValueError, "stride must have 2 entries"),
    ],
)
def test_sliding_windows_rejects_bad_window_or_stride(window, stride, error, text):
    with pytest.raises(error, match=message("sliding_windows", text)):
        ops.sliding_windows(IMAGES, window, stride)


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        (((8, 6, 3), 2, 1), ValueError, "image_size must be an int or a (height, width) pair"),
        ((8.0, 2, 1), TypeError, "image_size must be an int or a (height, width) pair, got float"),
        ((0, 2, 1), ValueError, "image_size must be positive, got 0"),
        (((8, 6), 7, 1), ValueError, "window must fit in the image, at most (8, 6), got (7, 7)"),
        ((8, "2", 1), TypeError, "window must be an int or an (h, w) pair, got str"),
        ((8, (2, -2), 1), ValueError, "window must be positive, got -2"),
        ((8, 2, None), TypeError, "stride must be an int or a (stride_h, stride_w) pair"),
        ((8, 2, (1, 0)), ValueError, "stride must be positive, got 0"),
    ],
)
def test_window_boxes_rejects_bad_arguments(args, error, text):
    with pytest.raises(error, match=message("window_boxes", text)):
        ops.window_boxes(*args)
