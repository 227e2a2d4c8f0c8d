"""Winograd F(4x4, 3x3) convolution (``ops.conv(..., winograd=True)`` and the automatic choice).

Forced Winograd is checked against ``cnnkit.reference`` in float64 with the bound of the other
convolution paths (tests/test_conv.py), within ``1e-4`` (float32) or ``1e-10`` (float64) of the
sum of product magnitudes, taken as the largest such sum in the element's 4x4 output tile
(see ``tile_scale``). Shapes cover odd sizes, images smaller
than a 4x4 tile, every padding form (explicit padding up to 3, so the input gradient's pass
crops as well as pads) and non-contiguous inputs. Also: the input gradient's adjoint identity,
bit-identical results for any number of threads on every instruction-set path, the automatic
choice and its switches, the float32 accuracy on a realistic layer, and the cache of packed
filters (hits, and misses after the weights change in place).
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
RTOL = {F32: 1e-4, F64: 1e-10}


def tile_scale(scale: np.ndarray) -> np.ndarray:
    """Each element's scale replaced by the largest in its 4x4 output tile (per channel).

    Winograd's rounding error is relative to the magnitudes of the tile's inputs, not of the
    element's own window: an output whose window lies entirely in the padding is exactly 0 in
    the reference but carries the tile's rounding error.
    """
    n, h, w, c = scale.shape
    th, tw = -(-h // 4), -(-w // 4)
    padded = np.zeros((n, 4 * th, 4 * tw, c))
    padded[:, :h, :w] = scale
    tiles = padded.reshape(n, th, 4, tw, 4, c).max(axis=(2, 4), keepdims=True)
    return np.broadcast_to(tiles, (n, th, 4, tw, 4, c)).reshape(padded.shape)[:, :h, :w]


def assert_close(got, want, scale, dtype, what):
    assert got.shape == want.shape, what
    assert got.dtype == dtype, what
    if scale.ndim == 4:
        scale = tile_scale(scale)
    bound = RTOL[np.dtype(dtype)] * scale + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    assert (err <= bound).all(), f"{what}: max error {err.max()} against bound {bound.max()}"


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([F32, F64]))
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    cin, cout = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    form = draw(st.sampled_from(["valid", "same", "int", "pairs"]))
    if form in ("valid", "same"):
        padding = form
    elif form == "int":
        padding = draw(st.integers(0, 3))
    else:
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    # The kernel must fit the padded input (cnnkit rejects the rest); "same" always fits.
    totals = {"valid": (0, 0), "same": (2, 2)}.get(padding) if isinstance(padding, str) else None
    if totals is None:
        totals = (2 * padding,) * 2 if isinstance(padding, int) else tuple(map(sum, padding))
    if h + totals[0] < 3 or w + totals[1] < 3:
        padding = "same"
    seed = draw(st.integers(0, 2**32 - 1))
    layout = draw(st.sampled_from(["contiguous", "channel_stride", "reversed_batch"]))
    x = layout_view(seeded((n, h, w, cin), dtype, seed), layout)
    wt = seeded((3, 3, cin, cout), dtype, seed + 1)
    b = seeded((cout,), dtype, seed + 2) if draw(st.booleans()) else None
    return x, wt, b, padding


def f64(a):
    return None if a is None else np.asarray(a, np.float64)


def absf64(a):
    return None if a is None else np.abs(np.asarray(a, np.float64))


def _y_and_dx_at_1_2_3_threads(x, w, b, dy) -> list:
    """Winograd's forward and input gradient at 1, 2 and 3 threads, the filters packed
    afresh by each thread count (the cache is cleared)."""
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        _core._clear_winograd_cache()
        y = ops.conv(x, w, b, padding="same", winograd=True)
        dx = ops.conv_backward(x, w, dy, padding="same", need=("x",), winograd=True)[0]
        results.append((y, dx))
    return results


@given(problems())
def test_forward_matches_reference(problem):
    x, w, b, padding = problem
    got = ops.conv(x, w, b, padding=padding, winograd=True)
    want = reference.conv(f64(x), f64(w), f64(b), padding=padding)
    scale = reference.conv(absf64(x), absf64(w), absf64(b), padding=padding)
    assert_close(got, want, scale, x.dtype, "y")


@given(problems())
def test_input_gradient_matches_reference(problem):
    x, w, _, padding = problem
    out_shape = reference.conv(x[:, :, :, :0], w[:, :, :0, :], padding=padding).shape
    dy = seeded(out_shape, x.dtype, 7)
    got = ops.conv_backward(x, w, dy, padding=padding, winograd=True)
    want = reference.conv_backward(f64(x), f64(w), f64(dy), padding=padding)
    scale = reference.conv_backward(absf64(x), absf64(w), absf64(dy), padding=padding)
    for name, g, v, s in zip(("dx", "dw", "db"), got, want, scale):
        assert_close(g, v, s, x.dtype, name)


@pytest.mark.parametrize("padding", ["valid", "same", ((3, 0), (1, 2))])
def test_input_gradient_is_the_adjoint(padding):
    x, w = seeded((2, 11, 9, 6), F64, 1), seeded((3, 3, 6, 5), F64, 2)
    y = ops.conv(x, w, padding=padding, winograd=True)
    dy = seeded(y.shape, F64, 3)
    (dx, _, _) = ops.conv_backward(x, w, dy, padding=padding, need=("x",), winograd=True)
    assert np.isclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12)


def test_tiny_images_and_empty_batches():
    w = seeded((3, 3, 2, 3), F32, 0)
    for shape in [(1, 1, 1, 2), (2, 2, 3, 2), (1, 3, 3, 2), (0, 5, 5, 2)]:
        x = seeded(shape, F32, 1)
        for padding in ("same", 2) if min(shape[1:3]) < 3 else ("same", "valid", 2):
            got = ops.conv(x, w, padding=padding, winograd=True)
            want = reference.conv(x.astype(np.float64), w.astype(np.float64), padding=padding)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_bit_identical_for_any_thread_count(dtype):
    x, w = seeded((3, 21, 18, 24), dtype, 1), seeded((3, 3, 24, 20), dtype, 2)
    b = seeded((20,), dtype, 3)
    dy = seeded((3, 21, 18, 20), dtype, 4)
    for isa in _core.available_isas():
        _core.set_isa(isa)
        results = _y_and_dx_at_1_2_3_threads(x, w, b, dy)
        for y, dx in results[1:]:
            assert np.array_equal(y, results[0][0]), isa
            assert np.array_equal(dx, results[0][1]), isa


def test_float32_accuracy_on_a_realistic_layer():
    # The figures for the bench's shapes are in bench/RESULTS.md; this one is smaller.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 28, 28, 64)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 64, 64)) / np.sqrt(9 * 64)).astype(np.float32)
    y = ops.conv(x, w, padding="same", winograd=True)
    y64 = reference.conv(x.astype(np.float64), w.astype(np.float64), padding="same")
    assert np.abs(y - y64).max() <= 1e-4 * np.abs(y64).max()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.conv_backward(x, w, dy, padding="same", need=("x",), winograd=True)[0]
    dx64 = reference.conv_backward(
        x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64), padding="same"
    )[0]
    assert np.abs(dx - dx64).max() <= 1e-4 * np.abs(dx64).max()


@pytest.fixture
def restore_winograd():
    before = cnnkit.get_winograd()
    yield before
    cnnkit.set_winograd(before)


@pytest.mark.usefixtures("restore_winograd")
def test_automatic_choice_and_its_switch():
    x, w = seeded((2, 16, 16, 32), F32, 1), seeded((3, 3, 32, 32), F32, 2)
    winograd = ops.conv(x, w, padding="same", winograd=True)
    gemm = ops.conv(x, w, padding="same", winograd=False)
    assert not np.array_equal(winograd, gemm)  # two algorithms: the bits differ
    cnnkit.set_winograd(True)
    assert cnnkit.get_winograd() is True
    assert np.array_equal(ops.conv(x, w, padding="same"), winograd)
    cnnkit.set_winograd(False)
    assert cnnkit.get_winograd() is False
    assert np.array_equal(ops.conv(x, w, padding="same"), gemm)
    assert np.array_equal(ops.conv(x, w, padding="same", winograd=True), winograd)
    # Too few channels, or too few tiles, for the automatic choice: the GEMM either way.
    cnnkit.set_winograd(True)
    small = seeded((3, 3, 32, 7), F32, 3)
    assert np.array_equal(
        ops.conv(x, small, padding="same"), ops.conv(x, small, padding="same", winograd=False)
    )
    one = x[:1, :12, :12]  # 9 tiles
    assert np.array_equal(
        ops.conv(one, w, padding="same"), ops.conv(one, w, padding="same", winograd=False)
    )


def test_automatic_input_gradient_skips_poorly_covered_images():
    # dx of a 5x5 input fills 25 of the 64 positions of its 4x4 tiles: im2col there,
    # Winograd from half coverage on (13x13: 169 of 256) and where the tiles fit (12x12),
    # all among enough tiles for the choice.
    def dx(shape, **kwargs):
        x, w = seeded(shape, F32, 4), seeded((3, 3, 16, 16), F32, 5)
        dy = seeded((shape[0], shape[1] - 2, shape[2] - 2, 16), F32, 6)
        return ops.conv_backward(x, w, dy, need=("x",), **kwargs)[0]

    assert np.array_equal(dx((16, 5, 5, 16)), dx((16, 5, 5, 16), winograd=False))
    assert not np.array_equal(dx((16, 5, 5, 16)), dx((16, 5, 5, 16), winograd=True))
    assert np.array_equal(dx((4, 13, 13, 16)), dx((4, 13, 13, 16), winograd=True))
    assert np.array_equal(dx((4, 12, 12, 16)), dx((4, 12, 12, 16), winograd=True))


def test_environment_turns_the_automatic_choice_off():
    code = "import cnnkit; print(cnnkit.get_winograd())"
    env = {**os.environ, "CNNKIT_WINOGRAD": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    env["CNNKIT_WINOGRAD"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "got"),
    [
        ((1, 8, 8, 2), (5, 5, 2, 3), {}, "2-D with kernel 5x5, stride 1, dilation 1, groups=1"),
        ((1, 8, 8, 2), (3, 3, 2, 3), {"stride": 2}, "stride 2"),
        ((1, 8, 8, 2), (3, 3, 2, 3), {"dilation": 2}, "dilation 2"),
        ((1, 8, 8, 2), (3, 3, 1, 2), {"groups": 2}, "groups=2"),
        ((1, 8, 2), (3, 2, 3), {}, "1-D with kernel 3"),
    ],
)
@pytest.mark.parametrize("fn", ["conv", "conv_backward"])
def test_forced_winograd_rejects_other_shapes(fn, x_shape, w_shape, kwargs, got):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    match = (
        rf"{fn}\(\): winograd=True needs a 2-D convolution with a 3x3 kernel, stride 1, "
        rf"dilation 1 and groups=1, got .*{got}"
    )
    with pytest.raises(ValueError, match=match):
        if fn == "conv":
            ops.conv(x, w, winograd=True, **kwargs)
        else:
            y = ops.conv(x, w, **kwargs)
            ops.conv_backward(x, w, np.zeros_like(y), winograd=True, **kwargs)


def test_rejects_non_bool_switches():
    x, w = np.zeros((1, 4, 4, 2), np.float32), np.zeros((3, 3, 2, 2), np.float32)
    with pytest.raises(TypeError, match=r"conv\(\): winograd must be None, True or False, got str"):
        ops.conv(x, w, winograd="yes")
    with pytest.raises(TypeError, match=r"set_winograd\(\): on must be True or False, got int"):
        cnnkit.set_winograd(1)


@pytest.mark.usefixtures("restore_winograd")
def test_autograd_conv_through_winograd_matches_finite_differences():
    from gradcheck import check_gradients

    from cnnkit import autograd

    cnnkit.set_winograd(True)
    x, w = seeded((1, 16, 16, 8), F64, 5), seeded((3, 3, 8, 8), F64, 6)
    # The automatic choice takes Winograd for this shape (16 tiles, 8 channels).
    assert np.array_equal(
        ops.conv(x, w, padding="same"), ops.conv(x, w, padding="same", winograd=True)
    )
    check_gradients(lambda a, b: autograd.conv(a, b, padding="same"), [x, w])


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_channel_parts_of_few_tile_blocks(dtype):
    # One image of 12x12 is 9 tiles, one block: its 200 output channels (and,
    # for dx, its 136 input channels) are split into parts of unequal widths.
    x, w = seeded((1, 12, 12, 136), dtype, 1), seeded((3, 3, 136, 200), dtype, 2)
    b, dy = seeded((200,), dtype, 3), seeded((1, 12, 12, 200), dtype, 4)
    want_y = reference.conv(f64(x), f64(w), f64(b), padding="same")
    want_dx = reference.conv_backward(f64(x), f64(w), f64(dy), padding="same", need=("x",))[0]
    scale_y = reference.conv(absf64(x), absf64(w), absf64(b), padding="same")
    scale_dx = reference.conv_backward(absf64(x), absf64(w), absf64(dy), padding="same")[0]
    for isa in _core.available_isas():
        _core.set_isa(isa)
        results = _y_and_dx_at_1_2_3_threads(x, w, b, dy)
        assert_close(results[0][0], want_y, scale_y, dtype, "y")
        assert_close(results[0][1], want_dx, scale_dx, dtype, "dx")
        for y, dx in results[1:]:
            assert np.array_equal(y, results[0][0]), isa
            assert np.array_equal(dx, results[0][1]), isa


@pytest.mark.usefixtures("restore_threads", "restore_isa")
def test_blocks_share_the_tiles_evenly():
    # 40x40 is 100 tiles; at 80 + 80 channels a block holds at most 96 of them, so
    # there are two blocks of 50 (not 96 + 4).
    x, w = seeded((1, 40, 40, 80), F32, 1), seeded((3, 3, 80, 80), F32, 2)
    b, dy = seeded((80,), F32, 3), seeded((1, 40, 40, 80), F32, 4)
    want_y = reference.conv(f64(x), f64(w), f64(b), padding="same")
    scale_y = reference.conv(absf64(x), absf64(w), absf64(b), padding="same")
    for isa in _core.available_isas():
        _core.set_isa(isa)
        results = _y_and_dx_at_1_2_3_threads(x, w, b, dy)
        assert_close(results[0][0], want_y, scale_y, F32, "y")
        for y, dx in results[1:]:
            assert np.array_equal(y, results[0][0]), isa
            assert np.array_equal(dx, results[0][1]), isa


@pytest.mark.usefixtures("restore_isa")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_cached_filters_follow_in_place_changes(dtype):
    # The transformed filters are cached by the weights' address and checked
    # against their values: a repeated call hits, a call after an in-place
    # change misses and gives the bits of a fresh computation.
    def stats():
        return _core._winograd_cache_stats()

    # 9 tiles cut the 200 output channels into 3 parts, 200 tiles into 2: two entries.
    x, dy = seeded((1, 12, 12, 136), dtype, 1), seeded((1, 12, 12, 200), dtype, 4)
    big = seeded((2, 40, 40, 136), dtype, 5)
    for isa in _core.available_isas():
        _core.set_isa(isa)
        w = seeded((3, 3, 136, 200), dtype, 2)

        def run(w=w):
            y = ops.conv(x, w, padding="same", winograd=True)
            dx = ops.conv_backward(x, w, dy, padding="same", need=("x",), winograd=True)[0]
            return y, dx, ops.conv(big, w, padding="same", winograd=True)

        _core._clear_winograd_cache()
        before = stats()
        first = run()
        after = stats()
        assert after["misses"] - before["misses"] == 3, isa
        assert after["entries"] == 3 and after["bytes"] > 0, isa
        again = run()
        assert stats()["hits"] - after["hits"] == 3, isa
        for a, b in zip(first, again):
            assert np.array_equal(a, b), isa
        w[1, 1, 5, 7] += 1  # in place: same buffer, new values
        w[2, 0, 135, 199] = -w[2, 0, 135, 199]
        before = stats()
        changed = run()
        assert stats()["misses"] - before["misses"] == 3, isa
        fresh = run(w.copy())
        for a, b, old in zip(changed, fresh, first):
            assert np.array_equal(a, b), isa
            assert not np.array_equal(a, old), isa
        assert_close(
            changed[0],
            reference.conv(f64(x), f64(w), padding="same"),
            reference.conv(absf64(x), absf64(w), padding="same"),
            dtype,
            "y",
        )


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_in_place_change_anywhere_misses(threads):
    # The check that a cached entry still matches its weights is split over threads in
    # 64 KiB pieces: 64 x 64 float filters are 2.25 pieces. A one-value change in any of
    # them -- the first value, one in the middle, the last of the short piece, and a sign
    # flip of a zero, which changes the bits and not the value -- must miss.
    cnnkit.set_num_threads(threads)
    x = seeded((1, 20, 20, 64), F32, 6)
    w = seeded((3, 3, 64, 64), F32, 7)
    flat = w.reshape(-1)
    flat[9000] = 0.0
    _core._clear_winograd_cache()
    first = ops.conv(x, w, padding="same", winograd=True)
    for where, value in [(0, 5.0), (20000, -3.0), (flat.size - 1, 7.0), (9000, -0.0)]:
        flat[where] = value
        before = _core._winograd_cache_stats()
        got = ops.conv(x, w, padding="same", winograd=True)
        assert _core._winograd_cache_stats()["misses"] - before["misses"] == 1, where
        assert np.array_equal(got, ops.conv(x, w.copy(), padding="same", winograd=True))
        if where != 9000:
            assert not np.array_equal(got, first), where
    before = _core._winograd_cache_stats()
    ops.conv(x, w, padding="same", winograd=True)
    assert _core._winograd_cache_stats()["hits"] - before["hits"] == 1


def test_cache_budget_zero_disables_the_cache():
    code = (
        "import numpy as np; from cnnkit import _core, ops\n"
        "x = np.ones((1, 8, 8, 16), np.float32); w = np.ones((3, 3, 16, 16), np.float32)\n"
        "a = ops.conv(x, w, padding='same', winograd=True)\n"
        "b = ops.conv(x, w, padding='same', winograd=True)\n"
        "s = _core._winograd_cache_stats()\n"
        "print(np.array_equal(a, b), s['entries'], s['hits'])"
    )
    env = {**os.environ, "CNNKIT_WINOGRAD_CACHE_MB": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "0", "0"], out.stderr


@pytest.mark.usefixtures("restore_threads", "restore_isa")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_fused_activation_has_the_bits_of_a_separate_pass(dtype):
    # The bias and activation are applied in the output transform; each must
    # equal the plain Winograd output passed through the activation afterwards,
    # on every path, whatever the thread count, with edge tiles (13 x 10).
    x, w = seeded((2, 13, 10, 24), dtype, 1), seeded((3, 3, 24, 40), dtype, 2)
    b = seeded((40,), dtype, 3)
    slope = dtype.type(0.3)
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            plain = ops.conv(x, w, b, padding="same", winograd=True)
            relu = ops.conv(x, w, b, padding="same", activation="relu", winograd=True)
            assert np.array_equal(relu, np.maximum(plain, 0)), isa
            leaky = ops.conv(
                x, w, b, padding="same", activation="leaky_relu", negative_slope=0.3, winograd=True
            )
            assert np.array_equal(leaky, np.where(plain > 0, plain, slope * plain)), isa
            sig = ops.conv(x, w, b, padding="same", activation="sigmoid", winograd=True)
            np.testing.assert_allclose(sig, 1 / (1 + np.exp(-plain.astype(np.float64))), rtol=1e-6)
