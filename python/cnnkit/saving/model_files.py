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
  ``allow_pickle=False`` and only registered classes (cnnkit's own, and those
  decorated with :func:`cnnkit.saving.register_serializable`) and classes passed
  in ``custom_objects`` are instantiated. A subclassed :class:`cnnkit.Model` is
  rebuilt only when its class is registered or passed as
  ``custom_objects={"MyModel": MyModel}`` (its ``__init__`` must accept its
  ``get_config()``); otherwise use ``save_weights`` / ``load_weights`` on a
  model built in code.
* Custom losses and metrics (plain callables) are stored by name; loading a
  model compiled with them needs them registered or in ``custom_objects`` (else a
  ``ValueError`` names them), or ``compile=False`` for an uncompiled model.
* Writing is atomic: the file is written to a temporary file in the same
  directory, flushed to disk and renamed over the target, so a crash while
  saving leaves the previous file intact. The temporary file is named
  ``.<name>.<pid>.<random>.cnnkit-tmp``; one left by a killed save (its process
  no longer exists; on systems without POSIX signals, untouched for a day) is
  deleted by the next save to the same path.
* A corrupt, truncated, oversized or foreign file raises ``ValueError`` naming
  the path, and loading is bounded by the file: members are read in chunks
  after their declared sizes are checked, each ``.npy`` header (dtype float32 or
  float64, shape matching the bytes present) before its array is allocated, and
  the total decoded is capped by ``max_memory`` (default
  :func:`default_max_memory`: 4 times the file size plus 64 MiB). The
  architecture is rebuilt without running initializers: each weight a layer
  creates is the file's array, checked for name, shape and dtype first, so a
  JSON declaring layers larger than the file's weights fails before allocating;
  and the building pass runs every layer on an empty batch, so a declared input
  shape, however large, costs no activations.
* NaN or infinite weights load with a :class:`NonFiniteWeightsWarning`.
"""

from __future__ import annotations

import io as _io
import json
import math
import os
import re
import secrets
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any, Callable, NoReturn

import numpy as np

from .. import _validate, _zipsafe
from . import registry

__all__ = [
    "NonFiniteWeightsWarning",
    "default_max_memory",
    "load_model",
    "load_weights",
    "save_model",
    "save_weights",
]

FORMAT = "cnnkit"
FORMAT_VERSION = 1
_META = "cnnkit.json"
_WEIGHTS = "weights.npz"
_OPTIMIZER = "optimizer.npz"


# -- writing -------------------------------------------------------------------------------------
# Temporary files are ".<target name>.<pid>.<8 hex>.cnnkit-tmp" beside the target: a save
# killed before its rename leaves one behind, and the pid in the name lets the next save of
# the same path tell such an orphan (its writer is gone) from a save still running.
_TMP_SUFFIX = ".cnnkit-tmp"


def _temp_pattern(base: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(base)}\.(\d+)\.[0-9a-f]{{8}}{re.escape(_TMP_SUFFIX)}\Z")


def _writer_gone(pid: int, path: str) -> bool:
    if pid == os.getpid():
        return False  # another thread of this process may be saving
    if os.name != "posix":
        # No signal-0 probe: call a temporary file an orphan after a day untouched.
        import time

        try:
            return time.time() - os.path.getmtime(path) > 86400
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


def _remove_orphans(directory: str, base: str) -> None:
    """Delete the temporary files that killed saves of ``base`` left in ``directory``."""
    pattern = _temp_pattern(base)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        path = os.path.join(directory, name)
        if _writer_gone(int(match.group(1)), path):
            try:
                os.unlink(path)
            except OSError:
                pass


def _atomic_write(path: Any, write: Callable[[Any], None]) -> None:
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    base = os.path.basename(target)
    _remove_orphans(directory, base)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    # O_EXCL: never write through a file or link someone else put there; 0o666 honours the
    # umask as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
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
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
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


# Optimizer state holds the slots (the weights' dtype) and the step count (int64).
_OPTIMIZER_DTYPES = (*_zipsafe.WEIGHT_DTYPES, np.dtype(np.int64))


def _state_keys(skeleton: Any, keys: set[str]) -> None:
    """Collect the array keys a state skeleton refers to (what to read from optimizer.npz),
    checking its layout on the way."""
    if not isinstance(skeleton, dict) or len(skeleton) != 1:
        raise ValueError(f"bad optimizer state layout {_short(skeleton)}")
    ((kind, body),) = skeleton.items()
    if kind == "array" and isinstance(body, str):
        keys.add(body)
    elif kind == "dict" and isinstance(body, dict):
        for v in body.values():
            _state_keys(v, keys)
    elif kind == "list" and isinstance(body, list):
        for v in body:
            _state_keys(v, keys)
    elif kind != "value":
        raise ValueError(f"bad optimizer state entry {_short(skeleton)}")


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


def _custom_name(value: Any) -> str:
    """The name a custom loss or metric is stored by: its registered name, if any."""
    name = registry.get_registered_name(value) or getattr(value, "__name__", None)
    return name if isinstance(name, str) else type(value).__name__


def _serialize_compile(model: Any) -> dict[str, Any] | None:
    from .. import losses, metrics

    args = model.get_compile_config()
    if args is None:
        return None

    def loss_entry(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "class_name" in value:
            return value
        try:
            return losses.serialize(losses.get(value))
        except TypeError:  # a plain function or an unregistered class: stored by name
            return {"custom": _custom_name(value)}

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
        return {"custom": _custom_name(value)}

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


def _check_save(where: str, model: Any, path: Any) -> None:
    """Before anything is serialised: a model that is not one was an AttributeError, and a
    folder given as the path an IsADirectoryError naming the temporary file."""
    if not (hasattr(model, "built") and hasattr(model, "get_config")):
        raise TypeError(f"{where}: model must be a cnnkit Model, got {type(model).__name__}")
    try:
        target = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"{where}: path must be a str or os.PathLike, got {type(path).__name__}"
        ) from None
    if os.path.isdir(target):
        raise IsADirectoryError(f"{where}: path {target!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{where}: the folder {folder!r} of path does not exist")


def save_model(model: Any, path: Any, include_optimizer: bool = True) -> None:
    """Write ``model`` (architecture, weights, compile settings, optimizer state) to ``path``.

    Raises
    ------
    ValueError
        When the model is not built, or holds a layer whose configuration cannot
        be saved (e.g. an initializer object of a custom class).
    """
    from .. import layers, optimizers

    _check_save("save_model()", model, path)
    _validate.flag("save_model()", "include_optimizer", include_optimizer)
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
    if model.compiled and model.optimizer is not None:
        # Without the optimizer, its class and configuration are still kept (Keras reloads
        # the compiled optimizer with fresh slots); only the state is left out.
        meta["optimizer"] = {"config": optimizers.serialize(model.optimizer), "state": None}
        if include_optimizer:
            meta["optimizer"]["state"] = _flatten_state(
                model.optimizer.get_state(), optimizer_arrays
            )
    text = json.dumps(meta, indent=1)

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr(_META, text)
            z.writestr(_WEIGHTS, _npz_bytes(weight_arrays))
            if meta["optimizer"] is not None and meta["optimizer"]["state"] is not None:
                z.writestr(_OPTIMIZER, _npz_bytes(optimizer_arrays))

    _atomic_write(path, write)


def save_weights(model: Any, path: Any) -> None:
    """Write the weights of ``model`` (a zip with JSON names/shapes and an ``.npz``)."""
    _check_save("save_weights()", model, path)
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
class NonFiniteWeightsWarning(RuntimeWarning):
    """A loaded file holds NaN or infinite weights (the model will predict NaN)."""


_MEMORY_FACTOR = 4
_MEMORY_FLOOR = 64 << 20


def default_max_memory(file_size: int) -> int:
    """The default ``max_memory`` of a load: 4 times the file size plus 64 MiB.

    A file saved by cnnkit decodes to about twice its size (the members, then the arrays
    parsed from them); the factor leaves room for files repacked with deflate, the 64 MiB
    for small files and the JSON.
    """
    return _MEMORY_FACTOR * int(file_size) + _MEMORY_FLOOR


def _max_memory(where: str, value: Any, file_size: int) -> int:
    if value is None:
        return default_max_memory(file_size)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            f"{where}: max_memory must be None or a number of bytes >= 0, got {value!r}"
        )
    return int(value)


class _Archive:
    """The validated members of a cnnkit file; every failure is a ValueError naming the path.

    Reading is bounded: each member is read only after its declared size is charged to a
    budget of ``max_memory`` bytes, arrays only after their ``.npy`` header is checked.
    """

    def __init__(self, where: str, path: Any, max_memory: Any = None) -> None:
        self.where, self.path = where, os.fspath(path)
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{where}: {self.path!r} is a folder, not a cnnkit file")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{where}: no such file {self.path!r}")
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self.budget = _zipsafe.Budget(_max_memory(where, max_memory, size))
                allowed = {_META, _WEIGHTS, _OPTIMIZER}
                with _zipsafe.open_zip(f, allowed, "the file") as z:
                    infos = _zipsafe.members(z, allowed, size, "the file")
                    if _META not in infos:
                        self.fail("no cnnkit.json member: not a cnnkit file")
                    text = _zipsafe.read_member(z, infos[_META], self.budget, "the file")
                    self.meta = json.loads(text.decode("utf-8"))
                    del text
                    self.members = {
                        n: _zipsafe.read_member(z, infos[n], self.budget, "the file")
                        for n in (_WEIGHTS, _OPTIMIZER)
                        if n in infos
                    }
        except _zipsafe.BadFile as exc:
            self.fail(str(exc))
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            self.fail(f"not a valid cnnkit file ({type(exc).__name__}: {_short(str(exc))})")
        except _zipsafe.DECODE_ERRORS as exc:
            self.fail(f"not a valid cnnkit file ({type(exc).__name__}: {_short(str(exc))})")
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            self.fail("not a cnnkit file (no cnnkit format tag)")
        version = self.meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            self.fail(f"format version {version!r} is newer than this cnnkit ({FORMAT_VERSION})")
        if _WEIGHTS not in self.members:
            self.fail("no weights.npz member")

    def fail(self, reason: str) -> NoReturn:
        raise ValueError(f"{self.where}: {self.path!r}: {reason}")

    def arrays(
        self, member: str, keys: set[str], dtypes: tuple[np.dtype, ...] = _zipsafe.WEIGHT_DTYPES
    ) -> dict[str, np.ndarray]:
        """The arrays ``keys`` of an ``.npz`` member (read once: the member is released)."""
        buffer = self.members.pop(member)
        try:
            return _zipsafe.read_npz(buffer, keys, self.budget, member, dtypes)
        except _zipsafe.DECODE_ERRORS as exc:
            self.fail(f"corrupt {member} ({type(exc).__name__}: {_short(str(exc))})")

    def weights(self) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
        """The weight entries of the JSON and their arrays, in file order, checked against
        each other."""
        entries = self.meta.get("weights")
        if not isinstance(entries, list):
            self.fail("no weight list")
        for e in entries:
            if not (
                isinstance(e, dict)
                and isinstance(e.get("key"), str)
                and isinstance(e.get("name"), str)
                and isinstance(e.get("shape"), list)
            ):
                self.fail(f"malformed weight entry {_short(e)}")
        keys = {e["key"] for e in entries}
        if len(keys) != len(entries):  # two weights must not share one array
            self.fail("the weight list names an array twice")
        arrays = self.arrays(_WEIGHTS, keys)
        out = []
        for e in entries:
            a = arrays.get(e["key"])
            if a is None:
                self.fail(f"weight {e['name']!r} has no array in weights.npz")
            if list(a.shape) != e["shape"]:
                self.fail(
                    f"weight {e['name']!r} has shape {a.shape} but the file records {e['shape']}"
                )
            out.append(a)
        return entries, out

    def warn_non_finite(self, names: list[str], arrays: list[np.ndarray]) -> None:
        bad = [n for n, a in zip(names, arrays) if not _all_finite(a)]
        if bad:
            warnings.warn(
                f"{self.where}: {self.path!r}: weights {', '.join(map(repr, bad))} hold NaN "
                "or infinite values",
                NonFiniteWeightsWarning,
                stacklevel=3,
            )


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _all_finite(a: np.ndarray) -> bool:
    # In slices, so that checking a large weight does not allocate a mask as large.
    flat = a.reshape(-1)
    step = 1 << 20
    return all(np.isfinite(flat[i : i + step]).all() for i in range(0, flat.size, step))


class _WeightSource:
    """Hands the file's arrays to ``add_weight`` while the architecture is rebuilt.

    Each weight the architecture asks for is matched by name and checked for shape and
    dtype before anything is allocated: a JSON that declares a layer far larger than the
    file's arrays fails here, at no cost. A weight whose name the file does not know (the
    layers a subclassed model creates in ``__init__`` get fresh automatic names) is zeros,
    charged to the load's memory budget first; the positional check after the build pairs
    it with the file's array.
    """

    def __init__(self, archive: _Archive, entries: list[dict[str, Any]], arrays: list[Any]):
        self.archive = archive
        self.by_name: dict[str, list[np.ndarray]] = {}
        for e, a in zip(entries, arrays):
            self.by_name.setdefault(e["name"], []).append(a)

    def __call__(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        queue = self.by_name.get(name)
        if not queue:
            try:
                self.archive.budget.charge(math.prod(shape) * dtype.itemsize, f"weight {name!r}")
            except _zipsafe.BadFile as exc:
                self.archive.fail(
                    f"the architecture creates a weight the file does not hold: {exc}"
                )
            return np.zeros(shape, dtype)
        a = queue[0]
        if a.shape != shape:
            self.archive.fail(
                f"the architecture creates weight {name!r} of shape {shape}, but the file "
                f"holds {a.shape}"
            )
        if a.dtype != dtype:
            self.archive.fail(
                f"weight {name!r} is {a.dtype} in the file but its layer declares {dtype}"
            )
        return queue.pop(0)


def _assign_weights(
    where: str, model: Any, arrays: list[np.ndarray], path: str, same_dtype: bool = False
) -> None:
    """Copy ``arrays`` into the weights of ``model`` in order, after checking them all;
    ``same_dtype`` also requires each array to have its weight's dtype (a model file's
    arrays are the layers' own; a weights file may load into a model of the other dtype)."""
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
        if same_dtype and v.dtype != a.dtype:
            raise ValueError(
                f"{where}: {path!r}: weight {v.name!r} is {a.dtype} in the file but its layer "
                f"declares {v.dtype}"
            )
    for v, a in zip(own, arrays):
        if v.data is not a:  # load_model hands the file's arrays over: nothing to copy
            v.data[...] = a


def load_weights(model: Any, path: Any, max_memory: int | None = None) -> None:
    """Copy the weights of a weights or model file into ``model`` (matched in order).

    ``max_memory`` bounds the bytes decoded from the file, as for :func:`load_model`.
    """
    where = "load_weights()"
    archive = _Archive(where, path, max_memory)
    entries, arrays = archive.weights()
    if not model.built:
        raise ValueError(f"{where}: model {model.name!r} must be built before loading weights")
    _assign_weights(where, model, arrays, archive.path)
    archive.warn_non_finite([e["name"] for e in entries], arrays)
    state = archive.meta.get("state")
    if isinstance(state, dict):
        try:
            model.set_state(state)
        except _MALFORMED as exc:
            archive.fail(f"bad layer state ({type(exc).__name__}: {_short(str(exc))})")


# A malformed section (wrong argument names or types, a bad input shape, nesting deeper than
# the interpreter's recursion limit) surfaces as any of these from constructors and setters;
# all mean the file is bad.
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError)


def _resolve(where: str, entry: Any, custom: dict[str, Any], kind: str) -> Any:
    if isinstance(entry, dict) and "custom" in entry:
        name = entry["custom"]
        if name in custom:
            return custom[name]
        found = registry.get_registered_object(name)  # a registered function
        if found is None:
            raise ValueError(
                f"{where}: the model was compiled with the custom {kind} {name!r}; pass it in "
                "custom_objects, or load with compile=False"
            )
        return found
    return entry


def load_model(
    path: Any,
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
    max_memory: int | None = None,
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
    max_memory : int, optional
        The most bytes the load may decode from the file (decompressed members and
        the arrays in them), checked before each is allocated. The default,
        :func:`default_max_memory`, is 4 times the file size plus 64 MiB: ample for
        files cnnkit writes, a bound on hostile ones. Raise it for a trusted file
        repacked with strong compression.

    Raises
    ------
    ValueError
        For a corrupt, truncated, oversized or foreign file (the message names the
        path), or a missing custom object.

    Warns
    -----
    NonFiniteWeightsWarning
        When weights in the file are NaN or infinite.
    """
    from .. import layers
    from ..layers.layer import shapes_only, weight_source
    from ..training import Trainer

    where = "load_model()"
    _validate.flag(where, "compile", compile)
    if custom_objects is not None and not isinstance(custom_objects, Mapping):
        raise TypeError(
            f"{where}: custom_objects must be a dict of names to classes or functions, got "
            f"{type(custom_objects).__name__}"
        )
    custom = dict(custom_objects or {})
    archive = _Archive(where, path, max_memory)
    meta = archive.meta
    if meta.get("kind") != "model":
        archive.fail("a weights file, not a model file (use load_weights on a built model)")
    entries, arrays = archive.weights()
    if not isinstance(meta.get("model"), dict):
        archive.fail("no architecture")
    token = weight_source.set(_WeightSource(archive, entries, arrays))
    shapes_token = shapes_only.set(True)
    try:
        model: Any = layers.deserialize(meta.get("model"), custom)
        if not issubclass(type(model), Trainer):  # (not isinstance: model stays Any for mypy)
            archive.fail("the architecture is not a model")
        if not model.built:
            spec = meta["model"].get("build_shape")
            if spec is None:
                archive.fail("no input shape recorded for the model")
            model.build(spec)
    except (*_MALFORMED, MemoryError) as exc:
        if str(exc).startswith(where):
            raise
        archive.fail(f"bad architecture ({type(exc).__name__}: {_short(str(exc))})")
    finally:
        shapes_only.reset(shapes_token)
        weight_source.reset(token)
    _assign_weights(where, model, arrays, archive.path, same_dtype=True)
    archive.warn_non_finite([e["name"] for e in entries], arrays)
    try:
        if isinstance(meta.get("state"), dict):
            model.set_state(meta["state"])
    except _MALFORMED as exc:
        archive.fail(f"bad layer state ({type(exc).__name__}: {_short(str(exc))})")
    settings = meta.get("compile")
    if compile and settings is not None:
        try:
            _restore_compile(where, archive, model, settings, custom)
        except _MALFORMED as exc:
            if str(exc).startswith(where):
                raise
            archive.fail(f"bad compile settings ({type(exc).__name__}: {_short(str(exc))})")
    return model


def _restore_compile(
    where: str, archive: _Archive, model: Any, settings: Any, custom: dict[str, Any]
) -> None:
    """Compile ``model`` as recorded and restore the optimizer's state.

    The sections are checked for type where a wrong one would otherwise pass silently;
    anything else malformed raises from the constructors and becomes the caller's
    ValueError naming the path.
    """
    from .. import losses, optimizers

    named = f"{where}: {archive.path!r}"  # a missing custom object is named with the file
    if not isinstance(settings, dict):
        archive.fail(f"the compile section must be an object, got {_short(settings)}")
    loss_json = settings.get("loss") or {}
    if not isinstance(loss_json, dict):
        archive.fail(f"the compile loss must be an object, got {_short(loss_json)}")

    def loss_of(entry: Any) -> Any:
        return None if entry is None else losses.get(_resolve(named, entry, custom, "loss"))

    if "by_output" in loss_json:
        loss: Any = {k: loss_of(v) for k, v in dict(loss_json["by_output"]).items()}
    elif "per_output" in loss_json:
        loss = [loss_of(v) for v in list(loss_json["per_output"])]
    else:
        loss = loss_of(loss_json.get("one"))
    m = settings.get("metrics")
    metrics: Any
    if m is None:
        metrics = None
    elif not isinstance(m, dict):
        archive.fail(f"the compile metrics must be an object, got {_short(m)}")
    elif "by_output" in m:
        metrics = {
            k: [_resolve(named, e, custom, "metric") for e in list(v)]
            for k, v in dict(m["by_output"]).items()
        }
    else:
        metrics = [_resolve(named, e, custom, "metric") for e in list(m["list"])]
    opt_meta = archive.meta.get("optimizer")
    if opt_meta is not None and not isinstance(opt_meta, dict):
        archive.fail(f"the optimizer section must be an object, got {_short(opt_meta)}")
    optimizer = optimizers.deserialize(opt_meta["config"]) if opt_meta is not None else "rmsprop"
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        loss_weights=settings.get("loss_weights"),
    )
    _read_optimizer_state(archive, model)


def _read_optimizer_state(archive: _Archive, model: Any) -> bool:
    """Load the optimizer state of the file into ``model.optimizer``; False when the file
    has none (saved with ``include_optimizer=False``, or not compiled)."""
    opt_meta = archive.meta.get("optimizer")
    if not isinstance(opt_meta, dict) or opt_meta.get("state") is None:
        return False
    if _OPTIMIZER not in archive.members:
        return False
    keys: set[str] = set()
    _state_keys(opt_meta["state"], keys)
    arrays = archive.arrays(_OPTIMIZER, keys, _OPTIMIZER_DTYPES)
    state = _unflatten_state(opt_meta["state"], arrays)
    model.optimizer.set_state(state)
    return True


def load_optimizer_state(model: Any, path: Any, max_memory: int | None = None) -> None:
    """Load the optimizer state of the model file ``path`` into the compiled ``model``'s
    optimizer (slots and step count; for resuming training in the same model object).

    Raises
    ------
    ValueError
        When the model is not compiled, the file has no optimizer state, or the state
        does not fit the optimizer (the message names the path).
    """
    where = "load_optimizer_state()"
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError(f"{where}: model {model.name!r} must be compiled first")
    archive = _Archive(where, path, max_memory)
    try:
        found = _read_optimizer_state(archive, model)
    except _MALFORMED as exc:
        archive.fail(f"bad optimizer state ({type(exc).__name__}: {_short(str(exc))})")
    if not found:
        archive.fail("no optimizer state (saved with include_optimizer=False?)")


# The atomic writer for other files cnnkit writes (ONNX exports, feature caches' progress
# records): ``atomic_write(path, write)`` calls ``write(f)`` on a temporary file beside
# ``path`` and renames it over ``path`` only when ``write`` returned.
atomic_write = _atomic_write
