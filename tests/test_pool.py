"""Pooling: ``cnnkit.ops`` max/avg pooling, their gradients and global pooling.

The kernels are checked against ``cnnkit.reference``: max pooling and the
routing of max-pool gradients exactly, sums within a rounding bound (a sum of
m terms in another order differs by at most about ``2 m eps`` times the sum of
the terms' magnitudes, which the reference gives when fed ``|x|`` or ``|dy|``).
Gradients are also checked by float64 finite differences and, for average
pooling, by the adjoint identity.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "channel_stride", "spatial_slice", "reversed_batch", "fortran")
PADDINGS = ("valid", "same", "int", "ints", "pairs")
KINDS = ("max", "avg")


@dataclass
class Problem:
    """A pooling input and its arguments, as passed to ops and reference alike."""

    x: np.ndarray
    pool_size: int | tuple[int, ...]
    kwargs: dict = field(default_factory=dict)

    def run(self, module, name: str, *args, **extra):
        return getattr(module, name)(self.x, *args, self.pool_size, **self.kwargs, **extra)

    @property
    def window(self) -> int:
        """Elements per window."""
        k = self.pool_size
        return math.prod(k) if isinstance(k, tuple) else k ** (self.x.ndim - 2)


def _per_dim_arg(draw, values: list[int]):
    """An int when every dimension agrees (sometimes), else a tuple."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return tuple(values)


@st.composite
def problems(
    draw, *, dtype=None, max_positions: int = 120, max_batch: int = 3, max_channels: int = 40
):
    """A valid pooling problem over 1 to 3 spatial dimensions.

    Windows equal to the padded input, 1-element windows, strides larger than
    the window, "same" with odd sizes and explicit (before, after) padding are
    all common. Explicit padding stays below the window in each dimension, so
    every window holds an input element.
    """
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    rank = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(PADDINGS))
    common_pad = draw(st.integers(0, 2))
    default_strides = draw(st.booleans())
    sizes, windows, steps, pads = [], [], [], []
    budget = max_positions
    for _ in range(rank):
        n = draw(st.integers(1, max(1, min(budget, 9))))
        budget = max(1, budget // n)
        if padding in ("valid", "same"):
            before = after = 0
        elif padding == "int":
            before = after = common_pad
        elif padding == "ints":
            before = after = draw(st.integers(0, 2))
        else:
            before, after = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        smallest = max(before, after) + 1
        full = n + before + after
        k = draw(
            st.one_of(st.just(smallest), st.just(full), st.integers(smallest, max(smallest, 4)))
        )
        if padding != "same":
            k = min(k, full)
        sizes.append(n)
        windows.append(k)
        pads.append((before, after))
        steps.append(k if default_strides else draw(st.integers(1, k + 2)))
    kwargs: dict = {}
    if not default_strides:
        kwargs["stride"] = _per_dim_arg(draw, steps)
    if padding in ("valid", "same"):
        if padding == "same" or draw(st.booleans()):
            kwargs["padding"] = padding
    elif padding == "int":
        kwargs["padding"] = common_pad
    elif padding == "ints":
        kwargs["padding"] = tuple(b for b, _ in pads)
    else:
        kwargs["padding"] = tuple(pads)
    shape = (
        draw(st.integers(1, max_batch)),
        *sizes,
        draw(st.one_of(st.integers(1, min(5, max_channels)), st.integers(1, max_channels))),
    )
    x = seeded(shape, dtype, draw(st.integers(0, 2**32 - 1)))
    x = layout_view(x, draw(st.sampled_from(LAYOUTS)))
    return Problem(x, _per_dim_arg(draw, windows), kwargs)


def assert_within(got: np.ndarray, want: np.ndarray, scale: np.ndarray, terms: int) -> None:
    """``got`` equals ``want`` up to reordering sums of ``terms`` terms of magnitude ``scale``."""
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    eps = np.finfo(got.dtype).eps
    bound = (2 * terms + 2) * eps * scale + np.finfo(got.dtype).tiny
    excess = np.abs(got.astype(np.float64) - want) - bound
    assert excess.max(initial=-1.0) <= 0, f"exceeds the rounding bound by {excess.max()}"


def inner(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a.astype(np.float64) * b.astype(np.float64)))


def output_gradient(problem: Problem, seed: int, *, integers: bool = False) -> np.ndarray:
    shape = reference.max_pool(problem.x, problem.pool_size, **problem.kwargs).shape
    if integers:  # sums of small integers are exact in any order
        return np.random.default_rng(seed).integers(-8, 9, shape).astype(problem.x.dtype)
    return seeded(shape, problem.x.dtype, seed)


# --- forward ----------------------------------------------------------------------------


@given(problems())
def test_max_pool_matches_reference_exactly(problem):
    got = problem.run(ops, "max_pool")
    want = problem.run(reference, "max_pool")
    assert got.dtype == problem.x.dtype
    assert got.shape == want.shape
    assert np.array_equal(got, want)


@given(problems())
def test_avg_pool_matches_reference(problem):
    got = problem.run(ops, "avg_pool")
    want = problem.run(reference, "avg_pool")
    magnitude = Problem(np.abs(problem.x).astype(np.float64), problem.pool_size, problem.kwargs)
    assert_within(got, want, magnitude.run(reference, "avg_pool"), problem.window)


@given(problems(max_positions=60), st.sampled_from([np.nan, np.inf, -np.inf]))
def test_max_pool_propagates_nan_and_handles_infinities(problem, special):
    x = np.array(problem.x)
    x.flat[:: max(1, x.size // 3)] = special
    special_problem = Problem(x, problem.pool_size, problem.kwargs)
    got = special_problem.run(ops, "max_pool")
    assert np.array_equal(got, special_problem.run(reference, "max_pool"), equal_nan=True)
    dy = output_gradient(special_problem, seed=0, integers=True)
    got = special_problem.run(ops, "max_pool_backward", dy)
    assert np.array_equal(got, special_problem.run(reference, "max_pool_backward", dy))


def test_same_padding_puts_the_odd_element_at_the_end():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    # pool 4, stride 1, "same": 3 padding elements, 1 before and 2 after.
    got = ops.avg_pool(x, 4, stride=1, padding="same")
    assert np.array_equal(got[0, :, 0], [2.0, 2.5, 3.0, 3.5])
    got = ops.max_pool(np.array([1.0, 5.0, 2.0, 4.0, 3.0]).reshape(1, 5, 1), 2, padding="same")
    assert np.array_equal(got[0, :, 0], [5.0, 4.0, 3.0])


def test_avg_pool_counts_only_real_elements():
    x = np.ones((1, 3, 3, 1))
    assert np.array_equal(ops.avg_pool(x, 3, stride=1, padding=1), np.ones((1, 3, 3, 1)))
    assert np.array_equal(ops.max_pool(-x, 3, stride=1, padding=1), -np.ones((1, 3, 3, 1)))


def test_pool_accepts_array_likes_and_keeps_float32():
    assert np.array_equal(ops.max_pool([[[1.0], [2.0]]], 2), [[[2.0]]])
    y = ops.avg_pool(np.ones((1, 4, 4, 2), np.float32), (2, 2), stride=(2, 2))
    assert y.dtype == np.float32
    assert y.shape == (1, 2, 2, 2)


@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (2, 4, 4, 0), (0, 2, 0)])
@pytest.mark.parametrize("kind", KINDS)
def test_empty_batch_or_channels(shape, kind):
    x = np.ones(shape, np.float32)
    y = getattr(ops, f"{kind}_pool")(x, 2)
    assert y.shape == (shape[0], *(n // 2 for n in shape[1:-1]), shape[-1])
    assert getattr(ops, f"{kind}_pool_backward")(x, y, 2).shape == shape
    assert getattr(ops, f"global_{kind}_pool")(x).shape == (shape[0], shape[-1])


# --- backward ---------------------------------------------------------------------------


@given(problems(), st.integers(0, 2**32 - 1))
def test_max_pool_backward_matches_reference(problem, seed):
    dy = output_gradient(problem, seed)
    got = problem.run(ops, "max_pool_backward", dy)
    want = problem.run(reference, "max_pool_backward", dy)
    magnitude = problem.run(reference, "max_pool_backward", np.abs(dy).astype(np.float64))
    assert_within(got, want, magnitude, problem.window)


@given(problems(), st.integers(0, 2**32 - 1))
def test_max_pool_backward_sends_ties_to_the_first_element(problem, seed):
    x = (np.abs(problem.x) > 0.7).astype(problem.x.dtype)  # 0 and 1: ties everywhere
    tied = Problem(x, problem.pool_size, problem.kwargs)
    dy = output_gradient(tied, seed, integers=True)
    got = tied.run(ops, "max_pool_backward", dy)
    assert np.array_equal(got, tied.run(reference, "max_pool_backward", dy))


@given(problems(), st.integers(0, 2**32 - 1), st.booleans())
def test_max_pool_indices_match_reference_and_route_the_gradient(problem, seed, tied):
    x = (np.abs(problem.x) > 0.7).astype(problem.x.dtype) if tied else problem.x
    p = Problem(x, problem.pool_size, problem.kwargs)
    y, indices = p.run(ops, "max_pool", return_indices=True)
    want_y, want_indices = p.run(reference, "max_pool", return_indices=True)
    assert indices.dtype == np.int64
    assert np.array_equal(y, want_y)
    assert np.array_equal(indices, want_indices)
    # Exact in any order with integer gradients: the indices give the recomputing backward's bits.
    dy = output_gradient(p, seed, integers=True)
    got = p.run(ops, "max_pool_backward", dy, indices=indices)
    assert got.dtype == x.dtype
    assert np.array_equal(got, p.run(ops, "max_pool_backward", dy))
    assert np.array_equal(got, p.run(reference, "max_pool_backward", dy, indices=want_indices))


@given(problems(max_positions=60), st.sampled_from([np.nan, np.inf, -np.inf]), st.integers(0, 9))
def test_max_pool_indices_with_nan_and_infinities(problem, special, seed):
    x = problem.x.copy()
    x.reshape(-1)[np.random.default_rng(seed).random(x.size) < 0.3] = special
    p = Problem(x, problem.pool_size, problem.kwargs)
    _, indices = p.run(ops, "max_pool", return_indices=True)
    assert np.array_equal(indices, p.run(reference, "max_pool", return_indices=True)[1])
    dy = output_gradient(p, seed, integers=True)
    assert np.array_equal(
        p.run(ops, "max_pool_backward", dy, indices=indices), p.run(ops, "max_pool_backward", dy)
    )


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [64, 81, 200])
@pytest.mark.parametrize("special", [None, np.nan, np.inf, -np.inf])
def test_max_pool_wide_channel_blocks(dtype, channels, special):
    # The vector paths keep 256 bytes of channels (64 floats, 32 doubles) of a window's
    # maximum in registers, the rest after them: whole blocks, a tail, several blocks,
    # with NaN (propagated) and infinities, 3x3/2 windows with padding (ResNet's stem).
    x = seeded((2, 11, 9, channels), dtype, seed=channels)
    if special is not None:
        x.reshape(-1)[np.random.default_rng(channels).random(x.size) < 0.2] = special
    want = reference.max_pool(x, 3, stride=2, padding=((1, 1), (1, 1)))
    for isa in _core.available_isas():
        _core.set_isa(isa)
        got = ops.max_pool(x, 3, stride=2, padding=((1, 1), (1, 1)))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want, err_msg=isa)


@pytest.mark.usefixtures("restore_isa", "restore_threads")
@given(problems(max_positions=60), st.integers(0, 2**32 - 1))
def test_max_pool_same_bits_on_every_path(problem, seed):
    # 2-D float32 pooling on the AVX-512 path runs a loop of its own (intrinsics): the
    # same bits as the others', zeros of both signs (a tie keeps the first element) and
    # NaNs of several payloads (the last NaN in window order wins) included.
    x = np.array(problem.x)
    uint = np.uint32 if x.dtype == np.float32 else np.uint64
    nans = np.array([0x7FC00001, 0xFFC00002, 0x7FC00003], np.uint32).view(np.float32)
    specials = np.concatenate([np.array([0.0, -0.0, np.inf, -np.inf]), nans]).astype(x.dtype)
    rng = np.random.default_rng(seed)
    pick = rng.random(x.shape) < 0.4
    x[pick] = rng.choice(specials, int(pick.sum()))
    special = Problem(x, problem.pool_size, problem.kwargs)
    results = []
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 3):
            cnnkit.set_num_threads(threads)
            results.append(special.run(ops, "max_pool").view(uint))
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])


def test_max_pool_indices_by_hand():
    # 2x2 windows of a 3x4 image with "same" padding; ties go to the first element.
    x = np.array([[1.0, 3.0, 0.0, 2.0], [3.0, 2.0, 2.0, 2.0], [7.0, 0.0, 1.0, 9.0]])
    y, indices = ops.max_pool(x.reshape(1, 3, 4, 1), 2, padding="same", return_indices=True)
    assert np.array_equal(y[0, :, :, 0], [[3.0, 2.0], [7.0, 9.0]])
    assert np.array_equal(indices[0, :, :, 0], [[1, 3], [8, 11]])


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize(
    ("shape", "pool", "spec"),
    [((3, 40, 9, 5), 3, {"stride": 2, "padding": "same"}), ((2, 33, 4), 2, {})],
)
def test_max_pool_backward_finds_a_bad_index_anywhere(shape, pool, spec):
    # The kernel checks the indices as its tasks read them; windows that straddle two
    # tasks (overlapping 3x3/2 windows) must be checked as well as whole ones.
    x = seeded(shape, np.float32, seed=3)
    y, good = ops.max_pool(x, pool, return_indices=True, **spec)
    dy = np.ones_like(y)
    size = int(np.prod(shape[1:-1]))
    flat = good.reshape(-1)
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        for k in range(0, flat.size, max(1, flat.size // 97)):
            for bad in (size, -1, 2**62):
                indices = flat.copy()
                indices[k] = bad
                with pytest.raises(ValueError, match=rf"indices must be spatial .* got {bad}$"):
                    ops.max_pool_backward(x, dy, pool, indices=indices.reshape(good.shape), **spec)


def test_max_pool_backward_rejects_bad_indices():
    x = np.zeros((1, 4, 4, 2), np.float32)
    dy = np.ones((1, 2, 2, 2), np.float32)
    good = ops.max_pool(x, 2, return_indices=True)[1]
    with pytest.raises(
        ValueError,
        match=r"max_pool_backward\(\): indices must be spatial indices "
        r"in \[0, 16\) as returned by max_pool, got 16",
    ):
        ops.max_pool_backward(x, dy, 2, indices=np.full_like(good, 16))
    with pytest.raises(ValueError, match=r"got -1"):
        ops.max_pool_backward(x, dy, 2, indices=np.full_like(good, -1))
    with pytest.raises(
        ValueError,
        match=r"max_pool_backward\(\): indices must have the max_pool "
        r"output shape \(1, 2, 2, 2\), got shape \(1, 2, 2\)",
    ):
        ops.max_pool_backward(x, dy, 2, indices=good[..., 0])
    with pytest.raises(
        TypeError,
        match=r"max_pool_backward\(\): indices must have an integer "
        r"dtype, got float32",
    ):
        ops.max_pool_backward(x, dy, 2, indices=good.astype(np.float32))


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize(
    ("shape", "pool", "spec"),
    [
        ((3, 13, 11, 5), 2, {}),
        ((2, 9, 10, 3), 3, {"stride": 4, "padding": "same"}),
        ((2, 17, 4), 3, {}),
    ],
)
def test_max_pool_backward_with_indices_of_disjoint_windows(shape, pool, spec):
    # Disjoint windows write every dx element once (uncovered edges included); an index
    # outside its own window, valid but not what max_pool gives, takes the scattering loop.
    x = seeded(shape, np.float32, seed=7)
    y, indices = ops.max_pool(x, pool, return_indices=True, **spec)
    dy = seeded(y.shape, np.float32, seed=8)
    dy.reshape(-1)[::7] = -0.0
    foreign = indices.copy()
    foreign.reshape(-1)[5] = int(np.prod(shape[1:-1])) - 1 - foreign.reshape(-1)[5]
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            got = ops.max_pool_backward(x, dy, pool, indices=indices, **spec)
            assert np.array_equal(got, ops.max_pool_backward(x, dy, pool, **spec))
            assert not (np.signbit(got) & (got == 0)).any()  # 0 + (-0), as the scatter adds
            want = reference.max_pool_backward(x, dy, pool, indices=foreign, **spec)
            got = ops.max_pool_backward(x, dy, pool, indices=foreign, **spec)
            assert np.array_equal(got, want)


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("relu", [False, True])
def test_max_pool_backward_with_indices_outside_overlapping_windows(relu):
    # 3x3/2 windows overlap, and the rows are split into blocks even at one thread: an
    # index far outside its window (valid, not what max_pool gives) lands in another
    # block's rows, which must not lose it or race for it. It takes the serial scatter.
    x = np.maximum(seeded((2, 41, 7, 3), np.float32, seed=11), 0)
    y, indices = ops.max_pool(x, 3, stride=2, return_indices=True)
    dy = seeded(y.shape, np.float32, seed=12)
    foreign = indices.copy()
    foreign[0, 0, 0, 1] = 40 * 7 + 6  # the last pixel, from the first window
    foreign[1, -1, -1, 2] = 3  # the first row, from the last window
    relu_output = y if relu else None
    want = reference.max_pool_backward(x, dy, 3, stride=2, indices=foreign, relu_output=relu_output)
    assert want[0, 40, 6, 1] != 0 and want[1, 0, 3, 2] != 0
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            got = ops.max_pool_backward(
                x, dy, 3, stride=2, indices=foreign, relu_output=relu_output
            )
            assert np.array_equal(got, want), (isa, threads)


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize(
    ("shape", "pool", "spec"),
    [((3, 13, 11, 5), 2, {}), ((2, 9, 10, 3), 3, {"stride": 2, "padding": "same"})],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_backward_through_a_relu(shape, pool, spec, dtype):
    # relu_output masks dy as activation_backward would before routing it, with the
    # same bits, in the disjoint windows' single pass and in the scattering loop.
    x = np.maximum(seeded(shape, np.dtype(dtype), seed=9), 0)
    y, indices = ops.max_pool(x, pool, return_indices=True, **spec)
    dy = seeded(y.shape, np.dtype(dtype), seed=10)
    want = ops.max_pool_backward(
        x, ops.activation_backward(y, dy, "relu"), pool, indices=indices, **spec
    )
    assert np.array_equal(
        want, reference.max_pool_backward(x, dy, pool, indices=indices, relu_output=y, **spec)
    )
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            got = ops.max_pool_backward(x, dy, pool, indices=indices, relu_output=y, **spec)
            assert got.dtype == dtype
            assert np.array_equal(got, want), (isa, threads)
    with pytest.raises(ValueError, match=r"max_pool_backward\(\): relu_output needs indices"):
        ops.max_pool_backward(x, dy, pool, relu_output=y, **spec)
    with pytest.raises(ValueError, match=r"relu_output must have the max_pool output shape"):
        ops.max_pool_backward(x, dy, pool, indices=indices, relu_output=y[:1], **spec)


def test_max_pool_backward_tie_rule_by_hand():
    # One 2x2 window: the maxima 3 sit at (0, 1) and (1, 0); (0, 1) comes first.
    x = np.array([[1.0, 3.0], [3.0, 2.0]]).reshape(1, 2, 2, 1)
    dx = ops.max_pool_backward(x, np.full((1, 1, 1, 1), 5.0), 2)
    assert np.array_equal(dx[0, :, :, 0], [[0.0, 5.0], [0.0, 0.0]])


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_max_pool_backward_of_a_constant_goes_to_each_window_start(rank, padding):
    # Every element ties, so each window's gradient goes to its first real
    # element, also when overlapping windows span the rows of several tasks.
    n = 9
    x = np.zeros((1, *(n,) * rank, 2))
    dy = np.arange(1.0, 1.0 + np.prod(ops.max_pool(x, 3, stride=1, padding=padding).shape))
    dy = dy.reshape(ops.max_pool(x, 3, stride=1, padding=padding).shape)
    dx = ops.max_pool_backward(x, dy, 3, stride=1, padding=padding)
    shift = 1 if padding == "same" else 0  # the first window starts in the padding
    want = np.zeros_like(x)
    for o in np.ndindex(*dy.shape[1:-1]):
        first = tuple(max(i - shift, 0) for i in o)
        want[(0, *first)] += dy[(0, *o)]
    assert np.array_equal(dx, want)
    assert np.array_equal(dx, reference.max_pool_backward(x, dy, 3, stride=1, padding=padding))


@given(problems(), st.integers(0, 2**32 - 1))
def test_avg_pool_backward_matches_reference(problem, seed):
    dy = output_gradient(problem, seed)
    got = problem.run(ops, "avg_pool_backward", dy)
    want = problem.run(reference, "avg_pool_backward", dy)
    magnitude = problem.run(reference, "avg_pool_backward", np.abs(dy).astype(np.float64))
    assert_within(got, want, magnitude, problem.window)


@given(
    problems(dtype=np.float64, max_positions=24, max_batch=2, max_channels=3),
    st.sampled_from(KINDS),
)
def test_backward_matches_finite_differences(problem, kind):
    # Distinct values a unit apart: a step of 1/4 moves no maximum, so both
    # losses are linear around x and central differences are exact up to rounding.
    rng = np.random.default_rng(problem.x.size)
    x = rng.permutation(problem.x.size).reshape(problem.x.shape).astype(np.float64)
    distinct = Problem(x, problem.pool_size, problem.kwargs)
    dy = output_gradient(distinct, seed=1)

    def loss(v: np.ndarray) -> float:
        return inner(Problem(v, problem.pool_size, problem.kwargs).run(ops, f"{kind}_pool"), dy)

    h = 0.25
    numeric = np.empty_like(x)
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = h
        numeric[index] = (loss(x + step) - loss(x - step)) / (2 * h)
    got = distinct.run(ops, f"{kind}_pool_backward", dy)
    np.testing.assert_allclose(got, numeric, rtol=1e-9, atol=1e-9)


@given(problems(dtype=np.float64), st.integers(0, 2**32 - 1))
def test_avg_pool_backward_is_the_adjoint(problem, seed):
    dy = output_gradient(problem, seed)
    lhs = inner(problem.run(ops, "avg_pool"), dy)
    rhs = inner(problem.x, problem.run(ops, "avg_pool_backward", dy))
    magnitude = inner(np.abs(problem.x), problem.run(ops, "avg_pool_backward", np.abs(dy)))
    assert abs(lhs - rhs) <= (4 * problem.window + 4) * 1e-16 * magnitude + 1e-300


@pytest.mark.parametrize("kind", KINDS)
def test_backward_uses_the_wider_dtype(kind):
    x = seeded((2, 4, 4, 3), np.dtype(np.float32), seed=1)
    dy = seeded((2, 2, 2, 3), np.dtype(np.float64), seed=2)
    backward = getattr(ops, f"{kind}_pool_backward")
    dx = backward(x, dy, 2)
    assert dx.dtype == np.float64
    want = getattr(reference, f"{kind}_pool_backward")(x, dy, 2)
    np.testing.assert_allclose(dx, want, rtol=1e-15)
    assert backward(x.astype(np.float64), dy.astype(np.float32), 2).dtype == np.float64


# --- global pooling ---------------------------------------------------------------------


@given(problems(max_positions=400))
def test_global_pools_match_reference(problem):
    x = problem.x
    assert np.array_equal(ops.global_max_pool(x), reference.global_max_pool(x))
    got, want = ops.global_avg_pool(x), reference.global_avg_pool(x)
    positions = math.prod(x.shape[1:-1])
    assert_within(got, want, reference.global_avg_pool(np.abs(x).astype(np.float64)), positions)


def test_global_avg_pool_accumulates_in_double():
    # In float32, 1 + 2^-24 rounds back to 1, so a float32 sum would stay at 1.
    x = np.full((1, 4097, 1), 2.0**-24, np.float32)
    x[0, 0, 0] = 1.0
    assert ops.global_avg_pool(x)[0, 0] == np.float32((1.0 + 4096 * 2.0**-24) / 4097)


# --- threads and instruction sets ---------------------------------------------------------

# Large enough for two threads; overlapping windows (phases), padding, 1-D and 3-D.
THREAD_CASES = [
    ((4, 33, 31, 20), np.float32, 3, {"stride": 1, "padding": "same"}),
    ((2, 40, 40, 64), np.float32, 2, {}),
    ((3, 500, 50), np.float64, 5, {"stride": 2, "padding": ((2, 1),)}),
    ((2, 11, 12, 13, 9), np.float32, (3, 2, 2), {"stride": (2, 1, 3), "padding": "same"}),
    ((1, 64, 64, 33), np.float64, 3, {"stride": 2, "padding": 1}),
]


@pytest.mark.parametrize(("shape", "dtype", "pool_size", "kwargs"), THREAD_CASES)
@pytest.mark.usefixtures("restore_threads", "restore_isa")
def test_results_do_not_depend_on_threads_or_isa(shape, dtype, pool_size, kwargs):
    problem = Problem(seeded(shape, np.dtype(dtype), seed=3), pool_size, kwargs)
    dy = output_gradient(problem, seed=4)
    results = {}
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            results[isa, threads] = [
                problem.run(ops, "max_pool"),
                problem.run(ops, "avg_pool"),
                problem.run(ops, "max_pool_backward", dy),
                problem.run(ops, "avg_pool_backward", dy),
                *problem.run(ops, "max_pool", return_indices=True),
                ops.global_max_pool(problem.x),
                ops.global_avg_pool(problem.x),
            ]
    first = results["baseline", 1]
    for key, outputs in results.items():
        for a, b in zip(first, outputs):
            assert np.array_equal(a, b), key
    assert np.array_equal(first[0], problem.run(reference, "max_pool"))


def test_concurrent_calls_from_python_threads():
    shape, dtype, pool_size, kwargs = THREAD_CASES[0]
    problem = Problem(seeded(shape, np.dtype(dtype), seed=5), pool_size, kwargs)
    dy = output_gradient(problem, seed=6)
    calls = [
        lambda: problem.run(ops, "max_pool"),
        lambda: problem.run(ops, "avg_pool"),
        lambda: problem.run(ops, "max_pool_backward", dy),
        lambda: problem.run(ops, "avg_pool_backward", dy),
    ]
    expected = [call() for call in calls]
    with ThreadPoolExecutor(max_workers=4) as executor:
        futures = [executor.submit(calls[k % 4]) for k in range(16)]
        for k, future in enumerate(futures):
            assert np.array_equal(future.result(), expected[k % 4])


# --- peers --------------------------------------------------------------------------------

# Symmetric padding of at most half the window: what torch accepts.
TORCH_CASES = [
    ((2, 9, 5), 3, 2, 1),
    ((2, 10, 11, 6), (3, 2), (2, 1), (1, 0)),
    ((1, 5, 6, 7, 3), 2, 2, 0),
    ((2, 8, 8, 4), 2, 3, 1),
]


@pytest.mark.parametrize(("shape", "pool_size", "strides", "padding"), TORCH_CASES)
def test_agrees_with_torch(shape, pool_size, strides, padding):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rank = len(shape) - 2
    x = np.random.default_rng(5).permutation(math.prod(shape)).reshape(shape) / 7.0
    kwargs = {"stride": strides, "padding": padding}
    t = torch.from_numpy(np.moveaxis(x, -1, 1).copy()).requires_grad_()
    max_nd = getattr(functional, f"max_pool{rank}d")
    avg_nd = getattr(functional, f"avg_pool{rank}d")
    t_max = max_nd(t, pool_size, strides, padding)
    t_avg = avg_nd(t, pool_size, strides, padding, count_include_pad=False)
    np.testing.assert_allclose(ops.max_pool(x, pool_size, **kwargs), _channels_last(t_max))
    np.testing.assert_allclose(ops.avg_pool(x, pool_size, **kwargs), _channels_last(t_avg))
    dy = seeded(tuple(ops.max_pool(x, pool_size, **kwargs).shape), np.dtype(np.float64), 6)
    t_dy = torch.from_numpy(np.moveaxis(dy, -1, 1).copy())
    (t_dx,) = torch.autograd.grad([t_max, t_avg], [t], [t_dy, t_dy])
    dx = ops.max_pool_backward(x, dy, pool_size, **kwargs)
    dx += ops.avg_pool_backward(x, dy, pool_size, **kwargs)
    np.testing.assert_allclose(dx, _channels_last(t_dx), rtol=1e-12, atol=1e-12)


def _channels_last(t) -> np.ndarray:
    return np.moveaxis(t.detach().numpy(), 1, -1)


# --- rejections ---------------------------------------------------------------------------

WINDOWED = ("max_pool", "avg_pool", "max_pool_backward", "avg_pool_backward")
GLOBAL = ("global_max_pool", "global_avg_pool")


def call(fn: str, x, pool_size=2, dy=None, **kwargs):
    if fn in GLOBAL:
        return getattr(ops, fn)(x)
    if fn.endswith("_backward"):
        if dy is None:
            forward = getattr(reference, fn.removesuffix("_backward"))
            dy = forward(np.asarray(x, dtype=np.float64), pool_size, **kwargs)
        return getattr(ops, fn)(x, dy, pool_size, **kwargs)
    return getattr(ops, fn)(x, pool_size, **kwargs)


def shape_text(shape: tuple[int, ...]) -> str:
    return r"\(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + r"\)"


@pytest.mark.parametrize("fn", WINDOWED + GLOBAL)
@pytest.mark.parametrize("shape", [(4,), (3, 4), (1, 2, 2, 2, 2, 3)])
def test_rejects_x_of_wrong_rank(fn, shape):
    match = (
        rf"{fn}\(\): x must have 3 to 5 dimensions, \(N, \*spatial, C\) with 1 to 3 spatial "
        rf"dimensions, got shape {shape_text(shape)}"
    )
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros(shape), dy=np.zeros(shape))


@pytest.mark.parametrize("fn", WINDOWED + GLOBAL)
@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.bool_])
def test_rejects_x_of_non_float_dtype(fn, dtype):
    match = rf"{fn}\(\): x must have dtype float32 or float64, got {np.dtype(dtype)}"
    with pytest.raises(TypeError, match=match):
        call(fn, np.zeros((1, 2, 3), dtype=dtype), dy=np.zeros((1, 1, 3)))


@pytest.mark.parametrize("fn", WINDOWED + GLOBAL)
def test_rejects_x_of_objects(fn):
    with pytest.raises(TypeError, match=rf"{fn}\(\): x must hold numbers, got an array of dtype"):
        call(fn, np.empty((1, 2, 3), dtype=object), dy=np.zeros((1, 1, 3)))


@pytest.mark.parametrize("fn", GLOBAL)
@pytest.mark.parametrize("shape", [(2, 0, 3), (1, 3, 0, 2)])
def test_global_pools_reject_zero_positions(fn, shape):
    match = rf"{fn}\(\): x must have at least one spatial position, got shape {shape_text(shape)}"
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros(shape))


@pytest.mark.parametrize("fn", WINDOWED)
@pytest.mark.parametrize("name", ["pool_size", "stride"])
@pytest.mark.parametrize("value", [0, -1, (2, 0), (-3, 1)])
def test_rejects_non_positive_window_or_strides(fn, name, value):
    args = {"pool_size": 2, name: value}
    bad = value if isinstance(value, int) else min(value)
    with pytest.raises(ValueError, match=rf"{fn}\(\): {name} must be >= 1, got {bad}"):
        call(fn, np.zeros((1, 4, 4, 1)), dy=np.zeros((1, 2, 2, 1)), **args)


@pytest.mark.parametrize("fn", WINDOWED)
@pytest.mark.parametrize("name", ["pool_size", "stride"])
@pytest.mark.parametrize("value", [(2,), (2, 2, 2), []])
def test_rejects_window_or_strides_of_wrong_length(fn, name, value):
    args = {"pool_size": 2, name: value}
    match = rf"{fn}\(\): {name} must have 2 entries \(one per spatial dimension\), got {len(value)}"
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros((1, 4, 4, 1)), dy=np.zeros((1, 2, 2, 1)), **args)


@pytest.mark.parametrize("fn", WINDOWED)
@pytest.mark.parametrize("name", ["pool_size", "stride"])
@pytest.mark.parametrize(("value", "type_name"), [(2.0, "float"), ("2", "str"), (True, "bool")])
def test_rejects_window_or_strides_that_are_not_ints(fn, name, value, type_name):
    args = {"pool_size": 2, name: value}
    match = rf"{fn}\(\): {name} must be an int or a tuple of ints, got {type_name}"
    with pytest.raises(TypeError, match=match):
        call(fn, np.zeros((1, 4, 4, 1)), dy=np.zeros((1, 2, 2, 1)), **args)


@pytest.mark.parametrize("fn", WINDOWED)
@pytest.mark.parametrize(
    ("shape", "pool_size", "padding", "dim", "padded"),
    [
        ((1, 4, 1), 5, "valid", 0, 4),
        ((1, 4, 6, 1), (2, 9), 1, 1, 8),
        ((1, 3, 3, 2, 1), 3, ((0, 0), (0, 0), (0, 0)), 2, 2),
    ],
)
def test_rejects_window_larger_than_the_padded_input(fn, shape, pool_size, padding, dim, padded):
    k = pool_size[dim] if isinstance(pool_size, tuple) else pool_size
    match = (
        rf"{fn}\(\): the pool_size \({k}, dilation 1\) is larger than the padded input "
        rf"\({padded}\) in spatial dimension {dim}"
    )
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros(shape), pool_size, dy=np.zeros(shape), padding=padding)


@pytest.mark.parametrize("fn", WINDOWED)
@pytest.mark.parametrize("padding", ["full", "SAME", ""])
def test_rejects_unknown_padding_string(fn, padding):
    match = (
        rf"{fn}\(\): padding must be 'valid', 'same', an int or per-dimension .* got '{padding}'"
    )
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros((1, 4, 1)), dy=np.zeros((1, 2, 1)), padding=padding)


@pytest.mark.parametrize("fn", WINDOWED)
@pytest.mark.parametrize(
    ("padding", "error", "match"),
    [
        (-1, ValueError, r"padding must be >= 0, got -1"),
        (((1, -2), (0, 0)), ValueError, r"padding must be >= 0, got -2"),
        ((1,), ValueError, r"padding must have 2 entries \(one per spatial dimension\), got 1"),
        (((1, 1, 1), 0), ValueError, r"padding\[0\] must be a \(before, after\) pair, got 3"),
        (1.5, TypeError, r"padding must be 'valid', 'same', an int .* got float"),
        (None, TypeError, r"padding must be 'valid', 'same', an int .* got NoneType"),
    ],
)
def test_rejects_malformed_padding(fn, padding, error, match):
    with pytest.raises(error, match=rf"{fn}\(\): {match}"):
        call(fn, np.zeros((1, 4, 4, 1)), dy=np.zeros((1, 2, 2, 1)), padding=padding)


@pytest.mark.parametrize("fn", WINDOWED)
@pytest.mark.parametrize(
    ("shape", "pool_size", "kwargs", "detail"),
    [
        (
            (1, 4, 1),
            2,
            {"padding": 2},
            r"padding \(2, 2\) with pool_size 2 and stride 2 for size 4",
        ),
        (
            (1, 3, 5, 1),
            2,
            {"stride": 1, "padding": ((0, 0), (0, 3))},
            r"padding \(0, 3\) with pool_size 2 and stride 1 for size 5 in spatial dimension 1",
        ),
    ],
)
def test_rejects_padding_that_leaves_a_window_empty(fn, shape, pool_size, kwargs, detail):
    match = (
        rf"{fn}\(\): padding must leave at least one input element in every window, got {detail}"
    )
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros(shape), pool_size, dy=np.zeros((1, 1, 1)), **kwargs)


@pytest.mark.parametrize("fn", ["max_pool_backward", "avg_pool_backward"])
@pytest.mark.parametrize("dy_shape", [(2, 2, 3), (2, 2, 2, 2), (1, 2, 2, 3), (2, 3, 2, 3), ()])
def test_rejects_dy_of_wrong_shape(fn, dy_shape):
    forward = fn.removesuffix("_backward")
    match = (
        rf"{fn}\(\): dy must have the {forward} output shape \(2, 2, 2, 3\), "
        rf"got shape \({', '.join(map(str, dy_shape))}\)"
    )
    with pytest.raises(ValueError, match=match):
        call(fn, np.zeros((2, 4, 5, 3)), dy=np.zeros(dy_shape))


@pytest.mark.parametrize("fn", ["max_pool_backward", "avg_pool_backward"])
def test_rejects_dy_of_integer_dtype(fn):
    match = rf"{fn}\(\): dy must have dtype float32 or float64, got int32"
    with pytest.raises(TypeError, match=match):
        call(fn, np.zeros((1, 4, 1)), dy=np.zeros((1, 2, 1), np.int32))
