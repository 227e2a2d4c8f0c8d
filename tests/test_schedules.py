"""Learning-rate schedules: Keras 3 formulas, a torch peer, (de)serialization, rejections."""

from __future__ import annotations

import math

import pytest

from cnnkit import schedules
from cnnkit.schedules import (
    CosineDecay,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    s = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=staircase)
    for step in [0, 1, 5, 9, 10, 15, 20, 37]:
        p = step / 10
        if staircase:
            p = math.floor(p)
        assert s(step) == pytest.approx(0.1 * 0.5**p, rel=1e-12)
    assert s(10) == pytest.approx(0.05)
    assert s(5) == pytest.approx(0.1 if staircase else 0.1 * math.sqrt(0.5))


def test_piecewise_constant_boundaries_are_inclusive_on_the_left_value():
    s = PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
    assert [s(x) for x in (0, 100, 101, 200, 201, 10**6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    assert PiecewiseConstantDecay([], [0.3])(5) == 0.3


def test_cosine_decay_without_warmup():
    s = CosineDecay(0.2, decay_steps=100, alpha=0.1)
    assert s(0) == pytest.approx(0.2)
    assert s(50) == pytest.approx(0.2 * (0.9 * 0.5 + 0.1))
    assert s(100) == pytest.approx(0.02)
    assert s(1000) == pytest.approx(0.02)  # clamped after decay_steps
    values = [s(k) for k in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_cosine_decay_with_warmup():
    s = CosineDecay(0.0, decay_steps=100, alpha=0.0, warmup_target=1.0, warmup_steps=10)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.5)
    assert s(110) == pytest.approx(0.0, abs=1e-15)
    assert s(500) == pytest.approx(0.0, abs=1e-15)


def test_cosine_decay_matches_torch_cosine_annealing():
    torch = pytest.importorskip("torch")
    base, t_max, alpha = 0.3, 20, 0.05
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=alpha * base)
    ours = CosineDecay(base, t_max, alpha=alpha)
    for step in range(t_max + 1):
        assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        sched.step()


def test_exponential_decay_matches_torch_exponential_lr():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    ours = ExponentialDecay(0.5, decay_steps=1, decay_rate=0.9)
    for step in range(15):
        assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time_decay(staircase):
    s = InverseTimeDecay(1.0, decay_steps=4, decay_rate=0.5, staircase=staircase)
    for step in [0, 1, 3, 4, 7, 8, 100]:
        p = math.floor(step / 4) if staircase else step / 4
        assert s(step) == pytest.approx(1.0 / (1 + 0.5 * p), rel=1e-12)


ALL = [
    ExponentialDecay(0.1, 7, 0.9, staircase=True, name="e"),
    PiecewiseConstantDecay([3, 8.5], [0.3, 0.2, 0.1]),
    CosineDecay(0.01, 50, alpha=0.2, warmup_target=0.1, warmup_steps=5),
    InverseTimeDecay(0.5, 3, 0.25),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_serialize_round_trip(schedule):
    import json

    d = schedules.serialize(schedule)
    assert d["class_name"] == type(schedule).__name__
    back = schedules.deserialize(json.loads(json.dumps(d)))
    assert type(back) is type(schedule)
    assert back.get_config() == schedule.get_config()
    assert [back(k) for k in range(0, 60, 3)] == [schedule(k) for k in range(0, 60, 3)]
    again = type(schedule).from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
    assert type(schedule).__name__ in repr(schedule)


def test_keras_default_names():
    assert ExponentialDecay(1.0, 1, 0.5).name == "ExponentialDecay"
    assert PiecewiseConstantDecay([1], [1.0, 0.5]).name == "PiecewiseConstant"
    assert CosineDecay(1.0, 1).name == "CosineDecay"
    assert InverseTimeDecay(1.0, 1, 0.5).name == "InverseTimeDecay"


def test_numpy_steps_are_accepted():
    import numpy as np

    s = ExponentialDecay(1.0, 2, 0.5)
    assert s(np.int64(4)) == pytest.approx(0.25)


# -- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: ExponentialDecay(0.1, 0, 0.5), ValueError, r"ExponentialDecay\(\): decay_steps"),
        (lambda: ExponentialDecay("0.1", 1, 0.5), TypeError, "initial_learning_rate must be"),
        (lambda: ExponentialDecay(math.nan, 1, 0.5), ValueError, "must be finite"),
        (lambda: CosineDecay(0.1, -5), ValueError, r"CosineDecay\(\): decay_steps must be > 0"),
        (lambda: CosineDecay(0.1, 5, warmup_steps=-1), ValueError, "warmup_steps must be >= 0"),
        (lambda: InverseTimeDecay(0.1, 0, 0.5), ValueError, "decay_steps must be > 0"),
        (lambda: InverseTimeDecay(0.1, 1, -0.5), ValueError, "decay_rate must be >= 0"),
        (lambda: PiecewiseConstantDecay([1, 2], [0.1, 0.2]), ValueError, "1 less than"),
        (lambda: PiecewiseConstantDecay([2, 1], [0.1, 0.2, 0.3]), ValueError, "increasing"),
        (lambda: PiecewiseConstantDecay(5, [0.1]), TypeError, "boundaries must be a list"),
        (lambda: PiecewiseConstantDecay([1], "ab"), TypeError, "values must be a list"),
        (lambda: PiecewiseConstantDecay([1], [0.1, None]), TypeError, r"values\[1\]"),
    ],
)
def test_constructor_rejections(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_call_rejects_bad_steps():
    s = ExponentialDecay(0.1, 1, 0.5)
    with pytest.raises(ValueError, match=r"ExponentialDecay\(\): step must be >= 0, got -1"):
        s(-1)
    with pytest.raises(TypeError, match="step must be a real number, got str"):
        s("3")
    with pytest.raises(ValueError, match="step must be >= 0"):
        CosineDecay(0.1, 5)(math.nan)


def test_base_class_is_abstract():
    with pytest.raises(NotImplementedError, match="must implement it"):
        LearningRateSchedule()(0)
    with pytest.raises(NotImplementedError, match="must implement it"):
        LearningRateSchedule().get_config()


def test_serialize_rejects_unknown_classes():
    class Mine(LearningRateSchedule):
        def __call__(self, step):
            return 0.1

        def get_config(self):
            return {}

    with pytest.raises(TypeError, match=r"schedules.serialize\(\): Mine is not registered"):
        schedules.serialize(Mine())


@pytest.mark.parametrize(
    ("config", "exc", "match"),
    [
        ({"class_name": "os.system", "config": {}}, ValueError, "schedule class 'os.system'"),
        ({"config": {}}, ValueError, "must have a 'class_name'"),
        ([1, 2], TypeError, "config must be a dict"),
        ({"class_name": "CosineDecay", "config": 3}, TypeError, r"config\['config'\]"),
        (
            {"class_name": "CosineDecay", "config": {"initial_learning_rate": 1, "bogus": 2}},
            TypeError,
            r"CosineDecay.from_config\(\): config does not fit",
        ),
    ],
)
def test_deserialize_rejections(config, exc, match):
    with pytest.raises(exc, match=match):
        schedules.deserialize(config)


def test_exponential_decay_rate_must_not_be_negative():
    # (-0.9) ** (5 / 10) made the learning rate a complex number, silently.
    with pytest.raises(
        ValueError, match=r"^ExponentialDecay\(\): decay_rate must be >= 0, got -0.9"
    ):
        ExponentialDecay(0.1, 10, -0.9)
    assert ExponentialDecay(0.1, 10, 0.0)(5) == 0.0


@pytest.mark.parametrize("make", [ExponentialDecay, schedules.InverseTimeDecay])
def test_staircase_must_be_a_bool(make):
    # bool('no') is True: staircase='no' stepped the rate, silently.
    with pytest.raises(TypeError, match=r"^\w+\(\): staircase must be a bool, got str 'no'"):
        make(0.1, 10, 0.5, staircase="no")
