"""Winograd F(4x4, 3x3): its float32 accuracy on the bench's 3x3 shapes, and the crossover.

Usage::

    python bench/winograd.py >> bench/RESULTS.md

Accuracy: for each 3x3 shape of ``cases/conv.py`` (inputs as the bench makes them), the forward
output and the input gradient (``dy`` standard normal) are computed in float32 by Winograd and by
the im2col GEMM, and compared with the float64 result (the GEMM on the same values in float64).
Two figures per result:

* ``max |err| / max |ref|``: the largest error relative to the largest output magnitude, the
  figure ops.conv documents and tests/test_winograd.py bounds by 1e-4;
* ``max |err| / mag``: the largest error relative to the element's own sum of product
  magnitudes (``|x|`` convolved with ``|w|``, plus ``|b|``), the bound of tests/test_conv.py.

Crossover: the im2col GEMM's time divided by Winograd's (> 1: Winograd is faster) for the
forward pass and the input gradient, one thread, on shapes around the automatic choice's
thresholds (csrc/winograd.cpp: at least 8 channels each side and 16 output tiles). Times are
the least CPU time (``time.process_time``) of a few calls each, which a busy machine distorts
less than wall time.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
from cases.conv import CONVS

import cnnkit
from cnnkit import ops


def _figures(got: np.ndarray, want: np.ndarray, mag: np.ndarray) -> tuple[float, float]:
    err = np.abs(got.astype(np.float64) - want)
    return float(err.max() / np.abs(want).max()), float(np.max(err / np.maximum(mag, 1e-300)))


CROSSOVER = [  # (batch, side, C_in, C_out)
    (64, 16, 8, 8),
    (64, 16, 8, 64),
    (64, 16, 64, 8),
    (1, 56, 8, 8),
    (1, 16, 64, 64),
    (4, 8, 64, 64),
    (1, 8, 256, 256),
    (2, 8, 256, 256),
    (1, 16, 256, 256),
    (1, 4, 64, 64),
    (1, 6, 16, 16),
]


def _cpu_ms(call, repeats: int = 5) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        call()
        best = min(best, time.process_time() - start)
    return best * 1e3


def _ratios(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> list[float]:
    """im2col time / Winograd time for the forward pass and the input gradient."""
    forward = partial(ops.conv, x, w, padding="same")
    backward = partial(ops.conv_backward, x, w, dy, padding="same", need=("x",))
    return [
        _cpu_ms(partial(fn, winograd=False)) / _cpu_ms(partial(fn, winograd=True))
        for fn in (forward, backward)
    ]


def crossover() -> None:
    print(
        "\n| batch | size | C_in -> C_out | tiles "
        "| forward im2col / winograd | dx im2col / winograd |"
    )
    print("| --: | --- | --- | --: | --: | --: |")
    rng = np.random.default_rng(0)
    for n, side, cin, cout in CROSSOVER:
        x = rng.standard_normal((n, side, side, cin)).astype(np.float32)
        w = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
        dy = rng.standard_normal((n, side, side, cout)).astype(np.float32)
        forward, backward = _ratios(x, w, dy)
        tiles = n * (-(-side // 4)) ** 2
        shape = f"{n} | {side} x {side} | {cin} -> {cout} | {tiles}"
        print(f"| {shape} | {forward:.2f} | {backward:.2f} |")


def main() -> None:
    cnnkit.set_num_threads(1)
    rows = []
    for spec in CONVS:
        if spec.rank != 2 or spec.kernel != 3 or spec.groups != 1 or spec.winograd is not None:
            continue
        x, w, b = spec.inputs()
        kw = {"padding": spec.padding}
        x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
        y64 = ops.conv(x64, w64, b64, winograd=False, **kw)
        mag_y = ops.conv(np.abs(x64), np.abs(w64), np.abs(b64), winograd=False, **kw)
        dy = np.random.default_rng(1).standard_normal(y64.shape).astype(np.float32)
        dy64 = dy.astype(np.float64)
        dx64 = ops.conv_backward(x64, w64, dy64, need=("x",), winograd=False, **kw)[0]
        mag_dx = ops.conv_backward(x64, np.abs(w64), np.abs(dy64), need=("x",), **kw)[0]
        for algorithm, flag in (("winograd", True), ("im2col", False)):
            y = ops.conv(x, w, b, winograd=flag, **kw)
            dx = ops.conv_backward(x, w, dy, need=("x",), winograd=flag, **kw)[0]
            size = " x ".join(map(str, spec.shape))
            rows.append(
                (spec.name, size, algorithm, *_figures(y, y64, mag_y), *_figures(dx, dx64, mag_dx))
            )
    print("\n## Winograd F(4x4, 3x3): accuracy and crossover (`bench/winograd.py`)\n")
    print(__doc__.split("\n\n", 3)[3].strip() + "\n")
    print(
        "| case | size | algorithm | forward max err / max ref | forward max err / mag "
        "| dx max err / max ref | dx max err / mag |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name, size, algorithm, *figures in rows:
        values = " | ".join(f"{v:.2e}" for v in figures)
        print(f"| {name} | {size} | {algorithm} | {values} |")
    crossover()


if __name__ == "__main__":
    main()
