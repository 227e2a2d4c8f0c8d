"""Two-thread scaling of cnnkit's batch transforms, measured by CPU time (shared machine).

Wall-clock speed-ups on a loaded 2-core machine measure whether a second core happened to
be free. This script alternates 1-thread and 2-thread calls of the cases of
``bench/cases/augment.py`` and records, per call, the wall time, the process CPU time and
the calling thread's CPU time. At 2 threads the calling thread runs the serial Python
part ``S`` plus its half of the native kernel ``K``, the worker the other half, so::

    S = 2 * thread_cpu - process_cpu,   K = process_cpu - S,
    predicted speed-up with two free cores = (S + K) / (S + K / 2)

(``K`` includes the parallel overhead: process CPU at 2 threads against 1 thread shows
it.) Run::

    python bench/augment_scaling.py [REGEX] [REPEATS]

and give ``uptime`` with the numbers; the best wall-clock ratio is printed too. Set
``OMP_WAIT_POLICY=passive``: otherwise the idle worker's spinning (GOMP's default) counts as
process CPU time, and on a busy machine the spin competes with the calling thread.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from cases.augment import TRANSFORMS, crops

    import cnnkit
    import cnnkit.augment as A

    pattern = sys.argv[1] if len(sys.argv) > 1 else "."
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    x = crops()[0]
    for name, ours, _, _ in TRANSFORMS:
        if not re.search(pattern, name):
            continue
        t = ours(A, x)
        rows: dict[int, list[tuple[int, int, int]]] = {1: [], 2: []}
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            t(image=x, seed=0)
        for _ in range(repeats):
            for threads in (1, 2):
                cnnkit.set_num_threads(threads)
                w, p, c = time.perf_counter_ns(), time.process_time_ns(), time.thread_time_ns()
                t(image=x, seed=0)
                rows[threads].append(
                    (
                        time.perf_counter_ns() - w,
                        time.process_time_ns() - p,
                        time.thread_time_ns() - c,
                    )
                )
        one = np.median(np.array(rows[1]), 0) / 1e6
        two = np.median(np.array(rows[2]), 0) / 1e6
        serial = max(2 * two[2] - two[1], 0.0)
        kernel = two[1] - serial
        total = one[1]
        predicted = total / (serial + kernel / 2)
        best = min(r[0] for r in rows[1]) / min(r[0] for r in rows[2])
        print(
            f"{name:24s} CPU ms 1T {total:6.2f} | 2T process {two[1]:6.2f} calling thread "
            f"{two[2]:6.2f} -> serial {serial:5.2f} parallel {kernel:5.2f} | predicted 2T "
            f"speed-up {predicted:4.2f} | best wall 1T/2T {best:4.2f}"
        )


if __name__ == "__main__":
    main()
