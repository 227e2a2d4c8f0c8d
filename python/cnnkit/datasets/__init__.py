"""Procedural datasets (shapes, single objects, landmarks) and annotation loaders.

Everything here needs NumPy only. Every generator takes ``seed`` (an int or a
:class:`numpy.random.Generator`): the same seed gives the same data.
"""

from .shapes import SHAPE_NAMES, SingleObjectData, shapes, single_object

__all__ = ["SHAPE_NAMES", "SingleObjectData", "shapes", "single_object"]
