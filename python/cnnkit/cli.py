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


def _add_training_demo(
    sub: argparse._SubParsersAction, name: str, *, out: str, quick: str, help: str, description: str
) -> None:
    demo = sub.add_parser(name, help=help, description=description)
    demo.add_argument("--quick", action="store_true", help=quick)
    demo.add_argument("--out", default=out, help="output folder (default %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    demo.add_argument("--epochs", type=int, default=None, help="override the number of epochs")


def _run_training_demo(args: argparse.Namespace, config_type: Any, run: Any) -> int:
    import dataclasses

    config = config_type.quick() if args.quick else config_type()
    if args.epochs is not None:
        if args.epochs < 1:
            print(
                f"cnnkit {args.command}: --epochs must be >= 1, got {args.epochs}", file=sys.stderr
            )
            return 2
        config = dataclasses.replace(config, epochs=args.epochs)
    run(args.out, config=config, seed=args.seed)
    return 0


def _face_eval_parser(sub: Any) -> None:
    face_eval = sub.add_parser(
        "face-eval",
        help="the LFW verification protocol for a saved face encoder",
        description="Encode the images an LFW pairs file names (view 2 pairs.txt or view 1 "
        "pairsDevTrain.txt) with a saved encoder and print the 10-fold accuracy (mean and std), "
        "VAL at a FAR and the AUC. Images are fed as float32 RGB in [0, 1].",
    )
    face_eval.add_argument("--lfw", required=True, help="image root: ROOT/Name/Name_0001.jpg")
    face_eval.add_argument("--pairs", required=True, help="LFW pairs file")
    face_eval.add_argument("--model", required=True, help="encoder saved by cnnkit (.cnnkit)")
    face_eval.add_argument("--size", type=int, default=64, help="encoder input side (%(default)s)")
    face_eval.add_argument(
        "--crop", type=int, default=None, help="centre crop before resizing (e.g. 150 for LFW)"
    )
    face_eval.add_argument("--batch-size", type=int, default=256, help="(%(default)s)")
    face_eval.add_argument(
        "--metric", default="euclidean", choices=("euclidean", "squared", "cosine")
    )
    face_eval.add_argument("--far", type=float, default=1e-3, help="FAR for VAL (%(default)s)")
    face_eval.add_argument("--plots", default=None, help="folder for roc.png and distances.png")


def _face_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import load_model
    from .face import evaluate
    from .face.lfw_eval import evaluate_lfw

    try:
        encoder = load_model(args.model, compile=False)
        s = evaluate_lfw(
            encoder,
            args.lfw,
            args.pairs,
            size=args.size,
            crop=args.crop,
            batch_size=args.batch_size,
            metric=args.metric,
            far=args.far,
        )
        if args.plots is not None:
            out = Path(args.plots)
            out.mkdir(parents=True, exist_ok=True)
            evaluate.plot_roc(s["distances"], s["same"], out / "roc.png", far=args.far)
            evaluate.plot_distance_histograms(s["distances"], s["same"], out / "distances.png")
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"cnnkit face-eval: {err}", file=sys.stderr)
        return 2
    print(f"{s['pairs']} pairs of {s['images']} images, {s['folds']} folds, {args.metric} distance")
    print(f"accuracy  {s['accuracy']:.4f} +- {s['accuracy_std']:.4f}")
    print(f"VAL       {s['val']:.4f} @ FAR {s['far']:.4g} (target {args.far:g})")
    print(f"AUC       {s['auc']:.4f}")
    print(f"threshold {s['threshold']:.4g} (best on all pairs, accuracy {s['train_accuracy']:.4f})")
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
        except (ValueError, TypeError, ImportError, MemoryError) as exc:
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
    _add_training_demo(
        sub,
        "demo",
        out="cnnkit-demo",
        quick="a short run (about 90 CPU-seconds, mAP@0.5 0.84)",
        help="train and evaluate YOLO on procedural shapes (about 8 minutes on 2 cores)",
        description="Generate the shapes dataset, pick anchors by k-means, train a small YOLO "
        "network, evaluate it on a held-out set (COCO mAP and mAP@0.5) and draw detections.",
    )
    _add_training_demo(
        sub,
        "face-demo",
        out="cnnkit-face-demo",
        quick="a tiny run (seconds; for tests)",
        help="face verification and recognition on procedural faces (a few minutes on 2 cores)",
        description="Train a face encoder with the triplet loss (semi-hard mining) on "
        "procedural faces, evaluate verification on unseen people (10-fold protocol, VAL@FAR, "
        "AUC, raw-pixel baseline), run one-shot recognition with known and unknown people, "
        "show verification and recognition answers and write the ROC and distance plots.",
    )
    _face_eval_parser(sub)
    from .visualize.command import add_parser as add_visualize

    add_visualize(sub)  # `cnnkit visualize`; it sets args.run
    _add_style(sub)
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is not None:
        return int(args.run(args))
    if args.command == "face-demo":
        from .face.demo import FaceDemoConfig, run_face_demo

        return _run_training_demo(args, FaceDemoConfig, run_face_demo)
    if args.command == "face-eval":
        return _face_eval(args)
    if args.command == "info":
        return _info()
    if args.command == "demo":
        from .demo import DemoConfig, run_demo

        return _run_training_demo(args, DemoConfig, run_demo)
    if args.command == "style":
        return _style(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
