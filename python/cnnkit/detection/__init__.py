"""Object detection: classification with localization, YOLO with anchor boxes."""

from .localization import LocalizationLoss, decode_localization
from .yolo import YoloLoss, activate, detect

__all__ = ["LocalizationLoss", "YoloLoss", "activate", "decode_localization", "detect"]
