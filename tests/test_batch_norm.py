"""Batch normalisation: ``cnnkit.ops.batch_norm``, ``batch_norm_backward`` and
``batch_norm_inference`` against ``cnnkit.reference`` (float64 NumPy), degenerate shapes,
thread and ISA invariance, bad arguments, and the autograd op's float64 gradient."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view, seeded
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference
from cnnkit import autograd as ag
from cnnkit.layers import BatchNormalization

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "channel_stride", "fortran", "reversed_batch", "spatial_slice")


def _tol(dtype: np.dtype) -> float:
    """Error allowed relative to the scale of the values a result is formed from."""
    return 1e-6 if dtype == np.float32 else 1e-13


def _assert_close(got: np.ndarray, want: np.ndarray, scale: float, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bound = _tol(got.dtype) * max(scale, np.finfo(np.float64).tiny)
    assert err.max(initial=0.0) <= bound, f"{what}: error {err.max()} > {bound}"


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    rank = draw(st.integers(2, 5))
    shape = [draw(st.integers(1, 4)) for _ in range(rank - 1)] + [draw(st.integers(1, 9))]
    offset = draw(st.sampled_from([0.0, 3.0, -50.0, 1000.0]))
    spread = draw(st.sampled_from([1.0, 1e-2, 30.0]))
    epsilon = draw(st.sampled_from([1e-3, 1e-5, 0.5]))
    layout = draw(st.sampled_from(LAYOUTS))
    return dtype, tuple(shape), offset, spread, epsilon, layout


@given(cases())
def test_forward_and_backward_match_the_reference(case):
    dtype, shape, offset, spread, epsilon, layout = case
    c = shape[-1]
    x = (seeded(shape, np.float64, seed=1) * spread + offset).astype(dtype)
    gamma = seeded((c,), dtype, seed=2)
    beta = seeded((c,), dtype, seed=3)
    view = layout_view(x, layout) if x.ndim >= 3 else x
    y, mean, var = ops.batch_norm(view, gamma, beta, epsilon=epsilon)
    want_y, want_mean, want_var = reference.batch_norm(x, gamma, beta, epsilon=epsilon)
    big_x = float(np.abs(x).max())
    a = np.abs(gamma.astype(np.float64)) / np.sqrt(want_var.astype(np.float64) + epsilon)
    # y rounds x - mean (of the size of x) before scaling by gamma / std.
    _assert_close(y, want_y, big_x * a.max() + np.abs(beta).max(), "y")
    _assert_close(mean, want_mean, big_x, "mean")
    _assert_close(var, want_var, float(want_var.max()) + spread**2 * 1e-6, "var")

    dy = seeded(shape, dtype, seed=4)
    dx, dgamma, dbeta = ops.batch_norm_backward(view, dy, gamma, mean, var, epsilon=epsilon)
    want = reference.batch_norm_backward(x, dy, gamma, mean, var, epsilon=epsilon)
    inv = 1 / np.sqrt(var.astype(np.float64) + epsilon)
    xhat = np.abs(x.astype(np.float64) - mean) * inv
    g_sum = np.abs(dy.astype(np.float64)).sum(axis=tuple(range(x.ndim - 1)))
    _assert_close(dbeta, want[2], float(g_sum.max()), "dbeta")
    _assert_close(dgamma, want[1], float((g_sum * xhat.max()).max()), "dgamma")
    # dx = a * (dy - dbeta / n - xhat * dgamma / n): the terms' size, and x - mean's rounding.
    terms = np.abs(gamma) * inv * (np.abs(dy).max() * (2 + xhat.max() ** 2) + big_x * inv)
    _assert_close(dx, want[0], float(terms.max()), "dx")


@given(cases())
def test_inference_matches_the_reference(case):
    dtype, shape, offset, spread, epsilon, layout = case
    c = shape[-1]
    x = (seeded(shape, np.float64, seed=5) * spread + offset).astype(dtype)
    gamma, beta = seeded((c,), dtype, seed=6), seeded((c,), dtype, seed=7)
    mean = (seeded((c,), np.float64, seed=8) + offset).astype(dtype)
    var = np.abs(seeded((c,), dtype, seed=9)) * spread**2
    view = layout_view(x, layout) if x.ndim >= 3 else x
    got = ops.batch_norm_inference(view, gamma, beta, mean, var, epsilon=epsilon)
    want = reference.batch_norm_inference(x, gamma, beta, mean, var, epsilon=epsilon)
    scale = np.abs(gamma) / np.sqrt(var.astype(np.float64) + epsilon)
    bound = (np.abs(x).max() + np.abs(mean).max()) * scale.max() + np.abs(beta).max()
    _assert_close(got, want, float(bound), "y")


def test_one_row_normalises_to_beta_and_passes_only_dbeta():
    x = np.array([[3.0, -2.0]])
    gamma, beta = np.array([2.0, 5.0]), np.array([0.5, -1.0])
    y, mean, var = ops.batch_norm(x, gamma, beta, epsilon=1e-3)
    np.testing.assert_array_equal(y, [[0.5, -1.0]])
    np.testing.assert_array_equal(mean, [3.0, -2.0])
    np.testing.assert_array_equal(var, [0.0, 0.0])
    dx, dgamma, dbeta = ops.batch_norm_backward(x, [[1.5, 2.0]], gamma, mean, var, epsilon=1e-3)
    np.testing.assert_array_equal(dx, [[0.0, 0.0]])
    np.testing.assert_array_equal(dgamma, [0.0, 0.0])
    np.testing.assert_array_equal(dbeta, [1.5, 2.0])


def test_one_channel_and_zero_channels():
    x = seeded((7, 1), np.float32, seed=0)
    y, mean, var = ops.batch_norm(x, [1.0], [0.0], epsilon=1e-3)
    want = reference.batch_norm(x, np.ones(1, np.float32), np.zeros(1, np.float32))
    np.testing.assert_allclose(y, want[0], rtol=1e-5, atol=1e-6)
    # No channels: nothing to normalise, every result empty.
    y, mean, var = ops.batch_norm(np.zeros((3, 0), np.float32), [], [], epsilon=1e-3)
    assert y.shape == (3, 0) and mean.shape == var.shape == (0,)
    dx, dgamma, dbeta = ops.batch_norm_backward(
        np.zeros((3, 0)), np.zeros((3, 0)), [], [], [], epsilon=1e-3
    )
    assert dx.shape == (3, 0) and dgamma.shape == dbeta.shape == (0,)


def test_large_offset_keeps_the_variance():
    # A channel a million standard deviations from 0: unshifted sums of squares in
    # float64 would leave about 4 correct digits of var here; shifted ones keep them all.
    x = seeded((4096, 3), np.float64, seed=1) + 1e6
    _, _, var = ops.batch_norm(x, np.ones(3), np.zeros(3), epsilon=1e-3)
    want = np.var(x, axis=0)
    np.testing.assert_allclose(var, want, rtol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_nan_in_a_channel_makes_its_statistics_nan(dtype):
    # The variance is clamped at 0 against rounding; the clamp must not turn NaN into 0.
    x = seeded((4, 3, 3, 2), dtype, seed=2)
    x[0, 0, 0, 0] = np.nan
    y, mean, var = ops.batch_norm(x, np.ones(2, dtype), np.zeros(2, dtype), epsilon=1e-3)
    assert np.isnan(mean[0]) and np.isnan(var[0]) and np.isnan(y[..., 0]).all()
    want = reference.batch_norm(x, np.ones(2, dtype), np.zeros(2, dtype), epsilon=1e-3)
    np.testing.assert_allclose(var[1], want[2][1], rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_infinity_in_the_first_row_makes_the_mean_infinite(dtype):
    # The first row is the shift of the one-pass sums; an infinite shift once made the mean NaN.
    x = seeded((2, 4, 5, 3), dtype, seed=3)
    x[0, 0, 0, 1] = np.inf
    _, mean, var = ops.batch_norm(x, np.ones(3, dtype), np.zeros(3, dtype), epsilon=1e-3)
    with np.errstate(invalid="ignore"):  # NumPy's variance subtracts inf from inf
        want = reference.batch_norm(x, np.ones(3, dtype), np.zeros(3, dtype), epsilon=1e-3)
    assert mean[1] == np.inf and np.isnan(var[1])
    np.testing.assert_allclose(mean, want[1], rtol=1e-5)
    np.testing.assert_allclose(var, want[2], rtol=1e-5)


def test_a_scale_beyond_float32_keeps_finite_results():
    # gamma / std overflows float32 (gamma 3e38, std < 1) though gamma (x - mean) / std
    # does not where |x - mean| < std: the fuzz test's case, in inference and training.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    gamma, beta, mean = rng.standard_normal((3, 6)).astype(np.float32)
    var = np.abs(rng.standard_normal(6)).astype(np.float32) + 0.25
    gamma[0], var[0] = 3e38, 0.5
    x[..., 0] = mean[0] + rng.uniform(-0.6, 0.6, (4, 3)).astype(np.float32)
    got = ops.batch_norm_inference(x, gamma, beta, mean, var, epsilon=1e-3)
    want = reference.batch_norm_inference(x, gamma, beta, mean, var, epsilon=1e-3)
    assert np.isfinite(want).all()
    _assert_close(got, want, 3e38, "inference")
    # In training the batch's own statistics make some |x - mean| / std exceed 1.13.
    y, *_ = ops.batch_norm(x, gamma, beta, epsilon=1e-3)
    with np.errstate(over="ignore"):
        want_y, *_ = reference.batch_norm(x, gamma, beta, epsilon=1e-3)
    finite = np.isfinite(want_y)
    assert finite[..., 0].any() and np.array_equal(np.isfinite(y), finite)
    _assert_close(y[finite], want_y[finite], 3e38 * 3, "training")


def test_a_subnormal_scale_keeps_its_precision():
    # gamma / std = 1e-45 is a subnormal float32 with one significant bit, though
    # gamma (x - mean) / std = 3e-30 is a normal number.
    x = np.array([[3e15], [-1e15], [2e15]], np.float32)
    one = np.ones(1, np.float32)
    got = ops.batch_norm_inference(x, one * 1e-30, 0 * one, 0 * one, one * 1e30, epsilon=1e-3)
    want = reference.batch_norm_inference(x, one * 1e-30, 0 * one, 0 * one, one * 1e30)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dtypes_follow_the_widest_input():
    x = seeded((5, 3), np.float32, seed=0)
    y, mean, var = ops.batch_norm(x, np.ones(3), np.zeros(3, np.float32), epsilon=1e-3)
    assert y.dtype == mean.dtype == var.dtype == np.float64
    y, mean, var = ops.batch_norm(x, np.ones(3, np.float32), np.zeros(3, np.float32))
    assert y.dtype == np.float32
    dy = x.astype(np.float64)
    dx, dgamma, _ = ops.batch_norm_backward(x, dy, np.ones(3, np.float32), mean, var)
    assert dx.dtype == dgamma.dtype == np.float64


def _all_results(x, dy, gamma, beta):
    y, mean, var = ops.batch_norm(x, gamma, beta, epsilon=1e-3)
    back = ops.batch_norm_backward(x, dy, gamma, mean, var, epsilon=1e-3)
    inference = ops.batch_norm_inference(x, gamma, beta, mean, var, epsilon=1e-3)
    return (y, mean, var, *back, inference)


@pytest.mark.parametrize("shape", [(16, 32, 32, 16), (8, 9, 9, 67), (3, 5, 2)])
def test_results_do_not_depend_on_threads_or_isa(shape, restore_threads, restore_isa):
    x = (seeded(shape, np.float64, seed=3) * 2 + 1).astype(np.float32)
    dy = seeded(shape, np.float32, seed=4)
    gamma, beta = seeded(shape[-1:], np.float32, seed=5), seeded(shape[-1:], np.float32, seed=6)
    results = []
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            results.append((isa, threads, _all_results(x, dy, gamma, beta)))
    first = results[0][2]
    for isa, threads, got in results[1:]:
        for a, b in zip(first, got):
            assert np.array_equal(a, b), f"{isa} at {threads} threads differs"


@pytest.mark.parametrize("shape", [(4, 3, 2), (6, 5)])
def test_gradient_float64(shape):
    c = shape[-1]
    x = seeded(shape, np.float64, seed=1) * 2 + 0.5
    gamma, beta = seeded((c,), np.float64, seed=2), seeded((c,), np.float64, seed=3)
    check_gradients(lambda t, g, b: ag.batch_norm(t, g, b, epsilon=1e-3)[0], [x, gamma, beta])


def test_autograd_uses_the_kernel_and_keeps_numpy_for_other_dtypes():
    x = seeded((6, 4, 3), np.float32, seed=1)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, _, _ = ag.batch_norm(x, gamma, beta, epsilon=1e-3)
    np.testing.assert_array_equal(y.data, ops.batch_norm(x, gamma, beta, epsilon=1e-3)[0])
    half = ag.batch_norm(
        x.astype(np.float16), gamma.astype(np.float16), beta.astype(np.float16), epsilon=1e-3
    )
    assert half[0].dtype == np.float16
    np.testing.assert_allclose(half[0].data, y.data, atol=1e-2)


def test_layer_inference_uses_the_moving_statistics():
    layer = BatchNormalization(epsilon=1e-3)
    x = seeded((2, 3, 3, 4), np.float32, seed=1)
    layer(x)
    layer.moving_mean.data[:] = [0.5, -1.0, 0.0, 2.0]
    layer.moving_variance.data[:] = [1.0, 4.0, 0.25, 9.0]
    layer.gamma.data[:] = [1.0, 2.0, 3.0, -1.0]
    layer.beta.data[:] = [0.0, 1.0, -1.0, 0.5]
    with ag.no_grad():
        got = layer(x).data
    want = reference.batch_norm_inference(
        x,
        layer.gamma.data,
        layer.beta.data,
        layer.moving_mean.data,
        layer.moving_variance.data,
        epsilon=1e-3,
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # With a gradient to take, the differentiable expression gives the same values.
    t = ag.Tensor(x, requires_grad=True)
    np.testing.assert_allclose(layer(t).data, want, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    c3 = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm\(\): x must have shape \(N, \.\.\., C\)"):
        ops.batch_norm(np.zeros(3), c3, c3)
    with pytest.raises(ValueError, match=r"batch_norm\(\): x must have at least one row"):
        ops.batch_norm(np.zeros((0, 4, 3)), c3, c3)
    with pytest.raises(ValueError, match=r"batch_norm\(\): gamma must have shape \(3,\)"):
        ops.batch_norm(x, np.ones(4), c3)
    with pytest.raises(ValueError, match=r"batch_norm\(\): beta must have shape \(3,\)"):
        ops.batch_norm(x, c3, np.ones((1, 3)))
    with pytest.raises(TypeError, match=r"batch_norm\(\): x must have dtype float32 or float64"):
        ops.batch_norm(np.zeros((2, 3), np.int32), c3, c3)
    with pytest.raises(TypeError, match=r"batch_norm\(\): gamma must hold numbers"):
        ops.batch_norm(x, ["a", "b", "c"], c3)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"batch_norm\(\): epsilon must be a finite"):
            ops.batch_norm(x, c3, c3, epsilon=bad)
    with pytest.raises(TypeError, match=r"batch_norm\(\): epsilon must be a real number, got str"):
        ops.batch_norm(x, c3, c3, epsilon="1e-3")
    with pytest.raises(ValueError, match=r"batch_norm_backward\(\): dy must have the shape of x"):
        ops.batch_norm_backward(x, np.zeros((2, 4)), c3, c3, c3)
    with pytest.raises(ValueError, match=r"batch_norm_backward\(\): var must have shape \(3,\)"):
        ops.batch_norm_backward(x, x, c3, c3, np.ones(2))
    with pytest.raises(ValueError, match=r"batch_norm_inference\(\): mean must have shape \(3,\)"):
        ops.batch_norm_inference(x, c3, c3, np.ones(5), c3)
