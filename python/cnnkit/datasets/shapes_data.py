"""Procedural shape datasets: multi-object detection and single-object localization.

Every image is a dark two-colour gradient with mild pixel noise, and the objects
are bright flat-coloured shapes: ``"circle"`` (an ellipse), ``"square"`` (an
axis-aligned rectangle) and ``"triangle"`` (an isosceles triangle pointing up).
Width and height are drawn independently (log-uniform from 8 px to 60% of the
image side), so objects are tall, wide and everything between.

Contrast is guaranteed: every object pixel has its largest channel >= 0.65 and
every background pixel <= 0.4 (noise included), so ``images.max(-1) > 0.5`` is
exactly the union of the drawn objects.

Boxes are ``xyxy`` in pixels with the pixel-edge convention: a shape covering
pixel columns 3..10 has ``x1 = 3`` and ``x2 = 11``. They are tight: the drawn
shape touches all four sides of its box.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

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

__all__ = ["SHAPE_NAMES", "SingleObjectData", "shapes", "single_object"]

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle")
"""The shapes the generators can draw."""

MIN_SIZE = 8
MAX_FRACTION = 0.6
# Smallest image side: room for a MIN_SIZE object and an odd triangle width above it.
MIN_IMAGE_SIDE = 16
MAX_IOU = 0.3
# A small object under a large later one can have a low IoU yet be hidden; this
# bounds the part of an earlier object's box that later objects together cover.
MAX_COVER = 0.5
RETRIES = 20
BACKGROUND_VALUE = (0.05, 0.3)
OBJECT_VALUE = (0.75, 1.0)
OBJECT_SATURATION = (0.45, 1.0)


def shape_mask(shape: int, h: int, w: int) -> np.ndarray:
    """Boolean ``(h, w)`` mask of shape index ``shape`` (in :data:`SHAPE_NAMES`) filling its box.

    Every mask touches all four sides of its box (for triangles, ``w`` must be odd).
    """
    # Pixel centres relative to the box centre.
    dy = np.abs(np.arange(h) + 0.5 - h / 2)[:, None]
    dx = np.abs(np.arange(w) + 0.5 - w / 2)[None, :]
    if shape == 0:
        mask = (dx / (w / 2)) ** 2 + (dy / (h / 2)) ** 2 <= 1.0
        # The middle row and column reach the box edges (matters only for very
        # elongated ellipses, where no pixel centre of the end columns is inside).
        mask |= (dy <= 0.5) | (dx <= 0.5)
    elif shape == 1:
        mask = np.ones((h, w), dtype=bool)
    else:
        # A row covers the triangle's width at its lower edge: the apex row holds
        # the centre pixel and the bottom row the full width.
        rows = np.arange(h)[:, None]
        mask = dx <= (rows + 1) / h * (w / 2)
    mask.setflags(write=False)
    return mask


# Small masks repeat constantly (a 64-px image has ~3,000 distinct ones) and are
# cached; large ones are rare per size and cost little next to drawing them, and
# caching them could hold hundreds of megabytes.
_cached_mask = functools.lru_cache(maxsize=8192)(shape_mask)
CACHE_AREA = 64 * 64


def _check_classes(classes: Any, fn: str) -> np.ndarray:
    """Class names to shape indices; class ``k`` draws ``SHAPE_NAMES[result[k]]``."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"{fn}: classes must be a sequence of shape names, got {classes!r}")
    if len(classes) == 0:
        raise ValueError(f"{fn}: classes must not be empty")
    for name in classes:
        if name not in SHAPE_NAMES:
            raise ValueError(f"{fn}: unknown class name {name!r}, expected one of {SHAPE_NAMES}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{fn}: classes must be distinct, got {tuple(classes)}")
    return np.array([SHAPE_NAMES.index(name) for name in classes], dtype=np.int64)


def _sample_sizes(
    rng: np.random.Generator, m: int, size: tuple[int, int], shape_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Heights and widths (log-uniform, independent); triangle widths are odd."""
    hmax = int(MAX_FRACTION * size[0])
    wmax = int(MAX_FRACTION * size[1])
    hs = np.exp(rng.uniform(np.log(MIN_SIZE), np.log(hmax + 1), m)).astype(np.int64)
    ws = np.exp(rng.uniform(np.log(MIN_SIZE), np.log(wmax + 1), m)).astype(np.int64)
    hs = np.clip(hs, MIN_SIZE, hmax)
    ws = np.clip(ws, MIN_SIZE, wmax)
    tri = shape_idx == 2
    ws[tri] |= 1  # an odd width puts the apex on one pixel column
    ws[tri & (ws > wmax)] -= 2
    return hs, ws


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU of boxes ``a`` (m, 4) against ``b`` (m, j, 4), and the fraction of each ``b``
    that ``a`` covers, both (m, j)."""
    a = a[:, None, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12), inter / np.maximum(area_b, 1e-12)


def _render(
    rng: np.random.Generator,
    size: tuple[int, int],
    boxes: np.ndarray,
    shape_idx: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """Images ``(n, H, W, 3)`` with object ``j`` of image ``i`` drawn where ``valid[i, j]``.

    ``boxes`` (n, M, 4) int64 xyxy, ``shape_idx`` (n, M); later objects are drawn on top.
    """
    n, m = valid.shape
    colours = random_colours(rng, (n, m), OBJECT_VALUE, OBJECT_SATURATION).astype(np.float32)
    images = np.empty((n, *size, 3), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        chunk = gradient_backgrounds(rng, images[start:stop], BACKGROUND_VALUE)
        ii, jj = np.nonzero(valid[start:stop])
        rows = zip(
            ii.tolist(),
            boxes[start + ii, jj].tolist(),
            shape_idx[start + ii, jj].tolist(),
            colours[start + ii, jj],
            strict=True,
        )
        for i, (x1, y1, x2, y2), shape, colour in rows:
            h, w = y2 - y1, x2 - x1
            mask = (_cached_mask if h * w <= CACHE_AREA else shape_mask)(shape, h, w)
            # Boolean indexing: several times faster here than copyto with a
            # broadcast `where`.
            chunk[i, y1:y2, x1:x2][mask] = colour
        add_noise(rng, chunk)
    return images


def shapes(
    n: int,
    *,
    image_size: int | tuple[int, int] = 64,
    classes: Sequence[str] = SHAPE_NAMES,
    max_objects: int = 4,
    min_objects: int = 1,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """A procedural object-detection dataset of bright shapes on dark backgrounds.

    Each image gets a number of objects drawn uniformly from ``[min_objects,
    max_objects]``, each with a uniformly drawn class, an independent width and
    height (log-uniform, 8 px to 60% of the image side) and a bright random
    colour. A placement whose box IoU with an earlier object of the image
    exceeds 0.3, or that would leave more than half of an earlier object's box
    covered by later objects, is redrawn (up to 20 times, then the object is skipped, so a
    crowded image can hold fewer objects than asked; the first object is never
    skipped). Later objects are drawn on top of earlier ones.

    Parameters
    ----------
    n : int
        Number of images (>= 0).
    image_size : int or (int, int)
        Image side, or ``(H, W)``; each side >= 16.
    classes : sequence of str
        Distinct names from :data:`SHAPE_NAMES`; class ``k`` is ``classes[k]``.
    max_objects, min_objects : int
        Bounds of the number of objects per image, ``1 <= min_objects <= max_objects``.
    seed : int or numpy.random.Generator
        The same seed gives the same dataset.

    Returns
    -------
    images : numpy.ndarray
        ``(n, H, W, 3)`` float32 in [0, 1].
    targets : list of dict
        Per image, ``"boxes"`` ``(K, 4)`` float32 tight ``xyxy`` pixel boxes (pixel
        edges: columns 3..10 give ``x1 = 3, x2 = 11``) in drawing order, and
        ``"classes"`` ``(K,)`` int64 indices into ``classes``.

    Examples
    --------
    >>> images, targets = shapes(100, seed=1)
    >>> images.shape, targets[0]["boxes"].dtype
    ((100, 64, 64, 3), dtype('float32'))
    """
    fn = "shapes()"
    n = _validate.integer(fn, "n", n, minimum=0)
    size = check_image_size(image_size, fn, MIN_IMAGE_SIDE)
    check_memory(fn, n, size)
    shape_of_class = _check_classes(classes, fn)
    for name, value in (("max_objects", max_objects), ("min_objects", min_objects)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__}")
    if min_objects < 1:
        raise ValueError(f"{fn}: min_objects must be >= 1, got {min_objects}")
    if max_objects < min_objects:
        raise ValueError(
            f"{fn}: max_objects must be >= min_objects ({min_objects}), got {max_objects}"
        )
    rng = _validate.generator(fn, seed)
    m = int(max_objects)

    counts = rng.integers(min_objects, m + 1, n)
    labels = rng.integers(0, len(shape_of_class), (n, m))
    shape_idx = shape_of_class[labels]
    boxes = np.zeros((n, m, 4), dtype=np.int64)
    valid = np.zeros((n, m), dtype=bool)
    covered = np.zeros((n, m))  # fraction of each box covered by later boxes (a bound)
    # Placement is vectorised over images: slot j of every image that still needs
    # it is redrawn until it clears the IoU limit against the image's earlier slots.
    for j in range(m):
        for _ in range(RETRIES):
            todo = np.nonzero((j < counts) & ~valid[:, j])[0]
            if todo.size == 0:
                break
            hs, ws = _sample_sizes(rng, todo.size, size, shape_idx[todo, j])
            x1 = rng.integers(0, size[1] - ws + 1)
            y1 = rng.integers(0, size[0] - hs + 1)
            cand = np.stack([x1, y1, x1 + ws, y1 + hs], axis=1)
            if j > 0:
                iou, cover = _overlap(cand.astype(np.float64), boxes[todo, :j].astype(np.float64))
                # The covered parts of an earlier box add up over later objects
                # (their sum bounds the union), so the cap holds for all of them.
                clash = (iou > MAX_IOU) | (covered[todo, :j] + cover > MAX_COVER)
                ok = ~(clash & valid[todo, :j]).any(axis=1)
                covered[todo[ok], :j] += cover[ok] * valid[todo[ok], :j]
            else:
                ok = np.ones(todo.size, dtype=bool)
            boxes[todo[ok], j] = cand[ok]
            valid[todo[ok], j] = True

    images = _render(rng, size, boxes, shape_idx, valid)
    targets = [
        {"boxes": boxes[i][valid[i]].astype(np.float32), "classes": labels[i][valid[i]].copy()}
        for i in range(n)
    ]
    return images, targets


class SingleObjectData(NamedTuple):
    """The result of :func:`single_object`."""

    images: np.ndarray
    """``(n, H, W, 3)`` float32 in [0, 1]."""
    y: np.ndarray
    """``(n, 5 + C)`` float32 targets ``[pc, bx, by, bh, bw, c_1 .. c_C]``."""
    boxes: np.ndarray
    """``(n, 4)`` float32 ``xyxy`` pixel boxes, NaN rows where there is no object."""


def single_object(
    n: int,
    *,
    image_size: int | tuple[int, int] = 32,
    classes: Sequence[str] = SHAPE_NAMES,
    p_object: float = 0.8,
    seed: int | np.random.Generator = 0,
) -> SingleObjectData:
    """A classification-with-localization dataset: zero or one shape per image.

    Shapes, colours and backgrounds are those of :func:`shapes`. The targets use
    the course's layout (see :mod:`cnnkit.detection.localization`):
    ``[pc, bx, by, bh, bw, c_1 .. c_C]``, with ``(bx, by)`` the box midpoint and
    ``(bh, bw)`` its height and width, all relative to the image (0..1), and a
    one-hot class. Images without an object have ``pc = 0`` and zeros elsewhere
    ("don't care").

    Parameters
    ----------
    n : int
        Number of images (>= 0).
    image_size : int or (int, int)
        Image side, or ``(H, W)``; each side >= 16.
    classes : sequence of str
        Distinct names from :data:`SHAPE_NAMES`.
    p_object : float
        Probability that an image holds an object, in [0, 1].
    seed : int or numpy.random.Generator
        The same seed gives the same dataset.

    Returns
    -------
    SingleObjectData
        ``images`` ``(n, H, W, 3)`` float32, ``y`` ``(n, 5 + C)`` float32 and
        ``boxes`` ``(n, 4)`` float32 tight ``xyxy`` pixel boxes (NaN rows when absent).
    """
    fn = "single_object()"
    n = _validate.integer(fn, "n", n, minimum=0)
    size = check_image_size(image_size, fn, MIN_IMAGE_SIDE)
    check_memory(fn, n, size)
    shape_of_class = _check_classes(classes, fn)
    p_object = _validate.probability(fn, "p_object", p_object)
    rng = _validate.generator(fn, seed)

    present = rng.random(n) < p_object
    labels = rng.integers(0, len(shape_of_class), n)
    shape_idx = shape_of_class[labels]
    hs, ws = _sample_sizes(rng, n, size, shape_idx)
    x1 = rng.integers(0, size[1] - ws + 1)
    y1 = rng.integers(0, size[0] - hs + 1)
    boxes = np.stack([x1, y1, x1 + ws, y1 + hs], axis=1)
    images = _render(rng, size, boxes[:, None], shape_idx[:, None], present[:, None])

    hgt, wid = size
    y = np.zeros((n, 5 + len(shape_of_class)), dtype=np.float32)
    y[:, 0] = present
    y[:, 1] = (boxes[:, 0] + boxes[:, 2]) / (2 * wid)
    y[:, 2] = (boxes[:, 1] + boxes[:, 3]) / (2 * hgt)
    y[:, 3] = hs / hgt
    y[:, 4] = ws / wid
    y[np.arange(n), 5 + labels] = 1.0
    y[~present] = 0.0
    out_boxes = boxes.astype(np.float32)
    out_boxes[~present] = np.nan
    return SingleObjectData(images, y, out_boxes)
