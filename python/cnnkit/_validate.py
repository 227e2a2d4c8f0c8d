"""The one home of the Python layer's argument checks, and of their message style.

Every check takes ``where`` (the function as the caller names it, ``"fit()"``,
``"Conv2D('conv2d')"``), the argument's name and its value, and raises

* ``TypeError`` when the value is of the wrong kind, and
* ``ValueError`` when it is of the right kind but out of range,

with the message ``"{where}: {arg} must be ..., got ..."``. Each returns the value
normalised (a Python ``int`` or ``float``, a tuple, a generator), so callers write
``self.units = integer(where, "units", units)``.

Native kernels check their own arguments in C++ (src/validate.hpp, same style); these
checks are for the Python classes and functions around them. NumPy is the only import,
so any module may use this one without an import cycle.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "choice",
    "fits_in_memory",
    "flag",
    "generator",
    "integer",
    "integers",
    "probability",
    "real",
    "seed",
    "shape",
]


def _kind(value: Any) -> str:
    return type(value).__name__


def integer(
    where: str, arg: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an ``int`` (NumPy integers accepted, bool rejected) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{where}: {arg} must be an int, got {_kind(value)} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {arg} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{where}: {arg} must be <= {maximum}, got {value!r}")
    return value


def flag(where: str, arg: str, value: Any) -> bool:
    """``value`` as a ``bool``: Python's or NumPy's, nothing else (``bool('no')`` is True, so a
    string or a number passed for a switch would silently turn it on)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {arg} must be a bool, got {_kind(value)} {value!r}")
    return bool(value)


def integers(
    where: str, arg: str, value: Any, rank: int, *, minimum: int | None = 1
) -> tuple[int, ...]:
    """An int (repeated ``rank`` times) or a list/tuple of ``rank`` ints, as a tuple."""
    if isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ValueError(
                f"{where}: {arg} must be an int or a tuple of {rank} ints, got {value!r}"
            )
        return tuple(integer(where, arg, v, minimum=minimum) for v in value)
    return (integer(where, arg, value, minimum=minimum),) * rank


def _number(x: float) -> str:
    """0 rather than 0.0 in messages; other numbers as Python writes them."""
    return str(int(x)) if float(x).is_integer() else repr(x)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = None if low is None else _number(low)
    hi = None if high is None else _number(high)
    if lo is not None and hi is not None:
        return f"in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
    if lo is not None:
        return f"{'>' if low_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if high_open else '<='} {hi}"
    return "finite"


def real(
    where: str,
    arg: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a ``float`` (ints and NumPy scalars accepted, bool rejected).

    NaN is always rejected, infinities unless ``finite=False``; ``low`` / ``high``
    bound it (open ends with ``low_open`` / ``high_open``).
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"{where}: {arg} must be a real number, got {_kind(value)} {value!r}")
    value = float(value)
    ok = not math.isnan(value) and (math.isfinite(value) or not finite)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        what = _interval(low, high, low_open, high_open)
        if what == "finite" and not finite:
            what = "a number (not NaN)"
        raise ValueError(f"{where}: {arg} must be {what}, got {value}")
    return value


def probability(where: str, arg: str, value: Any, *, high_open: bool = False) -> float:
    """A real number in ``[0, 1]`` (``[0, 1)`` with ``high_open``)."""
    return real(where, arg, value, low=0.0, high=1.0, high_open=high_open)


def seed(where: str, arg: str, value: Any) -> int:
    """A seed: a non-negative int."""
    return integer(where, arg, value, minimum=0)


def generator(where: str, value: Any, arg: str = "seed") -> np.random.Generator:
    """A ``numpy.random.Generator`` from a non-negative int seed, or the generator itself."""
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(
            f"{where}: {arg} must be an int or a numpy.random.Generator, got {_kind(value)}"
        )
    return np.random.default_rng(seed(where, arg, value))


def shape(
    where: str, arg: str, value: Any, *, minimum: int = 1, allow_unknown: bool = False
) -> tuple[int, ...]:
    """A sequence of ints >= ``minimum`` as a tuple; ``allow_unknown`` admits one -1."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{where}: {arg} must be a tuple of ints, got {value!r}")
    dims = tuple(integer(where, arg, d, minimum=-1 if allow_unknown else minimum) for d in value)
    bad = [d for d in dims if d != -1 and d < minimum]
    if bad or dims.count(-1) > 1:
        extra = " and at most one -1" if allow_unknown else ""
        raise ValueError(f"{where}: {arg} must hold ints >= {minimum}{extra}, got {dims}")
    return dims


def choice(where: str, arg: str, value: Any, options: Sequence[str]) -> str:
    """One of the strings ``options`` (matched without regard to case), in lower case."""
    if isinstance(value, str) and value.lower() in options:
        return value.lower()
    listed = ", ".join(repr(o) for o in options[:-1]) + f" or {options[-1]!r}"
    raise ValueError(f"{where}: {arg} must be {listed}, got {value!r}")


def fits_in_memory(where: str, needs: str, need: int) -> None:
    """A ``MemoryError`` up front when a request needs ``need`` bytes, more than the
    machine's memory; ``needs`` says what, with its verb ("the output ... needs"). Tables
    and per-item parameters sized by such a request are built before the result, so an
    impossible size would otherwise run for minutes (or be killed) rather than fail."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > total:
        raise MemoryError(
            f"{where}: {needs} {need} bytes, more than this machine's {total} bytes of memory"
        )
