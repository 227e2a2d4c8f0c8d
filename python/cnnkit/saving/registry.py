"""One registry for every class that a model file names: layers, models, losses, metrics,
optimizers, schedules, initializers, callbacks.

A class joins it with the decorator, as with ``keras.saving.register_keras_serializable``::

    @cnnkit.saving.register_serializable(package="my_project")
    class Scale(cnnkit.layers.Layer):
        ...

and is then written to files as ``{"class_name": "my_project>Scale", "config": ...}`` and
rebuilt from them without ``custom_objects``. cnnkit's own classes are registered under
the package ``"cnnkit"`` and written by their bare class name (``"Conv2D"``), as files
always were.

A name may be shared by classes of different kinds (the loss and the metric
``MeanSquaredError``): every lookup says which base class it wants. Loading only ever
instantiates registered classes and those passed in ``custom_objects``: a file cannot
name code of its own.

This module imports nothing of cnnkit, so any module may register its classes here
without an import cycle.
"""

from __future__ import annotations

import importlib
import re
import types
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

__all__ = [
    "deserialize",
    "get_registered_name",
    "get_registered_object",
    "register_serializable",
    "serialize",
    "snake_case",
]

T = TypeVar("T")

# registered name -> the objects registered under it (one per kind at most)
_OBJECTS: dict[str, list[Any]] = {}
_NAME_ATTR = "_cnnkit_registered_name"

# cnnkit's own classes that live in modules loaded on first use (applications, above the
# modules that look names up): registered name -> module, imported when a lookup misses, so
# a fresh process loads such a model without custom_objects. Add an entry with the class.
_FIRST_USE_MODULES: dict[str, str] = {
    "Functional": "cnnkit.models.functional",
    "Sequential": "cnnkit.models.sequential",
    "YoloLoss": "cnnkit.detection.yolo",
    "YoloModel": "cnnkit.detection.yolo",
    "FastRCNN": "cnnkit.detection.rcnn",
    "ProposalLoss": "cnnkit.detection.rcnn",
    "RCNNClassifier": "cnnkit.detection.rcnn",
    # the layers of imported ONNX networks
    **{
        name: "cnnkit.onnx._layers"
        for name in (
            "ConstantOperand",
            "ElementwiseUnary",
            "LRN",
            "OnnxPooling",
            "OnnxSoftmax",
            "OnnxPad",
            "PRelu",
            "Reduce",
            "SliceAxes",
            "Split",
            "TensorBroadcast",
        )
    },
}


def register_serializable(package: str = "Custom", name: str | None = None) -> Callable[[T], T]:
    """A decorator that registers a class (or function) for saving and loading.

    Parameters
    ----------
    package : str, default "Custom"
        A namespace for the name; cnnkit's own classes use ``"cnnkit"``.
    name : str, optional
        The name within the package; the class's ``__name__`` by default.

    The object is stored as ``"package>name"`` (just ``name`` in the ``"cnnkit"``
    package). Registering a second object of the same kind under the same name raises
    ``ValueError``.
    """
    where = "register_serializable()"
    for arg, value in (("package", package), ("name", name)):
        if value is not None and (not isinstance(value, str) or not value or ">" in value):
            raise ValueError(f"{where}: {arg} must be a non-empty str without '>', got {value!r}")

    def decorator(obj: T) -> T:
        own = name or getattr(obj, "__name__", None)
        if not isinstance(own, str) or not own:
            raise ValueError(f"{where}: {obj!r} has no __name__; pass name=")
        key = own if package == "cnnkit" else f"{package}>{own}"
        entries = _OBJECTS.setdefault(key, [])
        for other in entries:
            if other is obj:
                return obj
            if _same_kind(other, obj):
                raise ValueError(f"{where}: the name {key!r} is already registered to {other!r}")
        entries.append(obj)
        setattr(obj, _NAME_ATTR, key)
        return obj

    return decorator


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, type) and isinstance(b, type):
        return issubclass(a, b) or issubclass(b, a) or _root(a) is _root(b)
    return not isinstance(a, type) and not isinstance(b, type)


def _root(cls: type) -> type:
    """The outermost registered-or-not base below ``object`` (Layer, Loss, Metric, ...)."""
    mro = [c for c in cls.__mro__ if c is not object]
    return mro[-1]


def get_registered_name(obj: Any) -> str | None:
    """The name ``obj`` (a class or function, or an instance's class) is registered under,
    or None. Subclasses of a registered class are not registered by inheritance."""
    target = obj if isinstance(obj, (type, types.FunctionType)) else type(obj)
    key = getattr(target, "__dict__", {}).get(_NAME_ATTR)
    return key if key is not None and any(o is target for o in _OBJECTS.get(key, [])) else None


def get_registered_object(
    name: str,
    base: type | None = None,
    custom_objects: Mapping[str, Any] | None = None,
) -> Any:
    """The object registered (or given in ``custom_objects``) under ``name``, or None.

    ``base`` keeps the lookup to subclasses of it (functions when None). An exact
    name wins; otherwise a unique match ignoring case is accepted (files once wrote
    optimizer names in lower case).
    """

    if not isinstance(name, str):  # else "'int' object has no attribute 'lower'"
        raise TypeError(f"get_registered_object(): name must be a str, got {type(name).__name__}")

    def fits(obj: Any) -> bool:
        if base is None:
            return not isinstance(obj, type)
        return isinstance(obj, type) and issubclass(obj, base)

    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name not in _OBJECTS and name in _FIRST_USE_MODULES:
        importlib.import_module(_FIRST_USE_MODULES[name])  # registers the class
    for obj in _OBJECTS.get(name, []):
        if fits(obj):
            return obj
    folded = [
        obj
        for key, objs in _OBJECTS.items()
        if key.lower() == name.lower()
        for obj in objs
        if fits(obj)
    ]
    return folded[0] if len(folded) == 1 else None


def serialize(obj: Any, where: str = "serialize()") -> dict[str, Any]:
    """``{"class_name": registered name, "config": obj.get_config()}``.

    Raises
    ------
    TypeError
        When the object's own class is not registered (a subclass of a registered
        class must be registered itself: its configuration may differ).
    """
    key = get_registered_name(type(obj))
    if key is None:
        raise TypeError(
            f"{where}: {type(obj).__name__} is not registered; decorate it with "
            "cnnkit.saving.register_serializable() to save it"
        )
    return {"class_name": key, "config": obj.get_config()}


def deserialize(
    config: Any,
    base: type,
    where: str = "deserialize()",
    custom_objects: Mapping[str, Any] | None = None,
    from_config_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Build an instance from :func:`serialize`'s output; only classes registered as
    subclasses of ``base`` (or given in ``custom_objects``) are instantiated.

    Raises
    ------
    TypeError
        When ``config`` or its ``"config"`` entry is not a dict.
    ValueError
        When the class name is unknown. What the class's ``from_config`` raises for a
        configuration it rejects passes through.
    """
    if not isinstance(config, Mapping):
        raise TypeError(
            f"{where}: config must be a dict {{'class_name', 'config'}}, got "
            f"{type(config).__name__}"
        )
    name = config.get("class_name")
    if not isinstance(name, str):
        raise ValueError(f"{where}: config must have a 'class_name' (a str), got {name!r}")
    cls = get_registered_object(name, base, custom_objects)
    if cls is None:
        known = sorted(k for k, objs in _OBJECTS.items() if any(_fits(o, base) for o in objs))
        kind = snake_case(base.__name__).replace("_", " ")
        raise ValueError(
            f"{where}: unknown {kind} class {name!r}; pass it in custom_objects or register "
            f"it with cnnkit.saving.register_serializable (known: {', '.join(known)})"
        )
    inner = config.get("config")
    inner = {} if inner is None else inner
    if not isinstance(inner, Mapping):
        raise TypeError(f"{where}: config['config'] must be a dict, got {type(inner).__name__}")
    return cls.from_config(dict(inner), **(from_config_kwargs or {}))


def get_object(identifier: Any, base: type, names: Mapping[str, type], where: str, arg: str) -> Any:
    """Keras's ``get()`` of a kind of object (regularizers, constraints): an instance of
    ``base`` or None as it is, a name from ``names`` (any case) or a registered name, a
    configuration dict (:func:`deserialize`), or any callable."""
    if identifier is None or isinstance(identifier, base):
        return identifier
    kind = base.__name__
    if isinstance(identifier, str):
        cls = names.get(identifier.lower())
        if cls is not None:
            return cls()
        fn = get_registered_object(identifier)
        if fn is not None:
            return fn
        raise ValueError(
            f"{where}: {arg} must be one of {', '.join(sorted(names))}, a {kind} or None, "
            f"got {identifier!r}"
        )
    if isinstance(identifier, dict):
        return deserialize(identifier, base, where)
    if callable(identifier):
        return identifier
    raise TypeError(
        f"{where}: {arg} must be a {kind}, a name, a callable or None, got "
        f"{type(identifier).__name__}"
    )


def _fits(obj: Any, base: type) -> bool:
    return isinstance(obj, type) and issubclass(obj, base)


def snake_case(name: str) -> str:
    """A class name in snake case, as Keras names layers: ``Conv2D`` -> ``conv2d``,
    ``ReLU`` -> ``re_lu``, ``BatchNormalization`` -> ``batch_normalization``,
    ``MaxPooling2D`` -> ``max_pooling2d``, ``LeakyReLU`` -> ``leaky_re_lu``."""
    # Keras's rule (keras.src.utils.naming.to_snake_case), so names match Keras's.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
