"""An embedding database: the deployment half of one-shot face verification and recognition.

The encodings of the enrolled people are computed once, at enrolment, and kept as one
matrix; a query is encoded once and compared with all of them in one matrix product
(``|q|^2 + |e|^2 - 2 q.e`` gives every squared distance), so recognition among 100,000
encodings is a GEMM, not 100,000 network evaluations.

Batches of queries use cnnkit's packed GEMM with the enrolled norms fused in as its bias,
tiled over the queries and the enrolled rows so that the distance block stays a few
megabytes whatever the batch. A handful of queries use a
matrix-vector product instead: a packed GEMM first copies the whole enrolled matrix into
panels (51 MB for 100,000 x 128 encodings, about 6 ms here), which a product with one vector
does not need -- it reads the matrix once, at memory speed.

Files are a zip of ``face_database.json`` (names, threshold, dimension) and
``encodings.npz`` (the float32 encodings and int64 owner of each), written atomically and
read with every size checked (as model files are): never pickle.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from .. import _zipsafe, ops
from ..saving.model_files import _atomic_write, _npz_bytes, _short

__all__ = ["FaceDatabase"]

_META = "face_database.json"
_ARRAYS = "encodings.npz"
_FORMAT = "cnnkit-face-database"
_FORMAT_VERSION = 1

# Query rows below which the matrix-vector path is faster than packing the GEMM operand.
_GEMV_ROWS = 8
# Tile of the distance block: queries x enrolled rows (4 MB of float32).
_QUERY_TILE = 256
_ENROLLED_TILE = 4096


class FaceDatabase:
    """Enrolled people's encodings, with verification (1:1) and recognition (1:K).

    Parameters
    ----------
    encoder : cnnkit.Model
        Maps images ``(N, *input_shape)`` to encodings ``(N, d)`` (e.g.
        :func:`cnnkit.face.build_encoder` after training).
    threshold : float
        ``tau``: two images are the same person when the Euclidean distance of their
        encodings is at most ``tau``. Choose it on labelled pairs of people held out from
        training with :func:`cnnkit.face.evaluate.choose_threshold`: for 1:1
        verification its accuracy-maximising tau; for :meth:`identify` with strangers to
        reject, a tau at a fixed false accept rate (``far=``, about the stranger
        acceptance rate you allow divided by the number of enrolled people).
    batch_size : int
        Images per encoder call.
    mirror : bool
        Encode each image and its mirror image (flipped left to right) and keep their mean,
        scaled to the mean of their norms (unit length for a unit-length encoder): a
        test-time augmentation that costs a second encoder pass. With one enrolled image per
        person it raised one-shot top-1 among 100 people from 0.57 to 0.60 and from 0.52 to
        0.54 (two encoders, procedural faces). Use it for every encoding you compare --
        enrolment, queries and the pairs that choose the threshold; it is saved with the
        database.

    Notes
    -----
    Distances are Euclidean, ``||f(x1) - f(x2)||``; for unit-length encodings they lie in
    [0, 2].
    """

    def __init__(
        self, encoder: Any, threshold: float = 1.0, *, batch_size: int = 256, mirror: bool = False
    ) -> None:
        where = "FaceDatabase()"
        if not callable(encoder) or not hasattr(encoder, "predict"):
            raise TypeError(
                f"{where}: encoder must be a cnnkit model, got {type(encoder).__name__}"
            )
        self.encoder = encoder
        self.threshold = _threshold(where, threshold)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"{where}: batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"{where}: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        if not isinstance(mirror, (bool, np.bool_)):
            raise TypeError(f"{where}: mirror must be a bool, got {type(mirror).__name__}")
        self.mirror = bool(mirror)
        shape = getattr(encoder, "_input_shape", None)
        self.input_shape: tuple[int, ...] | None = None if shape is None else tuple(shape)
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._dim: int | None = None
        self._encodings = np.zeros((0, 0), np.float32)
        self._squares = np.zeros(0, np.float32)
        # -2 E^T in column blocks, built on the first batched search after a change.
        self._panels: list[np.ndarray] | None = None
        self._owners = np.zeros(0, np.int64)

    # -- contents ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The enrolled names, in order of first enrolment."""
        return list(self._names)

    @property
    def encodings(self) -> np.ndarray:
        """The enrolled encodings ``(M, d)`` (a read-only view)."""
        view = self._encodings.view()
        view.flags.writeable = False
        return view

    @property
    def owners(self) -> np.ndarray:
        """The name of each enrolled encoding, as an index into :attr:`names`."""
        return self._owners.copy()

    def __len__(self) -> int:
        """The number of enrolled encodings (several per person are allowed)."""
        return len(self._owners)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, images: Any) -> np.ndarray:
        """Encodings ``(N, d)`` float32 of a batch of images (or of one image)."""
        x = self._images("encode()", images)
        return self._encode("encode()", x)

    def _images(self, where: str, images: Any) -> np.ndarray:
        try:
            x = np.asarray(images)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{where}: images must be a numeric array, got {exc}") from None
        if x.dtype.kind not in "biuf":
            raise TypeError(
                f"{where}: images must have a bool, integer or floating-point dtype, got "
                f"dtype {x.dtype}"
            )
        shape = self.input_shape
        if shape is not None:
            if x.shape == shape:
                x = x[None]
            if x.shape[1:] != shape:
                raise ValueError(
                    f"{where}: images must have shape (N, {', '.join(map(str, shape))}) or "
                    f"({', '.join(map(str, shape))}) for this encoder, got {x.shape}"
                )
        if len(x) == 0:
            raise ValueError(f"{where}: images must hold at least one image, got shape {x.shape}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{where}: images must be finite, got NaN or infinity")
        # float32 here: 8-bit pixels are what a face encoder (which rescales them) expects,
        # and predict() would warn about them.
        return x if x.dtype.kind == "f" else x.astype(np.float32)

    def _encode(
        self, where: str, x: np.ndarray, batch_size: int | None = None, client: Any = None
    ) -> np.ndarray:
        size = self.batch_size if batch_size is None else batch_size

        def run(x: np.ndarray) -> np.ndarray:
            if client is None:
                return np.asarray(self.encoder.predict(x, batch_size=size, verbose=0))
            # the same bits on a Dask cluster: the encoder travels as its model file
            from ..distributed import chunked, map_model

            images = chunked(x, size, client)
            return np.asarray(
                map_model(
                    self.encoder, images, method="predict", batch_size=size, client=client
                ).compute()
            )

        if self.mirror and x.ndim != 4:
            raise ValueError(
                f"{where}: mirror=True flips images (N, H, W, C) left to right, got shape {x.shape}"
            )
        out = run(x)
        if self.mirror and out.ndim == 2:
            flipped = run(np.ascontiguousarray(x[:, :, ::-1]))
            mean = (out.astype(np.float64) + flipped) / 2
            norms = (np.linalg.norm(out, axis=1) + np.linalg.norm(flipped, axis=1)) / 2
            length = np.linalg.norm(mean, axis=1)
            out = mean * (norms / np.maximum(length, 1e-12))[:, None]
        if out.ndim != 2 or len(out) != len(x):
            raise ValueError(
                f"{where}: the encoder must give one encoding vector per image, got outputs "
                f"of shape {out.shape} for {len(x)} images"
            )
        if self._dim is not None and out.shape[1] != self._dim:
            raise ValueError(
                f"{where}: the encoder gives {out.shape[1]}-d encodings but the database "
                f"holds {self._dim}-d ones"
            )
        if not np.isfinite(out).all():
            raise ValueError(f"{where}: the encoder gave non-finite encodings")
        return np.ascontiguousarray(out, dtype=np.float32)

    # -- enrolment --------------------------------------------------------------------------
    def enroll(self, name: str, images: Any) -> None:
        """Add the encodings of ``images`` (one image or a batch) under ``name`` (added to
        the person's earlier encodings when already enrolled)."""
        where = "enroll()"
        _name(where, name)
        x = self._images(where, images)
        self._add(np.full(len(x), name, dtype=object), self._encode(where, x))

    def enroll_many(
        self,
        names: Sequence[str],
        images: Any,
        *,
        batch_size: int | None = None,
        client: Any = None,
    ) -> None:
        """Enrol many people at once: ``names[i]`` is the person in ``images[i]``.

        The images are encoded in batches of ``batch_size`` (default: the database's).
        With ``client`` (a ``dask.distributed.Client``; ``pip install cnnkit[dask]``) they
        are encoded on that cluster by :func:`cnnkit.distributed.map_model`, to the same
        bits as here.
        """
        where = "enroll_many()"
        labels = list(names) if not isinstance(names, str) else None
        if labels is None:
            raise TypeError(
                f"{where}: names must be a sequence of strings, one per image, got a str"
            )
        for n in labels:
            _name(where, n)
        x = self._images(where, images)
        if len(labels) != len(x):
            raise ValueError(
                f"{where}: names must have one entry per image ({len(x)}), got {len(labels)}"
            )
        if batch_size is not None:
            if (
                isinstance(batch_size, bool)
                or not isinstance(batch_size, (int, np.integer))
                or batch_size < 1
            ):
                raise ValueError(f"{where}: batch_size must be an int >= 1, got {batch_size!r}")
        size = None if batch_size is None else int(batch_size)
        encodings = self._encode(where, x, size, client)
        self._add(np.asarray(labels, dtype=object), encodings)

    def add_encodings(self, names: Sequence[str], encodings: Any) -> None:
        """Enrol precomputed encodings ``(M, d)`` (``names[i]`` owns row ``i``)."""
        where = "add_encodings()"
        labels = [_name(where, n) for n in names]
        e = np.asarray(encodings)
        if e.dtype.kind != "f" or e.ndim != 2 or len(e) != len(labels):
            raise ValueError(
                f"{where}: encodings must be a float array (len(names)={len(labels)}, d), got "
                f"dtype {e.dtype} shape {e.shape}"
            )
        if self._dim is not None and e.shape[1] != self._dim:
            raise ValueError(
                f"{where}: encodings must be {self._dim}-d like the database's, got {e.shape[1]}"
            )
        if not np.isfinite(e).all():
            raise ValueError(f"{where}: encodings must be finite")
        self._add(np.asarray(labels, dtype=object), np.ascontiguousarray(e, dtype=np.float32))

    def _add(self, labels: np.ndarray, encodings: np.ndarray) -> None:
        owners = np.empty(len(labels), np.int64)
        for i, n in enumerate(labels):
            if n not in self._index:
                self._index[n] = len(self._names)
                self._names.append(n)
            owners[i] = self._index[n]
        if self._dim is None or not len(self._owners):
            self._dim = encodings.shape[1]
            self._encodings = encodings.copy()
        else:
            self._encodings = np.concatenate([self._encodings, encodings])
        self._squares = np.einsum("ij,ij->i", self._encodings, self._encodings)
        self._panels = None
        self._owners = np.concatenate([self._owners, owners])

    def remove(self, name: str) -> None:
        """Forget ``name`` and all its encodings; KeyError when it is not enrolled."""
        index = self._known("remove()", name)
        keep = self._owners != index
        self._encodings = np.ascontiguousarray(self._encodings[keep])
        self._squares = self._squares[keep]
        self._panels = None
        owners = self._owners[keep]
        self._owners = owners - (owners > index)
        del self._names[index]
        self._index = {n: i for i, n in enumerate(self._names)}

    def _known(self, where: str, name: Any) -> int:
        _name(where, name)
        if name not in self._index:
            shown = ", ".join(repr(n) for n in self._names[:5])
            more = "" if len(self._names) <= 5 else f" and {len(self._names) - 5} more"
            raise KeyError(
                f"{where}: {name!r} is not enrolled (enrolled: {shown or 'nobody'}{more})"
            )
        return self._index[name]

    def _require_people(self, where: str) -> None:
        if not len(self._owners):
            raise ValueError(f"{where}: the database is empty; enroll someone first")

    # -- search -----------------------------------------------------------------------------
    def search(self, encodings: Any) -> tuple[np.ndarray, np.ndarray]:
        """The nearest enrolled encoding of each query encoding: ``(row, distance)``.

        Parameters
        ----------
        encodings : array (N, d) or (d,)

        Returns
        -------
        rows : int64 (N,)
            Index into :attr:`encodings` (ties: the lowest row).
        distances : float32 (N,)
            Euclidean.
        """
        where = "search()"
        self._require_people(where)
        q = np.asarray(encodings)
        if q.ndim == 1:
            q = q[None]
        if q.dtype.kind != "f" or q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(
                f"{where}: encodings must be float (N, {self._dim}), got dtype {q.dtype} shape "
                f"{q.shape}"
            )
        q = np.ascontiguousarray(q, dtype=np.float32)
        best = np.empty(len(q), np.int64)
        best_d2 = np.empty(len(q), np.float32)
        for s in range(0, len(q), _QUERY_TILE):
            rows, d2 = self._nearest(q[s : s + _QUERY_TILE])
            best[s : s + len(rows)], best_d2[s : s + len(rows)] = rows, d2
        return best, np.sqrt(np.maximum(best_d2, 0))

    def _nearest(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, squares = self._encodings, self._squares
        q_squares = np.einsum("ij,ij->i", q, q)
        if len(q) < _GEMV_ROWS:
            # (M, n) products, one matrix-vector pass each: no packed copy of the matrix.
            dots = np.stack([e @ row for row in q], axis=1)
            d2 = squares[:, None] - 2 * dots
            rows = np.argmin(d2, axis=0)
            return rows, d2[rows, np.arange(len(q))] + q_squares
        if self._panels is None:
            # Stored as -2 e^T so that one fused GEMM, q @ (-2 e^T) + |e|^2 (the squares as
            # the bias of every row), gives a (queries, tile) block whose row minima are
            # the nearest rows: no further pass over the block but the argmin.
            self._panels = [
                np.ascontiguousarray(-2 * e[s : s + _ENROLLED_TILE].T)
                for s in range(0, len(e), _ENROLLED_TILE)
            ]
        best = np.zeros(len(q), np.int64)
        best_d2 = np.full(len(q), np.inf, np.float32)
        every = np.arange(len(q))
        for t, panel in enumerate(self._panels):
            s = t * _ENROLLED_TILE
            block = ops.matmul(q, panel, bias=squares[s : s + panel.shape[1]])
            rows = np.argmin(block, axis=1)
            d2 = block[every, rows]
            better = d2 < best_d2
            best[better], best_d2[better] = rows[better] + s, d2[better]
        return best, best_d2 + q_squares

    # -- verification and recognition ---------------------------------------------------
    def distances_to(self, images: Any, name: str) -> np.ndarray:
        """Distance of each image to ``name``: to the closest of that person's encodings."""
        where = "distances_to()"
        index = self._known(where, name)
        x = self._images(where, images)
        q = self._encode(where, x)
        e = self._encodings[self._owners == index]
        d2 = (
            np.einsum("ij,ij->i", q, q)[:, None]
            + np.einsum("ij,ij->i", e, e)[None, :]
            - 2 * (q @ e.T)
        )
        return np.sqrt(np.maximum(d2.min(axis=1), 0)).astype(np.float32)

    def verify(self, image: Any, claimed_name: str) -> tuple[Any, Any]:
        """Is this ``claimed_name``? ``(accepted, distance)``: the distance to the person's
        closest encoding, accepted when at most the threshold.

        One image gives ``(bool, float)``; a batch of N images gives two (N,) arrays.
        KeyError for a name that is not enrolled.
        """
        where = "verify()"
        self._known(where, claimed_name)
        single = self._single(image)
        d = self.distances_to(image, claimed_name)
        accepted = d <= self.threshold
        if single:
            return bool(accepted[0]), float(d[0])
        return accepted, d

    def identify(self, image: Any) -> tuple[Any, Any]:
        """Who is this? ``(name, distance)`` of the nearest enrolled encoding, with ``None``
        for the name when the distance exceeds the threshold (an unknown person).

        One image gives ``(str | None, float)``; a batch gives a list of names and an array.
        """
        where = "identify()"
        self._require_people(where)
        single = self._single(image)
        x = self._images(where, image)
        rows, d = self.search(self._encode(where, x))
        names = [
            self._names[self._owners[r]] if dist <= self.threshold else None
            for r, dist in zip(rows, d)
        ]
        if single:
            return names[0], float(d[0])
        return names, d

    def _single(self, image: Any) -> bool:
        return self.input_shape is not None and np.shape(image) == self.input_shape

    # -- files --------------------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write the database to ``path`` (a zip of JSON and ``.npz``), atomically: a crash
        leaves the previous file intact."""
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "names": self._names,
            "threshold": self.threshold,
            "mirror": self.mirror,
            "dim": self._dim,
            "count": len(self._owners),
        }
        text = json.dumps(meta)
        arrays: dict[str, np.ndarray] = {"encodings": self._encodings, "owners": self._owners}
        if self._dim is None:
            arrays["encodings"] = np.zeros((0, 0), np.float32)

        def write(f: Any) -> None:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
                z.writestr(_META, text)
                z.writestr(_ARRAYS, _npz_bytes(arrays))

        _atomic_write(path, write)

    @classmethod
    def load(
        cls, path: Any, encoder: Any, *, threshold: float | None = None, batch_size: int = 256
    ) -> FaceDatabase:
        """A database saved by :meth:`save`, used with ``encoder`` (which must give
        encodings of the saved dimension). ``threshold`` overrides the saved one.

        Raises
        ------
        FileNotFoundError
        ValueError
            For a file that is not a face database, is corrupt, or was made with an encoder
            of another encoding dimension.
        """
        where = "FaceDatabase.load()"
        path = os.fspath(path)

        def fail(reason: str) -> NoReturn:
            raise ValueError(f"{where}: {path!r}: {reason}")

        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: no such file {path!r}")
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                budget = _zipsafe.Budget(4 * size + (1 << 20))
                allowed = {_META, _ARRAYS}
                with _zipsafe.open_zip(f, allowed, "the file") as z:
                    infos = _zipsafe.members(z, allowed, size, "the file")
                    if set(infos) != allowed:
                        fail("not a face database (members missing)")
                    meta = json.loads(_zipsafe.read_member(z, infos[_META], budget, "the file"))
                    buffer = _zipsafe.read_member(z, infos[_ARRAYS], budget, "the file")
            arrays = _zipsafe.read_npz(
                buffer,
                {"encodings", "owners"},
                budget,
                _ARRAYS,
                (np.dtype(np.float32), np.dtype(np.int64)),
            )
        except _zipsafe.BadFile as exc:
            fail(str(exc))
        except _zipsafe.DECODE_ERRORS as exc:
            if str(exc).startswith(where):
                raise
            fail(f"corrupt ({type(exc).__name__}: {_short(str(exc))})")
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            fail("not a cnnkit face database (no format tag)")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            fail(f"format version {version!r} is newer than this cnnkit ({_FORMAT_VERSION})")
        names, dim, saved_threshold = meta.get("names"), meta.get("dim"), meta.get("threshold")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            fail("malformed name list")
        if len(set(names)) != len(names):
            fail("a name is listed twice")
        if set(arrays) != {"encodings", "owners"}:
            fail("encodings.npz must hold the arrays encodings and owners")
        e, owners = arrays["encodings"], arrays["owners"]
        if e.dtype != np.float32 or owners.dtype != np.int64:
            fail("encodings.npz must hold float32 encodings and int64 owners")
        count = meta.get("count")
        if owners.ndim != 1 or len(owners) != count or e.ndim != 2 or len(e) != count:
            fail(f"{count!r} encodings recorded, arrays of shapes {e.shape} and {owners.shape}")
        if count and (e.shape[1] != dim or owners.min() < 0 or owners.max() >= len(names)):
            fail("encodings or owners do not match the recorded dimension and names")
        if count and set(np.unique(owners).tolist()) != set(range(len(names))):
            fail("a listed name owns no encoding")
        if not np.isfinite(e).all():
            fail("non-finite encodings")
        if not isinstance(saved_threshold, (int, float)) or isinstance(saved_threshold, bool):
            fail(f"malformed threshold {saved_threshold!r}")
        mirror = meta.get("mirror", False)  # absent from files written before it existed
        if not isinstance(mirror, bool):
            fail(f"malformed mirror flag {mirror!r}")
        db = cls(
            encoder,
            float(saved_threshold) if threshold is None else threshold,
            batch_size=batch_size,
            mirror=mirror,
        )
        if count:
            probe = db._probe_dim()
            if probe is not None and probe != dim:
                raise ValueError(
                    f"{where}: {path!r} holds {dim}-d encodings but the encoder gives {probe}-d "
                    "ones: the database was made with another encoder"
                )
            db._add(np.asarray([names[o] for o in owners], dtype=object), e)
            db._names = list(names)  # keep the saved order even if first rows were reordered
            db._index = {n: i for i, n in enumerate(names)}
            db._owners = owners.copy()
        return db

    def _probe_dim(self) -> int | None:
        """The encoder's encoding dimension, from one zero image (None without an input
        shape)."""
        if self.input_shape is None:
            return None
        out = np.asarray(
            self.encoder.predict(np.zeros((1, *self.input_shape), np.float32), verbose=0)
        )
        return int(out.shape[-1]) if out.ndim == 2 else None

    def __repr__(self) -> str:
        return (
            f"FaceDatabase({len(self._names)} people, {len(self._owners)} encodings, "
            f"dim={self._dim}, threshold={self.threshold}"
            f"{', mirror=True' if self.mirror else ''})"
        )


def _name(where: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{where}: a name must be a non-empty str, got {name!r}")
    return name


def _threshold(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{where}: threshold must be a real number, got {type(value).__name__}")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: threshold must be a finite number >= 0, got {value!r}")
    return float(value)
