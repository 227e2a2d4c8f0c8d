"""The functional API: cnnkit.Model(inputs, outputs) on symbolic tensors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gradcheck import check_gradients

import cnnkit
from cnnkit import layers
from cnnkit.autograd import Tensor
from cnnkit.layers import KerasTensor
from cnnkit.models import Functional

RNG = np.random.default_rng(0)


def _small_resnet(seed=0):
    inputs = layers.Input((6, 6, 2), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="branch_a")(x)
    y = layers.Conv2D(4, 3, padding="same", name="branch_b")(y)
    x = layers.add([x, y], name="residual")
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(3, name="logits")(x)
    return cnnkit.Model(inputs, outputs, seed=seed, name="small_resnet")


def test_symbolic_tensors_and_model_properties():
    inputs = layers.Input((6, 6, 2))
    assert isinstance(inputs, KerasTensor)
    assert inputs.shape == (None, 6, 6, 2) and inputs.dtype == np.float32
    x = layers.Conv2D(4, 3)(inputs)
    assert isinstance(x, KerasTensor) and x.shape == (None, 4, 4, 4)
    model = cnnkit.Model(inputs=inputs, outputs=x)
    assert isinstance(model, Functional) and isinstance(model, cnnkit.Model)
    assert model.inputs == [inputs] and model.outputs == [x]
    assert model.input_shape == (None, 6, 6, 2)
    assert model.output_shape == (None, 4, 4, 4)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Conv2D"]


def test_forward_equals_the_layers_applied_by_hand():
    model = _small_resnet()
    x = RNG.standard_normal((5, 6, 6, 2)).astype(np.float32)
    get = model.get_layer
    h = get("stem")(x)
    h = h + get("branch_b")(get("branch_a")(h))
    expect = get("logits")(get("pool")(get("bn")(h))).data
    np.testing.assert_allclose(model.predict(x, verbose=0), expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x).data, expect, rtol=1e-5, atol=1e-6)


def test_fit_evaluate_predict_activations():
    model = _small_resnet()
    x = RNG.standard_normal((32, 6, 6, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, _ = model.evaluate(x, y, verbose=0)
    assert np.isfinite(loss)
    assert model.predict(x, verbose=0).shape == (32, 3)
    feats = model.activations(x[:2], ["stem", "residual"])
    assert feats["residual"].shape == (2, 6, 6, 4)


def test_gradients_through_a_functional_model():
    f64 = {"dtype": "float64"}
    inputs = layers.Input((3, 3, 2), **f64)
    a = layers.Conv2D(2, 2, name="c", **f64)(inputs)
    b = layers.Dense(2, name="d", **f64)(inputs)
    b = layers.MaxPooling2D(2, strides=1, **f64)(b)
    out = layers.concatenate([layers.multiply([a, b], **f64), a], **f64)
    model = cnnkit.Model(inputs, out, seed=1)
    assert model.dtype == np.float64
    check_gradients(lambda t: model(t), [RNG.standard_normal((2, 3, 3, 2))])


def test_multiple_inputs_and_outputs_lists_and_dicts():
    image = layers.Input((4, 4, 1), name="image")
    meta = layers.Input((3,), name="meta")
    x = layers.Flatten()(image)
    x = layers.concatenate([x, meta])
    x = layers.Dense(8, activation="relu")(x)
    cls = layers.Dense(2, name="cls")(x)
    reg = layers.Dense(1, name="reg")(x)
    xs = [RNG.standard_normal((16, 4, 4, 1)), RNG.standard_normal((16, 3))]
    xs = [a.astype(np.float32) for a in xs]
    ys = {"cls": RNG.integers(0, 2, 16), "reg": RNG.standard_normal((16, 1))}

    listed = cnnkit.Model([image, meta], [cls, reg], seed=0)
    assert listed.input_shape == [(None, 4, 4, 1), (None, 3)]
    assert listed.output_shape == [(None, 2), (None, 1)]
    out = listed.predict(xs, verbose=0)
    assert [o.shape for o in out] == [(16, 2), (16, 1)]
    by_name = listed.predict({"image": xs[0], "meta": xs[1]}, verbose=0)
    np.testing.assert_allclose(by_name[0], out[0], rtol=1e-6)

    named = cnnkit.Model({"image": image, "meta": meta}, {"cls": cls, "reg": reg}, seed=0)
    named.compile(
        "adam",
        loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
        loss_weights={"cls": 1.0, "reg": 0.5},
    )
    hist = named.fit({"image": xs[0], "meta": xs[1]}, ys, epochs=3, batch_size=8, verbose=0)
    assert len(hist.history["loss"]) == 3
    got = named.predict({"meta": xs[1], "image": xs[0]}, verbose=0)
    assert set(got) == {"cls", "reg"}
    with pytest.raises(ValueError, match=r"x is a dict without the input\(s\) \['meta'\]"):
        named.predict({"image": xs[0]}, verbose=0)
    with pytest.raises(ValueError, match=r"expected 2 input\(s\) \('image', 'meta'\), got 1"):
        listed(xs[0])


def test_shared_layer_shares_weights_and_accumulates_gradients():
    left, right = layers.Input((5,)), layers.Input((5,))
    shared = layers.Dense(4, name="tower")
    distance = layers.subtract([shared(left), shared(right)])
    model = cnnkit.Model([left, right], layers.Dense(1)(distance), seed=0)
    assert sum(layer is shared for layer in model.layers) == 1
    assert len(model.weights) == 4  # tower kernel + bias, head kernel + bias
    a, b = RNG.standard_normal((3, 5)), RNG.standard_normal((3, 5))
    out = model([a, b])
    out.sum().backward()
    grad = shared.kernel.grad.copy()
    head = model.layers[-1].kernel.data[:, 0]
    np.testing.assert_allclose(grad, ((a - b).T.sum(axis=1, keepdims=True) * head), rtol=1e-4)
    summary = []
    model.summary(print_fn=summary.append)
    assert any("tower[0][0]" in line and "tower[1][0]" not in line for line in summary)
    assert any("tower[1][0]" in line for line in summary)


def test_nested_models_called_on_symbolic_tensors():
    encoder = cnnkit.Sequential([layers.Input((4,)), layers.Dense(3)], name="encoder", seed=0)
    inner_in = layers.Input((3,))
    inner = cnnkit.Model(inner_in, layers.Dense(2, name="inner_dense")(inner_in), name="inner")
    inputs = layers.Input((4,))
    outputs = inner(encoder(inputs))
    model = cnnkit.Model(inputs, outputs, name="outer")
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(model(x).data, inner(encoder(x)).data, rtol=1e-6)
    assert model.get_layer("inner_dense") is inner.get_layer("inner_dense")
    assert len(model.weights) == 4
    rebuilt = Functional.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(rebuilt(x).data, model(x).data, rtol=1e-6)


def test_summary_has_the_connected_to_column():
    lines = []
    _small_resnet().summary(print_fn=lines.append)
    header = next(line for line in lines if "Layer (type)" in line)
    assert "Connected to" in header
    residual = next(i for i, line in enumerate(lines) if "residual (Add)" in line)
    assert "stem[0][0]" in lines[residual] and "branch_b[0][0]" in lines[residual + 1]
    assert any("Total params: 403" in line for line in lines)  # 76 + 148 + 148 + 16 + 15


def test_config_is_keras_shaped_and_round_trips():
    model = _small_resnet()
    config = model.get_config()
    assert config["input_layers"] == ["image", 0, 0]
    assert config["output_layers"] == ["logits", 0, 0]
    residual = next(e for e in config["layers"] if e["name"] == "residual")
    refs = [a["config"]["keras_history"] for a in residual["inbound_nodes"][0]["args"][0]]
    assert refs == [["stem", 0, 0], ["branch_b", 0, 0]]
    rebuilt = cnnkit.layers.deserialize(cnnkit.layers.serialize(model))
    assert isinstance(rebuilt, Functional)
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    rebuilt.set_weights(model.get_weights())
    x = RNG.standard_normal((3, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))


def test_from_config_replays_a_shared_layer_listed_before_its_second_input():
    a, b = layers.Input((3,), name="a"), layers.Input((3,), name="b")
    shared = layers.Dense(3, name="shared")
    x = shared(a)
    later = layers.Dense(3, name="later")(b)
    y = shared(later)  # the shared layer's second node reads a layer listed after it
    model = cnnkit.Model([a, b], layers.add([x, y]), seed=0)
    rebuilt = Functional.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    xs = [RNG.standard_normal((2, 3)).astype(np.float32) for _ in range(2)]
    np.testing.assert_allclose(rebuilt(xs).data, model(xs).data, rtol=1e-6)


def test_save_and_load_in_a_fresh_process(tmp_path):
    model = _small_resnet()
    model.compile("adam", "sparse_categorical_crossentropy")
    x = RNG.standard_normal((8, 6, 6, 2)).astype(np.float32)
    model.fit(x, RNG.integers(0, 3, 8), epochs=1, verbose=0)
    path = tmp_path / "resnet.cnnkit"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expect.npy", model.predict(x, verbose=0))
    script = (
        "import sys, numpy as np, cnnkit\n"
        "d = sys.argv[1]\n"
        "m = cnnkit.load_model(d + '/resnet.cnnkit')\n"
        "assert type(m).__name__ == 'Functional', type(m)\n"
        "got = m.predict(np.load(d + '/x.npy'), verbose=0)\n"
        "np.testing.assert_array_equal(got, np.load(d + '/expect.npy'))\n"
        "m.fit(np.load(d + '/x.npy'), np.zeros(8, int), epochs=1, verbose=0)\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_frozen_base_called_with_training_false_keeps_batchnorm_in_inference():
    base_in = layers.Input((4,))
    h = layers.Dense(6, name="base_dense")(base_in)
    h = layers.BatchNormalization(name="base_bn")(h)
    base = cnnkit.Model(base_in, h, name="base", seed=0)
    inputs = layers.Input((4,))
    outputs = layers.Dense(1, name="head")(base(inputs, training=False))
    model = cnnkit.Model(inputs, outputs, seed=0)
    config = model.get_config()
    node = next(e for e in config["layers"] if e["name"] == "base")["inbound_nodes"][0]
    assert node["kwargs"] == {"training": False}
    rebuilt = Functional.from_config(config)
    assert rebuilt._graph_nodes[1].training is False

    base.trainable = True  # unfrozen: its BN is still called with training=False
    bn = base.get_layer("base_bn")
    before = bn.moving_mean.data.copy()
    model.compile("sgd", "mse")
    x = RNG.standard_normal((16, 4)).astype(np.float32) * 3 + 2
    model.fit(x, RNG.standard_normal((16, 1)), epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(bn.moving_mean.data, before)
    assert bn.gamma.data is not None and base.get_layer("base_dense").trainable

    plain = cnnkit.Model(inputs, layers.Dense(1)(base(inputs)), seed=0)
    plain.compile("sgd", "mse")
    plain.fit(x, RNG.standard_normal((16, 1)), epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(bn.moving_mean.data, before)  # without it BN trains


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: layers.Dense(2)([layers.Input((3,)), np.zeros((1, 3))]),
            TypeError,
            "mix of symbolic tensors and ndarray",
        ),
        (lambda: cnnkit.Model(layers.Input((3,))), TypeError, "needs both inputs and outputs"),
        (
            lambda: cnnkit.Model(layers.Input((3,)), layers.Dense(2)),
            TypeError,
            "outputs must be symbolic tensors .* got Dense \\(a layer, not its output",
        ),
        (
            lambda: cnnkit.Model(np.zeros((1, 3)), np.zeros((1, 3))),
            TypeError,
            "inputs must be symbolic tensors .* got ndarray \\(data",
        ),
        (lambda: np.asarray(layers.Input((3,))), TypeError, "is symbolic and has no values"),
        (
            lambda: layers.Conv2D(8, 3)(layers.Dense(2, name="not_a_tensor")),
            TypeError,
            "input must be a tensor or array, got Dense 'not_a_tensor', a layer",
        ),
        (lambda: layers.Dense(2)(None), TypeError, "input must be a tensor or array, got None"),
    ],
)
def test_messages(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_disconnected_and_unused_inputs_are_named():
    a, b = layers.Input((3,), name="first"), layers.Input((3,), name="second")
    out = layers.add([a, b])
    with pytest.raises(
        ValueError, match=r"need the input 'second' .* not among inputs \['first'\]"
    ):
        cnnkit.Model(a, out)
    with pytest.raises(ValueError, match=r"the input\(s\) \['second'\] are not used"):
        cnnkit.Model([a, b], layers.Dense(2)(a))
    mid = layers.Dense(3)(a)
    with pytest.raises(ValueError, match=r"inputs must be tensors made by layers\.Input"):
        cnnkit.Model(mid, layers.Dense(2)(mid))


def test_wrong_input_shape_names_the_input_layer():
    model = _small_resnet()
    with pytest.raises(ValueError, match=r"InputLayer 'image': expected input of shape"):
        model(Tensor(np.zeros((1, 5, 5, 2), np.float32)))


def test_sequential_still_takes_input_first():
    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(2)], seed=0)
    assert model.built and model.count_params() == 8


def test_save_load_dicts_shared_layers_nested_models_and_frozen_flags(tmp_path):
    encoder = cnnkit.Sequential([layers.Input((4,)), layers.Dense(3)], name="encoder", seed=0)
    encoder.trainable = False
    a, b = layers.Input((4,), name="a"), layers.Input((4,), name="b")
    shared = layers.Dense(3, name="shared")
    ea, eb = encoder(a, training=False), encoder(b, training=False)
    outputs = {
        "sum": layers.add([shared(ea), shared(eb)]),
        "cos": layers.dot([ea, eb], axes=1, normalize=True),
    }
    model = cnnkit.Model({"a": a, "b": b}, outputs, seed=3)
    model.compile("adam", {"sum": "mse", "cos": "mse"})
    path = tmp_path / "siamese.cnnkit"
    model.save(path)
    loaded = cnnkit.load_model(path)
    xs = {k: RNG.standard_normal((5, 4)).astype(np.float32) for k in "ab"}
    want, got = model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert not loaded.get_layer("encoder").trainable
    assert len(loaded.trainable_weights) == 2  # the shared Dense only
    assert loaded.get_config() == model.get_config()


def test_the_seed_decides_the_weights():
    def weights(seed):
        return [w.copy() for w in _small_resnet(seed).get_weights()]

    first, again, other = weights(5), weights(5), weights(6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    dense = layers.Dense(2)
    inputs = layers.Input((3,))
    out = dense(inputs)
    chosen = [np.ones((3, 2), np.float32), np.zeros(2, np.float32)]
    dense.set_weights(chosen)  # weights set by hand are kept by the model
    model = cnnkit.Model(inputs, out, seed=0)
    np.testing.assert_array_equal(model.get_weights()[0], chosen[0])


def test_feature_extraction_from_layer_outputs():
    model = _small_resnet()
    features = cnnkit.Model(
        model.inputs, [model.get_layer(n).output for n in ("stem", "residual")], seed=0
    )
    x = RNG.standard_normal((2, 6, 6, 2)).astype(np.float32)
    stem, residual = features.predict(x, verbose=0)
    want = model.activations(x, ["stem", "residual"])
    np.testing.assert_array_equal(stem, want["stem"].data)
    np.testing.assert_array_equal(residual, want["residual"].data)
    assert model.output is model.outputs[0]
    shared = layers.Dense(2)
    a = layers.Input((3,))
    shared(a), shared(a)
    with pytest.raises(ValueError, match=r"output needs exactly one call .* has 2"):
        _ = shared.output
