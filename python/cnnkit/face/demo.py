"""``cnnkit face-demo``: face verification and recognition on procedural faces, end to end.

It trains the default encoder with the triplet loss (semi-hard mining on P x K batches) on
one set of people, then works only with people it never saw: the 10-fold verification
protocol on LFW-style pairs (with the raw-pixel distance as the baseline), one-shot
recognition (one enrolled image per known person, strangers to reject), a few verification
and recognition answers spelled out, and the ROC and distance-histogram plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FaceDemoConfig", "one_shot_recognition", "run_face_demo", "train_encoder"]


@dataclass(frozen=True)
class FaceDemoConfig:
    """Sizes of a demo run; :meth:`quick` is a short one for tests."""

    train_people: int = 500
    images_per_person: int = 12
    test_people: int = 200
    test_images_per_person: int = 8
    known_people: int = 100
    unknown_people: int = 100
    size: int = 64
    p: int = 16
    k: int = 4
    epochs: int = 8
    steps_per_epoch: int = 100
    learning_rate: float = 1e-3
    margin: float = 0.2
    mining: str = "semi_hard"
    squared: bool = True
    batch_norm: bool = False
    pairs_per_fold: int = 600

    @classmethod
    def quick(cls) -> FaceDemoConfig:
        return cls(
            train_people=60,
            images_per_person=6,
            test_people=40,
            test_images_per_person=4,
            known_people=10,
            unknown_people=10,
            size=32,
            p=8,
            k=3,
            epochs=6,
            steps_per_epoch=20,
            pairs_per_fold=40,
        )


def face_sets(config: FaceDemoConfig, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """The demo's four sets of disjoint people: training, verification, known (to enrol)
    and unknown (to reject)."""
    from ..datasets import faces

    c, first = config, 0
    sets = []
    for people, per_person in (
        (c.train_people, c.images_per_person),
        (c.test_people, c.test_images_per_person),
        (c.known_people, c.test_images_per_person),
        (c.unknown_people, c.test_images_per_person),
    ):
        sets.append(faces(people, per_person, size=c.size, seed=seed, first_identity=first))
        first += people
    return tuple(sets)  # type: ignore[return-value]


def train_encoder(
    images: np.ndarray,
    labels: np.ndarray,
    config: FaceDemoConfig,
    *,
    seed: int = 0,
    verbose: Any = 1,
    mining: str | None = None,
) -> Any:
    """A default encoder trained with :class:`TripletLoss` on ``P x K`` batches."""
    from .. import optimizers
    from .encoder import build_encoder
    from .losses import TripletLoss
    from .sampling import PKSampler

    encoder = build_encoder((config.size, config.size, 3), seed=seed, batch_norm=config.batch_norm)
    encoder.compile(
        optimizers.Adam(config.learning_rate),
        TripletLoss(config.margin, mining or config.mining, config.squared, seed=seed),
    )
    sampler = PKSampler(
        labels, config.p, config.k, x=images, seed=seed, steps=config.steps_per_epoch
    )
    encoder.fit(sampler, epochs=config.epochs, verbose=verbose)
    return encoder


def one_shot_recognition(
    encoder: Any,
    known: Any,
    unknown: Any,
    threshold: float,
) -> dict[str, float]:
    """Enrol the first image of each known person; identify their other images and every
    image of the unknown people.

    Returns ``top1`` (the nearest enrolled person is the right one), ``identified`` (right
    and within the threshold), ``rejection`` (unknown images with nobody within the
    threshold) and the counts.
    """
    from .database import FaceDatabase

    x, y = known
    first = np.unique(y, return_index=True)[1]
    rest = np.setdiff1d(np.arange(len(y)), first)
    db = FaceDatabase(encoder, threshold)
    db.enroll_many([str(v) for v in y[first]], x[first])
    rows, d = db.search(db.encode(x[rest]))
    names = np.array(db.names)[db.owners[rows]]
    right = names == y[rest].astype(str)
    _, d_unknown = db.search(db.encode(unknown[0]))
    return {
        "top1": float(right.mean()),
        "identified": float((right & (d <= threshold)).mean()),
        "rejection": float((d_unknown > threshold).mean()),
        "known_queries": len(rest),
        "unknown_queries": len(d_unknown),
    }


def run_face_demo(out: Any, config: FaceDemoConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Run the demo, print what it finds, write the plots into ``out``; return the figures."""
    from . import evaluate
    from .database import FaceDatabase

    config = config or FaceDemoConfig()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    c = config
    train, test, known, unknown = face_sets(c, seed)
    print(
        f"procedural faces {c.size}x{c.size}: {c.train_people} people x {c.images_per_person} "
        f"images to train; {c.test_people} others for verification, {c.known_people} known "
        f"and {c.unknown_people} unknown for recognition"
    )
    print(
        f"training the encoder: triplet loss ({c.mining}, margin {c.margin}), batches of "
        f"{c.p} people x {c.k} images, {c.epochs} epochs of {c.steps_per_epoch} steps"
    )
    encoder = train_encoder(train.images.astype(np.float32), train.labels, c, seed=seed)
    trained = time.perf_counter()

    left, right, same, folds = evaluate.lfw_style_pairs(
        test.labels, folds=10, pairs_per_fold=c.pairs_per_fold, seed=seed
    )
    db = FaceDatabase(encoder)
    codes = db.encode(test.images)
    distances = evaluate.pair_distances(codes[left], codes[right])
    summary = evaluate.verification_summary(distances, same, folds=folds)
    pixels = evaluate.pair_distances(
        test.images[left].astype(np.float32), test.images[right].astype(np.float32)
    )
    baseline = evaluate.lfw_protocol(pixels, same, folds)
    print(f"\nverification on {len(same)} pairs of unseen people (10 folds):")
    print(
        f"  encoder     accuracy {summary['accuracy']:.4f} +- {summary['accuracy_std']:.4f}, "
        f"VAL@FAR={summary['far']:.0e} {summary['val']:.4f}, AUC {summary['auc']:.4f}, "
        f"threshold {summary['threshold']:.3f}"
    )
    print(f"  raw pixels  accuracy {baseline.mean:.4f} +- {baseline.std:.4f}")

    tau = summary["threshold"]
    recognition = one_shot_recognition(
        encoder, (known.images, known.labels), (unknown.images, unknown.labels), tau
    )
    print(
        f"\none-shot recognition (one enrolled image per person, threshold {tau:.3f}):\n"
        f"  top-1 on {recognition['known_queries']} images of {c.known_people} known people "
        f"{recognition['top1']:.4f} (identified within the threshold "
        f"{recognition['identified']:.4f})\n"
        f"  rejection of {recognition['unknown_queries']} images of {c.unknown_people} "
        f"unknown people {recognition['rejection']:.4f}"
    )

    shown = FaceDatabase(encoder, tau)
    people = np.unique(known.labels)[:3]
    for p in people:
        shown.enroll(f"person {p}", known.images[known.labels == p][0])
    print(f"\nenrolled {', '.join(shown.names)} (one image each)")
    a, b = people[0], people[1]
    img_a = known.images[known.labels == a][1]
    for image, who, claim in ((img_a, a, a), (img_a, a, b)):
        ok, dist = shown.verify(image, f"person {claim}")
        print(
            f"  verify: another image of person {who} claims to be person {claim}: "
            f"{'accepted' if ok else 'rejected'} (distance {dist:.3f})"
        )
    stranger = unknown.images[0]
    for image, truth in (
        (known.images[known.labels == people[2]][2], f"person {people[2]}"),
        (stranger, "a stranger"),
    ):
        name, dist = shown.identify(image)
        print(f"  identify: {truth} -> {name or 'nobody (unknown)'} (distance {dist:.3f})")

    plots = []
    try:
        evaluate.plot_roc(distances, same, out_dir / "roc.png")
        evaluate.plot_distance_histograms(distances, same, out_dir / "distances.png")
        plots = ["roc.png", "distances.png"]
    except ImportError as exc:
        print(f"\nno plots: {exc}")
    encoder.save(out_dir / "encoder.cnnkit")
    shown.save(out_dir / "people.face")
    total = time.perf_counter() - start
    print(
        f"\ntrained in {trained - start:.0f} s, {total:.0f} s in all; wrote "
        f"{', '.join([*plots, 'encoder.cnnkit', 'people.face'])} in {out_dir}"
    )
    return {
        "verification": summary,
        "pixel_baseline": baseline.mean,
        "recognition": recognition,
        "train_seconds": trained - start,
        "seconds": total,
    }
