"""Throughput of ``cnnkit.distributed.map_model`` on one machine, and Dask's cost per task.

Usage::

    python bench/dask_scaling.py [--images 256] [--repeats 3] [--json FILE]

Measured in one run, each cluster run alternating with ``model.predict`` in this process
(median of ``--repeats`` after a warm-up that loads the model on the workers), so that the
drifting load of a shared machine falls on both:

* ``map_model(method="predict")`` on a ``LocalCluster`` of 1 process worker (kernels at 1
  thread, and at all cores) and of 2 process workers (the cores shared), beside
  ``model.predict`` at 1 thread and at the same total threads. The images are a
  ``dask.array`` of 32-image chunks already held by the workers (persisted), as when Dask
  loads them there. Each configuration with Dask's default worker environment
  (``MALLOC_TRIM_THRESHOLD_=65536``) and, where it says so, without that variable;
* the cost of one task: a tiny model over many one-image chunks (scheduling, transfer,
  the model-cache lookup), beside a plain ``map_blocks`` over the same chunks (Dask
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


def timed(fns, repeats: int) -> list[float]:
    """Median seconds of each of ``fns``, timed in turn within each repeat: on a shared
    machine the load drifts, and alternating puts the same drift on each."""
    for fn in fns:
        fn()  # warm-up: model loading, first allocations
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


def local_predict(model, x, threads: int):
    def run():
        before = cnnkit.get_num_threads()
        cnnkit.set_num_threads(threads)
        try:
            model.predict(x, batch_size=32)
        finally:
            cnnkit.set_num_threads(before)

    return run


def cluster(n_workers: int, dask_malloc: bool):
    """A LocalCluster; ``dask_malloc=False`` starts its workers without Dask's default
    ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc hand every large buffer back to the
    system and fault it in again on the next allocation."""
    import dask
    from distributed import Client, LocalCluster

    unset = (
        {} if dask_malloc else {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    )
    with dask.config.set(unset):
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
    rows: list[tuple[str, float, float, float, int]] = []
    load = [os.getloadavg()[0]]

    tiny = cnnkit.Sequential([layers.Input((4, 4, 1)), layers.Flatten(), layers.Dense(1)], seed=0)
    small = np.zeros((args.tasks, 4, 4, 1), np.float32)
    overhead: dict[str, float] = {}
    # (workers, kernel threads per worker): None = map_model's default, cores / task slots
    runs = [(1, 1, True), (1, 1, False), (1, None, False), (2, None, True), (2, None, False)]
    for n_workers, threads, dask_malloc in runs:
        c, client = cluster(n_workers, dask_malloc)
        try:
            # the images already on the workers, as when Dask loads them there
            arr = client.persist(da.from_array(x, chunks=(32, 64, 64, 3)))
            job = map_model(model, arr, batch_size=32, client=client, threads_per_worker=threads)
            kernel = threads or max(1, cores // n_workers)
            t_cluster, t_one, t_same = timed(
                [
                    job.compute,
                    local_predict(model, x, 1),
                    local_predict(model, x, kernel * n_workers),
                ],
                args.repeats,
            )
            assert min(client.run(cnnkit.get_num_threads).values()) == kernel
            rows.append(
                (
                    f"{n_workers} worker(s) x {kernel} kernel thread(s)"
                    + (", Dask's MALLOC_TRIM_THRESHOLD_" if dask_malloc else ", glibc's malloc"),
                    args.images / t_cluster,
                    args.images / t_one,
                    args.images / t_same,
                    kernel * n_workers,
                )
            )
            if n_workers == 2 and not dask_malloc:
                one = da.from_array(small, chunks=(1, 4, 4, 1))
                cnn = map_model(tiny, one, batch_size=1, client=client)
                plain = one.map_blocks(
                    lambda b: b.sum(axis=(1, 2, 3))[:, None], drop_axis=[2, 3], chunks=(1, 1)
                )
                t_cnn, t_plain = timed([cnn.compute, plain.compute], args.repeats)
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
    print(
        "| LocalCluster, map_model | images/s | model.predict in one process, 1 thread | "
        "model.predict, same total threads |\n| --- | ---: | ---: | ---: |"
    )
    for name, cluster_rate, one, same, total in rows:
        print(f"| {name} | {cluster_rate:.0f} | {one:.0f} | {same:.0f} ({total} threads) |")
    print("| cost per task | ms |\n| --- | ---: |")
    for name, value in overhead.items():
        print(f"| {name} | {value:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"throughput": rows, "overhead_ms": overhead, "load": load}, f, indent=1)


if __name__ == "__main__":
    main()
