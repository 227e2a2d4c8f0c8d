"""The forward convolution's cache of packed weights (csrc/conv_weight_cache.hpp).

Off by default; with ``CNNKIT_CONV_CACHE_MB`` set, small problems (up to 4096 output rows
over the batch) on the im2col and pointwise GEMM paths take their packed weights from the
cache, except the few-row products that csrc/gemm_few_rows.hpp takes (float on AVX-512, at
most 256 rows, or 1024 with weights of 2 MiB or more or with the patches read in place) and
the float 1x1 products with short, narrow weights that csrc/gemm_small_k.hpp takes (AVX2 and
AVX-512). The tests that count hits run in a child process with the variable set, since the
budget is read once per process. Checked: a repeated call hits and gives the same bits;
weights changed in place miss and give the bits of a fresh computation; the pointwise
product has the bits of the plain GEMM; results against the NumPy reference over random
shapes (groups, strides, padding, dilation, both dtypes, non-contiguous weights); identical
bits at 1, 2 and 3 threads; the default and a zero budget keep nothing.
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


def run_with_budget(code: str, megabytes: str | None) -> str:
    """Run ``code`` in a child process with ``CNNKIT_CONV_CACHE_MB`` set (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "CNNKIT_CONV_CACHE_MB"}
    if megabytes is not None:
        env["CNNKIT_CONV_CACHE_MB"] = megabytes
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


STALE = """
import numpy as np
from cnnkit import _core, ops

def stats():
    return _core._conv_weight_cache_stats()

for dtype in (np.float32, np.float64):
    for kernel in ((3, 3), (1, 1)):
        pad = (kernel[0] - 1) // 2
        # 1176 output rows: more than the few-row path takes (1024); 300 output channels:
        # more than the small-k path's (csrc/gemm_small_k.hpp). So the packed path runs.
        x = np.random.default_rng(1).standard_normal((24, 7, 7, 40)).astype(dtype)
        for isa in _core.available_isas():
            where = (np.dtype(dtype).name, kernel, isa)
            _core.set_isa(isa)
            w = np.random.default_rng(2).standard_normal((*kernel, 40, 300)).astype(dtype)
            _core._clear_conv_weight_cache()
            before = stats()
            first = ops.conv(x, w, padding=pad, winograd=False)
            after = stats()
            assert after["misses"] - before["misses"] == 1, where
            assert after["entries"] == 1 and after["bytes"] > 0, where
            again = ops.conv(x, w, padding=pad, winograd=False)
            assert stats()["hits"] - after["hits"] == 1, where
            assert np.array_equal(first, again), where
            w[0, 0, 39, 23] += 1  # in place: same buffer, new values
            before = stats()
            changed = ops.conv(x, w, padding=pad, winograd=False)
            assert stats()["misses"] - before["misses"] == 1, where
            fresh = ops.conv(x, w.copy(), padding=pad, winograd=False)
            assert np.array_equal(changed, fresh), where
            assert not np.array_equal(changed, first), where
print("ok")
"""


def test_in_place_changes_are_never_served_stale():
    assert run_with_budget(STALE, "512").split() == ["ok"]


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


@pytest.mark.parametrize("megabytes", [None, "", "0"])
def test_default_and_zero_budget_keep_nothing(megabytes):
    code = (
        "import numpy as np; from cnnkit import _core, ops\n"
        "x = np.ones((20, 8, 8, 32), np.float32); w = np.ones((3, 3, 32, 16), np.float32)\n"
        "a = ops.conv(x, w, padding='same', winograd=False)\n"
        "b = ops.conv(x, w, padding='same', winograd=False)\n"
        "s = _core._conv_weight_cache_stats()\n"
        "print(np.array_equal(a, b), s['entries'], s['hits'])"
    )
    assert run_with_budget(code, megabytes).split() == ["True", "0", "0"]
    assert run_with_budget(code, "512").split() == ["True", "1", "1"]
