"""R-CNN, Fast R-CNN and YOLO on the same procedural shapes, measured side by side.

The course quotes the YOLO paper: YOLO is 1000x faster than R-CNN and 100x faster than Fast
R-CNN. This example measures the three here. On the demo's data (64 x 64 images of circles,
squares and triangles; :func:`cnnkit.datasets.shapes`, training seed 0, held-out seed 1):

1. selective search's proposal recall at IoU 0.5 and 0.7 for the first 100, 500 and 2,000
   proposals of the held-out images, in the "fast" and "quality" modes;
2. R-CNN (:func:`cnnkit.detection.train_rcnn`: each proposal warped to 32 x 32 and
   classified), Fast R-CNN (:func:`cnnkit.detection.train_fast_rcnn`: backbone once per
   image, ``roi_align`` per proposal) and the demo's YOLO (``cnnkit demo --quick``'s
   configuration and training) trained on the same images, then COCO mAP@0.5 and
   mAP@[.5:.95] (:func:`cnnkit.detection.evaluate`) and images per second on the same
   held-out images -- with the proposals' time and without it.

    python examples/rcnn.py [--train 3000] [--test 200] [--epochs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from typing import Any

import numpy as np

import cnnkit
from cnnkit import datasets, ops
from cnnkit.demo import CLASSES, DETECT_THRESHOLD, DemoConfig, run_demo
from cnnkit.detection import (
    detect,
    evaluate,
    fast_rcnn_detect,
    proposal_recall,
    rcnn_detect,
    train_fast_rcnn,
    train_rcnn,
)

COUNTS = (100, 500, 2000)
THRESHOLDS = (0.5, 0.7)


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(
    train: int = 3000,
    test: int = 200,
    epochs: int = 2,
    yolo_epochs: int | None = None,
    image_size: int = 64,
    mode: str = "fast",
    seed: int = 0,
    print_fn: Any = print,
) -> dict[str, Any]:
    """Train the three detectors and measure them; returns the recall and the table rows."""
    started = time.perf_counter()
    x_train, y_train = datasets.shapes(train, image_size=image_size, classes=CLASSES, seed=seed)
    x_test, y_test = datasets.shapes(test, image_size=image_size, classes=CLASSES, seed=seed + 1)
    print_fn(
        f"{train} training and {test} held-out images of {image_size} x {image_size}, "
        f"{sum(len(t['boxes']) for t in y_test)} held-out objects; "
        f"{cnnkit.get_num_threads()} kernel threads"
    )

    recall, proposals_test, proposal_seconds = {}, {}, {}
    for m in ("fast", "quality"):
        found, seconds = _timed(lambda m=m: [ops.selective_search(x, mode=m) for x in x_test])
        proposals_test[m], proposal_seconds[m] = found, seconds / test
        recall[m] = proposal_recall(found, y_test, counts=COUNTS, thresholds=THRESHOLDS)
        recall[m]["mean proposals"] = float(np.mean([len(b) for b in found]))

    proposals_train, seconds = _timed(lambda: [ops.selective_search(x, mode=mode) for x in x_train])
    print_fn(f"selective search ({mode}) of the training images: {seconds:.0f} s")
    rcnn_model, rcnn_train = _timed(
        lambda: train_rcnn(
            x_train, y_train, num_classes=3, class_names=CLASSES, epochs=epochs,
            proposals=proposals_train, seed=seed,
        )
    )  # fmt: skip
    print_fn(f"R-CNN trained in {rcnn_train:.0f} s")
    fast_model, fast_train = _timed(
        lambda: train_fast_rcnn(
            x_train, y_train, num_classes=3, class_names=CLASSES, epochs=epochs,
            proposals=proposals_train, seed=seed,
        )
    )  # fmt: skip
    print_fn(f"Fast R-CNN trained in {fast_train:.0f} s")
    quick = DemoConfig.quick()
    config = dataclasses.replace(
        quick,
        train_images=train,
        test_images=test,
        image_size=image_size,
        epochs=yolo_epochs or quick.epochs,
    )
    with tempfile.TemporaryDirectory() as out:
        demo = run_demo(out, config=config, seed=seed, verbose=0, print_fn=lambda *a: None)
        yolo_model = cnnkit.load_model(f"{out}/model.cnnkit")
    print_fn(f"YOLO (the demo's) trained in {demo['train_seconds']:.0f} s")

    # Detection: the proposals are those computed above (their time is added per image), so
    # the detectors' own times and the proposal step's are reported apart.
    ours = proposals_test[mode]
    rows = []
    rcnn_found, seconds = _timed(
        lambda: [
            rcnn_detect(rcnn_model, x, proposals=p, score_threshold=DETECT_THRESHOLD)
            for x, p in zip(x_test, ours)
        ]
    )
    rows.append(("R-CNN", rcnn_found, seconds / test, proposal_seconds[mode]))
    fast_found, seconds = _timed(
        lambda: fast_rcnn_detect(
            fast_model, x_test, proposals=ours, score_threshold=DETECT_THRESHOLD
        )
    )
    rows.append(("Fast R-CNN", fast_found, seconds / test, proposal_seconds[mode]))
    yolo_found, seconds = _timed(
        lambda: detect(yolo_model, x_test, score_threshold=DETECT_THRESHOLD, iou_threshold=0.5)
    )
    rows.append(("YOLO (demo)", yolo_found, seconds / test, 0.0))
    table = []
    for name, found, seconds, extra in rows:
        metrics = evaluate(found, y_test)
        table.append(
            {
                "method": name,
                "map_50": metrics["map_50"],
                "map": metrics["map"],
                "images_per_second": 1.0 / (seconds + extra),
                "detector_images_per_second": 1.0 / seconds,
            }
        )
    return {
        "recall": recall,
        "proposal_seconds": proposal_seconds,
        "table": table,
        "train_seconds": {
            "R-CNN": rcnn_train,
            "Fast R-CNN": fast_train,
            "YOLO": demo["train_seconds"],
        },
        "total_seconds": time.perf_counter() - started,
        "mode": mode,
    }


def report(result: dict[str, Any], print_fn: Any = print) -> None:
    head = " | ".join(f"R@{t} N={n}" for t in THRESHOLDS for n in COUNTS)
    print_fn(f"\n| selective search | proposals | {head} | s / image |")
    print_fn("|" + " --- |" * (3 + len(COUNTS) * len(THRESHOLDS)))
    for m, r in result["recall"].items():
        cells = " | ".join(f"{r[n, t]:.3f}" for t in THRESHOLDS for n in COUNTS)
        print_fn(
            f"| {m} | {r['mean proposals']:.0f} | {cells} | {result['proposal_seconds'][m]:.4f} |"
        )
    print_fn(
        f"\n| detector | mAP@0.5 | COCO mAP | images/s (with {result['mode']} proposals) "
        "| images/s (detector alone) | training s |"
    )
    print_fn("| --- | --- | --- | --- | --- | --- |")
    for row in result["table"]:
        train = result["train_seconds"][row["method"].split(" (")[0]]
        print_fn(
            f"| {row['method']} | {row['map_50']:.3f} | {row['map']:.3f} | "
            f"{row['images_per_second']:.1f} | {row['detector_images_per_second']:.1f} | "
            f"{train:.0f} |"
        )
    print_fn(f"\ntotal run time {result['total_seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--mode", default="fast", choices=("single", "fast", "quality"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report(run(args.train, args.test, args.epochs, mode=args.mode, seed=args.seed))


if __name__ == "__main__":
    main()
