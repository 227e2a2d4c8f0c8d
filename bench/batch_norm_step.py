"""The face encoder's triplet training step with batch norm: native batch norm against the
NumPy formulas ``cnnkit.autograd.batch_norm`` ran before, and torch, alternating.

One step is ``train_on_batch`` of :func:`cnnkit.face.build_encoder` with ``batch_norm=True``
(conv 16/32/64/128 without bias, each followed by BatchNormalization and ReLU) on P=16 x K=4
64x64 images, :class:`cnnkit.face.TripletLoss` (batch-hard, margin 0.2), SGD with momentum
0.9, as ``bench/cases/face.py``. "numpy" routes ``autograd.batch_norm`` to its NumPy path
(the code before the kernel); torch runs the same layers (``channels_last``, BatchNorm2d in
training mode) and loss. The variants alternate in rounds so that a change in the machine's
load hits them alike; each round times ``--steps`` steps. Reported per step: the median over
rounds of wall time and of process CPU time (all threads).

Usage::

    python bench/batch_norm_step.py [--threads 1,2] [--rounds 5] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from cases.face import torch_triplet_step  # bench/ is the script's directory

import cnnkit
from cnnkit import autograd, optimizers
from cnnkit.face import TripletLoss, build_encoder

P, K, SIZE, DIM = 16, 4, 64, 128


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(15)
    x = rng.integers(0, 256, (P * K, SIZE, SIZE, 3)).astype(np.float32)
    return x, np.repeat(np.arange(P), K)


def cnnkit_step(native: bool) -> Callable[[], float]:
    x, y = _batch()
    model = build_encoder((SIZE, SIZE, 3), DIM, seed=0, batch_norm=True)
    model.compile(optimizers.SGD(learning_rate=0.01, momentum=0.9), TripletLoss(0.2))
    original = autograd._native_batch_norm

    def step() -> float:
        if not native:
            autograd._native_batch_norm = lambda *args: False  # type: ignore[assignment]
        try:
            return float(model.train_on_batch(x, y))
        finally:
            autograd._native_batch_norm = original

    return step


def torch_step() -> Callable[[], object]:
    import torch
    from torch import nn

    x, y = _batch()
    layers: list[nn.Module] = []
    channels = 3
    for i, width in enumerate((16, 32, 64, 128)):
        layers += [
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width, eps=1e-3, momentum=0.1),
            nn.ReLU(),
        ]
        layers += [nn.MaxPool2d(2)] if i < 3 else []
        channels = width
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(8 * 8 * 128, DIM))
    return torch_triplet_step(net.to(memory_format=torch.channels_last).train(), x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    import torch

    for threads in (int(t) for t in args.threads.split(",")):
        cnnkit.set_num_threads(threads)
        torch.set_num_threads(threads)
        steps = {"native": cnnkit_step(True), "numpy": cnnkit_step(False), "torch": torch_step()}
        wall: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        for step in steps.values():
            step()  # warm-up: first touch of the buffers, weight caches
        for _ in range(args.rounds):
            for name, step in steps.items():
                time.sleep(0.2)  # let other thread pools stop spinning
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    step()
                wall[name].append((time.perf_counter() - w0) / args.steps * 1e3)
                cpu[name].append((time.process_time() - c0) / args.steps * 1e3)
        for name in steps:
            print(
                f"threads {threads}  {name:6s}  wall {statistics.median(wall[name]):7.1f} ms"
                f"  cpu {statistics.median(cpu[name]):7.1f} ms  (wall per round: "
                + ", ".join(f"{v:.0f}" for v in wall[name])
                + ")"
            )


if __name__ == "__main__":
    main()
