"""Region proposals: Felzenszwalb-Huttenlocher segmentation and selective search.

Peer: ``skimage.segmentation.felzenszwalb`` (Cython union-find after NumPy edge weights and
an ``argsort``), with the same parameters. The check is the issue's agreement bound: an
adjusted Rand index of at least 0.99 and segment counts within 1%.

Size: scikit-image's bundled photographs at 512 x 512 (astronaut as it is; coffee and
chelsea resized), uint8 RGB, at scikit-image's default parameters (scale 1, sigma 0.8,
min_size 20) and at a coarser setting (scale 300). The NumPy reference visits a million edges
in Python and is not run.

``selective_search`` (mode "fast": 8 hierarchies) against the ``selectivesearch`` PyPI
package (0.4; pure Python over scikit-image, one hierarchy, colour+texture+size+fill, here with
``scale=100, sigma=0.8, min_size=50``) on astronaut at 256 x 256 (the package needs minutes at
512 x 512). Their box sets differ by design, so the check is coverage: the share of the
package's boxes that one of cnnkit's matches at IoU >= 0.5 (the paper's recall threshold) must
be at least 0.9 (it was 0.94 when written; at IoU >= 0.7 it is 0.77). OpenCV-contrib's
``ximgproc.segmentation`` selective search (fast mode) is the second peer where it is installed
(opencv-contrib-python-headless). Recall
against ground truth, at equal numbers of proposals, is measured by ``examples/proposals.py``.
"""

from __future__ import annotations

import importlib.util
from functools import partial

import numpy as np

from . import Call, Case, native

PHOTOS = ("astronaut", "coffee", "chelsea")
SETTINGS = ({"scale": 1.0, "sigma": 0.8, "min_size": 20}, {"scale": 300.0, "sigma": 0.8})


def photograph(name: str) -> tuple:
    """``(image,)``: the scikit-image photograph at 512 x 512, uint8."""
    from skimage import data, transform

    image = getattr(data, name)()
    if image.shape[:2] != (512, 512):
        image = transform.resize(image, (512, 512), order=1, anti_aliasing=True)
        image = np.round(image * 255).astype(np.uint8)
    return (image,)


def _skimage(kwargs: dict, inputs: tuple) -> Call:
    from skimage.segmentation import felzenszwalb

    return lambda: felzenszwalb(inputs[0], **kwargs)


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """The adjusted Rand index of two labelings (Hubert and Arabie 1985)."""
    a, b = a.ravel(), b.ravel()
    _, pair_counts = np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b, return_counts=True)

    def pairs(counts: np.ndarray) -> float:
        return float(np.sum(counts.astype(np.float64) * (counts - 1) / 2))

    index = pairs(pair_counts)
    rows, cols = pairs(np.bincount(a)), pairs(np.bincount(b))
    expected = rows * cols / (a.size * (a.size - 1) / 2)
    top = (rows + cols) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def same_segmentation(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    """The issue's bound: ARI >= 0.99 and segment counts within 1%."""
    ari = adjusted_rand(ours, theirs)
    n_ours, n_theirs = int(ours.max()) + 1, int(theirs.max()) + 1
    if ari >= 0.99 and abs(n_ours - n_theirs) <= 0.01 * n_theirs:
        return None
    return f"adjusted Rand index {ari:.4f}, {n_ours} segments against {n_theirs}"


def _selectivesearch(inputs: tuple) -> Call:
    import selectivesearch

    def call() -> np.ndarray:
        _, regions = selectivesearch.selective_search(inputs[0], scale=100, sigma=0.8, min_size=50)
        # rect is (x, y, max_x - x, max_y - y) with inclusive maxima
        rects = np.array([r["rect"] for r in regions], dtype=np.float32).reshape(-1, 4)
        return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] + 1], axis=1)

    return call


def _cv2_selective_search(inputs: tuple) -> Call:
    """OpenCV-contrib's ``ximgproc.segmentation`` selective search, its fast mode (HSV and
    Lab, k 150 and 300, two strategies); boxes xyxy like cnnkit's."""
    import cv2

    if not hasattr(cv2, "ximgproc"):
        raise ImportError("cv2.ximgproc is missing (pip install opencv-contrib-python-headless)")
    bgr = np.ascontiguousarray(inputs[0][:, :, ::-1])

    def call() -> np.ndarray:
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(bgr)
        search.switchToSelectiveSearchFast()
        rects = search.process().astype(np.float32).reshape(-1, 4)
        return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)

    return call


def covers(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    """None when cnnkit's boxes match at least 90% of the other's at IoU >= 0.5."""
    from cnnkit import ops

    share = float(np.mean(ops.box_iou(theirs, ours).max(axis=1) >= 0.5)) if len(theirs) else 1.0
    return None if share >= 0.9 else f"cnnkit matches {share:.1%} of its boxes at IoU >= 0.5"


def small_photograph() -> tuple:
    """``(image,)``: astronaut at 256 x 256, uint8."""
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (256, 256), order=1, anti_aliasing=True)
    return (np.round(image * 255).astype(np.uint8),)


def cases() -> list[Case]:
    """Each photograph at each setting (none without scikit-image, which supplies them)."""
    if importlib.util.find_spec("skimage") is None:
        return []
    out = []
    for kwargs in SETTINGS:
        label = ", ".join(f"{k} {v:g}" for k, v in kwargs.items())
        for name in PHOTOS:
            out.append(
                Case(
                    "felzenszwalb",
                    f"{name} 512 x 512 x 3, {label}",
                    "uint8",
                    partial(photograph, name),
                    {**native("felzenszwalb", **kwargs), "skimage": partial(_skimage, kwargs)},
                    same_segmentation,
                    too_slow=frozenset({"reference"}),
                )
            )
    out.append(
        Case(
            "selective_search",
            "astronaut 256 x 256 x 3, fast",
            "uint8",
            small_photograph,
            {
                **native("selective_search", mode="fast"),
                "selectivesearch": _selectivesearch,
                "cv2": _cv2_selective_search,
            },
            covers,
            too_slow=frozenset({"reference"}),
        )
    )
    return out
