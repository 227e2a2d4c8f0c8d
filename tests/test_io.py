"""Model files: save -> load round trips (predictions, optimizer state, resumed training),
atomic writes, corrupt and foreign files, weights files, custom objects."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
from isolated import run_isolated

import cnnkit
from cnnkit import layers, losses, optimizers


def make_model(seed=0):
    return cnnkit.Sequential(
        [
            layers.Input((6, 6, 2)),
            layers.Conv2D(4, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(3, activation="softmax"),
        ],
        seed=seed,
    )


def data(n=40):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


def trained(seed=0):
    x, y = data()
    model = make_model(seed)
    model.compile(optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", ["acc"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model


def test_save_load_predictions_optimizer_state_and_resumed_training(tmp_path):
    x, y = data()
    model = trained()
    path = tmp_path / "model.cnnkit"
    model.save(path)
    loaded = cnnkit.load_model(path)
    assert type(loaded) is cnnkit.Sequential
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    a, b = model.optimizer.get_state(), loaded.optimizer.get_state()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    # Training resumed from the file equals training continued in memory, bit for bit
    # (shuffling, dropout masks and Adam's moments all carry over).
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for p, q in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)


def test_any_path_and_uncompiled_models(tmp_path):
    model = make_model()
    path = str(tmp_path / "weights-and-all.bin")
    model.save(path)
    loaded = cnnkit.load_model(path)
    assert not loaded.compiled
    x, _ = data(5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert cnnkit.load_model(path, compile=False).get_config() == model.get_config()


def test_save_is_atomic(tmp_path, monkeypatch):
    model = trained()
    path = tmp_path / "m.cnnkit"
    model.save(path)
    good = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        make_model(seed=9).save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.cnnkit"]  # no temporary file left behind


def test_corrupt_truncated_and_foreign_files(tmp_path):
    model = trained()
    path = tmp_path / "m.cnnkit"
    model.save(path)
    blob = path.read_bytes()
    cases = {
        "truncated.cnnkit": blob[: len(blob) // 2],
        "empty.cnnkit": b"",
        "text.cnnkit": b"hello, world\n" * 10,
    }
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("something.txt", "not a model")
    cases["foreign.zip"] = other.getvalue()
    tagged = io.BytesIO()
    with zipfile.ZipFile(tagged, "w") as z:
        z.writestr("cnnkit.json", json.dumps({"format": "other"}))
    cases["tagless.cnnkit"] = tagged.getvalue()
    flipped = bytearray(blob)
    start = blob.find(b"\x93NUMPY")  # inside weights.npz: the zip CRC must catch it
    flipped[start + 200] ^= 0xFF
    cases["bitflip.cnnkit"] = bytes(flipped)
    for name, content in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"load_model\\(\\): '.*{name}'"):
            cnnkit.load_model(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        cnnkit.load_model(tmp_path / "missing.cnnkit")


def test_pickled_arrays_are_refused(tmp_path):
    model = make_model()
    path = tmp_path / "m.cnnkit"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        meta = z.read("cnnkit.json")
    buffer = io.BytesIO()
    np.savez(buffer, w0=np.array([{"evil": 1}], dtype=object))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cnnkit.json", meta)
        z.writestr("weights.npz", buffer.getvalue())
    with pytest.raises(ValueError, match=r"corrupt weights\.npz"):
        cnnkit.load_model(path)


def test_unknown_layer_class_is_not_instantiated(tmp_path):
    model = make_model()
    path = tmp_path / "m.cnnkit"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("cnnkit.json"))
        weights = z.read("weights.npz")
    meta["model"]["config"]["layers"][0]["class_name"] = "os.system"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cnnkit.json", json.dumps(meta))
        z.writestr("weights.npz", weights)
    with pytest.raises(ValueError, match=r"unknown layer class 'os\.system'"):
        cnnkit.load_model(path)


def test_save_and_load_weights(tmp_path):
    model = trained()
    path = tmp_path / "w.weights"
    model.save_weights(path)
    other = make_model(seed=4)
    other.load_weights(path)
    x, _ = data(6)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="a weights file, not a model file"):
        cnnkit.load_model(path)
    wider = cnnkit.Sequential(
        [
            layers.Input((6, 6, 2)),
            layers.Conv2D(5, 3, padding="same", name="wide"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(3),
        ]
    )
    with pytest.raises(ValueError, match=r"layer 'wide' weight 'wide/kernel' has shape"):
        wider.load_weights(path)
    with pytest.raises(ValueError, match="holds 8 weights but model"):
        cnnkit.Sequential([layers.Input((3,)), layers.Dense(2)]).load_weights(path)


def test_custom_loss_needs_custom_objects(tmp_path):
    def my_loss(y_true, y_pred):
        return losses.mean_squared_error(y_true, y_pred)

    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(2)], seed=0)
    model.compile("sgd", my_loss)
    path = tmp_path / "m.cnnkit"
    model.save(path)
    with pytest.raises(ValueError, match="custom loss 'my_loss'; pass it in custom_objects"):
        cnnkit.load_model(path)
    assert not cnnkit.load_model(path, compile=False).compiled
    loaded = cnnkit.load_model(path, custom_objects={"my_loss": my_loss})
    assert loaded.compiled


class Twin(cnnkit.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.body = layers.Dense(4, activation="tanh")
        self.head = layers.Dense(1)

    def call(self, x, training=False):
        return self.head(self.body(x))


def test_subclassed_model_needs_its_class(tmp_path):
    model = Twin(seed=1)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    y = model.predict(x)
    path = tmp_path / "twin.cnnkit"
    model.save(path)
    with pytest.raises(ValueError, match="unknown layer class 'Twin'; pass it in custom_objects"):
        cnnkit.load_model(path)
    loaded = cnnkit.load_model(path, custom_objects={"Twin": Twin})
    np.testing.assert_array_equal(loaded.predict(x), y)
    weights = tmp_path / "twin.weights"
    model.save_weights(weights)
    fresh = Twin(seed=2)
    fresh.build((3,))
    fresh.load_weights(weights)
    np.testing.assert_array_equal(fresh.predict(x), y)


def test_unbuilt_models_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="is not built yet"):
        cnnkit.Sequential([layers.Dense(2)]).save(tmp_path / "m.cnnkit")
    with pytest.raises(ValueError, match="is not built yet"):
        Twin().save_weights(tmp_path / "m.weights")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["model"]["config"]["layers"][0]["config"].update(filters="x"), "filters"),
        (lambda m: m["model"]["config"]["layers"][0]["config"].update(bogus=1), "bogus"),
        (lambda m: m["model"]["config"].update(layers=5), "layers must be a list"),
        (
            lambda m: m.update(state={k: {"generator": {"state": 1}} for k in m["state"]}),
            "bad layer state",
        ),
    ],
)
def test_malformed_architecture_is_a_value_error(tmp_path, edit, match):
    model = make_model()
    path = tmp_path / "m.cnnkit"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("cnnkit.json"))
        weights = z.read("weights.npz")
    edit(meta)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cnnkit.json", json.dumps(meta))
        z.writestr("weights.npz", weights)
    with pytest.raises(ValueError, match=match):
        cnnkit.load_model(path)


def test_loss_and_metric_objects_and_multi_output_settings_round_trip(tmp_path):
    from cnnkit import metrics

    model = cnnkit.Sequential([layers.Input((4,)), layers.Dense(3)], seed=0)
    model.compile(
        optimizers.RMSprop(learning_rate=0.01),
        losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[metrics.SparseCategoricalAccuracy(), "acc"],
    )
    x = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    y = np.arange(20) % 3
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.cnnkit"
    model.save(path)
    loaded = cnnkit.load_model(path)
    assert loaded.evaluate(x, y, return_dict=True) == model.evaluate(x, y, return_dict=True)
    assert type(loaded.optimizer) is optimizers.RMSprop
    assert loaded.get_config() == model.get_config()


def test_save_without_optimizer_keeps_its_class_and_config_with_fresh_slots(tmp_path):
    import cnnkit

    model = cnnkit.Sequential([cnnkit.layers.Input((3,)), cnnkit.layers.Dense(2)], seed=0)
    model.compile(cnnkit.optimizers.Nadam(0.02, beta_1=0.8, clipnorm=1.0), "mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)
    path = tmp_path / "m.cnnkit"
    model.save(path, include_optimizer=False)
    back = cnnkit.io.load_model(path)
    assert type(back.optimizer) is cnnkit.optimizers.Nadam
    assert back.optimizer.get_config() == model.optimizer.get_config()
    assert back.optimizer.iterations == 0 and not back.optimizer.built
    with pytest.raises(ValueError, match=r"load_optimizer_state\(\): .*no optimizer state"):
        back.load_optimizer_state(path)


def test_a_fresh_interpreter_loads_a_sequential_model(tmp_path):
    # Nothing has imported cnnkit.models there: the registry must find Sequential itself.
    path = tmp_path / "seq.cnnkit"
    model = cnnkit.Sequential([cnnkit.layers.Input((4,)), cnnkit.layers.Dense(2)], seed=0)
    model.save(path)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = run_isolated(
        f"""
m = cnnkit.load_model({str(path)!r})
x = np.arange(8, dtype=np.float32).reshape(2, 4)
print(type(m).__name__, np.array2string(m.predict(x, verbose=0), precision=6))
"""
    )
    assert out.split()[0] == "Sequential"
    expected = np.array2string(model.predict(x, verbose=0), precision=6)
    assert out.split(None, 1)[1].strip() == expected


def test_save_and_load_name_a_folder_a_missing_folder_and_a_non_model(tmp_path):
    # A folder as the path was an IsADirectoryError naming the temporary file (saving) or
    # "no such file" (loading); a non-model was an AttributeError; a non-mapping
    # custom_objects was "'int' object is not iterable".
    model = make_model()
    for save in (cnnkit.io.save_model, cnnkit.io.save_weights):
        name = save.__name__
        with pytest.raises(IsADirectoryError, match=rf"^{name}\(\): path '.*' is a folder"):
            save(model, tmp_path)
        with pytest.raises(FileNotFoundError, match=rf"^{name}\(\): the folder '.*missing'"):
            save(model, tmp_path / "missing" / "m.cnnkit")
        with pytest.raises(TypeError, match=rf"^{name}\(\): model must be a cnnkit Model, got"):
            save(object(), tmp_path / "m.cnnkit")
        with pytest.raises(TypeError, match=rf"^{name}\(\): path must be a str or os.PathLike"):
            save(model, 5)
    assert os.listdir(tmp_path) == []
    with pytest.raises(IsADirectoryError, match=r"^load_model\(\): '.*' is a folder"):
        cnnkit.load_model(tmp_path)
    with pytest.raises(IsADirectoryError, match=r"^load_weights\(\): '.*' is a folder"):
        cnnkit.io.load_weights(model, tmp_path)
    model.save(tmp_path / "m.cnnkit")
    with pytest.raises(TypeError, match=r"^load_model\(\): custom_objects must be a dict"):
        cnnkit.load_model(tmp_path / "m.cnnkit", custom_objects=5)


def test_save_and_load_flags_must_be_bools(tmp_path):
    # include_optimizer='no' saved the optimizer and compile='no' compiled, silently.
    model = make_model()
    with pytest.raises(TypeError, match=r"^save_model\(\): include_optimizer must be a bool"):
        model.save(tmp_path / "m.cnnkit", include_optimizer="no")
    model.save(tmp_path / "m.cnnkit")
    with pytest.raises(TypeError, match=r"^load_model\(\): compile must be a bool, got str"):
        cnnkit.load_model(tmp_path / "m.cnnkit", compile="no")
