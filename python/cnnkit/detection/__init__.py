"""Object detection: classification with localization, YOLO with anchor boxes."""

from .landmarks import flip_horizontal
from .localization import LocalizationLoss, decode_localization
from .windows import resize_bilinear, sliding_window_detect, to_fully_convolutional
from .yolo import YoloLoss, activate, detect, yolo_model

__all__ = [
    "LocalizationLoss",
    "YoloLoss",
    "activate",
    "decode_localization",
    "detect",
    "flip_horizontal",
    "resize_bilinear",
    "sliding_window_detect",
    "to_fully_convolutional",
    "yolo_model",
]
