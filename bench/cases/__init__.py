"""Benchmark cases: the small API between the runner (``bench/run.py``) and case modules.

Writing a case module
---------------------
Any ``bench/cases/<module>.py`` (no leading underscore) that defines ``cases() -> list[Case]``
is found by the runner, which imports the modules in alphabetical order and runs their cases
in the order given. A :class:`Case` is one operation at one size:

``name``, ``size``, ``dtype``
    Labels for the table. ``--filter REGEX`` is searched in ``"<module>/<name>"``.
``inputs``
    ``() -> tuple`` making the seeded NumPy inputs; called once per case, never timed.
``impls``
    Implementation name -> ``prepare(inputs) -> call``. ``prepare`` does the imports and
    converts the inputs (``torch.from_numpy``, another box format, ...) outside the timed
    region; the zero-argument ``call`` it returns is what gets timed. An ``ImportError``
    raised by ``prepare`` reports the implementation as missing, not as an error. The names
    ``"cnnkit"`` and ``"reference"`` (``cnnkit.reference``) are cnnkit's own; every other
    name (``"torchvision"``, ``"torch"``, ``"cv2"``, ...) is a peer, and the best peer sets
    the ratio column.
``check``
    ``(cnnkit_result, other_result) -> None | str``: ``None`` when they agree, else what
    differs. It is called once per case for every other implementation, with results
    converted by :func:`as_numpy`.
``too_slow``
    Implementation names not run at this size, reported as "skipped (too slow)".

The helpers below (:func:`native`, the checks) keep case modules short.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

Call = Callable[[], object]
Prepare = Callable[[tuple], Call]
Check = Callable[[Any, Any], Optional[str]]

OWN = ("cnnkit", "reference")
"""Implementation names that are cnnkit's own; all others are peers."""


@dataclass(frozen=True)
class Case:
    """One operation at one size; see the module docstring."""

    name: str
    size: str
    dtype: str
    inputs: Callable[[], tuple]
    impls: Mapping[str, Prepare]
    check: Check
    too_slow: frozenset[str] = field(default_factory=frozenset)


def native(function: str, *args: object, **kwargs: object) -> dict[str, Prepare]:
    """``"cnnkit"`` and ``"reference"`` implementations of ``cnnkit.ops.<function>``.

    Both are called as ``function(*inputs, *args, **kwargs)``.
    """

    def prepare_from(module: str) -> Prepare:
        def prepare(inputs: tuple) -> Call:
            fn = getattr(importlib.import_module(module), function)
            return lambda: fn(*inputs, *args, **kwargs)

        return prepare

    return {"cnnkit": prepare_from("cnnkit.ops"), "reference": prepare_from("cnnkit.reference")}


def as_numpy(result: object) -> Any:
    """A result as NumPy: tensors through ``.numpy()``, tuples element by element."""
    if isinstance(result, tuple):
        return tuple(as_numpy(r) for r in result)
    if hasattr(result, "numpy"):
        return result.numpy()
    return np.asarray(result)


def same_set(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    """Check that two index arrays hold the same set of indices (order ignored)."""
    a, b = set(np.ravel(ours).tolist()), set(np.ravel(theirs).tolist())
    if a == b:
        return None
    return f"kept {len(a)} vs {len(b)}: {len(a - b)} only in cnnkit, {len(b - a)} only in peer"


def equal(ours: np.ndarray, theirs: np.ndarray) -> str | None:
    """Check that two arrays are identical in shape and values."""
    ours, theirs = np.ravel(ours), np.ravel(theirs)
    if ours.shape == theirs.shape and np.array_equal(ours, theirs):
        return None
    return f"arrays differ (lengths {ours.size} and {theirs.size})"


def allclose(rtol: float = 1e-5, atol: float = 1e-5) -> Check:
    """A check that two float arrays have the same shape and are close elementwise."""

    def check(ours: np.ndarray, theirs: np.ndarray) -> str | None:
        if ours.shape != theirs.shape:
            return f"shape {ours.shape} vs {theirs.shape}"
        close = np.isclose(ours, theirs, rtol=rtol, atol=atol)
        if close.all():
            return None
        worst = np.unravel_index(np.argmax(np.abs(ours - theirs.astype(ours.dtype))), ours.shape)
        return (
            f"{close.size - np.count_nonzero(close)} of {close.size} values differ, "
            f"worst at {tuple(int(i) for i in worst)}: {ours[worst]} vs {theirs[worst]}"
        )

    return check


def count(n: int) -> str:
    """A size label: 10000 -> '10,000'."""
    return f"{n:,}"


def torchvision_module(name: str = "torchvision") -> Any:
    """``torchvision`` or one of its modules, for a peer, or ImportError (the runner reports
    the peer missing) when torchvision is absent or unusable: PyPI's CUDA-built wheel beside a
    CPU torch fails while registering its compiled operators."""
    import torch

    try:
        module = importlib.import_module(name)
        torch.ops.torchvision.nms  # noqa: B018  (the compiled operators are registered)
    except (RuntimeError, OSError, AttributeError) as exc:
        raise ImportError(f"torchvision does not load beside this torch: {exc}") from exc
    return module
