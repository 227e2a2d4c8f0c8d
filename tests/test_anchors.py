"""k-means anchors: ``cnnkit.ops.kmeans_anchors`` against ``cnnkit.reference``.

The kernel and the reference choose the same seeds from the same generator and
sum in the same order, so anchors and statistics agree exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import strided_view

import cnnkit
from cnnkit import _core, ops
from cnnkit import reference as ref

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "fortran", "column_slice", "row_stride", "reversed_rows")


@st.composite
def shapes(draw, *, max_boxes: int = 60):
    """(wh, k): box shapes with duplicates and k up to the number of distinct shapes."""
    dtype = draw(st.sampled_from(DTYPES))
    m = draw(st.integers(1, max_boxes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "lognormal", "few"]))
    if kind == "uniform":
        wh = rng.uniform(1, 300, (m, 2))
    elif kind == "lognormal":
        wh = np.exp(rng.normal(3, 1, (m, 2)))
    else:  # a handful of whole-pixel shapes, many duplicates
        wh = rng.integers(1, 6, (m, 2)).astype(float) * 8
    wh = wh.astype(dtype)
    distinct = len(np.unique(wh, axis=0))
    k = draw(st.integers(1, min(distinct, 12)))
    return draw(st.sampled_from(LAYOUTS).map(lambda lay: strided_view(wh, lay))), k


def assert_same(got, want):
    assert got.anchors.dtype == want.anchors.dtype
    assert np.array_equal(got.anchors, want.anchors)
    assert got.mean_iou == want.mean_iou and got.recall == want.recall


@given(
    shapes(),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 1, 2, 5, 100]),
    st.sampled_from([0.0, 0.5, 0.75, 1.0]),
)
def test_matches_reference(problem, seed, iterations, iou_threshold):
    wh, k = problem
    kwargs = {"iterations": iterations, "seed": seed, "iou_threshold": iou_threshold}
    got = ops.kmeans_anchors(wh, k, **kwargs)
    assert_same(got, ref.kmeans_anchors(wh, k, **kwargs))
    assert got.anchors.shape == (k, 2) and got.anchors.dtype == wh.dtype
    area = got.anchors[:, 0].astype(np.float64) * got.anchors[:, 1]
    assert (np.diff(area) >= 0).all()
    assert 0 < got.mean_iou <= 1 and 0 <= got.recall <= 1


@given(shapes(), st.integers(0, 2**32 - 1))
def test_statistics_describe_the_returned_anchors(problem, seed):
    wh, k = problem
    got = ops.kmeans_anchors(wh, k, seed=seed, iou_threshold=0.6)
    w = np.asarray(wh, np.float64)
    a = got.anchors.astype(np.float64)
    inter = np.minimum(w[:, None, 0], a[:, 0]) * np.minimum(w[:, None, 1], a[:, 1])
    best = (inter / (w[:, None, 0] * w[:, None, 1] + a[:, 0] * a[:, 1] - inter)).max(axis=1)
    assert got.mean_iou == pytest.approx(best.mean(), rel=1e-12)
    assert got.recall == np.count_nonzero(best >= 0.6) / len(w)


@given(shapes(), st.integers(0, 2**32 - 1))
def test_as_many_anchors_as_shapes_match_every_box(problem, seed):
    wh, _ = problem
    k = len(np.unique(wh, axis=0))
    got = ops.kmeans_anchors(wh, k, seed=seed)
    # Seeding takes every distinct shape once; then nothing moves.
    assert got.mean_iou == 1.0 and got.recall == 1.0
    assert {tuple(r) for r in got.anchors.tolist()} == {tuple(r) for r in np.asarray(wh).tolist()}


def test_clusters_well_separated_shapes():
    rng = np.random.default_rng(0)
    centres = np.array([[10, 12], [40, 20], [20, 60], [100, 100]], float)
    wh = np.concatenate([c * rng.uniform(0.95, 1.05, (50, 2)) for c in centres])
    got = ops.kmeans_anchors(wh, 4, seed=3)
    np.testing.assert_allclose(got.anchors, centres, rtol=0.02)
    assert got.recall == 1.0 and got.mean_iou > 0.9


def test_seed_int_and_generator():
    wh = np.random.default_rng(1).uniform(1, 100, (200, 2))
    a = ops.kmeans_anchors(wh, 5, seed=7)
    b = ops.kmeans_anchors(wh, 5, seed=np.random.default_rng(7))
    assert_same(a, b)
    gen = np.random.default_rng(7)
    first, second = ops.kmeans_anchors(wh, 5, seed=gen), ops.kmeans_anchors(wh, 5, seed=gen)
    assert_same(first, a)
    assert not np.array_equal(first.anchors, second.anchors)  # the generator moved on


def test_result_is_a_named_tuple():
    anchors, mean_iou, recall = ops.kmeans_anchors([[1.0, 2.0], [3.0, 4.0]], 2)
    assert isinstance(ops.kmeans_anchors([[1.0, 2.0]], 1), ops.KMeansAnchors)
    np.testing.assert_array_equal(anchors, [[1, 2], [3, 4]])
    assert mean_iou == 1.0 and recall == 1.0


def test_stops_when_no_assignment_changes():
    wh = np.random.default_rng(2).uniform(1, 100, (500, 2))
    steps = _core.kmeans_anchors(wh, 6, 1000, 0.5, np.random.default_rng(0))[3]
    assert 1 < steps < 1000
    # The last step only confirmed the assignments: one step fewer gives the same anchors.
    assert_same(ops.kmeans_anchors(wh, 6, iterations=steps - 1), ops.kmeans_anchors(wh, 6))
    fewer = ops.kmeans_anchors(wh, 6, iterations=steps - 2)
    assert not np.array_equal(fewer.anchors, ops.kmeans_anchors(wh, 6).anchors)


@pytest.mark.parametrize("dtype", DTYPES)
def test_does_not_depend_on_thread_count(restore_threads, dtype):
    # Enough boxes for three threads (the kernel gives each at least 2^18 IoUs per step).
    wh = np.exp(np.random.default_rng(4).normal(3, 1, (100_000, 2))).astype(dtype)
    results = []
    for n in (1, 2, 3):
        cnnkit.set_num_threads(n)
        results.append(ops.kmeans_anchors(wh, 9, iterations=20))
    for r in results[1:]:
        assert_same(r, results[0])


def test_a_centre_that_loses_all_its_boxes_keeps_its_place():
    wh = np.array(
        [[24, 170], [33, 54], [28, 19], [7, 140], [151, 4], [47, 11], [13, 38], [11, 6], [65, 4]],
        dtype=np.float64,
    )
    one = ops.kmeans_anchors(wh, 2, iterations=1, seed=19610)
    done = ops.kmeans_anchors(wh, 2, seed=19610)
    assert_same(done, ref.kmeans_anchors(wh, 2, seed=19610))
    # The second step gives every box to one centre, which moves to their mean;
    # the other one stays where the first step put it.
    np.testing.assert_allclose(done.anchors[0], wh.mean(axis=0), rtol=1e-15)
    assert np.array_equal(done.anchors[1], one.anchors[1])
