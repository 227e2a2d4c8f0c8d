"""Classification pre-training of face encoders: cosine classifier, CosFace loss, pre-training."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients

import cnnkit
from cnnkit import load_model
from cnnkit.autograd import Tensor
from cnnkit.datasets import faces
from cnnkit.face import CosineClassifier, MarginSoftmaxLoss, build_encoder, pretrain_encoder
from cnnkit.face.classification import cosines
from cnnkit.face.demo import FaceDemoConfig, train_encoder


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _reference_loss(cos: np.ndarray, labels: np.ndarray, s: float, m: float) -> np.ndarray:
    logits = s * cos
    logits[np.arange(len(labels)), labels] -= s * m
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def test_cosines_match_numpy_and_gradients():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    want = _unit_rows(x) @ _unit_rows(w.T).T
    np.testing.assert_allclose(cosines(x, w).data, want, atol=1e-12)
    check_gradients(cosines, [x, w])


def test_layer_outputs_cosines_and_round_trips(tmp_path):
    layer = CosineClassifier(6, dtype="float64")
    x = np.random.default_rng(1).standard_normal((4, 3))
    out = layer(Tensor(x)).data
    kernel = layer.get_weights()[0]
    assert kernel.shape == (3, 6)
    np.testing.assert_allclose(out, _unit_rows(x) @ _unit_rows(kernel.T).T, atol=1e-12)
    assert np.all(np.abs(out) <= 1 + 1e-12)
    assert CosineClassifier.from_config(layer.get_config()).units == 6


@pytest.mark.parametrize("margin", [0.0, 0.35])
def test_loss_matches_the_formula_and_gradients(margin):
    rng = np.random.default_rng(2)
    cos = np.tanh(rng.standard_normal((6, 5)))
    labels = rng.integers(0, 5, 6)
    loss = MarginSoftmaxLoss(scale=8.0, margin=margin)
    want = _reference_loss(cos.copy(), labels, 8.0, margin).mean()
    assert loss(labels, Tensor(cos)).item() == pytest.approx(want, rel=1e-12)
    check_gradients(lambda t: loss(labels, t), [cos])


def test_margin_raises_the_loss_of_the_true_class():
    cos = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]])
    labels = np.array([0, 1])
    plain = MarginSoftmaxLoss(10.0, 0.0)(labels, Tensor(cos)).item()
    assert MarginSoftmaxLoss(10.0, 0.3)(labels, Tensor(cos)).item() > plain


def test_bad_input():
    with pytest.raises(ValueError, match="units"):
        CosineClassifier(0)
    with pytest.raises(ValueError, match="scale"):
        MarginSoftmaxLoss(scale=0.0)
    with pytest.raises(ValueError, match="margin"):
        MarginSoftmaxLoss(margin=-0.1)
    with pytest.raises(TypeError, match="margin"):
        MarginSoftmaxLoss(margin="big")
    loss = MarginSoftmaxLoss()
    cos = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        loss(np.array([0, 3]), cos)
    with pytest.raises(ValueError, match="one class index per row"):
        loss(np.array([0, 1, 2]), cos)
    with pytest.raises(ValueError, match=r"shape \(batch, classes\)"):
        loss(np.array([0]), Tensor(np.zeros(3)))
    layer = CosineClassifier(2)
    layer(Tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        layer(Tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match="steps"):
        pretrain_encoder(build_encoder((8, 8, 3)), np.zeros((4, 8, 8, 3)), [0, 0, 1, 1], steps=0)


def _margins(encoder, data) -> float:
    """Mean over images of (nearest other-person distance - own-person distance)."""
    e = encoder.predict(data.images, verbose=0)
    d = np.sqrt(np.maximum(2 - 2 * e @ e.T, 0))
    same = data.labels[:, None] == data.labels[None]
    np.fill_diagonal(d, np.nan)
    own = np.nanmean(np.where(same, d, np.nan), 1)
    other = np.nanmin(np.where(same, np.nan, d), 1)
    return float(np.mean(other - own))


def test_pretraining_separates_the_training_people(tmp_path):
    data = faces(12, 4, size=24, seed=0)
    encoder = build_encoder((24, 24, 3), embedding_dim=16, filters=(8, 16), seed=0)
    before = _margins(encoder, data)
    model = pretrain_encoder(
        encoder, data.images, data.labels, steps=60, p=6, k=2, learning_rate=3e-3, scale=10.0
    )
    after = _margins(encoder, data)
    assert after > before + 0.1, (before, after)
    # the classifier shares the encoder's weights and saves with its proxies
    assert model.get_layer("identity_proxies").get_weights()[0].shape == (16, 12)
    encoder.save(tmp_path / "enc.cnnkit")
    again = load_model(tmp_path / "enc.cnnkit")
    np.testing.assert_array_equal(
        again.predict(data.images[:3], verbose=0), encoder.predict(data.images[:3], verbose=0)
    )
    model.save(tmp_path / "classifier.cnnkit")
    cos = load_model(tmp_path / "classifier.cnnkit").predict(data.images[:3], verbose=0)
    np.testing.assert_array_equal(cos, model.predict(data.images[:3], verbose=0))
    assert cos.shape == (3, 12) and np.all(np.abs(cos) <= 1 + 1e-6)


def test_loss_and_gradient_identical_at_one_and_two_threads():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 32)).astype(np.float32)
    w = rng.standard_normal((32, 300)).astype(np.float32)
    labels = rng.integers(0, 300, 40)
    before = cnnkit.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            a, b = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
            loss = MarginSoftmaxLoss()(labels, cosines(a, b))
            loss.backward()
            results.append((loss.item(), a.grad.copy(), b.grad.copy()))
    finally:
        cnnkit.set_num_threads(before)
    assert results[0][0] == results[1][0]
    for one, two in zip(results[0][1:], results[1][1:]):
        np.testing.assert_array_equal(one, two)


def test_train_encoder_with_pretraining_alone_and_then_triplets():
    data = faces(10, 4, size=24, seed=1)
    c = FaceDemoConfig(
        size=24, p=5, k=2, epochs=1, steps_per_epoch=0, filters=(8, 16), pretrain_steps=5
    )
    alone = train_encoder(data.images, data.labels, c, verbose=0)
    both = train_encoder(
        data.images,
        data.labels,
        FaceDemoConfig(
            size=24,
            p=5,
            k=2,
            epochs=1,
            steps_per_epoch=3,
            filters=(8, 16),
            pretrain_steps=5,
            finetune_learning_rate=1e-4,
        ),
        verbose=0,
    )
    a, b = (m.predict(data.images[:4], verbose=0) for m in (alone, both))
    assert a.shape == b.shape == (4, 128)
    assert not np.array_equal(a, b)  # the triplet steps moved the pre-trained weights
