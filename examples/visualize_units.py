"""Seeing what units learn: the nine patches that excite units most, shallow and deep.

    python examples/visualize_units.py [--out docs/images] [--yolo cnnkit-demo/model.cnnkit]

1. A digits classifier (scikit-learn's 8x8 handwritten digits, enlarged to 32x32) with
   three conv blocks is trained for 20 epochs; for each block it prints the receptive
   field and writes the top-9 grid of eight units (and the first block's filters).
2. The YOLO network of ``cnnkit demo`` (the file given with --yolo, or a short training run
   here) on the procedural shapes: the first and the last conv block.

Deeper units see larger fields (3x3 pixels, then 8x8, then 18x18 on the 32x32 digits) and
respond to larger, more composite patterns: at block 1 a 3x3 field sees little more than
brightness (many units saturate on the flat inside of a stroke, and those ties go to the
first image), at block 2 oriented edges of strokes, at block 3 pieces of digits (bars,
corners, curves). On the shapes, the first block's units answer to colours and edges, the
last block's (54x54 of 64x64 pixels) to whole objects and their arrangements. Needs
scikit-learn and Pillow.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit import layers as L
from cnnkit import visualize
from cnnkit.visualize.command import builtin_images


def digits_classifier(x: np.ndarray, y: np.ndarray, epochs: int) -> cnnkit.Sequential:
    model = cnnkit.Sequential(
        [
            L.Input(x.shape[1:]),
            L.Conv2D(16, 3, padding="same", activation="relu", name="block1"),
            L.MaxPooling2D(name="pool1"),
            L.Conv2D(32, 3, padding="same", activation="relu", name="block2"),
            L.MaxPooling2D(name="pool2"),
            L.Conv2D(32, 3, padding="same", activation="relu", name="block3"),
            L.GlobalAveragePooling2D(),
            L.Dense(10),
        ],
        seed=0,
    )
    model.compile(
        "adam", cnnkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def describe(model: cnnkit.Model, name: str, images: np.ndarray, path: Path, units) -> None:
    started = time.perf_counter()
    found = visualize.top_patches(model, name, images, k=9, units=units)
    seconds = time.perf_counter() - started
    rf = found["receptive_field"]
    side = " x ".join(map(str, rf.size))
    share = np.prod(rf.size) / np.prod(rf.input_shape)
    visualize.patch_grid(found, path)
    print(
        f"  {name:>14}: field {side} px (jump {rf.jump[0]}, {share:.0%} of the image), "
        f"{len(units)} units x 9 patches from {len(images)} images in {seconds:.2f} s -> {path}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNG grids")
    parser.add_argument("--yolo", default=None, help="a model file from `cnnkit demo`")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from sklearn.datasets import load_digits

    labels = load_digits().target
    x = builtin_images("digits", (32, 32, 1), len(labels), 0)
    train = np.arange(len(x)) % 5 != 0
    model = digits_classifier(x[train], labels[train], args.epochs)
    accuracy = model.evaluate(x[~train], labels[~train], return_dict=True)["accuracy"]
    print(f"digits classifier: held-out accuracy {accuracy:.3f} ({(~train).sum()} images)")
    for name in ("block1", "block2", "block3"):
        describe(model, name, x, out / f"digits_{name}.png", list(range(8)))
    visualize.filters_image(model, "block1", out / "digits_block1_filters.png")

    if args.yolo:
        yolo = cnnkit.load_model(args.yolo)
    else:
        from cnnkit.demo import DemoConfig, run_demo

        print("training a small YOLO model on shapes (give --yolo for the demo's model) ...")
        config = DemoConfig(
            train_images=1500, test_images=100, epochs=4, batch_size=16, learning_rate=5e-3
        )
        with tempfile.TemporaryDirectory() as run:
            run_demo(run, config=config, verbose=0, print_fn=lambda *a: None)
            yolo = cnnkit.load_model(Path(run) / "model.cnnkit")
    shapes = builtin_images("shapes", yolo._input_shape, 1000, 7)
    blocks = [layer.name for layer in yolo.layers if isinstance(layer, L.Activation)]
    print(f"YOLO on shapes ({len(blocks)} conv blocks):")
    for name in (blocks[0], blocks[-1]):
        describe(yolo, name, shapes, out / f"yolo_{name}.png", list(range(8)))


if __name__ == "__main__":
    main()
