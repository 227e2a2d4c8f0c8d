"""Procedural faces: shapes, determinism, identity streams and bad input."""

import numpy as np
import pytest

from cnnkit import datasets
from cnnkit.datasets import faces_data


def test_shapes_dtypes_and_labels():
    x, y = datasets.faces(3, 4, size=32, seed=1)
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert x.std() > 10  # not a blank canvas


def test_empty():
    x, y = datasets.faces(0, 3, size=24)
    assert x.shape == (0, 24, 24, 3) and y.shape == (0,)


def test_same_seed_same_data_other_seed_other_data():
    a = datasets.faces(4, 3, size=32, seed=5)
    b = datasets.faces(4, 3, size=32, seed=5)
    c = datasets.faces(4, 3, size=32, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_generator_seed():
    x, _ = datasets.faces(2, 2, size=24, seed=np.random.default_rng(0))
    assert x.shape == (4, 24, 24, 3)


def test_identity_is_a_function_of_seed_and_number():
    # The parameters of person k do not depend on how many people are drawn
    # or where the call starts.
    whole = faces_data._identity_parameters(7, 0, 10)
    tail = faces_data._identity_parameters(7, 6, 4)
    for name in whole:
        np.testing.assert_array_equal(whole[name][6:], tail[name])
    _, y = datasets.faces(4, 2, size=24, seed=7, first_identity=6)
    assert y.tolist() == [6, 6, 7, 7, 8, 8, 9, 9]


def test_offsets_give_disjoint_people():
    train = faces_data._identity_parameters(0, 0, 50)
    test = faces_data._identity_parameters(0, 50, 50)
    a = np.stack(list(train.values()), 1)
    b = np.stack(list(test.values()), 1)
    assert np.min(np.abs(a[:, None] - b[None]).sum(-1)) > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_identities": -1}, ValueError, "n_identities must be >= 0"),
        ({"n_identities": 2.0}, TypeError, "n_identities must be an int"),
        ({"images_per_identity": 0}, ValueError, "images_per_identity must be >= 1"),
        ({"size": 16}, ValueError, "size must be >= 24"),
        ({"size": True}, TypeError, "size must be an int"),
        ({"seed": -3}, ValueError, "seed must be >= 0"),
        ({"seed": "a"}, TypeError, "seed must be an int"),
        ({"first_identity": -1}, ValueError, "first_identity must be >= 0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"n_identities": 2, "images_per_identity": 2, "size": 32, "seed": 0} | kwargs
    with pytest.raises(error, match=r"faces\(\): " + match):
        datasets.faces(**args)


def test_raw_pixels_verify_badly():
    # The nuisances (pose, light, background, occlusion) must dominate the
    # pixels: the raw-pixel L2 distance stays near chance on unseen people
    # (examples/face_baseline.py measures 0.56 on 6,000 pairs at 64 px).
    from cnnkit.face import evaluate

    x, y = datasets.faces(40, 4, size=32, seed=0, first_identity=1000)
    left, right, same, fold = evaluate.lfw_style_pairs(y, folds=4, pairs_per_fold=100, seed=0)
    pixels = x.reshape(len(x), -1).astype(np.float64)
    d = evaluate.pair_distances(pixels[left], pixels[right])
    assert evaluate.lfw_protocol(d, same, fold).mean < 0.7


def test_blur_is_the_separable_121_filter():
    rng = np.random.default_rng(0)
    images = rng.random((2, 5, 6, 3)).astype(np.float32)
    out = images.copy()
    faces_data._soften(out, np.array([0.0, 1.0], np.float32))
    np.testing.assert_array_equal(out[0], images[0])
    padded = np.pad(images[1].astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    both = 0.25 * rows[:, :-2] + 0.5 * rows[:, 1:-1] + 0.25 * rows[:, 2:]
    np.testing.assert_allclose(out[1, 1:-1, 1:-1], both[1:-1, 1:-1], atol=1e-6)


def test_without_nuisances_a_person_looks_the_same():
    x, _ = datasets.faces(2, 3, size=48, seed=2, nuisance=0.0)
    full, _ = datasets.faces(2, 3, size=48, seed=2)
    # The middle of the face differs by noise (std 0.03, about 8 of 255 per pixel)
    # and a little light within a person, far more between people and with
    # the nuisances on.
    centre = x[:, 14:34, 16:32].astype(np.float64)
    same = np.abs(centre[0] - centre[1:3]).mean()
    other = np.abs(centre[0] - centre[3:]).mean()
    assert same < 15 < other
    assert np.abs(full[:, 14:34, 16:32] - centre).mean() > 15
    with pytest.raises(ValueError, match=r"faces\(\): nuisance must be in \[0, 1\]"):
        datasets.faces(2, 2, nuisance=1.5)
