"""One style-transfer iteration: forward to every used layer, the costs, backward to the image.

At 256 x 256 (float32) on two networks: the default random multi-scale network of
:mod:`cnnkit.style` (5 scales of 128 random 5x5 filters; content ``scale2``, style every
scale) and a VGG-16-shaped network with random weights and the course's recipe (content
``conv4_2``, style ``conv1_1`` ... ``conv5_1``; layers after ``conv5_1`` are not computed).
cnnkit's call is :class:`cnnkit.style.Objective` (the cost and its gradient with respect to
the pixels, the weights frozen). The peer ``torch`` is the same computation with the same
weights (tests/style_torch.py, the transcription the tests check the costs against) in
NCHW; ``torch-cl`` the same in the channels_last memory format. The runner's check compares
the costs (float32: 1e-3 relative).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

from . import Call, Case

SIZE = 256
_TESTS = str(Path(__file__).resolve().parents[2] / "tests")


def inputs(network: str) -> tuple:
    rng = np.random.default_rng(256)
    content, style, image = (rng.random((SIZE, SIZE, 3), dtype=np.float32) for _ in range(3))
    return network, content, style, image


def _network(name: str):
    from cnnkit import style

    return style.random_multiscale() if name == "random" else style.vgg16()


def cnnkit_iteration(data: tuple) -> Call:
    from cnnkit import style

    name, content, style_image, image = data
    objective = style.Objective(_network(name), content, style_image)
    return lambda: np.float64(objective(image)[0])


def torch_iteration(data: tuple, channels_last: bool = False) -> Call:
    import torch

    if _TESTS not in sys.path:
        sys.path.insert(0, _TESTS)
    import style_torch

    name, content, style_image, image = data
    net = _network(name)
    cost = style_torch.cost_function(
        net,
        content,
        style_image,
        net.content_layer,
        list(net.style_layers),
        10.0,
        40.0,
        torch.float32,
    )
    g = style_torch.nchw(image, torch.float32)
    if channels_last:
        g = g.contiguous(memory_format=torch.channels_last)
    g.requires_grad_(True)

    def call() -> np.float64:
        g.grad = None
        total = cost(g)[0]
        total.backward()
        return np.float64(total.item())

    return call


def check(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    if np.isclose(ours, theirs, rtol=1e-3, atol=0):
        return None
    return f"cost {float(ours):.6g} vs {float(theirs):.6g}"


def cases() -> list[Case]:
    return [
        Case(
            name=f"style iteration ({label})",
            size=f"{SIZE} x {SIZE} x 3",
            dtype="float32",
            inputs=partial(inputs, network),
            impls={
                "cnnkit": cnnkit_iteration,
                "torch": torch_iteration,
                "torch-cl": partial(torch_iteration, channels_last=True),
            },
            check=check,
        )
        for network, label in (("random", "random multi-scale"), ("vgg16", "VGG-16 shape"))
    ]
