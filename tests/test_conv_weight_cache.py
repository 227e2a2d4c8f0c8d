"""The forward convolution's cache of packed weights (csrc/conv_weight_cache.hpp).

Small problems (up to 4096 output rows over the batch) on the im2col and pointwise GEMM
paths take their packed weights from the cache. Checked here: a repeated call hits and
gives the same bits; weights changed in place miss and give the bits of a fresh
computation; the cached pointwise product has the bits of the plain GEMM; results against
the NumPy reference over random shapes (groups, strides, padding, dilation, both dtypes,
non-contiguous weights, which the binding copies, so every call misses); identical bits at
1, 2 and 3 threads; a zero budget disables the cache.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def stats() -> dict[str, int]:
    return _core._conv_weight_cache_stats()


def tolerance(dtype: np.dtype, depth: int) -> float:
    return (1e-5 if dtype == F32 else 1e-12) * max(1.0, np.sqrt(depth))


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([F32, F64]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    # At least 5 channels per group: the GEMM paths, not the few-channel loops.
    cin = groups * draw(st.integers(5, 12))
    cout = groups * draw(st.integers(1, 9))
    k = draw(st.sampled_from([(1, 1), (3, 3), (1, 3), (2, 2)]))
    stride = draw(st.sampled_from([1, 2]))
    dilation = draw(st.sampled_from([1, 1, 2]))
    n = draw(st.integers(0, 2))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pad = draw(st.integers(0, 2))
    layout = draw(st.sampled_from(["contiguous", "fortran", "channels_first"]))
    for size, kk in zip((h, w), k):  # at least one output position
        pad = max(pad, -(-(dilation * (kk - 1) + 1 - size) // 2))
    x = seeded((n, h, w, cin), dtype, 1)
    wt = layout_view(seeded((*k, cin // groups, cout), dtype, 2), layout)
    b = seeded((cout,), dtype, 3)
    spec = {"stride": stride, "padding": pad, "dilation": dilation, "groups": groups}
    return x, wt, b, spec


@given(problems())
def test_matches_reference(problem):
    x, w, b, spec = problem
    want = reference.conv(x.astype(np.float64), w.astype(np.float64), b, **spec)
    for _ in range(2):  # a miss, then (contiguous weights) a hit
        got = ops.conv(x, w, b, **spec, activation="relu")
        assert got.dtype == x.dtype and got.shape == want.shape
        depth = w.shape[0] * w.shape[1] * w.shape[2]
        scale = reference.conv(np.abs(x), np.abs(w), np.abs(b), **spec).astype(np.float64)
        assert np.all(np.abs(got - np.maximum(want, 0)) <= tolerance(x.dtype, depth) * (scale + 1))


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kernel", [(3, 3), (1, 1)])
def test_in_place_changes_are_never_served_stale(dtype, kernel):
    pad = (kernel[0] - 1) // 2
    x = seeded((2, 7, 7, 40), dtype, 1)
    for isa in _core.available_isas():
        _core.set_isa(isa)
        w = seeded((*kernel, 40, 24), dtype, 2)
        _core._clear_conv_weight_cache()
        before = stats()
        first = ops.conv(x, w, padding=pad)
        after = stats()
        assert after["misses"] - before["misses"] == 1, isa
        assert after["entries"] == 1 and after["bytes"] > 0, isa
        again = ops.conv(x, w, padding=pad)
        assert stats()["hits"] - after["hits"] == 1, isa
        assert np.array_equal(first, again), isa
        w[0, 0, 39, 23] += 1  # in place: same buffer, new values
        before = stats()
        changed = ops.conv(x, w, padding=pad)
        assert stats()["misses"] - before["misses"] == 1, isa
        fresh = ops.conv(x, w.copy(), padding=pad)
        assert np.array_equal(changed, fresh), isa
        assert not np.array_equal(changed, first), isa


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_cached_pointwise_has_the_bits_of_the_gemm(dtype):
    x, w, b = (
        seeded((1, 5, 6, 48), dtype, 1),
        seeded((1, 1, 48, 33), dtype, 2),
        seeded((33,), dtype, 3),
    )
    for isa in _core.available_isas():
        _core.set_isa(isa)
        want = ops.matmul(x.reshape(-1, 48), w.reshape(48, 33), bias=b, activation="relu")
        for _ in range(2):
            got = ops.conv(x, w, b, activation="relu")
            assert np.array_equal(got.reshape(-1, 33), want), isa


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("groups", [1, 2])
def test_identical_bits_for_any_thread_count(groups):
    # 49 rows are one tile: with 2 or 3 threads each 128-column slice of the 300 output
    # channels (per group) is a task of its own.
    x, w = seeded((1, 14, 14, 64), F32, 1), seeded((3, 3, 64 // groups, 300), F32, 2)
    b = seeded((300,), F32, 3)
    want = reference.conv(
        x.astype(np.float64), w.astype(np.float64), b, padding=1, stride=2, groups=groups
    )
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        _core._clear_conv_weight_cache()
        for _ in range(2):  # packed afresh, then from the cache
            y = ops.conv(x, w, b, padding=1, stride=2, groups=groups, winograd=False)
            results.append(y)
    np.testing.assert_allclose(results[0], want, rtol=1e-4, atol=1e-4)
    for r in results[1:]:
        assert np.array_equal(r, results[0])


def test_budget_zero_disables_the_cache():
    code = (
        "import numpy as np; from cnnkit import _core, ops\n"
        "x = np.ones((1, 8, 8, 16), np.float32); w = np.ones((3, 3, 16, 16), np.float32)\n"
        "a = ops.conv(x, w, padding='same', winograd=False)\n"
        "b = ops.conv(x, w, padding='same', winograd=False)\n"
        "s = _core._conv_weight_cache_stats()\n"
        "print(np.array_equal(a, b), s['entries'], s['hits'])"
    )
    env = {**os.environ, "CNNKIT_CONV_CACHE_MB": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "0", "0"], out.stderr
