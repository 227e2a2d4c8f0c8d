"""The channels-first to channels-last copy: ``cnnkit.ops.channels_last`` against
``cnnkit.reference`` (bit for bit: a copy) over ranks 2 to 5, empty and single-element
shapes, both float dtypes and non-contiguous inputs; thread invariance; the ONNX importer's
input Permute that uses it in inference plans; bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import autograd as ag
from cnnkit import layers, ops, reference

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "channel_stride", "fortran", "reversed_batch", "spatial_slice")


@st.composite
def cases(draw):
    rank = draw(st.integers(2, 5))
    shape = tuple(draw(st.integers(0, 4) if i < 2 else st.integers(1, 6)) for i in range(rank))
    return draw(st.sampled_from(DTYPES)), shape, draw(st.sampled_from(LAYOUTS))


@given(cases())
def test_channels_last_matches_reference(case):
    dtype, shape, layout = case
    x = seeded(shape, dtype, seed=1)
    view = layout_view(x, layout) if x.ndim >= 3 and x.size else x
    got = ops.channels_last(view)
    want = reference.channels_last(x)
    assert got.dtype == dtype and got.shape == (shape[0], *shape[2:], shape[1])
    assert got.flags.c_contiguous
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    "shape, dtype",
    # Blocks of positions that end mid-image, and more channels than one band of 64;
    # then images' 3 channels, which have a loop of their own.
    [((3, 70, 33, 35), np.float32), ((2, 3, 97, 101), np.float32), ((2, 3, 61, 67), np.float64)],
)
def test_large_images_on_threads(restore_threads, shape, dtype):
    x = seeded(shape, dtype, 3)
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        results.append(ops.channels_last(x))
    for got in results:
        assert got.tobytes() == np.ascontiguousarray(x.transpose(0, 2, 3, 1)).tobytes()


def test_the_input_permute_of_a_plan_copies_with_it():
    inputs = layers.Input((3, 8, 8))
    x = layers.Permute((2, 3, 1), name="to_channels_last")(inputs)
    model = cnnkit.Model(inputs, layers.Conv2D(4, 3, name="conv")(x), seed=0)
    images = seeded((2, 3, 8, 8), np.float32, 4)
    taped = model(images).data
    with ag.no_grad():
        planned = model(images).data
        steps = {s.layer.name: s.fast is not None for s in model._steps()}
    assert steps["to_channels_last"]
    assert planned.tobytes() == taped.tobytes()
    assert layers.Permute((2, 1))._inference_step() is not None  # (N, C, L) -> (N, L, C)
    assert layers.Permute((1, 3, 2))._inference_step() is None  # any other order: none


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 4, 3), (0, 3, 2, 2), (3, 2, 2, 2, 5)])
def test_the_permute_back_to_channels_first_in_a_plan(shape):
    # An ONNX Flatten after channels-last layers: Permute((3, 1, 2)) then Flatten.
    rank = len(shape) - 1
    inputs = layers.Input(shape[1:])
    back = layers.Permute((rank, *range(1, rank)), name="back")(inputs)
    model = cnnkit.Model(inputs, layers.Flatten()(back), seed=0)
    x = seeded(shape, np.float32, 5)
    taped = model(x).data
    with ag.no_grad():
        planned = model(x).data
        assert {s.layer.name: s.fast is not None for s in model._steps()}["back"]
    assert planned.shape == taped.shape and planned.tobytes() == taped.tobytes()


@pytest.mark.parametrize(
    "x, error, match",
    [
        (np.zeros(3, np.float32), ValueError, r"channels_last\(\): x must have shape \(N, C"),
        (np.zeros((2, 3), np.int32), TypeError, r"channels_last\(\): x must have dtype"),
        ("abc", TypeError, r"channels_last\(\): x"),
    ],
)
def test_bad_inputs(x, error, match):
    with pytest.raises(error, match=match):
        ops.channels_last(x)
    with pytest.raises(error, match=match):
        reference.channels_last(x)
