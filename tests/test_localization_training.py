"""Classification with localization, trained end to end on procedural single-object images
(a reduced form of examples/localization.py)."""

from __future__ import annotations

import numpy as np

import cnnkit
from cnnkit import datasets, layers, ops
from cnnkit.detection import LocalizationLoss, decode_localization


def test_localization_cnn_learns_presence_class_and_box():
    train = datasets.single_object(1500, image_size=24, seed=0)
    test = datasets.single_object(300, image_size=24, seed=1)
    model = cnnkit.Sequential(
        [
            layers.Input((24, 24, 3)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(train.y.shape[1]),
        ],
        seed=0,
    )
    model.compile(optimizer=cnnkit.optimizers.Adam(3e-3), loss=LocalizationLoss())
    model.fit(train.images, train.y, batch_size=32, epochs=6, verbose=0)

    out = decode_localization(model.predict(test.images, batch_size=300))
    present = test.y[:, 0] > 0.5
    assert 0.6 < present.mean() < 0.95
    assert np.mean((out["pc"] > 0.5) == present) >= 0.95
    assert np.mean(out["classes"][present] == test.y[present, 5:].argmax(1)) >= 0.9
    bx, by, bh, bw = out["box"][present].T * 24
    boxes = np.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], 1)
    assert ops.box_iou(boxes, test.boxes[present], aligned=True).mean() >= 0.6
