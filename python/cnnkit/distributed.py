"""Batch jobs on Dask: a model applied to image collections larger than one machine.

:func:`map_model` turns a model and a collection (a ``dask.array`` of images chunked along
the batch axis, a ``dask.bag`` of image files or a list of file names) into a lazy Dask
collection of outputs; :func:`to_npy` and :func:`to_zarr` write results too large for memory.
Dask is the engine rather than a home-made one because it is what NumPy users already run,
from a laptop's ``LocalCluster`` to SSH, HPC job queues and Kubernetes, with the same code.

Why it is built this way:

* The model travels as its model file's bytes (:mod:`cnnkit.saving`: a zip of JSON and
  ``.npz``, never a pickle of native objects) in one graph key that every task depends
  on, so the scheduler sends it to each worker once; each worker process loads it once and
  keeps it in a small cache keyed by the SHA-256 of the file's members.
* Kernel threads: cnnkit's kernels use OpenMP, and a Dask worker runs ``nthreads`` tasks at
  once, so each worker process sets ``cnnkit.set_num_threads(cores // task slots on its
  host)``: workers x threads never exceed the cores. The kernels release the GIL, so
  thread-based workers run in parallel too ("features" calls take turns on a copy of the
  model: ``activations`` marks layers during its pass).
* Results do not depend on the cluster: an image's outputs do not depend on the batch it is
  in nor on the thread count (the kernels' reductions have a fixed order), so every
  chunking and worker count gives the bits of ``model.predict`` in one process.
* Faults: tasks are pure functions of their inputs, so when a worker dies Dask recomputes
  its tasks elsewhere and the result is the same. A file that cannot be decoded raises a
  ``ValueError`` naming it, or with ``on_error="skip"`` is left out and recorded.
"""

from __future__ import annotations

import hashlib
import io
import math
import operator
import os
import struct
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _validate

__all__ = ["chunked", "map_model", "to_npy", "to_zarr"]

METHODS = ("predict", "features", "embed", "detect")
_EXTRA = "pip install cnnkit[dask]"


def _dask() -> Any:
    try:
        import dask
        import dask.array
        import dask.bag
    except ImportError:
        raise ImportError(f"cnnkit.distributed needs Dask: {_EXTRA}") from None
    return dask


# -- the model on the workers --------------------------------------------------------------------
@dataclass(frozen=True)
class _ModelFile:
    """A model file's bytes and their digest: the one object the graph ships to workers."""

    digest: str
    data: bytes = field(repr=False)


_CACHE: OrderedDict[tuple[str, bool], tuple[Any, threading.Lock]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4  # models kept per process; a job uses one, a pipeline a few
_LOADS: dict[str, int] = {}  # loads per digest in this process (read by the tests)


def _model(payload: _ModelFile, marking: bool) -> tuple[Any, threading.Lock]:
    """The model of ``payload``, loaded once per process, and a lock.

    ``predict`` is safe from several threads at once; ``activations`` (the "features"
    method) is not: it marks the layers it reads during its pass, and any pass through
    the model meanwhile, from any thread, writes there. So ``marking`` calls get a copy
    of their own, one call at a time under its lock, and leave the shared one alone.
    """
    # A fresh worker process has not imported the modules that register cnnkit's model
    # classes (load_model alone cannot: models import the saving module); a user's own
    # registered classes need their module imported on the workers likewise.
    from . import detection, models  # noqa: F401
    from .saving.model_files import load_model

    key = (payload.digest, marking)
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
            return entry
        with tempfile.TemporaryDirectory(prefix="cnnkit-model-") as tmp:
            path = os.path.join(tmp, "model.cnnkit")
            with open(path, "wb") as f:
                f.write(payload.data)
            model = load_model(path, compile=False)
        entry = (model, threading.Lock())
        _CACHE[key] = entry
        _LOADS[payload.digest] = _LOADS.get(payload.digest, 0) + 1
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return entry


def _load_counts() -> dict[str, int]:
    return dict(_LOADS)


def _model_file(where: str, model_or_path: Any) -> tuple[Any, _ModelFile]:
    """The model (for shapes, on the client) and its file's bytes."""
    from .saving.model_files import load_model, save_model
    from .training import Trainer

    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        model = load_model(path, compile=False)
        with open(path, "rb") as f:
            data = f.read()
    elif isinstance(model_or_path, Trainer):
        model = model_or_path
        with tempfile.TemporaryDirectory(prefix="cnnkit-model-") as tmp:
            path = os.path.join(tmp, "model.cnnkit")
            save_model(model, path, include_optimizer=False)
            with open(path, "rb") as f:
                data = f.read()
    else:
        raise TypeError(
            f"{where}: model_or_path must be a cnnkit model or the path of a model file, "
            f"got {type(model_or_path).__name__}"
        )
    return model, _ModelFile(_digest(data), data)


def _digest(data: bytes) -> str:
    """SHA-256 of a model file's members, not of its bytes: a zip records when each member
    was written, and the same model saved twice should be one cache entry on the workers.
    (The file was checked by load_model before: its members are bounded.)"""
    h = hashlib.sha256()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            h.update(info.filename.encode() + b"\0")
            h.update(z.read(info))
    return h.hexdigest()


# -- kernel threads ------------------------------------------------------------------------------
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _host_slots(client: Any) -> dict[str, int]:
    """Task slots (worker threads) per host of the cluster, as the scheduler knows them."""
    if client is None:
        return {}
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed before 2025: every worker is listed anyway
        info = client.scheduler_info()
    slots: dict[str, int] = {}
    for worker in info.get("workers", {}).values():
        host = worker.get("host")
        slots[host] = slots.get(host, 0) + int(worker.get("nthreads", 1))
    return slots


def _kernel_threads(explicit: int | None, host_slots: Mapping[str, int]) -> int | None:
    """The kernel threads for this process: ``explicit``, or on a Dask worker the cores
    shared among the task slots of its host; None outside a worker (leave it alone)."""
    if explicit is not None:
        return explicit
    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    slots = host_slots.get(get_address_host(worker.address)) or worker.state.nthreads
    return max(1, _cores() // max(1, slots))


# -- one task's work -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    method: str
    batch_size: int
    layer: str | None
    threads: int | None
    host_slots: Mapping[str, int]
    detect_options: Mapping[str, Any]
    on_error: str
    preprocess: Callable[[np.ndarray], Any] | None
    input_shape: tuple[int, ...] | None
    dtype: np.dtype
    out_shape: tuple[int, ...] | None  # per sample; None for "detect"
    normalised: bool  # "embed": the model already ends in UnitNormalization


def _prepare(job: _Job) -> None:
    import cnnkit

    threads = _kernel_threads(job.threads, job.host_slots)
    if threads is not None and cnnkit.get_num_threads() != threads:
        cnnkit.set_num_threads(threads)


def _apply(model: Any, lock: threading.Lock, x: np.ndarray, job: _Job) -> Any:
    """The method's outputs for the images ``x`` (any number, the model's dtype)."""
    from . import autograd as ag
    from .detection.yolo import detect

    if job.method == "detect":
        if len(x) == 0:
            return []
        return detect(model, x, batch_size=job.batch_size, **job.detect_options)
    assert job.out_shape is not None
    if len(x) == 0:
        return np.empty((0, *job.out_shape), job.dtype)
    if job.layer is None:
        out = model.predict(x, batch_size=job.batch_size)
    else:
        parts = []
        # activations() marks layers during its pass: a copy of the model, one call at a time.
        with lock, ag.no_grad():
            for start in range(0, len(x), job.batch_size):
                xb = x[start : start + job.batch_size]
                parts.append(model.activations(xb, [job.layer])[job.layer].numpy())
        out = np.concatenate(parts)
    if not isinstance(out, np.ndarray):
        raise ValueError(
            f"map_model(): method={job.method!r} needs a model with one output, got "
            f"{type(out).__name__} outputs"
        )
    if job.method == "embed":
        out = out.reshape(len(out), -1)
        if not job.normalised:  # UnitNormalization's formula, as the face encoders end
            out = out / np.sqrt(np.maximum((out * out).sum(axis=1, keepdims=True), 1e-12))
    return out


def _run_block(payload: _ModelFile, block: np.ndarray, job: _Job) -> Any:
    from .training.data_adapters import to_model_dtype

    _prepare(job)
    model, lock = _model(payload, job.layer is not None)
    x = to_model_dtype("map_model()", np.asarray(block), job.dtype)
    return _apply(model, lock, x, job)


def _decode(path: str, job: _Job) -> np.ndarray:
    from PIL import Image

    assert job.input_shape is not None
    channels = job.input_shape[-1] if len(job.input_shape) == 3 else None
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels or 3, "RGB")
    with Image.open(path) as im:
        im.load()  # decode now: a truncated file fails here, inside this file's try
        pixels = np.asarray(im.convert(mode))
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if job.preprocess is not None:
        image = np.asarray(job.preprocess(pixels))
    else:
        image = pixels.astype(job.dtype) / job.dtype.type(255)
    if image.shape != job.input_shape:
        raise ValueError(
            f"the image has shape {image.shape} but the model takes {job.input_shape}; "
            "give preprocess= to resize or crop"
        )
    return image.astype(job.dtype, copy=False)


def _run_files(payload: _ModelFile, paths: Sequence[Any], job: _Job) -> tuple[Any, list, list]:
    """Outputs for the files that decode, the files kept, and records of those skipped."""
    _prepare(job)
    images, kept, skipped = [], [], []
    for entry in paths:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(
                f"map_model(): the collection must hold file paths, got {type(entry).__name__}"
            )
        path = os.fspath(entry)
        try:
            images.append(_decode(path, job))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if job.on_error == "raise":
                raise ValueError(f"map_model(): cannot read image {path!r}: {reason}") from exc
            skipped.append({"file": path, "error": reason})
            continue
        kept.append(path)
    assert job.input_shape is not None
    x = np.stack(images) if images else np.empty((0, *job.input_shape), job.dtype)
    model, lock = _model(payload, job.layer is not None)
    out = _apply(model, lock, x, job)
    if job.method == "detect":
        out = [{"file": p, **d} for p, d in zip(kept, out)]
    return out, kept, skipped


def _outputs_of_files(payload: _ModelFile, paths: Sequence[Any], job: _Job) -> Any:
    return _run_files(payload, paths, job)[0]


# -- the graph -----------------------------------------------------------------------------------
def _default_client(client: Any, where: str = "map_model()") -> Any:
    if client is not None:
        from distributed import Client

        if not isinstance(client, Client):
            raise TypeError(
                f"{where}: client must be a dask.distributed.Client or None, got "
                f"{type(client).__name__}"
            )
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _output_spec(model: Any, job_args: dict[str, Any], sample: np.ndarray) -> tuple[Any, bool]:
    """Per-sample output shape (from one image, run here) and whether "embed" needs no
    normalising."""
    from .layers import UnitNormalization

    layers = getattr(model, "layers", [])
    normalised = (
        job_args["layer"] is None and bool(layers) and (isinstance(layers[-1], UnitNormalization))
    )
    if job_args["method"] == "detect":
        return None, normalised
    job = _Job(**job_args, out_shape=(), normalised=True)
    out = _apply(model, threading.Lock(), sample, job)
    shape = tuple(out.shape[1:])
    if job_args["method"] == "embed":
        shape = (math.prod(shape),)
    return shape, normalised


def _input_shape(model: Any) -> tuple[int, ...] | None:
    shape = getattr(model, "_input_shape", None) or getattr(model, "_build_shape", None)
    if isinstance(shape, (list, tuple)) and all(isinstance(s, int) for s in shape):
        return tuple(int(s) for s in shape)
    return None


def map_model(
    model_or_path: Any,
    collection: Any,
    *,
    method: str = "predict",
    batch_size: int = 32,
    layer: str | None = None,
    client: Any = None,
    threads_per_worker: int | None = None,
    on_error: str = "raise",
    preprocess: Callable[[np.ndarray], Any] | None = None,
    partition_size: int | None = None,
    detect_options: Mapping[str, Any] | None = None,
) -> Any:
    """Apply a model to a large image collection on Dask, lazily.

    Parameters
    ----------
    model_or_path : cnnkit.Model or str or os.PathLike
        A built model or the path of its model file (``model.save``). It is sent to
        the workers as the file's bytes and loaded once per worker process.
    collection : dask.array.Array, dask.bag.Bag or list of paths
        Images ``(N, H, W, C)`` chunked along N (other axes are merged into one chunk),
        or image files, decoded on the workers with Pillow into the model's input
        shape (``L``, ``RGB`` or ``RGBA`` by its channels, scaled to [0, 1], or by
        ``preprocess``).
    method : {"predict", "features", "embed", "detect"}
        ``predict``: the model's output. ``features``: the activations of ``layer``.
        ``embed``: the encoder's output (or ``layer``'s) flattened to (N, D) and
        L2-normalised as ``UnitNormalization`` does, unless the model already ends in
        one (cnnkit's face encoders). ``detect``: :func:`cnnkit.detection.detect` on a
        YOLO model, per image ``{"boxes", "scores", "classes"}`` (plus ``"file"``).
    batch_size : int
        Images per forward pass inside a task.
    layer : str, optional
        The layer for ``features`` (required) or ``embed``.
    client : dask.distributed.Client, optional
        The cluster, used to plan kernel threads (default: the current client if any).
        The result is computed wherever Dask computes it.
    threads_per_worker : int, optional
        cnnkit kernel threads in each worker process; by default the host's cores
        divided by the Dask task slots on that host (at least 1). Outside a Dask worker
        (Dask's local schedulers) the process's setting is left alone unless given.
    on_error : {"raise", "skip"}
        For image files that cannot be read or have the wrong shape: raise a
        ``ValueError`` naming the file, or leave them out and record them.
    preprocess : callable, optional
        ``uint8 (H, W, C) -> image`` in the model's input shape, run on the workers.
    partition_size : int, optional
        Files per task for a list of paths (default ``4 * batch_size``).
    detect_options : mapping, optional
        Keyword arguments of :func:`cnnkit.detection.detect` (``score_threshold``...).

    Returns
    -------
    dask.array.Array or dask.bag.Bag
        Outputs in the collection's order, chunked as the collection (for files: one
        chunk per partition, of unknown size when files may be skipped or come as a
        bag); a bag of per-image dicts for ``detect``. With ``on_error="skip"``, a pair
        ``(result, skipped)``: ``skipped`` is a bag of ``{"file", "error"}`` records;
        compute both together (``dask.compute(result, skipped)``) to read files once.

    Raises
    ------
    ValueError, TypeError
        For bad arguments (named); on compute, for unreadable files (named).
    """
    where = "map_model()"
    dask = _dask()
    import dask.array as da
    import dask.bag as db
    from dask.highlevelgraph import HighLevelGraph

    method = _validate.choice(where, "method", method, METHODS)
    on_error = _validate.choice(where, "on_error", on_error, ("raise", "skip"))
    batch_size = _validate.integer(where, "batch_size", batch_size, minimum=1)
    if threads_per_worker is not None:
        threads_per_worker = _validate.integer(
            where, "threads_per_worker", threads_per_worker, minimum=1
        )
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"{where}: layer must be a layer name (str), got {type(layer).__name__}")
    if method == "features" and layer is None:
        raise ValueError(f"{where}: method='features' needs layer= (the layer's name)")
    if method in ("predict", "detect") and layer is not None:
        raise ValueError(f"{where}: layer= applies to 'features' and 'embed', not {method!r}")
    if preprocess is not None and not callable(preprocess):
        raise TypeError(f"{where}: preprocess must be callable, got {type(preprocess).__name__}")
    if detect_options is not None and method != "detect":
        raise ValueError(f"{where}: detect_options applies to method='detect' only")
    if detect_options is not None and not isinstance(detect_options, Mapping):
        raise TypeError(
            f"{where}: detect_options must be a mapping, got {type(detect_options).__name__}"
        )
    client = _default_client(client)
    model, payload = _model_file(where, model_or_path)
    if layer is not None:
        try:
            model.get_layer(layer)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if (
        method == "detect"
        and getattr(model, "anchors", None) is None
        and ("anchors" not in (detect_options or {}))
    ):
        raise ValueError(
            f"{where}: method='detect' needs a YOLO model that carries its anchors (or "
            "detect_options={'anchors': ...})"
        )

    is_array = isinstance(collection, da.Array)
    is_bag = isinstance(collection, db.Bag)
    if not (is_array or is_bag):
        if isinstance(collection, (str, os.PathLike)) or not isinstance(collection, Sequence):
            raise TypeError(
                f"{where}: collection must be a dask.array, a dask.bag of paths or a list of "
                f"paths, got {type(collection).__name__}"
            )
        paths = list(collection)
        if not paths:
            raise ValueError(f"{where}: collection is an empty list of paths")
        for p in paths:
            if not isinstance(p, (str, os.PathLike)):
                raise TypeError(
                    f"{where}: collection must hold file paths, got {type(p).__name__} {p!r}"
                )
        size = (
            4 * batch_size
            if partition_size is None
            else _validate.integer(where, "partition_size", partition_size, minimum=1)
        )
        collection = db.from_sequence([os.fspath(p) for p in paths], partition_size=size)
        sizes: tuple[float, ...] = tuple(
            len(paths[i : i + size]) for i in range(0, len(paths), size)
        )
    else:
        if partition_size is not None:
            raise ValueError(f"{where}: partition_size applies to a list of paths only")
        sizes = (math.nan,) * (collection.npartitions if is_bag else 0)
    if is_array:
        if on_error == "skip":
            raise ValueError(f"{where}: on_error='skip' applies to image files, not arrays")
        if preprocess is not None:
            raise ValueError(f"{where}: preprocess applies to image files, not arrays")
        if collection.ndim != 4:
            raise ValueError(
                f"{where}: a dask.array collection must have shape (N, H, W, C), got "
                f"{collection.shape}"
            )
        expected = _input_shape(model)
        if expected is not None and tuple(collection.shape[1:]) != expected:
            raise ValueError(
                f"{where}: the images have shape {tuple(collection.shape[1:])} but the model "
                f"takes {expected}"
            )
        input_shape = tuple(int(s) for s in collection.shape[1:])
        if any(len(c) > 1 for c in collection.chunks[1:]):
            collection = collection.rechunk({1: -1, 2: -1, 3: -1})
    else:
        input_shape = _input_shape(model)  # type: ignore[assignment]
        if input_shape is None:
            raise ValueError(f"{where}: the model has no fixed input shape to decode files to")
    if on_error == "skip":
        sizes = (math.nan,) * len(sizes)

    job_args: dict[str, Any] = {
        "method": method,
        "batch_size": batch_size,
        "layer": layer,
        "threads": threads_per_worker,
        "host_slots": _host_slots(client),
        "detect_options": dict(detect_options or {}),
        "on_error": on_error,
        "preprocess": preprocess,
        "input_shape": input_shape,
        "dtype": np.dtype(model.dtype),
    }
    out_shape, normalised = _output_spec(
        model, job_args, np.zeros((1, *input_shape), job_args["dtype"])
    )
    job = _Job(**job_args, out_shape=out_shape, normalised=normalised)

    model_key = f"cnnkit-model-{payload.digest[:32]}"
    model_node = dask.delayed(payload, name=model_key, pure=True, traverse=False)
    token = dask.base.tokenize(payload.digest, collection.name, job_args["method"], layer, job)
    run = f"cnnkit-{method}-run-{token}"
    out = f"cnnkit-{method}-{token}"
    tail = () if out_shape is None else (0,) * len(out_shape)
    deps = [collection, model_node]
    if is_array:
        sizes = tuple(collection.chunks[0])
        nblocks = len(sizes)
        # one task per block, under the output's own keys: no hop through another task
        layer_tasks: dict[Any, Any] = {
            (out, i, *tail): (_run_block, model_key, (collection.name, i, 0, 0, 0), job)
            for i in range(nblocks)
        }
    else:
        nblocks = collection.npartitions
        if on_error == "raise":
            layer_tasks = {
                (out, i, *tail): (_outputs_of_files, model_key, (collection.name, i), job)
                for i in range(nblocks)
            }
        else:  # one task per partition, its outputs and its skipped files taken from it
            runs = {
                (run, i): (_run_files, model_key, (collection.name, i), job) for i in range(nblocks)
            }
            layer_tasks = {
                **runs,
                **{(out, i, *tail): (operator.getitem, (run, i), 0) for i in range(nblocks)},
            }
    graph = HighLevelGraph.from_collections(out, layer_tasks, deps)
    if method == "detect":
        result: Any = db.Bag(graph, out, nblocks)
    else:
        assert out_shape is not None
        chunks = (sizes, *((s,) for s in out_shape))
        result = da.Array(graph, out, chunks=chunks, dtype=job.dtype)
    if on_error == "raise":
        return result
    skip = f"cnnkit-{method}-skipped-{token}"
    skip_tasks: dict[Any, Any] = {
        **runs,
        **{(skip, i): (operator.getitem, (run, i), 2) for i in range(nblocks)},
    }
    skipped = db.Bag(HighLevelGraph.from_collections(skip, skip_tasks, deps), skip, nblocks)
    return result, skipped


def chunked(images: Any, batch_size: int, client: Any = None) -> Any:
    """In-memory images ``(N, H, W, C)`` as a ``dask.array`` for :func:`map_model`: about
    two chunks per task slot of the cluster (so every slot works and a slow one is
    rebalanced), each a multiple of ``batch_size`` images.

    The images travel from this process to the workers through the scheduler; data that
    lives elsewhere is better loaded by Dask where it is (``da.from_zarr``, file paths).
    """
    where = "chunked()"
    _dask()
    import dask.array as da

    x = np.asarray(images)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{where}: images must have shape (N, H, W, C) with N >= 1, got {x.shape}")
    batch_size = _validate.integer(where, "batch_size", batch_size, minimum=1)
    slots = sum(_host_slots(_default_client(client, where)).values()) or os.cpu_count() or 1
    rows = max(1, math.ceil(len(x) / (2 * slots)))
    rows = math.ceil(rows / batch_size) * batch_size
    return da.from_array(x, chunks=(rows, *x.shape[1:]))


# -- writing results larger than memory ----------------------------------------------------------
def _blocks_in_order(where: str, result: Any, client: Any, window: int | None) -> Iterator[Any]:
    """The blocks of ``result`` along axis 0, in order, at most ``window`` computed ahead:
    memory holds a window of blocks, never the whole result.

    Each block is submitted with its own part of the graph (its dependencies, found once):
    submitting the whole graph for every block would cost time quadratic in the blocks.
    Keys that several blocks share (the model's bytes) are computed once, first, and held.
    """
    dask = _dask()
    import dask.array as da
    from dask.optimization import cull

    if not isinstance(result, da.Array) or result.ndim < 1:
        raise TypeError(f"{where}: result must be a dask.array, got {type(result).__name__}")
    if any(len(c) > 1 for c in result.chunks[1:]):
        result = result.rechunk({i: -1 for i in range(1, result.ndim)})
    tail = (0,) * (result.ndim - 1)
    keys = [(result.name, i, *tail) for i in range(len(result.chunks[0]))]
    if window is not None:
        window = _validate.integer(where, "window", window, minimum=1)
    if client is None:  # what dask.compute would use: a default client or a local scheduler
        get = dask.base.get_scheduler(collections=[result]) or result.__dask_scheduler__
        owner = getattr(get, "__self__", None)
        client = owner if type(owner).__name__ == "Client" else None
    if window is None:
        window = 2 * (sum(_host_slots(client).values()) or os.cpu_count() or 1)
    dsk = dict(result.__dask_graph__())
    if client is None:
        for start in range(0, len(keys), window):
            part = keys[start : start + window]
            yield from get(cull(dsk, part)[0], part)
        return
    parts = [cull(dsk, [k])[0] for k in keys]
    seen: dict[Any, int] = {}
    for part in parts:
        for k in part:
            seen[k] = seen.get(k, 0) + 1
    shared = [k for k, n in seen.items() if n > 1]
    held = dict(zip(shared, client.get(cull(dsk, shared)[0], shared, sync=False))) if shared else {}

    def submit(i: int) -> Any:
        graph = {k: held.get(k, task) for k, task in parts[i].items()}
        return client.get(graph, [keys[i]], sync=False)[0]

    pending: list[Any] = []
    try:
        pending += [submit(i) for i in range(min(window, len(keys)))]
        for i in range(len(keys)):
            future = pending.pop(0)
            if i + window < len(keys):
                pending.append(submit(i + window))
            yield future.result()
            future.release()
    finally:
        for future in [*pending, *held.values()]:
            future.release()


def _npy_header(dtype: np.dtype, shape: tuple[int, ...], length: int | None = None) -> bytes:
    """An ``.npy`` version 1.0 header, padded to ``length`` bytes (a multiple of 64)."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (  # noqa: UP031
        np.lib.format.dtype_to_descr(dtype),
        tuple(shape),
    )
    body = text.encode("latin1")
    if length is None:
        length = -(-(10 + len(body) + 1) // 64) * 64
    pad = length - 10 - len(body) - 1
    if pad < 0:
        raise AssertionError("the reserved .npy header is too short")  # cannot happen: 20 digits
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", length - 10) + body + b" " * pad + b"\n"


def to_npy(result: Any, path: Any, *, client: Any = None, window: int | None = None) -> tuple:
    """Compute ``result`` block by block and write it to the ``.npy`` file ``path``.

    Blocks are computed at most ``window`` ahead (default: twice the cluster's task
    slots) and written in order, so a result larger than memory streams to disk; chunks
    of unknown size (files skipped) are fine. The file is written beside ``path`` and
    renamed when complete: ``path`` is either the whole result or untouched. Results
    pass through this process, so ``path`` is on its disk.

    Returns
    -------
    tuple
        The shape written; read it back with ``numpy.load(path, mmap_mode="r")``.
    """
    where = "to_npy()"
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cnnkit-", suffix=".npy-tmp", dir=directory)
    rows, tail, dtype, reserved = 0, None, None, 0
    try:
        with os.fdopen(fd, "wb") as f:
            for block in _blocks_in_order(where, result, client, window):
                block = np.ascontiguousarray(block)
                if tail is None:
                    tail, dtype = block.shape[1:], block.dtype
                    # room for any row count: the header is rewritten with the real one
                    reserved = len(_npy_header(dtype, (10**19, *tail)))
                    f.write(b"\0" * reserved)
                f.write(block.tobytes())
                rows += len(block)
            if tail is None:  # a result with no blocks cannot happen; keep the file valid
                tail, dtype = tuple(result.shape[1:]), result.dtype
            shape = (rows, *tail)
            f.seek(0)
            f.write(_npy_header(np.dtype(dtype), shape, reserved or None))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return shape


def to_zarr(
    result: Any,
    store: Any,
    *,
    client: Any = None,
    window: int | None = None,
    chunk_rows: int | None = None,
) -> Any:
    """Compute ``result`` block by block and append it to a new zarr array at ``store``
    (a path or any zarr store); needs zarr (``pip install zarr``).

    As :func:`to_npy`: blocks computed at most ``window`` ahead and appended in order,
    chunks of unknown size allowed. ``chunk_rows`` is the zarr chunk along axis 0
    (default: the first block's length). Returns the zarr array.
    """
    where = "to_zarr()"
    try:
        import zarr
    except ImportError:
        raise ImportError(f"{where}: writing zarr needs zarr (pip install zarr)") from None
    if chunk_rows is not None:
        chunk_rows = _validate.integer(where, "chunk_rows", chunk_rows, minimum=1)
    array = None
    for block in _blocks_in_order(where, result, client, window):
        if array is None:
            rows = chunk_rows or max(1, len(block))
            array = zarr.open_array(
                store,
                mode="w",
                shape=(0, *block.shape[1:]),
                chunks=(rows, *block.shape[1:]),
                dtype=block.dtype,
            )
        if len(block):
            array.append(block, axis=0)
    return array
