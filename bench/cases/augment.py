"""Augmentation transforms on a batch of 16 RGB uint8 256 x 256 crops of a photograph.

cnnkit distorts the whole batch in one call (``transform(image=batch, seed=0)``, each
image with its own parameters, the kernels parallel over rows); ``albumentations``
(2.0.8, the issue's peer) calls its transform image by image, as its users do; OpenCV
runs inside it and gets the same thread count. Both draw their own random parameters,
so the check compares shapes and dtypes only, except for the flip, which is exact.
torchvision.transforms.v2 is a second peer for the transforms it has, when it imports.

Inputs: 16 seeded 256 x 256 crops of ``skimage.data.astronaut()`` (scikit-image is
needed by the bench only), and 64 for the fastest transforms (a typical mini-batch,
``LARGE_BATCH_CASES``). Divide the batch size by a time for images per second.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import Call, Case, equal, torchvision_module

BATCH, SIDE = 16, 256
# A typical training mini-batch, for the transforms whose 16-image call is a fraction of a
# millisecond: there the per-call Python weighs on the two-thread speed-up.
LARGE_BATCH = 64
LARGE_BATCH_CASES = (
    "HorizontalFlip",
    "RandomBrightnessContrast",
    "RGBShift",
    "RandomResizedCrop(224)",
    "Resize(128, area)",
    "PCAColour / FancyPCA",
)


def crops(batch: int = BATCH) -> tuple:
    from skimage import data

    photo = data.astronaut()
    corners = np.random.default_rng(0).integers(0, photo.shape[0] - SIDE, (batch, 2))
    return (np.stack([photo[t : t + SIDE, c : c + SIDE] for t, c in corners]),)


def same_layout(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape == theirs.shape and ours.dtype == theirs.dtype:
        return None
    return f"shape/dtype {ours.shape} {ours.dtype} vs {theirs.shape} {theirs.dtype}"


def _cnnkit(make, inputs: tuple) -> Call:
    import cnnkit.augment as A

    x = inputs[0]
    transform = make(A, x)
    return lambda: transform(image=x, seed=0)["image"]


def _albumentations(make, inputs: tuple) -> Call:
    import albumentations

    x = inputs[0]
    transform = make(albumentations)
    return lambda: np.stack([transform(image=image)["image"] for image in x])


def _torchvision(make, inputs: tuple) -> Call:
    import torch

    v2 = torchvision_module("torchvision.transforms.v2")

    x = torch.from_numpy(inputs[0]).permute(0, 3, 1, 2).contiguous()
    transform = make(v2)
    return lambda: torch.stack([transform(image) for image in x]).permute(0, 2, 3, 1)


# (name, cnnkit transform, albumentations transform, torchvision v2 transform or None)
TRANSFORMS = [
    (
        "HorizontalFlip",
        lambda A, x: A.HorizontalFlip(p=1),
        lambda A: A.HorizontalFlip(p=1),
        lambda v2: v2.RandomHorizontalFlip(p=1),
    ),
    (
        "RandomBrightnessContrast",
        lambda A, x: A.RandomBrightnessContrast(p=1),
        lambda A: A.RandomBrightnessContrast(p=1),
        None,
    ),
    ("RGBShift", lambda A, x: A.RGBShift(p=1), lambda A: A.RGBShift(p=1), None),
    (
        "RandomResizedCrop(224)",
        lambda A, x: A.RandomResizedCrop(224),
        lambda A: A.RandomResizedCrop(size=(224, 224)),
        lambda v2: v2.RandomResizedCrop(224, antialias=False),
    ),
    (
        "Resize(128, area)",
        lambda A, x: A.Resize(128, 128, "area"),
        lambda A: A.Resize(128, 128, interpolation=3),  # cv2.INTER_AREA
        None,
    ),
    (
        "HueSaturationValue",
        lambda A, x: A.HueSaturationValue(p=1),
        lambda A: A.HueSaturationValue(p=1),
        None,
    ),
    (
        "Affine shear",
        lambda A, x: A.Affine(shear=(-20, 20), p=1),
        lambda A: A.Affine(shear=(-20, 20), p=1),
        None,
    ),
    (
        "Rotate(30)",
        lambda A, x: A.Rotate(30, p=1),
        lambda A: A.Rotate(limit=30, p=1),
        lambda v2: v2.RandomRotation(30),
    ),
    (
        "ColorJitter",
        lambda A, x: A.ColorJitter(0.2, 0.2, 0.2, 0.1, p=1),
        lambda A: A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1, p=1),
        lambda v2: v2.ColorJitter(0.2, 0.2, 0.2, 0.1),
    ),
    ("GaussNoise", lambda A, x: A.GaussNoise(p=1), lambda A: A.GaussNoise(p=1), None),
    (
        "PCAColour / FancyPCA",
        lambda A, x: A.PCAColour(A.fit_pca_colour(x), p=1),
        lambda A: A.FancyPCA(p=1),
        None,
    ),
    (
        "ElasticTransform",
        lambda A, x: A.ElasticTransform(p=1),
        lambda A: A.ElasticTransform(p=1),
        None,
    ),
]


def cases() -> list[Case]:
    out = []
    for batch in (BATCH, LARGE_BATCH):
        for name, ours, theirs, tv in TRANSFORMS:
            if batch != BATCH and name not in LARGE_BATCH_CASES:
                continue
            impls = {
                "cnnkit": partial(_cnnkit, ours),
                "albumentations": partial(_albumentations, theirs),
            }
            if tv is not None:
                impls["torchvision"] = partial(_torchvision, tv)
            out.append(
                Case(
                    name,
                    f"{batch} x {SIDE} x {SIDE} x 3",
                    "uint8",
                    partial(crops, batch),
                    impls,
                    equal if name == "HorizontalFlip" else same_layout,
                )
            )
    return out
