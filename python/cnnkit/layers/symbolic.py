"""Symbolic tensors for the functional API: :class:`KerasTensor` and the :class:`Node` that
made it.

A layer called on a ``KerasTensor`` (from :func:`cnnkit.layers.Input`) does not compute:
it records a node (the layer, the symbolic arguments, the ``training`` argument if one was
given) and returns symbolic outputs of the right shapes. The shapes come from running the
layer once on an empty batch of zeros -- the same path model files take to build -- so
every layer's own shape rules and messages apply, and the call builds the layer's weights,
as Keras builds at the symbolic call. :class:`cnnkit.Model` then replays the nodes
(``cnnkit.models.functional``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _nest
from .. import autograd as ag

__all__ = ["KerasTensor", "Node", "is_symbolic", "redraw_unseeded", "symbolic_call"]


class Node:
    """One call of a layer on symbolic tensors: ``outputs = layer(args, training=...)``."""

    __slots__ = ("args", "layer", "outputs", "training")

    def __init__(self, layer: Any, args: Any, outputs: Any, training: bool | None) -> None:
        self.layer = layer
        self.args = args  # the structure of KerasTensors the layer was called on
        self.outputs = outputs  # the structure of KerasTensors it returned
        self.training = training  # None: the model's training flag is passed on

    @property
    def inputs(self) -> list[KerasTensor]:
        return [t for t in _nest.flatten(self.args) if isinstance(t, KerasTensor)]


class KerasTensor:
    """A symbolic tensor: a shape with the batch axis None, a dtype, and its history
    (the node that made it and its position among that node's outputs).

    It holds no data: it is what a layer returns when called on one, and what
    ``cnnkit.Model(inputs, outputs)`` is built from.
    """

    __slots__ = ("dtype", "index", "name", "node", "shape")

    def __init__(self, shape: tuple[int | None, ...], dtype: Any, name: str = "") -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.name = name
        self.node: Node | None = None
        self.index = 0

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape} dtype={self.dtype.name} name={self.name!r}>"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            f"KerasTensor {self.name!r} is symbolic and has no values: pass it to layers "
            "and build a cnnkit.Model(inputs, outputs), then call the model on data"
        )


def is_symbolic(x: Any) -> bool:
    """True when ``x`` (a structure) holds a KerasTensor."""
    if isinstance(x, KerasTensor):
        return True
    if isinstance(x, (list, tuple, dict)):
        return any(isinstance(t, KerasTensor) for t in _nest.flatten(x))
    return False


def symbolic_call(layer: Any, x: Any, training: bool | None) -> Any:
    """Record ``layer(x, training)`` as a node and return its symbolic outputs."""
    where = f"{type(layer).__name__} {layer.name!r}"
    leaves = _nest.flatten(x)
    mixed = [type(t).__name__ for t in leaves if not isinstance(t, KerasTensor)]
    if mixed:
        raise TypeError(
            f"{where}: called on a mix of symbolic tensors and {mixed[0]}; in a functional "
            "model every input of a layer must come from layers.Input or another layer"
        )

    def empty(t: KerasTensor) -> ag.Tensor:
        return ag.Tensor(np.zeros((0, *t.shape[1:]), t.dtype))

    # A layer built here has no model yet, so its weights come from fresh entropy; the model
    # that takes it in redraws them from its seed (redraw_unseeded), so that a functional
    # model's seed gives the same weights as a Sequential's. Models seed their own layers.
    fresh = layer._draws_fresh_weights() and not hasattr(layer, "_layers")
    with ag.no_grad():
        out = layer(_nest.map_structure(empty, x), training=bool(training))
    if fresh and layer.weights:
        layer.__dict__["_unseeded_build"] = (
            [(0, *t.shape[1:]) for t in x] if layer._list_input else (0, *x.shape[1:])
        )
    position = [0]

    def symbolic(t: Any) -> KerasTensor:
        if not isinstance(t, ag.Tensor):
            raise TypeError(f"{where}: returned {type(t).__name__}, not a tensor")
        i = position[0]
        position[0] += 1
        kt = KerasTensor((None, *t.shape[1:]), t.dtype, f"{layer.name}" + (f"_{i}" if i else ""))
        kt.index = i
        return kt

    outputs = _nest.map_structure(symbolic, out)
    node = Node(layer, x, outputs, training)
    for kt in _nest.flatten(outputs):
        kt.node = node
    layer.__dict__.setdefault("_nodes", []).append(node)
    return outputs


def redraw_unseeded(layer: Any) -> None:
    """Draw again, from the generator a model has just given the layer, the weights that
    a symbolic call built from fresh entropy (a no-op for any other layer)."""
    shape = layer.__dict__.pop("_unseeded_build", None)
    if shape is None or layer._seed_key is None:
        return
    layer._clear_weights()
    layer._init_rng = layer._rng()
    try:
        layer.build(shape)
    finally:
        del layer._init_rng
