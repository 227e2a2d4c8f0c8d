"""Selective search: the native grouping and ``cnnkit.ops.selective_search`` against the
reference, the boxes' invariants, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, _proposals, ops
from cnnkit import reference as ref


@st.composite
def groupings(draw):
    """(labels, colour_bins, texture_bins) from a segmentation of a small random image."""
    h, w = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    levels = draw(st.sampled_from([2, 4, 256]))
    image = (rng.integers(0, levels, (h, w, 3)) * (255 // (levels - 1))).astype(np.uint8)
    labels = ops.felzenszwalb(image, scale=draw(st.floats(1, 300)), sigma=0.0, min_size=1)
    colour_channels = draw(st.integers(1, 3))
    colour = rng.integers(0, 25, (h, w, colour_channels)).astype(np.uint8)
    texture = rng.integers(0, draw(st.sampled_from([1, 3, 10])), (h, w, colour_channels * 8))
    return labels, colour, texture.astype(np.uint8)


@given(groupings(), st.sampled_from(list(itertools.product([False, True], repeat=4))))
def test_grouping_matches_reference(problem, flags):
    labels, colour, texture = problem
    got = _core.group_regions(labels, colour, texture, *flags)
    want = ref.group_regions(labels, colour, texture, *flags)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    # a connected image ends in one region, the whole image, after n - 1 merges
    n = labels.max() + 1
    assert len(got) == 2 * n - 1
    h, w = labels.shape
    assert np.array_equal(got[-1], [0, 0, w, h])


@settings(max_examples=25)
@given(groupings())
def test_grouping_under_several_strategies_matches_one_at_a_time(problem):
    labels, colour, texture = problem
    strategies = ["CTSF", "TSF", "F", "S", "", "CT"]
    got = _core.group_regions_many(labels, colour, texture, strategies)
    assert len(got) == len(strategies)
    for terms, boxes in zip(strategies, got):
        flags = [t in terms for t in "CTSF"]
        assert np.array_equal(boxes, _core.group_regions(labels, colour, texture, *flags))


@pytest.mark.parametrize(
    ("strategies", "error", "match"),
    [
        ("CTSF", TypeError, "strategies must be a sequence of str, got str"),
        ([1], TypeError, "strategies must hold str, got int"),
        (["CTX"], ValueError, "strategies must hold strings of the letters C, T, S and F"),
    ],
)
def test_grouping_rejects_bad_strategies(strategies, error, match):
    labels = np.zeros((3, 3), np.int64)
    args = (labels, np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 24), np.uint8))
    with pytest.raises(error, match=r"^group_regions_many\(\): " + match):
        _core.group_regions_many(*args, strategies)


@st.composite
def small_images(draw):
    shape = (draw(st.integers(1, 14)), draw(st.integers(1, 14)), 3)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, 256, shape)
    # a few bright rectangles, so that there are several segments
    for _ in range(draw(st.integers(0, 3))):
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        x[y0 : y0 + 6, x0 : x0 + 6] = rng.integers(0, 256, 3)
    if draw(st.booleans()):
        return x.astype(np.uint8)
    return (x / 255.0).astype(draw(st.sampled_from([np.float32, np.float64])))


@settings(max_examples=15)
@given(small_images(), st.integers(0, 2**31), st.sampled_from(["single", "fast", "quality"]))
def test_matches_reference(image, seed, mode):
    got = ops.selective_search(image, mode=mode, seed=seed)
    want = ref.selective_search(image, mode=mode, seed=seed)
    assert got.dtype == np.float32 and np.array_equal(got, want)


@given(small_images(), st.integers(0, 2**31))
def test_boxes_are_unique_integral_and_inside(image, seed):
    h, w = image.shape[:2]
    boxes = ops.selective_search(image, seed=seed)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
    assert np.array_equal(boxes, np.round(boxes))
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    assert any(np.array_equal(b, [0, 0, w, h]) for b in boxes)


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((48, 64, 3), 30, np.uint8)
    image[5:25, 8:30] = (200, 40, 40)
    image[28:45, 35:60] = (40, 200, 60)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


def test_seed_orders_the_same_boxes():
    a = ops.selective_search(_photo(), seed=1)
    b = ops.selective_search(_photo(), seed=np.random.default_rng(1))
    c = ops.selective_search(_photo(), seed=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(np.unique(a, axis=0), np.unique(c, axis=0))


def test_finds_the_objects():
    boxes = ops.selective_search(_photo())
    for target in ([8, 5, 30, 25], [35, 28, 60, 45]):
        assert ops.box_iou(boxes, np.array([target], np.float32)).max() >= 0.7


def test_quality_finds_more_boxes_than_fast_and_fast_than_single():
    single, fast, quality = (
        len(ops.selective_search(_photo(), mode=mode)) for mode in ("single", "fast", "quality")
    )
    assert single < fast < quality


def test_grey_is_repeated_and_rgba_loses_alpha_with_a_warning():
    rgb = _photo()
    grey = rgb[:, :, 1]
    repeated = np.repeat(grey[:, :, None], 3, axis=2)
    assert np.array_equal(ops.selective_search(grey), ops.selective_search(repeated))
    assert np.array_equal(ops.selective_search(grey[:, :, None]), ops.selective_search(repeated))
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 7, np.uint8)], axis=2)
    with pytest.warns(UserWarning, match=r"^selective_search\(\): image has 4 channels"):
        got = ops.selective_search(rgba)
    assert np.array_equal(got, ops.selective_search(rgb))


def test_threads_agree():
    before = cnnkit.get_num_threads()
    try:
        cnnkit.set_num_threads(1)
        one = ops.selective_search(_photo(), mode="quality")
        cnnkit.set_num_threads(3)
        many = ops.selective_search(_photo(), mode="quality")
    finally:
        cnnkit.set_num_threads(before)
    assert np.array_equal(one, many)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": np.zeros((0, 5, 3), np.uint8)}, ValueError, "image must not be empty"),
        ({"image": np.zeros((5, 5, 2), np.uint8)}, ValueError, "image must have shape"),
        ({"image": np.zeros(5, np.uint8)}, ValueError, "image must have shape"),
        ({"image": np.zeros((5, 5, 3), np.int32)}, TypeError, "image must have dtype uint8"),
        ({"image": np.zeros((5, 5, 3), np.uint16)}, TypeError, "image must have dtype uint8"),
        ({"image": np.zeros((5, 5, 3), np.float16)}, TypeError, "image must have dtype uint8"),
        ({"image": np.full((5, 5, 3), np.nan)}, ValueError, "image must be finite"),
        (
            {"image": np.full((5, 5, 3), 2.0)},
            ValueError,
            r"image must hold float values in \[0, 1\]",
        ),
        ({"mode": "slow"}, ValueError, "mode must be 'single', 'fast' or 'quality', got 'slow'"),
        ({"mode": 1}, TypeError, "mode must be a str, got int"),
        ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
        ({"seed": 1.5}, TypeError, "seed must be an int or a numpy.random.Generator, got float"),
    ],
)
def test_rejects_bad_input(kwargs, error, match):
    kwargs = {"image": np.zeros((5, 5, 3), np.uint8), **kwargs}
    with pytest.raises(error, match=r"^selective_search\(\): " + match):
        ops.selective_search(**kwargs)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.zeros((3, 3), np.int32),), TypeError, "labels must have dtype int64"),
        ((np.zeros((0, 3), np.int64),), ValueError, "labels must have a non-empty shape"),
        ((np.full((3, 3), -1, np.int64),), ValueError, r"labels must hold labels in \[0, H \* W\)"),
        ((np.full((3, 3), 2, np.int64),), ValueError, "labels must use every value"),
        (
            (np.zeros((3, 3), np.int64), np.zeros((3, 4, 3), np.uint8)),
            ValueError,
            r"colour_bins must have shape \(3, 3, C\)",
        ),
        (
            (np.zeros((3, 3), np.int64), np.full((3, 3, 3), 25, np.uint8)),
            ValueError,
            "colour_bins must hold bins below 25, got 25",
        ),
        (
            (np.zeros((3, 3), np.int64), np.zeros((3, 3, 3), np.uint8), np.full((3, 3, 24), 10.0)),
            TypeError,
            "texture_bins must have dtype uint8",
        ),
    ],
)
def test_grouping_rejects_bad_input(args, error, match):
    full = (
        *args,
        *(np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 24), np.uint8))[len(args) - 1 :],
    )
    with pytest.raises(error, match=r"^group_regions\(\): " + match):
        _core.group_regions(*full, True, True, True, True)


def test_non_contiguous_images_give_the_same_boxes():
    image = _photo()
    wide = np.zeros((48, 128, 3), np.uint8)
    wide[:, ::2] = image
    assert np.array_equal(ops.selective_search(wide[:, ::2]), ops.selective_search(image))
    assert np.array_equal(
        ops.selective_search(np.asfortranarray(image)), ops.selective_search(image)
    )


@st.composite
def feature_images(draw, channels=None):
    """(H, W, C) float64 in [0, 1]: few levels (ties, flat areas, zero gradients) or many."""
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    c = channels or draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    levels = draw(st.sampled_from([1, 2, 4, 256]))
    if levels == 256:
        return rng.random((h, w, c))
    return rng.integers(0, levels, (h, w, c)) / max(levels - 1, 1)


@given(feature_images(channels=3))
def test_native_hsv_is_the_numpy_conversion_bit_for_bit(rgb):
    got = _core.hsv_image(rgb)
    want = _proposals.colour_space(rgb, "hsv")
    assert got.dtype == np.float64 and np.array_equal(got, want)


@given(feature_images())
def test_native_texture_bins_are_the_numpy_ones(x):
    got = _core.texture_bins(x)
    assert got.dtype == np.uint8 and np.array_equal(got, _proposals.texture_bins(x))


def test_native_features_of_a_larger_image_and_a_strided_view():
    # smooth ramps with noise and a few flat blocks: long rows, varied gradients
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:70, 0:90] / 90.0
    rgb = np.clip(np.stack([xx, yy, xx * yy], 2) + 0.05 * rng.standard_normal((70, 90, 3)), 0, 1)
    rgb[10:30, 40:60] = [0.2, 0.7, 0.7]
    view = rgb[::2, ::-1]
    for x in (rgb, view):
        hsv = _core.hsv_image(x)
        assert np.array_equal(hsv, _proposals.colour_space(x, "hsv"))
        for space in (hsv, _proposals.colour_space(x, "lab")):
            assert np.array_equal(_core.texture_bins(space), _proposals.texture_bins(space))


@pytest.mark.parametrize(
    ("fn", "arg", "error", "match"),
    [
        (_core.hsv_image, np.zeros((2, 2, 3), np.float32), TypeError, "hsv_image.*float64"),
        (_core.hsv_image, np.zeros((2, 2, 4)), ValueError, r"hsv_image.*\(H, W, 3\)"),
        (_core.texture_bins, np.zeros((0, 2, 1)), ValueError, "texture_bins.*non-empty"),
        (_core.texture_bins, np.zeros((2, 2)), ValueError, "texture_bins.*non-empty"),
        (_core.texture_bins, np.zeros((2, 2, 1), np.uint8), TypeError, "texture_bins.*float64"),
    ],
)
def test_native_features_reject_bad_input(fn, arg, error, match):
    with pytest.raises(error, match=match):
        fn(arg)
