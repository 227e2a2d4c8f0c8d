"""Gram matrices: ``cnnkit.ops.gram`` and ``gram_backward`` against ``cnnkit.reference``.

Forward values are compared with a rounding bound rather than a fixed
tolerance: a sum of P products has an error of at most about ``P * eps``
times the sum of the products' magnitudes, so each element's bound is taken
from the Gram matrix of ``|x|``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
NORMALIZE = (None, "positions", "size")
LAYOUTS = ("contiguous", "channel_stride", "fortran", "reversed_batch", "spatial_slice")

normalizations = st.sampled_from(NORMALIZE)
# Channels: one and few (one or two bands of the kernel), and many (several
# bands, mostly at counts that are not multiples of the band height).
channel_counts = st.one_of(st.integers(1, 20), st.integers(90, 200))


@st.composite
def feature_maps(draw, *, dtype=None, max_positions: int = 96, channels=channel_counts):
    """A (N, *spatial, C) float array with 1 to 3 spatial dimensions, in some memory layout."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    rank = draw(st.integers(1, 3))
    spatial, budget = [], max_positions
    for _ in range(rank):
        size = draw(st.integers(1, max(1, min(budget, 24))))
        spatial.append(size)
        budget //= size
    shape = (draw(st.integers(1, 3)), *spatial, draw(channels))
    x = seeded(shape, dtype, draw(st.integers(0, 2**32 - 1)))
    return layout_view(x, draw(st.sampled_from(LAYOUTS)))


def positions_of(x: np.ndarray) -> int:
    return math.prod(x.shape[1:-1])


def assert_gram_close(got: np.ndarray, x: np.ndarray, normalize: str | None) -> None:
    want = reference.gram(x, normalize=normalize)
    assert got.dtype == want.dtype == x.dtype
    assert got.shape == want.shape
    eps = np.finfo(x.dtype).eps
    scale = reference.gram(np.abs(x).astype(np.float64), normalize=normalize)
    bound = (2 * positions_of(x) + 4) * eps * scale + np.finfo(x.dtype).tiny
    excess = np.abs(got.astype(np.float64) - want) - bound
    assert excess.max(initial=-1.0) <= 0, f"exceeds the rounding bound by {excess.max()}"


def inner(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a.astype(np.float64) * b.astype(np.float64)))


# --- forward ----------------------------------------------------------------------------


@given(feature_maps(), normalizations)
def test_gram_matches_reference(x, normalize):
    assert_gram_close(ops.gram(x, normalize=normalize), x, normalize)


@given(feature_maps(), normalizations)
def test_gram_is_exactly_symmetric(x, normalize):
    g = ops.gram(x, normalize=normalize)
    assert np.array_equal(g, g.transpose(0, 2, 1))


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((2, 700, 130), np.float64),  # 3 chunks of positions, 4 channel bands
        ((1, 40, 40, 64), np.float32),  # 2 chunks, 3 bands
        ((3, 5, 6, 7, 200), np.float32),  # 6 bands, a 3-D map
        ((1, 1, 1), np.float64),
    ],
)
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_gram_larger_shapes(shape, dtype, normalize):
    x = seeded(shape, np.dtype(dtype), seed=sum(shape))
    g = ops.gram(x, normalize=normalize)
    assert_gram_close(g, x, normalize)
    assert np.array_equal(g, g.transpose(0, 2, 1))


def test_gram_normalizations_divide_by_positions_and_size():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    plain = ops.gram(x)
    assert np.array_equal(ops.gram(x, normalize="positions"), plain / 12)
    assert np.array_equal(ops.gram(x, normalize="size"), plain / 60)


def test_gram_accepts_array_likes():
    g = ops.gram([[[1.0, 2.0], [3.0, 4.0]]])
    assert g.dtype == np.float64
    assert np.array_equal(g, [[[10.0, 14.0], [14.0, 20.0]]])


@pytest.mark.parametrize("shape", [(2, 0, 5), (2, 3, 0, 5), (1, 2, 3, 0, 4)])
@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_positions_give_zeros_without_dividing(shape, normalize, dtype):
    x = np.zeros(shape, dtype=dtype)
    g = ops.gram(x, normalize=normalize)
    assert g.dtype == dtype
    assert np.array_equal(g, np.zeros((shape[0], shape[-1], shape[-1])))
    dx = ops.gram_backward(x, np.ones((shape[0], shape[-1], shape[-1]), dtype), normalize=normalize)
    assert dx.shape == shape
    assert dx.dtype == dtype


@pytest.mark.parametrize("shape", [(0, 4, 3), (2, 4, 0), (0, 0, 0)])
def test_empty_batch_or_channels(shape):
    x = np.ones(shape, dtype=np.float32)
    g = ops.gram(x, normalize="size")
    assert g.shape == (shape[0], shape[-1], shape[-1])
    assert g.dtype == np.float32
    assert ops.gram_backward(x, g, normalize="size").shape == shape


# --- backward ---------------------------------------------------------------------------


@st.composite
def gradient_cases(draw, *, dtype=None, max_positions: int = 96, channels=channel_counts):
    """``(x, dG)`` of one dtype, dG in its own memory layout (a non-contiguous view or not)."""
    x = draw(feature_maps(dtype=dtype, max_positions=max_positions, channels=channels))
    c = x.shape[-1]
    dg = seeded((x.shape[0], c, c), x.dtype, draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        dg = layout_view(dg, draw(st.sampled_from(LAYOUTS)))
    return x, dg


@given(gradient_cases(), normalizations)
def test_gram_backward_matches_reference(case, normalize):
    x, dg = case
    got = ops.gram_backward(x, dg, normalize=normalize)
    want = reference.gram_backward(x, dg, normalize=normalize)
    assert got.dtype == want.dtype == x.dtype
    assert got.shape == want.shape == x.shape
    # Each element sums C products of x and (dG + dG^T) / d.
    absolute = reference.gram_backward(
        np.abs(x).astype(np.float64), np.abs(dg).astype(np.float64), normalize=normalize
    )
    bound = (2 * x.shape[-1] + 8) * np.finfo(x.dtype).eps * absolute + np.finfo(x.dtype).tiny
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


@given(
    gradient_cases(dtype=np.float64, max_positions=6, channels=st.integers(1, 5)), normalizations
)
def test_gram_backward_matches_finite_differences(case, normalize):
    x, dg = case
    x = np.ascontiguousarray(x)

    def loss(v: np.ndarray) -> float:
        return inner(ops.gram(v, normalize=normalize), dg)

    # The loss is quadratic in x, so central differences are exact up to rounding.
    h = 1e-3
    numeric = np.empty_like(x)
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = h
        numeric[index] = (loss(x + step) - loss(x - step)) / (2 * h)
    got = ops.gram_backward(x, dg, normalize=normalize)
    np.testing.assert_allclose(got, numeric, rtol=1e-7, atol=1e-9)


@given(gradient_cases(dtype=np.float64), normalizations, st.integers(0, 2**32 - 1))
def test_gram_backward_is_the_adjoint_of_the_derivative(case, normalize, seed):
    x, dg = case
    v = seeded(x.shape, x.dtype, seed)
    # gram is quadratic: (gram(x + v) - gram(x - v)) / 2 is its derivative at x along v.
    derivative = (ops.gram(x + v, normalize=normalize) - ops.gram(x - v, normalize=normalize)) / 2
    lhs = inner(dg, derivative)
    rhs = inner(ops.gram_backward(x, dg, normalize=normalize), v)
    magnitude = inner(np.abs(dg), reference.gram(np.abs(x) + np.abs(v), normalize=normalize))
    assert abs(lhs - rhs) <= 1e-12 * magnitude + 1e-300


def test_gram_backward_uses_the_wider_dtype():
    x = seeded((2, 3, 4), np.dtype(np.float32), seed=1)
    dg = seeded((2, 4, 4), np.dtype(np.float64), seed=2)
    dx = ops.gram_backward(x, dg)
    assert dx.dtype == np.float64
    np.testing.assert_allclose(dx, reference.gram_backward(x, dg), rtol=1e-12)
    assert ops.gram_backward(x.astype(np.float64), dg.astype(np.float32)).dtype == np.float64


# --- threads and instruction sets ---------------------------------------------------------

# Shapes that take each way of splitting the work over threads: bands (of
# channels forward, of positions backward) spread over the team, and too few
# or too uneven bands (the GEMM then splits each one itself).
THREAD_CASES = [
    ((1, 64, 64, 64), np.float32),  # forward: 3 unequal channel bands; backward: 16 bands
    ((3, 16, 16, 200), np.float32),  # forward: 18 channel bands
    ((2, 600, 130), np.float64),  # forward: several chunks of positions
    ((3, 64, 64, 12), np.float32),  # forward: 3 equal items for 2 threads (GEMM splits)
    ((1, 100, 300), np.float32),  # backward: one band of positions (GEMM splits)
]


@pytest.mark.parametrize(("shape", "dtype"), THREAD_CASES)
@pytest.mark.parametrize("isa", _core.available_isas())
def test_results_do_not_depend_on_the_thread_count(shape, dtype, isa, restore_threads, restore_isa):
    _core.set_isa(isa)
    x = seeded(shape, np.dtype(dtype), seed=3)
    dg = seeded((shape[0], shape[-1], shape[-1]), np.dtype(dtype), seed=4)
    results = []
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        results.append((ops.gram(x, normalize="size"), ops.gram_backward(x, dg, normalize="size")))
    (g1, dx1), (g2, dx2) = results
    assert np.array_equal(g1, g2)
    assert np.array_equal(dx1, dx2)
    assert_gram_close(g1, x, "size")


# --- rejections ---------------------------------------------------------------------------


def call(fn: str, x, **kwargs):
    if fn == "gram":
        return ops.gram(x, **kwargs)
    c = np.shape(x)[-1]
    return ops.gram_backward(x, np.zeros((len(x), c, c)), **kwargs)


@pytest.mark.parametrize("fn", ["gram", "gram_backward"])
@pytest.mark.parametrize("shape", [(3, 4), (1, 2, 2, 2, 2, 3)])
def test_rejects_x_of_wrong_rank(fn, shape):
    match = (
        rf"{fn}\(\): x must have shape \(N, \*spatial, C\) with 1 to 3 spatial dimensions, "
        rf"got shape \({', '.join(map(str, shape))}\)"
    )
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros(shape))


@pytest.mark.parametrize("fn", ["gram", "gram_backward"])
def test_rejects_x_of_integer_dtype(fn):
    match = rf"{fn}\(\): x must have dtype float32 or float64, got int64"
    with pytest.raises(TypeError, match=match):
        call(fn, np.zeros((1, 2, 3), dtype=np.int64))


@pytest.mark.parametrize("fn", ["gram", "gram_backward"])
def test_rejects_x_of_objects(fn):
    match = rf"{fn}\(\): x must hold numbers, got an array of dtype object"
    with pytest.raises(TypeError, match=match):
        call(fn, np.empty((1, 2, 3), dtype=object))


@pytest.mark.parametrize("fn", ["gram", "gram_backward"])
@pytest.mark.parametrize("value", ["mean", "", "Size"])
def test_rejects_unknown_normalize(fn, value):
    match = rf"{fn}\(\): normalize must be None, 'positions' or 'size', got '{value}'"
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros((1, 2, 3)), normalize=value)


@pytest.mark.parametrize("fn", ["gram", "gram_backward"])
@pytest.mark.parametrize(("value", "type_name"), [(1, "int"), (b"size", "bytes"), (True, "bool")])
def test_rejects_normalize_that_is_not_a_str(fn, value, type_name):
    match = rf"{fn}\(\): normalize must be None or a str, got {type_name}"
    with pytest.raises(TypeError, match=match):
        call(fn, np.zeros((1, 2, 3)), normalize=value)


@pytest.mark.parametrize(
    "dg_shape", [(2, 3), (1, 3, 3), (2, 3, 4), (2, 4, 3), (2, 3, 3, 1), (2, 9)]
)
def test_rejects_dg_of_wrong_shape(dg_shape):
    shape = ", ".join(map(str, dg_shape))
    match = (
        r"gram_backward\(\): dG must have shape \(N, C, C\) = \(2, 3, 3\) to match x, "
        rf"got shape \({shape}\)"
    )
    with pytest.raises(ValueError, match=match):
        ops.gram_backward(np.zeros((2, 4, 3)), np.zeros(dg_shape))


def test_rejects_dg_of_integer_dtype():
    match = r"gram_backward\(\): dG must have dtype float32 or float64, got int32"
    with pytest.raises(TypeError, match=match):
        ops.gram_backward(np.zeros((2, 4, 3)), np.zeros((2, 3, 3), dtype=np.int32))
