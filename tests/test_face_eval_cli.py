"""``cnnkit face-eval`` end to end on a fake LFW tree with a tiny random encoder."""

import numpy as np
import pytest

import cnnkit
from cnnkit import cli, datasets, layers
from cnnkit.face import evaluate
from cnnkit.face.lfw_eval import evaluate_lfw

Image = pytest.importorskip("PIL.Image")

NAMES = [f"Person_{k}" for k in range(8)]


def _fake_lfw(root):
    """8 people x 3 procedural faces as JPEGs (48 px) and a 2-set view-2 pairs file."""
    x, _ = datasets.faces(8, 3, size=48, seed=0)
    for k, name in enumerate(NAMES):
        (root / name).mkdir()
        for j in range(3):
            Image.fromarray(x[3 * k + j]).save(root / name / f"{name}_{j + 1:04d}.jpg")
    lines = ["2\t3"]
    for s in range(2):
        people = NAMES[4 * s : 4 * s + 4]
        lines += [f"{people[i]}\t1\t{2 + i % 2}" for i in range(3)]
        lines += [f"{people[i]}\t{1 + i}\t{people[i + 1]}\t1" for i in range(3)]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")


def _encoder(path):
    model = cnnkit.Sequential(
        [
            layers.Input((32, 32, 3)),
            layers.Conv2D(4, 3, strides=2, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(8),
        ],
        seed=0,
    )
    model.save(path)
    return model


def test_evaluate_lfw_matches_a_direct_computation(tmp_path):
    _fake_lfw(tmp_path)
    model = _encoder(tmp_path / "enc.cnnkit")
    s = evaluate_lfw(model, tmp_path, tmp_path / "pairs.txt", size=32, crop=40)
    pairs = datasets.read_lfw_pairs(tmp_path / "pairs.txt")
    assert (s["pairs"], s["folds"]) == (12, 2)
    paths = [datasets.lfw_image_path(tmp_path, n, k) for n, k in zip(pairs.name1, pairs.number1)]
    other = [datasets.lfw_image_path(tmp_path, n, k) for n, k in zip(pairs.name2, pairs.number2)]
    a = model.predict(datasets.load_images(paths, size=32, crop=40) / np.float32(255), verbose=0)
    b = model.predict(datasets.load_images(other, size=32, crop=40) / np.float32(255), verbose=0)
    d = evaluate.pair_distances(a, b)
    np.testing.assert_allclose(s["distances"], d, rtol=1e-5)
    assert s["accuracy"] == pytest.approx(evaluate.lfw_protocol(d, pairs.same, pairs.fold).mean)


def test_cli_prints_the_protocol(tmp_path, capsys):
    _fake_lfw(tmp_path)
    _encoder(tmp_path / "enc.cnnkit")
    argv = ["face-eval", "--lfw", str(tmp_path), "--pairs", str(tmp_path / "pairs.txt")]
    argv += ["--model", str(tmp_path / "enc.cnnkit"), "--size", "32"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "12 pairs of 18 images, 2 folds" in out
    assert "accuracy " in out and "+-" in out and "VAL " in out and "AUC " in out


def test_cli_errors(tmp_path, capsys):
    _fake_lfw(tmp_path)
    _encoder(tmp_path / "enc.cnnkit")
    base = ["face-eval", "--lfw", str(tmp_path), "--model", str(tmp_path / "enc.cnnkit")]
    (tmp_path / "Person_0" / "Person_0_0002.jpg").unlink()
    assert cli.main([*base, "--pairs", str(tmp_path / "pairs.txt"), "--size", "32"]) == 2
    assert "are missing under" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("1\nA\t1\n")
    assert cli.main([*base, "--pairs", str(tmp_path / "bad.txt")]) == 2
    assert "line 2 of" in capsys.readouterr().err
