"""Proposal recall of selective search on the procedural shapes data.

For held-out images of ``cnnkit.datasets.shapes``, the share of ground-truth objects that
one of the first N proposals covers at IoU >= 0.5 and >= 0.7 (N = 100, 500, 2000), for
``cnnkit.ops.selective_search`` in its three modes and, when it is installed, the
``selectivesearch`` PyPI package (one hierarchy, whose boxes come in no ranked order: its
first N are used), with the mean number of proposals and the seconds per image.

    python examples/proposals.py [--images 200] [--size 128]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from cnnkit import datasets, ops

COUNTS = (100, 500, 2000)
THRESHOLDS = (0.5, 0.7)


def package_proposals(image: np.ndarray) -> np.ndarray:
    import selectivesearch

    with warnings.catch_warnings():  # its texture step warns about float images
        warnings.simplefilter("ignore")
        _, regions = selectivesearch.selective_search(image, scale=100, sigma=0.8, min_size=50)
    rects = np.array([r["rect"] for r in regions], dtype=np.float32).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] + 1], axis=1)
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def evaluate(name, propose, images, targets) -> None:
    hits = {(n, t): 0 for n in COUNTS for t in THRESHOLDS}
    objects, found, seconds = 0, [], 0.0
    for image, target in zip(images, targets):
        start = time.perf_counter()
        boxes = propose(image)
        seconds += time.perf_counter() - start
        found.append(len(boxes))
        objects += len(target["boxes"])
        for n in COUNTS:
            best = ops.box_iou(target["boxes"], boxes[:n]).max(axis=1)
            for t in THRESHOLDS:
                hits[n, t] += int(np.sum(best >= t))
    cells = [f"{hits[n, t] / objects:.3f}" for t in THRESHOLDS for n in COUNTS]
    print(
        f"| {name} | {np.mean(found):.0f} | "
        + " | ".join(cells)
        + f" | {seconds / len(images):.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    images, targets = datasets.shapes(args.images, image_size=args.size, seed=args.seed)
    images = np.round(images * 255).astype(np.uint8)
    objects = sum(len(t["boxes"]) for t in targets)
    print(f"{args.images} images of {args.size} x {args.size}, {objects} objects\n")
    head = " | ".join(f"R@{t} N={n}" for t in THRESHOLDS for n in COUNTS)
    print(f"| method | proposals | {head} | s / image |")
    print("|" + " --- |" * (3 + len(COUNTS) * len(THRESHOLDS)))
    for mode in ("single", "fast", "quality"):
        evaluate(
            f"cnnkit {mode}",
            lambda x, mode=mode: ops.selective_search(x, mode=mode),
            images,
            targets,
        )
    try:
        import selectivesearch  # noqa: F401
    except ImportError:
        print("| selectivesearch 0.4 | missing (pip install selectivesearch) |")
    else:
        evaluate("selectivesearch 0.4", package_proposals, images, targets)


if __name__ == "__main__":
    main()
