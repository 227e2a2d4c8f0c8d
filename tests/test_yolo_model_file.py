"""A YOLO model file carries what detection needs: YoloModel keeps its anchors, class names,
image size and grid through save/load, and YoloModel and YoloLoss load by name, compiled,
without custom_objects (also in a fresh process, where cnnkit.detection was never imported)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import cnnkit
from cnnkit import losses
from cnnkit.detection import YoloLoss, YoloModel, detect, yolo_model

ANCHORS = np.array([[6.0, 7.0], [14.0, 10.0]])
NAMES = ("circle", "square", "triangle")


def small(seed: int = 0) -> YoloModel:
    return yolo_model(
        (16, 16, 3), anchors=ANCHORS, class_names=NAMES, width=4, downsamples=1, seed=seed
    )


def targets(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    boxes = [np.array([[1.0, 2.0, 9.0, 11.0], [8.0, 4.0, 15.0, 12.0]]) for _ in range(n)]
    classes = [rng.integers(0, 3, 2) for _ in range(n)]
    return cnnkit.ops.yolo_encode_batch(
        boxes, classes, grid=8, anchors=ANCHORS, num_classes=3, image_size=16
    )[0]


def test_yolo_model_carries_its_settings():
    model = small()
    assert isinstance(model, YoloModel) and isinstance(model, cnnkit.Sequential)
    np.testing.assert_array_equal(model.anchors, ANCHORS)
    assert model.class_names == NAMES and model.grid == (8, 8) and model.image_size == (16, 16)
    assert model.predict(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 8, 8, 2 * 8)
    config = model.get_config()
    assert config["anchors"] == ANCHORS.tolist() and config["class_names"] == list(NAMES)
    assert config["grid"] == [8, 8] and config["image_size"] == [16, 16]


def test_save_load_keeps_settings_weights_loss_and_training(tmp_path):
    model = small()
    loss = YoloLoss(ANCHORS, 16, lambda_noobj=0.25)
    model.compile(optimizer="adam", loss=loss)
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    y = targets(4)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    model.save(tmp_path / "yolo.cnnkit")

    restored = cnnkit.load_model(tmp_path / "yolo.cnnkit")
    assert type(restored) is YoloModel and restored.compiled
    np.testing.assert_array_equal(restored.anchors, ANCHORS)
    assert restored.class_names == NAMES and restored.grid == (8, 8)
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    got = restored._compile_args["loss"]
    assert type(got) is YoloLoss and got.get_config() == loss.get_config()
    # Training resumes exactly: same weights, same optimizer state, same loss.
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    restored.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)

    found = detect(restored, x, score_threshold=0.0)
    given = detect(model, x, anchors=ANCHORS, score_threshold=0.0)
    for a, b in zip(found, given):
        for key in ("boxes", "scores", "classes"):
            np.testing.assert_array_equal(a[key], b[key])


def test_a_fresh_process_loads_the_model_compiled(tmp_path):
    model = small()
    model.compile(optimizer="adam", loss=YoloLoss(ANCHORS, 16))
    path = tmp_path / "yolo.cnnkit"
    model.save(path)
    code = (
        "import sys, cnnkit\n"
        "m = cnnkit.load_model(sys.argv[1])\n"
        "print(type(m).__name__, type(m._compile_args['loss']).__name__, m.class_names)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "YoloModel YoloLoss ('circle', 'square', 'triangle')"


def test_loss_registry_knows_yolo_loss_by_name_only():
    loss = YoloLoss(ANCHORS, (16, 24), lambda_class=2.0)
    entry = losses.serialize(loss)
    assert entry["class_name"] == "YoloLoss"
    rebuilt = losses.deserialize(entry)
    assert type(rebuilt) is YoloLoss and rebuilt.get_config() == loss.get_config()

    class YoloLoss2(YoloLoss):  # a user's subclass is not registered by inheritance
        pass

    YoloLoss2.__name__ = "YoloLoss"
    with pytest.raises(TypeError, match="not registered"):
        losses.serialize(YoloLoss2(ANCHORS, 16))


def test_detect_needs_anchors_from_somewhere():
    plain = cnnkit.Sequential(list(small().layers), seed=0)
    x = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match=r"detect\(\): anchors must be given when the model"):
        detect(plain, x)
    assert len(detect(plain, x, anchors=ANCHORS, score_threshold=0.0)) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        (dict(num_classes=3), ValueError, "num_anchors must be a positive int (or give anchors)"),
        (
            dict(num_anchors=2),
            ValueError,
            "num_classes must be a positive int (or give class_names)",
        ),
        (dict(anchors=ANCHORS, num_anchors=3, num_classes=3), ValueError, "num_anchors is 3 but 2"),
        (
            dict(num_anchors=2, class_names=NAMES, num_classes=2),
            ValueError,
            "num_classes is 2 but 3",
        ),
        (
            dict(num_anchors=2, class_names="abc"),
            TypeError,
            "class_names must be a sequence of str",
        ),
        (dict(anchors=[[1.0, -2.0]], num_classes=1), ValueError, "anchors must be a non-empty"),
    ],
)
def test_yolo_model_rejects_inconsistent_settings(kwargs, error, text):
    with pytest.raises(error, match=re.escape(f"yolo_model(): {text}")):
        yolo_model((16, 16, 3), width=4, downsamples=1, **kwargs)


def test_yolo_model_class_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"YoloModel\(\): grid must be a positive int"):
        YoloModel(image_size=16, grid=0)
    with pytest.raises(TypeError, match=r"YoloModel\(\): class_names must be a sequence of str"):
        YoloModel(image_size=16, grid=8, class_names=[1, 2])


def test_loss_deserialize_rejects_a_non_string_class_name():
    with pytest.raises(
        ValueError, match=r"losses.deserialize\(\): config must have a 'class_name'"
    ):
        losses.deserialize({"class_name": ["YoloLoss"], "config": {}})
