"""Transfer learning and fine-tuning, after the Keras guide of that name, on procedural data.

1. A base network (convolutions with BatchNormalization) is trained on one task: which
   shape (circle, square, triangle) an image holds.
2. The base is frozen (``base.trainable = False``) and a new head is trained on a second
   task from other images: whether the object is large (its box area above the median).
   The base is called as ``base(inputs, training=False)``.
3. The base is unfrozen and the whole model fine-tuned at a low learning rate.

The guide's BatchNormalization detail: because the base was called with
``training=False``, its BatchNormalization layers stay in inference mode in step 3 even
though they are trainable again -- they keep the moving statistics learnt in step 1
instead of switching to the new task's batch statistics, which would change every
feature the head was trained on and make the loss jump. The script prints the loss at
the end of step 2 and during the first fine-tuning epoch to show it does not.

    python examples/transfer_finetune.py [--train 3000] [--epochs 4]
"""

from __future__ import annotations

import argparse

import numpy as np

import cnnkit
from cnnkit import datasets, layers


def build_base(image_size: int, seed: int, width: int = 16) -> cnnkit.Model:
    inputs = layers.Input((image_size, image_size, 3))
    x = inputs
    for i, filters in enumerate((width, 2 * width)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"base_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"base_bn{i}")(x)
        x = layers.ReLU(name=f"base_relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"base_pool{i}")(x)
    features = layers.GlobalAveragePooling2D(name="base_gap")(x)
    return cnnkit.Model(inputs, features, name="base", seed=seed)


def size_labels(data: datasets.SingleObjectData, threshold: float | None = None) -> tuple:
    area = data.y[:, 3] * data.y[:, 4]
    threshold = float(np.median(area)) if threshold is None else threshold
    return (area > threshold).astype(np.int64), threshold


def run(train: int, epochs: int, image_size: int = 24, seed: int = 0) -> dict:
    """The three steps; returns the numbers the script prints (and the models)."""
    loss = cnnkit.losses.SparseCategoricalCrossentropy(from_logits=True)
    shapes_data = datasets.single_object(train, image_size=image_size, p_object=1.0, seed=seed)

    # 1. the base, trained on the shape task with a throw-away head
    base = build_base(image_size, seed)
    inputs = layers.Input((image_size, image_size, 3))
    pretrain = cnnkit.Model(inputs, layers.Dense(3)(base(inputs)), seed=seed)
    pretrain.compile(cnnkit.optimizers.Adam(3e-3), loss, metrics=["accuracy"])
    pretrain.fit(shapes_data.images, shapes_data.y[:, 5:].argmax(1), epochs=epochs, verbose=0)

    # 2. frozen base, new head on the size task
    new = datasets.single_object(train, image_size=image_size, p_object=1.0, seed=seed + 1)
    held = datasets.single_object(train // 4, image_size=image_size, p_object=1.0, seed=seed + 2)
    y_new, threshold = size_labels(new)
    y_held, _ = size_labels(held, threshold)
    base.trainable = False
    inputs = layers.Input((image_size, image_size, 3))
    x = base(inputs, training=False)  # BatchNormalization stays in inference mode
    x = layers.Dropout(0.2, seed=seed)(x)
    outputs = layers.Dense(2, name="head")(x)
    model = cnnkit.Model(inputs, outputs, name="transfer", seed=seed)
    model.compile(cnnkit.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
    model.fit(new.images, y_new, epochs=2 * epochs, verbose=0)
    head_loss, head_accuracy = model.evaluate(held.images, y_held, verbose=0)
    end_of_head_loss = model.evaluate(new.images, y_new, verbose=0)[0]

    # 3. unfreeze and fine-tune end to end at a low learning rate
    moving_mean = base.get_layer("base_bn0").moving_mean.data.copy()
    base.trainable = True
    model.compile(cnnkit.optimizers.Adam(1e-4), loss, metrics=["accuracy"])
    history = model.fit(new.images, y_new, epochs=epochs, verbose=0)
    tuned_loss, tuned_accuracy = model.evaluate(held.images, y_held, verbose=0)
    return {
        "model": model,
        "base": base,
        "head_accuracy": head_accuracy,
        "end_of_head_loss": end_of_head_loss,
        "first_finetune_loss": history.history["loss"][0],
        "finetune_losses": history.history["loss"],
        "tuned_accuracy": tuned_accuracy,
        "bn_moving_mean_unchanged": bool(
            np.array_equal(moving_mean, base.get_layer("base_bn0").moving_mean.data)
        ),
        "head_loss": head_loss,
        "tuned_loss": tuned_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = run(args.train, args.epochs, seed=args.seed)
    r["model"].summary()
    print(f"frozen base, new head: held-out accuracy {r['head_accuracy']:.3f}")
    jumped = r["first_finetune_loss"] > 1.15 * r["end_of_head_loss"] + 0.02
    print(
        f"training loss at the end of the head phase {r['end_of_head_loss']:.4f}, "
        f"first fine-tuning epoch {r['first_finetune_loss']:.4f} "
        f"({'jumped' if jumped else 'no jump'})"
    )
    print(f"after fine-tuning: held-out accuracy {r['tuned_accuracy']:.3f}")
    print(f"BatchNormalization moving statistics unchanged: {r['bn_moving_mean_unchanged']}")


if __name__ == "__main__":
    main()
