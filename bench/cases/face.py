"""Face verification: a triplet training step of the default encoder, and database search.

Training step: :func:`cnnkit.face.build_encoder` at its defaults (64x64x3 input, Rescaling,
four 3x3 ReLU convolutions of 16/32/64/128 channels with 2x2 max pooling between them,
Flatten, Dense 128, UnitNormalization) and :class:`cnnkit.face.TripletLoss` with batch-hard
mining (margin 0.2) on one P=16 x K=4 batch of 64 images, SGD with momentum 0.9. A call is
one ``train_on_batch``. Peer: the same network in torch (``channels_last``, cnnkit's initial
weights, the Flatten rows reordered), with the same loss written on ``torch.cdist`` and
masked max/min; the first-step losses must agree.

Search: the nearest of 100,000 enrolled 128-d encodings for 1 and for 1,000 queries,
:meth:`cnnkit.face.FaceDatabase.search` against NumPy brute force (the same
``|q|^2 + |e|^2 - 2 q.e`` through NumPy's BLAS) and faiss-cpu's exact ``IndexFlatL2``
where installed.
"""

from __future__ import annotations

import numpy as np

from . import Call, Case

P, K, SIZE = 16, 4, 64
ENROLLED, DIM = 100_000, 128


def _step_inputs() -> tuple:
    rng = np.random.default_rng(15)
    x = rng.integers(0, 256, (P * K, SIZE, SIZE, 3)).astype(np.float32)
    y = np.repeat(np.arange(P), K)
    return x, y


def _encoder():
    from cnnkit import optimizers
    from cnnkit.face import TripletLoss, build_encoder

    model = build_encoder((SIZE, SIZE, 3), DIM, seed=0)
    model.compile(optimizers.SGD(learning_rate=0.01, momentum=0.9), TripletLoss(0.2))
    return model


def cnnkit_step(data: tuple) -> Call:
    x, y = data
    model = _encoder()
    return lambda: np.float64(model.train_on_batch(x, y))


def torch_step(data: tuple) -> Call:
    import torch
    from torch import nn

    x, y = data
    weights = _encoder().get_weights()
    convs = [nn.Conv2d(w.shape[2], w.shape[3], 3, padding=1) for w in weights[0:8:2]]
    layers: list[nn.Module] = []
    for i, conv in enumerate(convs):
        layers += [conv, nn.ReLU()] + ([nn.MaxPool2d(2)] if i < 3 else [])
    side = SIZE // 8
    dense = nn.Linear(side * side * 128, DIM)
    net = nn.Sequential(*layers, nn.Flatten(), dense)
    with torch.no_grad():
        for i, conv in enumerate(convs):
            conv.weight.copy_(torch.from_numpy(weights[2 * i]).permute(3, 2, 0, 1))
            conv.bias.copy_(torch.from_numpy(weights[2 * i + 1]))
        # cnnkit flattens (H, W, C); torch flattens (C, H, W): reorder the Dense rows.
        w = weights[8].reshape(side, side, 128, DIM).transpose(2, 0, 1, 3).reshape(-1, DIM)
        dense.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
        dense.bias.copy_(torch.from_numpy(weights[9]))
    return torch_triplet_step(net.to(memory_format=torch.channels_last), x, y)


def torch_triplet_step(net, x: np.ndarray, y: np.ndarray) -> Call:
    """One SGD step (momentum 0.9) of ``net`` on the images ``x`` (NHWC, 0-255) with the
    batch-hard triplet loss of labels ``y`` (margin 0.2, squared distances of unit
    encodings), written on ``torch.cdist`` and masked max/min as TripletLoss computes it."""
    import torch

    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC memory seen as channels_last NCHW
    labels = torch.from_numpy(y)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(y), dtype=torch.bool)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def call():
        optimizer.zero_grad()
        z = net(xt / 255.0)
        e = z / torch.sqrt(torch.clamp((z * z).sum(1, keepdim=True), min=1e-12))
        d = torch.cdist(e, e) ** 2
        hardest_positive = torch.where(positive, d, torch.full_like(d, -1.0)).max(1).values
        hardest_negative = torch.where(~same, d, torch.full_like(d, 1e9)).min(1).values
        loss = torch.relu(hardest_positive - hardest_negative + 0.2).mean()
        loss.backward()
        optimizer.step()
        return np.float64(loss.item())

    return call


def check_loss(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    if np.isclose(ours, theirs, rtol=1e-3, atol=1e-5):
        return None
    return f"first-step loss {float(ours):.6f} vs {float(theirs):.6f}"


def _search_inputs(queries: int) -> tuple:
    rng = np.random.default_rng(queries)
    enrolled = rng.standard_normal((ENROLLED, DIM)).astype(np.float32)
    enrolled /= np.linalg.norm(enrolled, axis=1, keepdims=True)
    q = enrolled[rng.integers(0, ENROLLED, queries)] + 0.05 * rng.standard_normal(
        (queries, DIM)
    ).astype(np.float32)
    return enrolled, q.astype(np.float32)


def cnnkit_search(data: tuple) -> Call:
    from cnnkit.face import FaceDatabase, build_encoder

    enrolled, q = data
    db = FaceDatabase(build_encoder((8, 8, 1), DIM, (4,)))
    db.add_encodings([f"person {i}" for i in range(len(enrolled))], enrolled)
    return lambda: db.search(q)


def numpy_search(data: tuple) -> Call:
    enrolled, q = data
    squares = np.einsum("ij,ij->i", enrolled, enrolled)

    def call():
        d2 = squares[None, :] - 2 * (q @ enrolled.T)
        rows = d2.argmin(1)
        best = d2[np.arange(len(q)), rows] + np.einsum("ij,ij->i", q, q)
        return rows, np.sqrt(np.maximum(best, 0))

    return call


def faiss_search(data: tuple) -> Call:
    import faiss

    enrolled, q = data
    index = faiss.IndexFlatL2(DIM)
    index.add(enrolled)

    def call():
        d2, rows = index.search(q, 1)
        return rows[:, 0].astype(np.int64), np.sqrt(np.maximum(d2[:, 0], 0))

    return call


def check_search(ours: tuple, theirs: tuple) -> str | None:
    rows, d = ours
    other_rows, other_d = theirs
    if not np.allclose(d, other_d, atol=2e-3):
        return f"distances differ by up to {np.abs(d - other_d).max():.2e}"
    if np.mean(rows == other_rows) < 0.999:
        return f"{np.sum(rows != other_rows)} nearest rows differ"
    return None


def cases() -> list[Case]:
    return [
        Case(
            name="triplet train step batch-hard (img/s = 64000 / ms)",
            size=f"P{P} x K{K} x {SIZE} x {SIZE} x 3",
            dtype="float32",
            inputs=_step_inputs,
            impls={"cnnkit": cnnkit_step, "torch": torch_step},
            check=check_loss,
        ),
        *[
            Case(
                name=f"database search, {n} quer{'y' if n == 1 else 'ies'}",
                size=f"{ENROLLED} x {DIM}",
                dtype="float32",
                inputs=lambda n=n: _search_inputs(n),
                impls={"cnnkit": cnnkit_search, "numpy": numpy_search, "faiss": faiss_search},
                check=check_search,
            )
            for n in (1, 1000)
        ],
    ]
