"""The one registry of serialisable classes (cnnkit.saving) and its snake-case names."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import callbacks, initializers, layers, losses, metrics, optimizers, schedules
from cnnkit.autograd import Tensor
from cnnkit.saving import registry


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("ReLU", "re_lu"),
        ("Conv2D", "conv2d"),
        ("BatchNormalization", "batch_normalization"),
        ("MaxPooling2D", "max_pooling2d"),
        ("GlobalAveragePooling1D", "global_average_pooling1d"),
        ("LeakyReLU", "leaky_re_lu"),
        ("ZeroPadding2D", "zero_padding2d"),
        ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy"),
        ("CSVLogger", "csv_logger"),
    ],
)
def test_snake_case_gives_keras_names(name, snake):
    assert registry.snake_case(name) == snake


def test_layer_losses_and_metrics_are_named_by_the_one_helper():
    layers.reset_names()
    assert layers.ReLU().name == "re_lu"
    assert layers.BatchNormalization().name == "batch_normalization"
    assert losses.SparseCategoricalCrossentropy().name == "sparse_categorical_crossentropy"
    assert metrics.Mean().name == "mean"


@pytest.mark.parametrize(
    ("obj", "base"),
    [
        (layers.Conv2D, layers.Layer),
        (cnnkit.Sequential, layers.Layer),
        (losses.Huber, losses.Loss),
        (metrics.MeanSquaredError, metrics.Metric),
        (optimizers.Adam, optimizers.Optimizer),
        (schedules.CosineDecay, schedules.LearningRateSchedule),
        (initializers.HeNormal, initializers.Initializer),
        (callbacks.EarlyStopping, callbacks.Callback),
    ],
)
def test_every_kind_of_builtin_is_registered(obj, base):
    name = registry.get_registered_name(obj)
    assert name == obj.__name__
    assert registry.get_registered_object(name, base) is obj


def test_one_name_for_two_kinds_is_resolved_by_the_base():
    assert (
        registry.get_registered_object("MeanSquaredError", losses.Loss) is losses.MeanSquaredError
    )
    assert (
        registry.get_registered_object("MeanSquaredError", metrics.Metric)
        is metrics.MeanSquaredError
    )
    assert registry.get_registered_object("MeanSquaredError", layers.Layer) is None


def test_subclasses_are_not_registered_by_inheritance():
    class Mine(layers.Dense):
        pass

    assert registry.get_registered_name(Mine) is None
    with pytest.raises(TypeError, match=r"serialize\(\): Mine is not registered"):
        registry.serialize(Mine(2))


def test_registering_the_same_name_twice_for_one_kind_is_an_error():
    @registry.register_serializable(package="test_registry", name="Twice")
    class First(layers.Layer):
        pass

    with pytest.raises(ValueError, match=r"'test_registry>Twice' is already registered"):

        @registry.register_serializable(package="test_registry", name="Twice")
        class Second(layers.Layer):
            pass


@pytest.mark.parametrize("package", ["", "a>b", 3])
def test_bad_package_names(package):
    with pytest.raises(ValueError, match=r"register_serializable\(\): package must be"):
        registry.register_serializable(package=package)


@cnnkit.saving.register_serializable(package="test_registry")
class Scale(layers.Layer):
    """Multiplies by a constant: a custom layer saved and loaded without custom_objects."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x, training=False):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@cnnkit.saving.register_serializable(package="test_registry")
def half_mse(y_true, y_pred):
    return losses.mean_squared_error(y_true, y_pred) * 0.5


def test_registered_custom_layer_and_loss_load_without_custom_objects(tmp_path):
    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(2), Scale(3.0)], seed=0)
    model.compile("sgd", loss=half_mse)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    model.fit(x, np.zeros((8, 2), np.float32), epochs=1, verbose=0)
    path = tmp_path / "scaled.cnnkit"
    model.save(path)
    assert layers.serialize(model.layers[-1])["class_name"] == "test_registry>Scale"
    back = cnnkit.load_model(path)
    assert isinstance(back.layers[-1], Scale) and back.layers[-1].factor == 3.0
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert back.evaluate(x, np.zeros((8, 2), np.float32)) == pytest.approx(
        model.evaluate(x, np.zeros((8, 2), np.float32))
    )


def test_deserialize_never_instantiates_unregistered_classes():
    with pytest.raises(ValueError, match=r"unknown layer class 'os\.system'"):
        layers.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="unknown optimizer class 'Tensor'"):
        optimizers.deserialize({"class_name": "Tensor", "config": {}})
    assert Tensor  # a class of cnnkit that is not registered


@pytest.mark.parametrize(
    ("module", "bad"),
    [(losses, object()), (metrics, object()), (optimizers, object()), (schedules, object())],
)
def test_serialize_of_an_unregistered_object_is_a_type_error_in_every_module(module, bad):
    with pytest.raises(TypeError, match=rf"{module.__name__.split('.')[-1]}.serialize\(\)"):
        module.serialize(bad)


def test_initializers_serialize_rejects_unregistered_like_the_others():
    class Mine(initializers.Zeros):
        pass

    with pytest.raises(TypeError, match=r"initializers.serialize\(\): Mine is not registered"):
        initializers.serialize(Mine())


def test_classes_of_modules_loaded_on_first_use_are_found_by_name(tmp_path, monkeypatch):
    module = tmp_path / "cnnkit_first_use_probe.py"
    module.write_text(
        "import cnnkit\n"
        "@cnnkit.saving.register_serializable(package='cnnkit', name='FirstUseProbe')\n"
        "class FirstUseProbe(cnnkit.layers.Layer):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._FIRST_USE_MODULES, "FirstUseProbe", "cnnkit_first_use_probe")
    cls = registry.get_registered_object("FirstUseProbe", layers.Layer)
    assert cls is not None and cls.__module__ == "cnnkit_first_use_probe"
    layer = layers.deserialize({"class_name": "FirstUseProbe", "config": {"name": "probe"}})
    assert isinstance(layer, cls) and layer.name == "probe"


def test_get_registered_object_needs_a_str_name():
    # A non-str name was "'int' object has no attribute 'lower'".
    with pytest.raises(TypeError, match=r"^get_registered_object\(\): name must be a str, got int"):
        registry.get_registered_object(5)
