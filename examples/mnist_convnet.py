"""Keras's "Simple MNIST convnet", written the way the Keras example writes it.

The network, loss, optimizer, batch size and validation split are the Keras example's:
two Conv2D + MaxPooling2D blocks, Flatten, Dropout(0.5), Dense(10, softmax), categorical
cross-entropy on one-hot labels, Adam, batch 128, 10% held out for validation. MNIST itself
cannot be downloaded here (no hub is reachable), so the data are scikit-learn's bundled
handwritten digits (1,797 images of 8x8, the UCI set), scaled to [0, 1] and resized to
28x28 with ``cnnkit.image.resize``; a user with MNIST on disk passes its arrays to ``run``.

    python examples/mnist_convnet.py [--epochs 15]   (needs scikit-learn)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cnnkit
from cnnkit import image, layers, utils


def load_digits(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as MNIST-shaped float32 images (N, size, size, 1) and labels."""
    from sklearn.datasets import load_digits as sklearn_digits  # bundled: no download

    digits = sklearn_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return image.resize(x, (size, size)), digits.target.astype(np.int64)


def build(input_shape: tuple[int, int, int], num_classes: int = 10) -> cnnkit.Sequential:
    return cnnkit.Sequential(
        [
            layers.Input(input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        seed=0,
    )


def run(
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    *,
    epochs: int = 15,
    batch_size: int = 128,
    test_fraction: float = 0.25,
    verbose: int = 2,
) -> dict:
    """Train on a split of ``x, y`` (the digits by default) and evaluate on the rest."""
    if x is None or y is None:
        x, y = load_digits()
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    y_onehot = utils.to_categorical(y, 10)

    model = build(x.shape[1:])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(
        x[train],
        y_onehot[train],
        batch_size=batch_size,
        epochs=epochs,
        validation_split=0.1,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x[test], y_onehot[test], verbose=0)
    return {"model": model, "test_loss": loss, "test_accuracy": accuracy, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    result = run(epochs=args.epochs)
    result["model"].summary()
    print(f"Test loss: {result['test_loss']:.4f}")
    print(f"Test accuracy: {result['test_accuracy']:.4f}")
    print(f"Training time: {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
