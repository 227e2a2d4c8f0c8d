"""cnnkit.face.FaceDatabase: enrolment, verification, recognition, search against brute
force, files (round trip, atomic writes, corrupt and foreign files) and bad input."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from cnnkit.face import FaceDatabase, build_encoder


@pytest.fixture(scope="module")
def encoder():
    return build_encoder((24, 24, 3), 16, (4, 8), seed=0)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 24, 24, 3), dtype=np.uint8)


def _brute(queries: np.ndarray, enrolled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((queries[:, None].astype(np.float64) - enrolled[None]) ** 2).sum(-1))
    return d.argmin(1), d.min(1)


def test_enroll_verify_identify_remove(encoder):
    db = FaceDatabase(encoder, threshold=0.01)  # the GEMM form is exact to ~1e-3 near 0
    people = _images(3, seed=1)
    db.enroll("ann", people[0])
    db.enroll("bob", people[1:2])
    db.enroll("ann", people[2])  # a second encoding of ann
    assert db.names == ["ann", "bob"] and len(db) == 3 and "bob" in db
    accepted, distance = db.verify(people[2], "ann")
    assert accepted is True and distance == pytest.approx(0, abs=1e-3)
    accepted, distance = db.verify(people[1], "ann")
    expected = np.linalg.norm(db.encode(people[1]) - db.encode(people[[0, 2]]), axis=1).min()
    assert distance == pytest.approx(expected, rel=1e-4) and accepted is (distance <= 0.01)
    name, distance = db.identify(people[1])
    assert name == "bob" and distance == pytest.approx(0, abs=1e-3)
    names, distances = db.identify(people)
    assert names == ["ann", "bob", "ann"] and distances.shape == (3,)
    accepted, distances = db.verify(people, "bob")  # a batch: arrays
    assert accepted.tolist() == [False, True, False] and distances.shape == (3,)
    stranger = _images(1, seed=9)[0]
    db.threshold = 0.0
    assert db.identify(stranger)[0] is None  # beyond the threshold: nobody
    db.remove("ann")
    assert db.names == ["bob"] and len(db) == 1
    assert db.identify(people[0])[0] in (None, "bob")
    with pytest.raises(KeyError, match="'ann' is not enrolled"):
        db.verify(people[0], "ann")


def test_enroll_many_in_batches_equals_one_by_one(encoder):
    images = _images(7, seed=2)
    names = ["a", "b", "a", "c", "d", "c", "e"]
    many = FaceDatabase(encoder)
    many.enroll_many(names, images, batch_size=3)
    one = FaceDatabase(encoder)
    for n, im in zip(names, images):
        one.enroll(n, im)
    assert many.names == one.names
    np.testing.assert_allclose(many.encodings, one.encodings, atol=1e-6)
    np.testing.assert_array_equal(many.owners, one.owners)


@pytest.mark.parametrize("queries", [1, 5, 40])
def test_search_equals_brute_force(encoder, queries):
    rng = np.random.default_rng(queries)
    enrolled = rng.standard_normal((9000, 16)).astype(np.float32)  # spans two row tiles
    db = FaceDatabase(encoder)
    db.add_encodings([f"p{i % 100}" for i in range(len(enrolled))], enrolled)
    q = rng.standard_normal((queries, 16)).astype(np.float32)
    q[0] = enrolled[8500]  # an exact hit in the second tile
    rows, d = db.search(q)
    want_rows, want_d = _brute(q, enrolled)
    np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=2e-3)
    assert rows[0] == 8500
    d_all = np.sqrt(((q[:, None].astype(np.float64) - enrolled[None]) ** 2).sum(-1))
    near_tie = np.partition(d_all, 1, axis=1)
    clear = near_tie[:, 1] - near_tie[:, 0] > 1e-3
    np.testing.assert_array_equal(rows[clear], want_rows[clear])


def test_save_load_round_trip(encoder, tmp_path):
    db = FaceDatabase(encoder, threshold=0.6)
    db.enroll_many(["x", "y", "x"], _images(3, seed=4))
    db.remove("x")
    db.enroll("z", _images(2, seed=5))
    path = tmp_path / "people.face"
    db.save(path)
    again = FaceDatabase.load(path, encoder)
    assert again.names == db.names and again.threshold == 0.6
    np.testing.assert_array_equal(again.encodings, db.encodings)
    np.testing.assert_array_equal(again.owners, db.owners)
    probe = _images(4, seed=6)
    assert again.identify(probe)[0] == db.identify(probe)[0]
    assert FaceDatabase.load(path, encoder, threshold=0.2).threshold == 0.2
    empty = FaceDatabase(encoder)
    empty.save(tmp_path / "empty.face")
    assert len(FaceDatabase.load(tmp_path / "empty.face", encoder)) == 0


def test_save_is_atomic(encoder, tmp_path, monkeypatch):
    db = FaceDatabase(encoder)
    db.enroll("a", _images(1))
    path = tmp_path / "db.face"
    db.save(path)
    before = path.read_bytes()
    db.enroll("b", _images(1, seed=3))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash)
    with pytest.raises(OSError, match="disk full"):
        db.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["db.face"]  # no temporary left behind


def test_foreign_and_corrupt_files(encoder, tmp_path):
    db = FaceDatabase(encoder)
    db.enroll("a", _images(2))
    path = tmp_path / "db.face"
    db.save(path)
    other = build_encoder((24, 24, 3), 8, (4, 8))
    with pytest.raises(ValueError, match="16-d encodings but the encoder gives 8-d"):
        FaceDatabase.load(path, other)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    (tmp_path / "bad.face").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.face"):
        FaceDatabase.load(tmp_path / "bad.face", encoder)
    (tmp_path / "text.face").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.face"):
        FaceDatabase.load(tmp_path / "text.face", encoder)
    with zipfile.ZipFile(tmp_path / "model.face", "w") as z:
        z.writestr("face_database.json", '{"format": "something else"}')
        z.writestr("encodings.npz", b"")
    with pytest.raises(ValueError, match=r"not a cnnkit face database|corrupt"):
        FaceDatabase.load(tmp_path / "model.face", encoder)
    with pytest.raises(FileNotFoundError):
        FaceDatabase.load(tmp_path / "missing.face", encoder)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda db: db.identify(_images(1)), ValueError, "database is empty"),
        (lambda db: db.search(np.zeros((1, 16), np.float32)), ValueError, "database is empty"),
        (
            lambda db: db.enroll("a", np.zeros((2, 20, 20, 3))),
            ValueError,
            r"shape \(N, 24, 24, 3\)",
        ),
        (lambda db: db.enroll("a", np.zeros((24, 24))), ValueError, "shape"),
        (lambda db: db.enroll("a", np.array([["x"] * 3] * 24)), TypeError, "dtype"),
        (lambda db: db.enroll("a", np.zeros((0, 24, 24, 3))), ValueError, "at least one"),
        (lambda db: db.enroll("a", np.full((1, 24, 24, 3), np.nan)), ValueError, "finite"),
        (lambda db: db.enroll("", _images(1)), TypeError, "non-empty str"),
        (lambda db: db.enroll(3, _images(1)), TypeError, "non-empty str"),
        (lambda db: db.enroll_many(["a"], _images(2)), ValueError, "one entry per image"),
        (lambda db: db.enroll_many("ab", _images(2)), TypeError, "sequence of strings"),
        (lambda db: db.verify(_images(1)[0], "nobody"), KeyError, "not enrolled"),
        (lambda db: db.remove("nobody"), KeyError, "not enrolled"),
    ],
)
def test_bad_input(encoder, call, error, match):
    with pytest.raises(error, match=match):
        call(FaceDatabase(encoder))


def test_bad_construction_and_dimension_mismatch(encoder):
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        FaceDatabase(encoder, threshold=-1)
    with pytest.raises(TypeError, match="encoder must be a cnnkit model"):
        FaceDatabase(lambda x: x)
    db = FaceDatabase(encoder)
    db.enroll("a", _images(1))
    with pytest.raises(ValueError, match=r"float \(N, 16\)"):
        db.search(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="must be 16-d"):
        db.add_encodings(["b"], np.zeros((1, 8)))


def test_mirror_encodes_the_mean_of_an_image_and_its_mirror(encoder, tmp_path):
    x = _images(5, seed=3)
    flipped = np.ascontiguousarray(x[:, :, ::-1])
    plain = FaceDatabase(encoder)
    a, b = plain.encode(x).astype(np.float64), plain.encode(flipped).astype(np.float64)
    mean = (a + b) / 2
    expected = mean / np.linalg.norm(mean, axis=1, keepdims=True)  # unit-length encoder
    db = FaceDatabase(encoder, 0.5, mirror=True)
    np.testing.assert_allclose(db.encode(x), expected, rtol=1e-5, atol=1e-6)
    # A mirrored image gets the same encoding (up to the order of a float sum).
    np.testing.assert_allclose(db.encode(flipped), db.encode(x), rtol=1e-5, atol=1e-6)
    db.enroll("ann", x[:2])
    db.save(tmp_path / "m.face")
    back = FaceDatabase.load(tmp_path / "m.face", encoder)
    assert back.mirror and "mirror=True" in repr(back)
    np.testing.assert_array_equal(back.identify(x[0])[1], db.identify(x[0])[1])
    assert not FaceDatabase.load(_saved_plain(encoder, tmp_path), encoder).mirror
    with pytest.raises(TypeError, match="mirror must be a bool"):
        FaceDatabase(encoder, mirror="yes")


def _saved_plain(encoder, tmp_path):
    db = FaceDatabase(encoder)
    db.enroll("bob", _images(1, seed=4))
    db.save(tmp_path / "p.face")
    return tmp_path / "p.face"
