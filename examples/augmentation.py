"""What augmentation, ensembles and ten-crop testing buy on a small data set, measured.

The course's claims, checked on scikit-learn's handwritten digits (8 x 8, upscaled to
32 x 32) with a deliberately small training set and a held-out test set:

1. a small CNN trained with distortions (random crops, rotations, shears, brightness)
   against the same CNN trained without them: held-out accuracy both ways;
2. an ensemble of 3 such networks (seeds 1, 2, 3) against each member;
3. ten-crop testing (28 x 28 crops and their mirrors, averaged) against the single
   centre crop. Digits are not mirror-symmetric, so the mirrored crops are a fair
   test of whether the course's ImageNet recipe transfers; we report it as it comes;
4. the background loader: one epoch's augmentation alone, training alone on
   pre-distorted arrays, and ``fit`` on the loader with 0 and 1 worker threads.

    python examples/augmentation.py [--train 400] [--epochs 30]

Needs scikit-learn (the ``test`` extra). Numbers vary with the machine's load only in
the timings: every result is seeded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cnnkit
import cnnkit.augment as A
from cnnkit import image, layers, losses
from cnnkit.data import Loader

SIDE, CROP = 32, 28


def digits(train: int, seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = image.resize((d.images / 16.0).astype(np.float32)[..., None], (SIDE, SIDE))
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:train], order[train:]
    return x[tr], d.target[tr], x[te], d.target[te]


def model(seed: int) -> cnnkit.Sequential:
    m = cnnkit.Sequential(
        [
            layers.Input((CROP, CROP, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(10),
        ],
        seed=seed,
    )
    m.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m


def distortions() -> A.Compose:
    return A.Compose(
        [
            A.Affine(scale=(0.9, 1.1), rotate=12, shear=(-10, 10), p=0.8),
            A.RandomCrop(CROP, CROP),
            A.RandomBrightnessContrast(0.1, 0.2, p=0.5),
        ]
    )


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    x, y, x_test, y_test = digits(args.train)
    centre = A.CenterCrop(CROP, CROP)
    x_centre = centre(image=x)["image"]
    x_test_centre = centre(image=x_test)["image"]
    print(f"digits: {len(x)} training and {len(x_test)} held-out images, {SIDE}x{SIDE}")

    plain = model(1)
    plain.fit(x_centre, y, batch_size=32, epochs=args.epochs, verbose=0)
    acc_plain = accuracy(plain.predict(x_test_centre), y_test)

    members = []
    for seed in (1, 2, 3):
        m = model(seed)
        m.fit(
            Loader(x, y, batch_size=32, transform=distortions(), seed=seed, workers=1),
            epochs=args.epochs,
            verbose=0,
        )
        members.append(m)
    accs = [accuracy(m.predict(x_test_centre), y_test) for m in members]
    print(f"1. without augmentation: {acc_plain:.4f}; with: {accs[0]:.4f} (same seed)")
    ensemble = A.Ensemble(members, from_logits=True)
    acc_ens = accuracy(ensemble.predict(x_test_centre), y_test)
    print(f"2. members {', '.join(f'{a:.4f}' for a in accs)}; ensemble of 3: {acc_ens:.4f}")
    ten = A.predict_tta(members[0], x_test, crops="ten", size=CROP, from_logits=True)
    five = A.predict_tta(members[0], x_test, crops="five", size=CROP, from_logits=True)
    print(
        f"3. centre crop {accs[0]:.4f}; five crops {accuracy(five, y_test):.4f}; "
        f"ten crops (with mirrors) {accuracy(ten, y_test):.4f}"
    )

    loader = Loader(x, y, batch_size=32, transform=distortions(), seed=9, workers=0)
    start = time.perf_counter()
    batches = list(loader)
    t_aug = time.perf_counter() - start
    xs, ys = np.concatenate([b for b, _ in batches]), np.concatenate([t for _, t in batches])
    m = model(5)
    start = time.perf_counter()
    m.fit(xs, ys, batch_size=32, epochs=1, shuffle=False, verbose=0)
    t_train = time.perf_counter() - start
    timings = {}
    for workers in (0, 1):
        m = model(5)
        loader = Loader(x, y, batch_size=32, transform=distortions(), seed=9, workers=workers)
        start = time.perf_counter()
        m.fit(loader, epochs=1, verbose=0)
        timings[workers] = time.perf_counter() - start
    print(
        f"4. one epoch: augmentation alone {t_aug:.3f} s, training alone {t_train:.3f} s; "
        f"fit on the loader with 0 workers {timings[0]:.3f} s, with 1 worker {timings[1]:.3f} s"
    )


if __name__ == "__main__":
    main()
