"""The LFW verification protocol for a saved encoder (``cnnkit face-eval``).

The images a pairs file names are read once each (in chunks, so memory stays
bounded whatever the file), centre-cropped and resized, scaled to float32 in
[0, 1] and encoded; each pair's distance between encodings goes through
:func:`cnnkit.face.evaluate.verification_summary` with the file's folds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import _validate
from ..datasets.lfw import LFWPairs, lfw_image_path, load_images, read_lfw_pairs
from . import evaluate

__all__ = ["encode_images", "evaluate_lfw"]

# Images read and encoded per step: a few tens of MB of float32 at 64x64.
_CHUNK = 1024


def encode_images(
    encoder: Any,
    paths: list[str],
    *,
    size: Any = 64,
    crop: Any = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Encodings ``(N, d)`` of the image files at ``paths`` (RGB, [0, 1] float32 input)."""
    fn = "encode_images()"
    batch = _validate.integer(fn, "batch_size", batch_size, minimum=1)
    parts = []
    for start in range(0, len(paths), _CHUNK):
        images = load_images(paths[start : start + _CHUNK], size=size, crop=crop)
        x = images.astype(np.float32) / np.float32(255.0)
        parts.append(np.asarray(encoder.predict(x, batch_size=batch, verbose=0)))
    if not parts:
        raise ValueError(f"{fn}: paths must not be empty")
    codes = np.concatenate(parts).reshape(len(paths), -1)
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"{fn}: the encoder produced non-finite encodings")
    return codes


def evaluate_lfw(
    encoder: Any,
    root: str | os.PathLike,
    pairs: LFWPairs | str | os.PathLike,
    *,
    size: Any = 64,
    crop: Any = None,
    batch_size: int = 256,
    metric: str = "euclidean",
    far: float = 1e-3,
) -> dict[str, Any]:
    """Verification figures of ``encoder`` on LFW-layout images and a pairs file.

    Parameters
    ----------
    encoder : model
        Anything with Keras's ``predict(x, batch_size=..., verbose=0)`` mapping
        ``(N, size, size, 3)`` float32 images in [0, 1] to encodings.
    root : path
        The image folder (``root/Person_Name/Person_Name_0001.jpg``).
    pairs : LFWPairs or path
        A pairs file (view 1 or 2) or its parsed form.
    size, crop
        As :func:`cnnkit.datasets.load_images`.
    metric : {"euclidean", "squared", "cosine"}
        As :func:`cnnkit.face.evaluate.pair_distances`.
    far : float
        The false accept rate for VAL.

    Returns
    -------
    dict
        :func:`cnnkit.face.evaluate.verification_summary`'s figures, plus
        ``pairs`` and ``folds`` (counts), ``images`` (files read), and
        ``distances`` and ``same`` (arrays, for plots). View 2 files use their
        own sets as folds; view 1 files (one set) are split into 10 interleaved folds.
    """
    fn = "evaluate_lfw()"
    if not isinstance(pairs, LFWPairs):
        pairs = read_lfw_pairs(pairs)
    if not os.path.isdir(root):
        raise ValueError(f"{fn}: root must be an existing folder, got {os.fspath(root)!r}")
    keys = sorted(
        set(zip(pairs.name1, pairs.number1.tolist()))
        | set(zip(pairs.name2, pairs.number2.tolist()))
    )
    paths = [os.fspath(lfw_image_path(root, name, number)) for name, number in keys]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"{fn}: {len(missing)} image(s) named by the pairs file are missing under "
            f"{os.fspath(root)!r}, first {missing[0]!r}"
        )
    index = {key: i for i, key in enumerate(keys)}
    codes = encode_images(encoder, paths, size=size, crop=crop, batch_size=batch_size)
    left = np.array([index[k] for k in zip(pairs.name1, pairs.number1.tolist())])
    right = np.array([index[k] for k in zip(pairs.name2, pairs.number2.tolist())])
    distances = evaluate.pair_distances(codes[left], codes[right], metric)
    n_sets = int(pairs.fold.max()) + 1
    folds = pairs.fold if n_sets > 1 else np.arange(len(left)) % min(10, len(left))
    summary: dict[str, Any] = evaluate.verification_summary(
        distances, pairs.same, folds=folds, far=far
    )
    summary.update(
        pairs=len(left),
        folds=int(np.unique(folds).size),
        images=len(paths),
        distances=distances,
        same=pairs.same,
    )
    return summary
