"""Sliding-window detection with a window classifier, plainly or convolutionally.

:func:`sliding_window_detect` crops every window (at several scales), classifies
the crops and keeps the positives after non-max suppression.
:func:`to_fully_convolutional` turns a classifier's Flatten + Dense head into
convolutions, so that one forward pass over a larger image yields the
predictions of all windows at once (the network's total stride apart), sharing
the computation of overlapping windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate, image, ops

__all__ = ["resize_bilinear", "sliding_window_detect", "to_fully_convolutional"]


def resize_bilinear(images: Any, size: Sequence[int]) -> np.ndarray:
    """Resize ``(N, H, W, C)`` images to ``size = (height, width)`` by bilinear interpolation.

    Kept for existing callers: :func:`cnnkit.image.resize` with ``"bilinear"``
    on the images as float32 (the result is float32; uint8 is not rounded).
    Pixel centres are aligned (``align_corners=False``, as OpenCV, PIL and
    torchvision's default), and the image edges are clamped.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"resize_bilinear(): images must have shape (N, H, W, C), got {x.shape}")
    out_h, out_w = (int(v) for v in size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize_bilinear(): size must be positive, got {tuple(size)}")
    return image.resize(x.astype(np.float32, copy=False), (out_h, out_w), "bilinear")


def _positive_scores(probs: np.ndarray, background: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per window: the best non-background class and its probability."""
    if probs.shape[1] == 1:  # a single sigmoid output: the probability of "object"
        return probs[:, 0], np.zeros(len(probs), np.int64)
    masked = probs.copy()
    if background is not None:
        masked[:, background] = -np.inf
    classes = masked.argmax(axis=1)
    return masked[np.arange(len(masked)), classes], classes.astype(np.int64)


def sliding_window_detect(
    classifier: Any,
    image: Any,
    window: int | Sequence[int],
    stride: int | Sequence[int],
    *,
    scales: Sequence[float] = (1.0,),
    score_threshold: float = 0.5,
    iou_threshold: float = 0.3,
    background: int | None = 0,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Detect objects by classifying every window of an image.

    For each scale the image is resized by that factor, every ``window``-sized
    crop ``stride`` pixels apart is classified, and the windows whose best
    non-background class reaches ``score_threshold`` are kept, with their boxes
    mapped back to the original image. Non-max suppression then runs within
    each class.

    Parameters
    ----------
    classifier
        A model with ``predict(crops, batch_size=...)`` taking ``(M, h, w, C)``
        windows and returning class probabilities ``(M, K)`` (``K = 1``: the
        probability of an object).
    image : array_like, shape (H, W, C)
    window, stride : int or (height, width)
        The classifier's input size and the step between windows, in pixels of
        the resized image.
    scales : sequence of float
        Resize factors; a factor below 1 finds objects larger than the window.
    background : int or None
        The class index meaning "no object" (ignored when ``K = 1``).

    Returns
    -------
    dict
        ``{"boxes": (D, 4) xyxy, "scores": (D,), "classes": (D,) int64}`` by
        decreasing score.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(
            f"sliding_window_detect(): image must have shape (H, W, C), got {image.shape}"
        )
    if not scales or any(not (np.isfinite(s) and s > 0) for s in scales):
        raise ValueError(
            f"sliding_window_detect(): scales must be positive numbers, got {tuple(scales)!r}"
        )
    fn = "sliding_window_detect()"
    # A NaN threshold kept no window and an out-of-range background was an IndexError.
    score_threshold = _validate.probability(fn, "score_threshold", score_threshold)
    iou_threshold = _validate.probability(fn, "iou_threshold", iou_threshold)
    if background is not None:
        background = _validate.integer(fn, "background", background, minimum=0)
    all_boxes, all_scores, all_classes = [], [], []
    for scale in scales:
        size = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        scaled = resize_bilinear(image[None], size) if scale != 1 else image[None]
        crops = ops.sliding_windows(scaled, window, stride)[0]
        rows, cols = crops.shape[:2]
        probs = np.asarray(
            classifier.predict(crops.reshape(rows * cols, *crops.shape[2:]), batch_size=batch_size)
        )
        probs = probs.reshape(rows * cols, -1)
        if background is not None and probs.shape[1] > 1 and background >= probs.shape[1]:
            raise ValueError(
                f"{fn}: background must be a class index of the classifier's "
                f"{probs.shape[1]} outputs, got {background}"
            )
        scores, classes = _positive_scores(probs, background)
        keep = scores >= score_threshold
        boxes = ops.window_boxes(size, window, stride).reshape(-1, 4)[keep] / scale
        all_boxes.append(boxes.astype(np.float32))
        all_scores.append(scores[keep].astype(np.float32))
        all_classes.append(classes[keep])
    boxes = np.concatenate(all_boxes)
    scores = np.concatenate(all_scores)
    classes = np.concatenate(all_classes)
    keep = ops.batched_nms(boxes, scores, classes, iou_threshold)
    return {"boxes": boxes[keep], "scores": scores[keep], "classes": classes[keep]}


def _clone(layer: Any, **changes: Any) -> Any:
    """A new layer of the same class and configuration (no declared input shape)."""
    config = {**layer.get_config(), **changes}
    config.pop("input_shape", None)
    config.pop("name", None)
    return type(layer).from_config(config)


def to_fully_convolutional(model: Any) -> Any:
    """The convolutional equivalent of a classifier with a Flatten + Dense head.

    The layers before ``Flatten`` are copied; the first ``Dense`` after it
    becomes a ``Conv2D`` whose kernel covers the whole feature map that
    ``Flatten`` received (its weights reshaped, since channels-last flattening
    is row-major over height, width and channels), and each later ``Dense``
    becomes a 1x1 ``Conv2D``. Dropout, activation and batch-normalisation
    layers of the head act on the last axis, so they are copied as they are.

    On an input of the classifier's size the result outputs ``(N, 1, 1, K)``
    equal to the classifier's ``(N, K)``; on a larger image, one forward pass
    gives the prediction of every window at the network's total stride, in a
    ``(N, rows, cols, K)`` grid, sharing the work of overlapping windows.

    Parameters
    ----------
    model : cnnkit.Sequential
        A built 2-D classifier: convolution, pooling and similar layers, one
        ``Flatten``, then ``Dense`` layers (and layers acting on the last axis).

    Returns
    -------
    cnnkit.Sequential
        A new model with copies of the weights, accepting any image at least
        as large as the classifier's input.
    """
    from .. import layers, models

    fn = "to_fully_convolutional()"
    if not isinstance(model, models.Sequential) or not model.built:
        raise TypeError(
            f"{fn}: model must be a built cnnkit.Sequential, got {type(model).__name__}"
        )
    flat = [i for i, layer in enumerate(model.layers) if isinstance(layer, layers.Flatten)]
    if len(flat) != 1 or flat[0] == 0:
        raise ValueError(f"{fn}: model must have exactly one Flatten, after the feature layers")
    cut = flat[0]
    feature_shape = model.layers[cut - 1].output_shape[1:]
    if len(feature_shape) != 3:
        raise ValueError(
            f"{fn}: Flatten must receive (height, width, channels) feature maps, got "
            f"{feature_shape}"
        )
    new_layers, weights = [], []
    for layer in model.layers[:cut]:
        new_layers.append(_clone(layer))
        weights.append(layer.get_weights())
    first = True
    for layer in model.layers[cut + 1 :]:
        if isinstance(layer, layers.Dense):
            kernel, *bias = layer.get_weights()
            size = feature_shape[:2] if first else (1, 1)
            channels = feature_shape[2] if first else kernel.shape[0]
            new_layers.append(
                layers.Conv2D(
                    layer.units,
                    size,
                    activation=layer.activation,
                    use_bias=layer.use_bias,
                    dtype=layer.dtype.name,
                )
            )
            weights.append([kernel.reshape(*size, channels, layer.units), *bias])
            first = False
        elif isinstance(
            layer,
            (
                layers.Dropout,
                layers.Activation,
                layers.ReLU,
                layers.Softmax,
                layers.BatchNormalization,
            ),
        ):
            new_layers.append(_clone(layer))
            weights.append(layer.get_weights())
        else:
            raise ValueError(
                f"{fn}: cannot convert layer {layer.name!r} ({type(layer).__name__}) after "
                "Flatten; only Dense, Dropout, activations and BatchNormalization are supported"
            )
    converted = models.Sequential(new_layers, name=f"{model.name}_fully_convolutional")
    converted(np.zeros((1, *(model.layers[0]._build_shape or ())), model.dtype))  # builds all
    for layer, values in zip(new_layers, weights):
        layer.set_weights(values)
    return converted
