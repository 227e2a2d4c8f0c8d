"""Convolution: forward, and forward plus backward (see ``__init__.py``).

Peer: ``torch`` (``conv1d/2d/3d`` on channels-last memory: the NumPy input seen as
(N, C, *spatial) in torch's ``channels_last`` formats, weights as OIHW in the same format).
Forward plus backward is one forward and the gradients with respect to input, weights and
bias, which is what one training step needs. The NumPy reference is only run on the small
1-D case: elsewhere it takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import Call, Case, Check

REFERENCE = frozenset({"reference"})
NOTHING: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Conv:
    """One convolution: channels-last input shape, square kernel, C_out, padding."""

    shape: tuple[int, ...]
    kernel: int
    out_channels: int
    padding: str | int = "same"
    groups: int = 1
    reference: bool = False
    winograd: bool | None = None  # cnnkit's choice (None: automatic)
    stride: int = 1  # other strides only in the forward-only INFERENCE_CONVS

    @property
    def rank(self) -> int:
        return len(self.shape) - 2

    @property
    def name(self) -> str:
        k = "x".join([str(self.kernel)] * self.rank)
        kind = "depthwise " if self.groups > 1 else ""
        off = " (winograd off)" if self.winograd is False else ""
        step = f" stride {self.stride}" if self.stride != 1 else ""
        pad = f"padding {self.padding}" if isinstance(self.padding, int) else self.padding
        return f"{kind}conv{self.rank}d {k} -> {self.out_channels}{step} {pad}{off}"

    def inputs(self) -> tuple:
        rng = np.random.default_rng(sum(self.shape) + self.kernel)
        cin = self.shape[-1] // self.groups
        x = rng.standard_normal(self.shape).astype(np.float32)
        w = rng.standard_normal((*[self.kernel] * self.rank, cin, self.out_channels))
        w = (w / np.sqrt(cin * self.kernel**self.rank)).astype(np.float32)
        b = rng.standard_normal(self.out_channels).astype(np.float32)
        return x, w, b


CONVS = [
    Conv((32, 32, 32, 64), 3, 64),
    Conv((8, 56, 56, 128), 3, 128),
    Conv((16, 28, 28, 256), 3, 256),
    Conv((64, 28, 28, 1), 5, 32),
    Conv((64, 28, 28, 1), 5, 32, padding="valid"),
    # A LeNet-style second layer: 16 channels under a 5x5 window, where gathering the
    # patches costs as much as multiplying them (the im2col GEMM with few output channels).
    Conv((32, 14, 14, 16), 5, 32),
    Conv((8, 56, 56, 128), 3, 128, groups=128),
    # A MobileNet v2 expansion at batch 8: the forward and dx take csrc/gemm_small_k.hpp.
    Conv((8, 56, 56, 24), 1, 144),
    Conv((16, 1024, 64), 5, 64),
    Conv((4, 14, 14, 14, 1), 5, 16, padding="valid", reference=True),
    Conv((4, 16, 32, 32, 32), 3, 64),
    # The 3x3 shapes above run Winograd F(4x4, 3x3); these run the im2col GEMM, for comparison.
    Conv((32, 32, 32, 64), 3, 64, winograd=False),
    Conv((8, 56, 56, 128), 3, 128, winograd=False),
    Conv((16, 28, 28, 256), 3, 256, winograd=False),
]

# Batch-1 inference layers (forward only): ResNet-18's layer4 and layer3 3x3 convolutions
# and AlexNet's conv4, where the weights outweigh the product: on AVX-512 they take the
# few-row GEMM of csrc/gemm_few_rows.hpp, which streams the weights once in place.
# Then the first layers of AlexNet (11x11 stride 4), ResNet-18 (7x7 stride 2), MobileNet v2
# and SqueezeNet 1.1 (3x3 stride 2, to 32 and 64 channels), which take csrc/conv_stem.hpp's
# 64-byte-vector loops, at batch 1 and 8, and a depthwise layer.
INFERENCE_CONVS = [
    Conv((1, 7, 7, 512), 3, 512),
    Conv((1, 14, 14, 256), 3, 256),
    Conv((1, 13, 13, 384), 3, 256),
    # ResNet-18's stride-2 3x3 into layer3 and a 1x1 stride-2 downsample: their patches
    # read in place by the few-row tiles (csrc/gemm_few_rows.hpp's FewRowsImplicit).
    Conv((1, 28, 28, 128), 3, 256, padding=1, stride=2),
    Conv((1, 56, 56, 64), 1, 128, padding=0, stride=2),
    # SqueezeNet 1.1's classifier (1x1, 1000 channels: the few-row GEMM's column chunks)
    # and a 13x13 expand3x3 (im2col on the few-row GEMM rather than Winograd's sparse
    # tiles); MobileNet v2's last 1x1 (7x7, 320 -> 1280).
    Conv((1, 13, 13, 512), 1, 1000),
    Conv((1, 13, 13, 64), 3, 256),
    Conv((1, 7, 7, 320), 1, 1280),
    Conv((1, 224, 224, 3), 11, 64, padding=2, stride=4),
    Conv((8, 224, 224, 3), 11, 64, padding=2, stride=4),
    Conv((1, 224, 224, 3), 7, 64, padding=3, stride=2),
    Conv((8, 224, 224, 3), 7, 64, padding=3, stride=2),
    Conv((1, 224, 224, 3), 3, 32, padding=1, stride=2),
    Conv((8, 224, 224, 3), 3, 32, padding=1, stride=2),
    Conv((1, 224, 224, 3), 3, 64, padding=0, stride=2),
    # MobileNet v2's first depthwise layer (multiplier 1) at batch 1, and its first strided
    # one (112 x 112 x 96 -> 56 x 56, torch's padding of 1).
    Conv((1, 112, 112, 32), 3, 32, groups=32),
    Conv((1, 112, 112, 96), 3, 96, padding=1, groups=96, stride=2),
    # MobileNet v3-small's depthwise layers with channels past the last whole vector
    # (72 and 88: 8 left over from AVX-512's 16 lanes), 3x3 at stride 2 and 1.
    Conv((1, 56, 56, 72), 3, 72, padding=1, groups=72, stride=2),
    Conv((1, 28, 28, 88), 3, 88, padding=1, groups=88),
    # Its 1x1 layers with many rows and few channels, which take csrc/gemm_small_k.hpp's
    # unpacked register tiles: features.1's projection, features.2's expansion, features.3's.
    Conv((1, 112, 112, 32), 1, 16),
    Conv((1, 112, 112, 16), 1, 96),
    Conv((1, 56, 56, 24), 1, 144),
]


def _torch_layout(spec: Conv, x: np.ndarray, w: np.ndarray, b: np.ndarray, grad: bool):
    """x, w, b as torch tensors in the channels-last memory format, sharing NumPy's memory."""
    import torch

    rank = spec.rank
    perm_x = (0, rank + 1, *range(1, rank + 1))  # (N, *S, C) -> (N, C, *S)
    perm_w = (rank + 1, rank, *range(rank))  # (*K, Cin, Cout) -> (Cout, Cin, *K)
    xt = torch.from_numpy(x).permute(perm_x)
    wt = torch.from_numpy(w).permute(perm_w)
    tensors = [xt, wt, torch.from_numpy(b)]
    if grad:
        tensors = [t.detach().clone(memory_format=torch.preserve_format) for t in tensors]
        for t in tensors:
            t.requires_grad_(True)
    fn = getattr(torch.nn.functional, f"conv{rank}d")
    return fn, tensors


def _to_numpy_layout(spec: Conv, y):
    rank = spec.rank
    return y.detach().permute(0, *range(2, rank + 2), 1).numpy()


def _module(impl: str):
    """cnnkit.ops for "cnnkit", cnnkit.reference for "reference"."""
    import importlib

    return importlib.import_module("cnnkit.ops" if impl == "cnnkit" else "cnnkit.reference")


def forward(spec: Conv, impl: str):
    """prepare(inputs) -> call for one forward pass of ``impl``."""

    def prepare(inputs: tuple) -> Call:
        x, w, b = inputs
        if impl == "torch":
            import torch

            fn, (xt, wt, bt) = _torch_layout(spec, x, w, b, grad=False)

            def call():
                with torch.no_grad():
                    return _to_numpy_layout(
                        spec,
                        fn(
                            xt, wt, bt, stride=spec.stride, padding=spec.padding, groups=spec.groups
                        ),
                    )

            return call
        conv = _module(impl).conv
        kwargs = {"padding": spec.padding, "groups": spec.groups, "winograd": spec.winograd}
        if spec.stride != 1:
            kwargs["stride"] = spec.stride
        return lambda: conv(x, w, b, **kwargs)

    return prepare


def training_step(spec: Conv, impl: str):
    """prepare(inputs) -> call for a forward pass and all three gradients (dy = y)."""

    def prepare(inputs: tuple) -> Call:
        x, w, b = inputs
        if impl == "torch":
            fn, (xt, wt, bt) = _torch_layout(spec, x, w, b, grad=True)

            def call():
                for t in (xt, wt, bt):
                    t.grad = None
                y = fn(xt, wt, bt, padding=spec.padding, groups=spec.groups)
                y.backward(y.detach())  # dy = y: a loss of sum(y^2) / 2
                return wt.grad.permute(*range(2, spec.rank + 2), 1, 0).numpy()

            return call
        ops = _module(impl)
        kwargs = {"padding": spec.padding, "groups": spec.groups, "winograd": spec.winograd}

        def call():
            y = ops.conv(x, w, b, **kwargs)
            return ops.conv_backward(x, w, y, **kwargs)[1]

        return call

    return prepare


def close_to_scale(tolerance: float) -> Check:
    """Every value within ``tolerance`` times the largest magnitude of the peer's result.

    Relative to the whole result rather than elementwise: Winograd's rounding error is relative
    to the magnitudes of a tile's inputs, and the gradient dw sums products of x with y, so an
    element of dw near zero carries the error of its large neighbours.
    """

    def check(ours: np.ndarray, theirs: np.ndarray) -> str | None:
        if ours.shape != theirs.shape:
            return f"shape {ours.shape} vs {theirs.shape}"
        theirs = theirs.astype(np.float64)
        err, scale = np.abs(ours - theirs), max(float(np.abs(theirs).max(initial=0.0)), 1e-30)
        if err.max(initial=0.0) <= tolerance * scale:
            return None
        worst = np.unravel_index(np.argmax(err), ours.shape)
        return (
            f"max error {err.max():.3g} is {err.max() / scale:.2g} of the largest magnitude, "
            f"worst at {tuple(int(i) for i in worst)}: {ours[worst]} vs {theirs[worst]}"
        )

    return check


def cases() -> list[Case]:
    out = []
    for spec in CONVS:
        for label, make in (("forward", forward), ("forward+backward", training_step)):
            out.append(
                Case(
                    name=f"{spec.name} {label}",
                    size=" x ".join(map(str, spec.shape)),
                    dtype="float32",
                    inputs=spec.inputs,
                    impls={impl: make(spec, impl) for impl in ("cnnkit", "reference", "torch")},
                    check=close_to_scale(1e-4),
                    too_slow=NOTHING if spec.reference else REFERENCE,
                )
            )
    for spec in INFERENCE_CONVS:
        out.append(
            Case(
                name=f"{spec.name} forward",
                size=" x ".join(map(str, spec.shape)),
                dtype="float32",
                inputs=spec.inputs,
                impls={impl: forward(spec, impl) for impl in ("cnnkit", "reference", "torch")},
                check=close_to_scale(1e-4),
                too_slow=REFERENCE,
            )
        )
    return out
