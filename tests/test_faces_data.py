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
