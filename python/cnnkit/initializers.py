"""Keras-named weight initializers.

An initializer is called as ``init(shape, dtype, rng)`` and returns a new array.
``rng`` is the :class:`numpy.random.Generator` of the layer being built (models
derive it from their ``seed``, so the same seed gives the same weights); an
initializer made with its own ``seed`` ignores it and uses that seed instead.

Fan-in and fan-out follow Keras: for a weight of shape ``(*kernel, in, out)``
(Dense ``(in, out)``, Conv2D ``(kh, kw, in, out)``) the receptive field is
``prod(kernel)``, ``fan_in = receptive * in`` and ``fan_out = receptive * out``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _validate
from .saving import registry
from .saving.registry import register_serializable

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Initializer",
    "LecunNormal",
    "Ones",
    "RandomNormal",
    "RandomUniform",
    "VarianceScaling",
    "Zeros",
    "deserialize",
    "get",
    "serialize",
]

# Standard deviation of the unit normal truncated to [-2, 2]; Keras divides by it so that
# the truncated distribution keeps the requested variance.
_TRUNCATED_STD = 0.87962566103423978


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return float(receptive * shape[-2]), float(receptive * shape[-1])


class Initializer:
    """Base class: subclasses define :meth:`sample`."""

    # Random samples cast to an integer dtype are mostly 0 (a Glorot limit is below 1).
    _any_dtype = False

    def __init__(self, seed: int | None = None) -> None:
        self.seed = (
            None if seed is None else _validate.seed(f"{type(self).__name__}()", "seed", seed)
        )

    def __call__(
        self,
        shape: tuple[int, ...],
        dtype: Any = np.float32,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        where = f"{type(self).__name__}()"
        shape = _validate.shape(where, "shape", shape, minimum=0)
        try:
            kind = np.dtype(dtype).kind
        except TypeError:
            raise TypeError(f"{where}: dtype must be a NumPy dtype, got {dtype!r}") from None
        if kind != "f" and not (self._any_dtype and kind in "iub"):
            raise TypeError(f"{where}: dtype must be a floating dtype, got {np.dtype(dtype)}")
        if self.seed is not None or rng is None:
            rng = np.random.default_rng(self.seed)
        return np.asarray(self.sample(shape, rng), dtype=np.float64).astype(dtype)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        return cls(**config)


@register_serializable(package="cnnkit")
class Zeros(Initializer):
    _any_dtype = True

    def __init__(self) -> None:
        super().__init__(None)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.zeros(shape)

    def get_config(self) -> dict[str, Any]:
        return {}


@register_serializable(package="cnnkit")
class Ones(Zeros):
    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.ones(shape)


@register_serializable(package="cnnkit")
class Constant(Initializer):
    _any_dtype = True

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(None)
        self.value = _validate.real("Constant()", "value", value)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.full(shape, self.value)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


@register_serializable(package="cnnkit")
class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        # NaN or inf made every weight NaN or inf.
        self.mean = _validate.real("RandomNormal()", "mean", mean)
        self.stddev = _validate.real("RandomNormal()", "stddev", stddev, low=0.0)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.normal(self.mean, self.stddev, shape)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


@register_serializable(package="cnnkit")
class RandomUniform(Initializer):
    def __init__(
        self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None
    ) -> None:
        super().__init__(seed)
        # An infinite bound was NumPy's OverflowError 'high - low range exceeds valid bounds'.
        minval = _validate.real("RandomUniform()", "minval", minval)
        maxval = _validate.real("RandomUniform()", "maxval", maxval)
        if not minval <= maxval:
            raise ValueError(
                f"RandomUniform(): minval must be <= maxval, got {minval!r} > {maxval!r}"
            )
        self.minval, self.maxval = float(minval), float(maxval)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


def _truncated_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Unit normal samples redrawn until they lie within two standard deviations."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return out


@register_serializable(package="cnnkit")
class VarianceScaling(Initializer):
    """Samples with variance ``scale / n``, ``n`` the fan-in, fan-out or their mean."""

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        name = type(self).__name__
        scale = _validate.real(f"{name}()", "scale", scale, low=0.0, low_open=True)
        if mode not in self.MODES:
            raise ValueError(f"{name}(): mode must be one of {self.MODES}, got {mode!r}")
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(
                f"{name}(): distribution must be one of {self.DISTRIBUTIONS}, got {distribution!r}"
            )
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3 * variance)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.standard_normal(shape) * math.sqrt(variance)
        return _truncated_normal(shape, rng) * (math.sqrt(variance) / _TRUNCATED_STD)

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }


def _preset(name: str, scale: float, mode: str, distribution: str, doc: str) -> type:
    def __init__(self: VarianceScaling, seed: int | None = None) -> None:
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self: VarianceScaling) -> dict[str, Any]:
        return {"seed": self.seed}

    cls = type(
        name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config, "__doc__": doc}
    )
    return register_serializable(package="cnnkit")(cls)


GlorotUniform = _preset(
    "GlorotUniform", 1.0, "fan_avg", "uniform", "Uniform in ``±sqrt(6 / (fan_in + fan_out))``."
)
GlorotNormal = _preset(
    "GlorotNormal", 1.0, "fan_avg", "truncated_normal", "Truncated normal, variance 2/(in+out)."
)
HeNormal = _preset(
    "HeNormal", 2.0, "fan_in", "truncated_normal", "Truncated normal, variance ``2 / fan_in``."
)
HeUniform = _preset("HeUniform", 2.0, "fan_in", "uniform", "Uniform, variance ``2 / fan_in``.")
LecunNormal = _preset(
    "LecunNormal", 1.0, "fan_in", "truncated_normal", "Truncated normal, variance ``1 / fan_in``."
)

# Keras's names for the built-in initializers (the class names work too).
_ALIASES: dict[str, type[Initializer]] = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
    "lecun_normal": LecunNormal,
}


def get(identifier: Any) -> Initializer:
    """An initializer from a Keras name (``"glorot_uniform"``, ``"he_normal"``, ``"zeros"``,
    ...) or a registered class name, a serialized dict or an :class:`Initializer` (returned
    as is)."""
    where = "initializers.get()"
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower()) or registry.get_registered_object(
            identifier, Initializer
        )
        if cls is None:
            raise ValueError(
                f"{where}: unknown name {identifier!r}; known: {', '.join(sorted(_ALIASES))}"
            )
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(
        f"{where}: identifier must be a name, a dict or an Initializer, got "
        f"{type(identifier).__name__}"
    )


def serialize(initializer: Initializer) -> dict[str, Any]:
    """``{"class_name", "config"}`` of an initializer of a registered class (TypeError for
    others: register a custom initializer class to save a model that uses it)."""
    return registry.serialize(initializer, "initializers.serialize()")


def deserialize(config: Any) -> Initializer:
    """The inverse of :func:`serialize`; only registered classes are constructed."""
    return registry.deserialize(config, Initializer, "initializers.deserialize()")
