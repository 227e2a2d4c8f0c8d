"""A network's first layer (csrc/conv_stem.hpp): a large strided window over few channels.

On the AVX-512 float path a 2-D convolution from at most 4 channels with a window of at
least 3 x 3, stride 2 or more and no dilation (ResNet's 7 x 7 stride 2, AlexNet's 11 x 11
stride 4, MobileNet's and SqueezeNet's 3 x 3 stride 2) runs the few-channel loops'
operations on 64-byte vectors, relu, relu6 and leaky relu applied as the values are
stored. Checked here: results against the NumPy reference over random shapes on every
instruction-set path (the window leaving the image on every side, output channels in
blocks of 64 and every tail, bias and every activation, non-contiguous inputs, both
dtypes); the same bits as the AVX2 path's few-channel loops and epilogue; NaN and
infinities as the reference has them; identical bits at 1, 2 and 3 threads.
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


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([F32, F32, F64]))
    cin = draw(st.integers(1, 4))
    # 3 x 3 windows of 3 channels take an unrolled tile of their own.
    small = draw(st.booleans())
    kh, kw = (3, 3) if small else (draw(st.integers(3, 11)), draw(st.integers(3, 11)))
    stride = (draw(st.integers(2, 4)), draw(st.integers(2, 4)))
    pad = draw(st.integers(0, 4))
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(max(1, kh - 2 * pad), 40)), draw(st.integers(max(1, kw - 2 * pad), 40))
    layout = draw(st.sampled_from(["contiguous", "fortran", "batch_stride"]))
    x = layout_view(seeded((n, h, w, cin), dtype, 1), layout)
    cout = draw(st.integers(1, 70))
    wt = seeded((kh, kw, cin, cout), dtype, 2)
    b = draw(st.sampled_from([None, seeded((cout,), dtype, 3)]))
    activation = draw(st.sampled_from([None, "relu", "relu6", "leaky_relu", "sigmoid"]))
    return x, wt, b, {"stride": stride, "padding": pad}, activation


@pytest.mark.usefixtures("restore_isa")
@settings(max_examples=25)
@given(problems())
def test_matches_reference(problem):
    x, w, b, spec, activation = problem
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = reference.conv(x64, w64, b, **spec, activation=activation, negative_slope=0.3)
    # Each activation changes by at most its input's change (sigmoid a quarter of it).
    scale = reference.conv(np.abs(x64), np.abs(w64), None if b is None else np.abs(b), **spec)
    if activation == "sigmoid":
        scale = scale / 4
    rtol = 1e-4 if x.dtype == F32 else 1e-10
    results = {}
    for isa in _core.available_isas():
        _core.set_isa(isa)
        got = ops.conv(x, w, b, **spec, activation=activation, negative_slope=0.3)
        assert got.dtype == x.dtype and got.shape == want.shape, isa
        assert np.all(np.abs(got - want) <= rtol * scale + 1e-30), isa
        results[isa] = got
    # The AVX-512 kernel repeats the few-channel loops' operations in their order.
    if "avx2" in results and "avx512" in results:
        assert np.array_equal(results["avx512"], results["avx2"])


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize("activation", [None, "relu", "relu6", "leaky_relu"])
@pytest.mark.parametrize("cout, padding", [(32, 1), (64, 0)])  # MobileNet v2's, SqueezeNet's
def test_non_finite_values_as_the_reference(activation, cout, padding):
    # NaN and infinities in x and w (a NaN weight meets the padding's zeros): the fused
    # activation keeps NaN and clips an infinity as the reference does.
    x, w = seeded((1, 19, 21, 3), F32, 1), seeded((3, 3, 3, cout), F32, 2)
    b = seeded((cout,), F32, 3)
    x[0, 0, 0, 0], x[0, 5, 7, 1], x[0, 10, 3, 2] = np.nan, np.inf, -np.inf
    w[0, 0, 2, 3], w[2, 1, 0, 5] = np.nan, np.inf
    spec = {"stride": 2, "padding": padding, "activation": activation, "negative_slope": 0.1}
    with np.errstate(invalid="ignore", over="ignore"):
        want = reference.conv(x.astype(np.float64), w.astype(np.float64), b, **spec)
    results = {}
    for isa in _core.available_isas():
        _core.set_isa(isa)
        got = ops.conv(x, w, b, **spec)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=isa)
        finite, infinite = np.isfinite(want), np.isinf(want)
        np.testing.assert_array_equal(got[infinite], want[infinite], err_msg=isa)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4, err_msg=isa)
        results[isa] = got
    if "avx2" in results and "avx512" in results:
        np.testing.assert_array_equal(results["avx512"], results["avx2"])


def test_alexnet_first_layer():
    # 11 x 11 stride 4 padding 2 from 3 channels to 64, on a 67 x 67 image: 16 x 16 outputs,
    # two tiles of 192 rows, the window past the image's edge on every side.
    x, w, b = seeded((1, 67, 67, 3), F32, 1), seeded((11, 11, 3, 64), F32, 2), seeded((64,), F32, 3)
    got = ops.conv(x, w, b, stride=4, padding=2, activation="relu")
    want = np.maximum(
        reference.conv(x.astype(np.float64), w.astype(np.float64), b, stride=4, padding=2), 0
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize(
    "shape, kernel, stride, padding",
    # AlexNet's, ResNet's, MobileNet's and SqueezeNet's windows (no padding: x read in place)
    [
        ((2, 63, 63, 3), 11, 4, 2),
        ((1, 61, 58, 3), 7, 2, 3),
        ((2, 45, 47, 3), 3, 2, 1),
        ((2, 45, 47, 3), 3, 2, 0),
    ],
)
def test_identical_bits_for_any_thread_count(shape, kernel, stride, padding):
    cout = 64 + 16 + 5  # a full block of 64 channels, then a vector and a tail
    x, b = seeded(shape, F32, 1), seeded((cout,), F32, 3)
    w = seeded((kernel, kernel, shape[-1], cout), F32, 2)
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        results.append(ops.conv(x, w, b, stride=stride, padding=padding, activation="relu"))
    for r in results[1:]:
        assert np.array_equal(r, results[0])


# ops.conv_stem: the convolution from a channels-last or channels-first image, then a max
# pool, with the bits of the separate calls (on the AVX-512 float path one pass: the
# convolution's rows pooled a band at a time from a ring that stays in cache).


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == F32 else np.uint64)


def _separate(x, w, b, spec, channels_first, pool):
    y = ops.conv(ops.channels_last(x) if channels_first else x, w, b, **spec)
    return y if pool is None else ops.max_pool(y, pool[0], stride=pool[1], padding=pool[2])


@st.composite
def stem_problems(draw):
    x, w, b, spec, activation = draw(problems())
    spec = {**spec, "activation": activation, "negative_slope": 0.3}
    x = np.array(x)  # the strided layouts are problems()'s test; here the channels' order
    if draw(st.booleans()):  # NaN and infinities in x: the pool propagates NaN as max_pool
        flat = x.reshape(-1)
        for value in (np.nan, np.inf, -np.inf):
            flat[draw(st.integers(0, flat.size - 1))] = value
    channels_first = draw(st.booleans())
    if channels_first:
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    pool = None
    if draw(st.booleans()):
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, 3))
        pads = [(draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for _ in range(2)]
        pool = (k, s, draw(st.sampled_from(["valid", "same", tuple(pads)])))
    return x, w, b, spec, channels_first, pool


@pytest.mark.usefixtures("restore_isa")
@settings(max_examples=40)
@given(stem_problems())
def test_conv_stem_has_the_bits_of_the_separate_calls(problem):
    x, w, b, spec, channels_first, pool = problem
    args = {} if pool is None else dict(zip(("pool_size", "pool_stride", "pool_padding"), pool))
    for isa in _core.available_isas():
        _core.set_isa(isa)
        try:
            want = _separate(x, w, b, spec, channels_first, pool)
        except ValueError as e:  # a pool window in the padding alone, or too large
            with pytest.raises(ValueError, match="conv_stem"):
                ops.conv_stem(x, w, b, **spec, channels_first=channels_first, **args)
            assert "max_pool" in str(e)
            return
        with np.errstate(invalid="ignore", over="ignore"):
            got = ops.conv_stem(x, w, b, **spec, channels_first=channels_first, **args)
        assert got.dtype == want.dtype and got.shape == want.shape, isa
        np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=isa)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize(
    "shape, kernel, stride, padding, pool",
    # ResNet's conv1 and pool, AlexNet's and SqueezeNet's (ceil mode: one more pad after)
    [
        ((2, 61, 58, 3), 7, 2, 3, (3, 2, 1)),
        ((3, 63, 63, 3), 11, 4, 2, (3, 2, 0)),
        ((1, 45, 47, 3), 3, 2, 0, (3, 2, ((0, 1), (0, 1)))),
    ],
)
def test_conv_stem_identical_bits_for_any_thread_count(shape, kernel, stride, padding, pool):
    cout = 64 + 16 + 5
    x, b = seeded(shape, F32, 1), seeded((cout,), F32, 3)
    w = seeded((kernel, kernel, shape[-1], cout), F32, 2)
    xc = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    spec = {"stride": stride, "padding": padding, "activation": "relu"}
    args = dict(zip(("pool_size", "pool_stride", "pool_padding"), pool))
    want = _separate(x, w, b, spec, False, pool)
    for threads in (1, 2, 3, 4):
        cnnkit.set_num_threads(threads)
        np.testing.assert_array_equal(ops.conv_stem(x, w, b, **spec, **args), want)
        np.testing.assert_array_equal(
            ops.conv_stem(xc, w, b, **spec, **args, channels_first=True), want
        )


def test_conv_stem_matches_reference():
    x, w, b = seeded((2, 3, 29, 31), F64, 1), seeded((7, 7, 3, 20), F64, 2), seeded((20,), F64, 3)
    spec = {"stride": 2, "padding": 3, "activation": "relu", "channels_first": True}
    pool = {"pool_size": 3, "pool_stride": 2, "pool_padding": 1}
    want = reference.conv_stem(x, w, b, **spec, **pool)
    np.testing.assert_allclose(ops.conv_stem(x, w, b, **spec, **pool), want, rtol=1e-12)
    assert ops.conv_stem(x, w, b, **spec).shape == (2, 15, 16, 20)


def test_conv_stem_rejects_bad_arguments():
    x, w = seeded((1, 3, 16, 16), F32, 1), seeded((3, 3, 3, 8), F32, 2)
    with pytest.raises(ValueError, match=r"conv_stem\(\): pool_stride and pool_padding need"):
        ops.conv_stem(x, w, pool_stride=2)
    with pytest.raises(TypeError, match=r"conv_stem\(\): channels_first must be True or False"):
        ops.conv_stem(x, w, channels_first=1)
    with pytest.raises(ValueError, match=r"conv_stem\(\): x must have 3 to 5 dimensions"):
        ops.conv_stem(x[0, 0], w, channels_first=True)
    with pytest.raises(ValueError, match=r"conv_stem\(\): w must have C_in // groups = 16"):
        ops.conv_stem(np.moveaxis(x, 1, -1), w, channels_first=True)
    with pytest.raises(ValueError, match=r"conv_stem\(\): pool_padding must be >= 0, got -1"):
        ops.conv_stem(x, w, channels_first=True, pool_size=2, pool_padding=-1)
    with pytest.raises(ValueError, match=r"conv_stem\(\): pool_padding must be 'valid'"):
        ops.conv_stem(x, w, channels_first=True, pool_size=2, pool_padding="full")
    with pytest.raises(ValueError, match=r"conv_stem\(\): pool_padding must leave at least one"):
        ops.conv_stem(x, w, channels_first=True, pool_size=2, pool_padding=((2, 0), (0, 0)))
    with pytest.raises(ValueError, match=r"conv_stem\(\): pool_size"):
        ops.conv_stem(x, w, channels_first=True, pool_size=0)
