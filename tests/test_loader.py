"""cnnkit.data.Loader: the same batches whatever the worker count, a new order and new
distortions every epoch, model.fit on it (with a progress bar), early stops, rejections."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
import cnnkit.augment as A
from cnnkit import layers, losses
from cnnkit.data import Loader


def _data(n=37):
    rng = np.random.default_rng(0)
    x = (rng.random((n, 12, 14, 3)) * 255).astype(np.uint8)
    return x, np.arange(n)


def _pipeline():
    return A.Compose(
        [A.HorizontalFlip(), A.RandomCrop(10, 10), A.Rotate(20, p=0.5), A.GaussNoise(p=0.5)]
    )


def _epochs(loader, count=2):
    return [[(xb.copy(), yb.copy()) for xb, yb in loader] for _ in range(count)]


def test_same_seed_same_batches_whatever_the_workers():
    x, y = _data()
    runs = [
        _epochs(Loader(x, y, batch_size=8, transform=_pipeline(), seed=3, workers=w, prefetch=p))
        for w, p in ((0, 0), (1, 0), (3, 2), (2, 5))
    ]
    for other in runs[1:]:
        for epoch_a, epoch_b in zip(runs[0], other):
            assert len(epoch_a) == len(epoch_b) == 5
            for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)


def test_batches_are_the_transform_of_their_samples_seeded_per_sample():
    x, y = _data()
    loader = Loader(x, y, batch_size=10, transform=_pipeline(), seed=5, workers=2)
    first, second = _epochs(loader)
    # every sample once per epoch, in a new order each epoch
    assert sorted(np.concatenate([b for _, b in first]).tolist()) == list(range(len(x)))
    assert not np.array_equal(first[0][1], second[0][1])
    # the batch of sample i is the transform of x[i] with the per-sample seed
    batches, seeds = loader._plan(0)
    index = batches[1]
    one = _pipeline()(image=x[index[0]], seed=seeds[index[0]])["image"]
    np.testing.assert_array_equal(first[1][0][0], one)
    assert first[0][0].shape == (10, 10, 10, 3)
    # epoch 0 again when the epoch counter is set back
    loader.epoch = 0
    again = _epochs(loader, 1)[0]
    np.testing.assert_array_equal(again[3][0], first[3][0])


def test_len_shuffle_and_drop_last():
    x, y = _data(37)
    assert len(Loader(x, y, batch_size=8)) == 5
    assert len(Loader(x, y, batch_size=8, drop_last=True)) == 4
    plain = list(Loader(x, y, batch_size=8, shuffle=False, workers=0))
    np.testing.assert_array_equal(np.concatenate([b for _, b in plain]), y)
    np.testing.assert_array_equal(plain[0][0], x[:8])
    assert [len(b) for _, b in Loader(x, y, batch_size=8, drop_last=True)] == [8, 8, 8, 8]
    assert list(Loader(x[:0], y[:0], batch_size=4)) == []


def test_breaking_out_of_an_epoch_stops_the_workers():
    x, y = _data(200)
    loader = Loader(x, y, batch_size=4, transform=_pipeline(), workers=3, prefetch=4)
    for k, _ in enumerate(loader):
        if k == 2:
            break
    assert len(list(loader)) == 50


def _small_model():
    model = cnnkit.Sequential(
        [
            layers.Input((10, 10, 3)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2),
        ],
        seed=0,
    )
    model.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_model_fit_on_a_loader_with_progress_bar(capsys):
    rng = np.random.default_rng(1)
    x = rng.random((64, 12, 12, 3)).astype(np.float32)
    y = (x[..., 0].mean((1, 2)) > 0.5).astype(np.int64)
    weights = []
    for workers in (0, 2):
        model = _small_model()
        loader = Loader(x, y, batch_size=16, transform=_pipeline(), seed=2, workers=workers)
        history = model.fit(loader, epochs=2, verbose=1)
        assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
        weights.append(model.get_weights())
    captured = capsys.readouterr()
    assert "4/4" in captured.out + captured.err
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"batch_size": 0}, ValueError, r"Loader\(\): batch_size must be >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, r"Loader\(\): batch_size must be an int, got float"),
        ({"workers": -1}, ValueError, r"Loader\(\): workers must be >= 0"),
        ({"prefetch": -1}, ValueError, r"Loader\(\): prefetch must be >= 0"),
        ({"y": np.zeros(3)}, ValueError, r"Loader\(\): y must have one row per sample of x \(4\)"),
        ({"transform": 5}, TypeError, r"Loader\(\): transform must be a cnnkit.augment transform"),
        ({"seed": -1}, ValueError, r"Loader\(\): seed must be >= 0"),
        ({"seed": np.random.default_rng(0)}, TypeError, r"Loader\(\): seed must be an int"),
    ],
)
def test_rejections(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Loader(**{"x": np.zeros((4, 5, 5, 3), np.uint8), **kwargs})


@pytest.mark.parametrize("arg", ["shuffle", "drop_last"])
def test_flags_must_be_bools(arg):
    # bool('no') is True: shuffle='no' shuffled and drop_last='false' dropped, silently.
    with pytest.raises(TypeError, match=rf"^Loader\(\): {arg} must be a bool, got str 'no'"):
        Loader(np.zeros((4, 2)), **{arg: "no"})
    assert getattr(Loader(np.zeros((4, 2)), **{arg: np.bool_(False)}), arg) is False
