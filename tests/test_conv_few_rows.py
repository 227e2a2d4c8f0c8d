"""Convolutions with few output rows (csrc/gemm_few_rows.hpp): batch-1 inference's deep layers.

On the AVX-512 float path a convolution with at most 256 output positions over the batch
(1024 with weights of 2 MiB or more, or at several threads where they share bands of rows;
one group; more than 512 output channels only from 16 rows) multiplies its patches, gathered
one k block at a time, by the weights read in place, 32 output channels per panel, the bias
and activation applied as the last block is stored. Checked
here: results against the NumPy reference over random shapes (panel tails, several k
blocks, strides, padding, dilation, bias and activation, non-contiguous inputs, both
dtypes, every instruction-set path); the same bits as the packed GEMM path that larger
batches take, for the im2col and pointwise cases; identical bits at 1, 2 and 3 threads,
whether the threads share the columns or bands of rows. 2-D windows over 16 or more
input channels (up to 1024 rows, 512 output channels) read the patches in place, from a
zero-padded copy of the input where there is padding: the same bits again.
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
MAX_ROWS = 1024  # gemm_few_rows.hpp's few_rows::kMaxRowsLargeB (kMaxRows: 256)


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([F32, F64]))
    cin = draw(st.integers(5, 40))  # at least 5: the GEMM paths, not the few-channel loops
    # panels of 32 and tails of every width; past 512, chunks of columns
    cout = draw(st.one_of(st.integers(1, 150), st.integers(500, 1100)))
    k = draw(st.sampled_from([(1, 1), (3, 3), (1, 3), (2, 2), (5, 5)]))
    stride = draw(st.sampled_from([1, 2]))
    dilation = draw(st.sampled_from([1, 1, 2]))
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    pad = draw(st.integers(0, 2))
    for size, kk in zip((h, w), k):  # at least one output position
        pad = max(pad, -(-(dilation * (kk - 1) + 1 - size) // 2))
    x = layout_view(
        seeded((n, h, w, cin), dtype, 1), draw(st.sampled_from(["contiguous", "fortran"]))
    )
    wt = seeded((*k, cin, cout), dtype, 2)
    b = draw(st.sampled_from([None, seeded((cout,), dtype, 3)]))
    activation = draw(st.sampled_from([None, "relu", "leaky_relu", "relu6", "sigmoid"]))
    spec = {"stride": stride, "padding": pad, "dilation": dilation}
    return x, wt, b, spec, activation


@pytest.mark.usefixtures("restore_isa")
@settings(max_examples=30)
@given(problems())
def test_matches_reference(problem):
    x, w, b, spec, activation = problem
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = reference.conv(x64, w64, b, **spec)
    if activation == "relu":
        want = np.maximum(want, 0)
    elif activation == "leaky_relu":
        want = np.where(want > 0, want, 0.2 * want)
    elif activation == "relu6":
        want = np.minimum(np.maximum(want, 0), 6)
    elif activation == "sigmoid":
        want = 1 / (1 + np.exp(-want))
    scale = reference.conv(np.abs(x64), np.abs(w64), None if b is None else np.abs(b), **spec)
    rtol = 1e-4 if x.dtype == F32 else 1e-10
    for isa in _core.available_isas():
        _core.set_isa(isa)
        got = ops.conv(x, w, b, **spec, activation=activation, winograd=False)
        assert got.dtype == x.dtype and got.shape == want.shape, isa
        assert np.all(np.abs(got - want) <= rtol * scale + 1e-30), isa


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize(
    ("image", "kernel", "cin", "cout", "pad", "images"),
    [
        ((7, 7), (3, 3), 300, 200, 1, 1),  # k = 2700: 11 k blocks, the last one shorter
        ((13, 13), (3, 3), 64, 130, 1, 1),  # 169 rows: row tiles of 6 and a tail of 1
        ((5, 6), (1, 1), 48, 33, 0, 1),  # pointwise: the input is the left operand
        ((1, 1), (1, 1), 8, 1, 0, 1),  # a single output element
        ((13, 13), (3, 3), 224, 300, 1, 2),  # 338 rows: few-row only for 2.4 MB of weights
        # more than 512 output channels: chunks of columns, the next one's weights
        # prefetched (SqueezeNet's classifier, MobileNet v2's last 1x1)
        ((13, 13), (1, 1), 64, 1000, 0, 1),
        ((7, 7), (1, 1), 40, 1280, 0, 1),
        ((3, 5), (1, 1), 16, 700, 0, 1),  # 15 rows: the packed GEMM on both sides
    ],
)
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "relu6", "sigmoid"])
@pytest.mark.parametrize("bias", [True, False])
def test_same_bits_as_the_packed_path(image, kernel, cin, cout, pad, images, activation, bias):
    # `images` images go through the few-row path; the same images inside a batch of
    # more than 1024 rows go through the packed GEMM. Their rows must agree bit for bit,
    # the fused bias and activation (the packed path's in its tile store, the few-row
    # path's in its own) included, and NaN and infinities in the input too.
    rows = image[0] * image[1]
    batch = MAX_ROWS // rows + 2
    x = seeded((batch, *image, cin), F32, 1) * 4
    x[0, 0, 0, 0], x[0, -1, -1, -1], x[-1, 0, 0, 0] = np.nan, np.inf, -np.inf
    w = seeded((*kernel, cin, cout), F32, 2)
    b = seeded((cout,), F32, 3) if bias else None
    for isa in _core.available_isas():
        _core.set_isa(isa)
        big = ops.conv(x, w, b, padding=pad, activation=activation, winograd=False)
        small = ops.conv(x[:images], w, b, padding=pad, activation=activation, winograd=False)
        # as integers: -0.0 against +0.0 and NaN payloads count
        np.testing.assert_array_equal(small.view(np.int32), big[:images].view(np.int32), isa)


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize(
    ("image", "kernel", "cin", "cout", "spec", "images"),
    [
        # 2-D windows over 16 or more channels read the patches in place (conv.cpp's
        # implicit_patches_apply), from a zero-padded copy where there is padding
        ((14, 14), (3, 3), 256, 64, {"padding": 1}, 1),  # one output row per tile; 256 + 16
        ((7, 7), (3, 3), 64, 40, {"padding": 1}, 2),  # two rows per tile, never two images
        ((28, 28), (3, 3), 48, 33, {"padding": 1}, 1),  # two tiles per row; blocks span taps
        ((14, 15), (3, 3), 32, 64, {"stride": 2, "padding": "same"}, 1),  # padding (0, 1)
        ((14, 14), (1, 1), 64, 96, {"stride": 2}, 1),  # no padding: x itself, in place
        ((9, 11), (3, 2), 24, 70, {"padding": 2, "dilation": 2}, 1),
        ((27, 27), (5, 5), 24, 48, {"padding": 2}, 1),  # 729 rows: past the gathered path's 256
        ((6, 8), (3, 3), 20, 32, {"padding": 1}, 3),  # 8-wide rows: two per tile
    ],
)
def test_patches_in_place_same_bits_as_the_packed_path(image, kernel, cin, cout, spec, images):
    # The in-place tiles sum each k block over its kernel taps in the packed GEMM's
    # order, so their bits are those of the gathered patches' product (the packed GEMM
    # over more than 1024 rows), at any thread count (columns or whole output rows
    # per thread); NaN and infinities included.
    positions = reference.conv(np.zeros((1, *image, 1)), np.zeros((*kernel, 1, 1)), **spec).size
    batch = MAX_ROWS // positions + 2
    x = seeded((batch, *image, cin), F32, 1) * 4
    x[0, 0, 0, 0], x[0, -1, -1, -1], x[-1, 0, 0, 0] = np.nan, np.inf, -np.inf
    x[images - 1, image[0] // 2, 1, 3] = -np.inf
    w = seeded((*kernel, cin, cout), F32, 2)
    b = seeded((cout,), F32, 3)
    with np.errstate(invalid="ignore"):
        want64 = reference.conv(x[:images].astype(np.float64), w.astype(np.float64), b, **spec)
    for isa in _core.available_isas():
        _core.set_isa(isa)
        cnnkit.set_num_threads(1)
        big = ops.conv(x, w, b, **spec, activation="relu", winograd=False)
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            small = ops.conv(x[:images], w, b, **spec, activation="relu", winograd=False)
            np.testing.assert_array_equal(
                small.view(np.int32), big[:images].view(np.int32), f"{isa} {threads}"
            )
        finite = np.isfinite(want64)
        np.testing.assert_allclose(
            small[finite], np.maximum(want64[finite], 0), rtol=1e-4, atol=1e-3
        )


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("pointwise", [False, True])
@pytest.mark.parametrize(
    ("side", "cin", "cout"),
    [
        (7, 96, 300),  # 49 rows and 300 output channels: 5 panels, shared by 2 or 3 threads
        (13, 96, 150),  # 169 rows, 150 channels: bands of 84-85 or 56-57 rows, all panels each
        # 729 rows, k = 1152 (3x3), 0.3 MB of weights: the packed GEMM on one thread, bands
        # of rows here on more (gemm_few_rows.cpp's banded_applies)
        (27, 128, 64),
        # AlexNet's conv4 at batch 1: 169 rows, 3.5 MB of weights (3x3), between kLargeB and
        # kRowsLargeB, so bands of rows at several threads
        (13, 384, 256),
        # 169 rows, 384 channels: m >= n / 3, bands of rows (AlexNet's conv3 at batch 1)
        (13, 64, 384),
        # 49 rows, 1280 channels: four chunks of 320 columns, two per thread at 2 threads
        (7, 40, 1280),
    ],
)
def test_identical_bits_for_any_thread_count(pointwise, side, cin, cout):
    kernel, pad = ((1, 1), 0) if pointwise else ((3, 3), 1)
    x, w = seeded((1, side, side, cin), F32, 1), seeded((*kernel, cin, cout), F32, 2)
    b = seeded((cout,), F32, 3)
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        results.append(ops.conv(x, w, b, padding=pad, activation="relu", winograd=False))
    want = np.maximum(reference.conv(x.astype(np.float64), w.astype(np.float64), b, padding=pad), 0)
    np.testing.assert_allclose(results[0], want, rtol=1e-4, atol=1e-4)
    for r in results[1:]:
        assert np.array_equal(r, results[0])


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize(
    ("side", "cin", "cout", "few_rows"),
    [
        (13, 48, 192, True),  # 169 of 256 tile outputs: im2col on the few-row GEMM
        (13, 64, 256, True),  # SqueezeNet 1.1's expand3x3 layers at batch 1
        (14, 32, 64, False),  # 196 of 256: Winograd
    ],
)
def test_sparse_winograd_tiles_take_the_few_row_gemm(side, cin, cout, few_rows):
    # conv.cpp's sparse_tiles_on_few_rows: the automatic choice has the bits of
    # winograd=False on the AVX-512 float path where it applies, of Winograd elsewhere,
    # at any thread count; every path agrees with the reference.
    x, w = seeded((1, side, side, cin), F32, 1), seeded((3, 3, cin, cout), F32, 2)
    b = seeded((cout,), F32, 3)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = np.maximum(reference.conv(x64, w64, b, padding=1), 0)
    # Winograd's error is relative to the terms' magnitudes, not to each output's
    scale = reference.conv(np.abs(x64), np.abs(w64), np.abs(b), padding=1)
    for isa in _core.available_isas():
        _core.set_isa(isa)
        results = []
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            results.append(ops.conv(x, w, b, padding=1, activation="relu"))
        assert np.array_equal(results[0], results[1]), isa
        assert np.all(np.abs(results[0] - want) <= 1e-4 * scale), isa
        same_as = few_rows and isa == "avx512"
        other = ops.conv(x, w, b, padding=1, activation="relu", winograd=not same_as)
        assert np.array_equal(results[0], other), isa


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_patches_in_place_store_into_a_slice(threads):
    # ops.conv(out=): the in-place tiles store pixels ldy apart (here 100 channels, the
    # output's 64 in the middle), the bits of the dense call, the other channels untouched.
    cnnkit.set_num_threads(threads)
    x, w = seeded((1, 28, 28, 32), F32, 1), seeded((3, 3, 32, 64), F32, 2)
    b = seeded((64,), F32, 3)
    spec = {"stride": 2, "padding": 1, "activation": "relu"}
    dense = ops.conv(x, w, b, **spec)
    buf = np.full((1, 14, 14, 100), 7.25, np.float32)
    assert ops.conv(x, w, b, **spec, out=buf[..., 20:84]) is not None
    np.testing.assert_array_equal(buf[..., 20:84].view(np.int32), dense.view(np.int32))
    assert np.all(buf[..., :20] == 7.25) and np.all(buf[..., 84:] == 7.25)
