"""Memory of inference calls (cnnkit.models.memory, csrc/block_cache.hpp): arrays made
without a gradient tape come from a cache of large blocks that stay mapped between calls.
Checked: the outputs of a call survive later calls, the values are those of a call with a
tape, blocks are reused (and zeroed when NumPy asks for zeros), a functional model lets go
of its intermediates as soon as no later layer reads them, threads, the budget and bad
arguments."""

from __future__ import annotations

import gc
import os
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from isolated import run_in_forked_child

import cnnkit
from cnnkit import _core, layers
from cnnkit import autograd as ag
from cnnkit.models import memory

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

HANDLER = "cnnkit_block_cache"


def _residual_model(seed: int = 0) -> cnnkit.Model:
    # Activations of 8 x 48 x 48 x 32 floats (2.4 MB): blocks the cache keeps.
    inputs = layers.Input((48, 48, 3))
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="stem")(inputs)
    y = layers.Conv2D(32, 3, padding="same", activation="relu", name="branch_a")(x)
    y = layers.Conv2D(32, 3, padding="same", name="branch_b")(y)
    x = layers.add([x, y], name="residual")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return cnnkit.Model(inputs, layers.Dense(5, name="logits")(x), seed=seed)


@pytest.fixture
def budget():
    before = memory.cache_stats()["budget"]
    yield
    _core._block_cache_budget(before)


def _images(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((8, 48, 48, 3)).astype(np.float32)


def test_outputs_survive_later_calls_and_match_a_taped_call():
    model = _residual_model()
    x1, x2 = _images(1), _images(2)
    taped = [model(x1).data.copy(), model(x2).data.copy()]  # gradient tape on
    with ag.no_grad():
        first = model(x1).data
        kept = first.copy()
        for _ in range(3):
            second = model(x2).data
    assert first.tobytes() == kept.tobytes() == taped[0].tobytes()
    assert second.tobytes() == taped[1].tobytes()


def test_blocks_are_reused_across_calls():
    model = _residual_model()
    x = _images(3)
    with ag.no_grad():
        model(x)
        before = memory.cache_stats()
        out = model(x)
        after = memory.cache_stats()
    assert after["reused"] > before["reused"]
    assert after["created"] == before["created"]  # the second call made no new block
    assert get_handler_name(out.data) == HANDLER
    # With a tape, NumPy's own allocator (training keeps its arrays for the backward pass).
    assert get_handler_name(model(x).data) != HANDLER


def test_functional_model_lets_go_of_intermediates():
    model = _residual_model()
    seen = []
    stem = model.get_layer("stem")
    original = stem.call

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(weakref.ref(out.data))
        return out

    stem.call = recording
    with ag.no_grad():
        out = model(_images(4))
    gc.collect()
    assert seen and seen[0]() is None  # the stem's activation died with its last reader
    assert out.data.shape == (8, 5)
    # activations() still hands out what it was asked for.
    with ag.no_grad():
        feats = model.activations(_images(4), ["stem"])
    assert feats["stem"].shape == (8, 48, 48, 32)


def test_zeros_from_a_reused_block_are_zeros():
    shape = (300, 1000)  # 2.4 MB of float64
    with memory.reusing_memory():
        a = np.full(shape, 7.0)
        assert get_handler_name(a) == HANDLER
        del a
        reused = memory.cache_stats()["reused"]
        z = np.zeros(shape)
        assert memory.cache_stats()["reused"] == reused + 1
        assert not z.any()
        z.resize((600, 1000), refcheck=False)  # realloc: a larger block, contents kept
        assert z.shape == (600, 1000) and not z[:300].any()
    assert get_handler_name(np.ones(3)) != HANDLER  # the context's handler is restored
    del z


def test_release_and_budget(budget):
    with memory.reusing_memory():
        a = np.ones((1 << 20,))  # 8 MiB
    del a
    assert memory.cache_stats()["idle_bytes"] >= 8 << 20
    memory.release_memory()
    stats = memory.cache_stats()
    assert stats["idle_bytes"] == 0 and stats["idle_blocks"] == 0
    _core._block_cache_budget(0)  # off: the context manager leaves NumPy's allocator
    with memory.reusing_memory():
        b = np.ones((1 << 20,))
    assert get_handler_name(b) != HANDLER
    _core._block_cache_budget(4 << 20)  # blocks above the budget are freed, not kept
    with memory.reusing_memory():
        c = np.ones((1 << 20,))
    del c
    assert memory.cache_stats()["idle_bytes"] == 0


def test_concurrent_inference_calls(restore_threads):
    model = _residual_model()
    inputs = [_images(10 + i) for i in range(6)]
    cnnkit.set_num_threads(1)
    with ag.no_grad():
        want = [model(x).data.copy() for x in inputs]

    def run(x):
        with ag.no_grad():
            return model(x).data

    cnnkit.set_num_threads(2)
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(run, inputs * 2))
    for g, w in zip(got, want * 2):
        assert g.tobytes() == w.tobytes()


def test_bad_arguments(monkeypatch):
    with pytest.raises(TypeError, match=r"_set_memory_handler\(\): handler must be a NumPy"):
        _core._set_memory_handler(3)
    with pytest.raises(ValueError, match=r"_block_cache_budget\(\): bytes must be >= 0"):
        _core._block_cache_budget(-1)
    monkeypatch.setenv("CNNKIT_INFERENCE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match=r"CNNKIT_INFERENCE_CACHE_MB must be a whole number"):
        memory._budget_from_environment()
    monkeypatch.setenv("CNNKIT_INFERENCE_CACHE_MB", "-2")
    with pytest.raises(ValueError, match=r"CNNKIT_INFERENCE_CACHE_MB must be >= 0, got -2"):
        memory._budget_from_environment()
    monkeypatch.setenv("CNNKIT_INFERENCE_CACHE_MB", "64")
    assert memory._budget_from_environment() == 64 << 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_use_the_cache():
    # The cache's mutex is taken around fork() (pthread_atfork) and let go on both sides;
    # a handler pairing that wrongly would deadlock or abort the child.
    setup = """
        from cnnkit import layers
        from cnnkit.models import memory
        cnnkit.set_num_threads(2)
        inputs = layers.Input((48, 48, 3))
        x = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
        model = cnnkit.Model(inputs, layers.GlobalAveragePooling2D()(x), seed=0)
        x = np.random.default_rng(0).standard_normal((8, 48, 48, 3)).astype(np.float32)
        expected = model.predict(x, verbose=0)
        assert memory.cache_stats()["idle_blocks"] > 0
        """
    run_in_forked_child(setup, "assert np.array_equal(model.predict(x, verbose=0), expected)")
