"""Optimizers: Keras 3 update formulas against NumPy and torch.optim, state, config, rejections."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit import optimizers
from cnnkit.optimizers import SGD, Adam, Optimizer, RMSprop
from cnnkit.schedules import ExponentialDecay, PiecewiseConstantDecay


class Var:
    """A minimal variable: the optimizers only need `.data`."""

    def __init__(self, data):
        self.data = np.array(data)


def make_vars(seed: int, dtype=np.float64, shapes=((3, 4), (5,))):
    rng = np.random.default_rng(seed)
    return [Var(rng.standard_normal(s).astype(dtype)) for s in shapes]


def grad_stream(seed: int, shapes, steps: int, dtype=np.float64):
    rng = np.random.default_rng(seed + 1000)
    # Bounded away from zero so epsilon-free formulas never divide by zero.
    return [
        [(rng.uniform(0.2, 1.5, s) * rng.choice([-1, 1], s)).astype(dtype) for s in shapes]
        for _ in range(steps)
    ]


SHAPES = ((3, 4), (5,))


def run_ours(opt, seed=0, steps=6, dtype=np.float64, shapes=SHAPES):
    variables = make_vars(seed, dtype, shapes)
    buffers = [v.data for v in variables]
    for grads in grad_stream(seed, shapes, steps, dtype):
        opt.apply_gradients(zip(grads, variables))
    # Updates happen in place: the arrays are the same objects.
    assert all(v.data is b for v, b in zip(variables, buffers))
    return [v.data for v in variables]


def run_torch(torch, make_opt, seed=0, steps=6, shapes=SHAPES):
    params = [torch.nn.Parameter(torch.tensor(v.data)) for v in make_vars(seed, np.float64, shapes)]
    opt = make_opt(params)
    for grads in grad_stream(seed, shapes, steps):
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


def assert_all_close(a, b, rtol=1e-10, atol=1e-12):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# -- formulas against torch.optim -----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.7, True)])
def test_sgd_matches_torch(seed, momentum, nesterov):
    torch = pytest.importorskip("torch")
    ours = run_ours(SGD(0.05, momentum=momentum, nesterov=nesterov), seed)
    ref = run_torch(
        torch,
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=momentum, nesterov=nesterov, dampening=0),
        seed,
    )
    assert_all_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_matches_torch_with_zero_epsilon(seed, amsgrad):
    torch = pytest.importorskip("torch")
    ours = run_ours(Adam(0.01, beta_1=0.8, beta_2=0.95, epsilon=0.0, amsgrad=amsgrad), seed, 8)
    ref = run_torch(
        torch,
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=0.0, amsgrad=amsgrad),
        seed,
        8,
    )
    assert_all_close(ours, ref)


def test_adam_weight_decay_matches_torch_adamw():
    torch = pytest.importorskip("torch")
    ours = run_ours(Adam(0.01, epsilon=0.0, weight_decay=0.1), 3, 5)
    ref = run_torch(torch, lambda p: torch.optim.AdamW(p, lr=0.01, eps=0.0, weight_decay=0.1), 3, 5)
    assert_all_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("momentum", "centered"), [(0.0, False), (0.5, False), (0.0, True)])
def test_rmsprop_matches_torch_with_zero_epsilon(seed, momentum, centered):
    torch = pytest.importorskip("torch")
    opt = RMSprop(0.01, rho=0.8, momentum=momentum, epsilon=0.0, centered=centered)
    ours = run_ours(opt, seed, 7)
    ref = run_torch(
        torch,
        lambda p: torch.optim.RMSprop(
            p, lr=0.01, alpha=0.8, eps=0.0, momentum=momentum, centered=centered
        ),
        seed,
        7,
    )
    assert_all_close(ours, ref)


# -- formulas against hand-written NumPy (Keras's epsilon placement) -------------------------


def numpy_adam(w, grads, lr, b1, b2, eps, amsgrad):
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    vhat = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vhat = np.maximum(vhat, v)
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        w = w - alpha * m / (np.sqrt(vhat if amsgrad else v) + eps)
    return w


def numpy_rmsprop(w, grads, lr, rho, momentum, eps, centered):
    v = np.zeros_like(w)
    a = np.zeros_like(w)
    mom = np.zeros_like(w)
    for g in grads:
        v = rho * v + (1 - rho) * g * g
        a = rho * a + (1 - rho) * g
        denom = v - a * a + eps if centered else v + eps
        inc = lr * g / np.sqrt(denom)
        if momentum > 0:
            mom = momentum * mom + inc
            w = w - mom
        else:
            w = w - inc
    return w


def single_run(opt, seed=0, steps=6):
    (var,) = make_vars(seed, shapes=((4, 3),))
    w0 = var.data.copy()
    grads = [g[0] for g in grad_stream(seed, ((4, 3),), steps)]
    # Small gradients make epsilon matter, so its placement is tested.
    grads = [g * 1e-4 for g in grads]
    for g in grads:
        opt.apply_gradients([(g, var)])
    return w0, grads, var.data


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_matches_numpy_formula_with_epsilon(amsgrad):
    w0, grads, got = single_run(Adam(0.01, epsilon=1e-3, amsgrad=amsgrad))
    np.testing.assert_allclose(got, numpy_adam(w0, grads, 0.01, 0.9, 0.999, 1e-3, amsgrad))
    assert not np.allclose(got, numpy_adam(w0, grads, 0.01, 0.9, 0.999, 0.0, amsgrad))


@pytest.mark.parametrize(("momentum", "centered"), [(0.0, False), (0.3, True)])
def test_rmsprop_matches_numpy_formula_with_epsilon(momentum, centered):
    opt = RMSprop(0.01, momentum=momentum, epsilon=1e-7, centered=centered)
    w0, grads, got = single_run(opt)
    expected = numpy_rmsprop(w0, grads, 0.01, 0.9, momentum, 1e-7, centered)
    np.testing.assert_allclose(got, expected)


def test_sgd_plain_and_nesterov_numpy():
    w0, grads, got = single_run(SGD(0.1))
    np.testing.assert_allclose(got, w0 - 0.1 * sum(grads))
    w0, grads, got = single_run(SGD(0.1, momentum=0.5, nesterov=True))
    w, m = w0.copy(), np.zeros_like(w0)
    for g in grads:
        m = 0.5 * m - 0.1 * g
        w = w + 0.5 * m - 0.1 * g
    np.testing.assert_allclose(got, w)


@pytest.mark.parametrize("make", [lambda: SGD(0.1, momentum=0.9), Adam, RMSprop])
def test_float32_variables_keep_their_dtype(make):
    opt = make()
    out = run_ours(opt, dtype=np.float32)
    assert all(o.dtype == np.float32 for o in out)
    state = opt.get_state()
    assert all(a.dtype == np.float32 for k, a in state.items() if k != "iterations")
    ref = run_ours(make(), dtype=np.float64)
    assert_all_close(out, ref, rtol=1e-4, atol=1e-5)


def test_integer_gradients_are_cast_to_the_variable_dtype():
    var = Var(np.zeros(3, np.float32))
    SGD(0.5).apply_gradients([(np.array([1, 2, 3]), var)])
    assert var.data.dtype == np.float32
    np.testing.assert_array_equal(var.data, [-0.5, -1.0, -1.5])


# -- learning rate, schedules, iterations ---------------------------------------------------


def test_none_gradients_are_skipped_and_iterations_count_calls():
    a, b = Var(np.ones(2)), Var(np.ones(2))
    opt = SGD(1.0)
    assert opt.iterations == 0
    opt.apply_gradients([(None, a), (np.ones(2), b)])
    np.testing.assert_array_equal(a.data, [1, 1])
    np.testing.assert_array_equal(b.data, [0, 0])
    assert opt.apply_gradients([(None, a), (None, b)]) == 2
    assert opt.iterations == 2


def test_schedule_is_evaluated_at_iterations():
    sched = PiecewiseConstantDecay([0, 1], [1.0, 0.5, 0.25])
    var = Var(np.zeros(1))
    opt = SGD(sched)
    seen = []
    for _ in range(4):
        seen.append(opt.current_learning_rate)
        opt.apply_gradients([(np.ones(1), var)])
    assert seen == [1.0, 0.5, 0.25, 0.25]
    np.testing.assert_allclose(var.data, [-2.0])


def test_learning_rate_property():
    opt = Adam(0.01)
    assert opt.learning_rate == 0.01
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.current_learning_rate == 0.5
    sched = ExponentialDecay(0.1, 1, 0.5)
    opt.learning_rate = sched
    assert opt.learning_rate is sched
    opt.iterations = 2
    assert opt.current_learning_rate == pytest.approx(0.025)
    with pytest.raises(TypeError, match=r"Adam.learning_rate: this optimizer was created with a"):
        opt.learning_rate = 0.1
    opt.learning_rate = ExponentialDecay(0.2, 1, 0.5)  # a schedule may replace a schedule
    with pytest.raises(ValueError, match=r"learning_rate must be >= 0, got -1.0"):
        SGD(0.1).learning_rate = -1.0


def test_keras_defaults_and_names():
    sgd, adam, rms = SGD(), Adam(), RMSprop()
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov, sgd.name) == (0.01, 0.0, False, "SGD")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (
        0.001,
        0.9,
        0.999,
        1e-7,
        False,
    )
    assert adam.name == "adam" and rms.name == "rmsprop"
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == (
        0.001,
        0.9,
        0.0,
        1e-7,
        False,
    )


# -- clipping and weight decay --------------------------------------------------------------


def test_clipnorm_rescales_each_gradient():
    a, b = Var(np.zeros(2)), Var(np.zeros(2))
    SGD(1.0, clipnorm=1.0).apply_gradients([(np.array([3.0, 4.0]), a), (np.array([0.3, 0.4]), b)])
    np.testing.assert_allclose(a.data, [-0.6, -0.8])
    np.testing.assert_allclose(b.data, [-0.3, -0.4])


def test_global_clipnorm_rescales_jointly():
    a, b = Var(np.zeros(2)), Var(np.zeros(1))
    opt = SGD(1.0, global_clipnorm=2.5)
    opt.apply_gradients([(np.array([3.0, 0.0]), a), (np.array([4.0]), b)])
    np.testing.assert_allclose(a.data, [-1.5, 0.0])
    np.testing.assert_allclose(b.data, [-2.0])
    opt.apply_gradients([(np.zeros(2), a), (np.zeros(1), b)])  # zero norm: no NaN
    np.testing.assert_allclose(b.data, [-2.0])
    c = Var(np.zeros(1))
    SGD(1.0, global_clipnorm=1.0).apply_gradients([(np.array([np.inf]), c)])
    assert np.isnan(c.data).all()  # a non-finite norm is not hidden


def test_global_clipnorm_matches_torch_clip_grad_norm():
    torch = pytest.importorskip("torch")
    grads = [np.array([3.0, -1.0, 2.0]), np.array([[0.5, 4.0]])]
    ts = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for t, g in zip(ts, grads):
        t.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_(ts, 1.5)
    variables = [Var(np.zeros(g.shape)) for g in grads]
    SGD(1.0, global_clipnorm=1.5).apply_gradients(zip(grads, variables))
    for v, t in zip(variables, ts):
        # torch adds 1e-6 to the norm; Keras does not.
        np.testing.assert_allclose(-v.data, t.grad.numpy(), rtol=1e-5)


def test_clipvalue():
    a = Var(np.zeros(3))
    SGD(1.0, clipvalue=0.5).apply_gradients([(np.array([-2.0, 0.25, 9.0]), a)])
    np.testing.assert_allclose(a.data, [0.5, -0.25, -0.5])


def test_weight_decay_is_decoupled_and_scaled_by_the_learning_rate():
    a = Var(np.array([2.0, -4.0]))
    SGD(0.5, weight_decay=0.1).apply_gradients([(np.array([1.0, 1.0]), a)])
    np.testing.assert_allclose(a.data, [2.0 - 2.0 * 0.05 - 0.5, -4.0 + 4.0 * 0.05 - 0.5])


# -- build, state ---------------------------------------------------------------------------


def test_state_keys_follow_build_order():
    variables = make_vars(0)
    adam = Adam(amsgrad=True)
    adam.build(variables)
    assert list(adam.get_state()) == [
        "iterations",
        "momentum/0",
        "momentum/1",
        "velocity/0",
        "velocity/1",
        "velocity_hat/0",
        "velocity_hat/1",
    ]
    assert list(SGD().get_state()) == ["iterations"]
    sgd = SGD(momentum=0.5)
    sgd.build(variables)
    assert sorted(sgd.get_state()) == ["iterations", "momentum/0", "momentum/1"]
    rms = RMSprop(centered=True)
    rms.build(variables)
    assert sorted(rms.get_state()) == [
        "average_gradient/0",
        "average_gradient/1",
        "iterations",
        "velocity/0",
        "velocity/1",
    ]
    assert adam.get_state()["iterations"].dtype == np.int64


@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(0.05, momentum=0.9),
        lambda: Adam(0.01, amsgrad=True),
        lambda: RMSprop(0.01, momentum=0.2, centered=True),
        lambda: Adam(ExponentialDecay(0.01, 2, 0.5)),
    ],
)
@pytest.mark.parametrize("load_before_build", [False, True])
def test_state_round_trip_continues_training_identically(make, load_before_build):
    shapes = SHAPES
    stream = grad_stream(5, shapes, 8)
    a_vars = make_vars(5)
    a = make()
    for grads in stream[:4]:
        a.apply_gradients(zip(grads, a_vars))
    state = a.get_state()
    b_vars = [Var(v.data.copy()) for v in a_vars]
    b = make()
    if load_before_build:
        b.set_state(state)
        assert b.iterations == 4
        assert sorted(b.get_state()) == sorted(state)
    else:
        b.build(b_vars)
        b.set_state(state)
    for grads in stream[4:]:
        a.apply_gradients(zip(grads, a_vars))
        b.apply_gradients(zip(grads, b_vars))
    for x, y in zip(a_vars, b_vars):
        np.testing.assert_array_equal(x.data, y.data)
    assert a.iterations == b.iterations == 8


def test_get_state_returns_copies():
    var = Var(np.zeros(2))
    opt = Adam()
    opt.apply_gradients([(np.ones(2), var)])
    state = opt.get_state()
    state["momentum/0"][...] = 99
    assert opt.get_state()["momentum/0"][0] != 99


def test_subset_of_variables_after_build_and_build_twice():
    a, b = Var(np.zeros(2)), Var(np.zeros(3))
    opt = Adam(0.1)
    opt.build([a, b])
    opt.build([b])  # no-op, like Keras
    opt.apply_gradients([(np.ones(3), b)])
    assert np.all(a.data == 0) and np.all(b.data < 0)
    assert opt.get_state()["momentum/1"].shape == (3,)
    assert opt.variables == [a, b]


# -- config and lookup ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "opt",
    [
        SGD(0.2, momentum=0.5, nesterov=True, clipnorm=1.0, name="s"),
        Adam(ExponentialDecay(0.1, 3, 0.9), amsgrad=True, weight_decay=0.01),
        RMSprop(0.01, rho=0.8, centered=True, global_clipnorm=2.0),
    ],
    ids=lambda o: type(o).__name__,
)
def test_config_round_trip(opt):
    d = json.loads(json.dumps(optimizers.serialize(opt)))
    back = optimizers.deserialize(d)
    assert type(back) is type(opt)
    assert back.get_config() == opt.get_config()
    assert type(opt).from_config(opt.get_config()).get_config() == opt.get_config()


def test_get():
    assert isinstance(optimizers.get("SGD"), SGD)
    assert isinstance(optimizers.get("adam"), Adam)
    assert isinstance(optimizers.get("RMSProp"), RMSprop)
    opt = Adam()
    assert optimizers.get(opt) is opt
    got = optimizers.get({"class_name": "adam", "config": {"learning_rate": 0.5}})
    assert isinstance(got, Adam) and got.learning_rate == 0.5
    assert optimizers.get({"class_name": "SGD"}).learning_rate == 0.01
    assert "SGD" in repr(SGD())


# -- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: SGD(-0.1), ValueError, r"SGD\(\): learning_rate must be >= 0, got -0.1"),
        (lambda: SGD(float("nan")), ValueError, "learning_rate must be >= 0, got nan"),
        (lambda: SGD("fast"), TypeError, "learning_rate must be a float or a LearningRateSch"),
        (lambda: SGD(True), TypeError, "learning_rate must be a float"),
        (lambda: SGD(momentum=1.5), ValueError, r"SGD\(\): momentum must be in \[0, 1\], got 1.5"),
        (lambda: SGD(nesterov="yes"), TypeError, "nesterov must be a bool"),
        (lambda: Adam(beta_1=1.0), ValueError, r"Adam\(\): beta_1 must be in \[0, 1\), got 1.0"),
        (lambda: Adam(beta_2=-0.1), ValueError, "beta_2 must be in"),
        (lambda: Adam(epsilon=-1), ValueError, "epsilon must be >= 0"),
        (lambda: Adam(amsgrad=1), TypeError, "amsgrad must be a bool"),
        (lambda: RMSprop(rho=1), ValueError, r"RMSprop\(\): rho must be in"),
        (lambda: RMSprop(centered=None), TypeError, "centered must be a bool"),
        (lambda: SGD(clipnorm=1, clipvalue=1), ValueError, "only one of clipnorm, clipvalue"),
        (lambda: SGD(clipnorm=0), ValueError, r"clipnorm must be > 0, got 0.0"),
        (lambda: SGD(weight_decay=-1), ValueError, "weight_decay must be >= 0"),
        (lambda: SGD(name=3), TypeError, "name must be a str"),
    ],
)
def test_constructor_rejections(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_apply_gradients_rejections():
    var = Var(np.zeros((2, 2)))
    opt = SGD()
    with pytest.raises(TypeError, match=r"SGD.apply_gradients\(\): grads_and_vars must be a list"):
        opt.apply_gradients(5)
    with pytest.raises(TypeError, match=r"grads_and_vars\[0\] must be a \(gradient, variable\)"):
        opt.apply_gradients([np.zeros(2)])
    with pytest.raises(TypeError, match=r"variable 0 must have a .data attribute .* got list"):
        SGD().apply_gradients([(np.zeros(2), type("V", (), {"data": [1.0]})())])
    with pytest.raises(TypeError, match="floating-point numpy array, got dtype int64"):
        SGD().apply_gradients([(np.zeros(2), Var(np.zeros(2, np.int64)))])
    with pytest.raises(ValueError, match=r"gradient 0 must have the variable's shape \(2, 2\)"):
        opt.apply_gradients([(np.zeros(4), var)])
    with pytest.raises(TypeError, match="gradient 0 must be numeric, got dtype <U1"):
        opt.apply_gradients([(np.array([["a", "b"], ["c", "d"]]), var)])
    with pytest.raises(ValueError, match="was not built with"):
        opt.apply_gradients([(np.zeros(2), Var(np.zeros(2)))])
    with pytest.raises(ValueError, match=r"grads_and_vars\[1\] repeats a variable"):
        opt.apply_gradients([(np.zeros((2, 2)), var), (np.zeros((2, 2)), var)])
    with pytest.raises(ValueError, match="variable 1 is the same object as variable 0"):
        SGD().build([var, var])
    ro = Var(np.zeros(2))
    ro.data.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        SGD().apply_gradients([(np.zeros(2), ro)])
    assert opt.iterations == 0  # failed calls did not count
    np.testing.assert_array_equal(var.data, 0)


def test_set_state_rejections():
    variables = make_vars(0)
    opt = Adam()
    opt.build(variables)
    good = opt.get_state()
    with pytest.raises(TypeError, match=r"Adam.set_state\(\): state must be a dict"):
        opt.set_state([1])
    with pytest.raises(ValueError, match="must have an 'iterations' entry"):
        opt.set_state({k: v for k, v in good.items() if k != "iterations"})
    with pytest.raises(ValueError, match="non-negative integer scalar"):
        opt.set_state({**good, "iterations": np.array(-1)})
    with pytest.raises(ValueError, match="non-negative integer scalar"):
        opt.set_state({**good, "iterations": np.array(1.5)})
    with pytest.raises(ValueError, match=r"missing keys \['velocity/1'\], unexpected keys \[\]"):
        opt.set_state({k: v for k, v in good.items() if k != "velocity/1"})
    with pytest.raises(ValueError, match=r"unexpected keys \['velocity_hat/0'\]"):
        opt.set_state({**good, "velocity_hat/0": np.zeros((3, 4))})
    shape_msg = r"state\['momentum/0'\] must have shape \(3, 4\), got \(4, 3\)"
    with pytest.raises(ValueError, match=shape_msg):
        opt.set_state({**good, "momentum/0": np.zeros((4, 3))})
    with pytest.raises(TypeError, match="must be a numeric array"):
        opt.set_state({**good, "momentum/1": np.array(["x"] * 5)})
    with pytest.raises(TypeError, match="state keys must be str"):
        opt.set_state({**good, 3: np.zeros(1)})
    fresh = Adam()
    with pytest.raises(ValueError, match=r"unexpected keys \['m/0'\]; slots of Adam are"):
        fresh.set_state({"iterations": np.array(0), "m/0": np.zeros(1)})
    # Before build only the slot names can be checked; shapes are checked at build time.
    fresh.set_state({**good, "momentum/0": np.zeros(7)})
    with pytest.raises(ValueError, match=r"Adam.set_state\(\): state\['momentum/0'\] must have"):
        fresh.apply_gradients([(np.zeros(v.data.shape), v) for v in variables])


@pytest.mark.parametrize(
    ("identifier", "exc", "match"),
    [
        ("ftrl", ValueError, r"optimizers.get\(\): unknown optimizer name 'ftrl'"),
        (3, TypeError, "identifier must be a str, a dict or an Optimizer, got int"),
        ({"class_name": "nope"}, ValueError, "unknown optimizer class 'nope'"),
        ({"config": {}}, ValueError, "must have a 'class_name' \\(a str\\)"),
        ({"class_name": "sgd", "config": []}, TypeError, r"config\['config'\] must be a dict"),
        (
            {"class_name": "sgd", "config": {"lr": 0.1}},
            TypeError,
            r"SGD.from_config\(\): config does not fit",
        ),
    ],
)
def test_get_rejections(identifier, exc, match):
    with pytest.raises(exc, match=match):
        optimizers.get(identifier)


def test_serialize_rejects_subclasses_and_base_is_abstract():
    class Mine(SGD):
        pass

    with pytest.raises(TypeError, match=r"optimizers.serialize\(\): Mine is not registered"):
        optimizers.serialize(Mine())
    with pytest.raises(NotImplementedError, match="must implement _update"):
        Optimizer(0.1).apply_gradients([(np.zeros(1), Var(np.zeros(1)))])


# -- AdamW, Nadam, Adagrad, Adadelta, Adamax against torch.optim ------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_adamw_matches_torch_adamw(seed):
    torch = pytest.importorskip("torch")
    ours = run_ours(optimizers.AdamW(0.01, weight_decay=0.05, epsilon=0.0), seed)
    ref = run_torch(
        torch, lambda p: torch.optim.AdamW(p, lr=0.01, eps=0.0, weight_decay=0.05), seed
    )
    assert_all_close(ours, ref)
    assert optimizers.AdamW().weight_decay == 0.004


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_nadam_matches_torch_with_unit_momentum_decay(seed, eps):
    torch = pytest.importorskip("torch")
    ours = run_ours(optimizers.Nadam(0.01, beta_1=0.85, epsilon=eps), seed, steps=8)
    # torch keeps its momentum product in the default dtype: float64 for a float64 check.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ref = run_torch(
            torch,
            lambda p: torch.optim.NAdam(
                p, lr=0.01, betas=(0.85, 0.999), eps=eps, momentum_decay=1.0
            ),
            seed,
            steps=8,
        )
    finally:
        torch.set_default_dtype(previous)
    assert_all_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_adagrad_matches_torch_with_zero_epsilon(seed):
    torch = pytest.importorskip("torch")
    ours = run_ours(optimizers.Adagrad(0.1, initial_accumulator_value=0.3, epsilon=0.0), seed)
    ref = run_torch(
        torch,
        lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.3, eps=0.0),
        seed,
    )
    assert_all_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_adadelta_matches_torch(seed):
    torch = pytest.importorskip("torch")
    ours = run_ours(optimizers.Adadelta(0.5, rho=0.9, epsilon=1e-6), seed)
    ref = run_torch(torch, lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.9, eps=1e-6), seed)
    assert_all_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_adamax_matches_torch_with_zero_epsilon(seed):
    torch = pytest.importorskip("torch")
    ours = run_ours(optimizers.Adamax(0.02, beta_1=0.8, beta_2=0.9, epsilon=0.0), seed)
    ref = run_torch(
        torch, lambda p: torch.optim.Adamax(p, lr=0.02, betas=(0.8, 0.9), eps=0.0), seed
    )
    assert_all_close(ours, ref)


def numpy_nadam(w, grads, lr, b1, b2, eps):
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    prod = 1.0
    for t, g in enumerate(grads, start=1):
        u_t = b1 * (1 - 0.5 * 0.96**t)
        u_n = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        prod *= u_t
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = u_n * m / (1 - prod * u_n) + (1 - u_t) * g / (1 - prod)
        w = w - lr * m_hat / (np.sqrt(v / (1 - b2**t)) + eps)
    return w


def numpy_adagrad(w, grads, lr, init, eps):
    acc = np.full_like(w, init)
    for g in grads:
        acc = acc + g * g
        w = w - lr * g / np.sqrt(acc + eps)
    return w


def numpy_adamax(w, grads, lr, b1, b2, eps):
    m = np.zeros_like(w)
    u = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g))
        w = w - lr * m / ((1 - b1**t) * (u + eps))
    return w


@pytest.mark.parametrize(
    ("opt", "ref"),
    [
        (
            optimizers.Nadam(0.01, epsilon=1e-3),
            lambda w, g: numpy_nadam(w, g, 0.01, 0.9, 0.999, 1e-3),
        ),
        (
            optimizers.Adagrad(0.1, epsilon=1e-2),
            lambda w, g: numpy_adagrad(w, g, 0.1, 0.1, 1e-2),
        ),
        (
            optimizers.Adamax(0.1, epsilon=1e-2),
            lambda w, g: numpy_adamax(w, g, 0.1, 0.9, 0.999, 1e-2),
        ),
    ],
    ids=["nadam", "adagrad", "adamax"],
)
def test_new_optimizers_match_the_keras_formula_with_epsilon(opt, ref):
    variables = make_vars(5, shapes=((4,),))
    w0 = variables[0].data.copy()
    grads = [g[0] for g in grad_stream(5, ((4,),), 7)]
    for g in grads:
        opt.apply_gradients([(g, variables[0])])
    np.testing.assert_allclose(variables[0].data, ref(w0, grads), rtol=1e-12)


def test_nadam_state_round_trip_recomputes_the_momentum_product():
    a = optimizers.Nadam(0.01)
    wa = make_vars(0)
    streams = grad_stream(0, SHAPES, 8)
    for grads in streams[:4]:
        a.apply_gradients(zip(grads, wa))
    b = optimizers.Nadam(0.01)
    wb = [type(v)(v.data.copy()) for v in wa]
    b.set_state(a.get_state())
    for grads in streams[4:]:
        a.apply_gradients(zip(grads, wa))
        b.apply_gradients(zip(grads, wb))
    assert_all_close([v.data for v in wa], [v.data for v in wb], rtol=0, atol=0)


# -- use_ema ---------------------------------------------------------------------------------


def test_ema_follows_the_keras_formula_and_finalize_copies_it():
    var = Var(np.array([1.0, -2.0]))
    opt = SGD(0.1, use_ema=True, ema_momentum=0.9)
    grads = [np.array([1.0, 2.0]), np.array([-1.0, 0.5]), np.array([3.0, 1.0])]
    w, avg = var.data.copy(), None
    for i, g in enumerate(grads):
        opt.apply_gradients([(g, var)])
        w = w - 0.1 * g
        avg = w.copy() if i == 0 else 0.9 * avg + 0.1 * w  # momentum 0 on the first step
        np.testing.assert_allclose(var.data, w)
    np.testing.assert_allclose(opt.get_state()["average/0"], avg)
    opt.finalize_variable_values()
    np.testing.assert_allclose(var.data, avg)


def test_ema_overwrite_frequency_and_state_and_config():
    var = Var(np.zeros(3))
    opt = Adam(0.1, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2)
    opt.apply_gradients([(np.ones(3), var)])
    after_one = var.data.copy()
    opt.apply_gradients([(np.ones(3), var)])
    # Step 2 overwrote the variable with the average of the two iterates.
    state = opt.get_state()
    np.testing.assert_allclose(var.data, state["average/0"])
    assert not np.allclose(var.data, after_one)
    assert sorted(state) == ["average/0", "iterations", "momentum/0", "velocity/0"]
    back = optimizers.deserialize(json.loads(json.dumps(optimizers.serialize(opt))))
    assert back.use_ema and back.ema_momentum == 0.5 and back.ema_overwrite_frequency == 2
    back.set_state(state)
    assert back.get_state().keys() == state.keys()


@pytest.mark.parametrize(
    "make",
    [
        lambda: optimizers.AdamW(0.01, clipnorm=1.0, use_ema=True),
        lambda: optimizers.Nadam(0.01, clipvalue=0.5, weight_decay=0.01),
        lambda: optimizers.Adagrad(0.01, global_clipnorm=2.0),
        lambda: optimizers.Adadelta(1.0, use_ema=True, ema_overwrite_frequency=3),
        lambda: optimizers.Adamax(0.01, weight_decay=0.1),
    ],
)
def test_new_optimizers_config_state_and_common_arguments(make):
    opt = make()
    d = json.loads(json.dumps(optimizers.serialize(opt)))
    back = optimizers.deserialize(d)
    assert type(back) is type(opt) and back.get_config() == opt.get_config()
    assert isinstance(optimizers.get(type(opt).__name__.lower()), type(opt))
    # Same steps from the same state give bit-identical variables.
    wa = make_vars(3)
    streams = grad_stream(3, SHAPES, 6)
    for grads in streams[:3]:
        opt.apply_gradients(zip(grads, wa))
    wb = [Var(v.data.copy()) for v in wa]
    back.set_state(opt.get_state())
    for grads in streams[3:]:
        opt.apply_gradients(zip(grads, wa))
        back.apply_gradients(zip(grads, wb))
    assert_all_close([v.data for v in wa], [v.data for v in wb], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: optimizers.Nadam(beta_1=1.0), ValueError, r"Nadam\(\): beta_1 must be in"),
        (lambda: optimizers.Adagrad(initial_accumulator_value=-1), ValueError, "initial_accum"),
        (lambda: optimizers.Adadelta(rho=1.0), ValueError, r"Adadelta\(\): rho must be in"),
        (lambda: optimizers.Adamax(epsilon=-1), ValueError, r"Adamax\(\): epsilon must be >= 0"),
        (lambda: optimizers.AdamW(weight_decay=None), ValueError, "weight_decay must be"),
        (lambda: SGD(use_ema=1), TypeError, r"SGD\(\): use_ema must be a bool"),
        (lambda: SGD(ema_momentum=2), ValueError, "ema_momentum must be in"),
        (lambda: SGD(ema_overwrite_frequency=0), ValueError, "ema_overwrite_frequency must be"),
        (
            lambda: optimizers.Adam.from_config({"bogus": 1}),
            TypeError,
            r"unexpected keys \['bogus'\]",
        ),
    ],
)
def test_new_constructor_rejections(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_fit_with_use_ema_ends_with_the_averaged_weights():
    import cnnkit
    from cnnkit import layers

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    model = cnnkit.Sequential([layers.Input((3,)), layers.Dense(1)], seed=0)
    model.compile(SGD(0.05, use_ema=True, ema_momentum=0.8), "mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    opt = model.optimizer
    state = opt.get_state()
    for i, var in enumerate(opt.variables):
        np.testing.assert_array_equal(var.data, state[f"average/{i}"])
