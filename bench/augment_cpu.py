"""cnnkit's batch transforms against albumentations at one thread, by CPU time, calls alternating.

On a shared machine, wall-clock medians (bench/run.py) mostly measure how long each process
waited for a core, and the implementation timed in a quieter moment wins. This script times
the cases of ``bench/cases/augment.py`` with ``time.thread_time_ns`` of the calling thread
(both libraries run there at one thread, so time spent waiting for a core is not counted),
alternating one cnnkit call and one albumentations call::

    python bench/augment_cpu.py [REGEX] [REPEATS]

It prints the median and best CPU milliseconds of each and albumentations' / cnnkit's.
CPU time still includes the slowdown from a busy sibling hyper-thread, for both sides.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    import albumentations
    import cv2
    from cases.augment import TRANSFORMS, crops

    import cnnkit
    import cnnkit.augment as A

    pattern = sys.argv[1] if len(sys.argv) > 1 else "."
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    cnnkit.set_num_threads(1)
    cv2.setNumThreads(1)
    x = crops()[0]
    for name, ours, theirs, _ in TRANSFORMS:
        if not re.search(pattern, name):
            continue
        mine, peer = ours(A, x), theirs(albumentations)
        calls = {
            "cnnkit": lambda mine=mine: mine(image=x, seed=0)["image"],
            "albumentations": lambda peer=peer: np.stack([peer(image=i)["image"] for i in x]),
        }
        times: dict[str, list[int]] = {key: [] for key in calls}
        for call in calls.values():
            call()
        for _ in range(repeats):
            for key, call in calls.items():
                start = time.thread_time_ns()
                call()
                times[key].append(time.thread_time_ns() - start)
        med = {key: float(np.median(t)) / 1e6 for key, t in times.items()}
        best = {key: min(t) / 1e6 for key, t in times.items()}
        print(
            f"{name:26s} CPU ms median cnnkit {med['cnnkit']:7.2f} albumentations "
            f"{med['albumentations']:7.2f} ratio {med['albumentations'] / med['cnnkit']:5.2f} | "
            f"best {best['cnnkit']:7.2f} {best['albumentations']:7.2f} "
            f"ratio {best['albumentations'] / best['cnnkit']:5.2f}"
        )


if __name__ == "__main__":
    main()
