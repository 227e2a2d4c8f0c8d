"""`cnnkit demo`, the README's main job, end to end at a tiny size."""

from __future__ import annotations

import importlib.util

import numpy as np

import cnnkit
from cnnkit import cli
from cnnkit.demo import DemoConfig, run_demo


def test_demo_runs_end_to_end_and_writes_its_outputs(tmp_path):
    lines: list[str] = []
    tiny = DemoConfig(train_images=48, test_images=12, epochs=1, batch_size=16)
    result = run_demo(tmp_path / "out", config=tiny, seed=3, verbose=0, print_fn=lines.append)
    text = "\n".join(lines)
    assert "mAP@0.5" in text and "anchors (k-means" in text and "time: training" in text
    metrics = result["metrics"]
    assert -1 <= metrics["map_50"] <= 1 and -1 <= metrics["map"] <= 1
    assert result["anchors"].shape == (tiny.anchors, 2) and np.isfinite(result["final_loss"])
    model = cnnkit.load_model(tmp_path / "out" / "model.cnnkit", compile=False)
    assert model.predict(np.zeros((1, 64, 64, 3), np.float32)).shape == (1, 8, 8, 5 * 8)
    picture = tmp_path / "out" / "detections.png"
    if importlib.util.find_spec("PIL") is None:
        assert not picture.exists() and "Pillow is not installed" in text
    else:
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_command_rejects_bad_epochs(capsys):
    assert cli.main(["demo", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err
