"""cnnkit.augment: the Cython distortion kernels against cnnkit.reference, and the
transforms' contract: targets move with the pixels, per-image seeding (a batch equals
its images one by one), replay, thread-count independence, and the rejections."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
import cnnkit.augment as A
from cnnkit import _augment, image
from cnnkit import reference as ref

DTYPES = (np.uint8, np.float32)


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == np.uint8:
        assert np.abs(got.astype(int) - want.astype(int)).max(initial=0) <= 1
    else:
        scale = max(1.0, float(np.abs(want).max(initial=0)))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


@st.composite
def batches(draw, channels=None, max_side=9):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    c = channels or draw(st.integers(1, 4))
    shape = (
        draw(st.integers(0, 3)),
        draw(st.integers(1, max_side)),
        draw(st.integers(1, max_side)),
        c,
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (rng.random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    layout = draw(st.sampled_from(("contiguous", "fortran", "reversed_batch", "channels_first")))
    return layout_view(x, layout)


@given(batches(), st.data())
def test_colour_affine_matches_reference_and_saturates(x, data):
    n, c = len(x), x.shape[3]
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    scale = rng.uniform(-1, 3, (n, c))
    offset = rng.uniform(-300, 300, (n, c)) * (1 if x.dtype == np.uint8 else 1 / 255)
    got = A.colour_affine(x, scale, offset)
    assert_close(got, ref.colour_affine(x, scale, offset))


def test_colour_affine_uint8_equals_the_table_for_every_input():
    # uint8 takes an integer affine fitted to each image's table: every one of the 256
    # inputs must give the table's value, also for coefficients that put inputs exactly on
    # (or next to) a rounding boundary, and where the fit fails the table is used
    rng = np.random.default_rng(5)
    n = 400
    scale = rng.uniform(-3, 3, (n, 3))
    offset = rng.uniform(-300, 300, (n, 3))
    scale[:100] = np.round(scale[:100] * 8) / 8
    offset[:100] = np.round(offset[:100]) - 0.5
    offset[100:150] = np.nextafter(offset[:50], np.inf)
    scale[150:160] = [1e12, -1e12, 0.0]  # too large for int32: the table path
    x = np.broadcast_to(np.arange(256, dtype=np.uint8)[:, None], (n, 1, 256, 3))
    values = np.arange(256.0) * scale[..., None] + offset[..., None]
    table = np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8)
    got = A.colour_affine(np.ascontiguousarray(x), scale, offset)
    np.testing.assert_array_equal(got[:, 0], table.transpose(0, 2, 1))
    assert_close(got, ref.colour_affine(x, scale, offset))


@given(batches())
def test_add_noise_matches_reference(x):
    noise = np.random.default_rng(len(x)).normal(0, 80, x.shape).astype(np.float32)
    assert_close(A.add_noise(x, noise), ref.add_noise(x, noise))


@given(batches(channels=3), st.data())
def test_hsv_shift_matches_reference(x, data):
    n = len(x)
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    hue, sat, val = rng.uniform(-400, 400, n), rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    assert_close(A.hsv_shift(x, hue, sat, val), ref.hsv_shift(x, hue, sat, val))


def test_hsv_shift_by_zero_is_the_identity():
    x = (np.random.default_rng(5).random((2, 16, 16, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(A.hsv_shift(x), x)
    y = x.astype(np.float32) / 255
    np.testing.assert_allclose(A.hsv_shift(y), y, atol=1e-6)


def _jitter_draws(rng: np.random.Generator, n: int) -> tuple:
    """Factors around and far from 1 (clipping), hue over the whole circle, orders."""
    factors = [rng.uniform(0, 2.5, n) for _ in range(3)]
    hue = rng.uniform(-0.5, 0.5, n)
    order = np.array([rng.permutation(4) for _ in range(n)], np.int64).reshape(n, 4)
    return (*factors, hue, order)


@given(batches(channels=3), st.data())
def test_colour_jitter_matches_reference(x, data):
    draws = _jitter_draws(np.random.default_rng(data.draw(st.integers(0, 1000))), len(x))
    assert_close(A.colour_jitter(x, *draws), ref.colour_jitter(x, *draws))


def test_colour_jitter_clips_float_input_first():
    y = np.random.default_rng(12).uniform(-0.5, 1.5, (4, 9, 11, 3)).astype(np.float32)
    draws = _jitter_draws(np.random.default_rng(13), len(y))
    assert_close(A.colour_jitter(y, *draws), ref.colour_jitter(y, *draws))
    assert A.colour_jitter(y, *draws).min() >= 0 and A.colour_jitter(y, *draws).max() <= 1


def test_colour_jitter_identity_and_single_steps():
    x = (np.random.default_rng(6).random((2, 16, 16, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(A.colour_jitter(x), x)
    # brightness alone is a saturating scale; hue by a whole turn changes nothing
    want = np.floor(np.clip(x * 1.5, 0, 255) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(A.colour_jitter(x, brightness=1.5), want)
    np.testing.assert_array_equal(A.colour_jitter(x, hue=1.0), x)
    # contrast 0 leaves the mean grey of the image everywhere, saturation 0 each pixel's grey
    grey = x.astype(float) @ [0.2989, 0.587, 0.114]
    flat = A.colour_jitter(x, contrast=0.0).astype(float)
    np.testing.assert_allclose(
        flat, np.broadcast_to(grey.mean((1, 2))[:, None, None, None], x.shape), atol=0.5
    )
    np.testing.assert_allclose(
        A.colour_jitter(x, saturation=0.0), np.repeat(grey[..., None], 3, -1), atol=0.5
    )


def test_colour_kernels_do_not_depend_on_the_thread_count(restore_threads):
    x = (np.random.default_rng(8).random((3, 130, 90, 3)) * 255).astype(np.uint8)
    draws = _jitter_draws(np.random.default_rng(9), len(x))
    runs = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        runs.append((A.colour_jitter(x, *draws), A.hsv_shift(x, [30, -80, 200], 0.1, -0.2)))
    for got in runs[1:]:
        np.testing.assert_array_equal(got[0], runs[0][0])
        np.testing.assert_array_equal(got[1], runs[0][1])


def test_colour_kernels_are_identical_on_every_isa(restore_isa):
    """The AVX2 build of the colour loops gives the baseline build's bits."""
    from cnnkit import _core

    x = (np.random.default_rng(10).random((3, 21, 37, 3)) * 255).astype(np.uint8)
    y = x.astype(np.float32) / 255
    wide = np.random.default_rng(12).integers(0, 256, (2, 3, 71, 3), dtype=np.uint8)
    draws = _jitter_draws(np.random.default_rng(11), len(x))
    runs = []
    for isa in _core.available_isas():
        _core.set_isa(isa)
        runs.append(
            [
                A.colour_jitter(x, *draws),
                A.colour_jitter(y, *draws),
                A.hsv_shift(x, [30, -80, 200], 0.1, -0.2),
                A.hsv_shift(y, [30, -80, 200], 0.1, -0.2),
                A.colour_affine(x, [[0.9, 1.1, 1.2]], [[3.0, -2.0, 7.5]]),
                A.colour_affine(y, [[0.9, 1.1, 1.2]], [[0.1, -0.2, 0.3]]),
                A.GaussNoise(p=1)(image=x, seed=4)["image"],
                # half-way values (odd * 1.5) and saturation through the vector stores
                A.colour_jitter(wide, 1.5, 1.0, 1.0, 0.0),
                A.colour_jitter(wide, [3.0, 0.0], [0.0, 2.0], [2.5, 0.0], [0.25, -0.4]),
                A.hsv_shift(wide, [10, 170], [0.5, -1.0], [-0.9, 0.9]),
            ]
        )
    for run in runs[1:]:
        for got, want in zip(run, runs[0], strict=True):
            np.testing.assert_array_equal(got, want)


@given(
    st.tuples(st.integers(0, 3), st.integers(1, 12), st.integers(1, 12)),
    st.floats(0, 6),
    st.integers(0, 100),
)
def test_gaussian_blur_matches_reference(shape, sigma, seed):
    fields = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    taps = A.functional.gaussian_kernel(sigma)
    got = A.gaussian_blur(fields, sigma)
    np.testing.assert_allclose(got, ref.gaussian_blur(fields, taps), atol=1e-5)


def test_gaussian_blur_of_wide_fields_matches_reference():
    # rows wider than the 64-value vector blocks, with a remainder, and more taps than rows
    fields = np.random.default_rng(4).uniform(-1, 1, (2, 9, 150)).astype(np.float32)
    taps = A.functional.gaussian_kernel(5.0)
    got = A.gaussian_blur(fields, 5.0)
    np.testing.assert_allclose(got, ref.gaussian_blur(fields, taps), atol=1e-5)


@given(batches(), st.data())
def test_remap_matches_reference(x, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    dx = rng.uniform(-4, 4, x.shape[:3]).astype(np.float32)
    dy = rng.uniform(-4, 4, x.shape[:3]).astype(np.float32)
    interp = data.draw(st.sampled_from(("nearest", "bilinear")))
    border = data.draw(st.sampled_from(image.BORDER_MODES))
    got = image.remap(x, dx, dy, interp, border, 9.0)
    assert_close(got, ref.remap(x, dx, dy, interp, border, 9.0))


def test_pca_colour_fit_streams_and_matches_numpy():
    rng = np.random.default_rng(6)
    x = (rng.random((10, 8, 8, 3)) * 200 + np.array([10, 30, 50])).astype(np.uint8)
    whole = A.fit_pca_colour(x)
    streamed = A.fit_pca_colour([x[:3], (x[3:7], None), x[7:]])
    np.testing.assert_allclose(streamed.eigenvalues, whole.eigenvalues, rtol=1e-10)
    cov = np.cov((x.reshape(-1, 3) / 255.0).T, bias=True)
    np.testing.assert_allclose(whole.eigenvalues, np.linalg.eigvalsh(cov)[::-1], rtol=1e-9)
    np.testing.assert_allclose(whole.mean, x.reshape(-1, 3).mean(0) / 255, rtol=1e-12)
    p = whole.eigenvectors
    np.testing.assert_allclose(p.T @ cov @ p, np.diag(whole.eigenvalues), atol=1e-12)
    alphas = np.array([[0.1, -0.2, 0.05]])
    want = p @ (alphas[0] * whole.eigenvalues)
    np.testing.assert_allclose(A.functional.pca_colour_offsets(whole, alphas)[0], want)
    # the transform adds that offset (times 255 for uint8) to every pixel
    t = A.PCAColour(whole, alpha_std=0.1, p=1.0)
    y = np.full((4, 4, 3), 100, np.uint8)
    out = t(image=y, seed=0, return_params=True)
    shift = A.functional.pca_colour_offsets(whole, out["params"]["alphas"])[0] * 255
    want = np.broadcast_to(np.clip(np.floor(100 + shift + 0.5), 0, 255), y.shape)
    np.testing.assert_array_equal(out["image"], want)


def _pipeline() -> A.Compose:
    pca = A.fit_pca_colour((np.random.default_rng(0).random((2, 8, 8, 3))).astype(np.float32))
    return A.Compose(
        [
            A.HorizontalFlip(flip_pairs=[(0, 1)]),
            A.OneOf(
                [A.RandomResizedCrop((24, 28)), A.RandomCrop(24, 28), A.Resize(24, 28, "area")], p=1
            ),
            A.Rotate(limit=30, p=0.7, border_mode="reflect"),
            A.Affine(scale=(0.8, 1.2), translate_percent=0.1, shear=(-8, 8), p=0.5),
            A.SomeOf([A.RGBShift(), A.RandomBrightnessContrast(), A.HueSaturationValue()], n=2),
            A.GaussNoise(p=0.3),
            A.ColorJitter(p=0.5),
            A.PCAColour(pca, p=0.5),
            A.ElasticTransform(alpha=8, sigma=3, p=0.3),
            A.VerticalFlip(p=0.2),
        ]
    )


def _inputs(n: int, dtype=np.uint8):
    rng = np.random.default_rng(n)
    x = rng.random((n, 30, 36, 3))
    x = (x * 255).astype(np.uint8) if dtype == np.uint8 else x.astype(np.float32)
    boxes = [np.array([[2.0, 3.0, 20.0, 25.0], [10, 10, 30, 28]]) for _ in range(n)]
    labels = [np.array([4, 7]) for _ in range(n)]
    points = rng.uniform(1, 29, (n, 5, 2))
    return x, boxes, labels, points


@given(st.integers(0, 2**40), st.sampled_from(DTYPES))
def test_a_batch_equals_its_images_one_by_one_and_replays(seed, dtype):
    t = _pipeline()
    x, boxes, labels, points = _inputs(4, dtype)
    out = t(image=x, boxes=boxes, labels=labels, keypoints=points, seed=seed, return_params=True)
    for i, s in enumerate(A.image_seeds(seed, len(x))):
        one = t(image=x[i], boxes=boxes[i], labels=labels[i], keypoints=points[i], seed=s)
        np.testing.assert_array_equal(one["image"], out["image"][i])
        np.testing.assert_array_equal(one["boxes"], out["boxes"][i])
        np.testing.assert_array_equal(one["labels"], out["labels"][i])
        np.testing.assert_array_equal(one["keypoints"], out["keypoints"][i])
    again = t.replay(out["params"], image=x, boxes=boxes, labels=labels, keypoints=points)
    np.testing.assert_array_equal(again["image"], out["image"])
    same = t(image=x, boxes=boxes, labels=labels, keypoints=points, seed=seed)
    np.testing.assert_array_equal(same["image"], out["image"])


def test_results_do_not_depend_on_the_thread_count(restore_threads):
    t = _pipeline()
    x = (np.random.default_rng(1).random((6, 120, 150, 3)) * 255).astype(np.uint8)
    runs = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        runs.append(t(image=x, seed=11)["image"])
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def _dot_boxes(rng, h, w, n):
    """Images with one lit rectangle each and its box."""
    x = np.zeros((n, h, w, 1), np.uint8)
    boxes = []
    for k in range(n):
        x0, y0 = rng.integers(2, w // 2), rng.integers(2, h // 2)
        x1, y1 = x0 + rng.integers(3, w // 3), y0 + rng.integers(3, h // 3)
        x[k, y0:y1, x0:x1] = 255
        boxes.append(np.array([[x0, y0, x1, y1]], np.float64))
    return x, boxes


@pytest.mark.parametrize(
    "transform",
    [
        A.HorizontalFlip(p=1),
        A.VerticalFlip(p=1),
        A.Rotate(limit=(90, 90), p=1, interpolation="nearest"),
        A.Rotate(limit=(-90, -90), p=1, interpolation="nearest"),
        A.RandomCrop(30, 30),
        A.CenterCrop(24, 32),
        A.Resize(80, 40, "nearest"),
        A.Affine(scale=2.0, p=1, interpolation="nearest"),
    ],
)
def test_boxes_move_with_the_pixels(transform):
    rng = np.random.default_rng(2)
    x, boxes = _dot_boxes(rng, 40, 40, 8)
    out = transform(image=x, boxes=boxes, seed=4)
    for im_k, b in zip(out["image"], out["boxes"]):
        lit = np.argwhere(im_k[..., 0] == 255)
        if not len(lit):
            assert len(b) == 0 or (b[0, 2] - b[0, 0]) * (b[0, 3] - b[0, 1]) <= 1
            continue
        want = [lit[:, 1].min(), lit[:, 0].min(), lit[:, 1].max() + 1, lit[:, 0].max() + 1]
        np.testing.assert_allclose(b[0], want, atol=1e-9)


def test_flip_pairs_keep_left_and_right():
    x = np.zeros((10, 20, 3), np.uint8)
    points = np.array([[14.5, 3.5], [5.5, 3.5], [10.0, 6.0]])  # subject's left eye, right eye, nose
    out = A.HorizontalFlip(flip_pairs=[(0, 1)], p=1)(image=x, keypoints=points)
    np.testing.assert_array_equal(out["keypoints"], [[14.5, 3.5], [5.5, 3.5], [10.0, 6.0]])
    plain = A.HorizontalFlip(p=1)(image=x, keypoints=points)["keypoints"]
    np.testing.assert_array_equal(plain, [[5.5, 3.5], [14.5, 3.5], [10.0, 6.0]])


def test_min_visibility_drops_boxes_with_their_labels_and_flags_keypoints():
    x = np.zeros((20, 20, 3), np.uint8)
    boxes = np.array([[0, 0, 10, 10], [4, 4, 8, 8], [12, 0, 20, 4]], np.float32)
    labels = np.array([1, 2, 3])
    points = np.array([[1.0, 1.0], [15.0, 12.0]])
    t = A.Affine(translate_px=(-6, -6), p=1)
    out = t(image=x, boxes=boxes, labels=labels, keypoints=points, min_visibility=0.2)
    # after a shift by (-6, -6): box 0 keeps 16 of 100 (dropped), box 1 4 of 16 (kept),
    # box 2 nothing (dropped)
    np.testing.assert_array_equal(out["labels"], [2])
    np.testing.assert_array_equal(out["boxes"], [[0, 0, 2, 2]])
    assert out["boxes"].dtype == np.float32
    np.testing.assert_array_equal(out["keypoints_visible"], [False, True])
    np.testing.assert_array_equal(out["keypoints"], [[-5, -5], [9, 6]])


def test_a_warp_replayed_with_non_finite_parameters_is_rejected():
    x = np.zeros((2, 8, 8, 3), np.uint8)
    params = [{"angle": float("nan")}, {"angle": 1.0}]
    with pytest.raises(ValueError, match=r"Rotate\(\): the parameters must give finite maps"):
        A.Rotate(30, p=1).replay(params, image=x)


def test_random_resized_crop_windows_follow_scale_and_ratio():
    t = A.RandomResizedCrop(16, scale=(0.2, 0.5), ratio=(0.5, 2.0))
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(300):
        top, left, h, w = t.sample(rng, (100, 120))["window"]
        assert 0 <= top <= 100 - h and 0 <= left <= 120 - w
        areas.append(h * w / 12000)
        ratios.append(w / h)
    assert 0.19 <= min(areas) and max(areas) <= 0.51
    assert 0.45 <= min(ratios) and max(ratios) <= 2.1


def test_probability_zero_and_one():
    x, *_ = _inputs(5)
    np.testing.assert_array_equal(A.HorizontalFlip(p=0)(image=x, seed=1)["image"], x)
    np.testing.assert_array_equal(A.HorizontalFlip(p=1)(image=x, seed=1)["image"], x[:, :, ::-1])
    mixed = A.HorizontalFlip(p=0.5)(image=x, seed=1, return_params=True)
    for k, rec in enumerate(mixed["params"]):
        np.testing.assert_array_equal(mixed["image"][k], x[k, :, ::-1] if rec is not None else x[k])


def test_normalize_outputs_float32():
    x, *_ = _inputs(2)
    out = A.Normalize(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(image=x)["image"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (x / 255.0 - 0.5) / 0.25, atol=1e-5)


def test_empty_batch_gives_empty_batch():
    x = np.zeros((0, 30, 36, 3), np.uint8)
    out = _pipeline()(image=x, boxes=[], labels=[], keypoints=np.zeros((0, 5, 2)), seed=0)
    assert out["image"].shape[0] == 0 and out["boxes"] == [] and out["keypoints"].shape[0] == 0


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: A.HorizontalFlip(p=1.5),
            ValueError,
            r"HorizontalFlip\(\): p must be in \[0, 1\], got 1.5",
        ),
        (lambda: A.Rotate(p="1"), TypeError, r"Rotate\(\): p must be a number, got str"),
        (
            lambda: A.ElasticTransform(sigma=-1),
            ValueError,
            r"ElasticTransform\(\): sigma must be a finite number >= 0, got -1",
        ),
        (
            lambda: A.ElasticTransform(alpha=-2),
            ValueError,
            r"ElasticTransform\(\): alpha must be a finite number >= 0",
        ),
        (lambda: A.Rotate(limit=(10, -10)), ValueError, r"Rotate\(\): limit must have low <= high"),
        (
            lambda: A.Rotate(border_mode="wrap"),
            ValueError,
            r"Rotate\(\): border_mode must be one of constant, reflect, replicate",
        ),
        (
            lambda: A.RandomCrop(50, 10)(image=np.zeros((40, 40, 3), np.uint8)),
            ValueError,
            r"RandomCrop\(\): the crop 50x10 \(height x width\) must fit in the 40x40 image",
        ),
        (
            lambda: A.HorizontalFlip(p=1)(image=np.zeros((4, 4, 3))),
            TypeError,
            r"HorizontalFlip\(\): image must be uint8 or float32 .*got float64",
        ),
        (
            lambda: A.HorizontalFlip(p=1)(image=np.zeros((4, 4), np.uint8)),
            ValueError,
            r"HorizontalFlip\(\): image must have shape \(H, W, C\) or \(N, H, W, C\)",
        ),
        (
            lambda: A.HorizontalFlip(flip_pairs=[(0, 5)], p=1)(
                image=np.zeros((4, 4, 3), np.uint8), keypoints=np.zeros((3, 2))
            ),
            ValueError,
            r"HorizontalFlip\(\): flip_pairs index 5 is out of range for 3 points",
        ),
        (
            lambda: A.HorizontalFlip()(
                image=np.zeros((4, 4, 3), np.uint8), boxes=np.zeros((2, 4)), labels=[1]
            ),
            ValueError,
            r"HorizontalFlip\(\): labels must have one entry per box, got 1 for 2",
        ),
        (
            lambda: A.HorizontalFlip()(
                image=np.zeros((2, 4, 4, 3), np.uint8), boxes=[np.zeros((1, 4))]
            ),
            ValueError,
            r"HorizontalFlip\(\): boxes for a batch of 2 must be a list of 2 entries",
        ),
        (
            lambda: A.HorizontalFlip()(image=np.zeros((4, 4, 3), np.uint8), boxes=np.zeros((1, 3))),
            ValueError,
            r"HorizontalFlip\(\): boxes must have shape \(K, 4\)",
        ),
        (
            lambda: A.HorizontalFlip()(image=np.zeros((4, 4, 3), np.uint8), min_visibility=2),
            ValueError,
            r"min_visibility must be in \[0, 1\]",
        ),
        (
            lambda: A.HorizontalFlip()(image=np.zeros((2, 4, 4, 3), np.uint8), seed=[1]),
            TypeError,
            r"HorizontalFlip\(\): seed must be an int >= 0, None or one int >= 0 per image \(2\)",
        ),
        (
            lambda: A.HorizontalFlip()(image=np.zeros((4, 4, 3), np.uint8), seed=-1),
            ValueError,
            r"HorizontalFlip\(\): seed must be >= 0",
        ),
        (
            lambda: A.Compose([A.HorizontalFlip(), "flip"]),
            TypeError,
            r"Compose\(\): transforms must be a list of cnnkit.augment transforms",
        ),
        (
            lambda: A.SomeOf([A.HorizontalFlip()], n=2),
            ValueError,
            r"SomeOf\(\): n must be at most 1 without replace",
        ),
        (
            lambda: A.PCAColour(np.eye(3)),
            TypeError,
            r"PCAColour\(\): pca must be the result of fit_pca_colour\(\)",
        ),
        (
            lambda: A.HueSaturationValue(p=1)(image=np.zeros((4, 4, 1), np.uint8)),
            ValueError,
            r"HueSaturationValue\(\): image must have 3 channels, got 1",
        ),
        (
            lambda: A.Compose([A.RandomCrop(2, 2, p=0.5)])(
                image=np.zeros((4, 5, 5, 3), np.uint8), seed=0
            ),
            ValueError,
            r"RandomCrop\(\): in a batch, a transform that changes the image size",
        ),
        (
            lambda: A.gaussian_blur(np.zeros((1, 3, 3)), -1.0),
            ValueError,
            r"gaussian_blur\(\): sigma must be a finite number >= 0",
        ),
        (
            lambda: A.colour_affine(np.zeros((2, 3, 3, 3), np.uint8), np.ones((3, 3))),
            ValueError,
            r"colour_affine\(\): scale must broadcast to \(2, 3\)",
        ),
        (
            lambda: A.ColorJitter(hue=0.7),
            ValueError,
            r"ColorJitter\(\): hue must lie in \[-0.5, 0.5\]",
        ),
        (
            lambda: A.ColorJitter(brightness=(-1, 2)),
            ValueError,
            r"ColorJitter\(\): brightness must be a finite number >= 0",
        ),
        (
            lambda: A.ColorJitter(p=1)(image=np.zeros((4, 4, 1), np.uint8)),
            ValueError,
            r"ColorJitter\(\): image must have 3 channels, got 1",
        ),
        (
            lambda: A.colour_jitter(np.zeros((2, 3, 3, 3), np.uint8), order=(0, 1, 1, 3)),
            ValueError,
            r"colour_jitter\(\): order must be a permutation of 0, 1, 2, 3",
        ),
        (
            lambda: A.colour_jitter(np.zeros((3, 3, 3), np.uint8), contrast=-0.5),
            ValueError,
            r"colour_jitter\(\): contrast must be finite factors >= 0",
        ),
        (
            lambda: A.RandomResizedCrop(32, 32),
            TypeError,
            r"RandomResizedCrop\(\): scale must be a \(low, high\) pair, got 32",
        ),
        (
            lambda: A.GaussNoise(std_range=0.1),
            TypeError,
            r"GaussNoise\(\): std_range must be a \(low, high\) pair, got 0.1",
        ),
        (
            lambda: A.fit_pca_colour(np.zeros((1, 1, 3))),
            ValueError,
            r"fit_pca_colour\(\): images must hold at least 2 pixels",
        ),
    ],
)
def test_rejections(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@given(batches(), st.integers(0, 1000))
def test_gaussian_noise_is_the_table_lookup_added(x, seed):
    std, mean = np.linspace(0.5, 40, len(x)), np.linspace(-3, 3, len(x))
    got = A.functional.add_gaussian_noise(x, std, mean, np.random.default_rng(seed))
    index = np.frombuffer(np.random.default_rng(seed).bytes(2 * x.size), np.uint16)
    table = A.functional.normal_table()[index.reshape(x.shape)].astype(np.float64)
    noise = mean[:, None, None, None] + std[:, None, None, None] * table
    assert_close(got, ref.add_noise(x, noise))


@pytest.mark.parametrize(
    "bits", [np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox]
)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 1001])
@pytest.mark.parametrize("half_kept", [False, True])
def test_random_uint16_is_rng_bytes_and_leaves_the_same_state(bits, n, half_kept):
    ours, theirs = np.random.Generator(bits(n)), np.random.Generator(bits(n))
    if half_kept:  # one 32-bit draw leaves PCG64 holding the high half of its output
        ours.integers(0, 2**32, dtype=np.uint32)
        theirs.integers(0, 2**32, dtype=np.uint32)
    got = A.functional.random_uint16(ours, n)
    assert got.dtype == np.uint16 and got.shape == (n,)
    np.testing.assert_array_equal(got, np.frombuffer(theirs.bytes(2 * n), np.uint16))
    draws = (ours.integers(0, 2**32, 3, dtype=np.uint32), ours.random())
    want = (theirs.integers(0, 2**32, 3, dtype=np.uint32), theirs.random())
    np.testing.assert_array_equal(draws[0], want[0])
    assert draws[1] == want[1]


def test_gaussian_noise_statistics():
    table = A.functional.normal_table()
    assert abs(table.mean()) < 1e-6 and abs(table.std() - 1) < 1e-3
    x = np.full((1, 200, 200, 3), 0.5, np.float32)
    noisy = A.functional.add_gaussian_noise(x, 0.1, 0.0, np.random.default_rng(0)) - 0.5
    assert abs(noisy.mean()) < 2e-3 and abs(noisy.std() - 0.1) < 2e-3


@given(st.lists(st.integers(0, 2**64 - 1), max_size=6), st.integers(0, 2**70))
def test_seeded_generators_are_default_rng_bit_for_bit(seeds, big):
    from cnnkit._random import seeded_generators

    # the batch path hashes all seeds at once; a seed of 2**64 or more takes default_rng
    for batch in (seeds, [*seeds, big], [2**32 - 1, 2**32, 0]):
        made = seeded_generators(batch)
        assert len(made) == len(batch)
        for g, s in zip(made, batch):
            want = np.random.default_rng(s)
            assert g.bit_generator.state == want.bit_generator.state
            np.testing.assert_array_equal(g.random(3), want.random(3))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("flip", [A.HorizontalFlip, A.VerticalFlip])
def test_a_flip_of_some_images_in_one_pass_equals_one_by_one(flip, dtype, restore_threads):
    # p = 0.5: the native pass flips the drawn images and copies the others
    x = np.random.default_rng(3).random((9, 5, 7, 3)).astype(dtype) * 200
    x = x.astype(dtype)
    t = flip(p=0.5)
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        out = t(image=x, seed=11, return_params=True)
        drawn = [p is not None for p in out["params"]]
        assert 0 < sum(drawn) < len(x)
        for i, s in enumerate(A.image_seeds(11, len(x))):
            np.testing.assert_array_equal(t(image=x[i], seed=s)["image"], out["image"][i])
            want = (np.flip(x[i], 1 if flip is A.HorizontalFlip else 0)) if drawn[i] else x[i]
            np.testing.assert_array_equal(out["image"][i], want)


pcg64 = pytest.mark.skipif(
    not _augment.has_pcg64(), reason="this build has no native PCG64 (no __int128)"
)


@given(st.integers(0, 2**70), st.integers(0, 40))
def test_image_seeds_are_seed_sequence_states(seed, n):
    # made natively below 2**64 (NumPy's SeedSequence hashing), by NumPy above
    got = A.image_seeds(seed, n)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, np.random.SeedSequence(seed).generate_state(n, np.uint64))


@pcg64
@given(st.integers(0, 2**64 - 1), st.integers(0, 5000), st.integers(0, 41))
def test_native_pcg64_is_default_rngs_stream(seed, start, count):
    words = np.empty((1, 4), np.uint64)
    _augment.seed_states(np.array([seed], np.uint64), words)
    got = np.empty(count, np.uint64)
    _augment.pcg64_outputs(words[0], start, got)
    want = np.random.default_rng(seed).bit_generator.random_raw(start + count)[start:]
    np.testing.assert_array_equal(got, want)


@pcg64
@given(batches(max_side=40), st.lists(st.integers(0, 2**64 - 1), min_size=3, max_size=3))
def test_seeded_gaussian_noise_is_the_python_draws_at_any_thread_count(x, seeds):
    # the kernel makes each image's draws itself, band by band after a jump ahead: the
    # same bits as random_uint16(default_rng(seed)) drawn in Python, for any band
    # alignment (odd row lengths) and thread count
    n = len(x)
    seeds = np.array(seeds[:n], np.uint64)
    std = np.linspace(0.5, 40, n).astype(np.float32) / (255 if x.dtype == np.float32 else 1)
    mean = np.linspace(-3, 3, n).astype(np.float32)
    size = x[0].size if n else 0
    draws = np.array(
        [A.functional.random_uint16(np.random.default_rng(int(s)), size) for s in seeds],
        np.uint16,
    ).reshape(x.shape)
    want = A.functional.add_gaussian_draws(np.ascontiguousarray(x), std, mean, draws)
    before = cnnkit.get_num_threads()
    try:
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            got = A.functional.add_gaussian_seeded(np.ascontiguousarray(x), std, mean, seeds)
            np.testing.assert_array_equal(got, want)
    finally:
        cnnkit.set_num_threads(before)


@pcg64
@given(
    st.tuples(st.integers(0, 3), st.integers(1, 9), st.integers(1, 9)),
    st.floats(0, 4),
    st.floats(0, 20),
    st.integers(0, 2**63 - 1),
)
def test_seeded_elastic_fields_are_the_python_draws_at_any_thread_count(shape, sigma, alpha, seed):
    # the kernel draws each image's two fields itself (the second starts at an odd float
    # of the stream when H W is odd), blurs and scales them: the same bits as
    # elastic_fields(default_rng(seed)) image by image, at any thread count
    n, h, w = shape
    seeds = (np.arange(n, dtype=np.uint64) * 7919 + np.uint64(seed)) % np.uint64(2**63)
    want = [A.elastic_fields(np.random.default_rng(int(s)), (h, w), alpha, sigma) for s in seeds]
    before = cnnkit.get_num_threads()
    try:
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            dx, dy = A.functional.elastic_fields_seeded(seeds, (h, w), alpha, sigma)
            assert dx.shape == dy.shape == (n, h, w)
            for k in range(n):
                np.testing.assert_array_equal(dx[k], want[k][0])
                np.testing.assert_array_equal(dy[k], want[k][1])
    finally:
        cnnkit.set_num_threads(before)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_uint8_colour_tables_on_every_isa_and_thread_count(channels, restore_isa, restore_threads):
    # images larger than the lookup's task span (12,288 bytes) and rows that are not whole
    # 64-pixel blocks; channels sharing a table, channels each with their own, tables
    # that are saturating shifts (also constant ones), and a mix of shifts and others
    from cnnkit import _core

    rng = np.random.default_rng(channels)
    x = rng.integers(0, 256, (5, 67, 71, channels), dtype=np.uint8)
    scale = rng.uniform(-2, 3, (5, channels))
    offset = rng.uniform(-200, 200, (5, channels))
    scale[1], offset[1] = 1.25, -20.5  # one table for every channel
    scale[2], offset[2] = 1.0, [-20.5, 35.49, 300.0, 7.0][:channels]  # shifts
    scale[3], offset[3] = 1.0, [-300.0, 255.5, -254.6, 0.0][:channels]
    scale[4, 1:], offset[4, 1:] = 1.0, 12.0  # the first channel is no shift
    values = np.arange(256.0) * scale[..., None] + offset[..., None]
    table = np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8)
    want = table[np.arange(5)[:, None, None, None], np.arange(channels), x]
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            np.testing.assert_array_equal(A.colour_affine(x, scale, offset), want)


_PCA = A.fit_pca_colour(np.random.default_rng(5).random((2, 6, 6, 3)).astype(np.float32))


@pytest.mark.parametrize(
    "transform",
    [
        A.RandomBrightnessContrast(p=0.6),
        A.ColorJitter(p=0.6),
        A.ColorJitter((0.5, 0.5), 0.3, (0.8, 1.5), (-0.2, 0.1), p=1),
        A.PCAColour(_PCA, p=0.5),
        A.PCAColour(_PCA, alpha_std=0.0, p=1),
        A.RandomBrightnessContrast((0.1, 0.1), (-0.3, 0.2), p=1),
        A.RGBShift(10, (0, 0), (-5, 30), p=0.7),
        A.HueSaturationValue(p=0.5),
        A.GaussNoise(p=0.5),
        A.GaussNoise(mean_range=(-0.1, 0.2), p=1),
        A.Rotate(30, p=0.5),
        A.Affine(shear=(-20, 20), p=1),
        A.Affine(scale=(0.8, 1.2), translate_percent=0.1, rotate=10, shear=5, p=0.7),
        A.Affine(translate_px=(-3, 4), p=1),
        A.RandomResizedCrop(5),
        A.RandomResizedCrop((4, 6), scale=(0.5, 0.6), ratio=(0.2, 5.0)),
        A.RandomResizedCrop(3, scale=(2.0, 3.0), ratio=(2.0, 3.0)),  # never fits: fallback
        A.RandomResizedCrop(3, scale=(2.0, 3.0), ratio=(0.1, 0.2)),
        A.Compose([A.RandomResizedCrop(6), A.ColorJitter(p=0.5), A.RandomResizedCrop(4)]),
        A.ElasticTransform(alpha=3, sigma=2, p=0.5),
        A.Compose(
            [
                A.RandomBrightnessContrast(p=0.5),
                A.HueSaturationValue(p=0.5),
                A.ColorJitter(p=0.5),  # draws in Python from the natively advanced streams
                A.RGBShift(p=0.5),
            ],
            p=0.8,
        ),
    ],
)
def test_native_parameter_draws_are_the_generators_draws(transform):
    # a batch draws the parameters of uniform-only transforms natively from the PCG64
    # states; the same records and images as numpy Generators drawing in Python
    from cnnkit.augment.transforms import _Targets, image_seeds

    x = (np.random.default_rng(3).random((9, 12, 10, 3)) * 255).astype(np.uint8)
    got = transform(image=x, seed=21, return_params=True)
    data = _Targets(x, None, None, None, 0.0, "test")
    rngs = [np.random.default_rng(s) for s in image_seeds(21, len(x))]
    want = transform._run(data, rngs, np.ones(len(x), bool), None)
    assert got["params"] == want
    np.testing.assert_array_equal(got["image"], data.images)
    one = transform(image=x[4], seed=int(image_seeds(21, len(x))[4]), return_params=True)
    assert one["params"] == want[4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "transform",
    [
        A.RGBShift(p=1),
        A.RGBShift(10, (0, 0), (-5, 30), p=0.5),
        A.RandomBrightnessContrast(p=1),
        A.RandomBrightnessContrast(p=0.5),
        A.RandomBrightnessContrast(brightness_by_max=False, p=1),
        A.PCAColour(_PCA, p=1),
        A.PCAColour(_PCA, alpha_std=0.5, p=0.5),
        A.ColorJitter(0.2, 0.2, 0.2, 0.1, p=1),
        A.ColorJitter(p=0.5),
        A.RandomResizedCrop(5),
        A.RandomResizedCrop((4, 6), scale=(0.5, 0.6), ratio=(0.2, 5.0)),
        A.RandomResizedCrop((12, 10), p=0.5),  # the same size: images may be left alone
        A.HorizontalFlip(p=1),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=1),
        A.Resize(7, 13),
        A.Resize(6, 5, "area"),
        A.Resize(12, 10, "nearest", p=0.5),  # the same size: images may be left alone
        A.HueSaturationValue(p=1),
        A.HueSaturationValue(10, (0, 40), 5, p=0.5),
        A.HueSaturationValue((-725, 725), 30, 20, p=1),  # hue shifts of several turns
        A.HueSaturationValue((-360, -360), 0, (7, 7), p=1),  # a whole turn: -0.0 sixths
        A.HueSaturationValue((180, 180), 0, 0, p=1),
        A.Rotate(30, p=1),
        A.Rotate((-10, 50), "nearest", "reflect", p=1),
        A.Rotate(20, border_mode="replicate", fill=7, p=0.5),
        A.Affine(scale=(0.8, 1.2), translate_percent=0.1, rotate=15, shear=(-20, 20), p=1),
        A.Affine(translate_px=(-3, 4), shear=10, p=1),
        A.GaussNoise(p=1),
        A.GaussNoise((0.1, 0.3), (-0.1, 0.1), p=0.5),
    ],
)
def test_the_batch_path_gives_the_general_paths_images(transform, dtype, restore_threads):
    # a batch with no targets and no records skips the per-image records (Transform._batch)
    x = (np.random.default_rng(4).random((9, 12, 10, 3)) * 255).astype(np.uint8)
    x = x if dtype == np.uint8 else (x / 255).astype(np.float32)
    seeds = A.image_seeds(33, len(x))
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        for seed in (33, np.int64(33), seeds, (seeds >> 1).astype(np.int64)):
            for images in (x, x[:, ::-1, :, ::-1]):  # and a non-contiguous view
                want = transform(image=images, seed=seed, return_params=True)["image"]
                got = transform(image=images, seed=seed)["image"]
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
    assert transform(image=x)["image"].shape[0] == len(x)  # seed None: fresh draws
    for bad in ([1, 2], -seeds.astype(np.int64) - 1):
        with pytest.raises(TypeError, match=r"seed must be"):
            transform(image=x, seed=bad)
    with pytest.raises(ValueError, match=r"seed must be >= 0"):
        transform(image=x, seed=-1)


@pytest.mark.parametrize(
    "transform",
    [
        A.RGBShift(p=1),
        A.RandomBrightnessContrast(p=0.5),
        A.PCAColour(_PCA, alpha_std=0.5, p=1),
        A.HueSaturationValue(p=1),
        A.Rotate(30, p=1),
        A.Affine(scale=(0.8, 1.2), translate_percent=0.1, rotate=15, shear=(-20, 20), p=1),
        A.GaussNoise(mean_range=(-0.1, 0.1), p=1),
    ],
)
def test_the_batch_path_is_the_general_path_on_every_isa_and_thread_count(
    transform, restore_isa, restore_threads
):
    # a batch large enough to be split over threads (the lookups' task spans, the warps'
    # row bands), the general path at one thread as the reference
    from cnnkit import _core

    x = (np.random.default_rng(6).random((5, 70, 66, 3)) * 255).astype(np.uint8)
    cnnkit.set_num_threads(1)
    want = transform(image=x, seed=8, return_params=True)["image"]
    for isa in _core.available_isas():
        _core.set_isa(isa)
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            np.testing.assert_array_equal(transform(image=x, seed=8)["image"], want)


def test_a_hue_that_overflows_is_refused_on_the_batch_path_too():
    x = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"hue must be finite"):
        A.HueSaturationValue((-1e308, 1e308), p=1)(image=x, seed=0)


def test_warp_inverses_are_the_python_maps_inverted():
    # the warp transforms' batch path builds its maps natively: image._affine_map's bits
    from cnnkit import _augment
    from cnnkit.image import _affine_map, _invert_affines

    rng = np.random.default_rng(12)
    params = np.column_stack(
        [
            rng.uniform(-400, 400, 300),
            rng.uniform(0.1, 3, 300),
            rng.uniform(0.1, 3, 300),
            rng.uniform(-60, 60, 300),
            rng.uniform(-60, 60, 300),
            rng.uniform(-50, 50, 300),
            rng.uniform(-50, 50, 300),
        ]
    )
    params[:100, 2], params[:100, 4] = params[:100, 1], 0.0  # one scale, shear x only
    maps = np.array(
        [
            _affine_map((33.5, 20.0), a, (sx, sy), (hx, hy), (tx, ty))
            for a, sx, sy, hx, hy, tx, ty in params
        ]
    ).reshape(-1, 2, 3)
    got = np.empty_like(maps)
    assert _augment.warp_inverses(params, 33.5, 20.0, got) == -1
    np.testing.assert_array_equal(got, _invert_affines(maps, "test"))
    # the first map that is not finite, or not invertible: its index, as the general path
    # raises there
    for bad, value in ((1, np.inf), (3, np.nan), (2, 0.0)):
        odd = params[:5].copy()
        odd[3 if bad == 3 else 2, bad] = value
        assert _augment.warp_inverses(odd, 33.5, 20.0, np.empty((5, 2, 3))) == (
            3 if bad == 3 else 2
        )


def test_normal_from_unit_is_the_normal_quantile():
    import statistics

    normal = statistics.NormalDist()
    u = np.random.default_rng(8).random(20000)
    u = np.concatenate([u, [2.0**-53, 1e-12, 0.075, 0.0749999, 0.925, 0.5, 1 - 2.0**-53]])
    got = np.array([_augment.normal_from_unit(v) for v in u])
    want = np.array([normal.inv_cdf(v) for v in u])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300)
    # 0 (probability 2**-53) is taken as 2**-54: finite
    assert _augment.normal_from_unit(0.0) == pytest.approx(normal.inv_cdf(2.0**-54))


def test_pca_colour_draws_normal_alphas():
    import statistics

    t = A.PCAColour(_PCA, alpha_std=0.1, p=1)
    x = np.zeros((3000, 1, 1, 3), np.float32)
    alphas = np.array([r["alphas"] for r in t(image=x, seed=2, return_params=True)["params"]])
    assert abs(alphas.mean()) < 0.005 and abs(alphas.std() - 0.1) < 0.004
    # Kolmogorov-Smirnov distance to N(0, 0.1) (0.0176 is its 1% critical value at 9000)
    values = np.sort(alphas.ravel())
    cdf = np.array([statistics.NormalDist(0, 0.1).cdf(v) for v in values])
    k = np.arange(1, len(values) + 1) / len(values)
    assert max(np.abs(cdf - k).max(), np.abs(cdf - (k - 1 / len(values))).max()) < 0.0176


@pytest.mark.parametrize(
    "transform",
    [
        A.RandomResizedCrop((64, 52)),  # windows that shrink and windows that grow
        A.RandomResizedCrop((40, 90), scale=(0.01, 0.05), ratio=(0.3, 3.0)),  # tiny windows
        A.RandomResizedCrop(72, p=0.5),  # images left alone (the same size): the general path
        A.RandomResizedCrop(72, scale=(1.0, 1.0), ratio=(1.0, 1.0)),  # whole images: crops
    ],
)
def test_the_fused_resized_crop_batch_gives_the_general_paths_images(
    transform, restore_threads, monkeypatch
):
    # RandomResizedCrop's one native call (draws, tables, rows split over the threads by
    # cost) on uint8 RGB batches large enough for several threads, at 1 to 3 of them
    if not image._fixed_linear(np.zeros((1, 1, 1, 3), np.uint8)):
        pytest.skip("the fused call runs on the avx512 path only")
    loops = image.augment_loops("avx512")
    calls = []
    fused = loops.resized_crops_fixed3

    def counted(*args):
        calls.append(fused(*args))
        return calls[-1]

    monkeypatch.setattr(loops, "resized_crops_fixed3", counted)
    x = np.random.default_rng(5).integers(0, 256, (7, 72, 72, 3), dtype=np.uint8)
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        for seed in (0, 9):
            for images in (x, x[:, ::-1, ::-1]):
                want = transform(image=images, seed=seed, return_params=True)["image"]
                np.testing.assert_array_equal(transform(image=images, seed=seed)["image"], want)
    assert len(calls) == 12 and len(set(calls)) == 1  # the same status every time
    assert calls[0] == (1 if transform.p < 1 else 2 if transform.scale == (1.0, 1.0) else 0)


def test_the_fused_resized_crop_splits_any_batch_over_any_thread_count():
    # more threads than rows (empty shares), shares that start inside an image and one
    # image: every split gives the one-thread bytes (the integer passes are exact)
    if not image._fixed_linear(np.zeros((1, 1, 1, 3), np.uint8)):
        pytest.skip("the fused call runs on the avx512 path only")
    from cnnkit.augment.transforms import _batch_states

    fused = image.augment_loops("avx512").resized_crops_fixed3
    t = A.RandomResizedCrop((3, 37), scale=(0.05, 1.0))
    x = np.random.default_rng(6).integers(0, 256, (5, 30, 41, 3), dtype=np.uint8)
    for n in (1, 2, 5):
        want = t(image=x[:n], seed=3, return_params=True)["image"]
        for threads in (1, 2, 3, 4, 7, 16):
            out = np.zeros((n, 3, 37, 3), np.uint8)
            windows = np.empty((n, 4), np.int64)
            scratch = np.empty((threads, _augment.fixed3_scratch_size(37)), np.int32)
            status = fused(
                _batch_states(3, n), 1.0, *t._draw_args, x[:n], out, windows, scratch, threads
            )
            assert status == 0
            np.testing.assert_array_equal(out, want)
    for threads in (17, 0):  # more threads than scratch rows; none
        with pytest.raises(ValueError, match=r"resized_crops_fixed3\(\): inconsistent shapes"):
            fused(
                _batch_states(3, 2),
                1.0,
                *t._draw_args,
                x[:2],
                out[:2],
                windows[:2],
                scratch,
                threads,
            )


@pytest.mark.skipif(
    not image._fixed_linear(np.zeros((1, 1, 1, 3), np.uint8)),
    reason="the fused call runs on the avx512 path only",
)
@pytest.mark.parametrize("seed", [3, np.arange(20, 29, dtype=np.uint64)])
def test_the_fused_resized_crop_makes_its_own_generators_windows_and_scratch(seed):
    # the batch call's form (generators from the seed, windows and scratch made natively)
    # gives the explicit form's bytes and windows at any thread count, for a batch seed
    # and for one seed per image; the rows that a thread takes over from another (shares
    # claimed from their far end) change no byte
    from cnnkit.augment.transforms import _batch_seeds, _batch_states

    t = A.RandomResizedCrop((11, 37), scale=(0.05, 1.0))
    fused = image.augment_loops("avx512").resized_crops_fixed3
    x = np.random.default_rng(8).integers(0, 256, (9, 30, 41, 3), dtype=np.uint8)
    want = np.zeros((9, 11, 37, 3), np.uint8)
    windows = np.empty((9, 4), np.int64)
    args = (t.p, *t._draw_args, x, want)
    assert fused(_batch_states(seed, 9), *args, windows, None, 1) == 0
    for threads in (1, 2, 3, 5, 16):
        out = np.zeros_like(want)
        drawn = np.zeros_like(windows)
        kept = (t.p, *t._draw_args, x, out)
        assert fused(None, *kept, drawn, None, threads, *_batch_seeds(seed, 9)) == 0
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(drawn, windows)
        out[:] = 0
        assert fused(None, *kept, None, None, threads, *_batch_seeds(seed, 9)) == 0
        np.testing.assert_array_equal(out, want)
    general = t(image=x, seed=seed, return_params=True)
    np.testing.assert_array_equal(want, general["image"])
    np.testing.assert_array_equal(windows, [p["window"] for p in general["params"]])
    np.testing.assert_array_equal(t(image=x, seed=seed)["image"], want)
    with pytest.raises(ValueError, match=r"resized_crops_fixed3\(\): inconsistent shapes"):
        fused(None, t.p, *t._draw_args, x, want, None, None, 2)  # no seeds for the generators
