"""The serial part of cnnkit's batch transforms, by CPU time at one thread (shared machine).

Two-thread wall-clock speed-ups cannot be measured while other work holds the cores, but
Amdahl's law bounds them from a one-thread run: this script times each case of
``bench/cases/augment.py`` with ``time.thread_time_ns`` (time spent waiting for a core is not
counted) and, inside the call, the time spent in the parallel native kernels of
``cnnkit._augment`` (every call that takes a thread count). The rest is serial: Python,
parameter draws, allocation, table set-up. With ``S`` and ``K`` the best-of-many serial and
kernel milliseconds, two free cores give at most::

    (S + K) / (S + K / 2)

(less the kernel's own losses: memory bandwidth, imbalance, waking the second thread)::

    python bench/augment_serial.py [REGEX] [REPEATS] [--batch N]

``--batch`` repeats the 16 crops to N images (a multiple of 16). Give ``uptime`` with the
numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

# the _augment functions that run a parallel region (their last argument is a thread count)
PARALLEL = {
    "add_gaussian",
    "add_gaussian_seeded",
    "add_noise",
    "affine_u8",
    "area_shrink",
    "colour_affine",
    "colour_jitter",
    "elastic_fields",
    "flip",
    "flip_selected",
    "gaussian_blur",
    "hsv_shift",
    "hsv_shift_draws",
    "lut",
    "lut_vbmi",
    "colour_affine_lut",  # its serial draws (3-4 us for 64 images) count as kernel here
    "remap",
    "resample",
    "resample_linear",
    "resample_linear_fixed3",
    "resized_crops_fixed3",  # its serial draws (2-3 us for 16 images) count as kernel here
    "warp_affine",
    "warp_affine_u8",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default=".")
    parser.add_argument("repeats", nargs="?", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    from cases.augment import TRANSFORMS, crops

    import cnnkit
    import cnnkit.augment as A
    from cnnkit import _core
    from cnnkit.image import augment_loops

    modules = list({augment_loops(isa) for isa in _core.available_isas()})
    kernel_ns = [0]

    def timed(fn):
        def call(*a, **k):
            start = time.thread_time_ns()
            try:
                return fn(*a, **k)
            finally:
                kernel_ns[0] += time.thread_time_ns() - start

        return call

    for module in modules:
        for name in PARALLEL & set(dir(module)):
            setattr(module, name, timed(getattr(module, name)))

    cnnkit.set_num_threads(1)
    x = crops()[0]
    x = np.concatenate([x] * max(1, args.batch // len(x)))
    for name, ours, _, _ in TRANSFORMS:
        if not re.search(args.pattern, name):
            continue
        t = ours(A, x)
        t(image=x, seed=0)
        totals, kernels = [], []
        for _ in range(args.repeats):
            kernel_ns[0] = 0
            start = time.thread_time_ns()
            t(image=x, seed=0)
            totals.append(time.thread_time_ns() - start)
            kernels.append(kernel_ns[0])
        total, kernel = np.array(totals) / 1e6, np.array(kernels) / 1e6
        s, k = float(np.min(total - kernel)), float(np.min(kernel))
        fraction = s / (s + k)
        bound = 1 / (fraction + (1 - fraction) / 2)
        print(
            f"{name:24s} N={len(x)} CPU ms: serial {s:7.3f} kernel {k:8.3f} "
            f"serial fraction {fraction:5.3f} -> Amdahl 2-thread bound {bound:4.2f}"
        )


if __name__ == "__main__":
    main()
