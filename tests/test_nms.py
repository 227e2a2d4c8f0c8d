"""NMS kernels (nms, batched_nms, soft_nms) against cnnkit.reference, their defining
properties, large randomized inputs, and torchvision when it is installed."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import peers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    FLOAT_DTYPES,
    box_arrays,
    class_arrays,
    detections,
    iou_thresholds,
    max_outputs,
    score_thresholds,
)

from cnnkit import ops
from cnnkit import reference as ref


def assert_indices(got: np.ndarray, want) -> None:
    np.testing.assert_array_equal(got, np.asarray(want, dtype=np.int64), strict=True)


def visiting_order(scores: np.ndarray, score_threshold: float | None = None) -> np.ndarray:
    """Indices of the boxes with score >= score_threshold, by decreasing score,
    equal scores by increasing index (the order NMS visits boxes in)."""
    s = np.asarray(scores, dtype=np.float64)
    candidates = np.arange(len(s))
    if score_threshold is not None:
        candidates = candidates[s >= score_threshold]
    return np.array(sorted(candidates, key=lambda i: (-s[i], i)), dtype=np.int64)


def assert_is_greedy_nms(boxes, scores, kept, iou_threshold, score_threshold=None) -> None:
    """Checks that ``kept`` is the greedy NMS result, from its definition:

    kept boxes come in visiting order, no two of them overlap by more than the
    threshold, and every other candidate overlaps by more than the threshold a
    kept box visited before it.
    """
    order = visiting_order(scores, score_threshold)
    rank = np.full(len(scores), -1)
    rank[order] = np.arange(len(order))
    assert (rank[kept] >= 0).all(), "kept a box below the score threshold"
    assert (np.diff(rank[kept]) > 0).all(), "kept boxes are not by decreasing score, then index"
    common = np.asarray(boxes, np.result_type(boxes, scores))
    iou = ops.box_iou(common, common).astype(np.float64)  # NMS uses the same IoU, bit for bit
    among_kept = iou[np.ix_(kept, kept)][~np.eye(len(kept), dtype=bool)]
    assert (among_kept <= iou_threshold).all(), "two kept boxes overlap too much"
    is_kept = np.zeros(len(scores), dtype=bool)
    is_kept[kept] = True
    for i in order[~is_kept[order]]:
        earlier = kept[rank[kept] < rank[i]]
        assert (iou[i, earlier] > iou_threshold).any(), f"box {i} was suppressed without cause"


def nms_per_class(boxes, scores, classes, iou_threshold, score_threshold=None) -> np.ndarray:
    """batched_nms from its definition: nms within each class, merged by score then index."""
    kept = []
    for label in np.unique(classes):
        members = np.flatnonzero(classes == label)
        found = ops.nms(
            boxes[members], scores[members], iou_threshold, score_threshold=score_threshold
        )
        kept.extend(members[found])
    s = np.asarray(scores, dtype=np.float64)
    return np.array(sorted(kept, key=lambda i: (-s[i], i)), dtype=np.int64)


# --- nms --------------------------------------------------------------------------------


@given(
    det=detections(),
    iou_threshold=iou_thresholds,
    score_threshold=score_thresholds,
    max_output=max_outputs,
)
def test_nms_matches_reference(det, iou_threshold, score_threshold, max_output):
    boxes, scores = det
    kw = {"score_threshold": score_threshold, "max_output": max_output}
    got = ops.nms(boxes, scores, iou_threshold, **kw)
    assert_indices(got, ref.nms(boxes, scores, iou_threshold, **kw))


@given(det=detections(), iou_threshold=iou_thresholds, score_threshold=score_thresholds)
def test_nms_is_greedy_suppression(det, iou_threshold, score_threshold):
    boxes, scores = det
    kept = ops.nms(boxes, scores, iou_threshold, score_threshold=score_threshold)
    assert_is_greedy_nms(boxes, scores, kept, iou_threshold, score_threshold)


@given(det=detections(), iou_threshold=iou_thresholds, data=st.data())
def test_nms_with_mixed_float_dtypes_matches_reference(det, iou_threshold, data):
    boxes, scores = det
    other = np.float64 if boxes.dtype == np.float32 else np.float32
    if data.draw(st.booleans(), label="convert boxes"):
        boxes = boxes.astype(other)
    else:
        scores = scores.astype(other)
    assert_indices(ops.nms(boxes, scores, iou_threshold), ref.nms(boxes, scores, iou_threshold))


@given(det=detections(), iou_threshold=iou_thresholds, max_output=st.integers(0, 12))
def test_nms_max_output_keeps_a_prefix(det, iou_threshold, max_output):
    boxes, scores = det
    everything = ops.nms(boxes, scores, iou_threshold)
    got = ops.nms(boxes, scores, iou_threshold, max_output=max_output)
    assert_indices(got, everything[:max_output])


@given(det=detections(), iou_threshold=iou_thresholds, score_threshold=st.floats(-1, 1.5, width=32))
def test_nms_score_threshold_drops_boxes_first(det, iou_threshold, score_threshold):
    boxes, scores = det
    passing = np.flatnonzero(scores.astype(np.float64) >= score_threshold)
    expected = passing[ops.nms(boxes[passing], scores[passing], iou_threshold)]
    got = ops.nms(boxes, scores, iou_threshold, score_threshold=score_threshold)
    assert_indices(got, expected)


@given(det=detections(), iou_threshold=st.sampled_from([1.0, 1.5, 1e9, float("inf")]))
def test_nms_with_threshold_at_least_one_keeps_every_box_in_order(det, iou_threshold):
    boxes, scores = det
    assert_indices(ops.nms(boxes, scores, iou_threshold), visiting_order(scores))


@given(det=detections(), iou_threshold=iou_thresholds)
def test_nms_never_suppresses_zero_area_boxes(det, iou_threshold):
    boxes, scores = det
    empty = np.flatnonzero(ref.box_area(boxes) == 0)
    assert np.isin(empty, ops.nms(boxes, scores, iou_threshold)).all()


@given(
    boxes=box_arrays(),
    iou_threshold=iou_thresholds,
    value=st.sampled_from([0.0, 0.5, -1.0]),
)
def test_nms_breaks_score_ties_by_lower_index(boxes, iou_threshold, value):
    equal = np.full(len(boxes), value, boxes.dtype)
    by_index = -np.arange(len(boxes), dtype=boxes.dtype)
    got = ops.nms(boxes, equal, iou_threshold)
    assert_indices(got, ops.nms(boxes, by_index, iou_threshold))
    assert (np.diff(got) > 0).all()


def test_nms_known_values():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.0]]
    assert_indices(ops.nms(boxes, [0.9, 0.8, 0.7], 0.5), [0, 2])
    assert_indices(ops.nms(boxes, [0.8, 0.9, 0.7], 0.5), [1, 2])
    assert_indices(ops.nms(boxes, [0.9, 0.8, 0.7], 0.7), [0, 1, 2])  # IoU 81/119


def test_nms_threshold_zero_suppresses_any_overlap_but_not_touching():
    # 1 and 3 only touch box 0; 2 overlaps it by 0.1 x 0.1.
    boxes = np.array([[0, 0, 2, 2], [2, 0, 4, 2], [1.9, 1.9, 5, 5], [0, 2, 2, 4]])
    assert_indices(ops.nms(boxes, [0.9, 0.8, 0.7, 0.6], 0.0), [0, 1, 3])


def test_nms_threshold_compares_strictly():
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 2]], float)  # IoU exactly 0.5
    assert_indices(ops.nms(boxes, [0.9, 0.8], 0.5), [0, 1])
    assert_indices(ops.nms(boxes, [0.9, 0.8], 0.4999), [0])


def test_zero_area_boxes_are_kept_and_suppress_nothing():
    # A point, a vertical and a horizontal segment inside two overlapping boxes.
    boxes = np.array(
        [[0, 0, 10, 10], [5, 5, 5, 5], [2, 0, 2, 10], [0, 3, 10, 3], [1, 1, 9, 9]], float
    )
    scores = [0.5, 0.9, 0.8, 0.7, 0.6]
    assert_indices(ops.nms(boxes, scores, 0.0), [1, 2, 3, 4])


def test_identical_boxes_with_equal_scores_keep_the_lowest_index():
    boxes = np.tile([[0, 0, 4, 4.0]], (5, 1))
    assert_indices(ops.nms(boxes, [0.3, 0.7, 0.7, 0.7, 0.1], 0.5), [1])
    assert_indices(ops.nms(boxes, [0.3, 0.7, 0.7, 0.7, 0.1], 1.0), [1, 2, 3, 0, 4])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nms_trivial_inputs(dtype):
    none, one = np.zeros((0, 4), dtype), np.array([[0, 0, 1, 1]], dtype)
    assert_indices(ops.nms(none, np.zeros(0, dtype), 0.5), [])
    assert_indices(ops.nms([], [], 0.5), [])
    assert_indices(ops.nms(one, np.array([0.5], dtype), 0.5), [0])
    assert_indices(ops.nms(one, np.array([0.5], dtype), 0.5, max_output=0), [])
    assert_indices(ops.nms(one, np.array([0.5], dtype), 0.5, score_threshold=0.6), [])
    assert_indices(ops.nms(one, np.array([0.5], dtype), 0.5, score_threshold=0.5), [0])


@given(det=detections(), iou_threshold=iou_thresholds)
def test_nms_max_output_zero_is_empty(det, iou_threshold):
    boxes, scores = det
    assert_indices(ops.nms(boxes, scores, iou_threshold, max_output=0), [])


# --- batched_nms ------------------------------------------------------------------------


@given(
    data=st.data(),
    iou_threshold=iou_thresholds,
    score_threshold=score_thresholds,
    max_output=max_outputs,
)
def test_batched_nms_matches_reference(data, iou_threshold, score_threshold, max_output):
    boxes, scores = data.draw(detections())
    classes = data.draw(class_arrays(len(boxes)))
    kw = {"score_threshold": score_threshold, "max_output": max_output}
    got = ops.batched_nms(boxes, scores, classes, iou_threshold, **kw)
    assert_indices(got, ref.batched_nms(boxes, scores, classes, iou_threshold, **kw))


@given(
    data=st.data(),
    iou_threshold=iou_thresholds,
    score_threshold=score_thresholds,
    max_output=max_outputs,
)
def test_batched_nms_is_per_class_nms_merged_by_score(
    data, iou_threshold, score_threshold, max_output
):
    boxes, scores = data.draw(detections())
    classes = data.draw(class_arrays(len(boxes)))
    expected = nms_per_class(boxes, scores, classes, iou_threshold, score_threshold)
    got = ops.batched_nms(
        boxes,
        scores,
        classes,
        iou_threshold,
        score_threshold=score_threshold,
        max_output=max_output,
    )
    assert_indices(got, expected[:max_output])


@given(det=detections(), iou_threshold=iou_thresholds, label=st.integers(-3, 3))
def test_batched_nms_with_one_class_is_nms(det, iou_threshold, label):
    boxes, scores = det
    classes = np.full(len(boxes), label)
    got = ops.batched_nms(boxes, scores, classes, iou_threshold)
    assert_indices(got, ops.nms(boxes, scores, iou_threshold))


@given(det=detections(), iou_threshold=iou_thresholds, score_threshold=score_thresholds)
def test_batched_nms_with_distinct_classes_keeps_every_candidate(
    det, iou_threshold, score_threshold
):
    boxes, scores = det
    classes = np.arange(len(boxes))[::-1]
    got = ops.batched_nms(boxes, scores, classes, iou_threshold, score_threshold=score_threshold)
    assert_indices(got, visiting_order(scores, score_threshold))


def test_batched_nms_known_values():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30.0]]
    scores = [0.9, 0.8, 0.85, 0.7]
    assert_indices(ops.batched_nms(boxes, scores, [0, 0, 1, 0], 0.5), [0, 2, 3])
    assert_indices(ops.batched_nms(boxes, scores, [0, 1, 1, 0], 0.5), [0, 2, 3])
    assert_indices(ops.batched_nms(boxes, scores, [0, 1, 2, 0], 0.5), [0, 2, 1, 3])
    assert_indices(ops.batched_nms(boxes, scores, [0, 1, 2, 0], 0.5, max_output=2), [0, 2])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_batched_nms_trivial_inputs(dtype):
    none = np.zeros((0, 4), dtype)
    assert_indices(ops.batched_nms(none, np.zeros(0, dtype), np.zeros(0, np.int64), 0.5), [])
    assert_indices(ops.batched_nms([], [], np.array([], np.int64), 0.5), [])
    one = np.array([[0, 0, 1, 1]], dtype)
    assert_indices(ops.batched_nms(one, np.ones(1, dtype), [3], 0.5), [0])
    assert_indices(ops.batched_nms(one, np.ones(1, dtype), [3], 0.5, max_output=0), [])


# --- soft_nms ---------------------------------------------------------------------------

sigmas = st.sampled_from([0.1, 0.5, 1.0, 2.0]) | st.floats(0.05, 2.0)
soft_score_thresholds = st.sampled_from([0.0, 0.001, 0.25]) | st.floats(0, 1, width=32)


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@given(
    data=st.data(),
    sigma=sigmas,
    iou_threshold=iou_thresholds,
    score_threshold=soft_score_thresholds,
)
def test_soft_nms_matches_reference(method, data, sigma, iou_threshold, score_threshold):
    # Gaussian decay goes through exp(), which may differ from NumPy's by an
    # ulp; on tied scores that can reorder boxes whose IoU is below ~1e-8, so
    # the gaussian case uses grid boxes, whose IoUs are never that small.
    regime = "grid" if method == "gaussian" else None
    boxes, scores = data.draw(detections(min_score=0.0, regime=regime))
    kw = {
        "method": method,
        "sigma": sigma,
        "iou_threshold": iou_threshold,
        "score_threshold": score_threshold,
    }
    got_indices, got_scores = ops.soft_nms(boxes, scores, **kw)
    want_indices, want_scores = ref.soft_nms(boxes, scores, **kw)
    assert_indices(got_indices, want_indices)
    assert got_scores.dtype == want_scores.dtype == scores.dtype
    if method == "linear":  # the same arithmetic: exact
        np.testing.assert_array_equal(got_scores, want_scores, strict=True)
    else:
        rtol = 1e-6 if scores.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got_scores, want_scores, rtol=rtol, atol=0)


@given(
    det=detections(min_score=0.0),
    method=st.sampled_from(["linear", "gaussian"]),
    sigma=sigmas,
    iou_threshold=iou_thresholds,
    score_threshold=soft_score_thresholds,
)
def test_soft_nms_selection_properties(det, method, sigma, iou_threshold, score_threshold):
    boxes, scores = det
    indices, selected = ops.soft_nms(
        boxes,
        scores,
        method=method,
        sigma=sigma,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
    )
    assert indices.dtype == np.int64 and selected.shape == indices.shape
    assert len(np.unique(indices)) == len(indices)
    chosen = selected.astype(np.float64)
    assert (chosen >= score_threshold).all()
    assert (selected <= scores[indices]).all(), "a score grew"
    assert (np.diff(chosen) <= 0).all(), "not selected by decreasing current score"
    # A candidate that overlaps no other box is never decayed, so it is selected
    # with its own score.
    iou = ops.box_iou(boxes, boxes)
    np.fill_diagonal(iou, 0)
    alone = np.flatnonzero((iou.max(axis=1, initial=0) == 0) & (scores >= score_threshold))
    position = {int(i): k for k, i in enumerate(indices)}
    for i in alone:
        assert selected[position[int(i)]] == scores[i]


@given(det=detections(min_score=0.0), score_threshold=soft_score_thresholds)
def test_soft_nms_without_decay_sorts_the_candidates(det, score_threshold):
    boxes, scores = det
    # No IoU exceeds 1, so linear decay never applies.
    indices, selected = ops.soft_nms(
        boxes, scores, method="linear", iou_threshold=1.0, score_threshold=score_threshold
    )
    order = visiting_order(scores, score_threshold)
    assert_indices(indices, order)
    np.testing.assert_array_equal(selected, scores[order], strict=True)


@pytest.mark.parametrize(
    ("kw", "indices", "selected"),
    [
        ({"method": "gaussian", "sigma": 0.5}, [0, 2, 1], [0.9, 0.7, 0.8 * np.exp(-0.5)]),
        ({"method": "gaussian", "sigma": 2.0}, [0, 1, 2], [0.9, 0.8 * np.exp(-0.125), 0.7]),
        ({"method": "linear", "iou_threshold": 0.3}, [0, 2, 1], [0.9, 0.7, 0.4]),
        ({"method": "linear", "iou_threshold": 0.5}, [0, 1, 2], [0.9, 0.8, 0.7]),
        ({"method": "linear", "iou_threshold": 0.3, "score_threshold": 0.5}, [0, 2], [0.9, 0.7]),
    ],
)
def test_soft_nms_known_values(kw, indices, selected):
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], float)  # IoU(0, 1) = 0.5
    got_indices, got_scores = ops.soft_nms(boxes, [0.9, 0.8, 0.7], **kw)
    assert_indices(got_indices, indices)
    np.testing.assert_allclose(got_scores, selected, rtol=1e-15)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_soft_nms_trivial_inputs(dtype):
    indices, selected = ops.soft_nms(np.zeros((0, 4), dtype), np.zeros(0, dtype))
    assert_indices(indices, [])
    assert (selected.shape, selected.dtype) == ((0,), dtype)
    indices, selected = ops.soft_nms(np.array([[0, 0, 1, 1]], dtype), np.array([0.5], dtype))
    assert_indices(indices, [0])
    np.testing.assert_array_equal(selected, np.array([0.5], dtype), strict=True)


# --- float32 values next to a float64 threshold ------------------------------------------
# A float32 IoU or score can equal float32(threshold) while differing from the
# (float64) threshold itself. Kernels and reference must still agree.


def test_nms_float32_iou_next_to_the_threshold_matches_reference():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 3]], np.float32)
    scores = np.array([1.0, 0.5], np.float32)
    iou = ops.box_iou(boxes[:1], boxes[1:])[0, 0]
    assert iou == np.float32(0.3) and float(iou) > 0.3
    assert_indices(ops.nms(boxes, scores, 0.3), ref.nms(boxes, scores, 0.3))
    classes = np.zeros(2, np.int64)
    assert_indices(
        ops.batched_nms(boxes, scores, classes, 0.3), ref.batched_nms(boxes, scores, classes, 0.3)
    )


SCORE_THRESHOLD_CALLS = {
    "nms": lambda mod, b, s, t: mod.nms(b, s, 0.5, score_threshold=t),
    "batched_nms": lambda mod, b, s, t: mod.batched_nms(b, s, [0, 1], 0.5, score_threshold=t),
    "soft_nms": lambda mod, b, s, t: mod.soft_nms(b, s, score_threshold=t)[0],
}


@pytest.mark.parametrize("call", SCORE_THRESHOLD_CALLS.values(), ids=SCORE_THRESHOLD_CALLS.keys())
def test_float32_score_next_to_the_score_threshold_matches_reference(call):
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3]], np.float32)
    scores = np.array([0.1, 0.5], np.float32)
    threshold = 0.1000000015  # above float32(0.1), but rounds to it in float32
    assert float(scores[0]) < threshold and np.float32(threshold) == scores[0]
    assert_indices(call(ops, boxes, scores, threshold), call(ref, boxes, scores, threshold))


# --- larger randomized inputs -------------------------------------------------------------


@functools.cache
def large_case(kind: str, tied: bool):
    """2,000 float32 boxes and scores of a given layout (fixed seed)."""
    rng = np.random.default_rng([LARGE_KINDS.index(kind), tied])

    def boxes(n, lo, hi, size_lo, size_hi):
        xy = rng.uniform(lo, hi, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(size_lo, size_hi, (n, 2))], axis=1)

    if kind == "spread":
        b = boxes(2000, 0, 20000, 5, 60)
    elif kind == "dense":
        b = boxes(2000, 0, 200, 5, 60)
    elif kind == "dense_wide":  # issue 12's bench layout at a fifth of the count
        b = boxes(2000, 0, 450, 10, 100)
    elif kind == "mixed_sizes":  # a few huge boxes covering many small ones
        b = np.concatenate([boxes(1985, 0, 1000, 1, 20), boxes(15, -100, 0, 900, 1200)])
        b = b[rng.permutation(len(b))]
    elif kind == "degenerate":  # a third zero-width, a third zero-height
        b = boxes(2000, 0, 300, 0, 30)
        b[::3, 2], b[1::3, 3] = b[::3, 0], b[1::3, 1]
    else:
        raise ValueError(kind)
    scores = rng.random(len(b))
    if tied:
        scores = np.round(scores * 4) / 4
    classes = rng.integers(0, 7, len(b))
    return b.astype(np.float32), scores.astype(np.float32), classes


LARGE_KINDS = ["spread", "dense", "dense_wide", "mixed_sizes", "degenerate"]
large_cases = pytest.mark.parametrize(
    ("kind", "tied"),
    [(kind, tied) for kind in LARGE_KINDS for tied in (False, True)],
    ids=[f"{kind}-{'tied' if tied else 'distinct'}" for kind in LARGE_KINDS for tied in (0, 1)],
)


@large_cases
def test_large_nms_and_batched_nms_match_reference(kind, tied):
    boxes, scores, classes = large_case(kind, tied)
    for iou_threshold in (0.0, 0.3, 0.7, 0.95, 1.0):
        got = ops.nms(boxes, scores, iou_threshold)
        assert_indices(got, ref.nms(boxes, scores, iou_threshold))
    got = ops.batched_nms(boxes, scores, classes, 0.5)
    assert_indices(got, ref.batched_nms(boxes, scores, classes, 0.5))


@large_cases
def test_large_nms_is_greedy_suppression(kind, tied):
    boxes, scores, _ = large_case(kind, tied)
    assert_is_greedy_nms(boxes, scores, ops.nms(boxes, scores, 0.5), 0.5)


@large_cases
@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_large_soft_nms_matches_reference(kind, tied, method):
    boxes, scores, _ = large_case(kind, tied)
    got_indices, got_scores = ops.soft_nms(boxes, scores, method=method)
    want_indices, want_scores = ref.soft_nms(boxes, scores, method=method)
    assert_indices(got_indices, want_indices)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6, atol=0)


# --- agreement with torchvision (skipped when it is not installed) --------------------------


@pytest.fixture(scope="module")
def tv():
    """(torch, torchvision.ops), or skip."""
    with warnings.catch_warnings():  # an import-time warning is not a test failure
        warnings.simplefilter("ignore")
        torch = pytest.importorskip("torch")
        torchvision = peers.torchvision()
    return torch, torchvision.ops


def distinct_scores(n: int):
    values = st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n, unique=True)
    return values.map(lambda v: np.array(v, np.float32))


@given(data=st.data(), iou_threshold=st.floats(0, 1, width=32))
def test_nms_agrees_with_torchvision_on_distinct_scores(tv, data, iou_threshold):
    torch, tv_ops = tv
    boxes = data.draw(box_arrays(dtype=np.float32, max_boxes=30))
    scores = data.draw(distinct_scores(len(boxes)))
    want = tv_ops.nms(
        torch.from_numpy(np.ascontiguousarray(boxes)), torch.from_numpy(scores), iou_threshold
    )
    assert_indices(ops.nms(boxes, scores, iou_threshold), want.numpy())


@given(data=st.data(), iou_threshold=st.floats(0, 1, width=32))
def test_batched_nms_agrees_with_torchvision_on_distinct_scores(tv, data, iou_threshold):
    torch, tv_ops = tv
    # torchvision offsets each class by a multiple of the largest coordinate:
    # exact for small positive grid coordinates in float64.
    boxes = data.draw(box_arrays(dtype=np.float64, regime="grid", max_boxes=30, view=False)) + 10
    scores = data.draw(distinct_scores(len(boxes))).astype(np.float64)
    classes = data.draw(class_arrays(len(boxes))).astype(np.int64)
    want = tv_ops.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), iou_threshold
    )
    assert_indices(ops.batched_nms(boxes, scores, classes, iou_threshold), want.numpy())


@st.composite
def solid_boxes(draw, n: int):
    """float64 boxes with width and height >= 1 (torchvision divides by them)."""
    corner, side = st.floats(-100, 100), st.floats(1, 50)
    rows = draw(st.lists(st.tuples(corner, corner, side, side), min_size=n, max_size=n))
    values = np.array(rows, np.float64).reshape(n, 4)
    return np.concatenate([values[:, :2], values[:, :2] + values[:, 2:]], axis=1)


@pytest.mark.parametrize(
    "name", ["box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"]
)
@given(data=st.data())
def test_iou_family_agrees_with_torchvision(tv, name, data):
    torch, tv_ops = tv
    a = data.draw(solid_boxes(data.draw(st.integers(0, 8))))
    b = data.draw(solid_boxes(data.draw(st.integers(0, 8))))
    want = getattr(tv_ops, name)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    # torchvision adds eps = 1e-7 to the DIoU and CIoU denominators.
    np.testing.assert_allclose(getattr(ops, name)(a, b), want, rtol=1e-6, atol=1e-6)
