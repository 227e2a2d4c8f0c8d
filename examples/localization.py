"""Classification with localization on procedural single-object images.

Trains a small CNN whose output is the course's vector [pc, bx, by, bh, bw, c1..cC]
with LocalizationLoss, then reports on held-out images how often the presence of
an object is right, how often the class is right (images with an object), and
the mean IoU of the predicted boxes (images with an object).

    python examples/localization.py [--train 4000] [--epochs 8]
"""

from __future__ import annotations

import argparse

import numpy as np

import cnnkit
from cnnkit import datasets, ops
from cnnkit.detection import LocalizationLoss, decode_localization, localization_cnn


def scores(model: cnnkit.Sequential, data: datasets.SingleObjectData) -> dict[str, float]:
    """Presence accuracy; class accuracy and mean box IoU on the images with an object."""
    out = decode_localization(model.predict(data.images, batch_size=256))
    present = data.y[:, 0] > 0.5
    size = data.images.shape[1]
    bx, by, bh, bw = out["box"].T * size
    boxes = np.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], 1)
    ious = ops.box_iou(boxes[present], data.boxes[present], aligned=True)
    return {
        "presence_accuracy": float(np.mean((out["pc"] > 0.5) == present)),
        "class_accuracy": float(np.mean(out["classes"][present] == data.y[present, 5:].argmax(1))),
        "mean_iou": float(ious.mean()),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train = datasets.single_object(args.train, seed=args.seed)
    test = datasets.single_object(1000, seed=args.seed + 1)
    model = localization_cnn(
        train.images.shape[1:], train.y.shape[1], filters=(16, 32, 64), dense=128, seed=args.seed
    )
    model.compile(optimizer=cnnkit.optimizers.Adam(2e-3), loss=LocalizationLoss())
    model.fit(train.images, train.y, batch_size=32, epochs=args.epochs, verbose=2)
    result = scores(model, test)
    print(", ".join(f"{k} {v:.3f}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
