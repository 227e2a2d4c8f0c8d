"""Sliding windows: ``cnnkit.ops.sliding_windows`` and ``window_boxes`` against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import ops
from cnnkit import reference as ref

DTYPES = (np.uint8, np.float32, np.float64, np.int16, np.bool_, np.complex64)
LAYOUTS = ("contiguous", "channel_stride", "fortran", "reversed_batch", "spatial_slice")
# The other layouts fill the skipped elements with NaN, which only floats hold.
COPIED_LAYOUTS = ("contiguous", "fortran", "reversed_batch")

sizes = st.one_of(st.integers(1, 6), st.tuples(st.integers(1, 6), st.integers(1, 6)))


@st.composite
def window_problems(draw):
    """(images, window, stride) with the window no bigger than the images."""
    window = draw(sizes)
    wh, ww = window if isinstance(window, tuple) else (window, window)
    shape = (
        draw(st.integers(0, 3)),
        wh + draw(st.integers(0, 8)),
        ww + draw(st.integers(0, 8)),
        draw(st.integers(0, 4)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    images = (rng.random(shape) * 200).astype(draw(st.sampled_from(DTYPES)))
    layouts = LAYOUTS if images.dtype.kind in "fc" else COPIED_LAYOUTS
    return layout_view(images, draw(st.sampled_from(layouts))), window, draw(sizes)


@given(window_problems())
def test_matches_reference(problem):
    images, window, stride = problem
    got = ops.sliding_windows(images, window, stride)
    want = ref.sliding_windows(images, window, stride)
    assert got.dtype == images.dtype and got.shape == want.shape
    assert got.flags.c_contiguous and np.array_equal(got, want)


@given(window_problems())
def test_windows_are_the_crops_at_their_boxes(problem):
    images, window, stride = problem
    crops = ops.sliding_windows(images, window, stride)
    boxes = ops.window_boxes(images.shape[1:3], window, stride)
    assert boxes.shape == (*crops.shape[1:3], 4) and boxes.dtype == np.float32
    for r in range(boxes.shape[0]):
        for c in range(boxes.shape[1]):
            x1, y1, x2, y2 = boxes[r, c].astype(int)
            assert np.array_equal(crops[:, r, c], images[:, y1:y2, x1:x2])


@given(st.integers(1, 40), st.integers(1, 40), sizes, sizes)
def test_window_boxes_match_reference(height, width, window, stride):
    wh, ww = window if isinstance(window, tuple) else (window, window)
    size = (height + wh, width + ww)
    got = ops.window_boxes(size, window, stride)
    assert np.array_equal(got, ref.window_boxes(size, window, stride))


def test_shape_follows_the_formula():
    images = np.zeros((8, 256, 256, 3), np.uint8)
    assert ops.sliding_windows(images, 64, 16).shape == (8, 13, 13, 64, 64, 3)
    assert ops.sliding_windows(images, (64, 32), (100, 7)).shape == (8, 2, 33, 64, 32, 3)
    assert ops.window_boxes(256, 64, 16).shape == (13, 13, 4)
    assert ops.window_boxes(256, 64, 16)[1, 2].tolist() == [32, 16, 96, 80]


def test_result_is_a_copy():
    images = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5, 1)
    crops = ops.sliding_windows(images, 3, 1)
    crops[...] = -1
    assert images.min() == 0


def test_byte_order_is_kept():
    images = np.arange(2 * 4 * 4 * 2, dtype=">f4").reshape(2, 4, 4, 2)
    got = ops.sliding_windows(images, 2, 2)
    assert got.dtype == images.dtype
    assert np.array_equal(got, ref.sliding_windows(images, 2, 2))


def test_does_not_depend_on_thread_count(restore_threads):
    images = np.random.default_rng(0).random((4, 128, 96, 3)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        cnnkit.set_num_threads(n)
        results.append(ops.sliding_windows(images, (32, 24), (8, 5)))
    for r in results[1:]:
        assert np.array_equal(r, results[0])


@pytest.mark.parametrize("window", [1, (1, 1)])
def test_unit_windows_are_the_pixels(window):
    images = np.random.default_rng(1).random((2, 3, 4, 5))
    got = ops.sliding_windows(images, window, 1)
    assert np.array_equal(got[:, :, :, 0, 0], images)
