"""Learning-rate schedules against keras.optimizers.schedules and closed forms."""

import math

import pytest

from lamina import registry
from lamina.optimizers import schedules

STEPS = list(range(0, 64)) + [99, 100, 101, 250, 1000, 12345]

CASES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9}),
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.5,
                          "staircase": True}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.2, "decay_steps": 5, "decay_rate": 0.5}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.2, "decay_steps": 5, "decay_rate": 0.5,
                          "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [10, 20, 40], "values": [1.0, 0.5, 0.1, 0.01]}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 50}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 15, "end_learning_rate": 0.01,
                         "power": 0.5, "cycle": True}),
    ("PolynomialDecay", {"initial_learning_rate": 1.0, "decay_steps": 20, "end_learning_rate": 0.1,
                         "power": 2.0}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 40}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 40, "alpha": 0.2}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 30, "alpha": 0.1,
                     "warmup_target": 0.5, "warmup_steps": 10}),
    ("CosineDecay", {"initial_learning_rate": 0.05, "decay_steps": 30, "warmup_target": 0.5,
                     "warmup_steps": 0}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 10}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 7, "t_mul": 1.0,
                             "m_mul": 0.8, "alpha": 0.1}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.3, "first_decay_steps": 6, "t_mul": 1.5,
                             "m_mul": 0.5, "alpha": 0.05}),
]


def _restart_steps(kwargs):
    """Steps where a geometric CosineDecayRestarts period begins."""
    t_mul, first = kwargs.get("t_mul", 2.0), kwargs["first_decay_steps"]
    return {first * (1 - t_mul**i) / (1 - t_mul) for i in range(1, 30)}


@pytest.mark.parametrize("name,kwargs", CASES)
def test_schedule_matches_keras(keras, name, kwargs):
    ours = getattr(schedules, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    skip = set()
    if name == "CosineDecayRestarts" and kwargs.get("t_mul", 2.0) != 1.0:
        # Keras's float32 log ratio can floor a restart step into the previous period
        # (t_mul=1.5, step 15); those steps are checked in closed form below.
        skip = _restart_steps(kwargs)
    for step in [s for s in STEPS if s not in skip]:
        value = ours(step)
        assert type(value) is float
        assert value == pytest.approx(float(theirs(step)), rel=1e-5, abs=1e-7), step


@pytest.mark.parametrize("name,kwargs", CASES)
def test_schedule_config_matches_keras_and_round_trips(keras, name, kwargs):
    ours = getattr(schedules, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    assert ours.get_config() == theirs.get_config()
    again = schedules.deserialize(schedules.serialize(ours))
    assert type(again) is type(ours)
    assert again.get_config() == ours.get_config()
    assert [again(s) for s in STEPS] == [ours(s) for s in STEPS]


def test_schedule_registered_under_schedule_kind():
    for name, _ in CASES:
        assert registry.lookup_class("schedule", name) is getattr(schedules, name)


def test_schedule_deserializes_keras_config(keras):
    config = keras.optimizers.schedules.serialize(
        keras.optimizers.schedules.CosineDecay(0.1, 10, warmup_target=0.2, warmup_steps=3))
    schedule = schedules.deserialize(config)
    assert isinstance(schedule, schedules.CosineDecay)
    assert schedule(2) == pytest.approx(0.1 + 0.1 * 2 / 3)


def test_exponential_decay_closed_form():
    schedule = schedules.ExponentialDecay(0.5, decay_steps=4, decay_rate=0.25)
    assert schedule(6) == pytest.approx(0.5 * 0.25**1.5)
    assert schedules.ExponentialDecay(0.5, 4, 0.25, staircase=True)(7) == 0.125


def test_piecewise_constant_decay_boundaries_are_inclusive():
    schedule = schedules.PiecewiseConstantDecay([3, 6], [3.0, 2.0, 1.0])
    assert [schedule(s) for s in range(9)] == [3.0] * 4 + [2.0] * 3 + [1.0] * 2


def test_cosine_decay_restarts_periods_grow_by_t_mul():
    schedule = schedules.CosineDecayRestarts(1.0, first_decay_steps=4, t_mul=2.0, m_mul=0.5)
    # Restarts at 4 and 4 + 8 = 12, each starting m_mul lower.
    assert schedule(0) == 1.0 and schedule(4) == 0.5 and schedule(12) == 0.25
    assert schedule(8) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_cosine_decay_restarts_restarts_exactly_at_period_start():
    schedule = schedules.CosineDecayRestarts(0.3, first_decay_steps=6, t_mul=1.5, m_mul=0.5,
                                             alpha=0.05)
    # Periods of 6, 9, 13.5 steps: restarts at 6, 15 and 28.5.
    assert schedule(6) == pytest.approx(0.3 * (0.95 * 0.5 + 0.05))
    assert schedule(15) == pytest.approx(0.3 * (0.95 * 0.25 + 0.05))
    assert schedule(14.999) == pytest.approx(0.3 * 0.05, abs=1e-6)


def test_schedule_accepts_tensor_step():
    torch = pytest.importorskip("torch")
    assert schedules.InverseTimeDecay(1.0, 1, 1.0)(torch.tensor(3)) == 0.25


@pytest.mark.parametrize("name,argument", [
    ("ExponentialDecay", "decay_steps"), ("InverseTimeDecay", "decay_steps"),
    ("PolynomialDecay", "decay_steps"), ("CosineDecay", "decay_steps"),
    ("CosineDecayRestarts", "first_decay_steps"),
])
def test_schedule_rejects_non_positive_steps(name, argument):
    kwargs = {"initial_learning_rate": 0.1, argument: 0}
    if name in ("ExponentialDecay", "InverseTimeDecay"):
        kwargs["decay_rate"] = 0.5
    with pytest.raises(ValueError, match=argument):
        getattr(schedules, name)(**kwargs)


def test_piecewise_constant_decay_rejects_length_mismatch():
    with pytest.raises(ValueError, match="one more value"):
        schedules.PiecewiseConstantDecay([1, 2], [1.0, 0.5])


def test_learning_rate_schedule_base_requires_call_and_config():
    with pytest.raises(NotImplementedError):
        schedules.LearningRateSchedule()(0)
    with pytest.raises(NotImplementedError):
        schedules.LearningRateSchedule().get_config()
