"""Products with many rows against a short, narrow B (csrc/gemm_small_k.hpp).

On the AVX2 and AVX-512 float paths a product of at least 257 rows with k <= 256, n <= 256
and k times n (rounded up to 16) at most 8192 -- MobileNet's 1x1 convolutions, their
input gradients, matmul and Dense on such operands -- reads A in place with a register
tile of 16, 32 or 48 columns and applies the bias and activation in registers. Checked
here: results against the NumPy reference over random shapes (every column tail, row
tails, bias, activation, non-contiguous inputs, both dtypes, every instruction-set path);
the same bits as the packed GEMM, which products of fewer rows take, for conv, its input
gradient and matmul, with NaN and infinite inputs too; identical bits at 1, 2 and 3
threads.
"""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
MIN_ROWS = 257  # gemm_small_k.hpp's small_k::kMinRows
ACTIVATIONS = [None, "relu", "relu6", "leaky_relu", "sigmoid"]


def _activate(y, activation):
    if activation == "relu":
        return np.maximum(y, 0)
    if activation == "relu6":
        return np.minimum(np.maximum(y, 0), 6)
    if activation == "leaky_relu":
        return np.where(y > 0, y, 0.2 * y)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-y))
    return y


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([F32, F64]))
    cin = draw(st.integers(5, 160))  # at least 5: not the few-channel loops
    cout = draw(st.integers(1, 200))  # every tail of 16, 32 and 48 columns
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 40)), draw(st.integers(1, 40))
    layout = draw(st.sampled_from(["contiguous", "fortran", "channel_stride"]))
    x = layout_view(seeded((n, h, w, cin), dtype, 1), layout)
    wt = seeded((1, 1, cin, cout), dtype, 2)
    b = draw(st.sampled_from([None, seeded((cout,), dtype, 3)]))
    return x, wt, b, draw(st.sampled_from(ACTIVATIONS))


@pytest.mark.usefixtures("restore_isa")
@settings(max_examples=30)
@given(problems())
def test_matches_reference(problem):
    x, w, b, activation = problem
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = _activate(reference.conv(x64, w64, b), activation)
    scale = reference.conv(np.abs(x64), np.abs(w64), None if b is None else np.abs(b))
    dy = seeded(want.shape, x.dtype, 4)
    want_dx = reference.conv_backward(x64, w64, dy.astype(np.float64), need=("x",))[0]
    dx_scale = reference.conv_backward(x64, np.abs(w64), np.abs(dy), need=("x",))[0]
    rtol = 1e-4 if x.dtype == F32 else 1e-10
    for isa in _core.available_isas():
        _core.set_isa(isa)
        got = ops.conv(x, w, b, activation=activation)
        assert got.dtype == x.dtype and got.shape == want.shape, isa
        assert np.all(np.abs(got - want) <= rtol * scale + 1e-30), isa
        dx = ops.conv_backward(x, w, dy, need=("x",))[0]
        assert np.all(np.abs(dx - want_dx) <= rtol * dx_scale + 1e-30), isa


def _bits(x):
    """x's bit patterns: -0 differs from +0, and NaN payloads count."""
    return x.view(np.int32)


def _rows_in_pieces(f, a, piece=200):
    """f over a's rows in pieces of fewer than MIN_ROWS rows, which the small-K path does not
    take (matmul's go to the packed GEMM, a conv's on AVX-512 to the few-row GEMM, with the
    packed GEMM's bits)."""
    return np.concatenate([f(a[i : i + piece]) for i in range(0, len(a), piece)])


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(
    ("rows", "k", "n"),
    [
        (12544 // 4, 32, 16),  # MobileNet v2's features.1 conv.1 (a quarter of its rows)
        (3136, 16, 96),  # features.2 conv.0's shape: two 48-column blocks
        (1000, 24, 144),  # three blocks of 48, rows not a multiple of any tile height
        (784, 144, 24),  # a 32-column tile, 8 columns masked
        (300, 256, 32),  # the longest k
        (1111, 7, 61),  # 48 + 13 columns (AVX-512), 32 + 29 (AVX2)
        (257, 1, 1),  # the fewest rows, a single column
    ],
)
def test_same_bits_as_the_packed_path(activation, rows, k, n):
    a, b = seeded((rows, k), F32, 1), seeded((k, n), F32, 2)
    bias = seeded((n,), F32, 3)
    a[5, 0], a[9, k - 1], b[0, n - 1] = np.nan, np.inf, -np.inf
    for isa in _core.available_isas():
        _core.set_isa(isa)

        def mm(part, a=a, b=b, bias=bias):
            return ops.matmul(part, b, bias=bias, activation=activation)

        np.testing.assert_array_equal(_bits(mm(a)), _bits(_rows_in_pieces(mm, a)), err_msg=isa)
        x, w = a.reshape(1, 1, rows, k), b.reshape(1, 1, k, n)

        def conv(part, w=w, bias=bias):
            return ops.conv(part.reshape(1, 1, -1, k), w, bias, activation=activation)[0, 0]

        np.testing.assert_array_equal(_bits(conv(a)), _bits(_rows_in_pieces(conv, a)), err_msg=isa)
        # The input gradient: dy (rows x n) times w transposed.
        dy = seeded((1, 1, rows, n), F32, 4)

        def dx(part, x=x, w=w):
            dy_part = part.reshape(1, 1, -1, n)
            return ops.conv_backward(x[:, :, : len(part)], w, dy_part, need=("x",))[0][0, 0]

        np.testing.assert_array_equal(
            _bits(dx(dy[0, 0])), _bits(_rows_in_pieces(dx, dy[0, 0])), err_msg=isa
        )


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize(("side", "cin", "cout"), [(112, 32, 16), (56, 24, 144), (29, 96, 24)])
def test_identical_bits_for_any_thread_count(side, cin, cout):
    x, w = seeded((1, side, side, cin), F32, 1), seeded((1, 1, cin, cout), F32, 2)
    b, dy = seeded((cout,), F32, 3), seeded((1, side, side, cout), F32, 4)
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        y = ops.conv(x, w, b, activation="relu6")
        dx = ops.conv_backward(x, w, dy, need=("x",))[0]
        results.append((y, dx))
    for y, dx in results[1:]:
        assert np.array_equal(_bits(y), _bits(results[0][0]))
        assert np.array_equal(_bits(dx), _bits(results[0][1]))
