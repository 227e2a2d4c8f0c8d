"""The Keras layers added for Keras parity: output shapes by Keras's rules (and against torch
where torch has the op), float64 gradients, configs, save/load and rejections."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_layers import check_layer

import cnnkit
from cnnkit import autograd as ag
from cnnkit import layers, saving
from cnnkit.autograd import Tensor
from cnnkit.layers.convolutional import transpose_output_length

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


# -- transposed, depthwise, separable and causal convolutions ----------------------------------
def _torch_layout(a, rank):
    """channels-last -> channels-first for torch."""
    return (0, rank + 1, *range(1, rank + 1))


TRANSPOSES = {1: layers.Conv1DTranspose, 2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}


@pytest.mark.parametrize(
    "rank, spatial, k, s, padding, op, d, want",
    [
        # Keras: valid L*s + max(k - s, 0); same L*s; with output_padding
        # (L - 1) * s + k - 2 * (k // 2 if same else 0) + op (k dilated).
        (1, (5,), 3, 2, "valid", None, 1, (11,)),
        (1, (5,), 2, 3, "valid", None, 1, (15,)),
        (1, (5,), 3, 2, "same", None, 1, (10,)),
        (1, (4,), 3, 1, "valid", None, 2, (8,)),
        (2, (3, 4), (3, 2), (2, 1), "valid", None, 1, (7, 5)),
        (2, (3, 4), 3, 2, "same", None, 1, (6, 8)),
        (2, (3, 4), 4, 2, "same", None, 1, (6, 8)),
        (2, (3, 4), 3, 2, "valid", 1, 1, (8, 10)),
        (2, (3, 4), 3, 2, "same", 1, 1, (6, 8)),
        (2, (3, 4), 3, 2, "same", 0, 1, (5, 7)),
        (3, (2, 3, 2), 2, 2, "valid", None, 1, (4, 6, 4)),
        (3, (2, 2, 2), 3, (1, 2, 1), "same", None, 1, (2, 4, 2)),
    ],
)
def test_transpose_shapes_gradients_and_saving(rank, spatial, k, s, padding, op, d, want, tmp_path):
    def make():
        return TRANSPOSES[rank](
            3,
            k,
            strides=s,
            padding=padding,
            output_padding=op,
            dilation_rate=d,
            bias_initializer="glorot_uniform",
        )

    x = _x(2, *spatial, 2)
    assert make()(x).shape == (2, *want, 3)
    check_layer(_f64(make), x, atol=1e-6)
    _round_trip(make, x, tmp_path)


@pytest.mark.parametrize(
    "rank, k, s, padding, op, d, torch_pad, torch_op",
    [
        (1, 3, 2, "valid", None, 1, 0, 0),
        (1, 3, 1, "valid", None, 2, 0, 0),
        (2, 3, 2, "valid", 1, 1, 0, 1),
        (2, 4, 2, "same", None, 1, 1, 0),
        (2, 3, 1, "same", None, 1, 1, 0),
        (2, 5, 3, "same", 0, 1, 2, 0),
        (3, 3, 2, "valid", None, 1, 0, 0),
    ],
)
def test_transpose_against_torch(rank, k, s, padding, op, d, torch_pad, torch_op):
    torch = pytest.importorskip("torch")
    layer = TRANSPOSES[rank](
        4,
        k,
        strides=s,
        padding=padding,
        output_padding=op,
        dilation_rate=d,
        dtype="float64",
        bias_initializer="glorot_uniform",
    )
    x = _x(2, *([5] * rank), 3)
    y = layer(x).data
    w = torch.tensor(layer.kernel.data).permute(rank + 1, rank, *range(rank))
    fn = getattr(torch.nn.functional, f"conv_transpose{rank}d")
    want = fn(
        torch.tensor(x).permute(*_torch_layout(x, rank)),
        w,
        torch.tensor(layer.bias.data),
        stride=s,
        padding=torch_pad,
        output_padding=torch_op,
        dilation=d,
    )
    want = want.permute(0, *range(2, rank + 2), 1).numpy()
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "dm, s, padding, d", [(1, 1, "valid", 1), (2, 2, "same", 1), (3, 1, "same", 2)]
)
def test_depthwise_and_separable_against_torch(dm, s, padding, d, tmp_path):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _x(2, 7, 6, 3)
    tx = torch.tensor(x).permute(0, 3, 1, 2)
    dw = layers.DepthwiseConv2D(
        3,
        strides=s,
        padding=padding,
        depth_multiplier=dm,
        dilation_rate=d,
        dtype="float64",
        bias_initializer="glorot_uniform",
    )
    y = dw(x).data
    assert dw.kernel.shape == (3, 3, 3, dm) and dw.count_params() == 9 * 3 * dm + 3 * dm
    # torch's grouped weight (C * dm, 1, kh, kw): output channel c * dm + m from channel c.
    w = torch.tensor(dw.kernel.data).permute(2, 3, 0, 1).reshape(3 * dm, 1, 3, 3)
    pad = "same" if padding == "same" and s == 1 else 0
    if padding == "same" and s != 1:
        tx_p = F.pad(tx, (0, 1, 1, 1))  # TF "same", k=3, s=2: H=7 pads (1, 1), W=6 (0, 1)
        want = F.conv2d(tx_p, w, torch.tensor(dw.bias.data), stride=s, dilation=d, groups=3)
    else:
        want = F.conv2d(
            tx, w, torch.tensor(dw.bias.data), stride=s, padding=pad, dilation=d, groups=3
        )
    np.testing.assert_allclose(y, want.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-10)

    sep = layers.SeparableConv2D(
        5,
        3,
        strides=s,
        padding=padding,
        depth_multiplier=dm,
        dilation_rate=d,
        dtype="float64",
        bias_initializer="glorot_uniform",
    )
    z = sep(x).data
    assert [v.name.split("/")[1] for v in sep.weights] == [
        "depthwise_kernel",
        "pointwise_kernel",
        "bias",
    ]
    assert sep.count_params() == 9 * 3 * dm + 3 * dm * 5 + 5
    sep_dw = layers.DepthwiseConv2D(
        3,
        strides=s,
        padding=padding,
        depth_multiplier=dm,
        dilation_rate=d,
        use_bias=False,
        dtype="float64",
    )
    sep_dw(x)  # builds
    sep_dw.kernel.data[...] = sep.depthwise_kernel.data
    mid = sep_dw(x).data
    want = np.einsum("nhwc,cf->nhwf", mid, sep.pointwise_kernel.data[0, 0]) + sep.bias.data
    np.testing.assert_allclose(z, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "make, shape",
    [
        (
            lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, bias_initializer="ones"),
            (2, 5, 4, 3),
        ),
        (lambda: layers.DepthwiseConv2D((2, 3), strides=2, padding="same"), (1, 5, 5, 2)),
        (lambda: layers.SeparableConv2D(4, 3, depth_multiplier=2, padding="same"), (2, 5, 4, 3)),
        (lambda: layers.SeparableConv2D(2, 2, strides=2, activation="gelu"), (1, 4, 4, 2)),
        (lambda: layers.Conv1D(3, 3, padding="causal", dilation_rate=2), (2, 7, 2)),
        (lambda: layers.Conv1D(3, 2, padding="causal", strides=2), (2, 7, 2)),
    ],
)
def test_depthwise_separable_causal_gradients_and_saving(make, shape, tmp_path):
    x = _x(*shape)
    check_layer(_f64(make), x, atol=1e-6)
    _round_trip(make, x, tmp_path)


def test_causal_conv_matches_left_padded_valid_conv_and_sees_no_future():
    x = _x(2, 9, 2)
    causal = layers.Conv1D(3, 3, padding="causal", dilation_rate=2, dtype="float64")
    y = causal(x).data
    assert y.shape == (2, 9, 3)
    valid = layers.Conv1D(3, 3, dilation_rate=2, dtype="float64")
    valid(x)  # builds
    valid.set_weights(causal.get_weights())
    np.testing.assert_allclose(y, valid(np.pad(x, ((0, 0), (4, 0), (0, 0)))).data)
    changed = x.copy()
    changed[:, 5:] += 1  # the future of step 4
    np.testing.assert_array_equal(causal(changed).data[:, :5], y[:, :5])


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: layers.Conv2D(2, 3, padding="causal"), ValueError, "padding must be"),
        (
            lambda: layers.Conv2DTranspose(2, 3, strides=2, output_padding=2),
            ValueError,
            "output_padding must be smaller",
        ),
        (
            lambda: layers.Conv2DTranspose(2, 3, output_padding=-1),
            ValueError,
            "output_padding must be >= 0",
        ),
        (lambda: layers.Conv1DTranspose(2, 3, groups=2), TypeError, "groups is not supported"),
        (lambda: layers.Conv3DTranspose(0, 3), ValueError, "filters must be >= 1"),
        (
            lambda: layers.DepthwiseConv2D(3, depth_multiplier=0),
            ValueError,
            "depth_multiplier must be >= 1",
        ),
        (lambda: layers.DepthwiseConv2D(3, padding="causal"), ValueError, "padding must be"),
        (lambda: layers.SeparableConv2D(0, 3), ValueError, "filters must be >= 1"),
        (lambda: layers.SeparableConv2D(2, (3, 3, 3)), ValueError, "kernel_size must be"),
        (lambda: layers.Conv2D(2, 3, data_format="channels_first"), ValueError, "transpose"),
        (
            lambda: layers.Conv2D(2, 3, kernel_regularizer="l3"),
            ValueError,
            "kernel_regularizer must be one of",
        ),
        (lambda: layers.Dense(2, kernel_constraint=3), TypeError, "kernel_constraint must be"),
    ],
)
def test_conv_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_conv_bad_inputs():
    with pytest.raises(ValueError, match="no output size"):
        layers.Conv2DTranspose(2, 4, strides=2, padding="same", output_padding=0)(
            np.zeros((1, 3, 3, 1))
        )
    t = layers.Conv2DTranspose(2, 3)
    t(np.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="expected 1 input channels"):
        t(np.zeros((1, 3, 3, 2)))
    with pytest.raises(ValueError, match="expected input of rank 4"):
        layers.DepthwiseConv2D(3)(np.zeros((1, 3, 3)))
    assert layers.Conv2DTranspose(2, 3)(np.zeros((0, 3, 3, 1))).shape == (0, 5, 5, 2)


# -- the autograd ops under the layers: properties over random shapes -------------------------
@settings(deadline=None, max_examples=40)
@given(
    rank=st.integers(1, 3),
    n=st.integers(0, 2),
    small=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose_is_the_adjoint_of_conv(rank, n, small, k, s, d, padding, dtype, seed):
    """<conv(z, w), x> == <z, conv_transpose(x, w)> for every z: the defining property."""
    rng = np.random.default_rng(seed)
    spatial = tuple(small[:rank])
    k_eff = (k - 1) * d + 1
    out = tuple(transpose_output_length(m, k, s, padding, None, d) for m in spatial)
    assume(all(o >= k_eff or padding == "same" for o in out))
    x = rng.standard_normal((n, *spatial, 2)).astype(dtype)
    w = rng.standard_normal((*([k] * rank), 3, 2)).astype(dtype)
    # A non-contiguous x (every other channel of a wider array).
    wide = np.repeat(x, 2, axis=-1)
    x_view = wide[..., ::2]
    y = ag.conv_transpose(x_view, w, output_shape=out, stride=s, padding=padding, dilation=d).data
    assert y.shape == (n, *out, 3) and y.dtype == dtype
    z = rng.standard_normal(y.shape).astype(dtype)
    back = ag.conv(z, w, stride=s, padding=padding, dilation=d).data
    assert back.shape == x.shape
    tol = 1e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(np.sum(back * x), np.sum(z * y), rtol=tol, atol=tol)


@settings(deadline=None, max_examples=40)
@given(
    rank=st.integers(1, 3),
    n=st.integers(0, 2),
    spatial=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    size=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    bilinear=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_upsample_backward_is_its_adjoint(rank, n, spatial, size, bilinear, dtype, seed):
    rng = np.random.default_rng(seed)
    mode = "bilinear" if bilinear else "nearest"
    x = Tensor(rng.standard_normal((n, *spatial[:rank], 2)).astype(dtype), requires_grad=True)
    y = ag.upsample(x, size[:rank], mode)
    assert y.shape == (n, *(a * b for a, b in zip(spatial[:rank], size[:rank])), 2)
    assert y.dtype == dtype
    g = rng.standard_normal(y.shape).astype(dtype)
    (y * g).sum().backward()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(np.sum(x.grad * x.data), np.sum(g * y.data), rtol=tol, atol=tol)
    if n:
        # constant images stay constant under both interpolations
        c = ag.upsample(np.ones((1, *spatial[:rank], 1), dtype), size[:rank], mode).data
        np.testing.assert_allclose(c, 1, rtol=1e-6)
