"""Sigmoid focal loss: cnnkit.ops (NumPy arrays) against cnnkit.reference, the autograd loss
(cnnkit.losses) against ops, float64 gradient checks, use in compile/fit, saving, errors,
and torchvision where it is installed."""

from __future__ import annotations

import numpy as np
import peers
import pytest
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import layers, losses, ops
from cnnkit import reference as ref
from cnnkit.autograd import Tensor

alphas = st.sampled_from([0.25, 0.5, 0.0, 1.0, -1.0])
gammas = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5])


@st.composite
def logits_and_targets(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(st.sampled_from([(0,), (1,), (3, 4), (2, 3, 5), (1, 1)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 4.0, 30.0]))
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    if draw(st.booleans()):
        t = rng.integers(0, 2, shape).astype(dtype)
    else:
        t = rng.random(shape).astype(dtype)  # soft labels
    return x, t


@given(data=logits_and_targets(), alpha=alphas, gamma=gammas)
def test_ops_matches_reference(data, alpha, gamma):
    x, t = data
    for reduction in ("none", "mean", "sum"):
        got = ops.sigmoid_focal_loss(x, t, alpha, gamma, reduction)
        want = ref.sigmoid_focal_loss(x, t, alpha, gamma, reduction)
        assert got.dtype == x.dtype and got.shape == want.shape
        tol = 2e-5 if x.dtype == np.float32 else 1e-11
        np.testing.assert_allclose(got, want, rtol=tol, atol=1e-30)


def test_ops_keeps_float32_accuracy_for_soft_labels_near_1():
    # max(x, 0) - x t cancelled for a large x and t near 1: 9.6e-4 relative error in float32
    # (Hypothesis found 3.8e-5 under the dev profile).
    x = np.array([14.490164, 30.0, -20.0], np.float32)
    t = np.array([0.9999925, 0.99999, 1e-6], np.float32)
    got = ops.sigmoid_focal_loss(x, t, 0.25, 0.5)
    want = ref.sigmoid_focal_loss(x.astype(np.float64), t.astype(np.float64), 0.25, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ops_is_stable_for_saturated_logits():
    x = np.array([-200.0, -40.0, 40.0, 200.0])
    got = ops.sigmoid_focal_loss(x, np.array([1.0, 1.0, 0.0, 0.0]), alpha=-1, gamma=0)
    np.testing.assert_allclose(got, [200, 40, 40, 200], rtol=1e-12)
    confident = ops.sigmoid_focal_loss(x, np.array([0.0, 0.0, 1.0, 1.0]))
    assert np.all((confident > 0) & (confident < 1e-50))  # tiny, not rounded to 0


@given(data=logits_and_targets(), alpha=alphas, gamma=gammas)
def test_loss_function_averages_ops_over_the_last_axis(data, alpha, gamma):
    x, t = data
    if x.size == 0:
        return
    got = losses.sigmoid_focal_loss(t, Tensor(x), alpha, gamma).data
    want = ops.sigmoid_focal_loss(x, t, alpha, gamma).mean(axis=-1)
    tol = 1e-5 if x.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=1e-30)
    mean = losses.SigmoidFocalLoss(alpha, gamma)(t, x).item()
    np.testing.assert_allclose(mean, ops.sigmoid_focal_loss(x, t, alpha, gamma, "mean"), rtol=tol)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_gradient(alpha, gamma):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3)) * 3
    t = rng.random((4, 3))
    loss = losses.SigmoidFocalLoss(alpha, gamma)
    check_gradients(lambda p: loss(t, p), [x])


def test_gradient_is_finite_where_the_sigmoid_saturates():
    x = Tensor(np.array([[60.0, -60.0]]), requires_grad=True)
    losses.SigmoidFocalLoss(gamma=0.5)(np.array([[1.0, 0.0]]), x).backward()
    assert np.all(np.isfinite(x.grad))


def test_usable_in_compile_fit_and_saving(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4, 4, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2)) > 0).astype(np.float32)

    def model_with(loss):
        model = cnnkit.Sequential([layers.Input((4, 4, 1)), layers.Flatten(), layers.Dense(1)])
        model.compile(cnnkit.optimizers.Adam(0.05), loss)
        return model

    by_name = model_with("sigmoid_focal_loss")
    np.testing.assert_allclose(
        by_name.evaluate(x, y, verbose=0),
        losses.SigmoidFocalLoss()(y, by_name.predict(x, verbose=0)).item(),
        rtol=1e-5,
    )
    model = model_with(losses.SigmoidFocalLoss(alpha=0.5, gamma=1.0))
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "focal.cnnkit"
    model.save(path)
    loaded = cnnkit.load_model(path)  # the loss is rebuilt from its configuration
    want = losses.SigmoidFocalLoss(alpha=0.5, gamma=1.0)(y, model.predict(x, verbose=0)).item()
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), want, rtol=1e-5)


def test_serialize_round_trip():
    original = losses.SigmoidFocalLoss(alpha=0.4, gamma=1.5, name="focal")
    copy = losses.deserialize(losses.serialize(original))
    assert copy.get_config() == {"name": "focal", "alpha": 0.4, "gamma": 1.5}


ERRORS = [
    (
        lambda: ops.sigmoid_focal_loss([1, 2], [0, 1]),
        TypeError,
        r"^sigmoid_focal_loss\(\): inputs must have dtype float32 or float64, got int64",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(3), np.zeros(2)),
        ValueError,
        r"^sigmoid_focal_loss\(\): targets must have the shape of inputs \(3,\), got shape \(2,\)",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), np.zeros(2, complex)),
        TypeError,
        r"^sigmoid_focal_loss\(\): targets must hold real numbers, got dtype complex128",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), ["a", "b"]),
        TypeError,
        r"^sigmoid_focal_loss\(\): targets must hold numbers, got an array of dtype <U1",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), np.zeros(2), alpha="x"),
        TypeError,
        r"^sigmoid_focal_loss\(\): alpha must be a real number, got str",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), np.zeros(2), alpha=1.5),
        ValueError,
        r"^sigmoid_focal_loss\(\): alpha must be <= 1 \(negative: no weighting\), got 1.5",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), np.zeros(2), gamma=-1),
        ValueError,
        r"^sigmoid_focal_loss\(\): gamma must be a finite number >= 0, got -1.0",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), np.zeros(2), gamma=None),
        TypeError,
        r"^sigmoid_focal_loss\(\): gamma must be a real number, got NoneType",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), np.zeros(2), gamma=2**1100),
        ValueError,
        r"^sigmoid_focal_loss\(\): gamma must be a representable real number, got an int of 1101",
    ),
    (
        lambda: ops.sigmoid_focal_loss(np.zeros(2), np.zeros(2), reduction="avg"),
        ValueError,
        r"^sigmoid_focal_loss\(\): reduction must be 'none', 'mean' or 'sum', got 'avg'",
    ),
    (
        lambda: losses.SigmoidFocalLoss(alpha=2),
        ValueError,
        r"^SigmoidFocalLoss\(\): alpha must be <= 1",
    ),
    (
        lambda: losses.SigmoidFocalLoss(gamma=float("inf")),
        ValueError,
        r"^SigmoidFocalLoss\(\): gamma must be a finite number >= 0, got inf",
    ),
    (
        lambda: losses.SigmoidFocalLoss(gamma="2"),
        TypeError,
        r"^SigmoidFocalLoss\(\): gamma must be a real number, got str",
    ),
    (
        lambda: losses.SigmoidFocalLoss()(np.zeros((2, 2)), np.zeros((2, 3))),
        ValueError,
        r"^sigmoid_focal_loss\(\): y_true must have the shape of y_pred \(2, 3\), got \(2, 2\)",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), ERRORS)
def test_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_matches_torchvision(reduction):
    torch = pytest.importorskip("torch")
    tv = peers.torchvision("ops")
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((6, 5)) * 3, rng.integers(0, 2, (6, 5)).astype(np.float64)
    want = tv.sigmoid_focal_loss(torch.from_numpy(x), torch.from_numpy(t), 0.3, 1.5, reduction)
    got = ops.sigmoid_focal_loss(x, t, 0.3, 1.5, reduction)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)
