"""Face verification and recognition.

:mod:`cnnkit.face.evaluate` holds the verification metrics (the LFW protocol,
VAL at FAR, ROC and AUC, threshold choice, plots).
"""

from . import evaluate

__all__ = ["evaluate"]
