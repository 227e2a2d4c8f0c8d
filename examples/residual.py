"""A functional residual network: shape classification on procedural single-object images.

Two residual blocks (the second with a strided 1x1 projection shortcut, as in ResNet)
written with the functional API -- ``layers.Input``, layers called on symbolic tensors,
``layers.add`` for the skip connections, ``cnnkit.Model(inputs, outputs)`` -- trained
with ``fit`` and reported as the accuracy on held-out images; the model is saved and
reloaded to show the functional graph survives a file.

    python examples/residual.py [--train 3000] [--epochs 6]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit import datasets, layers


def residual_block(x, filters: int, stride: int, name: str):
    """conv-BN-ReLU-conv-BN plus the shortcut, then ReLU; a 1x1 conv projects the shortcut
    when the shape changes. BatchNormalization's momentum is 0.9 (not 0.99): with a few
    hundred steps, the moving statistics must settle within the run."""
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(x)
    return layers.ReLU(name=f"{name}_out")(layers.add([y, shortcut], name=f"{name}_add"))


def build(image_size: int, classes: int, seed: int, width: int = 16) -> cnnkit.Model:
    inputs = layers.Input((image_size, image_size, 3), name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="stem")(inputs)
    x = residual_block(x, width, 1, "block1")
    x = residual_block(x, 2 * width, 2, "block2")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(classes, activation="softmax", name="probs")(x)
    return cnnkit.Model(inputs, outputs, name="resnet", seed=seed)


def run(train: int, test: int, epochs: int, image_size: int = 24, seed: int = 0) -> dict:
    """Train and evaluate; returns the test accuracy before and after a save/load."""
    tr = datasets.single_object(train, image_size=image_size, p_object=1.0, seed=seed)
    te = datasets.single_object(test, image_size=image_size, p_object=1.0, seed=seed + 1)
    y_train, y_test = tr.y[:, 5:].argmax(1), te.y[:, 5:].argmax(1)
    model = build(image_size, tr.y.shape[1] - 5, seed)
    model.compile(
        cnnkit.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(tr.images, y_train, batch_size=32, epochs=epochs, verbose=0)
    accuracy = float(np.mean(model.predict(te.images, verbose=0).argmax(1) == y_test))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet.cnnkit"
        model.save(path)
        reloaded = cnnkit.load_model(path)
    again = float(np.mean(reloaded.predict(te.images, verbose=0).argmax(1) == y_test))
    return {"model": model, "accuracy": accuracy, "reloaded_accuracy": again}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args.train, args.test, args.epochs, seed=args.seed)
    result["model"].summary()
    again = result["reloaded_accuracy"]
    print(f"test accuracy {result['accuracy']:.3f} (after save/load {again:.3f})")


if __name__ == "__main__":
    main()
