"""Test inputs for the feature-map kernels (conv, pooling, Gram): seeded arrays and
memory layouts that put the same values behind different strides."""

from __future__ import annotations

import numpy as np


def seeded(shape, dtype, seed: int) -> np.ndarray:
    """Standard-normal values of ``shape`` and ``dtype`` from ``seed``."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def layout_view(a: np.ndarray, layout: str) -> np.ndarray:
    """The values of ``a`` (ndim >= 2) in another memory layout, mostly non-contiguous.

    The strided views skip NaNs, which a kernel that ignored the strides would read.
    """
    if layout == "contiguous":
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "channels_first":  # stored channels-first, viewed channels-last
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, -1, 0)), 0, -1)
    if layout == "reversed_batch":
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "batch_stride":
        big = np.full((2 * a.shape[0] + 1, *a.shape[1:]), np.nan, dtype=a.dtype)
        big[1::2] = a
        return big[1::2]
    if layout == "channel_stride":
        big = np.full((*a.shape[:-1], 2 * a.shape[-1] + 1), np.nan, dtype=a.dtype)
        big[..., 1::2] = a
        return big[..., 1::2]
    if layout == "spatial_slice":
        big = np.full((a.shape[0], 2 * a.shape[1], *a.shape[2:]), np.nan, dtype=a.dtype)
        big[:, ::2] = a
        return big[:, ::2]
    raise ValueError(f"unknown layout {layout!r}")
