"""Detection evaluation: ``cnnkit.detection.evaluate`` against pycocotools' ``COCOeval``.

The peer's timed call is what a user runs: ``COCOeval(gt, dt, "bbox")`` then ``evaluate()``,
``accumulate()`` and ``summarize()`` (its printing sent to a buffer). Building its ground-truth
index and ``loadRes`` (``xywh`` boxes, ``area = w * h``) happen outside the timed region, as
other cases convert their inputs for a peer. Both return the twelve COCO numbers, which must
agree to 1e-6.

Data (seeded): ``IMAGES`` images of 640 x 480 with ``GT`` boxes each (sides 4..320 px, so all
three size ranges are populated) in ``CLASSES`` classes, and ``DETS`` detections per image:
every ground-truth box jittered by a few percent of its size (some twice, with a lower score,
some with a wrong class), the rest random boxes; scores uniform.
"""

from __future__ import annotations

import contextlib
import io
from functools import partial

import numpy as np

from . import Call, Case, allclose

SIZES = ((500, 10, 50, 20), (100, 20, 100, 80))  # (images, gt, dets per image, classes)


def problem(images: int, gt: int, dets: int, classes: int) -> tuple:
    """``(detections, ground_truth)`` lists of per-image dicts, ``xyxy`` float64 boxes."""
    rng = np.random.default_rng([images, gt, dets, classes])
    detections, ground_truth = [], []
    for _ in range(images):
        side = np.exp(rng.uniform(np.log(4), np.log(320), (gt, 2)))
        corner = rng.uniform(0, 1, (gt, 2)) * (np.array([640, 480]) - side).clip(0)
        boxes = np.concatenate([corner, corner + side], axis=1)
        labels = rng.integers(0, classes, gt)
        ground_truth.append({"boxes": boxes, "classes": labels})
        src = np.concatenate([np.arange(gt), rng.integers(0, gt, gt // 2)])
        jitter = rng.normal(0, 0.08, (src.size, 4)) * np.tile(side[src], 2)
        found = boxes[src] + jitter
        found[:, 2:] = np.maximum(found[:, 2:], found[:, :2])
        found_labels = np.where(rng.random(src.size) < 0.9, labels[src], rng.integers(0, classes))
        n_false = dets - src.size
        fside = np.exp(rng.uniform(np.log(4), np.log(320), (n_false, 2)))
        fcorner = rng.uniform(0, 1, (n_false, 2)) * (np.array([640, 480]) - fside).clip(0)
        detections.append(
            {
                "boxes": np.concatenate([found, np.concatenate([fcorner, fcorner + fside], 1)]),
                "scores": rng.random(dets),
                "classes": np.concatenate([found_labels, rng.integers(0, classes, n_false)]),
            }
        )
    return detections, ground_truth


def _cnnkit(inputs: tuple) -> Call:
    from cnnkit.detection import COCO_METRIC_KEYS, evaluate

    detections, ground_truth = inputs

    def call() -> np.ndarray:
        result = evaluate(detections, ground_truth)
        return np.array([result[k] for k in COCO_METRIC_KEYS])

    return call


def _pycocotools(inputs: tuple) -> Call:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    detections, ground_truth = inputs
    annotations, results = [], []
    for i, (d, g) in enumerate(zip(detections, ground_truth)):
        for box, label in zip(g["boxes"], g["classes"]):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(label),
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(d["boxes"], d["scores"], d["classes"]):
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": int(label),
                    "bbox": [
                        float(box[0]),
                        float(box[1]),
                        float(box[2] - box[0]),
                        float(box[3] - box[1]),
                    ],
                    "score": float(score),
                }
            )
    classes = sorted({a["category_id"] for a in annotations} | {r["category_id"] for r in results})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(ground_truth))],
            "annotations": annotations,
            "categories": [{"id": c} for c in classes],
        }
        gt.createIndex()
        dt = gt.loadRes(results)

    def call() -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return np.asarray(ev.stats)

    return call


def cases() -> list[Case]:
    return [
        Case(
            "coco evaluate",
            f"{images} img x {gt} gt x {dets} det, {classes} cls",
            "float64",
            partial(problem, images, gt, dets, classes),
            {"cnnkit": _cnnkit, "pycocotools": _pycocotools},
            allclose(0.0, 1e-6),
        )
        for images, gt, dets, classes in SIZES
    ]
