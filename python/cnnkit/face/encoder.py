"""The face encoder: a small convolutional network mapping an image to a unit-length encoding.

Unit length (``UnitNormalization`` after the last ``Dense``) puts every encoding on the
hypersphere, as FaceNet does, so squared distances lie in [0, 4] and one triplet margin
(0.2) and one verification threshold mean the same thing for every encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import layers
from ..models import Functional, Sequential

__all__ = ["build_encoder", "ensemble_encoder"]


def build_encoder(
    input_shape: Sequence[int] = (64, 64, 3),
    embedding_dim: int = 128,
    filters: Sequence[int] = (16, 32, 64, 128),
    *,
    pooling: str = "flatten",
    batch_norm: bool = False,
    convs_per_stage: int | Sequence[int] = 1,
    seed: int | None = 0,
    name: str = "face_encoder",
    dtype: Any = None,
) -> Sequential:
    """A conv net ``image -> encoding`` of ``embedding_dim`` values with unit L2 norm.

    Inputs are images in [0, 255] (uint8 or float): a ``Rescaling(1/255)`` layer comes first.
    Each entry of ``filters`` is a stage of ``convs_per_stage`` 3x3 ReLU convolutions
    ("same" padding, one by default); all but the last are followed by 2x2 max pooling.
    ``pooling`` ("flatten" keeps where each feature is, which the layout of a face needs;
    "avg" is global average pooling), then ``Dense(embedding_dim)`` and
    ``UnitNormalization`` finish it.

    Parameters
    ----------
    input_shape : (H, W, C)
    embedding_dim : int
        ``d`` (FaceNet's 128 by default).
    filters : sequence of int
        Channels of the convolutions, one block each.
    pooling : {"flatten", "avg"}
    batch_norm : bool
        Each convolution without bias, then ``BatchNormalization`` (momentum 0.9), then
        the ReLU. The moving statistics use 0.9, not Keras's 0.99: after a few hundred steps
        0.99 still holds much of their initial values, and inference with them measured
        0.78 against 0.92 for 0.9 (semi-hard, step 200 of 300, 64x64 faces). Batch norm
        alone does not keep batch-hard mining on squared distances from collapsing; plain
        distances (``TripletLoss(squared=False)``) do, with or without it.
    convs_per_stage : int or sequence of int
        Convolutions per stage (VGG's blocks): one count for every stage or one per entry
        of ``filters``. Depth at the same widths; the default of one keeps the network the
        bench measures.
    seed : int or None
        Weight initialisation.
    name, dtype
        As :class:`cnnkit.Sequential`.

    Returns
    -------
    cnnkit.Sequential
        Built for ``input_shape``; compile it with :class:`cnnkit.face.TripletLoss`.
    """
    where = "build_encoder()"
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"{where}: input_shape must be (height, width, channels) of positive ints, got "
            f"{input_shape!r}"
        )
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"{where}: embedding_dim must be an int >= 1, got {embedding_dim!r}")
    widths = list(filters)
    if not widths or not all(
        isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in widths
    ):
        raise ValueError(
            f"{where}: filters must be a non-empty sequence of positive ints, got {filters!r}"
        )
    if min(shape[:2]) < 2 ** (len(widths) - 1):
        raise ValueError(
            f"{where}: input_shape {shape} is too small for {len(widths) - 1} 2x2 poolings "
            f"(height and width must be at least {2 ** (len(widths) - 1)})"
        )
    counts: list[Any] = (
        list(convs_per_stage)
        if isinstance(convs_per_stage, (list, tuple))
        else [convs_per_stage] * len(widths)
    )
    if len(counts) != len(widths) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in counts
    ):
        raise ValueError(
            f"{where}: convs_per_stage must be an int >= 1 or one such int per entry of "
            f"filters ({len(widths)}), got {convs_per_stage!r}"
        )
    if pooling not in ("flatten", "avg"):
        raise ValueError(f"{where}: pooling must be 'flatten' or 'avg', got {pooling!r}")
    stack: list[Any] = [layers.Input(shape), layers.Rescaling(1 / 255)]
    for i, (width, count) in enumerate(zip(widths, counts)):
        for _ in range(count):
            if batch_norm:
                stack += [
                    layers.Conv2D(width, 3, padding="same", use_bias=False),
                    layers.BatchNormalization(momentum=0.9),
                    layers.ReLU(),
                ]
            else:
                stack.append(layers.Conv2D(width, 3, padding="same", activation="relu"))
        if i < len(widths) - 1:
            stack.append(layers.MaxPooling2D(2))
    stack += [
        layers.Flatten() if pooling == "flatten" else layers.GlobalAveragePooling2D(),
        layers.Dense(embedding_dim),
        layers.UnitNormalization(),
    ]
    return Sequential(stack, name=name, seed=seed, dtype=dtype)


def ensemble_encoder(encoders: Sequence[Any], *, name: str = "face_ensemble") -> Functional:
    """One encoder from several trained ones: their unit encodings side by side, scaled
    back to unit length.

    The concatenation of ``m`` unit vectors has length ``sqrt(m)``, so the ensemble's
    squared distance between two images is the mean of the members' squared distances --
    thresholds and margins keep their meaning. Averaging the distances of independently
    trained encoders evens out each one's mistakes: a few enrolled encodings are the
    nearest neighbour of many other people's queries ("hubs"), and two encoders seldom
    share them. Inference costs the sum of the members'.

    Parameters
    ----------
    encoders : sequence of models
        At least two, each mapping the same ``input_shape`` to an encoding (of any
        length; :func:`build_encoder`'s are unit-length). They are renamed
        ``{name}_member{i}`` (a model's layer names must be unique, and every encoder
        from :func:`build_encoder` is called "face_encoder"); their weights are shared
        with the ensemble, not copied.
    name : str

    Returns
    -------
    cnnkit.Functional
        Usable wherever an encoder is (:class:`FaceDatabase`, ``save`` / ``load_model``).
    """
    where = "ensemble_encoder()"
    members = list(encoders)
    if len(members) < 2:
        raise ValueError(f"{where}: encoders must hold at least two models, got {len(members)}")
    declared = [getattr(m, "_input_shape", None) for m in members]
    if any(s is None for s in declared):
        raise TypeError(
            f"{where}: encoders must be models with a declared input shape (built encoders), "
            f"got {[type(m).__name__ for m in members]}"
        )
    shapes = [tuple(s) for s in declared if s is not None]
    if len(set(shapes)) != 1:
        raise ValueError(f"{where}: encoders must share one input shape, got {shapes}")
    if len({id(m) for m in members}) != len(members):
        raise ValueError(f"{where}: encoders must be distinct models, got one twice")
    for i, member in enumerate(members):
        member.name = f"{name}_member{i}"
    image = layers.Input(shapes[0], dtype=members[0].dtype)
    joined = layers.Concatenate()([member(image) for member in members])
    return Functional(image, layers.UnitNormalization()(joined), name=name)
