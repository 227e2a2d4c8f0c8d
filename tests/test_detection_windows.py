"""Sliding windows: the convolutional form equals per-window classification; window detection
and bilinear resizing; YOLO detect on known outputs; the YOLO model builder."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import layers, ops
from cnnkit.detection import (
    detect,
    localization_cnn,
    resize_bilinear,
    sliding_window_detect,
    to_fully_convolutional,
    yolo_model,
)


def classifier(window, channels, seed, *, pool=2, head=("relu", "softmax"), dropout=True):
    stack = [
        layers.Input((window, window, channels)),
        layers.Conv2D(6, 3, activation="relu"),
        layers.MaxPooling2D(pool),
        layers.Conv2D(8, 3, activation="tanh"),
        layers.Flatten(),
        layers.Dense(10, activation=head[0]),
    ]
    if dropout:
        stack.append(layers.Dropout(0.5))
    stack.append(layers.Dense(3, activation=head[1]))
    return cnnkit.Sequential(stack, seed=seed)


@given(
    seed=st.integers(0, 1000),
    extra=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    channels=st.integers(1, 3),
    pool=st.sampled_from([1, 2]),
)
def test_fully_convolutional_equals_per_window_predictions(seed, extra, channels, pool):
    window = 12
    model = classifier(window, channels, seed, pool=pool)
    converted = to_fully_convolutional(model)
    stride = pool  # the network's total stride
    size = (window + stride * extra[0], window + stride * extra[1])
    image = np.random.default_rng(seed).random((2, *size, channels)).astype(np.float32)
    grid = converted.predict(image)
    crops = ops.sliding_windows(image, window, stride)
    n, rows, cols = crops.shape[:3]
    plain = model.predict(crops.reshape(-1, window, window, channels))
    assert grid.shape == (n, rows, cols, 3)
    np.testing.assert_allclose(grid, plain.reshape(n, rows, cols, 3), rtol=1e-5, atol=1e-6)


def test_fully_convolutional_copies_the_weights():
    model = classifier(10, 1, 0)
    converted = to_fully_convolutional(model)
    before = converted.predict(np.ones((1, 10, 10, 1), np.float32))
    for w in model.weights:
        w.data[...] = 0
    np.testing.assert_array_equal(converted.predict(np.ones((1, 10, 10, 1), np.float32)), before)


def test_fully_convolutional_rejections():
    with pytest.raises(TypeError, match=r"to_fully_convolutional\(\): model must be a built"):
        to_fully_convolutional(object())
    no_flatten = cnnkit.Sequential(
        [layers.Input((4, 4, 1)), layers.GlobalAveragePooling2D(), layers.Dense(2)]
    )
    with pytest.raises(ValueError, match="exactly one Flatten"):
        to_fully_convolutional(no_flatten)
    reshape_head = cnnkit.Sequential(
        [layers.Input((4, 4, 1)), layers.Conv2D(2, 3), layers.Flatten(), layers.Reshape((8,))]
    )
    with pytest.raises(ValueError, match=r"cannot convert layer .* \(Reshape\) after Flatten"):
        to_fully_convolutional(reshape_head)


def test_resize_bilinear_matches_torch_and_keeps_constants():
    rng = np.random.default_rng(0)
    images = rng.random((2, 7, 9, 3)).astype(np.float32)
    flat = np.full((1, 5, 5, 2), 0.25, np.float32)
    np.testing.assert_allclose(resize_bilinear(flat, (11, 3)), 0.25)
    np.testing.assert_array_equal(resize_bilinear(images, (7, 9)), images)
    torch = pytest.importorskip("torch")
    for size in [(14, 18), (4, 5), (7, 20)]:
        expected = (
            torch.nn.functional.interpolate(
                torch.from_numpy(images).permute(0, 3, 1, 2),
                size=size,
                mode="bilinear",
                align_corners=False,
                antialias=False,
            )
            .permute(0, 2, 3, 1)
            .numpy()
        )
        np.testing.assert_allclose(resize_bilinear(images, size), expected, atol=1e-6)


def test_resize_bilinear_rejections():
    with pytest.raises(ValueError, match=r"resize_bilinear\(\): images must have shape"):
        resize_bilinear(np.zeros((4, 4, 3)), (2, 2))
    with pytest.raises(ValueError, match=r"resize_bilinear\(\): size must be positive"):
        resize_bilinear(np.zeros((1, 4, 4, 3)), (0, 2))


class BrightWindowClassifier:
    """Class 1 with the window's bright fraction as its probability; class 0 is background."""

    def predict(self, crops, batch_size=32):
        bright = crops[..., 0].mean(axis=(1, 2))
        return np.stack([1 - bright, bright, np.zeros_like(bright)], axis=1)


def test_sliding_window_detect_finds_the_object_at_each_scale():
    image = np.zeros((40, 40, 1), np.float32)
    image[12:20, 20:28] = 1.0  # an 8 x 8 bright square
    found = sliding_window_detect(
        BrightWindowClassifier(), image, 8, 4, score_threshold=0.6, iou_threshold=0.3
    )
    assert found["classes"].tolist() == [1]
    np.testing.assert_allclose(found["boxes"][0], [20, 12, 28, 20])
    np.testing.assert_allclose(found["scores"], [1.0])
    # At half size the square is 4 x 4 (rows 6-9, columns 10-13); of the tied 8 x 8 windows
    # holding all of it, NMS keeps the first (row 2, column 6): 16 x 16 original pixels.
    found = sliding_window_detect(
        BrightWindowClassifier(),
        image,
        8,
        2,
        scales=(0.5,),
        score_threshold=0.2,
        iou_threshold=0.1,
    )
    assert found["classes"].tolist() == [1]
    np.testing.assert_allclose(found["boxes"][0], [12, 4, 28, 20])
    np.testing.assert_allclose(found["scores"], [0.25])
    with pytest.raises(ValueError, match=r"sliding_window_detect\(\): scales must be positive"):
        sliding_window_detect(BrightWindowClassifier(), image, 8, 4, scales=(0,))
    with pytest.raises(ValueError, match=r"sliding_window_detect\(\): image must have shape"):
        sliding_window_detect(BrightWindowClassifier(), image[None], 8, 4)


class FixedOutputModel:
    def __init__(self, raw):
        self.raw = raw

    def predict(self, images, batch_size=32):
        return self.raw[: len(images)]


def raw_from_target(y, anchors, image_size):
    """Raw outputs whose activation is (close to) the target y: the inverse of activate()."""
    n, gh, gw, a, d = y.shape
    raw = np.full(y.shape, -20.0)  # empty anchors: pc = sigmoid(-20)
    obj = y[..., 0] > 0
    eps = 1e-6
    bxy = np.clip(y[..., 1:3], eps, 1 - eps)
    raw[..., 1:3] = np.log(bxy / (1 - bxy))
    cell = np.array([image_size[0] / gh, image_size[1] / gw])
    anchor_hw = np.stack([anchors[:, 1] / cell[0], anchors[:, 0] / cell[1]], 1)
    raw[..., 3:5] = np.log(np.where(obj[..., None], y[..., 3:5], 1) / anchor_hw)
    raw[..., 0] = np.where(obj, 20.0, -20.0)
    raw[..., 5:] = np.where(y[..., 5:] > 0, 20.0, -20.0)
    return raw.reshape(n, gh, gw, a * d).astype(np.float32)


def test_detect_recovers_encoded_boxes():
    anchors = np.array([[10.0, 10.0], [24.0, 12.0]])
    size = (64, 64)
    boxes = [np.array([[4.0, 6.0, 20.0, 18.0], [30.0, 30.0, 60.0, 44.0]]), np.zeros((0, 4))]
    classes = [np.array([2, 0]), np.zeros(0, np.int64)]
    y, dropped = ops.yolo_encode_batch(
        boxes, classes, grid=8, anchors=anchors, num_classes=3, image_size=size
    )
    assert dropped.tolist() == [0, 0]
    model = FixedOutputModel(raw_from_target(y, anchors, size))
    found = detect(model, np.zeros((2, *size, 3), np.float32), anchors=anchors)
    order = np.argsort(found[0]["classes"])
    np.testing.assert_allclose(found[0]["boxes"][order], boxes[0][[1, 0]], atol=1e-3)
    assert found[0]["classes"][order].tolist() == [0, 2]
    assert len(found[1]["boxes"]) == 0 and found[1]["boxes"].shape == (0, 4)
    with pytest.raises(ValueError, match=r"detect\(\): images must have shape \(N, H, W, C\)"):
        detect(model, np.zeros((64, 64, 3)), anchors=anchors)
    with pytest.raises(ValueError, match=r"detect\(\): max_detections must be a positive int"):
        detect(model, np.zeros((1, 64, 64, 3)), anchors=anchors, max_detections=0)


def test_yolo_model_shapes_and_rejections():
    model = yolo_model((32, 48, 3), num_anchors=2, num_classes=4, width=4, downsamples=2)
    out = model.predict(np.zeros((3, 32, 48, 3), np.float32))
    assert out.shape == (3, 8, 12, 2 * 9)
    with pytest.raises(ValueError, match=r"yolo_model\(\): input_shape must be .* divisible by"):
        yolo_model((30, 32, 3), num_anchors=1, num_classes=1)
    with pytest.raises(ValueError, match=r"yolo_model\(\): num_classes must be a positive int"):
        yolo_model(num_anchors=1, num_classes=0)


@pytest.mark.parametrize(
    ("downsamples", "exc", "text"),
    [
        (2**31, ValueError, "downsamples must be <= 62, got 2147483648"),  # 2 ** (2**31) hung
        (-1, ValueError, "downsamples must be >= 0, got -1"),  # 2 ** -1 = 0.5 was a float scale
        ("3", TypeError, "downsamples must be an int, got str"),
    ],
)
def test_yolo_model_checks_downsamples_before_raising_two_to_it(downsamples, exc, text):
    with pytest.raises(exc, match=r"^yolo_model\(\): " + re.escape(text)):
        yolo_model((32, 32, 3), num_anchors=1, num_classes=1, downsamples=downsamples)


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        # A NaN threshold silently kept no window; background=5 was an IndexError.
        (
            {"score_threshold": float("nan")},
            ValueError,
            "score_threshold must be in [0, 1], got nan",
        ),
        ({"score_threshold": "0.5"}, TypeError, "score_threshold must be a real number, got str"),
        ({"iou_threshold": 2.0}, ValueError, "iou_threshold must be in [0, 1], got 2"),
        (
            {"background": 5},
            ValueError,
            "background must be a class index of the classifier's 3 outputs, got 5",
        ),
        ({"background": -1}, ValueError, "background must be >= 0, got -1"),
    ],
)
def test_sliding_window_detect_checks_thresholds_and_background(kwargs, exc, text):
    image = np.zeros((16, 16, 1), np.float32)
    with pytest.raises(exc, match="^" + re.escape(f"sliding_window_detect(): {text}")):
        sliding_window_detect(BrightWindowClassifier(), image, 8, 4, **kwargs)


def test_model_builders_name_an_input_shape_or_filters_that_is_not_a_sequence():
    # tuple(64) was "'int' object is not iterable"; yolo_model took (64.5, 64, 3) as 64.
    with pytest.raises(TypeError, match=r"^yolo_model\(\): input_shape must be a tuple of ints"):
        yolo_model(64, num_anchors=1, num_classes=1)
    with pytest.raises(TypeError, match=r"^yolo_model\(\): input_shape must be an int, got float"):
        yolo_model((64.5, 64, 3), num_anchors=1, num_classes=1)
    with pytest.raises(TypeError, match=r"^localization_cnn\(\): input_shape must be a sequence"):
        localization_cnn(16, 3)
    with pytest.raises(TypeError, match=r"^localization_cnn\(\): filters must be a sequence"):
        localization_cnn((16, 16, 3), 3, filters=8)
