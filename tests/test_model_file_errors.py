"""Model files from hostile or broken sources: one test per rejection path (a ValueError
naming the path and what is wrong), bounded memory on bombs and oversized declarations,
the non-finite warning, orphaned temporary files, and files saved by earlier versions."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import modelfiles as mf
import numpy as np
import pytest

import cnnkit
from cnnkit import io as cio

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> bytes:
    return mf.saved_bytes(tmp_path_factory.mktemp("valid"))


def rejects(tmp_path: Path, blob: bytes, match: str, name: str = "bad.cnnkit") -> None:
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=rf"load_model\(\): '.*{name}': .*{match}"):
        cnnkit.load_model(path)


def test_the_valid_file_loads(tmp_path, valid):
    path = tmp_path / "ok.cnnkit"
    path.write_bytes(valid)
    assert cnnkit.load_model(path).compiled


# -- zip layer --------------------------------------------------------------------------------
def test_compression_method_9(tmp_path, valid):
    rejects(tmp_path, mf.with_method(valid, 9), r"compression method 9; expected stored")


def test_encrypted_flag(tmp_path, valid):
    rejects(tmp_path, mf.with_flag(valid, 0x1), r"member 'cnnkit\.json' is encrypted")


def test_central_directory_bit_flips(tmp_path, valid):
    # Each field of the first central header: version, flags, method, time, CRC, sizes, name.
    first = mf.central_headers(valid)[0]
    for field in (4, 8, 10, 12, 16, 20, 24, 28, 46):
        blob = bytearray(valid)
        blob[first + field] ^= 0x5A
        path = tmp_path / f"cd{field}.cnnkit"
        path.write_bytes(bytes(blob))
        with pytest.raises(ValueError, match=rf"load_model\(\): '.*cd{field}\.cnnkit'"):
            cnnkit.load_model(path)


def test_deflate_bit_flip(tmp_path, valid):
    blob = bytearray(mf.rezip(mf.members(valid), zipfile.ZIP_DEFLATED))
    start = mf.local_headers(bytes(blob))[1] + 30 + len("weights.npz")
    blob[start + 40] ^= 0xFF  # inside the deflate stream of weights.npz
    rejects(tmp_path, bytes(blob), r"(Error -3|Bad CRC|invalid|not a valid)")


def test_unexpected_and_duplicate_members(tmp_path, valid):
    parts = mf.members(valid)
    rejects(tmp_path, mf.rezip({**parts, "../../evil.sh": b"x"}), "declares 4 members")
    two = {k: parts[k] for k in ("cnnkit.json", "weights.npz")}
    rejects(tmp_path, mf.rezip({**two, "../../evil.sh": b"x"}), "unexpected member '../../evil")
    with zipfile.ZipFile(tmp_path / "dup.cnnkit", "w") as z:
        for name, data in parts.items():
            if name != "optimizer.npz":
                z.writestr(name, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr("weights.npz", parts["weights.npz"])
    blob = (tmp_path / "dup.cnnkit").read_bytes()
    rejects(tmp_path, blob, "holds the member 'weights.npz' twice", "dup2.cnnkit")


def test_a_directory_of_many_entries_is_refused_before_it_is_parsed(tmp_path, valid):
    parts = mf.members(valid)
    many = {f"m{i}": b"" for i in range(20_000)}
    rejects(
        tmp_path, mf.rezip({**parts, **many}), "declares 20003 members in a .*expected at most 3"
    )
    parts["weights.npz"] = mf.rezip({f"w{i}.npy": b"" for i in range(5000)})
    rejects(tmp_path, mf.rezip(parts), "weights.npz declares 5000 members")


def test_member_declaring_more_than_max_memory(tmp_path, valid):
    blob = mf.with_declared_size(valid, "weights.npz", 2**32 - 1)
    rejects(tmp_path, blob, r"declares 4294967295 bytes, more than the .* of max_memory=")


def test_member_longer_than_it_declares_stops_at_the_declared_size(tmp_path, valid):
    parts = mf.members(valid)
    parts["weights.npz"] = mf.npy_bomb("w0", 64 << 20)
    blob = mf.rezip(parts, zipfile.ZIP_DEFLATED)
    blob = mf.with_declared_size(blob, "weights.npz", 1000)
    rejects(tmp_path, blob, "(Bad CRC|not a valid|corrupt)")


def test_max_memory_argument(tmp_path, valid):
    path = tmp_path / "m.cnnkit"
    path.write_bytes(valid)
    with pytest.raises(ValueError, match=r"'.*m\.cnnkit': .*max_memory=1000 "):
        cnnkit.load_model(path, max_memory=1000)
    assert cnnkit.load_model(path, max_memory=10 * len(valid)).compiled
    for bad in (-1, "1GB", 2.5, True):
        with pytest.raises(ValueError, match=r"max_memory must be None or a number of bytes"):
            cnnkit.load_model(path, max_memory=bad)
    assert cio.default_max_memory(1000) == 4000 + (64 << 20)


# -- JSON layer -------------------------------------------------------------------------------
def test_deeply_nested_json(tmp_path, valid):
    parts = mf.members(valid)
    parts["cnnkit.json"] = b"[" * 200_000 + b"]" * 200_000
    rejects(tmp_path, mf.rezip(parts), "RecursionError")


def test_deeply_nested_architecture(tmp_path, valid):
    # Shallow enough for json, deep enough for the recursive rebuild of nested models.
    parts = mf.members(valid)
    meta = json.loads(parts["cnnkit.json"])
    depth = 450
    wrap = '{"class_name": "Sequential", "config": {"layers": ['
    model = wrap * depth + json.dumps(meta["model"]) + "]}}" * depth
    text = json.dumps({**meta, "model": "MODEL"}).replace('"MODEL"', model)
    parts["cnnkit.json"] = text.encode()
    rejects(tmp_path, mf.rezip(parts), "(RecursionError|bad architecture)")


def test_json_that_is_not_utf8_or_not_an_object(tmp_path, valid):
    parts = mf.members(valid)
    rejects(tmp_path, mf.rezip({**parts, "cnnkit.json": b"\xff\xfe{"}), "UnicodeDecodeError")
    rejects(tmp_path, mf.rezip({**parts, "cnnkit.json": b"[1, 2]"}), "no cnnkit format tag")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(compile=5), "the compile section must be an object, got 5"),
        (lambda m: m.update(compile=[1]), "the compile section must be an object"),
        (lambda m: m["compile"].update(loss=7), "the compile loss must be an object, got 7"),
        (lambda m: m["compile"].update(loss={"one": 7}), "bad compile settings"),
        (lambda m: m["compile"].update(loss={"by_output": 3}), "bad compile settings"),
        (lambda m: m["compile"].update(loss={"per_output": 3}), "bad compile settings"),
        (lambda m: m["compile"].update(metrics=3), "the compile metrics must be an object"),
        (lambda m: m["compile"].update(metrics={"list": 3}), "bad compile settings"),
        (lambda m: m["compile"].update(metrics={"nothing": 1}), "bad compile settings"),
        (lambda m: m["compile"].update(loss_weights="x"), "bad compile settings"),
        (lambda m: m.update(optimizer="adam"), "the optimizer section must be an object"),
        (lambda m: m["optimizer"].update(config=5), "bad compile settings"),
        (lambda m: m["optimizer"].__delitem__("config"), "bad compile settings"),
        (lambda m: m["optimizer"].update(state=7), "bad compile settings"),
        (lambda m: m["optimizer"].update(state={"dict": 7}), "bad compile settings"),
        (lambda m: m["optimizer"].update(state={"array": "zz"}), "corrupt optimizer.npz"),
    ],
)
def test_wrongly_typed_compile_and_optimizer_sections(tmp_path, valid, edit, match):
    rejects(tmp_path, mf.with_meta(valid, edit), match)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(weights=3), "no weight list"),
        (lambda m: m["weights"].append(5), "malformed weight entry 5"),
        (lambda m: m["weights"][0].update(key="nope"), "unexpected member 'w0.npy'"),
        (
            lambda m: m["weights"].append({**m["weights"][0], "key": "x"}),
            "has no array in weights.npz",
        ),
        (lambda m: m["weights"][0].update(shape=[9]), r"has shape \(3, 3, 1, 2\) but the file"),
        (lambda m: m["weights"][1].update(key="w0"), "names an array twice"),
        (lambda m: m.update(model=[]), "no architecture"),
        (lambda m: m.update(state=dict.fromkeys(m["state"], 5)), "bad layer state"),
    ],
)
def test_malformed_weight_list_architecture_and_state(tmp_path, valid, edit, match):
    rejects(tmp_path, mf.with_meta(valid, edit), match)


# -- .npy layer -------------------------------------------------------------------------------
def npy_with_header(shape, descr="<f4", payload=b"\0" * 64) -> bytes:
    header = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return header.getvalue() + payload


def test_npy_header_declaring_a_huge_shape(tmp_path, valid):
    parts = mf.members(valid)
    parts["weights.npz"] = mf.rezip({"w0.npy": npy_with_header((2**40,))})
    rejects(tmp_path, mf.rezip(parts), r"declares shape \(1099511627776,\) .* but holds 64 bytes")


def test_npy_bad_magic_and_header(tmp_path, valid):
    parts = mf.members(valid)
    parts["weights.npz"] = mf.rezip({"w0.npy": b"\x93NUMPY\x09\x00garbage"})
    rejects(tmp_path, mf.rezip(parts), "corrupt weights.npz")
    parts["weights.npz"] = mf.rezip({"w0.npy": b"not an npy file at all"})
    rejects(tmp_path, mf.rezip(parts), "corrupt weights.npz")
    nested = "(" * 3000 + ")" * 3000
    bad = b"\x93NUMPY\x01\x00" + (len(nested) + 1).to_bytes(2, "little") + nested.encode() + b"\n"
    parts["weights.npz"] = mf.rezip({"w0.npy": bad})
    rejects(tmp_path, mf.rezip(parts), "corrupt weights.npz")


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex64, np.uint8])
def test_weight_dtypes_other_than_float32_and_float64(tmp_path, valid, dtype):
    model = mf.small_model()
    parts = mf.members(valid)
    parts["weights.npz"] = mf.npz(
        {f"w{i}": w.astype(dtype) for i, w in enumerate(model.get_weights())}
    )
    name = np.dtype(dtype).name
    rejects(tmp_path, mf.rezip(parts), rf"array 'w0' has dtype {name}; expected float32 or float64")


def test_pickled_object_arrays(tmp_path, valid):
    parts = mf.members(valid)
    parts["weights.npz"] = mf.npz({"w0": np.array([{"evil": 1}], dtype=object)})
    rejects(tmp_path, mf.rezip(parts), "corrupt weights.npz")


def test_float64_weights_in_a_float32_model(tmp_path, valid):
    model = mf.small_model()
    parts = mf.members(valid)
    parts["weights.npz"] = mf.npz(
        {f"w{i}": w.astype(np.float64) for i, w in enumerate(model.get_weights())}
    )
    rejects(tmp_path, mf.rezip(parts), r"is float64 in the file but its layer declares float32")


def test_big_endian_and_fortran_order_weights_load(tmp_path, valid):
    model = mf.small_model()
    weights = model.get_weights()
    parts = mf.members(valid)
    parts["weights.npz"] = mf.npz(
        {
            f"w{i}": np.asfortranarray(w).astype(w.dtype.newbyteorder(">"))
            for i, w in enumerate(weights)
        }
    )
    path = tmp_path / "be.cnnkit"
    path.write_bytes(mf.rezip(parts))
    loaded = cnnkit.load_model(path)
    for a, b in zip(loaded.get_weights(), weights):
        assert a.dtype == np.float32 and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)


def test_non_finite_weights_warn(tmp_path, valid):
    model = mf.small_model()
    weights = model.get_weights()
    weights[0][0, 0, 0, 0] = np.nan
    weights[2][1] = np.inf
    parts = mf.members(valid)
    parts["weights.npz"] = mf.npz({f"w{i}": w for i, w in enumerate(weights)})
    path = tmp_path / "nan.cnnkit"
    path.write_bytes(mf.rezip(parts))
    with pytest.warns(cio.NonFiniteWeightsWarning, match=r"'conv2d.*/kernel', 'dense.*/kernel'"):
        loaded = cnnkit.load_model(path)
    assert np.isnan(loaded.get_weights()[0][0, 0, 0, 0])
    assert issubclass(cio.NonFiniteWeightsWarning, RuntimeWarning)


# -- architecture against the weights ---------------------------------------------------------
def huge_dense(meta, rename: bool = False):
    """The issue's file: the JSON declares Dense(16000) on 16,000 inputs, the arrays are tiny."""
    meta["model"]["config"]["build_input_shape"] = [16000]
    meta["model"]["config"]["input_layer"]["config"]["input_shape"] = [16000]
    meta["model"]["config"]["layers"] = [
        {
            "class_name": "Dense",
            "config": {"name": "big" if rename else meta["weights"][0]["name"].split("/")[0]},
        }
    ]
    meta["model"]["config"]["layers"][0]["config"]["units"] = 16000


def test_architecture_larger_than_its_weights_fails_before_allocating(tmp_path, valid):
    rejects(
        tmp_path,
        mf.with_meta(valid, huge_dense),
        r"creates weight 'conv2d.*/kernel' of shape \(16000, 16000\), but the file holds",
    )
    rejects(
        tmp_path,
        mf.with_meta(valid, lambda m: huge_dense(m, rename=True)),
        r"creates a weight the file does not hold: weight 'big/kernel' declares 1024000000 bytes",
        "renamed.cnnkit",
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_peak_memory_of_hostile_files_is_bounded(tmp_path, valid):
    """The issue's cases (a 1.5 MB bomb reached 3.0 GB, the Dense(16000) JSON 3.0 GB; here
    a 4 KB bomb of 512 MB, stored or deflated, and one lying about its size), loaded in a
    fresh process: each is a ValueError naming the path, and the peak grows by less than
    the 64 MiB floor of max_memory plus slack."""
    parts = mf.members(valid)
    bomb = {**parts, "weights.npz": mf.npy_bomb("w0", 512 << 20)}
    files = {
        "bomb.cnnkit": mf.rezip(bomb, zipfile.ZIP_DEFLATED),
        "inner-bomb.cnnkit": mf.rezip(bomb),
        "lying-bomb.cnnkit": mf.with_declared_size(
            mf.rezip(bomb, zipfile.ZIP_DEFLATED), "weights.npz", 50 << 20
        ),
        "dense16000.cnnkit": mf.with_meta(valid, huge_dense),
        "dense16000-renamed.cnnkit": mf.with_meta(valid, lambda m: huge_dense(m, rename=True)),
    }
    assert len(files["bomb.cnnkit"]) < 16 << 10
    paths = []
    for name, blob in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(blob)
    peak, outcomes = mf.load_in_subprocess(paths)
    assert outcomes == ["ValueError"] * len(paths)
    assert peak < 100 << 20, f"peak grew by {peak / 2**20:.0f} MiB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_building_a_loaded_model_allocates_no_activations(tmp_path):
    # 8000x8000 inputs into 64 1x1 filters: 16 GB of activations at batch size 1, but the
    # weights are 128 numbers; the rebuild runs on an empty batch.
    small = cnnkit.Sequential([cnnkit.layers.Input((4, 4, 1)), cnnkit.layers.Conv2D(64, 1)], seed=0)
    small.save(tmp_path / "small.cnnkit")

    def widen(meta):
        meta["model"]["config"]["build_input_shape"] = [8000, 8000, 1]
        meta["model"]["config"]["input_layer"]["config"]["input_shape"] = [8000, 8000, 1]

    path = tmp_path / "wide.cnnkit"
    path.write_bytes(mf.with_meta((tmp_path / "small.cnnkit").read_bytes(), widen))
    peak, outcomes = mf.load_in_subprocess([path])
    assert outcomes == ["loaded"]
    assert peak < 100 << 20, f"peak grew by {peak / 2**20:.0f} MiB"
    loaded = cnnkit.load_model(path)
    assert loaded.output_shape == (None, 8000, 8000, 64)
    x = np.ones((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 8000, 8000, 1\)"):
        loaded.predict(x)


def test_flatten_and_reshape_accept_empty_batches():
    model = cnnkit.Sequential(
        [
            cnnkit.layers.Input((4, 3)),
            cnnkit.layers.Reshape((-1, 2)),
            cnnkit.layers.Flatten(),
            cnnkit.layers.Dense(2),
        ],
        seed=0,
    )
    from cnnkit.autograd import no_grad

    with no_grad():
        assert model(np.zeros((0, 4, 3), np.float32)).shape == (0, 2)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_peak_memory_of_a_legitimate_load_is_within_the_default_max_memory(tmp_path):
    # Also shows that the probe sees real allocations: 32 MB of weights must show. (The
    # decoding itself peaks at twice the file; the building forward pass adds the GEMM's
    # packed copy of the kernel.)
    model = cnnkit.Sequential([cnnkit.layers.Input((4000,)), cnnkit.layers.Dense(2000)], seed=0)
    path = tmp_path / "big.cnnkit"
    model.save(path)
    size = path.stat().st_size
    peak, outcomes = mf.load_in_subprocess([path])
    assert outcomes == ["loaded"]
    assert size <= peak < cio.default_max_memory(size), (size, peak)


# -- saving -----------------------------------------------------------------------------------
_KILLED_SAVE = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import cnnkit
    from cnnkit import layers
    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(2)], seed=0)
    real = np.savez
    def slow(*args, **kwargs):
        real(*args, **kwargs)
        print("writing", flush=True)
        time.sleep(60)
    np.savez = slow
    model.save(sys.argv[1])
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and the pid probe are POSIX")
def test_a_killed_save_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    path = tmp_path / "m.cnnkit"
    model = cnnkit.Sequential([cnnkit.layers.Input((3,)), cnnkit.layers.Dense(2)], seed=1)
    model.save(path)
    good = path.read_bytes()
    other = tmp_path / "m.cnnkit.5"  # a different target's temporaries are left alone
    (tmp_path / ".m.cnnkit.5.1.0123abcd.cnnkit-tmp").write_bytes(b"x")
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout.readline() == "writing\n"
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    # The second killed save removed the first one's orphan; its own remains.
    orphans = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".m.cnnkit."))
    assert len(orphans) == 2 and all(p.endswith(".cnnkit-tmp") for p in orphans)
    assert path.read_bytes() == good  # the killed saves never touched the file
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".m.cnnkit.5.1.0123abcd.cnnkit-tmp",
        "m.cnnkit",
    ]
    assert not other.exists()


def test_saved_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        mf.small_model().save(tmp_path / "m.cnnkit")
    finally:
        os.umask(old)
    assert (tmp_path / "m.cnnkit").stat().st_mode & 0o777 == 0o644


# -- compatibility and retention --------------------------------------------------------------
def test_a_file_saved_before_the_hardening_still_loads():
    """tests/data/model_v1.cnnkit was saved by cnnkit at commit 43ff6e6 (a Conv2D, BN,
    pooling, Dropout, Dense model, Adam after one epoch); its predictions are stored beside."""
    loaded = cnnkit.load_model(DATA / "model_v1.cnnkit")
    expected = np.load(DATA / "model_v1_expected.npz")
    np.testing.assert_allclose(loaded.predict(expected["x"]), expected["p"], rtol=1e-5, atol=1e-6)
    assert loaded.compiled and type(loaded.optimizer).__name__ == "Adam"
    assert int(loaded.optimizer.get_state()["iterations"]) == 2


def test_repeated_loads_retain_nothing(tmp_path, valid):
    path = tmp_path / "m.cnnkit"
    path.write_bytes(valid)
    for _ in range(20):
        cnnkit.load_model(path)
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(300):
        cnnkit.load_model(path)
    gc.collect()
    assert sys.getallocatedblocks() - before < 100  # under one block per three loads


def test_load_weights_is_bounded_and_names_the_path(tmp_path, valid):
    path = tmp_path / "w.cnnkit"
    path.write_bytes(valid)
    model = cnnkit.load_model(path)
    path.write_bytes(mf.with_method(valid, 9))
    with pytest.raises(ValueError, match=r"load_weights\(\): '.*w\.cnnkit': .*method 9"):
        model.load_weights(path)
    path.write_bytes(mf.with_meta(valid, lambda m: m.update(state=dict.fromkeys(m["state"], 5))))
    with pytest.raises(ValueError, match=r"load_weights\(\): '.*w\.cnnkit': bad layer state"):
        model.load_weights(path)
    path.write_bytes(json.dumps({}).encode())
    with pytest.raises(ValueError, match=r"load_weights\(\): '.*w\.cnnkit'"):
        model.load_weights(path)
