"""cnnkit.training.memory: glibc's thresholds are raised once, on the first training step,
unless CNNKIT_KEEP_FREED_MEMORY=0."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Under AddressSanitizer (LD_PRELOAD=libasan) mallopt is ASan's, which refuses every value.
glibc = pytest.mark.skipif(
    platform.system() != "Linux"
    or platform.libc_ver()[0] != "glibc"
    or "asan" in os.environ.get("LD_PRELOAD", ""),
    reason="the thresholds are glibc's",
)

_PROBE = """
import numpy as np, cnnkit
from cnnkit import layers
from cnnkit.training import memory
before = dict(memory._state)
model = cnnkit.Sequential([layers.Input((4,)), layers.Dense(2)], seed=0)
model.compile("sgd", "mse")
model.train_on_batch(np.ones((3, 4), np.float32), np.zeros((3, 2), np.float32))
print(before, memory._state)
"""


def _probe(**env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@glibc
def test_the_first_training_step_raises_the_thresholds() -> None:
    assert _probe(CNNKIT_KEEP_FREED_MEMORY="1") == "{} {'applied': True}"


def test_the_environment_variable_leaves_malloc_alone() -> None:
    assert _probe(CNNKIT_KEEP_FREED_MEMORY="0") == "{} {'applied': False}"


@glibc
def test_later_calls_only_report() -> None:
    from cnnkit.training import memory

    assert memory.keep_freed_memory()
    assert memory.keep_freed_memory()
    assert memory._state == {"applied": True}
