"""The training loops apart from the model: overridable steps, callbacks of evaluate and
predict, and input checks that run before the first step."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import callbacks, layers
from cnnkit.training import unpack_x_y_sample_weight


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    return x, y


def stack(seed=0, model_class=cnnkit.Sequential):
    model = model_class([layers.Input((6,)), layers.Dense(3, activation="softmax")], seed=seed)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class CountingSequential(cnnkit.Sequential):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = {"train": 0, "test": 0, "predict": 0}

    def train_step(self, data):
        self.steps["train"] += 1
        return super().train_step(data)

    def test_step(self, data):
        self.steps["test"] += 1
        return super().test_step(data)

    def predict_step(self, data):
        self.steps["predict"] += 1
        return super().predict_step(data)


def test_overridden_steps_are_what_the_loops_run():
    x, y = data()
    model = stack(model_class=CountingSequential)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x[:8], y[:8]))
    assert model.steps == {"train": 6, "test": 2, "predict": 0}
    model.evaluate(x, y, batch_size=12)
    model.predict(x, batch_size=5)
    assert model.steps == {"train": 6, "test": 4, "predict": 5}


def test_a_custom_train_step_with_the_public_pieces_equals_the_default():
    class Manual(cnnkit.Sequential):
        def train_step(self, data):
            x, y, sample_weight = unpack_x_y_sample_weight(data)
            with cnnkit.autograd.enable_grad():
                y_pred = self(x, training=True)
                loss = self.compute_loss(x, y, y_pred, sample_weight)
            loss.backward()
            self.optimizer.apply_gradients([(v.grad, v) for v in self.trainable_weights])
            for v in self.trainable_weights:
                v.grad = None
            return self.compute_metrics(x, y, y_pred, sample_weight)

    x, y = data()
    default, manual = stack(), stack(model_class=Manual)
    h1 = default.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    h2 = manual.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    assert h1.keys() == h2.keys()
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-6)
    for a, b in zip(default.get_weights(), manual.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_custom_predict_step_shapes_predict():
    class Argmax(cnnkit.Sequential):
        def predict_step(self, data):
            (x,) = data
            return np.argmax(self(x).data, axis=-1)

    x, _ = data()
    model = stack(model_class=Argmax)
    np.testing.assert_array_equal(
        model.predict(x, batch_size=7), np.argmax(stack().predict(x), axis=-1)
    )


class Recorder(callbacks.Callback):
    """Records the test and predict hooks it receives."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_test_begin(self, logs=None):
        self.calls.append(("on_test_begin",))

    def on_test_batch_begin(self, batch, logs=None):
        self.calls.append(("on_test_batch_begin", batch))

    def on_test_batch_end(self, batch, logs=None):
        self.calls.append(("on_test_batch_end", batch))

    def on_test_end(self, logs=None):
        self.calls.append(("on_test_end",))

    def on_predict_begin(self, logs=None):
        self.calls.append(("on_predict_begin",))

    def on_predict_batch_begin(self, batch, logs=None):
        self.calls.append(("on_predict_batch_begin", batch))

    def on_predict_batch_end(self, batch, logs=None):
        self.calls.append(("on_predict_batch_end", batch))

    def on_predict_end(self, logs=None):
        self.calls.append(("on_predict_end",))


def test_evaluate_and_predict_fire_their_hooks():
    x, y = data(10)
    model = stack()
    rec = Recorder()
    logs = model.evaluate(x, y, batch_size=4, callbacks=[rec], return_dict=True)
    assert rec.calls == [
        ("on_test_begin",),
        ("on_test_batch_begin", 0),
        ("on_test_batch_end", 0),
        ("on_test_batch_begin", 1),
        ("on_test_batch_end", 1),
        ("on_test_batch_begin", 2),
        ("on_test_batch_end", 2),
        ("on_test_end",),
    ]
    assert set(logs) == {"loss", "accuracy"}
    rec.calls.clear()
    model.predict(x, batch_size=5, callbacks=[rec])
    assert [c[0] for c in rec.calls] == [
        "on_predict_begin",
        "on_predict_batch_begin",
        "on_predict_batch_end",
        "on_predict_batch_begin",
        "on_predict_batch_end",
        "on_predict_end",
    ]


def test_validation_in_fit_fires_the_test_hooks():
    x, y = data(12)
    rec = Recorder()
    stack().fit(x, y, batch_size=6, epochs=2, verbose=0, validation_data=(x, y), callbacks=[rec])
    assert rec.calls == 2 * [
        ("on_test_begin",),
        ("on_test_batch_begin", 0),
        ("on_test_batch_end", 0),
        ("on_test_batch_begin", 1),
        ("on_test_batch_end", 1),
        ("on_test_end",),
    ]


def test_predict_batch_end_logs_hold_the_outputs():
    seen = []

    class Keep(callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            seen.append(logs["outputs"])

    x, _ = data(9)
    model = stack()
    out = model.predict(x, batch_size=4, callbacks=[Keep()])
    np.testing.assert_array_equal(np.concatenate(seen), out)


def test_progress_bar_for_evaluate_and_predict(capsys):
    x, y = data(16)
    model = stack()
    model.evaluate(x, y, batch_size=4, verbose=1)
    model.predict(x, batch_size=4, verbose=1)
    out = capsys.readouterr().out
    assert "Evaluate" in out and "4/4" in out and "loss=" in out
    assert "Predict" in out
    model.evaluate(x, y, batch_size=4, verbose=2)
    assert capsys.readouterr().out.startswith("Evaluate - ")


# -- input checks (issue 9, section 5) --------------------------------------------------------
def test_labels_out_of_range_fail_before_any_step():
    x, y = data()
    model = stack()
    before = model.get_weights()
    bad = y.copy()
    bad[-1] = 7
    with pytest.raises(
        ValueError, match=r"fit\(\): y does not fit the loss .*no weight was changed"
    ):
        model.fit(x, bad, batch_size=4, verbose=0)
    assert model.optimizer.iterations == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_labels_fail_before_any_step(value):
    x, _ = data()
    y = np.eye(3, dtype=np.float32)[np.arange(24) % 3]
    y[20, 1] = value
    model = cnnkit.Sequential([layers.Input((6,)), layers.Dense(3)], seed=0)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"fit\(\): y must be finite, got .* at index \(20, 1\)"):
        model.fit(x, y, batch_size=4, verbose=0)
    assert model.optimizer.iterations == 0


def test_string_labels_are_a_type_error():
    x, y = data()
    with pytest.raises(TypeError, match=r"fit\(\): y must hold numbers, got dtype <U"):
        stack().fit(x, y.astype(str), verbose=0)


@pytest.mark.parametrize("dtype", [str, object, complex])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict", "train_on_batch"])
def test_string_object_and_complex_inputs_are_a_type_error(dtype, method):
    x, y = data()
    x = x.astype(dtype)
    model = stack()
    call = {
        "fit": lambda: model.fit(x, y, verbose=0),
        "evaluate": lambda: model.evaluate(x, y),
        "predict": lambda: model.predict(x),
        "train_on_batch": lambda: model.train_on_batch(x, y),
    }[method]
    with pytest.raises(TypeError, match=rf"{method}\(\): x must have a bool, integer or floating"):
        call()


def test_a_bad_batch_from_an_iterable_says_earlier_batches_were_applied():
    x, y = data()
    bad = y.copy()
    bad[20] = 9
    batches = [(x[i : i + 8], bad[i : i + 8]) for i in range(0, 24, 8)]
    model = stack()
    with pytest.raises(ValueError, match=r"batch 2 of epoch 0 .* already applied"):
        model.fit(batches, verbose=0)
    assert model.optimizer.iterations == 2


def test_a_bad_first_batch_from_an_iterable_has_no_such_note():
    x, y = data()
    batches = [(x[:8], y[:8] + 5)]
    with pytest.raises(ValueError) as info:
        stack().fit(batches, verbose=0)
    assert "already applied" not in str(info.value)


def test_numpy_blas_runs_on_one_thread_during_fit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []

    class Probe(callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            # NumPy's own BLAS: another one loaded later by a peer (SciPy's) is not ours.
            blas = [
                p
                for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas" and "numpy" in p["filepath"]
            ]
            seen.extend(p["num_threads"] for p in blas)

    x, y = data()
    if not any("numpy" in p["filepath"] for p in threadpoolctl.threadpool_info()):
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    stack().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Probe()])
    assert seen and set(seen) == {1}
