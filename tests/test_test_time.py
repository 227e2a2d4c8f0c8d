"""Test-time augmentation: five/ten crops (torchvision's layout), predict_tta, Ensemble,
weighted boxes fusion against the ensemble-boxes package, and flip TTA for detection."""

from __future__ import annotations

import warnings

import numpy as np
import peers
import pytest

import cnnkit.augment as A


def test_five_and_ten_crop_layout():
    x = np.arange(2 * 7 * 9 * 1, dtype=np.float32).reshape(2, 7, 9, 1)
    five = A.five_crop(x, (3, 4))
    assert five.shape == (2, 5, 3, 4, 1)
    np.testing.assert_array_equal(five[:, 0], x[:, :3, :4])
    np.testing.assert_array_equal(five[:, 1], x[:, :3, 5:])
    np.testing.assert_array_equal(five[:, 2], x[:, 4:, :4])
    np.testing.assert_array_equal(five[:, 3], x[:, 4:, 5:])
    np.testing.assert_array_equal(five[:, 4], x[:, 2:5, 2:6])  # round(4/2), round(5/2) = 2, 2
    ten = A.ten_crop(x[0], 3)
    assert ten.shape == (10, 3, 3, 1)
    np.testing.assert_array_equal(ten[5], x[0, :3, ::-1][:, :3])
    np.testing.assert_array_equal(ten[:5], A.five_crop(x[0], 3))


def test_ten_crop_matches_torchvision():
    torchvision = peers.torchvision()
    import torch

    x = (np.random.default_rng(0).random((11, 14, 3)) * 255).astype(np.uint8)
    theirs = torchvision.transforms.v2.functional.ten_crop(
        torch.from_numpy(x).permute(2, 0, 1), [5, 6]
    )
    ours = A.ten_crop(x, (5, 6))
    for k in range(10):
        np.testing.assert_array_equal(ours[k], theirs[k].permute(1, 2, 0).numpy())


class _Linear:
    """A model whose output is a fixed linear map of the mean of each channel."""

    def __init__(self, seed):
        self.w = np.random.default_rng(seed).standard_normal((3, 4))
        self.calls = 0

    def predict(self, x, batch_size=32, verbose=0):
        self.calls += 1
        return np.asarray(x, np.float64).mean((1, 2)) @ self.w


def test_predict_tta_averages_over_the_crops():
    x = np.random.default_rng(1).random((3, 10, 12, 3)).astype(np.float32)
    model = _Linear(0)
    got = A.predict_tta(model, x, crops="ten", size=(6, 8), from_logits=True)
    crops = A.ten_crop(x, (6, 8))
    logits = np.stack([model.predict(crops[:, k]) for k in range(10)], 1)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(got, probs.mean(1), rtol=1e-10)
    np.testing.assert_allclose(got.sum(1), 1.0)
    centre = A.predict_tta(model, x, crops="center", size=(6, 8))
    np.testing.assert_allclose(centre, model.predict(x[:, 2:8, 2:10]))
    flip = A.predict_tta(model, x, crops="flip")
    np.testing.assert_allclose(flip, model.predict(x))  # channel means ignore the flip


def test_ensemble_averages_members():
    x = np.random.default_rng(2).random((5, 4, 4, 3)).astype(np.float32)
    members = [_Linear(k) for k in range(3)]
    outs = [m.predict(x) for m in members]
    np.testing.assert_allclose(A.Ensemble(members).predict(x), np.mean(outs, 0))
    weighted = A.Ensemble(members, weights=[1, 0, 3]).predict(x)
    np.testing.assert_allclose(weighted, (outs[0] + 3 * outs[2]) / 4)
    with pytest.raises(ValueError, match=r"Ensemble\(\): weights must be 3 numbers >= 0"):
        A.Ensemble(members, weights=[1, -1, 1])
    with pytest.raises(TypeError, match=r"Ensemble\(\): models must be a non-empty list"):
        A.Ensemble([])


def _random_predictions(rng, n_models, n_boxes, n_labels):
    boxes, scores, labels = [], [], []
    for _ in range(n_models):
        centre = rng.random((n_boxes, 2)) * 0.8 + 0.1
        size = rng.random((n_boxes, 2)) * 0.3 + 0.02
        b = np.concatenate([centre - size / 2, centre + size / 2], 1)
        boxes.append(b)
        scores.append(rng.random(n_boxes))
        labels.append(rng.integers(0, n_labels, n_boxes))
    return boxes, scores, labels


@pytest.mark.parametrize("conf_type", ["avg", "max", "box_and_model_avg", "absent_model_aware_avg"])
def test_weighted_boxes_fusion_matches_ensemble_boxes(conf_type):
    ensemble_boxes = pytest.importorskip("ensemble_boxes")
    rng = np.random.default_rng(3)
    for trial in range(25):
        n_models = int(rng.integers(1, 5))
        preds = _random_predictions(rng, n_models, int(rng.integers(0, 30)), 3)
        weights = rng.random(n_models) + 0.5 if trial % 2 else None
        kwargs = {"weights": weights, "iou_thr": 0.5, "skip_box_thr": 0.1, "conf_type": conf_type}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = ensemble_boxes.weighted_boxes_fusion(*preds, **kwargs)
        got = A.weighted_boxes_fusion(*preds, **kwargs)
        assert len(got[0]) == len(want[0])
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5)


def test_weighted_boxes_fusion_by_hand():
    boxes = [
        np.array([[0.1, 0.1, 0.5, 0.5]]),
        np.array([[0.12, 0.1, 0.52, 0.5], [0.7, 0.7, 0.9, 0.9]]),
    ]
    scores = [np.array([0.9]), np.array([0.6, 0.8])]
    labels = [np.array([0]), np.array([0, 1])]
    b, s, lab = A.weighted_boxes_fusion(boxes, scores, labels)
    np.testing.assert_allclose(
        b[0], [(0.9 * 0.1 + 0.6 * 0.12) / 1.5, 0.1, (0.9 * 0.5 + 0.6 * 0.52) / 1.5, 0.5]
    )
    np.testing.assert_allclose(s, [0.75, 0.4])  # two of two models agree; one of two
    np.testing.assert_array_equal(lab, [0, 1])
    empty = A.weighted_boxes_fusion([np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0)])
    assert empty[0].shape == (0, 4)
    with pytest.raises(ValueError, match=r"weighted_boxes_fusion\(\): conf_type must be one of"):
        A.weighted_boxes_fusion(boxes, scores, labels, conf_type="mean")
    with pytest.raises(ValueError, match=r"model 1 has 2 boxes, 1 scores and 2 labels"):
        A.weighted_boxes_fusion(boxes, [scores[0], scores[0]], labels)


def test_flip_tta_with_an_equivariant_detector_returns_its_boxes():
    x = np.zeros((2, 20, 30, 3), np.float32)
    truth = [np.array([[3.0, 4.0, 10.0, 12.0]]), np.array([[15.0, 2.0, 29.0, 9.0]])]

    def detect(images):
        flipped = not np.array_equal(images, x)
        return [
            {
                "boxes": np.array([[30 - b[0, 2], b[0, 1], 30 - b[0, 0], b[0, 3]]])
                if flipped
                else b,
                "scores": np.array([0.8]),
                "classes": np.array([1]),
            }
            for b in truth
        ]

    x[:, :, :15] = 1.0  # not symmetric, so the detector can tell the mirror apart
    out = A.flip_tta(detect, x)
    for found, b in zip(out, truth):
        np.testing.assert_allclose(found["boxes"], b, atol=1e-9)
        np.testing.assert_allclose(found["scores"], [0.8])
        assert found["classes"].tolist() == [1]


def test_ensemble_fit_trains_each_member_from_its_own_seed():
    import cnnkit
    from cnnkit import layers, losses

    rng = np.random.default_rng(4)
    x = rng.random((32, 6, 6, 1)).astype(np.float32)
    y = (x.mean((1, 2, 3)) > 0.5).astype(np.int64)
    members = [
        cnnkit.Sequential([layers.Input((6, 6, 1)), layers.Flatten(), layers.Dense(2)], seed=s)
        for s in (1, 2)
    ]
    before = [m.get_weights()[0].copy() for m in members]
    ensemble = A.Ensemble(members, from_logits=True)
    ensemble.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True))
    histories = ensemble.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert len(histories) == 2
    after = [m.get_weights()[0] for m in members]
    assert not np.array_equal(before[0], after[0]) and not np.array_equal(after[0], after[1])
    probs = ensemble.predict(x)
    np.testing.assert_allclose(probs.sum(1), 1.0)
