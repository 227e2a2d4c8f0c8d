"""Sliding-window classification: every window classified separately versus one pass of the
fully convolutional form (``cnnkit.detection.to_fully_convolutional``).

``cnnkit`` is the convolutional form: one forward pass over the image gives the grid of
all window predictions. ``plain`` is the same trained classifier applied to every crop
(``ops.sliding_windows`` + ``predict``), the baseline the convolutional form replaces, so
the ratio column is the speed-up. ``torch`` runs the same fully convolutional network in
PyTorch (channels-last) with the same weights.

Size: the course's construction on a larger image: a 32 x 32 x 3 window classifier
(Conv 5x5 16, max-pool 2, Conv 5x5 32, max-pool 2, Dense 64, Dense 4 softmax; total
stride 4) over a 160 x 160 image: 33 x 33 = 1,089 windows.
"""

from __future__ import annotations

import numpy as np

from . import Call, Case, allclose

WINDOW, STRIDE, IMAGE = 32, 4, 160


def _classifier():
    import cnnkit
    from cnnkit import layers

    return cnnkit.Sequential(
        [
            layers.Input((WINDOW, WINDOW, 3)),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(4, activation="softmax"),
        ],
        seed=0,
    )


def inputs() -> tuple:
    """``(image,)``: one seeded (1, 160, 160, 3) float32 image."""
    return (np.random.default_rng(5).random((1, IMAGE, IMAGE, 3), dtype=np.float32),)


def _convolutional(inputs: tuple) -> Call:
    from cnnkit.detection import to_fully_convolutional

    model = to_fully_convolutional(_classifier())
    return lambda: model.predict(inputs[0])[0]


def _plain(inputs: tuple) -> Call:
    from cnnkit import ops

    model = _classifier()

    def call() -> np.ndarray:
        crops = ops.sliding_windows(inputs[0], WINDOW, STRIDE)[0]
        rows, cols = crops.shape[:2]
        flat = crops.reshape(rows * cols, WINDOW, WINDOW, 3)
        return model.predict(flat, batch_size=256).reshape(rows, cols, -1)

    return call


def _torch(inputs: tuple) -> Call:
    import torch

    from cnnkit.detection import to_fully_convolutional

    model = to_fully_convolutional(_classifier())
    convs = [layer for layer in model.layers if layer.get_weights()]
    torch_layers: list = []
    for layer in convs:
        kernel, bias = layer.get_weights()
        conv = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2])
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        conv.bias.data = torch.from_numpy(bias)
        torch_layers.append(conv)
    net = torch.nn.Sequential(
        torch_layers[0],
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch_layers[1],
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch_layers[2],
        torch.nn.ReLU(),
        torch_layers[3],
        torch.nn.Softmax(dim=1),
    ).eval()
    x = (
        torch.from_numpy(inputs[0])
        .permute(0, 3, 1, 2)
        .contiguous(memory_format=torch.channels_last)
    )

    def call():
        with torch.no_grad():
            return net(x)[0].permute(1, 2, 0)

    return call


def cases() -> list[Case]:
    size = f"{IMAGE}x{IMAGE} image, {WINDOW}x{WINDOW} windows / {STRIDE}"
    return [
        Case(
            "window_classification",
            size,
            "float32",
            inputs,
            {"cnnkit": _convolutional, "plain": _plain, "torch": _torch},
            allclose(rtol=1e-4, atol=1e-5),
        )
    ]
