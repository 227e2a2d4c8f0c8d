"""Procedural datasets: determinism, layout, tight boxes, class and size variety,
the occlusion limit, the single-object target layout and every rejection path."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit.datasets import SHAPE_NAMES, shapes, single_object

# Documented contrast: object pixels have max channel >= 0.65, background <= 0.4.
THRESHOLD = 0.5


def pixel_extent(image):
    """xyxy pixel-edge box of the pixels brighter than the background."""
    ys, xs = np.nonzero(image.max(-1) > THRESHOLD)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def box_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_lazy_submodule():
    assert cnnkit.datasets.shapes is shapes


def test_generators_do_not_shadow_their_modules():
    # The functions keep the short names; their modules have names of their own, so
    # `import cnnkit.datasets.shapes_data` and the function `datasets.shapes` never collide.
    import importlib

    for module, names in (
        ("shapes_data", ("shapes", "single_object", "SHAPE_NAMES", "SingleObjectData")),
        ("landmarks_data", ("landmarks", "FLIP_PAIRS", "LANDMARK_NAMES", "LandmarkData")),
    ):
        loaded = importlib.import_module(f"cnnkit.datasets.{module}")
        assert getattr(cnnkit.datasets, module) is loaded
        for name in names:
            assert getattr(cnnkit.datasets, name) is getattr(loaded, name)
    assert callable(cnnkit.datasets.shapes) and callable(cnnkit.datasets.landmarks)


@pytest.mark.parametrize("seed_kind", ["int", "generator"])
def test_shapes_deterministic(seed_kind):
    def make(seed):
        s = seed if seed_kind == "int" else np.random.default_rng(seed)
        return shapes(20, seed=s)

    (a, ta), (b, tb), (c, _) = make(3), make(3), make(4)
    np.testing.assert_array_equal(a, b)
    for x, y in zip(ta, tb, strict=True):
        np.testing.assert_array_equal(x["boxes"], y["boxes"])
        np.testing.assert_array_equal(x["classes"], y["classes"])
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("size", [64, (48, 80), 16])
def test_shapes_layout(size):
    images, targets = shapes(30, image_size=size, seed=1)
    h, w = (size, size) if isinstance(size, int) else size
    assert images.shape == (30, h, w, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert len(targets) == 30
    for t in targets:
        k = len(t["classes"])
        assert 1 <= k <= 4
        assert t["boxes"].shape == (k, 4) and t["boxes"].dtype == np.float32
        assert t["classes"].dtype == np.int64
        b = t["boxes"]
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
        assert np.all(b[:, 2:] - b[:, :2] >= 8)
        assert np.all(b[:, 2] - b[:, 0] <= int(0.6 * w))
        assert np.all(b[:, 3] - b[:, 1] <= int(0.6 * h))
        np.testing.assert_array_equal(b, np.round(b))


def test_shapes_empty():
    images, targets = shapes(0)
    assert images.shape == (0, 64, 64, 3) and targets == []


@pytest.mark.parametrize(
    ("classes", "size"),
    [
        (SHAPE_NAMES, (40, 72)),
        (("triangle",), (40, 72)),
        (("square", "circle"), (40, 72)),
        # Very elongated ellipses and triangles (8 px by up to 300 px).
        (("circle", "triangle"), (16, 500)),
        (("circle", "triangle"), (500, 16)),
    ],
)
def test_shapes_boxes_are_tight(classes, size):
    """One object per image: the bright pixels span exactly the box, for every shape."""
    images, targets = shapes(
        150, image_size=size, classes=classes, min_objects=1, max_objects=1, seed=2
    )
    for image, t in zip(images, targets, strict=True):
        assert t["boxes"].shape == (1, 4)
        np.testing.assert_array_equal(pixel_extent(image), t["boxes"][0])


def test_shapes_are_the_named_shapes():
    """Fill ratio of the box: rectangles fill it, ellipses ~pi/4, triangles ~1/2."""
    images, targets = shapes(300, min_objects=1, max_objects=1, seed=5)
    fill = {0: [], 1: [], 2: []}
    for image, t in zip(images, targets, strict=True):
        x1, y1, x2, y2 = t["boxes"][0].astype(int)
        inside = image[y1:y2, x1:x2].max(-1) > THRESHOLD
        fill[int(t["classes"][0])].append(inside.mean())
    assert np.min(fill[1]) == 1.0
    assert 0.72 < np.mean(fill[0]) < 0.9
    assert 0.45 < np.mean(fill[2]) < 0.65
    # A triangle pointing up: its top row is narrower than its bottom row.
    for image, t in zip(images, targets, strict=True):
        if t["classes"][0] == 2:
            x1, y1, x2, y2 = t["boxes"][0].astype(int)
            inside = image[y1:y2, x1:x2].max(-1) > THRESHOLD
            assert inside[0].sum() < inside[-1].sum() == x2 - x1


def test_shapes_contrast():
    images, targets = shapes(50, seed=6)
    brightness = images.max(-1)
    assert np.all((brightness <= 0.4) | (brightness >= 0.65))
    for image, t in zip(brightness, targets, strict=True):
        covered = np.zeros(image.shape, dtype=bool)
        for x1, y1, x2, y2 in t["boxes"].astype(int):
            covered[y1:y2, x1:x2] = True
        assert not np.any(image[~covered] > THRESHOLD)


def test_shapes_classes_and_aspect_variety():
    _, targets = shapes(400, seed=7)
    classes = np.concatenate([t["classes"] for t in targets])
    boxes = np.concatenate([t["boxes"] for t in targets])
    assert set(classes.tolist()) == {0, 1, 2}
    assert np.bincount(classes).min() > 0.25 * len(classes)
    ratio = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    assert np.mean(ratio > 1.5) > 0.1 and np.mean(ratio < 0.67) > 0.1
    counts = np.array([len(t["classes"]) for t in targets])
    assert set(counts.tolist()) == {1, 2, 3, 4}


def test_shapes_class_subset_indices():
    _, targets = shapes(100, classes=("square", "circle"), seed=8)
    classes = np.concatenate([t["classes"] for t in targets])
    assert set(classes.tolist()) == {0, 1}


def test_shapes_occlusion_limit():
    _, targets = shapes(300, max_objects=6, min_objects=3, seed=9)
    overlapping = 0
    for t in targets:
        b = t["boxes"].astype(np.float64)
        for i in range(len(b)):
            for j in range(i):
                iou = box_iou(b[i], b[j])
                assert iou <= 0.3
                overlapping += iou > 0
    assert overlapping > 0  # some objects do overlap


def test_shapes_objects_stay_visible():
    """Later objects together cover at most half of an earlier object's box."""
    _, targets = shapes(200, max_objects=6, min_objects=4, seed=12)
    for t in targets:
        b = t["boxes"].astype(int)
        for j in range(len(b)):
            x1, y1, x2, y2 = b[j]
            hidden = np.zeros((y2 - y1, x2 - x1), dtype=bool)
            for i in range(j + 1, len(b)):
                hidden[
                    max(b[i][1] - y1, 0) : max(b[i][3] - y1, 0),
                    max(b[i][0] - x1, 0) : max(b[i][2] - x1, 0),
                ] = True
            assert hidden.mean() <= 0.5


def test_shapes_later_objects_on_top():
    """Where two boxes overlap, the later object's colour wins on its own pixels."""
    images, targets = shapes(200, min_objects=2, max_objects=2, classes=("square",), seed=10)
    checked = 0
    for image, t in zip(images, targets, strict=True):
        (a, b) = t["boxes"].astype(int)
        x1, y1 = max(a[0], b[0]), max(a[1], b[1])
        x2, y2 = min(a[2], b[2]), min(a[3], b[3])
        if x2 > x1 and y2 > y1:
            overlap = image[y1:y2, x1:x2].reshape(-1, 3).mean(0)
            only_a = np.ones(image.shape[:2], dtype=bool)
            only_a[b[1] : b[3], b[0] : b[2]] = False
            only_a[: a[1]] = only_a[a[3] :] = only_a[:, : a[0]] = only_a[:, a[2] :] = False
            colour_a = image[only_a].mean(0)
            colour_b = image[b[1] : b[3], b[0] : b[2]].reshape(-1, 3).mean(0)
            if np.abs(colour_a - colour_b).max() > 0.2:
                assert np.abs(overlap - colour_b).max() < np.abs(overlap - colour_a).max()
                checked += 1
    assert checked > 5


def test_single_object_layout():
    data = single_object(600, image_size=(32, 40), p_object=0.7, seed=11)
    images, y, boxes = data
    assert images.shape == (600, 32, 40, 3) and images.dtype == np.float32
    assert y.shape == (600, 8) and y.dtype == np.float32
    assert boxes.shape == (600, 4) and boxes.dtype == np.float32
    present = y[:, 0] == 1
    assert set(np.unique(y[:, 0]).tolist()) == {0.0, 1.0}
    assert abs(present.mean() - 0.7) < 0.06
    assert np.all(np.isnan(boxes[~present])) and not np.any(np.isnan(boxes[present]))
    assert np.all(y[~present] == 0)
    b = boxes[present]
    np.testing.assert_allclose(y[present, 1], (b[:, 0] + b[:, 2]) / 2 / 40, rtol=1e-6)
    np.testing.assert_allclose(y[present, 2], (b[:, 1] + b[:, 3]) / 2 / 32, rtol=1e-6)
    np.testing.assert_allclose(y[present, 3], (b[:, 3] - b[:, 1]) / 32, rtol=1e-6)
    np.testing.assert_allclose(y[present, 4], (b[:, 2] - b[:, 0]) / 40, rtol=1e-6)
    assert np.all((y[:, 1:5] >= 0) & (y[:, 1:5] <= 1))
    np.testing.assert_array_equal(y[present, 5:].sum(1), 1)
    assert np.all(y[present, 5:].sum(0) > 0)  # every class appears
    for image, box, has in zip(images, boxes, present, strict=True):
        if has:
            np.testing.assert_array_equal(pixel_extent(image), box)
        else:
            assert image.max() <= 0.4


def test_single_object_deterministic_and_extremes():
    a, b, c = single_object(30, seed=1), single_object(30, seed=1), single_object(30, seed=2)
    for x, z in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, z)
    assert not np.array_equal(a.images, c.images)
    assert np.all(single_object(20, p_object=0.0).y == 0)
    assert np.all(single_object(20, p_object=1.0).y[:, 0] == 1)
    assert single_object(0).y.shape == (0, 8)
    assert single_object(5, classes=("circle",)).y.shape == (5, 6)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n": -1}, ValueError, r"shapes\(\): n must be >= 0, got -1"),
        ({"n": 2.0}, TypeError, r"shapes\(\): n must be an int, got float"),
        ({"n": True}, TypeError, r"shapes\(\): n must be an int"),
        ({"classes": ("circle", "star")}, ValueError, r"shapes\(\): unknown class name 'star'"),
        ({"classes": ()}, ValueError, r"shapes\(\): classes must not be empty"),
        ({"classes": "circle"}, TypeError, r"shapes\(\): classes must be a sequence"),
        ({"classes": ("circle", "circle")}, ValueError, r"shapes\(\): classes must be distinct"),
        ({"max_objects": 1, "min_objects": 2}, ValueError, r"max_objects must be >= min_objects"),
        ({"min_objects": 0}, ValueError, r"shapes\(\): min_objects must be >= 1, got 0"),
        ({"max_objects": 2.5}, TypeError, r"shapes\(\): max_objects must be an int"),
        ({"image_size": 8}, ValueError, r"shapes\(\): image_size sides must be >= 16, got 8"),
        ({"image_size": (64, 10)}, ValueError, r"image_size sides must be >= 16"),
        ({"image_size": (64, 64, 3)}, TypeError, r"image_size must be an int or a pair"),
        ({"image_size": 64.0}, TypeError, r"image_size must be an int or a pair"),
        ({"seed": -1}, ValueError, r"shapes\(\): seed must be >= 0"),
        ({"seed": None}, TypeError, r"shapes\(\): seed must be an int or a numpy"),
    ],
)
def test_shapes_rejects(kwargs, exc, match):
    kwargs = {"n": 2, **kwargs}
    with pytest.raises(exc, match=match):
        shapes(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n": -3}, ValueError, r"single_object\(\): n must be >= 0, got -3"),
        ({"classes": ("hexagon",)}, ValueError, r"single_object\(\): unknown class name"),
        ({"p_object": 1.5}, ValueError, r"single_object\(\): p_object must be in \[0, 1\]"),
        ({"p_object": "a"}, TypeError, r"single_object\(\): p_object must be a real number"),
        ({"image_size": 0}, ValueError, r"single_object\(\): image_size sides must be >= 16"),
        ({"seed": "x"}, TypeError, r"single_object\(\): seed must be an int"),
    ],
)
def test_single_object_rejects(kwargs, exc, match):
    kwargs = {"n": 2, **kwargs}
    with pytest.raises(exc, match=match):
        single_object(**kwargs)


def test_import_is_light():
    """The datasets package needs NumPy only: no autograd, layers or peers are loaded."""
    import subprocess
    import sys

    code = (
        "import sys, cnnkit.datasets; "
        "heavy = {'cnnkit.autograd', 'cnnkit.layers', 'cnnkit.models', 'torch', 'PIL'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("make", ["shapes", "single_object", "landmarks"])
def test_impossible_sizes_fail_at_once(make):
    # n = 2**31 drew per-image parameters for minutes before failing; a side of 2**64 was an
    # OverflowError from NumPy's random integers.
    fn = getattr(cnnkit.datasets, make)
    with pytest.raises(MemoryError, match=rf"^{make}\(\): 2147483648 images of .* bytes"):
        fn(2**31)
    with pytest.raises(ValueError, match=rf"^{make}\(\): image_size sides must be <= 2147483647"):
        fn(2, image_size=2**64)
