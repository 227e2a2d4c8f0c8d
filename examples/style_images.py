"""Procedural content and style images for trying style transfer without downloads.

    python examples/style_images.py OUTDIR
    cnnkit style OUTDIR/content.png OUTDIR/style.png -o OUTDIR/styled.png --size 256
    python examples/style_images.py OUTDIR --panel docs/style.png   # content | style | styled

``content.png`` is a drawn landscape (sky, sun, hills, a house); ``style.png`` a stained-glass
texture (random Voronoi cells in saturated colours with dark lead lines). Both are made with
NumPy from a fixed seed, so the README's picture can be reproduced exactly. Needs Pillow.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from cnnkit.style import read_image, write_image


def landscape(size: int = 256) -> np.ndarray:
    """A simple scene: a sky gradient, a sun, two rows of hills and a house."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    img[:] = np.stack([0.35 + 0.4 * y, 0.6 + 0.3 * y, 0.95 - 0.1 * y], axis=-1)  # sky
    sun = (x - 0.75) ** 2 + (y - 0.22) ** 2 < 0.1**2
    img[sun] = (1.0, 0.85, 0.2)
    far = y > 0.55 + 0.08 * np.sin(7 * x + 1.0)
    img[far] = (0.25, 0.55, 0.3)
    near = y > 0.7 + 0.06 * np.sin(4 * x + 2.5)
    img[near] = (0.35, 0.7, 0.25)
    wall = (x > 0.18) & (x < 0.42) & (y > 0.55) & (y < 0.8)
    img[wall] = (0.85, 0.8, 0.7)
    roof = (y < 0.55) & (y > 0.38) & (np.abs(x - 0.3) < (y - 0.38) * 0.9)
    img[roof] = (0.7, 0.15, 0.1)
    door = (x > 0.27) & (x < 0.33) & (y > 0.67) & (y < 0.8)
    img[door] = (0.35, 0.2, 0.1)
    window = (x > 0.2) & (x < 0.25) & (y > 0.6) & (y < 0.65)
    img[window] = (0.2, 0.3, 0.5)
    return (img * 255).round().astype(np.uint8)


def stained_glass(size: int = 256, cells: int = 90, seed: int = 7) -> np.ndarray:
    """Voronoi cells in random saturated colours separated by dark lines."""
    rng = np.random.default_rng(seed)
    points = rng.random((cells, 2)) * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    d = (x[..., None] - points[:, 0]) ** 2 + (y[..., None] - points[:, 1]) ** 2
    nearest = np.sort(np.sqrt(d), axis=-1)[..., :2]
    label = np.argmin(d, axis=-1)
    hue = rng.random(cells)
    palette = np.stack(
        [0.5 + 0.5 * np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)], axis=-1
    ) * rng.uniform(0.6, 1.0, (cells, 1))
    img = palette[label] * (0.85 + 0.15 * rng.random((size, size, 1)))
    img[(nearest[..., 1] - nearest[..., 0]) < 2.5] = (0.08, 0.06, 0.05)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder")
    parser.add_argument(
        "--panel", help="instead, join OUTDIR/content.png, style.png and styled.png into one image"
    )
    args = parser.parse_args()
    if args.panel:
        names = ("content.png", "style.png", "styled.png")
        images = [read_image(os.path.join(args.out, n)) for n in names]
        height = min(im.shape[0] for im in images)
        gap = np.full((height, 4, 3), 255, np.uint8)
        parts = [x for im in images for x in (im[:height], gap)][:-1]
        write_image(args.panel, np.concatenate(parts, axis=1))
        print(f"wrote {args.panel}")
        return
    os.makedirs(args.out, exist_ok=True)
    write_image(os.path.join(args.out, "content.png"), landscape())
    write_image(os.path.join(args.out, "style.png"), stained_glass())
    print(f"wrote {args.out}/content.png and {args.out}/style.png")


if __name__ == "__main__":
    main()
