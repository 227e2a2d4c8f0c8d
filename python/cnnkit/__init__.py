"""cnnkit: a small CNN toolkit with native C++ kernels under a NumPy API.

Kernels for backend use live in :mod:`cnnkit.ops` (NumPy in, NumPy out), with
NumPy reference implementations of the same signatures in :mod:`cnnkit.reference`.
"""

from __future__ import annotations

from . import _core

__version__: str = _core.__version__

__all__ = [
    "Model",
    "Sequential",
    "__version__",
    "get_num_threads",
    "get_winograd",
    "load_model",
    "set_num_threads",
    "set_winograd",
]


def get_num_threads() -> int:
    """Return the number of threads cnnkit's kernels use.

    It starts at OpenMP's default (``OMP_NUM_THREADS`` when set, else the
    number of cores).
    """
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads cnnkit's kernels use, for calls from any thread.

    Results do not depend on the number of threads. A process forked from one that
    imported cnnkit (``os.fork``, multiprocessing's ``"fork"`` start method) runs on one
    thread, since GNU OpenMP cannot start threads there; asking it for more raises
    RuntimeError (use the ``"spawn"`` or ``"forkserver"`` method for multi-threaded workers).

    Parameters
    ----------
    n : int
        A positive number of threads.
    """
    _core.set_num_threads(n)


def get_winograd() -> bool:
    """Return whether convolutions may choose Winograd F(4x4, 3x3) on their own.

    It starts True, or False when the environment has ``CNNKIT_WINOGRAD=0``.
    """
    return _core.get_winograd()


def set_winograd(on: bool) -> None:
    """Allow or forbid the automatic choice of Winograd for 3x3 convolutions.

    With False, ``ops.conv`` and the layers use the im2col GEMM (bits as before
    Winograd existed) unless a call asks for ``winograd=True``. Applies to calls
    from any thread.
    """
    _core.set_winograd(on)


_SUBMODULES = {
    "activations",
    "augment",
    "autograd",
    "callbacks",
    "cli",
    "constraints",
    "data",
    "datasets",
    "detection",
    "image",
    "initializers",
    "io",
    "layers",
    "losses",
    "metrics",
    "models",
    "onnx",
    "ops",
    "optimizers",
    "reference",
    "regularizers",
    "saving",
    "schedules",
    "training",
    "transfer",
    "utils",
    "visualize",
}
# Names re-exported from submodules, loaded on first use like the submodules.
_LAZY = {"Sequential": "models", "Model": "models", "load_model": "saving"}


def __getattr__(name: str):
    # Submodules load on first use, so `import cnnkit` stays light.
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
