"""Felzenszwalb segmentation: ``cnnkit.ops.felzenszwalb`` against the reference and
against scikit-image (skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import ops
from cnnkit import reference as ref

LAYOUTS = ("contiguous", "fortran", "channel_stride", "channels_first")


@st.composite
def images(draw, max_side: int = 12):
    """Small (H, W[, C]) images: uint8, float32 or float64, with flat patches (equal weights)."""
    shape = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    if channels is not None:
        shape = (*shape, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    levels = draw(st.sampled_from([2, 5, 256]))  # few levels: many ties
    x = rng.integers(0, levels, shape) * (255 // (levels - 1))
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.float64]))
    x = x.astype(np.uint8) if dtype == np.uint8 else (x / 255.0).astype(dtype)
    if x.ndim == 3:  # the strided layouts pad with NaN, which only floats hold
        layouts = LAYOUTS if dtype != np.uint8 else ("contiguous", "fortran", "channels_first")
        x = layout_view(x, draw(st.sampled_from(layouts)))
    return x


params = st.fixed_dictionaries(
    {
        "scale": st.floats(0.5, 800.0),
        "sigma": st.sampled_from([0.0, 0.3, 0.8, 2.0, 6.0]),
        "min_size": st.integers(1, 40),
    }
)


def canonical(labels: np.ndarray) -> bool:
    """Labels 0..n-1 numbered by first pixel in raster order."""
    flat = labels.ravel()
    _, first = np.unique(flat, return_index=True)
    return np.array_equal(flat[np.sort(first)], np.arange(len(first)))


@given(images(), params)
def test_matches_reference(image, kwargs):
    got = ops.felzenszwalb(image, **kwargs)
    want = ref.felzenszwalb(image, **kwargs)
    assert got.dtype == np.int64 and got.shape == image.shape[:2]
    assert np.array_equal(got, want)


@given(images(), params)
def test_segments_are_connected_numbered_and_large_enough(image, kwargs):
    labels = ops.felzenszwalb(image, **kwargs)
    assert canonical(labels)
    sizes = np.bincount(labels.ravel())
    # min_size is met unless the whole image is one smaller segment
    assert len(sizes) == 1 or sizes.min() >= min(kwargs["min_size"], labels.size)


def test_single_pixel_and_single_row():
    assert np.array_equal(ops.felzenszwalb(np.zeros((1, 1, 3), np.uint8)), [[0]])
    row = np.array([[0, 0, 0, 255, 255, 255]], np.uint8)
    assert np.array_equal(ops.felzenszwalb(row, min_size=1, sigma=0), [[0, 0, 0, 1, 1, 1]])


def test_flat_image_is_one_segment():
    assert ops.felzenszwalb(np.full((9, 7, 3), 0.5)).max() == 0


def test_two_halves_split_and_min_size_merges_them():
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, 10:] = 255
    labels = ops.felzenszwalb(image, sigma=0.0)
    assert labels.max() == 1 and len(np.unique(labels[:, :10])) == 1
    assert ops.felzenszwalb(image, sigma=0.0, min_size=300).max() == 0
    assert ops.felzenszwalb(image, sigma=0.0, min_size=10**30).max() == 0


def test_grayscale_is_one_channel():
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (15, 13)).astype(np.uint8)
    assert np.array_equal(ops.felzenszwalb(gray), ops.felzenszwalb(gray[:, :, None]))


def test_uint8_is_divided_by_255():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    assert np.array_equal(ops.felzenszwalb(image), ops.felzenszwalb(image * (1.0 / 255.0)))


def test_threads_agree():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (96, 80, 3)).astype(np.uint8)
    before = cnnkit.get_num_threads()
    try:
        cnnkit.set_num_threads(1)
        one = ops.felzenszwalb(image, sigma=1.5)
        cnnkit.set_num_threads(4)
        many = ops.felzenszwalb(image, sigma=1.5)
    finally:
        cnnkit.set_num_threads(before)
    assert np.array_equal(one, many)


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_each_isa_path_matches_the_reference(isa, channels):
    # The smoothing and edge weights are compiled per instruction set: every path
    # must give the reference's bits, hence its segmentation.
    from cnnkit import _core

    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    rng = np.random.default_rng(channels)
    image = (rng.integers(0, 6, (23, 37, channels)) * 51).astype(np.uint8)
    image[5:15, 10:30] = rng.integers(0, 256, channels)  # a flat patch: many equal weights
    kwargs = {"scale": 40.0, "sigma": 1.1, "min_size": 7}
    assert np.array_equal(ops.felzenszwalb(image, **kwargs), ref.felzenszwalb(image, **kwargs))


def _adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    metrics = pytest.importorskip("sklearn.metrics")
    return metrics.adjusted_rand_score(a.ravel(), b.ravel())


def _photographs():
    data = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(6)
    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "random": rng.integers(0, 256, (120, 160, 3)).astype(np.uint8),
        "random_float": rng.random((90, 70, 3)),
    }


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"scale": 100.0, "sigma": 0.5, "min_size": 50}, {"scale": 300.0, "sigma": 0.9}],
)
def test_agrees_with_scikit_image(kwargs):
    segmentation = pytest.importorskip("skimage.segmentation")
    for name, image in _photographs().items():
        got = ops.felzenszwalb(image, **kwargs)
        want = segmentation.felzenszwalb(image, **kwargs)
        assert _adjusted_rand(got, want) >= 0.99, name
        n_got, n_want = got.max() + 1, want.max() + 1
        assert abs(n_got - n_want) <= 0.01 * n_want, (name, n_got, n_want)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": np.zeros((0, 5, 3), np.uint8)}, ValueError, "image must not be empty"),
        ({"image": np.zeros((5, 5, 0))}, ValueError, "image must not be empty"),
        ({"image": np.zeros(5)}, ValueError, r"image must have shape \(H, W\)"),
        ({"image": np.zeros((2, 5, 5, 3))}, ValueError, r"image must have shape \(H, W\)"),
        ({"image": np.zeros((5, 5), np.int32)}, TypeError, "image must have dtype uint8"),
        ({"image": np.zeros((5, 5), np.float16)}, TypeError, "image must have dtype"),
        ({"image": np.full((5, 5), np.nan)}, ValueError, "image must be finite"),
        ({"image": [["a"]]}, TypeError, "image must hold numbers"),
        ({"scale": 0.0}, ValueError, "scale must be a positive finite number, got 0.0"),
        ({"scale": -1}, ValueError, "scale must be a positive"),
        ({"scale": float("inf")}, ValueError, "scale must be a positive"),
        ({"scale": "1"}, TypeError, "scale must be a real number, got str"),
        ({"sigma": -0.5}, ValueError, r"sigma must be a number in \[0, 1000\], got -0.5"),
        ({"sigma": float("nan")}, ValueError, "sigma must be a number in"),
        ({"sigma": None}, TypeError, "sigma must be a real number, got NoneType"),
        ({"min_size": 0}, ValueError, "min_size must be >= 1, got 0"),
        ({"min_size": -3}, ValueError, "min_size must be >= 1, got -3"),
        ({"min_size": 2.5}, TypeError, "min_size must be an int"),
        ({"min_size": None}, TypeError, "min_size must be an int, got NoneType"),
        ({"min_size": -(10**30)}, ValueError, "min_size must be >= 1, got -1" + "0" * 30),
    ],
)
def test_rejects_bad_input(kwargs, error, match):
    kwargs = {"image": np.zeros((4, 4, 3), np.uint8), **kwargs}
    with pytest.raises(error, match=r"^felzenszwalb\(\): " + match):
        ops.felzenszwalb(**kwargs)
