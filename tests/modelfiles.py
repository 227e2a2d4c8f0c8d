"""Hostile model files for the rejection and fuzz tests: a small valid file, its members,
and the zip-level edits (method, flags, sizes, bombs) that zipfile alone cannot make."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit import layers


def small_model(seed: int = 0) -> cnnkit.Sequential:
    """A compiled, trained model with every kind of saved section (Dropout state, Adam)."""
    model = cnnkit.Sequential(
        [
            layers.Input((4, 4, 1)),
            layers.Conv2D(2, 3, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dropout(0.2),
            layers.Dense(3),
        ],
        seed=seed,
    )
    model.compile("adam", "sparse_categorical_crossentropy", ["acc"])
    rng = np.random.default_rng(seed)
    model.fit(
        rng.standard_normal((8, 4, 4, 1)).astype(np.float32),
        rng.integers(0, 3, 8),
        epochs=1,
        verbose=0,
    )
    return model


def saved_bytes(tmp_path: Path, seed: int = 0) -> bytes:
    path = tmp_path / f"valid-{seed}.cnnkit"
    small_model(seed).save(path)
    return path.read_bytes()


def members(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return {n: z.read(n) for n in z.namelist()}


def rezip(parts: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return out.getvalue()


def with_meta(blob: bytes, edit) -> bytes:
    """``blob`` with its JSON replaced by ``edit(meta)`` (which may mutate and return None,
    or return the new JSON text or object)."""
    parts = members(blob)
    meta = json.loads(parts["cnnkit.json"])
    out = edit(meta)
    out = meta if out is None else out
    parts["cnnkit.json"] = out.encode() if isinstance(out, str) else json.dumps(out).encode()
    return rezip(parts)


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def central_headers(blob: bytes) -> list[int]:
    """Offsets of the central-directory headers."""
    out, start = [], 0
    while (i := blob.find(b"PK\x01\x02", start)) >= 0:
        out.append(i)
        start = i + 4
    return out


def local_headers(blob: bytes) -> list[int]:
    out, start = [], 0
    while (i := blob.find(b"PK\x03\x04", start)) >= 0:
        out.append(i)
        start = i + 4
    return out


def set_field(blob: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def with_method(blob: bytes, method: int) -> bytes:
    """Every member's compression method (local and central headers) set to ``method``."""
    for i in local_headers(blob):
        blob = set_field(blob, i + 8, "<H", method)
    for i in central_headers(blob):
        blob = set_field(blob, i + 10, "<H", method)
    return blob


def with_flag(blob: bytes, flag: int) -> bytes:
    for i in local_headers(blob):
        blob = set_field(blob, i + 6, "<H", flag)
    for i in central_headers(blob):
        blob = set_field(blob, i + 8, "<H", flag)
    return blob


def with_declared_size(blob: bytes, name: str, size: int) -> bytes:
    """The uncompressed size ``name`` declares (central and local headers) set to ``size``."""
    encoded = name.encode()
    for i in central_headers(blob):
        n = struct.unpack_from("<H", blob, i + 28)[0]
        if blob[i + 46 : i + 46 + n] == encoded:
            blob = set_field(blob, i + 24, "<I", size)
    for i in local_headers(blob):
        n = struct.unpack_from("<H", blob, i + 26)[0]
        if blob[i + 30 : i + 30 + n] == encoded:
            blob = set_field(blob, i + 22, "<I", size)
    return blob


def npy_bomb(key: str, nbytes: int) -> bytes:
    """An .npz whose deflated member is a valid float32 .npy of ``nbytes`` zero bytes: a few
    KB per MB declared, written in chunks so that making it costs no memory."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)}
    )
    out = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open(f"{key}.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for start in range(0, nbytes, len(chunk)):
                f.write(chunk[: min(len(chunk), nbytes - start)])
    return out.getvalue()


_PROBE = textwrap.dedent(
    """
    import sys, warnings
    import cnnkit, cnnkit.io, cnnkit.layers, cnnkit.models
    warnings.simplefilter("ignore")
    def status_kib(key):  # VmRSS: resident now; VmHWM: this address space's peak
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM restarts from here (Linux 4.0+)
        f.write("5")
    before = status_kib("VmRSS")
    outcomes = []
    for path in sys.argv[1:]:
        try:
            cnnkit.load_model(path)
            outcomes.append("loaded")
        except ValueError as exc:
            outcomes.append("ValueError" if repr(path) in str(exc) else "unnamed: " + str(exc))
        except BaseException as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}"[:300])
    after = status_kib("VmHWM")
    print((after - before) * 1024)
    print("\\n".join(outcomes))
    """
)


# The peak is /proc's VmHWM, the high-water mark of this process's own address space, not
# getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a probe started by pytest,
# hundreds of MB into the suite, would report pytest's peak as its own.
def run_fresh(args: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``python args...`` in a new process."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def load_in_subprocess(paths: list[Path], timeout: float = 120) -> tuple[int, list[str]]:
    """Load each file in one fresh process: (peak memory growth in bytes, outcome per file).

    The outcome is "loaded", "ValueError" (naming the path) or what else happened; the
    growth is the peak resident size (VmHWM) after the loads minus the resident size (VmRSS)
    before them, both from /proc (Linux).
    """
    done = run_fresh(["-c", _PROBE, *map(str, paths)], timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    return int(lines[0]), lines[1:]
