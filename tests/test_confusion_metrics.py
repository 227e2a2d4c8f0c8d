"""Precision, Recall, AUC, F1Score, MeanIoU, top-k accuracy and confusion_matrix against
scikit-learn (skipped without it) and the Keras formulas."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnkit
from cnnkit import metrics

sk = pytest.importorskip("sklearn.metrics")


def binary_data(seed, n=300, grid=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    if grid:
        # Scores on a grid that puts no two distinct values between the same pair of AUC
        # thresholds (i / 200): then Keras's approximation is the exact area.
        scores = (np.floor(scores * 99.999) + 0.5) / 100
    return y, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.71])
def test_precision_recall_match_sklearn(seed, threshold):
    y, s = binary_data(seed)
    w = np.random.default_rng(seed + 5).uniform(0.1, 2.0, len(y))
    pred = (s > threshold).astype(int)
    for cls, ref in ((metrics.Precision, sk.precision_score), (metrics.Recall, sk.recall_score)):
        m = cls(thresholds=threshold)
        for start in range(0, len(y), 64):  # several batches
            sl = slice(start, start + 64)
            m.update_state(y[sl], s[sl, None], sample_weight=w[sl])
        assert m.result() == pytest.approx(
            ref(y, pred, sample_weight=w, zero_division=0), abs=1e-12
        )


def test_precision_recall_class_id_top_k_and_thresholds_list():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(50, 4))
    t = np.eye(4)[rng.integers(0, 4, 50)]
    m = metrics.Precision(class_id=2)
    m.update_state(t, p)
    assert m.result() == pytest.approx(sk.precision_score(t[:, 2], p[:, 2] > 0.5))
    # top_k=1: only each row's arg-max can be positive.
    r = metrics.Recall(top_k=1, thresholds=0.0)
    r.update_state(t, p)
    assert r.result() == pytest.approx(np.mean(np.argmax(p, 1) == np.argmax(t, 1)))
    multi = metrics.Precision(thresholds=[0.2, 0.8])
    multi.update_state(t, p)
    np.testing.assert_allclose(
        multi.result(), [sk.precision_score(t.ravel(), p.ravel() > v) for v in (0.2, 0.8)]
    )
    assert metrics.Precision().result() == 0.0  # nothing seen: divide_no_nan


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_roc_equals_sklearn_on_threshold_separated_scores(seed):
    y, s = binary_data(seed, grid=True)
    m = metrics.AUC(num_thresholds=201)
    m.update_state(y[:100], s[:100])
    m.update_state(y[100:], s[100:])
    assert m.result() == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    # Default 200 thresholds on arbitrary scores: Keras's approximation, close to exact.
    y2, s2 = binary_data(seed)
    m2 = metrics.AUC()
    m2.update_state(y2, s2)
    assert m2.result() == pytest.approx(sk.roc_auc_score(y2, s2), abs=5e-3)


def test_auc_weights_logits_and_summation_methods():
    y, s = binary_data(3, grid=True)
    w = np.random.default_rng(9).uniform(0.1, 3, len(y))
    m = metrics.AUC(num_thresholds=201)
    m.update_state(y, s, sample_weight=w)
    assert m.result() == pytest.approx(sk.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    logits = np.log(s / (1 - s))
    m2 = metrics.AUC(num_thresholds=201, from_logits=True)
    m2.update_state(y, logits)
    assert m2.result() == pytest.approx(sk.roc_auc_score(y, s), abs=1e-9)
    lo, hi = metrics.AUC(summation_method="minoring"), metrics.AUC(summation_method="majoring")
    mid = metrics.AUC()
    for a in (lo, hi, mid):
        a.update_state(y, s)
    assert lo.result() <= mid.result() <= hi.result()


def numeric_interpolated_pr(tp, fp, fn, steps=20000):
    """The Davis-Goadrich curve integrated numerically: between adjacent thresholds tp and
    fp move linearly together; precision tp / (tp + fp) against recall tp / (tp + fn)."""
    total = 0.0
    positives = tp[0] + fn[0]
    for i in range(len(tp) - 1):
        if tp[i] == tp[i + 1]:
            continue
        t = np.linspace(1e-12, 1, steps + 1)  # 0/0 at the top threshold: its limit
        tps = tp[i + 1] + t * (tp[i] - tp[i + 1])
        fps = fp[i + 1] + t * (fp[i] - fp[i + 1])
        prec = tps / (tps + fps)
        total += np.trapezoid(prec, tps / positives)
    return total


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_pr_interpolation_matches_the_integrated_curve_and_sklearn_closely(seed):
    y, s = binary_data(seed)
    m = metrics.AUC(curve="PR", num_thresholds=50)
    m.update_state(y, s)
    ref = numeric_interpolated_pr(m.true_positives, m.false_positives, m.false_negatives)
    assert m.result() == pytest.approx(ref, abs=1e-6)
    fine = metrics.AUC(curve="PR", num_thresholds=2000)
    fine.update_state(y, s)
    assert fine.result() == pytest.approx(sk.average_precision_score(y, s), abs=0.02)
    perfect = metrics.AUC(curve="PR")
    perfect.update_state([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect.result() == pytest.approx(1.0)


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_f1_score_matches_sklearn(average, threshold):
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(4), 80)
    labels = np.where(rng.uniform(size=80) < 0.6, np.argmax(p, 1), rng.integers(0, 4, 80))
    t = np.eye(4)[labels]
    m = metrics.F1Score(average=average, threshold=threshold)
    m.update_state(t[:40], p[:40])
    m.update_state(t[40:], p[40:])
    pred = np.eye(4)[np.argmax(p, 1)] if threshold is None else (p > threshold).astype(int)
    ref = sk.f1_score(t, pred, average=average, zero_division=0)
    np.testing.assert_allclose(m.result(), ref, atol=1e-12)


@pytest.mark.parametrize("ignore_class", [None, 0])
def test_mean_iou_matches_sklearn_jaccard(ignore_class):
    rng = np.random.default_rng(5)
    t = rng.integers(0, 4, (6, 8, 8))
    p = np.where(rng.uniform(size=t.shape) < 0.7, t, rng.integers(0, 4, t.shape))
    m = metrics.MeanIoU(num_classes=5, ignore_class=ignore_class)  # class 4 never appears
    m.update_state(t[:3], p[:3])
    m.update_state(t[3:], p[3:])
    keep = t.ravel() != ignore_class if ignore_class is not None else slice(None)
    tt, pp = t.ravel()[keep], p.ravel()[keep]
    present = np.union1d(tt, pp)
    ref = sk.jaccard_score(tt, pp, labels=present, average="macro")
    assert m.result() == pytest.approx(ref, abs=1e-12)
    dense = metrics.MeanIoU(num_classes=5, sparse_y_pred=False, ignore_class=ignore_class)
    dense.update_state(t, np.eye(5)[p])
    assert dense.result() == pytest.approx(m.result())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_accuracy_matches_sklearn(k):
    rng = np.random.default_rng(6)
    p = rng.uniform(size=(60, 5))  # continuous: no ties
    y = rng.integers(0, 5, 60)
    ref = sk.top_k_accuracy_score(y, p, k=k, labels=np.arange(5))
    sparse = metrics.SparseTopKCategoricalAccuracy(k=k)
    sparse.update_state(y, p)
    dense = metrics.TopKCategoricalAccuracy(k=k)
    dense.update_state(np.eye(5)[y], p)
    assert sparse.result() == pytest.approx(ref) and dense.result() == pytest.approx(ref)
    # Ties count as found, as Keras's in_top_k.
    assert metrics.sparse_top_k_categorical_accuracy([2], [[0.5, 0.5, 0.5]], k=1)[0] == 1.0


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(7)
    t, p = rng.integers(0, 4, 100), rng.integers(0, 4, 100)
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p), sk.confusion_matrix(t, p))
    w = rng.uniform(size=100)
    np.testing.assert_allclose(
        metrics.confusion_matrix(t, p, num_classes=6, weights=w),
        sk.confusion_matrix(t, p, labels=np.arange(6), sample_weight=w),
    )
    with pytest.raises(ValueError, match=r"confusion_matrix\(\): labels and predictions must be <"):
        metrics.confusion_matrix([5], [0], num_classes=3)
    with pytest.raises(ValueError, match=r"confusion_matrix\(\): labels must hold class indices"):
        metrics.confusion_matrix([0.5], [0])


@pytest.mark.parametrize(
    "metric",
    [
        metrics.Precision(thresholds=0.3, class_id=1),
        metrics.Recall(top_k=2),
        metrics.AUC(num_thresholds=50, curve="PR", from_logits=True),
        metrics.F1Score(average="macro", threshold=0.4),
        metrics.MeanIoU(num_classes=3, ignore_class=0),
        metrics.TopKCategoricalAccuracy(k=2),
        metrics.SparseTopKCategoricalAccuracy(k=3),
    ],
    ids=lambda m: type(m).__name__,
)
def test_config_round_trip(metric):
    d = json.loads(json.dumps(metrics.serialize(metric)))
    back = metrics.get(d)
    assert type(back) is type(metric) and back.get_config() == metric.get_config()


def test_compile_with_the_new_metrics_by_object_and_name():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((32, 3))
    y = (x[:, 0] > 0).astype(np.float64)
    model = cnnkit.Sequential(
        [cnnkit.layers.Input((3,)), cnnkit.layers.Dense(1, activation="sigmoid")], seed=0
    )
    model.compile("adam", "binary_crossentropy", metrics=["auc", "precision", metrics.Recall()])
    logs = model.evaluate(x, y, return_dict=True)
    p = model.predict(x)[:, 0]
    assert logs["auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-2)
    assert logs["precision"] == pytest.approx(sk.precision_score(y, p > 0.5, zero_division=0))
    assert logs["recall"] == pytest.approx(sk.recall_score(y, p > 0.5))
    multi = cnnkit.Sequential(
        [cnnkit.layers.Input((3,)), cnnkit.layers.Dense(2, activation="softmax")], seed=0
    )
    multi.compile("adam", "categorical_crossentropy", metrics=[metrics.F1Score()])
    with pytest.raises(TypeError, match="metric 'f1_score' returns 2 values"):
        multi.evaluate(x, np.eye(2)[y.astype(int)])


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: metrics.Precision(thresholds=1.5), ValueError, r"Precision\(\): thresholds must"),
        (lambda: metrics.Recall(top_k=0), ValueError, r"Recall\(\): top_k must be >= 1"),
        (lambda: metrics.AUC(curve="XY"), ValueError, r"AUC\(\): curve must be 'ROC' or 'PR'"),
        (lambda: metrics.AUC(num_thresholds=1), ValueError, "num_thresholds must be >= 2"),
        (lambda: metrics.AUC(summation_method="x"), ValueError, "summation_method must be"),
        (lambda: metrics.F1Score(average="mean"), ValueError, r"F1Score\(\): average must be"),
        (lambda: metrics.MeanIoU(num_classes=1), ValueError, r"MeanIoU\(\): num_classes must"),
        (lambda: metrics.TopKCategoricalAccuracy(k=0), ValueError, "k must be >= 1"),
    ],
)
def test_rejections(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("fn", ["top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"])
@pytest.mark.parametrize(
    ("k", "exc", "text"),
    [
        (0, ValueError, "be >= 1, got 0"),
        (-1, ValueError, "be >= 1, got -1"),
        (1.5, TypeError, "be an int, got float"),
    ],
)
def test_top_k_functions_reject_a_k_below_one(fn, k, exc, text):
    # k = 0 used to index the sorted scores from the end: every label counted as found.
    y_true = [[0.0, 1.0, 0.0]] if fn.startswith("top") else [1]
    with pytest.raises(exc, match=rf"^{fn}\(\): k must {text}"):
        getattr(metrics, fn)(y_true, [[0.5, 0.1, 0.4]], k=k)


def test_auc_refuses_more_thresholds_than_it_can_use_at_once():
    # The constructor built the thresholds in a Python loop: 2**31 hung for minutes.
    with pytest.raises(
        ValueError, match=r"^AUC\(\): num_thresholds must be <= 16777216, got 2147483648"
    ):
        metrics.AUC(num_thresholds=2**31)
    auc = metrics.AUC(num_thresholds=5)
    assert auc.thresholds.tolist() == [-1e-7, 0.25, 0.5, 0.75, 1 + 1e-7]


@pytest.mark.parametrize("n", [2**31, 2**63 - 1, 2**64])
def test_confusion_matrix_num_classes_beyond_int32_is_a_value_error(n):
    with pytest.raises(
        ValueError, match=r"^confusion_matrix\(\): num_classes must be <= 2147483647"
    ):
        metrics.confusion_matrix([0, 1], [1, 1], num_classes=n)


def test_confusion_matrix_too_large_for_memory_is_a_memory_error_naming_the_size():
    with pytest.raises(MemoryError, match=r"^confusion_matrix\(\): a 2147483647 x 2147483647"):
        metrics.confusion_matrix([0, 1], [1, 1], num_classes=2**31 - 1)
