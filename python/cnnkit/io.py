"""Model files: one zip holding JSON and ``.npz`` members; never pickle.

A model file (``model.save(path)``, conventionally ``*.cnnkit``, any name works) holds

``cnnkit.json``
    The format tag and version, the architecture (each layer's ``get_config``),
    the weight names and shapes, layer state that is not a weight (Dropout's
    generator), the compile settings and the optimizer's configuration.
``weights.npz``
    The weights, in model order.
``optimizer.npz``
    The optimizer's state (slots, step count), when compiled.

A weights file (``model.save_weights(path)``) holds ``cnnkit.json`` and
``weights.npz`` only.

Safety and robustness:

* Loading never runs code from the file: arrays are read with
  ``allow_pickle=False`` and only the layer classes of :mod:`cnnkit.layers`,
  :class:`cnnkit.Sequential`, cnnkit's own models and losses (such as
  :class:`cnnkit.detection.YoloModel` and :class:`~cnnkit.detection.YoloLoss`)
  and classes passed in ``custom_objects`` are instantiated. A subclassed
  :class:`cnnkit.Model` is rebuilt only when its class is passed as
  ``custom_objects={"MyModel": MyModel}`` (its ``__init__`` must accept its
  ``get_config()``); otherwise use ``save_weights`` / ``load_weights`` on a
  model built in code.
* Custom losses and metrics (plain callables) are stored by name; loading a
  model compiled with them needs them in ``custom_objects`` (else a
  ``ValueError`` names them), or ``compile=False`` for an uncompiled model.
* Writing is atomic: the file is written to a temporary file in the same
  directory, flushed to disk and renamed over the target, so a crash while
  saving leaves the previous file intact.
* A corrupt, truncated or foreign file raises ``ValueError`` naming the path.
"""

from __future__ import annotations

import io as _io
import json
import os
import tempfile
import zipfile
from typing import Any, Callable

import numpy as np

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]

FORMAT = "cnnkit"
FORMAT_VERSION = 1
_META = "cnnkit.json"
_WEIGHTS = "weights.npz"
_OPTIMIZER = "optimizer.npz"


# -- writing -------------------------------------------------------------------------------------
def _atomic_write(path: Any, write: Callable[[Any], None]) -> None:
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = _io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _flatten_state(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON skeleton of nested dicts/lists whose array leaves move into ``arrays``."""
    if isinstance(value, dict):
        return {"dict": {str(k): _flatten_state(v, arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [_flatten_state(v, arrays) for v in value]}
    if value is None or isinstance(value, (bool, str)):
        return {"value": value}
    key = f"a{len(arrays)}"
    arrays[key] = np.asarray(value.data if hasattr(value, "data") else value)
    return {"array": key}


def _unflatten_state(skeleton: Any, arrays: Any) -> Any:
    if not isinstance(skeleton, dict) or len(skeleton) != 1:
        raise ValueError("bad optimizer state layout")
    ((kind, body),) = skeleton.items()
    if kind == "dict":
        return {k: _unflatten_state(v, arrays) for k, v in body.items()}
    if kind == "list":
        return [_unflatten_state(v, arrays) for v in body]
    if kind == "value":
        return body
    if kind == "array":
        a = arrays[body]
        return a[()] if a.ndim == 0 else a
    raise ValueError(f"bad optimizer state entry {kind!r}")


def _weights_meta(model: Any) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    meta, arrays = [], {}
    for i, v in enumerate(model.weights):
        key = f"w{i}"
        arrays[key] = np.ascontiguousarray(v.data)
        meta.append({"name": v.name, "key": key, "shape": list(v.shape)})
    return meta, arrays


def _serialize_compile(model: Any) -> dict[str, Any] | None:
    from . import losses, metrics

    args = model._compile_args
    if not model.compiled or args is None:
        return None

    def loss_entry(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "class_name" in value:
            return value
        built = losses.get(value)
        serialized = losses.serialize(built)
        if serialized is not None:
            return serialized
        return {"custom": getattr(value, "__name__", type(value).__name__)}

    def metric_entry(value: Any) -> Any:
        if isinstance(value, str):
            return value
        serialize = getattr(metrics, "serialize", None)
        if serialize is not None:
            try:
                out = serialize(value)
            except (TypeError, ValueError):
                out = None
            if out is not None:
                return out
        return {"custom": getattr(value, "__name__", type(value).__name__)}

    loss = args["loss"]
    if isinstance(loss, dict) and not ("class_name" in loss and "config" in loss):
        loss_json: Any = {"by_output": {k: loss_entry(v) for k, v in loss.items()}}
    elif isinstance(loss, (list, tuple)):
        loss_json = {"per_output": [loss_entry(v) for v in loss]}
    else:
        loss_json = {"one": loss_entry(loss)}
    m = args["metrics"]
    if m is None:
        metrics_json: Any = None
    elif isinstance(m, dict):
        metrics_json = {
            "by_output": {
                k: [metric_entry(v) for v in (vs if isinstance(vs, (list, tuple)) else [vs])]
                for k, vs in m.items()
            }
        }
    else:
        metrics_json = {"list": [metric_entry(v) for v in m]}
    return {"loss": loss_json, "metrics": metrics_json, "loss_weights": args["loss_weights"]}


def save_model(model: Any, path: Any, include_optimizer: bool = True) -> None:
    """Write ``model`` (architecture, weights, compile settings, optimizer state) to ``path``.

    Raises
    ------
    ValueError
        When the model is not built, or holds a layer whose configuration cannot
        be saved (e.g. an initializer object of a custom class).
    """
    from . import layers, optimizers

    if not model.built:
        raise ValueError(
            f"save(): model {model.name!r} is not built yet; call it on data or give it an "
            "input shape before saving"
        )
    architecture = layers.serialize(model)
    if getattr(model, "_build_shape", None) is not None:
        architecture["build_shape"] = model._build_shape
    weights_meta, weight_arrays = _weights_meta(model)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "model",
        "model": architecture,
        "weights": weights_meta,
        "state": model.get_state(),
        "compile": _serialize_compile(model),
        "optimizer": None,
    }
    optimizer_arrays: dict[str, np.ndarray] = {}
    if include_optimizer and model.compiled and model.optimizer is not None:
        meta["optimizer"] = {
            "config": optimizers.serialize(model.optimizer),
            "state": _flatten_state(model.optimizer.get_state(), optimizer_arrays),
        }
    text = json.dumps(meta, indent=1)

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr(_META, text)
            z.writestr(_WEIGHTS, _npz_bytes(weight_arrays))
            if meta["optimizer"] is not None:
                z.writestr(_OPTIMIZER, _npz_bytes(optimizer_arrays))

    _atomic_write(path, write)


def save_weights(model: Any, path: Any) -> None:
    """Write the weights of ``model`` (a zip with JSON names/shapes and an ``.npz``)."""
    if not model.built:
        raise ValueError(f"save_weights(): model {model.name!r} is not built yet")
    weights_meta, arrays = _weights_meta(model)
    text = json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": "weights",
            "weights": weights_meta,
            "state": model.get_state(),
        },
        indent=1,
    )

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr(_META, text)
            z.writestr(_WEIGHTS, _npz_bytes(arrays))

    _atomic_write(path, write)


# -- reading -------------------------------------------------------------------------------------
class _Archive:
    """The validated members of a cnnkit file; every failure is a ValueError naming the path."""

    def __init__(self, where: str, path: Any) -> None:
        self.where, self.path = where, os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{where}: no such file {self.path!r}")
        try:
            with zipfile.ZipFile(self.path) as z:
                names = set(z.namelist())
                if _META not in names:
                    self.fail("no cnnkit.json member: not a cnnkit file")
                self.meta = json.loads(z.read(_META).decode("utf-8"))
                self.members = {n: z.read(n) for n in (_WEIGHTS, _OPTIMIZER) if n in names}
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            self.fail(f"unreadable ({exc})")
        except (zipfile.BadZipFile, OSError, EOFError, KeyError, UnicodeDecodeError) as exc:
            self.fail(f"not a valid cnnkit file ({type(exc).__name__}: {exc})")
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            self.fail("not a cnnkit file (no cnnkit format tag)")
        version = self.meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            self.fail(f"format version {version!r} is newer than this cnnkit ({FORMAT_VERSION})")
        if _WEIGHTS not in self.members:
            self.fail("no weights.npz member")

    def fail(self, reason: str) -> None:
        raise ValueError(f"{self.where}: {self.path!r}: {reason}")

    def arrays(self, member: str) -> dict[str, np.ndarray]:
        try:
            with np.load(_io.BytesIO(self.members[member]), allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            self.fail(f"corrupt {member} ({type(exc).__name__}: {exc})")
            raise AssertionError from exc  # unreachable: fail raises

    def weights(self) -> list[np.ndarray]:
        entries = self.meta.get("weights")
        if not isinstance(entries, list):
            self.fail("no weight list")
        arrays = self.arrays(_WEIGHTS)
        out = []
        for e in entries:
            if not isinstance(e, dict) or e.get("key") not in arrays:
                self.fail(f"weight entry {e!r} has no array")
            a = arrays[e["key"]]
            if list(a.shape) != e.get("shape") or a.dtype.kind != "f":
                self.fail(f"weight {e.get('name')!r} does not match its recorded shape")
            out.append(a)
        return out


def _assign_weights(where: str, model: Any, arrays: list[np.ndarray], path: str) -> None:
    own = model.weights
    if len(own) != len(arrays):
        raise ValueError(
            f"{where}: {path!r} holds {len(arrays)} weights but model {model.name!r} has {len(own)}"
        )
    for v, a in zip(own, arrays):
        if v.shape != a.shape:
            layer = v.name.split("/")[0] if v.name else "?"
            raise ValueError(
                f"{where}: layer {layer!r} weight {v.name!r} has shape {v.shape}, but "
                f"{path!r} holds {a.shape}"
            )
    for v, a in zip(own, arrays):
        v.data[...] = a


def load_weights(model: Any, path: Any) -> None:
    """Copy the weights of a weights or model file into ``model`` (matched in order)."""
    where = "load_weights()"
    archive = _Archive(where, path)
    arrays = archive.weights()
    if not model.built:
        raise ValueError(f"{where}: model {model.name!r} must be built before loading weights")
    _assign_weights(where, model, arrays, archive.path)
    state = archive.meta.get("state")
    if isinstance(state, dict):
        model.set_state(state)


def _resolve(where: str, entry: Any, custom: dict[str, Any], kind: str) -> Any:
    if isinstance(entry, dict) and "custom" in entry:
        name = entry["custom"]
        if name not in custom:
            raise ValueError(
                f"{where}: the model was compiled with the custom {kind} {name!r}; pass it in "
                "custom_objects, or load with compile=False"
            )
        return custom[name]
    return entry


def load_model(
    path: Any, custom_objects: dict[str, Any] | None = None, compile: bool = True
) -> Any:
    """Read a model written by :meth:`cnnkit.Model.save`.

    Parameters
    ----------
    path : str or os.PathLike
    custom_objects : dict, optional
        Classes (subclassed models, custom layers) and functions (custom losses,
        metrics) by the names stored in the file.
    compile : bool, default True
        Restore the compile settings and optimizer state; False returns an
        uncompiled model.

    Raises
    ------
    ValueError
        For a corrupt, truncated or foreign file (the message names the path), or
        a missing custom object.
    """
    from . import layers, losses, models, optimizers

    where = "load_model()"
    custom = dict(custom_objects or {})
    archive = _Archive(where, path)
    meta = archive.meta
    if meta.get("kind") != "model":
        archive.fail("a weights file, not a model file (use load_weights on a built model)")
    arrays = archive.weights()
    # A malformed architecture (wrong argument names or types, a bad input shape) surfaces
    # as any of these from the constructors; all mean the file is bad.
    malformed = (ValueError, TypeError, KeyError, AttributeError, IndexError)
    try:
        model = layers.deserialize(meta.get("model"), custom)
        if not isinstance(model, models.Model):
            archive.fail("the architecture is not a model")
        if not model.built:
            spec = meta["model"].get("build_shape")
            if spec is None:
                archive.fail("no input shape recorded for the model")
            from .autograd import no_grad

            with no_grad():
                model(models._zeros_for(spec, model.dtype))
    except malformed as exc:
        if str(exc).startswith(where):
            raise
        archive.fail(f"bad architecture ({type(exc).__name__}: {exc})")
    _assign_weights(where, model, arrays, archive.path)
    try:
        if isinstance(meta.get("state"), dict):
            model.set_state(meta["state"])
    except malformed as exc:
        archive.fail(f"bad layer state ({type(exc).__name__}: {exc})")
    settings = meta.get("compile")
    if compile and settings is not None:
        loss_json = settings.get("loss") or {}

        def loss_of(entry: Any) -> Any:
            return None if entry is None else losses.get(_resolve(where, entry, custom, "loss"))

        if "by_output" in loss_json:
            loss: Any = {k: loss_of(v) for k, v in loss_json["by_output"].items()}
        elif "per_output" in loss_json:
            loss = [loss_of(v) for v in loss_json["per_output"]]
        else:
            loss = loss_of(loss_json.get("one"))
        m = settings.get("metrics")
        if m is None:
            metrics = None
        elif "by_output" in m:
            metrics = {
                k: [_resolve(where, e, custom, "metric") for e in v]
                for k, v in m["by_output"].items()
            }
        else:
            metrics = [_resolve(where, e, custom, "metric") for e in m["list"]]
        opt_meta = meta.get("optimizer")
        optimizer = (
            optimizers.deserialize(opt_meta["config"]) if opt_meta is not None else "rmsprop"
        )
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            loss_weights=settings.get("loss_weights"),
        )
        if opt_meta is not None and _OPTIMIZER in archive.members:
            state = _unflatten_state(opt_meta["state"], archive.arrays(_OPTIMIZER))
            model.optimizer.set_state(state)
    return model
