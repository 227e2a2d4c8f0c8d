"""``cnnkit visualize`` end to end on a saved model."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as L
from cnnkit.cli import main


@pytest.fixture
def saved(tmp_path):
    model = cnnkit.Sequential(
        [
            L.Input((16, 16, 3)),
            L.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
            L.MaxPooling2D(name="pool"),
            L.Conv2D(5, 3, name="c2"),
            L.Flatten(name="flat"),
        ],
        seed=0,
    )
    path = tmp_path / "model.cnnkit"
    model.save(path)
    return path


def test_npy_data_and_builtin_shapes(saved, tmp_path, capsys):
    pil = pytest.importorskip("PIL.Image")
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((30, 16, 16, 3), dtype=np.float32))
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "visualize",
                str(saved),
                "--layer",
                "c2",
                "--data",
                str(data),
                "-o",
                str(out),
                "--units",
                "0,2",
                "-k",
                "4",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "receptive field 8 x 8 pixels, jump 2 x 2" in text and "2 units x 4 patches" in text
    picture = np.asarray(pil.open(out))
    assert picture.shape[2] == 3 and picture.shape[0] < picture.shape[1]
    out2 = tmp_path / "shapes.png"
    assert (
        main(
            [
                "visualize",
                str(saved),
                "--layer",
                "pool",
                "--data",
                "shapes",
                "--count",
                "20",
                "-o",
                str(out2),
            ]
        )
        == 0
    )
    assert "4 units x 9 patches from 20 images" in capsys.readouterr().out
    assert out2.stat().st_size > 0


def test_errors_are_reported_not_raised(saved, tmp_path, capsys):
    assert main(["visualize", str(saved), "--layer", "flat", "--data", "shapes"]) == 2
    assert "layer 'flat' has no receptive field" in capsys.readouterr().err
    assert main(["visualize", str(saved), "--layer", "c1", "--data", "nothing.npy"]) == 2
    assert "nothing.npy" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 8, 8, 3), np.float32))
    assert main(["visualize", str(saved), "--layer", "c1", "--data", str(wrong)]) == 2
    assert "images must be batches of shape (N, 16, 16, 3)" in capsys.readouterr().err
    assert main(["visualize", str(saved), "--layer", "c1", "--data", "shapes", "-k", "0"]) == 2
    assert "-k must be >= 1" in capsys.readouterr().err


def test_an_image_as_data_and_an_impossible_count_are_reported(saved, tmp_path, capsys):
    # A PNG given as --data was NumPy's "This file contains pickled (object) data"; a
    # --count no memory holds hung in the data set's generator and is now a MemoryError,
    # which the command reports like the other errors instead of a traceback.
    picture = tmp_path / "a.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert main(["visualize", str(saved), "--layer", "c1", "--data", str(picture)]) == 2
    assert f"--data '{picture}' must be an .npy file of images or one of" in capsys.readouterr().err
    count = ["--data", "shapes", "--count", str(2**40)]
    assert main(["visualize", str(saved), "--layer", "c1", *count]) == 2
    assert "shapes(): 1099511627776 images of 16 x 16 x 3 float32 need" in capsys.readouterr().err
