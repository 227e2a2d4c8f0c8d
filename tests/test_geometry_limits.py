"""Huge but valid ints for the geometry of convolution and pooling (issue 9, section 1).

Before the sizes were checked (csrc/geometry.hpp), each of these overflowed
int64 in the output-size arithmetic: segfaults, heap corruption, a write into
the caller's dy, or a silently wrong result. Each runs in its own process
(tests/isolated.py), so a regression fails its test instead of killing pytest.
"""

from __future__ import annotations

import pytest
from isolated import run_isolated

BIG = 2**63 - 1
X1 = "np.ones((1, 5, 1), np.float32)"
W1 = "np.ones((3, 1, 1), np.float32)"

REJECTED = [
    # (call, exception, words in the message)
    (f"ops.conv({X1}, {W1}, dilation={BIG} - 10**6)", "ValueError", "conv(): dilation makes"),
    (
        "ops.conv(np.ones((2, 7, 6, 3), np.float32), np.ones((3, 3, 3, 4), np.float32),"
        f" dilation=({BIG} - 1000, 1))",
        "ValueError",
        "conv(): dilation makes the window extent in spatial dimension 0",
    ),
    (
        f"ops.conv_backward({X1}, {W1}, np.ones((1, 2007, 1), np.float32), dilation={BIG} - 1000)",
        "ValueError",
        "conv_backward(): dilation makes",
    ),
    # Was silently dilation 1: [10, 15, 20, 25, 30].
    (
        "ops.conv(np.arange(9, dtype=np.float32).reshape(1, 9, 1), np.ones((5, 1, 1), np.float32),"
        " dilation=2**62 + 1)",
        "ValueError",
        "conv(): dilation makes",
    ),
    # Was a (1, 1, 1) result.
    (f"ops.conv({X1}, {W1}, padding={BIG})", "ValueError", "conv(): padding makes the padded"),
    (f"ops.conv({X1}, {W1}, padding=((2**61, 2**61),))", "ValueError", "conv(): padding makes"),
    (
        "ops.conv(np.ones((1, 5, 5, 1)), np.ones((1, 1, 1, 1)), padding=2**40)",
        "ValueError",
        "conv(): padding makes the padded input larger than the addressable size",
    ),
    (f"ops.conv({X1}, {W1}, stride=2**64)", "ValueError", "conv(): stride must be at most"),
    (f"ops.conv({X1}, {W1}, stride=np.uint64(2**64 - 1))", "ValueError", "stride must be at"),
    (f"ops.conv({X1}, {W1}, groups=2**64)", "ValueError", "conv(): groups must be at most"),
    (f"ops.conv({X1}, {W1}, padding=-2**70)", "ValueError", "conv(): padding must be >= 0"),
    (f"ops.max_pool({X1}, 2**62, padding='same')", "ValueError", "max_pool(): pool_size makes"),
    (f"ops.avg_pool({X1}, 3, stride=2**64)", "ValueError", "avg_pool(): stride must be at"),
    (f"ops.max_pool({X1}, 2, padding={BIG})", "ValueError", "max_pool(): padding makes"),
    ("ops.sliding_windows(np.ones((1, 4, 4, 1)), 2, 2**64)", "ValueError", "stride must be at"),
    (
        "ops.yolo_encode([[0, 0, 1, 1.0]], [0], grid=(2**31, 2**31), anchors=[[1, 1.0]],"
        " num_classes=1, image_size=10)",
        "ValueError",
        "yolo_encode(): grid and num_classes make a target of more than 2**60 bytes",
    ),
    (
        "ops.yolo_encode_batch([[[0, 0, 1, 1.0]]], [[0]], grid=2**20, anchors=[[1, 1.0]] * 99,"
        " num_classes=2**30, image_size=10)",
        "ValueError",
        "yolo_encode_batch(): grid and num_classes make a target",
    ),
]


@pytest.mark.parametrize(("call", "error", "words"), REJECTED)
def test_huge_geometry_is_rejected_naming_the_argument(call, error, words):
    out = run_isolated(
        f"""
        try:
            {call}
        except {error} as e:
            print(str(e))
        else:
            print("no error")
        """
    )
    assert words in out, out


# (hostile call, an equivalent small call): a stride longer than the padded
# input gives one output whatever it is; windows far in the padding see zeros.
EQUAL = [
    (
        f"ops.conv({X1}, {W1}, stride={BIG}, padding='same')",
        f"ops.conv({X1}, {W1}, stride=5, padding='same')",
    ),
    (f"ops.conv({X1}, {W1}, stride={BIG})", f"ops.conv({X1}, {W1}, stride=3)"),
    (
        "ops.conv(np.arange(15.).reshape(1, 5, 3, 1), np.ones((3, 1, 1, 1)),"
        " padding=((0, 0), (0, 2**40)), stride=(1, 2**41))",
        "ops.conv(np.arange(15.).reshape(1, 5, 3, 1), np.ones((3, 1, 1, 1)), stride=(1, 3))",
    ),
    (
        "ops.conv(np.ones((1, 5, 3, 1)), np.ones((3, 2, 1, 1)), padding=((0, 0), (2**39, 2**39)),"
        " dilation=(1, 2**40), stride=(1, 2**41))",
        "np.zeros((1, 3, 1, 1))",
    ),
    (
        "ops.conv_backward(np.ones((1, 5, 3, 1)), np.ones((3, 2, 1, 1)), np.ones((1, 3, 1, 1)),"
        " padding=((0, 0), (2**39, 2**39)), dilation=(1, 2**40), stride=(1, 2**41))",
        "(np.zeros((1, 5, 3, 1)), np.zeros((3, 2, 1, 1)), np.full(1, 3.0))",
    ),
    (f"ops.max_pool({X1}, 3, stride={BIG})", f"ops.max_pool({X1}, 3, stride=5)"),
    (
        f"ops.avg_pool({X1}, 2, stride={BIG}, padding='same')",
        f"ops.avg_pool({X1}, 2, stride=5, padding='same')",
    ),
    (
        f"ops.max_pool_backward({X1}, np.ones((1, 1, 1)), 3, stride={BIG})",
        f"ops.max_pool_backward({X1}, np.ones((1, 1, 1)), 3, stride=5)",
    ),
    (
        f"ops.sliding_windows(np.ones((1, 4, 4, 1)), 2, {BIG})",
        "ops.sliding_windows(np.ones((1, 4, 4, 1)), 2, 4)",
    ),
]


@pytest.mark.parametrize(("call", "small"), EQUAL)
def test_huge_strides_and_padding_compute_like_their_small_equivalent(call, small):
    out = run_isolated(
        f"""
        got, want = {call}, {small}
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        print("equal")
        """
    )
    assert out.strip() == "equal"


def test_the_callers_dy_is_not_written():
    out = run_isolated(
        f"""
        dy = np.ones((1, 3, 1), np.float32)
        before = dy.copy()
        for dilation in (1, {BIG} - 1000, 2**62 + 1):
            try:
                ops.conv_backward({X1}, {W1}, dy, dilation=dilation)
            except ValueError:
                pass
        np.testing.assert_array_equal(dy, before)
        print("intact")
        """
    )
    assert out.strip() == "intact"
