"""ops.conv's ``residual``: a residual block's Add (and ReLU) made as the convolution stores its
output. Checked on every forward path (Winograd with one block and with column parts, im2col
tiles, pointwise, few rows, depthwise, few channels, the stem, 1-D and 3-D): the bits of
the convolution followed by ops.add_relu (or the plain sum), float32 and float64, at 1 and 2
threads; the NumPy reference; -0.0; empty outputs; bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import ops, reference

# (x shape, w shape, conv keyword arguments): one per path of conv_forward.
PROBLEMS = {
    "winograd": ((2, 12, 10, 16), (3, 3, 16, 24), {"padding": ((1, 1), (1, 1))}),
    "winograd_parts": ((1, 8, 8, 64), (3, 3, 64, 136), {"padding": ((1, 1), (1, 1))}),
    "im2col": ((2, 15, 13, 12), (5, 5, 12, 40), {"stride": 2, "padding": ((2, 2), (1, 2))}),
    "im2col_slices": ((1, 9, 9, 32), (3, 3, 32, 300), {"stride": 2, "winograd": False}),
    "pointwise": ((2, 7, 9, 24), (1, 1, 24, 20), {}),
    "few_rows": ((1, 3, 3, 64), (3, 3, 64, 160), {"padding": ((1, 1), (1, 1))}),
    "depthwise": ((2, 9, 9, 8), (3, 3, 1, 8), {"groups": 8, "padding": ((1, 1), (1, 1))}),
    "grouped": ((2, 9, 9, 8), (3, 3, 4, 12), {"groups": 2}),
    "few_channels": ((2, 11, 11, 2), (3, 3, 2, 16), {}),
    "stem": ((1, 33, 33, 3), (7, 7, 3, 16), {"stride": 2, "padding": ((3, 3), (3, 3))}),
    "conv1d": ((3, 20, 6), (3, 6, 10), {"dilation": 2}),
    "conv3d": ((1, 5, 6, 7, 4), (2, 2, 2, 4, 6), {}),
}


def _problem(name: str, dtype, seed: int = 0):
    x_shape, w_shape, kwargs = PROBLEMS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[-1]).astype(dtype)
    out_shape = ops.conv(x, w, b, **kwargs).shape
    residual = rng.standard_normal(out_shape).astype(dtype)
    return x, w, b, residual, kwargs


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_bits_of_the_convolution_then_add_relu(name, dtype):
    x, w, b, residual, kwargs = _problem(name, dtype)
    results = []
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        plain = ops.conv(x, w, b, **kwargs)
        fused = ops.conv(x, w, b, residual=residual, activation="relu", **kwargs)
        np.testing.assert_array_equal(fused, ops.add_relu(plain, residual), strict=True)
        summed = ops.conv(x, w, b, residual=residual, **kwargs)
        np.testing.assert_array_equal(summed, plain + residual, strict=True)
        results.append((fused, summed))
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c, strict=True)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10}
    expected = reference.conv(x, w, b, residual=residual, activation="relu", **kwargs)
    np.testing.assert_allclose(results[0][0], expected, **tol)
    np.testing.assert_allclose(
        results[0][1], reference.conv(x, w, b, residual=residual, **kwargs), **tol
    )


def test_negative_zero_becomes_positive_as_in_add_relu():
    x = np.zeros((1, 6, 6, 8), np.float32)
    w = np.zeros((3, 3, 8, 8), np.float32)
    b = np.full(8, -0.0, np.float32)
    residual = np.full((1, 4, 4, 8), -0.0, np.float32)
    fused = ops.conv(x, w, b, residual=residual, activation="relu", winograd=True)
    assert not np.signbit(fused).any()
    np.testing.assert_array_equal(fused, ops.add_relu(ops.conv(x, w, b), residual), strict=True)


def test_residual_of_another_dtype_and_non_contiguous():
    x, w, b, residual, kwargs = _problem("im2col", np.float32)
    wide = np.asfortranarray(residual.astype(np.float64))
    got = ops.conv(x, w, b, residual=wide, activation="relu", **kwargs)
    assert got.dtype == np.float64
    plain = ops.conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kwargs)
    np.testing.assert_array_equal(got, ops.add_relu(plain, wide))


def test_empty_output():
    x = np.zeros((0, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    got = ops.conv(x, w, residual=np.zeros((0, 3, 3, 4), np.float32), activation="relu")
    assert got.shape == (0, 3, 3, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"residual": np.zeros((1, 4, 4, 5), np.float32)}, r"conv\(\): residual must have"),
        ({"residual": np.zeros((1, 3, 4, 4), np.float32)}, r"shape \(1, 4, 4, 4\)"),
        (
            {"residual": np.zeros((1, 4, 4, 4), np.float32), "activation": "sigmoid"},
            r"conv\(\): activation must be None, 'linear' or 'relu' with a residual",
        ),
    ],
)
def test_bad_residuals(kwargs, match):
    x = np.zeros((1, 6, 6, 2), np.float32)
    w = np.zeros((3, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match=match):
        ops.conv(x, w, **kwargs)
    if "activation" in kwargs:
        with pytest.raises(ValueError, match=match):
            reference.conv(x, w, **kwargs)


def test_residual_of_strings_is_a_type_error():
    x = np.zeros((1, 6, 6, 2), np.float32)
    w = np.zeros((3, 3, 2, 4), np.float32)
    with pytest.raises(TypeError, match=r"conv\(\): residual"):
        ops.conv(x, w, residual=np.full((1, 4, 4, 4), "a"))
