"""Seeing what units learn: receptive fields, the image patches that excite a unit most,
first-layer filters and activation maps as pictures.

* :func:`receptive_field` -- ``size``, ``jump`` and ``start`` of a layer's units, and each
  unit's exact field (:mod:`.receptive`).
* :func:`top_patches` -- one streaming pass over a data set keeping, per unit, the ``k``
  patches of highest activation (:mod:`.patches`).
* :func:`patch_grid`, :func:`filters_image`, :func:`activation_maps` -- pictures as uint8
  arrays, written as PNG with Pillow (the ``image`` extra) (:mod:`.pictures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .patches import top_patches
    from .pictures import activation_maps, filters_image, patch_grid
    from .receptive import ReceptiveField, receptive_field

__all__ = [
    "ReceptiveField",
    "activation_maps",
    "filters_image",
    "patch_grid",
    "receptive_field",
    "top_patches",
]

# Loaded on first use, so that the console script's parser (visualize.command) does not
# import the models.
_HOMES = {
    "ReceptiveField": "receptive",
    "receptive_field": "receptive",
    "top_patches": "patches",
    "activation_maps": "pictures",
    "filters_image": "pictures",
    "patch_grid": "pictures",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
