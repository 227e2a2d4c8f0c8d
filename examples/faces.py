"""Face verification and recognition on procedural faces: the course's experiments, measured.

Trains the default encoder (64x64 faces, 128-d unit encodings) four ways on the same people
for the same number of steps -- triplet loss with batch-hard, semi-hard and random triplets,
and the Siamese binary head -- and evaluates each on people never seen in training: the
10-fold verification protocol on LFW-style pairs (accuracy, VAL at FAR = 1e-3, AUC) and
one-shot recognition (one enrolled image for each of 100 known people; their other images
and those of 100 unknown people as queries, with the threshold chosen on the verification
pairs). The raw-pixel distance is the baseline.

    python examples/faces.py              # the full-size runs (see the numbers it prints)
    python examples/faces.py --quick      # a smoke run
    python examples/faces.py --runs semi_hard,binary

Measured (2026-12-05, the shared 2-core Xeon at load 11-24, 4 runs at once, 2 threads each;
``--epochs 6``: 600 steps of P=16 x K=4; 500 training people x 12 images; 200 unseen people
x 8 images, 10,000 pairs): raw pixels 0.559 +- 0.016. Semi-hard: 0.902 after one epoch,
0.929 +- 0.021 after six (VAL@FAR=1e-3 0.323, AUC 0.980); random triplets: 0.833 after one,
0.918 +- 0.019 after six (VAL 0.073, AUC 0.968). Binary head (L1): 0.786 and 0.782 after one
and two epochs (stopped). Batch-hard (with batch_norm; without it the encoder collapses):
0.609, 0.626, 0.647 after one to three (stopped). One-shot recognition with the semi-hard
encoder at the verification threshold (0.824): top-1 0.621, rejection of unknown 0.007.
None of the issue's bars (0.97, 0.95, 0.9 / 0.9) is met.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from cnnkit import optimizers
from cnnkit.face import PairSampler, PKSampler, build_encoder, build_siamese, evaluate
from cnnkit.face.database import FaceDatabase
from cnnkit.face.demo import FaceDemoConfig, face_sets, one_shot_recognition, train_encoder


def verification(encoder, test, config, seed):
    left, right, same, folds = evaluate.lfw_style_pairs(
        test.labels, folds=10, pairs_per_fold=config.pairs_per_fold, seed=seed
    )
    codes = FaceDatabase(encoder).encode(test.images)
    d = evaluate.pair_distances(codes[left], codes[right])
    return evaluate.verification_summary(d, same, folds=folds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", default="batch_hard,semi_hard,random,binary")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-norm", action="store_true", help="encoder with BatchNormalization")
    parser.add_argument("--euclidean", action="store_true", help="triplets on plain distances")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch")
    args = parser.parse_args()
    config = FaceDemoConfig.quick() if args.quick else FaceDemoConfig(pairs_per_fold=1000)
    if args.epochs:
        config = dataclasses.replace(config, epochs=args.epochs)
    if args.steps:
        config = dataclasses.replace(config, steps_per_epoch=args.steps)
    config = dataclasses.replace(config, batch_norm=args.batch_norm, squared=not args.euclidean)
    c, seed = config, args.seed
    train, test, known, unknown = face_sets(c, seed)
    x = train.images.astype(np.float32)
    print(
        f"batch_norm={c.batch_norm} squared={c.squared}; "
        f"{c.train_people} x {c.images_per_person} training images, {c.size}x{c.size}; "
        f"{c.epochs} epochs x {c.steps_per_epoch} steps of {c.p * c.k} images; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    left, right, same, folds = evaluate.lfw_style_pairs(
        test.labels, folds=10, pairs_per_fold=c.pairs_per_fold, seed=seed
    )
    pixels = evaluate.pair_distances(
        test.images[left].astype(np.float32), test.images[right].astype(np.float32)
    )
    base = evaluate.lfw_protocol(pixels, same, folds)
    print(f"raw pixels: 10-fold accuracy {base.mean:.4f} +- {base.std:.4f}")
    for run in args.runs.split(","):
        start, load = time.perf_counter(), os.getloadavg()[0]
        one_epoch = dataclasses.replace(c, epochs=1)
        if run == "binary":
            encoder = build_encoder((c.size, c.size, 3), seed=seed, batch_norm=c.batch_norm)
            model = build_siamese(encoder, "l1")
            model.compile(optimizers.Adam(c.learning_rate), "binary_crossentropy")
            pairs = PairSampler(x, train.labels, c.p * c.k, steps=c.steps_per_epoch, seed=seed)
        else:
            encoder = None
        trained = 0.0
        for epoch in range(c.epochs):
            tick = time.perf_counter()
            if run == "binary":
                model.fit(pairs, epochs=1, verbose=0)
            elif encoder is None:
                encoder = train_encoder(
                    x, train.labels, one_epoch, seed=seed, verbose=0, mining=run
                )
            else:
                encoder.fit(
                    PKSampler(
                        train.labels,
                        c.p,
                        c.k,
                        x=x,
                        seed=seed + epoch,
                        steps=c.steps_per_epoch,
                    ),
                    epochs=1,
                    verbose=0,
                )
            trained += time.perf_counter() - tick
            s = verification(encoder, test, c, seed)
            print(
                f"{run:>10} epoch {epoch + 1}: accuracy {s['accuracy']:.4f} +- "
                f"{s['accuracy_std']:.4f}, VAL@FAR={s['far']:.1e} {s['val']:.4f}, AUC "
                f"{s['auc']:.4f}; {trained:.0f} s of training (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        r = one_shot_recognition(
            encoder, (known.images, known.labels), (unknown.images, unknown.labels), s["threshold"]
        )
        print(
            f"{run:>10}: one-shot top-1 {r['top1']:.3f} (within tau {r['identified']:.3f}), "
            f"rejection {r['rejection']:.3f} at tau {s['threshold']:.3f}; "
            f"{time.perf_counter() - start:.0f} s in all (load at start {load:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
