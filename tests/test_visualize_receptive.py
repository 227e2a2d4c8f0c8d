"""cnnkit.visualize.receptive_field against the empirical field: the bounding box of the
nonzero input gradient of one unit (union over a few random inputs, so that max pooling,
which passes the gradient to one pixel per window, still reaches every pixel it can)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as L
from cnnkit.autograd import Tensor
from cnnkit.visualize import receptive_field

F64 = "float64"


def empirical_boxes(model, name, positions, trials=32, seed=0):
    """Per position, (first, stop) per axis of the input pixels whose gradient is nonzero
    for the unit there (all its channels) for some of ``trials`` random inputs, or None.

    One forward and backward pass: the batch holds ``trials`` inputs per position, and each
    group of inputs is differentiated at its own position (samples do not interact).
    """
    rng = np.random.default_rng(seed)
    x = Tensor(
        rng.standard_normal((len(positions) * trials, *model._input_shape)), requires_grad=True
    )
    out = model.activations(x, [name])[name]
    total = None
    for i, pos in enumerate(positions):
        term = out[(slice(i * trials, (i + 1) * trials), *pos)].sum()
        total = term if total is None else total + term
    total.backward()
    boxes = []
    for i in range(len(positions)):
        support = np.abs(x.grad[i * trials : (i + 1) * trials]).sum(axis=(0, -1)) > 0
        if not support.any():
            boxes.append(None)
            continue
        box = []
        for axis in range(support.ndim):
            others = tuple(a for a in range(support.ndim) if a != axis)
            hits = np.nonzero(support.any(axis=others))[0]
            box.append((int(hits[0]), int(hits[-1]) + 1))
        boxes.append(tuple(box))
    return boxes


def positions(shape, count=10, seed=1):
    """Corners, centre and a few random positions of an output of spatial ``shape``."""
    corners = list(itertools.product(*[(0, n - 1) for n in shape]))
    rng = np.random.default_rng(seed)
    extra = [tuple(int(rng.integers(n)) for n in shape) for _ in range(count)]
    centre = [tuple(n // 2 for n in shape)]
    return list(dict.fromkeys(corners + centre + extra))


def check_layers(model, names):
    for name in names:
        rf = receptive_field(model, name)
        where = positions(rf.output_shape)
        for pos, seen in zip(where, empirical_boxes(model, name, where)):
            assert rf.box(pos) == seen, (name, pos, rf)


def seq(*stack, shape):
    return cnnkit.Sequential([L.Input(shape, dtype=F64), *stack], seed=0, dtype=F64)


def test_known_values_of_the_course():
    model = seq(
        L.Conv2D(2, 3),
        L.Conv2D(2, 3),
        L.MaxPooling2D(2),
        L.Conv2D(2, 3, padding="same"),
        shape=(20, 20, 1),
    )
    sizes = [receptive_field(model, layer.name) for layer in model.layers]
    assert [r.size for r in sizes] == [(3, 3), (5, 5), (6, 6), (10, 10)]
    assert [r.jump for r in sizes] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    assert [r.start for r in sizes] == [(0, 0), (0, 0), (0, 0), (-2, -2)]
    assert all(r.regular and not r.merged for r in sizes)


def test_strides_dilation_same_padding_pooling_match_the_gradient():
    model = seq(
        L.Conv2D(3, 3, strides=2, padding="same"),
        L.MaxPooling2D(3, strides=2, padding="same"),
        L.Conv2D(3, 3, dilation_rate=2, padding="same", activation="relu"),
        L.AveragePooling2D(2),
        L.Conv2D(2, (1, 3), strides=(1, 2)),
        shape=(27, 30, 2),
    )
    check_layers(model, [layer.name for layer in model.layers])


def test_depthwise_separable_batchnorm_and_pointwise_layers_match_the_gradient():
    model = seq(
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
        L.BatchNormalization(),
        L.Activation("tanh"),
        L.SeparableConv2D(4, 3, dilation_rate=2),
        L.Dense(3),
        L.Dropout(0.5),
        L.Softmax(),
        shape=(17, 16, 2),
    )
    check_layers(model, [layer.name for layer in model.layers])


def test_padding_cropping_and_crop_before_pad_are_clipped_exactly():
    # After a crop, zero padding reaches back to pixels that exist but are not seen: the
    # exact field must leave them out, where the affine form (clipped at the image) would not.
    model = seq(
        L.Cropping2D(((3, 1), (0, 2))),
        L.Conv2D(2, 3, padding="same"),
        L.ZeroPadding2D(((2, 0), (1, 3))),
        L.Conv2D(2, 3, strides=2),
        shape=(14, 12, 1),
    )
    check_layers(model, [layer.name for layer in model.layers])
    rf = receptive_field(model, model.layers[1].name)
    assert rf.box((0, 0)) == ((3, 5), (0, 2))


@pytest.mark.parametrize(
    "layer",
    [
        lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same"),
        lambda: L.Conv2DTranspose(2, 4, strides=2, padding="valid"),
        lambda: L.Conv2DTranspose(2, 3, strides=3, padding="valid", output_padding=1),
        lambda: L.Conv2DTranspose(2, 3, strides=2, dilation_rate=1, padding="same"),
        lambda: L.UpSampling2D(2),
        lambda: L.UpSampling2D(3, interpolation="bilinear"),
        lambda: L.UpSampling2D(2, interpolation="bilinear"),
    ],
)
def test_fractional_jumps_are_exact_per_position(layer):
    model = seq(
        L.Conv2D(2, 3, strides=2, padding="same"),
        layer(),
        L.Conv2D(2, 3),
        shape=(12, 11, 1),
    )
    check_layers(model, [x.name for x in model.layers])
    rf = receptive_field(model, model.layers[1].name)
    assert not rf.regular
    assert all(j < 2 for j in rf.jump)


def test_one_and_three_spatial_axes():
    model = seq(
        L.Conv1D(2, 3, padding="causal", dilation_rate=2),
        L.MaxPooling1D(2),
        L.Conv1D(2, 3, strides=2, padding="same"),
        L.UpSampling1D(2),
        shape=(23, 2),
    )
    check_layers(model, [x.name for x in model.layers])
    causal = receptive_field(model, model.layers[0].name)
    assert causal.size == (5,) and causal.start == (-4,)
    volume = seq(
        L.Conv3D(2, 3, strides=(1, 2, 2), padding="same"),
        L.MaxPooling3D((1, 2, 2)),
        L.Conv3D(2, 2),
        shape=(5, 9, 8, 1),
    )
    check_layers(volume, [x.name for x in volume.layers])


def test_global_pooling_with_keepdims_sees_everything():
    model = seq(L.Conv2D(2, 3), L.GlobalAveragePooling2D(keepdims=True), shape=(7, 6, 1))
    rf = receptive_field(model, model.layers[1].name)
    assert rf.box((0, 0)) == ((0, 7), (0, 6))
    check_layers(model, [model.layers[1].name])


def functional_dag():
    """A stem, two branches of different kernels and strides, their union, a residual."""
    x = L.Input((18, 16, 2), dtype=F64)
    stem = L.Conv2D(3, 3, padding="same", dtype=F64, name="stem")(x)
    a = L.Conv2D(3, 5, strides=2, padding="same", dtype=F64, name="wide")(stem)
    b = L.MaxPooling2D(2, dtype=F64, name="pool")(stem)
    b = L.Conv2D(3, 1, dtype=F64, name="narrow")(b)
    added = L.Add(dtype=F64, name="add")([a, b])
    joined = L.Concatenate(dtype=F64, name="concat")([added, b])
    r = L.Conv2D(6, 3, padding="same", dtype=F64, name="res_conv")(joined)
    out = L.Add(dtype=F64, name="residual")([r, joined])
    up = L.UpSampling2D(2, dtype=F64, name="up")(out)
    c = L.Conv2D(6, 3, padding="same", dtype=F64, name="fine")(stem)
    mixed = L.Add(dtype=F64, name="mixed")([up, c])  # jumps 1/... and 1: irregular union
    return cnnkit.Model(x, mixed, seed=0)


def test_functional_dag_takes_the_union_of_branches():
    model = functional_dag()
    names = ["stem", "wide", "pool", "narrow", "add", "concat", "res_conv", "residual", "up"]
    check_layers(model, [*names, "mixed"])
    add = receptive_field(model, "add")
    wide, narrow = receptive_field(model, "wide"), receptive_field(model, "narrow")
    assert add.merged and not wide.merged
    assert add.size == tuple(max(a, b) for a, b in zip(wide.size, narrow.size))
    assert not receptive_field(model, "mixed").regular


def test_nested_model_layers():
    inner = cnnkit.Sequential(
        [L.Input((8, 8, 3), dtype=F64), L.Conv2D(3, 3, padding="same", name="inner_conv")],
        dtype=F64,
        seed=0,
    )
    x = L.Input((16, 16, 2), dtype=F64)
    y = L.Conv2D(3, 3, strides=2, padding="same", dtype=F64, name="outer")(x)
    y = inner(y)
    y = L.Conv2D(2, 3, dtype=F64, name="after")(y)
    model = cnnkit.Model(x, y, seed=0)
    check_layers(model, ["outer", "inner_conv", "after"])


def test_affine_form_equals_the_exact_field_away_from_borders():
    # Near a border the exact field can be smaller: a dilated kernel's taps may skip the
    # padding and land further in. It always lies within the affine field, clipped.
    model = seq(
        L.Conv2D(2, 5, strides=2, padding="same"),
        L.MaxPooling2D(3, strides=2),
        L.Conv2D(2, 3, dilation_rate=3, padding="same"),
        shape=(64, 60, 1),
    )
    inside = 0
    for layer in model.layers:
        rf = receptive_field(model, layer.name)
        assert rf.regular
        for pos in itertools.product(*[range(n) for n in rf.output_shape]):
            first = [rf.start[a] + pos[a] * rf.jump[a] for a in range(2)]
            affine = [(f, f + s) for f, s in zip(first, rf.size)]
            box = rf.box(pos)
            if all(0 <= f and e <= n for (f, e), n in zip(affine, rf.input_shape)):
                assert box == tuple(affine)
                inside += 1
            else:
                assert all(
                    max(f, 0) <= b0 and b1 <= min(e, n)
                    for (f, e), (b0, b1), n in zip(affine, box, rf.input_shape)
                )
    assert inside > 100


def test_input_shape_changes_same_padding():
    model = seq(L.Conv2D(1, 3, strides=2, padding="same"), shape=(8, 8, 1))
    assert receptive_field(model, model.layers[0].name).start == (0, 0)
    odd = receptive_field(model, model.layers[0].name, input_shape=(9, 9, 1))
    assert odd.start == (-1, -1) and odd.output_shape == (5, 5)


# -- bad input ---------------------------------------------------------------------------------
def test_unknown_layer_lists_the_valid_ones():
    model = seq(
        L.Conv2D(2, 3, name="c1"), L.Flatten(name="flat"), L.Dense(2, name="d"), shape=(8, 8, 1)
    )
    with pytest.raises(
        ValueError, match=r"receptive_field\(\): layer must name .*'nope'.*\['c1'\]"
    ):
        receptive_field(model, "nope")


def test_dense_after_flatten_has_no_field():
    model = seq(
        L.Conv2D(2, 3, name="c1"), L.Flatten(name="flat"), L.Dense(2, name="d"), shape=(8, 8, 1)
    )
    with pytest.raises(
        ValueError, match=r"layer 'd' has no receptive field: layer 'flat' \(Flatten\)"
    ):
        receptive_field(model, "d")
    pooled = seq(L.Conv2D(2, 3), L.GlobalMaxPooling2D(name="g"), shape=(8, 8, 1))
    with pytest.raises(ValueError, match="global pooling removes the spatial axes"):
        receptive_field(pooled, "g")


def test_layers_of_unknown_geometry_and_bad_arguments():
    model = seq(L.Lambda(lambda t: t * 2, name="lam"), L.Conv2D(2, 3, name="c"), shape=(8, 8, 1))
    with pytest.raises(ValueError, match="does not know the geometry of Lambda"):
        receptive_field(model, "c")
    x = L.Input((8, 8, 2))
    y = L.Concatenate(axis=1, name="rows")([x, x])
    with pytest.raises(ValueError, match="concatenates along a spatial axis"):
        receptive_field(cnnkit.Model(x, y), "rows")
    with pytest.raises(TypeError, match=r"receptive_field\(\): model must be a cnnkit Model"):
        receptive_field("model.cnnkit", "c")
    with pytest.raises(TypeError, match="layer must be a layer name"):
        receptive_field(seq(L.Conv2D(1, 3), shape=(8, 8, 1)), 3)

    class Custom(cnnkit.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(1, 3)

        def call(self, x):
            return self.conv(x)

    custom = Custom()
    custom.build((8, 8, 1))
    with pytest.raises(TypeError, match="Sequential or functional"):
        receptive_field(custom, custom.conv.name)
    plain = seq(L.Conv2D(1, 3), shape=(8, 8, 1))
    rf = receptive_field(plain, plain.layers[0].name)
    with pytest.raises(ValueError, match=r"box\(\): position must be 2 indices"):
        rf.box((6, 0))
