"""Fused optimizer updates: ``cnnkit.ops.sgd_update`` and ``adam_update`` against
``cnnkit.reference`` bit for bit, thread invariance, the optimizers that use them, and bad
arguments."""

from __future__ import annotations

import numpy as np
import pytest
from arrays import seeded
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import ops, optimizers, reference

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
SHAPES = ((0,), (1,), (7,), (3, 5), (2, 3, 4, 5), (70_001,))


def _state(shape, dtype, count, seed):
    """var, grad and `count` slot arrays; the second-moment slots must be >= 0."""
    arrays = [seeded(shape, dtype, seed=seed + i) for i in range(2 + count)]
    for a in arrays[3:]:
        np.abs(a, out=a)
    return arrays


def _equal(a, b):
    np.testing.assert_array_equal(a, b, strict=True)


@given(
    st.sampled_from(DTYPES),
    st.sampled_from(SHAPES),
    st.sampled_from([0.0, 0.5, 0.9, 1.0]),
    st.booleans(),
    st.sampled_from([0.01, 0.1, 1e-5]),
)
def test_sgd_update_matches_reference_bit_for_bit(dtype, shape, momentum, nesterov, lr):
    var, grad, velocity = _state(shape, dtype, 1, seed=3)
    want = [var.copy(), velocity.copy()]
    spec = {"learning_rate": lr, "momentum": momentum, "nesterov": nesterov}
    reference.sgd_update(want[0], grad, want[1], **spec)
    assert ops.sgd_update(var, grad, velocity, **spec) is None
    _equal(var, want[0])
    _equal(velocity, want[1])


@given(
    st.sampled_from(DTYPES),
    st.sampled_from(SHAPES),
    st.sampled_from([0.0, 0.9]),
    st.sampled_from([0.999, 0.5, 0.0]),
    st.sampled_from([1e-7, 0.0, 1.0]),
    st.booleans(),
)
def test_adam_update_matches_reference_bit_for_bit(dtype, shape, beta_1, beta_2, eps, amsgrad):
    var, grad, m, v, v_hat = _state(shape, dtype, 3, seed=5)
    if not amsgrad:
        v_hat = None
    want = [a.copy() for a in (var, m, v)] + [None if v_hat is None else v_hat.copy()]
    spec = {"step_size": 3e-4, "beta_1": beta_1, "beta_2": beta_2, "epsilon": eps}
    # beta_2 = 0 and eps = 0 divide by a gradient squared to 0 (float32 underflow): inf or
    # NaN, which the kernel must give as NumPy does, without NumPy's warning failing the test
    with np.errstate(divide="ignore", invalid="ignore"):
        reference.adam_update(want[0], grad, want[1], want[2], v_hat=want[3], **spec)
    ops.adam_update(var, grad, m, v, v_hat=v_hat, **spec)
    for got, expected in zip((var, m, v, v_hat), want):
        if expected is not None:
            _equal(got, expected)


def test_non_finite_values_propagate_as_numpy_does():
    var, grad, m, v, v_hat = _state((6,), np.float32, 3, seed=1)
    grad[1], grad[2], v_hat[3] = np.nan, np.inf, np.nan
    got = [a.copy() for a in (var, m, v, v_hat)]
    ops.adam_update(got[0], grad, got[1], got[2], v_hat=got[3], step_size=0.1)
    want = [a.copy() for a in (var, m, v, v_hat)]
    with np.errstate(invalid="ignore"):
        reference.adam_update(want[0], grad, want[1], want[2], v_hat=want[3], step_size=0.1)
    for a, b in zip(got, want):
        _equal(a, b)


def test_gradient_is_cast_and_may_be_non_contiguous():
    var, velocity = np.zeros(6, np.float32), np.zeros(6, np.float32)
    grad = np.arange(12.0)[::2]  # float64, strided
    want = [var.copy(), velocity.copy()]
    reference.sgd_update(want[0], grad, want[1], learning_rate=0.1, momentum=0.9)
    ops.sgd_update(var, grad, velocity, learning_rate=0.1, momentum=0.9)
    _equal(var, want[0])
    _equal(velocity, want[1])


def test_results_do_not_depend_on_the_thread_count(restore_threads):
    shape = (300_001,)  # big enough for several threads
    results = []
    for threads in (1, 2, 3):
        cnnkit.set_num_threads(threads)
        var, grad, m, v, v_hat = _state(shape, np.float32, 3, seed=9)
        ops.adam_update(var, grad, m, v, v_hat=v_hat, step_size=1e-3)
        ops.sgd_update(var, grad, m, learning_rate=0.01, momentum=0.9, nesterov=True)
        results.append((var, m, v, v_hat))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            _equal(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optimizers.SGD(0.05),
        lambda: optimizers.SGD(0.05, momentum=0.9),
        lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        lambda: optimizers.Adam(0.01),
        lambda: optimizers.Adam(0.01, amsgrad=True),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_optimizers_take_the_reference_steps(make, dtype):
    """The optimizers (native for float32/float64, NumPy otherwise) against the reference."""

    class Var:
        def __init__(self, data):
            self.data = data

    variables = [Var(seeded(s, dtype, seed=i)) for i, s in enumerate([(4, 3), (3,), (2, 2, 2)])]
    expected = [v.data.copy() for v in variables]
    opt = make()
    slots = {name: [np.zeros_like(e) for e in expected] for name in ("m", "v", "h")}
    for step in range(3):
        grads = [seeded(e.shape, dtype, seed=10 * step + i) for i, e in enumerate(expected)]
        opt.apply_gradients(zip(grads, variables))
        for i, (e, g) in enumerate(zip(expected, grads)):
            if isinstance(opt, optimizers.SGD):
                reference.sgd_update(
                    e,
                    g,
                    slots["m"][i],
                    learning_rate=0.05,
                    momentum=opt.momentum,
                    nesterov=opt.nesterov,
                )
            else:
                t = step + 1
                alpha = 0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
                reference.adam_update(
                    e,
                    g,
                    slots["m"][i],
                    slots["v"][i],
                    step_size=alpha,
                    v_hat=slots["h"][i] if opt.amsgrad else None,
                )
    for v, e in zip(variables, expected):
        _equal(v.data, e)


def test_bad_arguments():
    var, grad, m, v = _state((4,), np.float32, 2, seed=0)
    with pytest.raises(TypeError, match=r"sgd_update\(\): var must be a numpy array"):
        ops.sgd_update([1.0, 2.0], grad, learning_rate=0.1)
    with pytest.raises(TypeError, match=r"sgd_update\(\): var must have dtype float32 or float64"):
        ops.sgd_update(np.zeros(4, np.int32), grad, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"sgd_update\(\): var must be C-contiguous"):
        ops.sgd_update(np.zeros(8, np.float32)[::2], grad, learning_rate=0.1)
    ro = var.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"sgd_update\(\): var must be writeable"):
        ops.sgd_update(ro, grad, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"sgd_update\(\): grad must have var's shape \(4,\)"):
        ops.sgd_update(var, grad[:3], learning_rate=0.1)
    with pytest.raises(ValueError, match=r"sgd_update\(\): velocity must be an array when"):
        ops.sgd_update(var, grad, None, learning_rate=0.1, momentum=0.5)
    with pytest.raises(TypeError, match=r"sgd_update\(\): velocity must have var's dtype float32"):
        ops.sgd_update(var, grad, np.zeros(4), learning_rate=0.1, momentum=0.5)
    with pytest.raises(ValueError, match=r"sgd_update\(\): velocity must have var's shape"):
        ops.sgd_update(var, grad, np.zeros(5, np.float32), learning_rate=0.1, momentum=0.5)
    with pytest.raises(ValueError, match=r"sgd_update\(\): momentum must be in \[0"):
        ops.sgd_update(var, grad, m, learning_rate=0.1, momentum=1.5)
    with pytest.raises(ValueError, match=r"sgd_update\(\): learning_rate must be finite"):
        ops.sgd_update(var, grad, m, learning_rate=np.nan)
    with pytest.raises(TypeError, match=r"sgd_update\(\): learning_rate must be a real number"):
        ops.sgd_update(var, grad, m, learning_rate="0.1")
    with pytest.raises(ValueError, match=r"sgd_update\(\): var and velocity must not share"):
        ops.sgd_update(var, grad, var, learning_rate=0.1, momentum=0.5)
    with pytest.raises(ValueError, match=r"adam_update\(\): var and grad must not share"):
        ops.adam_update(var, var, m, v, step_size=0.1)
    with pytest.raises(ValueError, match=r"adam_update\(\): epsilon must be >= 0"):
        ops.adam_update(var, grad, m, v, step_size=0.1, epsilon=-1.0)
    with pytest.raises(ValueError, match=r"adam_update\(\): beta_2 must be in \[0"):
        ops.adam_update(var, grad, m, v, step_size=0.1, beta_2=2.0)
    with pytest.raises(TypeError, match=r"adam_update\(\): v_hat must be a numpy array"):
        ops.adam_update(var, grad, m, v, step_size=0.1, v_hat=[0.0] * 4)
