"""Shared test configuration: Hypothesis profiles and fixtures for global kernel state.

Profiles (select with the environment variable ``CNNKIT_HYPOTHESIS_PROFILE``):

* ``ci``: no deadline, derandomized (the same examples on every run), a bounded
  number of examples, no example database, and a reproduction blob on failure.
* ``dev`` (default): no deadline, more examples, random, with the example database.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

import cnnkit

# The suite runs with --import-mode=importlib, which does not put tests/ on
# sys.path; the shared strategies module is imported as `strategies`.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=60,
    database=None,
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=200, print_blob=True)

_PROFILE = os.environ.get("CNNKIT_HYPOTHESIS_PROFILE", "dev")
if _PROFILE not in {"ci", "dev"}:
    raise pytest.UsageError(f"CNNKIT_HYPOTHESIS_PROFILE must be 'ci' or 'dev', got {_PROFILE!r}")
settings.load_profile(_PROFILE)


@pytest.fixture
def restore_threads():
    """Restore cnnkit's thread count after the test, whatever it set."""
    before = cnnkit.get_num_threads()
    yield before
    cnnkit.set_num_threads(before)


@pytest.fixture
def restore_isa():
    """Restore the active instruction-set path after the test."""
    from cnnkit import _core

    before = _core.get_isa()
    yield before
    _core.set_isa(before)
