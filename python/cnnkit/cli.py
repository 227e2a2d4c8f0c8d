"""The ``cnnkit`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _info() -> int:
    import platform

    import numpy as np

    from . import __version__, _core

    rows = [
        ("cnnkit", __version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("compiler", _core.compiler),
        ("simd path", _core.get_isa()),
        ("simd paths available", ", ".join(_core.available_isas())),
        ("openmp", str(_core.openmp_version)),
        ("threads", str(_core.get_num_threads())),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import dataclasses

    from .demo import DemoConfig, run_demo

    config = DemoConfig.quick() if args.quick else DemoConfig()
    if args.epochs is not None:
        if args.epochs < 1:
            print(f"cnnkit demo: --epochs must be >= 1, got {args.epochs}", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, epochs=args.epochs)
    run_demo(args.out, config=config, seed=args.seed)
    return 0


def _add_style(sub: argparse._SubParsersAction) -> None:
    style = sub.add_parser(
        "style",
        help="neural style transfer: CONTENT painted in the style of STYLE",
        description="Optimise the pixels of an image so that its activations match CONTENT's at "
        "the content layer and its Gram matrices match STYLE's at the style layers "
        "(cnnkit.style.transfer). Needs Pillow (the 'image' extra).",
    )
    style.add_argument("content", help="content image file")
    style.add_argument("style", help="style image file")
    style.add_argument("-o", "--output", required=True, help="output image file (PNG, JPEG)")
    style.add_argument(
        "--size", type=int, default=256, help="longer side of the result (default %(default)s)"
    )
    style.add_argument("--steps", type=int, default=200, help="iterations (default %(default)s)")
    style.add_argument("--alpha", type=float, default=10.0, help="content weight (default 10)")
    style.add_argument("--beta", type=float, default=40.0, help="style weight (default 40)")
    style.add_argument("--tv-weight", type=float, default=0.0, help="total variation weight")
    style.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam")
    style.add_argument("--learning-rate", type=float, default=0.02, help="Adam's step size")
    style.add_argument(
        "--init", choices=("noisy-content", "noise", "content"), default="noisy-content"
    )
    style.add_argument(
        "--network",
        default=None,
        help="a model file (.cnnkit, or .onnx with the 'onnx' extra); default: random "
        "multi-scale filters",
    )
    style.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    style.add_argument("--frames", default=None, help="folder for every k-th iterate")
    style.add_argument(
        "--frame-every", type=int, default=10, help="k for --frames (default %(default)s)"
    )


def _style(args: argparse.Namespace) -> int:
    import os
    import warnings

    from .style import transfer, write_image

    callback = None
    if args.frames is not None:
        if args.frame_every < 1:
            print(
                f"cnnkit style: --frame-every must be >= 1, got {args.frame_every}", file=sys.stderr
            )
            return 2
        os.makedirs(args.frames, exist_ok=True)

        def callback(step: int, image: Any, costs: Any) -> None:
            if (step + 1) % args.frame_every == 0:
                write_image(os.path.join(args.frames, f"step{step + 1:05d}.png"), image)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _warn_line  # type: ignore[assignment]
        try:
            image = transfer(
                args.content,
                args.style,
                network=args.network,
                alpha=args.alpha,
                beta=args.beta,
                tv_weight=args.tv_weight,
                steps=args.steps,
                optimizer=args.optimizer,
                learning_rate=args.learning_rate,
                init=args.init,
                size=args.size,
                seed=args.seed,
                callback=callback,
            )
            write_image(args.output, image)
        except (ValueError, TypeError, ImportError) as exc:
            print(f"cnnkit style: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {args.output} ({image.shape[1]}x{image.shape[0]})")
    return 0


def _warn_line(message: Warning | str, category: type, *args: object, **kwargs: object) -> None:
    print(f"cnnkit: {category.__name__}: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cnnkit", description="cnnkit command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, compiler, SIMD path and threads")
    demo = sub.add_parser(
        "demo",
        help="train and evaluate YOLO on procedural shapes (about 8 minutes on 2 cores)",
        description="Generate the shapes dataset, pick anchors by k-means, train a small YOLO "
        "network, evaluate it on a held-out set (COCO mAP and mAP@0.5) and draw detections.",
    )
    demo.add_argument(
        "--quick", action="store_true", help="a short run (about 90 CPU-seconds, mAP@0.5 0.84)"
    )
    demo.add_argument("--out", default="cnnkit-demo", help="output folder (default %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    demo.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    _add_style(sub)
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "demo":
        return _demo(args)
    if args.command == "style":
        return _style(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
