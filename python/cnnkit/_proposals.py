"""Selective search (Uijlings et al., IJCV 2013) around its two kernels.

This module holds the NumPy parts that :func:`cnnkit.ops.selective_search` and
:func:`cnnkit.reference.selective_search` share: checking the image, the colour spaces, the
per-pixel colour and texture bins, the strategies of each mode, and the ranking of the boxes.
The two kernels -- the Felzenszwalb segmentation and the hierarchical grouping -- are passed
in: the native ones from ``ops``, the NumPy ones from ``reference``. So are the HSV
conversion and the texture bins: ``ops`` passes native ones (csrc/proposal_features.cpp)
that give the same bits as the NumPy ones here, which stay the reference. NumPy only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np

COLOUR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8

# (colour spaces, k values, similarity strategies) per mode, as in the paper's section 5.2:
# "single" is one hierarchy (HSV, k = 100, C+T+S+F; OpenCV's single strategy); "fast" is HSV
# and Lab, k = 50 and 100, C+T+S+F and T+S+F; "quality" adds rgI, H and I, k = 150 and 300,
# and the fill-only and size-only strategies.
STRATEGIES = {
    "single": (("hsv",), (100,), ("CTSF",)),
    "fast": (("hsv", "lab"), (50, 100), ("CTSF", "TSF")),
    "quality": (("hsv", "lab", "rgi", "h", "i"), (50, 100, 150, 300), ("CTSF", "TSF", "F", "S")),
}


def rgb_image(image: object, fn: str) -> np.ndarray:
    """The image as (H, W, 3) float64 RGB in [0, 1].

    uint8 is divided by 255; floats must be finite and within [0, 1]. (H, W) and (H, W, 1)
    are grey and repeated into three channels; (H, W, 4) is RGBA and loses its alpha, with
    a warning.
    """
    x = np.asarray(image)
    if x.dtype.kind not in "uf" or (x.dtype.kind == "u" and x.dtype != np.uint8):
        raise TypeError(f"{fn}(): image must have dtype uint8, float32 or float64, got {x.dtype}")
    if x.dtype.kind == "f" and x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}(): image must have dtype uint8, float32 or float64, got {x.dtype}")
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{fn}(): image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got shape {x.shape}"
        )
    if x.size == 0:
        raise ValueError(f"{fn}(): image must not be empty, got shape {x.shape}")
    if x.dtype == np.uint8:
        x = x * (1.0 / 255.0)
    else:
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{fn}(): image must be finite")
        if x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(
                f"{fn}(): image must hold float values in [0, 1], "
                f"got values in [{x.min():g}, {x.max():g}]"
            )
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 4:
        warnings.warn(
            f"{fn}(): image has 4 channels; taken as RGBA and the alpha channel is ignored",
            UserWarning,
            stacklevel=3,
        )
        x = x[:, :, :3]
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return x


def _hsv(rgb: np.ndarray) -> np.ndarray:
    top, bottom = rgb.max(axis=2), rgb.min(axis=2)
    spread = top - bottom
    safe = np.where(spread > 0, spread, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(
        top == r,
        ((g - b) / safe) % 6.0,
        np.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = np.where(spread > 0, hue / 6.0, 0.0)
    saturation = np.where(top > 0, spread / np.where(top > 0, top, 1.0), 0.0)
    return np.stack([hue, saturation, top], axis=2)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of sRGB, scaled to [0, 1]: L / 100, (a + 128) / 255, (b + 128) / 255."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (
        linear
        @ np.array(
            [
                [0.412453, 0.357580, 0.180423],
                [0.212671, 0.715160, 0.072169],
                [0.019334, 0.119193, 0.950227],
            ]
        ).T
    )
    xyz = xyz / np.array([0.950456, 1.0, 1.088754])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.clip(np.stack([lightness / 100.0, (a + 128.0) / 255.0, (b + 128.0) / 255.0], 2), 0, 1)


def colour_space(
    rgb: np.ndarray, name: str, hsv: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """(H, W, C) in [0, 1] for the colour spaces of the paper: hsv, lab, rgi, h, i.

    ``hsv``, when given, replaces the NumPy HSV conversion (ops passes the native one).
    """
    hsv = _hsv if hsv is None else hsv
    if name == "hsv":
        return hsv(rgb)
    if name == "lab":
        return _lab(rgb)
    total = rgb.sum(axis=2)
    intensity = total / 3.0
    if name == "rgi":
        safe = np.where(total > 0, total, 1.0)
        r = np.where(total > 0, rgb[..., 0] / safe, 1.0 / 3.0)
        g = np.where(total > 0, rgb[..., 1] / safe, 1.0 / 3.0)
        return np.stack([r, g, intensity], axis=2)
    if name == "h":
        return hsv(rgb)[..., :1]
    if name == "i":
        return intensity[..., None]
    raise ValueError(f"unknown colour space {name!r}")


def colour_bins(x: np.ndarray) -> np.ndarray:
    """Each pixel's bin (0..24) in each channel."""
    return np.minimum((x * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1).astype(np.uint8)


def _smooth(x: np.ndarray, axis: int) -> np.ndarray:
    """Gaussian of sigma 1 (9 taps, edges repeated) along axis 0 or 1."""
    taps = np.exp(-0.5 * np.arange(-4, 5, dtype=np.float64) ** 2)
    taps = (taps / taps.sum()).astype(x.dtype)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (4, 4)
    padded = np.pad(x, pad, mode="edge")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for t, weight in enumerate(taps):
        out += weight * (padded[t : t + n] if axis == 0 else padded[:, t : t + n])
    return out


def texture_bins(x: np.ndarray) -> np.ndarray:
    """Each pixel's bin (0..9) of its gradient response in 8 orientations per channel.

    The paper's Gaussian derivatives (sigma 1) in 8 orientations: the image is smoothed with
    sigma 1 (in float32), differentiated by central differences, and the response to
    orientation ``k * 45`` degrees is the positive part of the directional derivative,
    scaled by its maximum over the image. Channel c, orientation o is texture channel
    ``c * 8 + o``.
    """
    h, w, c = x.shape
    s = _smooth(_smooth(x.astype(np.float32), 0), 1)
    gy = np.gradient(s, axis=0) if h > 1 else np.zeros_like(s)
    gx = np.gradient(s, axis=1) if w > 1 else np.zeros_like(s)
    out = np.empty((h, w, c, ORIENTATIONS), np.uint8)
    half = ORIENTATIONS // 2
    for k in range(half):  # orientation k + 4 is the opposite direction: the negative part
        angle = k * np.pi / half
        d = gx * np.float32(np.cos(angle)) + gy * np.float32(np.sin(angle))
        flat = np.ascontiguousarray(np.moveaxis(d, 2, 0)).reshape(c, -1).T  # fast reductions
        tops = (np.maximum(flat.max(axis=0), 0), np.maximum(-flat.min(axis=0), 0))
        for o, sign, top in ((k, 1, tops[0]), (k + half, -1, tops[1])):
            scale = np.where(top > 0, TEXTURE_BINS / np.where(top > 0, top, 1), 0)
            response = np.maximum(d * (sign * scale.astype(np.float32)), 0)
            out[..., o] = np.minimum(response, TEXTURE_BINS - 1).astype(np.uint8)
    return out.reshape(h, w, c * ORIENTATIONS)


def check_mode(mode: object, fn: str) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"{fn}(): mode must be a str, got {type(mode).__name__}")
    if mode not in STRATEGIES:
        raise ValueError(f"{fn}(): mode must be 'single', 'fast' or 'quality', got {mode!r}")
    return mode


def check_seed(seed: object, fn: str) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"{fn}(): seed must be an int or a numpy.random.Generator, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"{fn}(): seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def selective_search(
    image: object,
    mode: object,
    seed: object,
    *,
    segment: Callable[..., np.ndarray],
    group: Callable[..., np.ndarray],
    fn: str,
    group_many: Callable[..., list] | None = None,
    map_jobs: Callable[..., Iterable] = map,
    hsv: Callable[[np.ndarray], np.ndarray] | None = None,
    texture: Callable[[np.ndarray], np.ndarray] = texture_bins,
) -> np.ndarray:
    """Every strategy's hierarchy, ranked and deduplicated (see ops.selective_search).

    ``group_many(labels, colour_bins, texture_bins, strategies)``, when given, groups one
    segmentation under all the strategies at once (sharing the initial regions); else
    ``group`` is called per strategy. ``map_jobs(function, jobs)`` runs the colour spaces,
    then the segmentations (a thread pool's ``map`` runs them side by side: the kernels
    release the GIL); its results come in the jobs' order, so the boxes and their ranking do
    not depend on it. ``hsv`` and ``texture`` replace the NumPy HSV conversion and
    :func:`texture_bins` (ops passes native ones that give the same bits).
    """
    rng = check_seed(seed, fn)
    spaces, ks, similarities = STRATEGIES[check_mode(mode, fn)]
    rgb = rgb_image(image, fn)

    def features(space: str) -> tuple:
        x = colour_space(rgb, space, hsv)
        return x, colour_bins(x), texture(x)

    def hierarchies(job: tuple) -> list:
        x, cbins, tbins = job[0]
        labels = segment(x, scale=float(job[1]), sigma=0.8, min_size=job[1])
        if group_many is not None:
            return group_many(labels, cbins, tbins, list(similarities))
        return [group(labels, cbins, tbins, *(t in s for t in "CTSF")) for s in similarities]

    spaced = list(map_jobs(features, spaces))
    found_all = list(map_jobs(hierarchies, [(f, k) for f in spaced for k in ks]))
    boxes, values = [], []
    for found in (b for per_segmentation in found_all for b in per_segmentation):
        # The paper's ranking: the last region of a hierarchy (the whole image) is at
        # position 1, the one before at 2, ...; positions are scaled by a random number in
        # [0, 1) so that hierarchies interleave.
        positions = np.arange(len(found), 0, -1, dtype=np.float64)
        boxes.append(found)
        values.append(positions * rng.random(len(found)))
    boxes_all = np.concatenate(boxes).astype(np.float32)
    ranked = boxes_all[np.argsort(np.concatenate(values), kind="stable")]
    _, first = np.unique(ranked, axis=0, return_index=True)
    return ranked[np.sort(first)]
