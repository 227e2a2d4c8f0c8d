"""cnnkit.distributed on a LocalCluster the tests start: results bit-identical to one
process whatever the chunking, a worker killed mid-task, unreadable files, the writers.

One two-process cluster serves the module (starting one costs seconds); models and data are
tiny, so the module's time is mostly the cluster's.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import types
import zipfile

import numpy as np
import pytest

import cnnkit
from cnnkit import layers

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
Image = pytest.importorskip("PIL.Image")

import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402

from cnnkit import distributed as cd  # noqa: E402
from cnnkit.detection import detect, yolo_model  # noqa: E402

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def model():
    return cnnkit.Sequential(
        [
            layers.Input(SHAPE),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.Conv2D(8, 3, activation="relu", name="c2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(10),
        ],
        seed=0,
    )


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((37, *SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory, images):
    """PNGs of the images quantised to uint8, and the arrays the model sees for them."""
    root = tmp_path_factory.mktemp("images")
    pixels = np.round(images * 255).astype(np.uint8)
    paths = []
    for i, p in enumerate(pixels):
        path = str(root / f"img_{i:03d}.png")
        Image.fromarray(p).save(path)
        paths.append(path)
    return paths, pixels.astype(np.float32) / np.float32(255)


@pytest.mark.parametrize("chunks", [37, 10, 1, (3, 10, 24)])
def test_predict_is_bit_identical_to_one_process_for_any_chunking(client, model, images, chunks):
    x = da.from_array(images, chunks=(chunks, *SHAPE))
    out = cd.map_model(model, x, batch_size=4, client=client)
    assert out.chunks[0] == x.chunks[0]
    np.testing.assert_array_equal(out.compute(), model.predict(images))


def test_the_model_is_loaded_once_per_worker(client, model, images, monkeypatch):
    x = da.from_array(images, chunks=(4, *SHAPE))
    cd.map_model(model, x, client=client).compute()
    # saved again later (the zip records other times): the same model, the same cache entry
    later = time.time() + 100
    clock = types.SimpleNamespace(**vars(time))
    clock.time = lambda: later
    monkeypatch.setattr(zipfile, "time", clock)
    again = cd.map_model(model, x, client=client)
    clock.time = lambda: later + 100
    digest = cd._model_file("test", model)[1].digest  # of bytes no call above wrote
    monkeypatch.undo()
    again.compute()
    counts = client.run(cd._load_counts)
    assert len(counts) == 2
    assert all(c[digest] == 1 for c in counts.values()), counts


def test_kernel_threads_share_the_cores_among_the_task_slots(client, model, images):
    x = da.from_array(images, chunks=(10, *SHAPE))
    cd.map_model(model, x, client=client).compute()
    cores = client.run(cd._cores)
    threads = client.run(cnnkit.get_num_threads)
    # two workers of one thread on one host: each gets half the cores
    assert all(threads[w] == max(1, cores[w] // 2) for w in threads), (threads, cores)
    cd.map_model(model, x, client=client, threads_per_worker=3).compute()
    assert set(client.run(cnnkit.get_num_threads).values()) == {3}


def test_features_and_embed_match_one_process(client, model, images):
    x = da.from_array(images, chunks=(9, *SHAPE))
    feats = cd.map_model(model, x, method="features", layer="c2", batch_size=5, client=client)
    np.testing.assert_array_equal(feats.compute(), model.activations(images, ["c2"])["c2"].numpy())
    emb = cd.map_model(model, x, method="embed", client=client).compute()
    raw = model.predict(images)
    expected = raw / np.sqrt(np.maximum((raw * raw).sum(axis=1, keepdims=True), 1e-12))
    np.testing.assert_array_equal(emb, expected)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)


def test_embed_keeps_an_encoder_that_already_normalises(client, images):
    encoder = cnnkit.Sequential(
        [layers.Input(SHAPE), layers.Flatten(), layers.Dense(6), layers.UnitNormalization()],
        seed=1,
    )
    x = da.from_array(images, chunks=(20, *SHAPE))
    out = cd.map_model(encoder, x, method="embed", client=client).compute()
    np.testing.assert_array_equal(out, encoder.predict(images))


def test_detect_matches_yolo_detect(client, images, tmp_path):
    yolo = yolo_model((16, 16, 3), anchors=[[4, 4], [8, 8]], num_classes=2, width=4, downsamples=2)
    path = tmp_path / "yolo.cnnkit"
    yolo.save(path)
    options = {"score_threshold": 0.001, "max_detections": 5}
    x = da.from_array(images[:9], chunks=(4, *SHAPE))
    got = cd.map_model(str(path), x, method="detect", detect_options=options, client=client)
    assert isinstance(got, db.Bag)
    got = got.compute()
    expected = detect(yolo, images[:9], **options)
    assert len(got) == 9 and sum(len(d["boxes"]) for d in got) > 0
    for g, e in zip(got, expected):
        for key in ("boxes", "scores", "classes"):
            np.testing.assert_array_equal(g[key], e[key])


def test_files_from_a_list_and_a_bag(client, model, files):
    paths, seen = files
    expected = model.predict(seen)
    out = cd.map_model(model, paths, partition_size=8, client=client)
    assert out.chunks[0] == (8, 8, 8, 8, 5)
    np.testing.assert_array_equal(out.compute(), expected)
    bag = db.from_sequence(paths, npartitions=3)
    np.testing.assert_array_equal(cd.map_model(model, bag, client=client).compute(), expected)


def test_detect_on_files_names_them(client, files):
    paths, seen = files
    yolo = yolo_model((16, 16, 3), anchors=[[4, 4]], num_classes=2, width=4, downsamples=2)
    options = {"score_threshold": 0}
    got = cd.map_model(yolo, paths[:5], method="detect", detect_options=options, client=client)
    got = got.compute()
    assert [d["file"] for d in got] == paths[:5]
    expected = detect(yolo, seen[:5], score_threshold=0)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g["scores"], e["scores"])


@pytest.fixture
def with_bad_files(files, tmp_path):
    paths, seen = files
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(small)
    return [*paths[:6], str(corrupt), *paths[6:12], str(small)], seen[:12], corrupt, small


def test_an_unreadable_file_raises_naming_it(client, model, with_bad_files):
    paths, _, _, small = with_bad_files
    with pytest.raises(ValueError, match=r"map_model\(\): cannot read image .*corrupt\.png"):
        cd.map_model(model, paths[:-1], partition_size=4, client=client).compute()
    with pytest.raises(ValueError, match=r"small\.png.*has shape \(8, 8, 3\) but the model"):
        cd.map_model(model, [small], client=client).compute()


def test_skip_records_the_unreadable_files_and_keeps_the_rest(client, model, with_bad_files):
    paths, seen, corrupt, small = with_bad_files
    out, skipped = cd.map_model(model, paths, partition_size=4, on_error="skip", client=client)
    out, skipped = dask.compute(out, skipped)
    np.testing.assert_array_equal(out, model.predict(seen))
    assert [s["file"] for s in skipped] == [str(corrupt), str(small)]
    assert "UnidentifiedImageError" in skipped[0]["error"]
    assert "shape (8, 8, 3)" in skipped[1]["error"]


def test_a_worker_killed_mid_task_changes_nothing(client, model, files, tmp_path):
    paths, seen = files
    calls, marker = str(tmp_path / "calls"), str(tmp_path / "killed")

    def preprocess(pixels):
        # Every decode adds a byte to `calls`; the first to find ten there kills its own
        # worker (SIGKILL: no clean-up) in the middle of a model task, while the worker
        # holds finished blocks too. Dask reruns what was lost on the other worker.
        with open(calls, "ab") as f:
            f.write(b".")
        if os.path.getsize(calls) >= 10 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return pixels.astype(np.float32) / np.float32(255)

    before = set(client.scheduler_info()["workers"])
    out = cd.map_model(model, paths, partition_size=2, preprocess=preprocess, client=client)
    np.testing.assert_array_equal(out.compute(), model.predict(seen))
    assert os.path.exists(marker)
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != before  # the nanny started a new one


def test_to_npy_streams_blocks_of_unknown_size(client, model, with_bad_files, tmp_path):
    paths, seen, _, _ = with_bad_files
    out, _ = cd.map_model(model, paths, partition_size=4, on_error="skip", client=client)
    target = tmp_path / "out.npy"
    shape = cd.to_npy(out, target, client=client, window=2)
    assert shape == (12, 10)
    np.testing.assert_array_equal(np.load(target, mmap_mode="r"), model.predict(seen))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".cnnkit-")]  # no temporary


def test_to_npy_with_the_local_scheduler(model, images, tmp_path):
    x = da.from_array(images, chunks=(7, *SHAPE))
    out = cd.map_model(model, x, method="features", layer="c2")
    target = tmp_path / "feats.npy"
    with dask.config.set(scheduler="synchronous"):
        assert cd.to_npy(out, target) == (37, 14, 14, 8)
    np.testing.assert_array_equal(np.load(target), model.activations(images, ["c2"])["c2"].numpy())


def test_to_zarr(client, model, images, tmp_path):
    zarr = pytest.importorskip("zarr")
    x = da.from_array(images, chunks=(10, *SHAPE))
    z = cd.to_zarr(cd.map_model(model, x, client=client), str(tmp_path / "out.zarr"), client=client)
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "out.zarr"))[:], model.predict(images)
    )
    assert z.chunks == (10, 10)


def test_thread_workers_share_one_model(model, images, restore_threads):
    # Thread-based workers run in this process: the kernels release the GIL, and features
    # (whose pass marks layers) take the model's lock.
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=3,
        processes=False,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    with cluster, distributed.Client(cluster) as c:
        x = da.from_array(images, chunks=(3, *SHAPE))
        feats = cd.map_model(model, x, method="features", layer="c2", client=c)
        pred = cd.map_model(model, x, client=c)
        f, p = dask.compute(feats, pred)
    np.testing.assert_array_equal(f, model.activations(images, ["c2"])["c2"].numpy())
    np.testing.assert_array_equal(p, model.predict(images))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "classify"}, ValueError, "method must be 'predict', 'features', 'embed'"),
        ({"method": "features"}, ValueError, "needs layer="),
        ({"layer": "c2"}, ValueError, "layer= applies to 'features' and 'embed'"),
        ({"method": "features", "layer": "nope"}, ValueError, "no layer named 'nope'"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"threads_per_worker": 0}, ValueError, "threads_per_worker must be >= 1"),
        ({"on_error": "ignore"}, ValueError, "on_error must be 'raise' or 'skip'"),
        ({"on_error": "skip"}, ValueError, "on_error='skip' applies to image files"),
        ({"client": "tcp://x"}, TypeError, "client must be a dask.distributed.Client"),
        ({"method": "detect"}, ValueError, "carries its anchors"),
        ({"detect_options": {}}, ValueError, "detect_options applies to method='detect'"),
        ({"partition_size": 3}, ValueError, "partition_size applies to a list of paths"),
    ],
)
def test_bad_arguments_are_named(model, images, kwargs, error, message):
    x = da.from_array(images, chunks=(10, *SHAPE))
    with pytest.raises(error, match=r"map_model\(\): .*" + message.replace("(", r"\(")):
        cd.map_model(model, x, **kwargs)


def test_bad_collections_are_named(model, images, tmp_path):
    with pytest.raises(TypeError, match=r"map_model\(\): collection must be a dask.array"):
        cd.map_model(model, images)
    with pytest.raises(TypeError, match=r"collection must hold file paths, got int"):
        cd.map_model(model, ["a.png", 3])
    with pytest.raises(ValueError, match=r"empty list of paths"):
        cd.map_model(model, [])
    with pytest.raises(ValueError, match=r"the images have shape \(8, 8, 3\)"):
        cd.map_model(model, da.zeros((4, 8, 8, 3), chunks=2))
    with pytest.raises(TypeError, match=r"model_or_path must be a cnnkit model"):
        cd.map_model(object(), [str(tmp_path / "a.png")])
    with pytest.raises(FileNotFoundError, match=r"no such file"):
        cd.map_model(str(tmp_path / "missing.cnnkit"), [str(tmp_path / "a.png")])
    with pytest.raises(TypeError, match=r"to_npy\(\): result must be a dask.array"):
        cd.to_npy(images, tmp_path / "x.npy")


def test_chunked_gives_two_chunks_per_slot_in_whole_batches(client, model, images):
    x = cd.chunked(images, 4, client=client)  # 2 slots: about 37 / 4 rows, rounded up to 4
    assert x.chunks[0] == (12, 12, 12, 1)
    np.testing.assert_array_equal(
        cd.map_model(model, x, client=client).compute(), model.predict(images)
    )
    with pytest.raises(ValueError, match=r"chunked\(\): images must have shape \(N, H, W, C\)"):
        cd.chunked(images[0], 4)
    with pytest.raises(TypeError, match=r"chunked\(\): client must be a dask.distributed.Client"):
        cd.chunked(images, 4, client="tcp://x")


def test_face_database_enroll_many_on_a_cluster(client, images):
    from cnnkit.face import FaceDatabase, build_encoder

    encoder = build_encoder(SHAPE, embedding_dim=8, filters=(4, 8), seed=0)
    faces = np.round(images * 255)
    names = [f"person{i % 5}" for i in range(len(faces))]
    here, there = FaceDatabase(encoder, batch_size=4), FaceDatabase(encoder, batch_size=4)
    here.enroll_many(names, faces)
    there.enroll_many(names, faces, client=client)
    assert there.names == here.names
    np.testing.assert_array_equal(there.encodings, here.encodings)
    np.testing.assert_array_equal(there.owners, here.owners)


@pytest.mark.parametrize("layer", [None, "c2", 1])
def test_transfer_extract_features_on_a_cluster(client, model, images, layer, tmp_path):
    from cnnkit.transfer import extract_features

    here = extract_features(model, images, layer=layer, batch_size=8, progress=False)
    there = extract_features(model, images, layer=layer, batch_size=8, client=client)
    np.testing.assert_array_equal(there, here)
    target = tmp_path / "features.npy"
    written = extract_features(model, images, layer=layer, path=target, client=client)
    np.testing.assert_array_equal(written, here)
    again = extract_features(model, images, layer=layer, path=target, client=client)
    np.testing.assert_array_equal(again, here)  # the complete file, returned as it is


def test_transfer_extract_features_on_a_cluster_refuses_loaders(client, model, images):
    from cnnkit.transfer import extract_features

    with pytest.raises(TypeError, match=r"extract_features\(\): with client=, x_or_loader must"):
        extract_features(model, iter([images[:4]]), client=client)


def test_a_model_with_several_outputs_is_refused(images):
    inputs = layers.Input(SHAPE)
    flat = layers.Flatten()(inputs)
    two = cnnkit.Model(inputs, [layers.Dense(2)(flat), layers.Dense(3)(flat)])
    with pytest.raises(ValueError, match=r"map_model\(\): method='predict' needs a model with one"):
        cd.map_model(two, da.from_array(images, chunks=(10, *SHAPE)))


def test_without_dask_the_error_names_the_extra(model, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r"pip install cnnkit\[dask\]"):
        cd.map_model(model, images)
