"""``cnnkit visualize``: the top-k patches of a layer's units of a saved model, as a PNG.

The data is an ``.npy`` file of images as the model takes them, or a built-in data set
made at the model's input size: ``shapes`` (the procedural shapes of the YOLO demo, float32
RGB in [0, 1]) or ``digits`` (scikit-learn's 8x8 handwritten digits scaled to [0, 1] and
resized, which needs scikit-learn).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

__all__ = ["add_parser", "builtin_images", "run"]

BUILTIN = ("shapes", "digits")
DEFAULT_UNITS = 16  # rows drawn when --units is not given


def add_parser(sub: Any) -> None:
    """Add the ``visualize`` command to the ``cnnkit`` subparsers."""
    p = sub.add_parser(
        "visualize",
        help="the image patches that excite a layer's units most, as a PNG grid",
        description="Stream a data set through a saved model once, keep for each unit "
        "(channel) of --layer the k patches of highest activation (each unit's receptive "
        "field in the input) and draw them: a row per unit, best on the left.",
    )
    p.add_argument("model", help="a model file written by model.save (.cnnkit)")
    p.add_argument("--layer", required=True, help="the layer's name (see model.summary())")
    p.add_argument(
        "--data",
        required=True,
        help="an .npy file of images (N, H, W, C) as the model takes them, or a built-in "
        f"data set: {', '.join(BUILTIN)}",
    )
    p.add_argument("-o", "--out", default="top_patches.png", help="PNG file (%(default)s)")
    p.add_argument(
        "--units",
        default=None,
        help=f"channels to draw: '0,3,7' or '0:32' (default: the first {DEFAULT_UNITS})",
    )
    p.add_argument("-k", type=int, default=9, help="patches per unit (%(default)s)")
    p.add_argument(
        "--count", type=int, default=2000, help="images of a built-in data set (%(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of a built-in data set")
    p.set_defaults(run=run)


def _units(text: str | None, channels: int) -> list[int]:
    if text is None:
        return list(range(min(channels, DEFAULT_UNITS)))
    try:
        if ":" in text:
            low, high = (int(v) if v else None for v in text.split(":", 1))
            return list(range(channels))[slice(low, high)]
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--units must be like '0,3,7' or '0:32', got {text!r}") from None


def builtin_images(name: str, shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """``count`` images of a built-in data set at the model's input ``shape`` (H, W, C)."""
    from .. import datasets, image

    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ValueError(
            f"--data {name}: the built-in data sets are images; the model takes {shape}"
        )
    h, w, c = shape
    if name == "shapes":
        x = datasets.shapes(count, image_size=(h, w), seed=seed)[0].astype(np.float32)
    elif name == "digits":
        try:
            from sklearn.datasets import load_digits  # type: ignore[import-untyped]
        except ImportError:
            raise ImportError(
                "--data digits needs scikit-learn: pip install scikit-learn"
            ) from None
        digits = load_digits().images[:count, :, :, None].astype(np.float32) / 16
        x = image.resize(digits, (h, w), "bilinear") if (h, w) != (8, 8) else digits
        x = x.reshape(len(x), h, w, 1)
    else:
        raise ValueError(f"--data must be an .npy file or one of {BUILTIN}, got {name!r}")
    if c == 1 and x.shape[-1] == 3:
        x = x.mean(axis=-1, keepdims=True)
    elif c == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x, dtype=np.float32)


def run(args: argparse.Namespace) -> int:
    from .. import load_model
    from . import patch_grid, receptive_field, top_patches
    from .patches import input_channels

    try:
        for flag, value in (
            ("-k", args.k),
            ("--count", args.count),
            ("--batch-size", args.batch_size),
        ):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        model = load_model(args.model)
        rf = receptive_field(model, args.layer)
        shape = (*rf.input_shape, input_channels(model))
        if args.data in BUILTIN:
            x = builtin_images(args.data, shape, args.count, args.seed)
        else:
            try:
                x = np.load(args.data, allow_pickle=False)
            except (OSError, ValueError) as exc:
                # NumPy calls an image or a text file "pickled (object) data".
                raise ValueError(
                    f"--data {args.data!r} must be an .npy file of images or one of "
                    f"{BUILTIN} ({exc})"
                ) from None
        channels = model.get_layer(rf.layer).output_shape[-1]
        units = _units(args.units, channels)
        found = top_patches(model, rf.layer, x, k=args.k, units=units, batch_size=args.batch_size)
        patch_grid(found, args.out)
    except (ValueError, TypeError, ImportError, OSError, MemoryError) as exc:
        print(f"cnnkit visualize: {exc}", file=sys.stderr)
        return 2
    field = " x ".join(map(str, rf.size))
    jump = " x ".join(map(str, rf.jump))
    print(
        f"layer {rf.layer!r}: receptive field {field} pixels, jump {jump}; "
        f"{len(found['units'])} units x {args.k} patches from {len(x)} images"
        + (" (fields merged over branches)" if rf.merged else "")
    )
    print(f"wrote {args.out}")
    return 0
