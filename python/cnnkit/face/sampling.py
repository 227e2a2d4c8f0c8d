"""Identity-balanced batches for the triplet loss, and same/different pairs for the binary head.

Online mining needs every batch to hold several images of each of its identities (a batch of
random images from thousands of people holds almost no positives), hence P identities x K
images per batch (FaceNet; Hermans et al. 2017). Both samplers are what ``fit`` takes as a
batch iterable with a length: one pass per epoch, seeded by ``(seed, epoch)``, so a run is
replayed exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["PKSampler", "PairSampler", "sample_pairs"]


def _positive_int(where: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return int(value)


def _label_array(where: str, labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(
            f"{where}: labels must be one identity label per image (1-D), got shape {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise TypeError(f"{where}: labels must be integer identity labels, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _check_x(where: str, x: Any, n: int) -> np.ndarray | None:
    if x is None:
        return None
    if len(x) != n:
        raise ValueError(f"{where}: x must have one image per label ({n}), got {len(x)}")
    return x


class PKSampler:
    """Batches of ``p`` identities x ``k`` images each, identities and images drawn at random.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        The identity of each image.
    p, k : int
        Identities per batch and images per identity (``k >= 2``: an anchor needs a
        positive). Only identities with at least ``k`` images are drawn; images are drawn
        without replacement within a batch.
    x : array, optional
        The images: iterating then yields ``(x[index], labels[index])`` batches for
        ``fit``; without it, the index arrays.
    seed : int
    steps : int, optional
        Batches per epoch; default ``N // (p * k)`` (at least 1).
    transform : cnnkit.augment.Transform, optional
        Applied to each batch's images (``x`` is required), seeded by ``(seed, epoch,
        step)``: new distortions of the same images in every epoch, replayed exactly.

    Raises
    ------
    ValueError
        When fewer than ``p`` identities have ``k`` images (P*K larger than the data).
    """

    def __init__(
        self,
        labels: Any,
        p: int,
        k: int,
        *,
        x: Any = None,
        seed: int = 0,
        steps: int | None = None,
        transform: Any = None,
    ) -> None:
        where = "PKSampler()"
        self.labels = _label_array(where, labels)
        self.p = _positive_int(where, "p", p, 2)
        self.k = _positive_int(where, "k", k, 2)
        self.x = _check_x(where, x, len(self.labels))
        self.seed = _positive_int(where, "seed", seed, 0)
        ids, inverse, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
        eligible = np.flatnonzero(counts >= self.k)
        if len(eligible) < self.p:
            raise ValueError(
                f"{where}: p * k = {self.p} x {self.k} is larger than the data: only "
                f"{len(eligible)} of {len(ids)} identities have at least {self.k} images"
            )
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        self._members = [order[starts[i] : starts[i + 1]] for i in eligible]
        default = max(len(self.labels) // (self.p * self.k), 1)
        self.steps = default if steps is None else _positive_int(where, "steps", steps)
        if transform is not None and not callable(transform):
            raise TypeError(
                f"{where}: transform must be a callable transform (cnnkit.augment), got "
                f"{type(transform).__name__}"
            )
        if transform is not None and self.x is None:
            raise ValueError(f"{where}: transform needs the images x")
        self.transform = transform
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def indices(self, epoch: int) -> Iterator[np.ndarray]:
        """The index arrays of epoch ``epoch`` (each ``p * k`` long, identity by identity)."""
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(self.steps):
            chosen = rng.choice(len(self._members), self.p, replace=False)
            yield np.concatenate(
                [rng.choice(self._members[c], self.k, replace=False) for c in chosen]
            )

    def __iter__(self) -> Iterator[Any]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        for step, index in enumerate(self.indices(epoch)):
            if self.x is None:
                yield index
            elif self.transform is None:
                yield self.x[index], self.labels[index]
            else:
                seed = np.random.default_rng([self.seed, epoch, step, 1]).integers(2**63)
                yield (
                    self.transform(image=self.x[index], seed=int(seed))["image"],
                    self.labels[index],
                )


def sample_pairs(
    labels: Any, n_pairs: int, *, seed: Any = 0, same_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random pairs of images: ``(i, j, same)`` with about ``same_fraction`` same-identity.

    Same pairs are two different images of an identity with at least two; different pairs
    two images of different identities, uniform over images.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
    n_pairs : int
    seed : int or numpy.random.Generator
    same_fraction : float in [0, 1]

    Returns
    -------
    i, j : int64 arrays (n_pairs,)
    same : float32 array (n_pairs,) of 1.0 / 0.0
    """
    where = "sample_pairs()"
    y = _label_array(where, labels)
    n = _positive_int(where, "n_pairs", n_pairs, 0)
    if not (isinstance(same_fraction, (int, float)) and 0 <= same_fraction <= 1):
        raise ValueError(f"{where}: same_fraction must be in [0, 1], got {same_fraction!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ids, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_same = round(n * same_fraction)
    n_diff = n - n_same
    multi = np.flatnonzero(counts >= 2)
    if n_same and not len(multi):
        raise ValueError(f"{where}: same pairs need an identity with two images; none has")
    if n_diff and len(ids) < 2:
        raise ValueError(f"{where}: different pairs need two identities, got {len(ids)}")
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    # Same pairs: an identity (weighted by its pair count), then two distinct members.
    c = (
        multi[rng.choice(len(multi), n_same, p=_pair_weights(counts[multi]))]
        if n_same
        else multi[:0]
    )
    first = rng.integers(0, counts[c])
    second = (first + rng.integers(1, counts[c])) % counts[c]
    i_same, j_same = order[starts[c] + first], order[starts[c] + second]
    # Different pairs: redraw the second image while it shares the identity of the first.
    i_diff = rng.integers(0, len(y), n_diff)
    j_diff = rng.integers(0, len(y), n_diff)
    clash = inverse[i_diff] == inverse[j_diff]
    while clash.any():
        j_diff[clash] = rng.integers(0, len(y), int(clash.sum()))
        clash = inverse[i_diff] == inverse[j_diff]
    i = np.concatenate([i_same, i_diff]).astype(np.int64)
    j = np.concatenate([j_same, j_diff]).astype(np.int64)
    same = np.concatenate([np.ones(n_same, np.float32), np.zeros(n_diff, np.float32)])
    shuffle = rng.permutation(n)
    return i[shuffle], j[shuffle], same[shuffle]


def _pair_weights(counts: np.ndarray) -> np.ndarray:
    pairs = counts * (counts - 1.0)
    return pairs / pairs.sum()


class PairSampler:
    """Batches ``([x[i], x[j]], same)`` of random pairs, for a Siamese model's ``fit``.

    Parameters
    ----------
    x : array, shape (N, ...)
        Images.
    labels : array_like of int, shape (N,)
    batch_size : int
    steps : int
        Batches per epoch (fresh pairs every epoch).
    seed : int
    same_fraction : float
        Share of same-identity pairs (1/2 by default).
    """

    def __init__(
        self,
        x: Any,
        labels: Any,
        batch_size: int = 64,
        *,
        steps: int = 100,
        seed: int = 0,
        same_fraction: float = 0.5,
    ) -> None:
        where = "PairSampler()"
        self.labels = _label_array(where, labels)
        if x is None:
            raise TypeError(f"{where}: x must be the images, got None")
        self.x = _check_x(where, x, len(self.labels))
        self.batch_size = _positive_int(where, "batch_size", batch_size)
        self.steps = _positive_int(where, "steps", steps)
        self.seed = _positive_int(where, "seed", seed, 0)
        self.same_fraction = same_fraction
        sample_pairs(self.labels, 0, same_fraction=same_fraction)  # argument checks
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[list[Any], np.ndarray]]:
        x = self.x
        assert x is not None  # required by the constructor
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(self.steps):
            i, j, same = sample_pairs(
                self.labels, self.batch_size, seed=rng, same_fraction=self.same_fraction
            )
            yield [x[i], x[j]], same[:, None]
