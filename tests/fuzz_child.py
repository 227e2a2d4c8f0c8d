"""The child side of tests/test_fuzz_ops.py: runs one batch of calls in its own process.

Reads a JSON list of calls, ``{"fn": name, "args": [expr, ...], "kwargs": {name: expr}}``,
from stdin, where each expr is Python source evaluated here (so that arrays of
any size, views and iterators can be described). For each call it prints
``start i`` before calling, so that a crash names its call, and one JSON line
after: the outcome, and a mismatch with :mod:`cnnkit.reference` when the call
returned a result. Exits 0 when every call ran to an outcome, whatever it was:
the parent judges them.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np

from cnnkit import ops, reference

ALLOWED = (ValueError, TypeError, MemoryError)
# The references of conv1d/2d/3d are reference.conv.
REFERENCE = {"conv1d": "conv", "conv2d": "conv", "conv3d": "conv"}
LARGEST_CHECKED = 200_000  # elements of a result compared with the (slow) reference


def R(shape, dtype=np.float64, seed=0):
    """A deterministic normal array."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def BOXES(n, dtype=np.float64, seed=0):
    """n valid xyxy boxes."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, size=(n, 2))
    wh = rng.uniform(0, 20, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


def SCORES(n, dtype=np.float64, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, size=n).astype(dtype)


def YOLO(shape, dtype=np.float64, seed=2):
    """An activated YOLO output: probabilities in [0, 1], sizes >= 0."""
    return np.random.default_rng(seed).uniform(0, 1, size=shape).astype(dtype)


def NONCONTIG(a):
    a = np.asarray(a)
    wide = np.repeat(a[..., None], 2, axis=-1)
    return wide[..., 0]


def REVERSED(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a[::-1])[::-1] if a.ndim else a


def READONLY(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def BYTESWAPPED(a):
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder()) if a.dtype.kind in "fiu" else a


def FORTRAN(a):
    return np.asfortranarray(a)


def WITH(a, value, index=0):
    a = np.array(a, dtype=np.result_type(np.asarray(a).dtype, np.float32))
    if a.size:
        a.flat[index % a.size] = value
    return a


def HUGE_ZERO(a):
    """Shape (2**40, 0, *rest): zero elements, a huge extent."""
    a = np.asarray(a)
    return np.zeros((2**40, 0, *a.shape[2:]), a.dtype) if a.ndim >= 2 else np.zeros(0, a.dtype)


def ZERO_LAST(a):
    a = np.asarray(a)
    return np.zeros((*a.shape[:-1], 0), a.dtype) if a.ndim else a


def BROADCAST(a, first=2**33):
    """A view of `first` copies of a's rows: no memory until copied."""
    a = np.asarray(a)
    return np.broadcast_to(a[:1], (first, *a.shape[1:])) if a.ndim else a


def _compare(got, want, loose: bool, path="result"):
    if isinstance(want, tuple) and not isinstance(got, tuple):
        got = tuple(got)
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"{path}: {type(got).__name__} of {len(got)} != {len(want)} items"
        for i, (g, w) in enumerate(zip(got, want)):
            m = _compare(g, w, loose, f"{path}[{i}]")
            if m:
                return m
        return None
    if want is None or got is None:
        return None if got is want else f"{path}: {got!r} != {want!r}"
    if np.isscalar(want) and not isinstance(want, np.ndarray):
        if isinstance(want, (float, np.floating)):
            ok = np.isclose(got, want, rtol=1e-4, atol=1e-6, equal_nan=True)
        else:
            ok = got == want
        return None if ok else f"{path}: {got!r} != {want!r}"
    g, w = np.asarray(got), np.asarray(want)
    if g.shape != w.shape:
        return f"{path}: shape {g.shape} != {w.shape}"
    if g.dtype.kind != "f" or w.dtype.kind != "f":
        return None if np.array_equal(g, w) else f"{path}: values differ"
    g64, w64 = g.astype(np.float64), w.astype(np.float64)
    scale = np.nanmax(np.abs(w64[np.isfinite(w64)]), initial=1.0)
    tol = (3e-3 if np.float32 in (g.dtype.type, w.dtype.type) else 1e-8) * max(scale, 1.0)
    same = (np.abs(g64 - w64) <= tol) | (g64 == w64) | (np.isnan(g64) & np.isnan(w64))
    if loose:  # ops.conv_backward, Notes: a non-finite input may turn entries into NaN
        same |= np.isnan(g64)
    if same.all():
        return None
    i = tuple(int(v) for v in np.argwhere(~same)[0])
    return f"{path}: {int((~same).sum())} of {same.size} differ; at {i}: {g[i]!r} != {w[i]!r}"


def _size(result) -> int:
    if isinstance(result, (tuple, list)):
        return sum(_size(r) for r in result)
    return int(np.asarray(result).size) if isinstance(result, np.ndarray) else 1


def _has_non_finite(values) -> bool:
    for v in values:
        if isinstance(v, np.ndarray) and v.dtype.kind in "fc" and not np.isfinite(v).all():
            return True
    return False


def _huge(values) -> bool:
    """An array with a huge extent (even if empty): NumPy in the reference may
    loop over it for hours (np.matmul over 2**40 empty matrices)."""
    for v in values:
        if isinstance(v, (list, tuple)):
            if _huge(v):
                return True
        elif isinstance(v, np.ndarray) and any(n > 2**20 for n in v.shape):
            return True
    return False


def run_call(call: dict) -> dict:
    fn = call["fn"]

    def build():
        return [eval(e) for e in call["args"]], {k: eval(e) for k, e in call["kwargs"].items()}

    try:
        args, kwargs = build()
    except Exception as e:  # the harness's own expression: report, not judged
        return {"outcome": "unbuildable", "error": f"{type(e).__name__}: {e}"}
    try:
        result = getattr(ops, fn)(*args, **kwargs)
    except ALLOWED as e:
        return {"outcome": type(e).__name__, "message": str(e)[:300]}
    except BaseException as e:
        return {"outcome": "wrong-exception", "error": f"{type(e).__name__}: {e}"[:500]}
    if _size(result) > LARGEST_CHECKED or _huge([*args, *kwargs.values()]):
        return {"outcome": "result", "checked": False}
    try:
        ref_args, ref_kwargs = build()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            want = getattr(reference, REFERENCE.get(fn, fn))(*ref_args, **ref_kwargs)
    except Exception:  # the reference assumes valid input: nothing to compare with
        return {"outcome": "result", "checked": False}
    loose = fn == "conv_backward" and _has_non_finite([*args, *kwargs.values()])
    mismatch = _compare(result, want, loose)
    if mismatch:
        return {"outcome": "mismatch", "error": mismatch}
    return {"outcome": "result", "checked": True}


def main() -> None:
    warnings.simplefilter("ignore")
    calls = json.load(sys.stdin)
    for i, call in enumerate(calls):
        print(f"start {i}", flush=True)
        print(json.dumps(run_call(call)), flush=True)


if __name__ == "__main__":
    main()
