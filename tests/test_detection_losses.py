"""YOLO and localization losses: gradients (float64 finite differences), hand-computed values,
"don't care" entries, and the raw-output activation."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.autograd import Tensor
from cnnkit.detection.localization import LocalizationLoss, decode_localization
from cnnkit.detection.yolo import YoloLoss, activate

ANCHORS = np.array([[8.0, 16.0], [20.0, 10.0]])  # (width, height) pixels
IMAGE = (32, 48)


def yolo_target(rng, n, gh, gw, classes):
    y = np.zeros((n, gh, gw, len(ANCHORS), 5 + classes))
    obj = rng.random(y.shape[:-1]) < 0.3
    y[..., 0] = obj
    y[..., 1:3] = rng.random((*y.shape[:-1], 2)) * obj[..., None]
    y[..., 3:5] = (rng.random((*y.shape[:-1], 2)) * 2 + 0.2) * obj[..., None]
    labels = rng.integers(0, classes, y.shape[:-1])
    y[..., 5:] = np.eye(classes)[labels] * obj[..., None]
    return y


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def yolo_loss_numpy(y, raw, weights=(5.0, 1.0, 0.5, 1.0)):
    coord, wobj, wnoobj, wcls = weights
    n, gh, gw = y.shape[:3]
    t = raw.reshape(y.shape)
    obj = y[..., 0]
    p = sigmoid(t[..., 0])
    bce = -(obj * np.log(p) + (1 - obj) * np.log(1 - p))
    total = np.sum(bce * np.where(obj > 0, wobj, wnoobj))
    cell_h, cell_w = IMAGE[0] / gh, IMAGE[1] / gw
    anchor_hw = np.stack([ANCHORS[:, 1] / cell_h, ANCHORS[:, 0] / cell_w], 1)
    for idx in zip(*np.nonzero(obj)):
        k = idx[-1]
        row, target = t[idx], y[idx]
        box = np.sum((sigmoid(row[1:3]) - target[1:3]) ** 2)
        box += np.sum((row[3:5] - np.log(target[3:5] / anchor_hw[k])) ** 2)
        logits = row[5:] - row[5:].max()
        log_p = logits - np.log(np.exp(logits).sum())
        total += coord * box - wcls * np.sum(log_p * target[5:])
    return total / n


@given(
    seed=st.integers(0, 2**16),
    grid=st.sampled_from([(1, 1), (2, 3), (4, 4)]),
    classes=st.integers(1, 3),
)
def test_yolo_loss_value_and_gradient(seed, grid, classes):
    rng = np.random.default_rng(seed)
    y = yolo_target(rng, 2, *grid, classes)
    raw = rng.standard_normal((2, *grid, len(ANCHORS) * (5 + classes)))
    loss = YoloLoss(ANCHORS, IMAGE)
    np.testing.assert_allclose(loss(y, Tensor(raw)).item(), yolo_loss_numpy(y, raw), rtol=1e-10)
    check_gradients(lambda r: loss(y, r), [raw])


def test_yolo_loss_weights_and_dont_care_entries():
    rng = np.random.default_rng(0)
    y = yolo_target(rng, 3, 2, 2, 2)
    raw = rng.standard_normal((3, 2, 2, len(ANCHORS) * 7))
    weights = (2.0, 0.7, 0.1, 3.0)
    loss = YoloLoss(
        ANCHORS, IMAGE, lambda_coord=2.0, lambda_obj=0.7, lambda_noobj=0.1, lambda_class=3.0
    )
    np.testing.assert_allclose(loss(y, raw).item(), yolo_loss_numpy(y, raw, weights))
    # Box and class outputs of empty anchors do not matter.
    noisy = raw.reshape(y.shape).copy()
    empty = y[..., 0] == 0
    noisy[..., 1:][empty] += 5.0
    np.testing.assert_allclose(loss(y, noisy.reshape(raw.shape)).item(), loss(y, raw).item())


def test_yolo_loss_rejects_bad_shapes_and_weights():
    loss = YoloLoss(ANCHORS, IMAGE)
    with pytest.raises(ValueError, match=r"YoloLoss\(\): the network output must have shape"):
        loss(np.zeros((1, 2, 2, 2, 7)), np.zeros((1, 2, 2, 13)))
    with pytest.raises(ValueError, match=r"YoloLoss\(\): y_true must be yolo_encode targets"):
        loss(np.zeros((1, 2, 2, 2, 8)), np.zeros((1, 2, 2, 14)))
    with pytest.raises(ValueError, match=r"YoloLoss\(\): anchors must be a non-empty \(A, 2\)"):
        YoloLoss([[1.0, -2.0]], IMAGE)
    with pytest.raises(ValueError, match=r"YoloLoss\(\): image_size must be a positive int"):
        YoloLoss(ANCHORS, 0)
    with pytest.raises(ValueError, match=r"YoloLoss\(\): lambda_noobj must be a finite number"):
        YoloLoss(ANCHORS, IMAGE, lambda_noobj=-1)


def test_activate_inverts_the_loss_parametrisation():
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((2, 2, 3, len(ANCHORS) * 6)).astype(np.float32)
    out = activate(raw, ANCHORS, IMAGE)
    t = raw.reshape(out.shape)
    assert out.dtype == np.float32 and out.shape == (2, 2, 3, 2, 6)
    np.testing.assert_allclose(out[..., :3], sigmoid(t[..., :3]), rtol=1e-6)
    cell_h, cell_w = IMAGE[0] / 2, IMAGE[1] / 3
    np.testing.assert_allclose(
        out[..., 0, 3], ANCHORS[0, 1] / cell_h * np.exp(t[..., 0, 3]), rtol=1e-5
    )
    np.testing.assert_allclose(
        out[..., 1, 4], ANCHORS[1, 0] / cell_w * np.exp(t[..., 1, 4]), rtol=1e-5
    )
    np.testing.assert_allclose(out[..., 5], 1.0)  # one class: probability 1
    huge = activate(np.full((1, 1, 1, 12), 1e4, np.float32), ANCHORS, IMAGE)
    assert np.all(np.isfinite(huge))


def localization_case(rng, n, classes):
    y = np.zeros((n, 5 + classes))
    y[:, 0] = rng.random(n) < 0.6
    y[:, 1:5] = rng.random((n, 4)) * y[:, :1]
    y[:, 5:] = np.eye(classes)[rng.integers(0, classes, n)] * y[:, :1]
    return y, rng.standard_normal((n, 5 + classes))


@given(seed=st.integers(0, 2**16), n=st.integers(1, 5), classes=st.integers(1, 4))
def test_localization_loss_value_and_gradient(seed, n, classes):
    y, raw = localization_case(np.random.default_rng(seed), n, classes)
    loss = LocalizationLoss(box_weight=2.0, class_weight=0.5)
    p = sigmoid(raw[:, 0])
    expected = -(y[:, 0] * np.log(p) + (1 - y[:, 0]) * np.log(1 - p))
    expected += 2.0 * y[:, 0] * np.sum((sigmoid(raw[:, 1:5]) - y[:, 1:5]) ** 2, axis=1)
    z = raw[:, 5:] - raw[:, 5:].max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected -= 0.5 * y[:, 0] * np.sum(log_p * y[:, 5:], axis=1)
    np.testing.assert_allclose(loss(y, raw).item(), expected.mean(), rtol=1e-10)
    check_gradients(lambda r: loss(y, r), [raw])


def test_localization_decode_and_errors():
    raw = np.array([[0.0, 0.0, 100.0, -100.0, 0.0, 1.0, 3.0]])
    out = decode_localization(raw)
    np.testing.assert_allclose(out["pc"], [0.5])
    np.testing.assert_allclose(out["box"], [[0.5, 1.0, 0.0, 0.5]], atol=1e-30)
    assert out["classes"].tolist() == [1]
    with pytest.raises(ValueError, match=r"LocalizationLoss: y_true must have the shape"):
        LocalizationLoss()(np.zeros((2, 7)), np.zeros((3, 7)))
    with pytest.raises(ValueError, match=r"LocalizationLoss: y_pred must have shape \(N, 5 \+ C\)"):
        LocalizationLoss()(np.zeros((2, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"LocalizationLoss\(\): box_weight must be finite"):
        LocalizationLoss(box_weight=np.nan)
    with pytest.raises(ValueError, match=r"decode_localization\(\): raw must have shape"):
        decode_localization(np.zeros(7))


def test_yolo_loss_names_a_non_numeric_weight_and_a_float_image_size():
    # 'a' was float()'s "could not convert string to float"; 16.5 was "'float' object is
    # not iterable".
    with pytest.raises(
        TypeError, match=r"^YoloLoss\(\): lambda_obj must be a finite number >= 0, got str 'a'"
    ):
        YoloLoss(ANCHORS, IMAGE, lambda_obj="a")
    with pytest.raises(
        TypeError,
        match=r"^YoloLoss\(\): image_size must be a positive int or \(height, width\), got float",
    ):
        YoloLoss(ANCHORS, 16.5)
    with pytest.raises(TypeError, match=r"^activate\(\): image_size must be a positive int"):
        activate(np.zeros((1, 2, 2, 7)), ANCHORS[:1], 16.5)
