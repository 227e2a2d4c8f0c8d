"""Callbacks driven by a fake model through a Keras-like fit loop."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cnnkit
from cnnkit import callbacks as cb
from cnnkit.optimizers import SGD
from cnnkit.schedules import ExponentialDecay


class FakeModel:
    """The model interface the callbacks rely on, with observable weights and saves."""

    def __init__(self, lr=1.0):
        self.weights = [np.zeros(2), np.zeros((2, 2))]
        self.stop_training = False
        self.optimizer = SGD(lr)
        self.saved: list[tuple[str, str]] = []
        self.step = 0  # a counter the "training" writes into the weights

    def get_weights(self):
        # Like Keras: copies. EarlyStopping must not rely on that, see below.
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        for w, new in zip(self.weights, weights):
            w[...] = new

    def save(self, path):
        self.saved.append(("model", str(path)))
        with open(path, "w") as fh:
            fh.write(f"model {self.step}")

    def save_weights(self, path):
        self.saved.append(("weights", str(path)))
        with open(path, "w") as fh:
            fh.write(f"weights {self.step}")


class SharingModel(FakeModel):
    """get_weights returns the live arrays: a callback that keeps them without copying fails."""

    def get_weights(self):
        return self.weights


def fit(model, callbacks, epoch_logs, steps=3, batch_loss=None, verbose=0):
    """A minimal fit loop with Keras's hook order; epoch e writes e + 1 into the weights."""
    cbs = cb.CallbackList(
        callbacks,
        add_history=True,
        model=model,
        verbose=verbose,
        epochs=len(epoch_logs),
        steps=steps,
    )
    model.stop_training = False
    cbs.on_train_begin()
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch)
        for batch in range(steps):
            cbs.on_train_batch_begin(batch)
            model.step += 1
            for w in model.weights:
                w[...] = epoch + 1
            loss = batch_loss(epoch, batch) if batch_loss else logs.get("loss", 1.0)
            cbs.on_train_batch_end(batch, {"loss": loss})
            if model.stop_training:
                break
        val = {k: v for k, v in logs.items() if k.startswith("val_")}
        if val:
            cbs.on_test_begin()
            cbs.on_test_batch_end(0, val)
            cbs.on_test_end(val)
        epoch_end_logs = dict(logs)
        cbs.on_epoch_end(epoch, epoch_end_logs)
        if model.stop_training:
            break
    cbs.on_train_end()
    return cbs.history


def losses(*values, key="val_loss"):
    return [{"loss": 1.0, key: v} for v in values]


# -- History and CallbackList ---------------------------------------------------------------


def test_history_records_epochs_and_is_set_on_the_model():
    model = FakeModel()
    h = fit(model, [], [{"loss": 0.5, "val_loss": 0.7}, {"loss": 0.4, "val_loss": 0.6}])
    assert isinstance(h, cb.History)
    assert h.epoch == [0, 1]
    assert h.history == {"loss": [0.5, 0.4], "val_loss": [0.7, 0.6]}
    assert model.history is h


def test_callback_list_dispatch_aliases_and_defaults():
    calls = []

    class Recorder(cb.Callback):
        def on_batch_begin(self, batch, logs=None):
            calls.append(("batch_begin", batch))

        def on_batch_end(self, batch, logs=None):
            calls.append(("batch_end", batch, dict(logs)))

        def on_test_batch_end(self, batch, logs=None):
            calls.append(("test_batch_end", batch))

    rec, history = Recorder(), cb.History()
    model = FakeModel()
    cbs = cb.CallbackList([rec, history], add_history=True, add_progbar=True, model=model, epochs=1)
    assert cbs.history is history
    assert [type(c) for c in cbs] == [Recorder, cb.History, cb.ProgbarLogger]
    assert rec.model is model and rec.params == {"epochs": 1}
    cbs.on_train_batch_begin(0)
    cbs.on_train_batch_end(0, {"loss": 1.0})
    cbs.on_test_batch_end(3)
    assert calls == [("batch_begin", 0), ("batch_end", 0, {"loss": 1.0}), ("test_batch_end", 3)]
    late = cb.History()
    cbs.append(late)
    assert late.model is model and late.params == {"epochs": 1} and len(cbs) == 4
    # Every hook of the base class exists and does nothing.
    base = cb.Callback()
    for name in dir(base):
        if name.startswith("on_"):
            args = (0,) if "batch" in name or "epoch" in name else ()
            assert getattr(base, name)(*args) is None


def test_callback_list_rejections():
    with pytest.raises(TypeError, match=r"CallbackList\(\): callbacks must be a list of Callback"):
        cb.CallbackList(cb.History())
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a Callback, got str"):
        cb.CallbackList([cb.History(), "x"])
    with pytest.raises(TypeError, match=r"CallbackList.append\(\): callback must be a Callback"):
        cb.CallbackList().append(print)


# -- EarlyStopping --------------------------------------------------------------------------


@pytest.mark.parametrize("model_cls", [FakeModel, SharingModel])
def test_early_stopping_stops_after_patience_and_restores_best_weights(model_cls):
    model = model_cls()
    es = cb.EarlyStopping(patience=2, restore_best_weights=True)
    h = fit(model, [es], losses(1.0, 0.8, 0.9, 0.85, 0.95, 0.7))
    assert h.epoch == [0, 1, 2, 3]  # best at 1, two epochs without improvement
    assert es.stopped_epoch == 3 and es.best == 0.8 and es.best_epoch == 1
    for w in model.weights:
        np.testing.assert_array_equal(w, 2.0)  # the weights written in epoch 1


def test_early_stopping_restores_best_weights_without_stopping_too():
    model = FakeModel()
    es = cb.EarlyStopping(patience=5, restore_best_weights=True)
    h = fit(model, [es], losses(1.0, 0.5, 0.7))
    assert h.epoch == [0, 1, 2] and es.stopped_epoch == 0
    np.testing.assert_array_equal(model.weights[0], 2.0)


def test_early_stopping_patience_zero_and_never_at_epoch_zero():
    es = cb.EarlyStopping(patience=0)
    assert fit(FakeModel(), [es], losses(1.0, 1.2, 0.5)).epoch == [0, 1]
    assert fit(FakeModel(), [es], losses(1.0)).epoch == [0]


def test_early_stopping_auto_mode_maximizes_accuracy():
    es = cb.EarlyStopping(monitor="val_accuracy", patience=1)
    h = fit(FakeModel(), [es], losses(0.5, 0.6, 0.55, 0.9, key="val_accuracy"))
    assert h.epoch == [0, 1, 2]
    es = cb.EarlyStopping(monitor="val_accuracy", patience=1, mode="min")
    assert fit(FakeModel(), [es], losses(0.5, 0.6, 0.4, key="val_accuracy")).epoch == [0, 1]


def test_early_stopping_min_delta():
    es = cb.EarlyStopping(patience=1, min_delta=0.1)
    # 0.95 and 0.92 are within min_delta of the best (1.0): no improvement.
    assert fit(FakeModel(), [es], losses(1.0, 0.95, 0.92, 0.5)).epoch == [0, 1]
    assert es.min_delta == 0.1
    assert cb.EarlyStopping(min_delta=-0.1).min_delta == 0.1  # the sign is ignored, as Keras


def test_early_stopping_baseline_must_be_beaten_to_reset_the_wait():
    seq = losses(1.0, 0.9, 0.95, 0.94, 0.93)
    without = fit(FakeModel(), [cb.EarlyStopping(patience=2)], seq)
    with_baseline = fit(FakeModel(), [cb.EarlyStopping(patience=2, baseline=0.5)], seq)
    assert without.epoch == [0, 1, 2, 3]
    assert with_baseline.epoch == [0, 1, 2]


def test_early_stopping_start_from_epoch():
    es = cb.EarlyStopping(patience=0, start_from_epoch=2)
    assert fit(FakeModel(), [es], losses(1.0, 2.0, 3.0, 4.0)).epoch == [0, 1, 2, 3]
    es = cb.EarlyStopping(patience=0, start_from_epoch=1)
    assert fit(FakeModel(), [es], losses(1.0, 2.0, 3.0, 4.0)).epoch == [0, 1, 2]


def test_early_stopping_is_reusable():
    es = cb.EarlyStopping(patience=0)
    fit(FakeModel(), [es], losses(1.0, 2.0))
    assert fit(FakeModel(), [es], losses(5.0, 4.0, 3.0)).epoch == [0, 1, 2]


def test_early_stopping_missing_monitor_warns_and_does_nothing():
    es = cb.EarlyStopping(patience=0)
    with pytest.warns(
        UserWarning,
        match=r"Early stopping conditioned on metric `val_loss` which is not available\. "
        r"Available metrics are: loss",
    ):
        h = fit(FakeModel(), [es], [{"loss": 1.0}, {"loss": 2.0}])
    assert h.epoch == [0, 1]


def test_early_stopping_verbose_messages(capsys):
    es = cb.EarlyStopping(patience=0, verbose=1, restore_best_weights=True)
    fit(FakeModel(), [es], losses(1.0, 2.0))
    out = capsys.readouterr().out
    assert "Epoch 2: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 1." in out


# -- ModelCheckpoint ------------------------------------------------------------------------


def names(tmp_path):
    return sorted(p.name for p in tmp_path.rglob("*") if p.is_file())


def test_checkpoint_best_only_writes_on_improvement_with_formatted_names(tmp_path):
    model = FakeModel()
    ckpt = cb.ModelCheckpoint(
        str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.cnnkit"), save_best_only=True
    )
    fit(model, [ckpt], losses(0.5, 0.4, 0.45, 0.3))
    assert names(tmp_path) == ["m-01-0.50.cnnkit", "m-02-0.40.cnnkit", "m-04-0.30.cnnkit"]
    assert [kind for kind, _ in model.saved] == ["model"] * 3
    assert (tmp_path / "m-04-0.30.cnnkit").read_text() == "model 12"  # after 4 epochs of 3 steps
    assert ckpt.best == 0.3


def test_checkpoint_every_epoch_weights_only_into_new_folder(tmp_path):
    model = FakeModel()
    ckpt = cb.ModelCheckpoint(tmp_path / "sub" / "w{epoch}.weights", save_weights_only=True)
    fit(model, [ckpt], losses(0.5, 0.6))
    assert names(tmp_path) == ["w1.weights", "w2.weights"]
    assert [kind for kind, _ in model.saved] == ["weights", "weights"]


def test_checkpoint_max_mode_and_initial_threshold(tmp_path):
    model = FakeModel()
    ckpt = cb.ModelCheckpoint(
        str(tmp_path / "a{epoch}"),
        monitor="val_accuracy",
        save_best_only=True,
        initial_value_threshold=0.6,
    )
    fit(model, [ckpt], losses(0.5, 0.7, 0.65, 0.8, key="val_accuracy"))
    assert names(tmp_path) == ["a2", "a4"]
    ckpt = cb.ModelCheckpoint(str(tmp_path / "b{epoch}"), save_best_only=True, mode="max")
    fit(FakeModel(), [ckpt], losses(0.5, 0.4, 0.6))
    assert [n for n in names(tmp_path) if n.startswith("b")] == ["b1", "b3"]


def test_checkpoint_save_freq_in_batches(tmp_path):
    model = FakeModel()
    ckpt = cb.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}-{loss:.1f}"), save_freq=2)
    fit(model, [ckpt], losses(0.5, 0.6), steps=3)
    # Batches 2, 4 and 6 of the run: epoch 1 batch 2, epoch 2 batches 1 and 3.
    assert names(tmp_path) == ["e1-b2-1.0", "e2-b1-1.0", "e2-b3-1.0"]


def test_checkpoint_missing_monitor_warns(tmp_path):
    ckpt = cb.ModelCheckpoint(str(tmp_path / "x{epoch}"), save_best_only=True)
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        fit(FakeModel(), [ckpt], [{"loss": 1.0}])
    assert names(tmp_path) == []


def test_checkpoint_verbose(tmp_path, capsys):
    ckpt = cb.ModelCheckpoint(str(tmp_path / "v{epoch}"), save_best_only=True, verbose=1)
    fit(FakeModel(), [ckpt], losses(0.5, 0.6))
    out = capsys.readouterr().out
    assert "Epoch 1: val_loss improved from inf to 0.50000, saving model to" in out
    assert "Epoch 2: val_loss did not improve from 0.50000" in out


def test_checkpoint_rejections(tmp_path):
    with pytest.raises(TypeError, match=r"ModelCheckpoint\(\): filepath must be a str or path"):
        cb.ModelCheckpoint(3)
    with pytest.raises(
        ValueError, match="save_freq must be 'epoch' or a positive int, got 'batch'"
    ):
        cb.ModelCheckpoint("x", save_freq="batch")
    with pytest.raises(ValueError, match="save_freq must be >= 1, got 0"):
        cb.ModelCheckpoint("x", save_freq=0)
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'best'"):
        cb.ModelCheckpoint("x", mode="best")
    with pytest.raises(TypeError, match="monitor must be a str"):
        cb.ModelCheckpoint("x", monitor=None)
    ckpt = cb.ModelCheckpoint(str(tmp_path / "{val_acc:.2f}"))
    with pytest.raises(ValueError, match=r"cannot format filepath .* the field 'val_acc' is not"):
        fit(FakeModel(), [ckpt], losses(0.5))


# -- ReduceLROnPlateau ----------------------------------------------------------------------


def lr_after_each_epoch(callback, values, lr=1.0, **kw):
    model = FakeModel(lr)
    h = fit(model, [callback], losses(*values), **kw)
    return h.history["learning_rate"], model.optimizer.learning_rate


def test_reduce_lr_after_patience_down_to_min_lr():
    r = cb.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.1)
    logged, final = lr_after_each_epoch(r, [1.0] * 11)
    # The logged rate is the one in force during the epoch.
    assert logged == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.1, 0.1]
    assert final == 0.1


def test_reduce_lr_cooldown():
    r = cb.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2)
    logged, _ = lr_after_each_epoch(r, [1.0] * 9)
    # Reductions at the end of epochs 2, 5 and 8: two quiet epochs after each.
    assert logged == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert r.cooldown_counter == 2


def test_reduce_lr_improvements_and_min_delta():
    r = cb.ReduceLROnPlateau(factor=0.5, patience=1)
    assert lr_after_each_epoch(r, [1.0, 0.9, 0.8, 0.7])[1] == 1.0
    r = cb.ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.2)
    assert lr_after_each_epoch(r, [1.0, 0.9, 0.85])[1] == 0.25
    r = cb.ReduceLROnPlateau(monitor="val_acc", factor=0.5, patience=1)
    model = FakeModel()
    fit(model, [r], losses(0.5, 0.6, 0.7, key="val_acc"))
    assert model.optimizer.learning_rate == 1.0


def test_reduce_lr_verbose(capsys):
    lr_after_each_epoch(cb.ReduceLROnPlateau(patience=0, verbose=1), [1.0, 1.0])
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.1." in capsys.readouterr().out


def test_reduce_lr_missing_monitor_warns_but_logs_the_rate():
    model = FakeModel(0.3)
    with pytest.warns(UserWarning, match="Learning rate reduction is conditioned on metric"):
        h = fit(model, [cb.ReduceLROnPlateau(patience=0)], [{"loss": 1.0}, {"loss": 1.0}])
    assert h.history["learning_rate"] == [0.3, 0.3]


def test_reduce_lr_rejects_schedules_and_bad_arguments():
    model = FakeModel()
    model.optimizer = SGD(ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="ReduceLROnPlateau: the optimizer's learning_rate must be"):
        fit(model, [cb.ReduceLROnPlateau()], losses(1.0))
    model.optimizer = None
    with pytest.raises(ValueError, match="must have an optimizer with a learning_rate"):
        fit(model, [cb.ReduceLROnPlateau()], losses(1.0))
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau\(\): factor must be in \(0, 1\)"):
        cb.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="patience must be >= 0"):
        cb.ReduceLROnPlateau(patience=-1)
    with pytest.raises(TypeError, match="cooldown must be an int, got float"):
        cb.ReduceLROnPlateau(cooldown=1.5)
    with pytest.raises(ValueError, match="min_lr must be >= 0"):
        cb.ReduceLROnPlateau(min_lr=-1)
    with pytest.raises(ValueError, match="mode must be 'auto'"):
        cb.ReduceLROnPlateau(mode="up")


# -- LearningRateScheduler ------------------------------------------------------------------


def test_learning_rate_scheduler_two_and_one_argument_forms(capsys):
    model = FakeModel(0.8)
    sched = cb.LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr * 0.5, verbose=1)
    h = fit(model, [sched], losses(1, 1, 1))
    assert h.history["learning_rate"] == [0.8, 0.4, 0.2]
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.4." in capsys.readouterr().out

    def by_epoch(epoch):
        return 0.1 * (epoch + 1)

    model = FakeModel()
    h = fit(model, [cb.LearningRateScheduler(by_epoch)], losses(1, 1))
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.2])
    assert model.optimizer.current_learning_rate == pytest.approx(0.2)


def test_learning_rate_scheduler_rejections():
    with pytest.raises(TypeError, match=r"LearningRateScheduler\(\): schedule must be callable"):
        cb.LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match=r"schedule must accept \(epoch, lr\) or \(epoch\)"):
        cb.LearningRateScheduler(lambda a, b, c: 0.1)
    with pytest.raises(ValueError, match="output of the schedule function should be a float"):
        fit(FakeModel(), [cb.LearningRateScheduler(lambda e, lr: "fast")], losses(1))
    with pytest.raises(ValueError, match=r"the schedule returned -0\.1 for epoch 0"):
        fit(FakeModel(), [cb.LearningRateScheduler(lambda e, lr: -0.1)], losses(1))
    model = FakeModel()
    model.optimizer = SGD(ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="LearningRateScheduler: the optimizer's learning_rate"):
        fit(model, [cb.LearningRateScheduler(lambda e, lr: lr)], losses(1))


# -- CSVLogger ------------------------------------------------------------------------------


def test_csv_logger_header_once_and_rows(tmp_path):
    path = tmp_path / "log.csv"
    logs = [
        {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.625, "val_accuracy": 0.5},
        {"loss": 0.25, "accuracy": 1.0, "val_loss": 0.5, "val_accuracy": 0.75},
    ]
    fit(FakeModel(), [cb.CSVLogger(path)], logs)
    assert path.read_text().splitlines() == [
        "epoch,accuracy,loss,val_accuracy,val_loss",
        "0,0.75,0.5,0.5,0.625",
        "1,1.0,0.25,0.75,0.5",
    ]
    fit(FakeModel(), [cb.CSVLogger(path, append=True)], logs[:1])
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("epoch") and lines[3] == "0,0.75,0.5,0.5,0.625"
    fit(FakeModel(), [cb.CSVLogger(path)], logs[:1])  # no append: overwritten
    assert len(path.read_text().splitlines()) == 2


def test_csv_logger_append_to_empty_file_writes_the_header(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    fit(FakeModel(), [cb.CSVLogger(path, append=True)], [{"loss": 1.0}])
    assert path.read_text().splitlines()[0] == "epoch,loss,val_loss"


def test_csv_logger_separator_missing_values_and_arrays(tmp_path):
    path = tmp_path / "log.tsv"
    logs = [{"loss": 1.5, "lrs": np.array([0.1, 0.2])}, {"loss": 0.5, "val_loss": 0.25}]
    fit(FakeModel(), [cb.CSVLogger(path, separator="\t")], logs)
    assert path.read_text().splitlines() == [
        "epoch\tloss\tlrs\tval_loss\tval_lrs",
        "0\t1.5\t[0.1, 0.2]\tNA\tNA",
        "1\t0.5\tNA\t0.25\tNA",
    ]


def test_csv_logger_rejections(tmp_path):
    with pytest.raises(ValueError, match=r"CSVLogger\(\): separator must be a single character"):
        cb.CSVLogger(tmp_path / "x", separator=", ")
    with pytest.raises(TypeError, match="filename must be a str or path"):
        cb.CSVLogger(None)
    with pytest.raises(RuntimeError, match="called before on_train_begin"):
        cb.CSVLogger(tmp_path / "x").on_epoch_end(0, {"loss": 1.0})


# -- TerminateOnNaN -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, np.float32("nan")])
def test_terminate_on_nan(bad, capsys):
    model = FakeModel()
    h = fit(
        model,
        [cb.TerminateOnNaN()],
        losses(1.0, 1.0, 1.0),
        batch_loss=lambda e, b: bad if (e, b) == (1, 1) else 0.5,
    )
    assert model.stop_training and h.epoch == [0, 1] and model.step == 5
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out


def test_terminate_on_nan_ignores_finite_losses():
    model = FakeModel()
    assert fit(model, [cb.TerminateOnNaN()], losses(1.0, 2.0)).epoch == [0, 1]


# -- ProgbarLogger --------------------------------------------------------------------------


def test_progbar_verbose_2_prints_one_line_per_epoch(capsys):
    logs = [
        {"loss": 0.12344, "accuracy": 0.95, "val_loss": 0.2, "val_accuracy": 0.9},
        {"loss": 0.00001, "accuracy": 1.0, "val_loss": 0.1, "val_accuracy": 0.95},
    ]
    fit(FakeModel(), [cb.ProgbarLogger()], logs, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # the validation inside fit prints nothing of its own
    assert re.fullmatch(
        r"Epoch 1/2 - \d+\.\ds - loss: 0\.1234 - accuracy: 0\.9500 - val_loss: 0\.2000 - "
        r"val_accuracy: 0\.9000",
        lines[0],
    ), lines[0]
    assert lines[1].startswith("Epoch 2/2 - ") and "loss: 1.0000e-05" in lines[1]


def test_progbar_verbose_1_draws_a_tqdm_bar_per_epoch():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    logs = [{"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75}] * 2
    fit(FakeModel(), [cb.ProgbarLogger(file=out)], logs, steps=4, verbose=1)
    text = out.getvalue()
    final = [s for s in re.split(r"[\r\n]", text) if s.strip()]
    epoch_ends = [s for s in final if "4/4" in s]
    assert any(s.startswith("Epoch 1/2") for s in epoch_ends)
    assert any(s.startswith("Epoch 2/2") for s in epoch_ends)
    # The last state of each bar holds the epoch logs, validation included, and the timing.
    last = [s for s in epoch_ends if s.startswith("Epoch 2/2")][-1]
    assert "loss=0.5000, accuracy=0.2500, val_loss=0.7500" in last
    assert "100%" in last and "<00:00" in last


def test_progbar_default_goes_to_stdout_and_unknown_steps(capsys):
    pytest.importorskip("tqdm")
    cbs = cb.CallbackList(
        [], add_progbar=True, model=FakeModel(), verbose="auto", epochs=1, steps=None
    )
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    for b in range(3):
        cbs.on_train_batch_end(b, {"loss": 2.0})
    cbs.on_epoch_end(0, {"loss": 2.0})
    cbs.on_train_end()
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "3step" in out and "loss=2.0000" in out


def test_progbar_evaluate_and_predict_outside_fit(capsys):
    p = cb.ProgbarLogger()
    p.set_params({"verbose": 2, "epochs": 1, "steps": 2})
    p.on_test_begin()
    p.on_test_batch_end(0, {"loss": 1.0})
    p.on_test_batch_end(1, {"loss": 0.5})
    p.on_test_end({"loss": 0.75, "accuracy": 0.5})
    p.on_predict_begin()
    p.on_predict_batch_end(0)
    p.on_predict_end()
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Evaluate - \d+\.\ds - loss: 0\.7500 - accuracy: 0\.5000", lines[0])
    assert re.fullmatch(r"Predict - \d+\.\ds", lines[1])


def test_progbar_verbose_1_evaluate(capsys):
    pytest.importorskip("tqdm")
    p = cb.ProgbarLogger()
    p.set_params({"verbose": 1, "steps": 2})
    p.on_test_begin()
    p.on_test_batch_end(0, {"loss": 1.0})
    p.on_test_batch_end(1, {"loss": 0.5})
    p.on_test_end({"loss": 0.75})
    out = capsys.readouterr().out
    assert "Evaluate" in out and "2/2" in out and "loss=0.7500" in out


def test_progbar_rejects_bad_verbose():
    with pytest.raises(TypeError, match="ProgbarLogger: verbose must be an int"):
        cb.ProgbarLogger().set_params({"verbose": "loud"})


def test_importing_callbacks_does_not_load_tqdm():
    code = (
        "import sys, cnnkit.callbacks, cnnkit.metrics, cnnkit.optimizers; "
        "print('tqdm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


# -- monitor-mode and argument rejections ---------------------------------------------------


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: cb.EarlyStopping(mode="best"), ValueError, r"EarlyStopping\(\): mode must be"),
        (lambda: cb.EarlyStopping(patience=-1), ValueError, "patience must be >= 0, got -1"),
        (lambda: cb.EarlyStopping(patience=1.5), TypeError, "patience must be an int"),
        (lambda: cb.EarlyStopping(min_delta="0"), TypeError, "min_delta must be a real number"),
        (
            lambda: cb.EarlyStopping(baseline=math.nan),
            ValueError,
            r"baseline must be a number \(not",
        ),
        (lambda: cb.EarlyStopping(monitor=3), TypeError, "monitor must be a str, got int"),
        (lambda: cb.EarlyStopping(start_from_epoch=-2), ValueError, "start_from_epoch"),
    ],
)
def test_early_stopping_rejections(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize(
    ("monitor", "maximize"),
    [
        ("val_loss", False),
        ("loss", False),
        ("val_mae", False),
        ("accuracy", True),
        ("val_acc", True),
        ("val_sparse_categorical_accuracy", True),
        ("val_auc", True),
        ("precision", True),
    ],
)
def test_auto_mode_direction(monitor, maximize):
    assert cb.EarlyStopping(monitor=monitor)._maximize is maximize
    assert cb.ModelCheckpoint("x", monitor=monitor)._maximize is maximize
    assert cb.ReduceLROnPlateau(monitor=monitor)._maximize is maximize


# -- LambdaCallback, BackupAndRestore ---------------------------------------------------------


def _small_run_model(seed=0):
    model = cnnkit.Sequential(
        [
            cnnkit.layers.Input((4,)),
            cnnkit.layers.Dense(8, activation="relu"),
            # Named: layer state is stored by layer name, and default names are numbered per
            # process, so a second model made in this process would not match.
            cnnkit.layers.Dropout(0.3, name="drop"),
            cnnkit.layers.Dense(3),
        ],
        seed=seed,
    )
    model.compile(
        cnnkit.optimizers.Adam(0.01),
        cnnkit.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _small_run_data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    return x, (np.abs(x[:, 0] * 2).astype(np.int64) % 3)


def test_lambda_callback_hooks_and_rejections():
    x, y = _small_run_data()
    calls = []
    cb = cnnkit.callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch", epoch, "loss" in logs)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch", batch)),
        on_predict_end=lambda logs: calls.append("predict_end"),
    )
    model = _small_run_model()
    model.fit(x, y, batch_size=20, epochs=2, callbacks=[cb], verbose=0)
    model.predict(x, callbacks=[cb])
    assert calls == [
        "train_begin",
        ("batch", 0),
        ("batch", 1),
        ("epoch", 0, True),
        ("batch", 0),
        ("batch", 1),
        ("epoch", 1, True),
        "predict_end",
    ]
    with pytest.raises(TypeError, match=r"LambdaCallback\(\): 'on_batch_finish' is not a callb"):
        cnnkit.callbacks.LambdaCallback(on_batch_finish=print)
    with pytest.raises(TypeError, match=r"LambdaCallback\(\): on_epoch_end must be callable"):
        cnnkit.callbacks.LambdaCallback(on_epoch_end=3)


class _Interrupt(Exception):
    pass


def test_backup_and_restore_resumes_an_interrupted_fit_to_identical_weights(tmp_path):
    x, y = _small_run_data()
    reference = _small_run_model()
    reference.fit(x, y, batch_size=8, epochs=4, verbose=0)

    backup = tmp_path / "backup"

    def crash(batch, logs):
        if crash.epoch == 2 and batch == 2:
            raise _Interrupt

    crash.epoch = -1
    tracker = cnnkit.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: setattr(crash, "epoch", epoch),
        on_train_batch_end=crash,
    )
    first = _small_run_model()
    with pytest.raises(_Interrupt):
        first.fit(
            x,
            y,
            batch_size=8,
            epochs=4,
            callbacks=[cnnkit.callbacks.BackupAndRestore(backup), tracker],
            verbose=0,
        )
    assert sorted(os.listdir(backup)) == ["epoch-2.cnnkit"]

    # A new process: a fresh model, the same call.
    resumed = _small_run_model()
    hist = resumed.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        callbacks=[cnnkit.callbacks.BackupAndRestore(backup)],
        verbose=0,
    )
    assert hist.epoch == [2, 3]
    assert resumed.optimizer.iterations == reference.optimizer.iterations
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not backup.exists()  # deleted after a finished fit


def test_backup_and_restore_rejections(tmp_path):
    with pytest.raises(ValueError, match=r"BackupAndRestore\(\): save_freq must be 'epoch'"):
        cnnkit.callbacks.BackupAndRestore(tmp_path, save_freq=10)
    with pytest.raises(TypeError, match=r"BackupAndRestore\(\): backup_dir must be"):
        cnnkit.callbacks.BackupAndRestore(3)


def test_checkpoint_and_csv_logger_refuse_a_folder_before_training(tmp_path):
    # ModelCheckpoint failed on the folder only at its first save, after an epoch of
    # training; CSVLogger with open()'s bare IsADirectoryError when fit began.
    with pytest.raises(IsADirectoryError, match=r"^ModelCheckpoint\(\): filepath '.*' is a folder"):
        cb.ModelCheckpoint(tmp_path)
    with pytest.raises(IsADirectoryError, match=r"^CSVLogger\(\): filename '.*' is a folder"):
        cb.CSVLogger(tmp_path)
    cb.ModelCheckpoint(tmp_path / "ck-{epoch:02d}.cnnkit")  # a file name in the folder is fine
