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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_keras_pooling_layers(dtype):
    # Their shortcut (and their call without a tape) is the kernel alone, without the
    # argmax indices a backward would use; NaN propagates as in the call with a tape.
    inputs = layers.Input((13, 12, 5), dtype=dtype)
    a = layers.MaxPooling2D(3, strides=2, padding="same", name="max", dtype=dtype)(inputs)
    b = layers.AveragePooling2D(2, name="avg", dtype=dtype)(a)
    c = layers.MaxPooling1D(2, name="max1d", dtype=dtype)(layers.Reshape((-1, 5))(b))
    model = cnnkit.Model(inputs, [b, c], seed=3)
    x = np.random.default_rng(4).standard_normal((2, 13, 12, 5)).astype(dtype)
    x[1, 3, 4, 2] = np.nan
    _same_as_taped_at_one_and_two_threads(model, x)
    assert all(_shortcuts(model)[name] for name in ("max", "avg", "max1d"))


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


def _inverted_residuals(dtype: str = "float32") -> cnnkit.Model:
    """MobileNet v2's blocks: expand, depthwise, a linear projection, then a plain Add of
    the block's input (no ReLU after it); the projection comes first or second in the
    Add's list. An Add whose convolution has an activation of its own does not fold."""
    inputs = layers.Input((9, 10, 8), dtype=dtype)
    x = layers.Conv2D(8, 1, activation="relu", name="stem", dtype=dtype)(inputs)
    for i, project_first in enumerate((False, True)):
        e = layers.Conv2D(24, 1, activation="relu6", name=f"expand{i}", dtype=dtype)(x)
        d = layers.DepthwiseConv2D(3, padding="same", activation="relu6", dtype=dtype)(e)
        p = layers.Conv2D(8, 1, name=f"project{i}", dtype=dtype)(d)
        x = layers.Add(name=f"add{i}", dtype=dtype)([p, x] if project_first else [x, p])
    r = layers.Conv2D(8, 3, padding="same", activation="relu", name="rectified", dtype=dtype)(x)
    x = layers.Add(name="not_linear", dtype=dtype)([x, r])
    return cnnkit.Model(inputs, layers.GlobalAveragePooling2D(dtype=dtype)(x), seed=8)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plain_residual_adds_fold_into_their_linear_convolutions(dtype):
    model = _inverted_residuals(dtype)
    x = np.random.default_rng(9).standard_normal((2, 9, 10, 8)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    x[1, 4, 4, :] = np.inf
    _same_as_taped_at_one_and_two_threads(model, x)
    with ag.no_grad():
        folded = {s.layer.name: s.residual.layer.name for s in model._steps() if s.residual}
    assert folded == {"project0": "add0", "project1": "add1"}
    _activations_and_probe_as_taped(model, x, ["project1", "add1"], "add0")


def test_depthwise_shortcut_sees_new_and_changed_weights():
    # The shortcut keeps the grouped view of the kernel between calls: weights changed in
    # place, assigned by set_weights or replaced by another array are all seen.
    model = _inverted_residuals()
    layer = next(s.layer for s in model._steps() if isinstance(s.layer, layers.DepthwiseConv2D))
    x = np.random.default_rng(10).standard_normal((1, 9, 10, 8)).astype(np.float32)
    rng = np.random.default_rng(11)
    for change in ("in place", "set_weights", "replaced"):
        kernel = rng.standard_normal(layer.kernel.shape).astype(np.float32)
        if change == "in place":
            layer.kernel.data[...] = kernel
        elif change == "set_weights":
            layer.set_weights([kernel, layer.bias.data])
        else:
            layer.kernel.data = kernel
        taped, planned = _taped_and_planned(model, x)
        _same(taped, planned)


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


def _activations_and_probe_as_taped(model, x, names: list[str], probed: str) -> None:
    """activations() of folded layers are their taped values, and a probe set on a folded
    layer runs (its fold is skipped)."""
    taped = model.activations(x, names)
    with ag.no_grad():
        planned = model.activations(x, names)
    for name in taped:
        _same(taped[name], planned[name])
    seen = _probe(model.get_layer(probed))
    with ag.no_grad():
        model(x)
    assert seen


def test_folded_layers_still_answer_activations_and_probes():
    model = _residual_blocks()
    x = np.random.default_rng(6).standard_normal((1, 10, 10, 8)).astype(np.float32)
    _activations_and_probe_as_taped(model, x, ["a", "first", "down"], "first")


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


def _stems(dtype: str = "float32") -> cnnkit.Model:
    # An imported network's first layers (a Permute of its channels-first input, a
    # convolution, a max pool) twice, the second convolution's output also a model output
    # (its pool is then not folded; its Permute is), and a Keras pool after a linear one.
    inputs = layers.Input((3, 30, 27), dtype=dtype)
    x = layers.Permute((2, 3, 1), name="to_last", dtype=dtype)(inputs)
    x = layers.Conv2D(20, 7, strides=2, padding="same", activation="relu", name="c1", dtype=dtype)(
        x
    )
    x = OnnxPooling("max", (3, 3), (2, 2), ((1, 1), (1, 1)), name="p1", dtype=dtype)(x)
    x = layers.Conv2D(8, 3, name="c2", dtype=dtype)(x)
    x = layers.MaxPooling2D(2, name="p2", dtype=dtype)(x)
    side = layers.Permute((2, 3, 1), name="side_last", dtype=dtype)(inputs)
    side = layers.Conv2D(4, 5, strides=3, activation="relu6", name="c3", dtype=dtype)(side)
    pooled = OnnxPooling("max", (2, 2), (2, 2), ((0, 0), (0, 0)), ceil_mode=True, name="p3")(side)
    out = layers.Concatenate(dtype=dtype)(
        [layers.GlobalMaxPooling2D(dtype=dtype)(t) for t in (x, pooled)]
    )
    return cnnkit.Model(inputs, [out, side], seed=7)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pools_and_input_permutes_fold_into_their_convolutions(dtype):
    model = _stems(dtype)
    x = np.random.default_rng(8).standard_normal((2, 3, 30, 27)).astype(dtype)
    x[0, 1, 4, 5] = np.nan  # max pools propagate it as the separate layers do
    _same_as_taped_at_one_and_two_threads(model, x)
    with ag.no_grad():
        steps = model._steps()
    stems = {
        s.layer.name: (
            s.stem_permute and s.stem_permute.layer.name,
            s.stem_pool and s.stem_pool.layer.name,
        )
        for s in steps
        if s.stem is not None
    }
    assert stems == {"c1": ("to_last", "p1"), "c2": (None, "p2"), "c3": ("side_last", None)}
    assert {s.layer.name for s in steps if s.planar} == {"to_last", "side_last"}


def test_folded_pools_and_permutes_still_answer_activations_and_probes():
    model = _stems()
    x = np.random.default_rng(9).standard_normal((1, 3, 30, 27)).astype(np.float32)
    names = ["to_last", "c1", "p1", "c2", "p2"]
    taped = model.activations(x, names)
    with ag.no_grad():
        planned = model.activations(x, names)
    for name in names:
        _same(taped[name], planned[name])
    seen = _probe(model.get_layer("p1"))  # the pool's own call then runs, after the conv's
    taped, planned = _taped_and_planned(model, x)
    _same(taped[0], planned[0])
    assert len(seen) == 2


def test_a_pool_subclass_that_changes_call_is_not_folded():
    class DoubledPool(layers.MaxPooling2D):
        def call(self, x, training=False):
            return super().call(x) * 2.0

    inputs = layers.Input((16, 16, 3))
    c = layers.Conv2D(8, 7, strides=2, padding="same", activation="relu")(inputs)
    model = cnnkit.Model(inputs, DoubledPool(3, strides=2, padding="same")(c), seed=3)
    x = np.random.default_rng(12).standard_normal((2, 16, 16, 3)).astype(np.float32)
    taped, planned = _taped_and_planned(model, x)
    _same(taped, planned)
    with ag.no_grad():
        assert all(s.stem is None for s in model._steps())


def test_a_concat_producer_with_weights_of_another_dtype_still_runs():
    # The fold's buffer has the Concatenate's dtype; a producer whose weights were assigned
    # in float64 makes a float64 result, which the plan copies in as the layer's call would.
    model = _fire_and_inception()
    layer = model.get_layer("expand3x3")
    layer.kernel.data = layer.kernel.data.astype(np.float64)
    x = np.random.default_rng(13).standard_normal((2, 11, 12, 6)).astype(np.float32)
    for taped, planned in zip(*_taped_and_planned(model, x)):
        np.testing.assert_allclose(planned.data, taped.data, rtol=1e-6, atol=1e-6)


def test_depthwise_shortcut_sees_in_place_changes_of_a_fortran_ordered_kernel():
    # Its reshape is then a copy, which must not be kept across calls.
    model = _inverted_residuals()
    layer = next(s.layer for s in model._steps() if isinstance(s.layer, layers.DepthwiseConv2D))
    layer.kernel.data = np.asfortranarray(layer.kernel.data)
    x = np.random.default_rng(14).standard_normal((1, 9, 10, 8)).astype(np.float32)
    _same(*_taped_and_planned(model, x))
    layer.kernel.data[...] = 0.5
    _same(*_taped_and_planned(model, x))
