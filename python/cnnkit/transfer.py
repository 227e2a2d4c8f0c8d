"""Transfer learning as the course does it: take a trained network, drop its head, freeze
some of it, and train a new head -- on the frozen part's outputs cached to disk, or on the
network itself.

* :func:`without_head` -- the network without its classifier and softmax, sharing the
  layers (and so the weights) with the original.
* :func:`freeze` -- ``trainable = False`` for the first layers, ``True`` for the rest.
* :func:`extract_features` -- the frozen part run once over a data set, in batches, into
  a memory-mapped ``.npy`` file; an interrupted run resumes where it stopped.

Slicing a Sequential model shares its layers too: ``cnnkit.Sequential(model.layers[:k])``
holds the same layer objects, so training one trains the other (copy the weights with
``get_weights`` / ``set_weights`` when you want them apart). A functional model's
``pop()`` removes its output layer like :meth:`cnnkit.Sequential.pop`.

The three regimes (examples/transfer.py measures them): with very little data, cache the
features and train only a new softmax head on them; with more, freeze the first layers and
train the rest; with a lot, fine-tune everything from the pretrained weights at a low
learning rate.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _validate
from . import autograd as ag
from .layers import Activation, Dense, InputLayer, Layer, Softmax
from .layers.symbolic import KerasTensor
from .models import Functional, Model, Sequential
from .onnx._layers import OnnxSoftmax
from .saving.model_files import atomic_write

__all__ = ["extract_features", "freeze", "without_head"]

# Layers that only turn a classifier's scores into probabilities: dropped with the head.
_OUTPUT_ACTIVATIONS = ("softmax", "log_softmax", "sigmoid", "linear")


def _is_output_activation(layer: Layer) -> bool:
    if type(layer) in (Softmax, OnnxSoftmax):  # OnnxSoftmax: an imported network's
        return True
    return type(layer) is Activation and layer.activation in _OUTPUT_ACTIVATIONS  # type: ignore[attr-defined]


def _check_model(where: str, model: Any) -> None:
    if not isinstance(model, (Sequential, Functional)):
        raise TypeError(
            f"{where}: model must be a cnnkit Sequential or functional Model, got "
            f"{type(model).__name__}"
        )


def without_head(model: Model, *, layers: int | None = None, name: str | None = None) -> Model:
    """The model without its classifier: a new model on the same layer objects.

    By default the trailing softmax (a ``Softmax`` or ``Activation("softmax")`` layer, or
    ``sigmoid``) and the last ``Dense`` layer before it are dropped -- the course's "remove
    the softmax layer and put your own on". ``layers=k`` drops exactly the last ``k``
    layers instead (a head of several layers, or one that is not a Dense).

    The result shares weights with ``model``: freezing or training one changes the other.
    Add a new head with ``cnnkit.Sequential([base, layers.Dense(n, activation="softmax")])``
    or, for a functional base, on ``base.output``.

    Parameters
    ----------
    model : cnnkit.Sequential or functional cnnkit.Model
        One input, one output.
    layers : int, optional
        How many layers (from the end) make up the head.
    name : str, optional
        The new model's name (default: ``"<model>_base"``).
    """
    where = "without_head()"
    _check_model(where, model)
    count = None if layers is None else _validate.integer(where, "layers", layers, minimum=1)
    name = name or f"{model.name}_base"
    if isinstance(model, Sequential):
        stack = model.layers
        keep = len(stack) - count if count is not None else _head_start(where, model, stack)
        if keep < 1:
            raise ValueError(
                f"{where}: layers must leave at least one layer of the {len(stack)} of model "
                f"{model.name!r}, got {count}"
            )
        shape = model._input_shape or _built_shape(model)
        front = [] if shape is None else [InputLayer(shape)]
        return Sequential([*front, *stack[:keep]], name=name, seed=model.seed)
    assert isinstance(model, Functional)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"{where}: model {model.name!r} must have one input and one output, it has "
            f"{len(model.inputs)} and {len(model.outputs)}; cut it explicitly with "
            "cnnkit.Model(model.inputs, model.get_layer(name).output)"
        )

    def step(tensor: KerasTensor) -> tuple[Layer, KerasTensor]:
        """The layer that made ``tensor`` and the one tensor it read."""
        node = tensor.node
        assert node is not None
        if isinstance(node.layer, InputLayer):
            raise ValueError(f"{where}: nothing is left of model {model.name!r} without its head")
        if not isinstance(node.args, KerasTensor):
            raise ValueError(
                f"{where}: head layer {node.layer.name!r} reads several tensors; cut the model "
                "explicitly with cnnkit.Model(model.inputs, model.get_layer(name).output)"
            )
        return node.layer, node.args

    tensor = model.outputs[0]
    if count is not None:
        for _ in range(count):
            _, tensor = step(tensor)
    else:
        layer, below = step(tensor)
        while _is_output_activation(layer):
            layer, below = step(below)
        if type(layer) is not Dense:
            raise ValueError(
                f"{where}: model {model.name!r} ends with {type(layer).__name__} "
                f"{layer.name!r}, not a Dense classifier (with an optional softmax); give the "
                "number of head layers with layers=k"
            )
        tensor = below
    return Functional(model.inputs[0], tensor, name=name, seed=model.seed)


def _head_start(where: str, model: Sequential, stack: list[Layer]) -> int:
    end = len(stack)
    while end and _is_output_activation(stack[end - 1]):
        end -= 1
    if end and type(stack[end - 1]) is Dense:
        return end - 1
    last = stack[end - 1] if end else None
    what = "no layers" if last is None else f"{type(last).__name__} {last.name!r}"
    raise ValueError(
        f"{where}: model {model.name!r} ends with {what}, not a Dense classifier (with an "
        "optional softmax); give the number of head layers with layers=k"
    )


def _built_shape(model: Sequential) -> tuple[int, ...] | None:
    spec = model._build_shape if model.built else None
    if isinstance(spec, list) and all(isinstance(s, int) for s in spec):
        return tuple(spec)
    return None  # the new model builds on its first call, as the original would have


def freeze(model: Model, upto: int | str) -> list[str]:
    """Freeze the first layers of ``model`` (``trainable = False``), unfreeze the rest.

    Parameters
    ----------
    model : cnnkit.Model
    upto : int or str
        A number of layers (``model.layers[:upto]`` are frozen; 0 unfreezes all), or the
        name of the last layer to freeze (included). A nested model counts as one layer.

    Returns
    -------
    list of str
        The names of the frozen layers.

    Compile the model after freezing (as in Keras), so that the optimizer sees the
    trainable weights. A frozen BatchNormalization runs in inference mode.
    """
    where = "freeze()"
    if not isinstance(model, Model):
        raise TypeError(f"{where}: model must be a cnnkit Model, got {type(model).__name__}")
    stack = model.layers
    if isinstance(upto, str):
        names = [layer.name for layer in stack]
        if upto not in names:
            raise ValueError(
                f"{where}: upto must name a layer of the model, got {upto!r}; layers: {names}"
            )
        count = names.index(upto) + 1
    else:
        count = _validate.integer(where, "upto", upto, minimum=0)
        if count > len(stack):
            raise ValueError(
                f"{where}: upto must be at most the number of layers ({len(stack)}), got {count}"
            )
    model.trainable = True  # the model's own flag, and every layer, before the first ones
    for layer in stack[:count]:
        layer.trainable = False
    return [layer.name for layer in stack[:count]]


# -- feature extraction ------------------------------------------------------------------------
def _feature_function(where: str, model: Model, layer: Any) -> Any:
    """``fn(x) -> array`` computing the features of a batch, in inference mode."""
    if layer is None:
        return lambda x: model(x, training=False)
    if isinstance(layer, Layer):
        layer = layer.name
    if isinstance(layer, int) and not isinstance(layer, bool):
        layer = model.get_layer(index=layer).name
    if not isinstance(layer, str):
        raise TypeError(
            f"{where}: layer must be a layer name, an index or a Layer, got {type(layer).__name__}"
        )
    model.get_layer(layer)  # a clear error for an unknown name
    if isinstance(model, Sequential):
        names = [x.name for x in model.layers]
        if layer in names:  # run the stack up to the layer only
            upto = model.layers[: names.index(layer) + 1]

            def prefix(x: Any) -> Any:
                for part in upto:
                    x = part(x, training=False)
                return x

            return prefix
    # Elsewhere (a functional graph, a nested layer) the layer's output is caught in flight.
    return lambda x: model.activations(x, [layer])[layer]


def _fingerprint(model: Model, layer: Any, first: np.ndarray, total: int) -> str:
    """What must not change between an interrupted run and its resumption: the weights,
    the layer, the number of samples and the first batch."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(w.data).tobytes())
    h.update(repr((layer if not isinstance(layer, Layer) else layer.name, total)).encode())
    h.update(np.ascontiguousarray(first).tobytes())
    return h.hexdigest()


def _batches(
    where: str, data: Any, batch_size: int, start: int, total: int | None
) -> Iterable[tuple[int, np.ndarray]]:
    """``(offset, x)`` batches from ``start`` on: arrays are sliced, an iterable of batches
    is walked from its beginning and the batches before ``start`` skipped."""
    if isinstance(data, np.ndarray):
        for i in range(start, len(data), batch_size):
            yield i, data[i : i + batch_size]
        return
    offset = 0
    for batch in data:
        x = _batch_x(where, batch)
        if offset + len(x) <= start:
            offset += len(x)
            continue
        if offset < start:
            raise ValueError(
                f"{where}: x_or_loader's batches do not fall on the {start} samples done "
                "before; resume with the same batches"
            )
        if total is not None and offset + len(x) > total:
            raise ValueError(f"{where}: x_or_loader gave more than num_samples={total} samples")
        yield offset, x
        offset += len(x)


def _progress_record(path: str) -> str:
    return f"{path}.progress.json"


def _partial(path: str) -> str:
    return f"{path}.partial.npy"


def extract_features(
    model: Model,
    x_or_loader: Any,
    *,
    layer: str | int | Layer | None = None,
    path: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    num_samples: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    client: Any = None,
) -> np.ndarray:
    """Run ``model`` (up to ``layer``) once over a data set, in batches, in inference mode.

    The course's first regime: the frozen part of a pretrained network computes each
    image's features once; a shallow network then trains on the cached vectors.

    Parameters
    ----------
    model : cnnkit.Model
        Usually the frozen base (:func:`without_head`).
    x_or_loader : numpy.ndarray or iterable of batches
        Samples ``(N, ...)`` (a memory-mapped array is read batch by batch), or an
        iterable giving ``x`` or ``(x, y)`` batches -- a :class:`cnnkit.data.Loader` with
        ``shuffle=False``. To resume, an iterable must give the same batches in the same
        order again.
    layer : str, int or Layer, optional
        Take the features at this layer's output instead of the model's. In a Sequential
        model only the layers up to it run.
    path : str or os.PathLike, optional
        Write the features to this ``.npy`` file (memory-mapped, so they need not fit in
        memory) and return them memory-mapped read-only. While it runs the data go to
        ``<path>.partial.npy`` with a progress record ``<path>.progress.json`` (rewritten
        atomically after every batch): a call interrupted by an exception or a crash is
        resumed by calling again with the same arguments, from the last batch written.
        ``path`` appears only when every feature is in it. An existing complete ``path``
        of the right shape is returned as it is, unless ``overwrite``.
    batch_size : int
        Samples per forward pass (for arrays; an iterable's batches are taken as given).
    num_samples : int, optional
        The number of samples an iterable gives; needed with ``path`` unless it is a
        :class:`cnnkit.data.Loader` (whose length is known).
    progress : bool
        Draw a tqdm progress bar over the samples.
    overwrite : bool
        Recompute even when ``path`` exists or a resumable run is recorded.
    client : dask.distributed.Client, optional
        Compute on this Dask cluster (``pip install cnnkit[dask]``) with
        :func:`cnnkit.distributed.map_model`, to the same bits as here. ``x_or_loader``
        is then an array of images ``(N, H, W, C)``, NumPy or ``dask.array``; with
        ``path`` the blocks stream into the file, which appears when complete (no
        resumption: an interrupted run starts again; no progress bar: Dask's dashboard
        shows the tasks).

    Returns
    -------
    numpy.ndarray
        ``(N, *feature_shape)``; a read-only :class:`numpy.memmap` when ``path`` is given.

    Examples
    --------
    >>> base = cnnkit.transfer.without_head(pretrained)
    >>> feats = cnnkit.transfer.extract_features(base, images, path="feats.npy")
    >>> head = cnnkit.Sequential([layers.Input(feats.shape[1:]), layers.Dense(5, "softmax")])
    >>> head.compile("adam", "sparse_categorical_crossentropy"); head.fit(feats, labels)
    """
    where = "extract_features()"
    if not isinstance(model, Model):
        raise TypeError(f"{where}: model must be a cnnkit Model, got {type(model).__name__}")
    batch_size = _validate.integer(where, "batch_size", batch_size, minimum=1)
    fn = _feature_function(where, model, layer)
    if client is not None:
        return _extract_on_cluster(
            where, model, x_or_loader, layer, path, batch_size, overwrite, client
        )
    from .data import Loader

    total: int | None
    if isinstance(x_or_loader, np.ndarray):  # a numpy.memmap too
        data: Any = x_or_loader
        if data.ndim < 1 or data.dtype.kind not in "biuf":
            raise ValueError(
                f"{where}: x_or_loader must be a numeric array of samples (N, ...), got shape "
                f"{data.shape} and dtype {data.dtype}"
            )
        total = len(data)
    elif isinstance(x_or_loader, Iterable) and not isinstance(x_or_loader, (str, bytes, dict)):
        data = x_or_loader
        if isinstance(data, Loader):
            if data.shuffle:
                raise ValueError(
                    f"{where}: x_or_loader is a Loader with shuffle=True, whose order changes "
                    "every pass; features must keep the samples' order: use shuffle=False"
                )
            total = len(data) * data.batch_size if data.drop_last else len(data.x)
        else:
            total = (
                None
                if num_samples is None
                else _validate.integer(where, "num_samples", num_samples, minimum=1)
            )
        if path is not None and total is None:
            raise ValueError(
                f"{where}: num_samples is needed with path when x_or_loader is an iterable "
                "of batches (the file is sized before the first batch)"
            )
    else:
        raise TypeError(
            f"{where}: x_or_loader must be an array of samples or an iterable of batches, "
            f"got {type(x_or_loader).__name__}"
        )
    if total == 0:
        raise ValueError(f"{where}: x_or_loader has no samples")

    def compute(x: np.ndarray) -> np.ndarray:
        with ag.no_grad():
            out = fn(x)
        if not isinstance(out, ag.Tensor):
            raise ValueError(
                f"{where}: the model gives {type(out).__name__} outputs; features must be one "
                "array (pick one with layer=)"
            )
        return out.data

    bar = None
    if progress:
        from tqdm import tqdm  # lazily, as the training progress bar

        bar = tqdm(total=total, desc="features", unit="sample")
    try:
        if path is None:
            parts = []
            for _, x in _batches(where, data, batch_size, 0, total):
                parts.append(compute(x))
                if bar is not None:
                    bar.update(len(x))
            if not parts:
                raise ValueError(f"{where}: x_or_loader has no samples")
            return np.concatenate(parts)
        assert total is not None
        return _extract_to_file(
            where, model, layer, data, total, os.fspath(path), batch_size, compute, bar, overwrite
        )
    finally:
        if bar is not None:
            bar.close()


def _extract_on_cluster(
    where: str,
    model: Model,
    data: Any,
    layer: Any,
    path: Any,
    batch_size: int,
    overwrite: bool,
    client: Any,
) -> np.ndarray:
    """extract_features on a Dask cluster: map_model's "features" (or "predict")."""
    from .distributed import chunked, map_model, to_npy

    if isinstance(layer, Layer):
        layer = layer.name
    elif isinstance(layer, int) and not isinstance(layer, bool):
        layer = model.get_layer(index=layer).name
    if isinstance(data, np.ndarray):
        if data.ndim != 4 or data.dtype.kind not in "biuf":
            raise ValueError(
                f"{where}: with client=, x_or_loader must be numeric images (N, H, W, C), got "
                f"shape {data.shape} and dtype {data.dtype}"
            )
        data = chunked(data, batch_size, client)
    elif type(data).__module__.split(".")[0] != "dask":  # (map_model checks it is an array)
        raise TypeError(
            f"{where}: with client=, x_or_loader must be an array of images (NumPy or "
            f"dask.array), got {type(data).__name__}"
        )
    method = "predict" if layer is None else "features"
    features = map_model(
        model, data, method=method, layer=layer, batch_size=batch_size, client=client
    )
    if path is None:
        return np.asarray(features.compute())
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        done = np.load(path, mmap_mode="r")
        if done.shape == features.shape and done.dtype == features.dtype:
            return done
        raise ValueError(
            f"{where}: {path!r} exists with shape {done.shape} ({done.dtype}), not the "
            f"{features.shape} ({features.dtype}) these features have; pass overwrite=True "
            "or another path"
        )
    to_npy(features, path, client=client)
    return np.load(path, mmap_mode="r")


def _peek(where: str, data: Any, batch_size: int) -> tuple[np.ndarray, Any]:
    """The first batch of ``data``, and ``data`` to read from its start again (an iterator
    is read once: its first batch is put back in front of the rest)."""
    if isinstance(data, np.ndarray):
        if len(data) == 0:
            raise ValueError(f"{where}: x_or_loader has no samples")
        return data[:batch_size], data
    rest = iter(data)
    for batch in rest:
        return _batch_x(where, batch), itertools.chain([batch], rest)
    raise ValueError(f"{where}: x_or_loader has no samples")


def _batch_x(where: str, batch: Any) -> np.ndarray:
    x = batch[0] if isinstance(batch, tuple) else batch
    x = np.asarray(x.data if isinstance(x, ag.Tensor) else x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"{where}: x_or_loader gave a batch of shape {x.shape}")
    return x


def _extract_to_file(
    where: str,
    model: Model,
    layer: Any,
    data: Any,
    total: int,
    path: str,
    batch_size: int,
    compute: Any,
    bar: Any,
    overwrite: bool,
) -> np.ndarray:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{where}: path {path!r}: the folder {folder!r} does not exist")
    if os.path.isdir(path):  # else np.load's bare IsADirectoryError
        raise IsADirectoryError(f"{where}: path {path!r} is a folder; give a .npy file name")
    record_path, partial = _progress_record(path), _partial(path)
    first, data = _peek(where, data, batch_size)
    features = compute(first[:1])
    shape, dtype = (total, *features.shape[1:]), features.dtype
    if os.path.exists(path) and not overwrite and not os.path.exists(record_path):
        try:
            done_file = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:  # NumPy calls a text file "pickled data"
            raise ValueError(
                f"{where}: {path!r} exists and is not a .npy file ({exc}); pass overwrite=True "
                "or another path"
            ) from None
        if done_file.shape == shape and done_file.dtype == dtype:
            if bar is not None:
                bar.update(total)
            return done_file
        raise ValueError(
            f"{where}: {path!r} exists with shape {done_file.shape} ({done_file.dtype}), not "
            f"the {shape} ({dtype}) these features have; pass overwrite=True or another path"
        )
    key = _fingerprint(model, layer, first[:1], total)
    done = 0
    record: dict[str, Any] = {}
    if not overwrite and os.path.exists(record_path) and os.path.exists(partial):
        try:
            with open(record_path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = {}
        if record.get("fingerprint") != key:
            raise ValueError(
                f"{where}: {record_path!r} records an unfinished run with another model, layer "
                "or data; pass overwrite=True to start again, or resume it with the same ones"
            )
        out = np.load(partial, mmap_mode="r+")
        if out.shape != shape or out.dtype != dtype:
            raise ValueError(f"{where}: {partial!r} does not hold {shape} {dtype} features")
        done = int(record["done"])
    else:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
    record = {"fingerprint": key, "done": done, "total": total, "path": os.path.basename(path)}
    _write_record(record_path, record)
    if bar is not None and done:
        bar.update(done)
    for offset, x in _batches(where, data, batch_size, done, total):
        out[offset : offset + len(x)] = compute(x)
        out.flush()
        record["done"] = offset + len(x)
        _write_record(record_path, record)
        if bar is not None:
            bar.update(len(x))
    if record["done"] != total:
        raise ValueError(
            f"{where}: x_or_loader gave {record['done']} samples, expected {total}; the run "
            f"can be resumed from {partial!r}"
        )
    del out
    os.replace(partial, path)
    os.unlink(record_path)
    return np.load(path, mmap_mode="r")


def _write_record(record_path: str, record: dict[str, Any]) -> None:
    text = json.dumps(record).encode()
    atomic_write(record_path, lambda f: f.write(text))
