"""cnnkit.face's triplet losses: finite-difference gradients, a loop-by-loop transcription of
each mining rule, torch, and the rejection paths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from gradcheck import check_gradients

from cnnkit import layers
from cnnkit.autograd import Tensor
from cnnkit.face import MINING_MODES, TripletLoss, pairwise_squared_distances, triplet_loss


def _batch(seed: int = 0, p: int = 4, k: int = 3, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.permutation(10)[:p], k)
    return labels, rng.standard_normal((p * k, d)) * 0.5


def _looped(labels: np.ndarray, e: np.ndarray, margin: float, mining: str) -> float:
    return _looped_on(((e[:, None] - e[None]) ** 2).sum(-1), labels, margin, mining)


def _looped_on(dist: np.ndarray, labels: np.ndarray, margin: float, mining: str) -> float:
    """Each rule written as the papers state it, one anchor (or pair) at a time, on the
    distance matrix ``dist``."""
    n = len(labels)

    def d(i: int, j: int) -> float:
        return float(dist[i, j])

    pos = [[j for j in range(n) if j != i and labels[j] == labels[i]] for i in range(n)]
    neg = [[j for j in range(n) if labels[j] != labels[i]] for i in range(n)]
    if mining == "batch_hard":
        losses = [
            max(max(d(i, j) for j in pos[i]) - min(d(i, q) for q in neg[i]) + margin, 0.0)
            for i in range(n)
            if pos[i] and neg[i]
        ]
        return float(np.mean(losses)) if losses else 0.0
    if mining == "semi_hard":
        losses = []
        for i in range(n):
            for j in pos[i]:
                if not neg[i]:
                    continue
                farther = [d(i, q) for q in neg[i] if d(i, q) > d(i, j)]
                chosen = min(farther) if farther else max(d(i, q) for q in neg[i])
                losses.append(max(d(i, j) - chosen + margin, 0.0))
        return float(np.mean(losses)) if losses else 0.0
    if mining == "all":
        values = [
            d(i, j) - d(i, q) + margin
            for i in range(n)
            for j, q in itertools.product(pos[i], neg[i])
        ]
        active = [v for v in values if v > 0]
        return float(np.mean(active)) if active else 0.0
    raise AssertionError(mining)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
@pytest.mark.parametrize("seed", range(4))
def test_mining_matches_the_looped_rule(mining, seed):
    labels, e = _batch(seed, p=3 + seed % 2, k=2 + seed % 3)
    got = TripletLoss(0.4, mining)(labels, e).item()
    assert got == pytest.approx(_looped(labels, e, 0.4, mining), rel=1e-10, abs=1e-12)


def test_random_mining_picks_a_valid_triplet_per_anchor():
    labels, e = _batch(1, p=5, k=4)
    loss = TripletLoss(10.0, "random", seed=7)
    values = [loss(labels, e).item() for _ in range(20)]
    # With a margin larger than every distance difference each anchor's triplet is active,
    # so the mean lies between the means of the extreme choices.
    low = np.mean([10 + 0 - 4 for _ in labels])
    assert all(v > low for v in values)
    assert len(set(values)) > 1  # the generator advances
    again = TripletLoss(10.0, "random", seed=7)
    assert again(labels, e).item() == values[0]  # and is seeded


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("mining", MINING_MODES)
def test_gradients_by_finite_differences(mining, squared):
    labels, e = _batch(2, p=4, k=3)
    check_gradients(lambda t: TripletLoss(0.5, mining, squared, seed=3)(labels, t), [e])


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
def test_euclidean_distances_match_the_looped_rule(mining):
    labels, e = _batch(3, p=4, k=3)
    # The looped rule on squared distances of scaled encodings would differ: compare with
    # the rule applied to the Euclidean distance matrix directly.
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    from cnnkit.face.losses import mine_weights

    w, c = mine_weights(d, labels, 0.3, mining, np.random.default_rng(0))
    got = TripletLoss(0.3, mining, squared=False)(labels, e).item()
    assert got == pytest.approx(float((w * d).sum() + c), rel=1e-10)
    assert got == pytest.approx(_looped_on(d, labels, 0.3, mining), rel=1e-10)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_triplet_loss_on_given_triplets(reduction):
    rng = np.random.default_rng(0)
    a, p, n = (rng.standard_normal((6, 4)) * 0.5 for _ in range(3))
    per = np.maximum(((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + 0.3, 0)
    got = triplet_loss(a, p, n, margin=0.3, reduction=reduction).item()
    assert got == pytest.approx(per.sum() if reduction == "sum" else per.mean())
    check_gradients(
        lambda x, y, z: triplet_loss(x, y, z, margin=0.3, reduction=reduction), [a, p, n]
    )


def test_pairwise_distances_and_unit_normalization_gradients():
    e = np.random.default_rng(3).standard_normal((5, 3))
    d = pairwise_squared_distances(e).data
    np.testing.assert_allclose(d, ((e[:, None] - e[None]) ** 2).sum(-1), atol=1e-12)
    assert np.all(np.diag(d) == 0)
    check_gradients(lambda t: pairwise_squared_distances(t), [e])
    unit = layers.UnitNormalization(dtype="float64")
    check_gradients(lambda t: unit(t), [e])


def test_matches_torch_batch_hard_and_gradient():
    torch = pytest.importorskip("torch")
    labels, e = _batch(5, p=4, k=4, d=8)
    t = torch.tensor(e, requires_grad=True)
    d = torch.cdist(t, t) ** 2
    same = torch.tensor(labels[:, None] == labels[None, :])
    eye = torch.eye(len(labels), dtype=torch.bool)
    hardest_pos = torch.where(same & ~eye, d, torch.full_like(d, -1e9)).max(1).values
    hardest_neg = torch.where(~same, d, torch.full_like(d, 1e9)).min(1).values
    expected = torch.relu(hardest_pos - hardest_neg + 0.2).mean()
    expected.backward()
    x = Tensor(e, requires_grad=True)
    got = TripletLoss(0.2)(labels, x)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), rel=1e-9)
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-7, atol=1e-10)


def test_batch_without_triplets_gives_zero_and_a_zero_gradient():
    e = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    for mining in MINING_MODES:
        loss = TripletLoss(0.2, mining)(np.array([1, 2, 3]), e)  # no positives
        assert loss.item() == 0
        loss.backward()
        assert not np.any(e.grad)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: TripletLoss(-0.1), ValueError, "margin must be a finite number >= 0"),
        (lambda: TripletLoss(float("nan")), ValueError, "margin"),
        (lambda: TripletLoss("0.2"), TypeError, "margin must be a real number"),
        (lambda: TripletLoss(0.2, "hardest"), ValueError, "mining must be one of"),
        (
            lambda: triplet_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), margin=-1),
            ValueError,
            "triplet_loss\\(\\): margin",
        ),
        (
            lambda: triplet_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((3, 3)), margin=1),
            ValueError,
            "one shape",
        ),
        (
            lambda: triplet_loss(
                np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), margin=1, reduction="max"
            ),
            ValueError,
            "reduction",
        ),
        (lambda: TripletLoss()(np.arange(3), np.zeros((4, 2))), ValueError, "one identity label"),
        (lambda: TripletLoss()(np.array([0.5, 1, 2]), np.zeros((3, 2))), TypeError, "integer"),
        (lambda: TripletLoss()(np.arange(3), np.zeros((3, 2), int)), TypeError, "floating"),
        (
            lambda: TripletLoss()(np.arange(3), np.zeros((3, 2)), sample_weight=np.ones(3)),
            ValueError,
            "sample_weight",
        ),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_serializes_with_its_configuration():
    from cnnkit import losses

    loss = TripletLoss(0.3, "semi_hard", squared=False, seed=4)
    again = losses.deserialize(losses.serialize(loss))
    assert (again.margin, again.mining, again.squared, again.seed) == (0.3, "semi_hard", False, 4)
