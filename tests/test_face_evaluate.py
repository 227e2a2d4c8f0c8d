"""Face verification metrics against scikit-learn and by hand."""

import numpy as np
import pytest

from cnnkit.face import evaluate

metrics = pytest.importorskip("sklearn.metrics")


def _scores(seed, n=400, ties=False):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    d = rng.normal(1.0, 0.5, n) - 0.6 * same
    if ties:
        d = np.round(d, 1)
    return d, same


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_auc_match_sklearn(seed, ties):
    d, same = _scores(seed, ties=ties)
    far, tar, thr = evaluate.roc_curve(d, same)
    ref_far, ref_tar, ref_thr = metrics.roc_curve(same, -d, drop_intermediate=False)
    np.testing.assert_allclose(far, ref_far)
    np.testing.assert_allclose(tar, ref_tar)
    np.testing.assert_allclose(thr[1:], -ref_thr[1:])
    assert thr[0] == -np.inf
    assert evaluate.auc(far, tar) == pytest.approx(metrics.roc_auc_score(same, -d), abs=1e-12)


def test_choose_threshold_is_the_best_by_brute_force():
    d, same = _scores(3, n=200, ties=True)
    tau, acc = evaluate.choose_threshold(d, same)
    candidates = np.r_[d, d.min() - 1]
    best = max(np.mean((d <= t) == same) for t in candidates)
    assert acc == pytest.approx(best)
    assert np.mean((d <= tau) == same) == pytest.approx(acc)


def test_choose_threshold_separable_and_edges():
    tau, acc = evaluate.choose_threshold([0.1, 0.2, 0.9, 1.0], [True, True, False, False])
    assert (tau, acc) == (pytest.approx(0.55), 1.0)
    # Every same pair farther than every different one: accept nothing (tau below all).
    tau, acc = evaluate.choose_threshold([1.0, 2.0, 3.0], [False, True, True])
    assert acc == pytest.approx(2 / 3) and tau >= 2.0
    tau, acc = evaluate.choose_threshold([5.0, 6.0], [False, True])
    assert acc == 0.5 and tau < 5.0


@pytest.mark.parametrize("far", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_choose_threshold_at_far_is_the_largest_within_the_rate(far):
    d, same = _scores(7, n=500, ties=True)
    tau, acc = evaluate.choose_threshold(d, same, far=far)
    diff = d[~same]
    assert np.mean(diff <= tau) <= far
    # No larger candidate keeps the rate: the next distinct distance lets too many in.
    above = np.unique(d[d > tau])
    if above.size:
        assert np.mean(diff <= above[0]) > far
    assert np.mean((d <= tau) == same) == pytest.approx(acc)
    # The same tau as FaceNet's VAL@FAR, up to where between two distances it lies.
    vf = evaluate.val_far(d, same, far)
    assert np.mean(d[same] <= tau) == pytest.approx(vf.val)


def test_choose_threshold_at_far_edges():
    d, s = [0.1, 0.2, 0.3, 0.4], [True, False, True, False]
    assert evaluate.choose_threshold(d, s, far=0.0) == (pytest.approx(0.15), 0.75)
    assert evaluate.choose_threshold(d, s, far=0.5) == (pytest.approx(0.35), 0.75)
    assert evaluate.choose_threshold(d, s, far=1.0) == (0.4, 0.5)
    tau, acc = evaluate.choose_threshold([0.1, 0.2], [False, True], far=0.0)
    assert tau < 0.1 and acc == 0.5
    with pytest.raises(ValueError, match=r"choose_threshold\(\): far must be in \[0, 1\]"):
        evaluate.choose_threshold(d, s, far=-0.1)


def test_all_pairs():
    left, right, same = evaluate.all_pairs(np.array([3, 3, 5, 3]))
    assert list(zip(left.tolist(), right.tolist())) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 3),
    ]
    assert same.tolist() == [True, False, True, False, True, False]
    assert evaluate.all_pairs(np.array([1]))[0].size == 0
    with pytest.raises(ValueError, match=r"all_pairs\(\): labels must be a 1-D int array"):
        evaluate.all_pairs(np.array([0.5, 1.5]))


def test_lfw_protocol_by_hand():
    d, same = _scores(4, n=600)
    result = evaluate.lfw_protocol(d, same, folds=10)
    assert result.accuracies.shape == (10,) and result.thresholds.shape == (10,)
    for k in range(10):
        test = np.zeros(600, bool)
        test[k * 60 : (k + 1) * 60] = True
        tau, _ = evaluate.choose_threshold(d[~test], same[~test])
        assert result.thresholds[k] == tau
        assert result.accuracies[k] == pytest.approx(np.mean((d[test] <= tau) == same[test]))
    assert result.mean == pytest.approx(result.accuracies.mean())
    assert result.std == pytest.approx(result.accuracies.std())
    ids = np.repeat(np.arange(10), 60)
    assert evaluate.lfw_protocol(d, same, ids).mean == pytest.approx(result.mean)
    perfect = evaluate.lfw_protocol(
        np.r_[np.zeros(50), np.ones(50)], np.r_[[True] * 50, [False] * 50], np.arange(100) % 5
    )
    assert perfect.mean == 1.0 and perfect.std == 0.0


def test_val_far():
    d = np.r_[np.linspace(0.0, 1.0, 100), np.linspace(0.5, 3.0, 1000)]
    same = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    result = evaluate.val_far(d, same, far=1e-3)
    # One different pair (distance 0.5) may be accepted: tau = 0.5, half the same pairs.
    assert result.threshold == pytest.approx(0.5)
    assert result.far == pytest.approx(1e-3)
    assert result.val == pytest.approx(np.mean(d[:100] <= 0.5))
    zero = evaluate.val_far(d, same, far=0.0)
    assert zero.far == 0.0 and zero.threshold < 0.5
    nothing = evaluate.val_far([0.0, 1.0], [False, True], far=0.0)
    assert nothing.val == 0.0 and nothing.far == 0.0


def test_summary_and_distances():
    d, same = _scores(5, n=300)
    s = evaluate.verification_summary(d, same)
    assert set(s) >= {"accuracy", "accuracy_std", "val", "far", "auc", "threshold"}
    assert 0.5 < s["accuracy"] <= 1 and 0.5 < s["auc"] <= 1
    a = np.array([[0.0, 3.0], [1.0, 0.0]])
    b = np.array([[4.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(evaluate.pair_distances(a, b), [5.0, 1.0])
    np.testing.assert_allclose(evaluate.pair_distances(a, b, "squared"), [25.0, 1.0])
    np.testing.assert_allclose(evaluate.pair_distances(a, b, "cosine"), [1.0, 0.0])


def test_lfw_style_pairs():
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(40), 3)) + 7
    left, right, same, fold = evaluate.lfw_style_pairs(labels, folds=4, pairs_per_fold=20, seed=0)
    assert len(left) == 80 and same.sum() == 40
    np.testing.assert_array_equal(labels[left] == labels[right], same)
    assert np.all(left[same] != right[same])
    people = [set(labels[left[fold == k]]) | set(labels[right[fold == k]]) for k in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not people[i] & people[j]
    again = evaluate.lfw_style_pairs(labels, folds=4, pairs_per_fold=20, seed=0)
    np.testing.assert_array_equal(again[0], left)
    with pytest.raises(
        ValueError, match=r"lfw_style_pairs\(\): labels must hold at least 2 people per fold"
    ):
        evaluate.lfw_style_pairs(np.arange(5), folds=4)
    with pytest.raises(ValueError, match=r"nobody with two images"):
        evaluate.lfw_style_pairs(np.arange(8), folds=2)


@pytest.mark.parametrize(
    ("d", "same", "error", "match"),
    [
        ([0.1, 0.2], [True], ValueError, "distances and same must have the same length"),
        ([0.1, 0.2], [1, 0], TypeError, "same must be an array of bools"),
        ([0.1, np.nan], [True, False], ValueError, "distances must be finite, got nan at index 1"),
        ([0.1, np.inf], [True, False], ValueError, "distances must be finite"),
        (
            [0.1, 0.2],
            [True, True],
            ValueError,
            "needs both same and different pairs, got only same",
        ),
        ([0.1, 0.2], [False, False], ValueError, "needs both .* got only different"),
        ([], [], ValueError, "distances must not be empty"),
        ([[0.1]], [[True]], ValueError, "distances must be 1-D"),
        (["a", "b"], [True, False], TypeError, "distances must be an array of real numbers"),
    ],
)
@pytest.mark.parametrize("name", ["roc_curve", "choose_threshold", "lfw_protocol", "val_far"])
def test_bad_input(name, d, same, error, match):
    func = getattr(evaluate, name)
    with pytest.raises(error, match=rf"{name}\(\): {match}"):
        func(d, same)


def test_bad_folds_and_far():
    d, same = _scores(6, n=20)
    with pytest.raises(ValueError, match=r"lfw_protocol\(\): folds must be >= 2"):
        evaluate.lfw_protocol(d, same, folds=1)
    with pytest.raises(ValueError, match=r"folds must be <= the number of pairs \(20\)"):
        evaluate.lfw_protocol(d, same, folds=21)
    with pytest.raises(ValueError, match=r"one fold id per pair"):
        evaluate.lfw_protocol(d, same, folds=np.zeros(3, int))
    with pytest.raises(ValueError, match=r"fold 0 need both same and different"):
        evaluate.lfw_protocol(
            [0.1, 0.2, 0.3, 0.4], [True, False, True, True], folds=np.array([0, 0, 1, 1])
        )
    with pytest.raises(ValueError, match=r"val_far\(\): far must be in \[0, 1\]"):
        evaluate.val_far(d, same, far=2.0)
    with pytest.raises(ValueError, match=r"auc\(\): far must be monotonic"):
        evaluate.auc([0.0, 1.0, 0.5], [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"pair_distances\(\): a and b must have one shape"):
        evaluate.pair_distances(np.zeros((2, 3)), np.zeros((3, 3)))


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    d, same = _scores(7, n=300)
    evaluate.plot_roc(d, same, tmp_path / "roc.png")
    evaluate.plot_distance_histograms(d, same, tmp_path / "hist.png", threshold=0.5)
    for name in ("roc.png", "hist.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
