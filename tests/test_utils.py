"""cnnkit.utils: to_categorical, normalize, set_random_seed, plot_model."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import layers, utils


def test_to_categorical():
    out = utils.to_categorical([0, 2, 1])
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[0, 2, 1]])
    assert out.dtype == np.float32
    assert utils.to_categorical(np.array([[1], [0]]), num_classes=4).shape == (2, 4)
    assert utils.to_categorical(np.zeros((2, 3), int), 2).shape == (2, 3, 2)
    assert utils.to_categorical([], 3).shape == (0, 3)
    with pytest.raises(ValueError, match=r"to_categorical\(\): x holds the label 5"):
        utils.to_categorical([5], num_classes=3)
    with pytest.raises(ValueError, match=r"to_categorical\(\): x must hold integer class"):
        utils.to_categorical([0.5])
    with pytest.raises(TypeError, match=r"to_categorical\(\): x must hold integer class labels"):
        utils.to_categorical(["a"])


def test_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(utils.normalize(x), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(utils.normalize(x, axis=0, order=1), [[1.0, 1.0], [0.0, 0.0]])
    assert utils.normalize(np.ones((2, 2), np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"normalize\(\): axis must be in"):
        utils.normalize(x, axis=2)


def test_set_random_seed_makes_unseeded_models_repeatable():
    def make():
        model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(4), layers.Dropout(0.5)])
        return model.get_weights(), model.seed

    utils.set_random_seed(7)
    a = make()
    utils.set_random_seed(7)
    b = make()
    assert a[1] == b[1]
    assert all(np.array_equal(u, v) for u, v in zip(a[0], b[0]))
    utils.set_random_seed(8)
    assert make()[1] != a[1]
    with pytest.raises(ValueError, match=r"set_random_seed\(\): seed must be >= 0"):
        utils.set_random_seed(-1)


def test_plot_model_text_and_png(tmp_path):
    inner = cnnkit.Sequential([layers.Input((6,)), layers.Dense(3)], name="inner")
    model = cnnkit.Sequential([layers.Input((6,)), inner, layers.Dense(2)], name="net")
    text = utils.plot_model(model, show_shapes=True, expand_nested=True, show_trainable=True)
    assert "Input" in text and "output: (None, 6)" in text and "inner (Sequential)" in text
    assert text.count("▼") == 3 and "trainable: Y" in text
    nested = [line for line in text.splitlines() if "(Dense)" in line]
    assert nested[0].startswith("    │")  # the nested Dense is indented
    assert "output:" not in utils.plot_model(model)
    txt = tmp_path / "model.txt"
    utils.plot_model(model, to_file=txt)
    assert txt.read_text().startswith("┌")
    pil = pytest.importorskip("PIL.Image")
    png = tmp_path / "model.png"
    utils.plot_model(model, to_file=png, show_shapes=True)
    with pil.open(png) as image:
        assert image.format == "PNG" and image.size[1] > 100
    with pytest.raises(ValueError, match=r"plot_model\(\): the model must be built"):
        utils.plot_model(cnnkit.Sequential([layers.Dense(2)]))
