"""Pictures of what units see: the top-k patch grid, first-layer filters, activation maps.

Each function returns the picture as a uint8 RGB array ``(H, W, 3)`` and, given a
``path``, writes it as PNG with Pillow (the ``image`` extra). Small tiles are enlarged
by an integer factor (nearest neighbour, so pixels stay pixels) to at least
``MIN_TILE`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate
from ..layers import Conv2D
from ..models import Model
from .patches import input_channels, layer_runner, select_units
from .receptive import fields, resolve

__all__ = ["activation_maps", "filters_image", "patch_grid"]

MIN_TILE = 32  # pixels: tiles smaller than this are enlarged
GAP = 2  # pixels between tiles
BACKGROUND = 255  # white between tiles
OUTSIDE = 128  # grey where a patch lies outside the image


def save_png(fn: str, picture: np.ndarray, path: Any) -> None:
    """Write a uint8 (H, W, 3) array as PNG; a clear ImportError without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            f"{fn}: writing a PNG needs Pillow: pip install 'cnnkit[image]' (or call without "
            "path= for the array)"
        ) from None
    Image.fromarray(picture).save(path, format="PNG")


def _tiles(tiles: np.ndarray, columns: int, scale: int) -> np.ndarray:
    """(n, h, w, 3) uint8 tiles on a white grid of ``columns`` columns, each enlarged
    ``scale`` times."""
    n, h, w = tiles.shape[:3]
    big = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    rows = -(-n // columns)
    th, tw = h * scale, w * scale
    sheet = np.full(
        (rows * th + (rows + 1) * GAP, columns * tw + (columns + 1) * GAP, 3), BACKGROUND, np.uint8
    )
    for i in range(n):
        y, x = GAP + (i // columns) * (th + GAP), GAP + (i % columns) * (tw + GAP)
        sheet[y : y + th, x : x + tw] = big[i]
    return sheet


def _scale_for(h: int, w: int) -> int:
    return max(1, math.ceil(MIN_TILE / max(h, w)))


def _to_rgb(fn: str, arg: str, x: np.ndarray) -> np.ndarray:
    if x.shape[-1] == 1:
        return np.repeat(x, 3, axis=-1)
    if x.shape[-1] == 3:
        return x
    raise ValueError(
        f"{fn}: {arg} must have 1 (grey) or 3 (RGB) channels to be pictured, got {x.shape[-1]}"
    )


def _as_uint8(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels as uint8: uint8 as they are; floats in [0, 1] times 255; anything else
    stretched from its smallest to its largest valid value."""
    if values.dtype == np.uint8:
        return values
    v = values.astype(np.float64)
    inside = v[valid] if valid.any() else v
    low, high = (0.0, 1.0)
    if inside.size and (inside.min() < 0 or inside.max() > 1):
        low, high = float(inside.min()), float(inside.max())
    span = high - low if high > low else 1.0
    return np.round(np.clip((v - low) / span, 0, 1) * 255).astype(np.uint8)


def patch_grid(result: dict[str, Any], path: Any = None) -> np.ndarray:
    """The top-k patches of :func:`top_patches` as one picture: a row per unit, a column
    per rank (best on the left); grey marks patch pixels outside the image.

    Float images in [0, 1] are shown as they are, other ranges stretched to black..white
    over all patches; 1-channel images in grey.

    Returns
    -------
    numpy.ndarray
        The picture, uint8 ``(H, W, 3)``; also written to ``path`` as PNG when given.
    """
    fn = "patch_grid()"
    if not isinstance(result, dict) or "patches" not in result or "mask" not in result:
        raise TypeError(f"{fn}: result must be the dict top_patches() returns, got {result!r:.80}")
    patches, mask = np.asarray(result["patches"]), np.asarray(result["mask"])
    if patches.ndim != 5:
        raise ValueError(
            f"{fn}: result['patches'] must be (units, k, h, w, C) patches of 2-D images, got "
            f"shape {patches.shape}"
        )
    units, k, h, w = patches.shape[:4]
    rgb = _to_rgb(
        fn, "result['patches']", _as_uint8(patches, np.broadcast_to(mask[..., None], patches.shape))
    )
    rgb = np.where(mask[..., None], rgb, np.uint8(OUTSIDE))
    picture = _tiles(rgb.reshape(units * k, h, w, 3), k, _scale_for(h, w))
    if path is not None:
        save_png(fn, picture, path)
    return picture


def filters_image(model: Any, layer: Any, path: Any = None) -> np.ndarray:
    """The filters of a Conv2D layer that reads the image (1 or 3 channels) as pictures,
    one tile per filter: each filter scaled so that its largest absolute weight is black
    or white (or full colour) and zero is mid-grey.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)``; also written to ``path`` as PNG when given.
    """
    fn = "filters_image()"
    if not isinstance(model, Model):
        raise TypeError(f"{fn}: model must be a cnnkit Model, got {type(model).__name__}")
    name = layer.name if hasattr(layer, "name") else layer
    names = [x.name for x in model.layers]
    try:
        target = model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"{fn}: layer must name a layer of the model, got {name!r}; layers: {names}"
        ) from None
    if not isinstance(target, Conv2D) or target.groups != 1:
        convs = [x.name for x in model.layers if isinstance(x, Conv2D)]
        raise ValueError(
            f"{fn}: layer must be a Conv2D layer (groups 1), got {name!r} "
            f"({type(target).__name__}); Conv2D layers: {convs}"
        )
    kernel = target.kernel.data  # (kh, kw, C_in, F)
    if kernel.shape[2] not in (1, 3):
        raise ValueError(
            f"{fn}: layer {name!r} reads {kernel.shape[2]} channels; filters are pictured for "
            "a layer that reads the image (1 or 3 channels)"
        )
    tiles = np.moveaxis(kernel, -1, 0).astype(np.float64)  # (F, kh, kw, C)
    peak = np.abs(tiles).max(axis=(1, 2, 3), keepdims=True)
    tiles = 0.5 + 0.5 * tiles / np.where(peak > 0, peak, 1)
    tiles = _to_rgb(fn, "the kernel", np.round(tiles * 255).astype(np.uint8))
    columns = math.ceil(math.sqrt(len(tiles)))
    picture = _tiles(tiles, columns, _scale_for(*kernel.shape[:2]))
    if path is not None:
        save_png(fn, picture, path)
    return picture


def activation_maps(
    model: Any,
    layer: Any,
    image: Any,
    path: Any = None,
    *,
    units: Sequence[int] | None = None,
    columns: int = 8,
) -> np.ndarray:
    """The activation maps of ``layer`` for one image, one grey tile per unit (channel),
    each stretched from its smallest (black) to its largest (white) value (a constant map
    is black).

    Parameters
    ----------
    image : array_like
        One sample ``(H, W, C)`` (or a batch of one) as the model takes it.
    units : sequence of int, optional
        The channels to show (all by default).
    columns : int
        Tiles per row.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)``; also written to ``path`` as PNG when given.
    """
    fn = "activation_maps()"
    columns = _validate.integer(fn, "columns", columns, minimum=1)
    spatial, record = fields(fn, model, None)
    name, _ = resolve(fn, record, layer)
    shape = (*spatial, input_channels(model))
    x = np.asarray(image)
    if x.ndim == len(shape) + 1 and len(x) == 1:
        x = x[0]
    if tuple(x.shape) != shape or x.dtype.kind not in "biuf":
        raise ValueError(
            f"{fn}: image must be one numeric sample of shape {shape} (or a batch of one), got "
            f"shape {np.shape(image)} and dtype {x.dtype}"
        )
    maps = layer_runner(model, name)(x[None])[0]
    if maps.ndim != 3:
        raise ValueError(f"{fn}: layer {name!r} gives {maps.ndim - 1}-D maps; pictures need 2-D")
    picked = select_units(fn, units, maps.shape[-1], name)
    maps = np.moveaxis(maps[..., picked], -1, 0).astype(np.float64)  # (U, h, w)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    grey = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0)
    tiles = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    picture = _tiles(tiles, min(columns, len(tiles)), _scale_for(*maps.shape[1:]))
    if path is not None:
        save_png(fn, picture, path)
    return picture
