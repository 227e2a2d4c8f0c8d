"""Images in and out of style transfer: files through Pillow, arrays as RGB in [0, 1].

Inputs are normalised once, loudly: a grayscale image is repeated to three channels and an
RGBA image loses its alpha channel, each with a :class:`UserWarning` that names the
argument; anything that is not an image raises an error that names it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .. import image as _image

__all__ = ["read_image", "to_rgb", "to_uint8", "write_image"]


def _pil(where: str) -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            f"{where}: reading and writing image files needs Pillow, the 'image' extra: "
            "pip install 'cnnkit[image]'"
        ) from None
    return Image


def read_image(path: Any, *, where: str = "read_image()", arg: str = "path") -> np.ndarray:
    """An image file as a uint8 array ``(H, W, 3)`` (converted to RGB with a warning when
    it is grayscale, has an alpha channel or a palette)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: {arg} must be a path, got {type(path).__name__}")
    Image = _pil(where)
    name = os.fspath(path)
    try:
        with Image.open(name) as img:
            img.load()
            mode = img.mode
            rgb = img.convert("RGB") if mode != "RGB" else img.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{where}: {arg} {name!r} is not a readable image file: {exc}") from None
    if mode != "RGB":
        what = {"L": "grayscale", "1": "black-and-white", "LA": "grayscale with alpha"}.get(
            mode, "RGBA" if mode == "RGBA" else f"mode {mode}"
        )
        warnings.warn(
            f"{where}: {arg} {name!r} is {what}; converted to RGB", UserWarning, stacklevel=3
        )
    return np.asarray(rgb, dtype=np.uint8)


def to_rgb(image: Any, *, where: str, arg: str) -> np.ndarray:
    """``image`` (a path, or an array ``(H, W)``, ``(H, W, 1|3|4)`` or ``(1, H, W, C)``,
    uint8 or float in [0, 1]) as float32 ``(H, W, 3)`` in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, where=where, arg=arg)
    try:
        x = np.asarray(image)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: {arg} must be an image array or a path ({exc})") from None
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{where}: {arg} must be an image of shape (H, W), (H, W, 1), (H, W, 3) or "
            f"(H, W, 4), got shape {x.shape}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{where}: {arg} must not be empty, got shape {x.shape}")
    if x.dtype == np.uint8:
        out = x.astype(np.float32) / np.float32(255)
    elif x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: {arg} must hold finite values (NaN or infinity found)")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{where}: a float {arg} must hold values in [0, 1] (uint8 for 0..255), got "
                f"values in [{lo:g}, {hi:g}]"
            )
        out = x.astype(np.float32)
    else:
        raise TypeError(f"{where}: {arg} must be uint8 or float in [0, 1], got {x.dtype}")
    if out.shape[-1] == 1:
        warnings.warn(f"{where}: {arg} is grayscale; converted to RGB", UserWarning, stacklevel=3)
        out = np.repeat(out, 3, axis=-1)
    elif out.shape[-1] == 4:
        warnings.warn(
            f"{where}: {arg} is RGBA; the alpha channel was dropped", UserWarning, stacklevel=3
        )
        out = out[..., :3]
    return np.ascontiguousarray(out)


def resize_rgb(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float32 RGB image resized to ``size`` (area averaging when shrinking)."""
    if x.shape[:2] == size:
        return x
    shrink = size[0] <= x.shape[0] and size[1] <= x.shape[1]
    out = _image.resize(x, size, interpolation="area" if shrink else "bilinear")
    return np.clip(out, 0, 1)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] as uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(x, np.float64) * 255), 0, 255).astype(np.uint8)


def write_image(path: Any, image: np.ndarray) -> None:
    """Write a uint8 RGB image (PNG, JPEG, ... by the file name) with Pillow."""
    Image = _pil("write_image()")
    # Pillow's own complaint about anything else names neither function nor argument
    # ("Cannot handle this data type: (1, 1, 3), <f4").
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(
            f"write_image(): image must be uint8 (cnnkit.style.transfer returns it; convert "
            f"floats in [0, 1] with cnnkit.style.images.to_uint8), got dtype {a.dtype}"
        )
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))) or a.size == 0:
        raise ValueError(
            f"write_image(): image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) "
            f"with H, W >= 1, got {a.shape}"
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    try:
        Image.fromarray(np.ascontiguousarray(a)).save(os.fspath(path))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"write_image(): cannot write {os.fspath(path)!r}: {exc}") from None
