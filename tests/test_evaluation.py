"""Detection metrics: COCO evaluate() against pycocotools, VOC AP against hand-computed values
and a direct transcription of the devkit's loop, and every rejection path."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit.detection import (
    COCO_IOU_THRESHOLDS,
    COCO_METRIC_KEYS,
    evaluate,
    voc_ap,
    voc_evaluate,
)

TOL = 1e-6


# --- random detection problems ----------------------------------------------------------


def _boxes(rng: np.random.Generator, n: int, grid: bool, tight: bool = False) -> np.ndarray:
    """xyxy boxes whose areas span the small, medium and large ranges (and their borders);
    ``tight``: small boxes in a small square, so that IoUs tie between ground-truth boxes."""
    if tight:
        side, corner = rng.integers(6, 13, (n, 2)), rng.integers(0, 7, (n, 2))
        return np.concatenate([corner, corner + side], axis=1).astype(np.float64)
    side = rng.choice([0, 1, 8, 31, 32, 33, 64, 95, 96, 97, 200], size=(n, 2))
    side = np.where(rng.random((n, 2)) < 0.5, side, rng.integers(0, 160, (n, 2)))
    corner = rng.integers(0, 300, (n, 2))
    boxes = np.concatenate([corner, corner + side], axis=1).astype(np.float64)
    if not grid:
        # Dyadic fractions keep the xywh <-> xyxy round trip exact for pycocotools.
        boxes += rng.integers(0, 8, (n, 4)) / 8 * (side[:, [0, 1, 0, 1]] > 0)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    return boxes


@st.composite
def problems(draw):
    """(detections, ground_truth) for several images: perturbed copies of the ground truth,
    false positives, wrong classes, tied scores, crowd boxes, empty images, images with only
    detections or only ground truth, and sometimes more than 100 detections in an image."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_images = draw(st.integers(1, 6))
    n_classes = draw(st.integers(1, 4))
    max_gt = draw(st.integers(0, 12))
    score_levels = draw(st.sampled_from([2, 5, 1000]))  # few levels: many ties
    crowd_rate = draw(st.sampled_from([0.0, 0.15]))
    crowded = draw(st.booleans())  # one image with more than 100 detections
    grid = draw(st.booleans())
    own_area = draw(st.booleans())
    rng = np.random.default_rng(seed)
    detections, ground_truth = [], []
    for i in range(n_images):
        kind = rng.integers(0, 5)  # 0: both, 1: only gt, 2: only detections, 3: tight, 4: both
        n_gt = 0 if kind == 2 else int(rng.integers(0, max_gt + 1))
        gt_boxes = _boxes(rng, n_gt, grid, tight=kind == 3)
        gt_classes = rng.integers(0, n_classes, n_gt)
        gt = {"boxes": gt_boxes, "classes": gt_classes}
        if crowd_rate:
            gt["iscrowd"] = rng.random(n_gt) < crowd_rate
        if own_area:  # e.g. a segmentation's area: moves boxes between size ranges
            box_area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
            gt["area"] = box_area * rng.choice([0.25, 1.0, 3.0], n_gt)
        ground_truth.append(gt)
        if kind == 1:
            detections.append(
                {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int)}
            )
            continue
        copies = rng.integers(0, 3, n_gt)  # missed, found, found twice
        src = np.repeat(np.arange(n_gt), copies)
        jitter = rng.integers(-4, 5, (src.size, 4)).astype(np.float64)
        moved = gt_boxes[src] + jitter * (rng.random((src.size, 1)) < 0.6)
        moved[:, 2:] = np.maximum(moved[:, 2:], moved[:, :2])
        cls = np.where(rng.random(src.size) < 0.9, gt_classes[src], rng.integers(0, n_classes))
        n_false = int(rng.integers(0, 6)) + (
            int(rng.integers(101, 130)) if crowded and i == 0 else 0
        )
        boxes = np.concatenate([moved, _boxes(rng, n_false, grid, tight=kind == 3)])
        classes = np.concatenate([cls, rng.integers(0, n_classes, n_false)]).astype(np.int64)
        scores = rng.integers(1, score_levels + 1, boxes.shape[0]) / score_levels
        perm = rng.permutation(boxes.shape[0])
        detections.append({"boxes": boxes[perm], "scores": scores[perm], "classes": classes[perm]})
    if sum(len(d["scores"]) for d in detections) == 0:  # pycocotools cannot load no results
        detections[0] = {
            "boxes": np.array([[1.0, 2.0, 40.0, 30.0]]),
            "scores": np.array([0.5]),
            "classes": np.array([0]),
        }
    return detections, ground_truth


# --- pycocotools as the reference -------------------------------------------------------


def coco_eval(detections, ground_truth, iou_thresholds=None, max_detections=(1, 10, 100)):
    # summarize() needs three maxDets; the tables it reads come from accumulate().
    """pycocotools' COCOeval (bbox) on the same data: xywh boxes, area = the ground truth's
    "area" when given, else w * h."""
    coco_mod = pytest.importorskip("pycocotools.coco")
    cocoeval_mod = pytest.importorskip("pycocotools.cocoeval")
    classes = sorted(
        {int(c) for d in detections for c in d["classes"]}
        | {int(c) for g in ground_truth for c in g["classes"]}
    )
    annotations = []
    for i, g in enumerate(ground_truth):
        crowd = g.get("iscrowd", np.zeros(len(g["classes"]), bool))
        boxes = np.asarray(g["boxes"], np.float64).reshape(-1, 4)
        areas = g.get("area", (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        for box, cls, c, area in zip(boxes, g["classes"], crowd, areas):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(cls),
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(area),
                    "iscrowd": int(c),
                }
            )
    results = [
        {
            "image_id": i + 1,
            "category_id": int(cls),
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
            "score": float(s),
        }
        for i, d in enumerate(detections)
        for b, s, cls in zip(np.asarray(d["boxes"]), d["scores"], d["classes"])
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_mod.COCO()
        gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(ground_truth))],
            "annotations": annotations,
            "categories": [{"id": c} for c in classes],
        }
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = cocoeval_mod.COCOeval(gt, dt, "bbox")
        if iou_thresholds is not None:
            ev.params.iouThrs = np.asarray(iou_thresholds, np.float64)
        ev.params.maxDets = list(max_detections)
        ev.evaluate()
        ev.accumulate()
        if len(max_detections) == 3:
            ev.summarize()
    return ev


def expected_from_tables(ev, max_detections):
    """The metrics' definitions applied to pycocotools' precision/recall tables."""
    p, r = ev.eval["precision"], ev.eval["recall"]
    thr = ev.params.iouThrs

    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    out = {"map": mean(p[:, :, :, 0, -1])}
    for name, v in (("map_50", 0.5), ("map_75", 0.75)):
        out[name] = mean(p[np.flatnonzero(thr == v)][:, :, :, 0, -1])
    for a, label in enumerate(("small", "medium", "large"), 1):
        out[f"map_{label}"] = mean(p[:, :, :, a, -1])
    for m, md in enumerate(max_detections):
        out[f"mar_{md}"] = mean(r[:, :, 0, m])
    for a, label in enumerate(("small", "medium", "large"), 1):
        out[f"mar_{label}"] = mean(r[:, :, a, -1])
    out["map_per_class"] = {int(c): mean(p[:, :, k, 0, -1]) for k, c in enumerate(ev.params.catIds)}
    return out


def assert_metrics_close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if key == "map_per_class":
            assert list(got[key]) == list(value)
            for c in value:
                assert got[key][c] == pytest.approx(value[c], abs=TOL), (key, c)
        else:
            assert isinstance(got[key], float)
            assert got[key] == pytest.approx(value, abs=TOL), key


@given(problem=problems())
def test_matches_pycocotools(problem):
    detections, ground_truth = problem
    ev = coco_eval(detections, ground_truth)
    got = evaluate(detections, ground_truth)
    assert list(got)[:12] == list(COCO_METRIC_KEYS)
    for key, value in zip(COCO_METRIC_KEYS, ev.stats):
        assert got[key] == pytest.approx(float(value), abs=TOL), key
    assert_metrics_close(got, expected_from_tables(ev, (1, 10, 100)))


@settings(max_examples=20)
@given(
    problem=problems(),
    thresholds=st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.75, 0.9, 1.0]), min_size=1, max_size=4),
    max_detections=st.sampled_from([(1, 10, 100), (2, 5), (50,), (1, 3, 7, 120)]),
)
def test_matches_pycocotools_with_options(problem, thresholds, max_detections):
    detections, ground_truth = problem
    ev = coco_eval(detections, ground_truth, thresholds, max_detections)
    got = evaluate(
        detections, ground_truth, iou_thresholds=thresholds, max_detections=max_detections
    )
    assert_metrics_close(got, expected_from_tables(ev, max_detections))


def test_iou_ties_go_to_the_later_ground_truth():
    # The first detection has IoU 9/11 with both boxes and takes the later one (pycocotools'
    # loop keeps the last of equal IoUs); the second, equal to the later box, is left with the
    # first box at IoU 2/3, so it misses from .70 to .80 (above .80 the first detection
    # misses and leaves the later box to the second). Ties to the first box would give .85.
    gt = [{"boxes": [[0, 0, 10, 10], [2, 0, 12, 10]], "classes": [0, 0]}]
    det = [{"boxes": [[1, 0, 11, 10], [2, 0, 12, 10]], "scores": [0.9, 0.8], "classes": [0, 0]}]
    ev = coco_eval(det, gt)
    got = evaluate(det, gt)
    for key, value in zip(COCO_METRIC_KEYS, ev.stats):
        assert got[key] == pytest.approx(float(value), abs=TOL), key
    assert got["mar_100"] == pytest.approx((4 * 1.0 + 3 * 0.5 + 3 * 0.5) / 10)
    # A non-ignored box is preferred to an ignored (crowd) one of higher IoU.
    gt = [{"boxes": [[0, 0, 10, 10], [1, 0, 11, 10]], "classes": [0, 0], "iscrowd": [0, 1]}]
    det = [{"boxes": [[1, 0, 11, 10]], "scores": [0.9], "classes": [0]}]
    assert evaluate(det, gt)["map_50"] == pytest.approx(coco_eval(det, gt).stats[1], abs=TOL)
    assert evaluate(det, gt)["map_50"] == pytest.approx(1.0)


@pytest.mark.parametrize("step_elements", [None, 1])
def test_continuous_coordinates_match_pycocotools(step_elements, monkeypatch):
    # Arbitrary floats: pycocotools' x + w may differ from x2 in the last bit, which can only
    # matter at an exact IoU tie with a threshold; the numbers agree to far better than 1e-6.
    # step_elements=1: the matching goes one detection at a time (its memory bound).
    if step_elements is not None:
        monkeypatch.setattr(cnnkit.detection.evaluation, "_STEP_ELEMENTS", step_elements)
    rng = np.random.default_rng(11)
    detections, ground_truth = [], []
    for _ in range(30):
        n = int(rng.integers(0, 15))
        xy = rng.uniform(0, 500, (n, 2))
        boxes = np.concatenate([xy, xy + np.exp(rng.uniform(1, 5.5, (n, 2)))], axis=1)
        classes = rng.integers(0, 4, n)
        ground_truth.append({"boxes": boxes, "classes": classes})
        src = rng.integers(0, max(n, 1), 2 * n)
        noisy = boxes[src] + rng.normal(0, 1, (2 * n, 4)) if n else np.zeros((0, 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2])
        detections.append(
            {"boxes": noisy, "scores": rng.random(2 * n), "classes": classes[src] if n else src}
        )
    ev = coco_eval(detections, ground_truth)
    got = evaluate(detections, ground_truth)
    for key, value in zip(COCO_METRIC_KEYS, ev.stats):
        assert got[key] == pytest.approx(float(value), abs=TOL), key
    assert 0.2 < got["map"] < 0.9  # a meaningful mix of hits and misses


def test_float32_and_lists_match_float64():
    rng = np.random.default_rng(5)
    gt_boxes = _boxes(rng, 12, True)
    gt = [{"boxes": gt_boxes, "classes": np.arange(12) % 3}]
    det_boxes = gt_boxes + rng.integers(-3, 4, (12, 4))
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2])
    det = [{"boxes": det_boxes, "scores": rng.random(12), "classes": np.arange(12) % 3}]
    want = evaluate(det, gt)
    as32 = [{k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in det[0].items()}]
    aslists = [{k: v.tolist() for k, v in det[0].items()}]
    assert evaluate(as32, gt)["map"] == pytest.approx(want["map"], abs=1e-6)
    assert evaluate(aslists, gt) == want


def test_perfect_detections_score_one():
    rng = np.random.default_rng(0)
    gt, det = [], []
    for _ in range(4):
        boxes = _boxes(rng, 15, True)
        boxes[:, 2:] += 1  # no empty boxes: an empty box has IoU 0 even with itself
        classes = rng.integers(0, 3, 15)
        gt.append({"boxes": boxes, "classes": classes})
        det.append({"boxes": boxes.copy(), "scores": rng.random(15), "classes": classes})
    got = evaluate(det, gt)
    for key in (
        COCO_METRIC_KEYS[:6] + COCO_METRIC_KEYS[7:]
    ):  # mar_1 < 1: images hold several boxes a class
        # pycocotools' precision tp / (tp + fp + eps) is 1 - 2e-16 at best.
        assert got[key] == pytest.approx(1.0, abs=1e-12) or got[key] == -1.0, key
    assert got["map"] == pytest.approx(1.0, abs=1e-12)
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in got["map_per_class"].values())


def test_undefined_values_are_minus_one():
    # Only small ground truth: medium and large have none; class 7 has detections only.
    gt = [{"boxes": [[0, 0, 10, 10]], "classes": [1]}]
    det = [{"boxes": [[0, 0, 10, 10], [0, 0, 50, 50]], "scores": [0.9, 0.8], "classes": [1, 7]}]
    got = evaluate(det, gt)
    assert got["map_medium"] == got["map_large"] == -1.0
    assert got["mar_medium"] == got["mar_large"] == -1.0
    assert got["map_per_class"] == {1: pytest.approx(1.0), 7: -1.0}
    assert got["map"] == pytest.approx(1.0)  # class 7 is left out of the mean
    nothing = evaluate([{"boxes": [], "scores": [], "classes": []}], [{"boxes": [], "classes": []}])
    assert all(nothing[k] == -1.0 for k in COCO_METRIC_KEYS)
    assert nothing["map_per_class"] == {}
    no_75 = evaluate(det, gt, iou_thresholds=[0.5, 0.6])
    assert no_75["map_75"] == -1.0 and no_75["map_50"] == pytest.approx(1.0)


def test_no_detections_gives_zero():
    gt = [{"boxes": [[0, 0, 10, 10], [0, 0, 100, 100]], "classes": [1, 2]}]
    got = evaluate([{"boxes": np.zeros((0, 4)), "scores": [], "classes": []}], gt)
    assert got["map"] == 0.0 and got["mar_100"] == 0.0 and got["map_medium"] == -1.0
    assert got["map_per_class"] == {1: 0.0, 2: 0.0}


def test_max_detections_per_image_and_class():
    # 3 gt of class 0; detections ranked: 3 misses, then the hits: needs maxDets > 3.
    gt = [{"boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], "classes": [0, 0, 0]}]
    boxes = [[100, 100, 110, 110]] * 3 + gt[0]["boxes"]
    det = [{"boxes": boxes, "scores": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], "classes": [0] * 6}]
    got = evaluate(det, gt, max_detections=(1, 3, 6))
    assert got["mar_1"] == 0.0 and got["mar_3"] == 0.0 and got["mar_6"] == pytest.approx(1.0)


def test_detection_loads_lazily():
    code = (
        "import sys, cnnkit; a = 'cnnkit.detection' in sys.modules; "
        "import cnnkit.detection; b = 'cnnkit.detection.evaluation' in sys.modules; "
        "cnnkit.detection.evaluate; c = 'cnnkit.detection.evaluation' in sys.modules; "
        "print(a, b, c, 'pycocotools' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False", "True", "False"]
    assert cnnkit.detection.evaluation.evaluate is evaluate
    assert "voc_ap" in dir(cnnkit.detection)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cnnkit.detection.nope  # noqa: B018
    assert COCO_IOU_THRESHOLDS[0] == 0.5 and COCO_IOU_THRESHOLDS[5] == 0.75


# --- VOC ----------------------------------------------------------------------------------


def test_voc_ap_hand_computed():
    rec, prec = [0.2, 0.4, 0.4, 0.6], [1.0, 0.8, 0.6, 0.5]
    # Envelope 1, .8, .5 over recall steps .2, .2, .2; nothing beyond .6.
    assert voc_ap(rec, prec) == pytest.approx(0.2 * 1 + 0.2 * 0.8 + 0.2 * 0.5)
    # t = 0, .1, .2 -> 1; .3, .4 -> .8; .5, .6 -> .5; .7 ... 1 -> 0.
    assert voc_ap(rec, prec, use_11_point=True) == pytest.approx((3 + 1.6 + 1.0) / 11)
    # A dip recovers: the envelope takes the later, higher precision.
    rec, prec = [0.25, 0.5, 0.75, 1.0], [1.0, 0.5, 0.6, 0.4]
    assert voc_ap(rec, prec) == pytest.approx(0.25 * 1 + 0.5 * 0.6 + 0.25 * 0.4)
    assert voc_ap(rec, prec, use_11_point=True) == pytest.approx((3 * 1.0 + 5 * 0.6 + 3 * 0.4) / 11)
    assert voc_ap([1.0], [1.0]) == 1.0
    assert voc_ap([1.0], [1.0], use_11_point=True) == pytest.approx(1.0)
    assert voc_ap([], []) == 0.0 and voc_ap([], [], use_11_point=True) == 0.0
    # Recall exactly 0.3 reaches the 0.3 point (k / 10, not np.arange's 0.30000000000000004).
    assert voc_ap([0.3], [1.0], use_11_point=True) == pytest.approx(4 / 11)


def test_voc_evaluate_hand_computed():
    gt = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "classes": [0, 0]},
        {"boxes": [[0, 0, 10, 10]], "classes": [1], "difficult": [True]},
    ]
    det = [
        # tp (0.9), duplicate of the same box fp (0.8), tp (0.7)
        {
            "boxes": [[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30]],
            "scores": [0.9, 0.8, 0.7],
            "classes": [0, 0, 0],
        },
        # matches a difficult box: left out; class 1 has no other gt
        {"boxes": [[0, 0, 10, 10]], "scores": [0.95], "classes": [1]},
    ]
    got = voc_evaluate(det, gt)
    # recall .5, .5, 1 / precision 1, .5, 2/3 -> .5 * 1 + .5 * 2/3
    assert got["map_per_class"] == {0: pytest.approx(0.5 + 1 / 3), 1: -1.0}
    assert got["map"] == pytest.approx(0.5 + 1 / 3)
    eleven = voc_evaluate(det, gt, use_11_point=True)["map_per_class"][0]
    assert eleven == pytest.approx((6 * 1.0 + 5 * (2 / 3)) / 11)
    # IoU ties go to the first box (the devkit's argmax): the second detection finds its box
    # free. Taking the later box would make it a duplicate.
    tie_gt = [{"boxes": [[0, 0, 10, 10], [2, 0, 12, 10]], "classes": [0, 0]}]
    tie_det = [{"boxes": [[1, 0, 11, 10], [2, 0, 12, 10]], "scores": [0.9, 0.8], "classes": [0, 0]}]
    assert voc_evaluate(tie_det, tie_gt)["map"] == pytest.approx(1.0)
    # IoU exactly at the threshold is not a match (strictly above, as the devkit).
    half = [{"boxes": [[0, 0, 10, 10]], "classes": [0]}]
    d = [{"boxes": [[0, 0, 10, 5]], "scores": [1.0], "classes": [0]}]
    assert voc_evaluate(d, half)["map"] == 0.0
    assert voc_evaluate(d, half, iou_threshold=0.49)["map"] == pytest.approx(1.0)


def devkit_voc(detections, ground_truth, iou_threshold, use_11_point):
    """The VOC devkit's per-class loop, written plainly (continuous IoU, no +1)."""
    classes = sorted(
        {int(c) for d in detections for c in d["classes"]}
        | {int(c) for g in ground_truth for c in g["classes"]}
    )
    per_class = {}
    for c in classes:
        gts = {}
        npos = 0
        for i, g in enumerate(ground_truth):
            sel = np.asarray(g["classes"]) == c
            diff = np.asarray(g.get("difficult", np.zeros(sel.size, bool)), bool)[sel]
            gts[i] = (
                np.asarray(g["boxes"], np.float64).reshape(-1, 4)[sel],
                diff,
                np.zeros(sel.sum(), bool),
            )
            npos += int((~diff).sum())
        dets = [
            (-float(s), i, j, np.asarray(d["boxes"], np.float64)[j])
            for i, d in enumerate(detections)
            for j, (s, k) in enumerate(zip(d["scores"], d["classes"]))
            if int(k) == c
        ]
        dets.sort(key=lambda t: (t[0], t[1], t[2]))
        tp, fp = [], []
        for _, i, _, b in dets:
            boxes, diff, used = gts[i]
            ovmax, jmax = -np.inf, -1
            for j, g in enumerate(boxes):
                iw = max(min(b[2], g[2]) - max(b[0], g[0]), 0.0)
                ih = max(min(b[3], g[3]) - max(b[1], g[1]), 0.0)
                inter = iw * ih
                uni = (b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                o = inter / uni if uni > 0 else 0.0
                if o > ovmax:
                    ovmax, jmax = o, j
            if ovmax > iou_threshold:
                if diff[jmax]:
                    continue
                if not used[jmax]:
                    used[jmax] = True
                    tp.append(1.0), fp.append(0.0)
                else:
                    tp.append(0.0), fp.append(1.0)
            else:
                tp.append(0.0), fp.append(1.0)
        if npos == 0:
            per_class[c] = -1.0
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class[c] = voc_ap(rec, prec, use_11_point=use_11_point)
    return per_class


@settings(max_examples=30)
@given(problem=problems(), use_11_point=st.booleans(), thr=st.sampled_from([0.3, 0.5, 0.7]))
def test_voc_evaluate_matches_devkit_loop(problem, use_11_point, thr):
    detections, ground_truth = problem
    rng = np.random.default_rng(len(ground_truth))
    ground_truth = [
        {
            "boxes": g["boxes"],
            "classes": g["classes"],
            "difficult": rng.random(len(g["classes"])) < 0.2,
        }
        for g in ground_truth
    ]
    got = voc_evaluate(detections, ground_truth, iou_threshold=thr, use_11_point=use_11_point)
    want = devkit_voc(detections, ground_truth, thr, use_11_point)
    assert list(got["map_per_class"]) == list(want)
    for c in want:
        assert got["map_per_class"][c] == pytest.approx(want[c], abs=1e-12), c


# --- bad input ----------------------------------------------------------------------------

GOOD_DET = {"boxes": [[0, 0, 1, 1]], "scores": [0.5], "classes": [0]}
GOOD_GT = {"boxes": [[0, 0, 1, 1]], "classes": [0]}


def message(*parts: str) -> str:
    return "^" + ".*".join(re.escape(p) for p in parts)


BAD = [
    (
        "det-not-list",
        lambda: evaluate(GOOD_DET, [GOOD_GT]),
        TypeError,
        ("evaluate(): detections must be a list", "dict"),
    ),
    (
        "gt-not-list",
        lambda: evaluate([GOOD_DET], "gt"),
        TypeError,
        ("evaluate(): ground_truth must be a list", "str"),
    ),
    (
        "length-mismatch",
        lambda: evaluate([GOOD_DET], [GOOD_GT, GOOD_GT]),
        ValueError,
        ("evaluate(): detections and ground_truth", "got 1 and 2"),
    ),
    (
        "item-not-dict",
        lambda: evaluate([[1, 2]], [GOOD_GT]),
        TypeError,
        ("evaluate(): detections[0] must be a dict", "list"),
    ),
    (
        "missing-key",
        lambda: evaluate([{"boxes": [[0, 0, 1, 1]], "classes": [0]}], [GOOD_GT]),
        ValueError,
        ("evaluate(): detections[0] must have the keys", "'scores'", "got"),
    ),
    (
        "unknown-key",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "labels": [0]}]),
        ValueError,
        ("evaluate(): ground_truth[0] must have the keys", "'labels'"),
    ),
    (
        "difficult-in-coco",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "difficult": [0]}]),
        ValueError,
        ("evaluate(): ground_truth[0] must have the keys",),
    ),
    (
        "boxes-shape",
        lambda: evaluate([{**GOOD_DET, "boxes": [[0, 0, 1, 1, 1]]}], [GOOD_GT]),
        ValueError,
        ("evaluate(): detections[0]['boxes'] must have shape (K, 4)", "(1, 5)"),
    ),
    (
        "boxes-1d",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "boxes": [0, 0, 1, 1]}]),
        ValueError,
        ("evaluate(): ground_truth[0]['boxes'] must have shape (K, 4)", "(4,)"),
    ),
    (
        "boxes-nan",
        lambda: evaluate([{**GOOD_DET, "boxes": [[0, 0, np.nan, 1]]}], [GOOD_GT]),
        ValueError,
        ("evaluate(): detections[0]['boxes'] must be finite", "NaN"),
    ),
    (
        "boxes-nan-second-image",
        lambda: evaluate(
            [GOOD_DET, {**GOOD_DET, "boxes": [[0, 0, 1, np.inf]]}], [GOOD_GT, GOOD_GT]
        ),
        ValueError,
        ("evaluate(): detections[1]['boxes'] must be finite", "infinity"),
    ),
    (
        "boxes-inverted",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "boxes": [[2, 0, 1, 1]]}]),
        ValueError,
        ("evaluate(): ground_truth[0]['boxes'] must be xyxy", "x1 <= x2"),
    ),
    (
        "boxes-text",
        lambda: evaluate([{**GOOD_DET, "boxes": [["a", "b", "c", "d"]]}], [GOOD_GT]),
        TypeError,
        ("evaluate(): detections[0]['boxes'] must be an array of numbers", "dtype"),
    ),
    (
        "scores-length",
        lambda: evaluate([{**GOOD_DET, "scores": [0.5, 0.4]}], [GOOD_GT]),
        ValueError,
        ("evaluate(): detections[0]['scores'] must have shape (K,) with K = 1", "(2,)"),
    ),
    (
        "scores-nan",
        lambda: evaluate([{**GOOD_DET, "scores": [np.nan]}], [GOOD_GT]),
        ValueError,
        ("evaluate(): detections[0]['scores'] must be finite", "NaN"),
    ),
    (
        "boxes-bool",
        lambda: evaluate([{**GOOD_DET, "boxes": [[True] * 4]}], [GOOD_GT]),
        TypeError,
        ("evaluate(): detections[0]['boxes'] must be an array of numbers", "bool"),
    ),
    (
        "crowd-text",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "iscrowd": ["yes"]}]),
        TypeError,
        ("evaluate(): ground_truth[0]['iscrowd'] must be an array of booleans or numbers",),
    ),
    (
        "scores-2d",
        lambda: evaluate([{**GOOD_DET, "scores": [[0.5]]}], [GOOD_GT]),
        ValueError,
        ("evaluate(): detections[0]['scores'] must have shape (K,)", "(1, 1)"),
    ),
    (
        "classes-float",
        lambda: evaluate([{**GOOD_DET, "classes": [0.5]}], [GOOD_GT]),
        TypeError,
        ("evaluate(): detections[0]['classes'] must be integers", "float64"),
    ),
    (
        "classes-length",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "classes": [0, 1]}]),
        ValueError,
        ("evaluate(): ground_truth[0]['classes'] must have shape (K,)", "(2,)"),
    ),
    (
        "iscrowd-values",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "iscrowd": [2]}]),
        ValueError,
        ("evaluate(): ground_truth[0]['iscrowd'] must be booleans",),
    ),
    (
        "area-nan",
        lambda: evaluate([GOOD_DET], [{**GOOD_GT, "area": [np.nan]}]),
        ValueError,
        ("evaluate(): ground_truth[0]['area'] must be finite",),
    ),
    (
        "thresholds-range",
        lambda: evaluate([GOOD_DET], [GOOD_GT], iou_thresholds=[0.5, 1.5]),
        ValueError,
        ("evaluate(): iou_thresholds must lie in [0, 1]", "1.5"),
    ),
    (
        "thresholds-empty",
        lambda: evaluate([GOOD_DET], [GOOD_GT], iou_thresholds=[]),
        ValueError,
        ("evaluate(): iou_thresholds must be a non-empty 1-D", "(0,)"),
    ),
    (
        "thresholds-nan",
        lambda: evaluate([GOOD_DET], [GOOD_GT], iou_thresholds=[np.nan]),
        ValueError,
        ("evaluate(): iou_thresholds must lie in [0, 1]", "nan"),
    ),
    (
        "thresholds-text",
        lambda: evaluate([GOOD_DET], [GOOD_GT], iou_thresholds=["x"]),
        TypeError,
        ("evaluate(): iou_thresholds must be a 1-D sequence of numbers",),
    ),
    (
        "max-dets-zero",
        lambda: evaluate([GOOD_DET], [GOOD_GT], max_detections=(0, 10)),
        ValueError,
        ("evaluate(): max_detections must be positive integers", "(0, 10)"),
    ),
    (
        "max-dets-order",
        lambda: evaluate([GOOD_DET], [GOOD_GT], max_detections=(10, 1)),
        ValueError,
        ("evaluate(): max_detections must be increasing", "(10, 1)"),
    ),
    (
        "max-dets-float",
        lambda: evaluate([GOOD_DET], [GOOD_GT], max_detections=(1.5,)),
        ValueError,
        ("evaluate(): max_detections must be positive integers",),
    ),
    (
        "max-dets-none",
        lambda: evaluate([GOOD_DET], [GOOD_GT], max_detections=None),
        TypeError,
        ("evaluate(): max_detections must be a sequence of positive integers", "None"),
    ),
    (
        "voc-length",
        lambda: voc_evaluate([GOOD_DET, GOOD_DET], [GOOD_GT]),
        ValueError,
        ("voc_evaluate(): detections and ground_truth", "got 2 and 1"),
    ),
    (
        "voc-iscrowd",
        lambda: voc_evaluate([GOOD_DET], [{**GOOD_GT, "iscrowd": [0]}]),
        ValueError,
        ("voc_evaluate(): ground_truth[0] must have the keys", "'iscrowd'"),
    ),
    (
        "voc-threshold",
        lambda: voc_evaluate([GOOD_DET], [GOOD_GT], iou_threshold=2.0),
        ValueError,
        ("voc_evaluate(): iou_threshold must lie in [0, 1]", "2.0"),
    ),
    (
        "voc-threshold-type",
        lambda: voc_evaluate([GOOD_DET], [GOOD_GT], iou_threshold="0.5"),
        TypeError,
        ("voc_evaluate(): iou_threshold must be a number", "'0.5'"),
    ),
    (
        "voc-difficult",
        lambda: voc_evaluate([GOOD_DET], [{**GOOD_GT, "difficult": [0.5]}]),
        ValueError,
        ("voc_evaluate(): ground_truth[0]['difficult'] must be booleans",),
    ),
    (
        "voc_ap-shape",
        lambda: voc_ap([0.5, 1.0], [1.0]),
        ValueError,
        ("voc_ap(): recall and precision must have the same shape", "(2,) and (1,)"),
    ),
    (
        "voc_ap-2d",
        lambda: voc_ap([[0.5]], [[1.0]]),
        ValueError,
        ("voc_ap(): recall must be 1-D", "(1, 1)"),
    ),
    (
        "voc_ap-nan",
        lambda: voc_ap([0.5], [np.nan]),
        ValueError,
        ("voc_ap(): precision must lie in [0, 1]", "nan"),
    ),
    (
        "voc_ap-range",
        lambda: voc_ap([1.5], [1.0]),
        ValueError,
        ("voc_ap(): recall must lie in [0, 1]", "1.5"),
    ),
    (
        "voc_ap-decreasing",
        lambda: voc_ap([0.5, 0.2], [1.0, 1.0]),
        ValueError,
        ("voc_ap(): recall must be non-decreasing",),
    ),
    (
        "voc_ap-text",
        lambda: voc_ap(["a"], [1.0]),
        TypeError,
        ("voc_ap(): recall must be a 1-D array of numbers",),
    ),
]


@pytest.mark.parametrize(
    ("call", "exc", "parts"), [pytest.param(c, e, p, id=i) for i, c, e, p in BAD]
)
def test_rejects_bad_input(call, exc, parts):
    with pytest.raises(exc, match=message(*parts)):
        call()


def test_negative_areas_and_non_bool_use_11_point_are_rejected():
    # A negative 'area' fell in no size range, so its box was silently ignored (map -1);
    # use_11_point='no' is truthy and chose the 11-point average.
    det = [{"boxes": [[0.0, 0.0, 10.0, 10.0]], "scores": [0.5], "classes": [0]}]
    gt = [{"boxes": [[0.0, 0.0, 10.0, 10.0]], "classes": [0], "area": [-5.0]}]
    with pytest.raises(
        ValueError, match=re.escape("evaluate(): ground_truth[0]['area'] must be >= 0")
    ):
        evaluate(det, gt)
    with pytest.raises(TypeError, match=r"^voc_evaluate\(\): use_11_point must be a bool, got str"):
        voc_evaluate(det, [{"boxes": [[0.0, 0.0, 1.0, 1.0]], "classes": [0]}], use_11_point="no")
    with pytest.raises(TypeError, match=r"^voc_ap\(\): use_11_point must be a bool, got int"):
        voc_ap([0.5, 1.0], [1.0, 0.5], use_11_point=1)
