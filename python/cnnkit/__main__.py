"""``python -m cnnkit``: the same as the ``cnnkit`` console script."""

import sys

from .cli import main

sys.exit(main())
