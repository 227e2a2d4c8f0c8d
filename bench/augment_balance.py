"""How evenly RandomResizedCrop's batch call shares its work between two threads, measured at
one thread (shared machine).

Each image's window is resampled 16 times in one call of the fused kernel
(``resized_crops_fixed3``, one thread), which gives its cost in thread CPU time; the two
threads' loads follow for a split of the images in halves (the banded kernel's static
split, ``resample_linear_fixed3``) and for the kernel's split of the output rows by
``_fixed3_cost``. The fit of the per-image times against the input rows read gives that
cost's weights (a vertical pass per output row, a horizontal pass per input row)::

    python bench/augment_balance.py [--batch N] [--seed S]

``max/mean`` of the loads bounds a static split's two-thread speed-up at ``2 / (max/mean)``;
the kernel starts from the split by cost and evens out what remains (a thread that ends its
share takes rows from the far end of the other's). Give ``uptime`` with the numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from cases.augment import crops

    import cnnkit
    import cnnkit.augment as A
    from cnnkit import _augment, image
    from cnnkit.augment.transforms import _batch_states

    if not image._fixed_linear(np.zeros((1, 1, 1, 3), np.uint8)):
        sys.exit("the fused kernel runs on the avx512 path only")
    cnnkit.set_num_threads(1)
    x = crops()[0]
    x = np.concatenate([x] * max(1, args.batch // len(x)))
    n, size, reps = len(x), 224, 16
    t = A.RandomResizedCrop(size)
    fused = image.augment_loops("avx512").resized_crops_fixed3
    scratch = np.empty((1, _augment.fixed3_scratch_size(size)), np.int32)
    states = _batch_states(args.seed, n)
    windows = np.empty((n, 4), np.int64)
    out = np.empty((n, size, size, 3), np.uint8)
    fused(states.copy(), 1.0, *t._draw_args, x, out, windows, scratch, 1)
    out, one = out[:reps], np.empty((reps, 4), np.int64)
    per = np.empty(n)
    for i in range(n):
        # image i's generator repeated: its window, reps times in one call
        xi = np.ascontiguousarray(np.broadcast_to(x[i], (reps, *x.shape[1:])))
        si = np.ascontiguousarray(np.broadcast_to(states[i], (reps, 6)))
        best = []
        for _ in range(15):
            s = si.copy()
            start = time.thread_time_ns()
            fused(s, 1.0, *t._draw_args, xi, out, one, scratch, 1)
            best.append(time.thread_time_ns() - start)
        per[i] = min(best) / reps / 1e3
    read = np.minimum(windows[:, 2] + 1, 2 * size)
    slope, intercept = np.polyfit(read, per, 1)
    print(
        f"N={n} seed {args.seed}: per-image us {per.min():.1f}-{per.max():.1f}, "
        f"sum {per.sum():.0f}; "
        f"fit {intercept:.1f} + {slope:.4f} x rows read: per output row {intercept / size:.4f}, "
        f"per input row {slope:.4f}"
    )
    halves = np.array([per[: n // 2].sum(), per[n // 2 :].sum()])
    # the kernel's split (_fixed3_split with its unit weights)
    cost = size + read
    total, acc = cost.sum(), np.concatenate([[0], np.cumsum(cost)])
    k = int(np.searchsorted(acc, total / 2, side="right") - 1)
    part = int((total / 2 - acc[k]) / cost[k] * size) / size
    rows = np.array([per[:k].sum() + part * per[k], per[k + 1 :].sum() + (1 - part) * per[k]])
    for name, loads in (("images in halves", halves), ("rows by cost", rows)):
        ratio = loads.max() / loads.mean()
        print(
            f"  {name:16s}: thread loads {loads[0]:6.0f} / {loads[1]:6.0f} us, max/mean "
            f"{ratio:.3f} -> kernel 2-thread bound {2 / ratio:.2f}"
        )


if __name__ == "__main__":
    main()
