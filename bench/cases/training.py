"""Training throughput: one optimizer step of the reference CNN (see ``__init__.py``).

The network is the classic MNIST-sized CNN: a 28x28x1 input, Conv2D 32 3x3 relu,
MaxPooling2D, Conv2D 64 3x3 relu, MaxPooling2D, Flatten, Dense 128 relu, Dense 10, softmax
cross-entropy on logits, SGD with momentum 0.9, batch 64. A call is one step (forward,
backward, update) through the public API: ``Model.train_on_batch`` for cnnkit, the usual
``zero_grad / loss.backward() / step`` for the peer. Images per second is
``64 * 1000 / ms``.

Peer: ``torch`` (the same network as ``nn.Sequential`` in the ``channels_last`` memory format,
``torch.set_num_threads`` matched by the runner), starting from cnnkit's initial weights so
that the first step's losses agree (the runner's check). Each implementation keeps training
its own model across the timed calls on one fixed batch.
"""

from __future__ import annotations

import numpy as np

from . import Call, Case

BATCH = 64


def inputs() -> tuple:
    rng = np.random.default_rng(28)
    x = rng.random((BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    return x, y


def _cnnkit_model():
    import cnnkit
    from cnnkit import layers, losses, optimizers

    model = cnnkit.Sequential(
        [
            layers.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ],
        seed=0,
    )
    model.compile(
        optimizers.SGD(learning_rate=0.01, momentum=0.9),
        losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def cnnkit_step(data: tuple) -> Call:
    x, y = data
    model = _cnnkit_model()
    return lambda: np.float64(model.train_on_batch(x, y))


def torch_step(data: tuple) -> Call:
    import torch
    from torch import nn

    x, y = data
    weights = _cnnkit_model().get_weights()
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    with torch.no_grad():
        conv1, conv2, dense1, dense2 = net[0], net[3], net[7], net[9]
        conv1.weight.copy_(torch.from_numpy(weights[0]).permute(3, 2, 0, 1))
        conv1.bias.copy_(torch.from_numpy(weights[1]))
        conv2.weight.copy_(torch.from_numpy(weights[2]).permute(3, 2, 0, 1))
        conv2.bias.copy_(torch.from_numpy(weights[3]))
        # cnnkit flattens (H, W, C); torch flattens (C, H, W): reorder the Dense rows.
        w = weights[4].reshape(5, 5, 64, 128).transpose(2, 0, 1, 3).reshape(-1, 128)
        dense1.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
        dense1.bias.copy_(torch.from_numpy(weights[5]))
        dense2.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[6].T)))
        dense2.bias.copy_(torch.from_numpy(weights[7]))
    net = net.to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC memory seen as channels_last NCHW
    yt = torch.from_numpy(y)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def call():
        optimizer.zero_grad()
        loss = loss_fn(net(xt), yt)
        loss.backward()
        optimizer.step()
        return np.float64(loss.item())

    return call


def check(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    if np.isclose(ours, theirs, rtol=1e-4, atol=1e-5):
        return None
    return f"first-step loss {float(ours):.6f} vs {float(theirs):.6f}"


def cases() -> list[Case]:
    return [
        Case(
            name="train step cnn28 sgd (img/s = 64000 / ms)",
            size=f"{BATCH} x 28 x 28 x 1",
            dtype="float32",
            inputs=inputs,
            impls={"cnnkit": cnnkit_step, "torch": torch_step},
            check=check,
        )
    ]
