"""`cnnkit demo`, the README's main job, end to end at a tiny size."""

from __future__ import annotations

import importlib.util

import numpy as np

import cnnkit
from cnnkit import cli, datasets
from cnnkit.demo import CLASSES, DemoConfig, pictured_boxes, run_demo
from cnnkit.detection import YoloLoss, YoloModel, detect


def test_demo_runs_end_to_end_and_writes_its_outputs(tmp_path):
    lines: list[str] = []
    tiny = DemoConfig(train_images=48, test_images=12, epochs=1, batch_size=16)
    result = run_demo(tmp_path / "out", config=tiny, seed=3, verbose=0, print_fn=lines.append)
    text = "\n".join(lines)
    assert "mAP@0.5" in text and "anchors (k-means" in text and "time: training" in text
    metrics = result["metrics"]
    assert -1 <= metrics["map_50"] <= 1 and -1 <= metrics["map"] <= 1
    assert result["anchors"].shape == (tiny.anchors, 2) and np.isfinite(result["final_loss"])
    # The file carries the anchors, class names and grid, and loads compiled (YoloModel and
    # YoloLoss are registered), so detect needs nothing from the log.
    model = cnnkit.load_model(tmp_path / "out" / "model.cnnkit")
    assert isinstance(model, YoloModel) and isinstance(model._compile_args["loss"], YoloLoss)
    np.testing.assert_array_equal(model.anchors, result["anchors"])
    assert model.class_names == CLASSES and model.grid == (8, 8) and model.image_size == (64, 64)
    assert model.predict(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 8, 8, 5 * 8)
    images = datasets.shapes(4, image_size=64, classes=CLASSES, seed=9)[0]
    found = detect(model, images, score_threshold=0.0)
    given = detect(model, images, anchors=result["anchors"], score_threshold=0.0)
    for a, b in zip(found, given):
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
    picture = tmp_path / "out" / "detections.png"
    if importlib.util.find_spec("PIL") is None:
        assert not picture.exists() and "Pillow is not installed" in text
    else:
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        fell_back = result["below_threshold_images"]
        assert ("have no box scoring >= 0.5" in text) == bool(fell_back)
        empty = sum(len(shown["scores"]) == 0 for shown in result["shown"])
        assert ("have no detection at all" in text) == bool(empty)
        for i, shown in enumerate(result["shown"]):
            if i in fell_back:
                assert 1 <= len(shown["scores"]) <= 3 and np.all(shown["scores"] < 0.5)
            else:
                assert np.all(shown["scores"] >= 0.5)


def test_pictured_boxes_fall_back_to_the_best_ones_with_their_scores():
    def found(*scores):
        k = len(scores)
        return {
            "boxes": np.tile(np.array([[1.0, 2.0, 9.0, 8.0]], np.float32), (k, 1)),
            "scores": np.array(scores, np.float32),
            "classes": np.arange(k, dtype=np.int64) % 3,
        }

    detections = [found(0.9, 0.6, 0.2), found(0.4, 0.3, 0.2, 0.1), found(), found(0.49)]
    shown, fell_back = pictured_boxes(detections, threshold=0.5, fallback=3)
    assert fell_back == [1, 3]  # an image with no detection at all has nothing to fall back to
    np.testing.assert_array_equal(shown[0]["scores"], np.float32([0.9, 0.6]))
    np.testing.assert_array_equal(shown[1]["scores"], np.float32([0.4, 0.3, 0.2]))
    np.testing.assert_array_equal(shown[1]["classes"], [0, 1, 2])
    assert len(shown[2]["scores"]) == 0 and shown[2]["boxes"].shape == (0, 4)
    np.testing.assert_array_equal(shown[3]["scores"], np.float32([0.49]))


def test_demo_command_rejects_bad_epochs(capsys):
    assert cli.main(["demo", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err
