"""The costs of neural style transfer, with the course's normalisations.

For activations ``a`` of shape ``(1, nH, nW, nC)`` (a batch of one image, channels-last; a
larger batch sums over its images):

* content: ``J_content(C, G) = 1 / (4 nH nW nC) * sum (a_C - a_G)^2``
* style of one layer: ``J_style^l(S, G) = 1 / (2 nH nW nC)^2 * ||Gram(a_S) - Gram(a_G)||_F^2``
  with ``Gram(a) = F^T F`` for the activations reshaped to ``F`` of shape ``(nH nW, nC)``
  (the course writes ``G = A A^T`` with ``A = F^T``: the same ``nC x nC`` matrix)
* style: ``J_style(S, G) = sum_l lambda_l J_style^l(S, G)``
* total: ``J(G) = alpha J_content(C, G) + beta J_style(S, G) + tv_weight TV(G)``
* total variation (an optional smoothness term, not in the course): the mean squared
  difference of vertically adjacent pixels plus that of horizontally adjacent pixels.

The Gram matrices come from the native ``gram`` / ``gram_backward`` kernels
(:func:`cnnkit.autograd.gram`). They are computed divided by ``nH nW nC``
(``normalize="size"``), which gives the same cost, since ``(2 nH nW nC)^2 = 4 (nH nW nC)^2``,
and keeps the float32 entries of the matrices near the size of one activation product
instead of ``nH nW`` times it.

Every function takes arrays or :class:`~cnnkit.autograd.Tensor` objects and returns a
0-d :class:`~cnnkit.autograd.Tensor` (``.item()`` for a float): gradients flow to the
generated image's activations when they require them. Targets (``a_C``, ``a_S``) are
constants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _validate
from .. import autograd as ag
from ..autograd import Tensor

__all__ = [
    "content_cost",
    "gram_matrix",
    "layer_style_cost",
    "style_cost",
    "style_weights",
    "total_cost",
    "total_variation",
]


def _pair(fn: str, a_target: Any, a_generated: Any) -> tuple[Tensor, Tensor]:
    target = a_target if isinstance(a_target, Tensor) else Tensor(np.asarray(a_target))
    generated = a_generated if isinstance(a_generated, Tensor) else Tensor(a_generated)
    for name, t in (("first argument", target), ("a_G", generated)):
        if t.ndim not in (3, 4) or t.dtype.kind != "f":
            raise ValueError(
                f"{fn}(): {name} must be float activations of shape (nH, nW, nC) or "
                f"(N, nH, nW, nC), got {t.dtype} of shape {t.shape}"
            )
    if target.shape != generated.shape:
        raise ValueError(
            f"{fn}(): the activations must have the same shape, got {target.shape} and "
            f"{generated.shape}"
        )
    if target.ndim == 3:
        target, generated = target.reshape(1, *target.shape), generated.reshape(1, *generated.shape)
    return target, generated


def content_cost(a_C: Any, a_G: Any) -> Tensor:
    """``1 / (4 nH nW nC) * sum (a_C - a_G)^2``: the course's content cost.

    Parameters
    ----------
    a_C, a_G : array_like or Tensor, shape (nH, nW, nC) or (N, nH, nW, nC), float
        Activations of one layer for the content image and the generated image.

    Returns
    -------
    Tensor
        A 0-d tensor; its gradient flows to ``a_G`` when that requires one.
    """
    target, generated = _pair("content_cost", a_C, a_G)
    _, h, w, c = target.shape
    diff = generated - target.data
    return (diff * diff).sum() * (1.0 / (4.0 * h * w * c))


def gram_matrix(a: Any) -> Tensor:
    """``Gram(a) / (nH nW nC)`` per image: ``(N, nH, nW, nC) -> (N, nC, nC)``, the scaled
    style matrix the costs compare (native kernels forward and backward)."""
    t = a if isinstance(a, Tensor) else Tensor(np.asarray(a))
    return ag.gram(t, normalize="size")


def _gram_cost(gram_S: np.ndarray, a_G: Tensor) -> Tensor:
    # With both Grams divided by nH nW nC, ||.||^2 / 4 is the course's 1 / (2 nH nW nC)^2 form.
    diff = gram_matrix(a_G) - gram_S
    return (diff * diff).sum() * 0.25


def layer_style_cost(a_S: Any, a_G: Any) -> Tensor:
    """``1 / (2 nH nW nC)^2 * ||Gram(a_S) - Gram(a_G)||_F^2``: the course's style cost of
    one layer, ``Gram(a) = F^T F`` over the ``nH nW`` positions.

    Parameters
    ----------
    a_S, a_G : array_like or Tensor, shape (nH, nW, nC) or (N, nH, nW, nC), float
        Activations of one layer for the style image and the generated image.

    Returns
    -------
    Tensor
        A 0-d tensor; its gradient flows to ``a_G`` when that requires one.
    """
    target, generated = _pair("layer_style_cost", a_S, a_G)
    return _gram_cost(gram_matrix(target.data).data, generated)


def style_weights(fn: str, style_layers: Any) -> list[tuple[str, float]]:
    """``style_layers`` as ``[(name, lambda), ...]``: pairs as given, or bare names with
    equal weights summing to 1. Weights must be finite and non-negative."""
    if isinstance(style_layers, str) or not isinstance(style_layers, (Sequence, Mapping)):
        raise TypeError(
            f"{fn}(): style_layers must be a list of layer names or of (name, weight) pairs, "
            f"got {style_layers!r}"
        )
    items = list(style_layers.items()) if isinstance(style_layers, Mapping) else style_layers
    if not items:
        raise ValueError(f"{fn}(): style_layers must name at least one layer, got {items!r}")
    pairs: list[tuple[str, float]] = []
    for item in items:
        if isinstance(item, str):
            pairs.append((item, 1.0 / len(items)))
            continue
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str):
            raise TypeError(
                f"{fn}(): style_layers must hold layer names or (name, weight) pairs, got {item!r}"
            )
        weight = _validate.real(fn + "()", f"the weight of style layer {item[0]!r}", item[1])
        if weight < 0:
            raise ValueError(
                f"{fn}(): the weight of style layer {item[0]!r} in style_layers must be >= 0, "
                f"got {weight}"
            )
        pairs.append((item[0], weight))
    return pairs


def style_cost(a_S: Mapping[str, Any], a_G: Mapping[str, Any], style_layers: Any) -> Tensor:
    """``sum_l lambda_l J_style^l(S, G)`` over ``style_layers``.

    Parameters
    ----------
    a_S, a_G : dict of layer name -> activations
        The style image's and the generated image's activations of (at least) the layers
        of ``style_layers``.
    style_layers : list of (name, lambda) pairs, or of names (equal weights summing to 1)
        As the course's ``STYLE_LAYERS = [("conv1_1", 0.2), ..., ("conv5_1", 0.2)]``.
    """
    total: Tensor | None = None
    for name, weight in style_weights("style_cost", style_layers):
        for arg, acts in (("a_S", a_S), ("a_G", a_G)):
            if name not in acts:
                raise ValueError(
                    f"style_cost(): {arg} has no activations of layer {name!r}; it has "
                    f"{sorted(acts)}"
                )
        term = layer_style_cost(a_S[name], a_G[name]) * weight
        total = term if total is None else total + term
    assert total is not None
    return total


def total_variation(image: Any) -> Tensor:
    """Mean squared difference of vertically adjacent pixels plus that of horizontally
    adjacent ones, for images ``(H, W, C)`` or ``(N, H, W, C)``: a smoothness penalty that
    damps the high-frequency noise the optimisation can leave (squared, so differentiable
    everywhere, which L-BFGS's line search needs)."""
    t = image if isinstance(image, Tensor) else Tensor(np.asarray(image))
    if t.ndim == 3:
        t = t.reshape(1, *t.shape)
    if t.ndim != 4:
        raise ValueError(
            f"total_variation(): image must have shape (H, W, C) or (N, H, W, C), got {t.shape}"
        )
    if t.size == 0:  # the means below would divide by zero
        raise ValueError(f"total_variation(): image must not be empty, got shape {t.shape}")
    cost = Tensor(np.zeros((), t.dtype))
    if t.shape[1] > 1:
        dy = t[:, 1:] - t[:, :-1]
        cost = cost + (dy * dy).mean()
    if t.shape[2] > 1:
        dx = t[:, :, 1:] - t[:, :, :-1]
        cost = cost + (dx * dx).mean()
    return cost


def total_cost(
    J_content: Any,
    J_style: Any,
    alpha: float = 10.0,
    beta: float = 40.0,
    *,
    tv: Any = None,
    tv_weight: float = 0.0,
) -> Tensor:
    """``alpha J_content + beta J_style (+ tv_weight TV)``; the course's defaults
    ``alpha = 10``, ``beta = 40``. Weights must be finite and non-negative."""
    a = _weight("total_cost", "alpha", alpha)
    b = _weight("total_cost", "beta", beta)
    w = _weight("total_cost", "tv_weight", tv_weight)
    jc = J_content if isinstance(J_content, Tensor) else Tensor(np.asarray(J_content))
    out = jc * a + J_style * b
    if w and tv is not None:
        out = out + tv * w
    return out


def _weight(fn: str, arg: str, value: Any) -> float:
    return _validate.real(f"{fn}()", arg, value, low=0.0)
