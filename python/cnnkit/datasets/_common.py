"""Argument checks, colours and backgrounds shared by the procedural datasets."""

from __future__ import annotations

import functools
import statistics
from typing import Any

import numpy as np

from .._validate import fits_in_memory

# Images are made in chunks so the float32 temporaries stay small (cache-sized)
# whatever ``n`` is.
CHUNK = 64
NOISE_STD = 0.03
# Noise is clipped so the brightness gap between objects and background survives it.
NOISE_CLIP = 0.1
# Sides beyond int32 overflow NumPy's random integer bounds and no image has them.
MAX_IMAGE_SIDE = 2**31 - 1


def check_image_size(image_size: Any, fn: str, minimum: int) -> tuple[int, int]:
    """``int`` or ``(H, W)`` to ``(H, W)``, each side an int >= ``minimum``."""
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise TypeError(f"{fn}: image_size must be an int or a pair of ints, got {image_size!r}")
    if min(size) < minimum:
        raise ValueError(f"{fn}: image_size sides must be >= {minimum}, got {image_size!r}")
    if max(size) > MAX_IMAGE_SIDE:
        raise ValueError(f"{fn}: image_size sides must be <= {MAX_IMAGE_SIDE}, got {image_size!r}")
    return size


def check_memory(fn: str, n: int, size: tuple[int, int], itemsize: int = 4) -> None:
    """A MemoryError up front when ``n`` float32 RGB images of ``size`` exceed the machine's
    memory: the generators draw per-image parameters in arrays of ``n`` before rendering,
    so an impossible ``n`` would otherwise run for minutes (or be killed) first."""
    dtype = "float32" if itemsize == 4 else "uint8"
    needs = f"{n} images of {size[0]} x {size[1]} x 3 {dtype} need"
    fits_in_memory(fn, needs, n * size[0] * size[1] * 3 * itemsize)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (any equal shapes) to RGB, shape ``(*h.shape, 3)``.

    The maximum channel equals ``v``, which is what keeps objects brighter than
    the background.
    """
    out = []
    for offset in (5.0, 3.0, 1.0):
        k = (offset + h * 6.0) % 6.0
        out.append(v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return np.stack(out, axis=-1)


def random_colours(
    rng: np.random.Generator, shape: tuple[int, ...], value: tuple[float, float], saturation
) -> np.ndarray:
    h = rng.random(shape)
    s = rng.uniform(saturation[0], saturation[1], shape)
    v = rng.uniform(*value, shape)
    return hsv_to_rgb(h, s, v)


def gradient_backgrounds(
    rng: np.random.Generator, out: np.ndarray, value: tuple[float, float]
) -> np.ndarray:
    """Fill ``out`` ``(n, H, W, 3)`` float32 with linear gradients between two colours.

    Both colours have their maximum channel in ``value``, so every pixel does too.
    """
    n, hgt, wid = out.shape[:3]
    c0 = random_colours(rng, (n,), value, (0.0, 0.7)).astype(np.float32)
    c1 = random_colours(rng, (n,), value, (0.0, 0.7)).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    cos, sin = np.cos(angle), np.sin(angle)
    # Dividing by the largest projection of a corner maps the image onto t in [0, 1].
    reach = 0.5 * (wid * np.abs(cos) + hgt * np.abs(sin))
    xs = (np.arange(wid, dtype=np.float32) + 0.5 - wid / 2)[None, None, :]
    ys = (np.arange(hgt, dtype=np.float32) + 0.5 - hgt / 2)[None, :, None]
    kx = (0.5 * cos / reach).astype(np.float32)[:, None, None]
    ky = (0.5 * sin / reach).astype(np.float32)[:, None, None]
    t = xs * kx + ys * ky
    t += np.float32(0.5)
    np.clip(t, 0.0, 1.0, out=t)
    for c in range(3):
        np.multiply(t, (c1[:, c] - c0[:, c])[:, None, None], out=out[..., c])
        out[..., c] += c0[:, c][:, None, None]
    return out


@functools.lru_cache(maxsize=1)
def _noise_table() -> np.ndarray:
    # Noise values are read from a table of the 256 evenly spaced quantiles of the
    # clipped normal, indexed by random bytes: a quarter of the cost of drawing
    # float32 normals, with 256 levels (finer than an 8-bit image).
    dist = statistics.NormalDist(0.0, NOISE_STD)
    table = [dist.inv_cdf((k + 0.5) / 256) for k in range(256)]
    return np.clip(np.array(table, dtype=np.float32), -NOISE_CLIP, NOISE_CLIP)


def add_noise(rng: np.random.Generator, images: np.ndarray) -> None:
    """Clipped Gaussian pixel noise (std 0.03, at most 0.1), in place, then clip to [0, 1]."""
    index = np.frombuffer(rng.bytes(images.size), dtype=np.uint8).reshape(images.shape)
    images += _noise_table()[index]
    np.clip(images, 0.0, 1.0, out=images)
