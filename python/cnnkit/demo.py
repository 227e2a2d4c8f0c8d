"""``cnnkit demo``: YOLO object detection on the procedural shapes dataset, end to end.

It generates the dataset, picks anchors by k-means over the training boxes,
trains a small YOLO network (with horizontal flips as augmentation), detects
on a held-out set, prints COCO mAP and mAP@0.5, and writes a picture of the
detections on a few test images (with Pillow, when it is installed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoConfig", "pictured_boxes", "run_demo"]

CLASSES = ("circle", "square", "triangle")
CLASS_COLOURS = ((230, 60, 60), (60, 200, 60), (70, 120, 255))
SHOWN_IMAGES = 8  # test images drawn in detections.png
DETECT_THRESHOLD = 0.01  # score a box needs to be evaluated (mAP wants the low ones too)
SHOW_THRESHOLD = 0.5  # score a box needs to be drawn
FALLBACK_BOXES = 3  # boxes drawn, with their scores, for an image with none above it


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of a demo run; :meth:`quick` is a short run (about 90 CPU-seconds; mAP@0.5 0.84)."""

    train_images: int = 8000
    test_images: int = 500
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    image_size: int = 64
    grid: int = 8
    anchors: int = 5
    width: int = 16

    @classmethod
    def quick(cls) -> DemoConfig:
        # The same images and epochs as before, but batches of 16 at a higher rate: twice the
        # updates for the same compute. At batch 32 and 2e-3 the five epochs left every score
        # below 0.5 (mAP@0.5 0.45); batch 32 at 5e-3 gave 0.36, batch 16 at 1e-2 gave 0.62.
        return cls(train_images=3000, test_images=200, epochs=5, batch_size=16, learning_rate=5e-3)


class FlippedBatches:
    """Shuffled training batches, each image flipped left-right with probability 1/2.

    Targets are encoded per batch from the (flipped) boxes, so the flip never
    has to be undone in the encoded form. Re-iterable: one pass per epoch,
    with a new seeded order and new flips each pass.
    """

    def __init__(self, images, labels, encode, batch_size: int, seed: int) -> None:
        self.images, self.labels, self.encode = images, labels, encode
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from . import image

        order = self.rng.permutation(len(self.images))
        width = self.images.shape[2]
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            flip = self.rng.random(len(index)) < 0.5
            images = self.images[index]
            images[flip] = images[flip, :, ::-1]
            boxes = []
            for i, f in zip(index, flip):
                b = self.labels[i]["boxes"]
                boxes.append(image.hflip_boxes(b, width) if f else b)
            yield images, self.encode(boxes, [self.labels[i]["classes"] for i in index])


def pictured_boxes(
    detections: list[dict], threshold: float, fallback: int
) -> tuple[list[dict], list[int]]:
    """Per image, the detections scoring >= ``threshold``; for an image with none, its best
    ``fallback`` detections instead (so the picture never hides what the model found). Also
    returns the indices of the images that fell back."""
    shown, fell_back = [], []
    for i, found in enumerate(detections):
        keep = found["scores"] >= threshold
        if not keep.any() and len(found["scores"]):
            keep = np.arange(len(found["scores"])) < fallback  # detect sorts by score
            fell_back.append(i)
        shown.append({k: v[keep] for k, v in found.items()})
    return shown, fell_back


def _label(pen: Any, at: tuple[float, float], text: str, colour: tuple[int, int, int]) -> None:
    """Text on a black patch: readable over any shape or background."""
    pen.rectangle(pen.textbbox(at, text), fill=(0, 0, 0))
    pen.text(at, text, fill=colour)


def _draw(
    images: np.ndarray,
    detections: list[dict],
    path: Path,
    names: Sequence[str],
    faint: Sequence[int] = (),
    scale: int = 4,
) -> bool:
    """A grid of images with their detections, labelled with class name and score; the images
    in ``faint`` (below-threshold fallbacks) get thin boxes. False when Pillow is missing."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return False
    n, h, w = images.shape[:3]
    cols = min(n, 4)
    rows = -(-n // cols)
    sheet = Image.new("RGB", (cols * w * scale, rows * h * scale), (255, 255, 255))
    for k, (image, found) in enumerate(zip(images, detections)):
        tile = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
        tile = tile.resize((w * scale, h * scale), Image.Resampling.NEAREST)
        pen = ImageDraw.Draw(tile)
        for box, score, cls in zip(found["boxes"], found["scores"], found["classes"]):
            colour = CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
            pen.rectangle(
                [float(v) * scale for v in box], outline=colour, width=1 if k in faint else 2
            )
            name = names[int(cls)] if 0 <= int(cls) < len(names) else str(int(cls))
            _label(
                pen,
                (float(box[0]) * scale + 3, float(box[1]) * scale + 1),
                f"{name} {score:.2f}",
                colour,
            )
        if k in faint:
            _label(pen, (3, h * scale - 13), "best boxes, all below threshold", (255, 255, 255))
        sheet.paste(tile, ((k % cols) * w * scale, (k // cols) * h * scale))
    sheet.save(path)
    return True


def run_demo(
    out: str | Path = "cnnkit-demo",
    *,
    config: DemoConfig | None = None,
    seed: int = 0,
    verbose: int = 1,
    print_fn: Any = print,
) -> dict[str, Any]:
    """Train and evaluate YOLO on the shapes dataset; returns the metrics and timings.

    Writes ``model.cnnkit`` (the trained :class:`~cnnkit.detection.YoloModel`, compiled
    with its :class:`~cnnkit.detection.YoloLoss`; it holds the anchors, class names, image
    size and grid, so ``detect(cnnkit.load_model(path), images)`` needs nothing else) and,
    with Pillow installed, ``detections.png`` into ``out``: the first eight test images
    with their boxes scoring >= 0.5, or, for an image with none, its best three boxes drawn
    thin with their scores (the run says so).
    """
    from . import datasets, ops
    from .detection import YoloLoss, detect, evaluate, yolo_model
    from .optimizers import Adam
    from .schedules import CosineDecay

    cfg = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    size = cfg.image_size

    x_train, y_train = datasets.shapes(
        cfg.train_images, image_size=size, classes=CLASSES, seed=seed
    )
    x_test, y_test = datasets.shapes(
        cfg.test_images, image_size=size, classes=CLASSES, seed=seed + 1
    )
    classes = len(CLASSES)
    print_fn(
        f"data: {len(x_train)} training and {len(x_test)} test images of {size}x{size}, "
        f"{sum(len(t['boxes']) for t in y_train)} training objects, {classes} classes"
    )

    boxes = np.concatenate([t["boxes"] for t in y_train])
    wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    kmeans = ops.kmeans_anchors(wh, cfg.anchors, seed=seed)
    anchors = kmeans.anchors
    print_fn(
        f"anchors (k-means, 1 - IoU): {np.round(anchors.astype(float), 1).tolist()}; mean best IoU "
        f"{kmeans.mean_iou:.3f}, recall@0.5 {kmeans.recall:.3f}"
    )

    def encode(boxes_list: Sequence[np.ndarray], classes_list: Sequence[np.ndarray]):
        return ops.yolo_encode_batch(
            boxes_list,
            classes_list,
            grid=cfg.grid,
            anchors=anchors,
            num_classes=classes,
            image_size=size,
        )[0]

    _, dropped = ops.yolo_encode_batch(
        [t["boxes"] for t in y_train],
        [t["classes"] for t in y_train],
        grid=cfg.grid,
        anchors=anchors,
        num_classes=classes,
        image_size=size,
    )
    print_fn(
        f"targets: {cfg.grid}x{cfg.grid} grid, {cfg.anchors} anchors; "
        f"{int(dropped.sum())} objects share a cell and anchor with another and are dropped"
    )

    model = yolo_model(
        (size, size, 3),
        anchors=anchors,
        class_names=CLASSES,
        width=cfg.width,
        downsamples=int(np.log2(size // cfg.grid)),
        seed=seed,
    )
    batches = FlippedBatches(x_train, y_train, encode, cfg.batch_size, seed)
    schedule = CosineDecay(cfg.learning_rate, decay_steps=cfg.epochs * len(batches), alpha=0.02)
    model.compile(optimizer=Adam(learning_rate=schedule), loss=YoloLoss(anchors, size))
    train_start = time.perf_counter()
    history = model.fit(batches, epochs=cfg.epochs, verbose=verbose)
    train_seconds = time.perf_counter() - train_start

    detections = detect(model, x_test, score_threshold=DETECT_THRESHOLD, iou_threshold=0.5)
    metrics = evaluate(detections, y_test)
    total_seconds = time.perf_counter() - started
    print_fn(
        f"held-out set: mAP@0.5 = {metrics['map_50']:.3f}, COCO mAP@[.5:.95] = "
        f"{metrics['map']:.3f}, mAR@100 = {metrics['mar_100']:.3f}"
    )
    per_class = ", ".join(
        f"{name} {metrics['map_per_class'].get(i, -1.0):.3f}" for i, name in enumerate(CLASSES)
    )
    print_fn(f"per-class COCO AP: {per_class}")

    model.save(out / "model.cnnkit")
    shown, fell_back = pictured_boxes(detections[:SHOWN_IMAGES], SHOW_THRESHOLD, FALLBACK_BOXES)
    picture = out / "detections.png"
    if _draw(x_test[:SHOWN_IMAGES], shown, picture, CLASSES, faint=fell_back):
        print_fn(
            f"wrote {picture} (boxes with score >= {SHOW_THRESHOLD}, labelled with class and "
            f"score) and {out / 'model.cnnkit'}"
        )
        if fell_back:
            print_fn(
                f"{len(fell_back)} of {len(shown)} pictured images have no box scoring >= "
                f"{SHOW_THRESHOLD}; they show their best {FALLBACK_BOXES} boxes, thin, with "
                "their scores (train longer, e.g. without --quick, for confident boxes)"
            )
        empty = sum(len(found["scores"]) == 0 for found in shown)
        if empty:
            print_fn(
                f"{empty} of {len(shown)} pictured images have no detection at all (every "
                f"score below {DETECT_THRESHOLD}): the model has not learned enough yet"
            )
    else:
        print_fn(
            f"wrote {out / 'model.cnnkit'}; Pillow is not installed, so no picture "
            "(pip install 'cnnkit[image]' for detections.png)"
        )
    print_fn(f"time: training {train_seconds:.0f} s, total {total_seconds:.0f} s")
    return {
        "metrics": metrics,
        "train_seconds": train_seconds,
        "total_seconds": total_seconds,
        "final_loss": history.history["loss"][-1],
        "anchors": anchors,
        "shown": shown,
        "below_threshold_images": fell_back,
    }
