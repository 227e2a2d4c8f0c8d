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

__all__ = [
    "FaceDemoConfig",
    "face_sets",
    "one_shot_recognition",
    "open_set_threshold",
    "recognition_threshold",
    "run_face_demo",
    "train_encoder",
    "training_augmentation",
]


@dataclass(frozen=True)
class FaceDemoConfig:
    """Sizes and training recipe of a demo run; :meth:`quick` is a short one for tests.

    ``filters`` are the default encoder's conv widths and ``convs_per_stage`` its
    convolutions per width (:func:`build_encoder`).
    ``cosine_decay`` lowers the learning rate along a cosine to 1% over the whole run.
    ``warmup_steps`` steps of semi-hard mining come before ``mining`` (a batch-hard
    encoder trained from random weights can collapse to one encoding). The recognition
    threshold is chosen at the false accept rate ``recognition_far`` on the pairs of the
    verification people (:func:`recognition_threshold`).
    ``refine_steps`` more steps follow the triplet ones with ``refine_mining`` (batch-hard by
    default), a new Adam at ``refine_learning_rate`` (cosine-decayed with the run's
    ``cosine_decay``): semi-hard mining picks, per anchor-positive pair, the closest negative
    *farther* than the positive, so the negatives closer than the positive -- the nearest
    neighbours that make one-shot recognition wrong -- are trained on only when every
    negative is; batch-hard aims at exactly those, and from a trained encoder it does not
    collapse.
    ``refine_cycles`` repeats the refinement that many times, each a warm restart (SGDR,
    Loshchilov & Hutter 2017): a new Adam whose cosine starts again at
    ``refine_learning_rate``, and batches and mining draws of its own (seed ``seed + 5 +
    cycle``). Two cycles are exactly one refinement resumed from the first one's saved
    encoder with ``train_encoder(..., seed=seed + 1)``; a cycle's end, at 1% of the rate, is
    a usable encoder, so a long refinement can stop after any cycle.
    """

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
    cosine_decay: bool = True
    margin: float = 0.2
    mining: str = "semi_hard"
    warmup_steps: int = 0
    squared: bool = True
    batch_norm: bool = False
    filters: tuple[int, ...] = (16, 32, 64, 128)
    convs_per_stage: int | tuple[int, ...] = 1
    augment: bool = False
    pretrain_steps: int = 0
    pretrain_scale: float = 30.0
    pretrain_margin: float = 0.35
    finetune_learning_rate: float | None = None
    refine_steps: int = 0
    refine_mining: str = "batch_hard"
    refine_learning_rate: float = 1e-3
    refine_cycles: int = 1
    pairs_per_fold: int = 600
    recognition_far: float = 1e-3

    def __post_init__(self) -> None:
        # Checked here, so that a bad field fails when the config is made (or changed with
        # dataclasses.replace), not minutes or hours into a run.
        from .. import _validate
        from .losses import MINING_MODES

        where = "FaceDemoConfig()"
        counts = {
            "train_people": 2,
            "images_per_person": 2,
            "test_people": 2,
            "test_images_per_person": 2,
            "known_people": 1,
            "unknown_people": 1,
            "size": 1,
            "p": 2,
            "k": 2,
            "epochs": 1,
            "steps_per_epoch": 0,
            "warmup_steps": 0,
            "pretrain_steps": 0,
            "refine_steps": 0,
            "refine_cycles": 1,
            "pairs_per_fold": 1,
        }
        for name, minimum in counts.items():
            _validate.integer(where, name, getattr(self, name), minimum=minimum)
        for name in ("learning_rate", "refine_learning_rate", "pretrain_scale"):
            _validate.real(where, name, getattr(self, name), low=0.0, low_open=True)
        if self.finetune_learning_rate is not None:
            _validate.real(
                where, "finetune_learning_rate", self.finetune_learning_rate, low=0.0, low_open=True
            )
        for name in ("margin", "pretrain_margin"):
            _validate.real(where, name, getattr(self, name), low=0.0)
        _validate.real(
            where, "recognition_far", self.recognition_far, low=0.0, high=1.0, low_open=True
        )
        for name in ("mining", "refine_mining"):
            if getattr(self, name) not in MINING_MODES:
                raise ValueError(
                    f"{where}: {name} must be one of {', '.join(MINING_MODES)}, got "
                    f"{getattr(self, name)!r}"
                )
        for name in ("cosine_decay", "squared", "batch_norm", "augment"):
            _validate.flag(where, name, getattr(self, name))

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
            # 120 steps are too few to spend any of them at a decayed rate.
            cosine_decay=False,
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


def training_augmentation() -> Any:
    """Extra nuisances for the training images: a small shift, rotation and scale, and
    brightness, contrast and saturation jitter (each on 80% of the images).

    The hue stays: skin tone and hair colour identify a person. Each training image of the
    procedural faces already varies in these ways; the distortions make every epoch show
    new variants of the same few images per person.

    Off by default (``FaceDemoConfig.augment``): at 400 steps on 1,000 people x 8 images
    (batch norm, semi-hard) it measured 0.916 against 0.929 without it, one-shot top-1 0.52
    against 0.57. The encoder is not overfitting there (0.937 on pairs of its training
    people against 0.929 on unseen ones): the distortions only make a short run harder.
    """
    from .. import augment

    return augment.Compose(
        [
            augment.Affine(scale=(0.92, 1.08), translate_px=4, rotate=8, p=0.8),
            augment.ColorJitter(0.2, 0.2, 0.15, 0.0, p=0.8),
        ]
    )


def train_encoder(
    images: np.ndarray,
    labels: np.ndarray,
    config: FaceDemoConfig,
    *,
    seed: int = 0,
    verbose: Any = 1,
    mining: str | None = None,
    encoder: Any = None,
) -> Any:
    """An encoder trained with :class:`TripletLoss` on ``P x K`` batches for
    ``config.epochs * config.steps_per_epoch`` steps (a new default encoder unless
    ``encoder`` is given), after ``config.warmup_steps`` steps of semi-hard mining, on
    images distorted by :func:`training_augmentation` when ``config.augment``; first
    ``config.pretrain_steps`` steps of classification pre-training when it is not 0; then
    ``config.refine_steps`` steps of ``config.refine_mining``, ``config.refine_cycles`` times
    (see :class:`FaceDemoConfig`)."""
    from .encoder import build_encoder

    c = config
    if encoder is None:
        encoder = build_encoder(
            (c.size, c.size, 3),
            filters=c.filters,
            seed=seed,
            batch_norm=c.batch_norm,
            convs_per_stage=c.convs_per_stage,
        )
    transform = training_augmentation() if c.augment else None
    learning_rate = c.learning_rate
    if c.pretrain_steps:
        from .classification import pretrain_encoder

        pretrain_encoder(
            encoder,
            images,
            labels,
            steps=c.pretrain_steps,
            p=c.p,
            k=c.k,
            learning_rate=c.learning_rate,
            scale=c.pretrain_scale,
            margin=c.pretrain_margin,
            cosine_decay=c.cosine_decay,
            seed=seed + 3,
            verbose=verbose,
            transform=transform,
        )
        if c.finetune_learning_rate is not None:
            learning_rate = c.finetune_learning_rate
    mining = mining or c.mining
    total = c.epochs * c.steps_per_epoch
    if total:  # 0: classification pre-training, or a given encoder's refinement, alone
        _triplet_steps(encoder, images, labels, c, mining, learning_rate, seed, verbose, transform)
    if c.refine_steps:
        for cycle in range(c.refine_cycles):
            _refine(encoder, images, labels, c, seed + 5 + cycle, verbose, transform)
    return encoder


def _refine(
    encoder: Any,
    images: np.ndarray,
    labels: np.ndarray,
    c: FaceDemoConfig,
    seed: int,
    verbose: Any,
    transform: Any,
) -> None:
    """:func:`train_encoder`'s refinement: one cycle of ``c.refine_steps`` steps."""
    from .. import optimizers, schedules
    from .losses import TripletLoss
    from .sampling import PKSampler

    rate: Any = c.refine_learning_rate
    if c.cosine_decay:
        rate = schedules.CosineDecay(c.refine_learning_rate, c.refine_steps, alpha=0.01)
    loss = TripletLoss(c.margin, c.refine_mining, c.squared, seed=seed)
    encoder.compile(optimizers.Adam(rate), loss)
    refine = PKSampler(
        labels, c.p, c.k, x=images, seed=seed, steps=c.refine_steps, transform=transform
    )
    encoder.fit(refine, epochs=1, verbose=verbose)


def _triplet_steps(
    encoder: Any,
    images: np.ndarray,
    labels: np.ndarray,
    c: FaceDemoConfig,
    mining: str,
    learning_rate: float,
    seed: int,
    verbose: Any,
    transform: Any,
) -> None:
    """:func:`train_encoder`'s triplet phase: the warm-up, then the epochs."""
    from .. import optimizers, schedules
    from .losses import TripletLoss
    from .sampling import PKSampler

    total = c.epochs * c.steps_per_epoch
    warmup = min(c.warmup_steps, total) if mining != "semi_hard" else 0
    rate: Any = learning_rate
    if c.cosine_decay:
        rate = schedules.CosineDecay(learning_rate, total, alpha=0.01)
    loss = TripletLoss(c.margin, "semi_hard" if warmup else mining, c.squared, seed=seed)
    encoder.compile(optimizers.Adam(rate), loss)
    if warmup:
        encoder.fit(
            PKSampler(labels, c.p, c.k, x=images, seed=seed + 1, steps=warmup, transform=transform),
            epochs=1,
            verbose=verbose,
        )
        loss.mining = mining
    # The epochs keep their length; the warm-up's steps come out of the first ones.
    remaining = total - warmup
    sampler = PKSampler(
        labels, c.p, c.k, x=images, seed=seed, steps=c.steps_per_epoch, transform=transform
    )
    epochs, last = divmod(remaining, c.steps_per_epoch)
    if epochs:
        encoder.fit(sampler, epochs=epochs, verbose=verbose)
    if last:
        tail = PKSampler(labels, c.p, c.k, x=images, seed=seed + 2, steps=last, transform=transform)
        encoder.fit(tail, epochs=1, verbose=verbose)


def recognition_threshold(
    encoder: Any, validation: Any, far: float = 1e-3, *, mirror: bool = False
) -> tuple[float, float]:
    """The recognition threshold: tau at false accept rate ``far`` over every pair of the
    ``validation`` images ``(images, labels)`` (people neither enrolled nor trained on).

    Returns ``(tau, val)``: the threshold and the fraction of same pairs it accepts. See
    :func:`cnnkit.face.evaluate.choose_threshold` for why recognition with strangers needs
    a fixed-FAR threshold rather than the accuracy-maximising one. ``mirror`` as
    :class:`FaceDatabase` (the threshold must come from the encodings it will compare).
    """
    from . import evaluate
    from .database import FaceDatabase

    x, y = validation
    codes = FaceDatabase(encoder, mirror=mirror).encode(x)
    left, right, same = evaluate.all_pairs(np.asarray(y))
    d = evaluate.pair_distances(codes[left], codes[right])
    tau, _ = evaluate.choose_threshold(d, same, far=far)
    return tau, float(np.mean(d[same] <= tau))


def open_set_threshold(
    encoder: Any,
    validation: Any,
    *,
    splits: int = 20,
    seed: int = 0,
    mirror: bool = False,
) -> tuple[float, float, float]:
    """The recognition threshold that balances the two one-shot figures on ``validation``
    people ``(images, labels)`` (neither enrolled nor trained on).

    Each of ``splits`` random halvings of the people makes one half known (first image
    enrolled, the others queries) and the other unknown, as :func:`one_shot_recognition`
    does; the threshold maximises the smaller of "identified" (nearest enrolled person
    right and within the threshold) and "rejection", pooled over the splits.

    Returns ``(tau, identified, rejection)`` on the validation people. Unlike the
    fixed-FAR threshold of :func:`recognition_threshold`, it trades rejection of strangers
    for acceptance of the known.
    """
    from .database import FaceDatabase

    where = "open_set_threshold()"
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ValueError(f"{where}: splits must be an int >= 1, got {splits!r}")
    x, y = validation
    y = np.asarray(y)
    people = np.unique(y)
    if len(people) < 2:
        raise ValueError(f"{where}: validation must hold at least 2 people, got {len(people)}")
    codes = FaceDatabase(encoder, mirror=mirror).encode(x).astype(np.float64)
    rng = np.random.default_rng(seed)
    right_d: list[np.ndarray] = []
    wrong_d: list[np.ndarray] = []
    unknown_d: list[np.ndarray] = []
    for _ in range(int(splits)):
        known = np.isin(y, rng.permutation(people)[: len(people) // 2])
        ky, kc = y[known], codes[known]
        first = np.unique(ky, return_index=True)[1]
        rest = np.setdiff1d(np.arange(len(ky)), first)
        gallery = kc[first]
        for queries, sink in ((kc[rest], None), (codes[~known], unknown_d)):
            d2 = (queries**2).sum(1)[:, None] + (gallery**2).sum(1) - 2 * queries @ gallery.T
            nearest = d2.argmin(1)
            d = np.sqrt(np.maximum(d2[np.arange(len(queries)), nearest], 0))
            if sink is not None:
                sink.append(d)
                continue
            right = ky[first][nearest] == ky[rest]
            right_d.append(d[right])
            wrong_d.append(d[~right])
    ok = np.sort(np.concatenate(right_d))
    n_known = len(ok) + sum(len(w) for w in wrong_d)
    strangers = np.sort(np.concatenate(unknown_d))
    candidates = np.unique(np.concatenate([ok, strangers]))
    identified = np.searchsorted(ok, candidates, side="right") / n_known
    rejection = 1 - np.searchsorted(strangers, candidates, side="right") / len(strangers)
    best = int(np.argmax(np.minimum(identified, rejection)))
    return float(candidates[best]), float(identified[best]), float(rejection[best])


def one_shot_recognition(
    encoder: Any,
    known: Any,
    unknown: Any,
    threshold: float,
    *,
    mirror: bool = False,
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
    db = FaceDatabase(encoder, threshold, mirror=mirror)
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

    # Recognition must turn strangers away: its threshold is chosen at a fixed false
    # accept rate on the verification people's pairs, not at their best accuracy.
    tau, _ = recognition_threshold(encoder, (test.images, test.labels), c.recognition_far)
    recognition = one_shot_recognition(
        encoder, (known.images, known.labels), (unknown.images, unknown.labels), tau
    )
    print(
        f"\none-shot recognition (one enrolled image per person, threshold {tau:.3f} at "
        f"FAR {c.recognition_far:g} on the verification people's pairs):\n"
        f"  top-1 on {recognition['known_queries']} images of {c.known_people} known people "
        f"{recognition['top1']:.4f} (identified within the threshold "
        f"{recognition['identified']:.4f})\n"
        f"  rejection of {recognition['unknown_queries']} images of {c.unknown_people} "
        f"unknown people {recognition['rejection']:.4f}"
    )

    # 1:1 verification uses the accuracy-maximising threshold of the verification pairs;
    # identification with strangers the fixed-FAR one (saved with the database).
    shown = FaceDatabase(encoder, summary["threshold"])
    people = np.unique(known.labels)[:3]
    for p in people:
        shown.enroll(f"person {p}", known.images[known.labels == p][0])
    print(
        f"\nenrolled {', '.join(shown.names)} (one image each); verification threshold "
        f"{summary['threshold']:.3f}, recognition threshold {tau:.3f}"
    )
    a, b = people[0], people[1]
    img_a = known.images[known.labels == a][1]
    for image, who, claim in ((img_a, a, a), (img_a, a, b)):
        ok, dist = shown.verify(image, f"person {claim}")
        print(
            f"  verify: another image of person {who} claims to be person {claim}: "
            f"{'accepted' if ok else 'rejected'} (distance {dist:.3f})"
        )
    shown.threshold = tau
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
        "recognition_threshold": tau,
        "pixel_baseline": baseline.mean,
        "recognition": recognition,
        "train_seconds": trained - start,
        "seconds": total,
    }
