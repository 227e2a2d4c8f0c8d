"""Habits a Keras user brings: label shapes, Python lists, string labels, one-time warnings,
channels-first inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cnnkit
from cnnkit import layers, losses
from cnnkit.training import data_adapters


def dense_model(units=1, activation="sigmoid"):
    return cnnkit.Sequential(
        [layers.Input((3,)), layers.Dense(units, activation=activation)], seed=0
    )


@pytest.mark.parametrize(
    "fn", [losses.binary_crossentropy, losses.mean_squared_error, losses.mean_absolute_error]
)
def test_elementwise_losses_accept_labels_n_against_predictions_n_1(fn):
    y = np.array([0.0, 1.0, 1.0])
    p = np.array([[0.2], [0.7], [0.9]])
    np.testing.assert_array_equal(fn(y, p).data, fn(y[:, None], p).data)
    with pytest.raises(ValueError, match="must have the shape of y_pred"):
        fn(np.zeros(2), p)


def test_fit_with_labels_n_and_a_one_unit_output():
    model = dense_model()
    model.compile("sgd", "binary_crossentropy")
    x = np.random.default_rng(0).standard_normal((8, 3))
    y = (x[:, 0] > 0).astype(np.float64)
    hist = model.fit(x, y, epochs=2, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()


def test_fit_evaluate_predict_accept_python_lists():
    x = [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]
    y = [0, 1, 1]
    a = dense_model()
    a.compile("sgd", "binary_crossentropy")
    b = dense_model()
    b.compile("sgd", "binary_crossentropy")
    a.fit(x, y, epochs=2, verbose=0, shuffle=False)
    b.fit(np.array(x), np.array(y), epochs=2, verbose=0, shuffle=False)
    assert a.evaluate(x, y) == b.evaluate(np.array(x), np.array(y))
    np.testing.assert_array_equal(a.predict(x), b.predict(np.array(x)))
    with pytest.raises(ValueError, match=r"fit\(\): x given as a Python list must be rectangular"):
        a.fit([[1.0, 2.0, 3.0], [1.0]], [0, 1], verbose=0)


@pytest.mark.parametrize("labels", [np.array(["cat", "dog"]), np.array(["cat", 1], dtype=object)])
def test_string_labels_say_which_labels_are_allowed(labels):
    model = dense_model()
    model.compile("sgd", "binary_crossentropy")
    with pytest.raises(TypeError, match=r"fit\(\): y must hold numbers.*'cat'.*class indices"):
        model.fit(np.zeros((2, 3)), labels, verbose=0)
    with pytest.raises(TypeError, match=r"binary_crossentropy\(\): y_true must hold numbers"):
        losses.binary_crossentropy(labels, np.zeros((2,)) + 0.5)
    with pytest.raises(TypeError, match=r"sparse_categorical_crossentropy\(\): y_true must hold"):
        losses.sparse_categorical_crossentropy(labels, np.full((2, 3), 1 / 3))


def test_object_labels_holding_numbers_are_accepted():
    model = dense_model()
    model.compile("sgd", "binary_crossentropy")
    model.fit(np.zeros((2, 3)), np.array([0, 1], dtype=object), verbose=0)


def test_softmax_output_with_from_logits_warns_once(monkeypatch):
    monkeypatch.setattr(losses, "_warned_softmax_logits", False)
    model = dense_model(4, "softmax")
    model.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(1).standard_normal((8, 3))
    with pytest.warns(UserWarning, match="from_logits=True got y_pred that looks like prob"):
        model.fit(x, np.arange(8) % 4, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, np.arange(8) % 4, verbose=0)
    # Logits do not warn.
    monkeypatch.setattr(losses, "_warned_softmax_logits", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses.categorical_crossentropy(np.eye(3), np.array([[2.0, -1, 0.5]] * 3), from_logits=True)


def test_uint8_images_into_a_float_model_warn_once(monkeypatch):
    monkeypatch.setattr(data_adapters, "_warned_uint8", False)
    model = dense_model()
    model.compile("sgd", "binary_crossentropy")
    x = np.full((4, 3), 200, np.uint8)
    with pytest.warns(UserWarning, match=r"x is uint8 with values up to 200.*divide it by 255"):
        model.predict(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(x)
        monkeypatch.setattr(data_adapters, "_warned_uint8", False)
        model.predict(np.ones((4, 3), np.uint8))  # already in [0, 1]: no warning


def test_uint8_images_into_a_model_that_starts_by_rescaling_do_not_warn(monkeypatch):
    monkeypatch.setattr(data_adapters, "_warned_uint8", False)
    model = cnnkit.Sequential(
        [layers.Input((3,)), layers.Rescaling(1 / 255), layers.Dense(1)], seed=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(np.full((4, 3), 200, np.uint8), verbose=0)


def test_uint8_images_into_a_nested_model_that_starts_by_rescaling_do_not_warn(monkeypatch):
    # A Siamese model: two inputs into one encoder whose first layer rescales.
    monkeypatch.setattr(data_adapters, "_warned_uint8", False)
    encoder = cnnkit.Sequential(
        [layers.Input((3,)), layers.Rescaling(1 / 255), layers.Dense(2)], seed=0
    )
    a, b = layers.Input((3,)), layers.Input((3,))
    model = cnnkit.Model([a, b], layers.Concatenate()([encoder(a), encoder(b)]))
    x = np.full((4, 3), 200, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict([x, x], verbose=0)
    plain = cnnkit.Model(a, layers.Dense(1)(a))
    with pytest.warns(UserWarning, match=r"x is uint8"):
        plain.predict(x, verbose=0)


def test_channels_first_input_names_the_layer_and_suggests_channels_last():
    model = cnnkit.Sequential(
        [layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)], seed=0, name="net"
    )
    model.compile("sgd", "mse")
    x = np.zeros((2, 1, 28, 28), np.float32)
    conv = model.layers[0].name
    with pytest.raises(ValueError) as info, pytest.warns(UserWarning, match="channels-first"):
        model.fit(x, np.zeros((2, 2)), verbose=0)
    message = str(info.value)
    assert f"layer {conv!r} (Conv2D)" in message
    assert "channels-last" in message and "x.transpose(0, 2, 3, 1)" in message
    # A channels-first batch that would run (3 'rows') warns; channels-last does not.
    other = cnnkit.Sequential([layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)], seed=0)
    with pytest.warns(UserWarning, match=r"looks channels-first.*x.transpose\(0, 2, 3, 1\)"):
        other.predict(np.zeros((2, 3, 32, 32), np.float32))
    fine = cnnkit.Sequential([layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fine.predict(np.zeros((2, 32, 32, 3), np.float32))
