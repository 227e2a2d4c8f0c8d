"""Augmentation: the course's distortions as transforms and pipelines (albumentations'
call convention, box- and keypoint-aware, seeded), their kernels, and test-time crops.

The pixel loops are the Cython module :mod:`cnnkit._augment`; the geometry is
:mod:`cnnkit.image`; :class:`cnnkit.data.Loader` runs a pipeline on background
threads while a model trains.
"""

from __future__ import annotations

from .functional import (
    PCAColourFit,
    add_noise,
    colour_affine,
    colour_jitter,
    elastic_fields,
    fit_pca_colour,
    gaussian_blur,
    hsv_shift,
)
from .test_time import (
    Ensemble,
    five_crop,
    flip_tta,
    predict_tta,
    ten_crop,
    weighted_boxes_fusion,
)
from .transforms import (
    Affine,
    CenterCrop,
    ColorJitter,
    Compose,
    ElasticTransform,
    FancyPCA,
    GaussNoise,
    HorizontalFlip,
    HueSaturationValue,
    Normalize,
    OneOf,
    PCAColour,
    RandomBrightnessContrast,
    RandomCrop,
    RandomResizedCrop,
    Resize,
    RGBShift,
    Rotate,
    SomeOf,
    Transform,
    VerticalFlip,
    image_seeds,
)

__all__ = [
    "Affine",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "ElasticTransform",
    "Ensemble",
    "FancyPCA",
    "GaussNoise",
    "HorizontalFlip",
    "HueSaturationValue",
    "Normalize",
    "OneOf",
    "PCAColour",
    "PCAColourFit",
    "RGBShift",
    "RandomBrightnessContrast",
    "RandomCrop",
    "RandomResizedCrop",
    "Resize",
    "Rotate",
    "SomeOf",
    "Transform",
    "VerticalFlip",
    "add_noise",
    "colour_affine",
    "colour_jitter",
    "elastic_fields",
    "fit_pca_colour",
    "five_crop",
    "flip_tta",
    "gaussian_blur",
    "hsv_shift",
    "image_seeds",
    "predict_tta",
    "ten_crop",
    "weighted_boxes_fusion",
]
