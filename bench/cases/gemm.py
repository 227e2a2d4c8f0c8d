"""GEMM: ``cnnkit.ops.matmul`` beside NumPy's BLAS and ``torch.mm`` (see ``__init__.py``).

Shapes: the square 1024^3 product, and the (M, K) x (K, N) products that the convolutions
of ``conv.py`` become as im2col GEMMs: M = N * H * W output positions, K = kernel * C_in,
N = C_out; and the fully connected layers of AlexNet and VGG at batch 1 and 8, where
M is the batch (csrc/gemm_impl.hpp's compute_skinny). NumPy's OpenBLAS is timed as it is
configured in the environment (see bench/README.md about ``OPENBLAS_CORETYPE``).
"""

from __future__ import annotations

import numpy as np

from . import Call, Case, Prepare, allclose, native

SHAPES = [
    (1024, 1024, 1024),
    (32 * 32 * 32, 9 * 64, 64),  # conv 32x32x64 -> 64, 3x3, batch 32
    (8 * 56 * 56, 9 * 128, 128),  # conv 56x56x128 -> 128, 3x3, batch 8
    (16 * 28 * 28, 9 * 256, 256),  # conv 28x28x256 -> 256, 3x3, batch 16
    (64 * 28 * 28, 25, 32),  # conv 28x28x1 -> 32, 5x5 'same', batch 64
    (1, 9216, 4096),  # AlexNet's fc6 at batch 1: B streamed in place, not packed
    (8, 9216, 4096),  # the same at batch 8
    (1, 25088, 4096),  # VGG-16's fc6 at batch 1 (411 MB of weights)
]


def _inputs(m: int, k: int, n: int, dtype: type) -> tuple:
    rng = np.random.default_rng(m + k + n)
    return (
        rng.standard_normal((m, k)).astype(dtype),
        rng.standard_normal((k, n)).astype(dtype),
    )


def _numpy(inputs: tuple) -> Call:
    a, b = inputs
    return lambda: a @ b


def _torch(inputs: tuple) -> Prepare:
    import torch

    a, b = (torch.from_numpy(x) for x in inputs)
    return lambda: torch.mm(a, b)


def cases() -> list[Case]:
    out = []
    for dtype in (np.float32, np.float64):
        for m, k, n in SHAPES if dtype is np.float32 else SHAPES[:1]:
            tol = 1e-4 if dtype is np.float32 else 1e-10
            out.append(
                Case(
                    name="matmul",
                    size=f"{m} x {k} x {n}",
                    dtype=np.dtype(dtype).name,
                    inputs=lambda m=m, k=k, n=n, dtype=dtype: _inputs(m, k, n, dtype),
                    impls={**native("matmul"), "numpy": _numpy, "torch": _torch},
                    check=allclose(rtol=tol, atol=tol * np.sqrt(k)),
                    too_slow=frozenset({"reference"}),  # the reference is NumPy's matmul itself
                )
            )
    return out
