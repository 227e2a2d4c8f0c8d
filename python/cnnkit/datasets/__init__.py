"""Procedural datasets (shapes, single objects, landmarks, faces) and annotation loaders.

The generators are functions named after their data (``datasets.shapes(...)``,
``datasets.landmarks(...)``); they live in ``shapes_data.py`` and
``landmarks_data.py`` so that no module is hidden behind a function of its own
name. Everything here needs NumPy only. Every generator takes ``seed`` (an int or a
:class:`numpy.random.Generator`): the same seed gives the same data.
"""

from .faces_data import HAIR_STYLES, FaceData, faces
from .landmarks_data import FLIP_PAIRS, LANDMARK_NAMES, LandmarkData, landmarks
from .loaders import load_coco, load_yolo_labels, save_coco, save_yolo_labels
from .shapes_data import SHAPE_NAMES, SingleObjectData, shapes, single_object

__all__ = [
    "FLIP_PAIRS",
    "HAIR_STYLES",
    "LANDMARK_NAMES",
    "SHAPE_NAMES",
    "FaceData",
    "LandmarkData",
    "SingleObjectData",
    "faces",
    "landmarks",
    "load_coco",
    "load_yolo_labels",
    "save_coco",
    "save_yolo_labels",
    "shapes",
    "single_object",
]
