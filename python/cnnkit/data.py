"""Mini-batches distorted on background threads while the model trains.

:class:`Loader` is what ``model.fit`` takes as a batch iterable with a length:
one pass per epoch, shuffled per epoch from its seed. Worker threads gather and
distort the next batches (the kernels of :mod:`cnnkit._augment` release the
GIL) while the training thread runs the current step, so an epoch costs about
max(augmentation, training) rather than their sum when there are cores for both.

Every sample's distortion is seeded by ``(seed, epoch, sample index)``, and
batches are delivered in order, so the batches are the same whatever
``workers`` and ``prefetch`` are.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import _validate
from .image import set_worker_threads

__all__ = ["Loader"]


def _count(value: Any, fn: str, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
    return int(value)


class Loader:
    """Shuffled, optionally distorted ``(x, y)`` batches, prepared on worker threads.

    Parameters
    ----------
    x : numpy.ndarray
        Images ``(N, H, W, C)`` (uint8 or float32 when ``transform`` is given).
    y : numpy.ndarray, optional
        Targets with ``N`` rows, batched alongside (not transformed).
    batch_size : int
    transform : cnnkit.augment.Transform, optional
        Applied to each batch's images, each image seeded by
        ``(seed, epoch, its index in x)``.
    shuffle : bool
        A new order every epoch (from ``seed`` and the epoch number).
    seed : int
    workers : int
        Background threads; 0 prepares each batch in the caller's thread.
        Inside a worker the kernels use one thread each.
    prefetch : int
        Batches prepared ahead, beyond one per worker.
    drop_last : bool
        Leave out the last batch when it is short.

    Iterating gives one epoch; :attr:`epoch` counts the passes made (set it
    to replay an epoch's batches).
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        batch_size: int = 32,
        transform: Any = None,
        shuffle: bool = True,
        seed: int = 0,
        workers: int = 2,
        prefetch: int = 2,
        drop_last: bool = False,
    ) -> None:
        fn = "Loader()"
        self.x = np.asarray(x)
        if self.x.ndim < 1:
            raise ValueError(f"{fn}: x must be an array of samples, got shape {self.x.shape}")
        self.y = None if y is None else np.asarray(y)
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(
                f"{fn}: y must have one row per sample of x ({len(self.x)}), got {len(self.y)}"
            )
        self.batch_size = _count(batch_size, fn, "batch_size", 1)
        if transform is not None and not callable(transform):
            raise TypeError(f"{fn}: transform must be a cnnkit.augment transform or None")
        self.transform = transform
        # bool() made shuffle='no' (or drop_last='false') mean True.
        self.shuffle = _validate.flag(fn, "shuffle", shuffle)
        # an int, not a Generator: every epoch's order and draws derive from it
        self.seed = _count(seed, fn, "seed", 0)
        self.workers = _count(workers, fn, "workers", 0)
        self.prefetch = _count(prefetch, fn, "prefetch", 0)
        self.drop_last = _validate.flag(fn, "drop_last", drop_last)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _plan(self, epoch: int) -> tuple[list[np.ndarray], np.ndarray]:
        n = len(self.x)
        order = (
            np.random.default_rng([self.seed, epoch, 1]).permutation(n)
            if self.shuffle
            else np.arange(n)
        )
        seeds = np.random.default_rng([self.seed, epoch, 2]).integers(0, 2**63, n, np.int64)
        batches = [
            order[i : i + self.batch_size]
            for i in range(0, len(self) * self.batch_size, self.batch_size)
        ]
        return batches, seeds

    def _make(self, index: np.ndarray, seeds: np.ndarray) -> tuple[Any, Any]:
        images = self.x[index]
        if self.transform is not None:
            images = self.transform(image=images, seed=seeds[index])["image"]
        return images, None if self.y is None else self.y[index]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        batches, seeds = self._plan(self.epoch)
        self.epoch += 1
        if self.workers == 0:
            for index in batches:
                yield self._make(index, seeds)
            return
        pool = ThreadPoolExecutor(self.workers, initializer=set_worker_threads, initargs=(1,))
        try:
            todo = iter(batches)
            pending: deque = deque()
            for index in todo:
                pending.append(pool.submit(self._make, index, seeds))
                if len(pending) >= self.workers + self.prefetch:
                    break
            while pending:
                result = pending.popleft().result()
                following = next(todo, None)
                if following is not None:
                    pending.append(pool.submit(self._make, following, seeds))
                yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
