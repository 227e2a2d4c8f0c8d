"""Layers: float64 finite-difference gradients (input and every weight), Keras semantics,
names, configs, initializers, and every rejection path."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numeric_gradient
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import initializers, layers
from cnnkit.autograd import Tensor, no_grad

F64 = {"dtype": "float64"}


def check_layer(layer, x, training=False, *, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """Compare the tape's gradients of <layer(x), r> for x and every trainable weight with
    central differences (float64)."""
    x = np.array(x, dtype=np.float64)
    state = layer.get_state()  # Dropout: replay the same mask in every evaluation
    xt = Tensor(x, requires_grad=True)
    out = layer(xt, training=training)
    r = np.random.default_rng(seed).standard_normal(out.shape)
    for v in layer.weights:
        v.grad = None
    (out * r).sum().backward()

    def objective() -> float:
        layer.set_state(state)
        with no_grad():
            return float(np.sum(layer(Tensor(x), training=training).data * r))

    targets = [("x", x, xt.grad)] + [(v.name, v.data, v.grad) for v in layer.trainable_weights]
    for name, array, analytic in targets:
        numeric = numeric_gradient(objective, array, eps)
        got = np.zeros_like(array) if analytic is None else analytic
        np.testing.assert_allclose(got, numeric, rtol=rtol, atol=atol, err_msg=f"d/d {name}")


def feature_map(rank, batch, size, channels, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *([size] * rank), channels))


small = st.integers(1, 2)
sizes = st.integers(3, 5)
chans = st.integers(1, 3)
seeds = st.integers(0, 2**16)


@settings(max_examples=8)
@given(
    rank=st.integers(1, 3),
    batch=small,
    size=sizes,
    cin=chans,
    filters=st.integers(1, 3),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same"]),
    activation=st.sampled_from(["tanh", "relu"]),
    seed=seeds,
)
def test_conv_gradients(rank, batch, size, cin, filters, k, stride, padding, activation, seed):
    if rank == 3:
        size, k = min(size, 3), min(k, 2)
    cls = {1: layers.Conv1D, 2: layers.Conv2D, 3: layers.Conv3D}[rank]
    layer = cls(
        filters,
        k,
        strides=stride,
        padding=padding,
        activation=activation,
        bias_initializer="random_normal",
        **F64,
    )
    check_layer(layer, feature_map(rank, batch, size, cin, seed))


@settings(max_examples=6)
@given(dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]), seed=seeds)
def test_conv_dilation_groups_gradients(dilation, groups, seed):
    layer = layers.Conv2D(4, 2, dilation_rate=dilation, groups=groups, use_bias=False, **F64)
    check_layer(layer, feature_map(2, 2, 5, 2, seed))
    assert layer.kernel.shape == (2, 2, 2 // groups, 4)


@settings(max_examples=8)
@given(
    rank=st.integers(1, 3),
    kind=st.sampled_from(["max", "avg"]),
    pool=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    size=sizes,
    seed=seeds,
)
def test_pooling_gradients(rank, kind, pool, padding, size, seed):
    name = ("MaxPooling" if kind == "max" else "AveragePooling") + f"{rank}D"
    layer = getattr(layers, name)(pool, padding=padding, **F64)
    x = feature_map(rank, 2, size, 2, seed)
    if size < pool and padding == "valid":
        pool = 1
        layer = getattr(layers, name)(1, **F64)
    check_layer(layer, x)


@settings(max_examples=8)
@given(
    rank=st.integers(1, 3),
    kind=st.sampled_from(["Average", "Max"]),
    keepdims=st.booleans(),
    seed=seeds,
)
def test_global_pooling_gradients(rank, kind, keepdims, seed):
    layer = getattr(layers, f"Global{kind}Pooling{rank}D")(keepdims=keepdims, **F64)
    x = feature_map(rank, 2, 3, 2, seed)
    out = layer(x)
    assert out.shape == ((2, *([1] * rank), 2) if keepdims else (2, 2))
    check_layer(layer, x)


@settings(max_examples=8)
@given(
    units=st.integers(1, 4),
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    activation=st.sampled_from(["relu", "tanh", "sigmoid", "softmax", "linear", "leaky_relu"]),
    seed=seeds,
)
def test_dense_gradients(units, lead, activation, seed):
    layer = layers.Dense(units, activation=activation, bias_initializer="random_normal", **F64)
    x = np.random.default_rng(seed).standard_normal((*lead, 3))
    out = layer(x)
    assert out.shape == (*lead[:-1], lead[-1], units) if len(lead) > 1 else (lead[0], units)
    check_layer(layer, x)


@settings(max_examples=8)
@given(rank=st.integers(1, 3), training=st.booleans(), trainable=st.booleans(), seed=seeds)
def test_batch_norm_gradients(rank, training, trainable, seed):
    layer = layers.BatchNormalization(
        momentum=0.5,
        gamma_initializer="random_normal",
        beta_initializer="random_normal",
        moving_variance_initializer=initializers.RandomUniform(0.5, 2.0, seed=1),
        **F64,
    )
    layer.trainable = trainable
    check_layer(layer, feature_map(rank, 2, 3, 3, seed) * 2 + 1, training=training)


@settings(max_examples=6)
@given(rate=st.sampled_from([0.0, 0.3, 0.6]), seed=seeds)
def test_dropout_gradients_and_scaling(rate, seed):
    layer = layers.Dropout(rate, seed=seed, **F64)
    x = feature_map(2, 2, 4, 3, seed)
    check_layer(layer, x, training=True)
    assert np.array_equal(layer(x).data, x)  # inference: identity
    y = layer(x, training=True).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate))


@pytest.mark.parametrize(
    "layer",
    [
        lambda: layers.Flatten(**F64),
        lambda: layers.Reshape((-1, 3), **F64),
        lambda: layers.ZeroPadding2D(((1, 0), (2, 1)), **F64),
        lambda: layers.ZeroPadding2D(1, **F64),
        lambda: layers.Activation("softmax", **F64),
        lambda: layers.Activation("leaky_relu", **F64),
        lambda: layers.ReLU(**F64),
        lambda: layers.ReLU(max_value=0.5, negative_slope=0.1, threshold=-0.2, **F64),
        lambda: layers.LeakyReLU(**F64),
        lambda: layers.Softmax(axis=1, **F64),
    ],
)
def test_shape_and_activation_gradients(layer):
    check_layer(layer(), feature_map(2, 2, 3, 3, 5))


def test_output_shapes_follow_keras():
    x = np.zeros((2, 9, 9, 3), np.float32)
    assert layers.Conv2D(4, 3, strides=2, padding="same")(x).shape == (2, 5, 5, 4)
    assert layers.Conv2D(4, (3, 1))(x).shape == (2, 7, 9, 4)
    assert layers.MaxPooling2D()(x).shape == (2, 4, 4, 3)
    assert layers.AveragePooling2D(2, padding="same")(x).shape == (2, 5, 5, 3)
    assert layers.ZeroPadding2D(((1, 0), (2, 1)))(x).shape == (2, 10, 12, 3)
    assert layers.Flatten()(x).shape == (2, 243)
    assert layers.Reshape((27, 9))(x).shape == (2, 27, 9)
    assert layers.Conv1D(2, 3)(np.zeros((1, 7, 2))).shape == (1, 5, 2)
    assert layers.Conv3D(2, 2)(np.zeros((1, 3, 3, 3, 1))).shape == (1, 2, 2, 2, 2)
    assert layers.Dense(5)(x).shape == (2, 9, 9, 5)


def test_activations_match_formulas():
    x = np.linspace(-3, 3, 13).reshape(1, 13)
    act = lambda name: layers.Activation(name, **F64)(x).data  # noqa: E731
    np.testing.assert_allclose(act("relu"), np.maximum(x, 0))
    np.testing.assert_allclose(act("tanh"), np.tanh(x))
    np.testing.assert_allclose(act("sigmoid"), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(act("softmax"), np.exp(x) / np.exp(x).sum())
    np.testing.assert_allclose(act("linear"), x)
    np.testing.assert_allclose(act("leaky_relu"), np.where(x > 0, x, 0.2 * x))
    relu6 = layers.ReLU(max_value=6.0, **F64)(x * 3).data
    np.testing.assert_allclose(relu6, np.clip(x * 3, 0, 6))


def test_batch_norm_statistics_and_inference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.0]
    bn = layers.BatchNormalization(momentum=0.9, **F64)
    y = bn(x, training=True).data
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(0), x.var(0) / (x.var(0) + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(bn.moving_mean.data, 0.1 * x.mean(0))
    np.testing.assert_allclose(bn.moving_variance.data, 0.9 + 0.1 * x.var(0))
    # Inference and frozen layers use the moving statistics and leave them alone.
    expected = (x - bn.moving_mean.data) / np.sqrt(bn.moving_variance.data + 1e-3)
    np.testing.assert_allclose(bn(x).data, expected)
    bn.trainable = False
    before = [w.copy() for w in bn.get_weights()]
    np.testing.assert_allclose(bn(x, training=True).data, expected)
    assert all(np.array_equal(a, b) for a, b in zip(before, bn.get_weights()))
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4


def test_auto_names_are_keras_style_and_unique():
    layers.reset_names()
    names = [
        layers.Conv2D(1, 1).name,
        layers.Conv2D(1, 1).name,
        layers.MaxPooling2D().name,
        layers.BatchNormalization().name,
        layers.GlobalAveragePooling2D().name,
        layers.ReLU().name,
        layers.Dense(1, name="head").name,
        layers.Dense(1).name,
    ]
    assert names == [
        "conv2d",
        "conv2d_1",
        "max_pooling2d",
        "batch_normalization",
        "global_average_pooling2d",
        "re_lu",
        "head",
        "dense",
    ]


def test_weights_roundtrip_and_config():
    layer = layers.Conv2D(3, 2, padding="same", activation="relu", name="c")
    layer(np.zeros((1, 4, 4, 2), np.float32))
    w = layer.get_weights()
    assert [a.shape for a in w] == [(2, 2, 2, 3), (3,)]
    clone = layers.deserialize(layers.serialize(layer))
    assert clone.get_config() == layer.get_config()
    clone(np.zeros((1, 4, 4, 2), np.float32))
    clone.set_weights(w)
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 2)).astype(np.float32)
    assert np.array_equal(clone(x).data, layer(x).data)
    with pytest.raises(ValueError, match=r"layer 'c' weight 'c/kernel' has shape"):
        layer.set_weights([np.zeros((3, 3, 2, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match="layer 'c' has 2 weights, got 1"):
        layer.set_weights([np.zeros(3)])


def test_initializers_follow_keras():
    rng = np.random.default_rng(0)
    w = initializers.get("glorot_uniform")((3, 3, 16, 32), np.float64, rng)
    limit = np.sqrt(6 / (9 * 16 + 9 * 32))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    h = initializers.get("he_normal")((200, 300), np.float64, rng)
    assert np.abs(h).max() <= 2 * np.sqrt(2 / 200) / 0.87962566103423978 + 1e-12
    assert abs(h.std() - np.sqrt(2 / 200)) < 0.02 * np.sqrt(2 / 200)
    assert np.array_equal(initializers.get("zeros")((2,)), np.zeros(2))
    assert np.array_equal(initializers.get("ones")((2,), np.float32), np.ones(2, np.float32))
    seeded = initializers.HeNormal(seed=3)
    assert np.array_equal(seeded((4, 4)), seeded((4, 4), rng=rng))
    config = initializers.serialize(initializers.GlorotUniform(seed=2))
    assert initializers.deserialize(config).seed == 2


def test_input_layer():
    inp = layers.InputLayer((4, 4, 1))
    assert inp(np.zeros((2, 4, 4, 1))).shape == (2, 4, 4, 1)
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4, 4, 1\)"):
        inp(np.zeros((2, 4, 4, 2)))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: layers.Conv2D(0, 3), ValueError, "filters must be >= 1, got 0"),
        (lambda: layers.Conv2D(2.5, 3), TypeError, "filters must be an int"),
        (lambda: layers.Conv2D(4, -1), ValueError, "kernel_size must be >= 1, got -1"),
        (lambda: layers.Conv2D(4, (3, 3, 3)), ValueError, "kernel_size must be an int or a tuple"),
        (lambda: layers.Conv2D(4, 3, padding="full"), ValueError, "padding must be 'valid'"),
        (lambda: layers.Conv2D(4, 3, strides=0), ValueError, "strides must be >= 1"),
        (lambda: layers.Conv2D(4, 3, dilation_rate=0), ValueError, "dilation_rate must be"),
        (lambda: layers.Conv2D(3, 3, groups=2), ValueError, "filters .3. must be divisible"),
        (lambda: layers.Conv1D(3, 3, activation="swishy"), ValueError, "unknown activation"),
        (lambda: layers.Dense(0), ValueError, "units must be >= 1"),
        (lambda: layers.Dense(3, activation=3), TypeError, "activation must be a name"),
        (lambda: layers.Dense(3, kernel_initializer="nope"), ValueError, "unknown name 'nope'"),
        (lambda: layers.Dense(3, dtype="int32"), ValueError, "dtype must be 'float32'"),
        (lambda: layers.Dense(3, name="a/b"), ValueError, "name must be a non-empty string"),
        (lambda: layers.MaxPooling2D(0), ValueError, "pool_size must be >= 1"),
        (lambda: layers.AveragePooling1D(2, padding="x"), ValueError, "padding must be"),
        (lambda: layers.Dropout(1.0), ValueError, "rate must be in \\[0, 1\\)"),
        (lambda: layers.Dropout("a"), TypeError, "rate must be a real number"),
        (lambda: layers.BatchNormalization(momentum=2), ValueError, "momentum must be in"),
        (lambda: layers.BatchNormalization(epsilon=0), ValueError, "epsilon must be > 0"),
        (lambda: layers.Reshape((0, 2)), ValueError, "target_shape must hold ints >= 1"),
        (lambda: layers.Reshape((-1, -1)), ValueError, "at most one -1"),
        (lambda: layers.Reshape(3), TypeError, "target_shape must be a tuple"),
        (lambda: layers.ZeroPadding2D((1, 2, 3)), ValueError, "padding must be an int"),
        (lambda: layers.ZeroPadding2D(-1), ValueError, "padding must be >= 0"),
        (lambda: layers.Activation("gelu2"), ValueError, "unknown activation 'gelu2'"),
        (lambda: layers.ReLU(negative_slope=-1), ValueError, "negative_slope must be >= 0"),
        (lambda: layers.Input("abc"), TypeError, "shape must be a tuple of ints"),
        (lambda: initializers.RandomNormal(stddev=-1), ValueError, "stddev must be >= 0"),
        (lambda: initializers.HeNormal(seed=-1), ValueError, r"HeNormal\(\): seed must be >= 0"),
        (lambda: layers.deserialize({"class_name": "NoSuchLayer"}), ValueError, "unknown layer"),
    ],
)
def test_rejections(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("layer", "x", "match"),
    [
        (lambda: layers.Conv2D(2, 3), np.zeros((2, 5, 5)), r"expected input of rank 4"),
        (lambda: layers.MaxPooling1D(), np.zeros((2, 5, 5, 1)), r"expected input of rank 3"),
        (lambda: layers.GlobalMaxPooling2D(), np.zeros((2, 5)), r"expected input of rank 4"),
        (lambda: layers.Conv2D(2, 3, groups=2), np.zeros((1, 5, 5, 3)), "input channels"),
        (lambda: layers.Reshape((4, 4)), np.zeros((2, 5)), "cannot reshape"),
        (lambda: layers.BatchNormalization(axis=1), np.zeros((2, 3, 4)), "axis must be the last"),
        (lambda: layers.Dense(2), np.zeros(3), r"expected input of rank >= 2"),
    ],
)
def test_bad_inputs(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer()(x)


def test_dense_rejects_changed_input_width():
    d = layers.Dense(2)
    d(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="expected inputs with last axis 3"):
        d(np.zeros((1, 4)))


ALL_LAYERS = [
    lambda: layers.InputLayer((3, 3, 2)),
    lambda: layers.Dense(3, activation="relu", use_bias=False),
    lambda: layers.Conv1D(2, 3, strides=2, padding="same", dilation_rate=1),
    lambda: layers.Conv2D(4, (3, 1), groups=2, kernel_initializer="he_normal"),
    lambda: layers.Conv3D(2, 2, bias_initializer=initializers.Constant(0.5)),
    lambda: layers.MaxPooling1D(3, strides=1, padding="same"),
    lambda: layers.MaxPooling2D((2, 1)),
    lambda: layers.MaxPooling3D(),
    lambda: layers.AveragePooling1D(),
    lambda: layers.AveragePooling2D(3, 2, "same"),
    lambda: layers.AveragePooling3D(),
    lambda: layers.GlobalAveragePooling1D(),
    lambda: layers.GlobalAveragePooling2D(keepdims=True),
    lambda: layers.GlobalAveragePooling3D(),
    lambda: layers.GlobalMaxPooling1D(),
    lambda: layers.GlobalMaxPooling2D(),
    lambda: layers.GlobalMaxPooling3D(),
    lambda: layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False),
    lambda: layers.Dropout(0.5, seed=3),
    lambda: layers.Flatten(trainable=False),
    lambda: layers.Reshape((-1, 2)),
    lambda: layers.ZeroPadding2D((1, 2)),
    lambda: layers.Activation("sigmoid"),
    lambda: layers.ReLU(max_value=6.0),
    lambda: layers.LeakyReLU(0.1),
    lambda: layers.Softmax(axis=1, dtype="float64"),
]


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_every_layer_config_round_trips(make):
    layer = make()
    config = layers.serialize(layer)
    clone = layers.deserialize(config)
    assert type(clone) is type(layer)
    assert layers.serialize(clone) == config
    assert clone.name == layer.name and clone.trainable == layer.trainable


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        # NaN or inf parameters made every weight NaN or inf; an infinite RandomUniform bound
        # was NumPy's OverflowError.
        (
            lambda: initializers.RandomNormal(mean=float("nan")),
            ValueError,
            r"^RandomNormal\(\): mean must be finite",
        ),
        (
            lambda: initializers.RandomNormal(stddev=float("inf")),
            ValueError,
            r"^RandomNormal\(\): stddev must be >= 0",
        ),
        (
            lambda: initializers.RandomUniform(minval=-float("inf")),
            ValueError,
            r"^RandomUniform\(\): minval must be finite",
        ),
        (
            lambda: initializers.Constant(float("nan")),
            ValueError,
            r"^Constant\(\): value must be finite",
        ),
        (
            lambda: initializers.Constant("0.5"),
            TypeError,
            r"^Constant\(\): value must be a real number",
        ),
        # Random samples cast to int were mostly zeros; a bad shape was NumPy's message.
        (
            lambda: initializers.GlorotUniform(seed=0)((3, 4), "int32"),
            TypeError,
            r"^GlorotUniform\(\): dtype must be a floating dtype, got int32",
        ),
        (
            lambda: initializers.HeNormal(seed=0)((3, 4), "complex64"),
            TypeError,
            r"^HeNormal\(\): dtype must be a floating dtype",
        ),
        (
            lambda: initializers.GlorotUniform(seed=0)((3, 4), "nope"),
            TypeError,
            r"^GlorotUniform\(\): dtype must be a NumPy dtype",
        ),
        (
            lambda: initializers.GlorotUniform(seed=0)((-1, 4)),
            ValueError,
            r"^GlorotUniform\(\): shape must be >= 0, got -1",
        ),
        (
            lambda: initializers.GlorotUniform(seed=0)("ab"),
            TypeError,
            r"^GlorotUniform\(\): shape must be a tuple of ints",
        ),
    ],
)
def test_initializers_reject_non_finite_parameters_integer_dtypes_and_bad_shapes(
    make, error, match
):
    with pytest.raises(error, match=match):
        make()
    assert initializers.Zeros()((2,), "int64").dtype == np.int64  # constants may be integers
    assert initializers.Constant(3)((2,), "int32").tolist() == [3, 3]
