"""Object detection: classification with localization, sliding windows, YOLO with anchor
boxes, landmarks, and COCO / Pascal VOC evaluation."""

from .evaluation import COCO_IOU_THRESHOLDS, evaluate, voc_ap, voc_evaluate
from .landmarks import flip_horizontal
from .localization import LocalizationLoss, decode_localization
from .windows import resize_bilinear, sliding_window_detect, to_fully_convolutional
from .yolo import YoloLoss, activate, detect, yolo_model

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "LocalizationLoss",
    "YoloLoss",
    "activate",
    "decode_localization",
    "detect",
    "evaluate",
    "flip_horizontal",
    "resize_bilinear",
    "sliding_window_detect",
    "to_fully_convolutional",
    "voc_ap",
    "voc_evaluate",
    "yolo_model",
]
