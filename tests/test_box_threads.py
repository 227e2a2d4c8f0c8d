"""Threads: results do not depend on the thread count, and concurrent calls from
several Python threads give the same answers as serial calls."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnkit
from cnnkit import ops
from cnnkit import reference as ref

THREAD_COUNTS = (1, 2, 3)
IOU_FAMILY = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
FLOAT_DTYPES = (np.float32, np.float64)


def random_boxes(rng, n, *, extent=1000.0, sizes=(2.0, 80.0), dtype=np.float32):
    """n xyxy boxes; about one in ten has zero width or zero height."""
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(*sizes, (n, 2)) * (rng.random((n, 2)) > 0.05)
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


def for_each_thread_count(compute):
    """compute() run with 1, 2 and 3 threads."""
    results = []
    for n in THREAD_COUNTS:
        cnnkit.set_num_threads(n)
        assert cnnkit.get_num_threads() == n
        results.append(compute())
    return results


def assert_bit_identical(a, b):
    assert (a.dtype, a.shape) == (b.dtype, b.shape)
    assert a.tobytes() == b.tobytes()


def assert_all_bit_identical(results):
    for other in results[1:]:
        if isinstance(other, tuple):
            for x, y in zip(results[0], other):
                assert_bit_identical(x, y)
        else:
            assert_bit_identical(results[0], other)


def test_set_num_threads_round_trips(restore_threads):
    assert restore_threads >= 1
    for n in (1, 3, 2):
        cnnkit.set_num_threads(n)
        assert cnnkit.get_num_threads() == n


@pytest.mark.parametrize("omp", ["1", "3"])
def test_num_threads_starts_at_omp_num_threads(omp):
    env = {**os.environ, "OMP_NUM_THREADS": omp}
    code = "import cnnkit; print(cnnkit.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == omp


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", IOU_FAMILY)
def test_pairwise_iou_family_does_not_depend_on_thread_count(restore_threads, name, dtype):
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 700, dtype=dtype), random_boxes(rng, 900, dtype=dtype)
    results = for_each_thread_count(lambda: getattr(ops, name)(a, b))
    assert_all_bit_identical(results)
    sample = slice(0, 700, 97)  # rows spread over the threads' blocks
    want = getattr(ref, name)(a[sample], b)
    np.testing.assert_allclose(results[0][sample], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", IOU_FAMILY)
def test_aligned_iou_family_does_not_depend_on_thread_count(restore_threads, name, dtype):
    rng = np.random.default_rng(2)
    n = 110_000  # enough for three threads of 4096-box blocks
    a = random_boxes(rng, n, extent=200, dtype=dtype)
    b = random_boxes(rng, n, extent=200, dtype=dtype)
    results = for_each_thread_count(lambda: getattr(ops, name)(a, b, aligned=True))
    assert_all_bit_identical(results)
    np.testing.assert_allclose(
        results[0], getattr(ref, name)(a, b, aligned=True), rtol=1e-6, atol=1e-6
    )


def many_class_detections(seed, n=9000, classes=60):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n, extent=400, sizes=(5.0, 60.0))
    scores = np.round(rng.random(n) * 50).astype(np.float32) / 50  # many ties
    return boxes, scores, rng.integers(0, classes, n)


def test_batched_nms_does_not_depend_on_thread_count(restore_threads):
    boxes, scores, classes = many_class_detections(3)  # enough boxes for three threads
    for kw in ({}, {"max_output": 500}, {"score_threshold": 0.5}):
        results = for_each_thread_count(
            lambda kw=kw: ops.batched_nms(boxes, scores, classes, 0.5, **kw)
        )
        assert_all_bit_identical(results)
        want = ref.batched_nms(boxes, scores, classes, 0.5, **kw)
        np.testing.assert_array_equal(results[0], want, strict=True)


def test_nms_and_soft_nms_do_not_depend_on_thread_count(restore_threads):
    rng = np.random.default_rng(4)
    boxes = random_boxes(rng, 3000, extent=500)
    scores = rng.random(3000).astype(np.float32)
    assert_all_bit_identical(for_each_thread_count(lambda: ops.nms(boxes, scores, 0.5)))
    assert_all_bit_identical(for_each_thread_count(lambda: ops.soft_nms(boxes, scores)))


# --- concurrent calls ---------------------------------------------------------------------


def make_tasks(count):
    """(function, args) pairs of different kinds and inputs."""
    rng = np.random.default_rng(5)
    tasks = []
    for k in range(count):
        kind = k % 5
        if kind == 0:
            a, b = random_boxes(rng, 300), random_boxes(rng, 310, dtype=np.float64)
            tasks.append((ops.box_iou, (a, b)))
        elif kind == 1:
            a, b = random_boxes(rng, 200), random_boxes(rng, 200)
            tasks.append((ops.complete_box_iou, (a, b)))
        elif kind == 2:
            boxes = random_boxes(rng, 1500, extent=300)
            tasks.append((ops.nms, (boxes, rng.random(1500).astype(np.float32), 0.5)))
        elif kind == 3:
            boxes, scores, classes = many_class_detections(100 + k, n=5000, classes=20)
            tasks.append((ops.batched_nms, (boxes, scores, classes, 0.4)))
        else:
            boxes = random_boxes(rng, 400, extent=200)
            tasks.append((ops.soft_nms, (boxes, rng.random(400))))
    return tasks


def run(task):
    fn, args = task
    return fn(*args)


def assert_all_bit_identical_pairs(results, expected):
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert_all_bit_identical([want, got])


@pytest.mark.parametrize("change_thread_count", [False, True], ids=["fixed", "changing"])
def test_concurrent_calls_match_serial_calls(restore_threads, change_thread_count):
    tasks = make_tasks(120)
    expected = [run(t) for t in tasks]
    stop = threading.Event()

    def keep_changing_thread_count():
        k = 0
        while not stop.is_set():
            cnnkit.set_num_threads(THREAD_COUNTS[k % 3])
            k += 1
            stop.wait(0.001)

    changer = threading.Thread(target=keep_changing_thread_count)
    if change_thread_count:
        changer.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(run, tasks + tasks[::-1]))
    finally:
        stop.set()
        if change_thread_count:
            changer.join()
    assert_all_bit_identical_pairs(results, expected + expected[::-1])
