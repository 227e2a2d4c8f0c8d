"""Transfer learning, the course's three regimes, from a network that travelled through ONNX.

1. Pretraining on a larger related task: a small CNN (three conv-BN-ReLU-pool blocks)
   learns 12 classes -- which shape (circle, square, triangle) and in which quadrant of
   the image -- from a few thousand procedural images.
2. The trained network is exported with ``cnnkit.onnx.save_model`` and imported back with
   ``cnnkit.onnx.load_model``, as a network downloaded from elsewhere would be; the
   imported copy gives the same outputs.
3. The new task has few images: 6 classes, which shape and whether it is small or large,
   ``--per-class`` training images each (10 by default). It is learnt four ways, each
   scored on the same 900 held-out images:

   * random initialisation: the whole network trained from scratch on the few images;
   * regime 1 -- cached features: the imported network without its head
     (``transfer.without_head``) runs once over the images (``transfer.extract_features``
     writes a memory-mapped .npy), and a new softmax layer trains on the vectors;
   * regime 2 -- the first two blocks frozen (``transfer.freeze``), the last block and a
     new head trained;
   * regime 3 -- everything fine-tuned from the pretrained weights at a tenth of the
     learning rate.

Measured (defaults, seed 0, on a 2-core Xeon shared with other jobs at load average 24,
so the seconds are several times an idle machine's; the whole run took 449 s of wall
time): pretraining accuracy 0.93 (233 s); the imported network's outputs equal the
original's exactly; on the new task (60 training images, 900 held out) random
initialisation 0.48 (65 s), cached features + softmax 0.75 (9 s), first blocks frozen
0.70 (32 s), fine-tuning everything 0.56 (63 s). With ten images per class the course's
advice holds: the fewer the images, the more of the pretrained network to keep frozen;
the cached features are also the fastest by far.

    python examples/transfer.py [--pretrain 3000] [--pretrain-epochs 3] [--per-class 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import cnnkit
import cnnkit.onnx
from cnnkit import datasets, layers, transfer

CLASSES = 6  # the new task's


def quadrant_labels(data: datasets.SingleObjectData) -> np.ndarray:
    """12 classes: shape (3) x quadrant of the object's centre (4)."""
    shape = data.y[:, 5:].argmax(1)
    quadrant = (data.y[:, 1] >= 0.5).astype(int) + 2 * (data.y[:, 2] >= 0.5).astype(int)
    return shape * 4 + quadrant


def size_labels(data: datasets.SingleObjectData) -> np.ndarray:
    """6 classes: shape (3) x size, small or large (the box area below or above 15% of the
    image, about the median of the generator's log-uniform sides)."""
    shape = data.y[:, 5:].argmax(1)
    large = (data.y[:, 3] * data.y[:, 4] > 0.15).astype(int)
    return shape * 2 + large


def balanced(labels: np.ndarray, per_class: int, classes: int, rng: np.random.Generator):
    """Indices of ``per_class`` samples of each class (fewer if a class has fewer)."""
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(classes)]
    return rng.permutation(np.concatenate(picks))


def build_network(image_size: int, classes: int, width: int, seed: int) -> cnnkit.Sequential:
    stack: list = [layers.Input((image_size, image_size, 3))]
    for i, filters in enumerate((width, 2 * width, 4 * width), start=1):
        stack += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv"),
            layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn"),
            layers.ReLU(name=f"block{i}_relu"),
            layers.MaxPooling2D(name=f"block{i}_pool"),
        ]
    stack += [
        layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(classes, name="classifier"),
        layers.Softmax(name="probabilities"),
    ]
    return cnnkit.Sequential(stack, seed=seed)


def _fit(model, x, y, lr, epochs, batch_size, seed):
    model.compile(cnnkit.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return time.perf_counter() - start


def _new_head(base: cnnkit.Model, classes: int, seed: int) -> cnnkit.Model:
    inputs = layers.Input(base.input_shape[1:])
    outputs = layers.Dense(classes, activation="softmax", name="new_head")(base(inputs))
    return cnnkit.Model(inputs, outputs, seed=seed)


def run(
    pretrain: int = 3000,
    pretrain_epochs: int = 3,
    per_class: int = 10,
    epochs: int = 20,
    test: int = 900,
    image_size: int = 32,
    width: int = 16,
    seed: int = 0,
    workdir: str | None = None,
) -> dict:
    """Pretrain, export and import through ONNX, then the four ways on the new task."""
    rng = np.random.default_rng(seed)
    own_dir = workdir is None
    folder = tempfile.mkdtemp(prefix="cnnkit-transfer-") if own_dir else workdir
    results: dict = {"regimes": {}}
    assert folder is not None

    # 1. the larger related task
    source = datasets.single_object(pretrain, image_size=image_size, p_object=1.0, seed=seed)
    pretrained = build_network(image_size, 12, width, seed)
    results["pretrain_seconds"] = _fit(
        pretrained, source.images, quadrant_labels(source), 3e-3, pretrain_epochs, 32, seed
    )
    check = datasets.single_object(500, image_size=image_size, p_object=1.0, seed=seed + 7)
    results["pretrain_accuracy"] = pretrained.evaluate(
        check.images, quadrant_labels(check), verbose=0
    )[1]

    # 2. through ONNX and back, as a downloaded network
    path = os.path.join(folder, "pretrained.onnx")
    cnnkit.onnx.save_model(pretrained, path, layout="NCHW")
    imported = cnnkit.onnx.load_model(path, input_layout="NHWC")
    probe = check.images[:64]
    results["onnx_max_difference"] = float(
        np.abs(imported.predict(probe, verbose=0) - pretrained.predict(probe, verbose=0)).max()
    )
    results["onnx_bytes"] = os.path.getsize(path)

    # 3. the new task with few images per class, and its held-out set
    pool = datasets.single_object(
        40 * per_class * CLASSES, image_size=image_size, p_object=1.0, seed=seed + 1
    )
    labels = size_labels(pool)
    picked = balanced(labels, per_class, CLASSES, rng)
    x, y = pool.images[picked], labels[picked]
    held = datasets.single_object(test, image_size=image_size, p_object=1.0, seed=seed + 2)
    x_test, y_test = held.images, size_labels(held)
    results["train_images"] = len(x)

    def score(name, model, seconds):
        accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
        results["regimes"][name] = {"accuracy": float(accuracy), "seconds": seconds}

    # random initialisation
    scratch = build_network(image_size, CLASSES, width, seed + 3)
    score("random init", scratch, _fit(scratch, x, y, 3e-3, epochs, 16, seed))

    # regime 1: cached features and a new softmax head
    start = time.perf_counter()
    base = transfer.without_head(imported)
    feats = transfer.extract_features(
        base, x, path=os.path.join(folder, "train_features.npy"), batch_size=64, progress=False
    )
    test_feats = transfer.extract_features(
        base, x_test, path=os.path.join(folder, "test_features.npy"), progress=False
    )
    head = cnnkit.Sequential(
        [layers.Input(feats.shape[1:]), layers.Dense(CLASSES, activation="softmax")], seed=seed
    )
    head.compile(cnnkit.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    head.fit(np.asarray(feats), y, epochs=200, batch_size=32, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = head.evaluate(np.asarray(test_feats), y_test, verbose=0)[1]
    results["regimes"]["1: cached features + softmax"] = {
        "accuracy": float(accuracy),
        "seconds": seconds,
    }
    results["feature_shape"] = feats.shape

    # regime 2: the first two blocks frozen, the last block and a new head trained
    frozen_copy = cnnkit.onnx.load_model(path, input_layout="NHWC")
    base = transfer.without_head(frozen_copy)
    model = _new_head(base, CLASSES, seed)
    transfer.freeze(base, "block2_pool")
    results["frozen_layers"] = [x.name for x in base.layers if not x.trainable]
    score("2: first blocks frozen", model, _fit(model, x, y, 3e-3, epochs, 16, seed))

    # regime 3: fine-tune everything from the pretrained weights at a lower rate
    tuned_copy = cnnkit.onnx.load_model(path, input_layout="NHWC")
    model = _new_head(transfer.without_head(tuned_copy), CLASSES, seed)
    score("3: fine-tune all", model, _fit(model, x, y, 3e-4, epochs, 16, seed))

    if own_dir:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain", type=int, default=3000)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    r = run(args.pretrain, args.pretrain_epochs, args.per_class, args.epochs, seed=args.seed)
    print(
        f"pretraining (12 classes, {args.pretrain} images, {args.pretrain_epochs} epochs): "
        f"accuracy {r['pretrain_accuracy']:.3f} in {r['pretrain_seconds']:.0f} s"
    )
    print(
        f"ONNX file {r['onnx_bytes'] / 1024:.0f} KiB; imported network's largest output "
        f"difference {r['onnx_max_difference']:.1e}"
    )
    print(f"new task: {CLASSES} classes, {r['train_images']} training images")
    for name, v in r["regimes"].items():
        print(f"  {name:32s} accuracy {v['accuracy']:.3f}   {v['seconds']:6.1f} s")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
