"""Detection: metrics now; localization, landmarks, windows, YOLO and anchors to come.

Submodules load on first use (``import cnnkit.detection`` stays light); the public names of
:mod:`cnnkit.detection.evaluation` are available here.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["COCO_IOU_THRESHOLDS", "evaluate", "evaluation", "voc_ap", "voc_evaluate"]

_FROM_EVALUATION = {"COCO_IOU_THRESHOLDS", "evaluate", "voc_ap", "voc_evaluate"}


def __getattr__(name: str) -> Any:
    if name in _FROM_EVALUATION:
        return getattr(importlib.import_module(f"{__name__}.evaluation"), name)
    if name == "evaluation":
        return importlib.import_module(f"{__name__}.evaluation")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
