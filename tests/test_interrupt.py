"""Ctrl-C stops a long kernel (csrc/interrupt.hpp), and nothing else changes.

Each case runs in its own interpreter, which sends itself SIGINT shortly after
the kernel starts. The kernels are sized to take far longer than the test's
patience on any machine, so "finished" instead of "interrupted" means the
signal went unnoticed until the kernel returned.
"""

from __future__ import annotations

import pytest
from isolated import run_isolated

SIGNAL_SOON = """
import os, signal, threading
def signal_soon(delay=0.5, times=1):
    for i in range(times):
        threading.Timer(delay * (i + 1), os.kill, (os.getpid(), signal.SIGINT)).start()
rng = np.random.default_rng(0)
"""

# Each is minutes of work at a few hundred GFLOP/s, in at most about 1.5 GB; the
# values do not matter, so they are constants (quick to make).
LONG_CALLS = {
    "conv": (
        "x = np.full((1, 768, 768, 64), 0.5, np.float32)\n"
        "w = np.full((41, 41, 64, 64), 0.5, np.float32)\n"
        "call = lambda: ops.conv(x, w, padding='same')"
    ),
    "conv_backward": (
        "x = np.full((1, 768, 768, 64), 0.5, np.float32)\n"
        "w = np.full((41, 41, 64, 64), 0.5, np.float32)\n"
        "call = lambda: ops.conv_backward(x, w, x, padding='same')"
    ),
    "conv_backward_weight": (
        "x = np.full((1, 768, 768, 64), 0.5, np.float32)\n"
        "w = np.full((41, 41, 64, 64), 0.5, np.float32)\n"
        "call = lambda: ops.conv_backward(x, w, x, padding='same', need=('w',))"
    ),
    "matmul": (
        "a = np.full((16384, 4096), 0.5, np.float32)\n"
        "b = np.full((4096, 16384), 0.5, np.float32)\n"
        "call = lambda: ops.matmul(a, b)"
    ),
    "max_pool": (
        "x = np.full((1, 2048, 2048, 16), 0.5, np.float32)\n"
        "call = lambda: ops.max_pool(x, 63, stride=1, padding='same')"
    ),
}


@pytest.mark.parametrize("case", sorted(LONG_CALLS))
def test_ctrl_c_stops_a_long_kernel(case):
    out = run_isolated(
        SIGNAL_SOON
        + LONG_CALLS[case]
        + """
signal_soon()
try:
    call()
    print("finished")
except KeyboardInterrupt:
    print("interrupted")
""",
        timeout=120,
    )
    assert out.split() == ["interrupted"]


def test_a_handler_that_does_not_raise_lets_the_kernel_finish():
    # The poll runs the handler; one that returns normally leaves the kernel
    # running to its complete result.
    out = run_isolated(
        SIGNAL_SOON
        + """
x = rng.standard_normal((1, 128, 128, 32), np.float32)
w = rng.standard_normal((15, 15, 32, 32), np.float32)
expected = ops.conv(x, w, padding="same")
seen = []
signal.signal(signal.SIGINT, lambda *args: seen.append(1))
signal_soon(delay=0.2)
got = ops.conv(x, w, padding="same")
import time; time.sleep(0.3)
print(len(seen), np.array_equal(got, expected))
"""
    )
    assert out.split() == ["1", "True"]


def test_stopping_the_main_threads_kernel_leaves_another_threads_kernel_whole():
    # Python runs signal handlers on its main thread only, and a stop request
    # belongs to one call: the worker's concurrent kernel runs to its end.
    out = run_isolated(
        SIGNAL_SOON
        + LONG_CALLS["conv"]
        + """
xs = rng.standard_normal((1, 128, 128, 32), np.float32)
ws = rng.standard_normal((15, 15, 32, 32), np.float32)
expected = ops.conv(xs, ws, padding="same")
result = {}
worker = threading.Thread(target=lambda: result.update(y=ops.conv(xs, ws, padding="same")))
worker.start()
signal_soon()
try:
    call()
    print("finished")
except KeyboardInterrupt:
    print("interrupted")
worker.join()
print(np.array_equal(result["y"], expected))
"""
    )
    assert out.split() == ["interrupted", "True"]


def test_a_stopped_call_leaves_the_next_one_whole():
    out = run_isolated(
        SIGNAL_SOON
        + LONG_CALLS["conv"]
        + """
signal_soon()
try:
    call()
except KeyboardInterrupt:
    pass
small = rng.standard_normal((2, 16, 16, 8), np.float32)
k = rng.standard_normal((3, 3, 8, 4), np.float32)
print(np.allclose(ops.conv(small, k), reference.conv(small, k), rtol=1e-4, atol=1e-4))
"""
    )
    assert out.split() == ["True"]
