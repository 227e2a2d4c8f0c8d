"""A torch transcription of style transfer's cost on a cnnkit network (tests and bench).

The network's weights are copied into torch convolutions (NCHW, OIHW), the costs are the
course's formulas written out directly (Gram matrices ``F F^T`` of the ``(nC, nH nW)``
activations, divided by ``(2 nH nW nC)^2``), independently of cnnkit's scaled Grams. Used
by tests/test_style.py (agreement of the costs) and bench/cases/style.py (the torch peer of
one iteration).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit import layers as L
from cnnkit.style.networks import RandomMultiscale, _chain


def _conv_op(layer: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    kernel = torch.from_numpy(np.ascontiguousarray(layer.kernel.data.transpose(3, 2, 0, 1)))
    bias = None if layer.bias is None else torch.from_numpy(layer.bias.data.copy())
    kh, kw = layer.kernel_size
    assert layer.strides == (1, 1) and layer.dilation_rate == (1, 1)
    if layer.padding == "same":
        assert kh % 2 == 1 and kw % 2 == 1
        pad = (kh // 2, kw // 2)
    else:  # explicit (before, after) pairs, as cnnkit.onnx makes them: symmetric here
        (top, bottom), (left, right) = layer.padding
        assert top == bottom and left == right
        pad = (top, left)
    relu = layer.activation == "relu"
    assert relu or layer.activation in (None, "linear")

    def op(x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, kernel, bias, padding=pad)
        return F.relu(y) if relu else y

    return op


def _op(layer: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(layer, L.Conv2D):
        return _conv_op(layer)
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        k = layer.pool_size
        assert tuple(layer.strides) == tuple(k)
        if isinstance(layer, L.MaxPooling2D):
            return lambda x: F.max_pool2d(x, k)
        # Keras "same" average pooling leaves padding out of the mean: ceil mode without it.
        same = layer.padding == "same"
        return lambda x: F.avg_pool2d(x, k, ceil_mode=same, count_include_pad=False)
    if type(layer).__name__ == "OnnxPooling":
        assert layer.padding == ((0, 0), (0, 0)) and not layer.ceil_mode
        size, stride = layer.pool_size, layer.strides
        if layer.kind == "max":
            return lambda x: F.max_pool2d(x, size, stride)
        return lambda x: F.avg_pool2d(x, size, stride)
    if isinstance(layer, (L.ReLU, L.Activation)):
        return F.relu
    raise NotImplementedError(type(layer).__name__)


def features(network: Any, names: list[str]) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """``x (1, 3, H, W) -> {name: activations (1, C, h, w)}`` for the style network."""
    model = network.model
    mean = torch.tensor(network.mean, dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor(network.std, dtype=torch.float64).reshape(1, 3, 1, 1)
    if isinstance(model, RandomMultiscale):
        convs = [_conv_op(c) for c in model.convs]
        pools = [_op(p) for p in model.pools]

        def multiscale(x: torch.Tensor) -> dict[str, torch.Tensor]:
            x = (x - mean.to(x.dtype)) / std.to(x.dtype)
            out = {"scale0": convs[0](x)}
            for s, (pool, conv) in enumerate(zip(pools, convs[1:]), start=1):
                x = pool(x)
                out[f"scale{s}"] = conv(x)
            return {n: out[n] for n in names}

        return multiscale
    chain = _chain(model)
    assert chain is not None
    last = max(i for i, layer in enumerate(chain) if layer.name in names)
    ops = [(layer.name, _op(layer)) for layer in chain[: last + 1]]

    def sequential(x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - mean.to(x.dtype)) / std.to(x.dtype)
        out = {}
        for name, op in ops:
            x = op(x)
            out[name] = x
        return {n: out[n] for n in names}

    return sequential


def _gram(a: torch.Tensor) -> torch.Tensor:
    f = a.reshape(a.shape[1], -1)
    return f @ f.T


def cost_function(
    network: Any,
    content: np.ndarray,
    style: np.ndarray,
    content_layer: str,
    style_layers: list[tuple[str, float]],
    alpha: float,
    beta: float,
    dtype: torch.dtype,
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``G (1, 3, H, W) -> (J, J_content, J_style)`` with the targets computed once."""
    names = list(dict.fromkeys([content_layer, *(n for n, _ in style_layers)]))
    run = features(network, names)

    with torch.no_grad():
        a_C = run(nchw(content, dtype))[content_layer]
        acts_S = run(nchw(style, dtype))
        grams_S = {n: _gram(acts_S[n]) for n, _ in style_layers}

    def cost(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        acts = run(g)
        _, c, h, w = a_C.shape
        j_content = ((a_C - acts[content_layer]) ** 2).sum() / (4 * h * w * c)
        j_style = torch.zeros((), dtype=g.dtype)
        for name, weight in style_layers:
            _, c, h, w = acts[name].shape
            diff = grams_S[name] - _gram(acts[name])
            j_style = j_style + weight * (diff**2).sum() / (2 * h * w * c) ** 2
        return alpha * j_content + beta * j_style, j_content, j_style

    return cost


def nchw(image: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """An (H, W, 3) image as a (1, 3, H, W) torch tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None])).to(dtype)
