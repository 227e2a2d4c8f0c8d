"""Bad input to ``conv``, ``conv_backward`` and ``conv1d/2d/3d``: one test per rejection path.

Each asserts the exception type and the message: it starts with the function's
name, names the argument, and says what was expected and what came.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit import ops

FNS = ("conv", "conv_backward")
PADDING_WORDS = "padding must be 'valid', 'same', an int or per-dimension (before, after) pairs"


def message(fn: str, text: str) -> str:
    """A regex for a message that starts with ``fn(): `` and contains ``text`` literally."""
    return "^" + re.escape(f"{fn}(): ") + ".*" + re.escape(text)


def shape_str(shape) -> str:
    """A shape as the messages print it: ``(5,)``, ``(2, 3)``."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def run(fn: str, x, w, b=None, **kwargs):
    """Call ``fn``; conv_backward checks dy after every other argument, so any dy will do."""
    if fn == "conv":
        return ops.conv(x, w, b, **kwargs)
    assert b is None
    return ops.conv_backward(x, w, np.zeros(1), **kwargs)


def images(shape=(1, 5, 5, 4), dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def weights(shape=(3, 3, 4, 6), dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


# --------------------------------------------------------------------------- x and w


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("shape", "shown"),
    [((), "()"), ((5,), "(5,)"), ((2, 5), "(2, 5)"), ((1, 2, 2, 2, 2, 1), "(1, 2, 2, 2, 2, 1)")],
)
def test_rejects_x_of_rank_below_3_or_above_5(fn, shape, shown):
    with pytest.raises(ValueError, match=message(fn, "x must have 3 to 5 dimensions")) as info:
        run(fn, np.zeros(shape, np.float32), weights((3, 4, 6)))
    assert f"got shape {shown}" in str(info.value)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "rank"),
    [
        ((1, 5, 5, 4), (3, 4, 6), 2),
        ((1, 5, 5, 4), (3, 3, 3, 4, 6), 2),
        ((1, 5, 4), (3, 3, 4, 6), 1),
        ((1, 5, 5, 5, 4), (3, 3, 4, 6), 3),
        ((1, 5, 4), (6,), 1),
    ],
)
def test_rejects_w_whose_rank_does_not_match_x(fn, x_shape, w_shape, rank):
    text = (
        f"w must have shape (*kernel, C_in // groups, C_out) with {rank} kernel dimensions "
        f"to match x, got shape {shape_str(w_shape)}"
    )
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(x_shape), weights(w_shape))


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("w_shape", "groups", "per_group"),
    [((3, 3, 3, 6), 1, 4), ((3, 3, 4, 6), 2, 2), ((3, 3, 2, 6), 1, 4), ((3, 3, 4, 4), 4, 1)],
)
def test_rejects_channel_mismatch(fn, w_shape, groups, per_group):
    text = (
        f"w must have C_in // groups = {per_group} input channels (axis -2) for x with 4 "
        f"channels and groups={groups}, got shape {w_shape}"
    )
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(), weights(w_shape), groups=groups)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("groups", [3, 5, 8])
def test_rejects_groups_not_dividing_the_input_channels(fn, groups):
    text = f"groups must divide the 4 input channels of x, got {groups}"
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(), weights((3, 3, 1, 120)), groups=groups)


@pytest.mark.parametrize("fn", FNS)
def test_rejects_groups_not_dividing_the_output_channels(fn):
    text = "groups must divide the 5 output channels of w, got 2"
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(), weights((3, 3, 2, 5)), groups=2)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("groups", [0, -1, -4])
def test_rejects_groups_below_1(fn, groups):
    with pytest.raises(ValueError, match=message(fn, f"groups must be >= 1, got {groups}")):
        run(fn, images(), weights(), groups=groups)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("groups", "type_name"),
    [(2.0, "float"), (True, "bool"), (np.True_, "bool"), (None, "NoneType"), ("2", "str")],
)
def test_rejects_groups_that_are_not_ints(fn, groups, type_name):
    with pytest.raises(TypeError, match=message(fn, "groups must be an int")) as info:
        run(fn, images(), weights((3, 3, 2, 6)), groups=groups)
    assert str(info.value).endswith(f"got {type_name}")


def test_accepts_numpy_integers_for_int_arguments():
    """The counterpart of the TypeErrors above: NumPy integers are ints."""
    x, w = images((1, 6, 6, 4)) + 1, weights((3, 3, 2, 6)) + 1
    y = ops.conv(
        x, w, groups=np.int64(2), stride=np.int32(2), dilation=(np.uint8(1), 1), padding=np.int16(1)
    )
    assert np.array_equal(y, ops.conv(x, w, groups=2, stride=2, dilation=1, padding=1))


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.float16])
@pytest.mark.parametrize("name", ["x", "w"])
def test_rejects_non_float_dtypes(fn, dtype, name):
    x, w = images(), weights()
    if name == "x":
        x = x.astype(dtype)
    else:
        w = w.astype(dtype)
    text = f"{name} must have dtype float32 or float64, got {np.dtype(dtype)}"
    with pytest.raises(TypeError, match=message(fn, text)):
        run(fn, x, w)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("name", ["x", "w"])
def test_rejects_object_arrays(fn, name):
    x, w = images(), weights()
    if name == "x":
        x = x.astype(object)
    else:
        w = w.astype(object)
    text = f"{name} must hold numbers, got an array of dtype object"
    with pytest.raises(TypeError, match=message(fn, text)):
        run(fn, x, w)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("name", ["x", "w"])
def test_rejects_complex_arrays(fn, name):
    x, w = images(), weights()
    if name == "x":
        x = x.astype(np.complex128)
    else:
        w = w.astype(np.complex64)
    # Either wording names the argument and the dtype received.
    pattern = (
        message(fn, f"{name} must ") + r"(hold numbers|have dtype float32 or float64).*complex"
    )
    with pytest.raises(TypeError, match=pattern):
        run(fn, x, w)


@pytest.mark.parametrize("fn", FNS)
def test_rejects_ragged_lists(fn):
    ragged = [[[0.0], [0.0, 1.0]]]
    with pytest.raises(
        TypeError, match=message(fn, "x must be an array-like of numbers, got list")
    ):
        run(fn, ragged, weights((1, 1, 1)))


@pytest.mark.parametrize("fn", FNS)
def test_rejects_empty_kernel(fn):
    with pytest.raises(ValueError, match=message(fn, "w must have kernel sizes >= 1, got shape")):
        run(fn, images(), weights((3, 0, 4, 6)))


# --------------------------------------------------------------------------- stride, dilation


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize(("value", "shown"), [(0, 0), (-1, -1), ((1, 0), 0), ([-2, 1], -2)])
def test_rejects_non_positive_stride_or_dilation(fn, name, value, shown):
    with pytest.raises(ValueError, match=message(fn, f"{name} must be >= 1, got {shown}")):
        run(fn, images(), weights(), **{name: value})


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [(1,), (1, 1, 1), (), [2, 2, 2, 2]])
def test_rejects_stride_or_dilation_of_wrong_length(fn, name, value):
    text = f"{name} must have 2 entries (one per spatial dimension), got {len(value)}"
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(), weights(), **{name: value})


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize(
    ("value", "type_name"),
    [(1.0, "float"), (True, "bool"), ((1, 2.0), "float"), (None, "NoneType"), ("1", "str")],
)
def test_rejects_stride_or_dilation_that_are_not_ints(fn, name, value, type_name):
    text = f"{name} must be an int or a tuple of ints, got {type_name}"
    with pytest.raises(TypeError, match=message(fn, text)):
        run(fn, images(), weights(), **{name: value})


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "kernel", "dilation", "padded", "dim"),
    [
        ((1, 4, 6, 4), (5, 3, 4, 6), {}, 5, 1, 4, 0),
        ((1, 6, 6, 4), (3, 3, 4, 6), {"dilation": (1, 3)}, 3, 3, 6, 1),
        ((1, 3, 4), (5, 4, 6), {"padding": ((0, 1),)}, 5, 1, 4, 0),
        ((1, 3, 3, 3, 4), (3, 3, 4, 4, 6), {"padding": (0, 0, 0)}, 4, 1, 3, 2),
        ((1, 0, 4), (1, 4, 6), {}, 1, 1, 0, 0),
    ],
)
def test_rejects_kernel_larger_than_the_padded_input(
    fn, x_shape, w_shape, kwargs, kernel, dilation, padded, dim
):
    text = (
        f"the kernel ({kernel}, dilation {dilation}) is larger than the padded input "
        f"({padded}) in spatial dimension {dim}"
    )
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(x_shape), weights(w_shape), **kwargs)


# --------------------------------------------------------------------------- padding


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("padding", ["full", "SAME", "Valid", "", "causal", "same "])
def test_rejects_unknown_padding_strings(fn, padding):
    with pytest.raises(ValueError, match=message(fn, f"{PADDING_WORDS}, got '{padding}'")):
        run(fn, images(), weights(), padding=padding)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("padding", "type_name"),
    [(1.0, "float"), (None, "NoneType"), (True, "bool"), (b"same", "bytes"), ({1: 1}, "dict")],
)
def test_rejects_padding_of_the_wrong_type(fn, padding, type_name):
    with pytest.raises(TypeError, match=message(fn, f"{PADDING_WORDS}, got {type_name}")):
        run(fn, images(), weights(), padding=padding)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("padding", "type_name"),
    [((1.5, 0), "float"), (((0, 1), (0.0, 1)), "float"), ((1, "1"), "str")],
)
def test_rejects_padding_entries_that_are_not_ints(fn, padding, type_name):
    text = f"padding must be an int or a tuple of ints, got {type_name}"
    with pytest.raises(TypeError, match=message(fn, text)):
        run(fn, images(), weights(), padding=padding)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("padding", "shown"), [(-1, -1), ((0, -2), -2), (((0, 0), (1, -3)), -3), ([[-1, 0], 0], -1)]
)
def test_rejects_negative_padding(fn, padding, shown):
    with pytest.raises(ValueError, match=message(fn, f"padding must be >= 0, got {shown}")):
        run(fn, images(), weights(), padding=padding)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("padding", [(1,), (1, 1, 1), (), ((1, 1),), [(0, 0)] * 3])
def test_rejects_padding_with_the_wrong_number_of_dimensions(fn, padding):
    text = f"padding must have 2 entries (one per spatial dimension), got {len(padding)}"
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(), weights(), padding=padding)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize(
    ("padding", "dim", "count"),
    [(((1, 2, 3), (0, 0)), 0, 3), (((0, 0), (1,)), 1, 1), ((0, []), 1, 0)],
)
def test_rejects_padding_pairs_of_the_wrong_length(fn, padding, dim, count):
    text = f"padding[{dim}] must be a (before, after) pair, got {count} values"
    with pytest.raises(ValueError, match=message(fn, text)):
        run(fn, images(), weights(), padding=padding)


# --------------------------------------------------------------------------- b, dy, need


@pytest.mark.parametrize(("b_shape", "shown"), [((5,), "(5,)"), ((1, 6), "(1, 6)"), ((), "()")])
def test_rejects_bias_of_the_wrong_shape(b_shape, shown):
    text = f"b must have shape (6,) to match w, got shape {shown}"
    with pytest.raises(ValueError, match=message("conv", text)):
        ops.conv(images(), weights(), np.zeros(b_shape, np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.float16, object])
def test_rejects_bias_of_a_non_float_dtype(dtype):
    b = np.zeros(6, dtype=dtype)
    text = "b must hold numbers" if dtype is object else "b must have dtype float32 or float64"
    with pytest.raises(TypeError, match=message("conv", text)):
        ops.conv(images(), weights(), b)


@pytest.mark.parametrize(
    ("dy_shape", "shown"),
    [
        ((1, 3, 3, 5), "(1, 3, 3, 5)"),
        ((1, 3, 3), "(1, 3, 3)"),
        ((2, 3, 3, 6), "(2, 3, 3, 6)"),
        ((1, 5, 5, 6), "(1, 5, 5, 6)"),
        ((6,), "(6,)"),
    ],
)
def test_conv_backward_rejects_dy_of_the_wrong_shape(dy_shape, shown):
    text = f"dy must have the output's shape (1, 3, 3, 6), got shape {shown}"
    with pytest.raises(ValueError, match=message("conv_backward", text)):
        ops.conv_backward(images(), weights(), np.zeros(dy_shape, np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.float16, object])
def test_conv_backward_rejects_dy_of_a_non_float_dtype(dtype):
    dy = np.zeros((1, 3, 3, 6), dtype=dtype)
    text = "dy must hold numbers" if dtype is object else "dy must have dtype float32 or float64"
    with pytest.raises(TypeError, match=message("conv_backward", text)):
        ops.conv_backward(images(), weights(), dy)


@pytest.mark.parametrize("need", [("x", "q"), ["dx"], ("x", "w", "b", "y"), "x", "xw", "b"])
def test_conv_backward_rejects_bad_need(need):
    text = f"need must be an iterable of 'x', 'w' and 'b', got {need!r}"
    with pytest.raises(ValueError, match=message("conv_backward", text)):
        ops.conv_backward(images(), weights(), np.zeros((1, 3, 3, 6), np.float32), need=need)


@pytest.mark.parametrize("need", [None, 3])
def test_conv_backward_rejects_need_that_is_not_a_sequence(need):
    """Not a sequence at all: the error still names the function and the argument."""
    with pytest.raises((TypeError, ValueError), match=message("conv_backward", "need must be")):
        ops.conv_backward(images(), weights(), np.zeros((1, 3, 3, 6), np.float32), need=need)


# --------------------------------------------------------------------------- conv1d/2d/3d


@pytest.mark.parametrize(
    ("fn", "x_shape", "layout"),
    [
        ("conv1d", (1, 5, 5, 1), "(N, L, C_in)"),
        ("conv1d", (5, 1), "(N, L, C_in)"),
        ("conv2d", (1, 5, 1), "(N, H, W, C_in)"),
        ("conv2d", (1, 5, 5, 5, 1), "(N, H, W, C_in)"),
        ("conv3d", (1, 5, 5, 1), "(N, D, H, W, C_in)"),
        ("conv3d", (1, 5, 5, 5, 5, 1), "(N, D, H, W, C_in)"),
    ],
)
def test_conv_nd_rejects_x_of_another_rank(fn, x_shape, layout):
    rank = int(fn[4])
    w = weights((*(1,) * rank, 1, 2))
    text = f"x must have shape {layout}, got shape {x_shape}"
    with pytest.raises(ValueError, match=message(fn, text)):
        getattr(ops, fn)(images(x_shape), w)
    with pytest.raises(ValueError, match=message(fn, text)):
        getattr(ops, fn)(images(x_shape).tolist(), w)
