"""The image patches that excite a unit most (the course's "top-9 patches").

:func:`top_patches` streams the data once. Per batch it takes each unit's ``k`` best
positions with ``argpartition`` over the batch's ``(images x positions, units)`` matrix and
merges them with the running ``k`` best (a sort of ``2k`` candidates per unit), cutting the
patches of the candidates that stay from the batch in hand. Memory is ``units x k`` patches
and scores whatever the number of images, and an iterable of batches (a generator, a
:class:`cnnkit.data.Loader`) is read exactly once.

Ties go to the earlier image, then to the earlier position (row-major): ``argpartition``
alone picks among equal values arbitrarily, so where the ``k``-th value of a batch is
shared (dead ReLU units are all zeros) the lowest rows among the equal ones are taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import _nest, _validate
from .. import autograd as ag
from ..layers import InputLayer
from ..models import Model, Sequential
from ..models.functional import Functional
from .receptive import ReceptiveField, receptive_field

__all__ = ["top_patches"]


def layer_runner(model: Model, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function from an input batch to the output of layer ``name``, computing no more
    of the model than the layer needs (the whole model only for a layer of a nested model)."""
    top = [layer for layer in model.layers if layer.name == name]
    if top and isinstance(model, Sequential):
        stop = next(i for i, layer in enumerate(model.layers) if layer is top[0])
        chain = model.layers[: stop + 1]

        def run(x: np.ndarray) -> np.ndarray:
            with ag.no_grad():
                t: Any = x
                for layer in chain:
                    t = layer(t, training=False)
                return np.asarray(t.data)

        return run
    if top and isinstance(model, Functional):
        nodes = model._graph_nodes
        last = max(i for i, node in enumerate(nodes) if node.layer is top[0])
        needed = {id(nodes[last])}
        for node in reversed(nodes[: last + 1]):
            if id(node) in needed:
                needed.update(id(t.node) for t in node.inputs if t.node is not None)
        order = [node for node in nodes[: last + 1] if id(node) in needed]
        target = nodes[last].outputs

        def run_graph(x: np.ndarray) -> np.ndarray:
            values: dict[int, Any] = {}
            with ag.no_grad():
                for node in order:
                    if isinstance(node.layer, InputLayer):
                        values[id(node.outputs)] = node.layer(x)
                        continue
                    args = _nest.map_structure(lambda t: values[id(t)], node.args)
                    result = node.layer(args, training=False)
                    for t, v in zip(_nest.flatten(node.outputs), _nest.flatten(result)):
                        values[id(t)] = v
            return np.asarray(values[id(target)].data)

        return run_graph

    def run_nested(x: np.ndarray) -> np.ndarray:
        with ag.no_grad():
            return np.asarray(model.activations(x, [name])[name].data)

    return run_nested


def input_batches(
    fn: str, images: Any, batch_size: int, shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """Batches of ``images`` (an array, or an iterable of arrays or ``(x, y)`` batches),
    each checked against the model's per-sample ``shape``."""

    def check(batch: Any, what: str) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != len(shape) + 1 or tuple(batch.shape[1:]) != shape:
            raise ValueError(
                f"{fn}: images must be batches of shape (N, {', '.join(map(str, shape))}) "
                f"for the model's input, got {what} of shape {batch.shape}"
            )
        if batch.dtype.kind not in "biuf":
            raise TypeError(f"{fn}: images must be numeric, got {what} of dtype {batch.dtype}")
        return batch

    if isinstance(images, np.ndarray) or (
        hasattr(images, "__array__") and not isinstance(images, Iterable)
    ):
        array = check(images, "an array")
        for i in range(0, len(array), batch_size):
            yield array[i : i + batch_size]
        return
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise TypeError(
            f"{fn}: images must be an array (N, {', '.join(map(str, shape))}) or an iterable "
            f"of such batches (or of (x, y) batches), got {type(images).__name__}"
        )
    for i, item in enumerate(images):
        if isinstance(item, (tuple, list)) and item and not np.isscalar(item[0]):
            item = item[0]  # (x, y) batches, as fit takes them
        yield check(item, f"batch {i}")


def select_units(fn: str, units: Any, channels: int, name: str) -> np.ndarray:
    if units is None:
        return np.arange(channels)
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        units = [units]
    if isinstance(units, (str, bytes)) or not isinstance(units, (Sequence, np.ndarray)):
        raise TypeError(f"{fn}: units must be None or a sequence of channel indices, got {units!r}")
    values = [_validate.integer(fn, "units", u) for u in units]
    if not values:
        raise ValueError(f"{fn}: units must not be empty")
    # Checked as Python ints: an index beyond int64 was an OverflowError from np.array.
    bad = [u for u in values if not 0 <= u < channels]
    if bad:
        raise ValueError(
            f"{fn}: units must be channel indices of layer {name!r} in [0, {channels}), got {bad}"
        )
    return np.array(values, dtype=np.int64)


def batch_top_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``values`` (units x candidates), the columns of its ``k`` largest values,
    the lowest columns among equal values at the cut; shape ``(units, min(k, candidates))``,
    in no order."""
    units, count = values.shape
    if k >= count:
        return np.broadcast_to(np.arange(count), (units, count)).copy()
    part = np.argpartition(values, count - k, axis=1)[:, count - k :]
    kth = np.take_along_axis(values, part, 1).min(axis=1)
    ambiguous = np.nonzero((values >= kth[:, None]).sum(axis=1) > k)[0]
    if ambiguous.size:
        v, t = values[ambiguous], kth[ambiguous, None]
        above = v > t
        equal = v == t
        need = k - above.sum(axis=1, keepdims=True)
        take = above | (equal & (np.cumsum(equal, axis=1) <= need))
        part[ambiguous] = np.nonzero(take)[1].reshape(ambiguous.size, k)
    return part


def _cut(
    batch: np.ndarray,
    image: np.ndarray,
    position: np.ndarray,
    rf: ReceptiveField,
    fill: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patches (m, *size, C) of the units at ``position`` (m, D) of images ``image`` (m,)
    of ``batch``, with their masks of image pixels and their boxes (m, D, 2)."""
    m, dims = len(image), len(rf.size)
    index: list[np.ndarray] = [image.reshape(m, *([1] * dims))]
    mask = np.ones((m, *rf.size), bool)
    box = np.empty((m, dims, 2), np.int64)
    for a in range(dims):
        lo, hi = rf.lo[a][position[:, a]], rf.hi[a][position[:, a]]
        coords = rf.origin(a, position[:, a])[:, None] + np.arange(rf.size[a])
        inside = (coords >= lo[:, None]) & (coords <= hi[:, None])
        view = [m] + [1] * dims
        view[a + 1] = rf.size[a]
        index.append(np.clip(coords, 0, rf.input_shape[a] - 1).reshape(view))
        mask &= inside.reshape(view)
        box[:, a, 0], box[:, a, 1] = lo, hi + 1
    patches = batch[tuple(index)]
    patches[~mask] = fill
    return patches, mask, box


def top_patches(
    model: Any,
    layer: Any,
    images: Any,
    *,
    k: int = 9,
    units: Sequence[int] | None = None,
    batch_size: int = 256,
    fill: float = 0,
) -> dict[str, Any]:
    """The ``k`` input patches that excite each unit (channel) of ``layer`` most.

    One pass over ``images``: each unit keeps its ``k`` highest activations over all
    images and positions, with the patch of input under the unit's receptive field
    (:func:`cnnkit.visualize.receptive_field`). Memory does not grow with the data.

    Parameters
    ----------
    model : Sequential or functional cnnkit Model
    layer : str or Layer
        A layer with a receptive field (its output keeps the input's spatial axes).
    images : array_like or iterable
        ``(N, *input_shape)`` samples in what the model takes (for example float32 in
        [0, 1]), or an iterable of such batches or of ``(x, y)`` batches (a
        :class:`cnnkit.data.Loader`, a generator), read once.
    k : int
        Patches per unit.
    units : sequence of int, optional
        The channels to report (all by default).
    batch_size : int
        Images per forward pass when ``images`` is an array.
    fill : float
        The value of patch pixels outside the image (a field clipped at a border is padded
        to the full field size; ``mask`` tells which pixels are the image's).

    Returns
    -------
    dict
        ``patches`` ``(units, k, *size, C)`` in the dtype of the images; ``mask`` ``(units,
        k, *size)`` True on image pixels; ``scores`` ``(units, k)`` activations, decreasing
        along each row (ties: earlier image, then earlier position first); ``image_index``
        ``(units, k)``, the sample's index in ``images`` (in the order read); ``position``
        ``(units, k, D)``, the unit's position in the layer's output; ``box`` ``(units, k,
        D, 2)``, the field's ``[first, stop)`` input pixels per axis, clipped; ``units``;
        ``layer``; ``receptive_field``.

    Examples
    --------
    >>> found = top_patches(model, "conv2d_1", x_test, k=9)
    >>> found["patches"].shape  # (channels, 9, field, field, 3)
    """
    fn = "top_patches()"
    k = _validate.integer(fn, "k", k, minimum=1)
    batch_size = _validate.integer(fn, "batch_size", batch_size, minimum=1)
    fill = _validate.real(fn, "fill", fill)
    rf = receptive_field(model, layer)
    name = rf.layer
    shape = (*rf.input_shape, input_channels(model))
    run = layer_runner(model, name)
    positions = int(np.prod(rf.output_shape))

    picked: np.ndarray | None = None
    scores = keys = patches = mask = box = None
    seen = 0
    for batch in input_batches(fn, images, batch_size, shape):
        if len(batch) == 0:
            continue
        out = run(batch)
        if picked is None:
            picked = select_units(fn, units, out.shape[-1], name)
        # (units, images x positions), contiguous: each unit's candidates in one row
        values = np.ascontiguousarray(out.reshape(len(batch) * positions, -1)[:, picked].T)
        if not np.isfinite(values).all():
            bad = int(np.nonzero(~np.isfinite(values).all(axis=0))[0][0]) // positions
            raise ValueError(
                f"{fn}: layer {name!r} gives non-finite activations for image {seen + bad} "
                "of images"
            )
        columns = batch_top_rows(values, k)
        new_scores = np.take_along_axis(values, columns, 1)
        new_keys = (columns + seen * positions).astype(np.int64)
        if scores is None:
            all_scores, all_keys, old = new_scores, new_keys, 0
        else:
            assert keys is not None
            all_scores = np.concatenate([scores, new_scores], axis=1)
            all_keys = np.concatenate([keys, new_keys], axis=1)
            old = scores.shape[1]
        order = np.lexsort((all_keys, -all_scores.astype(np.float64)), axis=1)[:, :k]
        scores = np.take_along_axis(all_scores, order, 1)
        keys = np.take_along_axis(all_keys, order, 1)
        fresh = order >= old
        u, r = np.nonzero(fresh)
        flat = keys[u, r] - seen * positions
        position = np.stack(np.unravel_index(flat % positions, rf.output_shape), axis=1)
        cut, cut_mask, cut_box = _cut(batch, flat // positions, position, rf, fill)
        width = order.shape[1]
        stored_patches = np.empty((len(picked), width, *rf.size, batch.shape[-1]), batch.dtype)
        stored_mask = np.empty((len(picked), width, *rf.size), bool)
        stored_box = np.empty((len(picked), width, len(rf.size), 2), np.int64)
        if patches is not None:
            assert mask is not None and box is not None
            u_old, r_old = np.nonzero(~fresh)
            from_old = order[u_old, r_old]
            stored_patches[u_old, r_old] = patches[u_old, from_old]
            stored_mask[u_old, r_old] = mask[u_old, from_old]
            stored_box[u_old, r_old] = box[u_old, from_old]
        stored_patches[u, r], stored_mask[u, r], stored_box[u, r] = cut, cut_mask, cut_box
        patches, mask, box = stored_patches, stored_mask, stored_box
        seen += len(batch)

    if seen == 0 or scores is None or picked is None:
        raise ValueError(f"{fn}: images holds no images")
    if scores.shape[1] < k:
        raise ValueError(
            f"{fn}: k is {k} but the {seen} image(s) give only {scores.shape[1]} positions per "
            f"unit of layer {name!r}"
        )
    assert keys is not None
    position = np.stack(np.unravel_index(keys % positions, rf.output_shape), axis=-1)
    return {
        "patches": patches,
        "mask": mask,
        "scores": scores,
        "image_index": keys // positions,
        "position": position.reshape(*keys.shape, len(rf.output_shape)),
        "box": box,
        "units": picked,
        "layer": name,
        "receptive_field": rf,
    }


def input_channels(model: Model) -> int:
    """The channels of the model's (built) input."""
    shape = getattr(model, "_input_shape", None)
    if shape is None:
        build = getattr(model, "_build_shape", None)
        shape = tuple(build) if isinstance(build, (list, tuple)) else None
    return int(shape[-1])  # type: ignore[index]
