"""Former name of :mod:`cnnkit.saving.model_files`, kept so ``import cnnkit.io`` still works."""

import sys

from .saving import model_files

sys.modules[__name__] = model_files
