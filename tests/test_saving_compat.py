"""Model files written before the restructure (one registry, subpackages) still load.

tests/data/legacy_model_v1.cnnkit was saved by cnnkit's main branch before the Python
layer was reorganised: a Sequential CNN with batch normalisation, dropout (with its generator
state), initializer objects, a learning-rate schedule inside Adam, a loss object and metrics.
legacy_model_v1_expected.npz holds its inputs, targets, predictions and evaluation as that
version computed them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cnnkit
from cnnkit import losses, optimizers, schedules

DATA = Path(__file__).parent / "data"


def test_model_saved_before_the_restructure_loads_and_predicts_the_same():
    model = cnnkit.load_model(DATA / "legacy_model_v1.cnnkit")
    expected = np.load(DATA / "legacy_model_v1_expected.npz")
    np.testing.assert_allclose(model.predict(expected["x"]), expected["predictions"], rtol=1e-5)
    np.testing.assert_allclose(
        model.evaluate(expected["x"], expected["y"]), expected["evaluation"], rtol=1e-5
    )
    assert isinstance(model.optimizer, optimizers.Adam)
    assert isinstance(model.optimizer.learning_rate, schedules.ExponentialDecay)
    assert model.optimizer.iterations == int(expected["iterations"])
    assert isinstance(model._compile_args["loss"], losses.CategoricalCrossentropy)
    assert [type(layer).__name__ for layer in model.layers][:3] == [
        "Conv2D",
        "BatchNormalization",
        "ReLU",
    ]


def test_model_saved_before_the_restructure_keeps_training():
    model = cnnkit.load_model(DATA / "legacy_model_v1.cnnkit")
    expected = np.load(DATA / "legacy_model_v1_expected.npz")
    history = model.fit(expected["x"], expected["y"], batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.optimizer.iterations == int(expected["iterations"]) + 2
