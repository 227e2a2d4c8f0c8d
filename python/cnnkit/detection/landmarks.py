"""Landmark detection helpers: geometry that must treat images and points alike.

Points are ``(x, y)`` in continuous pixel coordinates: pixel ``(row i, column
j)`` covers ``[j, j + 1) x [i, i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``
(the convention of :func:`cnnkit.datasets.landmarks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import image

__all__ = ["flip_horizontal"]


def flip_horizontal(
    images: Any, points: Any, flip_pairs: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror images left-right and move their landmarks with them.

    A point's ``x`` becomes ``W - x`` (pixel centres at ``i + 0.5``, so a point
    on the centre of column ``j`` lands on the centre of the mirrored column
    ``W - 1 - j``; ``y`` is unchanged), and the points of each pair in
    ``flip_pairs`` swap places, so every index keeps its meaning: after the flip,
    "left eye" is again the subject's left eye. NaN points (missing) stay NaN.

    Parameters
    ----------
    images : array_like
        ``(N, H, W, C)``.
    points : array_like
        ``(N, L, 2)`` ``(x, y)`` pixel coordinates.
    flip_pairs : sequence of (int, int)
        Disjoint pairs of point indices in ``[0, L)`` that a mirror swaps, e.g.
        :data:`cnnkit.datasets.FLIP_PAIRS`.

    Returns
    -------
    images : numpy.ndarray
        The mirrored images (a new array, same dtype).
    points : numpy.ndarray
        ``(N, L, 2)`` mirrored points, floating (integer input becomes float64).
    """
    fn = "flip_horizontal()"
    images = np.asarray(images)
    points = np.asarray(points)
    if images.ndim != 4:
        raise ValueError(f"{fn}: images must have shape (N, H, W, C), got {images.shape}")
    if points.ndim != 3 or points.shape[2] != 2 or points.shape[0] != images.shape[0]:
        raise ValueError(
            f"{fn}: points must have shape (N, L, 2) with N = {images.shape[0]}, got {points.shape}"
        )
    if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
        raise TypeError(f"{fn}: points must be a real array, got dtype {points.dtype}")
    image.flip_permutation(flip_pairs, points.shape[1], fn)  # its messages name this function
    return image.hflip(images), image.hflip_points(points, images.shape[2], flip_pairs)
