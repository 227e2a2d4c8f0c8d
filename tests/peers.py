"""Optional peers the tests compare against, or a skip when they cannot be used.

PyPI's torchvision wheel is built against CUDA torch: beside the CPU torch installed here its
compiled operators fail to load, and ``import torchvision`` raises RuntimeError while
registering them. That is a broken peer, not a cnnkit failure, so it skips like a missing one.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import pytest


def torchvision(submodule: str = "") -> Any:
    """``torchvision`` (or ``torchvision.<submodule>``), or skip the test."""
    with warnings.catch_warnings():  # an import-time warning is not a test failure
        warnings.simplefilter("ignore")
        torch = pytest.importorskip("torch")
        name = f"torchvision.{submodule}" if submodule else "torchvision"
        try:
            module = importlib.import_module(name)
            # tests/torch_networks.py may have entered torchvision without its compiled
            # operators (for the model definitions alone): check that they are there.
            torch.ops.torchvision.nms  # noqa: B018
        except ImportError as exc:
            pytest.skip(f"{name} is not installed: {exc}")
        except (RuntimeError, OSError, AttributeError) as exc:
            pytest.skip(f"{name} does not load beside this torch: {exc}")
        return module
