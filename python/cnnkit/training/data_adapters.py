"""What ``fit``, ``evaluate`` and ``predict`` accept as data, turned into batches.

Three kinds of input, as in Keras 3's data adapters:

* arrays (or lists / dicts of arrays for several inputs or outputs), cut into batches
  of ``batch_size``, optionally in a seeded shuffled order: :class:`ArrayDataAdapter`;
* an iterable of ``(x, y)`` / ``(x, y, sample_weight)`` batches, iterated once per
  epoch: :class:`IterableDataAdapter`;
* a loader with a length (``len(loader)`` batches), which is an iterable whose
  length gives the progress bar its total.

Every batch is a tuple ``(x, y, sample_weight)`` (``y`` and ``sample_weight`` may be
None), the ``data`` that :meth:`cnnkit.Model.train_step` and friends unpack with
:func:`unpack_x_y_sample_weight`.

Arrays are checked whole before the first step (dtypes, NaN targets, sample counts),
so a bad array never leaves a half-trained model; batches from an iterable can only be
checked when they come.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from .. import _nest
from ..autograd import Tensor

__all__ = [
    "ArrayDataAdapter",
    "IterableDataAdapter",
    "check_targets",
    "is_batch_iterable",
    "num_samples",
    "to_model_dtype",
    "unpack_x_y_sample_weight",
]

Batch = tuple[Any, Any, Any]


def unpack_x_y_sample_weight(data: Any) -> Batch:
    """``(x, y, sample_weight)`` from a batch given as ``(x,)``, ``(x, y)``,
    ``(x, y, sample_weight)`` or ``x`` alone (as Keras's helper of the same name)."""
    if isinstance(data, tuple):
        if len(data) == 1:
            return data[0], None, None
        if len(data) == 2:
            return data[0], data[1], None
        if len(data) == 3:
            return data[0], data[1], data[2]
    return data, None, None


def lists_to_arrays(where: str, arg: str, value: Any) -> Any:
    """A Python list (or tuple) of numbers or nested lists becomes one array, as Keras
    converts it; a list of arrays stays a list (several inputs or outputs)."""
    if not isinstance(value, (list, tuple)) or not value:
        return value
    if any(isinstance(v, (np.ndarray, Tensor, dict)) for v in value):
        return value
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise ValueError(
            f"{where}: {arg} given as a Python list must be rectangular (every row of the "
            f"same length) to become an array, got {exc}"
        ) from None


def num_samples(where: str, arg: str, value: Any) -> int:
    """The common length of the leading axes of a structure of arrays."""
    counts = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in _nest.flatten(value)}
    if -1 in counts:
        raise ValueError(f"{where}: {arg} must be arrays with a batch axis, got a scalar")
    if len(counts) != 1:
        raise ValueError(f"{where}: the arrays of {arg} have different lengths {sorted(counts)}")
    return counts.pop()


def take(value: Any, index: Any) -> Any:
    """The rows ``index`` (a slice or an index array) of every array of a structure."""
    return _nest.map_structure(lambda a: a[index], value)


_NUMERIC = "bool, integer or floating-point"


def to_model_dtype(where: str, x: Any, dtype: np.dtype, *, warn_uint8: bool = True) -> Any:
    """``x`` as arrays of the model's float dtype; ``warn_uint8``: warn (once per process)
    when uint8 pixels beyond 1 go into a float model, as unscaled images would.

    Raises
    ------
    TypeError
        For string, object or complex inputs: a complex input would lose its imaginary
        part, strings and objects are not data.
    """

    def convert(a: Any) -> Any:
        if isinstance(a, Tensor):
            a = a.data
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{where}: x must be a {_NUMERIC} array, got {exc}") from None
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{where}: x must have a {_NUMERIC} dtype, got dtype {a.dtype}")
        if warn_uint8 and a.dtype == np.uint8 and dtype.kind == "f":
            _warn_uint8(where, a)
        return a.astype(dtype) if a.dtype != dtype else a

    return _nest.map_structure(convert, x)


_warned_uint8 = False


def _warn_uint8(where: str, a: np.ndarray) -> None:
    # Once per process: image data straight from a file, not scaled to [0, 1].
    global _warned_uint8
    if _warned_uint8 or not a.size or a.max() <= 1:
        return
    _warned_uint8 = True
    warnings.warn(
        f"{where}: x is uint8 with values up to {int(a.max())} and goes into a float model "
        "unscaled; divide it by 255 (or start the model with a Rescaling(1/255) layer) if the "
        "model expects inputs in [0, 1]",
        UserWarning,
        stacklevel=4,
    )


def check_targets(where: str, y: Any) -> Any:
    """``y`` as arrays, with numeric dtypes and no NaN or infinity (checked in full)."""

    def check(a: Any) -> np.ndarray:
        a = np.asarray(a.data if isinstance(a, Tensor) else a)
        if a.dtype.kind == "O":
            try:
                a = a.astype(np.float64)
            except (TypeError, ValueError):
                pass
        if a.dtype.kind not in "biuf":
            from ..losses import labels_message

            raise TypeError(labels_message(f"{where}: y", a))
        if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise ValueError(f"{where}: y must be finite, got {a[bad]} at index {bad}")
        return a

    return _nest.map_structure(check, y)


def is_batch_iterable(x: Any, y: Any) -> bool:
    """Whether ``x`` is an iterable of batches (a loader or generator) rather than arrays."""
    return y is None and not isinstance(x, (np.ndarray, Tensor, dict)) and hasattr(x, "__iter__")


class ArrayDataAdapter:
    """Batches of ``batch_size`` rows of arrays, in order or in a given permutation."""

    def __init__(self, x: Any, y: Any, sample_weight: Any, batch_size: int) -> None:
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size = batch_size
        self.num_samples = num_samples("fit()", "x", x)

    @property
    def num_batches(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def batches(self, order: np.ndarray | None = None) -> Iterator[Batch]:
        n = self.num_samples
        index = np.arange(n) if order is None else order
        for start in range(0, n, self.batch_size):
            chunk = index[start : start + self.batch_size]
            rows = slice(start, start + len(chunk)) if order is None else chunk
            yield (
                take(self.x, rows),
                None if self.y is None else take(self.y, rows),
                None if self.sample_weight is None else self.sample_weight[rows],
            )


class IterableDataAdapter:
    """Batches from an iterable of ``(x, y)`` / ``(x, y, sample_weight)`` tuples (or of
    inputs alone, for ``predict``), with ``x`` converted by ``convert``."""

    def __init__(
        self, where: str, iterable: Any, convert: Callable[[Any], Any], targets: bool = True
    ) -> None:
        self.where, self.iterable, self.convert, self.targets = where, iterable, convert, targets

    @property
    def num_batches(self) -> int | None:
        """``len(iterable)`` when the iterable has a length, else None."""
        try:
            return len(self.iterable)
        except TypeError:
            return None

    def batches(self) -> Iterator[Batch]:
        for item in self.iterable:
            if not self.targets:
                xb = item[0] if isinstance(item, (tuple, list)) else item
                yield self.convert(xb), None, None
                continue
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise TypeError(
                    f"{self.where}: a data iterable must yield (x, y) or (x, y, sample_weight) "
                    f"tuples, got {type(item).__name__}"
                )
            yield self.convert(item[0]), item[1], (item[2] if len(item) == 3 else None)


def class_weight_to_sample_weight(where: str, class_weight: Any, y: Any) -> np.ndarray:
    """Per-sample weights ``class_weight[label]`` for the labels ``y`` of one output, as
    Keras: one-hot rows are reduced by argmax, labels are rounded to integers, and a class
    without an entry weighs 1."""
    if isinstance(y, (list, tuple, dict)):
        raise ValueError(f"{where}: class_weight is only supported for a model with one output")
    y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError(f"{where}: class_weight needs labels with a batch axis, got a scalar")
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
    if y.ndim != 1:
        raise ValueError(
            f"{where}: class_weight needs one label (or one-hot row) per sample, got labels "
            f"of shape {y.shape}"
        )
    labels = np.round(y).astype(np.int64)
    out = np.ones(len(labels), dtype=np.float64)
    for cls, weight in class_weight.items():
        out[labels == cls] = weight
    return out


def check_class_weight(where: str, class_weight: Any) -> dict[int, float] | None:
    """``class_weight`` as ``{class index: weight}`` (or None)."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"{where}: class_weight must be a dict {{class index: weight}}, got "
            f"{type(class_weight).__name__}"
        )
    out: dict[int, float] = {}
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
            raise ValueError(
                f"{where}: class_weight keys must be class indices (ints >= 0), got {key!r}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(
                f"{where}: class_weight[{key}] must be a number, got {type(value).__name__}"
            )
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{where}: class_weight[{key}] must be finite and >= 0, got {value}")
        out[int(key)] = float(value)
    return out
