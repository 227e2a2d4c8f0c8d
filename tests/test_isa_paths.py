"""The instruction-set paths (baseline, avx2, avx512) against each other.

Within one path results are bit-identical for any thread count (tested per kernel
family in test_conv, test_matmul, test_gram). Across paths:

- pooling and the IoU family do the same operations in the same order on every path, so
  their results are bit-identical;
- the GEMM family (matmul, conv forward and backward, Gram) differs in rounding only:
  the vector paths fuse multiply and add (FMA) and cut k into blocks of their own size.
  Two paths agree within ``2 * rtol * sqrt(K) * (|A| @ |B|)`` elementwise, with ``rtol``
  1e-5 (float32) and 1e-13 (float64): twice the bound each meets against the float64
  product (test_matmul's tolerance), K being the length of the sums.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from arrays import seeded

import cnnkit
from cnnkit import _core, ops, reference

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = (F32, F64)
RTOL = {F32: 1e-5, F64: 1e-13}
PATHS = [p for p in ("baseline", "avx2", "avx512") if p in _core.available_isas()]

pytestmark = [
    pytest.mark.usefixtures("restore_isa", "restore_threads"),
    pytest.mark.skipif(len(PATHS) < 2, reason="one instruction-set path only"),
]


def on_each_path(fn):
    """{path: fn()} for every available path."""
    out = {}
    for path in PATHS:
        _core.set_isa(path)
        out[path] = fn()
    return out


def assert_paths_agree(results: dict, scale: np.ndarray, k: int, dtype) -> None:
    bound = 2 * RTOL[np.dtype(dtype)] * math.sqrt(max(k, 1)) * scale + np.finfo(dtype).tiny
    first = PATHS[0]
    for path in PATHS[1:]:
        err = np.abs(results[path].astype(np.float64) - results[first])
        assert (err <= bound).all(), f"{path} vs {first}: max excess {(err - bound).max()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "k", "n"), [(517, 389, 701), (67, 1000, 13), (5, 3, 2)])
def test_matmul_paths_agree(m, k, n, dtype):
    a, b = seeded((m, k), dtype, 1), seeded((k, n), dtype, 2)
    bias = seeded((n,), dtype, 3)
    results = on_each_path(lambda: ops.matmul(a, b, bias=bias))
    scale = np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(bias)
    assert_paths_agree(results, scale, k, dtype)


CONV_CASES = [
    ((2, 20, 19, 8), (3, 3, 8, 16), {"padding": "same"}),
    ((2, 12, 11, 64), (3, 3, 64, 70), {"padding": 1, "stride": 2}),
    ((2, 20, 19, 8), (3, 3, 1, 16), {"padding": 1, "groups": 8}),
    ((2, 20, 19, 1), (5, 5, 1, 32), {"padding": "same"}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), CONV_CASES)
def test_conv_paths_agree(x_shape, w_shape, kwargs, dtype):
    x, w = seeded(x_shape, dtype, 4), seeded(w_shape, dtype, 5)
    b = seeded(w_shape[-1:], dtype, 6)
    y = ops.conv(x, w, b, **kwargs)
    dy = seeded(y.shape, dtype, 7)
    ax, aw, ab, ady = (np.abs(v).astype(np.float64) for v in (x, w, b, dy))
    k = math.prod(w_shape[:-1])
    fwd = on_each_path(lambda: ops.conv(x, w, b, **kwargs))
    assert_paths_agree(fwd, reference.conv(ax, aw, ab, **kwargs), k, dtype)
    bwd = on_each_path(lambda: ops.conv_backward(x, w, dy, **kwargs))
    scales = reference.conv_backward(ax, aw, ady, **kwargs)
    rows = y.size // y.shape[-1]
    for i, (scale, length) in enumerate(zip(scales, (w_shape[-1] * k, rows, rows))):
        assert_paths_agree({p: r[i] for p, r in bwd.items()}, scale, length, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 9, 9, 40), (1, 30, 30, 100)])
def test_gram_paths_agree(shape, dtype):
    x = seeded(shape, dtype, 8)
    positions = math.prod(shape[1:-1])
    results = on_each_path(lambda: ops.gram(x))
    assert_paths_agree(results, reference.gram(np.abs(x).astype(np.float64)), positions, dtype)
    for g in results.values():  # every path's Gram matrix is exactly symmetric
        assert np.array_equal(g, np.swapaxes(g, 1, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_is_bit_identical_on_every_path(dtype):
    x = seeded((3, 17, 19, 37), dtype, 9)
    calls = [
        lambda: ops.max_pool(x, 3, stride=2, padding="same"),
        lambda: ops.avg_pool(x, 2),
        lambda: ops.global_avg_pool(x),
        lambda: ops.global_max_pool(x),
        lambda: ops.max_pool_backward(x, ops.max_pool(x, 2), 2),
        lambda: ops.avg_pool_backward(x, ops.avg_pool(x, 3, padding="same"), 3, padding="same"),
    ]
    for call in calls:
        results = on_each_path(call)
        for path in PATHS[1:]:
            assert np.array_equal(results[path], results[PATHS[0]]), path


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_conv_is_deterministic_on_each_path(path, dtype):
    _core.set_isa(path)
    x, w = seeded((3, 15, 14, 24), dtype, 10), seeded((3, 3, 24, 40), dtype, 11)
    b = seeded((40,), dtype, 12)
    cnnkit.set_num_threads(1)
    first = ops.conv(x, w, b, padding="same", activation="leaky_relu")
    for n in (2, 3):
        cnnkit.set_num_threads(n)
        got = ops.conv(x, w, b, padding="same", activation="leaky_relu")
        assert np.array_equal(got, first), f"{path}, {n} threads"
