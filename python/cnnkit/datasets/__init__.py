"""Procedural datasets (shapes, single objects, landmarks, faces), annotation loaders,
and image folders and pairs files in the LFW layout.

The generators are functions named after their data (``datasets.shapes(...)``,
``datasets.landmarks(...)``, ``datasets.faces(...)``); they live in ``shapes_data.py``,
``landmarks_data.py`` and ``faces_data.py`` so that no module is hidden behind a
function of its own name. Everything here needs NumPy only, except reading image
files (Pillow, the ``image`` extra). Every generator takes ``seed`` (an int or a
:class:`numpy.random.Generator`): the same seed gives the same data.
"""

from .faces_data import HAIR_STYLES, FaceData, faces
from .landmarks_data import FLIP_PAIRS, LANDMARK_NAMES, LandmarkData, landmarks
from .lfw import (
    ImageFolderData,
    LFWPairs,
    image_folder,
    lfw_image_path,
    load_images,
    read_lfw_pairs,
)
from .loaders import load_coco, load_yolo_labels, save_coco, save_yolo_labels
from .shapes_data import SHAPE_NAMES, SingleObjectData, shapes, single_object

__all__ = [
    "FLIP_PAIRS",
    "HAIR_STYLES",
    "LANDMARK_NAMES",
    "SHAPE_NAMES",
    "FaceData",
    "ImageFolderData",
    "LFWPairs",
    "LandmarkData",
    "SingleObjectData",
    "faces",
    "image_folder",
    "landmarks",
    "lfw_image_path",
    "load_coco",
    "load_images",
    "load_yolo_labels",
    "read_lfw_pairs",
    "save_coco",
    "save_yolo_labels",
    "shapes",
    "single_object",
]
