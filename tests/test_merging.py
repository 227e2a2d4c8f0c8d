"""Merging layers: values against NumPy, float64 gradient checks, shape messages."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients

import cnnkit
from cnnkit import layers

RNG = np.random.default_rng(0)


def _arrays(n, shape=(3, 2, 4)):
    return [RNG.standard_normal(shape) for _ in range(n)]


ELEMENTWISE = [
    (layers.Add, lambda a: a[0] + a[1] + a[2], 3),
    (layers.Subtract, lambda a: a[0] - a[1], 2),
    (layers.Multiply, lambda a: a[0] * a[1] * a[2], 3),
    (layers.Average, lambda a: (a[0] + a[1] + a[2]) / 3, 3),
    (layers.Maximum, lambda a: np.maximum(np.maximum(a[0], a[1]), a[2]), 3),
    (layers.Minimum, lambda a: np.minimum(np.minimum(a[0], a[1]), a[2]), 3),
]


@pytest.mark.parametrize(("cls", "expect", "n"), ELEMENTWISE)
def test_elementwise_values_and_gradients(cls, expect, n):
    arrays = _arrays(n)
    layer = cls(dtype="float64")
    np.testing.assert_allclose(layer(arrays).data, expect(arrays), rtol=1e-12)
    check_gradients(lambda *ts: cls(dtype="float64")(list(ts)), arrays)


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_concatenate_values_and_gradients(axis):
    arrays = [RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 3, 4))]
    out = layers.Concatenate(axis=axis, dtype="float64")(arrays)
    np.testing.assert_array_equal(out.data, np.concatenate(arrays, axis=axis))
    check_gradients(lambda a, b: layers.Concatenate(axis, dtype="float64")([a, b]), arrays)


def test_concatenate_different_channel_counts():
    a, b = RNG.standard_normal((2, 3, 3, 2)), RNG.standard_normal((2, 3, 3, 5))
    assert layers.Concatenate()([a, b]).shape == (2, 3, 3, 7)


@pytest.mark.parametrize("normalize", [False, True])
def test_dot_rank2_values_and_gradients(normalize):
    a, b = RNG.standard_normal((4, 5)), RNG.standard_normal((4, 5))
    out = layers.Dot(axes=1, normalize=normalize, dtype="float64")([a, b]).data
    if normalize:
        a2 = a / np.linalg.norm(a, axis=1, keepdims=True)
        b2 = b / np.linalg.norm(b, axis=1, keepdims=True)
        expect = np.sum(a2 * b2, axis=1, keepdims=True)
    else:
        expect = np.sum(a * b, axis=1, keepdims=True)
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out, expect, rtol=1e-10)
    check_gradients(lambda x, y: layers.Dot(1, normalize, dtype="float64")([x, y]), [a, b])


@pytest.mark.parametrize(
    ("axes", "shapes"),
    [
        ((2, 2), ((2, 3, 4), (2, 5, 4))),
        ((1, 1), ((2, 3, 4), (2, 3, 5))),
        ((2, 1), ((2, 3, 4), (2, 4, 5))),
    ],
)
def test_dot_rank3_values_and_gradients(axes, shapes):
    a, b = (RNG.standard_normal(s) for s in shapes)
    out = layers.Dot(axes=axes, dtype="float64")([a, b]).data
    np.testing.assert_allclose(out, np.einsum(_einsum(axes), a, b), rtol=1e-10)
    check_gradients(lambda x, y: layers.Dot(axes, dtype="float64")([x, y]), [a, b])
    check_gradients(lambda x, y: layers.Dot(axes, True, dtype="float64")([x, y]), [a, b])


def _einsum(axes):
    left = "nij" if axes[0] == 2 else "nji"
    right = "nkj" if axes[1] == 2 else "njk"
    return f"{left},{right}->nik"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: layers.Add()([np.zeros((2, 3)), np.zeros((2, 4))]),
            ValueError,
            r"equal shapes, got input 0 of shape \(None, 3\) and input 1 of shape \(None, 4\)",
        ),
        (lambda: layers.Add()([np.zeros((2, 3))]), ValueError, "at least 2 inputs, got 1"),
        (lambda: layers.Add()(np.zeros((2, 3))), TypeError, "input must be a list of tensors"),
        (lambda: layers.Subtract()([np.zeros((1, 2))] * 3), ValueError, "exactly 2 inputs, got 3"),
        (
            lambda: layers.Multiply()([np.zeros((2, 3)), np.zeros((3, 3))]),
            ValueError,
            "same batch size",
        ),
        (
            lambda: layers.Concatenate()([np.zeros((2, 3, 4)), np.zeros((2, 2, 4))]),
            ValueError,
            "equal shapes except along axis -1",
        ),
        (
            lambda: layers.Concatenate(axis=0)([np.zeros((2, 3)), np.zeros((2, 3))]),
            ValueError,
            "axis must be a non-batch axis",
        ),
        (
            lambda: layers.Dot(1)([np.zeros((2, 3)), np.zeros((2, 4))]),
            ValueError,
            "must have equal sizes",
        ),
        (lambda: layers.Dot((1, 2, 3)), ValueError, "axes must be an int or a pair"),
        (
            lambda: layers.Dot(1)([np.zeros((2, 3, 4, 5))] * 2),
            ValueError,
            "rank 2 or both of rank 3",
        ),
    ],
)
def test_merge_messages(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_messages_on_symbolic_tensors():
    a, b = layers.Input((4,)), layers.Input((5,))
    with pytest.raises(ValueError, match=r"add.*inputs must have equal shapes"):
        layers.add([a, b])


def test_functional_aliases_and_config():
    a, b = layers.Input((3, 4)), layers.Input((3, 4))
    outs = {
        "add": layers.add([a, b]),
        "subtract": layers.subtract([a, b]),
        "multiply": layers.multiply([a, b]),
        "average": layers.average([a, b]),
        "maximum": layers.maximum([a, b]),
        "minimum": layers.minimum([a, b]),
        "concatenate": layers.concatenate([a, b], axis=1),
        "dot": layers.dot([a, b], axes=2, normalize=True),
    }
    assert outs["concatenate"].shape == (None, 6, 4)
    assert outs["dot"].shape == (None, 3, 3)
    model = cnnkit.Model([a, b], outs, seed=0)
    x = [RNG.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(2)]
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got["subtract"], x[0] - x[1], rtol=1e-6)
    np.testing.assert_allclose(got["concatenate"], np.concatenate(x, axis=1))
    rebuilt = cnnkit.models.Functional.from_config(model.get_config())
    for k, v in rebuilt.predict(x, verbose=0).items():
        np.testing.assert_allclose(v, got[k], rtol=1e-6)
    for layer in model.layers[2:]:
        copy = layers.deserialize(layers.serialize(layer))
        assert copy.get_config() == layer.get_config()
