"""Training: the digits acceptance test, determinism across threads, NaN handling, freezing,
the seeded validation split, data iterables and fit/evaluate rejections."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import callbacks, layers, losses, optimizers


def small_cnn(seed=0, dropout=0.0, bn=False):
    stack = [
        layers.Input((6, 6, 2)),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
    ]
    if bn:
        stack.append(layers.BatchNormalization())
    stack += [layers.MaxPooling2D(), layers.Flatten()]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(3))
    return cnnkit.Sequential(stack, seed=seed)


def toy_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 6, 2)).astype(np.float32)
    y = (x[:, :3, :3, 0].sum(axis=(1, 2)) > 0).astype(np.int64) + (x[..., 1].mean((1, 2)) > 0)
    return x, y


def compiled(model, optimizer="adam"):
    model.compile(
        optimizer, losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    return model


def same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(p, q) for p, q in zip(wa, wb))


def test_digits_cnn_reaches_97_percent():
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = selection.train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    model = cnnkit.Sequential(
        [
            layers.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(10),
        ],
        seed=0,
    )
    model.compile(
        optimizers.Adam(learning_rate=0.003),
        losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(x_train, y_train, batch_size=32, epochs=12, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    test_loss, accuracy = model.evaluate(x_test, y_test)
    assert np.isfinite(test_loss)
    assert accuracy >= 0.97, accuracy
    predicted = model.predict(x_test).argmax(axis=1)
    assert np.mean(predicted == y_test) == pytest.approx(accuracy)


def test_same_seed_same_weights_at_1_and_2_threads(restore_threads):
    x, y = toy_data()
    results = []
    for threads in (1, 2, 1):
        cnnkit.set_num_threads(threads)
        model = compiled(small_cnn(seed=3, dropout=0.25, bn=True))
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_split=0.25)
        results.append(model)
    assert same_weights(results[0], results[1])
    assert same_weights(results[0], results[2])


def test_seed_sets_initial_weights():
    assert same_weights(small_cnn(seed=5), small_cnn(seed=5))
    assert not same_weights(small_cnn(seed=5), small_cnn(seed=6))


def nan_data():
    x, y = toy_data(40)
    x[20] = np.nan  # batch 2 of 8 samples, unshuffled
    return x, y


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_last_good_weights():
    x, y = nan_data()
    model = compiled(small_cnn(seed=1, bn=True))
    with pytest.raises(FloatingPointError, match=r"epoch 0, batch 2 .*last good step") as info:
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert isinstance(info.value, cnnkit.models.NonFiniteLossError)
    assert (info.value.epoch, info.value.batch) == (0, 2)
    reference = compiled(small_cnn(seed=1, bn=True))
    reference.fit(x[:16], y[:16], batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert same_weights(model, reference)  # BN moving statistics included


def test_terminate_on_nan_stops_cleanly(capsys):
    x, y = nan_data()
    model = compiled(small_cnn(seed=1))
    history = model.fit(
        x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
        callbacks=[callbacks.TerminateOnNaN()],
    )  # fmt: skip
    assert model.stop_training
    assert len(history.history["loss"]) == 1
    reference = compiled(small_cnn(seed=1))
    reference.fit(x[:16], y[:16], batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert same_weights(model, reference)
    assert "Invalid loss" in capsys.readouterr().out


def test_frozen_layers_are_bit_identical_and_counted_non_trainable():
    x, y = toy_data()
    model = small_cnn(seed=2, bn=True)
    conv = model.layers[0]
    conv.trainable = False
    before = conv.get_weights()
    dense_before = model.layers[-1].get_weights()
    model.compile(
        optimizers.SGD(learning_rate=0.1, weight_decay=0.1),
        losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, conv.get_weights()))
    assert not np.array_equal(dense_before[0], model.layers[-1].get_weights()[0])
    lines = []
    model.summary(print_fn=lines.append)
    n_conv = sum(w.size for w in before)
    n_bn = 4 * 4
    assert any(
        line.startswith(f" Non-trainable params: {n_conv + n_bn // 2:,} (") for line in lines
    )


def test_frozen_batch_norm_uses_moving_statistics_in_fit():
    x, y = toy_data()
    model = small_cnn(seed=2, bn=True)
    bn = model.layers[1]
    assert isinstance(bn, layers.BatchNormalization)
    bn.moving_mean.data[...] = [0.5, -0.5, 0.1, 0.0]
    bn.moving_variance.data[...] = [2.0, 0.5, 1.0, 3.0]
    bn.trainable = False
    stats = bn.get_weights()
    compiled(model).fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(stats, bn.get_weights()))
    probe = np.random.default_rng(0).standard_normal((4, 6, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(bn(probe, training=True).data, bn(probe).data)


def test_frozen_submodel_and_trainable_change_after_compile():
    x, y = toy_data()
    base = cnnkit.Sequential(
        [layers.Input((6, 6, 2)), layers.Conv2D(4, 3, activation="relu")], name="base", seed=0
    )
    model = cnnkit.Sequential([base, layers.Flatten(), layers.Dense(3)], seed=0)
    model.build((6, 6, 2))
    compiled(model)
    base.trainable = False  # after compile: takes effect at the next fit
    frozen = base.get_weights()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert same_weights_list(frozen, base.get_weights())
    assert base.layers[0].trainable is False
    base.trainable = True  # unfreezing: the next fit trains it (fresh optimizer slots)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert not same_weights_list(frozen, base.get_weights())


def same_weights_list(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


def test_validation_split_is_seeded_random_subset():
    x, y = toy_data(50)
    y[-10:] = 0
    x[-10:] = 50.0  # the last rows are extreme: a tail split would show a huge loss
    runs = []
    for seed in (4, 4, 5):
        model = compiled(small_cnn(seed=seed), optimizers.SGD(learning_rate=0.0))
        runs.append(model.fit(x, y, epochs=1, validation_split=0.2, verbose=0).history)
    assert runs[0]["val_loss"] == runs[1]["val_loss"]
    tail = compiled(small_cnn(seed=4), optimizers.SGD(learning_rate=0.0)).evaluate(x[-10:], y[-10:])
    assert runs[0]["val_loss"][0] != pytest.approx(tail[0])
    assert "val_accuracy" in runs[0]


def test_fit_on_batch_iterable_equals_arrays():
    x, y = toy_data()

    class Loader:
        def __iter__(self):
            for i in range(0, len(x), 8):
                yield x[i : i + 8], y[i : i + 8]

    a = compiled(small_cnn(seed=7))
    a.fit(Loader(), epochs=2, verbose=0, validation_data=Loader())
    b = compiled(small_cnn(seed=7))
    history = b.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x, y))
    assert same_weights(a, b)
    assert a.history.history["val_loss"] == history.history["val_loss"]
    assert b.evaluate(Loader(), return_dict=True)["loss"] == pytest.approx(b.evaluate(x, y)[0])


def test_one_shot_generator_fails_on_second_epoch():
    x, y = toy_data(16)
    gen = ((x[i : i + 8], y[i : i + 8]) for i in (0, 8))
    with pytest.raises(ValueError, match="no batches in epoch 1"):
        compiled(small_cnn()).fit(gen, epochs=2, verbose=0)


def test_verbose_modes_print(capsys):
    x, y = toy_data(16)
    model = compiled(small_cnn())
    model.fit(x, y, epochs=2, batch_size=8, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "loss:" in out and "accuracy:" in out
    model.fit(x, y, epochs=1, batch_size=8, verbose=1)
    captured = capsys.readouterr()
    assert "2/2" in captured.out + captured.err  # the tqdm bar over the two batches


def test_progress_bar_total_comes_from_a_sized_loader(capsys):
    x, y = toy_data(24)

    class SizedLoader:
        def __len__(self):
            return 3

        def __iter__(self):
            for i in range(0, 24, 8):
                yield x[i : i + 8], y[i : i + 8]

    compiled(small_cnn()).fit(SizedLoader(), epochs=1, verbose=1)
    captured = capsys.readouterr()
    assert "3/3" in captured.out + captured.err


def test_multi_output_model_with_loss_weights():
    class TwoHeads(cnnkit.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.trunk = layers.Dense(8, activation="relu")
            self.cls = layers.Dense(3)
            self.reg = layers.Dense(1)

        def call(self, x, training=False):
            h = self.trunk(x)
            return {"cls": self.cls(h), "reg": self.reg(h)}

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = {"cls": rng.integers(0, 3, 32), "reg": rng.standard_normal((32, 1)).astype(np.float32)}
    model = TwoHeads(seed=0)
    model.compile(
        "adam",
        loss={"cls": losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"},
        loss_weights={"cls": 1.0, "reg": 0.5},
        metrics={"cls": ["accuracy"]},
    )
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    logs = history.history
    assert set(logs) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    assert logs["loss"][0] == pytest.approx(logs["cls_loss"][0] + 0.5 * logs["reg_loss"][0])
    result = model.evaluate(x, y, return_dict=True)
    assert set(result) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    assert model.predict(x)["reg"].shape == (32, 1)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, x, y: m.fit(x, y[:-1], verbose=0), ValueError, "same number of samples"),
        (lambda m, x, y: m.fit(x[..., :1], y, verbose=0), ValueError, r"x must have shape"),
        (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=0), ValueError, "batch_size must be"),
        (lambda m, x, y: m.fit(x, y, epochs=-1, verbose=0), ValueError, "epochs must be >= 0"),
        (lambda m, x, y: m.fit(x, y, verbose=5), ValueError, "verbose must be 0, 1 or 2"),
        (
            lambda m, x, y: m.fit(x, y, validation_split=1.5, verbose=0),
            ValueError,
            r"validation_split must be in \[0, 1\)",
        ),
        (lambda m, x, y: m.fit(x, verbose=0), ValueError, "x and y are required"),
        (lambda m, x, y: m.fit([1, 2], verbose=0), TypeError, "must yield \\(x, y\\)"),
        (lambda m, x, y: m.fit(x, y, validation_data=3, verbose=0), TypeError, "validation_data"),
        (lambda m, x, y: m.evaluate(x, y[:3]), ValueError, "same number of samples"),
        (lambda m, x, y: m.predict(x[:, :3]), ValueError, r"x must have shape"),
        (lambda m, x, y: m.predict(x, batch_size=-2), ValueError, "batch_size must be >= 1"),
    ],
)
def test_fit_rejections(call, error, match):
    x, y = toy_data(16)
    with pytest.raises(error, match=match):
        call(compiled(small_cnn()), x, y)


def test_fit_before_compile_and_bad_compile_arguments():
    x, y = toy_data(16)
    model = small_cnn()
    with pytest.raises(ValueError, match=r"fit\(\): the model must be compiled first"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate\(\): the model must be compiled first"):
        model.evaluate(x, y)
    with pytest.raises(ValueError, match="unknown name 'hinge2'"):
        model.compile("adam", "hinge2")
    with pytest.raises(ValueError, match="adamw2"):
        model.compile("adamw2", "mse")
    with pytest.raises(ValueError, match="loss is required"):
        model.compile("adam")
    with pytest.raises(TypeError, match="metrics must be a list"):
        model.compile("adam", "mse", metrics="accuracy")
    with pytest.raises(ValueError, match="loss_weights must be finite"):
        model.compile("adam", "mse", loss_weights=[float("nan")])


def test_train_on_batch_equals_one_fit_step():
    x, y = toy_data(8)
    a = compiled(small_cnn(seed=8))
    loss, accuracy = a.train_on_batch(x, y)
    b = compiled(small_cnn(seed=8))
    history = b.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert same_weights(a, b)
    assert history.history["loss"] == [loss] and 0 <= accuracy <= 1
    with pytest.raises(ValueError, match=r"train_on_batch\(\): x and y must have the same"):
        a.train_on_batch(x, y[:3])
    with pytest.raises(ValueError, match=r"train_on_batch\(\): the model must be compiled"):
        small_cnn().train_on_batch(x, y)


def test_fit_drives_the_keras_callbacks(tmp_path):
    x, y = toy_data(48)
    model = compiled(small_cnn(seed=9), optimizers.Adam(learning_rate=0.05))
    seen = []

    class Spy(callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(("begin", self.params["epochs"], self.params["steps"]))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch", epoch, sorted(logs)))

    cbs = [
        Spy(),
        callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.cnnkit")),
        callbacks.CSVLogger(str(tmp_path / "log.csv")),
        callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5),
        callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0),
    ]
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0, callbacks=cbs)
    assert seen[0] == ("begin", 5, 3)
    assert seen[1] == ("epoch", 0, ["accuracy", "loss"])
    assert len(history.history["loss"]) == 2  # EarlyStopping: no 10.0 improvement
    assert model.optimizer.learning_rate == pytest.approx(0.05 * 0.25)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-01.cnnkit", "ckpt-02.cnnkit"]
    restored = cnnkit.load_model(tmp_path / "ckpt-02.cnnkit")
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    assert (tmp_path / "log.csv").read_text().splitlines()[0].startswith("epoch")


def test_initial_epoch_and_zero_epochs():
    x, y = toy_data(16)
    model = compiled(small_cnn())
    before = model.get_weights()
    assert model.fit(x, y, epochs=0, verbose=0).history == {}
    assert same_weights_list(before, model.get_weights())
    history = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 2 and history.epoch == [3, 4]


# -- fit(class_weight, steps_per_epoch, validation_steps, initial_epoch) as Keras ----------------


def _binary_data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    return x, (x[:, 0] > 0).astype(np.int64)


def _binary_model(units=1):
    activation, loss = ("sigmoid", "binary_crossentropy") if units == 1 else ("softmax", "mse")
    model = cnnkit.Sequential(
        [cnnkit.layers.Input((3,)), cnnkit.layers.Dense(units, activation=activation)],
        seed=0,
        dtype="float64",
    )
    model.compile("sgd", loss)
    return model


@pytest.mark.parametrize("one_hot", [False, True])
def test_class_weight_equals_the_matching_sample_weight(one_hot):
    x, y = _binary_data()
    cw = {0: 0.25, 1: 3.0}
    units = 2 if one_hot else 1
    a, b = _binary_model(units), _binary_model(units)
    targets = np.eye(2)[y] if one_hot else y
    a.fit(x, targets, batch_size=4, epochs=2, class_weight=cw, verbose=0)
    b.fit(x, targets, batch_size=4, epochs=2, sample_weight=np.where(y == 1, 3.0, 0.25), verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # A class left out weighs 1; the data-iterable path gives the same result.
    c, d = _binary_model(), _binary_model()
    c.fit(x, y, batch_size=4, class_weight={1: 2.0}, shuffle=False, verbose=0)
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 12, 4)]
    d.fit(batches, class_weight={1: 2.0}, verbose=0)
    for wc, wd in zip(c.get_weights(), d.get_weights()):
        np.testing.assert_allclose(wc, wd, rtol=1e-12)


def test_class_weight_rejections():
    x, y = _binary_data()
    model = _binary_model()
    with pytest.raises(ValueError, match=r"fit\(\): give class_weight or sample_weight, not both"):
        model.fit(x, y, class_weight={0: 1.0}, sample_weight=np.ones(12), verbose=0)
    with pytest.raises(TypeError, match=r"fit\(\): class_weight must be a dict"):
        model.fit(x, y, class_weight=[1.0, 2.0], verbose=0)
    with pytest.raises(ValueError, match=r"class_weight keys must be class indices"):
        model.fit(x, y, class_weight={"a": 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"class_weight\[0\] must be finite and >= 0"):
        model.fit(x, y, class_weight={0: -1.0}, verbose=0)


def test_steps_per_epoch_continues_the_stream_across_epochs():
    x, y = _binary_data(12)
    a, b = _binary_model(), _binary_model()
    # 3 batches per pass; 2 steps per epoch for 3 epochs = exactly 2 passes.
    ha = a.fit(x, y, batch_size=4, epochs=3, steps_per_epoch=2, shuffle=False, verbose=0)
    b.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert a.optimizer.iterations == 6 and ha.epoch == [0, 1, 2]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_steps_per_epoch_with_a_generator_that_runs_out_warns_and_stops():
    x, y = _binary_data(12)
    model = _binary_model()
    gen = ((x[i : i + 4], y[i : i + 4]) for i in range(0, 12, 4))
    with pytest.warns(UserWarning, match=r"the data ran out after 1 of steps_per_epoch=2"):
        hist = model.fit(gen, epochs=5, steps_per_epoch=2, verbose=0)
    assert hist.epoch == [0, 1] and model.optimizer.iterations == 3


def test_validation_steps_limits_the_validation_batches():
    x, y = _binary_data(12)
    seen = []
    cb = cnnkit.callbacks.LambdaCallback(on_test_batch_end=lambda batch, logs: seen.append(batch))
    model = _binary_model()
    hist = model.fit(
        x, y, batch_size=4, validation_data=(x, y), validation_steps=2, callbacks=[cb], verbose=0
    )
    assert seen == [0, 1]
    assert hist.history["val_loss"][0] == pytest.approx(model.evaluate(x[:8], y[:8], batch_size=4))
    with pytest.raises(ValueError, match=r"fit\(\): validation_steps must be"):
        model.fit(x, y, validation_steps=0, verbose=0)
    with pytest.raises(ValueError, match=r"fit\(\): steps_per_epoch must be"):
        model.fit(x, y, steps_per_epoch=0, verbose=0)


def test_initial_epoch_resumes_the_epoch_count():
    x, y = _binary_data(12)
    model = _binary_model()
    model.fit(x, y, epochs=2, verbose=0)
    hist = model.fit(x, y, epochs=4, initial_epoch=2, verbose=0)
    assert hist.epoch == [2, 3]
