"""Inference plans of functional models (Functional._infer): without a gradient tape, layers
with a shortcut (Layer._inference_step) call their kernel directly on arrays. Checked: the
values are the bits of a call with a tape (the layers' own calls) for every layer that has a
shortcut, with and without activations, float32 and float64, at 1 and 2 threads; layers
without one, subclasses that change ``call``, probes set on an instance, ``activations()``,
activity regularizers, nested and shared layers and several outputs still run as they say."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import autograd as ag
from cnnkit import layers, ops
from cnnkit.models import functional
from cnnkit.onnx._layers import AddReLU, OnnxPooling


def _taped_and_planned(model: cnnkit.Model, x) -> tuple:
    taped = model(x)  # a gradient tape: every layer's own call
    with ag.no_grad():
        planned = model(x)
    return taped, planned


def _same(a, b) -> None:
    a, b = (t.data if isinstance(t, ag.Tensor) else t for t in (a, b))
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b, strict=True)


def _shortcuts(model: cnnkit.Model) -> dict[str, bool]:
    with ag.no_grad():
        return {s.layer.name: s.fast is not None for s in model._steps()}


def _image_model(dtype: str) -> cnnkit.Model:
    inputs = layers.Input((13, 11, 6), dtype=dtype)
    a = layers.Conv2D(8, 3, padding="same", activation="relu", name="relu", dtype=dtype)(inputs)
    dw = layers.DepthwiseConv2D(
        3, strides=2, depth_multiplier=2, activation="relu", name="depthwise_m2", dtype=dtype
    )(a)
    sep = layers.SeparableConv2D(8, 1, activation="relu", name="separable", dtype=dtype)(dw)
    b = layers.Conv2D(8, 3, strides=2, name="linear", dtype=dtype)(sep)
    six = layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw", dtype=dtype)(a)
    c = layers.Conv2D(
        8, 3, padding="same", dilation_rate=2, activation="leaky_relu", name="leaky", dtype=dtype
    )(six)
    d = layers.Conv2D(8, 1, groups=2, activation="sigmoid", name="grouped", dtype=dtype)(c)
    e = layers.Conv2D(8, 3, padding="same", activation="tanh", name="tanh", dtype=dtype)(d)
    six = layers.Conv2D(4, 1, activation="relu6", name="relu6", dtype=dtype)(e)
    e = layers.Concatenate(name="concat", dtype=dtype)([six, layers.Conv2D(4, 1, dtype=dtype)(e)])
    f = AddReLU(name="add_relu", dtype=dtype)([d, e])
    g = OnnxPooling(
        "max", (3, 3), (2, 2), ((1, 1), (0, 1)), ceil_mode=True, name="pool", dtype=dtype
    )(f)
    h = layers.GlobalAveragePooling2D(name="gap", dtype=dtype)(g)
    m = layers.GlobalMaxPooling2D(keepdims=True, name="gmp", dtype=dtype)(b)
    k = layers.Dense(7, name="dense", dtype=dtype)(h)
    r = layers.Dense(4, activation="relu", use_bias=False, name="dense_relu", dtype=dtype)(k)
    flat = layers.Flatten(name="flat", dtype=dtype)(m)
    return cnnkit.Model(inputs, [r, flat, layers.Dense(3, name="rows", dtype=dtype)(e)], seed=1)


def _same_as_taped_at_one_and_two_threads(model, x):
    results = []
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        taped, planned = _taped_and_planned(model, x)
        for t, p in zip(taped, planned):
            _same(t, p)
        results.append(planned)
    for a, b in zip(*results):
        _same(a, b)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 3])
def test_shortcuts_have_the_bits_of_the_layers_calls(dtype, batch):
    model = _image_model(dtype)
    x = np.random.default_rng(batch).standard_normal((batch, 13, 11, 6)).astype(dtype)
    _same_as_taped_at_one_and_two_threads(model, x)
    shortcuts = _shortcuts(model)
    for name in ("relu", "linear", "leaky", "grouped", "relu6", "concat", "add_relu", "pool"):
        assert shortcuts[name], name
    for name in ("dw", "depthwise_m2"):
        assert shortcuts[name], name
    for name in ("gap", "gmp"):
        assert shortcuts[name], name
    for name in ("dense", "dense_relu"):
        assert shortcuts[name], name
    # tanh is not fused into the convolution; Flatten has no shortcut, nor SeparableConv2D
    # (its own call, not its parent DepthwiseConv2D's); a Dense layer on 3-D input (the
    # rows of e) has one that declines it at run time.
    assert not shortcuts["tanh"] and not shortcuts["flat"] and not shortcuts["separable"]
    assert shortcuts["rows"]


def test_one_and_three_dimensional_layers():
    inputs = layers.Input((20, 3))
    x = layers.Conv1D(4, 3, padding="causal", activation="relu")(inputs)
    x = layers.GlobalAveragePooling1D(keepdims=True)(x)
    volume = layers.Input((5, 6, 7, 2))
    y = layers.Conv3D(3, 2, strides=(1, 2, 1))(volume)
    y = layers.GlobalMaxPooling3D()(y)
    model = cnnkit.Model([inputs, volume], [x, y], seed=2)
    rng = np.random.default_rng(0)
    feed = [rng.standard_normal((2, 20, 3)), rng.standard_normal((2, 5, 6, 7, 2))]
    feed = [a.astype(np.float32) for a in feed]
    taped, planned = _taped_and_planned(model, feed)
    for t, p in zip(taped, planned):
        _same(t, p)


def test_a_subclass_that_changes_call_runs_its_own_call():
    class Doubled(layers.Conv2D):
        def call(self, x, training=False):
            return super().call(x, training) * 2.0

    inputs = layers.Input((6, 6, 2))
    model = cnnkit.Model(inputs, Doubled(3, 3, name="doubled")(inputs), seed=0)
    x = np.ones((1, 6, 6, 2), np.float32)
    taped, planned = _taped_and_planned(model, x)
    _same(taped, planned)
    assert not _shortcuts(model)["doubled"]


def test_probes_regularizers_and_activations_see_every_layer():
    inputs = layers.Input((6, 6, 2))
    x = layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D(name="gap")(x))
    model = cnnkit.Model(inputs, out, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    conv = model.get_layer("conv")
    seen = []
    original = conv.call

    def probe(*args, **kwargs):
        seen.append(True)
        return original(*args, **kwargs)

    conv.call = probe
    with ag.no_grad():
        probed = model(x)
    assert seen
    del conv.call
    with ag.no_grad():
        acts = model.activations(x, ["conv", "gap"])
        _same(acts["gap"], cnnkit.ops.global_avg_pool(acts["conv"].data))
        _same(model(x), probed)
    head = model.get_layer("head")
    head.activity_regularizer = cnnkit.regularizers.L2(0.5)
    with ag.no_grad():
        model(x)
    assert head._activity_losses  # the layer's own call ran


def test_shared_layers_nested_models_and_dict_outputs():
    shared = layers.Dense(4, activation="relu", name="shared")
    inner_in = layers.Input((4,))
    inner = cnnkit.Model(inner_in, layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    a, b = layers.Input((4,), name="a"), layers.Input((4,), name="b")
    sa, sb = shared(a), shared(b)
    out = {"sum": AddReLU(name="join")([inner(sa), sb]), "left": sa}
    model = cnnkit.Model([a, b], out, seed=3)
    rng = np.random.default_rng(1)
    feed = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(2)]
    taped, planned = _taped_and_planned(model, feed)
    assert set(planned) == {"sum", "left"}
    for key in planned:
        _same(taped[key], planned[key])


def test_inputs_of_another_dtype_are_cast_as_before():
    inputs = layers.Input((5, 5, 1), dtype="float64")
    model = cnnkit.Model(inputs, layers.Conv2D(2, 3, dtype="float64")(inputs), seed=0)
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    taped, planned = _taped_and_planned(model, x)
    assert planned.dtype == np.float64
    _same(taped, planned)


def _residual_blocks(dtype: str = "float32") -> cnnkit.Model:
    inputs = layers.Input((10, 10, 8), dtype=dtype)
    stem = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem", dtype=dtype)(inputs)
    a = layers.Conv2D(8, 3, padding="same", name="a", dtype=dtype)(stem)
    first = AddReLU(name="first", dtype=dtype)([stem, a])  # a is made last: folded into a
    b = layers.Conv2D(16, 3, strides=2, padding="same", name="b", dtype=dtype)(first)
    down = layers.Conv2D(16, 1, strides=2, name="down", dtype=dtype)(first)
    second = AddReLU(name="second", dtype=dtype)([b, down])  # down is made last
    c = layers.Conv2D(16, 1, name="c", dtype=dtype)(second)
    third = AddReLU(name="third", dtype=dtype)([second, c])
    shared = layers.Conv2D(16, 1, name="shared", dtype=dtype)(third)  # read twice: not folded
    fourth = AddReLU(name="fourth", dtype=dtype)([third, shared])
    out = layers.GlobalAveragePooling2D(dtype=dtype)(layers.Add(dtype=dtype)([fourth, shared]))
    return cnnkit.Model(inputs, [out, c], seed=4)  # c is an output too: not folded


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_residual_adds_fold_into_their_convolutions(dtype):
    model = _residual_blocks(dtype)
    x = np.random.default_rng(5).standard_normal((2, 10, 10, 8)).astype(dtype)
    _same_as_taped_at_one_and_two_threads(model, x)
    with ag.no_grad():
        folded = {s.layer.name: s.residual.layer.name for s in model._steps() if s.residual}
    assert folded == {"a": "first", "down": "second"}


def _probe(layer) -> list:
    """Sets a probe as the layer's ``call`` on the instance; the list it returns grows by
    one at each call."""
    seen: list = []
    original = layer.call

    def probe(*args, **kwargs):
        seen.append(True)
        return original(*args, **kwargs)

    layer.call = probe
    return seen


def test_folded_layers_still_answer_activations_and_probes():
    model = _residual_blocks()
    x = np.random.default_rng(6).standard_normal((1, 10, 10, 8)).astype(np.float32)
    taped = model.activations(x, ["a", "first", "down"])
    with ag.no_grad():
        planned = model.activations(x, ["a", "first", "down"])
    for name in taped:
        _same(taped[name], planned[name])
    seen = _probe(model.get_layer("first"))
    with ag.no_grad():
        model(x)
    assert seen


def _fire_and_inception(dtype: str = "float32") -> cnnkit.Model:
    """A SqueezeNet fire module (1x1 squeeze, then 1x1 and 3x3 expands concatenated) and a
    GoogLeNet inception block (four branches: 1x1; 1x1 then 3x3; 1x1 then 5x5; max pool
    then 1x1) after it, then one concat that must not fold (an input is read twice)."""
    inputs = layers.Input((11, 12, 6), dtype=dtype)
    squeeze = layers.Conv2D(4, 1, activation="relu", name="squeeze", dtype=dtype)(inputs)
    e1 = layers.Conv2D(8, 1, activation="relu", name="expand1x1", dtype=dtype)(squeeze)
    e3 = layers.Conv2D(12, 3, padding="same", activation="relu", name="expand3x3", dtype=dtype)(
        squeeze
    )
    fire = layers.Concatenate(name="fire", dtype=dtype)([e1, e3])
    b1 = layers.Conv2D(5, 1, activation="relu", name="b1", dtype=dtype)(fire)
    b2 = layers.Conv2D(6, 1, activation="relu", dtype=dtype)(fire)
    b2 = layers.Conv2D(7, 3, padding="same", activation="relu", name="b2", dtype=dtype)(b2)
    b3 = layers.Conv2D(3, 1, activation="relu", dtype=dtype)(fire)
    b3 = layers.Conv2D(4, 5, padding="same", name="b3", dtype=dtype)(b3)  # linear
    b4 = OnnxPooling("max", (3, 3), (1, 1), ((1, 1), (1, 1)), dtype=dtype)(fire)
    b4 = layers.Conv2D(3, 1, activation="relu", name="b4", dtype=dtype)(b4)
    inception = layers.Concatenate(axis=3, name="inception", dtype=dtype)([b1, b2, b3, b4])
    twice = layers.Conv2D(2, 1, name="twice", dtype=dtype)(inception)
    last = layers.Concatenate(name="last", dtype=dtype)([twice, twice])
    out = layers.GlobalAveragePooling2D(dtype=dtype)(last)
    return cnnkit.Model(inputs, [out, inception], seed=7)


def _concat_calls(monkeypatch) -> list:
    calls: list = []
    original = ops.concat

    def counted(*args, **kwargs):
        calls.append(args[0][0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(ops, "concat", counted)
    return calls


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 2])
def test_channel_concats_of_convolutions_fold(monkeypatch, dtype, batch):
    """The fire module's and the inception block's convolutions write into the concat's
    output, which copies nothing: the bits of the taped call and of the plan without the
    fold, at 1 and 2 threads; the concat that reads one tensor twice still copies."""
    model = _fire_and_inception(dtype)
    x = np.random.default_rng(8).standard_normal((batch, 11, 12, 6)).astype(dtype)
    with ag.no_grad():
        into = {s.layer.name: s.into.target.layer.name for s in model._steps() if s.into}
    assert into == {
        "expand1x1": "fire",
        "expand3x3": "fire",
        "b1": "inception",
        "b2": "inception",
        "b3": "inception",
        "b4": "inception",
    }
    calls = _concat_calls(monkeypatch)
    _same_as_taped_at_one_and_two_threads(model, x)
    taped_calls = 2 * 3  # the taped calls copy all three concats
    assert len(calls) == taped_calls + 2 * 1  # the planned ones copy only "last"
    with ag.no_grad():
        planned = model(x)
    monkeypatch.setattr(functional, "_fold_concats", lambda steps, outputs: None)
    plain = _fire_and_inception(dtype)
    plain.set_weights(model.get_weights())
    with ag.no_grad():
        unfolded = plain(x)
    for a, b in zip(planned, unfolded):
        _same(a, b)


def test_folded_concats_still_answer_activations_and_probes(monkeypatch):
    model = _fire_and_inception()
    x = np.random.default_rng(9).standard_normal((2, 11, 12, 6)).astype(np.float32)
    names = ["expand1x1", "fire", "b3", "inception"]
    taped = model.activations(x, names)
    with ag.no_grad():
        planned = model.activations(x, names)
        only_branch = model.activations(x, ["b2"])
        after = model(x)
    for name in names:
        _same(taped[name], planned[name])
    taped_b2 = model.activations(x, ["b2"])["b2"]
    _same(taped_b2, only_branch["b2"])
    assert taped_b2.shape == (2, 11, 12, 7)
    _same(model(x)[1], after[1])
    seen = _probe(model.get_layer("expand3x3"))  # its output is copied into the concat's
    with ag.no_grad():
        probed = model(x)
    assert seen
    for a, b in zip(probed, after):
        _same(a, b)
    calls = _concat_calls(monkeypatch)
    with ag.no_grad():
        model(x)
    assert len(calls) == 1  # "last" only: the probe's output was copied into "fire"'s
