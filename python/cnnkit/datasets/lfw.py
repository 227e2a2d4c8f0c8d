"""Faces on disk in the LFW layout, and LFW's pairs files.

Labeled Faces in the Wild keeps one folder per person,
``root/Person_Name/Person_Name_0001.jpg``, numbered from 1. Its verification
pairs come in two "views":

* view 1 (``pairsDevTrain.txt`` / ``pairsDevTest.txt``): a first line ``N``, then
  ``N`` same pairs and ``N`` different pairs;
* view 2 (``pairs.txt``): a first line ``S N``, then ``S`` sets (folds), each
  ``N`` same pairs followed by ``N`` different pairs.

A same pair is ``name  n1  n2``; a different pair ``name1  n1  name2  n2``
(fields separated by tabs or spaces). Reading images needs Pillow (the
``image`` extra); reading the pairs needs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import _validate
from ._common import MAX_IMAGE_SIDE, check_memory

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFolderData",
    "LFWPairs",
    "image_folder",
    "lfw_image_path",
    "load_images",
    "read_lfw_pairs",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".webp")
"""File name endings :func:`image_folder` reads (compared without regard to case)."""


class ImageFolderData(NamedTuple):
    """The result of :func:`image_folder`."""

    images: np.ndarray
    """``(N, H, W, 3)`` uint8 RGB."""
    labels: np.ndarray
    """``(N,)`` int64 index into ``class_names``."""
    class_names: list[str]
    """The sub-folder names, sorted."""
    paths: list[str]
    """The file of each image."""


class LFWPairs(NamedTuple):
    """The result of :func:`read_lfw_pairs`: one entry per pair, in file order."""

    name1: list[str]
    number1: np.ndarray
    """int64 image numbers (1-based, as in the file names)."""
    name2: list[str]
    number2: np.ndarray
    same: np.ndarray
    """bool: the pair shows one person."""
    fold: np.ndarray
    """int64 set (fold) of each pair: 0..S-1 for view 2, all 0 for view 1."""


def _pil(fn: str) -> Any:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"{fn} needs Pillow: pip install 'cnnkit[image]'") from err
    return Image


def _optional_size(value: Any, fn: str, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (
            _validate.integer(fn, name, value[0], minimum=1),
            _validate.integer(fn, name, value[1], minimum=1),
        )
    side = _validate.integer(fn, name, value, minimum=1)
    return side, side


def load_images(
    paths: Sequence[str | os.PathLike],
    *,
    size: int | tuple[int, int] | None = None,
    crop: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Read image files as one ``(N, H, W, 3)`` uint8 RGB array.

    Each image is converted to RGB, centre-cropped to ``crop`` (height, width;
    LFW's faces fill the middle of their 250x250 pictures, so a crop of about
    150 is common), then resized to ``size`` with bilinear filtering (Pillow's,
    antialiased when shrinking). Without ``size`` all images must end up the
    same size.
    """
    fn = "load_images()"
    if isinstance(paths, (str, bytes, os.PathLike)):  # else read one "image" per character
        raise TypeError(f"{fn}: paths must be a sequence of paths, got {type(paths).__name__}")
    out_size = _optional_size(size, fn, "size")
    crop_size = _optional_size(crop, fn, "crop")
    if out_size is not None:
        # Pillow overflowed past int32 sides and resized to a terabyte image for minutes.
        if max(out_size) > MAX_IMAGE_SIDE:
            raise ValueError(f"{fn}: size sides must be <= {MAX_IMAGE_SIDE}, got {size!r}")
        if isinstance(paths, Sized):
            check_memory(fn, len(paths), out_size, itemsize=1)
    image_mod = _pil(fn)
    arrays = []
    for path in paths:
        try:
            with image_mod.open(path) as img:
                img = img.convert("RGB")
                if crop_size is not None:
                    ch, cw = crop_size
                    if ch > img.height or cw > img.width:
                        raise ValueError(
                            f"{fn}: crop {crop_size} is larger than the image "
                            f"{(img.height, img.width)} of {os.fspath(path)!r}"
                        )
                    top, left = (img.height - ch) // 2, (img.width - cw) // 2
                    img = img.crop((left, top, left + cw, top + ch))
                if out_size is not None and (img.height, img.width) != out_size:
                    img = img.resize((out_size[1], out_size[0]), image_mod.Resampling.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except OSError as err:
            raise ValueError(f"{fn}: cannot read image {os.fspath(path)!r}: {err}") from err
    if not arrays:
        h, w = out_size or crop_size or (0, 0)
        return np.zeros((0, h, w, 3), np.uint8)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"{fn}: images have different sizes {sorted(shapes)[:3]}...; pass size= to resize them"
        )
    return np.stack(arrays)


def image_folder(
    root: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    crop: int | tuple[int, int] | None = None,
    min_images: int = 1,
) -> ImageFolderData:
    """Every image under ``root/<class>/`` (the LFW layout: one folder per person).

    Parameters
    ----------
    root : path
        A folder of sub-folders; each sub-folder is a class (a person) and holds
        image files (:data:`IMAGE_SUFFIXES`). Other files are ignored, and so are
        sub-folders without images.
    size, crop : int or (int, int), optional
        As :func:`load_images`.
    min_images : int
        Keep only classes with at least this many images (LFW studies often use 2).

    Returns
    -------
    ImageFolderData
        Images sorted by class name then file name, their labels, the class
        names and the paths.
    """
    fn = "image_folder()"
    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"{fn}: root must be an existing folder, got {os.fspath(root)!r}")
    least = _validate.integer(fn, "min_images", min_images, minimum=1)
    names: list[str] = []
    paths: list[str] = []
    labels: list[int] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        files = sorted(
            f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        if len(files) < least:
            continue
        labels += [len(names)] * len(files)
        names.append(folder.name)
        paths += [os.fspath(f) for f in files]
    if not paths:
        raise ValueError(
            f"{fn}: no class folder under {os.fspath(root)!r} holds {least} or more images"
        )
    images = load_images(paths, size=size, crop=crop)
    return ImageFolderData(images, np.array(labels, dtype=np.int64), names, paths)


def lfw_image_path(root: str | os.PathLike, name: str, number: int) -> Path:
    """``root/name/name_NNNN.jpg``, the file of image ``number`` of ``name`` in LFW."""
    fn = "lfw_image_path()"
    # A name with a separator or '..' made a path outside root; number -1 made 'A_-001.jpg'.
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or (os.sep in name)
    ):
        raise ValueError(f"{fn}: name must be a person's folder name (no '/'), got {name!r}")
    number = _validate.integer(fn, "number", number, minimum=1)
    return Path(root) / name / f"{name}_{number:04d}.jpg"


def _number(token: str, line_no: int, where: str, fn: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise ValueError(
            f"{fn}: line {line_no} of {where}: image number must be an int, got {token!r}"
        ) from None
    if value < 1:
        raise ValueError(f"{fn}: line {line_no} of {where}: image number must be >= 1, got {value}")
    return value


def read_lfw_pairs(path: str | os.PathLike) -> LFWPairs:
    """Parse an LFW pairs file: view 2 (``pairs.txt``, first line ``10 300``) or
    view 1 (``pairsDevTrain.txt``, first line ``1100``).

    Every line after the header must be a same pair (3 fields) in the first
    half of its set and a different pair (4 fields) in the second; the number
    of lines must match the header (blank lines at the end are ignored). Any
    other content raises ``ValueError`` naming the line.

    Returns
    -------
    LFWPairs
        Names, image numbers, ``same`` and the ``fold`` of every pair.
    """
    fn = "read_lfw_pairs()"
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:  # a binary file: the bare codec error
        raise ValueError(f"{fn}: cannot read {where!r}: {err}") from err
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{fn}: {where!r} is empty")
    head = lines[0].split()
    try:
        counts = [int(t) for t in head]
    except ValueError:
        counts = []
    if len(counts) == 1:
        sets, per = 1, counts[0]
    elif len(counts) == 2:
        sets, per = counts
    else:
        raise ValueError(
            f"{fn}: line 1 of {where}: expected 'N' (view 1) or 'SETS N' (view 2), got {lines[0]!r}"
        )
    if sets < 1 or per < 1:
        raise ValueError(f"{fn}: line 1 of {where}: counts must be >= 1, got {lines[0]!r}")
    expected = sets * 2 * per
    name1: list[str] = []
    name2: list[str] = []
    num1: list[int] = []
    num2: list[int] = []
    # Lines are checked before their count, so a malformed one is named even in a
    # truncated file.
    for k, line in enumerate(lines[1 : expected + 2]):
        line_no = k + 2
        fields = line.split()
        is_same = (k % (2 * per)) < per
        if is_same:
            if len(fields) != 3:
                raise ValueError(
                    f"{fn}: line {line_no} of {where}: expected a same pair 'name n1 n2' "
                    f"(3 fields), got {line!r}"
                )
            a, b = fields[0], fields[0]
            na, nb = fields[1], fields[2]
        else:
            if len(fields) != 4:
                raise ValueError(
                    f"{fn}: line {line_no} of {where}: expected a different pair "
                    f"'name1 n1 name2 n2' (4 fields), got {line!r}"
                )
            a, na, b, nb = fields
        name1.append(a)
        name2.append(b)
        num1.append(_number(na, line_no, where, fn))
        num2.append(_number(nb, line_no, where, fn))
    n = len(name1)
    if n != expected:
        raise ValueError(
            f"{fn}: {where}: the header {lines[0].strip()!r} announces {expected} pairs, "
            f"found {n} lines after it"
        )
    same = (np.arange(n) % (2 * per)) < per
    fold = np.arange(n) // (2 * per)
    return LFWPairs(
        name1,
        np.array(num1, dtype=np.int64),
        name2,
        np.array(num2, dtype=np.int64),
        same,
        fold.astype(np.int64),
    )
