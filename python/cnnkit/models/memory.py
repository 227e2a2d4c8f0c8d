"""Memory of inference calls: a model called without a gradient tape (``predict``,
``with cnnkit.autograd.no_grad(): model(x)``) takes its arrays' memory from a cache of
large blocks (``csrc/block_cache.hpp``) that keeps them mapped between calls.

Why: on machines that hand freed pages back to the host (virtual machines with free page
reporting) and for every array above glibc's mmap threshold (32 MiB at most), each call
of a network otherwise touches fresh pages, one page fault per 4 KiB: MobileNet v2 at
batch 8 spent a third of its time in them, and two threads faulting at once made calls
swing by 6x. Arrays handed to the caller are ordinary arrays that own their memory; a
block returns to the cache only when its last array dies, so no call can overwrite what
an earlier one returned, and values are unchanged (only where they live changes).

The idle blocks are kept up to a budget, 1 GiB by default, or ``CNNKIT_INFERENCE_CACHE_MB``
(``0`` turns the cache off) read at import; :func:`release_memory` frees them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .. import _core

__all__ = ["cache_stats", "release_memory", "reusing_memory"]

_ENV = "CNNKIT_INFERENCE_CACHE_MB"


def _budget_from_environment() -> int:
    text = os.environ.get(_ENV, "").strip()
    if not text:
        return 1 << 30
    try:
        mb = int(text)
    except ValueError:
        raise ValueError(
            f"cnnkit.models.memory: {_ENV} must be a whole number of MiB >= 0, got {text!r}"
        ) from None
    if mb < 0:
        raise ValueError(f"cnnkit.models.memory: {_ENV} must be >= 0, got {mb}")
    return mb << 20


_core._block_cache_budget(_budget_from_environment())


@contextlib.contextmanager
def reusing_memory() -> Iterator[None]:
    """Arrays NumPy (and cnnkit's kernels) create inside the block take their memory from
    the block cache (this thread and context only); each array gives it back when it dies,
    inside or outside the block. A no-op when the budget is 0."""
    if _core._block_cache_stats()["budget"] == 0:
        yield
        return
    previous = _core._set_memory_handler(None)
    try:
        yield
    finally:
        _core._set_memory_handler(previous)


def release_memory() -> None:
    """Frees the idle blocks the inference calls keep (for example after the last call of a
    large network); the next call allocates afresh."""
    _core._block_cache_trim()


def cache_stats() -> dict[str, int]:
    """The cache's counters: ``idle_bytes`` and ``idle_blocks`` kept now, ``budget``,
    ``reused`` (large requests served from idle blocks) and ``created`` (not)."""
    return dict(_core._block_cache_stats())
