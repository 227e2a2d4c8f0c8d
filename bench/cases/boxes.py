"""Box kernels: IoU family, NMS family and box utilities (see ``bench/cases/__init__.py``).

Peers: ``torchvision.ops`` (same names and semantics), plain ``torch`` expressions for the
aligned IoU forms (torchvision has none), and OpenCV's ``cv2.dnn.NMSBoxes``,
``NMSBoxesBatched`` and ``softNMSBoxes``. OpenCV takes ``xywh`` boxes and a score threshold
(0 here; every score is positive), and its soft-NMS only takes integer boxes, so the soft-NMS
inputs have integer coordinates for every implementation.

Box distributions (sizes 8..64 px, seeded):

* ``spread``: centres uniform in a square whose side grows with sqrt(N), so the density, and
  the number of overlaps per box, is the same at every N;
* ``dense``: every box in one 1024 x 1024 image, so overlaps grow with N;
* ``wide`` (issue 12's dense NMS target): top-left corners uniform in 0..1000, sides 10..100
  px; 10,000 boxes keep about 6,400 at IoU 0.5.

Scores are a permutation of ``k / (N + 1)``: distinct, so every NMS has one right answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from . import Call, Case, Prepare, allclose, count, equal, native, same_set, torchvision_module

if TYPE_CHECKING:
    import torch

IOU_THRESHOLD = 0.5
CLASSES = 80
IMAGE_SIDE = 1024.0
WIDE_SIDE, WIDE_SIZES = 1000.0, (10.0, 100.0)
SPREAD_SPACING = 32.0  # px of square side per sqrt(box): about 1.3 overlapping boxes per box
CLIP_SIZE = (768.0, 1000.0)  # (height, width): the dense boxes cross both edges
MIN_SIZE = 16.0
SOFT_NMS = {"sigma": 0.5, "score_threshold": 0.001}

NMS_SIZES = (100, 1_000, 10_000, 100_000)
PAIRWISE_SIZES = (100, 1_000, 10_000)
BATCHED_SIZES = (10_000, 100_000)
SOFT_NMS_SIZES = (1_000, 10_000)
LARGE = 100_000

PAIRWISE = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
REFERENCE = frozenset({"reference"})
NOTHING: frozenset[str] = frozenset()


# --- seeded inputs (never timed) ---------------------------------------------------------


def _random_boxes(rng: np.random.Generator, n: int, dist: str, dtype: type) -> np.ndarray:
    if dist == "wide":
        corners = rng.uniform(0.0, WIDE_SIDE, (n, 2))
        sides = rng.uniform(*WIDE_SIZES, (n, 2))
        return np.concatenate([corners, corners + sides], axis=1).astype(dtype)
    side = SPREAD_SPACING * math.sqrt(n) if dist == "spread" else IMAGE_SIDE
    centres = rng.uniform(0.0, side, (n, 2))
    half = rng.uniform(8.0, 64.0, (n, 2)) / 2
    return np.concatenate([centres - half, centres + half], axis=1).astype(dtype)


def _scores(rng: np.random.Generator, n: int, dtype: type) -> np.ndarray:
    return ((rng.permutation(n) + 1) / (n + 1)).astype(dtype)


def boxes_only(n: int, dist: str = "dense", dtype: type = np.float32) -> tuple:
    """``(boxes,)``."""
    return (_random_boxes(np.random.default_rng([n, 1]), n, dist, dtype),)


def scored(n: int, dist: str, dtype: type = np.float32, *, integer: bool = False) -> tuple:
    """``(boxes, scores)``; ``integer`` rounds the coordinates."""
    rng = np.random.default_rng([n, 2])
    boxes = _random_boxes(rng, n, dist, dtype)
    return (np.round(boxes) if integer else boxes), _scores(rng, n, dtype)


def classed(n: int, dist: str, classes: int) -> tuple:
    """``(boxes, scores, classes)``, the classes int64 and uniform in ``[0, classes)``."""
    rng = np.random.default_rng([n, 3])
    boxes, scores = _random_boxes(rng, n, dist, np.float32), _scores(rng, n, np.float32)
    return boxes, scores, rng.integers(0, classes, n, dtype=np.int64)


def pair(n: int, dtype: type = np.float32) -> tuple:
    """``(boxes1, boxes2)``: two independent sets of ``n`` boxes in one image."""
    rng = np.random.default_rng([n, 4])
    return _random_boxes(rng, n, "dense", dtype), _random_boxes(rng, n, "dense", dtype)


def jittered_pair(n: int) -> tuple:
    """``(boxes1, boxes2)`` with ``boxes2[i]`` a jittered ``boxes1[i]`` (aligned IoU ~0.5)."""
    rng = np.random.default_rng([n, 5])
    boxes = _random_boxes(rng, n, "dense", np.float64)
    size = boxes[:, 2:] - boxes[:, :2]
    moved = boxes + rng.normal(0.0, 0.15, (n, 4)) * np.tile(size, 2)
    jittered = np.concatenate([moved[:, :2], np.maximum(moved[:, :2], moved[:, 2:])], axis=1)
    return boxes.astype(np.float32), jittered.astype(np.float32)


# --- peers: prepare(inputs) -> timed call -----------------------------------------------


def _torchvision(function: str, *args: object) -> Prepare:
    """``torchvision.ops.<function>(*tensors, *args)``."""

    def prepare(inputs: tuple) -> Call:
        import torch

        fn = getattr(torchvision_module("torchvision.ops"), function)
        tensors = [torch.from_numpy(x) for x in inputs]
        return lambda: fn(*tensors, *args)

    return prepare


def _torch_aligned(function: str) -> Prepare:
    """An aligned IoU variant as plain torch expressions (torchvision's formulas)."""

    def prepare(inputs: tuple) -> Call:
        import torch

        a, b = (torch.from_numpy(x) for x in inputs)
        return lambda: _aligned_in_torch(function, a, b)

    return prepare


def _aligned_in_torch(function: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch

    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = iw * ih
    union = wa * ha + wb * hb - inter
    iou = inter / union
    if function == "box_iou":
        return iou
    cw = torch.maximum(a[:, 2], b[:, 2]) - torch.minimum(a[:, 0], b[:, 0])
    ch = torch.maximum(a[:, 3], b[:, 3]) - torch.minimum(a[:, 1], b[:, 1])
    if function == "generalized_box_iou":
        enclosing = cw * ch
        return iou - (enclosing - union) / enclosing
    dx = (a[:, 0] + a[:, 2] - b[:, 0] - b[:, 2]) / 2
    dy = (a[:, 1] + a[:, 3] - b[:, 1] - b[:, 3]) / 2
    diou = iou - (dx * dx + dy * dy) / (cw * cw + ch * ch)
    if function == "distance_box_iou":
        return diou
    v = (4 / math.pi**2) * (torch.atan(wa / ha) - torch.atan(wb / hb)) ** 2
    return diou - v * v / (1 - iou + v)


def _torch_utility(function: str, *args: object) -> Prepare:
    """A box utility as plain torch expressions (torchvision's formulas): the peer that
    runs where torchvision.ops does not load."""

    def prepare(inputs: tuple) -> Call:
        import torch

        b = torch.from_numpy(inputs[0])
        if function == "box_area":
            return lambda: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        if function == "clip_boxes":
            height, width = args[0]
            return lambda: torch.stack(
                [b[:, 0::2].clamp(0, width), b[:, 1::2].clamp(0, height)], dim=2
            ).reshape(-1, 4)
        if function == "remove_small_boxes":
            (min_size,) = args
            return lambda: torch.where(
                (b[:, 2] - b[:, 0] >= min_size) & (b[:, 3] - b[:, 1] >= min_size)
            )[0]
        if args == ("xyxy", "cxcywh"):
            return lambda: torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], dim=1)
        if args == ("cxcywh", "xyxy"):
            return lambda: torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], dim=1)
        raise ValueError(f"no torch formula for {function}{args}")

    return prepare


def _xywh(boxes: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(dtype)


def _cv2_nms(inputs: tuple) -> Call:
    import cv2

    boxes, scores = inputs
    xywh, scores = _xywh(boxes), scores.astype(np.float32)
    return lambda: cv2.dnn.NMSBoxes(xywh, scores, 0.0, IOU_THRESHOLD)


def _cv2_batched_nms(inputs: tuple) -> Call:
    import cv2

    boxes, scores, classes = inputs
    xywh, classes = _xywh(boxes), classes.astype(np.int32)
    return lambda: cv2.dnn.NMSBoxesBatched(xywh, scores, classes, 0.0, IOU_THRESHOLD)


def _cv2_soft_nms(inputs: tuple) -> Call:
    import cv2

    boxes, scores = inputs
    xywh = _xywh(boxes, np.int32)
    method = cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_GAUSSIAN
    threshold, sigma = SOFT_NMS["score_threshold"], SOFT_NMS["sigma"]

    def call() -> tuple:
        kept_scores, indices = cv2.dnn.softNMSBoxes(
            xywh, scores, threshold, IOU_THRESHOLD, 0, sigma, method
        )
        return indices, kept_scores

    return call


def _check_soft_nms(ours: tuple, theirs: tuple) -> str | None:
    """Same boxes selected, each with a close decayed score.

    The selection order is not compared: float32 rounding of the decay may swap two boxes
    whose scores differ by an ulp.
    """
    (our_indices, our_scores), (their_indices, their_scores) = ours, theirs
    our_indices, their_indices = np.ravel(our_indices), np.ravel(their_indices)
    return same_set(our_indices, their_indices) or allclose(1e-4, 1e-6)(
        our_scores[np.argsort(our_indices)], np.ravel(their_scores)[np.argsort(their_indices)]
    )


# --- cases -------------------------------------------------------------------------------


def _pairwise_cases() -> Iterator[Case]:
    for function in PAIRWISE:
        for n in PAIRWISE_SIZES:
            yield Case(
                function,
                f"{count(n)} x {count(n)}",
                "float32",
                partial(pair, n),
                {**native(function), "torchvision": _torchvision(function)},
                allclose(1e-4, 1e-5),
                REFERENCE if n >= 10_000 else NOTHING,
            )
    yield Case(
        "box_iou",
        "1,000 x 1,000",
        "float64",
        partial(pair, 1_000, np.float64),
        {**native("box_iou"), "torchvision": _torchvision("box_iou")},
        allclose(1e-9, 1e-12),
    )
    for function in PAIRWISE:
        yield Case(
            f"{function} aligned",
            count(LARGE),
            "float32",
            partial(jittered_pair, LARGE),
            {**native(function, aligned=True), "torch": _torch_aligned(function)},
            allclose(1e-4, 1e-5),
        )


def _nms_cases() -> Iterator[Case]:
    impls = {
        **native("nms", IOU_THRESHOLD),
        "torchvision": _torchvision("nms", IOU_THRESHOLD),
        "cv2": _cv2_nms,
    }
    for dist in ("spread", "dense"):
        for n in NMS_SIZES:
            yield Case(
                f"nms {dist}",
                count(n),
                "float32",
                partial(scored, n, dist),
                impls,
                same_set,
                REFERENCE if n >= 100_000 else NOTHING,
            )
    yield Case(
        "nms wide",
        "10,000",
        "float32",
        partial(scored, 10_000, "wide"),
        impls,
        same_set,
    )
    yield Case(
        "nms spread",
        "10,000",
        "float64",
        partial(scored, 10_000, "spread", np.float64),
        impls,
        same_set,
    )
    batched = {
        **native("batched_nms", IOU_THRESHOLD),
        "torchvision": _torchvision("batched_nms", IOU_THRESHOLD),
        "cv2": _cv2_batched_nms,
    }
    for n in BATCHED_SIZES:
        yield Case(
            f"batched_nms dense, {CLASSES} classes",
            count(n),
            "float32",
            partial(classed, n, "dense", CLASSES),
            batched,
            same_set,
        )
    soft = {**native("soft_nms", **SOFT_NMS), "cv2": _cv2_soft_nms}
    for n in SOFT_NMS_SIZES:
        yield Case(
            "soft_nms dense, gaussian",
            count(n),
            "float32",
            partial(scored, n, "dense", integer=True),
            soft,
            _check_soft_nms,
        )


def _utility_cases() -> Iterator[Case]:
    inputs = partial(boxes_only, LARGE)
    for in_fmt, out_fmt in (("xyxy", "cxcywh"), ("cxcywh", "xyxy")):
        args = (in_fmt, out_fmt)
        yield Case(
            f"box_convert {in_fmt}->{out_fmt}",
            count(LARGE),
            "float32",
            inputs,
            {
                **native("box_convert", *args),
                "torchvision": _torchvision("box_convert", *args),
                "torch": _torch_utility("box_convert", *args),
            },
            allclose(),
        )
    utilities = (
        ("box_area", "box_area", (), allclose()),
        ("clip_boxes", "clip_boxes_to_image", (CLIP_SIZE,), allclose()),
        ("remove_small_boxes", "remove_small_boxes", (MIN_SIZE,), equal),
    )
    for function, peer, args, check in utilities:
        yield Case(
            function,
            count(LARGE),
            "float32",
            inputs,
            {
                **native(function, *args),
                "torchvision": _torchvision(peer, *args),
                "torch": _torch_utility(function, *args),
            },
            check,
        )


def cases() -> list[Case]:
    """Every box case, cheapest family first."""
    return [*_utility_cases(), *_pairwise_cases(), *_nms_cases()]
