"""Top-9 patches of every unit of a layer over 10,000 images (see ``bench/cases/__init__.py``).

``cnnkit`` is :func:`cnnkit.visualize.top_patches`: one streaming pass, a per-batch
``argpartition`` merged into a running top-9 per unit, patches cut from the batch in hand.
The peer ``numpy`` is the plain way: ``predict`` of the model cut at the layer over all
images (every activation kept, 63 MB here), a stable NumPy ``argsort`` per unit, then the
patches cut in a loop. Both run cnnkit's convolutions, so the ratio measures what the
streaming top-k saves (or costs) around the same forward passes.

The network is the MNIST-sized CNN of ``training.py``'s shape (28x28x1, Conv2D 32 3x3 relu,
MaxPooling2D, Conv2D 64 3x3 relu, MaxPooling2D); the layer is the second pooling (5x5x64
per image, a 10x10-pixel field), the images uniform noise.
"""

from __future__ import annotations

import numpy as np

from . import Call, Case, count

IMAGES = 10_000
K = 9
LAYER = "pool2"


def inputs() -> tuple:
    rng = np.random.default_rng(9)
    return (rng.random((IMAGES, 28, 28, 1), dtype=np.float32),)


def _model():
    import cnnkit
    from cnnkit import layers as L

    return cnnkit.Sequential(
        [
            L.Input((28, 28, 1)),
            L.Conv2D(32, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(name="pool1"),
            L.Conv2D(64, 3, activation="relu", name="conv2"),
            L.MaxPooling2D(name=LAYER),
            L.Flatten(),
            L.Dense(10),
        ],
        seed=0,
    )


def cnnkit_top(data: tuple) -> Call:
    from cnnkit.visualize import top_patches

    (x,) = data
    model = _model()
    return lambda: top_patches(model, LAYER, x, k=K, batch_size=256)["scores"]


def numpy_top(data: tuple) -> Call:
    import cnnkit
    from cnnkit import layers as L
    from cnnkit.visualize import receptive_field

    (x,) = data
    model = _model()
    stop = [layer.name for layer in model.layers].index(LAYER)
    cut = cnnkit.Sequential([L.Input((28, 28, 1)), *model.layers[: stop + 1]])
    rf = receptive_field(model, LAYER)
    (h, w), (jh, jw), (sh, sw) = rf.size, rf.jump, rf.start

    def call() -> np.ndarray:
        acts = cut.predict(x, batch_size=256, verbose=0)
        positions = int(np.prod(acts.shape[1:-1]))
        values = acts.reshape(-1, acts.shape[-1])
        order = np.argsort(-values, axis=0, kind="stable")[:K]  # (K, units)
        scores = np.take_along_axis(values, order, 0).T
        padded = np.pad(x, [(0, 0), (h, h), (w, w), (0, 0)])
        patches = np.empty((values.shape[1], K, h, w, x.shape[-1]), x.dtype)
        for unit in range(values.shape[1]):
            for rank, row in enumerate(order[:, unit]):
                image, (i, j) = row // positions, divmod(row % positions, acts.shape[2])
                top, left = sh + i * jh + h, sw + j * jw + w
                patches[unit, rank] = padded[image, top : top + h, left : left + w]
        return scores

    return call


def check(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    if ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=1e-5, atol=1e-6):
        return None
    return f"top-{K} scores differ: shapes {ours.shape} and {theirs.shape}"


def cases() -> list[Case]:
    return [
        Case(
            name=f"top_patches k={K} (layer {LAYER}, 64 units)",
            size=f"{count(IMAGES)} x 28 x 28 x 1",
            dtype="float32",
            inputs=inputs,
            impls={"cnnkit": cnnkit_top, "numpy": numpy_top},
            check=check,
        )
    ]
