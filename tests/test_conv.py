"""Convolution: ``cnnkit.ops.conv`` and ``conv_backward`` against ``cnnkit.reference``.

Values are compared with a tolerance relative to the magnitude of each element's
sum of products, which the reference gives when fed ``|x|``, ``|w|``, ``|b|`` and
``|dy|``: float32 within ``1e-4`` of it, float64 within ``1e-10``. The reference
runs in float64 on the (float32 or float64) inputs, so it is the exact answer to
well below those tolerances. Gradients are also checked by float64 central finite
differences and by the adjoint identities ``<conv(x, w), dy> == <x, dx> == <w, dw>``.

The rest pins the documented guarantees: results bit-identical for any number of
threads and on concurrent calls, each instruction-set path deterministic and
accurate, channels-last layouts (against PyTorch when it is installed), and the
exact shapes of the course's 1-D and 3-D examples.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = (F32, F64)
RTOL = {F32: 1e-4, F64: 1e-10}
LAYOUTS = (
    "contiguous",
    "channels_first",
    "channel_stride",
    "batch_stride",
    "reversed_batch",
    "fortran",
)
PADDING_FORMS = ("valid", "same", "int", "ints", "pairs", "list_pairs")
# "general" twice: it is the kind that mixes every argument.
KINDS = (
    "general",
    "general",
    "pointwise",
    "pointwise_stride2",
    "depthwise",
    "kernel_is_input",
    "stride_over_kernel",
)


# --------------------------------------------------------------------------- helpers


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def absf64(a):
    return None if a is None else np.abs(np.asarray(a, dtype=np.float64))


def per_dim(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


def expected_out_shape(x_shape, w_shape, *, stride=1, padding="valid", dilation=1, groups=1):
    """``(N, *out, C_out)`` by the documented output-size rule."""
    rank = len(x_shape) - 2
    kernel, strides, dilations = w_shape[:rank], per_dim(stride, rank), per_dim(dilation, rank)
    pads = reference._window_padding(x_shape[1:-1], kernel, strides, dilations, padding)
    out = [
        (n + pb + pa - d * (k - 1) - 1) // s + 1
        for n, k, s, d, (pb, pa) in zip(x_shape[1:-1], kernel, strides, dilations, pads)
    ]
    return (x_shape[0], *out, w_shape[-1])


def assert_close(got, want, scale, dtype, what: str = "result") -> None:
    """``|got - want| <= rtol * scale`` elementwise (NaN in ``got`` fails)."""
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bound = RTOL[np.dtype(dtype)] * scale + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= bound)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements off; first at {i}: "
            f"got {got[i]!r}, want {want[i]!r}, magnitude {scale[i]!r}"
        )


def check_forward(got, x, w, b, dtype, **kwargs) -> None:
    want = reference.conv(f64(x), f64(w), f64(b), **kwargs)
    scale = reference.conv(absf64(x), absf64(w), absf64(b), **kwargs)
    assert got.dtype == dtype
    assert_close(got, want, scale, dtype, "y")


def check_backward(got, x, w, dy, dtype, **kwargs) -> None:
    want = reference.conv_backward(f64(x), f64(w), f64(dy), **kwargs)
    scale = reference.conv_backward(absf64(x), absf64(w), absf64(dy), **kwargs)
    for name, g, v, s in zip(("dx", "dw", "db"), got, want, scale):
        assert g.dtype == dtype, name
        assert_close(g, v, s, dtype, name)


@dataclass
class Problem:
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    kwargs: dict
    kind: str
    seed: int
    layouts: tuple[str, str] = ("contiguous", "contiguous")
    out_shape: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        self.out_shape = expected_out_shape(self.x.shape, self.w.shape, **self.kwargs)

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    def dy(self, seed_offset: int = 1) -> np.ndarray:
        return seeded(self.out_shape, self.dtype, self.seed + seed_offset)

    def __repr__(self) -> str:
        b = None if self.b is None else self.b.shape
        return (
            f"Problem({self.kind}, x{self.x.shape} w{self.w.shape} b={b} {self.dtype}, "
            f"layouts={self.layouts}, {self.kwargs}, seed={self.seed})"
        )


@st.composite
def conv_problems(
    draw,
    *,
    dtype=None,
    kind=None,
    rank=None,
    bias=None,
    views=True,
    max_batch: int = 3,
):
    """A valid convolution problem with 1 to 3 spatial dimensions, of moderate size."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    kind = draw(st.sampled_from(KINDS)) if kind is None else kind
    rank = draw(st.integers(1, 3)) if rank is None else rank
    pointwise = kind.startswith("pointwise")
    if kind == "depthwise":
        groups = cin = draw(st.integers(2, 5))
        cout = cin * draw(st.integers(1, 3))  # channel multiplier
    elif pointwise:
        groups, cin, cout = 1, draw(st.integers(1, 9)), draw(st.integers(1, 9))
    else:
        groups = draw(st.sampled_from((1, 1, 2, 3)))
        if groups == 1:
            # Few input channels (<= 4) and more, few outputs and more than a
            # register block's worth (16 floats).
            cin = draw(st.integers(1, 8))
            cout = draw(st.one_of(st.integers(1, 5), st.integers(15, 20)))
        else:
            cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))

    if pointwise:
        form = draw(st.sampled_from(("valid", "same", "int")))
    elif kind == "kernel_is_input":
        form = "valid"
    else:
        form = draw(st.sampled_from(PADDING_FORMS))
    shared_pad = 0 if pointwise else draw(st.integers(0, 2))
    small = rank == 3
    extra = (7, 5, 2)[rank - 1]
    kernel, strides, dilations, sizes, pads = [], [], [], [], []
    for _ in range(rank):
        if pointwise:
            k, d = 1, draw(st.sampled_from((1, 1, 2)))  # dilation is moot for k == 1
            s = 1 if kind == "pointwise" else 2
        elif kind == "kernel_is_input":
            k, d, s = draw(st.integers(1, 3 if small else 5)), 1, draw(st.integers(1, 3))
        elif kind == "stride_over_kernel":
            k, d = draw(st.integers(1, 3)), 1
            s = draw(st.integers(k + 1, k + 3))
        else:
            k = draw(st.integers(1, 3 if small else 5))
            d = draw(st.sampled_from((1, 1, 2) if small else (1, 1, 2, 3)))
            s = draw(st.integers(1, 3))
        if form == "int":
            pad = (shared_pad, shared_pad)
        elif form == "ints":
            p = draw(st.integers(0, 2))
            pad = (p, p)
        elif form in ("pairs", "list_pairs"):
            pad = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        else:
            pad = (0, 0)  # "valid"; "same" pads are worked out by the kernel
        span = d * (k - 1) + 1
        if kind == "kernel_is_input":
            n = k
        else:
            low = max(1, span - sum(pad))
            n = draw(st.integers(low, low + extra))
        kernel.append(k)
        strides.append(s)
        dilations.append(d)
        sizes.append(n)
        pads.append(pad)

    padding = {
        "valid": "valid",
        "same": "same",
        "int": shared_pad,
        "ints": tuple(p for p, _ in pads),
        "pairs": tuple(pads),
        "list_pairs": [list(p) for p in pads],
    }[form]
    # Scalars and tuples both: a scalar stands for every dimension.
    stride = strides[0] if len(set(strides)) == 1 and draw(st.booleans()) else tuple(strides)
    dilation = dilations[0] if len(set(dilations)) == 1 and draw(st.booleans()) else dilations
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}

    seed = draw(st.integers(0, 2**32 - 1))
    batch = draw(st.integers(1, max_batch))
    x = seeded((batch, *sizes, cin), dtype, seed)
    w = seeded((*kernel, cin // groups, cout), dtype, seed + 7)
    has_bias = draw(st.booleans()) if bias is None else bias
    b = seeded((cout,), dtype, seed + 13) if has_bias else None
    layouts = ("contiguous", "contiguous")
    if views:
        layouts = (draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(LAYOUTS)))
        x, w = layout_view(x, layouts[0]), layout_view(w, layouts[1])
        if b is not None and draw(st.booleans()):
            b = layout_view(b, "batch_stride")
    return Problem(x, w, b, kwargs, kind, seed, layouts)


# --------------------------------------------------------------------------- forward


@given(conv_problems())
def test_conv_matches_reference(problem):
    x, w, b = problem.x, problem.w, problem.b
    saved = [np.array(a) for a in (x, w)]
    y = ops.conv(x, w, b, **problem.kwargs)
    assert y.shape == problem.out_shape
    check_forward(y, x, w, b, problem.dtype, **problem.kwargs)
    for a, before in zip((x, w), saved):  # inputs are read only
        assert np.array_equal(a, before)


@pytest.mark.parametrize("kind", ["pointwise", "pointwise_stride2", "depthwise"])
@given(data=st.data())
@settings(max_examples=15)
def test_special_paths_match_reference(kind, data):
    """The pointwise GEMM path, 1x1 with stride 2 (not pointwise), and depthwise."""
    problem = data.draw(conv_problems(kind=kind), label="problem")
    y = ops.conv(problem.x, problem.w, problem.b, **problem.kwargs)
    assert y.shape == problem.out_shape
    check_forward(y, problem.x, problem.w, problem.b, problem.dtype, **problem.kwargs)


@given(
    dtype=st.sampled_from(DTYPES),
    batch=st.integers(1, 2),
    size=st.tuples(st.integers(1, 13), st.integers(1, 21)),
    channels=st.integers(1, 40),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(
        st.tuples(st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.integers(0, 3), st.integers(0, 3)),
    ),
    bias=st.booleans(),
)
@settings(max_examples=60)
def test_depthwise_3x3_rows_match_reference(
    dtype, batch, size, channels, stride, dilation, padding, bias
):
    """2-D 3x3 depthwise convolutions of multiplier 1 (MobileNet's), whose rows run in
    groups of up to eight windows sharing input columns (stride 1 or 2 along the row,
    dilation 1) or at any stride: the rows at the top and bottom (kernel rows in the
    padding), the windows at the ends (one at a time), channels in vectors and
    remainders. The input gradient at stride 1 and padding within the kernel's span
    runs the same loops on the flipped kernel."""
    span = [2 * d + 1 for d in dilation]
    size = tuple(max(n, k - sum(p)) for n, k, p in zip(size, span, padding))
    x = seeded((batch, *size, channels), dtype, 11)
    w = seeded((3, 3, 1, channels), dtype, 12)
    b = seeded((channels,), dtype, 13) if bias else None
    kwargs = {"stride": stride, "dilation": dilation, "padding": padding, "groups": channels}
    y = ops.conv(x, w, b, **kwargs)
    check_forward(y, x, w, b, dtype, **kwargs)
    dy = seeded(y.shape, dtype, 14)
    check_backward(ops.conv_backward(x, w, dy, **kwargs), x, w, dy, dtype, **kwargs)


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        pytest.param((2, 9, 11, 20), (3, 3, 1, 20), {"padding": 1}, id="m1-3x3-rows"),
        pytest.param((1, 8, 9, 5), (5, 5, 1, 5), {"padding": "same"}, id="m1-5x5"),
        pytest.param((2, 9, 2), (3, 1, 4), {"padding": ((1, 2),), "dilation": 2}, id="mult-2"),
        pytest.param((1, 12, 6), (3, 1, 6), {"padding": 1}, id="m1-1d"),
    ],
)
@pytest.mark.usefixtures("restore_isa")
def test_depthwise_padding_products_propagate_nan_as_the_reference(isa, x_shape, w_shape, kwargs):
    """A NaN or infinite weight times the padding's zeros is NaN in the reference (and
    torch), which multiply materialised zeros; the depthwise loops skip those taps, and
    then add the products where a weight is not finite. Likewise dw, for a NaN in dy.
    The input gradient has no such products (the reference crops them), so its NaNs are
    those of the taps that read the input."""
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    kwargs = {**kwargs, "groups": x_shape[-1]}
    x, w = seeded(x_shape, F64, 31), seeded(w_shape, F64, 32)
    for bad in (np.nan, np.inf):
        wb = w.copy()
        wb.flat[0] = bad  # kernel offset 0 reads the padding at the first outputs
        got = ops.conv(x, wb, **kwargs)
        with np.errstate(invalid="ignore"):
            want = reference.conv(x, wb, **kwargs)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12, atol=1e-12)
    dy = seeded(ops.conv(x, w, **kwargs).shape, F64, 33)
    dy.flat[0] = np.nan
    got = ops.conv_backward(x, w, dy, **kwargs)
    with np.errstate(invalid="ignore"):
        want = reference.conv_backward(x, w, dy, **kwargs)
    for g, v in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(v))


# Depthwise shapes by the loop that runs them: 3x3 rows of multiplier 1 at stride 1, 2
# (windows sharing input columns) and 3, dilated along the row; other kernels and ranks
# of multiplier 1; multiplier 2.
_DEPTHWISE_LOOPS = {
    "rows": ((3, 3), 1),
    "rows-5x5": ((5, 5), 1),
    "1d": ((4,), 1),
    "3d": ((3, 2, 3), 1),
    "multiplier-2": ((3, 3), 2),
}


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@given(
    loop=st.sampled_from(sorted(_DEPTHWISE_LOOPS)),
    activation=st.sampled_from(["relu", "relu6", "leaky_relu", "sigmoid", "hard_swish"]),
    dtype=st.sampled_from(DTYPES),
    batch=st.integers(1, 2),
    size=st.integers(1, 19),
    channels=st.integers(1, 40),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.integers(0, 2),
    bias=st.booleans(),
    non_finite=st.sampled_from(["none", "x", "weight"]),
)
@settings(max_examples=40)
def test_depthwise_fused_activation_has_the_bits_of_the_separate_pass(
    isa, loop, activation, dtype, batch, size, channels, stride, dilation, padding, bias, non_finite
):
    """The depthwise loops apply relu, relu6, leaky_relu and hard_swish as each value is
    stored, and leave sigmoid (and, at multiplier 1, a non-finite weight, whose padding
    products come after the store) to the pass after: the bits of the convolution followed by the
    activation in every case, NaN and infinite inputs included, at any thread count."""
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    kernel, mult = _DEPTHWISE_LOOPS[loop]
    rank = len(kernel)
    shape = tuple(max(size - 3 * d, dilation * (k - 1) + 1) for d, k in enumerate(kernel))
    x = seeded((batch, *shape, channels), dtype, 41)
    w = seeded((*kernel, 1, channels * mult), dtype, 42)
    b = seeded((channels * mult,), dtype, 43) if bias else None
    if non_finite == "x":
        x.reshape(-1)[:: 7 + channels] = np.nan
        x.reshape(-1)[3 :: 11 + channels] = -np.inf
    elif non_finite == "weight":
        w.reshape(-1)[0] = np.inf  # offset 0 of channel 0: the padding's products are NaN
    kwargs = {
        "stride": stride,
        "dilation": (1,) * (rank - 1) + (dilation,),
        "padding": padding,
        "groups": channels,
        "negative_slope": 0.1,
    }
    cnnkit.set_num_threads(1)
    with np.errstate(invalid="ignore", over="ignore"):
        got = ops.conv(x, w, b, activation=activation, **kwargs)
        separate = reference._activate(ops.conv(x, w, b, **kwargs), activation, 0.1)
        want = reference.conv(f64(x), f64(w), f64(b), activation=activation, **kwargs)
    assert got.dtype == dtype
    if activation == "sigmoid":
        np.testing.assert_allclose(got, separate, rtol=4 * np.finfo(dtype).eps, atol=0)
    else:
        assert np.array_equal(got, separate, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=RTOL[dtype], atol=RTOL[dtype] * 10)
    cnnkit.set_num_threads(2)
    assert np.array_equal(ops.conv(x, w, b, activation=activation, **kwargs), got, equal_nan=True)


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@given(
    loop=st.sampled_from(["rows", "rows-5x5", "1d"]),
    dtype=st.sampled_from(DTYPES),
    size=st.integers(1, 12),
    channels=st.integers(17, 47),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    activation=st.sampled_from([None, "relu6", "leaky_relu"]),
    non_finite=st.booleans(),
)
@settings(max_examples=30)
def test_depthwise_channel_remainders_have_the_bits_of_whole_vectors(
    isa, loop, dtype, size, channels, stride, padding, activation, non_finite
):
    """Channels past the last whole vector (masked vectors on the AVX-512 path, one lane at
    a time elsewhere) get the bits they get inside a whole vector: each channel is the
    same convolution whatever the channels around it, so the channels [16, C) of a
    C-channel problem equal those of the problem with its channels repeated to 48,
    where they lie in whole vectors of every width. The input gradient runs the same
    loops at stride 1."""
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    kernel = _DEPTHWISE_LOOPS[loop][0]
    shape = tuple(max(size, k) for k in kernel)
    x = seeded((2, *shape, channels), dtype, 51)
    w = seeded((*kernel, 1, channels), dtype, 52)
    b = seeded((channels,), dtype, 53)
    if non_finite:
        x.reshape(-1)[:: 5 + channels] = np.nan
        x.reshape(-1)[2 :: 13 + channels] = np.inf
    wide = np.arange(48) % channels  # channel j of the wide problem is channel wide[j]
    kwargs = {"stride": stride, "padding": padding, "negative_slope": 0.1}
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        with np.errstate(invalid="ignore", over="ignore"):
            got = ops.conv(x, w, b, groups=channels, activation=activation, **kwargs)
            want = ops.conv(
                x[..., wide], w[..., wide], b[wide], groups=48, activation=activation, **kwargs
            )
        assert np.array_equal(got[..., 16:], want[..., 16:channels], equal_nan=True)
    del kwargs["negative_slope"]
    dy = seeded(got.shape, dtype, 54)
    dx = ops.conv_backward(x, w, dy, groups=channels, need=("x",), **kwargs)[0]
    dx_wide = ops.conv_backward(
        x[..., wide], w[..., wide], dy[..., wide], groups=48, need=("x",), **kwargs
    )[0]
    assert np.array_equal(dx[..., 16:], dx_wide[..., 16:channels], equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        pytest.param((2, 9, 7, 37), (1, 1, 37, 19), {}, id="pointwise-2d"),
        pytest.param((3, 50, 70), (1, 70, 33), {"padding": 0}, id="pointwise-1d-pad0"),
        pytest.param((1, 4, 5, 3, 40), (1, 1, 1, 40, 9), {"padding": "same"}, id="pointwise-3d"),
        pytest.param((2, 9, 7, 37), (1, 1, 37, 19), {"stride": 2}, id="1x1-stride2"),
        pytest.param((2, 9, 7, 37), (1, 1, 37, 19), {"stride": (1, 2)}, id="1x1-stride12"),
        pytest.param((2, 9, 7, 36), (1, 1, 18, 20), {"groups": 2}, id="1x1-groups2"),
        pytest.param((2, 9, 7, 37), (1, 1, 37, 19), {"padding": 1}, id="1x1-padded"),
        pytest.param((2, 9, 7, 37), (1, 1, 37, 19), {"padding": ((0, 1), (0, 0))}, id="1x1-pad"),
    ],
)
def test_1x1_kernels(x_shape, w_shape, kwargs, dtype):
    x, w = seeded(x_shape, dtype, 1), seeded(w_shape, dtype, 2)
    b = seeded(w_shape[-1:], dtype, 3)
    for xv in (x, layout_view(x, "channel_stride"), layout_view(x, "channels_first")):
        y = ops.conv(xv, w, b, **kwargs)
        assert y.shape == expected_out_shape(x_shape, w_shape, **kwargs)
        check_forward(y, x, w, b, dtype, **kwargs)
        dy = seeded(y.shape, dtype, 4)
        check_backward(ops.conv_backward(xv, w, dy, **kwargs), x, w, dy, dtype, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        pytest.param((3, 14, 13, 1), (5, 5, 1, 40), {"padding": "same"}, id="2d-1ch-blocks"),
        pytest.param((2, 15, 12, 3), (3, 3, 3, 37), {"stride": 2}, id="2d-3ch-stride2"),
        pytest.param((2, 16, 11, 2), (3, 2, 2, 16), {"dilation": (2, 1)}, id="2d-dilated"),
        pytest.param((2, 40, 4), (7, 4, 33), {"padding": 3}, id="1d-4ch"),
        pytest.param((2, 6, 7, 8, 1), (3, 3, 3, 1, 20), {"padding": "same"}, id="3d-1ch"),
        pytest.param((1, 5, 5, 1), (5, 5, 1, 16), {}, id="kernel-is-input"),
        # The padded-slab tiles: lines of outputs that are not a multiple of the
        # tile (13, 11, 7), channels not a multiple of two vectors (33, 9),
        # padding wider than the kernel, asymmetric and one-sided padding, and
        # strides and dilations with stride-1 input gradients elsewhere.
        pytest.param((2, 28, 28, 1), (5, 5, 1, 32), {"padding": "same"}, id="mnist-same"),
        pytest.param((2, 28, 28, 1), (5, 5, 1, 32), {}, id="mnist-valid"),
        pytest.param((3, 13, 11, 2), (5, 5, 2, 33), {"padding": "same"}, id="2ch-partial"),
        pytest.param((2, 9, 7, 3), (3, 3, 3, 9), {"padding": 6}, id="3ch-wide-pad"),
        pytest.param(
            (2, 12, 10, 4), (3, 2, 4, 17), {"padding": ((3, 0), (0, 2))}, id="4ch-one-sided"
        ),
        pytest.param(
            (2, 17, 15, 1), (3, 3, 1, 20), {"dilation": (2, 3), "padding": "same"}, id="dilated"
        ),
        pytest.param((2, 17, 15, 2), (4, 3, 2, 8), {"stride": (1, 3)}, id="stride-1-3"),
        pytest.param((3, 50, 1), (9, 1, 40), {"padding": "same", "dilation": 2}, id="1d-1ch"),
        pytest.param((1, 7, 9, 10, 3), (2, 3, 4, 3, 5), {"padding": 2}, id="3d-3ch"),
        # Input gradients by kernel line (3, 5 or 7 taps along the line, dilation 1).
        pytest.param((2, 19, 23, 1), (3, 7, 1, 12), {"padding": "same"}, id="line-7"),
        pytest.param((3, 40, 2), (3, 2, 10), {"padding": 1}, id="line-3-1d"),
        pytest.param((1, 6, 7, 9, 1), (2, 3, 3, 1, 7), {"padding": "same"}, id="line-3-3d"),
        pytest.param((2, 9, 30, 4), (2, 5, 4, 40), {"dilation": (3, 1)}, id="line-5-4ch"),
        pytest.param((2, 9, 23, 1), (5, 5, 1, 20), {"padding": "same"}, id="2d-1ch-remainders"),
        # 8 taps per kernel row, stride and dilation along the line, uneven padding,
        # kernel rows wholly in the padding of the outer dimension.
        pytest.param(
            (2, 10, 17, 2),
            (3, 4, 2, 16),
            {"stride": (1, 2), "dilation": (2, 3), "padding": ((4, 1), (5, 2))},
            id="2d-2ch-strided-uneven-pad",
        ),
        # Padding wider than the kernel's span: outputs that read only padding.
        pytest.param((1, 5, 6, 1), (3, 3, 1, 5), {"padding": ((0, 0), (7, 7))}, id="2d-all-pad"),
        pytest.param((3, 50, 3), (9, 3, 7), {"stride": 3, "padding": ((6, 2),)}, id="1d-27-taps"),
        pytest.param(
            (2, 5, 6, 13, 1), (2, 3, 5, 1, 9), {"stride": 2, "padding": "same"}, id="3d-1ch-stride2"
        ),
    ],
)
def test_few_channel_kernels(x_shape, w_shape, kwargs, dtype):
    """The loops for <= 4 input channels over zero-padded slabs: tiles of output
    positions (forward), of kernel offsets (weights) and of input positions (input,
    stride 1; other strides gather per input position), with their remainders."""
    x, w = seeded(x_shape, dtype, 5), seeded(w_shape, dtype, 6)
    b = seeded(w_shape[-1:], dtype, 7)
    for xv in (x, layout_view(x, "channel_stride")):
        y = ops.conv(xv, w, b, **kwargs)
        assert y.shape == expected_out_shape(x_shape, w_shape, **kwargs)
        check_forward(y, x, w, b, dtype, **kwargs)
        dy = seeded(y.shape, dtype, 8)
        check_backward(ops.conv_backward(xv, w, dy, **kwargs), x, w, dy, dtype, **kwargs)


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@given(data=st.data())
@settings(max_examples=20)
def test_wide_direct_loops_match_reference(isa, data):
    """5 to 16 input channels at stride 1: the few-channel forward tiles on the AVX-512
    float path (up to 64 outputs, 14-row tiles split evenly along a line, channel
    remainders masked), the same tiles on dy for the input gradient (16 input channels,
    up to 32 outputs) and kernel-offset tiles for the weight gradient; the im2col GEMM
    elsewhere. One thread and two agree bit for bit."""
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    rank = data.draw(st.integers(1, 3), label="rank")
    cin = data.draw(st.sampled_from((5, 7, 8, 9, 12, 15, 16, 16, 16)), label="cin")
    cout = data.draw(st.one_of(st.integers(1, 17), st.integers(30, 66)), label="cout")
    kernel = data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank), label="kernel")
    if math.prod(kernel) == 1:
        kernel[0] = 2
    dilation = data.draw(st.sampled_from((1, 1, 2)), label="dilation")
    padding = data.draw(st.sampled_from(("same", "valid", 1)), label="padding")
    spans = [dilation * (k - 1) + 1 for k in kernel]
    top = (31, 16, 6)[rank - 1]
    lows = [1 if padding == "same" else max(1, s - (2 if padding == 1 else 0)) for s in spans]
    sizes = [data.draw(st.integers(low, max(top, low + 2)), label="size") for low in lows]
    batch = data.draw(st.integers(1, 3), label="batch")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    x = seeded((batch, *sizes, cin), dtype, seed)
    w = seeded((*kernel, cin, cout), dtype, seed + 1)
    b = seeded((cout,), dtype, seed + 2) if data.draw(st.booleans(), label="bias") else None
    kwargs = {"padding": padding, "dilation": dilation}
    cnnkit.set_num_threads(1)
    y = ops.conv(x, w, b, **kwargs)
    check_forward(y, x, w, b, dtype, **kwargs)
    relu = ops.conv(x, w, b, activation="relu", **kwargs)
    assert np.array_equal(relu, np.where(y < 0, 0, y))
    dy = seeded(y.shape, dtype, seed + 3)
    grads = ops.conv_backward(x, w, dy, **kwargs)
    check_backward(grads, x, w, dy, dtype, **kwargs)
    cnnkit.set_num_threads(2)
    assert np.array_equal(ops.conv(x, w, b, **kwargs), y)
    for got, want in zip(ops.conv_backward(x, w, dy, **kwargs), grads):
        assert np.array_equal(got, want)


def test_hand_computed_example():
    """Cross-correlation (no kernel flip), bias added, Keras "same" pads at the end."""
    x = np.array([[[1.0], [2.0], [3.0], [4.0]]])
    w = np.array([[[1.0]], [[10.0]]])
    assert ops.conv(x, w)[0, :, 0].tolist() == [21.0, 32.0, 43.0]
    assert ops.conv(x, w, [0.5])[0, :, 0].tolist() == [21.5, 32.5, 43.5]
    # "same": one padding element, after the input.
    assert ops.conv(x, w, padding="same")[0, :, 0].tolist() == [21.0, 32.0, 43.0, 4.0]
    assert ops.conv(x, w, padding=((1, 0),))[0, :, 0].tolist() == [10.0, 21.0, 32.0, 43.0]
    assert ops.conv(x, w, stride=2)[0, :, 0].tolist() == [21.0, 43.0]
    assert ops.conv(x, w, dilation=2)[0, :, 0].tolist() == [31.0, 42.0]
    # Two groups: each output channel sees only its own input channel.
    x2 = np.array([[[1.0, 100.0], [2.0, 200.0]]])
    w2 = np.array([[[1.0, 1.0]], [[10.0, 10.0]]])
    assert ops.conv(x2, w2, groups=2)[0].tolist() == [[21.0, 2100.0]]


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_same_padding(k, stride, dilation):
    """``ceil(n / stride)`` outputs for odd and even sizes; the odd pad goes at the end."""
    sizes = (7, 8, 9, 10)
    x = seeded((2, 10, 10, 3), F64, k)
    w = seeded((k, k, 3, 2), F64, stride)
    kwargs = {"stride": stride, "dilation": dilation}
    for n in sizes:
        xn = x[:, :n, : 17 - n]
        y = ops.conv(xn, w, padding="same", **kwargs)
        assert y.shape == (2, math.ceil(n / stride), math.ceil((17 - n) / stride), 2)
        pads = []
        for size in (n, 17 - n):
            out = -(-size // stride)
            total = max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        assert np.array_equal(y, ops.conv(xn, w, padding=tuple(pads), **kwargs))
        check_forward(y, xn, w, None, F64, padding="same", **kwargs)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        pytest.param((2, 6, 5, 4), (6, 5, 4, 3), {}, id="kernel-is-input-2d"),
        pytest.param((1, 3, 4, 2, 2), (3, 4, 2, 2, 5), {"stride": 3}, id="kernel-is-input-3d"),
        pytest.param((2, 6, 5, 4), (6, 5, 2, 4), {"groups": 2}, id="kernel-is-input-groups"),
        pytest.param((2, 13, 11, 3), (2, 2, 3, 4), {"stride": (5, 4)}, id="stride-over-kernel"),
        pytest.param((2, 13, 3), (1, 3, 4), {"stride": 4, "padding": 2}, id="stride-over-1x1"),
        pytest.param((1, 12, 3), (3, 3, 4), {"dilation": 5, "padding": 1}, id="wide-dilation"),
    ],
)
def test_degenerate_geometries(x_shape, w_shape, kwargs):
    for dtype in DTYPES:
        x, w = seeded(x_shape, dtype, 5), seeded(w_shape, dtype, 6)
        y = ops.conv(x, w, **kwargs)
        assert y.shape == expected_out_shape(x_shape, w_shape, **kwargs)
        check_forward(y, x, w, None, dtype, **kwargs)
        dy = seeded(y.shape, dtype, 7)
        check_backward(ops.conv_backward(x, w, dy, **kwargs), x, w, dy, dtype, **kwargs)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        pytest.param((0, 5, 5, 2), (3, 3, 2, 4), {}, id="batch-0"),
        pytest.param((2, 5, 5, 2), (3, 3, 2, 0), {}, id="c_out-0"),
        pytest.param((2, 5, 5, 0), (3, 3, 0, 4), {"padding": 1}, id="c_in-0"),
        pytest.param((2, 0, 3), (1, 3, 2), {"padding": 1}, id="spatial-0-padded"),
        pytest.param((1, 1, 1, 1, 1), (1, 1, 1, 1, 1), {}, id="single-element"),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_and_single_element(x_shape, w_shape, kwargs, dtype):
    x, w, b = seeded(x_shape, dtype, 1), seeded(w_shape, dtype, 2), seeded(w_shape[-1:], dtype, 3)
    out_shape = expected_out_shape(x_shape, w_shape, **kwargs)
    y = ops.conv(x, w, b, **kwargs)
    dy = seeded(out_shape, dtype, 4)
    grads = ops.conv_backward(x, w, dy, **kwargs)
    if x.size and w.size:
        check_forward(y, x, w, b, dtype, **kwargs)
        check_backward(grads, x, w, dy, dtype, **kwargs)
        return
    # No products at all (the reference cannot reshape zero channels): y is the
    # bias, dx and dw are zeros and db sums dy.
    assert y.dtype == dtype
    assert np.array_equal(y, np.broadcast_to(b, out_shape))
    dx, dw, db = grads
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert np.array_equal(dx, np.zeros(x_shape, dtype))
    assert np.array_equal(dw, np.zeros(w_shape, dtype))
    assert_close(
        db,
        dy.astype(F64).sum(axis=tuple(range(dy.ndim - 1))),
        np.abs(dy.astype(F64)).sum(axis=tuple(range(dy.ndim - 1))),
        dtype,
        "db",
    )


def test_course_shapes_1d():
    """(14, 1) -> 16 filters of 5 -> (10, 16) -> 32 filters of 5 -> (6, 32)."""
    x = seeded((2, 14, 1), F64, 1)
    w1, w2 = seeded((5, 1, 16), F64, 2), seeded((5, 16, 32), F64, 3)
    b1, b2 = seeded((16,), F64, 4), seeded((32,), F64, 5)
    y1 = ops.conv1d(x, w1, b1, stride=1)
    assert y1.shape == (2, 10, 16)
    y2 = ops.conv1d(y1, w2, b2)
    assert y2.shape == (2, 6, 32)
    check_forward(y1, x, w1, b1, F64)
    check_forward(y2, y1, w2, b2, F64)


def test_course_shapes_3d():
    """(14, 14, 14, 1) -> 16 filters of 5 -> (10, 10, 10, 16) -> 32 -> (6, 6, 6, 32)."""
    x = seeded((2, 14, 14, 14, 1), F32, 1)
    w1, w2 = seeded((5, 5, 5, 1, 16), F32, 2), seeded((5, 5, 5, 16, 32), F32, 3)
    y1 = ops.conv3d(x, w1)
    assert y1.shape == (2, 10, 10, 10, 16)
    y2 = ops.conv3d(y1, w2, stride=1)
    assert y2.shape == (2, 6, 6, 6, 32)
    check_forward(y1, x, w1, None, F32)
    check_forward(y2, y1, w2, None, F32)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_nd_equals_conv(rank):
    fn = {1: ops.conv1d, 2: ops.conv2d, 3: ops.conv3d}[rank]
    x = seeded((2, *(6,) * rank, 4), F32, rank)
    w = seeded((*(3,) * rank, 2, 6), F32, 9)
    b = seeded((6,), F32, 10)
    kwargs = {"stride": 2, "padding": "same", "dilation": 1, "groups": 2}
    assert np.array_equal(fn(x, w, b, **kwargs), ops.conv(x, w, b, **kwargs))
    assert np.array_equal(fn(x.tolist(), w, groups=2), ops.conv(x.astype(F64), w, groups=2))


def test_list_inputs():
    x, w, b = seeded((2, 5, 6, 3), F64, 1), seeded((2, 3, 3, 4), F64, 2), seeded((4,), F64, 3)
    y = ops.conv(x.tolist(), w.tolist(), b.tolist(), padding=1)
    assert y.dtype == F64
    assert np.array_equal(y, ops.conv(x, w, b, padding=1))
    dy = seeded(y.shape, F64, 4)
    got = ops.conv_backward(x.tolist(), w.tolist(), dy.tolist(), padding=1)
    for g, want in zip(got, ops.conv_backward(x, w, dy, padding=1)):
        assert g.dtype == F64
        assert np.array_equal(g, want)


@pytest.mark.parametrize(
    ("x_dtype", "w_dtype", "b_dtype", "dy_dtype"),
    [
        (F32, F64, None, F32),
        (F64, F32, F32, F32),
        (F32, F32, F64, F64),
        (F32, F32, None, F64),
    ],
)
def test_mixed_dtypes_give_float64(x_dtype, w_dtype, b_dtype, dy_dtype):
    """The wider float dtype wins, and the arithmetic is done at its precision."""
    x, w = seeded((2, 7, 6, 4), x_dtype, 1), seeded((3, 2, 2, 6), w_dtype, 2)
    b = None if b_dtype is None else seeded((6,), b_dtype, 3)
    kwargs = {"padding": "same", "groups": 2}
    y = ops.conv(x, w, b, **kwargs)
    # (Not `F64 in (..., None)`: np.dtype(None) is float64, so that would be True.)
    want_dtype = F64 if F64 in [t for t in (x_dtype, w_dtype, b_dtype) if t is not None] else F32
    assert y.dtype == want_dtype
    check_forward(y, x, w, b, want_dtype, **kwargs)
    dy = seeded(y.shape, dy_dtype, 4)
    grads = ops.conv_backward(x, w, dy, **kwargs)
    grad_dtype = F64 if F64 in (x_dtype, w_dtype, dy_dtype) else F32
    check_backward(grads, x, w, dy, grad_dtype, **kwargs)


# --------------------------------------------------------------------------- backward


@given(conv_problems(bias=False), st.sampled_from(("contiguous", "channel_stride", "fortran")))
def test_conv_backward_matches_reference(problem, dy_layout):
    dy = layout_view(problem.dy(), dy_layout)
    grads = ops.conv_backward(problem.x, problem.w, dy, **problem.kwargs)
    assert [g.shape for g in grads] == [problem.x.shape, problem.w.shape, problem.w.shape[-1:]]
    check_backward(grads, problem.x, problem.w, dy, problem.dtype, **problem.kwargs)


@pytest.mark.parametrize(
    ("need", "wanted"),
    [
        pytest.param(("x", "w", "b"), "xwb", id="all"),
        pytest.param(("x",), "x", id="x"),
        pytest.param(("w",), "w", id="w"),
        pytest.param(("b",), "b", id="b"),
        pytest.param(["w", "x"], "xw", id="list-wx"),
        pytest.param(("b", "x"), "xb", id="bx"),
        pytest.param(frozenset("wb"), "wb", id="set-wb"),
        pytest.param(("x", "x"), "x", id="repeated"),
        pytest.param((), "", id="none"),
    ],
)
def test_need_selects_the_gradients(need, wanted):
    x, w = seeded((2, 9, 8, 4), F32, 1), seeded((3, 3, 2, 6), F32, 2)
    kwargs = {"stride": 2, "padding": "same", "groups": 2}
    dy = seeded(expected_out_shape(x.shape, w.shape, **kwargs), F32, 3)
    everything = ops.conv_backward(x, w, dy, **kwargs)
    got = ops.conv_backward(x, w, dy, need=need, **kwargs)
    assert isinstance(got, tuple)
    assert len(got) == 3
    for name, g, full in zip("xwb", got, everything):
        if name in wanted:
            assert np.array_equal(g, full), name
        else:
            assert g is None, name


def _small_problems(**kwargs):
    return conv_problems(dtype=F64, max_batch=2, **kwargs)


@given(_small_problems(bias=True, views=False), st.data())
@settings(max_examples=25)
def test_gradients_match_finite_differences(problem, data):
    """Central differences of ``L = sum(conv(x, w, b) * dy)`` at a few random entries."""
    x, w, b, kw = problem.x.copy(), problem.w.copy(), problem.b.copy(), problem.kwargs
    dy = problem.dy()
    dx, dw, db = ops.conv_backward(x, w, dy, **kw)

    def loss(x, w, b):
        return float(np.sum(ops.conv(x, w, b, **kw) * dy))

    magnitude = float(np.sum(reference.conv(np.abs(x), np.abs(w), np.abs(b), **kw) * np.abs(dy)))
    h = 1e-3
    for name, arr, grad in (("x", x, dx), ("w", w, dw), ("b", b, db)):
        count = min(arr.size, 4)
        picks = data.draw(
            st.lists(st.integers(0, arr.size - 1), min_size=count, max_size=count),
            label=f"{name} entries",
        )
        for flat in picks:
            i = np.unravel_index(flat, arr.shape)
            keep = arr[i]
            arr[i] = keep + h
            up = loss(x, w, b)
            arr[i] = keep - h
            down = loss(x, w, b)
            arr[i] = keep
            fd = (up - down) / (2 * h)
            assert abs(fd - grad[i]) <= 1e-8 * (magnitude + 1.0), (name, i, fd, grad[i])


@given(_small_problems(bias=False))
@settings(max_examples=30)
def test_adjoint_identities(problem):
    """``<conv(x, w), dy> == <x, dx> == <w, dw>`` and ``<1, dy> == sum(db)``."""
    x, w, kw = problem.x, problem.w, problem.kwargs
    dy = problem.dy()
    y = ops.conv(x, w, **kw)
    dx, dw, db = ops.conv_backward(x, w, dy, **kw)
    lhs = float(np.sum(y * dy))
    magnitude = float(np.sum(reference.conv(np.abs(x), np.abs(w), **kw) * np.abs(dy)))
    tol = 1e-10 * magnitude + 1e-300
    assert abs(lhs - float(np.sum(x * dx))) <= tol
    assert abs(lhs - float(np.sum(w * dw))) <= tol
    assert abs(float(np.sum(db)) - float(np.sum(dy))) <= 1e-10 * float(np.sum(np.abs(dy)))


# --------------------------------------------------------------------------- PyTorch

TORCH_CASES = [
    pytest.param(
        (2, 17, 4),
        (3, 2, 6),
        {"stride": 2, "padding": ((1, 2),), "dilation": 2, "groups": 2},
        id="1d-groups-dilation",
    ),
    pytest.param(
        (2, 11, 9, 6),
        (3, 2, 2, 9),
        {"stride": (1, 2), "padding": "same", "dilation": (2, 1), "groups": 3},
        id="2d-groups",
    ),
    pytest.param(
        (1, 10, 12, 4), (3, 3, 1, 8), {"stride": 2, "padding": 1, "groups": 4}, id="2d-depthwise-x2"
    ),
    pytest.param((2, 8, 7, 5), (1, 1, 5, 7), {}, id="2d-pointwise"),
    pytest.param(
        (2, 7, 6, 8, 4),
        (2, 3, 2, 2, 4),
        {"padding": ((0, 1), (2, 2), (1, 0)), "dilation": (1, 2, 1), "groups": 2},
        id="3d-groups-dilation",
    ),
    pytest.param((1, 6, 7, 5, 3), (3, 2, 3, 3, 5), {"stride": (2, 1, 3)}, id="3d-stride"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), TORCH_CASES)
def test_agrees_with_torch(x_shape, w_shape, kwargs, dtype):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rank = len(x_shape) - 2
    x, w = seeded(x_shape, dtype, 1), seeded(w_shape, dtype, 2)
    b = seeded(w_shape[-1:], dtype, 3)
    stride, dilation = (
        per_dim(kwargs.get("stride", 1), rank),
        per_dim(kwargs.get("dilation", 1), rank),
    )
    pads = reference._window_padding(
        x_shape[1:-1], w_shape[:rank], stride, dilation, kwargs.get("padding", "valid")
    )
    # Channels-last -> NC*, HWIO -> OIHW; torch pads symmetrically, so pad x here.
    xt = torch.from_numpy(np.pad(x, [(0, 0), *pads, (0, 0)])).movedim(-1, 1).requires_grad_()
    wt = torch.from_numpy(w).permute(rank + 1, rank, *range(rank)).contiguous().requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    conv_nd = {1: functional.conv1d, 2: functional.conv2d, 3: functional.conv3d}[rank]
    yt = conv_nd(xt, wt, bt, stride=stride, dilation=dilation, groups=kwargs.get("groups", 1))
    y = ops.conv(x, w, b, **kwargs)
    want = yt.movedim(1, -1).detach().numpy()
    scale = reference.conv(absf64(x), absf64(w), absf64(b), **kwargs)
    assert_close(y, want.astype(np.float64), scale, dtype, "y vs torch")

    dy = seeded(y.shape, dtype, 4)
    (yt * torch.from_numpy(dy).movedim(-1, 1)).sum().backward()
    dx, dw, db = ops.conv_backward(x, w, dy, **kwargs)
    inner = tuple(slice(pb, pb + n) for (pb, _), n in zip(pads, x_shape[1:-1]))
    dx_torch = xt.grad.movedim(1, -1).numpy()[(slice(None), *inner)]
    dw_torch = wt.grad.permute(*range(2, rank + 2), 1, 0).numpy()
    mags = reference.conv_backward(absf64(x), absf64(w), absf64(dy), **kwargs)
    assert_close(dx, dx_torch.astype(np.float64), mags[0], dtype, "dx vs torch")
    assert_close(dw, dw_torch.astype(np.float64), mags[1], dtype, "dw vs torch")
    assert_close(db, bt.grad.numpy().astype(np.float64), mags[2], dtype, "db vs torch")


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_same_padding_agrees_with_torch_at_stride_1(k, dilation):
    """torch's padding="same" (stride 1) also puts the odd pad at the end."""
    torch = pytest.importorskip("torch")
    x, w = seeded((1, 9, 8, 2), F64, k), seeded((k, k, 2, 3), F64, 5)
    with warnings.catch_warnings():  # torch warns that it pads a copy when k is even
        warnings.simplefilter("ignore", UserWarning)
        want = torch.nn.functional.conv2d(
            torch.from_numpy(x).permute(0, 3, 1, 2),
            torch.from_numpy(w).permute(3, 2, 0, 1),
            padding="same",
            dilation=dilation,
        )
    got = ops.conv2d(x, w, padding="same", dilation=dilation)
    scale = reference.conv(np.abs(x), np.abs(w), padding="same", dilation=dilation)
    assert_close(got, want.permute(0, 2, 3, 1).numpy(), scale, F64)


# --------------------------------------------------------------------------- threads and ISAs

BIG_CASES = [
    pytest.param((3, 40, 40, 8), (3, 3, 8, 16), {"padding": "same"}, id="2d-same"),
    pytest.param(
        (3, 96, 90, 5),
        (3, 3, 5, 7),
        {"stride": 2, "dilation": 2, "padding": "same"},
        id="2d-stride2-dilated",
    ),
    pytest.param((2, 24, 24, 24, 2), (3, 3, 3, 2, 4), {"padding": "same"}, id="3d"),
    pytest.param((3, 40, 40, 8), (3, 3, 4, 12), {"padding": 1, "groups": 2}, id="2d-groups"),
    pytest.param((2, 48, 48, 16), (3, 3, 1, 32), {"padding": 1, "groups": 16}, id="depthwise"),
    # Multiplier 1 (MobileNet's): 64-byte channel blocks plus a remainder, four
    # windows at a time plus a remainder per row, padded windows one at a time.
    pytest.param((2, 48, 47, 37), (3, 3, 1, 37), {"padding": 1, "groups": 37}, id="depthwise-m1"),
    pytest.param(
        (2, 30, 31, 40),
        (3, 3, 1, 40),
        {"stride": 2, "dilation": 2, "padding": "same", "groups": 40},
        id="depthwise-m1-stride2-dilated",
    ),
    pytest.param((3, 40, 40, 32), (1, 1, 32, 24), {}, id="pointwise"),
    # 2,700 rows of 144 patch columns: at least four tiles of rows, cut evenly (672 or
    # 686 rows; six tiles at three threads); a 1x1 stride-2 conv of one image (784
    # rows): four tiles, not one.
    pytest.param(
        (3, 60, 60, 16), (3, 3, 16, 24), {"stride": 2, "padding": 1}, id="2d-even-row-tiles"
    ),
    pytest.param((1, 56, 56, 16), (1, 1, 16, 32), {"stride": 2}, id="1x1-stride2-one-image"),
    pytest.param((3, 64, 64, 3), (3, 3, 3, 36), {"padding": "same"}, id="few-channels"),
    # One image: the few-channel loops cut it into bands whose number follows
    # the thread count.
    pytest.param(
        (1, 150, 37, 2), (5, 5, 2, 20), {"padding": "same", "dilation": (2, 1)}, id="few-bands"
    ),
    pytest.param((2, 3000, 1), (5, 1, 24), {"padding": "same"}, id="few-1d"),
    pytest.param((3, 14, 14, 16), (5, 5, 16, 32), {"padding": "same"}, id="wide-direct"),
    pytest.param((4, 6000, 6), (7, 6, 10), {"stride": 3, "padding": ((2, 5),)}, id="1d"),
]


def _big_problem(x_shape, w_shape, dtype):
    x, w = seeded(x_shape, dtype, 11), seeded(w_shape, dtype, 12)
    return x, w, seeded(w_shape[-1:], dtype, 13)


def _run_all(x, w, b, dy, kwargs):
    return (ops.conv(x, w, b, **kwargs), *ops.conv_backward(x, w, dy, **kwargs))


def _assert_identical(results, baseline, what):
    for name, got, want in zip(("y", "dx", "dw", "db"), results, baseline):
        assert got.dtype == want.dtype
        assert np.array_equal(got, want), f"{name} differs ({what})"


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), BIG_CASES)
def test_results_do_not_depend_on_thread_count(x_shape, w_shape, kwargs, dtype):
    x, w, b = _big_problem(x_shape, w_shape, dtype)
    dy = seeded(expected_out_shape(x_shape, w_shape, **kwargs), dtype, 14)
    cnnkit.set_num_threads(1)
    baseline = _run_all(x, w, b, dy, kwargs)
    for n in (2, 3, 1):
        cnnkit.set_num_threads(n)
        _assert_identical(_run_all(x, w, b, dy, kwargs), baseline, f"{n} threads vs 1")
    if dtype == F32:
        check_forward(baseline[0], x, w, b, dtype, **kwargs)
        check_backward(baseline[1:], x, w, dy, dtype, **kwargs)


@pytest.mark.usefixtures("restore_threads")
def test_concurrent_calls_match_serial_calls():
    cnnkit.set_num_threads(2)
    problems = []
    for param in BIG_CASES[:6]:
        x_shape, w_shape, kwargs = param.values
        for dtype in DTYPES:
            x, w, b = _big_problem(x_shape, w_shape, dtype)
            dy = seeded(expected_out_shape(x_shape, w_shape, **kwargs), dtype, 15)
            problems.append((x, w, b, dy, kwargs))
    serial = [_run_all(*p) for p in problems]
    order = [i for _ in range(2) for i in range(len(problems))][::-1]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(i, pool.submit(_run_all, *problems[i])) for i in order]
        for i, future in futures:
            _assert_identical(future.result(), serial[i], f"concurrent call {i}")


ISA_CASES = [
    pytest.param((2, 20, 19, 8), (3, 3, 8, 16), {"padding": "same"}, id="general"),
    pytest.param(
        (2, 20, 19, 8), (3, 2, 4, 6), {"stride": 2, "dilation": (1, 2), "groups": 2}, id="groups"
    ),
    pytest.param((2, 20, 19, 8), (3, 3, 1, 16), {"padding": 1, "groups": 8}, id="depthwise"),
    pytest.param((2, 20, 19, 37), (3, 3, 1, 37), {"padding": 1, "groups": 37}, id="depthwise-m1"),
    pytest.param((2, 30, 21), (5, 1, 21), {"padding": 2, "groups": 21}, id="depthwise-m1-1d"),
    pytest.param(
        (1, 6, 7, 8, 18), (3, 3, 3, 1, 18), {"padding": "same", "groups": 18}, id="depthwise-m1-3d"
    ),
    pytest.param((2, 20, 19, 33), (1, 1, 33, 17), {}, id="pointwise"),
    pytest.param((1, 9, 10, 11, 3), (3, 2, 3, 3, 5), {"padding": "same"}, id="3d"),
    pytest.param((2, 20, 19, 3), (3, 3, 3, 37), {"stride": 2, "padding": 1}, id="few-channels"),
    pytest.param((2, 20, 19, 1), (5, 5, 1, 32), {"padding": "same"}, id="few-channels-stride1"),
    pytest.param((2, 20, 19, 2), (5, 4, 2, 13), {"dilation": 2}, id="few-channels-valid"),
    # 16 channels at stride 1: the few-channel forward's 64-byte tiles on AVX-512.
    pytest.param((2, 14, 15, 16), (5, 5, 16, 32), {"padding": "same"}, id="wide-direct"),
    pytest.param((2, 13, 30, 9), (3, 4, 9, 41), {"dilation": (1, 2)}, id="wide-direct-valid"),
]


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), ISA_CASES)
def test_each_isa_path_is_accurate_and_deterministic(isa, dtype, x_shape, w_shape, kwargs):
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    assert _core.get_isa() == isa
    x, w, b = _big_problem(x_shape, w_shape, dtype)
    dy = seeded(expected_out_shape(x_shape, w_shape, **kwargs), dtype, 16)
    cnnkit.set_num_threads(1)
    first = _run_all(x, w, b, dy, kwargs)
    check_forward(first[0], x, w, b, dtype, **kwargs)
    check_backward(first[1:], x, w, dy, dtype, **kwargs)
    for n in (1, 2, 3):
        cnnkit.set_num_threads(n)
        _assert_identical(_run_all(x, w, b, dy, kwargs), first, f"{isa}, {n} threads")


# ----------------------------------------------------- weight gradient: patches into GEMM slivers

# Patch widths around the AVX-512 register tile's 14 rows (a sliver's run of
# channels cut at every place), k blocks of output positions over the batch,
# padding, strides, dilation, groups, 1-D and 3-D. Stride-1 cases with 5 to 16
# input channels have more than 64 output channels, which keeps them off the
# AVX-512 direct loops (csrc/conv_direct.hpp's wide_direct_backward_weight).
SLIVER_CASES = [
    pytest.param((2, 9, 11, 5), (3, 3, 5, 70), {"padding": "same"}, id="kd45"),
    pytest.param((3, 13, 10, 16), (3, 3, 16, 32), {"stride": 2, "padding": 1}, id="cg16-stride2"),
    pytest.param(
        (2, 12, 12, 26),
        (3, 2, 13, 10),
        {"padding": 1, "dilation": (2, 1), "groups": 2},
        id="groups",
    ),
    pytest.param(
        (2, 9, 8, 14), (3, 3, 14, 67), {"padding": ((2, 0), (1, 3))}, id="cg14-uneven-pad"
    ),
    pytest.param((3, 300, 17), (5, 17, 9), {"padding": "same"}, id="1d"),
    pytest.param((2, 6, 7, 5, 6), (3, 3, 2, 6, 66), {"padding": "same"}, id="3d"),
]


def _patch_matrix(x, w_shape, group, kwargs):
    """P of one group in NumPy: a row per output position over the batch, a column per
    (kernel offset, input channel of the group), the order the kernels' w rows use."""
    rank = x.ndim - 2
    kernel, cin_g = w_shape[:rank], w_shape[-2]
    _, _, xp, _, strides, dilations, out = reference._conv_setup(
        x,
        np.zeros(w_shape, x.dtype),
        kwargs.get("stride", 1),
        kwargs.get("padding", "valid"),
        kwargs.get("dilation", 1),
    )
    columns = []
    for offset in np.ndindex(*kernel):
        window = xp[(slice(None), *reference._window_slices(offset, strides, dilations, out))]
        columns.append(window[..., group * cin_g : (group + 1) * cin_g].reshape(-1, cin_g))
    return np.concatenate(columns, axis=1)


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), SLIVER_CASES)
def test_weight_gradient_has_the_bits_of_the_product_with_materialised_patches(
    isa, dtype, x_shape, w_shape, kwargs
):
    # The weight gradient gathers P^T straight into the GEMM's packed slivers; the GEMM
    # promises the bits of the same product with P^T materialised, which ops.matmul
    # computes from NumPy's im2col here, at any thread count.
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    x, w = seeded(x_shape, dtype, 21), seeded(w_shape, dtype, 22)
    groups = kwargs.get("groups", 1)
    dy = seeded(expected_out_shape(x_shape, w_shape, **kwargs), dtype, 23)
    cout_g = w_shape[-1] // groups
    dy2 = dy.reshape(-1, w_shape[-1])
    want = np.concatenate(
        [
            ops.matmul(
                np.ascontiguousarray(_patch_matrix(x, w_shape, g, kwargs).T),
                np.ascontiguousarray(dy2[:, g * cout_g : (g + 1) * cout_g]),
            )
            for g in range(groups)
        ],
        axis=1,
    ).reshape(w_shape)
    for n in (1, 2, 3):
        cnnkit.set_num_threads(n)
        got = ops.conv_backward(x, w, dy, need=("w",), **kwargs)[1]
        assert got.dtype == dtype
        assert np.array_equal(got, want), f"{isa}, {n} threads"
    exact = reference.conv_backward(
        x.astype(F64), w.astype(F64), dy.astype(F64), need=("w",), **kwargs
    )[1]
    np.testing.assert_allclose(
        got, exact, rtol=1e-4 if dtype == F32 else 1e-11, atol=1e-4 if dtype == F32 else 1e-11
    )
