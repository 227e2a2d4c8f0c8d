"""YOLO with anchor boxes: the network head's parametrisation, the loss and detection.

The network outputs raw values ``t`` of shape ``(N, S_h, S_w, A * (5 + C))``;
per cell and anchor they are ``[t_o, t_x, t_y, t_h, t_w, t_1 .. t_C]`` and mean
(YOLOv2's parametrisation, in the units of :func:`cnnkit.ops.yolo_encode`):

* ``pc = sigmoid(t_o)``, the probability that the cell and anchor hold an object;
* ``bx = sigmoid(t_x)``, ``by = sigmoid(t_y)``: the midpoint within the cell, in [0, 1);
* ``bh = anchor_h * exp(t_h)``, ``bw = anchor_w * exp(t_w)``: the size in cell units,
  the anchor's size (given in pixels) converted to cell units;
* ``softmax(t_1 .. t_C)``: the class probabilities.

:func:`activate` turns raw outputs into that encoded form, which
:func:`cnnkit.ops.yolo_decode` turns into boxes.

:func:`yolo_model` returns a :class:`YoloModel`: a ``Sequential`` that also carries what
detection needs besides the weights (anchors, image size, grid, class names), so a saved
model file is enough to call :func:`detect`. ``YoloModel`` and :class:`YoloLoss` are
registered by name with the model-file loader, so ``cnnkit.load_model(path)`` rebuilds both
without ``custom_objects``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate, ops
from .. import autograd as ag
from ..autograd import Tensor
from ..losses import Loss
from ..models import Sequential
from ..saving import register_serializable

__all__ = ["YoloLoss", "YoloModel", "activate", "detect", "yolo_model"]


def _pair(value: int | Sequence[int], name: str, fn: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair: tuple = (value, value)
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        pair = tuple(value)
    else:  # a float was "'float' object is not iterable"
        raise TypeError(
            f"{fn}(): {name} must be a positive int or (height, width), got "
            f"{type(value).__name__} {value!r}"
        )
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"{fn}(): {name} must be a positive int or (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def _anchors(anchors: Any, fn: str) -> np.ndarray:
    a = np.asarray(anchors, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0 or not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(
            f"{fn}(): anchors must be a non-empty (A, 2) array of positive (width, height) "
            f"pixel sizes, got {np.asarray(anchors).tolist()!r}"
        )
    return a


def _anchor_cells(anchors: np.ndarray, grid: tuple[int, int], image_size: tuple[int, int]):
    """Anchor (height, width) in cell units, shape (A, 2)."""
    cell_h, cell_w = image_size[0] / grid[0], image_size[1] / grid[1]
    return np.stack([anchors[:, 1] / cell_h, anchors[:, 0] / cell_w], axis=1)


def _split(raw_shape: tuple[int, ...], num_anchors: int, fn: str) -> int:
    if len(raw_shape) != 4 or raw_shape[-1] % num_anchors or raw_shape[-1] // num_anchors < 6:
        raise ValueError(
            f"{fn}(): the network output must have shape (N, S_h, S_w, A * (5 + C)) with "
            f"A = {num_anchors} anchors and C >= 1, got {raw_shape}"
        )
    return raw_shape[-1] // num_anchors - 5


@register_serializable(package="cnnkit")
class YoloLoss(Loss):
    """The YOLO training loss, for ``model.compile(loss=YoloLoss(...))``.

    ``loss(y_true, y_pred)`` takes targets from :func:`cnnkit.ops.yolo_encode`
    (batched, ``(N, S_h, S_w, A, 5 + C)``) and raw network outputs
    ``(N, S_h, S_w, A * (5 + C))``, and returns, averaged over the batch,

    * ``lambda_obj`` x logistic loss of ``t_o`` where an object is assigned,
    * ``lambda_noobj`` x logistic loss of ``t_o`` everywhere else,
    * ``lambda_coord`` x squared error of the box where an object is assigned:
      ``(sigmoid(t_x) - bx)^2 + (sigmoid(t_y) - by)^2`` plus the squared error of
      ``t_h, t_w`` against ``log(bh / anchor_h), log(bw / anchor_w)`` (the size
      error in log space, so large and small boxes weigh alike),
    * ``lambda_class`` x cross-entropy (negative log-likelihood) of the class
      where an object is assigned; elsewhere the box and class entries are
      "don't care".

    Parameters
    ----------
    anchors : array_like, shape (A, 2)
        (width, height) in pixels, as given to ``yolo_encode``.
    image_size : int or (height, width)
    lambda_coord, lambda_obj, lambda_noobj, lambda_class : float
        Term weights (YOLOv1's 5 and 0.5 for the box and no-object terms).
    """

    def __init__(
        self,
        anchors: Any,
        image_size: int | Sequence[int],
        *,
        lambda_coord: float = 5.0,
        lambda_obj: float = 1.0,
        lambda_noobj: float = 0.5,
        lambda_class: float = 1.0,
    ) -> None:
        self.anchors = _anchors(anchors, "YoloLoss")
        self.image_size = _pair(image_size, "image_size", "YoloLoss")
        given = {
            "lambda_coord": lambda_coord,
            "lambda_obj": lambda_obj,
            "lambda_noobj": lambda_noobj,
            "lambda_class": lambda_class,
        }
        self.weights = {}
        for name, value in given.items():
            if isinstance(value, (bool, str)) or not isinstance(value, (int, float, np.number)):
                # A string was float()'s "could not convert string to float: 'a'".
                raise TypeError(
                    f"YoloLoss(): {name} must be a finite number >= 0, got "
                    f"{type(value).__name__} {value!r}"
                )
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"YoloLoss(): {name} must be a finite number >= 0, got {value}")
            self.weights[name] = float(value)
        self.name = "yolo_loss"

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        """The batch's loss (a scalar: the terms are summed over cells and averaged over
        the batch here, so the base class's mean leaves it as it is)."""
        y_pred = y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)
        num_anchors = len(self.anchors)
        classes = _split(y_pred.shape, num_anchors, "YoloLoss")
        n, gh, gw, _ = y_pred.shape
        target = np.asarray(y_true.data if isinstance(y_true, Tensor) else y_true)
        if target.shape != (n, gh, gw, num_anchors, 5 + classes):
            raise ValueError(
                "YoloLoss(): y_true must be yolo_encode targets of shape "
                f"{(n, gh, gw, num_anchors, 5 + classes)}, got {target.shape}"
            )
        dtype = y_pred.dtype
        target = target.astype(dtype, copy=False)
        t = y_pred.reshape(n, gh, gw, num_anchors, 5 + classes)
        obj = target[..., 0:1]
        noobj = 1 - obj
        w = {k: dtype.type(v) for k, v in self.weights.items()}

        # Logistic loss on logits: softplus(t) - y t, stable for any t.
        logits = t[..., 0:1]
        bce = ag.softplus(logits) - logits * obj
        objectness = (bce * (w["lambda_obj"] * obj + w["lambda_noobj"] * noobj)).sum()

        sizes = _anchor_cells(self.anchors, (gh, gw), self.image_size).astype(dtype)
        safe = np.where(obj > 0, target[..., 3:5], sizes)  # log of the anchor itself: 0 there
        log_size = np.log(safe / sizes)
        centre = ag.square(ag.sigmoid(t[..., 1:3]) - target[..., 1:3])
        size = ag.square(t[..., 3:5] - log_size)
        box = (ag.concat([centre, size], axis=-1) * obj).sum()

        log_p = ag.log_softmax(t[..., 5:], axis=-1)
        cls = -(log_p * (target[..., 5:] * obj)).sum()

        total = objectness + w["lambda_coord"] * box + w["lambda_class"] * cls
        return total / dtype.type(max(n, 1))

    def get_config(self) -> dict[str, Any]:
        return {
            "anchors": self.anchors.tolist(),
            "image_size": list(self.image_size),
            **self.weights,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> YoloLoss:
        return cls(**config)


@register_serializable(package="cnnkit")
class YoloModel(Sequential):
    """A YOLO network that carries its detection settings into its model file.

    A :class:`cnnkit.Sequential` (build it with :func:`yolo_model`) plus the settings
    :func:`detect` and a drawing need, saved in the model's configuration and restored
    by ``cnnkit.load_model``: ``detect(model, images)`` then needs no anchors copied
    from a training log.

    Parameters
    ----------
    layers, name, seed
        As :class:`cnnkit.Sequential`.
    image_size : (height, width)
        Input size in pixels, the units of ``anchors``.
    grid : (S_h, S_w)
        The output grid.
    anchors : array_like, shape (A, 2), optional
        (width, height) in pixels, as given to :func:`cnnkit.ops.yolo_encode`; None
        until they are chosen (set ``model.anchors`` before :func:`detect` or saving).
    class_names : sequence of str, optional
        One name per class, in class-index order.
    """

    def __init__(
        self,
        layers: Sequence[Any] | None = None,
        name: str | None = None,
        seed: int | None = None,
        *,
        image_size: int | Sequence[int],
        grid: int | Sequence[int],
        anchors: Any = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, name=name, seed=seed, **kwargs)
        self.image_size = _pair(image_size, "image_size", "YoloModel")
        self.grid = _pair(grid, "grid", "YoloModel")
        self.anchors = None if anchors is None else _anchors(anchors, "YoloModel")
        if class_names is not None:
            if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
                raise TypeError(
                    f"YoloModel(): class_names must be a sequence of str, got {class_names!r}"
                )
            class_names = tuple(class_names)
        self.class_names: tuple[str, ...] | None = class_names

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "image_size": list(self.image_size),
            "grid": list(self.grid),
            "anchors": None if self.anchors is None else self.anchors.tolist(),
            "class_names": None if self.class_names is None else list(self.class_names),
        }


def activate(raw: Any, anchors: Any, image_size: int | Sequence[int]) -> np.ndarray:
    """Raw network outputs ``(N, S_h, S_w, A * (5 + C))`` to the encoded form.

    Returns
    -------
    numpy.ndarray, shape (N, S_h, S_w, A, 5 + C)
        ``[pc, bx, by, bh, bw, p_1 .. p_C]`` as :func:`cnnkit.ops.yolo_encode` writes
        them, ready for :func:`cnnkit.ops.yolo_decode`.
    """
    a = _anchors(anchors, "activate")
    size = _pair(image_size, "image_size", "activate")
    t = np.asarray(raw.data if isinstance(raw, Tensor) else raw)
    classes = _split(t.shape, len(a), "activate")
    n, gh, gw, _ = t.shape
    t = t.reshape(n, gh, gw, len(a), 5 + classes)
    out = np.empty_like(t)
    out[..., 0:3] = ag.sigmoid(t[..., 0:3]).data
    sizes = _anchor_cells(a, (gh, gw), size).astype(t.dtype)
    out[..., 3:5] = sizes * np.exp(np.minimum(t[..., 3:5], 30))  # exp(30) cells: no overflow
    out[..., 5:] = ag.softmax(t[..., 5:]).data
    return out


def detect(
    model: Any,
    images: Any,
    *,
    anchors: Any = None,
    score_threshold: float = 0.6,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    batch_size: int = 32,
) -> list[dict[str, np.ndarray]]:
    """Run a YOLO model and keep its best boxes.

    For each image: activate the raw output (:func:`activate`), keep the cell
    and anchor entries whose score ``pc * max class probability`` reaches
    ``score_threshold`` (:func:`cnnkit.ops.yolo_decode`), then non-max
    suppression separately for each class, best ``max_detections`` kept.

    Parameters
    ----------
    model
        Any model with ``predict(images, batch_size=...)`` returning raw outputs
        ``(N, S_h, S_w, A * (5 + C))``.
    images : array_like, shape (N, H, W, channels)
    anchors : array_like, shape (A, 2), optional
        (width, height) in pixels, as used for training; by default the model's own
        (``model.anchors`` of a :class:`YoloModel`, restored by ``cnnkit.load_model``).

    Returns
    -------
    list of dict
        Per image ``{"boxes": (K, 4) xyxy pixels, "scores": (K,), "classes": (K,) int64}``,
        by decreasing score: the format :func:`cnnkit.detection.evaluate` takes.
    """
    if anchors is None:
        anchors = getattr(model, "anchors", None)
        if anchors is None:
            raise ValueError(
                "detect(): anchors must be given when the model does not carry them (a "
                "YoloModel from yolo_model(..., anchors=...) or loaded from its file does)"
            )
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"detect(): images must have shape (N, H, W, C), got {images.shape}")
    if not 0 <= score_threshold <= 1 or not 0 <= iou_threshold <= 1:
        raise ValueError(
            "detect(): score_threshold and iou_threshold must lie in [0, 1], got "
            f"{score_threshold} and {iou_threshold}"
        )
    if not isinstance(max_detections, (int, np.integer)) or max_detections < 1:
        raise ValueError(f"detect(): max_detections must be a positive int, got {max_detections!r}")
    size = images.shape[1:3]
    encoded = activate(model.predict(images, batch_size=batch_size), anchors, size)
    results = []
    for y in encoded:
        boxes, scores, classes = ops.yolo_decode(
            y, anchors=anchors, image_size=size, score_threshold=score_threshold
        )
        keep = ops.batched_nms(boxes, scores, classes, iou_threshold, max_output=max_detections)
        results.append({"boxes": boxes[keep], "scores": scores[keep], "classes": classes[keep]})
    return results


def yolo_model(
    input_shape: Sequence[int] = (64, 64, 3),
    *,
    num_anchors: int | None = None,
    num_classes: int | None = None,
    anchors: Any = None,
    class_names: Sequence[str] | None = None,
    width: int = 16,
    downsamples: int = 3,
    seed: int | None = 0,
) -> YoloModel:
    """A small YOLO network: an ``S x S`` grid with ``A`` anchors and ``C`` classes.

    ``downsamples`` blocks of 3x3 convolution, batch normalisation, leaky ReLU
    and 2x2 max pooling (the channels double from ``width`` at each block), two
    more such blocks without pooling, then a 1x1 convolution to
    ``A * (5 + C)`` raw outputs per cell, so ``S = input / 2 ** downsamples``.
    The objectness biases start at ``logit(0.01)``.

    ``anchors`` (pixels, ``(A, 2)``) and ``class_names`` are stored in the model (and
    so in its file) for :func:`detect`; they give ``num_anchors`` and ``num_classes``
    when those are omitted.

    Returns
    -------
    YoloModel
        Output ``(N, S_h, S_w, A * (5 + C))``, raw (see :func:`activate`).
    """
    from .. import layers

    fn = "yolo_model()"
    if anchors is not None:
        anchors = _anchors(anchors, "yolo_model")
        if num_anchors is None:
            num_anchors = len(anchors)
        elif num_anchors != len(anchors):
            raise ValueError(
                f"{fn}: num_anchors is {num_anchors!r} but {len(anchors)} anchors are given"
            )
    if class_names is not None:
        if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
            raise TypeError(f"{fn}: class_names must be a sequence of str, got {class_names!r}")
        if num_classes is None:
            num_classes = len(class_names)
        elif num_classes != len(class_names):
            raise ValueError(
                f"{fn}: num_classes is {num_classes!r} but {len(class_names)} class names are given"
            )
    for name, value, source in (
        ("num_anchors", num_anchors, " (or give anchors)"),
        ("num_classes", num_classes, " (or give class_names)"),
        ("width", width, ""),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{fn}: {name} must be a positive int{source}, got {value!r}")
    num_anchors, num_classes = int(num_anchors), int(num_classes)  # type: ignore[arg-type]
    # int(v) of each entry took 64.5 as 64; an int was "'int' object is not iterable".
    shape = _validate.shape(fn, "input_shape", input_shape)
    # Bounded before 2 ** downsamples is formed: 2 ** (2**31) alone ran for minutes.
    downsamples = _validate.integer(fn, "downsamples", downsamples, minimum=0, maximum=62)
    scale = 2**downsamples
    if len(shape) != 3 or shape[0] % scale or shape[1] % scale:
        raise ValueError(
            f"{fn}: input_shape must be (height, width, channels) with height and width "
            f"divisible by 2 ** downsamples = {scale}, got {tuple(input_shape)}"
        )
    stack: list[Any] = [layers.Input(shape)]
    filters = width
    for block in range(downsamples + 2):
        stack += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.Activation("leaky_relu"),
        ]
        if block < downsamples:
            stack.append(layers.MaxPooling2D(2))
            filters *= 2
    head = layers.Conv2D(num_anchors * (5 + num_classes), 1)
    stack.append(head)
    model = YoloModel(
        stack,
        name="yolo",
        seed=seed,
        image_size=shape[:2],
        grid=(shape[0] // scale, shape[1] // scale),
        anchors=anchors,
        class_names=class_names,
    )
    # Start every objectness at probability 0.01: most anchors hold no object, and
    # starting at 0.5 makes the no-object term swamp the first updates.
    kernel, bias = head.get_weights()
    bias.reshape(num_anchors, 5 + num_classes)[:, 0] = np.log(0.01 / 0.99)
    head.set_weights([kernel, bias])
    return model
