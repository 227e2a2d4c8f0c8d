"""Models: Sequential editing, subclassed models, models as layers (Siamese gradients),
activations of named layers, summary, configs, predict/evaluate forms, rejections."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import layers
from cnnkit.autograd import Tensor


def test_lazy_exports():
    assert cnnkit.Sequential is cnnkit.models.Sequential
    assert cnnkit.Model is cnnkit.models.Model
    assert cnnkit.load_model is cnnkit.io.load_model
    assert cnnkit.layers.Dense and cnnkit.initializers.HeNormal


def test_sequential_add_pop_get_layer():
    layers.reset_names()
    model = cnnkit.Sequential(seed=0)
    model.add(layers.Input((4,)))
    model.add(layers.Dense(3))
    model.add(layers.Dense(2, name="out"))
    assert model.built and [x.name for x in model.layers] == ["dense", "out"]
    assert model.get_layer("out") is model.layers[1] and model.get_layer(index=0).units == 3
    assert model.predict(np.zeros((2, 4))).shape == (2, 2)
    popped = model.pop()
    assert popped.name == "out" and model.predict(np.zeros((2, 4))).shape == (2, 3)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="index must be in"):
        model.get_layer(index=5)
    with pytest.raises(TypeError, match="layer must be a cnnkit layer"):
        model.add("dense")
    with pytest.raises(ValueError, match="an Input can only be the first layer"):
        model.add(layers.Input((4,)))
    with pytest.raises(ValueError, match="a layer named 'dense' is already in the model"):
        model.add(layers.Dense(1, name="dense"))
    with pytest.raises(TypeError, match="layers must be a list"):
        cnnkit.Sequential(layers.Dense(1))
    with pytest.raises(ValueError, match="has no layers"):
        cnnkit.Sequential().pop()


def test_deferred_build_and_input_shape_argument():
    lazy = cnnkit.Sequential([layers.Dense(2)])
    assert not lazy.built
    with pytest.raises(ValueError, match="not built yet"):
        lazy.summary()
    with pytest.raises(ValueError, match="not built yet"):
        lazy.count_params()
    assert lazy.predict(np.zeros((1, 5))).shape == (1, 2)
    assert lazy.count_params() == 12
    eager = cnnkit.Sequential([layers.Dense(2, input_shape=(5,))])
    assert eager.built and eager.count_params() == 12


def test_summary_format_and_counts():
    layers.reset_names()
    model = cnnkit.Sequential(
        [
            layers.Input((8, 8, 1)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(10),
        ],
        name="net",
    )
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "net"'
    # Keras 3's boxed layout: heavy header, a light rule between rows, counts with sizes.
    assert lines[1].startswith("┏") and lines[3].startswith("┡") and lines[-4].startswith("└")
    header = lines[2]
    assert "Layer (type)" in header and "Output Shape" in header and "Param #" in header
    assert " conv2d (Conv2D)" in text and "(None, 6, 6, 4)" in text and "40 │" in text
    assert "(None, 3, 3, 4)" in text and "(None, 36)" in text and "370 │" in text
    assert sum(line.startswith("├") for line in lines) == 4  # between the 5 rows
    total = 40 + 16 + 370
    assert f" Total params: {total:,} ({total * 4 / 1024:.2f} KB)" in lines
    assert f" Trainable params: {total - 8:,} ({(total - 8) * 4 / 1024:.2f} KB)" in lines
    assert " Non-trainable params: 8 (32.00 B)" in lines
    assert len({len(line) for line in lines[1:-3]}) == 1  # every table line equally wide


def test_summary_expand_nested_show_trainable_and_optimizer_params():
    inner = cnnkit.Sequential([layers.Input((4,)), layers.Dense(3)], name="inner")
    model = cnnkit.Sequential([layers.Input((4,)), inner, layers.Dense(2)], name="outer")
    inner.layers[0].trainable = False
    lines = []
    model.summary(print_fn=lines.append)
    assert not any("└ " in line for line in lines)
    lines = []
    model.summary(print_fn=lines.append, expand_nested=True, show_trainable=True)
    nested = [line for line in lines if "└ " in line]
    assert len(nested) == 1 and "(Dense)" in nested[0] and nested[0].rstrip("│ ").endswith("N")
    assert "Trainable" in lines[2]
    model.compile("adam", "mse")
    model.fit(np.zeros((2, 4)), np.zeros((2, 2)), verbose=0)
    lines = []
    model.summary(print_fn=lines.append)
    # Adam: two slots per trainable weight (the frozen Dense has none).
    assert " Optimizer params: 16 (64.00 B)" in lines
    assert " Total params: 39 (156.00 B)" in lines
    from cnnkit.models.summary import readable_size

    assert readable_size(0) == "0.00 B" and readable_size(3 * 1024**2) == "3.00 MB"


class Encoder(cnnkit.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(3, 3, activation="relu")
        self.pool = layers.GlobalAveragePooling2D()
        self.blocks = [layers.Dense(4, activation="tanh"), layers.Dense(2)]

    def call(self, x, training=False):
        h = self.pool(self.conv(x))
        for block in self.blocks:
            h = block(h)
        return h


def test_subclassed_model_tracks_layers_and_seeds():
    model = Encoder(seed=3)
    assert [type(x).__name__ for x in model.layers] == [
        "Conv2D",
        "GlobalAveragePooling2D",
        "Dense",
        "Dense",
    ]
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 1)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 2) and len(model.weights) == 6
    again = Encoder(seed=3)
    again(x)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
    lines = []
    model.summary(print_fn=lines.append)
    assert any("(None, 3, 3, 3)" in line for line in lines)


def test_siamese_model_accumulates_gradients():
    encoder = Encoder(seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 5, 5, 1))
    b = rng.standard_normal((2, 5, 5, 1))
    encoder(a)

    def grads(inputs):
        for v in encoder.weights:
            v.grad = None
        total = None
        for x in inputs:
            out = (encoder(Tensor(x)) ** 2).sum()
            total = out if total is None else total + out
        total.backward()
        return [v.grad.copy() for v in encoder.trainable_weights]

    both = grads([a, b])
    separate = [p + q for p, q in zip(grads([a]), grads([b]))]
    for p, q in zip(both, separate):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


def test_model_as_layer_of_a_bigger_model_and_trainable_recursion():
    base = cnnkit.Sequential([layers.Input((5, 5, 1)), layers.Conv2D(2, 3)], name="base")
    model = cnnkit.Sequential([base, layers.Flatten(), layers.Dense(1)], seed=1)
    model.build((5, 5, 1))
    assert model.predict(np.zeros((3, 5, 5, 1))).shape == (3, 1)
    assert len(model.weights) == 4
    base.trainable = False
    assert base.layers[0].trainable is False
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    model.trainable = False
    assert model.trainable_weights == [] and model.layers[-1].trainable is False


def test_activations_of_named_layers_carry_gradients():
    layers.reset_names()
    model = cnnkit.Sequential(
        [
            layers.Input((6, 6, 1)),
            layers.Conv2D(2, 3, name="c1"),
            layers.ReLU(),
            layers.Flatten(),
            layers.Dense(3, name="d"),
        ],
        dtype="float64",
    )
    image = Tensor(np.random.default_rng(0).standard_normal((1, 6, 6, 1)), requires_grad=True)
    feats = model.activations(image, ["c1", "d"])
    assert feats["c1"].shape == (1, 4, 4, 2) and feats["d"].shape == (1, 3)
    np.testing.assert_array_equal(feats["d"].data, model.predict(image.data))
    (feats["c1"] ** 2).sum().backward()
    assert image.grad is not None and np.abs(image.grad).sum() > 0
    assert model.get_layer("c1")._output_sink is None
    with pytest.raises(ValueError, match="no layer named 'zzz'"):
        model.activations(image, ["zzz"])


def test_config_round_trip_rebuilds_the_same_model():
    model = cnnkit.Sequential(
        [
            layers.Input((7, 1)),
            layers.Conv1D(3, 2, strides=2, padding="same", activation="leaky_relu"),
            layers.AveragePooling1D(2),
            layers.GlobalMaxPooling1D(),
            layers.Reshape((3, 1)),
            layers.Flatten(),
            layers.Dense(2, kernel_initializer="he_normal"),
        ],
        seed=11,
    )
    clone = cnnkit.Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    x = np.random.default_rng(0).standard_normal((3, 7, 1))
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))  # same seed


def test_predict_works_without_compile_and_evaluate_forms():
    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(2)], seed=0)
    x = np.random.default_rng(0).standard_normal((10, 3))
    y = np.random.default_rng(1).standard_normal((10, 2))
    full = model.predict(x, batch_size=3)
    assert full.dtype == np.float32 and full.shape == (10, 2)
    np.testing.assert_allclose(full, model.predict(x, batch_size=10), rtol=1e-6)
    model.compile("sgd", "mse")
    loss = model.evaluate(x, y)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, np.mean((full - y) ** 2), rtol=1e-5)
    model.compile("sgd", "mse", metrics=["mae"])
    loss2, mae = model.evaluate(x, y)
    assert loss2 == pytest.approx(loss) and mae == pytest.approx(np.mean(np.abs(full - y)), 1e-5)
    assert model.evaluate(x, y, return_dict=True) == {"loss": loss2, "mae": mae}
    assert model.metrics_names == ["loss", "mae"]


def test_wrong_input_shape_for_the_model():
    model = cnnkit.Sequential([layers.Input((4, 4, 1)), layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4, 4, 1\)"):
        model.predict(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4, 4, 1\)"):
        model(np.zeros((2, 5, 5, 1)))


def test_model_rejections():
    with pytest.raises(ValueError, match="seed must be >= 0"):
        cnnkit.Sequential(seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        cnnkit.Sequential(seed="a")
    with pytest.raises(NotImplementedError, match="define call"):
        cnnkit.Model()(np.zeros((1, 2)))
    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="has 2 weights, got 1"):
        model.set_weights([np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"layer 'd' weight 'd/kernel' has shape \(3, 2\)"):
        model.set_weights([np.zeros((2, 2)), np.zeros(2)])


def test_private_attributes_and_tuples_are_tracked():
    class Net(cnnkit.Model):
        def __init__(self):
            super().__init__(seed=0)
            self._hidden = layers.Dense(3)
            self.heads = (layers.Dense(1), layers.Dense(2))

        def call(self, x):
            h = self._hidden(x)
            return [head(h) for head in self.heads]

    net = Net()
    outputs = net(np.zeros((2, 4), np.float32))
    assert [o.shape for o in outputs] == [(2, 1), (2, 2)]
    assert len(net.layers) == 3 and len(net.weights) == 6


def test_model_created_frozen_freezes_added_layers():
    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(2)], trainable=False, seed=0)
    assert model.trainable_weights == [] and model.layers[0].trainable is False
    model.add(layers.Dense(1))
    assert model.layers[1].trainable is False and len(model.non_trainable_weights) == 4
    clone = cnnkit.Sequential.from_config(model.get_config())
    assert clone.trainable is False and clone.trainable_weights == []


def test_model_dtype_reaches_layers_without_their_own():
    model = cnnkit.Sequential(
        [layers.Input((4,)), layers.Dense(3), layers.Dense(2, dtype="float32")], dtype="float64"
    )
    assert [layer.dtype for layer in model.layers] == [np.float64, np.float32]
    assert model.layers[0].kernel.dtype == np.float64
    assert model.predict(np.zeros((1, 4))).dtype == np.float32  # the last layer's dtype
    assert cnnkit.Sequential([layers.Dense(1)]).layers[0].dtype == np.float32


def test_whole_model_input_gradient_float64():
    from gradcheck import check_gradients

    model = cnnkit.Sequential(
        [
            layers.Input((5, 5, 2)),
            layers.Conv2D(3, 3, padding="same", activation="tanh"),
            layers.BatchNormalization(),
            layers.AveragePooling2D(),
            layers.Flatten(),
            layers.Dense(2, activation="softmax"),
        ],
        seed=0,
        dtype="float64",
    )
    x = np.random.default_rng(0).standard_normal((3, 5, 5, 2))
    check_gradients(lambda t: model(t, training=True), [x])
    check_gradients(lambda t: model(t), [x])


# -- subclassed models: constructor arguments captured for saving (Keras 3 auto-config) -------


def test_subclassed_model_constructor_args_are_captured_and_reloaded(tmp_path):
    from cnnkit.saving.registry import register_serializable

    @register_serializable(package="test_auto_config")
    class Head(cnnkit.Model):
        def __init__(self, num_classes=10, hidden=(4,), **kwargs):
            super().__init__(**kwargs)
            self.body = [cnnkit.layers.Dense(h, activation="relu") for h in hidden]
            self.out = cnnkit.layers.Dense(num_classes)

        def call(self, x):
            for layer in self.body:
                x = layer(x)
            return self.out(x)

    @register_serializable(package="test_auto_config")
    class Bare(cnnkit.Model):  # no **kwargs: name and seed are set aside on reload
        def __init__(self, units=3):
            super().__init__(seed=1)
            self.d = cnnkit.layers.Dense(units)

        def call(self, x):
            return self.d(x)

    model = Head(num_classes=5, hidden=[6, 7], seed=0, name="head")
    config = model.get_config()
    assert config["num_classes"] == 5 and config["hidden"] == [6, 7] and config["seed"] == 0
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    model.compile("adam", "mse")
    model.fit(x, np.zeros((2, 5)), verbose=0)
    path = tmp_path / "head.cnnkit"
    model.save(path)
    back = cnnkit.load_model(path)
    assert type(back) is Head and back.out.units == 5
    np.testing.assert_array_equal(back.predict(x), model.predict(x))

    bare = Bare(units=2)
    bare(x)
    bare.save(tmp_path / "bare.cnnkit")
    again = cnnkit.load_model(tmp_path / "bare.cnnkit")
    assert again.d.units == 2 and again.name == bare.name

    class NotBasic(cnnkit.Model):
        def __init__(self, fn=np.sum):
            super().__init__()

    assert "fn" not in NotBasic().get_config()
