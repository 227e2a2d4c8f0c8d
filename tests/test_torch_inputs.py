"""Torch tensors given to cnnkit.ops: plain ones are read as arrays; one that requires a
gradient is refused with a TypeError that names the argument and says to call .detach(),
with no pybind11 "At:" trace lines. Skipped where torch is not installed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit import ops

torch = pytest.importorskip("torch")

BOXES = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32)
SCORES = np.array([0.9, 0.8], np.float32)
IMAGES = np.zeros((1, 6, 6, 2), np.float32)
ROIS = np.array([[0, 0, 0, 3, 3]], np.float32)
W1, W2, W3 = (np.zeros((*k, 2, 3), np.float32) for k in ((3,), (3, 3), (1, 3, 3)))
YOLO = np.zeros((2, 2, 1, 6), np.float32)


def grad(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float32), requires_grad=True)


# function name -> (argument name, call with that argument replaced by a tensor t)
CALLS = {
    "activation_backward": ("dy", lambda t: ops.activation_backward(IMAGES, t, "relu")),
    "avg_pool": ("x", lambda t: ops.avg_pool(t, 2)),
    "avg_pool_backward": ("dy", lambda t: ops.avg_pool_backward(IMAGES, t, 2)),
    "batched_nms": ("idxs", lambda t: ops.batched_nms(BOXES, SCORES, t, 0.5)),
    "box_area": ("boxes", lambda t: ops.box_area(t)),
    "box_convert": ("boxes", lambda t: ops.box_convert(t, "xyxy", "xywh")),
    "box_iou": ("boxes2", lambda t: ops.box_iou(BOXES, t)),
    "clip_boxes": ("boxes", lambda t: ops.clip_boxes(t, (4, 4))),
    "clip_boxes_to_image": ("boxes", lambda t: ops.clip_boxes_to_image(t, (4, 4))),
    "complete_box_iou": ("boxes1", lambda t: ops.complete_box_iou(t, BOXES)),
    "conv": ("w", lambda t: ops.conv(IMAGES, t)),
    "conv1d": ("x", lambda t: ops.conv1d(t, W1)),
    "conv2d": ("x", lambda t: ops.conv2d(t, W2)),
    "conv3d": ("x", lambda t: ops.conv3d(t, W3)),
    "conv_backward": ("x", lambda t: ops.conv_backward(t, W2, np.zeros((1, 4, 4, 3)))),
    "conv_max_pool_backward": (
        "x",
        lambda t: ops.conv_max_pool_backward(
            t, W2, np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2, 3), np.int64), 2
        ),
    ),
    "conv_stem": ("x", lambda t: ops.conv_stem(t, W2, pool_size=2)),
    "distance_box_iou": ("boxes1", lambda t: ops.distance_box_iou(t, BOXES)),
    "felzenszwalb": ("image", lambda t: ops.felzenszwalb(t)),
    "generalized_box_iou": ("boxes2", lambda t: ops.generalized_box_iou(BOXES, t)),
    "global_avg_pool": ("x", lambda t: ops.global_avg_pool(t)),
    "global_max_pool": ("x", lambda t: ops.global_max_pool(t)),
    "gram": ("x", lambda t: ops.gram(t)),
    "gram_backward": ("dG", lambda t: ops.gram_backward(IMAGES, t)),
    "kmeans_anchors": ("wh", lambda t: ops.kmeans_anchors(t, 1)),
    "batch_norm": ("x", lambda t: ops.batch_norm(t, np.ones(2), np.zeros(2))),
    "batch_norm_backward": (
        "dy",
        lambda t: ops.batch_norm_backward(IMAGES, t, np.ones(2), np.zeros(2), np.ones(2)),
    ),
    "batch_norm_inference": (
        "gamma",
        lambda t: ops.batch_norm_inference(IMAGES, t, np.zeros(2), np.zeros(2), np.ones(2)),
    ),
    "add_relu": ("b", lambda t: ops.add_relu(IMAGES, t)),
    "channels_last": ("x", lambda t: ops.channels_last(t)),
    "concat": ("tensors[1]", lambda t: ops.concat([IMAGES, t])),
    "lrn": ("x", lambda t: ops.lrn(t, 3)),
    "lrn_backward": ("dy", lambda t: ops.lrn_backward(IMAGES, t, 3)),
    "masks_to_boxes": ("masks", lambda t: ops.masks_to_boxes(t)),
    "matmul": ("b", lambda t: ops.matmul(np.eye(2, dtype=np.float32), t)),
    "max_pool": ("x", lambda t: ops.max_pool(t, 2)),
    "max_pool_backward": ("x", lambda t: ops.max_pool_backward(t, np.zeros((1, 3, 3, 2)), 2)),
    "nms": ("scores", lambda t: ops.nms(BOXES, t, 0.5)),
    "remove_small_boxes": ("boxes", lambda t: ops.remove_small_boxes(t, 1)),
    "roi_align": ("x", lambda t: ops.roi_align(t, ROIS, 2)),
    "roi_align_backward": ("dy", lambda t: ops.roi_align_backward(IMAGES, ROIS, t, 2)),
    "roi_pool": ("boxes", lambda t: ops.roi_pool(IMAGES, t, 2)),
    "roi_pool_backward": ("x", lambda t: ops.roi_pool_backward(t, ROIS, np.zeros((1, 2, 2, 2)), 2)),
    "selective_search": ("image", lambda t: ops.selective_search(t)),
    "sigmoid_focal_loss": ("inputs", lambda t: ops.sigmoid_focal_loss(t, np.zeros(2))),
    "sliding_windows": ("images", lambda t: ops.sliding_windows(t, 2, 2)),
    "soft_nms": ("boxes", lambda t: ops.soft_nms(t, SCORES)),
    "yolo_decode": ("Y", lambda t: ops.yolo_decode(t, anchors=[[1, 1]], image_size=8)),
    "sgd_update": (
        "grad",
        lambda t: ops.sgd_update(np.zeros((2, 4), np.float32), t, learning_rate=0.1),
    ),
    "adam_update": (
        "grad",
        lambda t: ops.adam_update(
            *(np.zeros((2, 4), np.float32) for _ in "v"),
            t,
            *(np.zeros((2, 4), np.float32) for _ in "mv"),
            step_size=0.1,
        ),
    ),
    "yolo_encode": (
        "boxes",
        lambda t: ops.yolo_encode(t, [0, 0], grid=2, anchors=[[1, 1]], num_classes=1, image_size=8),
    ),
}
# The argument each call replaces, as an array (the tensor gets its value).
VALUES = {
    "activation_backward": IMAGES,
    "avg_pool": IMAGES,
    "felzenszwalb": np.zeros((6, 6, 3)),
    "batch_norm": IMAGES,
    "batch_norm_backward": IMAGES,
    "batch_norm_inference": np.ones(2),
    "add_relu": IMAGES,
    "channels_last": IMAGES,
    "concat": IMAGES,
    "lrn": IMAGES,
    "lrn_backward": IMAGES,
    "selective_search": np.zeros((6, 6, 3)),
    "avg_pool_backward": np.zeros((1, 3, 3, 2)),
    "batched_nms": [0.0, 1.0],
    "conv": W2,
    "conv1d": np.zeros((1, 5, 2)),
    "conv2d": IMAGES,
    "conv3d": np.zeros((1, 2, 6, 6, 2)),
    "conv_backward": IMAGES,
    "conv_max_pool_backward": IMAGES,
    "conv_stem": IMAGES,
    "global_avg_pool": IMAGES,
    "global_max_pool": IMAGES,
    "gram": IMAGES,
    "gram_backward": np.zeros((1, 2, 2)),
    "kmeans_anchors": [[1.0, 2.0], [2.0, 1.0]],
    "masks_to_boxes": np.ones((1, 2, 2)),
    "matmul": np.eye(2),
    "max_pool": IMAGES,
    "max_pool_backward": IMAGES,
    "nms": SCORES,
    "roi_align": IMAGES,
    "roi_align_backward": np.zeros((1, 2, 2, 2)),
    "roi_pool": ROIS,
    "roi_pool_backward": IMAGES,
    "sigmoid_focal_loss": np.zeros(2),
    "sliding_windows": IMAGES,
    "yolo_decode": YOLO,
}
# Functions without an array argument.
NO_ARRAYS = {"window_boxes"}


def test_every_function_is_covered():
    functions = {n for n in ops.__all__ if callable(getattr(ops, n)) and n[0].islower()}
    assert functions - NO_ARRAYS - {"yolo_encode_batch"} == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_tensor_that_requires_grad_is_refused(name):
    arg, call = CALLS[name]
    t = grad(VALUES.get(name, BOXES))
    pattern = (
        f"^{re.escape(name)}\\(\\): {re.escape(arg)} must not require a gradient, got a torch "
        f"tensor with requires_grad=True; pass {re.escape(arg)}\\.detach\\(\\)"
    )
    with pytest.raises(TypeError, match=pattern) as info:
        call(t)
    assert "At:" not in str(info.value)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_detached_tensor_is_accepted(name):
    _, call = CALLS[name]
    t = grad(VALUES.get(name, BOXES))
    call(t.detach())


def test_yolo_encode_batch_refuses_a_tensor_in_its_lists():
    with pytest.raises(TypeError, match=r"must not require a gradient.*\.detach\(\)") as info:
        ops.yolo_encode_batch(
            [grad(BOXES)], [[0, 0]], grid=2, anchors=[[1, 1]], num_classes=1, image_size=8
        )
    assert "At:" not in str(info.value)


def test_per_image_roi_boxes_refuse_a_tensor():
    with pytest.raises(TypeError, match=r"^roi_align\(\): boxes\[0\] must not require a gradient"):
        ops.roi_align(IMAGES, [grad(BOXES)], 2)


def test_unconvertible_input_message_has_no_trace_lines():
    class Broken:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("no array here")

    with pytest.raises(TypeError, match=r"^max_pool\(\): x must be an array-like") as info:
        ops.max_pool(Broken(), 2)
    assert "At:" not in str(info.value) and "no array here" in str(info.value)
