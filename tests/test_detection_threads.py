"""Concurrent calls of the detection kernels from Python threads (the GIL is released
while they compute) give the results of serial calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cnnkit import ops


def make_tasks(count: int):
    rng = np.random.default_rng(9)
    anchors = rng.uniform(10, 200, (5, 2))
    tasks = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            boxes, classes = [], []
            for _ in range(16):
                c, s = rng.uniform(0, 416, (25, 2)), rng.uniform(4, 200, (25, 2))
                boxes.append(np.concatenate([c - s / 2, c + s / 2], axis=1))
                classes.append(rng.integers(0, 20, 25))
            kwargs = {"grid": 13, "anchors": anchors, "num_classes": 20, "image_size": 416}
            tasks.append(lambda b=boxes, c=classes, kw=kwargs: ops.yolo_encode_batch(b, c, **kw))
        elif kind == 1:
            y = rng.random((8, 13, 13, 5, 25))
            tasks.append(lambda y=y: ops.yolo_decode(y, anchors=anchors, image_size=416))
        elif kind == 2:
            wh = np.exp(rng.normal(3, 1, (3000, 2)))
            tasks.append(lambda wh=wh, s=k: ops.kmeans_anchors(wh, 6, seed=s))
        else:
            images = rng.random((2, 64, 48, 3)).astype(np.float32)
            tasks.append(lambda x=images: ops.sliding_windows(x, (16, 12), 4))
    return tasks


def flatten(result) -> list[np.ndarray]:
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in flatten(r)]
    return [np.asarray(result)]


def test_concurrent_calls_match_serial_calls():
    tasks = make_tasks(48)
    expected = [flatten(t()) for t in tasks]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda t: flatten(t()), tasks + tasks[::-1]))
    for got, want in zip(results, expected + expected[::-1]):
        assert len(got) == len(want)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
