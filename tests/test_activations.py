"""Activation functions: values against torch (Keras 3 formulas), float64 gradients, names
inside layers, and rejections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import check_gradients

from cnnkit import activations, layers
from cnnkit.autograd import Tensor

# Points away from the kinks (0 for relu-like, +-3 for the hard ones, 6 for relu6), so central
# differences see one smooth piece; both signs and both tails are covered.
X = np.array([-7.5, -3.6, -2.2, -1.1, -0.4, 0.3, 0.9, 1.7, 2.6, 4.1, 6.7, 9.2])

SELU_A, SELU_S = 1.6732632423543772, 1.0507009873554805


def _np(name, x):
    sig = 1 / (1 + np.exp(-x))
    sp = np.logaddexp(0, x)
    erf = np.vectorize(math.erf)
    table = {
        "gelu": 0.5 * x * (1 + erf(x / np.sqrt(2))),
        "swish": x * sig,
        "silu": x * sig,
        "elu": np.where(x > 0, x, np.expm1(x)),
        "selu": SELU_S * np.where(x > 0, x, SELU_A * np.expm1(x)),
        "softplus": sp,
        "softsign": x / (1 + np.abs(x)),
        "relu6": np.clip(x, 0, 6),
        "hard_sigmoid": np.clip(x + 3, 0, 6) / 6,
        "hard_swish": x * np.clip(x + 3, 0, 6) / 6,
        "exponential": np.exp(x),
        "mish": x * np.tanh(sp),
        "log_softmax": x
        - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - x.max(-1, keepdims=True),
    }
    return table[name]


NEW = [
    "gelu",
    "swish",
    "silu",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "relu6",
    "hard_sigmoid",
    "hard_swish",
    "exponential",
    "mish",
    "log_softmax",
]


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_match_the_formulas(name, dtype):
    x = X.reshape(3, 4).astype(dtype)
    y = getattr(activations, name)(Tensor(x))
    assert y.dtype == dtype and y.shape == x.shape
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.data, _np(name, X.reshape(3, 4)), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NEW)
def test_gradients(name):
    check_gradients(activations.get(name), [X.reshape(3, 4)])


def test_gelu_approximate_and_its_gradient():
    x = X.reshape(3, 4)
    c = np.sqrt(2 / np.pi)
    want = 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(activations.gelu(Tensor(x), approximate=True).data, want, 1e-12)
    check_gradients(lambda t: activations.gelu(t, approximate=True), [x])


def test_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = torch.tensor(X.reshape(3, 4))
    ours = {
        "gelu": F.gelu(t),
        "silu": F.silu(t),
        "elu": F.elu(t),
        "selu": F.selu(t),
        "softplus": F.softplus(t),
        "softsign": F.softsign(t),
        "relu6": F.relu6(t),
        "hard_sigmoid": F.hardsigmoid(t),
        "hard_swish": F.hardswish(t),
        "mish": F.mish(t),
        "log_softmax": F.log_softmax(t, -1),
    }
    for name, want in ours.items():
        got = activations.get(name)(Tensor(X.reshape(3, 4))).data
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


def test_large_inputs_stay_finite():
    x = Tensor(np.array([-1000.0, 1000.0], np.float32))
    for name in ("gelu", "swish", "elu", "selu", "softplus", "mish", "softsign", "hard_swish"):
        assert np.isfinite(activations.get(name)(x).data).all(), name


@pytest.mark.parametrize("name", NEW)
def test_by_name_in_layers_and_saved(name):
    dense = layers.Dense(3, activation=name, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 4))
    y = dense(x)
    z = Tensor(x) @ dense.kernel + dense.bias
    np.testing.assert_allclose(y.data, activations.get(name)(z).data)
    config = dense.get_config()
    assert config["activation"] == name
    assert layers.Dense.from_config(config).activation == name
    act = layers.Activation(name)
    assert layers.deserialize(layers.serialize(act)).activation == name
    assert layers.Conv2D(2, 1, activation=name).activation == name


def test_function_as_activation_keeps_its_name():
    assert layers.Dense(2, activation=activations.gelu).get_config()["activation"] == "gelu"


def test_rejections():
    with pytest.raises(ValueError, match="identifier must be one of"):
        activations.get("gelux")
    with pytest.raises(TypeError, match="identifier must be a name"):
        activations.get(3)
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        layers.Dense(2, activation="nope")


def test_float32_gelu_is_accurate_to_float32():
    from cnnkit.autograd import _one_plus_erf

    x = np.linspace(-12, 9, 20001).astype(np.float32)
    want = np.array([math.erfc(-float(v)) for v in x])
    got = _one_plus_erf(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-37)  # below: underflow
    exact = 0.5 * x.astype(np.float64) * np.array([math.erfc(-float(v) / math.sqrt(2)) for v in x])
    # z = x / sqrt(2) in float32 carries up to three roundings (of x, 1 / sqrt(2) and the
    # product), each costing a relative 2 * z**2 * 2**-24 in erfc(z).
    bound = 3e-7 + 3 * 2 * (x.astype(np.float64) ** 2 / 2) * 2.0**-24
    got = activations.gelu(Tensor(x)).data.astype(np.float64)
    assert np.all(np.abs(got - exact) <= bound * np.abs(exact) + 1e-37)
    torch = pytest.importorskip("torch")
    # torch computes 1 + erf in float32: its error near x = -5 is |x| * 2**-24 absolute.
    np.testing.assert_allclose(
        activations.gelu(Tensor(x)).data,
        torch.nn.functional.gelu(torch.tensor(x)).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )
