"""Image geometry with the boxes and points that live on the images.

The one home of resize, crop, pad, flip and affine warp for detection,
augmentation, test-time crops and style transfer. Pixel loops run in the
Cython module :mod:`cnnkit._augment` (uint8 and float32 images, the GIL
released, parallel over rows with cnnkit's thread count); the NumPy references
are in :mod:`cnnkit.reference`.

Conventions (those of :mod:`cnnkit.datasets` and the detectors):

* images are ``(H, W, C)`` or a batch ``(N, H, W, C)``, uint8 or float32; a
  function returns the layout it was given;
* continuous pixel coordinates: pixel ``(row i, column j)`` covers
  ``[j, j + 1) x [i, i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``;
* boxes are ``(K, 4)`` ``xyxy`` in those coordinates, points ``(..., 2)`` ``(x, y)``;
* a geometric map is a 2x3 matrix ``A`` taking an input point ``p`` to the
  output point ``A @ (p, 1)``; the ``*_matrix`` functions build them, and
  :func:`affine_boxes` / :func:`affine_points` move targets by any of them.

Images are written rounded half up and saturated for uint8, unrounded for
float32. Why not OpenCV: it would be a heavy run-time dependency, and these
loops are the product (cnnkit's augmentation kernels).
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _augment, _core, get_num_threads
from ._validate import fits_in_memory

__all__ = [
    "BORDER_MODES",
    "INTERPOLATIONS",
    "affine_boxes",
    "affine_matrix",
    "affine_points",
    "center_crop",
    "crop",
    "crop_boxes",
    "crop_matrix",
    "flip_permutation",
    "hflip",
    "hflip_boxes",
    "hflip_points",
    "pad",
    "remap",
    "resize",
    "resize_matrix",
    "resized_crop",
    "vflip",
    "vflip_boxes",
    "vflip_points",
    "warp_affine",
]


@functools.cache
def augment_loops(isa: str) -> Any:
    """The Cython loops (``cnnkit._augment``) built for ``isa``: the same loops compiled for
    AVX2 or AVX-512, bit-identical results. Imported only once that ISA path is chosen:
    a module built with ``-mavx512f`` may use those instructions anywhere, its import
    included, so it must never load on a CPU without them (a Zen 3)."""
    if isa == "baseline":
        return _augment
    try:  # built on x86 only
        return importlib.import_module(f"cnnkit._augment_{isa}")
    except ImportError:  # pragma: no cover - other architectures
        return _augment


INTERPOLATIONS = ("nearest", "bilinear", "area")
"""Resampling of :func:`resize` (``area`` averages the covered input area)."""
BORDER_MODES = ("constant", "reflect", "replicate")
"""Values outside the image: ``fill``; mirrored without repeating the edge
(NumPy's ``reflect``, OpenCV's ``BORDER_REFLECT_101``); the nearest edge pixel."""

_NATIVE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
_local = threading.local()


# Below this many output values a parallel region costs more than it saves
# (waking threads takes tens of microseconds, far more on a busy machine).
_PARALLEL_MIN_WORK = 1 << 16


def native_threads(work: int = _PARALLEL_MIN_WORK) -> int:
    """Threads for one kernel call writing ``work`` values: cnnkit's count, 1 for small
    work, or the limit set by :func:`set_worker_threads` (a loader's worker threads)."""
    if work < _PARALLEL_MIN_WORK:
        return 1
    return getattr(_local, "threads", None) or get_num_threads()


def thread_scratch(threads: int, width: int, dtype: Any) -> np.ndarray:
    """Uninitialised per-thread scratch rows ``(threads, >= width)`` of a kernel, each row
    on cache lines of its own: 64-byte aligned and padded to whole lines. Rows of a plain
    ``np.empty`` share a line at each boundary (NumPy aligns to 16 bytes), which two
    threads writing the ends of their rows pass back and forth between the cores (the
    two-thread rate of RandomResizedCrop's kernel varied with where its scratch lay)."""
    dtype = np.dtype(dtype)
    row = -(-max(width, 1) * dtype.itemsize // 64) * 64
    raw = np.empty(threads * row + 64, np.uint8)
    start = -raw.__array_interface__["data"][0] % 64
    return raw[start : start + threads * row].view(dtype).reshape(threads, row // dtype.itemsize)


def set_worker_threads(n: int | None) -> None:
    """Limit the kernels called from the current thread to ``n`` threads (None: cnnkit's)."""
    _local.threads = n


def as_images(images: Any, fn: str, name: str = "images") -> tuple[np.ndarray, bool]:
    """``images`` as an ``(N, H, W, C)`` uint8/float32 array and whether it was one image."""
    x = np.asarray(images)
    if x.dtype not in _NATIVE_DTYPES:
        raise TypeError(
            f"{fn}(): {name} must be uint8 or float32 (convert other dtypes first), got {x.dtype}"
        )
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"{fn}(): {name} must have shape (H, W, C) or (N, H, W, C), got {x.shape}")


def _out(x: np.ndarray, single: bool) -> np.ndarray:
    return x[0] if single else x


def _output_size(x: np.ndarray, size: Any, fn: str) -> tuple[int, int]:
    """``size`` checked, and the output of that size for the batch ``x`` known to fit."""
    out_h, out_w = _size(size, fn)
    shape = (x.shape[0], out_h, out_w, x.shape[3])
    need = math.prod(shape) * x.dtype.itemsize
    fits_in_memory(f"{fn}()", f"the output of shape {shape} and dtype {x.dtype} needs", need)
    return out_h, out_w


def _size(size: Any, fn: str, name: str = "size") -> tuple[int, int]:
    items = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if len(items) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items
    ):
        raise TypeError(f"{fn}(): {name} must be an int or a (height, width) pair, got {size!r}")
    if min(items) < 1:
        raise ValueError(f"{fn}(): {name} must be positive, got {size!r}")
    return int(items[0]), int(items[1])


def _choice(value: Any, choices: Sequence[str], fn: str, name: str) -> int:
    if value not in choices:
        raise ValueError(f"{fn}(): {name} must be one of {', '.join(choices)}, got {value!r}")
    return list(choices).index(value)


def _matrix(matrix: Any, fn: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (3, 3):
        m = m[:2]
    if m.shape != (2, 3):
        raise ValueError(f"{fn}(): matrix must have shape (2, 3) or (3, 3), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{fn}(): matrix must be finite")
    return m


def invert_affine(matrix: np.ndarray, fn: str = "invert_affine") -> np.ndarray:
    """The 2x3 inverse of the 2x3 map ``matrix`` (ValueError when singular)."""
    return _invert_affines(matrix[None], fn)[0]


def _invert_affines(maps: np.ndarray, fn: str) -> np.ndarray:
    """The 2x3 inverses of the ``(N, 2, 3)`` maps in closed form (a batch in a few NumPy
    calls; one or many maps give the same bits); ValueError names the first singular one."""
    maps = np.ascontiguousarray(maps, np.float64)
    out = np.empty(maps.shape, np.float64)
    bad = _augment.invert_affines(maps, out)
    if bad >= 0:
        raise ValueError(f"{fn}(): matrix must be invertible, got {maps[bad].tolist()}")
    return out


# -- resampling tables -------------------------------------------------------------------


def _taps(start: Any, length: Any, n_in: int, n_out: int, mode: str):
    """Indices ``(N, n_out, K)`` and float32 weights of the input pixels behind each
    output pixel, for the ``N`` windows ``[start, start + length)`` (arrays ``(N,)``).

    Output pixel ``k`` of window ``n`` spans that window's part of the input;
    bilinear clamps at the window's edge pixels (as resizing the cropped image
    would). All windows are computed at once (a batch of crops costs one set of
    NumPy calls, not one per image); windows needing fewer taps than ``K`` get
    weight-0 taps at a real index, so every tap lies in the column span.
    """
    start = np.asarray(start, np.float64).reshape(-1, 1)
    length = np.asarray(length, np.float64).reshape(-1, 1)
    scale = length / n_out
    centres = start + (np.arange(n_out) + 0.5) * scale
    lo_edge = np.floor(start).astype(np.intp)
    hi_edge = np.minimum(np.ceil(start + length).astype(np.intp), n_in) - 1
    if mode == "nearest":
        index = np.clip(np.floor(centres).astype(np.intp), lo_edge, hi_edge)[..., None]
        return index, np.ones(index.shape, np.float32)
    if mode == "bilinear":
        pos = _linear_positions(centres, lo_edge, hi_edge)
        low = np.floor(pos).astype(np.intp)
        high = np.minimum(low + 1, hi_edge)
        # _unit_sums' rule with the last tap known: the second (0 where the first is 1)
        w_low = (1 - (pos - low)).astype(np.float32)
        w_high = (1.0 - w_low.astype(np.float64)).astype(np.float32)
        return np.stack([low, high], -1), np.stack([w_low, w_high], -1)
    # area: output pixel k averages the input over [start + k * scale, start + (k + 1) * scale)
    left = start + np.arange(n_out) * scale
    first = np.floor(left).astype(np.intp)
    taps = first[..., None] + np.arange(int(np.ceil(scale.max())) + 1)
    overlap = np.minimum(taps + 1, (left + scale)[..., None]) - np.maximum(taps, left[..., None])
    weight = np.clip(overlap, 0, None) / scale[..., None]
    index = np.clip(taps, 0, n_in - 1)
    weight[index != taps] = 0
    index[weight == 0] = first[..., None].clip(0, n_in - 1).repeat(taps.shape[-1], -1)[weight == 0]
    return index, _unit_sums(weight.astype(np.float32))


def _unit_sums(weight: np.ndarray) -> np.ndarray:
    """``weight`` (float32, taps on the last axis) with each pixel's last nonzero tap set so
    that the taps add up to exactly 1 when summed in order in float32, as the resampling
    kernels sum them.

    Rounded to float32, an area pixel's weights (seven input pixels into two: 2/7, 2/7,
    2/7, 1/7) add up to 1 +- 1 ulp, and a constant image came back as 0.25000003. With
    sums of exactly 1, a constant that is a power of two times a float comes back
    unchanged (its products with the weights are exact, so its sums round as theirs do).
    The last tap becomes 1 minus the sum before it, rounded once: within half its ulp of
    the exact complement, which puts the sum inside 1's rounding interval."""
    taps = weight.shape[-1]
    nonzero = weight != 0
    last = taps - 1 - np.argmax(nonzero[..., ::-1], axis=-1)[..., None]
    before = np.where(np.arange(taps) < last, weight, np.float32(0))
    rest = np.cumsum(before, axis=-1, dtype=np.float32)[..., -1:]
    closing = (1.0 - rest.astype(np.float64)).astype(np.float32)
    keep = np.take_along_axis(weight, last, -1)
    np.put_along_axis(weight, last, np.where(nonzero.any(-1, keepdims=True), closing, keep), -1)
    return weight


def _linear_positions(centres: np.ndarray, lo_edge: np.ndarray, hi_edge: np.ndarray) -> np.ndarray:
    """Bilinear's sampling positions in input pixel indices, clamped to the window."""
    return np.clip(centres - 0.5, lo_edge, hi_edge)


def _fixed_linear(x: np.ndarray) -> bool:
    """Whether bilinear resampling of ``x`` runs in fixed point (:func:`_resample_fixed3`):
    its bytes differ from the float path's (both within 1 of the reference), so it follows
    the active instruction-set path (``CNNKIT_ISA`` / ``set_isa``), not only the CPU."""
    return (
        x.dtype == np.uint8
        and x.ndim == 4
        and x.shape[3] == 3
        and max(x.shape[1:3]) <= _FIXED_MAX_SIDE
        and _WARP_AVX512
        and _core.get_isa() == "avx512"
    )


def _resample_fixed3(
    x: np.ndarray, out_h: int, out_w: int, top: Any, left: Any, height: Any, width: Any
) -> np.ndarray:
    """Bilinear resampling of the windows ``(top, left, height, width)`` (arrays ``(N,)``, or
    one window for all) of 3-channel uint8 images to ``out_h x out_w``, in fixed point.

    The positions are those of :func:`_taps` rounded to 1/2048 pixel, and each value is
    the exact half-up rounding of the bilinear value there (warp_affine's uint8 scheme):
    within 1 of the float64 reference, like the float32 tables it replaces where the
    CPU has AVX-512 (16 pixels per step there; elsewhere the float32 path is faster).
    Separable, so the result is the same at any thread count and batch split.
    """

    out = np.empty((x.shape[0], out_h, out_w, 3), np.uint8)
    if out.size:
        # the tables, made natively (the float64 operations of _taps, rounded to 1/2048)
        top, height, left, width = (
            np.asarray(v, np.float64).reshape(-1) for v in (top, height, left, width)
        )
        rows = np.empty((len(top), out_h, 3), np.int32)
        cols = np.empty((len(left), out_w), np.int32)
        # the AVX-512 build's loops (this path runs on the avx512 ISA only): the same ints,
        # made vector-wide (a serial part of RandomResizedCrop's batch call)
        taps = augment_loops("avx512").fixed_linear_taps
        taps(top, height, x.shape[1], rows, cols)
        taps(left, width, x.shape[2], rows[:0], cols)
        threads = native_threads(out.size)
        # (the kernel starts each thread's part on a cache line of its own)
        scratch = np.empty((threads, _augment.fixed3_scratch_size(out_w)), np.int32)
        _augment.resample_linear_fixed3(np.ascontiguousarray(x), out, rows, cols, scratch, threads)
    return out


def _resample(x: np.ndarray, out_h: int, out_w: int, rows: tuple, cols: tuple) -> np.ndarray:
    """Resample each image of ``x`` with its own (or shared) row and column tap tables."""
    out = np.empty((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
    if out.size:
        ri, rw = rows
        ci, cw = cols
        threads = native_threads(out.size)
        span = np.stack([ci.min((1, 2)), ci.max((1, 2)) + 1], 1)
        src = np.ascontiguousarray(x)
        if ri.shape[2] == 2 and ci.shape[2] == 2:
            # bilinear: horizontal pass first, each input row once per band of output rows
            # the horizontal tables per output value (pixel and channel), taps apart
            chans = x.shape[3]
            index = ci.transpose(0, 2, 1)[..., None] * chans + np.arange(chans)
            index = np.ascontiguousarray(index.reshape(ci.shape[0], 2, -1), np.int32)
            weight = np.repeat(cw.transpose(0, 2, 1), chans, -1)
            weight = np.ascontiguousarray(weight, np.float32)
            row = x.shape[2] * chans + 4 + 2 * out_w * chans
            scratch = thread_scratch(threads, row, np.float32)
            _augment.resample_linear(src, out, ri, rw, index, weight, span, scratch, threads)
        else:
            scratch = thread_scratch(threads, x.shape[2] * x.shape[3], np.float32)
            _augment.resample(src, out, ri, rw, ci, cw, span, scratch, threads)
    return out


# -- resize, crop, pad -------------------------------------------------------------------


def resize(images: Any, size: Any, interpolation: str = "bilinear") -> np.ndarray:
    """Resize to ``size = (height, width)``.

    Pixel centres are aligned (``align_corners=False``, the default of OpenCV,
    PIL and torchvision). ``nearest`` takes the input pixel under each output
    pixel's centre (torch's ``nearest-exact``); ``bilinear`` clamps at the
    edges, without antialiasing; ``area`` averages the input area each output
    pixel covers (a box filter, OpenCV's ``INTER_AREA`` when shrinking; when
    enlarging it is the covered one or two pixels, not OpenCV's bilinear).
    Sums are float32: uint8 results are within 1 of the float64 reference
    (:func:`cnnkit.reference.resize`), and exactly the half-up rounded block
    means when shrinking by whole factors with ``area``. On CPUs with AVX-512,
    bilinear resampling of 3-channel uint8 images runs in fixed point as
    :func:`warp_affine` does (positions rounded to 1/2048 pixel, integer
    weights, exact half-up rounding): also within 1 of the reference, though
    not always the same bytes as the float32 path of other CPUs.

    Parameters
    ----------
    images : array_like, (H, W, C) or (N, H, W, C), uint8 or float32
    size : int or (height, width)
    interpolation : {"nearest", "bilinear", "area"}

    Returns
    -------
    numpy.ndarray
        The resized images, same layout and dtype. Use :func:`resize_matrix`
        for the boxes and points.
    """
    fn = "resize"
    x, single = as_images(images, fn)
    out_h, out_w = _output_size(x, size, fn)
    _choice(interpolation, INTERPOLATIONS, fn, "interpolation")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{fn}(): images must not be empty, got shape {x.shape}")
    h, w = x.shape[1:3]
    if (h, w) == (out_h, out_w):
        # every mode is the identity at the same size (weights 1 on the pixel itself)
        return _out(x.copy(order="C"), single)
    if interpolation == "area" and h % out_h == 0 and w % out_w == 0:
        return _out(_area_shrink(x, h // out_h, w // out_w), single)
    if interpolation == "bilinear" and _fixed_linear(x):
        return _out(_resample_fixed3(x, out_h, out_w, 0, 0, h, w), single)
    rows = _resize_taps(h, out_h, interpolation)
    cols = _resize_taps(w, out_w, interpolation)
    return _out(_resample(x, out_h, out_w, rows, cols), single)


@functools.lru_cache(maxsize=64)
def _resize_taps(n_in: int, n_out: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    # A loader resizes every image from the same few sizes: build each table once.
    index, weight = _taps(0.0, n_in, n_in, n_out, mode)
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


def _area_shrink(x: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Area resampling by whole factors: block means, without tap tables."""
    out = np.empty((x.shape[0], x.shape[1] // fy, x.shape[2] // fx, x.shape[3]), x.dtype)
    if out.size:
        threads = native_threads(out.size)
        scratch = thread_scratch(threads, x.shape[2] * x.shape[3], np.float32)
        _augment.area_shrink(np.ascontiguousarray(x), out, fy, fx, scratch, threads)
    return out


def resize_matrix(in_size: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The map of :func:`resize` from ``in_size`` to ``size`` (both ``(height, width)``)."""
    (h, w), (out_h, out_w) = (
        _size(in_size, "resize_matrix", "in_size"),
        _size(size, "resize_matrix"),
    )
    return np.array([[out_w / w, 0.0, 0.0], [0.0, out_h / h, 0.0]])


def _window(x: np.ndarray, top: Any, left: Any, height: Any, width: Any, fn: str) -> tuple:
    vals = (top, left, height, width)
    names = ("top", "left", "height", "width")
    for v, name in zip(vals, names):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{fn}(): {name} must be an int, got {type(v).__name__}")
    top, left, height, width = (int(v) for v in vals)
    if height < 1 or width < 1:
        raise ValueError(f"{fn}(): height and width must be positive, got ({height}, {width})")
    h, w = x.shape[1:3]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(
            f"{fn}(): the crop (top={top}, left={left}, height={height}, width={width}) must lie "
            f"inside the {h}x{w} image"
        )
    return top, left, height, width


def crop(images: Any, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The ``height x width`` window at ``(top, left)``, as a new contiguous array.

    The window must lie inside the image (ValueError otherwise; :func:`pad`
    first to crop beyond an edge). :func:`crop_matrix` moves the targets.
    """
    x, single = as_images(images, "crop")
    top, left, height, width = _window(x, top, left, height, width, "crop")
    return _out(np.ascontiguousarray(x[:, top : top + height, left : left + width]), single)


def center_crop(images: Any, size: Any) -> np.ndarray:
    """The centred window of ``size = (height, width)``.

    Top and left are rounded down, as albumentations' CenterCrop (torchvision
    rounds half to even; :func:`cnnkit.augment.five_crop` does that).
    """
    x, _ = as_images(images, "center_crop")
    height, width = _size(size, "center_crop")
    top = (x.shape[1] - height) // 2
    left = (x.shape[2] - width) // 2
    if top < 0 or left < 0:
        raise ValueError(
            f"center_crop(): size must fit in the {x.shape[1]}x{x.shape[2]} image, got {size!r}"
        )
    return crop(images, top, left, height, width)


def crop_matrix(top: float, left: float) -> np.ndarray:
    """The map of a crop at ``(top, left)``: a translation by ``(-left, -top)``."""
    return np.array([[1.0, 0.0, -float(left)], [0.0, 1.0, -float(top)]])


def resized_crop(
    images: Any,
    windows: Any,
    size: Any,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Crop window ``n`` of every image ``n`` and resize it to ``size``, in one native pass.

    ``windows`` is ``(N, 4)`` ``(top, left, height, width)`` (or one row for a
    single image), each inside its image. The result equals
    ``resize(crop(image, *window), size)`` (up to the last bit of float32 and
    rounding at a uint8 half-way value: the weights are computed at an
    offset); the map of image ``n`` is ``resize_matrix((height, width), size)``
    composed with ``crop_matrix(top, left)``.
    """
    fn = "resized_crop"
    x, single = as_images(images, fn)
    out_h, out_w = _output_size(x, size, fn)
    _choice(interpolation, INTERPOLATIONS, fn, "interpolation")
    win = np.asarray(windows)
    if win.ndim == 1:
        win = win[None]
    if win.shape != (x.shape[0], 4) or win.dtype.kind not in "iu":
        raise ValueError(
            f"{fn}(): windows must be ({x.shape[0]}, 4) ints (top, left, height, width), "
            f"got {win.shape} {win.dtype}"
        )
    h, w = x.shape[1:3]
    top, left, height, width = win.T
    if len(win) and not (
        (height >= 1).all()
        & (width >= 1).all()
        & (top >= 0).all()
        & (left >= 0).all()
        & (top + height <= h).all()
        & (left + width <= w).all()
    ):
        # one NumPy test for the batch; the message names the first bad window
        for t, c, hh, ww in win.tolist():
            _window(x, t, c, hh, ww, fn)
    if not len(win):
        return _out(np.empty((0, out_h, out_w, x.shape[3]), x.dtype), single)
    if interpolation == "bilinear" and _fixed_linear(x):
        return _out(_resample_fixed3(x, out_h, out_w, *win.T), single)
    rows = _taps(win[:, 0], win[:, 2], x.shape[1], out_h, interpolation)
    cols = _taps(win[:, 1], win[:, 3], x.shape[2], out_w, interpolation)
    return _out(_resample(x, out_h, out_w, rows, cols), single)


def pad(
    images: Any,
    padding: Any,
    border_mode: str = "constant",
    fill: float = 0.0,
) -> np.ndarray:
    """Pad by ``padding = (top, bottom, left, right)`` (or one int for all four sides).

    ``border_mode`` as :data:`BORDER_MODES`. The map for the targets is
    ``crop_matrix(-top, -left)``.
    """
    fn = "pad"
    x, single = as_images(images, fn)
    items = tuple(padding) if isinstance(padding, (tuple, list)) else (padding,) * 4
    if len(items) != 4 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in items
    ):
        raise ValueError(
            f"{fn}(): padding must be an int >= 0 or (top, bottom, left, right) ints >= 0, "
            f"got {padding!r}"
        )
    mode = _choice(border_mode, BORDER_MODES, fn, "border_mode")
    top, bottom, left, right = (int(v) for v in items)
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{fn}(): images must not be empty, got shape {x.shape}")
    size = (x.shape[1] + top + bottom, x.shape[2] + left + right)
    inverse = crop_matrix(top, left)[None]
    out = np.empty((x.shape[0], *size, x.shape[3]), x.dtype)
    if out.size:
        _augment.warp_affine(
            np.ascontiguousarray(x), out, inverse, 0, mode, float(fill), native_threads(out.size)
        )
    return _out(out, single)


# -- flips -------------------------------------------------------------------------------


def _flip(images: Any, horizontal: bool, fn: str) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype not in _NATIVE_DTYPES and x.ndim in (3, 4):
        # a flip is a pure copy: other dtypes (float64 masks, labels) take NumPy's
        return np.ascontiguousarray(x[..., :, ::-1, :] if horizontal else x[..., ::-1, :, :])
    x, single = as_images(x, fn)
    out = np.empty(x.shape, x.dtype)
    if out.size:
        _augment.flip(
            np.ascontiguousarray(x), out, horizontal, not horizontal, native_threads(out.size)
        )
    return _out(out, single)


def _flip_some(x: np.ndarray, index: list[int], horizontal: bool) -> np.ndarray | None:
    """The batch ``x`` with the images ``index`` flipped, in one native pass (the
    others copied); None for dtypes without a native kernel."""
    if x.dtype not in _NATIVE_DTYPES or x.ndim != 4 or not x.size:
        return None
    selected = np.zeros(len(x), np.uint8)
    selected[index] = 1
    out = np.empty(x.shape, x.dtype)
    _augment.flip_selected(
        np.ascontiguousarray(x), out, selected, horizontal, not horizontal, native_threads(out.size)
    )
    return out


def hflip(images: Any) -> np.ndarray:
    """Mirror left-right (a new contiguous array; native for uint8 and float32, any dtype)."""
    return _flip(images, True, "hflip")


def vflip(images: Any) -> np.ndarray:
    """Mirror upside down (a new contiguous array; native for uint8 and float32, any dtype)."""
    return _flip(images, False, "vflip")


def as_boxes(boxes: Any, fn: str, name: str = "boxes") -> np.ndarray:
    """``boxes`` as a ``(K, 4)`` float array (integer input becomes float64)."""
    b = np.asarray(boxes)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{fn}(): {name} must have shape (K, 4), got {b.shape}")
    if b.dtype.kind not in "fiu":
        raise TypeError(f"{fn}(): {name} must be a real array, got dtype {b.dtype}")
    return b if b.dtype.kind == "f" else b.astype(np.float64)


def as_points(points: Any, fn: str, name: str = "points") -> np.ndarray:
    """``points`` as a ``(..., 2)`` float array (integer input becomes float64)."""
    p = np.asarray(points)
    if p.ndim < 1 or p.shape[-1] != 2:
        raise ValueError(f"{fn}(): {name} must have shape (..., 2), got {p.shape}")
    if p.dtype.kind not in "fiu":
        raise TypeError(f"{fn}(): {name} must be a real array, got dtype {p.dtype}")
    return p if p.dtype.kind == "f" else p.astype(np.float64)


def _extent(value: Any, fn: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}(): {name} must be a number, got {type(value).__name__}")
    return float(value)


def hflip_boxes(boxes: Any, width: float) -> np.ndarray:
    """Boxes of an image ``width`` wide after :func:`hflip`: ``x1, x2 -> W - x2, W - x1``."""
    b = as_boxes(boxes, "hflip_boxes")
    w = b.dtype.type(_extent(width, "hflip_boxes", "width"))
    return np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)


def vflip_boxes(boxes: Any, height: float) -> np.ndarray:
    """Boxes of an image ``height`` tall after :func:`vflip`: ``y1, y2 -> H - y2, H - y1``."""
    b = as_boxes(boxes, "vflip_boxes")
    h = b.dtype.type(_extent(height, "vflip_boxes", "height"))
    return np.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], 1)


def flip_permutation(flip_pairs: Any, num_points: int, fn: str = "flip_permutation") -> np.ndarray:
    """The order of point indices after a mirror that swaps each pair in ``flip_pairs``.

    ``flip_pairs`` are disjoint ``(i, j)`` pairs in ``[0, num_points)``, e.g.
    :data:`cnnkit.datasets.FLIP_PAIRS` (left eye <-> right eye): after the flip
    and this permutation every index keeps its meaning.
    """
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


def _flip_points(points: Any, extent: float, axis: int, flip_pairs: Any, fn: str) -> np.ndarray:
    p = as_points(points, fn)
    if flip_pairs is not None:
        if p.ndim < 2:
            raise ValueError(f"{fn}(): points must have shape (..., L, 2) with flip_pairs")
        p = p[..., flip_permutation(flip_pairs, p.shape[-2], f"{fn}()"), :]
    out = p.copy()
    out[..., axis] = p.dtype.type(extent) - p[..., axis]
    return out


def hflip_points(points: Any, width: float, flip_pairs: Any = None) -> np.ndarray:
    """Points after :func:`hflip` of an image ``width`` wide: ``x -> W - x``.

    A point on the centre of column ``j`` lands on the centre of column
    ``W - 1 - j``. With ``flip_pairs`` (see :func:`flip_permutation`) the
    points ``(..., L, 2)`` of each pair swap places, so "left eye" stays the
    subject's left eye. NaN points (missing) stay NaN.
    """
    return _flip_points(
        points, _extent(width, "hflip_points", "width"), 0, flip_pairs, "hflip_points"
    )


def vflip_points(points: Any, height: float, flip_pairs: Any = None) -> np.ndarray:
    """Points after :func:`vflip` of an image ``height`` tall: ``y -> H - y``.

    ``flip_pairs`` as in :func:`hflip_points`.
    """
    return _flip_points(
        points, _extent(height, "vflip_points", "height"), 1, flip_pairs, "vflip_points"
    )


# -- affine warps ------------------------------------------------------------------------


def affine_matrix(
    center: Sequence[float],
    angle: float = 0.0,
    scale: float | Sequence[float] = 1.0,
    shear: float | Sequence[float] = 0.0,
    translate: Sequence[float] = (0.0, 0.0),
) -> np.ndarray:
    """Rotation, scale and shear about ``center = (x, y)``, then a translation, as a 2x3 map.

    ``angle`` in degrees, counter-clockwise on the screen (y points down, as
    OpenCV's ``getRotationMatrix2D``); ``shear`` in degrees ``(x, y)`` or one
    for x; ``scale`` one factor or ``(sx, sy)``; ``translate`` ``(dx, dy)`` pixels.
    """
    return np.array(_affine_map(center, angle, scale, shear, translate)).reshape(2, 3)


def _affine_map(center: Any, angle: Any, scale: Any, shear: Any, translate: Any) -> list[float]:
    """:func:`affine_matrix`'s six entries, row by row, as floats."""
    cx, cy = (float(v) for v in center)
    sx, sy = (float(v) for v in (scale if isinstance(scale, (tuple, list)) else (scale, scale)))
    hx, hy = (float(v) for v in (shear if isinstance(shear, (tuple, list)) else (shear, 0.0)))
    tx, ty = (float(v) for v in translate)
    # rotate @ shear @ diag(sx, sy) in scalars: a batch transform builds one map per
    # image, and NumPy's small-array calls would cost more than the warp of a pixel row
    a = math.radians(float(angle))
    cos, sin = math.cos(a), math.sin(a)
    tan_x, tan_y = math.tan(math.radians(hx)), math.tan(math.radians(hy))
    l00, l01 = (cos + sin * tan_y) * sx, (cos * tan_x + sin) * sy
    l10, l11 = (-sin + cos * tan_y) * sx, (-sin * tan_x + cos) * sy
    return [l00, l01, cx - (l00 * cx + l01 * cy) + tx, l10, l11, cy - (l10 * cx + l11 * cy) + ty]


# uint8 bilinear warps sample in fixed point (1/2048 pixel, int32 sums; see
# _augment.warp_affine_u8) up to this image side; larger images use float64.
_FIXED_MAX_SIDE = 1 << 17
_WARP_AVX512 = _augment.warp_vector_isa() == "avx512"  # fixed by the build


def warp_affine(
    images: Any,
    matrix: Any,
    size: Any = None,
    interpolation: str = "bilinear",
    border_mode: str = "constant",
    fill: float = 0.0,
) -> np.ndarray:
    """Warp by the 2x3 map ``matrix`` (input point to output point) into ``size``.

    Parameters
    ----------
    images : array_like, (H, W, C) or (N, H, W, C), uint8 or float32
    matrix : array_like, (2, 3), (3, 3) or (N, 2, 3)
        One map for all images, or one per image of a batch.
    size : int or (height, width), optional
        The output size; default the input's.
    interpolation : {"nearest", "bilinear"}
    border_mode : {"constant", "reflect", "replicate"}
    fill : float
        The value outside the image for ``constant``.

    Notes
    -----
    uint8 bilinear warps compute in fixed point: coordinates rounded to 1/2048
    pixel and integer weights, each result the exact half-up rounding of the
    bilinear value there, so within 1 of the float64 reference
    (:func:`cnnkit.reference.warp_affine`); float32 and nearest are computed in
    float64 as the reference. 3-channel uint8 rows run 16 pixels at a time on
    CPUs with AVX-512, with the same bytes as elsewhere.
    """
    fn = "warp_affine"
    x, single = as_images(images, fn)
    out_h, out_w = x.shape[1:3] if size is None else _output_size(x, size, fn)
    interp = _choice(interpolation, INTERPOLATIONS[:2], fn, "interpolation")
    mode = _choice(border_mode, BORDER_MODES, fn, "border_mode")
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim == 3:
        if m.shape[0] != x.shape[0] or m.shape[1:] not in ((2, 3), (3, 3)):
            raise ValueError(
                f"{fn}(): matrix must have shape (2, 3) or ({x.shape[0]}, 2, 3), got {m.shape}"
            )
        if not np.all(np.isfinite(m)):
            raise ValueError(f"{fn}(): matrix must be finite")
        inverse = _invert_affines(m[:, :2], fn)
    else:
        inverse = invert_affine(_matrix(m, fn), fn)[None]
    if (x.shape[1] == 0 or x.shape[2] == 0) and mode != 0:
        raise ValueError(f"{fn}(): images must not be empty, got shape {x.shape}")
    return _out(_warp(x, inverse, out_h, out_w, interp, mode, fill), single)


def _warp(
    x: np.ndarray, inverse: np.ndarray, out_h: int, out_w: int, interp: int, mode: int, fill: float
) -> np.ndarray:
    """:func:`warp_affine` of the batch ``x`` by the checked inverse maps ``(N or 1, 2, 3)``
    (output to input) and the numbered interpolation and border mode."""
    out = np.empty((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
    if out.size and x.dtype == np.uint8 and interp == 1 and max(x.shape[1:3]) <= _FIXED_MAX_SIDE:
        threads = native_threads(out.size)
        _augment.warp_affine_u8(
            np.ascontiguousarray(x),
            out,
            np.ascontiguousarray(inverse, dtype=np.float64),
            mode,
            float(fill),
            np.empty(_augment.warp_scratch_size(out_w, threads), np.uint8),
            threads,
        )
    elif out.size:
        inverse = np.ascontiguousarray(inverse, dtype=np.float64)
        _augment.warp_affine(
            np.ascontiguousarray(x),
            out,
            inverse,
            interp,
            mode,
            float(fill),
            native_threads(out.size),
        )
    return out


def affine_points(points: Any, matrix: Any) -> np.ndarray:
    """Points ``(..., 2)`` moved by the 2x3 map ``matrix`` (same float dtype; NaN stays NaN)."""
    p = as_points(points, "affine_points")
    m = _matrix(matrix, "affine_points")
    out = p.astype(np.float64) @ m[:, :2].T + m[:, 2]
    return out.astype(p.dtype)


def affine_boxes(
    boxes: Any,
    matrix: Any,
    size: Any | None = None,
    min_visibility: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes moved by ``matrix``: the box around their four moved corners, clipped to ``size``.

    Parameters
    ----------
    boxes : array_like, (K, 4) xyxy
    matrix : array_like, (2, 3)
    size : (height, width), optional
        The output image; boxes are clipped to it when given.
    min_visibility : float in [0, 1]
        Keep a box when its clipped area is at least this fraction of its
        unclipped (moved) area; a box with no area left is always dropped when
        clipping. Zero-area boxes inside the image are kept.

    Returns
    -------
    boxes : numpy.ndarray, (K', 4), same float dtype
    keep : numpy.ndarray, (K,) bool
        Which input boxes remain (use it to drop their labels too).
    """
    fn = "affine_boxes"
    b = as_boxes(boxes, fn)
    m = _matrix(matrix, fn)
    vis = _extent(min_visibility, fn, "min_visibility")
    if not 0.0 <= vis <= 1.0:
        raise ValueError(f"{fn}(): min_visibility must be in [0, 1], got {min_visibility}")
    corners = b[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2).astype(np.float64)
    moved = corners @ m[:, :2].T + m[:, 2]
    out = np.concatenate([moved.min(1), moved.max(1)], 1)
    keep = np.ones(len(b), bool)
    if size is not None:
        h, w = _size(size, fn)
        area = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
        clipped = np.clip(out, 0, [w, h, w, h])
        left = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        inside = (out[:, 0] <= w) & (out[:, 2] >= 0) & (out[:, 1] <= h) & (out[:, 3] >= 0)
        degenerate = area <= 0
        keep = np.where(degenerate, inside, (left > 0) & (left >= vis * area))
        out = clipped
    return out[keep].astype(b.dtype), keep


def crop_boxes(
    boxes: Any, top: float, left: float, height: int, width: int, min_visibility: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes after :func:`crop`: shifted, clipped to the window, filtered.

    ``min_visibility`` and the result as in :func:`affine_boxes`.
    """
    return affine_boxes(boxes, crop_matrix(top, left), (height, width), min_visibility)


def remap(
    images: Any,
    dx: Any,
    dy: Any,
    interpolation: str = "bilinear",
    border_mode: str = "constant",
    fill: float = 0.0,
) -> np.ndarray:
    """Sample each output pixel ``(i, j)`` at the input point ``(j + 0.5 + dx, i + 0.5 + dy)``.

    ``dx`` and ``dy`` are displacement fields ``(H, W)`` (or ``(N, H, W)`` for a
    batch), in pixels; the output has the input's size. The elastic
    distortion of :mod:`cnnkit.augment` is a remap by smoothed random fields.
    """
    fn = "remap"
    x, single = as_images(images, fn)
    interp = _choice(interpolation, INTERPOLATIONS[:2], fn, "interpolation")
    mode = _choice(border_mode, BORDER_MODES, fn, "border_mode")
    fields = []
    for name, field in (("dx", dx), ("dy", dy)):
        f = np.asarray(field, dtype=np.float32)
        if f.shape == x.shape[1:3]:
            f = np.broadcast_to(f, x.shape[:3])
        if f.shape != x.shape[:3]:
            raise ValueError(
                f"{fn}(): {name} must have shape {x.shape[1:3]} or {x.shape[:3]}, got {f.shape}"
            )
        if not np.all(np.isfinite(f)):
            raise ValueError(f"{fn}(): {name} must be finite")
        fields.append(np.ascontiguousarray(f))
    if (x.shape[1] == 0 or x.shape[2] == 0) and x.size:
        raise ValueError(f"{fn}(): images must not be empty, got shape {x.shape}")
    out = np.empty(x.shape, x.dtype)
    if out.size:
        _augment.remap(
            np.ascontiguousarray(x),
            out,
            *fields,
            interp,
            mode,
            float(fill),
            native_threads(out.size),
        )
    return _out(out, single)
