"""Two-thread scaling of the augmentation batch mode, measured so that load shows.

Usage::

    python bench/augment_scaling.py [--repeats 25] [--filter REGEX]

Each transform distorts the bench's batch (16 crops of 256 x 256 x 3 uint8, see
``bench/cases/augment.py``) in one call, alternating 1 and 2 threads call by call, so both
see the same machine. It prints, per thread count, the minimum and median wall time and the
median process CPU time of a call (all threads), and the scaling min(1 thread) / min(2
threads). On a loaded machine a parallel region ends only when its last thread has been
scheduled: the median then measures the queue, and a CPU time that grows with the thread
count is the spinning of the thread that waits (OpenMP's barrier), not extra work. The
load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases.augment import crops

import cnnkit
import cnnkit.augment as A

TRANSFORMS = {
    "RandomBrightnessContrast": lambda: A.RandomBrightnessContrast(p=1),
    "RGBShift": lambda: A.RGBShift(p=1),
    "HueSaturationValue": lambda: A.HueSaturationValue(p=1),
    "ColorJitter": lambda: A.ColorJitter(0.2, 0.2, 0.2, 0.1, p=1),
    "GaussNoise": lambda: A.GaussNoise(p=1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--filter", default="")
    args = parser.parse_args()
    (x,) = crops()
    print(f"load average before: {os.getloadavg()}")
    for name, make in TRANSFORMS.items():
        if not re.search(args.filter, name):
            continue
        transform = make()
        wall: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        for threads in (1, 2):  # warm-up: thread pools and caches
            cnnkit.set_num_threads(threads)
            transform(image=x, seed=0)
        for _ in range(args.repeats):
            for threads in (1, 2):
                cnnkit.set_num_threads(threads)
                c0, t0 = time.process_time(), time.perf_counter()
                transform(image=x, seed=0)
                t1, c1 = time.perf_counter(), time.process_time()
                wall[threads].append(t1 - t0)
                cpu[threads].append(c1 - c0)
        cells = [
            f"{t}t min {min(wall[t]) * 1e3:7.2f} med {statistics.median(wall[t]) * 1e3:7.2f} "
            f"cpu {statistics.median(cpu[t]) * 1e3:7.2f} ms"
            for t in (1, 2)
        ]
        scaling = min(wall[1]) / min(wall[2])
        print(f"{name:26s} {' | '.join(cells)} | scaling {scaling:.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
