"""The landmark dataset and ``flip_horizontal``: layout, determinism, points on the
drawn features, semantic sides, and a flip that moves points exactly with the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.datasets import FLIP_PAIRS, LANDMARK_NAMES, landmarks
from cnnkit.detection.landmarks import flip_horizontal


def test_landmarks_layout():
    images, points = landmarks(40, image_size=(48, 64), seed=1)
    assert images.shape == (40, 48, 64, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert points.shape == (40, len(LANDMARK_NAMES), 2) and points.dtype == np.float32
    assert np.all((points[..., 0] > 0) & (points[..., 0] < 64))
    assert np.all((points[..., 1] > 0) & (points[..., 1] < 48))
    assert LANDMARK_NAMES == ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    assert landmarks(0).images.shape == (0, 48, 48, 3)


def test_landmarks_deterministic():
    a, b = landmarks(10, seed=4), landmarks(10, seed=np.random.default_rng(4))
    c = landmarks(10, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)
    assert not np.array_equal(a.images, c.images)


def test_landmarks_sides_and_order():
    """Subject's left is the image's right; eyes above the nose above the mouth."""
    _, p = landmarks(300, seed=2)
    assert np.all(p[:, 0, 0] > p[:, 1, 0])  # left eye right of right eye
    assert np.all(p[:, 3, 0] > p[:, 4, 0])
    eyes_y = p[:, :2, 1].mean(1)
    mouth_y = p[:, 3:, 1].mean(1)
    assert np.all(eyes_y < p[:, 2, 1]) and np.all(p[:, 2, 1] < mouth_y)


def test_landmarks_vary():
    _, p = landmarks(300, seed=3)
    # Relative layout varies, not only position and scale.
    eye_span = p[:, 0, 0] - p[:, 1, 0]
    mouth_span = p[:, 3, 0] - p[:, 4, 0]
    assert np.std(mouth_span / eye_span) > 0.05
    tilt = np.arctan2(p[:, 0, 1] - p[:, 1, 1], p[:, 0, 0] - p[:, 1, 0])
    assert tilt.min() < -0.15 and tilt.max() > 0.15


def test_eye_points_lie_on_the_eyes():
    """The pixel under each eye point is the dark eye colour, darker than the face."""
    images, p = landmarks(200, seed=6)
    for image, pts in zip(images, p, strict=True):
        cx, cy = pts[:2].mean(0)  # between the eyes: skin
        skin = image[int(cy), int(cx)].max()
        for x, y in pts[:2]:
            assert image[int(y), int(x)].max() < skin - 0.2


def test_flip_twice_is_identity():
    images, points = landmarks(20, seed=7)
    f_images, f_points = flip_horizontal(*flip_horizontal(images, points, FLIP_PAIRS), FLIP_PAIRS)
    np.testing.assert_array_equal(f_images, images)
    np.testing.assert_allclose(f_points, points, atol=1e-5)


def test_flip_moves_points_with_pixels():
    """A dot drawn at each point's pixel sits at the flipped point's pixel after the flip."""
    rng = np.random.default_rng(8)
    n, h, w, num = 30, 13, 17, 6
    points = np.stack([rng.uniform(0, w, (n, num)), rng.uniform(0, h, (n, num))], -1)
    pairs = ((0, 3), (5, 1))
    for k in range(num):
        images = np.zeros((n, h, w, 1), np.float32)
        cols = np.floor(points[:, k, 0]).astype(int)
        rows = np.floor(points[:, k, 1]).astype(int)
        images[np.arange(n), rows, cols] = 1.0
        f_images, f_points = flip_horizontal(images, points, pairs)
        new_k = {0: 3, 3: 0, 5: 1, 1: 5}.get(k, k)
        f_cols = np.floor(f_points[:, new_k, 0]).astype(int)
        f_rows = np.floor(f_points[:, new_k, 1]).astype(int)
        np.testing.assert_array_equal(f_images[np.arange(n), f_rows, f_cols, 0], 1.0)
        assert f_images.sum() == n


def test_flip_pixel_centre_to_mirrored_centre():
    images = np.zeros((1, 4, 10, 3))
    points = np.array([[[2.5, 1.5], [0.0, 0.0], [10.0, 3.0], [np.nan, np.nan]]])
    _, f = flip_horizontal(images, points, [])
    np.testing.assert_array_equal(f[0, :3], [[7.5, 1.5], [10.0, 0.0], [0.0, 3.0]])
    assert np.all(np.isnan(f[0, 3]))
    _, f_int = flip_horizontal(images, np.array([[[2, 1]]]), [])
    assert f_int.dtype == np.float64 and f_int[0, 0, 0] == 8.0
    _, f32 = flip_horizontal(images, points.astype(np.float32), [])
    assert f32.dtype == np.float32


def test_flip_keeps_semantic_sides():
    images, points = landmarks(50, seed=9)
    f_images, f_points = flip_horizontal(images, points, FLIP_PAIRS)
    assert np.all(f_points[:, 0, 0] > f_points[:, 1, 0])  # still the subject's left eye
    assert np.all(f_points[:, 3, 0] > f_points[:, 4, 0])
    # The left eye of the flipped face is the mirrored right eye of the original.
    np.testing.assert_allclose(f_points[:, 0, 0], 48 - points[:, 1, 0], atol=1e-5)
    np.testing.assert_array_equal(f_points[:, 0, 1], points[:, 1, 1])
    # And it sits on the same (dark eye) pixel values.
    for k in range(50):
        for i in range(5):
            x, y = points[k, i]
            fi = {0: 1, 1: 0, 3: 4, 4: 3}.get(i, i)
            fx, fy = f_points[k, fi]
            assert int(fx) == 47 - int(x) and int(fy) == int(y)
            np.testing.assert_array_equal(f_images[k, int(fy), int(fx)], images[k, int(y), int(x)])
    assert f_images.flags.c_contiguous


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n": -1}, ValueError, r"landmarks\(\): n must be >= 0, got -1"),
        ({"image_size": 16}, ValueError, r"landmarks\(\): image_size sides must be >= 24"),
        ({"image_size": "48"}, TypeError, r"landmarks\(\): image_size must be an int"),
        ({"seed": 1.5}, TypeError, r"landmarks\(\): seed must be an int"),
    ],
)
def test_landmarks_rejects(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        landmarks(**{"n": 2, **kwargs})


IMAGES = np.zeros((2, 5, 6, 3))
POINTS = np.zeros((2, 4, 2))


@pytest.mark.parametrize(
    ("images", "points", "pairs", "exc", "match"),
    [
        (IMAGES[0], POINTS, [], ValueError, r"flip_horizontal\(\): images must have shape"),
        (IMAGES, POINTS[:1], [], ValueError, r"flip_horizontal\(\): points must have shape"),
        (IMAGES, POINTS[..., :1], [], ValueError, r"points must have shape \(N, L, 2\)"),
        (IMAGES, POINTS.astype(bool), [], TypeError, r"points must be a real array"),
        (IMAGES, POINTS, [(0, 4)], ValueError, r"flip_pairs index 4 is out of range for 4"),
        (IMAGES, POINTS, [(-1, 2)], ValueError, r"flip_pairs index -1 is out of range"),
        (IMAGES, POINTS, [(0, 1), (1, 2)], ValueError, r"flip_pairs must be disjoint"),
        (IMAGES, POINTS, [(2, 2)], ValueError, r"flip_pairs must be disjoint pairs of distinct"),
        (IMAGES, POINTS, [(0, 1, 2)], ValueError, r"flip_pairs entries must be pairs of ints"),
        (IMAGES, POINTS, [(0.0, 1.0)], ValueError, r"flip_pairs entries must be pairs of ints"),
        (IMAGES, POINTS, "01", TypeError, r"flip_pairs must be a sequence"),
        (IMAGES, POINTS, 3, TypeError, r"flip_pairs must be a sequence"),
    ],
)
def test_flip_rejects(images, points, pairs, exc, match):
    with pytest.raises(exc, match=match):
        flip_horizontal(images, points, pairs)
