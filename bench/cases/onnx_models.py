"""Inference of torchvision's networks imported from ONNX (see ``bench/cases/__init__.py``).

Each network (random weights) is exported by torch (``tests/torch_networks.py``) and run
three ways on the same NCHW images: ``cnnkit`` (``cnnkit.onnx.load_model`` and a call of
the model, no gradient tape), ``onnxruntime`` (the CPU provider, ``intra_op_num_threads``
at the thread count of the run, graph optimizations on) and ``torch`` (eager, inference
mode). Batch 1 and 8 at 224 x 224. Needs torch and torchvision to export; without them the
case reports cnnkit as missing too.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from . import Call, Case, allclose

NETWORKS = ("alexnet", "vgg16", "resnet18", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1")
SIZE = 224


@functools.cache
def _network(name: str) -> tuple:
    """(torch module, ONNX bytes), made once per network."""
    tests = str(Path(__file__).resolve().parents[2] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import torch_networks as nets

    if nets.torchvision_models() is None:
        raise ImportError("torch and torchvision are needed to export the networks")
    net = nets.build(name)
    return net, nets.export(net, SIZE)


def images(batch: int) -> tuple:
    return (
        np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32),
    )


def _cnnkit(name: str, inputs: tuple) -> Call:
    import cnnkit.autograd as ag
    import cnnkit.onnx

    model = cnnkit.onnx.load_model(_network(name)[1])
    x = inputs[0]

    def call() -> object:
        with ag.no_grad():
            return model(x).data

    return call


def _onnxruntime(name: str, inputs: tuple) -> Call:
    import onnxruntime as ort

    import cnnkit

    options = ort.SessionOptions()
    options.intra_op_num_threads = cnnkit.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(_network(name)[1], options, providers=["CPUExecutionProvider"])
    feed = {"input": inputs[0]}
    return lambda: session.run(None, feed)[0]


def _torch(name: str, inputs: tuple) -> Call:
    import torch

    net = _network(name)[0]
    x = torch.from_numpy(inputs[0])

    def call() -> object:
        with torch.inference_mode():
            return net(x)

    return call


def _cases() -> Iterator[Case]:
    for name in NETWORKS:
        for batch in (1, 8):
            yield Case(
                name,
                f"{batch} x 3 x {SIZE} x {SIZE}",
                "float32",
                partial(images, batch),
                {
                    "cnnkit": partial(_cnnkit, name),
                    "onnxruntime": partial(_onnxruntime, name),
                    "torch": partial(_torch, name),
                },
                allclose(rtol=1e-4, atol=1e-4),
            )


def cases() -> list[Case]:
    return list(_cases())
