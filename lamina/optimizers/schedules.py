"""Learning-rate schedules: Keras's ``keras.optimizers.schedules``, in python floats.

A schedule maps the optimizer's step count to a learning rate. Optimizers call it
once per training step at ``optimizer.iterations``, so every formula here is plain
python ``math`` (no tensors, no device work). Registered under kind ``"schedule"``.
"""

from __future__ import annotations

import bisect
import math

from lamina import registry

__all__ = [
    "LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
    "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts", "get", "serialize", "deserialize",
]


def _step_value(step) -> float:
    # A tensor step is read once here; optimizers always pass python ints.
    return float(step)


def _check_positive(value, argument: str, schedule: str) -> None:
    if value <= 0:
        raise ValueError(
            f"{schedule} expects {argument} > 0; received {argument}={value}. "
            f"Pass the (positive) number of steps the decay runs over."
        )


class LearningRateSchedule:
    """Base class of learning-rate schedules: ``schedule(step) -> float``.

    Subclasses implement ``__call__(step)`` and ``get_config()``; the default
    ``from_config`` is ``cls(**config)``. Pass an instance as an optimizer's
    ``learning_rate``; the optimizer evaluates it at its ``iterations`` each step.

    Example:
    >>> class Halving(LearningRateSchedule):
    ...     def __init__(self, initial_learning_rate):
    ...         self.initial_learning_rate = initial_learning_rate
    ...     def __call__(self, step):
    ...         return self.initial_learning_rate / 2 ** int(step)
    ...     def get_config(self):
    ...         return {"initial_learning_rate": self.initial_learning_rate}
    >>> Halving(1.0)(3)
    0.125
    """

    def __call__(self, step):
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`."
        )

    def get_config(self):
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` "
            f"in order to be serializable."
        )

    @classmethod
    def from_config(cls, config):
        """Rebuild a schedule from ``get_config()`` output."""
        return cls(**config)


@registry.register("schedule")
class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent ``step / decay_steps`` is floored, so the
    rate drops in discrete jumps every ``decay_steps`` steps.

    Args:
        initial_learning_rate: the learning rate at step 0.
        decay_steps: positive number of steps per decay period.
        decay_rate: the factor applied per period.
        staircase: floor the exponent. Defaults to False.
        name: the schedule's name. Defaults to "ExponentialDecay".

    Example:
    >>> ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(20)
    0.025
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        _check_positive(decay_steps, "decay_steps", "ExponentialDecay")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        progress = _step_value(step) / self.decay_steps
        if self.staircase:
            progress = math.floor(progress)
        return float(self.initial_learning_rate * self.decay_rate**progress)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


@registry.register("schedule")
class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant learning rate per interval of steps.

    The rate is ``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, and ``values[-1]`` after the last
    boundary.

    Args:
        boundaries: strictly increasing step numbers.
        values: the rates, one more than ``boundaries``.
        name: the schedule's name. Defaults to "PiecewiseConstant".

    Example:
    >>> schedule = PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    >>> [schedule(s) for s in (10, 11, 21)]
    [1.0, 0.5, 0.1]
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "PiecewiseConstantDecay expects one more value than boundaries; received "
                f"boundaries={boundaries} of length {len(boundaries)} and values={values} "
                f"of length {len(values)}."
            )
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def __call__(self, step):
        # bisect_left gives the first boundary >= step, i.e. the interval (b[i-1], b[i]].
        index = bisect.bisect_left(self.boundaries, _step_value(step))
        return float(self.values[index])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


@registry.register("schedule")
class PolynomialDecay(LearningRateSchedule):
    """Polynomial decay from ``initial_learning_rate`` to ``end_learning_rate``.

    ``(initial - end) * (1 - step / decay_steps) ** power + end`` with ``step``
    capped at ``decay_steps``; with ``cycle=True`` the decay restarts, using the
    first multiple of ``decay_steps`` not below ``step``.

    Args:
        initial_learning_rate: the learning rate at step 0.
        decay_steps: positive number of steps to decay over.
        end_learning_rate: the final rate. Defaults to 0.0001.
        power: the polynomial's power. Defaults to 1.0.
        cycle: restart after ``decay_steps``. Defaults to False.
        name: the schedule's name. Defaults to "PolynomialDecay".

    Example:
    >>> PolynomialDecay(1.0, decay_steps=4, end_learning_rate=0.0)(1)
    0.75
    """

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        _check_positive(decay_steps, "decay_steps", "PolynomialDecay")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def __call__(self, step):
        step = _step_value(step)
        decay_steps = float(self.decay_steps)
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else math.ceil(step / self.decay_steps)
        else:
            step = min(step, decay_steps)
        fraction_left = 1.0 - step / decay_steps
        span = self.initial_learning_rate - self.end_learning_rate
        return float(span * fraction_left**self.power + self.end_learning_rate)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


@registry.register("schedule")
class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``.

    With ``staircase=True`` the ratio ``step / decay_steps`` is floored.

    Args:
        initial_learning_rate: the learning rate at step 0.
        decay_steps: positive number of steps per decay unit.
        decay_rate: the decay rate.
        staircase: floor ``step / decay_steps``. Defaults to False.
        name: the schedule's name. Defaults to "InverseTimeDecay".

    Example:
    >>> InverseTimeDecay(1.0, decay_steps=1, decay_rate=0.5)(2)
    0.5
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        _check_positive(decay_steps, "decay_steps", "InverseTimeDecay")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        progress = _step_value(step) / self.decay_steps
        if self.staircase:
            progress = math.floor(progress)
        return float(self.initial_learning_rate / (1.0 + self.decay_rate * progress))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


@registry.register("schedule")
class CosineDecay(LearningRateSchedule):
    """Cosine decay, optionally after a linear warmup (SGDR without restarts).

    Without ``warmup_target`` the rate decays from ``initial_learning_rate`` to
    ``initial_learning_rate * alpha`` over ``decay_steps``. With it, the rate first
    rises linearly from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then decays from ``warmup_target`` to ``warmup_target * alpha``.

    Args:
        initial_learning_rate: the learning rate at step 0.
        decay_steps: positive number of steps to decay over.
        alpha: the final rate as a fraction of the decay's starting rate. Defaults to 0.0.
        name: the schedule's name. Defaults to "CosineDecay".
        warmup_target: the rate reached after warmup, or None for no warmup. Defaults to None.
        warmup_steps: number of warmup steps. Defaults to 0.

    Example:
    >>> CosineDecay(1.0, decay_steps=10)(5)
    0.5
    >>> CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=4)(2)
    0.5
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        _check_positive(decay_steps, "decay_steps", "CosineDecay")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target

    def _decay(self, step, decay_from):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = _step_value(step)
        if self.warmup_target is None:
            return float(self._decay(min(step, self.decay_steps), self.initial_learning_rate))
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return float(delta * step / self.warmup_steps + self.initial_learning_rate)
        return float(self._decay(step - self.warmup_steps, self.warmup_target))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


@registry.register("schedule")
class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR, Loshchilov & Hutter 2016).

    The multiplier decays from 1 to ``alpha`` over ``first_decay_steps``; then the
    schedule restarts, each period ``t_mul`` times longer than the last and starting
    ``m_mul`` times lower.

    Args:
        initial_learning_rate: the learning rate at step 0.
        first_decay_steps: positive length of the first period.
        t_mul: growth factor of the period length. Defaults to 2.0.
        m_mul: factor applied to the starting rate at each restart. Defaults to 1.0.
        alpha: the floor, as a fraction of ``initial_learning_rate``. Defaults to 0.0.
        name: the schedule's name. Defaults to "SGDRDecay".

    Example:
    >>> schedule = CosineDecayRestarts(1.0, first_decay_steps=10, m_mul=0.5)
    >>> schedule(5), schedule(10)
    (0.5, 0.5)
    """

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0,
                 name="SGDRDecay"):
        _check_positive(first_decay_steps, "first_decay_steps", "CosineDecayRestarts")
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self.t_mul = t_mul
        self.m_mul = m_mul
        self.alpha = alpha
        self.name = name

    def __call__(self, step):
        fraction = _step_value(step) / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            # Periods grow geometrically: restart i begins at (1 - t_mul**i) / (1 - t_mul).
            restart = math.floor(
                math.log(1.0 - fraction * (1.0 - self.t_mul)) / math.log(self.t_mul))
            # The log ratio can round just below an integer at a restart step; a restart
            # begins exactly there (Keras's float32 maths sometimes lands a step late).
            if (1.0 - self.t_mul ** (restart + 1)) / (1.0 - self.t_mul) <= fraction:
                restart += 1
            begins = (1.0 - self.t_mul**restart) / (1.0 - self.t_mul)
            fraction = (fraction - begins) / self.t_mul**restart
        cosine = 0.5 * self.m_mul**restart * (1.0 + math.cos(math.pi * fraction))
        return float(self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


def get(identifier, custom_objects=None):
    """Resolve a schedule from an instance, a config dict or a class name.

    Example:
    >>> get({"class_name": "InverseTimeDecay",
    ...      "config": {"initial_learning_rate": 1.0, "decay_steps": 1, "decay_rate": 1.0}})(1)
    0.5
    """
    return registry.get("schedule", identifier, custom_objects)


def serialize(learning_rate_schedule):
    """A schedule as ``{"class_name": ..., "config": ...}``.

    Example:
    >>> serialize(ExponentialDecay(0.1, 10, 0.9))["class_name"]
    'ExponentialDecay'
    """
    return registry.serialize("schedule", learning_rate_schedule)


def deserialize(config, custom_objects=None):
    """Rebuild a schedule from ``serialize`` output (Keras's extra keys are ignored).

    Example:
    >>> deserialize(serialize(CosineDecay(1.0, 10))).decay_steps
    10
    """
    return registry.get("schedule", config, custom_objects)
