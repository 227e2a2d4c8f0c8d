"""A procedural facial-landmark dataset: stylised faces with five labelled points.

Each image shows one face on a gradient background: an oval head, two eyes
with eyebrows, a nose and a mouth, at a random position and scale, turned by a
small random angle, in random colours, with per-face variation of where the
features sit (so the points cannot be guessed from the head alone).

Points are ``(x, y)`` in continuous pixel coordinates: pixel ``(row i, column
j)`` covers ``[j, j + 1) x [i, i + 1)`` and its centre is ``(j + 0.5, i + 0.5)``.
"Left" and "right" are the subject's: the subject's left eye appears on the
image's right side.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _validate
from ._common import (
    CHUNK,
    add_noise,
    check_image_size,
    check_memory,
    gradient_backgrounds,
    random_colours,
)

__all__ = ["FLIP_PAIRS", "LANDMARK_NAMES", "LandmarkData", "landmarks"]

LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Point names, in the order of the points axis (subject's left and right)."""

FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (3, 4))
"""Index pairs that swap under a horizontal flip (see
:func:`cnnkit.detection.landmarks.flip_horizontal`)."""

MIN_IMAGE_SIDE = 24
MAX_ANGLE = np.deg2rad(15.0)
EYE_AXES = (0.12, 0.08)  # semi-axes, in units of the head's half-height
BROW_RAISE = 0.2
BROW_HALF = (0.14, 0.045)
NOSE_LENGTH = 0.22
NOSE_HALF_WIDTH = 0.09
MOUTH_HALF_THICKNESS = 0.05


class LandmarkData(NamedTuple):
    """The result of :func:`landmarks`."""

    images: np.ndarray
    """``(n, H, W, 3)`` float32 in [0, 1]."""
    points: np.ndarray
    """``(n, 5, 2)`` float32 ``(x, y)`` pixel coordinates, in :data:`LANDMARK_NAMES` order."""


def landmarks(
    n: int,
    *,
    image_size: int | tuple[int, int] = 48,
    seed: int | np.random.Generator = 0,
) -> LandmarkData:
    """Stylised faces and their five landmarks.

    The head is an ellipse whose half-height is 28% to 42% of the shorter image
    side, turned by up to 15 degrees and placed wholly inside the image. The
    points are the centres of the eyes, the tip (bottom) of the nose and the
    corners of the mouth, named by :data:`LANDMARK_NAMES`; :data:`FLIP_PAIRS`
    lists the pairs a horizontal flip swaps.

    Parameters
    ----------
    n : int
        Number of images (>= 0).
    image_size : int or (int, int)
        Image side, or ``(H, W)``; each side >= 24.
    seed : int or numpy.random.Generator
        The same seed gives the same dataset.

    Returns
    -------
    LandmarkData
        ``images`` ``(n, H, W, 3)`` float32 in [0, 1] and ``points`` ``(n, 5, 2)``
        float32 ``(x, y)`` with pixel centres at ``i + 0.5``.
    """
    fn = "landmarks()"
    n = _validate.integer(fn, "n", n, minimum=0)
    size = check_image_size(image_size, fn, MIN_IMAGE_SIDE)
    check_memory(fn, n, size)
    rng = _validate.generator(fn, seed)
    hgt, wid = size

    scale = rng.uniform(0.28, 0.42, n) * min(size)  # the head's half-height, pixels
    ratio = rng.uniform(0.72, 0.88, n)  # half-width / half-height
    angle = rng.uniform(-MAX_ANGLE, MAX_ANGLE, n)
    # The head fits in a circle of radius `scale`, which stays inside the image.
    cx = rng.uniform(scale, wid - scale)
    cy = rng.uniform(scale, hgt - scale)
    eye_dx = rng.uniform(0.3, 0.4, n) * ratio
    eye_y = rng.uniform(-0.32, -0.15, n)
    nose_x = rng.uniform(-0.06, 0.06, n)
    nose_y = rng.uniform(0.08, 0.22, n)
    mouth_dx = rng.uniform(0.2, 0.36, n) * ratio
    mouth_y = rng.uniform(0.42, 0.56, n)
    smile = rng.uniform(-0.06, 0.1, n)  # arc depth at the middle; > 0 bends down
    skin = random_colours(rng, (n,), (0.65, 0.95), (0.15, 0.6)).astype(np.float32)
    dark = random_colours(rng, (n,), (0.05, 0.25), (0.0, 0.8)).astype(np.float32)
    lips = random_colours(rng, (n,), (0.15, 0.35), (0.4, 0.9)).astype(np.float32)

    # Face-frame coordinates: x to the image's right, y down, in head half-heights.
    canon = np.stack(
        [
            np.stack([eye_dx, eye_y], -1),  # subject's left eye: image right
            np.stack([-eye_dx, eye_y], -1),
            np.stack([nose_x, nose_y], -1),
            np.stack([mouth_dx, mouth_y], -1),
            np.stack([-mouth_dx, mouth_y], -1),
        ],
        axis=1,
    )
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    px = cx[:, None] + scale[:, None] * (cos * canon[..., 0] - sin * canon[..., 1])
    py = cy[:, None] + scale[:, None] * (sin * canon[..., 0] + cos * canon[..., 1])
    points = np.stack([px, py], -1).astype(np.float32)

    images = np.empty((n, hgt, wid, 3), dtype=np.float32)
    xs = np.arange(wid, dtype=np.float64) + 0.5
    ys = np.arange(hgt, dtype=np.float64) + 0.5
    for start in range(0, n, CHUNK):
        sl = slice(start, min(start + CHUNK, n))
        chunk = gradient_backgrounds(rng, images[sl], (0.05, 0.4))
        # Pixel centres in the face frame (rotate back by the face's angle).
        dx = (xs[None, None, :] - cx[sl, None, None]) / scale[sl, None, None]
        dy = (ys[None, :, None] - cy[sl, None, None]) / scale[sl, None, None]
        c, s = np.cos(angle[sl])[:, None, None], np.sin(angle[sl])[:, None, None]
        u = (c * dx + s * dy).astype(np.float32)
        v = (-s * dx + c * dy).astype(np.float32)

        def per(a: np.ndarray, sl: slice = sl) -> np.ndarray:
            return a[sl, None, None].astype(np.float32)

        head = (u / per(ratio)) ** 2 + v**2 <= 1.0
        eyes = np.zeros_like(head)
        brows = np.zeros_like(head)
        for side in (1.0, -1.0):
            ex = side * per(eye_dx)
            eyes |= ((u - ex) / EYE_AXES[0]) ** 2 + ((v - per(eye_y)) / EYE_AXES[1]) ** 2 <= 1.0
            brows |= (np.abs(u - ex) <= BROW_HALF[0]) & (
                np.abs(v - (per(eye_y) - BROW_RAISE)) <= BROW_HALF[1]
            )
        rise = per(nose_y) - v  # 0 at the tip, growing upwards
        nose = (rise >= 0) & (rise <= NOSE_LENGTH)
        nose &= np.abs(u - per(nose_x)) <= NOSE_HALF_WIDTH * (1.0 - rise / NOSE_LENGTH)
        across = (u / per(mouth_dx)) ** 2
        arc = per(mouth_y) + per(smile) * (1.0 - across)
        mouth = (across <= 1.0) & (np.abs(v - arc) <= MOUTH_HALF_THICKNESS)

        # Later layers paint over earlier ones; a label map and one palette
        # gather are much cheaper than a masked copy of every layer.
        label = head.astype(np.uint8)
        label[nose] = 2
        label[brows | eyes] = 3
        label[mouth] = 4
        palette = np.zeros((sl.stop - sl.start, 5, 3), dtype=np.float32)
        palette[:, 1], palette[:, 2], palette[:, 3], palette[:, 4] = (
            skin[sl],
            0.7 * skin[sl],
            dark[sl],
            lips[sl],
        )
        chunk *= (label == 0)[..., None]
        chunk += palette[np.arange(sl.stop - sl.start)[:, None, None], label]
        add_noise(rng, chunk)
    return LandmarkData(images, points)
