"""Bounded reading of the zip and ``.npy`` members of a model file.

``zipfile`` and ``numpy.load`` trust the sizes a file declares: ``np.load`` allocates the
shape an ``.npy`` header announces before reading a byte of data, and a deflated member
can expand a thousandfold. A model file comes from anywhere, so this module reads it with
every size checked against a :class:`Budget` before anything of that size is allocated,
streams members in chunks, stops at the declared size, and turns every failure of the zip,
deflate and ``.npy`` layers into :class:`BadFile` (a ``ValueError`` the caller words with
the path). The zip parsing itself stays with ``zipfile``: only the limits are ours.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

# Every error the zip, deflate and .npy layers raise for malformed input. zipfile reports an
# unknown compression method as NotImplementedError, an encrypted member as RuntimeError, a
# flipped deflate bit as zlib.error, and numpy's header parser can recurse on nested tuples.
DECODE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    KeyError,
    ValueError,
    TypeError,
    OverflowError,
    NotImplementedError,
    RuntimeError,  # includes RecursionError
    UnicodeDecodeError,
)

_CHUNK = 1 << 20
_ALLOWED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
WEIGHT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class BadFile(ValueError):
    """A malformed model file; the message says what is wrong, the caller adds the path."""


class Budget:
    """The bytes a load may decode from a file (decompressed members plus arrays)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0

    def charge(self, nbytes: int, what: str) -> None:
        """Account for ``nbytes`` before they are allocated; BadFile past the limit."""
        if nbytes < 0 or self.used + nbytes > self.limit:
            raise BadFile(
                f"{what} declares {nbytes} bytes, more than the {self.limit - self.used} left "
                f"of max_memory={self.limit} (pass a larger max_memory if the file is trusted)"
            )
        self.used += nbytes


class BufferFile(io.RawIOBase):
    """A read-only, seekable file over a buffer, without the copy ``io.BytesIO`` makes."""

    def __init__(self, buffer: Any) -> None:
        super().__init__()
        self._view = memoryview(buffer).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        out = memoryview(b).cast("B")
        n = max(0, min(len(out), len(self._view) - self._pos))
        out[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


# Central-directory bytes a member may take: the 46-byte header, its name, extra fields.
_DIRECTORY_PER_MEMBER = 1024


def open_zip(fileobj: Any, allowed: set[str], what: str) -> zipfile.ZipFile:
    """``zipfile.ZipFile(fileobj)`` after checking the end record's entry count and
    directory size: zipfile builds an object per directory entry before anyone can count
    them, and a directory of a million 46-byte entries costs far more than its bytes."""
    end_record = getattr(zipfile, "_EndRecData", None)  # private, but there since Python 2
    record = end_record(fileobj) if end_record is not None else None
    if record is not None:
        entries = record[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)]
        size = record[getattr(zipfile, "_ECD_SIZE", 5)]
        if entries > len(allowed) or size > len(allowed) * _DIRECTORY_PER_MEMBER:
            raise BadFile(
                f"{what} declares {entries} members in a {size}-byte directory; expected at "
                f"most {len(allowed)}"
            )
    return zipfile.ZipFile(fileobj)


def members(
    archive: zipfile.ZipFile, allowed: set[str], max_member: int, what: str
) -> dict[str, zipfile.ZipInfo]:
    """The members of ``archive`` by name, after checking names, flags, methods and sizes.

    ``max_member`` bounds the compressed size a member may declare (the bytes that hold it).
    """
    infos = archive.infolist()
    if len(infos) > len(allowed):
        raise BadFile(f"{what} has {len(infos)} members, expected at most {len(allowed)}")
    out: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if name not in allowed:
            raise BadFile(f"{what} holds an unexpected member {name[:80]!r}")
        if name in out:
            raise BadFile(f"{what} holds the member {name!r} twice")
        if info.flag_bits & 0x1:
            raise BadFile(f"{what} member {name!r} is encrypted")
        if info.compress_type not in _ALLOWED_METHODS:
            raise BadFile(
                f"{what} member {name!r} uses compression method {info.compress_type}; "
                "expected stored (0) or deflated (8)"
            )
        if info.compress_size > max_member:
            raise BadFile(
                f"{what} member {name!r} declares {info.compress_size} compressed bytes, "
                f"more than the {max_member} its container holds"
            )
        out[name] = info
    return out


def read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget, what: str
) -> bytearray:
    """The bytes of one member, charged to ``budget`` at its declared size before reading.

    Decompression runs in chunks and stops at the declared size, so a member that expands
    beyond what it declares costs no more than it declared; the CRC check (by zipfile, at the
    declared end) rejects it.
    """
    size = info.file_size
    budget.charge(size, f"{what} member {info.filename!r}")
    out = bytearray(size)
    view = memoryview(out)
    pos = 0
    with archive.open(info) as f:
        while pos < size:
            chunk = f.read(min(_CHUNK, size - pos))
            if not chunk:
                raise BadFile(
                    f"{what} member {info.filename!r} ends after {pos} of its {size} bytes"
                )
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
    return out


def _npy_header(f: Any, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise BadFile(f"array {name!r} has .npy format version {version}, expected 1.0 or 2.0")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadFile(f"array {name!r} declares shape {shape!r}")
    return tuple(shape), bool(fortran), dtype


def read_npz(
    buffer: Any,
    keys: set[str],
    budget: Budget,
    what: str,
    dtypes: tuple[np.dtype, ...] = WEIGHT_DTYPES,
) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` held in ``buffer``, by key (absent ones omitted).

    Each ``.npy`` header is checked before its array is allocated: the dtype must be one of
    ``dtypes`` (either byte order; returned native), and the declared shape must
    account for exactly the bytes the member holds. Arrays are returned C-contiguous and
    writable, ready to be a layer's weights.
    """
    allowed = {f"{k}.npy" for k in keys}
    with open_zip(BufferFile(buffer), allowed, what) as z:
        infos = members(z, allowed, len(buffer), what)
        out: dict[str, np.ndarray] = {}
        for name, info in infos.items():
            key = name[: -len(".npy")]
            with z.open(info) as f:
                shape, fortran, dtype = _npy_header(f, key)
                if dtype.newbyteorder("=") not in dtypes:
                    raise BadFile(
                        f"{what} array {key!r} has dtype {dtype}; expected "
                        + " or ".join(d.name for d in dtypes)
                    )
                count = math.prod(shape)
                nbytes = count * dtype.itemsize
                if nbytes != info.file_size - f.tell():
                    raise BadFile(
                        f"{what} array {key!r} declares shape {shape} ({nbytes} bytes) but "
                        f"holds {info.file_size - f.tell()} bytes"
                    )
                budget.charge(nbytes * (2 if fortran else 1), f"{what} array {key!r}")
                flat = np.empty(count, dtype)
                view = flat.data.cast("B")
                pos = 0
                while pos < nbytes:
                    chunk = f.read(min(_CHUNK, nbytes - pos))
                    if not chunk:
                        raise BadFile(f"{what} array {key!r} ends after {pos} of {nbytes} bytes")
                    view[pos : pos + len(chunk)] = chunk
                    pos += len(chunk)
            if not dtype.isnative:
                flat.byteswap(inplace=True)
                flat = flat.view(dtype.newbyteorder("="))
            # (ascontiguousarray would turn a 0-d array into 1-d)
            out[key] = flat.reshape(shape[::-1]).T.copy() if fortran else flat.reshape(shape)
    return out
