"""The one validation module: each check's accepted values, rejections and message style
``function(): argument must be ..., got ...``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnkit import _validate as v


def test_integer():
    assert v.integer("f()", "n", np.int16(3), minimum=0) == 3
    assert type(v.integer("f()", "n", np.int64(3))) is int
    with pytest.raises(TypeError, match=r"^f\(\): n must be an int, got float 1.5$"):
        v.integer("f()", "n", 1.5)
    with pytest.raises(TypeError, match=r"^f\(\): n must be an int, got bool True$"):
        v.integer("f()", "n", True)
    with pytest.raises(ValueError, match=r"^f\(\): n must be >= 1, got 0$"):
        v.integer("f()", "n", 0, minimum=1)
    with pytest.raises(ValueError, match=r"^f\(\): n must be <= 4, got 5$"):
        v.integer("f()", "n", 5, maximum=4)


def test_integers():
    assert v.integers("f()", "k", 3, 2) == (3, 3)
    assert v.integers("f()", "k", [1, 2, 3], 3) == (1, 2, 3)
    with pytest.raises(ValueError, match=r"k must be an int or a tuple of 2 ints, got \(1, 2, 3\)"):
        v.integers("f()", "k", (1, 2, 3), 2)
    with pytest.raises(ValueError, match=r"k must be >= 1, got 0"):
        v.integers("f()", "k", (1, 0), 2)


@pytest.mark.parametrize(
    ("kwargs", "value", "message"),
    [
        ({}, math.nan, r"x must be finite, got nan"),
        ({}, math.inf, r"x must be finite, got inf"),
        ({"low": 0.0}, -1, r"x must be >= 0, got -1.0"),
        ({"low": 0.0, "low_open": True}, 0, r"x must be > 0, got 0.0"),
        ({"high": 2.5}, 3, r"x must be <= 2.5, got 3.0"),
        ({"low": 0, "high": 1, "high_open": True}, 1, r"x must be in \[0, 1\), got 1.0"),
        ({"finite": False}, math.nan, r"x must be a number \(not NaN\), got nan"),
    ],
)
def test_real_rejections(kwargs, value, message):
    with pytest.raises(ValueError, match=rf"^g\(\): {message}$"):
        v.real("g()", "x", value, **kwargs)


def test_real_accepts_and_converts():
    assert v.real("g()", "x", np.float32(0.5)) == 0.5
    assert type(v.real("g()", "x", 2)) is float
    assert v.real("g()", "x", math.inf, finite=False) == math.inf
    with pytest.raises(TypeError, match=r"^g\(\): x must be a real number, got str '1'$"):
        v.real("g()", "x", "1")
    with pytest.raises(TypeError, match="got bool"):
        v.real("g()", "x", False)


def test_probability():
    assert v.probability("h()", "p", 1) == 1.0
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        v.probability("h()", "p", 1.5)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        v.probability("h()", "p", 1.0, high_open=True)


def test_seed_and_generator():
    assert v.seed("s()", "seed", np.uint8(4)) == 4
    gen = np.random.default_rng(1)
    assert v.generator("s()", gen) is gen
    a, b = v.generator("s()", 7), np.random.default_rng(7)
    assert a.random() == b.random()
    with pytest.raises(ValueError, match=r"^s\(\): seed must be >= 0, got -1$"):
        v.generator("s()", -1)
    with pytest.raises(TypeError, match=r"^s\(\): rng must be an int or a numpy.random.Generator"):
        v.generator("s()", None, "rng")


def test_shape():
    assert v.shape("t()", "shape", [2, np.int64(3)]) == (2, 3)
    assert v.shape("t()", "shape", (4, -1), allow_unknown=True) == (4, -1)
    with pytest.raises(TypeError, match=r"shape must be a tuple of ints, got '23'"):
        v.shape("t()", "shape", "23")
    with pytest.raises(ValueError, match=r"shape must be >= 1, got 0"):
        v.shape("t()", "shape", (2, 0))
    with pytest.raises(ValueError, match=r"at most one -1, got \(-1, -1\)"):
        v.shape("t()", "shape", (-1, -1), allow_unknown=True)


def test_choice():
    assert v.choice("c()", "padding", "SAME", ("valid", "same")) == "same"
    with pytest.raises(ValueError, match=r"^c\(\): padding must be 'valid' or 'same', got 'full'$"):
        v.choice("c()", "padding", "full", ("valid", "same"))
    with pytest.raises(ValueError, match=r"mode must be 'auto', 'min' or 'max', got 3"):
        v.choice("c()", "mode", 3, ("auto", "min", "max"))
