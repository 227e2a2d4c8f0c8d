"""Region-proposal segmentation: Felzenszwalb-Huttenlocher against scikit-image's.

Peer: ``skimage.segmentation.felzenszwalb`` (Cython union-find after NumPy edge weights and
an ``argsort``), with the same parameters. The check is the issue's agreement bound: an
adjusted Rand index of at least 0.99 and segment counts within 1%.

Size: scikit-image's bundled photographs at 512 x 512 (astronaut as it is; coffee and
chelsea resized), uint8 RGB, at scikit-image's default parameters (scale 1, sigma 0.8,
min_size 20) and at a coarser setting (scale 300). The NumPy reference visits a million edges
in Python and is not run.
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
    return out
