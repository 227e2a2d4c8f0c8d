"""Style transfer by descent on the pixels of the generated image.

:class:`Objective` holds the targets (the content image's activations at the content layer,
the style image's Gram matrices at the style layers), computed once, and evaluates
``J(G)`` and its gradient with respect to the image: the image is normalised, sent through
the network's layers up to the deepest one used (:meth:`cnnkit.Model.activations`, which
passes gradients back to its input), the costs of :mod:`cnnkit.style.costs` are summed and
one backward pass reaches the pixels. :func:`transfer` starts from the content image with
noise (as the course does), from noise, or from the content image, and updates the pixels
with Adam (cnnkit's optimizer) or L-BFGS (:mod:`cnnkit.style.lbfgs`), clipping them to
[0, 1] after every step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _validate
from .. import autograd as ag
from ..autograd import Tensor
from ..models import Model
from .costs import _gram_cost, content_cost, gram_matrix, style_weights, total_variation
from .images import resize_rgb, to_rgb, to_uint8
from .lbfgs import LBFGSState, iterate
from .networks import StyleNetwork, from_model, load_network, random_multiscale

__all__ = ["Objective", "transfer"]

INITS = ("noisy-content", "noise", "content")
OPTIMIZERS = ("adam", "lbfgs")
NOISE = 0.25
"""Half-width of the uniform noise added to the content image by ``init="noisy-content"``
(the course's TensorFlow 2 notebook: ``uniform(-0.25, 0.25)``, then clipped)."""


def as_network(network: Any, where: str) -> StyleNetwork:
    """``network`` (None, a :class:`StyleNetwork`, a cnnkit Model or a file path) as a
    :class:`StyleNetwork`."""
    if network is None:
        return random_multiscale()
    if isinstance(network, StyleNetwork):
        return network
    if isinstance(network, Model):
        return from_model(network)
    if isinstance(network, str) or hasattr(network, "__fspath__"):
        return load_network(network)
    raise TypeError(
        f"{where}: network must be None, a StyleNetwork, a cnnkit Model or a model file path, "
        f"got {type(network).__name__}"
    )


class Objective:
    """``J(G) = alpha J_content + beta J_style + tv_weight TV`` for one content image and one
    style image on one network, with the targets computed once.

    Parameters
    ----------
    network : StyleNetwork
    content, style : numpy.ndarray, (H, W, 3) float in [0, 1]
        Same size (the generated image's size).
    content_layer : str, optional
        Defaults to the network's.
    style_layers : list of (name, weight) or of names, optional
        Defaults to the network's.
    alpha, beta, tv_weight : float
        Non-negative weights; a zero weight skips its term (and its layers).

    Calling it on an image ``(H, W, 3)`` returns ``(J, gradient, parts)``: the cost as a float,
    its gradient with respect to the pixels (the image's shape and dtype) and the terms
    ``{"content", "style", "tv", "total"}`` unweighted (``total`` weighted).
    """

    def __init__(
        self,
        network: StyleNetwork,
        content: np.ndarray,
        style: np.ndarray,
        *,
        content_layer: str | None = None,
        style_layers: Any = None,
        alpha: float = 10.0,
        beta: float = 40.0,
        tv_weight: float = 0.0,
        where: str = "Objective()",
    ) -> None:
        self.alpha = _validate.real(where, "alpha", alpha, low=0.0)
        self.beta = _validate.real(where, "beta", beta, low=0.0)
        self.tv_weight = _validate.real(where, "tv_weight", tv_weight, low=0.0)
        if self.alpha == self.beta == self.tv_weight == 0:
            raise ValueError(f"{where}: alpha, beta and tv_weight are all 0: nothing to optimise")
        fn = where.rstrip("()")
        if content_layer is None:
            content_layer = network.content_layer
            if not content_layer:
                raise ValueError(
                    f"{where}: content_layer must be given for network "
                    f"{network.model.name!r}; valid layers: {', '.join(network.layer_names())}"
                )
        if style_layers is None:
            style_layers = network.style_layers
            if not style_layers:
                raise ValueError(
                    f"{where}: style_layers must be given for network "
                    f"{network.model.name!r}; valid layers: {', '.join(network.layer_names())}"
                )
        self.content_layer = network.resolve(where, "content_layer", content_layer)
        self.style_layers = [
            (network.resolve(where, "style_layers", name), weight)
            for name, weight in style_weights(fn, style_layers)
        ]
        self.network = network
        names = [self.content_layer] if self.alpha > 0 else []
        if self.beta > 0:
            names += [n for n, _ in self.style_layers if n not in names]
        self.names = names
        self.features = network.features(names) if names else None
        self.dtype = np.dtype(network.model.dtype)
        self._mean = np.asarray(network.mean, self.dtype)
        self._inv_std = 1 / np.asarray(network.std, self.dtype)
        self.content_target: np.ndarray | None = None
        self.style_targets: dict[str, np.ndarray] = {}
        with ag.no_grad():
            if self.alpha > 0:
                acts = self._activations(Tensor(self._batch(content)), [self.content_layer])
                self.content_target = acts[self.content_layer].data
            if self.beta > 0:
                style_names = [n for n, _ in self.style_layers]
                acts = self._activations(Tensor(self._batch(style)), style_names)
                self.style_targets = {n: gram_matrix(acts[n]).data for n in style_names}

    def _batch(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(image, self.dtype).reshape(1, *np.shape(image)[-3:])

    def _activations(self, image: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        assert self.features is not None
        x = (image - self._mean) * self._inv_std
        return self.features.activations(x, list(dict.fromkeys(names)))

    def cost(self, image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``J`` of a ``(1, H, W, 3)`` image tensor (differentiable) and its unweighted terms."""
        parts: dict[str, Tensor] = {}
        zero = Tensor(np.zeros((), self.dtype))
        acts = self._activations(image, self.names) if self.names else {}
        total = zero
        if self.alpha > 0:
            parts["content"] = content_cost(self.content_target, acts[self.content_layer])
            total = total + parts["content"] * self.alpha
        if self.beta > 0:
            style = zero
            for name, weight in self.style_layers:
                style = style + _gram_cost(self.style_targets[name], acts[name]) * weight
            parts["style"] = style
            total = total + style * self.beta
        if self.tv_weight > 0:
            parts["tv"] = total_variation(image)
            total = total + parts["tv"] * self.tv_weight
        return total, parts

    def __call__(self, image: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        g = Tensor(self._batch(image), requires_grad=True)
        # The weights take no gradient here: the convolutions' backward then computes the
        # input gradient alone (the weight gradients would cost as much again).
        weights = self.network.model.weights
        flags = [w.requires_grad for w in weights]
        try:
            for w in weights:
                w.requires_grad = False
            total, parts = self.cost(g)
            total.backward()
        finally:
            for w, flag in zip(weights, flags):
                w.requires_grad = flag
        assert g.grad is not None
        values = {k: float(v.item()) for k, v in parts.items()}
        values["total"] = float(total.item())
        return values["total"], g.grad.reshape(np.shape(image)), values


def _target_size(where: str, size: Any, shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = int(shape[0]), int(shape[1])
    if size is None:
        return h, w
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"{where}: size must be an int or (height, width), got {size!r}")
        return (
            _validate.integer(where, "size", size[0], minimum=1),
            _validate.integer(where, "size", size[1], minimum=1),
        )
    longest = _validate.integer(where, "size", size, minimum=1)
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def transfer(
    content: Any,
    style: Any,
    *,
    network: Any = None,
    content_layer: str | None = None,
    style_layers: Any = None,
    alpha: float = 10.0,
    beta: float = 40.0,
    tv_weight: float = 0.0,
    steps: int = 200,
    optimizer: str = "adam",
    learning_rate: float = 0.02,
    init: str = "noisy-content",
    size: Any = None,
    seed: int = 0,
    callback: Callable[[int, np.ndarray, dict[str, float]], Any] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Neural style transfer: the image ``G`` minimising
    ``alpha J_content(C, G) + beta J_style(S, G) (+ tv_weight TV(G))``.

    Parameters
    ----------
    content, style : array_like or path
        RGB images ``(H, W, 3)``, uint8 or float in [0, 1], or image files (Pillow, the
        ``image`` extra). Grayscale and RGBA inputs are converted with a warning; a style
        image of another size than the content image is resized to it, with a warning.
    network : None, StyleNetwork, cnnkit Model or path
        None: :func:`~cnnkit.style.random_multiscale` (random filters, no download). A model
        or a model file (``.onnx`` through :mod:`cnnkit.onnx`, else a cnnkit model file)
        gets the course's VGG recipe when it is VGG-shaped (content ``conv4_2``; style
        ``conv1_1`` ... ``conv5_1``, 0.2 each), with ImageNet mean/std normalisation.
    content_layer, style_layers
        Override the network's layers: a name, and ``[(name, lambda), ...]`` or names
        (equal weights). An unknown name raises ValueError listing the valid ones.
    alpha, beta, tv_weight : float
        Weights of the terms (the course's ``alpha = 10``, ``beta = 40``); finite, >= 0.
        ``alpha=0`` synthesises the style image's texture alone.
    steps : int
        Iterations (Adam steps, or L-BFGS iterations of one or more evaluations).
    optimizer : {"adam", "lbfgs"}
    learning_rate : float
        Adam's step size in pixel units ([0, 1] range); unused by L-BFGS.
    init : {"noisy-content", "noise", "content"}
        The starting image: the content image plus uniform noise in +-0.25 (the course),
        uniform noise in [0, 1], or the content image.
    size : int or (height, width), optional
        Resize the content image first: an int sets its longer side. The generated image
        has the content image's (resized) size.
    seed : int
        Seeds the initial noise.
    callback : callable, optional
        ``callback(step, image, costs)`` after every step, with the current image as uint8
        RGB and the costs before the step (``content``, ``style``, ``tv``, ``total``).
    progress : bool
        Show a tqdm progress bar with the costs.

    Returns
    -------
    numpy.ndarray, (H, W, 3) uint8
        The generated image, RGB.
    """
    where = "transfer()"
    net = as_network(network, where)
    steps = _validate.integer(where, "steps", steps, minimum=0)
    optimizer = _validate.choice(where, "optimizer", optimizer, OPTIMIZERS)
    init = _validate.choice(where, "init", init, INITS)
    lr = _validate.real(where, "learning_rate", learning_rate, low=0.0, low_open=True)
    rng = _validate.generator(where, seed)
    if callback is not None and not callable(callback):
        raise TypeError(f"{where}: callback must be callable, got {type(callback).__name__}")
    c = to_rgb(content, where=where, arg="content")
    s = to_rgb(style, where=where, arg="style")
    target = _target_size(where, size, c.shape)
    fixed = net.input_size()
    if fixed is not None and fixed != target:
        warnings.warn(
            f"{where}: network {net.model.name!r} takes {fixed[0]}x{fixed[1]} images; the "
            f"images are resized to that size",
            UserWarning,
            stacklevel=2,
        )
        target = fixed
    if s.shape[:2] != c.shape[:2]:
        warnings.warn(
            f"{where}: the style image ({s.shape[0]}x{s.shape[1]}) and the content image "
            f"({c.shape[0]}x{c.shape[1]}) differ in size; the style image is resized to "
            f"{target[0]}x{target[1]}",
            UserWarning,
            stacklevel=2,
        )
    c, s = resize_rgb(c, target), resize_rgb(s, target)
    objective = Objective(
        net,
        c,
        s,
        content_layer=content_layer,
        style_layers=style_layers,
        alpha=alpha,
        beta=beta,
        tv_weight=tv_weight,
        where=where,
    )
    dtype = objective.dtype
    if init == "noise":
        x = rng.uniform(0, 1, c.shape)
    elif init == "noisy-content":
        x = np.clip(c + rng.uniform(-NOISE, NOISE, c.shape), 0, 1)
    else:
        x = c
    x = np.array(x, dtype=dtype)
    run = _adam if optimizer == "adam" else _lbfgs
    return to_uint8(run(objective, x, steps, lr, callback, progress))


def _checked(costs: dict[str, float], step: int) -> dict[str, float]:
    if not math.isfinite(costs["total"]):
        raise FloatingPointError(
            f"transfer(): the cost became {costs['total']} at step {step}; lower the "
            "learning rate or the weights"
        )
    return costs


def _bar(steps: int, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="style transfer", unit="step", disable=not progress)


def _show(bar: Any, costs: dict[str, float]) -> None:
    bar.set_postfix({k: f"{v:.4g}" for k, v in costs.items()}, refresh=False)
    bar.update(1)


def _adam(
    objective: Objective,
    x: np.ndarray,
    steps: int,
    lr: float,
    callback: Callable[..., Any] | None,
    progress: bool,
) -> np.ndarray:
    from ..optimizers import Adam

    image = Tensor(x)  # Adam updates image.data in place
    opt = Adam(learning_rate=lr)
    with _bar(steps, progress) as bar:
        for step in range(steps):
            _, grad, costs = objective(image.data)
            _checked(costs, step)
            opt.apply_gradients([(grad, image)])
            np.clip(image.data, 0, 1, out=image.data)
            _show(bar, costs)
            if callback is not None:
                callback(step, to_uint8(image.data), costs)
    return image.data


def _lbfgs(
    objective: Objective,
    x: np.ndarray,
    steps: int,
    lr: float,
    callback: Callable[..., Any] | None,
    progress: bool,
) -> np.ndarray:
    evaluated: list[dict[str, float]] = []

    def fun(image: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad, costs = objective(image)
        evaluated.append(costs)
        return value, grad

    x = np.clip(x, 0, 1)
    value, grad = fun(x)
    state = LBFGSState(x, value, grad, memory=10)
    costs = _checked(evaluated[-1], 0)
    with _bar(steps, progress) as bar:
        for step in range(steps):
            if iterate(fun, state):
                costs = _checked(evaluated[-1], step)
            _show(bar, costs)
            if callback is not None:
                callback(step, to_uint8(state.x), costs)
    return state.x
