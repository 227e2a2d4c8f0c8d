"""Region kernels: RoIAlign and RoI pooling forward and backward, masks_to_boxes (see
``__init__.py``).

Peer: ``torchvision.ops`` (``roi_align``, ``roi_pool``, ``masks_to_boxes``); its backward
passes are timed as its own kernels (``torch.ops.torchvision._roi_align_backward`` and
``_roi_pool_backward``, the latter with the argmax from the forward, which cnnkit recomputes).
torchvision works on (N, C, H, W): its input is made contiguous in that layout before timing
(its native layout, not a view of cnnkit's), and its results are viewed back as channels-last
(``permute``, no copy) for the check. Without torchvision the peer is reported missing.

Inputs follow a Fast R-CNN head on a stride-16 backbone: an 800 x 1088 image gives a
50 x 68 map, C channels; the boxes are seeded proposals (sizes 16 to 400 px) inside the image,
spread over the batch, 7 x 7 output.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case, Prepare, allclose, count, native, torchvision_module

SCALE = 1 / 16
OUTPUT = 7
MAP = (50, 68)  # stride-16 map of an 800 x 1088 image
REFERENCE = frozenset({"reference"})
NOTHING: frozenset[str] = frozenset()


def proposals(batch: int, k: int, channels: int, dtype: type = np.float32) -> tuple:
    """``(x, rois)``: a seeded feature map (batch, 50, 68, C) and k rows [b, x1, y1, x2, y2]."""
    rng = np.random.default_rng([batch, k, channels])
    x = rng.standard_normal((batch, *MAP, channels)).astype(dtype)
    height, width = MAP[0] / SCALE, MAP[1] / SCALE
    size = rng.uniform(16, 400, (k, 2))
    corner = rng.uniform(0, 1, (k, 2)) * (np.array([width, height]) - size)
    rois = np.concatenate([rng.integers(0, batch, (k, 1)), corner, corner + size], axis=1).astype(
        dtype
    )
    return x, rois


def with_gradient(batch: int, k: int, channels: int) -> tuple:
    """``(x, rois, dy)``, dy of the output's shape."""
    x, rois = proposals(batch, k, channels)
    dy = np.random.default_rng([k, 7]).standard_normal((k, OUTPUT, OUTPUT, channels))
    return x, rois, dy.astype(np.float32)


def masks(n: int, side: int) -> tuple:
    """``(masks,)``: n boolean side x side masks, each one seeded ellipse."""
    rng = np.random.default_rng([n, side])
    yy, xx = np.mgrid[:side, :side]
    centre = rng.uniform(0.2, 0.8, (n, 2, 1, 1)) * side
    radius = rng.uniform(0.05, 0.3, (n, 2, 1, 1)) * side
    inside = ((xx - centre[:, 0]) / radius[:, 0]) ** 2 + ((yy - centre[:, 1]) / radius[:, 1]) ** 2
    return (inside <= 1,)


def _nchw(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _torchvision_forward(kind: str, *args: object) -> Prepare:
    def prepare(inputs: tuple) -> Call:
        import torch

        x, rois = inputs
        fn = getattr(torchvision_module("torchvision.ops"), kind)
        tx, trois = _nchw(x), torch.from_numpy(rois)
        return lambda: fn(tx, trois, OUTPUT, SCALE, *args).permute(0, 2, 3, 1)

    return prepare


def _torchvision_align_backward(sampling_ratio: int, aligned: bool) -> Prepare:
    def prepare(inputs: tuple) -> Call:
        import torch

        torchvision_module()  # registers torch.ops.torchvision

        x, rois, dy = inputs
        n, h, w, c = x.shape
        backward = torch.ops.torchvision._roi_align_backward
        tdy, trois = _nchw(dy), torch.from_numpy(rois)
        return lambda: backward(
            tdy, trois, SCALE, OUTPUT, OUTPUT, n, c, h, w, sampling_ratio, aligned
        ).permute(0, 2, 3, 1)

    return prepare


def _torchvision_pool_backward(inputs: tuple) -> Call:
    import torch

    torchvision_module()  # registers torch.ops.torchvision

    x, rois, dy = inputs
    n, h, w, c = x.shape
    trois = torch.from_numpy(rois)
    _, argmax = torch.ops.torchvision.roi_pool(_nchw(x), trois, SCALE, OUTPUT, OUTPUT)
    backward = torch.ops.torchvision._roi_pool_backward
    tdy = _nchw(dy)
    return lambda: backward(tdy, trois, argmax, SCALE, OUTPUT, OUTPUT, n, c, h, w).permute(
        0, 2, 3, 1
    )


def _torchvision_masks(inputs: tuple) -> Call:
    import torch

    masks_to_boxes = torchvision_module("torchvision.ops").masks_to_boxes
    tm = torch.from_numpy(inputs[0])
    return lambda: masks_to_boxes(tm)


# (batch, boxes, channels): a small case the NumPy reference can time, then Fast R-CNN sizes.
SIZES = ((1, 64, 64), (2, 1_000, 256))


def _cases() -> Iterator[Case]:
    for batch, k, channels in SIZES:
        size = f"{k} boxes, {batch} x {MAP[0]} x {MAP[1]} x {channels}"
        slow = NOTHING if k <= 64 else REFERENCE
        for sampling, aligned in ((2, True), (-1, False)):
            args = (OUTPUT, SCALE, sampling, aligned)
            label = f"sampling {sampling}, aligned={aligned}"
            yield Case(
                f"roi_align {label}",
                size,
                "float32",
                partial(proposals, batch, k, channels),
                {
                    **native("roi_align", *args),
                    "torchvision": _torchvision_forward("roi_align", sampling, aligned),
                },
                allclose(1e-4, 1e-5),
                slow,
            )
            yield Case(
                f"roi_align_backward {label}",
                size,
                "float32",
                partial(with_gradient, batch, k, channels),
                {
                    **native("roi_align_backward", *args),
                    "torchvision": _torchvision_align_backward(sampling, aligned),
                },
                allclose(1e-4, 1e-5),
                slow,
            )
        yield Case(
            "roi_pool",
            size,
            "float32",
            partial(proposals, batch, k, channels),
            {**native("roi_pool", OUTPUT, SCALE), "torchvision": _torchvision_forward("roi_pool")},
            allclose(0, 0),
            slow,
        )
        yield Case(
            "roi_pool_backward",
            size,
            "float32",
            partial(with_gradient, batch, k, channels),
            {
                **native("roi_pool_backward", OUTPUT, SCALE),
                "torchvision": _torchvision_pool_backward,
            },
            allclose(1e-5, 1e-6),
            slow,
        )
    for n, side in ((100, 512),):
        yield Case(
            "masks_to_boxes",
            f"{count(n)} x {side} x {side}",
            "bool",
            partial(masks, n, side),
            {**native("masks_to_boxes"), "torchvision": _torchvision_masks},
            allclose(0, 0),
        )


def cases() -> list[Case]:
    """Every region case."""
    return list(_cases())
