"""cnnkit.transfer: heads dropped with weights shared, freezing, feature caching (resumable),
and the functional model's pop()."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnkit
from cnnkit import layers, transfer
from cnnkit.data import Loader


def classifier(seed=0, fused=False):
    stack = [
        layers.Input((8, 8, 3)),
        layers.Conv2D(4, 3, activation="relu", name="conv"),
        layers.MaxPooling2D(name="pool"),
        layers.Flatten(name="flat"),
        layers.Dense(6, activation="relu", name="features"),
    ]
    if fused:
        stack.append(layers.Dense(3, activation="softmax", name="classifier"))
    else:
        stack += [layers.Dense(3, name="classifier"), layers.Softmax(name="probabilities")]
    return cnnkit.Sequential(stack, seed=seed)


def functional_classifier(seed=0):
    inputs = layers.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    y = layers.Conv2D(4, 3, padding="same", name="conv_b")(x)
    x = layers.add([x, y], name="residual")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(3, name="classifier")(x)
    return cnnkit.Model(inputs, layers.Activation("softmax", name="probabilities")(x), seed=seed)


@pytest.fixture
def images():
    return np.random.default_rng(0).random((21, 8, 8, 3), dtype=np.float32)


def test_slicing_a_sequential_model_shares_the_layers(images):
    model = classifier()
    part = cnnkit.Sequential(model.layers[:3])
    np.testing.assert_array_equal(
        part.predict(images, verbose=0), model.activations(images, ["flat"])["flat"].data
    )
    assert part.layers[0].kernel is model.layers[0].kernel
    # Training the slice moves the original's weights: they are the same arrays.
    part2 = cnnkit.Sequential([*model.layers[:3], layers.Dense(2)], seed=1)
    before = model.get_layer("conv").kernel.data.copy()
    part2.compile("sgd", "sparse_categorical_crossentropy")
    part2.fit(images, np.arange(21) % 2, epochs=1, verbose=0)
    assert not np.array_equal(before, model.get_layer("conv").kernel.data)
    np.testing.assert_array_equal(part2.layers[0].kernel.data, model.get_layer("conv").kernel.data)


@pytest.mark.parametrize("fused", [False, True])
def test_without_head_drops_the_classifier_and_softmax(fused, images):
    model = classifier(fused=fused)
    base = transfer.without_head(model)
    assert [x.name for x in base.layers] == ["conv", "pool", "flat", "features"]
    assert base.name == f"{model.name}_base"
    np.testing.assert_array_equal(
        base.predict(images, verbose=0),
        model.activations(images, ["features"])["features"].data,
    )
    assert base.get_layer("features").kernel is model.get_layer("features").kernel
    model.pop()
    left = ["conv", "pool"] if fused else ["conv", "pool", "flat"]  # pop() took the softmax
    assert [x.name for x in transfer.without_head(model, layers=2).layers] == left


def test_without_head_on_functional_and_nested_models(images):
    model = functional_classifier()
    base = transfer.without_head(model)
    assert [x.name for x in base.layers][-1] == "gap"
    np.testing.assert_array_equal(
        base.predict(images, verbose=0), model.activations(images, ["gap"])["gap"].data
    )
    assert base.get_layer("conv").kernel is model.get_layer("conv").kernel
    cut = transfer.without_head(model, layers=3)
    assert cut.output_shape == (None, 6, 6, 4)

    inner = transfer.without_head(classifier())
    stacked = cnnkit.Sequential([inner, layers.Dense(2, name="new_head")], seed=0)
    assert transfer.without_head(stacked).layers == [inner]


def test_without_head_refuses_what_it_cannot_cut():
    convs = cnnkit.Sequential([layers.Input((5, 5, 1)), layers.Conv2D(2, 3)], seed=0)
    with pytest.raises(ValueError, match=r"ends with Conv2D 'conv2d.*not a Dense classifier"):
        transfer.without_head(convs)
    with pytest.raises(ValueError, match="must leave at least one layer"):
        transfer.without_head(convs, layers=1)
    with pytest.raises(TypeError, match="model must be a cnnkit Sequential or functional"):
        transfer.without_head(layers.Dense(2))
    with pytest.raises(ValueError, match="layers must be >= 1"):
        transfer.without_head(convs, layers=0)
    model = functional_classifier()
    with pytest.raises(ValueError, match="head layer 'residual' reads several tensors"):
        transfer.without_head(model, layers=4)


def test_functional_pop(images):
    model = functional_classifier()
    softmax = model.pop()
    assert softmax.name == "probabilities"
    assert model.layers[-1].name == "classifier"
    assert model.output_shape == (None, 3)
    assert model.pop().name == "classifier"
    np.testing.assert_array_equal(
        model.predict(images, verbose=0),
        functional_classifier().activations(images, ["gap"])["gap"].data,
    )
    model.pop()  # gap
    with pytest.raises(ValueError, match="output layer 'residual' reads 2 tensors"):
        model.pop()


def test_freeze_the_first_layers(images):
    model = classifier()
    assert transfer.freeze(model, 2) == ["conv", "pool"]
    assert [x.trainable for x in model.layers] == [False, False, True, True, True, True]
    assert transfer.freeze(model, "flat") == ["conv", "pool", "flat"]
    assert model.get_layer("pool").trainable is False
    conv = model.get_layer("conv").kernel.data.copy()
    dense = model.get_layer("features").kernel.data.copy()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, np.arange(21) % 3, epochs=1, verbose=0)
    np.testing.assert_array_equal(conv, model.get_layer("conv").kernel.data)
    assert not np.array_equal(dense, model.get_layer("features").kernel.data)
    assert transfer.freeze(model, 0) == []
    assert all(x.trainable for x in model.layers)
    model.trainable = False
    transfer.freeze(model, 1)
    assert model.trainable and model.layers[1].trainable
    with pytest.raises(ValueError, match=r"freeze\(\): upto must name a layer"):
        transfer.freeze(model, "nope")
    with pytest.raises(ValueError, match="upto must be at most the number of layers"):
        transfer.freeze(model, 7)
    with pytest.raises(TypeError, match="model must be a cnnkit Model"):
        transfer.freeze(layers.Dense(2), 1)


# -- extract_features --------------------------------------------------------------------------
def counting_model(calls):
    """A model whose Lambda counts the samples it sees (to show what a resumed run skips)."""

    def count(t):
        calls.append(t.shape[0])
        return t

    inputs = layers.Input((8, 8, 3))
    x = layers.Lambda(count)(inputs)
    x = layers.Conv2D(3, 3, activation="relu", name="conv")(x)
    outputs = layers.GlobalAveragePooling2D(name="gap")(x)
    return cnnkit.Model(inputs, outputs, seed=0)


def test_features_in_memory_match_predict(images):
    model = classifier()
    base = transfer.without_head(model)
    feats = transfer.extract_features(base, images, batch_size=4, progress=False)
    np.testing.assert_array_equal(feats, base.predict(images, verbose=0))
    flat = transfer.extract_features(model, images, layer="flat", batch_size=5, progress=False)
    np.testing.assert_array_equal(flat, model.activations(images, ["flat"])["flat"].data)
    fmodel = functional_classifier()
    gap = transfer.extract_features(fmodel, images, layer="gap", progress=False)
    np.testing.assert_allclose(gap, fmodel.activations(images, ["gap"])["gap"].data)
    by_index = transfer.extract_features(model, images, layer=2, progress=False)
    np.testing.assert_array_equal(by_index, flat)


def test_features_to_a_file_from_arrays_and_loaders(images, tmp_path, capsys):
    base = transfer.without_head(classifier())
    expected = base.predict(images, verbose=0)
    path = tmp_path / "feats.npy"
    feats = transfer.extract_features(base, images, path=path, batch_size=8)
    assert isinstance(feats, np.memmap) and not feats.flags.writeable
    np.testing.assert_array_equal(feats, expected)
    np.testing.assert_array_equal(np.load(path), expected)
    assert "features" in capsys.readouterr().err  # the tqdm bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npy"]

    loader = Loader(images, np.arange(21), batch_size=6, shuffle=False, workers=0)
    from_loader = transfer.extract_features(base, loader, path=tmp_path / "l.npy", progress=False)
    np.testing.assert_array_equal(from_loader, expected)
    memmapped = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, images.shape)
    memmapped[:] = images
    np.testing.assert_array_equal(
        transfer.extract_features(base, memmapped, batch_size=5, progress=False), expected
    )


def test_an_interrupted_extraction_resumes_where_it_stopped(images, tmp_path):
    calls: list[int] = []
    model = counting_model(calls)
    expected = model.predict(images, verbose=0)
    path = tmp_path / "feats.npy"

    def batches(fail_after=None):
        for i, start in enumerate(range(0, 21, 5)):
            if i == fail_after:
                raise RuntimeError("the data source went away")
            yield images[start : start + 5], np.zeros(5)

    calls.clear()
    with pytest.raises(RuntimeError, match="went away"):
        transfer.extract_features(
            model, batches(fail_after=3), path=path, num_samples=21, progress=False
        )
    assert not path.exists()  # only a complete file has the name
    record = json.loads((tmp_path / "feats.npy.progress.json").read_text())
    assert record["done"] == 15 and record["total"] == 21
    assert (tmp_path / "feats.npy.partial.npy").exists()

    calls.clear()
    feats = transfer.extract_features(model, batches(), path=path, num_samples=21, progress=False)
    np.testing.assert_allclose(feats, expected, rtol=1e-6)
    # The resumed run computed the last two batches only (and one sample to size the file).
    assert sum(calls) == 1 + 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npy"]

    calls.clear()
    again = transfer.extract_features(model, batches(), path=path, num_samples=21, progress=False)
    np.testing.assert_array_equal(again, feats)
    assert sum(calls) == 1  # the complete file is reused


def test_a_resumed_run_with_other_weights_is_refused(images, tmp_path):
    calls: list[int] = []
    model = counting_model(calls)
    path = tmp_path / "feats.npy"

    def failing():
        yield images[:10]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        transfer.extract_features(model, failing(), path=path, num_samples=21, progress=False)
    conv = model.get_layer("conv")
    conv.kernel.data[...] += 1
    with pytest.raises(ValueError, match="unfinished run with another model, layer or data"):
        transfer.extract_features(model, images, path=path, progress=False)
    feats = transfer.extract_features(model, images, path=path, overwrite=True, progress=False)
    np.testing.assert_allclose(feats, model.predict(images, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError, match="exists with shape"):
        transfer.extract_features(model, images[:5], path=path, progress=False)


def test_extract_features_bad_input(images, tmp_path):
    base = transfer.without_head(classifier())
    with pytest.raises(TypeError, match=r"extract_features\(\): model must be a cnnkit Model"):
        transfer.extract_features(layers.Dense(2), images)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        transfer.extract_features(base, images, batch_size=0)
    with pytest.raises(TypeError, match="x_or_loader must be an array of samples or an iterable"):
        transfer.extract_features(base, {"x": images})
    with pytest.raises(ValueError, match="numeric array of samples"):
        transfer.extract_features(base, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="has no samples"):
        transfer.extract_features(base, images[:0], progress=False)
    with pytest.raises(ValueError, match="shuffle=True"):
        transfer.extract_features(base, Loader(images, batch_size=4, workers=0))
    with pytest.raises(ValueError, match="num_samples is needed with path"):
        transfer.extract_features(base, iter([images]), path=tmp_path / "f.npy")
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        transfer.extract_features(base, images, layer="nope")
    with pytest.raises(TypeError, match="layer must be a layer name"):
        transfer.extract_features(base, images, layer=1.5)
    with pytest.raises(ValueError, match="gave 5 samples, expected 21"):
        transfer.extract_features(
            base, iter([images[:5]]), path=tmp_path / "f.npy", num_samples=21, progress=False
        )
    with pytest.raises(ValueError, match="more than num_samples=3"):
        transfer.extract_features(
            base, iter([images[:5]]), path=tmp_path / "g.npy", num_samples=3, progress=False
        )
    with pytest.raises(ValueError, match="does not exist"):
        transfer.extract_features(base, images, path=tmp_path / "no" / "f.npy", progress=False)


def test_a_feature_path_that_is_a_folder_or_not_npy_is_named(tmp_path, images):
    # A folder was np.load's bare IsADirectoryError; an existing text file NumPy's "This
    # file contains pickled (object) data".
    model = classifier()
    with pytest.raises(IsADirectoryError, match=r"^extract_features\(\): path '.*' is a folder"):
        transfer.extract_features(model, images, layer="flat", path=tmp_path, progress=False)
    text = tmp_path / "notes.npy"
    text.write_text("not an array")
    with pytest.raises(ValueError, match=r"^extract_features\(\): '.*notes.npy' exists and is not"):
        transfer.extract_features(model, images, layer="flat", path=text, progress=False)
    assert text.read_text() == "not an array"
