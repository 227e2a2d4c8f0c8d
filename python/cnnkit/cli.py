"""The ``cnnkit`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def _add_face_demo(sub: argparse._SubParsersAction) -> None:
    face = sub.add_parser(
        "face-demo",
        help="face verification and recognition on procedural faces (a few minutes on 2 cores)",
        description="Train a face encoder with the triplet loss (batch-hard mining) on "
        "procedural faces, evaluate verification on unseen people (10-fold protocol, VAL@FAR, "
        "AUC, raw-pixel baseline), run one-shot recognition with known and unknown people, "
        "show verification and recognition answers and write the ROC and distance plots.",
    )
    face.add_argument("--quick", action="store_true", help="a tiny run (seconds; for tests)")
    face.add_argument(
        "--out", default="cnnkit-face-demo", help="output folder (default %(default)s)"
    )
    face.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    face.add_argument("--epochs", type=int, default=None, help="override the number of epochs")


def _face_demo(args: argparse.Namespace) -> int:
    import dataclasses

    from .face.demo import FaceDemoConfig, run_face_demo

    config = FaceDemoConfig.quick() if args.quick else FaceDemoConfig()
    if args.epochs is not None:
        if args.epochs < 1:
            print(f"cnnkit face-demo: --epochs must be >= 1, got {args.epochs}", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, epochs=args.epochs)
    run_face_demo(args.out, config=config, seed=args.seed)
    return 0


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
    _add_face_demo(sub)
    args = parser.parse_args(argv)
    if args.command == "face-demo":
        return _face_demo(args)
    if args.command == "info":
        return _info()
    if args.command == "demo":
        return _demo(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
