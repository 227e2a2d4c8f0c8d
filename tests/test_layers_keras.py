"""The Keras layers added for Keras parity: output shapes by Keras's rules (and against torch
where torch has the op), float64 gradients, configs, save/load and rejections."""

from __future__ import annotations

import numpy as np
import pytest
from test_layers import check_layer

import cnnkit
from cnnkit import layers, saving
from cnnkit.autograd import Tensor

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape)


def _round_trip(make, x, tmp_path):
    """Config round trip, then the layer in a saved and loaded model gives the same output."""
    layer = make()
    config = layers.serialize(layer)
    clone = layers.deserialize(config)
    assert type(clone) is type(layer) and layers.serialize(clone) == config
    model = cnnkit.Sequential([layers.Input(x.shape[1:]), make()])
    want = model(x).data
    path = tmp_path / "m.cnnkit"
    model.save(path)
    loaded = cnnkit.load_model(path)
    np.testing.assert_array_equal(loaded(x).data, want)


def _f64(make):
    """The layer ``make`` builds, in float64 (through its configuration)."""
    config = layers.serialize(make())
    config["config"]["dtype"] = "float64"
    return layers.deserialize(config)


# -- padding, cropping, up-sampling -------------------------------------------------------
@pytest.mark.parametrize(
    "make, shape, want",
    [
        (lambda: layers.ZeroPadding1D(), (2, 5, 3), (2, 7, 3)),
        (lambda: layers.ZeroPadding1D((1, 3)), (2, 5, 3), (2, 9, 3)),
        (lambda: layers.ZeroPadding2D(((1, 0), (2, 3))), (2, 4, 5, 3), (2, 5, 10, 3)),
        (lambda: layers.ZeroPadding3D(), (1, 2, 3, 4, 2), (1, 4, 5, 6, 2)),
        (lambda: layers.ZeroPadding3D((1, 0, 2)), (1, 2, 3, 4, 2), (1, 4, 3, 8, 2)),
        (lambda: layers.ZeroPadding3D(((0, 1), (2, 0), (1, 1))), (1, 2, 3, 4, 2), (1, 3, 5, 6, 2)),
        (lambda: layers.Cropping1D(), (2, 5, 3), (2, 3, 3)),
        (lambda: layers.Cropping1D((0, 2)), (2, 5, 3), (2, 3, 3)),
        (lambda: layers.Cropping2D(((1, 0), (2, 1))), (2, 4, 5, 3), (2, 3, 2, 3)),
        (lambda: layers.Cropping2D(1), (2, 4, 5, 3), (2, 2, 3, 3)),
        (lambda: layers.Cropping3D((1, 0, 1)), (1, 3, 3, 4, 2), (1, 1, 3, 2, 2)),
        (lambda: layers.UpSampling1D(3), (2, 4, 3), (2, 12, 3)),
        (lambda: layers.UpSampling2D((2, 3)), (2, 3, 2, 2), (2, 6, 6, 2)),
        (lambda: layers.UpSampling2D(2, interpolation="bilinear"), (2, 3, 4, 2), (2, 6, 8, 2)),
        (lambda: layers.UpSampling3D((1, 2, 2)), (1, 2, 2, 3, 2), (1, 2, 4, 6, 2)),
        (lambda: layers.Rescaling(1 / 255, offset=-1.0), (2, 3, 3, 1), (2, 3, 3, 1)),
        (lambda: layers.UnitNormalization(), (2, 3, 4), (2, 3, 4)),
        (lambda: layers.UnitNormalization([1, 2]), (2, 3, 4), (2, 3, 4)),
    ],
)
def test_shapes_gradients_and_saving(make, shape, want, tmp_path):
    x = _x(*shape)
    layer = make()
    assert layer(x).shape == want
    f64 = _f64(make)
    assert f64(x).dtype == np.float64
    check_layer(f64, x)
    _round_trip(make, x, tmp_path)


def test_padding_cropping_upsampling_values():
    x = _x(2, 4, 5, 3)
    np.testing.assert_array_equal(
        layers.ZeroPadding3D(((0, 1), (2, 0), (1, 1)), dtype="float64")(x[..., None, :]).data,
        np.pad(x[..., None, :], ((0, 0), (0, 1), (2, 0), (1, 1), (0, 0))),
    )
    np.testing.assert_array_equal(
        layers.Cropping2D(((1, 0), (2, 1)), dtype="float64")(x).data, x[:, 1:, 2:4]
    )
    np.testing.assert_array_equal(
        layers.UpSampling2D((2, 3), dtype="float64")(x).data,
        x.repeat(2, axis=1).repeat(3, axis=2),
    )
    y = layers.Rescaling(2.0, 0.5, dtype="float64")(x).data
    np.testing.assert_allclose(y, 2 * x + 0.5)
    u = layers.UnitNormalization(dtype="float64")(x).data
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0)
    assert np.all(layers.UnitNormalization()(np.zeros((1, 3))).data == 0)


def test_upsampling_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _x(2, 3, 5, 4)
    t = torch.tensor(x).permute(0, 3, 1, 2)
    for size in ((2, 2), (3, 2), (1, 4)):
        for mode in ("nearest", "bilinear"):
            ours = layers.UpSampling2D(size, interpolation=mode, dtype="float64")(x).data
            kw = {"align_corners": False} if mode == "bilinear" else {}
            want = F.interpolate(t, scale_factor=size, mode=mode, **kw).permute(0, 2, 3, 1)
            np.testing.assert_allclose(ours, want.numpy(), rtol=1e-12, atol=1e-12)
    v = _x(1, 2, 3, 2, 2)
    want = F.interpolate(torch.tensor(v).permute(0, 4, 1, 2, 3), scale_factor=(2, 1, 3))
    ours = layers.UpSampling3D((2, 1, 3), dtype="float64")(v).data
    np.testing.assert_array_equal(ours, want.permute(0, 2, 3, 4, 1).numpy())


def test_empty_batches():
    for layer, shape in [
        (layers.UpSampling2D(2, interpolation="bilinear"), (0, 3, 3, 2)),
        (layers.UpSampling1D(), (0, 3, 2)),
        (layers.Cropping1D(), (0, 3, 2)),
        (layers.ZeroPadding3D(), (0, 1, 1, 1, 2)),
    ]:
        assert layer(np.zeros(shape)).shape[0] == 0


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: layers.ZeroPadding1D((1, 2, 3)), ValueError, "padding must be an int"),
        (lambda: layers.ZeroPadding3D((1, 2)), ValueError, "padding must be an int"),
        (lambda: layers.ZeroPadding3D(-1), ValueError, "padding must be >= 0"),
        (lambda: layers.Cropping2D(((1, 2), 3)), ValueError, "cropping must be an int"),
        (lambda: layers.Cropping1D(1.5), ValueError, "cropping must be an int"),
        (lambda: layers.UpSampling2D(0), ValueError, "size must be >= 1"),
        (lambda: layers.UpSampling3D(2, interpolation="bilinear"), ValueError, "interpolation"),
        (lambda: layers.UpSampling2D(interpolation="cubic"), ValueError, "interpolation"),
        (lambda: layers.Rescaling("a"), TypeError, "scale"),
        (lambda: layers.UnitNormalization(axis=[]), ValueError, "axis must be"),
        (lambda: layers.UnitNormalization(axis=1.0), TypeError, "axis must be an int"),
        (lambda: layers.Lambda(3), TypeError, "function must be callable"),
        (lambda: layers.Lambda(abs, arguments=[1]), TypeError, "arguments must be a dict"),
        (
            lambda: layers.UpSampling2D(data_format="channels_first"),
            ValueError,
            r"channels-last only.*transpose",
        ),
        (lambda: layers.Cropping3D(data_format="nchw"), ValueError, "data_format must be"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match="leaves nothing"):
        layers.Cropping1D((2, 3))(np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="expected input of rank 5"):
        layers.UpSampling3D()(np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="must name non-batch axes"):
        layers.UnitNormalization(axis=0)(np.zeros((1, 5, 2)))
    assert layers.Cropping2D(data_format="channels_last").data_format == "channels_last"


# -- Lambda ------------------------------------------------------------------------------
@saving.register_serializable(package="tests")
def _double_plus(x, plus=0.0):
    return x * 2.0 + plus


def test_lambda_registered_function_round_trips(tmp_path):
    x = _x(2, 3)
    layer = layers.Lambda(_double_plus, arguments={"plus": 1.0}, dtype="float64")
    np.testing.assert_allclose(layer(x).data, 2 * x + 1)
    check_layer(layers.Lambda(_double_plus, dtype="float64"), x)
    _round_trip(lambda: layers.Lambda(_double_plus, arguments={"plus": 1.0}), x, tmp_path)


def test_lambda_unregistered_function_says_to_register(tmp_path):
    layer = layers.Lambda(lambda t: t * 3)
    assert layer(np.ones((1, 2))).data.tolist() == [[3.0, 3.0]]
    with pytest.raises(ValueError, match=r"not registered.*register_serializable"):
        layer.get_config()
    model = cnnkit.Sequential([layers.Input((2,)), layer])
    with pytest.raises(ValueError, match="not registered"):
        model.save(tmp_path / "m.cnnkit")
    with pytest.raises(ValueError, match="not registered"):
        layers.Lambda.from_config({"function": "nowhere", "arguments": {}})


def test_lambda_wraps_array_results():
    assert isinstance(layers.Lambda(lambda t: np.asarray(t.data) + 1)(np.zeros((1, 2))), Tensor)
