"""Nested structures (one value, a list/tuple, or a dict of them) of arrays or tensors:
what models take as several inputs and give as several outputs."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["flatten", "map_structure"]


def map_structure(fn: Callable[[Any], Any], value: Any) -> Any:
    """``fn`` applied to every leaf, the structure kept."""
    if isinstance(value, dict):
        return {k: map_structure(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_structure(fn, v) for v in value)
    return fn(value)


def flatten(value: Any) -> list[Any]:
    """The leaves, in order (dicts in insertion order)."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in flatten(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in flatten(v)]
    return [value]
