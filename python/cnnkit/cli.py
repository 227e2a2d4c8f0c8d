"""The ``cnnkit`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _info() -> int:
    import platform

    import numpy as np

    from . import __version__, _core

    rows = [
        ("cnnkit", __version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("compiler", _core.compiler),
        ("simd path", _core.get_isa()),
        ("simd paths available", ", ".join(_core.available_isas())),
        ("openmp", str(_core.openmp_version)),
        ("threads", str(_core.get_num_threads())),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cnnkit", description="cnnkit command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, compiler, SIMD path and threads")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
