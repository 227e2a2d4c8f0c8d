"""A picture of one photograph under each cnnkit.augment transform (the README's grid).

    python examples/augmentation_grid.py [--out docs/augmentations.jpg]

Uses scikit-image's bundled astronaut photograph when scikit-image is installed (else a
procedural shapes image) and Pillow to write the file (the ``image`` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import cnnkit.augment as A
from cnnkit import image


def photograph() -> np.ndarray:
    try:
        from skimage import data

        return image.resize(data.astronaut(), (192, 192), "area")
    except ImportError:
        from cnnkit import datasets

        shapes = datasets.shapes(1, image_size=192, seed=0).images[0]
        return (shapes * 255).astype(np.uint8)


def transforms(x: np.ndarray) -> list[tuple[str, A.Transform]]:
    return [
        ("original", A.Compose([])),
        ("HorizontalFlip", A.HorizontalFlip(p=1)),
        ("RandomResizedCrop", A.RandomResizedCrop(192, scale=(0.2, 0.5))),
        ("Rotate(30)", A.Rotate((25, 30), p=1)),
        ("Affine shear", A.Affine(shear=(15, 20), p=1, border_mode="reflect")),
        ("ElasticTransform", A.ElasticTransform(alpha=60, sigma=6, border_mode="reflect", p=1)),
        ("RGBShift", A.RGBShift(40, 40, 40, p=1)),
        ("BrightnessContrast", A.RandomBrightnessContrast(0.3, 0.3, p=1)),
        ("HueSaturationValue", A.HueSaturationValue(60, 60, 30, p=1)),
        ("GaussNoise", A.GaussNoise(std_range=(0.1, 0.15), p=1)),
        ("PCAColour", A.PCAColour(A.fit_pca_colour(x), alpha_std=1.0, p=1)),
        ("Compose", A.Compose([A.HorizontalFlip(), A.Rotate(20, p=1), A.RGBShift(p=1)])),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/augmentations.jpg")
    args = parser.parse_args()
    from PIL import Image, ImageDraw

    x = photograph()
    items = transforms(x)
    cols, side, label = 4, x.shape[0], 16
    rows = -(-len(items) // cols)
    sheet = Image.new("RGB", (cols * side, rows * (side + label)), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for k, (name, t) in enumerate(items):
        tile = t(image=x, seed=k)["image"]
        r, c = divmod(k, cols)
        sheet.paste(Image.fromarray(tile), (c * side, r * (side + label) + label))
        pen.text((c * side + 4, r * (side + label) + 2), name, fill=(0, 0, 0))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
