"""``cnnkit.ops.matmul`` (the packed GEMM) against NumPy.

Random values are compared with NumPy's float64 product within a tolerance
relative to each element's magnitude ``(|a| @ |b|)[i, j]``: ``1e-5 * sqrt(K)`` for
float32 and ``1e-13 * sqrt(K)`` for float64, above the worst-case rounding error
of a K-term sum at the sizes drawn here. Small-integer values have exact
products, which must come out bit for bit.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import _core, ops, reference

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = (F32, F64)
RTOL = {F32: 1e-5, F64: 1e-13}
LAYOUTS = ("contiguous", "fortran", "transposed", "column_stride", "row_stride", "reversed")
FORMS = ("2d", "batched", "shared_a", "shared_b")

# Sizes: small ones, the edges of typical register blocks (4, 6, 8, 12, 16, 24,
# 32, 48, 64 and one off), odd sizes up to 70, and a few in the hundreds.
dims = st.one_of(
    st.integers(0, 70),
    st.sampled_from((0, 1, 5, 7, 9, 13, 17, 23, 25, 31, 33, 47, 49, 63, 65)),
    st.sampled_from((97, 129, 191, 257, 300)),
)


def layout_view(a: np.ndarray, layout: str) -> np.ndarray:
    """The values of ``a`` (2-D or 3-D) in another memory layout; strided views skip NaNs."""
    if layout == "contiguous":
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "transposed":  # each matrix stored transposed
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if layout == "reversed":
        return np.ascontiguousarray(a[..., ::-1, ::-1])[..., ::-1, ::-1]
    if layout == "row_stride":
        big = np.full((*a.shape[:-2], 2 * a.shape[-2] + 1, a.shape[-1]), np.nan, dtype=a.dtype)
        big[..., 1::2, :] = a
        return big[..., 1::2, :]
    if layout == "column_stride":
        big = np.full((*a.shape[:-1], 3 * a.shape[-1]), np.nan, dtype=a.dtype)
        big[..., 2::3] = a
        return big[..., 2::3]
    raise ValueError(f"unknown layout {layout!r}")


def values(shape, dtype, seed: int, regime: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if regime == "ints":
        return rng.integers(-3, 4, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def assert_matmul_close(got, a, b, dtype) -> None:
    """``got`` within the tolerance of NumPy's float64 product of ``a`` and ``b``."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    want = np.matmul(a64, b64)
    scale = np.matmul(np.abs(a64), np.abs(b64))
    assert got.dtype == dtype
    assert got.shape == want.shape
    k = a64.shape[-1]
    bound = RTOL[np.dtype(dtype)] * math.sqrt(max(k, 1)) * scale + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= bound)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements off; first at {i}: got {got[i]!r}, "
            f"want {want[i]!r}, magnitude {scale[i]!r}"
        )


@st.composite
def operands(draw, *, dtype=None, forms=FORMS, views=True):
    """``(a, b, regime)``: a matmul problem of one of the shapes ops.matmul accepts."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    form = draw(st.sampled_from(forms))
    m, k, n = draw(dims), draw(dims), draw(dims)
    # Keep the work (and NumPy's reference) small: shrink k when all three are big.
    if m * k * n > 3_000_000:
        k = draw(st.integers(0, 70))
    batch = draw(st.integers(0, 3)) if form != "2d" else None
    a_shape = (m, k) if form in ("2d", "shared_a") else (batch, m, k)
    b_shape = (k, n) if form in ("2d", "shared_b") else (batch, k, n)
    regime = draw(st.sampled_from(("normal", "normal", "ints")))
    seed = draw(st.integers(0, 2**32 - 1))
    a, b = values(a_shape, dtype, seed, regime), values(b_shape, dtype, seed + 1, regime)
    if views:
        a = layout_view(a, draw(st.sampled_from(LAYOUTS)))
        b = layout_view(b, draw(st.sampled_from(LAYOUTS)))
    return a, b, regime


@given(operands())
def test_matmul_matches_numpy(problem):
    a, b, regime = problem
    saved = (np.array(a), np.array(b))
    got = ops.matmul(a, b)
    batched = a.ndim == 3 or b.ndim == 3
    batch = a.shape[0] if a.ndim == 3 else (b.shape[0] if b.ndim == 3 else None)
    m, n = a.shape[-2], b.shape[-1]
    assert got.shape == ((batch, m, n) if batched else (m, n))
    if regime == "ints":  # exact products and sums: every path must get them exactly
        assert got.dtype == a.dtype
        assert np.array_equal(got, np.matmul(a.astype(F64), b.astype(F64)))
    assert_matmul_close(got, a, b, a.dtype)
    assert np.array_equal(a, saved[0]) and np.array_equal(b, saved[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [
        ((0, 5), (5, 7)),
        ((5, 0), (0, 7)),
        ((5, 7), (7, 0)),
        ((0, 0), (0, 0)),
        ((3, 4, 0), (0, 6)),
        ((3, 0, 4), (4, 6)),
        ((0, 4, 5), (0, 5, 6)),
        ((0, 4, 5), (5, 6)),
        ((4, 5), (0, 5, 6)),
        ((1, 1), (1, 1)),
        ((1, 1, 1), (1, 1, 1)),
    ],
)
def test_empty_and_single_element(a_shape, b_shape, dtype):
    a, b = values(a_shape, dtype, 1, "normal"), values(b_shape, dtype, 2, "normal")
    got = ops.matmul(a, b)
    want = np.matmul(a.astype(F64), b.astype(F64))
    assert got.dtype == dtype
    assert got.shape == want.shape
    assert np.array_equal(got, want.astype(dtype))  # empty sums are exact zeros


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_zero_gives_zeros(dtype):
    """Nothing of the freshly allocated output leaks through when K == 0."""
    for shape in [(37, 41), (300, 5)]:
        got = ops.matmul(np.ones((shape[0], 0), dtype), np.ones((0, shape[1]), dtype))
        assert got.shape == shape
        assert not np.signbit(got).any()
        assert np.array_equal(got, np.zeros(shape, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_odd_sizes_one_to_seventy(dtype):
    """Every M = N = K from 1 to 70: each edge case of the register blocks."""
    for size in range(1, 71):
        a = values((size, size), dtype, size, "normal")
        b = values((size, size + 3), dtype, -size % 997, "normal")
        assert_matmul_close(ops.matmul(a, b), a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "k", "n"), [(1, 517, 1), (1, 1, 701), (701, 1, 1), (333, 257, 129)])
def test_thin_and_large_shapes(m, k, n, dtype):
    a, b = values((m, k), dtype, 3, "normal"), values((k, n), dtype, 4, "normal")
    assert_matmul_close(ops.matmul(a, b), a, b, dtype)


def test_shared_operand_equals_per_matrix_products():
    """A 2-D operand shared by a 3-D one gives the 2-D products, bit for bit."""
    a3, b2 = values((4, 19, 23), F32, 1, "normal"), values((23, 29), F32, 2, "normal")
    got = ops.matmul(a3, b2)
    assert got.shape == (4, 19, 29)
    for i in range(4):
        assert np.array_equal(got[i], ops.matmul(a3[i], b2))
    a2, b3 = values((19, 23), F64, 3, "normal"), values((4, 23, 29), F64, 4, "normal")
    got = ops.matmul(a2, b3)
    for i in range(4):
        assert np.array_equal(got[i], ops.matmul(a2, b3[i]))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_transposed_operands_give_the_bits_of_copies(dtype):
    """Transposed views (read in place) and their contiguous copies give the same bits,
    fused epilogue and a converted dtype included."""
    a, b = values((37, 19), dtype, 5, "normal"), values((29, 37), dtype, 6, "normal")
    bias = values((29,), dtype, 7, "normal")
    for x, y in [(a.T, b.T), (a.T, np.ascontiguousarray(b.T)), (np.ascontiguousarray(a.T), b.T)]:
        want = ops.matmul(np.ascontiguousarray(x), np.ascontiguousarray(y))
        assert np.array_equal(ops.matmul(x, y), want)
        fused = ops.matmul(x, y, bias=bias, activation="relu")
        assert np.array_equal(fused, np.maximum(want + bias, 0))
    # Converted to the wider dtype: a copy, as before.
    a32, b64 = a.T.astype(F32), b.T.astype(F64)
    want = ops.matmul(np.ascontiguousarray(a32, F64), np.ascontiguousarray(b64))
    assert np.array_equal(ops.matmul(a32, b64), want)
    # A transposed 2-D operand shared by a 3-D one.
    b3 = values((2, 37, 29), dtype, 8, "normal")
    got = ops.matmul(a.T, b3)
    for i in range(2):
        assert np.array_equal(got[i], ops.matmul(np.ascontiguousarray(a.T), b3[i]))


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_transposed_b_under_one_row_block_gives_the_bits_of_a_copy(dtype):
    """Up to one A block of rows against a transposed B (the dense backward's g @ W.T)
    packs B a sliver at a time; several k blocks, column panels and a ragged edge."""
    a, w = values((70, 700), dtype, 9, "normal"), values((4200, 700), dtype, 10, "normal")
    bias = values((4200,), dtype, 11, "normal")
    copy = np.ascontiguousarray(w.T)
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        assert np.array_equal(ops.matmul(a, w.T), ops.matmul(a, copy))
        fused = ops.matmul(a, w.T, bias=bias, activation="relu")
        assert np.array_equal(fused, ops.matmul(a, copy, bias=bias, activation="relu"))


def test_list_inputs():
    a, b = values((5, 7), F64, 1, "normal"), values((7, 3), F64, 2, "normal")
    got = ops.matmul(a.tolist(), b.tolist())
    assert got.dtype == F64
    assert np.array_equal(got, ops.matmul(a, b))
    assert np.array_equal(ops.matmul([[1.0, 2.0]], [[3.0], [4.0]]), [[11.0]])


@pytest.mark.parametrize(("a_dtype", "b_dtype"), [(F32, F64), (F64, F32)])
def test_mixed_dtypes_give_float64(a_dtype, b_dtype):
    """The wider dtype wins, and the product is computed at its precision."""
    a, b = values((3, 37, 45), a_dtype, 1, "normal"), values((45, 33), b_dtype, 2, "normal")
    got = ops.matmul(a, b)
    assert got.dtype == F64
    assert_matmul_close(got, a, b, F64)
    assert np.array_equal(got, ops.matmul(a.astype(F64), b.astype(F64)))


def test_reference_agrees_with_numpy():
    a, b = values((2, 5, 4), F32, 1, "normal"), values((4, 3), F64, 2, "normal")
    assert reference.matmul(a, b).dtype == F64
    assert_matmul_close(ops.matmul(a, b), a, b, F64)


def test_nan_and_inf_propagate_like_numpy():
    """IEEE rules, which do not depend on the order of the sum (no padding leaks 0 * inf)."""
    a, b = values((40, 37), F64, 1, "normal"), values((37, 45), F64, 2, "normal")
    a[3, 5], a[7, 0], b[2, 9], b[36, 44] = np.nan, np.inf, np.inf, -np.inf
    with np.errstate(invalid="ignore"):
        want = np.matmul(a, b)
    assert np.isnan(want).any() and np.isposinf(want).any() and np.isneginf(want).any()
    for dtype in DTYPES:
        got = ops.matmul(a.astype(dtype), b.astype(dtype))
        for check in (np.isnan, np.isposinf, np.isneginf):
            assert np.array_equal(check(got), check(want)), (dtype, check.__name__)


# --------------------------------------------------------------------------- threads and ISAs

BIG = [
    pytest.param((517, 389), (389, 701), id="517x389x701"),
    pytest.param((389, 701), (701, 517), id="389x701x517"),
    pytest.param((3, 130, 257), (257, 190), id="batched-shared-b"),
    # Few rows (B read in place, its columns split in cache lines), as a batch-1 fc layer.
    pytest.param((1, 512), (512, 1000), id="skinny-1x512x1000"),
    pytest.param((3, 200), (200, 333), id="skinny-3x200x333"),
]


def _big(a_shape, b_shape, dtype):
    return values(a_shape, dtype, 5, "normal"), values(b_shape, dtype, 6, "normal")


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("a_shape", "b_shape"), BIG)
def test_results_do_not_depend_on_thread_count(a_shape, b_shape, dtype):
    a, b = _big(a_shape, b_shape, dtype)
    cnnkit.set_num_threads(1)
    first = ops.matmul(a, b)
    assert_matmul_close(first, a, b, dtype)
    for n in (2, 3, 1):
        cnnkit.set_num_threads(n)
        assert np.array_equal(ops.matmul(a, b), first), f"{n} threads vs 1"


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_row_bands_over_a_shared_b_keep_their_bits(isa):
    """When C is at least as tall as wide, threads split it into row bands, each packing
    B itself: the bits stay those of one thread, with B row-major or transposed (packed
    through the AVX-512 transposes of csrc/gemm_avx512.cpp), A transposed, or C narrow
    enough for A to be read in place; k spans several k blocks and n ends in a partial
    sliver."""
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    for (m, k, n), seed in [((700, 600, 530), 1), ((1000, 300, 97), 2)]:
        a, b = values((m, k), F32, seed, "normal"), values((k, n), F32, seed + 10, "normal")
        for x, y in [(a, b), (a, np.ascontiguousarray(b.T).T), (np.ascontiguousarray(a.T).T, b)]:
            cnnkit.set_num_threads(1)
            first = ops.matmul(x, y)
            assert_matmul_close(first, a, b, F32)
            for threads in (2, 3):
                cnnkit.set_num_threads(threads)
                assert np.array_equal(ops.matmul(x, y), first), (isa, m, n, threads)


@pytest.mark.usefixtures("restore_threads")
def test_row_tiles_give_the_same_bits():
    """C(i, j) depends only on row i of a and column j of b, not on where it falls in C."""
    a, b = _big((517, 389), (389, 701), F32)
    full = ops.matmul(a, b)
    assert np.array_equal(ops.matmul(a[100:163], b), full[100:163])
    assert np.array_equal(ops.matmul(a[5:6], b[:, 300:333]), full[5:6, 300:333])


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_isa_path_is_accurate_and_deterministic(isa, dtype):
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    assert _core.get_isa() == isa
    for a_shape, b_shape in [
        ((517, 389), (389, 701)),
        ((2, 67, 71), (2, 71, 13)),
        ((9, 5), (5, 3)),
    ]:
        a, b = _big(a_shape, b_shape, dtype)
        cnnkit.set_num_threads(1)
        first = ops.matmul(a, b)
        assert_matmul_close(first, a, b, dtype)
        for n in (3, 2):
            cnnkit.set_num_threads(n)
            assert np.array_equal(ops.matmul(a, b), first), f"{isa}, {n} threads"


def _products_on(isa, a_shape, b_shape, dtype):
    """On the `isa` path (skipped where this CPU lacks it) at one thread: the operands,
    a bias, and their plain (checked against NumPy) and fused ReLU products."""
    if isa not in _core.available_isas():
        pytest.skip(f"{isa} is not available on this CPU")
    _core.set_isa(isa)
    a, b = _big(a_shape, b_shape, dtype)
    bias = values((b_shape[-1],), dtype, 7, "normal")
    cnnkit.set_num_threads(1)
    plain = ops.matmul(a, b)
    assert_matmul_close(plain, a, b, dtype)
    return a, b, bias, plain, ops.matmul(a, b, bias=bias, activation="relu")


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_blocks_past_one_panel_keep_their_bits(isa, dtype):
    """Packed A over more than one row block, one B panel (1024 float columns on the
    AVX-512 path, whose A slivers run outer) and one k block, edges on every side:
    accurate, the same bits at 1 and 2 threads, from transposed operands and with
    the fused epilogue."""
    a, b, bias, first, fused = _products_on(isa, (563, 259), (259, 1061), dtype)
    assert np.array_equal(fused, np.maximum(first + bias, 0))
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        assert np.array_equal(ops.matmul(a, b), first), (isa, threads)
        assert np.array_equal(ops.matmul(at.T, bt.T), first), (isa, threads)
        got = ops.matmul(a, b, bias=bias, activation="relu")
        assert np.array_equal(got, fused), (isa, threads)


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_few_rows_keep_the_bits_of_a_tall_product(isa, dtype):
    """Up to 8 rows (a dense layer at batch 1 to 8) stream B in place instead of packing
    it; every row keeps the bits it has inside a tall product, with the fused bias and
    activation, on each path and thread count. k spans several uneven k blocks and n
    several column chunks plus a ragged edge."""
    a, b, bias, full, fused = _products_on(isa, (40, 1031), (1031, 1100), dtype)
    for n in (1, 2):
        cnnkit.set_num_threads(n)
        for rows in (slice(0, 1), slice(3, 5), slice(8, 16), slice(33, 40)):
            assert np.array_equal(ops.matmul(a[rows], b), full[rows]), (isa, n, rows)
            got = ops.matmul(a[rows], b, bias=bias, activation="relu")
            assert np.array_equal(got, fused[rows]), (isa, n, rows)
        assert np.array_equal(ops.matmul(a[5:6], b[:, 1:1092]), full[5:6, 1:1092])
    # B's rows are read over up to 256 KiB of running sums: 8192 float (4096 double)
    # columns at 8 rows, so 9001 columns take two or three passes there.
    a, b = _big((9, 300), (300, 9001), dtype)
    cnnkit.set_num_threads(1)
    full = ops.matmul(a, b)
    for n in (1, 2):
        cnnkit.set_num_threads(n)
        for rows in (slice(0, 1), slice(2, 4), slice(4, 8), slice(1, 9)):
            assert np.array_equal(ops.matmul(a[rows], b), full[rows]), (isa, n, rows)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "name", "shown"),
    [
        ((5,), (5, 3), "a", "(5,)"),
        ((), (5, 3), "a", "()"),
        ((1, 2, 5, 5), (5, 3), "a", "(1, 2, 5, 5)"),
        ((3, 5), (5,), "b", "(5,)"),
        ((3, 5), (1, 1, 5, 3), "b", "(1, 1, 5, 3)"),
    ],
)
def test_rejects_operands_of_the_wrong_rank(a_shape, b_shape, name, shown):
    expected = "(M, K) or (B, M, K)" if name == "a" else "(K, N) or (B, K, N)"
    text = f"matmul(): {name} must have shape {expected}, got shape {shown}"
    with pytest.raises(ValueError, match="^" + re.escape(text)):
        ops.matmul(np.zeros(a_shape, F32), np.zeros(b_shape, F32))


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "k", "shown"),
    [
        ((3, 5), (4, 2), 5, "(3, 5) and (4, 2)"),
        ((2, 3, 5), (6, 2), 5, "(2, 3, 5) and (6, 2)"),
        ((3, 0), (1, 2), 0, "(3, 0) and (1, 2)"),
        ((3, 5), (2, 3, 2), 5, "(3, 5) and (2, 3, 2)"),
    ],
)
def test_rejects_mismatched_inner_dimensions(a_shape, b_shape, k, shown):
    text = (
        f"matmul(): the last axis of a ({k}) must equal the second-to-last axis of b, "
        f"got shapes {shown}"
    )
    with pytest.raises(ValueError, match="^" + re.escape(text)):
        ops.matmul(np.zeros(a_shape, F32), np.zeros(b_shape, F32))


@pytest.mark.parametrize(("ba", "bb"), [(2, 3), (1, 4), (0, 1)])
def test_rejects_mismatched_batch_sizes(ba, bb):
    text = (
        f"matmul(): a and b must have the same batch size, got shapes ({ba}, 3, 5) and ({bb}, 5, 2)"
    )
    with pytest.raises(ValueError, match="^" + re.escape(text)):
        ops.matmul(np.zeros((ba, 3, 5), F32), np.zeros((bb, 5, 2), F32))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.float16])
@pytest.mark.parametrize("name", ["a", "b"])
def test_rejects_non_float_dtypes(name, dtype):
    a, b = np.zeros((3, 5), F32), np.zeros((5, 2), F32)
    if name == "a":
        a = a.astype(dtype)
    else:
        b = b.astype(dtype)
    text = f"matmul(): {name} must have dtype float32 or float64, got {np.dtype(dtype)}"
    with pytest.raises(TypeError, match="^" + re.escape(text)):
        ops.matmul(a, b)


@pytest.mark.parametrize("name", ["a", "b"])
def test_rejects_complex_arrays(name):
    a, b = np.zeros((3, 5), F32), np.zeros((5, 2), F32)
    if name == "a":
        a = a.astype(np.complex64)
    else:
        b = b.astype(np.complex128)
    # Either wording names the argument and the dtype received.
    pattern = (
        "^" + re.escape(f"matmul(): {name} must ") + "(hold numbers|have dtype float32).*complex"
    )
    with pytest.raises(TypeError, match=pattern):
        ops.matmul(a, b)


def test_rejects_integer_lists():
    with pytest.raises(TypeError, match="^" + re.escape("matmul(): a must have dtype float32")):
        ops.matmul([[1, 2]], [[1.0], [2.0]])


@pytest.mark.parametrize("name", ["a", "b"])
def test_rejects_object_arrays(name):
    a, b = np.zeros((3, 5), object), np.zeros((5, 2), object)
    if name == "b":
        a = a.astype(F32)
    text = f"matmul(): {name} must hold numbers, got an array of dtype object"
    with pytest.raises(TypeError, match="^" + re.escape(text)):
        ops.matmul(a, b)
