"""Losses: values against NumPy formulas (and torch where installed), float64 gradient checks,
numerical stability, sample weights, lookup and serialization, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import losses
from cnnkit.autograd import Tensor

shapes = st.sampled_from([(4, 3), (2, 5), (2, 3, 4), (1, 1)])
seeds = st.integers(0, 2**16)


def case(shape, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape) * 2
    labels = rng.integers(0, shape[-1], shape[:-1])
    one_hot = np.eye(shape[-1])[labels]
    return logits, labels, one_hot


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


@given(shape=shapes, seed=seeds)
def test_values_match_the_formulas(shape, seed):
    logits, labels, one_hot = case(shape, seed)
    p = np_softmax(logits)
    ce = -(one_hot * np.log(p)).sum(-1).mean()
    for loss, target, pred in [
        (losses.CategoricalCrossentropy(from_logits=True), one_hot, logits),
        (losses.CategoricalCrossentropy(), one_hot, p),
        (losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
        (losses.SparseCategoricalCrossentropy(), labels[..., None], p),
    ]:
        np.testing.assert_allclose(loss(target, pred).item(), ce, rtol=1e-6, atol=1e-6)
    y = (np.random.default_rng(seed).random(shape) > 0.5).astype(float)
    s = np_sigmoid(logits)
    bce = -(y * np.log(s) + (1 - y) * np.log(1 - s)).mean()
    np.testing.assert_allclose(losses.BinaryCrossentropy(from_logits=True)(y, logits).item(), bce)
    np.testing.assert_allclose(losses.BinaryCrossentropy()(y, s).item(), bce, rtol=1e-6)
    r = logits - y
    np.testing.assert_allclose(losses.MeanSquaredError()(y, logits).item(), np.mean(r**2))
    np.testing.assert_allclose(losses.MeanAbsoluteError()(y, logits).item(), np.mean(abs(r)))
    quad = np.minimum(abs(r), 1.5)
    expected = np.mean(0.5 * quad**2 + 1.5 * (abs(r) - quad))
    np.testing.assert_allclose(losses.Huber(delta=1.5)(y, logits).item(), expected)


@pytest.mark.parametrize(
    "loss, target_kind",
    [
        (losses.CategoricalCrossentropy(from_logits=True), "one_hot"),
        (losses.CategoricalCrossentropy(label_smoothing=0.1), "probabilities"),
        (losses.SparseCategoricalCrossentropy(from_logits=True), "labels"),
        (losses.BinaryCrossentropy(from_logits=True), "binary"),
        (losses.BinaryCrossentropy(), "binary_probabilities"),
        (losses.MeanSquaredError(), "binary"),
        (losses.MeanAbsoluteError(), "binary"),
        (losses.Huber(delta=0.5), "binary"),
    ],
)
@given(shape=shapes, seed=seeds)
def test_gradients(loss, target_kind, shape, seed):
    logits, labels, one_hot = case(shape, seed)
    binary = (np.random.default_rng(seed).random(shape) > 0.5).astype(float)
    if target_kind == "probabilities":
        check_gradients(lambda z: loss(one_hot, z), [0.5 * np_softmax(logits) + 0.1])
    elif target_kind == "binary_probabilities":
        check_gradients(lambda z: loss(binary, z), [np.clip(np_sigmoid(logits), 0.01, 0.99)])
    else:
        target = {"one_hot": one_hot, "labels": labels, "binary": binary}[target_kind]
        if target_kind == "binary" and isinstance(loss, (losses.MeanAbsoluteError, losses.Huber)):
            logits = np.where(np.abs(np.abs(logits - binary) - 0.5) < 0.01, 2.0, logits)
            logits = np.where(np.abs(logits - binary) < 0.01, 2.0, logits)
        check_gradients(lambda z: loss(target, z), [logits])


def test_stable_for_extreme_inputs():
    logits = Tensor(np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]), requires_grad=True)
    value = losses.SparseCategoricalCrossentropy(from_logits=True)([1, 0], logits)
    np.testing.assert_allclose(value.item(), 2000.0)
    value.backward()
    assert np.all(np.isfinite(logits.grad))
    probs = Tensor(np.array([[1.0, 0.0]]), requires_grad=True)
    value = losses.CategoricalCrossentropy()(np.array([[0.0, 1.0]]), probs)
    assert np.isfinite(value.item()) and value.item() > 15  # -log(1e-7), not inf
    value.backward()
    assert np.all(np.isfinite(probs.grad))
    bce = losses.BinaryCrossentropy(from_logits=True)(np.array([[1.0]]), np.array([[-800.0]]))
    np.testing.assert_allclose(bce.item(), 800.0)


def test_float32_stays_float32():
    z = Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    value = losses.CategoricalCrossentropy(from_logits=True)(np.eye(3)[[0, 1]], z)
    assert value.dtype == np.float32
    value.backward()
    assert z.grad.dtype == np.float32


def test_sample_weight():
    logits, labels, _ = case((4, 3), 0)
    per_sample = losses.sparse_categorical_crossentropy(labels, logits, from_logits=True).data
    w = np.array([1.0, 0.0, 2.0, 0.5])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(
        loss(labels, logits, sample_weight=w).item(), (per_sample * w).mean()
    )
    with pytest.raises(ValueError, match="sample_weight must broadcast"):
        loss(labels, logits, sample_weight=np.ones(3))


def test_torch_agrees():
    torch = pytest.importorskip("torch")
    logits, labels, one_hot = case((5, 4), 1)
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels))
    got = losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(got.item(), expected.item(), rtol=1e-12)
    expected = torch.nn.functional.huber_loss(
        torch.tensor(logits), torch.tensor(one_hot), delta=0.7
    )
    np.testing.assert_allclose(losses.Huber(0.7)(one_hot, logits).item(), expected.item())


def test_get_and_serialize():
    assert isinstance(losses.get("MSE"), losses.MeanSquaredError)
    assert isinstance(
        losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy
    )
    custom = lambda y, p: (p - y).sum()  # noqa: E731
    assert losses.get(custom) is custom
    original = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    copy = losses.deserialize(losses.serialize(original))
    assert copy.get_config() == original.get_config()
    assert losses.get(losses.serialize(losses.Huber(2.0))).delta == 2.0
    with pytest.raises(TypeError, match=r"losses.serialize\(\): function is not registered"):
        losses.serialize(custom)


def test_errors():
    with pytest.raises(ValueError, match=r"losses.get\(\): unknown name 'hinge'"):
        losses.get("hinge")
    with pytest.raises(TypeError, match=r"losses.get\(\): identifier must be a name, a dict"):
        losses.get(3)
    with pytest.raises(ValueError, match=r"losses.deserialize\(\): unknown loss class 'os.system'"):
        losses.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match=r"mean_squared_error\(\): y_true must have the shape"):
        losses.MeanSquaredError()(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="y_true must hold one class index per row"):
        losses.SparseCategoricalCrossentropy()(np.zeros((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"integer class indices in \[0, 4\), got values from"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 4]), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"integer class indices"):
        losses.SparseCategoricalCrossentropy()(np.array([0.5, 1]), np.ones((2, 4)))
    with pytest.raises(TypeError, match="y_pred must be a floating-point tensor"):
        losses.MeanSquaredError()(np.ones(2), np.ones(2, dtype=int))
    with pytest.raises(ValueError, match=r"Huber\(\): delta must be positive and finite, got 0"):
        losses.Huber(0)


Y1, P1 = [[1.0, 0.0]], [[0.7, 0.3]]
BAD_PARAMETER_CALLS = {
    "categorical_crossentropy(): label_smoothing": lambda v: losses.categorical_crossentropy(
        Y1, P1, label_smoothing=v
    ),
    "binary_crossentropy(): label_smoothing": lambda v: losses.binary_crossentropy(
        Y1, P1, label_smoothing=v
    ),
    "CategoricalCrossentropy(): label_smoothing": lambda v: losses.CategoricalCrossentropy(
        label_smoothing=v
    ),
    "BinaryCrossentropy(): label_smoothing": lambda v: losses.BinaryCrossentropy(label_smoothing=v),
    "huber(): delta": lambda v: losses.huber(Y1, P1, delta=v),
    "Huber(): delta": lambda v: losses.Huber(delta=v),
    "sigmoid_focal_loss(): alpha": lambda v: losses.sigmoid_focal_loss(Y1, P1, alpha=v),
    "sigmoid_focal_loss(): gamma": lambda v: losses.sigmoid_focal_loss(Y1, P1, gamma=v),
}


@pytest.mark.parametrize("named", sorted(BAD_PARAMETER_CALLS))
@pytest.mark.parametrize(
    ("value", "exc"), [(float("nan"), ValueError), (float("inf"), ValueError), ("0.1", TypeError)]
)
def test_loss_parameters_must_be_finite_numbers(named, value, exc):
    # The functions took these unchecked: NaN or inf made NaN losses (a NaN alpha silently
    # dropped the class weighting) and a string was NumPy's UFuncTypeError.
    with pytest.raises(exc, match="^" + re.escape(named) + " must be"):
        BAD_PARAMETER_CALLS[named](value)
