"""Classification with localization, trained end to end on procedural single-object images
(a reduced form of examples/localization.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnkit
from cnnkit import datasets, ops
from cnnkit.detection import LocalizationLoss, decode_localization, localization_cnn


def test_localization_cnn_learns_presence_class_and_box():
    train = datasets.single_object(1500, image_size=24, seed=0)
    test = datasets.single_object(300, image_size=24, seed=1)
    model = localization_cnn((24, 24, 3), train.y.shape[1], seed=0)
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


def test_localization_cnn_layout_and_rejections():
    model = localization_cnn((16, 20, 3), 9, filters=(4, 8, 12), dense=10, seed=1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D"] * 3 + ["Flatten", "Dense", "Dense"]
    assert [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"] == [
        4,
        8,
        12,
    ]
    assert model.predict(np.zeros((2, 16, 20, 3), np.float32)).shape == (2, 9)
    same = localization_cnn((16, 20, 3), 9, filters=(4, 8, 12), dense=10, seed=1)
    for a, b in zip(model.get_weights(), same.get_weights()):
        np.testing.assert_array_equal(a, b)
    bad = [
        (dict(input_shape=(16, 16), outputs=3), "input_shape must be (height, width, channels)"),
        (dict(input_shape=(16, 16, 3), outputs=0), "outputs must be a positive int, got 0"),
        (dict(input_shape=(16, 16, 3), outputs=3, filters=()), "filters must be a non-empty"),
        (dict(input_shape=(16, 16, 3), outputs=3, dense=2.5), "dense must be a positive int"),
    ]
    for kwargs, text in bad:
        with pytest.raises(ValueError, match=re.escape(f"localization_cnn(): {text}")):
            localization_cnn(**kwargs)
