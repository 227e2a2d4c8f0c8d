"""Landmark detection end to end: a CNN regresses the 2L coordinates of the procedural faces with
squared error, trained with flips that keep every landmark's meaning."""

from __future__ import annotations

import numpy as np

import cnnkit
from cnnkit import datasets
from cnnkit.detection import flip_horizontal, localization_cnn


def test_landmark_regression_with_flip_augmentation():
    size = 32
    train = datasets.landmarks(1200, image_size=size, seed=0)
    test = datasets.landmarks(300, image_size=size, seed=1)
    flipped_images, flipped_points = flip_horizontal(
        train.images, train.points, datasets.FLIP_PAIRS
    )
    images = np.concatenate([train.images, flipped_images])
    targets = np.concatenate([train.points, flipped_points]).reshape(len(images), -1) / size

    model = localization_cnn((size, size, 3), targets.shape[1], seed=0)
    model.compile(optimizer=cnnkit.optimizers.Adam(2e-3), loss="mse")
    model.fit(images, targets, batch_size=32, epochs=5, verbose=0)

    predicted = model.predict(test.images, batch_size=300).reshape(test.points.shape) * size
    error = np.linalg.norm(predicted - test.points, axis=-1).mean()
    baseline = np.linalg.norm(train.points.mean(0) - test.points, axis=-1).mean()
    assert error < 0.35 * baseline, (error, baseline)
    # The subject's left eye (index 0) appears on the image's right: the model keeps the sides.
    names = datasets.LANDMARK_NAMES
    left, right = names.index("left_eye"), names.index("right_eye")
    assert np.mean(predicted[:, left, 0] > predicted[:, right, 0]) > 0.98
