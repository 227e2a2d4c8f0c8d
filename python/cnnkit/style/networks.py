"""The networks whose activations define content and style.

* :func:`random_multiscale` (the default of :func:`cnnkit.style.transfer`): random filters at
  several scales, after Ustyuzhaninov, Brendel, Gatys and Bethge, "What does it take to
  generate natural textures?" (ICLR 2017), who showed that a single layer of random
  convolutional filters of several sizes (3 to 55 pixels, ReLU, Gram matrices as in Gatys
  et al.) synthesises natural textures about as well as VGG. Here the large filters are
  replaced by fixed-size filters on an image pyramid: scale ``s`` averages the image over
  ``2^s x 2^s`` blocks and applies ``filters`` random ``kernel_size`` filters with a ReLU, so
  the filters span ``kernel_size * 2^s`` pixels (5 to 80 with the defaults) at about a
  hundredth of the operations of 55-pixel filters at full resolution. The weights are He-normal
  draws from a fixed seed: the same network on every machine, no download.
* :func:`vgg16` / :func:`vgg19`: the convolutional part of VGG with the course's layer names
  (``conv1_1`` ... ``conv5_3``/``conv5_4``, ``pool1`` ... ``pool5``), random weights unless
  loaded. A network imported from ONNX or saved by cnnkit under other names is mapped to
  these names by position (:func:`vgg_layer_names`), so the course's recipe (content
  ``conv4_2``, style ``conv1_1`` ... ``conv5_1`` with weight 0.2 each) applies to it.

A :class:`StyleNetwork` bundles a model with its default layers and its input normalisation
(``(pixel - mean) / std`` on pixels in [0, 1]; the ImageNet statistics, which torchvision's
VGG weights expect, by default).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _validate
from .. import layers as L
from ..autograd import Tensor
from ..layers import InputLayer, Layer
from ..models import Model, Sequential
from ..saving.registry import register_serializable

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG_CONTENT_LAYER",
    "VGG_STYLE_LAYERS",
    "RandomMultiscale",
    "StyleNetwork",
    "from_model",
    "load_network",
    "random_multiscale",
    "vgg16",
    "vgg19",
    "vgg_layer_names",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_CONTENT_LAYER = "conv4_2"
VGG_STYLE_LAYERS = (
    ("conv1_1", 0.2),
    ("conv2_1", 0.2),
    ("conv3_1", 0.2),
    ("conv4_1", 0.2),
    ("conv5_1", 0.2),
)


@register_serializable(package="cnnkit")
class RandomMultiscale(Model):
    """Random ReLU filters on an image pyramid (see the module docstring).

    Layers ``scale0`` ... ``scale{scales-1}`` (Conv2D, ``same`` padding, ReLU) see the
    image averaged over ``2^s x 2^s`` blocks (``pool1`` ..., AveragePooling2D with ``same``
    padding, so any image size works). Calling the model returns the coarsest scale's
    activations; :meth:`~cnnkit.Model.activations` gives every scale.
    """

    def __init__(
        self,
        scales: int = 5,
        filters: int = 128,
        kernel_size: int = 5,
        *,
        seed: int | None = 0,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        where = "RandomMultiscale()"
        # One Conv2D per scale and a 2 ** (scales - 1) pixel build: past 32 halvings every
        # image is one pixel, and 2**31 scales built layers for hours.
        self.scales = _validate.integer(where, "scales", scales, minimum=1, maximum=32)
        self.filters = _validate.integer(where, "filters", filters, minimum=1)
        self.kernel_size = _validate.integer(where, "kernel_size", kernel_size, minimum=1)
        super().__init__(name=name or "random_multiscale", seed=seed, **kwargs)
        self.pools = [
            L.AveragePooling2D(2, padding="same", name=f"pool{s}") for s in range(1, self.scales)
        ]
        self.convs = [
            L.Conv2D(
                self.filters,
                self.kernel_size,
                padding="same",
                activation="relu",
                kernel_initializer="he_normal",
                name=f"scale{s}",
            )
            for s in range(self.scales)
        ]

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        out = self.convs[0](x)
        for pool, conv in zip(self.pools, self.convs[1:]):
            x = pool(x)
            out = conv(x)
        return out

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "scales": self.scales,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
        }


def random_multiscale(
    scales: int = 5, filters: int = 128, kernel_size: int = 5, *, seed: int = 0, dtype: Any = None
) -> StyleNetwork:
    """The default network of :func:`cnnkit.style.transfer`: :class:`RandomMultiscale`
    (built for RGB input) with content layer ``scale2`` and every scale as an equally
    weighted style layer.

    The content layer is a middle scale, as the course's ``conv4_2`` is a middle layer:
    ``scale0`` pins every pixel of the content image (a shallow layer of random features
    can be inverted almost exactly), leaving the style nothing to change.
    """
    model = RandomMultiscale(scales, filters, kernel_size, seed=seed, dtype=dtype)
    model.build((2 ** (scales - 1), 2 ** (scales - 1), 3))
    return _multiscale_network(model)


def _multiscale_network(model: RandomMultiscale) -> StyleNetwork:
    content = f"scale{min(2, model.scales - 1)}"
    style = tuple((f"scale{s}", 1.0 / model.scales) for s in range(model.scales))
    return StyleNetwork(model, content, style)


def _vgg(blocks: Sequence[int], pooling: str, seed: int, dtype: Any, name: str) -> StyleNetwork:
    where = f"{name}()"
    pooling = _validate.choice(where, "pooling", pooling, ("max", "avg"))
    pool = L.MaxPooling2D if pooling == "max" else L.AveragePooling2D
    widths = (64, 128, 256, 512, 512)
    stack: list[Layer] = []
    for b, (count, width) in enumerate(zip(blocks, widths), start=1):
        for i in range(1, count + 1):
            stack.append(L.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{b}_{i}"))
        stack.append(pool(2, name=f"pool{b}"))
    model = Sequential(stack, name=name, seed=seed, dtype=dtype)
    model.build((32, 32, 3))
    return StyleNetwork(model, VGG_CONTENT_LAYER, VGG_STYLE_LAYERS)


def vgg16(*, pooling: str = "max", seed: int = 0, dtype: Any = None) -> StyleNetwork:
    """The convolutional part of VGG-16 (13 conv layers ``conv1_1`` ... ``conv5_3``, 3x3,
    ``same`` padding, ReLU; ``pool1`` ... ``pool5``) with the course's recipe.

    The weights are random (Glorot-uniform from ``seed``): load trained ones with
    ``network.model.load_weights(...)`` or import a network with :func:`load_network`.
    ``pooling="avg"`` replaces max pooling by average pooling, as the course and Gatys et
    al. do. No classifier: style transfer never reads it, and it would fix the image size.
    """
    return _vgg((2, 2, 3, 3, 3), pooling, seed, dtype, "vgg16")


def vgg19(*, pooling: str = "max", seed: int = 0, dtype: Any = None) -> StyleNetwork:
    """As :func:`vgg16` with VGG-19's 16 conv layers (``conv1_1`` ... ``conv5_4``), the
    network of the course and of Gatys et al."""
    return _vgg((2, 2, 4, 4, 4), pooling, seed, dtype, "vgg19")


@dataclass(frozen=True)
class StyleNetwork:
    """A model and how style transfer uses it.

    Attributes
    ----------
    model : cnnkit.Model
    content_layer : str
        The default content layer.
    style_layers : tuple of (name, weight)
        The default style layers and their weights ``lambda_l``.
    mean, std : tuple of 3 floats
        The input normalisation ``(pixel - mean) / std`` for pixels in [0, 1].
    """

    model: Model
    content_layer: str
    style_layers: tuple[tuple[str, float], ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    aliases: dict[str, str] = field(default_factory=dict)
    """Course names (``conv4_2``) of layers the model names otherwise."""

    def layer_names(self) -> list[str]:
        """The names a content or style layer may take (aliases first)."""
        own = [layer.name for layer in _chain(self.model) or _all_layers(self.model)]
        return [*self.aliases, *(n for n in own if n not in self.aliases)]

    def resolve(self, where: str, arg: str, name: Any) -> str:
        """The model's name of layer ``name``, or a ValueError listing the valid names."""
        if not isinstance(name, str):
            raise TypeError(f"{where}: {arg} must be a layer name (str), got {name!r}")
        name = self.aliases.get(name, name)
        if name not in {layer.name for layer in _all_layers(self.model)}:
            raise ValueError(
                f"{where}: {arg} names no layer of network {self.model.name!r}: got {name!r}; "
                f"valid layers: {', '.join(self.layer_names())}"
            )
        return name

    def features(self, names: Sequence[str]) -> Model:
        """A model whose :meth:`~cnnkit.Model.activations` give ``names``, computing no
        layer past the last of them and accepting any image size, when the network is a
        chain of layers (Sequential, or a functional model without branches); the model
        itself otherwise."""
        chain = _chain(self.model)
        if chain is None:
            return self.model
        wanted = set(names)
        last = max(i for i, layer in enumerate(chain) if layer.name in wanted)
        return _Chain(chain[: last + 1], self.model.name)

    def input_size(self) -> tuple[int, int] | None:
        """The (height, width) the model insists on, or None for any size."""
        if _chain(self.model) is not None:
            return None
        shape = getattr(self.model, "_input_shape", None)
        return None if shape is None else (int(shape[0]), int(shape[1]))


class _Chain(Model):
    """Layers of another model applied in order. They are shared, not copied, and not
    tracked (so their seeds and names stay the other model's)."""

    def __init__(self, chain: Sequence[Layer], name: str) -> None:
        super().__init__(name=f"{name}_features", seed=0)
        object.__setattr__(self, "_layers", list(chain))
        self.built = True

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        for layer in self._layers:
            x = layer(x, training=training)
        return x


def _all_layers(model: Model) -> list[Layer]:
    out: list[Layer] = []
    for layer in model.layers:
        if isinstance(layer, InputLayer):
            continue
        out.append(layer)
        if isinstance(layer, Model):
            out.extend(_all_layers(layer))
    return out


def _chain(model: Model) -> list[Layer] | None:
    """The layers of ``model`` in the order data goes through them, when that is a chain
    (nested chains flattened); None for graphs with branches or custom ``call`` methods."""
    from ..models.functional import Functional

    if isinstance(model, Sequential):
        layers = list(model.layers)
    elif isinstance(model, Functional):
        nodes = [n for n in model._graph_nodes if not isinstance(n.layer, InputLayer)]
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            return None
        previous = model.inputs[0]
        for node in nodes:
            if node.args is not previous or not hasattr(node.outputs, "node"):
                return None
            previous = node.outputs
        if previous is not model.outputs[0] or len({id(n.layer) for n in nodes}) != len(nodes):
            return None
        layers = [n.layer for n in nodes]
    else:
        return None
    flat: list[Layer] = []
    for layer in layers:
        if isinstance(layer, Model):
            inner = _chain(layer)
            if inner is None:
                return None
            flat.extend(inner)
        else:
            flat.append(layer)
    return flat


def _is_relu(layer: Layer) -> bool:
    if isinstance(layer, L.ReLU):
        return layer.max_value is None and layer.negative_slope == 0 and layer.threshold == 0
    return isinstance(layer, L.Activation) and layer.activation == "relu"


def vgg_layer_names(model: Model) -> dict[str, str]:
    """Course names of a VGG-shaped chain's layers: ``{"conv4_2": "block4_conv2", ...}``.

    Convolutions are numbered within blocks that pooling layers close; ``convB_I`` is the
    ReLU after the I-th convolution of block B (the convolution itself when the ReLU is
    fused into it), as the course's ``conv4_2`` is a post-ReLU activation; ``poolB`` is the
    B-th pooling layer. Empty when the model is not a chain.
    """
    chain = _chain(model)
    if chain is None:
        return {}
    names: dict[str, str] = {}
    block, index = 1, 0
    for i, layer in enumerate(chain):
        if isinstance(layer, L.Conv2D):
            index += 1
            after = chain[i + 1] if i + 1 < len(chain) else None
            fused = getattr(layer, "activation", None) == "relu"
            target = layer if fused or after is None or not _is_relu(after) else after
            names[f"conv{block}_{index}"] = target.name
        elif hasattr(layer, "pool_size"):  # MaxPooling2D, AveragePooling2D, OnnxPooling
            names[f"pool{block}"] = layer.name
            block, index = block + 1, 0
    return {k: v for k, v in names.items() if k != v}


def from_model(model: Model) -> StyleNetwork:
    """A :class:`StyleNetwork` for a cnnkit model: the defaults of :func:`random_multiscale`
    for a :class:`RandomMultiscale`; the course's VGG recipe when the model has (or, by
    :func:`vgg_layer_names`, maps to) its layers; else no default layers (the caller must
    name them)."""
    if not isinstance(model, Model):
        raise TypeError(f"network must be a cnnkit Model, got {type(model).__name__}")
    if isinstance(model, RandomMultiscale):
        return _multiscale_network(model)
    aliases = vgg_layer_names(model)
    names = {layer.name for layer in _all_layers(model)} | set(aliases)
    recipe = {VGG_CONTENT_LAYER, *(n for n, _ in VGG_STYLE_LAYERS)}
    if recipe <= names:
        return StyleNetwork(model, VGG_CONTENT_LAYER, VGG_STYLE_LAYERS, aliases=aliases)
    return StyleNetwork(model, "", ())  # course names would only confuse a non-VGG model


def load_network(path: Any) -> StyleNetwork:
    """A network from a file: ``.onnx`` through :func:`cnnkit.onnx.load_model` (the ``onnx``
    extra), anything else as a cnnkit model file (:func:`cnnkit.load_model`); with the
    course's VGG recipe when its layers are VGG-shaped (see :func:`from_model`)."""
    where = "load_network()"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):  # it exists: "does not exist" misled
        raise ValueError(f"{where}: network file {path!r} is a folder, not a model file")
    if not os.path.isfile(path):
        raise ValueError(f"{where}: network file {path!r} does not exist")
    if path.lower().endswith(".onnx"):
        try:
            from .. import onnx as onnx_import  # type: ignore[attr-defined]
        except ImportError as exc:
            raise ImportError(
                f"{where}: reading {path!r} needs cnnkit's ONNX importer (cnnkit.onnx, the "
                f"'onnx' extra: pip install 'cnnkit[onnx]'): {exc}"
            ) from None
        # Images go in channels-last, so no transposing layer precedes the first convolution.
        model = onnx_import.load_model(path, input_layout="NHWC")
    else:
        from ..saving.model_files import load_model

        model = load_model(path, compile=False)
    return from_model(model)
