"""Local response normalization: ``cnnkit.ops.lrn`` and ``lrn_backward`` against
``cnnkit.reference``, its gradient in float64, thread invariance and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view, seeded
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import autograd as ag
from cnnkit import ops, reference

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "channel_stride", "fortran", "reversed_batch", "spatial_slice")


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    rank = draw(st.integers(2, 5))
    shape = [draw(st.integers(0, 3))] + [draw(st.integers(1, 4)) for _ in range(rank - 2)]
    shape.append(draw(st.integers(1, 12)))
    size = draw(st.integers(1, 9))
    alpha = draw(st.sampled_from([1e-4, 0.5, 2.0]))
    beta = draw(st.sampled_from([0.75, 0.5, 1.0, 0.0]))
    bias = draw(st.sampled_from([1.0, 2.0, 0.5]))
    layout = draw(st.sampled_from(LAYOUTS))
    return dtype, tuple(shape), size, alpha, beta, bias, layout


def _tolerance(dtype: np.dtype) -> dict[str, float]:
    return {"rtol": 2e-6, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@given(cases())
def test_lrn_matches_reference(case):
    dtype, shape, size, alpha, beta, bias, layout = case
    x = seeded(shape, dtype, seed=1)
    view = layout_view(x, layout) if x.size and x.ndim >= 3 else x
    spec = {"alpha": alpha, "beta": beta, "bias": bias}
    got = ops.lrn(view, size, **spec)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_allclose(got, reference.lrn(x, size, **spec), **_tolerance(dtype))
    dy = seeded(shape, dtype, seed=2)
    got = ops.lrn_backward(view, dy, size, **spec)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_allclose(
        got, reference.lrn_backward(x, dy, size, **spec), **_tolerance(dtype)
    )


def test_single_channel_and_window_wider_than_the_channels():
    x = np.array([[2.0]])
    np.testing.assert_allclose(ops.lrn(x, 5, alpha=5.0, beta=1.0, bias=1.0), [[2.0 / 5.0]])
    x = seeded((2, 3), np.float64, seed=0)
    np.testing.assert_allclose(ops.lrn(x, 11), reference.lrn(x, 11), rtol=1e-12)


def test_torch_local_response_norm_agrees():
    torch = pytest.importorskip("torch")
    x = seeded((2, 5, 6, 7), np.float64, seed=5)  # NCHW for torch
    want = torch.nn.functional.local_response_norm(torch.from_numpy(x), 5, 1e-2, 0.75, 2.0)
    got = ops.lrn(np.moveaxis(x, 1, -1), 5, alpha=1e-2, beta=0.75, bias=2.0)
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), want.numpy(), rtol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 5])
def test_gradient_float64(size):
    x = seeded((2, 3, 7), np.float64, seed=size)
    check_gradients(lambda t: ag.lrn(t, size, alpha=0.7, beta=0.75, bias=1.5), [x])


def test_results_do_not_depend_on_the_thread_count(restore_threads):
    x = seeded((16, 9, 9, 64), np.float32, seed=3)
    dy = seeded(x.shape, np.float32, seed=4)
    results = []
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        results.append((ops.lrn(x, 5), ops.lrn_backward(x, dy, 5)))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])


def test_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"lrn\(\): x must have shape \(N, \.\.\., C\)"):
        ops.lrn(np.zeros(3), 3)
    with pytest.raises(ValueError, match=r"lrn\(\): size must be >= 1, got 0"):
        ops.lrn(x, 0)
    with pytest.raises(TypeError, match=r"lrn\(\): size must be an int, got float"):
        ops.lrn(x, 2.5)
    with pytest.raises(ValueError, match=r"lrn\(\): alpha must be finite"):
        ops.lrn(x, 3, alpha=float("nan"))
    with pytest.raises(TypeError, match=r"lrn\(\): beta must be a real number, got str"):
        ops.lrn(x, 3, beta="a")
    with pytest.raises(TypeError, match=r"lrn\(\): x must"):
        ops.lrn(np.zeros((2, 3), np.int32), 3)
    with pytest.raises(ValueError, match=r"lrn_backward\(\): dy must have the shape of x"):
        ops.lrn_backward(x, np.zeros((2, 4), np.float32), 3)
