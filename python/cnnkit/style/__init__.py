"""Neural style transfer (Gatys et al.; the course's formulation and normalisations).

Given a content image C and a style image S, :func:`transfer` finds the image G minimising
``J(G) = alpha J_content(C, G) + beta J_style(S, G)`` by gradient descent on its pixels:

* :mod:`cnnkit.style.costs`: :func:`content_cost`, :func:`layer_style_cost`,
  :func:`style_cost`, :func:`total_cost` (and :func:`total_variation`), each documented with
  its formula; Gram matrices on the native ``gram`` / ``gram_backward`` kernels.
* :mod:`cnnkit.style.networks`: the default network of random multi-scale filters (no
  download; Ustyuzhaninov et al., ICLR 2017), VGG-16/19-shaped builders with the course's
  layer names, and loading a network from a file.
* :mod:`cnnkit.style.optimize`: :class:`Objective` (targets computed once; the cost and its
  gradient with respect to the pixels) and :func:`transfer` (Adam or L-BFGS, pixels clipped
  to [0, 1], a progress bar with the costs).

Examples
--------
>>> from cnnkit import style
>>> image = style.transfer(content, style_image, size=256, steps=200)  # uint8 RGB

The command line: ``cnnkit style CONTENT STYLE -o OUT.png --size 256``.
"""

from __future__ import annotations

from .costs import (
    content_cost,
    gram_matrix,
    layer_style_cost,
    style_cost,
    total_cost,
    total_variation,
)
from .images import read_image, write_image
from .networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG_CONTENT_LAYER,
    VGG_STYLE_LAYERS,
    RandomMultiscale,
    StyleNetwork,
    load_network,
    random_multiscale,
    vgg16,
    vgg19,
    vgg_layer_names,
)
from .optimize import Objective, transfer

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG_CONTENT_LAYER",
    "VGG_STYLE_LAYERS",
    "Objective",
    "RandomMultiscale",
    "StyleNetwork",
    "content_cost",
    "gram_matrix",
    "layer_style_cost",
    "load_network",
    "random_multiscale",
    "read_image",
    "style_cost",
    "total_cost",
    "total_variation",
    "transfer",
    "vgg16",
    "vgg19",
    "vgg_layer_names",
    "write_image",
]
