"""cnnkit.image: the Cython resampling kernels against cnnkit.reference, and the boxes and
points moving exactly with the pixels.

uint8 results may differ from the float64 reference by 1 where a value lies near a
rounding boundary: sums in float32 or in another order, and uint8 bilinear warps in
fixed point (coordinates rounded to 1/2048 pixel, which moves a value by less than
1/8 before its rounding; see cnnkit.image.warp_affine). float32 results agree within
1e-5 of the value range.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from arrays import layout_view
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import image
from cnnkit import reference as ref

DTYPES = (np.uint8, np.float32)
FLOAT_LAYOUTS = ("contiguous", "fortran", "reversed_batch", "channel_stride", "spatial_slice")
BYTE_LAYOUTS = ("contiguous", "fortran", "reversed_batch", "channels_first")


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == np.uint8:
        assert np.abs(got.astype(int) - want.astype(int)).max(initial=0) <= 1
    else:
        scale = max(1.0, float(np.abs(want).max(initial=0)))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


@st.composite
def batches(draw, min_side: int = 1, max_n: int = 3):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = (
        draw(st.integers(0, max_n)),
        draw(st.integers(min_side, 9)),
        draw(st.integers(min_side, 9)),
        draw(st.integers(1, 4)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.random(shape) * (255 if dtype == np.uint8 else 2) - (0 if dtype == np.uint8 else 1)
    x = values.astype(dtype)
    layouts = BYTE_LAYOUTS if dtype == np.uint8 else FLOAT_LAYOUTS
    return layout_view(x, draw(st.sampled_from(layouts)))


sizes = st.tuples(st.integers(1, 12), st.integers(1, 12))


@given(batches(), sizes, st.sampled_from(image.INTERPOLATIONS))
def test_resize_matches_reference(x, size, interpolation):
    assert_close(image.resize(x, size, interpolation), ref.resize(x, size, interpolation))


@given(batches(max_n=1), sizes, st.sampled_from(image.INTERPOLATIONS))
def test_resize_keeps_constants_and_single_images(x, size, interpolation):
    flat = np.full_like(x, 7 if x.dtype == np.uint8 else 0.25)
    np.testing.assert_array_equal(
        image.resize(flat, size, interpolation), 7 if x.dtype == np.uint8 else 0.25
    )
    if len(x):
        np.testing.assert_array_equal(
            image.resize(x[0], size, interpolation), image.resize(x, size, interpolation)[0]
        )
        # the same size is the identity
        np.testing.assert_array_equal(image.resize(x, x.shape[1:3], interpolation), x)


@pytest.mark.parametrize("interpolation", image.INTERPOLATIONS)
def test_resize_keeps_a_constant_exactly_at_every_small_size(interpolation):
    # float32 weights adding up to 1 +- 1 ulp returned 0.25000003 (7 -> 2 columns, area)
    for h, w, out_h, out_w in itertools.product(range(1, 9), repeat=4):
        flat = np.full((1, h, w, 2), 0.25, np.float32)
        out = image.resize(flat, (out_h, out_w), interpolation)
        assert np.all(out == 0.25), (h, w, out_h, out_w, out.min(), out.max())


def test_resize_bilinear_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 9, 11, 3)).astype(np.float32)
    for size in [(4, 5), (18, 7), (9, 11)]:
        want = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False
        )
        np.testing.assert_allclose(
            image.resize(x, size), want.permute(0, 2, 3, 1).numpy(), atol=1e-6
        )
        want = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2), size=size, mode="nearest-exact"
        )
        np.testing.assert_array_equal(
            image.resize(x, size, "nearest"), want.permute(0, 2, 3, 1).numpy()
        )


def test_resize_area_shrinks_by_block_means():
    x = np.random.default_rng(1).random((1, 8, 12, 2)).astype(np.float32)
    want = x.reshape(1, 4, 2, 4, 3, 2).mean((2, 4))
    np.testing.assert_allclose(image.resize(x, (4, 4), "area"), want, atol=1e-6)


@pytest.mark.parametrize("factors", [(1, 1), (2, 2), (3, 2), (1, 4), (5, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_resize_area_by_whole_factors_matches_reference(factors, dtype):
    # whole factors take the block-sum kernel, not the tap tables
    rng = np.random.default_rng(sum(factors))
    fy, fx = factors
    x = rng.integers(0, 256, (3, 4 * fy, 5 * fx, 3)).astype(dtype)
    if dtype == np.float32:
        x /= 255
    got = image.resize(x, (4, 5), "area")
    assert_close(got, ref.resize(x, (4, 5), "area"))
    if dtype == np.uint8:  # the block means rounded half up, exactly
        sums = x.reshape(3, 4, fy, 5, fx, 3).sum((2, 4), dtype=np.int64)
        np.testing.assert_array_equal(got, (2 * sums + fy * fx) // (2 * fy * fx))
    np.testing.assert_array_equal(image.resize(x[1], (4, 5), "area"), got[1])


@given(batches(min_side=1), st.data())
def test_resized_crop_equals_crop_then_resize(x, data):
    h, w = x.shape[1:3]
    windows = []
    for _ in range(len(x)):
        top, left = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
        windows.append(
            (top, left, data.draw(st.integers(1, h - top)), data.draw(st.integers(1, w - left)))
        )
    size = data.draw(sizes)
    mode = data.draw(st.sampled_from(image.INTERPOLATIONS))
    got = image.resized_crop(x, np.array(windows, dtype=np.int64).reshape(-1, 4), size, mode)
    assert got.shape == (len(x), *size, x.shape[3])
    for n, win in enumerate(windows):
        assert_close(got[n], image.resize(image.crop(x[n], *win), size, mode))


@st.composite
def affine_maps(draw, h: int, w: int):
    return image.affine_matrix(
        center=(draw(st.floats(0, w)), draw(st.floats(0, h))),
        angle=draw(st.floats(-180, 180)),
        scale=(draw(st.floats(0.3, 3)), draw(st.floats(0.3, 3))),
        shear=(draw(st.floats(-30, 30)), draw(st.floats(-30, 30))),
        translate=(draw(st.floats(-5, 5)), draw(st.floats(-5, 5))),
    )


@given(batches(), st.data())
def test_warp_affine_matches_reference(x, data):
    m = data.draw(affine_maps(*x.shape[1:3]))
    size = data.draw(st.none() | sizes)
    interpolation = data.draw(st.sampled_from(image.INTERPOLATIONS[:2]))
    border = data.draw(st.sampled_from(image.BORDER_MODES))
    fill = data.draw(st.sampled_from([0.0, 3.0, 300.0]))
    got = image.warp_affine(x, m, size, interpolation, border, fill)
    assert_close(got, ref.warp_affine(x, m, size, interpolation, border, fill))


@given(batches(min_side=1, max_n=3), st.data())
def test_warp_affine_per_image_matrices_equal_one_by_one(x, data):
    maps = np.array([data.draw(affine_maps(*x.shape[1:3])) for _ in range(len(x))]).reshape(
        -1, 2, 3
    )
    got = image.warp_affine(x, maps, border_mode="reflect")
    for n in range(len(x)):
        np.testing.assert_array_equal(
            got[n], image.warp_affine(x[n], maps[n], None, "bilinear", "reflect")
        )


@pytest.mark.parametrize("border", image.BORDER_MODES)
@pytest.mark.parametrize("chans", [1, 3, 4])
def test_warp_affine_uint8_fixed_point_matches_reference_on_larger_images(border, chans):
    # the hypothesis cases are at most 9x9, so most of their pixels take the border
    # path; here most take the fixed-point interior span
    rng = np.random.default_rng(chans)
    x = rng.integers(0, 256, (3, 41, 57, chans)).astype(np.uint8)
    x[1] = np.linspace(0, 255, 57)[None, :, None].astype(np.uint8)  # smooth: few ties
    maps = np.stack(
        [
            image.affine_matrix((28, 20), angle=a, scale=s, shear=h, translate=(t, -t))
            for a, s, h, t in [(33, 1.1, 0, 1.5), (-17, 0.7, 12, -3), (150, 2.3, -25, 0.25)]
        ]
    )
    for fill in (0.0, 300.0):
        got = image.warp_affine(x, maps, (45, 50), "bilinear", border, fill)
        want = ref.warp_affine(x, maps, (45, 50), "bilinear", border, fill)
        assert_close(got, want)
        assert (got == want).mean() > 0.97  # off by one only near a rounding boundary
        for n in range(len(x)):
            np.testing.assert_array_equal(
                got[n], image.warp_affine(x[n], maps[n], (45, 50), "bilinear", border, fill)
            )


@pytest.mark.parametrize("out_size", [(224, 224), (31, 50), (1, 17), (40, 3)])
def test_rgb_bilinear_resized_crops_match_reference(out_size):
    # 3-channel uint8 bilinear runs in fixed point where the CPU has AVX-512: windows at
    # the image's corners (edge taps clamped, loads ending at the image's last byte)
    rng = np.random.default_rng(out_size[1])
    x = rng.integers(0, 256, (4, 60, 70, 3)).astype(np.uint8)
    x[1] = np.linspace(0, 255, 70)[None, :, None].astype(np.uint8)  # smooth: few ties
    windows = np.array([[0, 0, 60, 70], [20, 30, 40, 40], [59, 69, 1, 1], [0, 10, 33, 60]])
    got = image.resized_crop(x, windows, out_size)
    agree = []
    for n, (top, left, h, w) in enumerate(windows):
        want = ref.resize(x[n : n + 1, top : top + h, left : left + w], out_size)
        assert_close(got[n : n + 1], want)
        agree.append((got[n : n + 1] == want).mean())
        np.testing.assert_array_equal(got[n], image.resized_crop(x[n], windows[n], out_size))
    if out_size[0] * out_size[1] > 1000:
        assert min(agree) > 0.97  # off by one only near a rounding boundary
    assert_close(image.resize(x, out_size), ref.resize(x, out_size))


@pytest.mark.parametrize("border", image.BORDER_MODES)
@pytest.mark.parametrize("shape", [(4, 61, 65, 3), (2, 2, 40, 3), (1, 33, 2, 3)])
def test_warp_affine_uint8_vector_span_equals_scalar(border, shape):
    # the AVX-512 interior span (where the CPU has it) gives the scalar loop's bytes,
    # including chunks whose 8-byte tap loads would pass the image's last byte
    from cnnkit import _augment

    rng = np.random.default_rng(shape[1])
    x = rng.integers(0, 256, shape).astype(np.uint8)
    h, w = shape[1:3]
    maps = np.stack(
        [
            image.affine_matrix((w / 2, h / 2), angle=a, scale=s, shear=sh, translate=(t, t))
            for a, s, sh, t in zip(
                rng.uniform(-180, 180, shape[0]),
                rng.uniform(0.5, 2, shape[0]),
                rng.uniform(-30, 30, shape[0]),
                rng.uniform(-3, 3, shape[0]),
            )
        ]
    )
    # a shift by less than a pixel: rows of 64 interior pixels (4 vector chunks), the last
    # pixel of row h - 2 with its bottom-right tap on the image's last pixel
    maps[0] = [[1, 0, -0.3], [0, 1, -0.6]]
    inverse = np.ascontiguousarray(image._invert_affines(maps, "test"))
    out_w = w + 19
    outs = []
    for vector in (True, False):
        out = np.empty((shape[0], h + 5, out_w, 3), np.uint8)
        scratch = np.empty(_augment.warp_scratch_size(out_w, 2), np.uint8)
        mode = image.BORDER_MODES.index(border)
        _augment.warp_affine_u8(x, out, inverse, mode, 9.0, scratch, 2, vector)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    # Two threads racing on a span bound shared by mistake (a variable prange did not make
    # private) put fill values inside a few rows, in one call of 20 to 600 by the schedule
    # and the load: a net, not a proof.
    for _ in range(30):
        again = np.empty_like(outs[1])
        _augment.warp_affine_u8(x, again, inverse, mode, 9.0, scratch, 2, True)
        np.testing.assert_array_equal(again, outs[1])


@pytest.mark.parametrize("border", image.BORDER_MODES)
def test_warp_affine_uint8_far_outside_points(border):
    # a strong shrink maps output pixels millions of pixels away from the image: the
    # fixed-point coordinates clamp there, the border modes see the true points
    x = np.random.default_rng(5).integers(0, 256, (2, 7, 9, 3)).astype(np.uint8)
    m = image.affine_matrix((4, 3), angle=20, scale=2e-5, translate=(1, 2))
    got = image.warp_affine(x, m, (6, 40), "bilinear", border, 77.0)
    assert_close(got, ref.warp_affine(x, m, (6, 40), "bilinear", border, 77.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_size", [(37, 45), (70, 90), (16, 3), (17, 1)])
def test_bilinear_resample_across_bands_matches_reference(dtype, out_size):
    # the two-tap kernel caches horizontal passes per band of 16 output rows
    rng = np.random.default_rng(out_size[0])
    x = rng.integers(0, 256, (2, 40, 50, 3)).astype(dtype)
    assert_close(image.resize(x, out_size), ref.resize(x, out_size))
    windows = np.array([[3, 5, 30, 41], [0, 0, 40, 50]])
    got = image.resized_crop(x, windows, out_size)
    for n, (top, left, h, w) in enumerate(windows):
        crop = x[n : n + 1, top : top + h, left : left + w]
        assert_close(got[n : n + 1], ref.resize(crop, out_size))


def test_kernels_give_the_same_result_at_any_thread_count(restore_threads):
    x = (np.random.default_rng(2).random((3, 120, 150, 3)) * 255).astype(np.uint8)
    m = image.affine_matrix((75, 60), angle=17, scale=1.3, shear=5)
    runs = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        runs.append(
            [
                image.resize(x, (131, 77), "area"),
                image.resize(x, (131, 77)),
                image.warp_affine(x, m),
                image.hflip(x),
            ]
        )
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@given(batches(), st.tuples(*[st.integers(0, 5)] * 4), st.sampled_from(image.BORDER_MODES))
def test_pad_matches_numpy(x, padding, border):
    top, bottom, left, right = padding
    if border == "constant":
        want = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=5)
    else:
        want = x
        for axis, before, after in ((1, top, bottom), (2, left, right)):
            widths = [(0, 0)] * 4
            widths[axis] = (before, after)
            # numpy cannot reflect a single pixel; it repeats, as the kernel does
            edge = border == "replicate" or x.shape[axis] == 1
            want = np.pad(want, widths, mode="edge" if edge else "reflect")
    np.testing.assert_array_equal(image.pad(x, padding, border, fill=5), want)


@given(batches())
def test_flips_match_reference_and_invert(x):
    np.testing.assert_array_equal(image.hflip(x), ref.hflip(x))
    np.testing.assert_array_equal(image.vflip(x), ref.vflip(x))
    np.testing.assert_array_equal(image.hflip(image.hflip(x)), x)
    assert image.hflip(x).flags.c_contiguous


@pytest.mark.parametrize("width", [15, 16, 17, 48, 67, 256])
def test_hflip_of_wide_rgb_rows_matches_reference(width):
    # 3-channel uint8 rows are mirrored 16 pixels at a time where the CPU allows (the
    # hypothesis batches are at most 9 wide), with the w % 16 pixels left over one by one
    x = np.random.default_rng(width).integers(0, 256, (2, 3, width, 3)).astype(np.uint8)
    np.testing.assert_array_equal(image.hflip(x), ref.hflip(x))
    np.testing.assert_array_equal(image.hflip(x[0]), ref.hflip(x)[0])


def _dots(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """One image per point with a single lit pixel under it."""
    dots = np.zeros((len(points), h, w, 1), np.uint8)
    dots[
        np.arange(len(points)),
        np.floor(points[:, 1]).astype(int),
        np.floor(points[:, 0]).astype(int),
    ] = 255
    return dots


def _lit(images: np.ndarray) -> list[tuple[int, int]]:
    return [tuple(np.argwhere(im[..., 0] == 255)[0][::-1]) for im in images]


@pytest.mark.parametrize(
    "matrix",
    [
        image.affine_matrix((6.0, 4.0), angle=90),
        image.affine_matrix((6.0, 4.0), angle=-90),
        image.affine_matrix((0.0, 0.0), angle=180, translate=(12, 8)),
        image.crop_matrix(-2, 3),
        np.array([[-1.0, 0, 12], [0, 1, 0]]),  # the horizontal flip of a 12-wide image
    ],
)
def test_points_move_with_the_pixels(matrix):
    """A pixel drawn under each point sits under the moved point after the warp."""
    rng = np.random.default_rng(3)
    h, w = 8, 12
    points = np.stack([rng.integers(0, w, 40) + 0.5, rng.integers(0, h, 40) + 0.5], 1)
    moved = image.affine_points(points, matrix)
    warped = image.warp_affine(_dots(points, h, w), matrix, (h, w), "nearest")
    inside = (moved[:, 0] > 0) & (moved[:, 0] < w) & (moved[:, 1] > 0) & (moved[:, 1] < h)
    assert inside.sum() > 5
    got = _lit(warped[inside])
    want = [tuple(v) for v in np.floor(moved[inside]).astype(int)]
    assert got == want


def test_flip_points_and_boxes_move_with_the_pixels():
    rng = np.random.default_rng(4)
    h, w = 7, 10
    points = np.stack([rng.uniform(0, w, 30), rng.uniform(0, h, 30)], 1)
    dots = _dots(points, h, w)
    assert _lit(image.hflip(dots)) == [
        tuple(v) for v in np.floor(image.hflip_points(points, w)).astype(int)
    ]
    assert _lit(image.vflip(dots)) == [
        tuple(v) for v in np.floor(image.vflip_points(points, h)).astype(int)
    ]
    boxes = np.array([[1.0, 2.0, 4.0, 6.0], [0.0, 0.0, 10.0, 7.0]])
    np.testing.assert_array_equal(image.hflip_boxes(boxes, w), [[6, 2, 9, 6], [0, 0, 10, 7]])
    np.testing.assert_array_equal(image.vflip_boxes(boxes, h), [[1, 1, 4, 5], [0, 0, 10, 7]])
    flip = np.array([[-1.0, 0, w], [0, 1, 0]])
    np.testing.assert_array_equal(image.affine_boxes(boxes, flip)[0], image.hflip_boxes(boxes, w))


def test_flip_points_with_pairs_keeps_the_meaning_of_each_index():
    points = np.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [np.nan, np.nan]]])
    got = image.hflip_points(points, 10, flip_pairs=[(0, 2)])
    np.testing.assert_array_equal(got[0, :3], [[7, 3], [8, 2], [9, 1]])
    assert np.isnan(got[0, 3]).all()
    assert image.hflip_points(points.astype(np.float32), 10).dtype == np.float32
    assert image.hflip_points(np.array([[2, 1]]), 10).dtype == np.float64


def test_affine_boxes_clip_and_min_visibility():
    boxes = np.array(
        [[0, 0, 4, 4], [8, 0, 12, 4], [9, 9, 11, 11], [20, 20, 30, 30], [5, 5, 5, 5]], np.float32
    )
    shift = image.crop_matrix(0, 0)
    out, keep = image.affine_boxes(boxes, shift, (10, 10), min_visibility=0.5)
    # half of box 1 is left (kept at 0.5), a quarter of box 2 (dropped), none of box 3
    np.testing.assert_array_equal(keep, [True, True, False, False, True])
    np.testing.assert_array_equal(out, [[0, 0, 4, 4], [8, 0, 10, 4], [5, 5, 5, 5]])
    assert out.dtype == np.float32
    _, keep = image.affine_boxes(boxes, shift, (10, 10), min_visibility=0.0)
    np.testing.assert_array_equal(keep, [True, True, True, False, True])
    rotated, _ = image.affine_boxes([[2, 2, 4, 6]], image.affine_matrix((3, 4), angle=90))
    np.testing.assert_allclose(rotated, [[1, 3, 5, 5]], atol=1e-12)
    out, keep = image.crop_boxes(np.zeros((0, 4)), 1, 1, 5, 5)
    assert out.shape == (0, 4) and keep.shape == (0,)


def test_empty_batches_give_empty_batches():
    x = np.zeros((0, 5, 6, 3), np.uint8)
    assert image.resize(x, (3, 4)).shape == (0, 3, 4, 3)
    assert image.warp_affine(x, np.eye(3)).shape == (0, 5, 6, 3)
    assert image.warp_affine(x, np.zeros((0, 2, 3))).shape == (0, 5, 6, 3)
    assert image.hflip(x).shape == x.shape
    assert image.pad(x, 1).shape == (0, 7, 8, 3)
    assert image.resized_crop(x, np.zeros((0, 4), np.int64), 3).shape == (0, 3, 3, 3)


GOOD = np.zeros((2, 6, 8, 3), np.uint8)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: image.resize(GOOD.astype(np.float64), 3),
            TypeError,
            r"resize\(\): images must be uint8 or float32 .*got float64",
        ),
        (
            lambda: image.resize(GOOD[0, 0], 3),
            ValueError,
            r"resize\(\): images must have shape \(H, W, C\) or \(N, H, W, C\), got \(8, 3\)",
        ),
        (lambda: image.resize(GOOD, (0, 3)), ValueError, r"resize\(\): size must be positive"),
        (
            lambda: image.resize(GOOD, 2.5),
            TypeError,
            r"resize\(\): size must be an int or a \(height, width\) pair",
        ),
        (
            lambda: image.resize(GOOD, 3, "cubic"),
            ValueError,
            r"resize\(\): interpolation must be one of nearest, bilinear, area, got 'cubic'",
        ),
        (lambda: image.resize(GOOD[:, :0], 3), ValueError, r"resize\(\): images must not be empty"),
        (
            lambda: image.crop(GOOD, 1, 1, 6, 2),
            ValueError,
            r"crop\(\): the crop \(top=1, left=1, height=6, width=2\) must lie inside the 6x8",
        ),
        (
            lambda: image.crop(GOOD, 0, 0, 0, 2),
            ValueError,
            r"crop\(\): height and width must be positive",
        ),
        (
            lambda: image.crop(GOOD, 0.5, 0, 1, 2),
            TypeError,
            r"crop\(\): top must be an int, got float",
        ),
        (
            lambda: image.center_crop(GOOD, 7),
            ValueError,
            r"center_crop\(\): size must fit in the 6x8 image",
        ),
        (
            lambda: image.resized_crop(GOOD, [[0, 0, 2, 2]], 3),
            ValueError,
            r"resized_crop\(\): windows must be \(2, 4\) ints",
        ),
        (
            lambda: image.resized_crop(GOOD, [[0, 0, 2, 2], [5, 0, 2, 2]], 3),
            ValueError,
            r"resized_crop\(\): the crop \(top=5",
        ),
        (
            lambda: image.pad(GOOD, (1, 2, 3)),
            ValueError,
            r"pad\(\): padding must be an int >= 0 or \(top, bottom, left, right\)",
        ),
        (lambda: image.pad(GOOD, -1), ValueError, r"pad\(\): padding must be"),
        (
            lambda: image.pad(GOOD, 1, "wrap"),
            ValueError,
            r"pad\(\): border_mode must be one of constant, reflect, replicate, got 'wrap'",
        ),
        (
            lambda: image.warp_affine(GOOD, np.zeros((2, 3))),
            ValueError,
            r"warp_affine\(\): matrix must be invertible",
        ),
        (
            lambda: image.warp_affine(GOOD, np.eye(2)),
            ValueError,
            r"warp_affine\(\): matrix must have shape \(2, 3\) or \(3, 3\), got \(2, 2\)",
        ),
        (
            lambda: image.warp_affine(GOOD, np.zeros((3, 2, 3))),
            ValueError,
            r"warp_affine\(\): matrix must have shape \(2, 3\) or \(2, 2, 3\)",
        ),
        (
            lambda: image.warp_affine(GOOD, [[1, 0, np.nan], [0, 1, 0]]),
            ValueError,
            r"warp_affine\(\): matrix must be finite",
        ),
        (
            lambda: image.warp_affine(GOOD, np.eye(3), interpolation="area"),
            ValueError,
            r"warp_affine\(\): interpolation must be one of nearest, bilinear, got 'area'",
        ),
        (
            lambda: image.affine_boxes([[0, 0, 1]], np.eye(3)),
            ValueError,
            r"affine_boxes\(\): boxes must have shape \(K, 4\), got \(1, 3\)",
        ),
        (
            lambda: image.affine_boxes([[0, 0, 1, 1]], np.eye(3), (4, 4), 1.5),
            ValueError,
            r"affine_boxes\(\): min_visibility must be in \[0, 1\], got 1.5",
        ),
        (
            lambda: image.affine_points([[0, 0, 1]], np.eye(3)),
            ValueError,
            r"affine_points\(\): points must have shape \(..., 2\)",
        ),
        (
            lambda: image.hflip_points(np.zeros((2, 4, 2)), 5, [(0, 4)]),
            ValueError,
            r"hflip_points\(\): flip_pairs index 4 is out of range for 4 points",
        ),
        (
            lambda: image.hflip_points(np.zeros((2, 4, 2)), 5, "01"),
            TypeError,
            r"hflip_points\(\): flip_pairs must be a sequence",
        ),
        (
            lambda: image.hflip_boxes(np.zeros((1, 4)), "5"),
            TypeError,
            r"hflip_boxes\(\): width must be a number, got str",
        ),
        (
            lambda: image.warp_affine(np.zeros((2, 3, 3), bool), np.eye(3)),
            TypeError,
            r"warp_affine\(\): images must be uint8 or float32",
        ),
        # sizes no memory holds: a MemoryError before the tap tables, not a hang building them
        (
            lambda: image.resize(np.zeros((1, 24, 24, 3), np.float32), (2**31, 2**31)),
            MemoryError,
            r"resize\(\): the output of shape \(1, 2147483648, 2147483648, 3\)",
        ),
        (
            lambda: image.resized_crop(GOOD, [0, 0, 2, 2], 2**40),
            MemoryError,
            r"resized_crop\(\): the output of shape",
        ),
        (
            lambda: image.warp_affine(GOOD, np.eye(3), size=(2**30, 2**30)),
            MemoryError,
            r"warp_affine\(\): the output of shape",
        ),
    ],
)
def test_rejections(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_flips_take_any_dtype():
    x = np.arange(24, dtype=np.float64).reshape(1, 2, 4, 3)
    np.testing.assert_array_equal(image.hflip(x), x[:, :, ::-1])
    np.testing.assert_array_equal(image.vflip(x[0]), x[0, ::-1])


@given(st.integers(1, 40), st.integers(1, 60), st.data())
def test_fixed_point_resample_tables_are_the_float_positions_rounded(n_in, n_out, data):
    # the native tables of the fixed-point bilinear path: the positions of _taps (float64)
    # rounded half up to 1/2048, the second tap clamped to the window's last pixel
    from cnnkit import _augment

    length = data.draw(st.integers(1, n_in))
    start = data.draw(st.integers(0, n_in - length))
    y = np.floor(
        image._linear_positions(
            start + (np.arange(n_out) + 0.5) * (length / n_out),
            np.floor(start),
            min(start + length, n_in) - 1,
        )
        * 2048
        + 0.5
    ).astype(np.int32)
    last = start + length - 1
    rows = np.empty((1, n_out, 3), np.int32)
    cols = np.empty((1, n_out), np.int32)
    starts, lengths = np.array([start], float), np.array([length], float)
    _augment.fixed_linear_taps(starts, lengths, n_in, rows, cols)
    _augment.fixed_linear_taps(starts, lengths, n_in, rows[:0], cols)
    np.testing.assert_array_equal(cols[0], y)
    np.testing.assert_array_equal(
        rows[0], np.stack([y >> 11, np.minimum((y >> 11) + 1, last), y & 2047], -1)
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.uint64])
def test_thread_scratch_rows_lie_on_cache_lines_of_their_own(dtype):
    for threads in (1, 2, 3):
        for width in (1, 15, 16, 17, 224, 1344, 1600):
            s = image.thread_scratch(threads, width, dtype)
            assert s.dtype == dtype and s.flags.c_contiguous and s.flags.writeable
            assert s.shape[0] == threads and width <= s.shape[1] < width + 64
            assert s.ctypes.data % 64 == 0 and s.strides[0] % 64 == 0
