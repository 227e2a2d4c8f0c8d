"""The distortion kernels as functions on images: colour maps, noise, smoothed displacement
fields and PCA colour statistics.

Images are uint8 or float32, ``(H, W, C)`` or ``(N, H, W, C)``; uint8 results
saturate, float32 results are not clipped. "Full scale" is 255 for uint8 and
1.0 for float32. The geometry (flips, crops, resize, affine warps, remap) lives
in :mod:`cnnkit.image`; the pixel loops of both are :mod:`cnnkit._augment`.
"""

from __future__ import annotations

import functools
import math
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _augment, _core
from ..image import as_images, augment_loops, native_threads, thread_scratch

__all__ = [
    "JITTER_STEPS",
    "PCAColourFit",
    "add_gaussian_draws",
    "add_gaussian_noise",
    "add_gaussian_seeded",
    "add_noise",
    "colour_affine",
    "colour_jitter",
    "elastic_fields",
    "elastic_fields_seeded",
    "fit_pca_colour",
    "full_scale",
    "gaussian_blur",
    "gaussian_kernel",
    "hsv_shift",
    "normal_table",
    "pca_colour_offsets",
    "random_uint16",
]


def full_scale(dtype: np.dtype) -> float:
    """255 for uint8 images, 1.0 for float32."""
    return 255.0 if np.dtype(dtype) == np.uint8 else 1.0


def _colour_kernels() -> Any:
    """The module of the colour loops for cnnkit's ISA (``cnnkit._core.get_isa()``): the
    same loops built for AVX2 or AVX-512, bit-identical results (about twice as fast
    on the blend-heavy float32 maps at each step up)."""
    return augment_loops(_core.get_isa())


@functools.lru_cache(maxsize=1)
def _cpu_has_vbmi() -> bool:
    return bool(_augment.has_vbmi_lut())


def _vbmi_lut() -> bool:
    """Whether uint8 colour tables run as AVX-512 VBMI lookups (``_augment.lut_vbmi``):
    on the avx512 path (``cnnkit._core.get_isa()``) of a CPU with VBMI."""
    return _core.get_isa() == "avx512" and _cpu_has_vbmi()


def _per_image(values: Any, n: int, channels: int | None, fn: str, name: str) -> np.ndarray:
    """A scalar, ``(C,)``, ``(N,)`` or ``(N, C)`` value as ``(N, C)`` (or ``(N,)``) float."""
    v = np.asarray(values, dtype=np.float64)
    want = (n,) if channels is None else (n, channels)
    try:
        if channels is not None and v.ndim == 1 and v.shape[0] == channels:
            v = v[None]
        return np.ascontiguousarray(np.broadcast_to(v, want))
    except ValueError:
        raise ValueError(
            f"{fn}(): {name} must broadcast to {want} (one value, per channel or per image), "
            f"got shape {v.shape}"
        ) from None


def colour_affine(images: Any, scale: Any = 1.0, offset: Any = 0.0) -> np.ndarray:
    """``images * scale + offset`` per channel (and per image of a batch).

    ``scale`` and ``offset`` are one number, ``(C,)``, or ``(N, C)`` for a
    batch. Brightness/contrast, RGB shifts and PCA colour are this map (uint8:
    a 256-entry table per image and channel rounded in float64, looked up 64
    bytes at a time with AVX-512 VBMI where the CPU has it, else applied as an
    int32 affine fitted to it exactly, or as the table where no fit exists).
    """
    fn = "colour_affine"
    x, single = as_images(images, fn)
    s = _per_image(scale, len(x), x.shape[3], fn, "scale")
    o = _per_image(offset, len(x), x.shape[3], fn, "offset")
    out = _colour_affine_rows(x, s, o)
    return out[0] if single else out


def _colour_affine_rows(x: np.ndarray, s: np.ndarray, o: np.ndarray) -> np.ndarray:
    """:func:`colour_affine` of a batch ``x`` with ``(N, C)`` contiguous float64 ``s`` and
    ``o``, unchecked (the transforms' batch path, which made them so)."""
    out = np.empty(x.shape, x.dtype)
    if out.size:
        src = np.ascontiguousarray(x)
        threads = native_threads(out.size)
        if x.dtype == np.uint8:
            # a table per image and channel, rounded in float64 as the reference, looked
            # up 64 bytes at a time (VBMI), or integer coefficients that reproduce it
            # (see the kernels)
            if _vbmi_lut():
                scratch = np.empty(_augment.lut_scratch_size(x.shape[3], threads), np.uint8)
                _augment.lut_vbmi(src, out, s, o, scratch, threads)
                return out
            table = np.empty((len(x), x.shape[3], 256), np.uint8)
            a = np.empty((len(x), x.shape[3]), np.int32)
            b = np.empty_like(a)
            exact = np.empty(len(x), np.uint8)
            bound = float(np.max(255.0 * np.abs(s) + np.abs(o))) + 2.0
            shift = min(22, max(0, math.floor(math.log2(2.0**29 / bound))))
            _augment.colour_tables_u8(s, o, table, a, b, exact, shift)
            rows = [np.tile(v, (1, x.shape[2])) for v in (a, b)]
            _colour_kernels().affine_u8(src, out, rows[0], rows[1], exact, table, shift, threads)
        else:
            # the per-channel values repeated along a row (see the kernel), one row per
            # image, or one for all when every image has the same coefficients
            if np.all(s == s[:1]) and np.all(o == o[:1]):
                s, o = s[:1], o[:1]
            rows = [np.tile(v.astype(np.float32), (1, x.shape[2])) for v in (s, o)]
            _colour_kernels().colour_affine(src, out, rows[0], rows[1], threads)
    return out


def add_noise(images: Any, noise: Any) -> np.ndarray:
    """``images + noise`` (``noise`` float, the images' shape), saturating for uint8."""
    fn = "add_noise"
    x, single = as_images(images, fn)
    z = np.asarray(noise, dtype=np.float32)
    if z.shape != (x[0].shape if single else x.shape):
        raise ValueError(f"{fn}(): noise must have the images' shape, got {z.shape}")
    z = np.ascontiguousarray(z.reshape(x.shape))
    out = np.empty(x.shape, x.dtype)
    if out.size:
        _colour_kernels().add_noise(np.ascontiguousarray(x), out, z, native_threads(out.size))
    return out[0] if single else out


def _rgb_rows(x: np.ndarray, threads: int) -> np.ndarray:
    """Per-thread scratch of the RGB kernels: three planar float32 rows and their bytes."""
    return thread_scratch(threads, 4 * x.shape[2], np.float32)


def hsv_shift(images: Any, hue: Any = 0.0, saturation: Any = 0.0, value: Any = 0.0) -> np.ndarray:
    """Shift hue (degrees, wrapping), saturation and value (full-scale units, clipped).

    RGB images only (3 channels). Each shift is one number or one per image.
    The kernel computes in float32 (the reference in float64): uint8 results
    may differ from the reference by 1 where the rounding falls differently.
    """
    fn = "hsv_shift"
    x, single = as_images(images, fn)
    if x.shape[3] != 3:
        raise ValueError(f"{fn}(): images must have 3 (RGB) channels, got {x.shape[3]}")
    h, s, v = (
        _per_image(a, len(x), None, fn, name)
        for a, name in ((hue, "hue"), (saturation, "saturation"), (value, "value"))
    )
    if not np.all(np.isfinite(h)):
        raise ValueError(f"{fn}(): hue must be finite")
    out = np.empty(x.shape, x.dtype)
    if out.size:
        top = full_scale(x.dtype)
        sixths = _sixths(h / 60.0)
        threads = native_threads(out.size)
        _colour_kernels().hsv_shift(
            np.ascontiguousarray(x),
            out,
            sixths,
            s.astype(np.float32),
            (v * top).astype(np.float32),
            top,
            _rgb_rows(x, threads),
            threads,
        )
    return out[0] if single else out


def _hsv_shift_draws(x: np.ndarray, draws: np.ndarray) -> np.ndarray | None:
    """HueSaturationValue's images of an RGB batch ``x`` from its draws ``(N, 3)`` (hue
    degrees; saturation and value in 0-255 units): :func:`hsv_shift` of ``(h, s / 255,
    v / 255)`` in one native call (its batch path); None where a hue is not finite."""
    out = np.empty(x.shape, x.dtype)
    threads = native_threads(out.size)
    done = _colour_kernels().hsv_shift_draws(
        np.ascontiguousarray(x),
        out,
        draws,
        full_scale(x.dtype),
        np.empty(_augment.thread_parts_size(16 * x.shape[2], threads), np.uint8),
        threads,
    )
    return out if done else None


def _sixths(turns6: np.ndarray) -> np.ndarray:
    """A hue shift in sixths of a turn reduced to ``[0, 6)`` in float32 (a float32
    rounding up to 6.0 is 0: the same hue)."""
    reduced = np.mod(turns6, 6.0).astype(np.float32)
    reduced[reduced >= 6] = 0
    return reduced


JITTER_STEPS = ("brightness", "contrast", "saturation", "hue")
"""The steps of :func:`colour_jitter` as ``order`` numbers them."""


def colour_jitter(
    images: Any,
    brightness: Any = 1.0,
    contrast: Any = 1.0,
    saturation: Any = 1.0,
    hue: Any = 0.0,
    order: Any = (0, 1, 2, 3),
) -> np.ndarray:
    """torchvision's ColorJitter steps with given factors, in the given order.

    Brightness multiplies by ``brightness``; contrast blends with the mean grey
    (ITU-R 601 luma, torchvision's weights) of the image as it is at that step;
    saturation blends with each pixel's grey; hue turns by ``hue`` (a fraction of
    a turn, torchvision's unit). Each step clips to [0, full scale] as
    torchvision's does (float32 images are clipped to [0, 1] first). Factors are one
    number or one per image; ``order`` is a
    permutation of 0..3 (:data:`JITTER_STEPS`), ``(4,)`` or one per image
    ``(N, 4)``. RGB images only.

    Unlike torchvision's uint8 path, which truncates to uint8 after every step
    (and floors the grey before the contrast mean), values stay float32 between
    steps and are rounded half up once at the end. The kernel computes in
    float32 (the reference in float64): uint8 results may differ by 1.
    """
    fn = "colour_jitter"
    x, single = as_images(images, fn)
    if x.shape[3] != 3:
        raise ValueError(f"{fn}(): images must have 3 (RGB) channels, got {x.shape[3]}")
    n = len(x)
    factors = np.empty((n, 4))
    for k, (a, name) in enumerate(
        ((brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation"))
    ):
        factors[:, k] = _per_image(a, n, None, fn, name)
        if not np.all(np.isfinite(factors[:, k])) or np.any(factors[:, k] < 0):
            raise ValueError(f"{fn}(): {name} must be finite factors >= 0")
    turns = _per_image(hue, n, None, fn, "hue")
    if not np.all(np.isfinite(turns)):
        raise ValueError(f"{fn}(): hue must be finite")
    factors[:, 3] = _sixths(6.0 * turns)
    steps = np.asarray(order)
    if steps.dtype.kind not in "iu" or steps.shape not in ((4,), (n, 4)):
        raise ValueError(f"{fn}(): order must be ints of shape (4,) or ({n}, 4), got {steps!r}")
    steps = np.ascontiguousarray(np.broadcast_to(steps, (n, 4)), dtype=np.int32)
    if not np.array_equal(np.sort(steps, axis=1), np.broadcast_to(np.arange(4), (n, 4))):
        raise ValueError(f"{fn}(): order must be a permutation of 0, 1, 2, 3, got {steps!r}")
    out = np.empty(x.shape, x.dtype)
    if out.size:
        threads = native_threads(out.size)
        _colour_kernels().colour_jitter(
            np.ascontiguousarray(x),
            out,
            factors.astype(np.float32),
            steps,
            _rgb_rows(x, threads),
            np.empty(n * x.shape[1]),
            full_scale(x.dtype),
            threads,
        )
    return out[0] if single else out


@functools.lru_cache(maxsize=1)
def normal_table() -> np.ndarray:
    """The 65,536 evenly spaced quantiles ``(k + 0.5) / 65536`` of N(0, 1), float32."""
    dist = statistics.NormalDist()
    return np.array([dist.inv_cdf((k + 0.5) / 65536) for k in range(65536)], np.float32)


_BUFFERED_UINT32 = (np.random.PCG64, np.random.PCG64DXSM)


def random_uint16(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random 16-bit values: the bytes of ``rng.bytes(2 * n)``, and ``rng`` left
    in the same state.

    ``rng.bytes`` draws 32-bit words one at a time, each half of a 64-bit output
    of PCG64 (low half first, the high half kept for the next word); for PCG64
    with no half kept, the same bytes are the 64-bit outputs themselves, drawn
    about 10x faster in one ``random_raw`` call.
    """
    bits = rng.bit_generator
    if type(bits) in _BUFFERED_UINT32 and sys.byteorder == "little" and n > 0:
        state = bits.state
        if not state["has_uint32"]:
            words = (n + 1) // 2
            raw = bits.random_raw((words + 1) // 2)
            if words % 2:  # rng.bytes would have kept the last output's high half
                high = int(raw[-1] >> np.uint64(32))
                bits.state = {**bits.state, "has_uint32": 1, "uinteger": high}
            return raw.view(np.uint16)[:n]
    return np.frombuffer(rng.bytes(2 * n), np.uint16)


def add_gaussian_noise(
    images: Any, std: Any, mean: Any = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Add N(mean, std) noise per pixel and channel, ``std`` and ``mean`` one per image.

    The noise is a 16-bit quantised normal (:func:`normal_table` indexed by
    random 16-bit draws from ``rng``): a few times cheaper than drawing normals,
    with steps of at most 0.06 sigma in the bulk of the distribution.
    """
    fn = "add_gaussian_noise"
    x, single = as_images(images, fn)
    sd = _per_image(std, len(x), None, fn, "std").astype(np.float32)
    mu = _per_image(mean, len(x), None, fn, "mean").astype(np.float32)
    rng = np.random.default_rng() if rng is None else rng
    out = add_gaussian_draws(x, sd, mu, random_uint16(rng, x.size).reshape(x.shape))
    return out[0] if single else out


def add_gaussian_draws(x: np.ndarray, std: np.ndarray, mean: np.ndarray, index: np.ndarray):
    """:func:`add_gaussian_noise` of a batch ``(N, H, W, C)`` with its 16-bit draws
    ``index`` (the batch's shape) and ``std``, ``mean`` float32 ``(N,)`` given: one
    native call, so that a transform with a generator per image still makes one
    parallel region (each region waits for its slowest thread)."""
    out = np.empty(x.shape, x.dtype)
    if out.size:
        src = np.ascontiguousarray(x)
        threads = native_threads(out.size)
        scratch = thread_scratch(threads, x.shape[2] * x.shape[3], np.float32)
        _colour_kernels().add_gaussian(src, out, index, normal_table(), std, mean, scratch, threads)
    return out


def add_gaussian_seeded(x: np.ndarray, std: np.ndarray, mean: np.ndarray, seeds: np.ndarray):
    """:func:`add_gaussian_draws` with image ``n``'s draws
    ``random_uint16(np.random.default_rng(seeds[n]), H W C)`` (seeds ints in
    ``[0, 2**64)``), bit for bit, made by the native kernel: in parallel (each band
    of rows jumps ahead in its image's PCG64 stream), so the draws are not serial
    Python before the kernel. Takes :func:`add_gaussian_draws` where the build has
    no native PCG64 (no 128-bit integers)."""
    size = x[0].size if len(x) else 0
    if not _augment.has_pcg64():  # pragma: no cover - compilers without __int128
        draws = np.empty((len(x), size), np.uint16)
        for k, seed in enumerate(seeds):
            draws[k] = random_uint16(np.random.default_rng(int(seed)), size)
        return add_gaussian_draws(x, std, mean, draws.reshape(x.shape))
    out = np.empty(x.shape, x.dtype)
    if out.size:
        words = np.empty((len(x), 4), np.uint64)
        _augment.seed_states(np.asarray(seeds, np.uint64), words)
        row = x.shape[2] * x.shape[3]
        band = max(1, 16384 // row)  # rows per task: 32 KB of draws, about 13 bands an image
        threads = native_threads(out.size)
        scratch = np.empty(
            _augment.thread_parts_size(_augment.gaussian_part(band, row), threads), np.uint8
        )
        _colour_kernels().add_gaussian_seeded(
            np.ascontiguousarray(x), out, words, normal_table(), std, mean, scratch, band, threads
        )
    return out


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian of ``sigma`` cut at ``truncate`` sigmas (scipy's default)."""
    if sigma < 0.05:  # the neighbours' weight, exp(-200) or less, is 0 in float32
        return np.ones(1, np.float32)
    radius = max(1, math.ceil(truncate * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(fields: Any, sigma: float) -> np.ndarray:
    """Blur float ``(N, H, W)`` fields by a Gaussian of ``sigma`` pixels (reflect border)."""
    fn = "gaussian_blur"
    f = np.ascontiguousarray(fields, dtype=np.float32)
    if f.ndim != 3:
        raise ValueError(f"{fn}(): fields must have shape (N, H, W), got {f.shape}")
    if not (isinstance(sigma, (int, float)) and sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"{fn}(): sigma must be a finite number >= 0, got {sigma!r}")
    taps = gaussian_kernel(float(sigma))
    out = np.empty_like(f)
    if f.size:
        n, h, w = f.shape
        threads = min(native_threads(f.size * len(taps)), n)
        scratch = thread_scratch(threads, 3 * h * w, np.float32)
        rows = thread_scratch(threads, w + h + 2 * len(taps), np.int32)
        _colour_kernels().gaussian_blur(f, out, scratch, rows, taps, threads)
    return out


def elastic_fields(
    rng: np.random.Generator, shape: tuple[int, int], alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Simard et al. (2003): uniform(-1, 1) displacements per pixel, blurred by a
    Gaussian of ``sigma``, scaled by ``alpha``; returns ``(dx, dy)``, each ``(H, W)``."""
    raw = rng.random((2, *shape), dtype=np.float32)
    raw *= 2
    raw -= 1
    fields = gaussian_blur(raw, sigma)
    fields *= np.float32(alpha)
    return fields[0], fields[1]


def elastic_fields_seeded(
    seeds: np.ndarray, shape: tuple[int, int], alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`elastic_fields` of a batch, ``rng = np.random.default_rng(seeds[n])`` for
    image ``n``, bit for bit: ``(dx, dy)``, each ``(N, H, W)``. The draws, both blur
    passes and the scale of each field are one task of one native call (parallel over
    the fields), so no per-image step runs serially in Python."""
    n = len(seeds)
    h, w = shape
    dx = np.empty((n, h, w), np.float32)
    dy = np.empty((n, h, w), np.float32)
    if not _augment.has_pcg64():  # pragma: no cover - compilers without __int128
        for k, seed in enumerate(seeds):
            dx[k], dy[k] = elastic_fields(np.random.default_rng(int(seed)), shape, alpha, sigma)
        return dx, dy
    if dx.size:
        taps = gaussian_kernel(float(sigma))
        words = np.empty((n, 4), np.uint64)
        _augment.seed_states(np.asarray(seeds, np.uint64), words)
        threads = min(native_threads(2 * dx.size * len(taps)), 2 * n)
        # the field, its work space (2 H W), then the 64-bit draws (8-byte aligned: even
        # offsets)
        size = h * w
        length = (3 * size + 1) // 2 * 2 + 2 * ((size + 2) // 2) + 2
        scratch = thread_scratch(threads, length, np.float32)
        rows = thread_scratch(threads, w + h + 2 * len(taps), np.int32)
        _colour_kernels().elastic_fields(words, taps, alpha, dx, dy, scratch, rows, threads)
    return dx, dy


@dataclass(frozen=True)
class PCAColourFit:
    """Principal components of the RGB values of a training set (Krizhevsky et al. 2012)."""

    eigenvalues: np.ndarray
    """(3,) variances along the components, largest first."""
    eigenvectors: np.ndarray
    """(3, 3) unit components as columns."""
    mean: np.ndarray
    """(3,) mean colour, in full-scale units (1.0 is 255 for uint8)."""
    count: int
    """The number of pixels seen."""


def fit_pca_colour(images: Any) -> PCAColourFit:
    """The 3x3 RGB covariance over ``images`` and its eigen-decomposition.

    ``images`` is an array ``(N, H, W, 3)`` or an iterable of such batches (or
    of ``(x, y)`` tuples, as a loader yields), streamed: only the sums are kept.
    Values are taken in full-scale units (uint8 divided by 255, as the paper's
    and albumentations' FancyPCA do), so one fit serves uint8 and float32 images.
    """
    fn = "fit_pca_colour"
    batches: Iterable[Any] = [images] if isinstance(images, np.ndarray) else images
    total = np.zeros(3)
    outer = np.zeros((3, 3))
    count = 0
    # Sums are taken around a first-batch shift, which keeps the float64
    # covariance accurate when the mean is far from zero (uint8 values).
    shift = None
    for batch in batches:
        if isinstance(batch, tuple):
            batch = batch[0]
        x = np.asarray(batch)
        if x.ndim < 2 or x.shape[-1] != 3 or x.dtype.kind not in "fiu":
            raise ValueError(f"{fn}(): images must be real RGB arrays (..., 3), got {x.shape}")
        pixels = x.reshape(-1, 3).astype(np.float64) / full_scale(x.dtype)
        if not len(pixels):
            continue
        if shift is None:
            shift = pixels.mean(0)
        pixels -= shift
        total += pixels.sum(0)
        outer += pixels.T @ pixels
        count += len(pixels)
    if count < 2:
        raise ValueError(f"{fn}(): images must hold at least 2 pixels, got {count}")
    assert shift is not None  # set by the first batch with pixels
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return PCAColourFit(np.clip(values[order], 0, None), vectors[:, order], mean + shift, count)


def pca_colour_offsets(pca: PCAColourFit, alphas: Any) -> np.ndarray:
    """``[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`` for each row of ``alphas`` ``(N, 3)``.

    The ``(N, 3)`` colour offsets in full-scale units (times 255 for uint8 images).
    """
    a = np.asarray(alphas, dtype=np.float64).reshape(-1, 3) * pca.eigenvalues
    # summed in a fixed order per row (a matrix product's order may depend on the number
    # of rows), so that an image's offset does not depend on the batch around it
    v = pca.eigenvectors
    return a[:, 0:1] * v[:, 0] + a[:, 1:2] * v[:, 1] + a[:, 2:3] * v[:, 2]
