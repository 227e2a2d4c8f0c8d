"""Regularizers and constraints: formulas, gradients, Layer.losses, their use by fit (the
penalty in the loss, constraints after each step), configs and save/load, rejections."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients

import cnnkit
from cnnkit import constraints, layers, regularizers, saving
from cnnkit.autograd import Tensor

RNG = np.random.default_rng(1)
W = RNG.standard_normal((4, 3))


@pytest.mark.parametrize(
    "reg, want",
    [
        (regularizers.L1(0.3), 0.3 * np.abs(W).sum()),
        (regularizers.L2(0.2), 0.2 * np.square(W).sum()),
        (regularizers.L1L2(0.1, 0.5), 0.1 * np.abs(W).sum() + 0.5 * np.square(W).sum()),
        (regularizers.L1L2(), 0.0),
        (regularizers.get("l2"), 0.01 * np.square(W).sum()),
        (regularizers.get("l1_l2"), 0.0),
    ],
)
def test_regularizer_values_gradients_and_configs(reg, want):
    np.testing.assert_allclose(reg(Tensor(W)).data, want, rtol=1e-12)
    check_gradients(reg, [W])
    clone = regularizers.deserialize(regularizers.serialize(reg))
    assert type(clone) is type(reg) and clone.get_config() == reg.get_config()


def test_regularizer_against_torch_style_sums():
    torch = pytest.importorskip("torch")
    t = torch.tensor(W)
    np.testing.assert_allclose(
        regularizers.L1L2(0.1, 0.5)(Tensor(W)).data,
        (0.1 * t.abs().sum() + 0.5 * t.pow(2).sum()).item(),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "constraint, want",
    [
        (
            constraints.MaxNorm(1.0),
            W * np.minimum(np.linalg.norm(W, axis=0), 1.0) / (1e-7 + np.linalg.norm(W, axis=0)),
        ),
        (constraints.NonNeg(), np.maximum(W, 0)),
        (constraints.UnitNorm(), W / (1e-7 + np.linalg.norm(W, axis=0))),
        (
            constraints.UnitNorm(axis=1),
            W / (1e-7 + np.linalg.norm(W, axis=1, keepdims=True)),
        ),
        (constraints.get("non_neg"), np.maximum(W, 0)),
    ],
)
def test_constraint_values_and_configs(constraint, want):
    np.testing.assert_allclose(constraint(W), want, rtol=1e-12)
    clone = constraints.deserialize(constraints.serialize(constraint))
    assert type(clone) is type(constraint) and clone.get_config() == constraint.get_config()


def test_max_norm_over_several_axes_and_zero_slices():
    k = RNG.standard_normal((3, 3, 2, 4)) * 5
    out = constraints.MaxNorm(2.0, axis=[0, 1, 2])(k)
    assert np.all(np.sqrt((out**2).sum(axis=(0, 1, 2))) <= 2.0 + 1e-9)
    assert np.all(constraints.UnitNorm()(np.zeros((2, 2))) == 0)
    assert constraints.MaxNorm()(k.astype(np.float32)).dtype == np.float32


def _model(**dense_kwargs):
    model = cnnkit.Sequential(
        [layers.Input((4,)), layers.Dense(3, **dense_kwargs), layers.Dense(1)], seed=0
    )
    model.compile(optimizer=cnnkit.optimizers.SGD(0.1), loss="mse")
    return model


def test_losses_property_and_fit_adds_the_penalties():
    x = RNG.standard_normal((16, 4)).astype(np.float32)
    y = RNG.standard_normal((16, 1)).astype(np.float32)
    plain = _model()
    reg = _model(
        kernel_regularizer=regularizers.L2(0.5),
        bias_regularizer="l1",
        activity_regularizer=regularizers.L1(0.01),
    )
    reg.set_weights(plain.get_weights())
    reg.layers[0].bias.data[...] = 0.25
    plain.layers[0].bias.data[...] = 0.25
    assert plain.losses == []
    base = plain.evaluate(x, y, batch_size=16)
    total = reg.evaluate(x, y, batch_size=16)
    dense = reg.layers[0]
    kernel = dense.kernel.data.astype(np.float64)
    activity = 0.01 * np.abs(dense(x).data.astype(np.float64)).sum()
    penalty = 0.5 * np.square(kernel).sum() + 0.01 * 3 * 0.25 + activity
    assert len(reg.losses) == 3 and len(dense.losses) == 3
    np.testing.assert_allclose(total - base, penalty, rtol=1e-4)
    history = reg.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert history.history["loss"][0] > base


def test_weight_penalty_gradient_in_a_step():
    model = cnnkit.Sequential(
        [layers.Input((2,)), layers.Dense(2, kernel_regularizer=regularizers.L2(1.0))], seed=0
    )
    model.compile(optimizer=cnnkit.optimizers.SGD(0.1), loss="mse")
    x = np.zeros((4, 2), np.float32)  # the data loss has no kernel gradient
    before = model.layers[0].kernel.data.copy()
    model.fit(x, np.zeros((4, 2), np.float32), epochs=1, batch_size=4, verbose=0)
    np.testing.assert_allclose(model.layers[0].kernel.data, before * (1 - 0.1 * 2), rtol=1e-6)


def test_constraints_apply_after_each_step():
    x = RNG.standard_normal((32, 4)).astype(np.float32)
    y = RNG.standard_normal((32, 1)).astype(np.float32) * 10
    model = _model(kernel_constraint="non_neg", bias_constraint=constraints.MaxNorm(0.01))
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    dense = model.layers[0]
    assert np.all(dense.kernel.data >= 0) and np.any(dense.kernel.data > 0)
    assert np.linalg.norm(dense.bias.data) <= 0.01 + 1e-6


def test_conv_options_save_and_load(tmp_path):
    model = cnnkit.Sequential(
        [
            layers.Input((5, 5, 2)),
            layers.Conv2D(
                3,
                3,
                kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                kernel_constraint=constraints.MaxNorm(1.5, axis=[0, 1, 2]),
                activity_regularizer="l2",
            ),
            layers.SeparableConv2D(
                2, 2, pointwise_regularizer="l1", depthwise_constraint="unit_norm"
            ),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    x = RNG.standard_normal((2, 5, 5, 2)).astype(np.float32)
    model(x)
    model.save(tmp_path / "m.cnnkit")
    loaded = cnnkit.load_model(tmp_path / "m.cnnkit")
    conv, sep = loaded.layers
    assert isinstance(conv.kernel_regularizer, regularizers.L1L2)
    assert conv.kernel_regularizer.get_config() == {"l1": 0.01, "l2": 0.02}
    assert conv.kernel_constraint.get_config() == {"max_value": 1.5, "axis": [0, 1, 2]}
    assert isinstance(conv.activity_regularizer, regularizers.L2)
    assert isinstance(sep.pointwise_regularizer, regularizers.L1)
    assert isinstance(sep.depthwise_constraint, constraints.UnitNorm)
    loaded(x)
    np.testing.assert_allclose(
        sum(float(t.data) for t in loaded.losses),
        sum(float(t.data) for t in model.losses),
        rtol=1e-6,
    )


@saving.register_serializable(package="tests")
def _half_l1(w):
    return 0.5 * abs(w).sum()


def test_registered_function_as_regularizer_round_trips():
    dense = layers.Dense(2, kernel_regularizer=_half_l1)
    config = dense.get_config()
    assert config["kernel_regularizer"] == "tests>_half_l1"
    assert layers.Dense.from_config(config).kernel_regularizer is _half_l1
    with pytest.raises(ValueError, match="cannot be saved"):
        layers.Dense(2, kernel_regularizer=lambda w: w.sum()).get_config()


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: regularizers.L1(-1), ValueError, "l1 must be >= 0"),
        (lambda: regularizers.L2("a"), TypeError, "l2 must be a real number"),
        (lambda: regularizers.get("l3"), ValueError, "regularizer must be one of"),
        (lambda: regularizers.get(3), TypeError, "regularizer must be a Regularizer"),
        (lambda: constraints.MaxNorm(-1.0), ValueError, "max_value must be >= 0"),
        (lambda: constraints.UnitNorm(axis=[]), ValueError, "axis must be an int"),
        (lambda: constraints.get("positive"), ValueError, "constraint must be one of"),
        (lambda: constraints.UnitNorm(axis=3)(np.zeros((2, 2))), ValueError, "out of range"),
        (lambda: layers.Dense(2, activity_regularizer="x"), ValueError, "activity_regularizer"),
        (lambda: layers.Dense(2, bias_constraint=2.0), TypeError, "bias_constraint must be"),
    ],
)
def test_rejections(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_frozen_layers_have_no_weight_penalty_but_keep_activity_penalties():
    dense = layers.Dense(2, kernel_regularizer="l2", activity_regularizer="l1")
    dense(np.ones((1, 3)))
    assert len(dense.losses) == 2
    dense.trainable = False
    assert len(dense.losses) == 1
    model = cnnkit.Sequential([layers.Input((3,)), dense])
    model(np.ones((1, 3)))
    assert len(model.losses) == 1


def test_a_functional_model_counts_each_penalty_once():
    # The functional API builds a layer at its symbolic call and again from the model's seed.
    inputs = layers.Input((4,))
    dense = layers.Dense(2, kernel_regularizer=regularizers.L2(0.1))
    model = cnnkit.Model(inputs, dense(inputs))
    assert len(model.losses) == 1
    np.testing.assert_allclose(
        model.losses[0].data, 0.1 * np.sum(dense.kernel.data.astype(np.float64) ** 2), rtol=1e-6
    )
