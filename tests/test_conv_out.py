"""ops.conv's ``out``: the result written into a preallocated array, dense or a channel slice
``buf[..., c0:c0 + C_out]`` of a wider channels-last buffer (a concatenation's). Checked on
every forward path (Winograd with one block and with column parts, im2col tiles and weight
slices, the packed pointwise GEMM, the small-K GEMM, few rows pointwise and gathered,
grouped, depthwise, few channels, the stem, 1-D and 3-D) and every instruction-set path:
the bits of the call without ``out``, with bias, activations, residuals and NaN or infinite
inputs, at 1 and 2 threads; the buffer's other channels untouched; the NumPy reference;
bad ``out`` arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference

# (x shape, w shape, conv keyword arguments): one per store path of conv_forward.
PROBLEMS = {
    "winograd": ((2, 12, 10, 16), (3, 3, 16, 24), {"padding": 1, "winograd": True}),
    "winograd_parts": ((1, 8, 8, 64), (3, 3, 64, 136), {"padding": 1, "winograd": True}),
    "im2col": ((2, 15, 13, 12), (5, 5, 12, 40), {"stride": 2, "padding": ((2, 2), (1, 2))}),
    "im2col_slices": ((2, 11, 11, 32), (3, 3, 32, 300), {"stride": 1, "winograd": False}),
    "pointwise_packed": ((1, 20, 20, 300), (1, 1, 300, 40), {}),
    "small_k": ((1, 20, 20, 32), (1, 1, 32, 48), {}),
    "few_rows_pointwise": ((1, 7, 7, 64), (1, 1, 64, 100), {}),
    "few_rows": ((1, 7, 7, 64), (3, 3, 64, 100), {"padding": 1}),
    "grouped": ((2, 9, 9, 8), (3, 3, 4, 12), {"groups": 2}),
    "depthwise": ((2, 9, 9, 8), (3, 3, 1, 8), {"groups": 8, "padding": 1}),
    "few_channels": ((2, 11, 11, 2), (3, 3, 2, 16), {}),
    "wide_direct": ((1, 14, 14, 16), (5, 5, 16, 32), {}),
    "stem": ((1, 33, 33, 3), (7, 7, 3, 16), {"stride": 2, "padding": 3}),
    "conv1d": ((3, 20, 6), (3, 6, 10), {"dilation": 2}),
    "conv3d": ((1, 5, 6, 7, 4), (2, 2, 2, 4, 6), {}),
}

SENTINEL = 7.25  # the buffer's other channels must keep it


def _operands(name: str, dtype, seed: int = 0):
    x_shape, w_shape, kwargs = PROBLEMS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[:-1]))).astype(dtype)
    b = rng.standard_normal(w_shape[-1]).astype(dtype)
    return x, w, b, kwargs


def _slice_of(shape, before: int, after: int, dtype):
    buf = np.full((*shape[:-1], before + shape[-1] + after), SENTINEL, dtype)
    return buf, buf[..., before : before + shape[-1]]


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _check_into_slice(x, w, b, kwargs, before, after, **extra):
    plain = ops.conv(x, w, b, **kwargs, **extra)
    buf, part = _slice_of(plain.shape, before, after, plain.dtype)
    got = ops.conv(x, w, b, **kwargs, **extra, out=part)
    assert got is part
    np.testing.assert_array_equal(_bits(part), _bits(plain), strict=True)
    assert np.all(buf[..., :before] == SENTINEL) and np.all(
        buf[..., before + w.shape[-1] :] == SENTINEL
    )
    return plain


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_bits_of_the_call_without_out(isa, dtype, name):
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    x, w, b, kwargs = _operands(name, dtype)
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        plain = _check_into_slice(x, w, b, kwargs, 5, 19, activation="relu")
        _check_into_slice(x, w, b, kwargs, 0, 0, activation="relu")  # dense out
        _check_into_slice(x, w, None, kwargs, 16, 0)
    tol = {"rtol": 1e-3, "atol": 1e-3} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-9}
    want = reference.conv(x, w, b, activation="relu", **kwargs)
    np.testing.assert_allclose(plain, want, **tol)


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@given(
    name=st.sampled_from(sorted(PROBLEMS)),
    dtype=st.sampled_from([np.float32, np.float64]),
    before=st.integers(0, 20),
    after=st.integers(0, 20),
    activation=st.sampled_from([None, "relu", "leaky_relu", "relu6", "sigmoid"]),
    bias=st.booleans(),
    residual=st.booleans(),
    non_finite=st.sampled_from(["none", "x", "weight"]),
    threads=st.sampled_from([1, 2]),
)
@settings(max_examples=40)
def test_slices_match_the_dense_call_and_the_reference(
    isa, name, dtype, before, after, activation, bias, residual, non_finite, threads
):
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    cnnkit.set_num_threads(threads)
    x, w, b, kwargs = _operands(name, dtype, seed=before + 32 * after)
    if non_finite == "x":
        x.reshape(-1)[:: 7 + x.shape[-1]] = np.nan
        x.reshape(-1)[3 :: 11 + x.shape[-1]] = -np.inf
    elif non_finite == "weight":
        w.reshape(-1)[0] = np.inf
    extra: dict = {"activation": activation}
    if residual:
        shape = ops.conv(x, w, **kwargs).shape
        extra = {
            "activation": "relu" if activation == "relu" else None,
            "residual": np.random.default_rng(3).standard_normal(shape).astype(dtype),
        }
    plain = _check_into_slice(x, w, b if bias else None, kwargs, before, after, **extra)
    if non_finite != "none":
        return  # NaN placement is the dense call's, checked in the conv tests
    want = reference.conv(x, w, b if bias else None, **kwargs, **extra)
    tol = {"rtol": 1e-3, "atol": 1e-3} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-9}
    np.testing.assert_allclose(plain, want, **tol)


def test_reference_writes_out_too():
    x, w, b, kwargs = _operands("im2col", np.float64)
    plain = reference.conv(x, w, b, **kwargs)
    _, part = _slice_of(plain.shape, 3, 2, np.float64)
    assert reference.conv(x, w, b, **kwargs, out=part) is part
    np.testing.assert_array_equal(part, plain)


def test_out_of_a_single_pixel_and_of_an_empty_output():
    x = np.ones((1, 3, 3, 2), np.float32)
    w = np.ones((3, 3, 2, 4), np.float32)
    buf = np.zeros((1, 1, 1, 9), np.float32)
    ops.conv(x, w, out=buf[..., 2:6])
    np.testing.assert_array_equal(buf[0, 0, 0], [0, 0, 18, 18, 18, 18, 0, 0, 0])
    empty = np.zeros((0, 1, 1, 4), np.float32)
    assert ops.conv(np.ones((0, 3, 3, 2), np.float32), w, out=empty) is empty


X = np.ones((1, 6, 6, 2), np.float32)
W = np.ones((3, 3, 2, 4), np.float32)


@pytest.mark.parametrize(
    ("out", "error", "match"),
    [
        (
            [[0.0]],
            TypeError,
            r"conv\(\): out must be a numpy.ndarray \(written in place\), got list",
        ),
        (np.zeros((1, 4, 4, 4)), TypeError, r"conv\(\): out must have the result's dtype float32"),
        (
            np.zeros((1, 4, 4, 4), np.dtype(">f4")),
            TypeError,
            r"conv\(\): out must have the result's dtype float32 \(native byte order\)",
        ),
        (
            np.zeros((1, 4, 4, 5), np.float32),
            ValueError,
            r"out must have the output's shape \(1, 4, 4, 4\), got shape \(1, 4, 4, 5\)",
        ),
        (
            np.zeros((1, 4, 4, 8), np.float32)[..., ::2],
            ValueError,
            r"out must be a dense array or a channel slice",
        ),
        (
            np.zeros((1, 8, 4, 4), np.float32)[:, ::2],
            ValueError,
            r"got strides \(512, 128, 16, 4\) for shape \(1, 4, 4, 4\)",
        ),
        (
            np.zeros((1, 4, 4, 4), np.float32, order="F"),
            ValueError,
            r"out must be a dense array or a channel slice",
        ),
        (
            np.lib.stride_tricks.as_strided(np.zeros(64, np.float32), (1, 4, 4, 4), (0, 48, 12, 4)),
            ValueError,
            r"out must be a dense array or a channel slice",
        ),
    ],
)
def test_bad_out(out, error, match):
    with pytest.raises(error, match=match):
        ops.conv(X, W, out=out)


def test_read_only_out():
    out = np.zeros((1, 4, 4, 4), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"conv\(\): out must be writeable"):
        ops.conv(X, W, out=out)


def test_out_must_not_share_memory_with_an_operand():
    x = np.ones((1, 4, 4, 4), np.float32)
    w = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"conv\(\): out must not share memory with x"):
        ops.conv(x, w, out=x)
    buf = np.zeros((1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match=r"out must not share memory with x"):
        ops.conv(buf[..., :4], w, out=buf[..., 4:])  # interleaved pixels: the extents overlap
    big = np.zeros((1, 1, 1, 24), np.float32)
    with pytest.raises(ValueError, match=r"out must not share memory with b"):
        ops.conv(
            np.ones((1, 1, 1, 4), np.float32),
            np.ones((1, 1, 4, 4), np.float32),
            big[0, 0, 0, :4],
            out=big[..., 2:6],
        )
    r = np.zeros((1, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"out must not share memory with residual"):
        ops.conv(x, w, residual=r, out=r)
