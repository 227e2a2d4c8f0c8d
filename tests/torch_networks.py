"""torchvision's classification networks with random weights, exported to ONNX with torch.

Helpers for tests/test_onnx_networks.py and bench/cases/onnx_models.py. The torchvision
wheel on PyPI is built against CUDA torch: with the CPU torch installed here its compiled
operators do not load, and ``import torchvision`` fails while registering them. The model
definitions are plain Python and need none of them, so when the normal import fails,
``torchvision`` is entered as a namespace package that skips its ``__init__`` (the
compiled operators); the models come from the same files either way.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import sys
import types
import warnings
from typing import Any

import numpy as np

# name -> (constructor name, input size): AlexNet's and VGG's adaptive pooling to 6x6 and
# 7x7 exports only when the feature map divides it, hence 224 for those two.
NETWORKS: dict[str, tuple[str, int]] = {
    "alexnet": ("alexnet", 224),
    "vgg16": ("vgg16", 224),
    "resnet18": ("resnet18", 64),
    "squeezenet1_1": ("squeezenet1_1", 64),
    "mobilenet_v2": ("mobilenet_v2", 64),
    "mobilenet_v3_small": ("mobilenet_v3_small", 64),
    "googlenet": ("googlenet", 64),
    "densenet121": ("densenet121", 64),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", 64),
}


def torchvision_models() -> Any:
    """``torchvision.models``, or None when torch or torchvision is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    try:
        return importlib.import_module("torchvision.models")
    except ImportError:
        return None
    except RuntimeError:  # compiled operators built for another torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchvision")
        if spec is None or spec.origin is None:
            return None
        package = types.ModuleType("torchvision")
        package.__path__ = [os.path.dirname(spec.origin)]
        sys.modules["torchvision"] = package
        return importlib.import_module("torchvision.models")


def build(name: str, seed: int = 0) -> Any:
    """The network in eval mode with random weights and random BatchNorm statistics (the
    defaults, mean 0 and variance 1, would hide a wrong normalization)."""
    import torch

    models = torchvision_models()
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"weights": None}
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    net = getattr(models, NETWORKS[name][0])(**kwargs).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return net


def export(net: Any, size: int, opset: int = 17, *, dynamo: bool = False) -> bytes:
    """The ONNX file torch writes: the TorchScript exporter with the batch axis dynamic, or
    with ``dynamo`` torch.export's (torch's default since 2.9; needs onnxscript), which
    writes the batch size of the example, 1."""
    import torch

    buffer = io.BytesIO()
    x = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, not gone
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"])
            return bytes(program.model_proto.SerializeToString())
        _export(torch, net, x, buffer, opset)
    return buffer.getvalue()


def _export(torch: Any, net: Any, x: Any, buffer: Any, opset: int) -> None:
    torch.onnx.export(
        net,
        (x,),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )


def caffe_style(seed: int = 0) -> Any:
    """The original AlexNet's and GoogLeNet's pieces that torchvision's versions dropped:
    local response normalization, ceil-mode max pooling, padded average pooling that
    counts the padding, a PReLU and a grouped convolution."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        nn.Conv2d(16, 32, 3, padding=1, groups=4),
        nn.PReLU(32),
        nn.LocalResponseNorm(3, alpha=1e-3, beta=0.5, k=1.0),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=True),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    ).eval()


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)
