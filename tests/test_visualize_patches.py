"""cnnkit.visualize.top_patches against a brute-force computation (every activation of
every image, sorted), the pictures, and the rejection of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import layers as L
from cnnkit.data import Loader
from cnnkit.visualize import (
    activation_maps,
    filters_image,
    patch_grid,
    receptive_field,
    top_patches,
)
from cnnkit.visualize.patches import batch_top_rows


def small_model(shape=(12, 11, 3)):
    return cnnkit.Sequential(
        [
            L.Input(shape),
            L.Conv2D(6, 3, padding="same", activation="relu", name="c1"),
            L.MaxPooling2D(2, name="pool"),
            L.Conv2D(5, 3, strides=2, padding="same", name="c2"),
            L.Flatten(name="flat"),
            L.Dense(2, name="head"),
        ],
        seed=3,
    )


def images(n=37, shape=(12, 11, 3), seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def brute_force(model, name, x, k, fill=0.0):
    """Every activation sorted by (-score, image, position); patches cut from the image
    padded with ``fill`` along the affine field (the nets here are regular)."""
    acts = model.activations(x, [name])[name].numpy()
    rf = receptive_field(model, name)
    n, positions = len(x), int(np.prod(rf.output_shape))
    values = acts.reshape(n * positions, -1)
    pad = max(rf.size)
    padded = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], constant_values=fill)
    out = {"scores": [], "image_index": [], "position": [], "patches": []}
    for u in range(values.shape[1]):
        order = np.lexsort((np.arange(len(values)), -values[:, u].astype(np.float64)))[:k]
        pos = np.stack(np.unravel_index(order % positions, rf.output_shape), axis=1)
        out["scores"].append(values[order, u])
        out["image_index"].append(order // positions)
        out["position"].append(pos)
        cut = []
        for img, (i, j) in zip(order // positions, pos):
            top = rf.start[0] + i * rf.jump[0] + pad
            left = rf.start[1] + j * rf.jump[1] + pad
            cut.append(padded[img, top : top + rf.size[0], left : left + rf.size[1]])
        out["patches"].append(np.stack(cut))
    return {key: np.stack(v) for key, v in out.items()}


@pytest.mark.parametrize("name", ["c1", "pool", "c2"])
def test_equals_brute_force_for_any_batching(name):
    model, x = small_model(), images()
    want = brute_force(model, name, x, k=9)
    for batch_size in (1, 7, 64):
        got = top_patches(model, name, x, k=9, batch_size=batch_size)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got["image_index"], want["image_index"])
        np.testing.assert_array_equal(got["position"], want["position"])
        np.testing.assert_array_equal(got["patches"], want["patches"])
        assert np.all(np.diff(got["scores"], axis=1) <= 0)
    rf = got["receptive_field"]
    assert got["patches"].shape == (got["scores"].shape[0], 9, *rf.size, 3)
    # The mask marks image pixels: outside them a patch holds the fill.
    assert np.all(got["patches"][~got["mask"]] == 0)


def test_iterables_of_batches_and_loaders_give_the_same_result():
    model, x = small_model(), images()
    want = top_patches(model, "c2", x, k=4, units=[4, 0])
    labels = np.zeros(len(x))
    sources = [
        (x[i : i + 5] for i in range(0, len(x), 5)),
        [(x[i : i + 9], labels[i : i + 9]) for i in range(0, len(x), 9)],
        Loader(x, labels, batch_size=8, shuffle=False, workers=0),
    ]
    for source in sources:
        got = top_patches(model, "c2", source, k=4, units=[4, 0])
        for key in ("scores", "image_index", "position", "patches", "box", "mask"):
            np.testing.assert_array_equal(got[key], want[key])
    assert got["units"].tolist() == [4, 0]


def test_ties_go_to_the_earlier_image_and_position():
    model, x = small_model(), images()
    conv = model.get_layer("c1")
    kernel, bias = conv.get_weights()
    kernel[..., 2] = 0
    bias[2] = -1.0  # unit 2 is dead: its ReLU output is 0 everywhere
    conv.set_weights([kernel, bias])
    for batch_size in (3, 100):
        got = top_patches(model, "c1", x, k=5, units=[2], batch_size=batch_size)
        assert got["scores"].tolist() == [[0.0] * 5]
        assert got["image_index"].tolist() == [[0] * 5]
        assert got["position"][0].tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4]]


def test_uint8_images_keep_their_pixels_and_the_fill():
    model = small_model()
    x = (images() * 255).astype(np.uint8)
    got = top_patches(model, "pool", x, k=3, fill=7)
    assert got["patches"].dtype == np.uint8
    for u in range(got["scores"].shape[0]):
        for r in range(3):
            (y0, y1), (x0, x1) = got["box"][u, r]
            inside = got["patches"][u, r][got["mask"][u, r]]
            picture = x[got["image_index"][u, r], y0:y1, x0:x1]
            np.testing.assert_array_equal(inside, picture.reshape(-1, 3))
            assert np.all(got["patches"][u, r][~got["mask"][u, r]] == 7)


def test_functional_model_layers():
    inp = L.Input((10, 10, 2))
    a = L.Conv2D(3, 3, padding="same", name="a")(inp)
    b = L.Conv2D(3, 1, name="b")(inp)
    s = L.Add(name="sum")([a, b])
    out = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, strides=2, name="deep")(s))
    model = cnnkit.Model(inp, out, seed=0)
    x = images(20, (10, 10, 2))
    for name in ("a", "sum", "deep"):
        got = top_patches(model, name, x, k=6, batch_size=6)
        want = brute_force(model, name, x, k=6)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got["image_index"], want["image_index"])
        np.testing.assert_array_equal(got["patches"], want["patches"])


def test_pictures(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    model, x = small_model(), images()
    found = top_patches(model, "c2", x, k=9, units=[0, 1, 2])
    size = found["receptive_field"].size
    grid = patch_grid(found, tmp_path / "grid.png")
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    scale = -(-32 // max(size))
    assert grid.shape[:2] == (3 * size[0] * scale + 4 * 2, 9 * size[1] * scale + 10 * 2)
    np.testing.assert_array_equal(np.asarray(pil.open(tmp_path / "grid.png")), grid)
    filters = filters_image(model, "c1", tmp_path / "filters.png")
    assert filters.shape[2] == 3 and (tmp_path / "filters.png").stat().st_size > 0
    maps = activation_maps(model, "pool", x[0], units=[0, 5], columns=1)
    assert maps.shape[1] < maps.shape[0]  # one column, two rows


# -- bad input ---------------------------------------------------------------------------------
def test_bad_images_name_the_argument():
    model = small_model()
    with pytest.raises(ValueError, match=r"top_patches\(\): images must be batches of shape "):
        top_patches(model, "c1", images(shape=(11, 12, 3)))
    with pytest.raises(ValueError, match="got batch 1 of shape"):
        top_patches(model, "c1", [images(4), images(4, (12, 11, 1))])
    with pytest.raises(TypeError, match=r"images must be an array .* got int"):
        top_patches(model, "c1", 5)
    with pytest.raises(TypeError, match="images must be numeric"):
        top_patches(model, "c1", np.full((2, 12, 11, 3), "a"))
    with pytest.raises(ValueError, match="images holds no images"):
        top_patches(model, "c1", images(0))
    with pytest.raises(ValueError, match=r"k is 10 but the 1 image\(s\) give only 9 positions"):
        top_patches(model, "c2", images(1), k=10)
    bad = images(3)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite activations for image 1"):
        top_patches(model, "c1", bad)


def test_bad_layer_units_and_counts():
    model = small_model()
    with pytest.raises(ValueError, match=r"layer must name .*'nope'.*\['c1', 'pool', 'c2'\]"):
        top_patches(model, "nope", images(2))
    with pytest.raises(ValueError, match="layer 'head' has no receptive field"):
        top_patches(model, "head", images(2))
    with pytest.raises(ValueError, match=r"units must be channel indices of layer 'c1' in \["):
        top_patches(model, "c1", images(2), units=[6])
    with pytest.raises(TypeError, match="k must be an int"):
        top_patches(model, "c1", images(2), k=2.5)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        top_patches(model, "c1", images(2), batch_size=0)
    with pytest.raises(TypeError, match="result must be the dict top_patches"):
        patch_grid([1, 2])
    with pytest.raises(ValueError, match=r"filters_image\(\): layer 'c2' reads 6 channels"):
        filters_image(model, "c2")
    with pytest.raises(ValueError, match=r"filters_image\(\): layer must be a Conv2D"):
        filters_image(model, "pool")
    with pytest.raises(ValueError, match=r"activation_maps\(\): image must be one numeric sample"):
        activation_maps(model, "c1", images(2))


@settings(max_examples=40)
@given(
    units=st.integers(1, 5),
    count=st.integers(1, 40),
    k=st.integers(1, 12),
    levels=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_batch_top_rows_takes_the_lowest_columns_among_ties(units, count, k, levels, seed):
    values = np.random.default_rng(seed).integers(0, levels, (units, count)).astype(np.float32)
    got = batch_top_rows(values, k)
    for u in range(units):
        want = np.lexsort((np.arange(count), -values[u]))[:k]
        assert sorted(got[u].tolist()) == sorted(want.tolist())


def test_a_model_built_by_its_first_call():
    model = cnnkit.Sequential([L.Conv2D(3, 3, name="c"), L.MaxPooling2D(name="p")], seed=0)
    x = images(6, (9, 9, 2))
    model.predict(x, verbose=0)
    got = top_patches(model, "p", x, k=2)
    assert got["receptive_field"].size == (4, 4) and got["patches"].shape == (3, 2, 4, 4, 2)
    assert activation_maps(model, "c", x[0]).dtype == np.uint8


def test_fields_with_fractional_jumps_fit_their_patches():
    # After up-sampling and transposed convolutions the affine form only holds on average:
    # each patch must still hold its unit's whole exact field, and only it.
    model = cnnkit.Sequential(
        [
            L.Input((10, 9, 1)),
            L.Conv2D(2, 3, strides=2, padding="same", name="down"),
            L.UpSampling2D(3, interpolation="bilinear", name="up"),
            L.Conv2DTranspose(3, 3, strides=2, padding="same", name="tconv"),
            L.Conv2D(2, 3, name="after"),
        ],
        seed=0,
    )
    x = images(8, (10, 9, 1))
    for name in ("up", "tconv", "after"):
        got = top_patches(model, name, x, k=5, batch_size=3)
        rf = got["receptive_field"]
        assert not rf.regular
        for u in range(got["scores"].shape[0]):
            for r in range(5):
                box = rf.box(got["position"][u, r])
                assert tuple(map(tuple, got["box"][u, r])) == box
                (y0, y1), (x0, x1) = box
                assert got["mask"][u, r].sum() == (y1 - y0) * (x1 - x0)
                inside = got["patches"][u, r][got["mask"][u, r]]
                np.testing.assert_array_equal(
                    inside, x[got["image_index"][u, r], y0:y1, x0:x1].reshape(-1, 1)
                )


def test_one_and_two_threads_give_the_same_patches():
    model, x = small_model(), images()
    before = cnnkit.get_num_threads()
    try:
        cnnkit.set_num_threads(1)
        one = top_patches(model, "c2", x, k=4)
        cnnkit.set_num_threads(2)
        two = top_patches(model, "c2", x, k=4)
    finally:
        cnnkit.set_num_threads(before)
    for key in ("scores", "image_index", "position", "patches"):
        np.testing.assert_array_equal(one[key], two[key])


@pytest.mark.parametrize("unit", [2**63, 2**64, -(2**70)])
def test_unit_indices_beyond_int64_are_a_value_error(unit):
    # np.array of such an index was an OverflowError before the range check.
    model = small_model()
    with pytest.raises(ValueError, match=r"^top_patches\(\): units must be channel indices"):
        top_patches(model, "c1", images(2), units=[0, unit])
