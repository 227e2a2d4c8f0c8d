"""R-CNN and Fast R-CNN (cnnkit.detection.rcnn): the box parametrisation, the warp, the
proposal sampling, the multi-task loss and its gradient, detection with a known classifier,
tiny trainings of both detectors, the model file, and the bad-input messages; and the worked
example (examples/rcnn.py) at a tiny size."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnnkit
from cnnkit import datasets, ops
from cnnkit.autograd import Tensor
from cnnkit.detection import (
    FastRCNN,
    ProposalLoss,
    RCNNClassifier,
    apply_deltas,
    box_deltas,
    evaluate,
    fast_rcnn,
    fast_rcnn_detect,
    proposal_recall,
    rcnn_classifier,
    rcnn_detect,
    sample_proposals,
    train_fast_rcnn,
    train_rcnn,
    warp_proposals,
)

from .gradcheck import check_gradients

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def boxes_strategy(n: int):
    corner = st.floats(0, 50, allow_nan=False, width=32)
    side = st.floats(1, 40, allow_nan=False, width=32)
    return st.lists(st.tuples(corner, corner, side, side), min_size=n, max_size=n).map(
        lambda rows: np.array([[x, y, x + w, y + h] for x, y, w, h in rows], np.float32)
    )


@given(boxes_strategy(6), boxes_strategy(6))
def test_deltas_round_trip(proposals, targets):
    d = box_deltas(proposals, targets)
    assert d.shape == (6, 4) and d.dtype == np.float32
    np.testing.assert_allclose(apply_deltas(proposals, d), targets, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(box_deltas(proposals, proposals), 0, atol=1e-5)


def test_deltas_of_a_shift_and_a_doubling():
    p = np.array([[0.0, 0.0, 10.0, 20.0]])
    np.testing.assert_allclose(
        box_deltas(p, p + np.array([5, 0, 5, 0])), [[5.0, 0, 0, 0]], atol=1e-6
    )
    np.testing.assert_allclose(
        box_deltas(p, [[-5.0, -10.0, 15.0, 30.0]]), [[0, 0, 5 * np.log(2), 5 * np.log(2)]], 1e-6
    )


def painted(colour=(0.9, 0.2, 0.1)) -> np.ndarray:
    image = np.zeros((40, 50, 3), np.float32)
    image[10:30, 5:25] = colour
    return image


def test_warp_crops_each_box_to_the_size():
    crops = warp_proposals(painted(), [[5, 10, 25, 30], [30, 0, 50, 10]], 8)
    assert crops.shape == (2, 8, 8, 3) and crops.dtype == np.float32
    np.testing.assert_allclose(crops[0], np.broadcast_to([0.9, 0.2, 0.1], (8, 8, 3)), atol=1e-6)
    np.testing.assert_allclose(crops[1], 0, atol=1e-6)
    # (height, width) and uint8 in: the same crop of the same pixels
    u8 = np.round(painted() * 255).astype(np.uint8)
    tall = warp_proposals(u8, [[5, 10, 25, 30]], (6, 4))
    assert tall.shape == (1, 6, 4, 3)
    np.testing.assert_allclose(tall[0], np.round(0.9 * 255) / 255 * (tall[0] > 0.5), atol=0.5)
    assert warp_proposals(painted(), np.zeros((0, 4)), 8).shape == (0, 8, 8, 3)


def test_warp_is_roi_align_of_the_image():
    rng = np.random.default_rng(0)
    image = rng.random((24, 30, 3)).astype(np.float32)
    boxes = np.array([[0, 0, 30, 24], [3.5, 2, 9, 20]], np.float32)
    expected = ops.roi_align(image[None], [boxes], (5, 7), 1.0, 2, True)
    np.testing.assert_array_equal(warp_proposals(image, boxes, (5, 7)), expected)


def test_sampling_follows_the_iou_rules():
    gt = np.array([[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 60.0, 45.0]])
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 55, (400, 2))
    sizes = rng.uniform(4, 40, (400, 2))
    near = np.repeat(gt, 20, axis=0) + rng.uniform(-2, 2, (40, 4))  # positives to draw from
    proposals = np.concatenate([np.concatenate([corners, corners + sizes], axis=1), near])
    proposals = proposals.astype(np.float32)
    boxes, y = sample_proposals(proposals, gt, [2, 0], count=64, rng=3)
    assert boxes.shape == (64, 4) and y.shape == (64, 5)
    best = ops.box_iou(boxes, gt).max(axis=1)
    fg = y[:, 0] > 0
    assert fg.sum() == 16  # a quarter of 64
    assert np.all(best[fg] >= 0.5) and np.all(best[~fg] < 0.3)
    assert set(np.unique(y[fg, 0])) <= {1, 3}  # classes 0 and 2, shifted past background
    np.testing.assert_array_equal(y[~fg, 1:], 0)
    owner = ops.box_iou(boxes[fg], gt).argmax(axis=1)
    np.testing.assert_allclose(apply_deltas(boxes[fg], y[fg, 1:]), gt[owner], atol=1e-3)
    # no ground truth: all background; few positives: fewer than the quarter
    _, y0 = sample_proposals(proposals, np.zeros((0, 4)), [], count=10)
    assert len(y0) == 10 and np.all(y0 == 0)
    _, y1 = sample_proposals(proposals[:0], gt, [0, 1], count=64)
    assert (y1[:, 0] > 0).sum() == 2  # only the ground-truth boxes themselves


def test_proposal_loss_gradient():
    rng = np.random.default_rng(0)
    y = np.zeros((5, 5))
    y[:, 0] = [0, 1, 2, 0, 2]
    y[:, 1:] = rng.normal(0, 1.5, (5, 4))  # residuals on both sides of smooth-L1's kink
    loss = ProposalLoss(2, box_weight=0.7)
    check_gradients(lambda p: loss.call(y, p), [rng.normal(0, 1, (5, 11))])


def test_proposal_loss_values():
    p = np.zeros((2, 11))
    y = np.array([[0, 0, 0, 0, 0], [2, 0.5, 3.0, 0, 0]], float)
    per = ProposalLoss(2).call(y, Tensor(p)).data
    # background: log 3; class 2: log 3 + 0.5 * 0.5**2 + (3 - 0.5)
    np.testing.assert_allclose(per, [np.log(3), np.log(3) + 0.125 + 2.5])
    with pytest.raises(ValueError, match=r"ProposalLoss\(\): y_pred must have shape \(K, 11\)"):
        ProposalLoss(2).call(y, Tensor(np.zeros((2, 10))))
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 2\]"):
        ProposalLoss(2).call(np.array([[3, 0, 0, 0, 0.0]]), Tensor(np.zeros((1, 11))))


def red_classifier(crops: np.ndarray) -> np.ndarray:
    """Class 1 for mostly red crops, class 2 for mostly green, background otherwise."""
    red = crops[..., 0].mean(axis=(1, 2)) - crops[..., 1].mean(axis=(1, 2))
    out = np.full((len(crops), 3), 0.02)
    out[np.arange(len(crops)), np.where(red > 0.5, 1, np.where(red < -0.5, 2, 0))] = 0.96
    return out


def test_detect_with_a_known_classifier_and_regressor():
    image = painted()
    image[2:12, 30:45] = (0.1, 0.9, 0.1)
    proposals = [[5, 10, 25, 30], [6, 11, 25, 30], [30, 2, 45, 12], [0, 0, 4, 4], [5, 10, 24, 29]]
    found = rcnn_detect(red_classifier, image, proposals=proposals, input_size=8, iou_threshold=0.5)
    assert found["classes"].dtype == np.int64
    order = np.argsort(found["classes"], kind="stable")
    assert sorted(found["classes"].tolist()) == [0, 1]  # NMS left one box per object
    np.testing.assert_allclose(found["boxes"][order[0]], proposals[0])
    np.testing.assert_allclose(found["boxes"][order[1]], proposals[2])
    assert np.all(np.diff(found["scores"]) <= 0)

    def shift(crops):  # every box moved 2 px right (deltas relative to a 20 px wide box)
        d = np.zeros((len(crops), 8), np.float32)
        d[:, [0, 4]] = 10 * 2 / 20
        return d

    moved = rcnn_detect(
        red_classifier, image, proposals=proposals[:1], input_size=8, regressor=shift
    )
    np.testing.assert_allclose(moved["boxes"], [[7, 10, 27, 30]], atol=1e-5)
    clipped = rcnn_detect(
        red_classifier, image, proposals=[[40, 0, 50, 10]], input_size=8, regressor=shift,
        score_threshold=0.0,
    )  # fmt: skip
    assert clipped["boxes"][:, 2].max() <= 50  # regressed boxes stay inside the image
    none = rcnn_detect(red_classifier, image, proposals=np.zeros((0, 4)), input_size=8)
    assert none["boxes"].shape == (0, 4) and none["classes"].dtype == np.int64


def test_detect_runs_selective_search_by_default():
    image = painted()
    found = rcnn_detect(red_classifier, image, input_size=8, iou_threshold=0.3)
    assert found["classes"].tolist()[:1] == [0]
    assert ops.box_iou(found["boxes"][:1], [[5, 10, 25, 30]])[0, 0] >= 0.7


def nms_holds(found, threshold):
    for c in np.unique(found["classes"]):
        b = found["boxes"][found["classes"] == c]
        iou = ops.box_iou(b, b) - np.eye(len(b))
        assert iou.max(initial=0) <= threshold + 1e-6


def test_tiny_rcnn_and_fast_rcnn_learn_the_shapes(tmp_path):
    x, y = datasets.shapes(128, image_size=32, seed=0)
    xt, yt = datasets.shapes(24, image_size=32, seed=1)
    proposals = [ops.selective_search(image) for image in x]
    model = train_rcnn(x, y, num_classes=3, input_size=16, epochs=2, width=8, proposals=proposals)
    assert isinstance(model, RCNNClassifier) and model.num_classes == 3
    found = [rcnn_detect(model, im, iou_threshold=0.3) for im in xt]
    for f in found:
        nms_holds(f, 0.3)
        assert f["boxes"].shape[1] == 4 and np.all(f["classes"] < 3)
    rcnn_map = evaluate(found, yt)["map_50"]
    fast = train_fast_rcnn(x, y, num_classes=3, epochs=2, width=8, proposals=proposals)
    assert isinstance(fast, FastRCNN)
    fast_found = fast_rcnn_detect(fast, xt, iou_threshold=0.3)
    assert len(fast_found) == len(xt)
    fast_map = evaluate(fast_found, yt)["map_50"]
    # chance is near 0; measured 0.6 for both at this tiny size
    assert rcnn_map > 0.2 and fast_map > 0.2, (rcnn_map, fast_map)
    # one image at a time gives the same detections as the batch
    single = fast_rcnn_detect(fast, xt[3], iou_threshold=0.3)[0]
    np.testing.assert_allclose(single["scores"], fast_found[3]["scores"], rtol=1e-5)
    # the trained detector's file gives the same detections
    fast.save(tmp_path / "fast.cnnkit")
    back = cnnkit.load_model(tmp_path / "fast.cnnkit")
    assert isinstance(back, FastRCNN) and back.num_classes == 3
    for want, got in zip(fast_found, fast_rcnn_detect(back, xt, iou_threshold=0.3)):
        for key in ("boxes", "scores", "classes"):
            np.testing.assert_array_equal(got[key], want[key])


def test_rcnn_classifier_file_round_trip(tmp_path):
    model = rcnn_classifier(16, num_classes=2, class_names=("a", "b"), width=4)
    model.compile(optimizer="adam", loss=ProposalLoss(2))
    model.save(tmp_path / "rcnn.cnnkit")
    back = cnnkit.load_model(tmp_path / "rcnn.cnnkit")
    assert isinstance(back, RCNNClassifier) and back.num_classes == 2
    assert back.class_names == ("a", "b")
    image = np.random.default_rng(0).random((20, 20, 3)).astype(np.float32)
    boxes = [[0, 0, 10, 10], [5, 5, 20, 20]]
    a = rcnn_detect(model, image, proposals=boxes, score_threshold=0)
    b = rcnn_detect(back, image, proposals=boxes, score_threshold=0)
    np.testing.assert_array_equal(a["scores"], b["scores"])


def test_fast_rcnn_file_round_trip(tmp_path):
    model = fast_rcnn(16, num_classes=2, class_names=("a", "b"), width=2, pool_size=3)
    rng = np.random.default_rng(0)
    images = rng.random((2, 16, 16, 3)).astype(np.float32)
    rois = np.array([[0, 0, 0, 8, 8], [1, 2, 3, 16, 12]], np.float32)
    # a training-mode pass moves the batch-normalisation statistics, which the file keeps
    model([images, rois], training=True)
    model.save(tmp_path / "fast.cnnkit")
    back = cnnkit.load_model(tmp_path / "fast.cnnkit")
    assert isinstance(back, FastRCNN)
    assert (back.num_classes, back.class_names, back.stride, back.pool_size) == (
        2,
        ("a", "b"),
        4,
        3,
    )
    assert [v.name for v in back.weights] == [v.name for v in model.weights]
    for a, b in zip(model.weights, back.weights):
        np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(back([images, rois]).data, model([images, rois]).data)
    # a fresh process finds the class without importing cnnkit.detection first
    code = "import sys, cnnkit; print(type(cnnkit.load_model(sys.argv[1])).__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "fast.cnnkit")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "FastRCNN", done.stderr[-2000:]
    with pytest.raises(ValueError, match=r"FastRCNN\(\): inputs must be \[images, rois\]"):
        model(images)
    with pytest.raises(TypeError, match=r"FastRCNN\(\): head must be a Sequential, got str"):
        FastRCNN(model.backbone, "head", num_classes=2, stride=4, pool_size=3)


def test_recall():
    targets = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]])}, {"boxes": np.zeros((0, 4))}]
    proposals = [np.array([[20, 20, 30, 31], [0, 0, 10, 14]]), np.zeros((0, 4))]
    r = proposal_recall(proposals, targets, counts=(1, 2), thresholds=(0.5, 0.9))
    assert r == {(1, 0.5): 0.5, (1, 0.9): 0.5, (2, 0.5): 1.0, (2, 0.9): 0.5}


@given(hnp.arrays(np.float32, (3, 4), elements=st.floats(-5, 60, width=32)))
def test_proposals_are_checked(proposals):
    image = painted()
    inside = (
        np.all(proposals[:, :2] >= 0)
        and np.all(proposals[:, 2] <= 50)
        and np.all(proposals[:, 3] <= 40)
        and np.all(proposals[:, 2:] > proposals[:, :2])
    )
    if inside:
        rcnn_detect(red_classifier, image, proposals=proposals, input_size=4)
    else:
        with pytest.raises(ValueError, match=r"rcnn_detect\(\): proposals must"):
            rcnn_detect(red_classifier, image, proposals=proposals, input_size=4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": np.zeros((8, 8, 3), np.int32)}, TypeError, "image must have dtype uint8"),
        ({"image": np.zeros((8, 8, 5))}, ValueError, r"image must have shape"),
        ({"image": np.zeros((0, 8, 3))}, ValueError, "image must not be empty"),
        ({"image": np.full((8, 8, 3), 2.0)}, ValueError, r"float values in \[0, 1\]"),
        ({"proposals": [[-1, 0, 4, 4]]}, ValueError, "proposals must lie inside the 8 x 8"),
        ({"proposals": [[0, 0, 9, 4]]}, ValueError, r"got \[0.0, 0.0, 9.0, 4.0\] at row 0"),
        ({"proposals": [[4, 0, 4, 4]]}, ValueError, "x2 > x1 and y2 > y1"),
        ({"proposals": [[0, 0, 4]]}, ValueError, r"proposals must have shape \(K, 4\)"),
        ({"proposals": [["a", "b", "c", "d"]]}, TypeError, "proposals must hold real numbers"),
        ({"proposals": [[0, 0, np.nan, 4]]}, ValueError, "proposals must be finite"),
        ({"score_threshold": 1.5}, ValueError, r"score_threshold must lie in \[0, 1\]"),
        ({"iou_threshold": "x"}, TypeError, "iou_threshold must be a real number"),
        ({"max_proposals": 0}, ValueError, "max_proposals must be a positive int"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
        ({"input_size": None}, ValueError, "input_size must be given"),
    ],
)
def test_rcnn_detect_rejects_bad_input(kwargs, error, match):
    args = {"image": np.zeros((8, 8, 3), np.float32), "proposals": [[0, 0, 4, 4]], "input_size": 4}
    args.update(kwargs)
    with pytest.raises(error, match=r"rcnn_detect\(\): .*" + match):
        rcnn_detect(red_classifier, **args)


def test_grey_and_rgba_are_converted_with_a_warning():
    grey = np.zeros((8, 8), np.uint8)
    with pytest.warns(UserWarning, match=r"rcnn_detect\(\): image has one channel"):
        rcnn_detect(red_classifier, grey, proposals=[[0, 0, 4, 4]], input_size=4)
    rgba = np.zeros((8, 8, 4), np.float32)
    with pytest.warns(UserWarning, match="4 channels; taken as RGBA"):
        rcnn_detect(red_classifier, rgba, proposals=[[0, 0, 4, 4]], input_size=4)


def test_bad_classifier_and_regressor_outputs_are_named():
    image = painted()
    with pytest.raises(ValueError, match="classifier must output probabilities"):
        rcnn_detect(lambda c: np.ones((len(c), 3)), image, proposals=[[0, 0, 4, 4]], input_size=4)
    with pytest.raises(ValueError, match=r"classifier must output class probabilities of shape"):
        rcnn_detect(lambda c: np.ones(len(c)), image, proposals=[[0, 0, 4, 4]], input_size=4)
    with pytest.raises(ValueError, match=r"regressor must output box deltas of shape \(1, 8\)"):
        rcnn_detect(
            red_classifier, image, proposals=[[0, 0, 4, 4]], input_size=4,
            regressor=lambda c: np.zeros((len(c), 4)),
        )  # fmt: skip
    model = rcnn_classifier(8, num_classes=2, width=2)
    model.num_classes = 3
    with pytest.raises(ValueError, match=r"num_classes=3 must output \(K, 16\)"):
        rcnn_detect(model, image, proposals=[[0, 0, 4, 4]])


def test_fast_rcnn_rejects_bad_input():
    model = fast_rcnn(16, num_classes=2, width=2)
    images = np.zeros((2, 16, 16, 3), np.float32)
    with pytest.raises(TypeError, match=r"fast_rcnn_detect\(\): model must be a FastRCNN"):
        fast_rcnn_detect(red_classifier, images)
    with pytest.raises(ValueError, match="proposals must hold one array per image"):
        fast_rcnn_detect(model, images, proposals=[[[0, 0, 4, 4]]])
    with pytest.raises(ValueError, match="proposals must lie inside the 16 x 16 image"):
        fast_rcnn_detect(model, images, proposals=[[[0, 0, 4, 4]], [[0, 0, 17, 4]]])
    with pytest.raises(ValueError, match=r"fast_rcnn\(\): image_size must be divisible by 4"):
        fast_rcnn(18, num_classes=2)
    with pytest.raises(ValueError, match=r"train_fast_rcnn\(\): images and targets must have"):
        train_fast_rcnn(images, [], num_classes=2)
    with pytest.raises(ValueError, match=r"rcnn_classifier\(\): num_classes must be a positive"):
        rcnn_classifier(16, num_classes=0)
    out = fast_rcnn_detect(model, images, proposals=[np.zeros((0, 4)), [[0, 0, 4, 4]]])
    assert len(out) == 2 and out[0]["boxes"].shape == (0, 4)


def test_the_worked_example_runs_at_a_tiny_size():
    path = EXAMPLES / "rcnn.py"
    if not path.exists():
        pytest.skip(f"{path} is not here (tests run outside the source tree)")
    spec = importlib.util.spec_from_file_location("example_rcnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run(train=24, test=6, epochs=1, yolo_epochs=1, image_size=32, print_fn=str)
    lines: list[str] = []
    module.report(result, print_fn=lines.append)
    assert [row["method"] for row in result["table"]] == ["R-CNN", "Fast R-CNN", "YOLO (demo)"]
    assert all(0 <= row["map_50"] <= 1 and row["images_per_second"] > 0 for row in result["table"])
    assert 0 < result["recall"]["fast"][100, 0.5] <= 1
    assert any(line.startswith("| R-CNN |") for line in lines)


BOX2 = [[0.0, 0.0, 10.0, 10.0], [2.0, 3.0, 8.0, 9.0]]


@pytest.mark.parametrize(
    ("call", "exc", "text"),
    [
        # (2, 2) was reshaped into one box, and one proposal broadcast against two targets.
        (
            lambda: box_deltas(np.zeros((2, 2)), np.zeros((2, 2))),
            ValueError,
            "proposals must have shape (K, 4), got (2, 2)",
        ),
        (
            lambda: box_deltas(BOX2[:1], BOX2),
            ValueError,
            "proposals and targets must have the same length, got 1 and 2",
        ),
        (
            lambda: box_deltas([[0, 0, 0, 0]], BOX2[:1]),
            ValueError,
            "proposals must have x2 > x1 and y2 > y1",
        ),
        (
            lambda: box_deltas(BOX2[:1], [[5, 5, 5, 9]]),
            ValueError,
            "targets must have x2 > x1 and y2 > y1",
        ),
        (lambda: box_deltas([[0, np.nan, 1, 1]], BOX2[:1]), ValueError, "proposals must be finite"),
        (
            lambda: box_deltas([["a", "b", "c", "d"]], BOX2[:1]),
            TypeError,
            "proposals must hold real numbers",
        ),
        (
            lambda: apply_deltas(BOX2[:1], np.zeros((3, 4))),
            ValueError,
            "proposals and deltas must have the same length, got 1 and 3",
        ),
        (
            lambda: apply_deltas(BOX2, np.zeros(8)),
            ValueError,
            "deltas must have shape (K, 4), got (8,)",
        ),
    ],
)
def test_box_deltas_and_apply_deltas_reject_what_they_used_to_reshape(call, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        call()


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        (
            {"boxes": [[0.0, 0.0], [10.0, 10.0]]},
            ValueError,
            "boxes must have shape (K, 4), got (2, 2)",
        ),
        (
            {"classes": [-1]},
            ValueError,
            "classes must be a 1-D array of class indices >= 0, got [-1]",
        ),
        ({"classes": [1.7]}, ValueError, "classes must be a 1-D array of class indices >= 0"),
        (
            {"positive_fraction": float("nan")},
            ValueError,
            "positive_fraction must lie in [0, 1], got nan",
        ),
        ({"positive_fraction": -0.5}, ValueError, "positive_fraction must lie in [0, 1]"),
        ({"positive_iou": float("nan")}, ValueError, "positive_iou must lie in [0, 1], got nan"),
        ({"background_iou": "0.3"}, TypeError, "background_iou must be a real number, got str"),
        (
            {"positive_iou": 0.2, "background_iou": 0.6},
            ValueError,
            "background_iou must be <= positive_iou, got 0.6 and 0.2",
        ),
        ({"rng": "abc"}, TypeError, "rng must be an int or a numpy.random.Generator, got str"),
    ],
)
def test_sample_proposals_rejects_bad_arguments(kwargs, exc, text):
    # Each used to return a sample: a wrong one (boxes, classes, thresholds), an empty one
    # (NaN positive_iou), or NumPy's error about something else.
    args = {"boxes": BOX2[:1], "classes": [1], "count": 4, **kwargs}
    with pytest.raises(exc, match="^" + re.escape("sample_proposals(): ") + ".*" + re.escape(text)):
        sample_proposals(BOX2, **args)


def test_proposal_recall_and_proposal_loss_check_their_inputs():
    # proposal_recall reshaped a (2, 2) ground truth into one box and a (2, 2) proposal array
    # into one proposal, silently; a target without 'boxes' was a bare KeyError.
    # ProposalLoss(box_weight=nan) made every loss NaN.
    one = [{"boxes": BOX2[:1]}]
    with pytest.raises(
        ValueError,
        match=re.escape(
            "proposal_recall(): targets[0]['boxes'] must have shape (K, 4), got (2, 2)"
        ),
    ):
        proposal_recall([BOX2], [{"boxes": [[0.0, 0.0], [10.0, 10.0]]}], counts=(1,))
    with pytest.raises(
        ValueError,
        match=re.escape("proposal_recall(): proposals[0] must have shape (K, 4), got (2, 2)"),
    ):
        proposal_recall([np.zeros((2, 2))], one, counts=(1,))
    with pytest.raises(
        ValueError, match=re.escape("proposal_recall(): targets[0] must be a dict with 'boxes'")
    ):
        proposal_recall([BOX2], [{"box": BOX2}], counts=(1,))
    assert proposal_recall([BOX2], one, counts=(1,), thresholds=(0.5,)) == {(1, 0.5): 1.0}
    with pytest.raises(ValueError, match=r"^ProposalLoss\(\): box_weight must be >= 0, got nan"):
        ProposalLoss(2, box_weight=float("nan"))


@pytest.mark.parametrize("train", [train_rcnn, train_fast_rcnn])
@pytest.mark.parametrize(
    ("target", "text"),
    [
        # Found by the loss only if a sample drew the box (or never, with few proposals).
        (
            {"boxes": [[0.0, 0.0, 8.0, 8.0]], "classes": [5]},
            "targets[0]['classes'] must lie in [0, 2) (num_classes), got [5]",
        ),
        (
            {"boxes": [[0.0, 0.0, 8.0, 8.0]]},
            "targets[0] must be a dict with 'boxes' and 'classes'",
        ),  # bare KeyError
        (
            {"boxes": [[0.0, 0.0, 8.0, 8.0]], "classes": [0, 1]},
            "targets[0] must have one class per box, got 1 boxes and 2 classes",
        ),
        (
            {"boxes": [[0.0, 0.0], [8.0, 8.0]], "classes": [0]},
            "targets[0]['boxes'] must have shape (K, 4), got (2, 2)",
        ),
        (
            {"boxes": [[8.0, 0.0, 8.0, 8.0]], "classes": [0]},
            "targets[0]['boxes'] must have x2 > x1 and y2 > y1",
        ),
    ],
)
def test_training_checks_every_target_before_the_proposals(train, target, text):
    images = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match="^" + re.escape(f"{train.__name__}(): {text}")):
        train(images, [target], num_classes=2, epochs=1, proposals=[np.zeros((0, 4))])


@pytest.mark.parametrize(
    ("size", "exc", "text"),
    [
        (2.5, TypeError, "size must be an int, got float"),
        (-1, ValueError, "size must be >= 1, got -1"),
        ((4,), ValueError, "size must be an int or a tuple of 2 ints"),
    ],
)
def test_warp_proposals_checks_size_even_without_proposals(size, exc, text):
    image = np.zeros((8, 8, 3), np.float32)
    for proposals in ([[0.0, 0.0, 4.0, 4.0]], np.zeros((0, 4))):
        with pytest.raises(exc, match="^" + re.escape(f"warp_proposals(): {text}")):
            warp_proposals(image, proposals, size)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"counts": 100}, "counts"), ({"thresholds": 0.5}, "thresholds")]
)
def test_proposal_recall_names_a_lone_number_where_a_sequence_goes(kwargs, name):
    # counts=100 was "'int' object is not iterable".
    with pytest.raises(TypeError, match=rf"^proposal_recall\(\): {name} must be a sequence, got"):
        proposal_recall([BOX2], [{"boxes": BOX2[:1]}], **kwargs)
