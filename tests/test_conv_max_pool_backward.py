"""ops.conv_max_pool_backward: the weight and bias gradients of a convolution under a max
pool, from the pool's output gradient; the autograd tape's fused input layer."""

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

DTYPES = (np.float32, np.float64)


@st.composite
def problems(draw):
    """A convolution (mostly few input channels, the fused loops' case) under a max pool
    with disjoint or overlapping windows, its pooled gradient and the pool's indices."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rank = draw(st.integers(1, 2))
    batch = draw(st.integers(0, 3))
    cin = draw(st.sampled_from([1, 2, 3, 5]))
    cout = draw(st.sampled_from([1, 3, 16, 32, 40]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["valid", "same"]))
    size = tuple(draw(st.integers(k, 9)) for k in kernel)
    relu = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    x = seeded((batch, *size, cin), dtype, seed)
    w = seeded((*kernel, cin, cout), dtype, seed + 1)
    conv_spec = {"stride": stride, "padding": padding}
    y = ops.conv(x, w, **conv_spec, activation="relu" if relu else None)
    # Windows up to the output's size, disjoint (the fused loops) or overlapping.
    pool = draw(st.integers(1, min(3, *y.shape[1:-1])))
    pool_stride = draw(st.sampled_from([None, pool, pool + 1, max(1, pool - 1)]))
    pool_spec = {"stride": pool_stride, "padding": draw(st.sampled_from(["valid", "same"]))}
    pooled, indices = ops.max_pool(y, pool, return_indices=True, **pool_spec)
    dy = seeded(pooled.shape, dtype, seed + 2)
    return {
        "x": x,
        "w": w,
        "y": y,
        "dy": dy,
        "indices": indices,
        "pool": pool,
        "conv_spec": conv_spec,
        "pool_spec": pool_spec,
        "relu_output": pooled if relu else None,
    }


def fused(p, impl=ops.conv_max_pool_backward, **extra):
    return impl(
        p["x"],
        p["w"],
        p["dy"],
        p["indices"],
        p["pool"],
        **p["conv_spec"],
        pool_stride=p["pool_spec"]["stride"],
        pool_padding=p["pool_spec"]["padding"],
        relu_output=p["relu_output"],
        **extra,
    )


def two_calls(p):
    dout = ops.max_pool_backward(
        p["y"], p["dy"], p["pool"], indices=p["indices"], relu_output=p["relu_output"],
        **p["pool_spec"],
    )  # fmt: skip
    _, dw, db = ops.conv_backward(p["x"], p["w"], dout, need=("w", "b"), **p["conv_spec"])
    return dw, db


@given(problems())
def test_bits_of_the_two_calls_and_values_of_the_reference(p):
    dw, db = fused(p)
    want_dw, want_db = two_calls(p)
    assert dw.dtype == p["x"].dtype and db.dtype == p["x"].dtype
    np.testing.assert_array_equal(dw, want_dw)
    np.testing.assert_array_equal(db, want_db)
    ref_dw, ref_db = fused(p, reference.conv_max_pool_backward)
    tol = 1e-4 if p["x"].dtype == np.float32 else 1e-10
    np.testing.assert_allclose(dw, ref_dw, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, ref_db, rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["channel_stride", "reversed_batch", "fortran"])
def test_non_contiguous_inputs(layout):
    rng = np.random.default_rng(3)
    x = layout_view(rng.standard_normal((4, 12, 12, 1)).astype(np.float32), layout)
    w = rng.standard_normal((3, 3, 1, 32)).astype(np.float32)
    y = ops.conv(x, w, activation="relu")
    pooled, indices = ops.max_pool(y, 2, return_indices=True)
    dy = layout_view(rng.standard_normal(pooled.shape).astype(np.float32), layout)
    p = {"x": x, "w": w, "y": y, "dy": dy, "indices": np.asfortranarray(indices), "pool": 2}
    p |= {"conv_spec": {}, "pool_spec": {"stride": None, "padding": "valid"}}
    p["relu_output"] = pooled
    for got, want in zip(fused(p), two_calls(p)):
        np.testing.assert_array_equal(got, want)


def test_the_training_shape_is_the_same_for_one_and_two_threads():
    rng = np.random.default_rng(28)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    w = rng.standard_normal((3, 3, 1, 32)).astype(np.float32)
    y = ops.conv(x, w, rng.standard_normal(32).astype(np.float32), activation="relu")
    pooled, indices = ops.max_pool(y, 2, return_indices=True)
    dy = rng.standard_normal(pooled.shape).astype(np.float32)
    p = {"x": x, "w": w, "y": y, "dy": dy, "indices": indices, "pool": 2, "conv_spec": {}}
    p |= {"pool_spec": {"stride": None, "padding": "valid"}, "relu_output": pooled}
    before = cnnkit.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            results.append(fused(p))
    finally:
        cnnkit.set_num_threads(before)
    for a, b, want in zip(*results, two_calls(p)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, want)


def test_an_index_outside_its_window_takes_the_two_calls():
    # Valid for max_pool_backward (any position of the image), but not one the forward
    # gives: the fused loops miss it and hand over to the two calls.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 9, 9, 1))
    w = rng.standard_normal((2, 2, 1, 8))
    y = ops.conv(x, w)
    pooled, indices = ops.max_pool(y, 2, return_indices=True)
    indices = indices.copy()
    indices[1, 0, 0, 3] = 63  # the last position of the 8 x 8 output
    dy = rng.standard_normal(pooled.shape)
    p = {"x": x, "w": w, "y": y, "dy": dy, "indices": indices, "pool": 2, "conv_spec": {}}
    p |= {"pool_spec": {"stride": None, "padding": "valid"}, "relu_output": None}
    for got, want in zip(fused(p), two_calls(p)):
        np.testing.assert_array_equal(got, want)


def test_rejects_bad_arguments():
    x = np.zeros((2, 6, 6, 1), np.float32)
    w = np.zeros((3, 3, 1, 4), np.float32)
    y = ops.conv(x, w)
    pooled, indices = ops.max_pool(y, 2, return_indices=True)
    dy = np.zeros_like(pooled)
    fn = ops.conv_max_pool_backward
    with pytest.raises(ValueError, match=r"conv_max_pool_backward\(\): dy must have the pooled"):
        fn(x, w, dy[:1], indices, 2)
    with pytest.raises(TypeError, match=r"conv_max_pool_backward\(\): indices must have an int"):
        fn(x, w, dy, indices.astype(np.float32), 2)
    with pytest.raises(ValueError, match=r"conv_max_pool_backward\(\): indices must have the"):
        fn(x, w, dy, indices[:, :1], 2)
    with pytest.raises(ValueError, match=r"conv_max_pool_backward\(\): relu_output must have"):
        fn(x, w, dy, indices, 2, relu_output=pooled[:1])
    bad = indices.copy()
    bad[0, 0, 0, 0] = 16
    with pytest.raises(ValueError, match=r"indices must be spatial indices in \[0, 16\).*got 16"):
        fn(x, w, dy, bad, 2)
    with pytest.raises(ValueError, match=r"conv_max_pool_backward\(\): pool_size"):
        fn(x, w, dy, indices, 0)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_autograd_input_layer_gradients(relu, bias):
    rng = np.random.default_rng(11)
    x = ag.Tensor(rng.standard_normal((2, 7, 7, 2)))
    activation = "relu" if relu else None

    def fn(w, *b):
        return ag.max_pool(ag.conv(x, w, *b, activation=activation), 2)

    inputs = [rng.standard_normal((3, 3, 2, 5))] + ([rng.standard_normal(5)] if bias else [])
    check_gradients(fn, inputs)


def test_autograd_adds_the_gradients_of_other_readers():
    # The convolution's output also feeds a sum: its gradient goes through the
    # convolution's own backward, the pool's through the fused call.
    rng = np.random.default_rng(12)
    x = ag.Tensor(rng.standard_normal((2, 6, 6, 1)))

    def fn(w, b):
        y = ag.conv(x, w, b, activation="relu")
        return ag.max_pool(y, 2).sum(axis=(1, 2)) + (y * y).sum(axis=(1, 2))

    check_gradients(fn, [rng.standard_normal((3, 3, 1, 4)), rng.standard_normal(4)])


def test_autograd_step_has_the_bits_of_the_unfused_tape():
    rng = np.random.default_rng(13)
    x = rng.random((8, 14, 14, 1), dtype=np.float32)
    w = ag.Tensor(rng.standard_normal((3, 3, 1, 32)).astype(np.float32), requires_grad=True)
    b = ag.Tensor(rng.standard_normal(32).astype(np.float32), requires_grad=True)
    g = rng.standard_normal((8, 6, 6, 32)).astype(np.float32)
    ag.max_pool(ag.conv(x, w, b, activation="relu"), 2).backward(g)
    y = ops.conv(x, w.data, b.data, activation="relu")
    pooled, indices = ops.max_pool(y, 2, return_indices=True)
    dout = ops.max_pool_backward(y, g, 2, indices=indices, relu_output=pooled)
    _, dw, db = ops.conv_backward(x, w.data, dout, need=("w", "b"))
    np.testing.assert_array_equal(w.grad, dw)
    np.testing.assert_array_equal(b.grad, db)
