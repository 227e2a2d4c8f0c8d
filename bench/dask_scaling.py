"""Throughput of ``cnnkit.distributed.map_model`` on one machine, and Dask's cost per task.

Usage::

    python bench/dask_scaling.py [--images 256] [--repeats 3] [--json FILE]

Measured in one run, side by side (median of ``--repeats`` after a warm-up that loads the
model on the workers):

* ``model.predict`` in this process, at 1 thread and at all cores (the baseline);
* ``map_model(method="predict")`` on a ``LocalCluster`` of 1 process worker (all cores for
  its kernels, and at 1 thread) and of 2 process workers (the cores shared); the images
  are a ``dask.array`` of 32-image chunks already held by the workers (persisted), as
  when Dask loads them there;
* the cost of one task: a tiny model over many one-image chunks (scheduling, transfer,
  the model-cache lookup), beside a plain ``map_blocks`` identity over the same chunks (Dask
  alone), with 2 workers. Chunks should hold enough images that this cost is small against
  their compute time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import time

import numpy as np

import cnnkit
from cnnkit import layers
from cnnkit.distributed import map_model


def classifier(size: int = 64) -> cnnkit.Sequential:
    """A small VGG-style classifier: three 3x3 conv blocks, global pooling, a dense head."""
    return cnnkit.Sequential(
        [
            layers.Input((size, size, 3)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10),
        ],
        seed=0,
    )


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: model loading, first allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cluster(n_workers: int):
    from distributed import Client, LocalCluster

    c = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    return c, Client(c)


def main() -> None:
    import dask.array as da

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=200, help="one-image tasks for the overhead")
    parser.add_argument("--json", help="write the numbers here too")
    args = parser.parse_args()

    model = classifier()
    x = np.random.default_rng(0).random((args.images, 64, 64, 3)).astype(np.float32)
    cores = len(os.sched_getaffinity(0))
    rows: dict[str, float] = {}
    load = [os.getloadavg()[0]]

    before = cnnkit.get_num_threads()
    for threads in sorted({1, cores}):
        cnnkit.set_num_threads(threads)
        t = timed(lambda: model.predict(x, batch_size=32), args.repeats)
        rows[f"model.predict, one process, {threads} thread(s)"] = args.images / t
    cnnkit.set_num_threads(before)

    tiny = cnnkit.Sequential([layers.Input((4, 4, 1)), layers.Flatten(), layers.Dense(1)], seed=0)
    small = np.zeros((args.tasks, 4, 4, 1), np.float32)
    overhead: dict[str, float] = {}
    # (workers, kernel threads per worker): None = map_model's default, cores / task slots
    for n_workers, threads in ((1, 1), (1, None), (2, None)):
        c, client = cluster(n_workers)
        try:
            # the images already on the workers, as when Dask loads them there
            arr = client.persist(da.from_array(x, chunks=(32, 64, 64, 3)))
            job = map_model(model, arr, batch_size=32, client=client, threads_per_worker=threads)
            t = timed(lambda job=job: job.compute(), args.repeats)
            kernel = min(client.run(cnnkit.get_num_threads).values())
            name = f"map_model, LocalCluster {n_workers} worker(s) x {kernel} thread(s)"
            rows[name] = args.images / t
            if n_workers == 2:
                one = da.from_array(small, chunks=(1, 4, 4, 1))
                cnn = map_model(tiny, one, batch_size=1, client=client)
                t_cnn = timed(lambda cnn=cnn: cnn.compute(), args.repeats)
                plain = one.map_blocks(
                    lambda b: b.sum(axis=(1, 2, 3))[:, None], drop_axis=[2, 3], chunks=(1, 1)
                )
                t_plain = timed(lambda plain=plain: plain.compute(), args.repeats)
                overhead["map_model, one-image tasks (wall ms per task, 2 workers)"] = (
                    1e3 * t_cnn / args.tasks
                )
                overhead["plain dask map_blocks (wall ms per task, 2 workers)"] = (
                    1e3 * t_plain / args.tasks
                )
        finally:
            client.close()
            c.close()
    load.append(os.getloadavg()[0])

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?"
    )
    import dask

    print(f"CPU: {model_name}, {cores} cores; load average {load[0]:.2f} -> {load[1]:.2f}")
    print(
        f"cnnkit {cnnkit.__version__}, dask {dask.__version__}, Python {platform.python_version()}"
    )
    print(f"{args.images} images 64x64x3, 3 conv blocks, batch 32, median of {args.repeats}")
    print("| run | images/s |\n| --- | ---: |")
    for name, value in rows.items():
        print(f"| {name} | {value:.0f} |")
    print("| cost per task | ms |\n| --- | ---: |")
    for name, value in overhead.items():
        print(f"| {name} | {value:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"throughput": rows, "overhead_ms": overhead, "load": load}, f, indent=1)


if __name__ == "__main__":
    main()
