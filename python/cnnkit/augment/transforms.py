"""Transforms and pipelines with albumentations' call convention, box- and keypoint-aware.

``t(image=..., boxes=..., keypoints=..., labels=..., seed=...)`` returns a dict
of the keys given (plus ``keypoints_visible`` when keypoints are given).
``image`` is one image ``(H, W, C)`` or a batch ``(N, H, W, C)``; for a batch,
``boxes``, ``labels`` and ``keypoints`` are lists with one entry per image
(keypoints may also be one ``(N, L, 2)`` array). Each image draws its own
parameters from its own generator, and a batch is distorted by one native call
per transform, so:

* a batch called with ``seed=s`` gives image ``i`` exactly what a call on that
  image alone with ``seed=image_seeds(s, N)[i]`` gives (``seed`` may also be
  those per-image seeds), at any thread count;
* ``t(..., return_params=True)`` adds the draws under ``"params"``, and
  ``t.replay(params, image=...)`` applies them again.

Boxes (``xyxy`` pixels) move by their corners, are clipped to the image and
dropped with their labels when less than ``min_visibility`` of their area is
left; keypoints move and are flagged (``keypoints_visible``) when they leave
the image. Flips take ``flip_pairs`` (e.g. :data:`cnnkit.datasets.FLIP_PAIRS`)
so that left and right keypoints keep their meaning.

Amounts follow albumentations where it has the transform: colour limits are in
0-255 units whatever the dtype (float32 images are taken to be in [0, 1]),
angles in degrees. Differences: ``HueSaturationValue``'s hue limit is in
degrees (albumentations uses OpenCV's 0-180 hue units for uint8), and
``SomeOf`` applies its chosen transforms in the listed order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _augment
from .. import image as im
from .._random import seeded_generators
from .functional import (
    PCAColourFit,
    _colour_affine_rows,
    _hsv_shift_draws,
    _vbmi_lut,
    add_gaussian_seeded,
    colour_affine,
    colour_jitter,
    elastic_fields_seeded,
    full_scale,
    hsv_shift,
    pca_colour_offsets,
)

__all__ = [
    "Affine",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "ElasticTransform",
    "FancyPCA",
    "GaussNoise",
    "HorizontalFlip",
    "HueSaturationValue",
    "Normalize",
    "OneOf",
    "PCAColour",
    "RGBShift",
    "RandomBrightnessContrast",
    "RandomCrop",
    "RandomResizedCrop",
    "Resize",
    "Rotate",
    "SomeOf",
    "Transform",
    "VerticalFlip",
    "image_seeds",
]


def image_seeds(seed: int, n: int) -> np.ndarray:
    """The per-image seeds that a batch of ``n`` images called with ``seed`` uses:
    ``SeedSequence(seed).generate_state(n, np.uint64)`` (made natively below 2**64)."""
    seed = int(seed)
    if 0 <= seed < 2**64:
        out = np.empty(n, np.uint64)
        _augment.seed_sequence_state(seed, out)
        return out
    return np.random.SeedSequence(seed).generate_state(n, np.uint64)


class _Streams:
    """The per-image generators of a call, ``[default_rng(s) for s in seeds]``, made only
    when a transform draws in Python.

    Transforms whose draws are uniform numbers (:meth:`Transform.native_draws`) draw
    from the PCG64 states natively (``_augment.draw_params``, the same bits as the
    Generator calls), without building a Generator per image; a Generator made after
    that starts from the advanced state, so pipelines see one stream per image.
    """

    def __init__(self, seeds: np.ndarray) -> None:
        self.seeds = seeds
        self.generators: list[np.random.Generator] | None = None
        # (N, 6) once drawn natively: the PCG64 words, then numpy's kept 32-bit half (a
        # flag and the half, see _augment.draw_resized_crops)
        self.states: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> np.random.Generator:
        if self.generators is None:
            self.generators = seeded_generators(self.seeds)
            if self.states is not None:  # continue where the native draws stopped
                for g, (sh, sl, ih, il, kept, half) in zip(self.generators, self.states.tolist()):
                    g.bit_generator.state = {
                        "bit_generator": "PCG64",
                        "state": {"state": sh << 64 | sl, "inc": ih << 64 | il},
                        "has_uint32": kept,
                        "uinteger": half,
                    }
        return self.generators[i]

    def native_states(self) -> np.ndarray | None:
        """The ``(N, 6)`` states to draw from natively, or None when the generators
        already exist (then Python draws)."""
        if self.generators is not None or not _augment.has_pcg64():
            return None
        if self.states is None:
            self.states = np.empty((len(self.seeds), 6), np.uint64)
            _augment.image_generators(self.seeds, self.states)
        return self.states

    def draw(self, active: np.ndarray, p: float | None, spec: np.ndarray):
        """``draw_params`` for the ``active`` images (``p`` None: no test against p), or
        None when the generators already exist (then Python draws)."""
        if self.native_states() is None:
            return None
        out = np.zeros((len(self.seeds), len(spec)))
        applied = np.empty(len(self.seeds), np.uint8)
        active = np.ascontiguousarray(active, np.uint8)
        _augment.draw_params(
            self.states, active, 0.0 if p is None else p, p is not None, spec, out, applied
        )
        return out, applied


def _generators(seed: Any, n: int, single: bool, fn: str, build: bool = True) -> Any:
    """The per-image generators of a call: a :class:`_Streams` (a list where a seed is
    2**64 or more; ``build=False``: the seed checked, Nones)."""
    if seed is None:
        if not build:
            return [None] * n
        seeds = np.random.SeedSequence().generate_state(n, np.uint64)
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"{fn}: seed must be >= 0, got {seed}")
        if not build:
            return [None] * n
        if single:
            if seed >= 2**64:
                return [np.random.default_rng(int(seed))]
            seeds = np.array([seed], np.uint64)
        else:
            seeds = image_seeds(int(seed), n)
    else:
        seeds = np.asarray(seed)
        if seeds.shape != (n,) or seeds.dtype.kind not in "iu" or (seeds < 0).any():
            raise TypeError(
                f"{fn}: seed must be an int >= 0, None or one int >= 0 per image ({n}), "
                f"got {seed!r}"
            )
        seeds = seeds.astype(np.uint64)
    return _Streams(seeds) if build else [None] * n


_HAS_PCG64 = bool(_augment.has_pcg64())
_NATIVE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


_NO_SEEDS = np.empty(0, np.uint64)
_NO_EIGEN = (np.zeros(3), np.zeros((3, 3)))


def _batch_seeds(seed: Any, n: int) -> tuple[int, np.ndarray] | None:
    """A batch call's ``seed`` as the natively made generators take it: ``(seed, no
    seeds)`` for a batch seed, ``(0, per-image seeds)`` otherwise; None where the
    general path must take it (it checks it, or draws from NumPy's Generators)."""
    if not _HAS_PCG64:
        return None
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return (int(seed), _NO_SEEDS) if 0 <= seed < 2**64 else None
    if seed is None:
        return 0, np.random.SeedSequence().generate_state(n, np.uint64)
    if type(seed) is np.ndarray and seed.shape == (n,) and seed.dtype.kind in "iu":
        if seed.dtype.kind == "i" and seed.min() < 0:
            return None
        return 0, seed.astype(np.uint64)
    return None


def _batch_states(seed: Any, n: int) -> np.ndarray | None:
    """The ``(n, 6)`` native PCG64 states (:meth:`_Streams.native_states`) of the images of
    a batch called with ``seed``, made in one native call (None: see _batch_seeds)."""
    seeds = _batch_seeds(seed, n)
    if seeds is None:
        return None
    states = np.empty((n, 6), np.uint64)
    if len(seeds[1]):
        _augment.image_generators(seeds[1], states)
    else:
        _augment.batch_generators(seeds[0], states)
    return states


def _batch_draws(t: Transform, x: np.ndarray, seed: Any) -> np.ndarray | None:
    """The :meth:`Transform.native_draws` of the images of a batch call on ``x`` with
    ``seed``, ``(len(x), rows)``, the values that the general path draws; None where it
    must take the call (a dtype without native kernels, the seed, see _batch_seeds) or
    where an image is left alone (``p < 1``)."""
    if x.dtype not in _NATIVE_DTYPES:
        return None
    n = len(x)
    seeds = _batch_seeds(seed, n)
    spec = t.native_draws()
    if seeds is None or spec is None:
        return None
    values = np.empty((n, len(spec)))
    return values if _augment.batch_draws(*seeds, t.p, spec, values) else None


def _every_image(t: Any, x: np.ndarray, seed: Any) -> np.ndarray | None:
    """The batch path of a transform without draws (a flip, Resize) at ``p = 1``: its
    images() of the whole batch, the seed checked as the general path does (whose
    per-image records were most of a 64-image flip's serial Python); None otherwise."""
    if t.p != 1 or t.draws or x.dtype not in _NATIVE_DTYPES:
        return None
    _generators(seed, len(x), False, t._name(), False)
    return t.images(x, None, x.shape[1:3])


def _number(value: Any, fn: str, name: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise ValueError(f"{fn}: {name} must be a finite number{bound}, got {value}")
    return value


def _range(
    value: Any, fn: str, name: str, *, symmetric: bool = True, minimum: float | None = None
) -> tuple[float, float]:
    """A number (``(-v, v)`` when ``symmetric``, else ``(v, v)``) or a (low, high) pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{fn}: {name} must be a number or a (low, high) pair, got {value!r}")
        low, high = (_number(v, fn, name, minimum) for v in value)
        if low > high:
            raise ValueError(f"{fn}: {name} must have low <= high, got {value!r}")
        return low, high
    v = _number(value, fn, name, None if symmetric else minimum)
    if symmetric:
        if v < 0:
            raise ValueError(f"{fn}: {name} must be >= 0 as a single number, got {v}")
        return -v, v
    return v, v


def _pair(value: Any, fn: str, name: str, *, minimum: float | None = None) -> tuple[float, float]:
    """A (low, high) pair, nothing else (torchvision's scale and ratio)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{fn}: {name} must be a (low, high) pair, got {value!r}")
    return _range(value, fn, name, minimum=minimum)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low if low == high else float(rng.uniform(low, high))


def _uniform_spec(*bounds: tuple[float, float] | None) -> np.ndarray:
    """``_augment.draw_params``'s rows for ``_uniform`` draws from ``bounds`` (None: a row
    that the caller sets to another kind)."""
    return np.array([(0.0, *(b or (0.0, 0.0))) for b in bounds], np.float64)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 map "b, then a"."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


class _Targets:
    """The images and their targets as a batch while a pipeline runs."""

    def __init__(self, image, boxes, keypoints, labels, min_visibility, fn):
        self.images, self.single = im.as_images(image, fn.rstrip("()"), "image")
        n = len(self.images)
        self.min_visibility = _number(min_visibility, fn, "min_visibility", 0.0)
        if self.min_visibility > 1:
            raise ValueError(f"{fn}: min_visibility must be in [0, 1], got {min_visibility}")
        self.boxes = None if boxes is None else self._per_image(boxes, n, fn, "boxes")
        if self.boxes is not None:
            self.boxes = [im.as_boxes(b, fn.rstrip("()"), "boxes") for b in self.boxes]
        self.labels = None if labels is None else self._per_image(labels, n, fn, "labels")
        if self.labels is not None:
            if self.boxes is None:
                raise ValueError(f"{fn}: labels need boxes")
            self.labels = [np.asarray(lab) for lab in self.labels]
            for b, lab in zip(self.boxes, self.labels):
                if len(lab) != len(b):
                    raise ValueError(
                        f"{fn}: labels must have one entry per box, got {len(lab)} for {len(b)}"
                    )
        self.points_array = keypoints is not None and not isinstance(keypoints, list)
        self.keypoints = None
        if keypoints is not None:
            pts = self._per_image(keypoints, n, fn, "keypoints")
            self.keypoints = [im.as_points(p, fn.rstrip("()"), "keypoints") for p in pts]
            for p in self.keypoints:
                if p.ndim != 2:
                    raise ValueError(f"{fn}: keypoints must be (L, 2) per image, got {p.shape}")

    def _per_image(self, value: Any, n: int, fn: str, name: str) -> list:
        if self.single:
            return [value]
        if isinstance(value, np.ndarray) and name == "keypoints":
            value = list(value)
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise ValueError(f"{fn}: {name} for a batch of {n} must be a list of {n} entries")
        return list(value)

    def subset(self, index: np.ndarray) -> _Targets:
        """The images ``index`` and their targets as a batch of their own."""
        sub = object.__new__(_Targets)
        sub.images, sub.single, sub.points_array = self.images[index], False, False
        sub.min_visibility = self.min_visibility
        for name in ("boxes", "labels", "keypoints"):
            value = getattr(self, name)
            setattr(sub, name, None if value is None else [value[i] for i in index])
        return sub

    def merge(self, parts: list[tuple[np.ndarray, _Targets]], fn: str) -> None:
        """Write back subsets (see :meth:`subset`) that were distorted apart."""
        covered = sum(len(index) for index, _ in parts)
        shapes = {(sub.images.shape[1:], sub.images.dtype) for _, sub in parts}
        if covered < self.n:
            shapes.add((self.images.shape[1:], self.images.dtype))
        if len(shapes) > 1:
            raise ValueError(
                f"{fn}: in a batch, the images must keep one size and dtype whichever transform "
                f"each image gets, got {sorted(str(s) for s in shapes)}"
            )
        shape, dtype = shapes.pop()
        if shape == self.images.shape[1:] and dtype == self.images.dtype:
            images = self.images.copy()
        else:
            images = np.empty((self.n, *shape), dtype)
        for index, sub in parts:
            images[index] = sub.images
            for name in ("boxes", "labels", "keypoints"):
                mine, theirs = getattr(self, name), getattr(sub, name)
                if mine is not None:
                    for k, i in enumerate(index):
                        mine[i] = theirs[k]
        self.images = images

    def take(self, index: list[int]) -> np.ndarray:
        """The images ``index`` (the batch itself, uncopied, when that is all of them)."""
        return self.images if len(index) == self.n else self.images[index]

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]

    def set_images(self, index: list[int], new: np.ndarray, fn: str) -> None:
        if len(index) == self.n:
            self.images = new
            return
        if new.shape[1:] != self.images.shape[1:] or new.dtype != self.images.dtype:
            raise ValueError(
                f"{fn}: in a batch, a transform that changes the image size or dtype must apply "
                "to every image (use p=1)"
            )
        images = self.images.copy()
        images[index] = new
        self.images = images

    def move(self, i: int, matrix: np.ndarray, size: tuple[int, int], order=None) -> None:
        if self.boxes is not None:
            self.boxes[i], keep = im.affine_boxes(self.boxes[i], matrix, size, self.min_visibility)
            if self.labels is not None:
                self.labels[i] = self.labels[i][keep]
        if self.keypoints is not None:
            moved = im.affine_points(self.keypoints[i], matrix)
            self.keypoints[i] = moved if order is None else moved[order]

    def result(self) -> dict:
        out: dict[str, Any] = {"image": self.images[0] if self.single else self.images}
        for name in ("boxes", "labels"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value[0] if self.single else value
        if self.keypoints is not None:
            h, w = self.shape
            visible = [
                (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
                for p in self.keypoints
            ]
            if self.single:
                out["keypoints"], out["keypoints_visible"] = self.keypoints[0], visible[0]
            elif self.points_array:
                out["keypoints"], out["keypoints_visible"] = (
                    np.stack(self.keypoints) if self.keypoints else np.zeros((0, 0, 2)),
                    np.stack(visible) if visible else np.zeros((0, 0), bool),
                )
            else:
                out["keypoints"], out["keypoints_visible"] = self.keypoints, visible
        return out


class Transform:
    """Base of every transform: probability ``p``, the call convention, replay.

    Subclasses define ``sample(rng, shape)`` (the parameters of one image, or
    None to leave it unchanged) and ``apply(data, index, params)`` (distort
    the images ``index`` of the batch with their parameters, targets included).
    """

    # False when sample() draws nothing: called alone with p=1, such a transform's
    # result cannot depend on the generators, so none are built (about 2 us per image);
    # inside a pipeline it still draws against p, keeping the others' draws in step.
    draws = True

    def __init__(self, p: float = 0.5) -> None:
        self.p = _number(p, self._name(), "p")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{self._name()}: p must be in [0, 1], got {p}")

    def _name(self) -> str:
        return f"{type(self).__name__}()"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"

    def __call__(
        self,
        *,
        image: Any,
        boxes: Any = None,
        keypoints: Any = None,
        labels: Any = None,
        seed: Any = None,
        min_visibility: float = 0.0,
        return_params: bool = False,
    ) -> dict:
        if (
            boxes is None
            and keypoints is None
            and labels is None
            and not return_params
            and type(image) is np.ndarray
            and image.ndim == 4
            and len(image)
            and min_visibility.__class__ in (int, float)
            and min_visibility == 0
        ):
            images = self._batch(image, seed)
            if images is not None:
                return {"image": images}
        data = _Targets(image, boxes, keypoints, labels, min_visibility, self._name())
        build = self.draws or self.p != 1.0
        rngs = _generators(seed, data.n, data.single, self._name(), build)
        records = self._run(data, rngs, np.ones(data.n, bool), None)
        out = data.result()
        if return_params:
            out["params"] = records[0] if data.single else records
        return out

    def replay(
        self,
        params: Any,
        *,
        image: Any,
        boxes: Any = None,
        keypoints: Any = None,
        labels: Any = None,
        min_visibility: float = 0.0,
    ) -> dict:
        """Apply recorded parameters (``result["params"]`` of a call) to other data."""
        data = _Targets(image, boxes, keypoints, labels, min_visibility, self._name())
        records = [params] if data.single else list(params)
        if len(records) != data.n:
            raise ValueError(f"{self._name()}: params hold {len(records)} images, got {data.n}")
        self._run(data, [None] * data.n, np.ones(data.n, bool), records)
        return data.result()

    def _run(
        self,
        data: _Targets,
        rngs: list,
        active: np.ndarray,
        recorded: list | None,
        force: bool = False,
    ) -> list:
        """Draw (or take from ``recorded``) the parameters of the ``active`` images and
        apply them; ``force`` skips the draw against ``p`` (OneOf's pick)."""
        records: list | None = None
        if recorded is None and isinstance(rngs, _Streams):
            records = self._draw_natively(rngs, active, None if force else self.p, data.shape)
        if records is None:
            records = []
            for i in range(data.n):
                if not active[i]:
                    records.append(None)
                elif recorded is not None:
                    records.append(recorded[i])
                else:
                    rng = rngs[i]
                    on = force or rng is None or rng.random() < self.p
                    records.append(self.sample(rng, data.shape) if on else None)
        index = [i for i, r in enumerate(records) if r is not None]
        if index:
            self.apply(data, index, [records[i] for i in index])
        return records

    def _draw_natively(
        self, rngs: _Streams, active: np.ndarray, p: float | None, shape: tuple[int, int]
    ) -> list | None:
        """The records of :meth:`sample` drawn natively from the streams' PCG64 states
        (``p`` None: no test against p), or None where this transform or the streams
        cannot (then each image draws in Python)."""
        spec = self.native_draws()
        drawn = None if spec is None else rngs.draw(active, p, spec)
        if drawn is None:
            return None
        values, applied = drawn
        # Python floats and ints, row by row (one conversion for the batch)
        rows, words = values.tolist(), values.view(np.uint64).tolist()
        return [
            self.from_draws(v, b, shape) if on else None
            for v, b, on in zip(rows, words, applied.tolist())
        ]

    def _batch(self, x: np.ndarray, seed: Any) -> np.ndarray | None:
        """The images of a call on a batch ``x`` (non-empty) with no targets and no records,
        made without the per-image records of the general path (Python work that a
        second thread cannot share), or None to take that path. The same images as
        the general path, bit for bit; None wherever it checks or raises."""
        return None

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict:
        return {}

    def native_draws(self) -> np.ndarray | None:
        """For a transform whose :meth:`sample` draws only ``_uniform`` numbers (and
        ``rng.integers(0, 2**63)``): those draws in order, as ``(kind, low, high)``
        rows of ``_augment.draw_params``, so that a batch draws natively; with
        :meth:`from_draws`, which makes the parameters from them (``values`` one image's
        draws as floats, ``bits`` the same as ints for the integer draws, ``shape`` the
        images' ``(height, width)``)."""
        return None

    def from_draws(self, values: list[float], bits: list[int], shape: tuple[int, int]) -> dict:
        raise NotImplementedError

    def apply(self, data: _Targets, index: list[int], params: list[dict]) -> None:
        raise NotImplementedError


# -- geometry ----------------------------------------------------------------------------


class _Affine(Transform):
    """A transform whose map is a 2x3 matrix per image (targets follow the matrix)."""

    flip_order: Any = None

    def matrix(self, params: dict, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def out_size(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape

    def images(self, x: np.ndarray, params: list[dict], shape) -> np.ndarray:
        raise NotImplementedError

    def some_images(self, x: np.ndarray, index: list[int]) -> np.ndarray | None:
        """The whole batch with the images ``index`` transformed, when a transform
        does that in one pass (else None: gather, transform, scatter)."""
        return None

    def apply(self, data, index, params):
        shape = data.shape
        size = self.out_size(shape)
        whole = None if len(index) == data.n else self.some_images(data.images, index)
        if whole is not None:
            data.images = whole
        else:
            data.set_images(index, self.images(data.take(index), params, shape), self._name())
        if data.boxes is None and data.keypoints is None:
            return  # no targets to move: skip building a matrix per image
        order = None
        if self.flip_order is not None and data.keypoints is not None:
            order = [
                im.flip_permutation(self.flip_order, len(data.keypoints[i]), self._name())
                for i in index
            ]
        for k, (i, p) in enumerate(zip(index, params)):
            data.move(i, self.matrix(p, shape), size, None if order is None else order[k])


class HorizontalFlip(_Affine):
    """Mirror left-right; ``flip_pairs`` swaps left/right keypoints.

    See :func:`cnnkit.image.flip_permutation` for ``flip_pairs``.
    """

    draws = False

    def __init__(self, flip_pairs: Sequence[tuple[int, int]] | None = None, p: float = 0.5):
        super().__init__(p)
        self.flip_order = flip_pairs

    def matrix(self, params, shape):
        return np.array([[-1.0, 0.0, shape[1]], [0.0, 1.0, 0.0]])

    def images(self, x, params, shape):
        return im.hflip(x)

    def _batch(self, x, seed):
        return _every_image(self, x, seed)

    def some_images(self, x, index):
        return im._flip_some(x, index, True)


class VerticalFlip(HorizontalFlip):
    """Mirror upside down (``flip_pairs`` as :class:`HorizontalFlip`)."""

    def matrix(self, params, shape):
        return np.array([[1.0, 0.0, 0.0], [0.0, -1.0, shape[0]]])

    def images(self, x, params, shape):
        return im.vflip(x)

    def some_images(self, x, index):
        return im._flip_some(x, index, False)


class _Window(_Affine):
    """Crops and resizes: a window per image, resampled to a fixed size."""

    def __init__(self, height: int, width: int, interpolation: str, p: float) -> None:
        super().__init__(p)
        self.size = im._size((height, width), self._name().rstrip("()"))
        im._choice(interpolation, im.INTERPOLATIONS, self._name().rstrip("()"), "interpolation")
        self.interpolation = interpolation

    def out_size(self, shape):
        return self.size

    def _check_fits(self, shape):
        if self.size[0] > shape[0] or self.size[1] > shape[1]:
            raise ValueError(
                f"{self._name()}: the crop {self.size[0]}x{self.size[1]} (height x width) must fit "
                f"in the {shape[0]}x{shape[1]} image"
            )

    def matrix(self, params, shape):
        top, left, height, width = params["window"]
        return _compose(im.resize_matrix((height, width), self.size), im.crop_matrix(top, left))

    def images(self, x, params, shape):
        return self._crops(x, np.array([p["window"] for p in params], dtype=np.int64))

    def _crops(self, x: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """The ``(N, 4)`` windows ``(top, left, height, width)`` of ``x`` resampled to size."""
        if (windows[:, 2:] == self.size).all():
            return np.stack([x[k, t : t + h, c : c + w] for k, (t, c, h, w) in enumerate(windows)])
        return im.resized_crop(x, windows, self.size, self.interpolation)


class RandomCrop(_Window):
    """A ``height x width`` window at a uniformly random place (it must fit in the image)."""

    def __init__(self, height: int, width: int, p: float = 1.0) -> None:
        super().__init__(height, width, "nearest", p)

    def sample(self, rng, shape):
        self._check_fits(shape)
        top = int(rng.integers(0, shape[0] - self.size[0] + 1))
        left = int(rng.integers(0, shape[1] - self.size[1] + 1))
        return {"window": (top, left, *self.size)}


class CenterCrop(_Window):
    """The centred ``height x width`` window (top/left rounded down)."""

    draws = False

    def __init__(self, height: int, width: int, p: float = 1.0) -> None:
        super().__init__(height, width, "nearest", p)

    def sample(self, rng, shape):
        self._check_fits(shape)
        return {
            "window": ((shape[0] - self.size[0]) // 2, (shape[1] - self.size[1]) // 2, *self.size)
        }


class Resize(_Window):
    """Resize to ``height x width`` (``interpolation`` as :func:`cnnkit.image.resize`)."""

    draws = False

    def __init__(
        self, height: int, width: int, interpolation: str = "bilinear", p: float = 1.0
    ) -> None:
        super().__init__(height, width, interpolation, p)

    def sample(self, rng, shape):
        return {"window": (0, 0, *shape)}

    def images(self, x, params, shape):
        return im.resize(x, self.size, self.interpolation)

    def _batch(self, x, seed):
        return _every_image(self, x, seed)


class RandomResizedCrop(_Window):
    """torchvision's RandomResizedCrop: a window of ``scale`` of the area and aspect ``ratio``
    (log-uniform), ten tries, else the centre crop clamped to ``ratio``; resized to ``size``."""

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
        p: float = 1.0,
    ) -> None:
        h, w = im._size(size, "RandomResizedCrop()")
        super().__init__(h, w, interpolation, p)
        fn = self._name()
        self.scale = _pair(scale, fn, "scale", minimum=0.0)
        self.ratio = _pair(ratio, fn, "ratio", minimum=1e-9)
        self._log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        # draw_resized_crops' scale, log-ratio and ratio arguments
        self._draw_args = (
            self.scale[0],
            self.scale[1] - self.scale[0],
            self._log_ratio[0],
            self._log_ratio[1] - self._log_ratio[0],
            self.ratio[0],
            self.ratio[1],
        )

    def _draw_windows(self, states, active, p, shape):
        # sample()'s tries, bit for bit, in one native loop over the batch
        height, width = shape
        windows = np.empty((len(states), 4), np.int64)
        applied = np.empty(len(states), np.uint8)
        _augment.draw_resized_crops(
            states,
            np.ascontiguousarray(active, np.uint8),
            0.0 if p is None else p,
            p is not None,
            height,
            width,
            *self._draw_args,
            windows,
            applied,
        )
        return windows, applied

    def _draw_natively(self, rngs, active, p, shape):
        states = rngs.native_states()
        if states is None or max(shape) >= 2**32:
            return None
        windows, applied = self._draw_windows(states, active, p, shape)
        return [
            {"window": tuple(w)} if on else None
            for w, on in zip(windows.tolist(), applied.tolist())
        ]

    def _batch(self, x, seed):
        shape = x.shape[1:3]
        if x.dtype not in _NATIVE_DTYPES or max(shape) >= 2**32 or min(shape) == 0:
            return None
        if self.interpolation == "bilinear" and im._fixed_linear(x):
            # generators, draws, tables and resampling in one native call, bit for bit the
            # path below: every array made here and converted there was microseconds of
            # the call's serial part (Python after a pass over the batch meets cold caches)
            seeds = _batch_seeds(seed, len(x))
            if seeds is None:
                return None
            out = np.empty((len(x), *self.size, 3), np.uint8)
            status = im.augment_loops("avx512").resized_crops_fixed3(
                None,
                self.p,
                *self._draw_args,
                np.ascontiguousarray(x),
                out,
                None,
                None,
                im.native_threads(out.size),
                *seeds,
            )
            if status == 0:
                return out
            if status == 1:
                return None  # images left alone: the general path
            # else every window is of the output size: plain crops below, drawn again
        states = _batch_states(seed, len(x))
        if states is None:
            return None
        windows, applied = self._draw_windows(states, np.ones(len(x), np.uint8), self.p, shape)
        if not applied.all():
            return None  # images left alone: the general path (it checks their size)
        if (
            self.interpolation == "bilinear"
            and im._fixed_linear(x)
            and not (windows[:, 2:] == self.size).all()
        ):
            # _crops' path without resized_crop's checks: the drawn windows lie in the images
            return im._resample_fixed3(x, *self.size, *windows.T)
        return self._crops(x, windows)

    def sample(self, rng, shape):
        height, width = shape
        area = height * width
        # rng.uniform(low, high) is low + (high - low) * rng.random(), bit for bit (NumPy's
        # definition), at a third of the cost of the call
        s_low, s_range = self.scale[0], self.scale[1] - self.scale[0]
        r_low, r_range = self._log_ratio[0], self._log_ratio[1] - self._log_ratio[0]
        for _ in range(10):
            target = area * (s_low + s_range * rng.random())
            aspect = math.exp(r_low + r_range * rng.random())
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return {"window": (top, left, h, w)}
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            w, h = width, height
        return {"window": ((height - h) // 2, (width - w) // 2, max(h, 1), max(w, 1))}


class _Warp(_Affine):
    """Rotations, shears, scales and translations about the image centre."""

    def __init__(self, interpolation: str, border_mode: str, fill: float, p: float) -> None:
        super().__init__(p)
        fn = self._name().rstrip("()")
        im._choice(interpolation, im.INTERPOLATIONS[:2], fn, "interpolation")
        im._choice(border_mode, im.BORDER_MODES, fn, "border_mode")
        self.interpolation, self.border_mode = interpolation, border_mode
        self.fill = _number(fill, self._name(), "fill")

    def matrix(self, params, shape):
        h, w = shape
        return im.affine_matrix(
            (w / 2, h / 2),
            angle=params["angle"],
            scale=params.get("scale", 1.0),
            shear=params.get("shear", 0.0),
            translate=params.get("translate", (0.0, 0.0)),
        )

    def images(self, x, params, shape):
        # the maps of the whole batch as affine_matrix builds them, without its checks and
        # a 2x3 array per image; inverted in one native call
        h, w = shape
        center = (w / 2, h / 2)
        rows = [
            im._affine_map(
                center,
                p["angle"],
                p.get("scale", 1.0),
                p.get("shear", 0.0),
                p.get("translate", (0.0, 0.0)),
            )
            for p in params
        ]
        maps = np.array(rows, np.float64).reshape(-1, 2, 3)
        if not np.isfinite(maps).all():  # replayed parameters are not checked elsewhere
            raise ValueError(f"{self._name()}: the parameters must give finite maps, got {params}")
        inverse = im._invert_affines(maps, self._name().rstrip("()"))
        interp = im.INTERPOLATIONS.index(self.interpolation)
        mode = im.BORDER_MODES.index(self.border_mode)
        return im._warp(x, inverse, h, w, interp, mode, self.fill)

    def warp_params(self, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The parameters that :meth:`from_draws` makes from each row of ``values`` as
        ``(N, 7)`` rows ``(angle, scale x, scale y, shear x, shear y, translate x,
        translate y)``, the arguments of ``_augment.warp_inverses``."""
        raise NotImplementedError

    def _batch(self, x, seed):
        # images()' maps from the batch's draws in one native call (the general path's
        # records and a map per image in Python were most of a 16-image call's serial
        # part); None where a map is not finite or not invertible: the general path raises
        values = _batch_draws(self, x, seed)
        if values is None:
            return None
        h, w = x.shape[1:3]
        inverse = np.empty((len(x), 2, 3))
        if _augment.warp_inverses(self.warp_params(values, (h, w)), w / 2, h / 2, inverse) >= 0:
            return None
        interp = im.INTERPOLATIONS.index(self.interpolation)
        mode = im.BORDER_MODES.index(self.border_mode)
        return im._warp(x, inverse, h, w, interp, mode, self.fill)


class Rotate(_Warp):
    """Rotate about the centre by an angle drawn from ``limit`` degrees (a number ``v``
    means ``(-v, v)``), keeping the size."""

    def __init__(
        self,
        limit: float | Sequence[float] = 90,
        interpolation: str = "bilinear",
        border_mode: str = "constant",
        fill: float = 0.0,
        p: float = 0.5,
    ) -> None:
        super().__init__(interpolation, border_mode, fill, p)
        self.limit = _range(limit, self._name(), "limit")

    def sample(self, rng, shape):
        return {"angle": _uniform(rng, self.limit)}

    def native_draws(self):
        return _uniform_spec(self.limit)

    def from_draws(self, values, bits, shape):
        return {"angle": values[0]}

    def warp_params(self, values, shape):
        params = np.zeros((len(values), 7))
        params[:, 0] = values[:, 0]
        params[:, 1:3] = 1.0
        return params


class Affine(_Warp):
    """Scale, translate, rotate and shear about the centre in one warp.

    ``scale`` a factor or a (low, high) range; ``rotate`` and ``shear`` degrees,
    ``translate_percent`` a fraction of the size or ``translate_px`` pixels:
    each a number ``v`` (the range ``(-v, v)``) or a (low, high) range, drawn
    per axis for translate and shear (a shear number shears x only).
    """

    def __init__(
        self,
        scale: float | Sequence[float] = 1.0,
        translate_percent: float | Sequence[float] | None = None,
        translate_px: float | Sequence[float] | None = None,
        rotate: float | Sequence[float] = 0.0,
        shear: float | Sequence[float] = 0.0,
        interpolation: str = "bilinear",
        border_mode: str = "constant",
        fill: float = 0.0,
        p: float = 0.5,
    ) -> None:
        super().__init__(interpolation, border_mode, fill, p)
        fn = self._name()
        self.scale = _range(scale, fn, "scale", symmetric=False, minimum=1e-6)
        if translate_percent is not None and translate_px is not None:
            raise ValueError(f"{fn}: give translate_percent or translate_px, not both")
        self.translate_percent = (
            None
            if translate_percent is None
            else _range(translate_percent, fn, "translate_percent")
        )
        self.translate_px = (
            None if translate_px is None else _range(translate_px, fn, "translate_px")
        )
        self.rotate = _range(rotate, fn, "rotate")
        self.shear = _range(shear, fn, "shear")
        self.shear_y = isinstance(shear, (tuple, list))

    def sample(self, rng, shape):
        h, w = shape
        translate = (0.0, 0.0)
        if self.translate_percent is not None:
            translate = (
                _uniform(rng, self.translate_percent) * w,
                _uniform(rng, self.translate_percent) * h,
            )
        elif self.translate_px is not None:
            translate = (_uniform(rng, self.translate_px), _uniform(rng, self.translate_px))
        return {
            "angle": _uniform(rng, self.rotate),
            "scale": _uniform(rng, self.scale),
            "shear": (_uniform(rng, self.shear), 0.0),
            "translate": translate,
        }

    def native_draws(self):
        translate = self.translate_percent or self.translate_px
        moves = () if translate is None else (translate, translate)
        return _uniform_spec(*moves, self.rotate, self.scale, self.shear)

    def from_draws(self, values, bits, shape):
        v = values
        translate = (0.0, 0.0)
        if self.translate_percent is not None:
            translate = (v[0] * shape[1], v[1] * shape[0])
        elif self.translate_px is not None:
            translate = (v[0], v[1])
        angle, scale, shear = v[-3:]
        return {"angle": angle, "scale": scale, "shear": (shear, 0.0), "translate": translate}

    def warp_params(self, values, shape):
        params = np.zeros((len(values), 7))
        params[:, 0] = values[:, -3]
        params[:, 1] = params[:, 2] = values[:, -2]
        params[:, 3] = values[:, -1]
        if self.translate_percent is not None:
            params[:, 5] = values[:, 0] * shape[1]
            params[:, 6] = values[:, 1] * shape[0]
        elif self.translate_px is not None:
            params[:, 5:7] = values[:, :2]
        return params


class ElasticTransform(Transform):
    """Elastic local warping (Simard et al. 2003): uniform(-1, 1) displacements smoothed
    by a Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels.

    Keypoints move by the displacement at their position, negated (the
    first-order inverse of the map), boxes to the box around 5 such points on
    each edge: close for the smooth fields this makes, not exact.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        sigma: float = 50.0,
        interpolation: str = "bilinear",
        border_mode: str = "constant",
        fill: float = 0.0,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        fn = self._name()
        self.alpha = _number(alpha, fn, "alpha", 0.0)
        self.sigma = _number(sigma, fn, "sigma", 0.0)
        im._choice(interpolation, im.INTERPOLATIONS[:2], fn.rstrip("()"), "interpolation")
        im._choice(border_mode, im.BORDER_MODES, fn.rstrip("()"), "border_mode")
        self.interpolation, self.border_mode = interpolation, border_mode
        self.fill = _number(fill, fn, "fill")

    def sample(self, rng, shape):
        # The draw is the fields' seed: a replay record stays small.
        return {"field_seed": int(rng.integers(0, 2**63))}

    def native_draws(self):
        spec = _uniform_spec(None)
        spec[0, 0] = 1  # DRAW_INT63
        return spec

    def from_draws(self, values, bits, shape):
        return {"field_seed": bits[0]}

    def apply(self, data, index, params):
        shape = data.shape
        seeds = np.array([p["field_seed"] for p in params], np.uint64)
        dx, dy = elastic_fields_seeded(seeds, shape, self.alpha, self.sigma)
        x = data.take(index)
        out = im.remap(x, dx, dy, self.interpolation, self.border_mode, self.fill)
        data.set_images(index, out, self._name())
        h, w = shape

        def move(points: np.ndarray, k: int) -> np.ndarray:
            cols = np.clip(np.floor(points[:, 0]), 0, w - 1).astype(np.intp)
            rows = np.clip(np.floor(points[:, 1]), 0, h - 1).astype(np.intp)
            ok = np.isfinite(points).all(1)
            cols, rows = np.where(ok, cols, 0), np.where(ok, rows, 0)
            shift = np.stack([dx[k, rows, cols], dy[k, rows, cols]], 1)
            return points - shift

        for k, i in enumerate(index):
            if data.keypoints is not None:
                data.keypoints[i] = move(data.keypoints[i], k).astype(data.keypoints[i].dtype)
            if data.boxes is not None and len(data.boxes[i]):
                b = data.boxes[i].astype(np.float64)
                t = np.linspace(0, 1, 5)
                xs = b[:, [0]] + (b[:, [2]] - b[:, [0]]) * t
                ys = b[:, [1]] + (b[:, [3]] - b[:, [1]]) * t
                edge = [
                    np.stack([xs, np.repeat(b[:, [1]], 5, 1)], -1),
                    np.stack([xs, np.repeat(b[:, [3]], 5, 1)], -1),
                    np.stack([np.repeat(b[:, [0]], 5, 1), ys], -1),
                    np.stack([np.repeat(b[:, [2]], 5, 1), ys], -1),
                ]
                pts = np.concatenate(edge, 1)
                moved = move(pts.reshape(-1, 2), k).reshape(pts.shape)
                boxes = np.concatenate([moved.min(1), moved.max(1)], 1)
                identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
                data.boxes[i] = boxes.astype(data.boxes[i].dtype)
                kept, keep = im.affine_boxes(data.boxes[i], identity, shape, data.min_visibility)
                data.boxes[i] = kept
                if data.labels is not None:
                    data.labels[i] = data.labels[i][keep]


# -- colour ------------------------------------------------------------------------------


class _ColourAffine(Transform):
    """Per-image, per-channel ``x * scale + offset`` (one native call for the batch)."""

    def coefficients(self, params: list[dict], x: np.ndarray) -> tuple[Any, Any]:
        """``scale`` and ``offset`` of the images ``x`` with their ``params``: each one
        number, ``(C,)``, ``(N, 1)`` or ``(N, C)`` (as :func:`colour_affine` takes them)."""
        raise NotImplementedError

    def batch_mode(self, x: np.ndarray) -> tuple[int, float] | None:
        """How ``_augment.colour_affine_draws`` makes :meth:`coefficients` from the
        :meth:`native_draws` of the images ``x``, natively and bit for bit: its mode
        (AFFINE_*) and unit; None where the general path is needed."""
        return None

    def apply(self, data, index, params):
        x = data.take(index)
        scale, offset = self.coefficients(params, x)
        data.set_images(index, colour_affine(x, scale, offset), self._name())

    def _batch(self, x, seed):
        # the draws and coefficients in one native call: at 16 images each Python
        # operation here is a sizeable part of the call's serial time
        mode = self.batch_mode(x) if x.dtype in _NATIVE_DTYPES else None
        seeds = None if mode is None else _batch_seeds(seed, len(x))
        if seeds is None:
            return None
        values, vectors = self._eigen()
        spec = self.native_draws()
        if x.dtype == np.uint8 and _vbmi_lut():
            # the draws and the lookups in one call: the Python between them runs after a
            # pass over the batch has filled the caches with pixels, slowly
            out = np.empty(x.shape, np.uint8)
            threads = im.native_threads(out.size)
            _augment.colour_affine_lut(
                *seeds,
                self.p,
                spec,
                *mode,
                values,
                vectors,
                np.ascontiguousarray(x),
                out,
                np.empty((2, len(x), x.shape[3])),
                np.empty(_augment.lut_scratch_size(x.shape[3], threads), np.uint8),
                threads,
            )
            return out
        scale = np.empty((len(x), x.shape[3]))
        offset = np.empty_like(scale)
        applied = np.empty(len(x), np.uint8)
        _augment.colour_affine_draws(
            *seeds, self.p, spec, *mode, values, vectors, scale, offset, applied
        )
        if x.dtype != np.uint8 and not applied.all():
            # float32 images left alone are copied (x * 1 + 0 would turn -0.0 into 0.0)
            return None
        return _colour_affine_rows(x, scale, offset)

    def _eigen(self) -> tuple[np.ndarray, np.ndarray]:
        return _NO_EIGEN


class RGBShift(_ColourAffine):
    """Add a random shift per channel, drawn from each limit (0-255 units; a number ``v``
    means ``(-v, v)``)."""

    def __init__(
        self,
        r_shift_limit: float | Sequence[float] = 20,
        g_shift_limit: float | Sequence[float] = 20,
        b_shift_limit: float | Sequence[float] = 20,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        fn = self._name()
        self.limits = [
            _range(v, fn, name)
            for v, name in (
                (r_shift_limit, "r_shift_limit"),
                (g_shift_limit, "g_shift_limit"),
                (b_shift_limit, "b_shift_limit"),
            )
        ]

    def sample(self, rng, shape):
        return {"shift": [_uniform(rng, lim) for lim in self.limits]}

    def native_draws(self):
        return _uniform_spec(*self.limits)

    def from_draws(self, values, bits, shape):
        return {"shift": list(values)}

    def coefficients(self, params, x):
        if x.shape[-1] != 3:
            raise ValueError(f"{self._name()}: image must have 3 channels, got {x.shape[-1]}")
        shifts = np.array([p["shift"] for p in params], np.float64).reshape(-1, 3)
        return 1.0, shifts * (full_scale(x.dtype) / 255.0)

    def batch_mode(self, x):
        return None if x.shape[-1] != 3 else (0, full_scale(x.dtype) / 255.0)  # AFFINE_SHIFT


class RandomBrightnessContrast(_ColourAffine):
    """``x * (1 + c) + b * full_scale`` (``b * mean(x)`` when not ``brightness_by_max``),
    ``b`` from ``brightness_limit``, ``c`` from ``contrast_limit`` (a number ``v`` is
    ``(-v, v)``)."""

    def __init__(
        self,
        brightness_limit: float | Sequence[float] = 0.2,
        contrast_limit: float | Sequence[float] = 0.2,
        brightness_by_max: bool = True,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        self.brightness = _range(brightness_limit, self._name(), "brightness_limit")
        self.contrast = _range(contrast_limit, self._name(), "contrast_limit")
        self.by_max = bool(brightness_by_max)

    def sample(self, rng, shape):
        return {"alpha": 1.0 + _uniform(rng, self.contrast), "beta": _uniform(rng, self.brightness)}

    def native_draws(self):
        return _uniform_spec(self.contrast, self.brightness)

    def from_draws(self, values, bits, shape):
        contrast, brightness = values
        return {"alpha": 1.0 + contrast, "beta": brightness}

    def coefficients(self, params, x):
        alpha = np.array([p["alpha"] for p in params], np.float64)[:, None]
        beta = np.array([p["beta"] for p in params], np.float64)[:, None]
        if self.by_max:
            return alpha, beta * full_scale(x.dtype)
        return alpha, beta * np.array([[float(image.mean())] for image in x])

    def batch_mode(self, x):
        return (1, full_scale(x.dtype)) if self.by_max else None  # AFFINE_BRIGHTNESS


class PCAColour(_ColourAffine):
    """Krizhevsky et al. (2012) PCA colour: add ``[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`` with
    ``a_i ~ N(0, alpha_std)`` per image, from :func:`fit_pca_colour` over the training set.

    Each ``a_i`` is the normal quantile of one uniform draw (``rng.random()``), not
    ``rng.normal``'s ziggurat: a batch then draws them natively, bit for bit as one image
    does."""

    def __init__(self, pca: PCAColourFit, alpha_std: float = 0.1, p: float = 0.5) -> None:
        super().__init__(p)
        if not isinstance(pca, PCAColourFit):
            raise TypeError(
                f"{self._name()}: pca must be the result of fit_pca_colour(), got "
                f"{type(pca).__name__}"
            )
        self.pca = pca
        self.alpha_std = _number(alpha_std, self._name(), "alpha_std", 0.0)

    def sample(self, rng, shape):
        # a normal value from each uniform draw by its quantile (the one native function
        # behind both this and the batch's native draws, so that they agree bit for bit)
        return {
            "alphas": [
                0.0 + self.alpha_std * _augment.normal_from_unit(u) for u in rng.random(3).tolist()
            ]
        }

    def native_draws(self):
        return np.array([(2.0, 0.0, self.alpha_std)] * 3)  # DRAW_NORMAL

    def from_draws(self, values, bits, shape):
        return {"alphas": list(values)}

    def coefficients(self, params, x):
        if x.shape[-1] != 3:
            raise ValueError(f"{self._name()}: image must have 3 channels, got {x.shape[-1]}")
        offsets = pca_colour_offsets(self.pca, [p["alphas"] for p in params])
        return 1.0, offsets * full_scale(x.dtype)

    def batch_mode(self, x):
        return None if x.shape[-1] != 3 else (2, full_scale(x.dtype))  # AFFINE_PCA

    def _eigen(self):
        # pca_colour_offsets' operations, natively
        return (
            np.ascontiguousarray(self.pca.eigenvalues, np.float64),
            np.ascontiguousarray(self.pca.eigenvectors, np.float64),
        )


FancyPCA = PCAColour


class Normalize(_ColourAffine):
    """``(x - mean * max_pixel_value) / (std * max_pixel_value)`` per channel; float32 out.

    Images it does not apply to (``p < 1``) are only converted to float32.
    """

    def __init__(
        self,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        max_pixel_value: float = 255.0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        fn = self._name()
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.shape != self.std.shape or not np.all(self.std > 0):
            raise ValueError(f"{fn}: mean and std must have equal lengths and std > 0")
        self.max_pixel_value = _number(max_pixel_value, fn, "max_pixel_value", 1e-12)

    def coefficients(self, params, x):
        if len(self.mean) not in (1, x.shape[-1]):
            raise ValueError(
                f"{self._name()}: mean has {len(self.mean)} values for {x.shape[-1]} channels"
            )
        return 1.0 / (self.std * self.max_pixel_value), -self.mean / self.std

    def _run(self, data, rngs, active, recorded, force=False):
        if data.images.dtype != np.float32:
            data.images = data.images.astype(np.float32)
        return super()._run(data, rngs, active, recorded, force)


class HueSaturationValue(Transform):
    """Shift hue (degrees), saturation and value (0-255 units) by amounts drawn from the
    limits (a number ``v`` is ``(-v, v)``); RGB images."""

    def __init__(
        self,
        hue_shift_limit: float | Sequence[float] = 20,
        sat_shift_limit: float | Sequence[float] = 30,
        val_shift_limit: float | Sequence[float] = 20,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        fn = self._name()
        self.hue = _range(hue_shift_limit, fn, "hue_shift_limit")
        self.sat = _range(sat_shift_limit, fn, "sat_shift_limit")
        self.val = _range(val_shift_limit, fn, "val_shift_limit")

    def sample(self, rng, shape):
        return {
            "hue": _uniform(rng, self.hue),
            "sat": _uniform(rng, self.sat),
            "val": _uniform(rng, self.val),
        }

    def native_draws(self):
        return _uniform_spec(self.hue, self.sat, self.val)

    def from_draws(self, values, bits, shape):
        return dict(zip(("hue", "sat", "val"), values))

    def apply(self, data, index, params):
        x = data.take(index)
        if x.shape[3] != 3:
            raise ValueError(f"{self._name()}: image must have 3 channels, got {x.shape[3]}")
        hue = [p["hue"] for p in params]
        sat = [p["sat"] / 255.0 for p in params]
        val = [p["val"] / 255.0 for p in params]
        data.set_images(index, hsv_shift(x, hue, sat, val), self._name())

    def _batch(self, x, seed):
        # the draws, apply()'s shifts from them and the kernel in two native calls: the
        # general path's per-image records were most of a 16-image call's serial part
        values = _batch_draws(self, x, seed) if x.shape[3] == 3 else None
        return None if values is None else _hsv_shift_draws(x, values)


class ColorJitter(Transform):
    """torchvision's ColorJitter: brightness, contrast, saturation and hue factors drawn per
    image and applied in a random order (one native call for the batch); RGB images.

    ``brightness``, ``contrast`` and ``saturation`` are a number ``v`` (factors from
    ``(max(0, 1 - v), 1 + v)``) or a (low, high) pair of factors >= 0; ``hue`` is a
    number ``v`` in [0, 0.5] (``(-v, v)``) or a pair in [-0.5, 0.5], in turns.
    Defaults are albumentations'. See :func:`cnnkit.augment.colour_jitter` for the
    rounding (once at the end, not after each step as torchvision's uint8 path).
    """

    def __init__(
        self,
        brightness: float | Sequence[float] = 0.2,
        contrast: float | Sequence[float] = 0.2,
        saturation: float | Sequence[float] = 0.2,
        hue: float | Sequence[float] = 0.5,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        fn = self._name()
        self.factors = [
            self._factor_range(v, name)
            for v, name in (
                (brightness, "brightness"),
                (contrast, "contrast"),
                (saturation, "saturation"),
            )
        ]
        self.hue = _range(hue, fn, "hue")
        if not -0.5 <= self.hue[0] <= self.hue[1] <= 0.5:
            raise ValueError(f"{fn}: hue must lie in [-0.5, 0.5], got {hue!r}")

    def _factor_range(self, value: Any, name: str) -> tuple[float, float]:
        if isinstance(value, (tuple, list)):
            return _range(value, self._name(), name, minimum=0.0)
        v = _number(value, self._name(), name, 0.0)
        return max(0.0, 1.0 - v), 1.0 + v

    def sample(self, rng, shape):
        b, c, s = (_uniform(rng, r) for r in self.factors)
        return {
            "brightness": b,
            "contrast": c,
            "saturation": s,
            "hue": _uniform(rng, self.hue),
            "order": rng.permutation(4).tolist(),
        }

    def native_draws(self):
        spec = _uniform_spec(*self.factors, self.hue, None, None, None)
        spec[4:] = [(3.0, 0.0, 3.0), (3.0, 0.0, 2.0), (3.0, 0.0, 1.0)]  # DRAW_SWAP
        return spec

    def from_draws(self, values, bits, shape):
        order = [0, 1, 2, 3]
        for i, j in zip((3, 2, 1), values[4:]):  # rng.permutation(4)'s shuffle
            order[i], order[int(j)] = order[int(j)], order[i]
        return dict(zip(("brightness", "contrast", "saturation", "hue"), values[:4]), order=order)

    def apply(self, data, index, params):
        x = data.take(index)
        if x.shape[3] != 3:
            raise ValueError(f"{self._name()}: image must have 3 channels, got {x.shape[3]}")
        b, c, s, h = (
            [p[name] for p in params] for name in ("brightness", "contrast", "saturation", "hue")
        )
        order = np.array([p["order"] for p in params], np.int32)
        data.set_images(index, colour_jitter(x, b, c, s, h, order), self._name())

    def _batch(self, x, seed):
        if x.shape[3] != 3:
            return None
        n = len(x)
        values = _batch_draws(self, x, seed)
        if values is None:
            return None
        # from_draws' swaps for the whole batch
        order = np.tile(np.arange(4, dtype=np.int32), (n, 1))
        rows = np.arange(n)
        for i, column in zip((3, 2, 1), values[:, 4:].T.astype(np.intp)):
            order[rows, i], order[rows, column] = order[rows, column], order[rows, i]
        b, c, s, h = values[:, :4].T
        return colour_jitter(x, b, c, s, h, order)


class GaussNoise(Transform):
    """Add Gaussian noise per pixel and channel: std drawn from ``std_range`` and mean from
    ``mean_range``, both fractions of full scale (albumentations 2's convention)."""

    def __init__(
        self,
        std_range: Sequence[float] = (0.2, 0.44),
        mean_range: Sequence[float] = (0.0, 0.0),
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        self.std_range = _pair(std_range, self._name(), "std_range", minimum=0.0)
        self.mean_range = _pair(mean_range, self._name(), "mean_range")

    def sample(self, rng, shape):
        return {
            "std": _uniform(rng, self.std_range),
            "mean": _uniform(rng, self.mean_range),
            "noise_seed": int(rng.integers(0, 2**63)),
        }

    def native_draws(self):
        spec = _uniform_spec(self.std_range, self.mean_range, None)
        spec[2, 0] = 1  # DRAW_INT63
        return spec

    def from_draws(self, values, bits, shape):
        return {"std": values[0], "mean": values[1], "noise_seed": bits[2]}

    def apply(self, data, index, params):
        x = data.take(index)
        top = full_scale(x.dtype)
        # each image's draws from its own generator, as add_gaussian_noise(x[k], ...)
        # makes them, made in parallel by one native call for the batch
        seeds = np.array([p["noise_seed"] for p in params], np.uint64)
        std = np.array([p["std"] * top for p in params], np.float32)
        mean = np.array([p["mean"] * top for p in params], np.float32)
        out = add_gaussian_seeded(x, std, mean, seeds)
        data.set_images(index, out, self._name())

    def _batch(self, x, seed):
        # apply()'s arguments from the batch's draws as arrays, without per-image records
        values = _batch_draws(self, x, seed)
        if values is None:
            return None
        top = full_scale(x.dtype)
        std, mean = ((values[:, k] * top).astype(np.float32) for k in (0, 1))
        return add_gaussian_seeded(x, std, mean, values.view(np.uint64)[:, 2].copy())


# -- pipelines ---------------------------------------------------------------------------


def _check_transforms(transforms: Any, fn: str) -> list[Transform]:
    if not isinstance(transforms, (list, tuple)) or not all(
        isinstance(t, Transform) for t in transforms
    ):
        raise TypeError(f"{fn}: transforms must be a list of cnnkit.augment transforms")
    return list(transforms)


class Compose(Transform):
    """Apply ``transforms`` in order (the whole list with probability ``p``)."""

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0) -> None:
        super().__init__(p)
        self.transforms = _check_transforms(transforms, self._name())

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r}, p={self.p})"

    def _run(self, data, rngs, active, recorded, force=False):
        on = active.copy()
        drawn = None
        if recorded is None and not force and isinstance(rngs, _Streams):
            drawn = rngs.draw(active, self.p, np.empty((0, 3)))  # the p test alone
        if drawn is not None:
            on = drawn[1].astype(bool)
        else:
            for i in range(data.n):
                if on[i]:
                    if recorded is not None:
                        on[i] = recorded[i] is not None
                    else:
                        on[i] = force or rngs[i].random() < self.p
        children = []
        for k, t in enumerate(self.transforms):
            sub = None if recorded is None else [r[k] if r is not None else None for r in recorded]
            children.append(t._run(data, rngs, on, sub))
        return [[c[i] for c in children] if on[i] else None for i in range(data.n)]


class OneOf(Transform):
    """Apply one of ``transforms`` (with probability ``p``), picked with probabilities
    proportional to their ``p``; the picked one is applied for sure."""

    def __init__(self, transforms: Sequence[Transform], p: float = 0.5) -> None:
        super().__init__(p)
        self.transforms = _check_transforms(transforms, self._name())
        weights = np.array([t.p for t in self.transforms])
        if not len(weights) or weights.sum() <= 0:
            raise ValueError(f"{self._name()}: transforms must be non-empty with some p > 0")
        self.weights = weights / weights.sum()

    def _run(self, data, rngs, active, recorded, force=False):
        chosen = np.full(data.n, -1)
        for i in range(data.n):
            if not active[i]:
                continue
            if recorded is not None:
                chosen[i] = -1 if recorded[i] is None else recorded[i][0]
            elif force or rngs[i].random() < self.p:
                chosen[i] = rngs[i].choice(len(self.transforms), p=self.weights)
        # Each pick runs on its own sub-batch (its output size may differ from the
        # input's); the parts are merged back when they agree in size.
        records: list = [None] * data.n
        parts = []
        for k, t in enumerate(self.transforms):
            index = np.flatnonzero(chosen == k)
            if not len(index):
                continue
            sub = data.subset(index)
            sub_records = None if recorded is None else [recorded[i][1] for i in index]
            got = t._run(
                sub, [rngs[i] for i in index], np.ones(len(index), bool), sub_records, force=True
            )
            parts.append((index, sub))
            for j, i in enumerate(index):
                records[i] = (int(k), got[j])
        if parts:
            data.merge(parts, self._name())
        return records


class SomeOf(Transform):
    """Apply ``n`` of ``transforms`` picked at random per image (with probability ``p``),
    each with its own ``p``, in the listed order."""

    def __init__(
        self, transforms: Sequence[Transform], n: int, replace: bool = False, p: float = 1.0
    ) -> None:
        super().__init__(p)
        self.transforms = _check_transforms(transforms, self._name())
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{self._name()}: n must be an int >= 0, got {n!r}")
        if not replace and n > len(self.transforms):
            raise ValueError(
                f"{self._name()}: n must be at most {len(self.transforms)} without replace, got {n}"
            )
        self.n, self.replace = int(n), bool(replace)

    def _run(self, data, rngs, active, recorded, force=False):
        picked = np.zeros((data.n, len(self.transforms)), bool)
        for i in range(data.n):
            if not active[i]:
                continue
            if recorded is not None:
                if recorded[i] is not None:
                    picked[i] = [r != "skip" for r in recorded[i]]
            elif force or rngs[i].random() < self.p:
                picked[i, rngs[i].choice(len(self.transforms), self.n, replace=self.replace)] = True
        children = []
        for k, t in enumerate(self.transforms):
            sub = None if recorded is None else [r[k] if r is not None else None for r in recorded]
            children.append(t._run(data, rngs, picked[:, k], sub))
        return [
            [c[i] if picked[i, k] else "skip" for k, c in enumerate(children)]
            if picked[i].any()
            else None
            for i in range(data.n)
        ]
