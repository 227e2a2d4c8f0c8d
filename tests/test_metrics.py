"""Metrics: Keras 3 accumulation and accuracy semantics, `get` resolution, rejections."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import metrics
from cnnkit.metrics import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    Mean,
    MeanAbsoluteError,
    MeanMetricWrapper,
    MeanSquaredError,
    Metric,
    SparseCategoricalAccuracy,
)


def batches(seed: int, n_batches: int = 3, classes: int = 4):
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_batches):
        n = 5 + b  # unequal batch sizes: the result must weight by samples, not batches
        labels = rng.integers(0, classes, n)
        probs = rng.random((n, classes))
        out.append((labels, probs / probs.sum(-1, keepdims=True)))
    return out


# -- Mean -----------------------------------------------------------------------------------


def test_mean_accumulates_over_batches():
    m = Mean()
    assert m.name == "mean" and m.result() == 0.0
    m.update_state([1.0, 2.0, 3.0])
    m.update_state(np.array([10.0]))
    assert m.result() == pytest.approx(4.0)
    m.update_state(5.0)  # a scalar counts as one sample
    assert m.result() == pytest.approx(21 / 5)
    m.reset_state()
    assert m.result() == 0.0


def test_mean_with_sample_weight_and_rows():
    m = Mean()
    m.update_state([[1.0, 3.0], [5.0, 7.0]], sample_weight=[3.0, 1.0])
    # Rows reduce to their means (2, 6); weighted: (3*2 + 1*6) / 4.
    assert m.result() == pytest.approx(3.0)
    m.update_state([[1.0], [1.0]], sample_weight=[[0.0], [0.0]])
    assert m.result() == pytest.approx(3.0)
    m2 = Mean()
    m2.update_state(np.arange(6.0).reshape(2, 3))
    assert m2.result() == pytest.approx(2.5)
    m3 = Mean()
    m3.update_state([[1.0, 2.0], [3.0, 4.0]], sample_weight=[[1.0, 0.0], [1.0, 1.0]])
    # Per-element weights: rows give mean(v*w) = 0.5, 3.5 and mean(w) = 0.5, 1.
    assert m3.result() == pytest.approx((0.5 + 3.5) / 1.5)


# -- accuracies -----------------------------------------------------------------------------


def test_categorical_and_sparse_accuracy_agree_with_numpy_over_batches():
    cat, sparse = CategoricalAccuracy(), SparseCategoricalAccuracy()
    correct = total = 0
    for labels, probs in batches(0):
        onehot = np.eye(4)[labels]
        cat.update_state(onehot, probs)
        sparse.update_state(labels[:, None], probs)  # (N, 1) labels are accepted
        correct += int(np.sum(np.argmax(probs, -1) == labels))
        total += len(labels)
    assert cat.result() == pytest.approx(correct / total)
    assert sparse.result() == pytest.approx(correct / total)
    assert cat.name == "categorical_accuracy" and sparse.name == "sparse_categorical_accuracy"


def test_sparse_accuracy_with_float_labels_and_sample_weight():
    m = SparseCategoricalAccuracy()
    m.update_state(
        np.array([0.0, 1.0, 2.0]),
        np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0, 0, 1]]),
        sample_weight=[1.0, 2.0, 1.0],
    )
    assert m.result() == pytest.approx(0.5)


def test_sparse_accuracy_on_dense_predictions():
    # Segmentation-style (N, H, W, C) predictions with (N, H, W) labels.
    rng = np.random.default_rng(1)
    probs = rng.random((2, 3, 3, 5))
    labels = rng.integers(0, 5, (2, 3, 3))
    m = SparseCategoricalAccuracy()
    m.update_state(labels, probs)
    assert m.result() == pytest.approx(np.mean(np.argmax(probs, -1) == labels))


def test_binary_accuracy_threshold_and_shapes():
    y_true = np.array([1, 0, 1, 0])
    y_pred = np.array([[0.6], [0.6], [0.9], [0.1]])
    m = BinaryAccuracy()
    m.update_state(y_true, y_pred)
    assert m.result() == pytest.approx(0.75)
    m = BinaryAccuracy(threshold=0.95)
    m.update_state(y_true, y_pred)
    assert m.result() == pytest.approx(0.5)
    m = BinaryAccuracy()
    m.update_state(np.array([[1, 0], [0, 0]]), np.array([[0.7, 0.2], [0.9, 0.4]]))
    assert m.result() == pytest.approx(0.75)
    assert BinaryAccuracy().name == "binary_accuracy"


def test_accuracy_is_exact_equality():
    m = Accuracy()
    m.update_state([[1], [2], [3], [4]], [0, 2, 3, 4])
    assert m.result() == pytest.approx(0.75)
    assert m.name == "accuracy"


def test_mse_and_mae():
    rng = np.random.default_rng(2)
    mse, mae = MeanSquaredError(), MeanAbsoluteError()
    all_t, all_p = [], []
    for n in (3, 4):
        t, p = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
        mse.update_state(t, p)
        mae.update_state(t, p)
        all_t.append(t)
        all_p.append(p)
    t, p = np.concatenate(all_t), np.concatenate(all_p)
    assert mse.result() == pytest.approx(np.mean((t - p) ** 2))
    assert mae.result() == pytest.approx(np.mean(np.abs(t - p)))
    w = MeanSquaredError()
    w.update_state([[0.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], sample_weight=[1.0, 3.0])
    assert w.result() == pytest.approx(0.25)
    one_d = MeanAbsoluteError()
    one_d.update_state([1.0, 2.0], [[2.0], [4.0]])
    assert one_d.result() == pytest.approx(1.5)


def test_mse_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    t, p = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    m = MeanSquaredError()
    m.update_state(t, p)
    ref = torch.nn.functional.mse_loss(torch.tensor(p), torch.tensor(t)).item()
    assert m.result() == pytest.approx(ref, rel=1e-12)


def test_call_updates_and_returns_the_result():
    m = CategoricalAccuracy()
    assert m([[0, 1]], [[0.2, 0.8]]) == 1.0
    assert m([[0, 1]], [[0.9, 0.1]]) == 0.5
    assert isinstance(m.result(), float)


def test_mean_metric_wrapper_and_config():
    def within_one(y_true, y_pred):
        return (np.abs(np.asarray(y_true) - np.asarray(y_pred)) <= 1).astype(float)

    m = MeanMetricWrapper(within_one)
    assert m.name == "within_one"
    m.update_state([1, 2, 3], [1, 5, 4])
    assert m.result() == pytest.approx(2 / 3)
    b = BinaryAccuracy(name="ba", threshold=0.3)
    assert b.get_config() == {"name": "ba", "threshold": 0.3}
    assert BinaryAccuracy.from_config(b.get_config()).threshold == 0.3
    s = metrics.serialize(b)
    assert metrics.get(s).get_config() == b.get_config()
    assert "BinaryAccuracy" in repr(b)


# -- get ------------------------------------------------------------------------------------


class SparseCategoricalCrossentropy:
    """A stand-in loss object: `get` looks at the class name only."""


def binary_crossentropy(y_true, y_pred):
    return 0.0


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        ("sparse_categorical_crossentropy", SparseCategoricalAccuracy),
        ("categorical_crossentropy", CategoricalAccuracy),
        ("binary_crossentropy", BinaryAccuracy),
        ("BinaryCrossentropy", BinaryAccuracy),
        ("binary_focal_crossentropy", BinaryAccuracy),
        (SparseCategoricalCrossentropy(), SparseCategoricalAccuracy),
        (SparseCategoricalCrossentropy, SparseCategoricalAccuracy),
        (binary_crossentropy, BinaryAccuracy),
    ],
)
@pytest.mark.parametrize("name", ["accuracy", "acc", "Accuracy"])
def test_get_accuracy_by_loss(loss, expected, name):
    m = metrics.get(name, loss=loss, y_true=np.zeros((2, 3)), y_pred=np.zeros((2, 3)))
    assert type(m) is expected
    assert m.name == name


@pytest.mark.parametrize(
    ("true_shape", "pred_shape", "expected"),
    [
        ((8,), (8, 1), BinaryAccuracy),
        ((8, 1), (8, 1), BinaryAccuracy),
        ((8,), (8,), BinaryAccuracy),
        ((8,), (8, 10), SparseCategoricalAccuracy),
        ((8, 1), (8, 10), SparseCategoricalAccuracy),
        ((8, 10), (8, 10), CategoricalAccuracy),
        ((2, 4, 4), (2, 4, 4, 3), SparseCategoricalAccuracy),
    ],
)
def test_get_accuracy_by_shapes(true_shape, pred_shape, expected):
    y_true, y_pred = np.zeros(true_shape), np.zeros(pred_shape)
    m = metrics.get("accuracy", loss="mse", y_true=y_true, y_pred=y_pred)
    assert type(m) is expected
    assert type(metrics.get("acc", y_true=true_shape, y_pred=pred_shape)) is expected


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("mse", MeanSquaredError),
        ("mean_squared_error", MeanSquaredError),
        ("MeanSquaredError", MeanSquaredError),
        ("mae", MeanAbsoluteError),
        ("mean_absolute_error", MeanAbsoluteError),
        ("binary_accuracy", BinaryAccuracy),
        ("categorical_accuracy", CategoricalAccuracy),
        ("sparse_categorical_accuracy", SparseCategoricalAccuracy),
        ("mean", Mean),
    ],
)
def test_get_by_name_keeps_the_written_name(name, cls):
    m = metrics.get(name)
    assert type(m) is cls
    assert m.name == name


def test_get_passes_metrics_through_and_wraps_functions():
    m = Mean(name="x")
    assert metrics.get(m) is m

    def my_metric(y_true, y_pred):
        return np.asarray(y_pred) * 0

    wrapped = metrics.get(my_metric)
    assert isinstance(wrapped, MeanMetricWrapper) and wrapped.name == "my_metric"


# -- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: CategoricalAccuracy().update_state(np.zeros((2, 3)), np.zeros((2, 4))),
            ValueError,
            r"categorical_accuracy\(\): y_true \(one-hot\) and y_pred must have the same shape",
        ),
        (
            lambda: SparseCategoricalAccuracy().update_state(np.zeros(3), np.zeros((2, 4))),
            ValueError,
            r"sparse_categorical_accuracy\(\): y_true must have shape \(2,\) or \(2, 1\)",
        ),
        (
            lambda: SparseCategoricalAccuracy().update_state(np.zeros(()), np.zeros(())),
            ValueError,
            r"y_pred must have shape \(..., classes\)",
        ),
        (
            lambda: MeanSquaredError().update_state(np.zeros((2, 3)), np.zeros((3, 2))),
            ValueError,
            r"mean_squared_error\(\): y_true and y_pred must have the same shape",
        ),
        (
            lambda: BinaryAccuracy().update_state(np.zeros(4), np.zeros(5)),
            ValueError,
            r"binary_accuracy\(\): y_true and y_pred must have the same shape",
        ),
        (
            lambda: Accuracy().update_state(["a"], ["b"]),
            TypeError,
            r"accuracy\(\): y_true must be a numeric array, got dtype <U1",
        ),
        (
            lambda: Mean().update_state([1.0, 2.0], sample_weight=[1.0, 2.0, 3.0]),
            ValueError,
            r"Mean.update_state\(\): sample_weight of shape \(3,\) does not broadcast",
        ),
        (
            lambda: Mean().update_state([1.0], sample_weight=["w"]),
            TypeError,
            "sample_weight must be a numeric array",
        ),
        (lambda: BinaryAccuracy(threshold=2.0), ValueError, r"threshold must be in \[0, 1\]"),
        (lambda: BinaryAccuracy(threshold="0.5"), TypeError, "threshold must be a real number"),
        (lambda: Mean(name=3), TypeError, r"Mean\(\): name must be a str"),
        (lambda: MeanMetricWrapper(3), TypeError, "fn must be callable"),
        (lambda: Metric().result(), NotImplementedError, "is not implemented"),
        (lambda: metrics.get("f1"), ValueError, r"metrics.get\(\): unknown metric 'f1'"),
        (lambda: metrics.get(3), TypeError, "identifier must be a str, a Metric"),
        (
            lambda: metrics.get("accuracy", loss="mse"),
            ValueError,
            "cannot tell which accuracy 'accuracy' means",
        ),
        (lambda: metrics.get({"class_name": "Evil"}), ValueError, "unknown metric class 'Evil'"),
        (
            lambda: metrics.get({"class_name": "Mean", "config": 1}),
            TypeError,
            r"config\['config'\] must be a dict",
        ),
        (
            lambda: metrics.serialize(MeanMetricWrapper(len)),
            TypeError,
            r"metrics.serialize\(\): MeanMetricWrapper is not registered",
        ),
    ],
)
def test_rejections(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    ("threshold", "exc"), [("0.5", TypeError), (float("nan"), ValueError), (None, TypeError)]
)
def test_binary_accuracy_rejects_a_threshold_that_is_not_a_number(threshold, exc):
    # NaN compared false everywhere: every prediction counted negative, silently.
    with pytest.raises(exc, match=r"^binary_accuracy\(\): threshold must be"):
        metrics.binary_accuracy([1.0, 0.0], [0.7, 0.2], threshold=threshold)
