# How tests/data/legacy_model_v1.cnnkit was made (run once, on main before the restructure).
import numpy as np

import cnnkit
from cnnkit import initializers, layers, losses, optimizers, schedules

layers.reset_names()
model = cnnkit.Sequential(
    [
        layers.Input((8, 8, 2)),
        layers.Conv2D(4, 3, padding="same", kernel_initializer=initializers.HeNormal(seed=1)),
        layers.BatchNormalization(),
        layers.ReLU(max_value=6.0),
        layers.MaxPooling2D(2),
        layers.Conv2D(4, 3, activation="relu", kernel_initializer="glorot_normal"),
        layers.AveragePooling2D(1),
        layers.LeakyReLU(0.1),
        layers.Dropout(0.25, seed=3),
        layers.Flatten(),
        layers.Dense(5, bias_initializer=initializers.Constant(0.1)),
        layers.Activation("softmax"),
    ],
    seed=0,
)
sched = schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.9)
model.compile(
    optimizer=optimizers.Adam(learning_rate=sched),
    loss=losses.CategoricalCrossentropy(label_smoothing=0.1),
    metrics=["accuracy", "mae"],
)
rng = np.random.default_rng(0)
x = rng.normal(size=(16, 8, 8, 2)).astype(np.float32)
y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 16)]
model.fit(x, y, batch_size=8, epochs=2, verbose=0)
model.save("tests/data/legacy_model_v1.cnnkit")
np.savez(
    "tests/data/legacy_model_v1_expected.npz",
    x=x,
    y=y,
    predictions=model.predict(x),
    evaluation=np.asarray(model.evaluate(x, y)),
    iterations=np.asarray(model.optimizer.iterations),
)
print(model.evaluate(x, y), model.optimizer.iterations)
