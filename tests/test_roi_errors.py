"""Every rejection path of the region kernels (roi_align, roi_pool, their backward passes,
masks_to_boxes): exception type and message, which starts with the function's name and
names the argument."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit import ops

NAN = float("nan")
X = np.zeros((2, 4, 5, 3), np.float32)
ROIS = np.array([[0, 0, 0, 2, 2], [1, 1, 1, 3, 3]], np.float32)
DY = np.zeros((2, 2, 2, 3), np.float32)


def case(id, call, exc, *parts):
    return pytest.param(call, exc, "^" + ".*".join(re.escape(p) for p in parts), id=id)


def align(**kw):
    args = {"x": X, "boxes": ROIS, "output_size": 2, **kw}
    return lambda: ops.roi_align(**args)


CASES = [
    # x
    case(
        "x-3d",
        align(x=np.zeros((4, 5, 3))),
        ValueError,
        "roi_align(): x must have shape (N, H, W, C) (channels-last: torchvision's (N, C, H, W) "
        "transposed), got shape (4, 5, 3)",
    ),
    case(
        "x-int",
        lambda: ops.roi_pool(X.astype(np.int64), ROIS, 2),
        TypeError,
        "roi_pool(): x must have dtype float32 or float64, got int64",
    ),
    case(
        "x-empty-height",
        align(x=np.zeros((2, 0, 5, 3))),
        ValueError,
        "roi_align(): x must have a height and width >= 1, got shape (2, 0, 5, 3)",
    ),
    case("x-none", align(x=None), TypeError, "roi_align(): x must hold numbers"),
    # output_size
    case(
        "output_size-0",
        align(output_size=0),
        ValueError,
        "roi_align(): output_size must be >= 1, got 0",
    ),
    case(
        "output_size-3",
        align(output_size=(2, 2, 2)),
        ValueError,
        "roi_align(): output_size must have 2 entries",
    ),
    case(
        "output_size-huge",
        lambda: ops.roi_pool(X, ROIS, 2**63 - 1),
        MemoryError,
        "roi_pool(): the output of shape (2, 9223372036854775807, 9223372036854775807, 3) needs",
        "bytes, which could not be allocated",
    ),
    case(
        "output_size-float",
        lambda: ops.roi_pool(X, ROIS, 2.0),
        TypeError,
        "roi_pool(): output_size must be an int or a tuple of ints, got float",
    ),
    # spatial_scale
    case(
        "scale-str",
        align(spatial_scale="1"),
        TypeError,
        "roi_align(): spatial_scale must be a real number, got str",
    ),
    case(
        "scale-0",
        lambda: ops.roi_pool(X, ROIS, 2, 0.0),
        ValueError,
        "roi_pool(): spatial_scale must be a finite number > 0, got 0",
    ),
    case(
        "scale-inf",
        align(spatial_scale=float("inf")),
        ValueError,
        "roi_align(): spatial_scale must be a finite number > 0, got inf",
    ),
    case(
        "scale-nan",
        align(spatial_scale=NAN),
        ValueError,
        "roi_align(): spatial_scale must be a finite number > 0, got nan",
    ),
    # sampling_ratio and aligned
    case(
        "sampling-float",
        align(sampling_ratio=2.0),
        TypeError,
        "roi_align(): sampling_ratio must be an int, got float",
    ),
    case(
        "sampling-bool",
        align(sampling_ratio=True),
        TypeError,
        "roi_align(): sampling_ratio must be an int, got bool",
    ),
    case(
        "sampling-huge",
        align(sampling_ratio=2**40),
        ValueError,
        "roi_align(): sampling_ratio must be between -1048576 and 1048576 (<= 0: adaptive), "
        "got 1099511627776",
    ),
    case(
        "aligned-int", align(aligned=1), TypeError, "roi_align(): aligned must be a bool, got int"
    ),
    # boxes
    case(
        "boxes-k4",
        align(boxes=np.zeros((3, 4))),
        ValueError,
        "roi_align(): boxes must have shape (K, 5), rows [batch_index, x1, y1, x2, y2], or be a "
        "list of (K_i, 4) arrays, got shape (3, 4)",
    ),
    case(
        "boxes-bool",
        lambda: ops.roi_pool(X, ROIS.astype(bool), 2),
        TypeError,
        "roi_pool(): boxes must hold real numbers, got dtype bool",
    ),
    case(
        "boxes-strings",
        align(boxes=np.array([["a"] * 5])),
        TypeError,
        "roi_align(): boxes must hold numbers, got an array of dtype <U1",
    ),
    case(
        "boxes-nan",
        align(boxes=[[0, 0, NAN, 1, 1]]),
        ValueError,
        "roi_align(): boxes must be finite, got [0, nan, 1, 1] with batch index 0",
        "in row 0",
    ),
    case(
        "boxes-fractional-index",
        align(boxes=[[0.5, 0, 0, 1, 1]]),
        ValueError,
        "roi_align(): boxes must have whole batch indices in [0, 2) (the first column; x has 2 "
        "images), got 0.5 in row 0",
    ),
    case(
        "boxes-index-too-big",
        lambda: ops.roi_pool(X, [[0, 0, 0, 1, 1], [2, 0, 0, 1, 1]], 2),
        ValueError,
        "roi_pool(): boxes must have whole batch indices in [0, 2)",
        "got 2 in row 1",
    ),
    case(
        "boxes-negative-index",
        align(boxes=[[-1, 0, 0, 1, 1]]),
        ValueError,
        "roi_align(): boxes must have whole batch indices in [0, 2)",
        "got -1 in row 0",
    ),
    case(
        "boxes-list-too-many-images",
        align(boxes=[np.zeros((1, 4))] * 3),
        ValueError,
        "roi_align(): boxes must have whole batch indices in [0, 2)",
        "got 2 in row 2",
    ),
    case(
        "boxes-list-item-shape",
        lambda: ops.roi_pool(X, [np.zeros((1, 4)), np.zeros((2, 5))], 2),
        ValueError,
        "roi_pool(): boxes[1] must have shape (K_i, 4), the boxes of image 1, got shape (2, 5)",
    ),
    case(
        "boxes-list-item-bool",
        align(boxes=[np.zeros((1, 4), bool)]),
        TypeError,
        "roi_align(): boxes[0] must hold real numbers, got dtype bool",
    ),
    case(
        "boxes-list-item-none",
        align(boxes=[np.zeros((1, 4)), None]),
        TypeError,
        "roi_align(): boxes[1] must hold numbers, got an array of dtype object",
    ),
    case(
        "boxes-too-many-samples",
        align(boxes=[[0, 0, 0, 1e6, 1e6]]),
        ValueError,
        "roi_align(): boxes row 0 [0, 0, 1000000, 1000000] needs",
        "bilinear samples at sampling_ratio=-1, more than",
        "clip the boxes to the image or pass a positive sampling_ratio",
    ),
    case(
        "boxes-pool-huge",
        lambda: ops.roi_pool(X, [[0, 0, 0, 4e9, 1]], 2),
        ValueError,
        "roi_pool(): boxes must lie within +-1073741824 after multiplying by spatial_scale, got "
        "[0, 0, 4000000000, 1] in row 0",
    ),
    # dy
    case(
        "dy-shape",
        lambda: ops.roi_align_backward(X, ROIS, DY[:1], 2),
        ValueError,
        "roi_align_backward(): dy must have the output's shape (2, 2, 2, 3), got shape "
        "(1, 2, 2, 3)",
    ),
    case(
        "dy-int",
        lambda: ops.roi_pool_backward(X, ROIS, DY.astype(np.int32), 2),
        TypeError,
        "roi_pool_backward(): dy must have dtype float32 or float64, got int32",
    ),
    case(
        "backward-boxes",
        lambda: ops.roi_pool_backward(X, [[5, 0, 0, 1, 1]], DY[:1], 2),
        ValueError,
        "roi_pool_backward(): boxes must have whole batch indices",
    ),
    case(
        "backward-huge-float32-map",
        lambda: ops.roi_pool_backward(
            np.broadcast_to(np.float32(0), (1, 65536, 32769, 1)), ROIS[:1], DY[:1, :, :, :1], 2
        ),
        ValueError,
        "roi_pool_backward(): x must have fewer than 2^31 pixels per image in float32 (pass "
        "float64), got shape (1, 65536, 32769, 1)",
    ),
    # masks_to_boxes
    case(
        "masks-2d",
        lambda: ops.masks_to_boxes(np.zeros((3, 3))),
        ValueError,
        "masks_to_boxes(): masks must have shape (N, H, W), got shape (3, 3)",
    ),
    case(
        "masks-complex",
        lambda: ops.masks_to_boxes(np.zeros((1, 2, 2), complex)),
        TypeError,
        "masks_to_boxes(): masks must hold real numbers or bools, got dtype complex128",
    ),
    case(
        "masks-none",
        lambda: ops.masks_to_boxes(None),
        TypeError,
        "masks_to_boxes(): masks must hold numbers",
    ),
    case(
        "masks-ragged",
        lambda: ops.masks_to_boxes([[[0, 1]], [[1]]]),
        TypeError,
        "masks_to_boxes(): masks must be an array-like of numbers, got list",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), CASES)
def test_rejected(call, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert "At:" not in str(info.value)


def test_numpy_bool_aligned_and_integer_types_are_accepted():
    got = ops.roi_align(X, ROIS, np.int64(2), np.float32(1.0), np.int32(2), np.bool_(True))
    np.testing.assert_array_equal(got, ops.roi_align(X, ROIS, 2, 1.0, 2, True))


def test_a_large_box_with_a_fixed_sampling_ratio_is_accepted():
    assert ops.roi_align(X, [[0, 0, 0, 1e6, 1e6]], 2, sampling_ratio=2).shape == (1, 2, 2, 3)
