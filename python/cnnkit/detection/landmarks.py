"""Landmark detection helpers: geometry that must treat images and points alike.

Points are ``(x, y)`` in continuous pixel coordinates: pixel ``(row i, column
j)`` covers ``[j, j + 1) x [i, i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``
(the convention of :func:`cnnkit.datasets.landmarks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["flip_horizontal"]


def _check_pairs(flip_pairs: Any, num_points: int, fn: str) -> np.ndarray:
    """``flip_pairs`` to the permutation of point indices that the flip applies."""
    if isinstance(flip_pairs, (str, bytes)) or not isinstance(flip_pairs, (Sequence, np.ndarray)):
        raise TypeError(
            f"{fn}: flip_pairs must be a sequence of (i, j) index pairs, got {flip_pairs!r}"
        )
    order = np.arange(num_points)
    seen: set[int] = set()
    for pair in flip_pairs:
        if (
            isinstance(pair, (str, bytes))
            or not isinstance(pair, (Sequence, np.ndarray))
            or len(pair) != 2
            or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in pair)
        ):
            raise ValueError(f"{fn}: flip_pairs entries must be pairs of ints, got {pair!r}")
        i, j = int(pair[0]), int(pair[1])
        for k in (i, j):
            if not 0 <= k < num_points:
                raise ValueError(
                    f"{fn}: flip_pairs index {k} is out of range for {num_points} points"
                )
        if i == j or i in seen or j in seen:
            raise ValueError(
                f"{fn}: flip_pairs must be disjoint pairs of distinct indices, got {pair!r} "
                f"in {flip_pairs!r}"
            )
        seen.update((i, j))
        order[i], order[j] = j, i
    return order


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
    order = _check_pairs(flip_pairs, points.shape[1], fn)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    width = images.shape[2]
    flipped = points[:, order].copy()
    flipped[..., 0] = points.dtype.type(width) - flipped[..., 0]
    return np.ascontiguousarray(images[:, :, ::-1]), flipped
