"""Procedural faces: the raw-pixel verification baseline, and proof that identities are learnable.

The test set is ``pairs`` LFW-style pairs (10 folds of disjoint people, half same,
half different) over people never used for training. Three distances are scored
with the 10-fold LFW protocol:

* raw pixels: L2 between the images scaled to [0, 1] (the baseline);
* normalised grey: L2 between grey images standardised per image (a stronger baseline);
* a small encoder trained as a softmax classifier over the training people (the
  simplest loss there is), compared through its penultimate layer's L2-normalised
  output. Skipped with ``--no-train``.

    python examples/face_baseline.py [--size 64] [--train-people 500] [--epochs 8] [--no-train]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cnnkit
from cnnkit import layers
from cnnkit.datasets import faces
from cnnkit.face import evaluate

TEST_FIRST = 1_000_000  # test people are numbered far from the training ones


def _report(name: str, distances: np.ndarray, same: np.ndarray) -> dict:
    s = evaluate.verification_summary(distances, same)
    print(
        f"{name:<16} accuracy {s['accuracy']:.4f} +- {s['accuracy_std']:.4f}   "
        f"VAL@FAR=1e-3 {s['val']:.4f}   AUC {s['auc']:.4f}"
    )
    return s


def build(
    size: int, n_classes: int, width: int = 16
) -> tuple[cnnkit.Sequential, cnnkit.Sequential]:
    """The encoder (image -> 128 values) and the classifier around it."""
    stack: list = [layers.Input((size, size, 3))]
    for k in range(4):
        stack += [
            layers.Conv2D(width * 2**k, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.Activation("relu"),
            layers.MaxPooling2D(2),
        ]
    stack += [layers.GlobalAveragePooling2D(), layers.Dense(128)]
    encoder = cnnkit.Sequential(stack, seed=0)
    head = [layers.Activation("relu"), layers.Dense(n_classes, activation="softmax")]
    return encoder, cnnkit.Sequential([layers.Input((size, size, 3)), encoder, *head], seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--test-people", type=int, default=600)
    parser.add_argument("--train-people", type=int, default=500)
    parser.add_argument("--per-person", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    x_test, y_test = faces(args.test_people, 10, size=args.size, seed=0, first_identity=TEST_FIRST)
    print(f"generated {len(x_test)} test faces in {time.perf_counter() - start:.2f} s")
    left, right, same, _ = evaluate.lfw_style_pairs(
        y_test, folds=10, pairs_per_fold=args.pairs // 10, seed=0
    )
    pixels = x_test.astype(np.float32) / 255
    _report("raw pixels", evaluate.pair_distances(pixels[left], pixels[right]), same)
    grey = pixels.mean(-1).reshape(len(pixels), -1)
    grey = (grey - grey.mean(1, keepdims=True)) / (grey.std(1, keepdims=True) + 1e-6)
    _report("normalised grey", evaluate.pair_distances(grey[left], grey[right]), same)
    if args.no_train:
        return

    start = time.perf_counter()
    x, y = faces(args.train_people, args.per_person, size=args.size, seed=0)
    print(f"generated {len(x)} training faces in {time.perf_counter() - start:.2f} s")
    encoder, model = build(args.size, args.train_people)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x.astype(np.float32) / 255, y, batch_size=64, epochs=args.epochs, verbose=2)
    print(f"trained in {time.perf_counter() - start:.0f} s")
    codes = encoder.predict(pixels, batch_size=256, verbose=0)
    codes /= np.linalg.norm(codes, axis=1, keepdims=True) + 1e-12
    _report("softmax encoder", evaluate.pair_distances(codes[left], codes[right]), same)


if __name__ == "__main__":
    main()
