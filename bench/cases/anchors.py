"""YOLO targets and anchor clustering (see ``bench/cases/__init__.py``).

No library has these operations with these semantics (scikit-learn's ``KMeans`` is
Euclidean, not ``1 - IoU``), so the comparison is with cnnkit's NumPy reference: a
vectorised encoder (one ``lexsort`` per image resolves the cell/anchor collisions) and a
k-means whose steps are whole-array NumPy expressions.

Sizes are the issue's: a batch of 64 images of 20 boxes each on a 13 x 13 grid with 5
anchors and 80 classes (YOLOv2 on 416 x 416 images; the float32 target alone is 18 MB, so
writing it is a large part of the time), and 20,000 box shapes clustered into 9 anchors.
Box sizes are log-normal, like the objects of a detection data set.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import Case, Check, count, equal, native

IMAGE = 416
GRID = 13
CLASSES = 80
# YOLOv2's VOC anchors, in pixels of a 416 x 416 image (13 px cells).
ANCHORS = np.array([[1.32, 1.73], [3.19, 4.01], [5.06, 8.10], [9.47, 4.84], [11.24, 10.01]]) * (
    IMAGE / GRID
)


def _shapes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(np.exp(rng.normal(4.0, 0.8, (n, 2))), 4.0, IMAGE)


def batch(images: int, boxes: int, dtype: type = np.float32) -> tuple:
    """``(boxes_list, classes_list)``: ``boxes`` objects per image, centres uniform."""
    rng = np.random.default_rng([images, boxes])
    boxes_list, classes_list = [], []
    for _ in range(images):
        centres = rng.uniform(0, IMAGE, (boxes, 2))
        half = _shapes(rng, boxes) / 2
        boxes_list.append(np.concatenate([centres - half, centres + half], axis=1).astype(dtype))
        classes_list.append(rng.integers(0, CLASSES, boxes))
    return boxes_list, classes_list


def shapes(n: int, dtype: type = np.float32) -> tuple:
    """``(wh,)``: ``n`` box shapes."""
    return (_shapes(np.random.default_rng([n, 7]), n).astype(dtype),)


def _same_target(ours: tuple, theirs: tuple) -> str | None:
    return equal(ours[0], theirs[0]) or equal(ours[1], theirs[1])


def _same_anchors(ours: tuple, theirs: tuple) -> str | None:
    differs = equal(ours[0], theirs[0])
    if differs is None and (ours[1], ours[2]) != (theirs[1], theirs[2]):
        differs = f"mean IoU / recall {ours[1]}, {ours[2]} vs {theirs[1]}, {theirs[2]}"
    return differs


def cases() -> list[Case]:
    """yolo_encode_batch at the issue's size, then k-means at 20,000 shapes."""
    check_target: Check = _same_target
    check_anchors: Check = _same_anchors
    layout = {"grid": GRID, "anchors": ANCHORS, "num_classes": CLASSES, "image_size": IMAGE}
    return [
        Case(
            "yolo_encode_batch",
            "64 x 20 boxes, 13 x 13 x 5 x 85",
            "float32",
            partial(batch, 64, 20),
            native("yolo_encode_batch", **layout),
            check_target,
        ),
        Case(
            "kmeans_anchors",
            f"{count(20_000)} boxes, k = 9",
            "float32",
            partial(shapes, 20_000),
            native("kmeans_anchors", 9, seed=0),
            check_anchors,
        ),
    ]
