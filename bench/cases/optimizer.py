"""Optimizer updates: one fused SGD (momentum 0.9) or Adam step on one variable
(see ``bench/cases/__init__.py``).

Sizes: the cnn28 training case's Dense 1600 -> 128 weights (204,800 values) and a
million-value variable. A call is one step, in place; it returns the variable's first
16 values, so that the warm-up call's results can be compared. ``reference`` is the NumPy
formulas the optimizers used before (:mod:`cnnkit.reference`). Peer: ``torch.optim.SGD``
and ``Adam`` (its defaults, single-tensor CPU loop) stepping one parameter whose
``.grad`` is set. torch's momentum buffer and epsilon placement differ from Keras's,
with the same first step up to rounding (Adam's epsilon 1e-8 is well below ``|g|`` here).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from . import Call, Case, allclose

SIZES = (204_800, 1_000_000)
LR, MOMENTUM, EPSILON = 0.01, 0.9, 1e-8
# Adam's bias-corrected step size at step 1 (beta_1 0.9, beta_2 0.999).
ADAM_STEP = 1e-3 * np.sqrt(1 - 0.999) / (1 - 0.9)


def state(n: int) -> tuple:
    rng = np.random.default_rng(n)
    return rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def _ours(module: str, kind: str, inputs: tuple) -> Call:
    import importlib

    impl = importlib.import_module(module)
    var, grad = inputs[0].copy(), inputs[1]
    slots = [np.zeros_like(var) for _ in range(2)]
    if kind == "sgd":
        spec = {"learning_rate": LR, "momentum": MOMENTUM}

        def call() -> object:
            impl.sgd_update(var, grad, slots[0], **spec)
            return var[:16].copy()

        return call

    def adam() -> object:
        impl.adam_update(var, grad, *slots, step_size=ADAM_STEP, epsilon=EPSILON)
        return var[:16].copy()

    return adam


def _torch(kind: str, inputs: tuple) -> Call:
    import torch

    p = torch.nn.Parameter(torch.from_numpy(inputs[0].copy()))
    p.grad = torch.from_numpy(inputs[1])
    if kind == "sgd":
        opt = torch.optim.SGD([p], lr=LR, momentum=MOMENTUM)
    else:
        opt = torch.optim.Adam([p], lr=1e-3, eps=EPSILON)

    def call() -> object:
        opt.step()
        return p.detach().numpy()[:16].copy()

    return call


def _cases() -> Iterator[Case]:
    for kind in ("sgd", "adam"):
        for n in SIZES:
            yield Case(
                f"{kind}_update" + (" momentum 0.9" if kind == "sgd" else ""),
                f"{n:,}",
                "float32",
                partial(state, n),
                {
                    "cnnkit": partial(_ours, "cnnkit.ops", kind),
                    "reference": partial(_ours, "cnnkit.reference", kind),
                    "torch": partial(_torch, kind),
                },
                allclose(rtol=1e-4, atol=1e-6),
            )


def cases() -> list[Case]:
    return list(_cases())
