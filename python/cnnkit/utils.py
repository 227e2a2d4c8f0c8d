"""Keras's small utilities: :func:`to_categorical`, :func:`normalize`,
:func:`set_random_seed` and :func:`plot_model` (a text drawing of the layer stack,
or a PNG of it with Pillow)."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _random, _validate

__all__ = ["normalize", "plot_model", "set_random_seed", "to_categorical"]


def to_categorical(x: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """One-hot rows (float32) for integer class labels, as ``keras.utils.to_categorical``.

    Parameters
    ----------
    x : array_like of int
        Class indices, any shape; a trailing axis of size 1 is dropped first.
    num_classes : int, optional
        Defaults to ``max(x) + 1``.

    Returns
    -------
    numpy.ndarray of shape ``x.shape + (num_classes,)``
    """
    f = "to_categorical()"
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{f}: x must hold integer class labels, got dtype {a.dtype}")
    if a.size and (np.any(a != np.floor(a)) or a.min() < 0):
        raise ValueError(f"{f}: x must hold integer class labels >= 0")
    if a.ndim > 1 and a.shape[-1] == 1:
        a = a[..., 0]
    labels = a.astype(np.int64)
    top = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        num_classes = top
    else:
        num_classes = _validate.integer(f, "num_classes", num_classes, minimum=1)
        if top > num_classes:
            raise ValueError(
                f"{f}: x holds the label {top - 1}, which needs num_classes > {top - 1}, "
                f"got num_classes={num_classes}"
            )
    out = np.zeros((*labels.shape, num_classes), np.float32)
    np.put_along_axis(out, labels[..., None], 1.0, axis=-1)
    return out


def normalize(x: ArrayLike, axis: int = -1, order: int = 2) -> np.ndarray:
    """``x`` divided by its ``order``-norm along ``axis`` (zero vectors stay zero), as
    ``keras.utils.normalize``."""
    f = "normalize()"
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{f}: x must be numeric, got dtype {a.dtype}")
    axis = _validate.integer(f, "axis", axis)
    if a.ndim and not -a.ndim <= axis < a.ndim:
        raise ValueError(f"{f}: axis must be in [{-a.ndim}, {a.ndim}) for x of shape {a.shape}")
    order = _validate.integer(f, "order", order, minimum=1)
    a = a.astype(np.result_type(a.dtype, np.float32), copy=False)
    norm = np.atleast_1d(np.linalg.norm(a, order, axis, keepdims=True))
    norm[norm == 0] = 1
    return a / norm


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and cnnkit's own generator.

    Models and layers created afterwards without a ``seed`` draw theirs from cnnkit's
    generator, so the same script gives the same initial weights, dropout masks and
    shuffling; a model given its own ``seed`` is not affected.
    """
    seed = _validate.integer("set_random_seed()", "seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (Keras seeds the legacy global too)
    _random.set_seed(seed)


def _layer_rows(model: Any, expand_nested: bool, depth: int = 0) -> list[tuple[Any, int]]:
    rows = []
    for layer in model._layers:
        rows.append((layer, depth))
        if expand_nested and getattr(layer, "_layers", None):
            rows.extend(_layer_rows(layer, expand_nested, depth + 1))
    return rows


def _graph_boxes(
    model: Any,
    show_shapes: bool,
    show_dtype: bool,
    show_layer_names: bool,
    expand_nested: bool,
    show_trainable: bool,
) -> list[tuple[int, list[str]]]:
    """(nesting depth, text lines) of each box, top to bottom."""
    boxes: list[tuple[int, str, str, Any, Any]] = []
    input_shape = getattr(model, "_input_shape", None)
    if input_shape is not None:
        boxes.append((0, "Input", f"(None, {', '.join(map(str, input_shape))})", None, None))
    for layer, depth in _layer_rows(model, expand_nested):
        title = type(layer).__name__
        if show_layer_names:
            title = f"{layer.name} ({title})"
        shape = layer._output_shape
        boxes.append(
            (
                depth,
                title,
                "?" if shape is None else str(shape),
                layer.dtype.name,
                "Y" if layer.trainable else "N",
            )
        )
    out = []
    for depth, title, shape, dtype, trainable in boxes:
        body = [title]
        if show_shapes:
            body.append(f"output: {shape}")
        if show_dtype and dtype is not None:
            body.append(f"dtype: {dtype}")
        if show_trainable and trainable is not None:
            body.append(f"trainable: {trainable}")
        out.append((depth, body))
    return out


def _graph_text(boxes: list[tuple[int, list[str]]]) -> str:
    lines: list[str] = []
    for i, (depth, body) in enumerate(boxes):
        width = max(len(t) for t in body)
        pad = "    " * depth
        lines.append(pad + "┌" + "─" * (width + 2) + "┐")
        lines += [pad + f"│ {t:<{width}} │" for t in body]
        lines.append(pad + "└" + "─" * (width + 2) + "┘")
        if i != len(boxes) - 1:
            lines += [pad + "     │", pad + "     ▼"]
    return "\n".join(lines)


def plot_model(
    model: Any,
    to_file: str | os.PathLike | None = None,
    show_shapes: bool = False,
    show_dtype: bool = False,
    show_layer_names: bool = True,
    expand_nested: bool = False,
    show_trainable: bool = False,
    dpi: int = 96,
) -> str:
    """Draw the model's layers as boxes joined by arrows, top to bottom.

    The drawing is text; ``to_file`` ending in ``.png`` renders it to an image with
    Pillow (``pip install cnnkit[image]``), any other name gets the text. Keras draws
    with pydot and Graphviz, which cnnkit does not depend on. A subclassed model is
    drawn in the order its layers were assigned (its ``call`` may use them otherwise).

    Returns
    -------
    str
        The text drawing.
    """
    f = "plot_model()"
    if not getattr(model, "built", False):
        raise ValueError(
            f"{f}: the model must be built (give it an Input or call it on data) to be drawn"
        )
    boxes = _graph_boxes(
        model,
        bool(show_shapes),
        bool(show_dtype),
        bool(show_layer_names),
        bool(expand_nested),
        bool(show_trainable),
    )
    text = _graph_text(boxes)
    if to_file is None:
        return text
    path = os.fspath(to_file)
    if str(path).lower().endswith(".png"):
        try:
            from PIL import Image, ImageDraw, ImageFont
        except ImportError:
            raise ImportError(
                f"{f}: a .png needs Pillow (pip install cnnkit[image]); give a .txt name "
                "for the text drawing"
            ) from None
        dpi = _validate.integer(f, "dpi", dpi, minimum=1)
        _draw_png(boxes, path, dpi, Image, ImageDraw, ImageFont)
    else:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return text


def _draw_png(
    boxes: list[tuple[int, list[str]]], path: str, dpi: int, image: Any, draw: Any, font: Any
) -> None:
    """Rectangles with their text, joined by arrows, drawn with Pillow."""
    face = font.load_default()
    line_h, pad, gap, indent = 16, 8, 28, 24
    sizes = [
        (int(max(face.getlength(t) for t in body)) + 2 * pad, len(body) * line_h + 2 * pad)
        for _, body in boxes
    ]
    width = max(w + indent * d for (w, _), (d, _) in zip(sizes, boxes)) + 40
    height = sum(h for _, h in sizes) + gap * (len(boxes) - 1) + 40
    canvas = image.new("RGB", (width, height), "white")
    pen = draw.Draw(canvas)
    y = 20
    for i, ((depth, body), (w, h)) in enumerate(zip(boxes, sizes)):
        x = 20 + indent * depth
        pen.rectangle((x, y, x + w, y + h), outline="black", width=1)
        for j, t in enumerate(body):
            pen.text((x + pad, y + pad + j * line_h), t, fill="black", font=face)
        if i != len(boxes) - 1:
            cx = x + 20
            pen.line((cx, y + h, cx, y + h + gap), fill="black", width=1)
            pen.polygon(
                [(cx - 4, y + h + gap - 7), (cx + 4, y + h + gap - 7), (cx, y + h + gap)],
                fill="black",
            )
        y += h + gap
    canvas.save(path, dpi=(dpi, dpi))
