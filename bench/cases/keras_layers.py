"""Layer ops added for Keras parity: transposed convolution, bilinear up-sampling, GELU.

Peer: ``torch`` (``conv_transpose2d``, ``interpolate(mode="bilinear",
align_corners=False)``, ``gelu``) on channels-last memory seen as NCHW, forward only.
cnnkit's ops are the autograd functions the layers call (``Conv2DTranspose``,
``UpSampling2D``, ``activation="gelu"``), so the tape's recording cost is included.
"""

from __future__ import annotations

import numpy as np

from . import Call, Case, allclose


def _transpose_inputs() -> tuple:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 28, 28, 64)).astype(np.float32)
    w = (rng.standard_normal((4, 4, 32, 64)) / 32).astype(np.float32)  # (k, k, F, C)
    b = rng.standard_normal(32).astype(np.float32)
    return x, w, b


def _conv_transpose(impl: str):
    def prepare(inputs: tuple) -> Call:
        x, w, b = inputs
        if impl == "torch":
            import torch

            xt = torch.from_numpy(x).permute(0, 3, 1, 2)
            wt = torch.from_numpy(w).permute(3, 2, 0, 1)  # (C, F, k, k)
            bt = torch.from_numpy(b)

            def call():
                with torch.no_grad():
                    y = torch.nn.functional.conv_transpose2d(xt, wt, bt, stride=2, padding=1)
                    return y.permute(0, 2, 3, 1).numpy()

            return call
        from cnnkit import autograd as ag

        # Keras Conv2DTranspose(32, 4, strides=2, padding="same"): 28 -> 56, one pixel
        # cropped at each side, which is torch's padding=1.
        return lambda: (
            ag.conv_transpose(x, w, b, output_shape=(56, 56), stride=2, padding="same").data
        )

    return prepare


def _upsample_inputs() -> tuple:
    return (np.random.default_rng(8).standard_normal((16, 28, 28, 64)).astype(np.float32),)


def _upsample(impl: str):
    def prepare(inputs: tuple) -> Call:
        (x,) = inputs
        if impl == "torch":
            import torch

            xt = torch.from_numpy(x).permute(0, 3, 1, 2)

            def call():
                with torch.no_grad():
                    y = torch.nn.functional.interpolate(
                        xt, scale_factor=2, mode="bilinear", align_corners=False
                    )
                    return y.permute(0, 2, 3, 1).numpy()

            return call
        from cnnkit import autograd as ag

        return lambda: ag.upsample(x, (2, 2), "bilinear").data

    return prepare


def _gelu(impl: str):
    def prepare(inputs: tuple) -> Call:
        (x,) = inputs
        if impl == "torch":
            import torch

            xt = torch.from_numpy(x)

            def call():
                with torch.no_grad():
                    return torch.nn.functional.gelu(xt).numpy()

            return call
        from cnnkit import activations

        return lambda: activations.gelu(x).data

    return prepare


def cases() -> list[Case]:
    return [
        Case(
            name="conv2d_transpose 4x4 s2 same 64 -> 32",
            size="16 x 28 x 28 x 64",
            dtype="float32",
            inputs=_transpose_inputs,
            impls={impl: _conv_transpose(impl) for impl in ("cnnkit", "torch")},
            check=allclose(rtol=1e-3, atol=1e-3),
        ),
        Case(
            name="upsampling2d bilinear x2",
            size="16 x 28 x 28 x 64",
            dtype="float32",
            inputs=_upsample_inputs,
            impls={impl: _upsample(impl) for impl in ("cnnkit", "torch")},
            check=allclose(rtol=1e-5, atol=1e-5),
        ),
        Case(
            name="gelu (erf)",
            size="16 x 28 x 28 x 64",
            dtype="float32",
            inputs=_upsample_inputs,
            impls={impl: _gelu(impl) for impl in ("cnnkit", "torch")},
            check=allclose(rtol=1e-5, atol=1e-6),
        ),
    ]
