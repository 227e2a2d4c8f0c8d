"""Fused epilogues: bias and activation in the store of the GEMM tile (ops.conv and
ops.matmul with ``activation=``), their backward masks (ops.activation_backward,
ops.conv_backward with ``y=``), and the layers that use them.

ReLU, leaky ReLU, ReLU6 and hard swish are exact, so the fused result must equal the
unfused one bit for bit; sigmoid uses the C library's exp, compared within a few ulp.
Hard swish is forward only: its gradient cannot be read from its output.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from arrays import seeded
from gradcheck import check_gradients
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, layers, ops, reference
from cnnkit import autograd as ag

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = (F32, F64)
ACTIVATIONS = (None, "linear", "relu", "leaky_relu", "sigmoid", "relu6")
EXACT = ("relu", "leaky_relu", "relu6")
# The forward-only activations besides those the backward kernels take.
FORWARD = (*ACTIVATIONS, "hard_swish")


def unfused(y, activation, slope=0.2):
    return reference._activate(y, activation, slope)


def assert_fused_matches(got, want, activation):
    assert got.dtype == want.dtype
    if activation == "sigmoid":
        np.testing.assert_allclose(got, want, rtol=4 * np.finfo(got.dtype).eps, atol=0)
    else:
        assert np.array_equal(got, want, equal_nan=True)


CONV_CASES = [
    ((2, 9, 10, 8), (3, 3, 8, 16), {"padding": "same"}),  # im2col tiles
    ((2, 9, 10, 33), (1, 1, 33, 17), {}),  # pointwise: one GEMM
    ((2, 9, 10, 8), (3, 3, 1, 16), {"padding": 1, "groups": 8}),  # depthwise loop
    ((2, 9, 10, 20), (3, 3, 1, 20), {"padding": 1, "groups": 20}),  # depthwise 3x3 rows
    ((2, 9, 10, 2), (5, 5, 2, 12), {"padding": "same"}),  # few-channel loop
    ((2, 9, 10, 1), (3, 3, 1, 32), {}),  # few-channel loop, whole register tiles
    ((2, 9, 10, 8), (3, 2, 4, 6), {"stride": 2, "groups": 2}),  # grouped
    ((0, 9, 10, 8), (3, 3, 8, 16), {}),  # empty batch
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", FORWARD)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), CONV_CASES)
def test_fused_conv_equals_conv_then_activation(x_shape, w_shape, kwargs, activation, dtype):
    x, w, b = seeded(x_shape, dtype, 1), seeded(w_shape, dtype, 2), seeded(w_shape[-1:], dtype, 3)
    got = ops.conv(x, w, b, activation=activation, negative_slope=0.1, **kwargs)
    assert_fused_matches(got, unfused(ops.conv(x, w, b, **kwargs), activation, 0.1), activation)
    want = reference.conv(x.astype(F64), w, b, activation=activation, negative_slope=0.1, **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == F32 else 1e-10, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), CONV_CASES[:5])
def test_fused_conv_backward_masks_dy(x_shape, w_shape, kwargs, activation, dtype):
    x, w, b = seeded(x_shape, dtype, 4), seeded(w_shape, dtype, 5), seeded(w_shape[-1:], dtype, 6)
    y = ops.conv(x, w, b, activation=activation, **kwargs)
    dy = seeded(y.shape, dtype, 7)
    got = ops.conv_backward(x, w, dy, y=y, activation=activation, **kwargs)
    masked = ops.activation_backward(y, dy, activation)
    for g, want in zip(got, ops.conv_backward(x, w, masked, **kwargs)):
        assert np.array_equal(g, want)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fused_conv_backward_bias_is_thread_independent(activation):
    # The mask and the bias sums share one pass, split by runs of the batch (8 of one
    # image each here): each run keeps its row order and the runs are added in order,
    # whatever the number of threads.
    x, w, b = seeded((8, 12, 12, 3), F32, 8), seeded((3, 3, 3, 64), F32, 9), seeded((64,), F32, 10)
    y = ops.conv(x, w, b, activation=activation)
    dy = seeded(y.shape, F32, 11)
    before = cnnkit.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            cnnkit.set_num_threads(n)
            results.append(ops.conv_backward(x, w, dy, y=y, activation=activation, need=("b",)))
    finally:
        cnnkit.set_num_threads(before)
    for got in results[1:]:
        assert np.array_equal(got[2], results[0][2])
    masked = ops.activation_backward(y, dy, activation)
    assert np.array_equal(results[0][2], ops.conv_backward(x, w, masked, need=("b",))[2])


FEW_CHANNEL_CASES = [
    ((2, 9, 10, 2), (5, 5, 2, 12), {"padding": "same"}),  # padded channel tiles
    ((3, 11, 10, 1), (3, 3, 1, 32), {}),  # whole register tiles
    # 27 offsets: 9-offset tiles at one thread, 5-offset ones at two (AVX-512)
    ((2, 16, 16, 3), (3, 3, 3, 16), {"padding": "same"}),
    ((2, 13, 3), (3, 3, 16), {"stride": 2}),  # 1-D
    ((1, 5, 6, 5, 2), (2, 3, 2, 2, 8), {"padding": 1}),  # 3-D
    # A batch of 8 or more is summed in runs of whole images, split over the threads: the
    # bias gradient's runs are the same, so the bits still match.
    ((9, 12, 10, 3), (3, 3, 3, 16), {"padding": "same"}),
]


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), FEW_CHANNEL_CASES)
def test_input_layer_weight_gradient_masks_as_it_reads(x_shape, w_shape, kwargs, activation, dtype):
    # Without dx, the few-channel loops mask dy and sum the bias in their own pass: the
    # bits of the separate mask pass (taken when dx is wanted too), for any thread count,
    # NaN included.
    x, w, b = seeded(x_shape, dtype, 4), seeded(w_shape, dtype, 5), seeded(w_shape[-1:], dtype, 6)
    y = ops.conv(x, w, b, activation=activation, negative_slope=0.1, **kwargs)
    dy = seeded(y.shape, dtype, 7)
    dy.reshape(-1)[::37] = np.nan
    spec = {"y": y, "activation": activation, "negative_slope": 0.1, **kwargs}
    _, dw, db = ops.conv_backward(x, w, dy, **spec)
    for n in (1, 2, 3):
        cnnkit.set_num_threads(n)
        got = ops.conv_backward(x, w, dy, need=("w", "b"), **spec)
        assert got[0] is None
        assert np.array_equal(got[1], dw, equal_nan=True)
        assert np.array_equal(got[2], db, equal_nan=True)
        only_w = ops.conv_backward(x, w, dy, need=("w",), **spec)
        assert np.array_equal(only_w[1], dw, equal_nan=True) and only_w[2] is None


@given(
    shape=st.sampled_from([(0,), (1,), (7,), (3, 5), (2, 3, 40)]),
    activation=st.sampled_from(ACTIVATIONS),
    dtype=st.sampled_from(DTYPES),
    slope=st.sampled_from([0.0, 0.2, 1.5]),
)
def test_activation_backward_matches_reference(shape, activation, dtype, slope):
    rng = np.random.default_rng(len(shape))
    y = rng.standard_normal(shape).astype(dtype)
    if activation == "sigmoid":
        y = 1 / (1 + np.exp(-y))
    elif activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "relu6":
        y = np.clip(4 * y, 0, 6)  # outputs at both bounds and between
    dy = rng.standard_normal(shape).astype(dtype)[..., ::-1]  # non-contiguous
    got = ops.activation_backward(y, dy, activation, negative_slope=slope)
    want = reference.activation_backward(y, dy, activation, negative_slope=slope)
    assert got.dtype == dtype and got.shape == dy.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", FORWARD)
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (37, 19, 70), (300, 257, 129), (4, 0, 3)])
def test_fused_matmul_equals_matmul_then_activation(m, k, n, activation, dtype):
    a, b, bias = seeded((m, k), dtype, 8), seeded((k, n), dtype, 9), seeded((n,), dtype, 10)
    got = ops.matmul(a, b, bias=bias, activation=activation)
    assert_fused_matches(got, unfused(ops.matmul(a, b) + bias, activation), activation)
    want = reference.matmul(a, b, bias=bias, activation=activation)
    np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == F32 else 1e-10, atol=1e-4)
    batched = ops.matmul(np.stack([a, a]), b, bias=bias, activation=activation)
    assert np.array_equal(batched[1], got)


def test_relu_keeps_nan_and_the_bias_is_added_before_the_activation():
    a = np.array([[2.0, 1.0], [1.0, 7.0]], F32)
    b = np.eye(2, dtype=F32)
    got = ops.matmul(a, b, bias=np.array([np.nan, -5.0], F32), activation="relu")
    assert np.isnan(got[:, 0]).all() and got[0, 1] == 0 and got[1, 1] == 2


@pytest.mark.usefixtures("restore_threads")
def test_fused_matmul_is_identical_for_any_thread_count():
    a, b, bias = seeded((333, 257), F32, 11), seeded((257, 129), F32, 12), seeded((129,), F32, 13)
    cnnkit.set_num_threads(1)
    first = ops.matmul(a, b, bias=bias, activation="sigmoid")
    for n in (2, 3):
        cnnkit.set_num_threads(n)
        assert np.array_equal(ops.matmul(a, b, bias=bias, activation="sigmoid"), first)


# --- gradients ------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "relu6"])
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), CONV_CASES[:5])
def test_fused_conv_gradients(x_shape, w_shape, kwargs, activation):
    x, w = seeded((1, *x_shape[1:]), F64, 14), seeded(w_shape, F64, 15)
    b = seeded(w_shape[-1:], F64, 16)
    # Keep pre-activations away from ReLU's kink, where differences are meaningless.
    b += np.sign(b) * 0.05
    check_gradients(
        lambda x, w, b: ag.conv(x, w, b, activation=activation, **kwargs), [x, w, b], rtol=1e-4
    )


@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "sigmoid", "relu6"])
def test_dense_gradients(activation):
    x, w, b = seeded((5, 7), F64, 17), seeded((7, 3), F64, 18), seeded((3,), F64, 19)
    check_gradients(lambda x, w, b: ag.dense(x, w, b, activation=activation), [x, w, b])
    check_gradients(lambda x, w: ag.dense(x, w, activation=activation), [x, w])


def test_dense_falls_back_for_other_dtypes_and_ranks():
    x = seeded((2, 5, 7), F64, 20)
    w, b = seeded((7, 3), F64, 21), seeded((3,), F64, 22)
    got = ag.dense(x, w, b, activation="leaky_relu").data
    want = reference.matmul(x, w, bias=b, activation="leaky_relu")
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "relu6", "tanh"])
def test_layers_give_the_unfused_results(activation):
    x = seeded((2, 8, 8, 3), F32, 23)
    conv = layers.Conv2D(4, 3, padding="same", activation=activation)
    y = conv(ag.Tensor(x)).data
    pre = ops.conv(x, conv.kernel.data, conv.bias.data, padding="same")
    want = np.tanh(pre) if activation == "tanh" else unfused(pre, activation)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
    flat = seeded((6, 5), F32, 24)
    dense = layers.Dense(3, activation=activation)
    y = dense(ag.Tensor(flat)).data
    pre = ops.matmul(flat, dense.kernel.data) + dense.bias.data
    want = np.tanh(pre) if activation == "tanh" else unfused(pre, activation)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)


def _with_and_after(fused, plain, activation, x):
    """[output, dx, dkernel, dbias] on the tape of the layer with ``activation`` and of the
    one without it (the same weights) followed by an Activation layer."""
    results = []
    for layer, after in ((fused, None), (plain, activation)):
        tx = ag.Tensor(x, requires_grad=True)
        y = layer(tx)
        if after is not None:
            y = layers.Activation(after)(y)
        dy = seeded(y.shape, F32, 26)
        (y * ag.Tensor(dy)).sum().backward()
        results.append([y.data, tx.grad, layer.kernel.grad, layer.bias.grad])
    return results


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "relu6", "tanh"])
@pytest.mark.parametrize(("strides", "multiplier"), [(1, 1), (2, 1), (1, 2)])
def test_depthwise_layer_fuses_its_activation_with_the_bits_of_the_separate_one(
    activation, strides, multiplier
):
    # DepthwiseConv2D hands relu, leaky_relu, sigmoid and relu6 to the kernel (MobileNet's
    # relu6 in the store of each value); the output and the gradients of x, the kernel
    # and the bias are those of the layer without the activation followed by it.
    x = seeded((2, 9, 8, 6), F32, 25) * 4
    fused, plain = (
        layers.DepthwiseConv2D(
            3,
            strides=strides,
            padding="same",
            depth_multiplier=multiplier,
            activation=act,
            bias_initializer="glorot_uniform",
        )
        for act in (activation, None)
    )
    fused(x), plain(x)  # builds
    plain.set_weights(fused.get_weights())
    results = _with_and_after(fused, plain, activation, x)
    for got, want in zip(*results):
        if activation in ("sigmoid", "tanh"):  # the mask's formula differs
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        else:
            assert np.array_equal(got, want)


# --- hard swish: fused at inference only ---------------------------------------------

# One case per kernel family that stores the activation itself (float32 and float64 where
# the family takes both): the GEMM's epilogue, the small-k and few-rows GEMMs (MobileNet's
# 1x1 layers), the stem, the depthwise loops (multiplier 1 and 2), Winograd, and the
# few-channel loops, which apply it in the pass after.
HARD_SWISH_PATHS = {
    "small_k": ((1, 13, 11, 16), (1, 1, 16, 72), {}),
    "few_rows": ((1, 5, 4, 96), (1, 1, 96, 160), {}),
    "few_rows_3x3": ((1, 5, 4, 32), (3, 3, 32, 48), {"padding": "same"}),
    "gemm": ((2, 17, 15, 24), (3, 3, 24, 40), {"padding": "same", "winograd": False}),
    "winograd": ((2, 17, 15, 24), (3, 3, 24, 40), {"padding": "same", "winograd": True}),
    "stem": ((1, 37, 33, 3), (3, 3, 3, 16), {"stride": 2, "padding": "same"}),
    "depthwise": ((1, 15, 14, 40), (5, 5, 1, 40), {"padding": 2, "groups": 40}),
    "depthwise_m2": ((1, 15, 14, 20), (3, 3, 1, 40), {"padding": 1, "groups": 20}),
    "few_channels": ((2, 12, 10, 2), (5, 5, 2, 12), {"padding": "same"}),
}


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@given(
    path=st.sampled_from(sorted(HARD_SWISH_PATHS)),
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from([1.0, 4.0, 1e30]),
    non_finite=st.booleans(),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30)
def test_fused_hard_swish_has_the_bits_of_the_separate_op(
    isa, path, dtype, scale, non_finite, bias, seed
):
    """ops.conv(activation="hard_swish") on every ISA path and kernel family: the bits of
    the convolution followed by cnnkit.reference's (and the autograd's) hard swish, NaN
    and infinities included (-inf gives NaN there, as -inf * 0), at 1 and 2 threads."""
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    x_shape, w_shape, kwargs = HARD_SWISH_PATHS[path]
    x = (seeded(x_shape, dtype, seed) * dtype.type(scale)).astype(dtype)
    w, b = seeded(w_shape, dtype, seed + 1), seeded(w_shape[-1:], dtype, seed + 2) if bias else None
    if non_finite:
        x.reshape(-1)[:: 7 + seed % 13] = np.nan
        x.reshape(-1)[3 :: 11 + seed % 7] = np.inf
        x.reshape(-1)[5 :: 17 + seed % 5] = -np.inf
    cnnkit.set_num_threads(1)
    with np.errstate(invalid="ignore", over="ignore"):
        got = ops.conv(x, w, b, activation="hard_swish", **kwargs)
        plain = ops.conv(x, w, b, **kwargs)
        separate = reference._activate(plain, "hard_swish", 0.2)
        taped = ag.hard_swish(plain).data
    assert got.dtype == dtype
    assert np.array_equal(got, separate, equal_nan=True)
    assert np.array_equal(got, taped, equal_nan=True)
    cnnkit.set_num_threads(2)
    again = ops.conv(x, w, b, activation="hard_swish", **kwargs)
    assert np.array_equal(again, got, equal_nan=True)


def test_hard_swish_is_applied_as_the_formula_reads():
    # x * clip(x / 6 + 0.5, 0, 1): both bounds, between them, the zeros' signs and NaN.
    x = np.array([-np.inf, -4, -3, -1.5, -0.0, 0, 1, 3, 7, np.inf, np.nan], F32)
    w = np.ones((1, 1, 1, 1), F32)
    plain = ops.conv(x.reshape(1, 1, -1, 1), w).reshape(-1)  # the sum made -0 a +0
    with np.errstate(invalid="ignore"):
        want = plain * np.clip(plain / 6 + 0.5, 0, 1)
    got = ops.conv(x.reshape(1, 1, -1, 1), w, activation="hard_swish").reshape(-1)
    assert np.array_equal(np.signbit(got[:-1]), np.signbit(want[:-1]))
    assert np.array_equal(got, want, equal_nan=True)
    plain = ops.matmul(x.reshape(-1, 1), w.reshape(1, 1)).reshape(-1)
    got = ops.matmul(x.reshape(-1, 1), w.reshape(1, 1), activation="hard_swish").reshape(-1)
    with np.errstate(invalid="ignore"):
        assert np.array_equal(got, plain * np.clip(plain / 6 + 0.5, 0, 1), equal_nan=True)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda act: layers.Conv2D(6, 3, padding="same", activation=act), (2, 7, 6, 4)),
        (lambda act: layers.DepthwiseConv2D(3, padding="same", activation=act), (2, 7, 6, 4)),
        (lambda act: layers.Dense(5, activation=act), (3, 4)),
    ],
)
@pytest.mark.parametrize("activation", ["hard_swish", "hard_silu"])
def test_layers_fuse_hard_swish_at_inference_only(make, shape, activation):
    """A layer with activation="hard_swish" calls the fused kernel in its inference step
    (no tape) and keeps the separate op on the tape, whose gradient needs the input: the
    same outputs, bit for bit, and the gradients of the layer without the activation
    followed by it."""
    x = seeded(shape, F32, 30) * 4
    fused, plain = make(activation), make(None)
    fused(x), plain(x)  # builds
    plain.set_weights(fused.get_weights())
    step = fused._inference_step()
    assert step is not None
    fast = step(x)
    results = _with_and_after(fused, plain, "hard_swish", x)
    assert np.array_equal(fast, results[1][0])
    for got, want in zip(*results):
        assert np.array_equal(got, want)
    # A model's inference plan takes the step; fit trains through the separate op.
    model = cnnkit.Sequential([cnnkit.layers.Input(shape[1:]), make(activation)])
    with ag.no_grad():
        inferred = np.asarray(model(x).data)
    assert np.array_equal(inferred, model.layers[-1](ag.Tensor(x)).data)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, inferred + 1, epochs=1, batch_size=2, verbose=0)


# --- bad input ------------------------------------------------------------------------

KNOWN = "must be None or one of 'linear', 'relu', 'leaky_relu', 'sigmoid', 'relu6', 'hard_swish'"
# x, w, dy of a valid 3x3 convolution
ZEROS = (np.zeros((1, 4, 4, 2), F32), np.zeros((3, 3, 2, 2), F32), np.zeros((1, 2, 2, 2), F32))
NO_HARD_SWISH = "activation cannot be 'hard_swish': its gradient cannot be read from its output y"


@pytest.mark.parametrize(
    ("call", "exc", "text"),
    [
        (
            lambda: ops.conv(
                np.zeros((1, 4, 4, 2), F32), np.zeros((3, 3, 2, 2), F32), activation="tanh"
            ),
            ValueError,
            f"conv(): activation {KNOWN}, got 'tanh'",
        ),
        (
            lambda: ops.matmul(np.zeros((2, 2), F32), np.zeros((2, 2), F32), activation=1),
            TypeError,
            f"matmul(): activation {KNOWN}, got int",
        ),
        (
            lambda: ops.matmul(np.zeros((2, 2), F32), np.zeros((2, 2), F32), negative_slope=-1),
            ValueError,
            "matmul(): negative_slope must be a number >= 0, got -1",
        ),
        (
            lambda: ops.matmul(np.zeros((2, 3), F32), np.zeros((3, 4), F32), bias=np.zeros(3, F32)),
            ValueError,
            "matmul(): bias must have shape (4,) to match b, got shape (3,)",
        ),
        (
            lambda: ops.conv_backward(
                np.zeros((1, 4, 4, 2), F32),
                np.zeros((3, 3, 2, 2), F32),
                np.zeros((1, 2, 2, 2), F32),
                activation="relu",
            ),
            ValueError,
            "conv_backward(): y must be the forward's output when activation is given, got None",
        ),
        (
            lambda: ops.conv_backward(
                np.zeros((1, 4, 4, 2), F32),
                np.zeros((3, 3, 2, 2), F32),
                np.zeros((1, 2, 2, 2), F32),
                y=np.zeros((1, 2, 2, 3), F32),
                activation="relu",
            ),
            ValueError,
            "conv_backward(): y must have the output's shape (1, 2, 2, 2), got shape (1, 2, 2, 3)",
        ),
        (
            lambda: ops.conv_backward(*ZEROS, y=ZEROS[2], activation="hard_swish"),
            ValueError,
            f"conv_backward(): {NO_HARD_SWISH}",
        ),
        (
            lambda: ops.activation_backward(np.zeros(3, F32), np.zeros(3, F32), "hard_swish"),
            ValueError,
            f"activation_backward(): {NO_HARD_SWISH}",
        ),
        (
            lambda: reference.activation_backward(np.zeros(3), np.zeros(3), "hard_swish"),
            ValueError,
            f"activation_backward(): {NO_HARD_SWISH}",
        ),
        (
            lambda: ops.activation_backward(np.zeros(3, F32), np.zeros(4, F32), "relu"),
            ValueError,
            "activation_backward(): y and dy must have the same shape, got (3,) and (4,)",
        ),
    ],
)
def test_bad_arguments_are_rejected(call, exc, text):
    with pytest.raises(exc, match="^" + re.escape(text)):
        call()
