"""Object detection: classification with localization, landmarks, sliding windows, YOLO with
anchor boxes, R-CNN and Fast R-CNN over region proposals, and COCO / Pascal VOC evaluation.

Submodules load on first use (``import cnnkit.detection`` stays light); their public names
are available here.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "COCO_IOU_THRESHOLDS": "evaluation",
    "COCO_METRIC_KEYS": "evaluation",
    "evaluate": "evaluation",
    "voc_ap": "evaluation",
    "voc_evaluate": "evaluation",
    "flip_horizontal": "landmarks",
    "LocalizationLoss": "localization",
    "decode_localization": "localization",
    "localization_cnn": "localization",
    "resize_bilinear": "windows",
    "sliding_window_detect": "windows",
    "to_fully_convolutional": "windows",
    "BOX_WEIGHTS": "rcnn",
    "FastRCNN": "rcnn",
    "ProposalLoss": "rcnn",
    "RCNNClassifier": "rcnn",
    "apply_deltas": "rcnn",
    "box_deltas": "rcnn",
    "fast_rcnn": "rcnn",
    "fast_rcnn_detect": "rcnn",
    "propose": "rcnn",
    "proposal_recall": "rcnn",
    "rcnn_classifier": "rcnn",
    "rcnn_detect": "rcnn",
    "sample_proposals": "rcnn",
    "train_fast_rcnn": "rcnn",
    "train_rcnn": "rcnn",
    "warp_proposals": "rcnn",
    "YoloLoss": "yolo",
    "YoloModel": "yolo",
    "activate": "yolo",
    "detect": "yolo",
    "yolo_model": "yolo",
}
_SUBMODULES = {"evaluation", "landmarks", "localization", "rcnn", "windows", "yolo"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
