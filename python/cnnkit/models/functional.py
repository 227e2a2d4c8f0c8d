"""Functional models: ``cnnkit.Model(inputs, outputs)`` over a graph of layer calls.

Layers called on symbolic tensors (:mod:`cnnkit.layers.symbolic`) record nodes; a
:class:`Functional` model walks back from its outputs to its inputs once, keeps the nodes
in an order where every node follows those it reads, and replays them on data. A layer
reached through several nodes is one layer with one set of weights (shared layers); a model
called on symbolic tensors is a node like any layer (nested models).

A node records the ``training`` argument it was called with: ``base(x, training=False)``
keeps ``base`` in inference mode in every later call, ``fit`` included, even after
``base.trainable = True`` -- so a fine-tuned base keeps using its BatchNormalization moving
statistics, as the Keras transfer-learning guide relies on.

The configuration is Keras 3's: ``layers`` (each with its ``inbound_nodes``, whose
arguments name ``[layer, node index, tensor index]``), ``input_layers`` and
``output_layers``, so a saved functional model is rebuilt from its file alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _nest
from .. import autograd as ag
from .. import layers as layers_module
from ..autograd import Tensor
from ..layers import InputLayer, Layer
from ..layers.layer import shapes_only
from ..layers.symbolic import KerasTensor, Node, redraw_unseeded
from ..saving.registry import register_serializable
from .model import Model

__all__ = ["Functional"]

_TENSOR_REF = "__keras_tensor__"


@register_serializable(package="cnnkit")
class Functional(Model):
    """A model defined by its symbolic ``inputs`` and ``outputs``; made by
    ``cnnkit.Model(inputs, outputs)`` (or ``Model(inputs=..., outputs=...)``).

    Parameters
    ----------
    inputs : KerasTensor, or list or dict of them
        Tensors from :func:`cnnkit.layers.Input`. A dict lets the model be called (and
        fitted) on a dict of arrays with the same keys.
    outputs : KerasTensor, or list or dict of them
        Tensors computed from ``inputs`` by layers; a dict names the outputs for
        per-output losses and metrics.
    name, seed, trainable
        As :class:`cnnkit.Model`.

    Examples
    --------
    >>> inputs = layers.Input((32, 32, 3))
    >>> x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    >>> y = layers.Conv2D(16, 3, padding="same")(x)
    >>> x = layers.add([x, y])
    >>> outputs = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    >>> model = cnnkit.Model(inputs, outputs, seed=0)
    """

    def __init__(
        self,
        inputs: Any = None,
        outputs: Any = None,
        name: str | None = None,
        seed: int | None = None,
        trainable: bool = True,
        **kwargs: Any,
    ) -> None:
        where = "Model()"
        if inputs is None or outputs is None:
            raise TypeError(
                f"{where}: a functional model needs both inputs and outputs, got "
                f"inputs={inputs!r}, outputs={outputs!r}"
            )
        in_leaves = _leaves(where, "inputs", inputs)
        out_leaves = _leaves(where, "outputs", outputs)
        for t in in_leaves:
            if not isinstance(t.node and t.node.layer, InputLayer):
                raise ValueError(
                    f"{where}: inputs must be tensors made by layers.Input, got {t!r} "
                    f"(an output of layer {t.node.layer.name!r})"  # type: ignore[union-attr]
                )
        if len({id(t) for t in in_leaves}) != len(in_leaves):
            raise ValueError(f"{where}: inputs must not repeat a tensor")
        nodes = _topological_nodes(where, in_leaves, out_leaves)
        dtype = kwargs.pop("dtype", None)
        if dtype is not None and str(dtype) != in_leaves[0].dtype.name:
            raise ValueError(
                f"{where}: a functional model computes in the dtype of its inputs "
                f"({in_leaves[0].dtype.name}) and layers: give dtype= to layers.Input and the "
                f"layers, got dtype={dtype!r}"
            )
        self.__dict__["_layers"] = []
        super().__init__(name=name, seed=seed, trainable=trainable, **kwargs)
        self._graph_inputs: Any = inputs
        self._graph_outputs: Any = outputs
        self._input_leaves = in_leaves
        self._graph_nodes = nodes
        for node in nodes:
            self._track(node.layer)
        for layer in self._layers:
            redraw_unseeded(layer)  # the seed decides the weights, as in Sequential
        self.dtype = in_leaves[0].dtype
        self.built = True
        spec = _nest.map_structure(lambda t: list(t.shape[1:]), inputs)
        self._build_shape = spec
        self._output_shape = _nest.map_structure(lambda t: t.shape, outputs)
        self._input_shape = (
            tuple(in_leaves[0].shape[1:]) if isinstance(inputs, KerasTensor) else None
        )

    # -- the graph -----------------------------------------------------------------------------
    @property
    def inputs(self) -> list[KerasTensor]:
        """The symbolic inputs, in order (dict inputs in key order)."""
        return list(self._input_leaves)

    @property
    def outputs(self) -> list[KerasTensor]:
        """The symbolic outputs, in order (dict outputs in key order)."""
        return _nest.flatten(self._graph_outputs)

    @property
    def output(self) -> Any:
        """The symbolic outputs, in the structure given (as Keras's ``model.output``)."""
        return self._graph_outputs

    @property
    def input_shape(self) -> Any:
        """``(None, ...)`` of the input, or a list (dict) of them for several inputs."""
        return _nest.map_structure(lambda t: t.shape, self._graph_inputs)

    @property
    def output_shape(self) -> Any:
        """``(None, ...)`` of the output, or a list (dict) of them for several outputs."""
        return _nest.map_structure(lambda t: t.shape, self._graph_outputs)

    def pop(self) -> Layer:
        """Remove the layer that computes the (one) output, whose input becomes the output,
        and return it -- :meth:`Sequential.pop` for a graph, as the course drops a
        pretrained network's softmax. The layer must read one tensor; the other layers
        (and their weights) stay shared with anything else that holds them."""
        where = f"Functional.pop() of model {self.name!r}"
        outputs = self.outputs
        if len(outputs) != 1:
            raise ValueError(f"{where}: the model must have one output, it has {len(outputs)}")
        node = outputs[0].node
        assert node is not None
        if isinstance(node.layer, InputLayer):
            raise ValueError(f"{where}: the output is the input {node.layer.name!r}: no layer left")
        if not isinstance(node.args, KerasTensor):
            raise ValueError(
                f"{where}: the output layer {node.layer.name!r} reads {len(node.inputs)} tensors; "
                "pop() needs one, so make the new output explicit: "
                "cnnkit.Model(model.inputs, model.get_layer(name).output)"
            )
        new_output = node.args
        nodes = _topological_nodes(where, self._input_leaves, [new_output])
        structure = self._graph_outputs
        self._graph_outputs = (
            {k: new_output for k in structure}
            if isinstance(structure, dict)
            else type(structure)([new_output])
            if isinstance(structure, (list, tuple))
            else new_output
        )
        self._graph_nodes = nodes
        kept = {id(n.layer) for n in nodes}
        self.__dict__["_layers"] = [layer for layer in self._layers if id(layer) in kept]
        self._output_shape = _nest.map_structure(lambda t: t.shape, self._graph_outputs)
        return node.layer

    def _node_index(self) -> dict[int, int]:
        """Each node's position among the nodes of its layer in this model."""
        counts: dict[int, int] = {}
        index = {}
        for node in self._graph_nodes:
            index[id(node)] = counts.get(id(node.layer), 0)
            counts[id(node.layer)] = index[id(node)] + 1
        return index

    def _connections(self) -> dict[str, tuple[str, list[str]]]:
        """For ``summary()``: each layer's output shape (``multiple`` when its calls
        differ) and the ``layer[node][tensor]`` tensors it reads."""
        index = self._node_index()
        rows: dict[str, tuple[str, list[str]]] = {}
        for layer in self._layers:
            nodes = [n for n in self._graph_nodes if n.layer is layer]
            shapes = {str(_nest.map_structure(lambda t: t.shape, n.outputs)) for n in nodes}
            links = [
                f"{t.node.layer.name}[{index[id(t.node)]}][{t.index}]"  # type: ignore[union-attr]
                for n in nodes
                for t in n.inputs
            ]
            rows[layer.name] = (shapes.pop() if len(shapes) == 1 else "multiple", links)
        return rows

    # -- calling -------------------------------------------------------------------------------
    def _feed(self, x: Any) -> list[Any]:
        """The call's inputs in the order of ``inputs``."""
        where = f"Model {self.name!r}"
        leaves = self._input_leaves
        structure = self._graph_inputs
        if isinstance(x, dict):
            keys = (
                list(structure)
                if isinstance(structure, dict)
                else [t.node.layer.name for t in leaves]  # type: ignore[union-attr]
            )
            missing = [k for k in keys if k not in x]
            if missing:
                raise ValueError(
                    f"{where}: x is a dict without the input(s) {missing}; expected keys {keys}"
                )
            return [x[k] for k in keys]
        flat = _nest.flatten(x)
        if len(flat) != len(leaves):
            raise ValueError(
                f"{where}: expected {len(leaves)} input(s) "
                f"({', '.join(repr(t.node.layer.name) for t in leaves)}), "  # type: ignore[union-attr]
                f"got {len(flat)}"
            )
        return flat

    def _expiring(self) -> list[list[int]]:
        """For each node, the ids of the tensors no later node reads and that are no
        output of the model, so :meth:`call` lets go of them after that node: without a
        gradient tape their arrays are then freed, and their memory serves the next
        layers (about half of a chain's activations at once instead of all of them)."""
        nodes = self._graph_nodes
        key = (id(nodes), len(nodes))
        cached = self.__dict__.get("_expiring_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        last: dict[int, int] = {}
        for i, node in enumerate(nodes):
            if not isinstance(node.layer, InputLayer):
                for t in _nest.flatten(node.args):
                    last[id(t)] = i
        kept = {id(t) for t in _nest.flatten(self._graph_outputs)}
        expiring: list[list[int]] = [[] for _ in nodes]
        for tid, i in last.items():
            if tid not in kept:
                expiring[i].append(tid)
        self.__dict__["_expiring_cache"] = (key, expiring)
        return expiring

    def call(self, x: Any, training: bool = False) -> Any:
        if not training and not ag.is_grad_enabled() and not shapes_only.get():
            return self._infer(x)
        values: dict[int, Any] = {id(t): v for t, v in zip(self._input_leaves, self._feed(x))}
        for node, expiring in zip(self._graph_nodes, self._expiring()):
            layer = node.layer
            if isinstance(layer, InputLayer):
                out = node.outputs
                values[id(out)] = layer(values[id(out)])  # checks the shape, casts the dtype
                continue
            args = _nest.map_structure(lambda t: values[id(t)], node.args)
            flag = training if node.training is None else node.training
            result = layer(args, training=flag)
            for t, v in zip(_nest.flatten(node.outputs), _nest.flatten(result)):
                values[id(t)] = v
            for tid in expiring:
                values.pop(tid, None)
            del args, result
        return _nest.map_structure(lambda t: values[id(t)], self._graph_outputs)

    def _steps(self) -> list[_Step]:
        """The inference plan: one step per node, with its layer's shortcut if it has one,
        and residual blocks' Add + ReLU folded into the convolution before them."""
        nodes = self._graph_nodes
        key = (id(nodes), len(nodes))
        cached = self.__dict__.get("_steps_cache")
        if cached is not None and cached[0] == key:
            return cached[1]  # type: ignore[no-any-return]
        steps = [_Step(node, expiring) for node, expiring in zip(nodes, self._expiring())]
        outputs = {id(t) for t in _nest.flatten(self._graph_outputs)}
        _fold_residuals(steps, outputs)
        _fold_concats(steps, outputs)
        _fold_pools(steps, outputs)
        self.__dict__["_steps_cache"] = (key, steps)
        return steps

    def _infer(self, x: Any) -> Any:
        """:meth:`call` without a gradient tape, not training: the same values, with less
        Python between the kernels. The graph's values are plain arrays, and a layer with a
        shortcut (:meth:`cnnkit.layers.Layer._inference_step`: convolutions, dense layers,
        pooling, AddReLU, ONNX max pooling) calls its kernel directly; the others are
        called as usual on tensors. Why: between two kernels, each of which streams
        megabytes of weights, the interpreter's and NumPy's code runs from cold caches, so a
        layer call's Python took 15-50 us there (ResNet-18 at batch 1: about 1.1 ms of its
        26 ms, where onnxruntime has none); the plan saved 0.6-1.3 ms of it.

        A convolution whose output only an AddReLU (or a plain Add) reads, after the
        other operand is made, adds that operand (and rectifies) as it stores its tiles
        (:func:`cnnkit.ops.conv`'s ``residual``, the bits of the two layers): the AddReLU
        or Add then has nothing left to do.

        Likewise a channel Concatenate of convolutions' outputs (SqueezeNet's fire modules,
        GoogLeNet's inception blocks; see :func:`_fold_concats`): its output is allocated
        when the first of them runs, each writes its channels into it (``ops.conv``'s
        ``out``), and the Concatenate copies nothing. And a convolution whose output only a
        max pool reads makes the pool's output (:func:`cnnkit.ops.conv_stem`), and one that
        alone reads a Permute to channels-last reads the Permute's input (an imported
        network's first layers); see :func:`_fold_pools`."""
        values: dict[int, Any] = {id(t): v for t, v in zip(self._input_leaves, self._feed(x))}
        folded: set[int] = set()  # AddReLU steps done by their convolution in this call
        slabs: dict[int, Any] = {}  # a folded Concatenate step's output, while being filled
        for step in self._steps():
            layer = step.layer
            if step.reads is None:  # an input: the layer checks the shape and casts the dtype
                out = step.node.outputs
                values[id(out)] = layer(values[id(out)]).data
                continue
            if id(step) in folded or (
                (step.planar or step.stem is not None) and _stem_done(step, values, folded)
            ):
                for tid in step.expiring:
                    values.pop(tid, None)
                continue
            if id(step) in slabs:  # a Concatenate its producers filled
                result = values[step.writes[0]] = slabs.pop(id(step))
                layer._output_shape = (None, *result.shape[1:])
                for tid in step.expiring:
                    values.pop(tid, None)
                del result
                continue
            reads = step.reads
            args = [values[i] for i in reads] if isinstance(reads, list) else values[reads]
            result = None
            into = step.into
            if into is not None:
                slab = slabs.get(id(into.target))
                if slab is None and _shortcut_applies(into.target.layer, None):
                    dtype = into.target.layer.dtype
                    slab = slabs[id(into.target)] = np.empty((len(args), *into.shape), dtype)
                if slab is not None:
                    part = slab[..., into.first : into.last]
                    if _shortcut_applies(layer, args):
                        result = into.write(args, part)
                    if result is None:  # the usual call, its result copied into the slice
                        part[...] = self._step_value(step, args)
                        result = part
                    layer._output_shape = (None, *result.shape[1:])
                    values[step.writes[0]] = result
                    for tid in step.expiring:
                        values.pop(tid, None)
                    del args, result, part
                    continue
            if step.fast is not None and _shortcut_applies(layer, args):
                add = step.residual
                if add is not None and _shortcut_applies(add.layer, [args, values[step.shortcut]]):
                    result = step.residual_fast(args, values[step.shortcut])  # type: ignore[misc]
                    if result is not None:
                        folded.add(id(add))
                        layer._output_shape = add.layer._output_shape = (None, *result.shape[1:])
                        values[add.writes[0]] = result
                        for tid in step.expiring:
                            values.pop(tid, None)
                        del args, result
                        continue
                result = step.fast(args)
            if result is not None:
                layer._output_shape = (None, *result.shape[1:])
                values[step.writes[0]] = result
            else:
                node = step.node
                flag = False if node.training is None else node.training
                tensors = _nest.map_structure(lambda t: Tensor(values[id(t)]), node.args)
                result = layer(tensors, training=flag)
                for i, v in zip(step.writes, _nest.flatten(result)):
                    values[i] = v.data
                del tensors
            for tid in step.expiring:
                values.pop(tid, None)
            del args, result
        return _nest.map_structure(lambda t: Tensor(values[id(t)]), self._graph_outputs)

    @staticmethod
    def _step_value(step: _Step, args: Any) -> Any:
        """A one-output step's array as :meth:`_infer` makes it when nothing is folded: its
        shortcut where that applies, else the layer's call."""
        result = (
            step.fast(args)
            if step.fast is not None and _shortcut_applies(step.layer, args)
            else None
        )
        if result is not None:
            return result
        node = step.node
        flag = False if node.training is None else node.training
        return step.layer(Tensor(args), training=flag).data

    # -- configuration -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        index = self._node_index()

        def ref(t: KerasTensor) -> Any:
            node = t.node
            return [node.layer.name, index[id(node)], t.index]  # type: ignore[union-attr]

        def encode(t: Any) -> Any:
            return {"class_name": _TENSOR_REF, "config": {"keras_history": ref(t)}}

        entries = []
        for layer in self._layers:
            nodes = [] if isinstance(layer, InputLayer) else self._nodes_of(layer)
            entries.append(
                {
                    **layers_module.serialize(layer),
                    "name": layer.name,
                    "inbound_nodes": [
                        {
                            "args": [_nest.map_structure(encode, n.args)],
                            "kwargs": {} if n.training is None else {"training": n.training},
                        }
                        for n in nodes
                    ],
                }
            )
        return {
            "name": self.name,
            "trainable": self.trainable,
            "seed": self.seed,
            "layers": entries,
            "input_layers": _nest.map_structure(ref, self._graph_inputs),
            "output_layers": _nest.map_structure(ref, self._graph_outputs),
        }

    def _nodes_of(self, layer: Layer) -> list[Node]:
        return [n for n in self._graph_nodes if n.layer is layer]

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Functional:
        where = "Functional.from_config()"
        config = dict(config)
        entries = config.pop("layers", None)
        input_spec = config.pop("input_layers", None)
        output_spec = config.pop("output_layers", None)
        if not isinstance(entries, list) or input_spec is None or output_spec is None:
            raise ValueError(
                f"{where}: config must have 'layers' (a list), 'input_layers' and 'output_layers'"
            )
        made: dict[tuple[str, int], Any] = {}  # (layer name, node index) -> its outputs
        pending: list[tuple[Layer, list[Any]]] = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("inbound_nodes", []), list):
                raise ValueError(f"{where}: every layer entry must be a dict, got {entry!r}")
            layer = layers_module.deserialize(
                {"class_name": entry.get("class_name"), "config": entry.get("config")},
                custom_objects,
            )
            if isinstance(layer, InputLayer):
                made[(layer.name, 0)] = layer.output
            else:
                pending.append((layer, list(entry.get("inbound_nodes", []))))

        def decode(value: Any) -> Any:
            if isinstance(value, dict) and value.get("class_name") == _TENSOR_REF:
                return lookup(value.get("config", {}).get("keras_history"))
            if isinstance(value, dict):
                return {k: decode(v) for k, v in value.items()}
            if isinstance(value, list):
                return [decode(v) for v in value]
            raise ValueError(f"{where}: unexpected node argument {value!r}")

        def lookup(history: Any) -> KerasTensor:
            if (
                not isinstance(history, list)
                or len(history) != 3
                or not isinstance(history[0], str)
                or not all(isinstance(i, int) for i in history[1:])
            ):
                raise ValueError(f"{where}: a tensor reference must be [layer, node, tensor]")
            key = (history[0], history[1])
            if key not in made:
                raise _NotYet(history)
            leaves = _nest.flatten(made[key])
            if not 0 <= history[2] < len(leaves):
                raise ValueError(f"{where}: tensor reference {history} is out of range")
            return leaves[history[2]]  # type: ignore[no-any-return]

        # A shared layer's later node may read layers listed after it: replay nodes as their
        # arguments become available, each layer's nodes in order.
        done = {id(layer): 0 for layer, _ in pending}
        while any(queue for _, queue in pending):
            progressed = False
            for layer, queue in pending:
                while queue:
                    node = queue[0]
                    if not isinstance(node, dict) or not isinstance(node.get("args"), list):
                        raise ValueError(f"{where}: bad inbound node of {layer.name!r}: {node!r}")
                    try:
                        args = decode(node["args"][0] if len(node["args"]) == 1 else node["args"])
                    except _NotYet:
                        break
                    training = (node.get("kwargs") or {}).get("training")
                    made[(layer.name, done[id(layer)])] = layer(args, training=training)
                    done[id(layer)] += 1
                    queue.pop(0)
                    progressed = True
            if not progressed:
                stuck = [layer.name for layer, queue in pending if queue]
                raise ValueError(f"{where}: the nodes of layers {stuck} read tensors never made")

        def decode_refs(value: Any) -> Any:
            if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
                return lookup(value)
            if isinstance(value, dict):
                return {k: decode_refs(v) for k, v in value.items()}
            if isinstance(value, list):
                return [decode_refs(v) for v in value]
            raise ValueError(f"{where}: unexpected input or output reference {value!r}")

        try:
            inputs, outputs = decode_refs(input_spec), decode_refs(output_spec)
        except _NotYet as exc:
            raise ValueError(
                f"{where}: unknown tensor {exc.args[0]} in input or output layers"
            ) from None
        return cls(inputs, outputs, **config)


Model._functional_class = Functional


class _Step:
    """One node of :meth:`Functional._infer`'s plan: the ids of the tensors it reads (None
    for an input layer; a list for a list of tensors; the whole structure goes to the
    layer's call otherwise) and writes, those it is the last to read, and its layer's
    shortcut -- only when it reads one tensor or a list, and the layer's ``__call__`` and
    ``call`` are those of the class that defines the shortcut, so a subclass that changes
    either runs as it says."""

    __slots__ = (
        "expiring",
        "fast",
        "into",
        "layer",
        "node",
        "planar",
        "reads",
        "residual",
        "residual_fast",
        "shortcut",
        "stem",
        "stem_permute",
        "stem_pool",
        "writes",
    )

    def __init__(self, node: Node, expiring: list[int]) -> None:
        self.node, self.layer = node, node.layer
        self.writes = [id(t) for t in _nest.flatten(node.outputs)]
        self.expiring = expiring
        self.fast: Callable[[Any], Any] | None = None
        # Set by _fold_residuals: the AddReLU step this convolution can do too, the
        # convolution's shortcut with the residual, and the id of the AddReLU's other operand.
        self.residual: _Step | None = None
        self.residual_fast: Callable[[Any, Any], Any] | None = None
        self.shortcut = 0
        # Set by _fold_concats: where this convolution writes its output, a channel slice
        # of a Concatenate's output.
        self.into: _Slice | None = None
        # Set by _fold_pools: a convolution's ops.conv_stem step, the Permute step whose
        # channels-first input it reads in place, and the max-pool step it does too; on
        # that Permute step, `planar`.
        self.stem: Callable[[Any, bool, Any], Any] | None = None
        self.stem_permute: _Step | None = None
        self.stem_pool: _Step | None = None
        self.planar = False
        args = node.args
        if isinstance(node.layer, InputLayer):
            self.reads: int | list[int] | None = None
        elif isinstance(args, KerasTensor):
            self.reads = id(args)
        elif isinstance(args, list) and all(isinstance(t, KerasTensor) for t in args):
            self.reads = [id(t) for t in args]
        else:
            self.reads = [id(t) for t in _nest.flatten(args)]
            return  # a dict or nested structure: the layer's own call
        cls = type(node.layer)
        owner = next((c for c in cls.__mro__ if "_inference_step" in c.__dict__), Layer)
        if (
            node.training is not True
            and len(self.writes) == 1
            and cls.__call__ is Layer.__call__
            and cls.call is owner.call  # type: ignore[attr-defined]
        ):
            self.fast = node.layer._inference_step()


def _shortcut_applies(layer: Layer, args: Any) -> bool:
    """Whether a layer's shortcut may stand in for its ``__call__`` on these arrays: built,
    no probe replacing ``call`` on the instance, no ``activations()`` sink, no activity
    regularizer, and inputs of the layer's dtype (``__call__`` would cast them). ``args``
    None: inputs not made yet, which will have the layer's dtype (a folded Concatenate's)."""
    dtype = layer.dtype
    arrays = [] if args is None else args if isinstance(args, list) else [args]
    return (
        layer.built
        and "call" not in layer.__dict__
        and layer._output_sink is None
        and layer.activity_regularizer is None
        and all(a.dtype == dtype for a in arrays)
    )


def _readers(steps: list[_Step]) -> dict[int, list[_Step]]:
    """The steps that read each tensor id, once per read."""
    readers: dict[int, list[_Step]] = {}
    for step in steps:
        for r in step.reads if isinstance(step.reads, list) else [step.reads]:
            if r is not None:
                readers.setdefault(r, []).append(step)
    return readers


def _fold_residuals(steps: list[_Step], outputs: set[int]) -> None:
    """Marks each convolution step whose output is read by one AddReLU step alone (and is
    no model output) while the AddReLU's other operand is made before it: the
    convolution may then add that operand and rectify (``_residual_step``), in place of
    both. Likewise a plain ``Add`` of two tensors (MobileNet v2's residual blocks, which
    end without a ReLU), whose sum the convolution makes without rectifying: the Add's
    pass over its output and its call through the tape cost 10-40 us per block at batch
    1. Only for operands of the same fully known shapes."""
    made = {w: i for i, step in enumerate(steps) for w in step.writes}
    readers = _readers(steps)
    for add in steps:
        rectify = add.fast is not None and getattr(add.layer, "_adds_then_rectifies", False)
        plain = type(add.layer) is layers_module.Add and add.node.training is not True
        if not (rectify or plain):
            continue
        args = add.node.args
        if not (isinstance(args, list) and len(args) == 2):
            continue
        a, b = args
        if a is b or a.shape != b.shape or None in a.shape[1:]:
            continue
        # The operand made last is the convolution's (an input is made first of all).
        first, last = sorted((a, b), key=lambda t: made.get(id(t), -1))
        conv = steps[made[id(last)]] if id(last) in made else None
        if (
            conv is None
            or conv.fast is None
            or not isinstance(conv.reads, int)
            or len(readers.get(id(last), ())) != 1
            or id(last) in outputs
        ):
            continue
        residual_step = getattr(conv.layer, "_residual_step", None)
        fused = residual_step(rectify) if residual_step is not None else None
        if fused is not None:
            conv.residual, conv.residual_fast, conv.shortcut = add, fused, id(first)


class _Slice:
    """A convolution step's place in a folded Concatenate's output: the Concatenate step,
    the output's shape without the batch, the channels ``[first, last)`` the convolution
    writes, and its ``ops.conv(..., out=)`` call."""

    __slots__ = ("first", "last", "shape", "target", "write")

    def __init__(
        self,
        target: _Step,
        shape: tuple[int, ...],
        first: int,
        last: int,
        write: Callable[[Any, Any], Any],
    ) -> None:
        self.target, self.shape, self.write = target, shape, write
        self.first, self.last = first, last


def _fold_concats(steps: list[_Step], outputs: set[int]) -> None:
    """Marks the producers of each channel Concatenate step whose inputs are all outputs of
    convolution steps, each read by the Concatenate alone, no model output, of fully known
    shapes and of the Concatenate's dtype: each producer then writes its output into its
    channels of the Concatenate's output (``_Step.into``) and the Concatenate copies
    nothing. Why: SqueezeNet 1.1's fire modules spent 0.12-0.13 ms per 55x55 concat at one
    thread, about 0.5 ms of its ~6 ms. Producers that fold a residual Add or AddReLU are
    left out."""
    made = {w: step for step in steps for w in step.writes}
    readers = _readers(steps)
    for cat in steps:
        if (
            cat.fast is None
            or not isinstance(cat.layer, layers_module.Concatenate)
            or not isinstance(cat.reads, list)
            or len(cat.reads) < 2
        ):
            continue
        args = cat.node.args
        shape = tuple(cat.node.outputs.shape)
        if None in shape[1:] or cat.layer.axis % len(shape) != len(shape) - 1:
            continue
        producers = [made.get(id(t)) for t in args]
        steps_ok = all(
            p is not None
            and p.fast is not None
            and p.residual is None
            and p.into is None
            and isinstance(p.reads, int)
            and len(readers.get(id(t), ())) == 1
            and id(t) not in outputs
            and None not in t.shape[1:]
            and p.layer.dtype == cat.layer.dtype
            for p, t in zip(producers, args)
        )
        if not steps_ok:
            continue
        writes = []
        for p in producers:
            concat_step = getattr(p.layer, "_concat_step", None)  # type: ignore[union-attr]
            write = concat_step() if concat_step is not None else None
            if write is None:
                break
            writes.append(write)
        else:
            first = 0
            for p, t, write in zip(producers, args, writes):
                last = first + t.shape[-1]
                p.into = _Slice(cat, shape[1:], first, last, write)  # type: ignore[union-attr]
                first = last


def _fold_pools(steps: list[_Step], outputs: set[int]) -> None:
    """Marks each convolution step (with a ``_stem_step``: one group, no dilation) whose
    output is read by one max-pool step alone (a layer with ``_max_pool_args``), or whose
    input is made by a Permute from channels-first to channels-last that nothing else
    reads: :func:`_stem_done` then does the convolution and the pool in one call of
    :func:`cnnkit.ops.conv_stem` (the bits of the separate layers), reading the Permute's
    input as it is. Neither folded tensor may be a model output. An imported ONNX
    network's first layers are such a chain (its input Permute, conv1, the max pool)."""
    made = {w: i for i, step in enumerate(steps) for w in step.writes}
    readers = _readers(steps)

    def only_reader(tid: int) -> _Step | None:
        found = readers.get(tid, [])
        return found[0] if len(found) == 1 and tid not in outputs else None

    for conv in steps:
        make = getattr(conv.layer, "_stem_step", None)
        if conv.fast is None or make is None or conv.residual is not None:
            continue
        if not isinstance(conv.reads, int) or conv.into is not None:
            continue
        pool = only_reader(conv.writes[0])
        # pool.fast: a shortcut of the class that defines call (a subclass's own call
        # must run), not in training, one output.
        if pool is None or not (
            isinstance(pool.reads, int)
            and hasattr(pool.layer, "_max_pool_args")
            and pool.fast is not None
        ):
            pool = None
        permute = steps[made[conv.reads]] if conv.reads in made else None
        if permute is None or not (
            only_reader(conv.reads) is conv
            and isinstance(permute.layer, layers_module.Permute)
            and permute.fast is not None
            and isinstance(permute.reads, int)
            and permute.layer.dims == (*range(2, len(permute.layer.dims) + 1), 1)
        ):
            permute = None
        if pool is None and permute is None:
            continue
        conv.stem = make()
        if conv.stem is not None:
            conv.stem_pool, conv.stem_permute = pool, permute
            if permute is not None:
                permute.planar = True


class _ChannelsFirst:
    """A Permute's channels-first input, left for the convolution that alone reads the
    Permute's output to read as it is (:func:`_fold_pools`)."""

    __slots__ = ("x",)

    def __init__(self, x: Any) -> None:
        self.x = x


def _stem_done(step: _Step, values: dict[int, Any], folded: set[int]) -> bool:
    """Runs a step :func:`_fold_pools` marked, if it can: a Permute leaves its input to
    the convolution after it; a convolution makes its output, or its max pool's (the pool
    step is then added to ``folded``). False where the step is to run as usual (after a
    channels-first input has been made channels-last for it)."""
    x = values[step.reads]  # type: ignore[index]
    if step.planar:
        if not _shortcut_applies(step.layer, x) or x.ndim != len(step.layer.dims) + 1:
            return False
        values[step.writes[0]] = _ChannelsFirst(x)
        return True
    channels_first = isinstance(x, _ChannelsFirst)
    if channels_first:
        x = x.x
    pool = step.stem_pool
    result = None
    if _shortcut_applies(step.layer, x) and (pool is None or _shortcut_applies(pool.layer, x)):
        result = step.stem(x, channels_first, pool and pool.layer._max_pool_args)  # type: ignore[misc]
    if result is None:
        if channels_first:  # the Permute's own step, late
            values[step.reads] = step.stem_permute.fast(x)  # type: ignore[index, union-attr, misc]
        return False
    done = step if pool is None else pool
    if pool is not None:
        folded.add(id(pool))
    done.layer._output_shape = (None, *result.shape[1:])
    values[done.writes[0]] = result
    return True


class _NotYet(Exception):
    """A node argument refers to a node not replayed yet."""


def _leaves(where: str, arg: str, value: Any) -> list[KerasTensor]:
    leaves = _nest.flatten(value)
    if not leaves:
        raise ValueError(f"{where}: {arg} must not be empty")
    for t in leaves:
        if not isinstance(t, KerasTensor):
            hint = (
                " (a layer, not its output: call the layer on a tensor)"
                if isinstance(t, Layer)
                else " (data: use layers.Input for the inputs and layers' outputs)"
                if isinstance(t, Tensor) or hasattr(t, "shape")
                else ""
            )
            raise TypeError(
                f"{where}: {arg} must be symbolic tensors from layers.Input and layer calls, "
                f"got {type(t).__name__}{hint}"
            )
        if t.node is None:
            raise ValueError(f"{where}: {arg} holds a KerasTensor made by no layer: {t!r}")
    return leaves


def _topological_nodes(
    where: str, inputs: Sequence[KerasTensor], outputs: Sequence[KerasTensor]
) -> list[Node]:
    """The nodes between ``inputs`` and ``outputs``, each after the nodes it reads."""
    given = {id(t) for t in inputs}
    order: list[Node] = []
    done: set[int] = set()
    stack: list[tuple[Node, bool]] = [(t.node, False) for t in reversed(outputs)]  # type: ignore[misc]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        for t in reversed(node.inputs):
            if t.node is not None and id(t.node) not in done:
                stack.append((t.node, False))
    names = [t.node.layer.name for t in inputs]  # type: ignore[union-attr]
    for node in order:
        if isinstance(node.layer, InputLayer) and id(node.outputs) not in given:
            raise ValueError(
                f"{where}: the outputs are not connected to the inputs given: they need the "
                f"input {node.layer.name!r} (shape {node.outputs.shape}), which is not among "
                f"inputs {names}"
            )
    reached = {id(node.outputs) for node in order if isinstance(node.layer, InputLayer)}
    unused = [t.node.layer.name for t in inputs if id(t) not in reached]  # type: ignore[union-attr]
    if unused:
        raise ValueError(f"{where}: the input(s) {unused} are not used to compute the outputs")
    return order
