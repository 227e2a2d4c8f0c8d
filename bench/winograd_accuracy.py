"""Accuracy of Winograd F(4x4, 3x3) in float32 on the bench's 3x3 convolution shapes.

Usage::

    python bench/winograd_accuracy.py >> bench/RESULTS.md

For each 3x3 shape of ``cases/conv.py`` (inputs as the bench makes them), the forward output
and the input gradient (``dy`` standard normal) are computed in float32 by Winograd and by the
im2col GEMM, and compared with the float64 result (the GEMM on the same values in float64).
Two figures per result:

* ``max |err| / max |ref|``: the largest error relative to the largest output magnitude, the
  figure ops.conv documents and tests/test_winograd.py bounds by 1e-4;
* ``max |err| / mag``: the largest error relative to the element's own sum of product
  magnitudes (``|x|`` convolved with ``|w|``, plus ``|b|``), the bound of tests/test_conv.py.
"""

from __future__ import annotations

import numpy as np
from cases.conv import CONVS

import cnnkit
from cnnkit import ops


def _figures(got: np.ndarray, want: np.ndarray, mag: np.ndarray) -> tuple[float, float]:
    err = np.abs(got.astype(np.float64) - want)
    return float(err.max() / np.abs(want).max()), float(np.max(err / np.maximum(mag, 1e-300)))


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
    print("\n## Winograd F(4x4, 3x3) accuracy, float32 (`bench/winograd_accuracy.py`)\n")
    print(__doc__.split("\n\n", 3)[3].strip() + "\n")
    print(
        "| case | size | algorithm | forward max err / max ref | forward max err / mag "
        "| dx max err / max ref | dx max err / mag |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name, size, algorithm, *figures in rows:
        values = " | ".join(f"{v:.2e}" for v in figures)
        print(f"| {name} | {size} | {algorithm} | {values} |")


if __name__ == "__main__":
    main()
