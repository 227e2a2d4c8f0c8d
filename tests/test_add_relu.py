"""The fused residual add and ReLU: ``cnnkit.ops.add_relu`` against ``cnnkit.reference``
(bit for bit: one addition and a comparison), NaN and signed zeros, thread invariance,
the ONNX AddReLU layer that uses it, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import ops, reference
from cnnkit.onnx import _layers as ol

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "channel_stride", "fortran", "reversed_batch", "spatial_slice")


@st.composite
def cases(draw):
    dtype_a = draw(st.sampled_from(DTYPES))
    dtype_b = draw(st.sampled_from([dtype_a, *DTYPES]))
    rank = draw(st.integers(0, 4))
    shape = tuple(draw(st.integers(0 if i == 0 else 1, 5)) for i in range(rank))
    layouts = draw(st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)))
    return dtype_a, dtype_b, shape, layouts


@given(cases())
def test_add_relu_matches_reference(case):
    dtype_a, dtype_b, shape, layouts = case
    a, b = seeded(shape, dtype_a, seed=1), seeded(shape, dtype_b, seed=2)
    views = [
        layout_view(v, layout) if v.ndim >= 3 and v.size else v
        for v, layout in zip((a, b), layouts)
    ]
    got = ops.add_relu(*views)
    want = reference.add_relu(a, b)
    assert got.dtype == np.result_type(a, b) and got.shape == shape
    assert got.tobytes() == want.tobytes()
    assert got.tobytes() == np.maximum(a + b, 0).tobytes()  # the NumPy pair it replaces


def test_large_array_on_threads_equals_numpy(restore_threads):
    # Large enough to be cut between threads, with a length that is no multiple of a
    # cache line, so the last chunk is partial.
    a, b = seeded((3, 57, 57, 65), np.float32, 3), seeded((3, 57, 57, 65), np.float32, 4)
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        results.append(ops.add_relu(a, b))
    for got in results:
        assert got.tobytes() == np.maximum(a + b, 0).tobytes()


def test_nan_infinity_and_signed_zero_pass_as_numpy_does():
    a = np.array([np.nan, -0.0, 0.0, -0.0, np.inf, -np.inf, 1.0, -1.0, np.inf], np.float32)
    b = np.array([1.0, -0.0, -0.0, 0.0, -np.inf, 1.0, np.nan, 0.5, 1.0], np.float32)
    with np.errstate(invalid="ignore"):
        want = np.maximum(a + b, 0)
    got = ops.add_relu(a, b)
    assert got.tobytes() == want.tobytes()
    assert not np.signbit(got[:4]).any()  # every zero, -0.0 + -0.0 too, is +0.0


def test_onnx_add_relu_layer_has_numpys_bits():
    layer = ol.AddReLU(dtype="float32")
    a, b = seeded((2, 4, 4, 3), np.float32, 5), seeded((2, 4, 4, 3), np.float32, 6)
    a[0, 0, 0] = -b[0, 0, 0]  # exact zeros
    out = layer([cnnkit.autograd.Tensor(a), cnnkit.autograd.Tensor(b)])
    assert out.data.tobytes() == np.maximum(a + b, 0).tobytes()


def test_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"add_relu\(\): b must have the shape of a \(2, 3\)"):
        ops.add_relu(x, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"add_relu\(\): b must have the shape"):
        ops.add_relu(x, np.zeros((3,), np.float32))  # no broadcasting
    with pytest.raises(TypeError, match=r"add_relu\(\): a must have dtype float32 or float64"):
        ops.add_relu(np.zeros((2, 3), np.int32), x)
    with pytest.raises(TypeError, match=r"add_relu\(\): b must hold numbers"):
        ops.add_relu(x, np.array([["a"] * 3] * 2))
