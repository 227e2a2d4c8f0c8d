"""The concatenation copy: ``cnnkit.ops.concat`` against ``cnnkit.reference`` (bit for bit:
a copy, NaN payloads and signed zeros included), thread invariance, the layers that use
it, and bad arguments. One loop serves every instruction-set path (the C library's copy)."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import layout_view, seeded
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
import cnnkit.autograd as ag
from cnnkit import layers, ops, reference

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("contiguous", "channel_stride", "fortran", "reversed_batch", "spatial_slice")


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 4))
    axis = draw(st.integers(-rank, rank - 1))
    base = [draw(st.integers(0 if i == 0 else 1, 4)) for i in range(rank)]
    count = draw(st.integers(1, 4))
    shapes = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = draw(st.integers(0, 5))
        shapes.append(tuple(shape))
    dtypes = [draw(st.sampled_from(DTYPES)) for _ in range(count)]
    layouts = [draw(st.sampled_from(LAYOUTS)) for _ in range(count)]
    return shapes, dtypes, layouts, axis


@given(cases())
def test_concat_matches_reference(case):
    shapes, dtypes, layouts, axis = case
    arrays = [seeded(s, d, seed=i) for i, (s, d) in enumerate(zip(shapes, dtypes))]
    views = [
        layout_view(a, layout) if a.ndim >= 3 and a.size else a
        for a, layout in zip(arrays, layouts)
    ]
    got = ops.concat(views, axis)
    want = reference.concat(arrays, axis)
    assert got.dtype == want.dtype == np.result_type(*arrays)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def test_nan_payloads_infinities_and_signed_zeros_are_copied():
    a = np.array([[np.nan, -0.0, np.inf]], np.float32)
    a.view(np.uint32)[0, 0] = 0x7FC00123  # a NaN with a payload
    b = np.array([[-np.inf, 0.0]], np.float32)
    got = ops.concat([a, b], axis=1)
    assert got.tobytes() == np.concatenate([a, b], axis=1).tobytes()


def test_channel_concat_on_threads_equals_numpy(restore_threads):
    # Large enough to be cut between threads, with row counts that do not divide evenly.
    a, b = seeded((3, 57, 57, 64), np.float32, 1), seeded((3, 57, 57, 65), np.float32, 2)
    want = np.concatenate([a, b], axis=-1)
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        assert ops.concat([a, b]).tobytes() == want.tobytes()


def test_concatenate_layer_inference_and_tape_use_the_copy(monkeypatch):
    calls = []
    native = ops.concat
    # Only the real batch is counted (predict may also probe with an empty one).
    monkeypatch.setattr(
        ops, "concat", lambda arrays, axis: calls.extend(arrays[:1]) or native(arrays, axis)
    )
    a, b = seeded((2, 5, 5, 3), np.float32, 1), seeded((2, 5, 5, 4), np.float32, 2)
    want = np.concatenate([a, b], axis=-1)
    model = cnnkit.Model(
        inputs := [layers.Input((5, 5, 3)), layers.Input((5, 5, 4))],
        layers.Concatenate()(inputs),
    )
    assert model.predict([a, b], verbose=0).tobytes() == want.tobytes()
    assert [len(x) for x in calls if len(x)] == [2]
    assert ag.concat([a, b], axis=3).data.tobytes() == want.tobytes()
    assert [len(x) for x in calls if len(x)] == [2, 2]
    # Other dtypes stay with NumPy.
    ints = ag.concat_arrays([np.arange(3), np.arange(2)], 0)
    assert ints.tolist() == [0, 1, 2, 0, 1]
    assert [len(x) for x in calls if len(x)] == [2, 2]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((np.zeros((1, 2)), -1), TypeError, "concat(): tensors must be a list or tuple"),
        (([], -1), ValueError, "concat(): tensors must hold at least one array, got none"),
        (([np.zeros(2)], 1.0), TypeError, "concat(): axis must be an int, got float"),
        (
            ([np.zeros(2)], 1),
            ValueError,
            "concat(): axis must be in [-1, 0] for tensors of rank 1, got 1",
        ),
        (
            ([np.zeros((2, 2))], -3),
            ValueError,
            "concat(): axis must be in [-2, 1] for tensors of rank 2, got -3",
        ),
        (
            ([np.zeros((1, 1))], 2),
            ValueError,
            "concat(): axis must be in [-2, 1] for tensors of rank 2, got 2",
        ),
        (
            ([np.zeros(2)], 2**64),
            ValueError,
            "concat(): axis must be at most 2**63 - 1 (int64), got 1844",
        ),
        (([np.zeros(())], 0), ValueError, "concat(): tensors[0] must have at least one axis"),
        (([np.zeros(2), np.zeros(2, np.int32)], 0), TypeError, "concat(): tensors[1] must"),
        (([np.zeros(2), "a"], 0), TypeError, "concat(): tensors[1] must hold numbers"),
        (
            ([np.broadcast_to(np.zeros(1, np.float32), (2**60,))] * 8, 0),
            ValueError,
            "concat(): tensors must add up to fewer than 2**63 elements along axis 0",
        ),
        (
            ([np.zeros((2, 3)), np.zeros((3, 3))], 1),
            ValueError,
            "concat(): tensors[1] must have the shape of tensors[0] (2, 3) except along axis 1",
        ),
        (
            ([np.zeros((2, 3)), np.zeros((2, 3, 1))], 0),
            ValueError,
            "concat(): tensors[1] must have the shape of tensors[0] (2, 3) except along axis 0",
        ),
    ],
)
def test_bad_arguments_are_named(args, error, message):
    with pytest.raises(error) as info:
        ops.concat(*args)
    assert message in str(info.value)
