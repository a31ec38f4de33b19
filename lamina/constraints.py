"""Weight constraints with Keras 3 names, formulas, configs and string aliases.

A constraint maps a weight in KERAS layout (Dense kernel ``(in, out)``, conv kernel
``(*spatial, in, out)``) to its projection; the layer converts its own layout at that
boundary and applies the result after each optimizer step, without host syncs.
"""

from __future__ import annotations

import torch

from lamina import config, registry
from lamina.registry import register

__all__ = [
    "Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "max_norm", "min_max_norm",
    "non_neg", "unit_norm", "get", "serialize", "deserialize",
]


def _as_tensor(w) -> torch.Tensor:
    if isinstance(w, torch.Tensor):
        return w
    w = torch.as_tensor(w)
    return w if w.is_floating_point() else w.to(config.torch_dtype())


def _norms(w: torch.Tensor, axis) -> torch.Tensor:
    """L2 norms over ``axis`` (an int, a list/tuple of ints, or None for all), kept as size-1 dims."""
    dim = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return torch.linalg.vector_norm(w, dim=dim, keepdim=True)


@register("constraint", aliases=("constraint",))
class Constraint:
    """Base class: ``__call__(w)`` returns the projected weight (the base returns ``w``).

    Example:
    >>> class Clip(Constraint):
    ...     def __call__(self, w):
    ...         return w.clamp(-1.0, 1.0)
    >>> Clip()(torch.tensor([-3.0, 0.5]))
    tensor([-1.0000,  0.5000])
    """

    def __call__(self, w):
        return w

    def get_config(self) -> dict:
        """The constructor arguments as a JSON-ready dict."""
        return {}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a constraint from ``get_config()`` output."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register("constraint", aliases=("max_norm",))
class MaxNorm(Constraint):
    """Rescales each weight vector along ``axis`` whose L2 norm exceeds ``max_value``.

    Args:
        max_value: the largest allowed norm. Defaults to 2.
        axis: int or list of ints over which norms are taken: 0 for a Dense kernel
            ``(input_dim, units)`` (one norm per unit), ``[0, 1, 2]`` for a Conv2D
            kernel ``(rows, cols, in, out)`` (one norm per filter). Defaults to 0.

    Example:
    >>> MaxNorm(max_value=1.0)(torch.tensor([[3.0, 0.1], [4.0, 0.0]]))
    tensor([[0.6000, 0.1000],
            [0.8000, 0.0000]])
    """

    def __init__(self, max_value=2, axis=0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        w = _as_tensor(w)
        norms = _norms(w, self.axis)
        return w * (norms.clamp(0, self.max_value) / (config.epsilon() + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


@register("constraint", aliases=("min_max_norm",))
class MinMaxNorm(Constraint):
    """Moves the L2 norm of each weight vector along ``axis`` into ``[min_value, max_value]``.

    Each norm becomes ``rate * clip(norm, min_value, max_value) + (1 - rate) * norm``;
    ``rate=1.0`` enforces the bounds at once, smaller rates approach them gradually.

    Args:
        min_value: the smallest allowed norm. Defaults to 0.0.
        max_value: the largest allowed norm. Defaults to 1.0.
        rate: how far to move towards the bounds per call. Defaults to 1.0.
        axis: int or list of ints over which norms are taken (see ``MaxNorm``). Defaults to 0.

    Example:
    >>> MinMaxNorm(min_value=1.0, max_value=2.0)(torch.tensor([[0.3], [0.4]]))
    tensor([[0.6000],
            [0.8000]])
    """

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        w = _as_tensor(w)
        norms = _norms(w, self.axis)
        desired = self.rate * norms.clamp(self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (config.epsilon() + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


@register("constraint", aliases=("non_neg",))
class NonNeg(Constraint):
    """Sets negative weights to 0.

    >>> NonNeg()(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """

    def __call__(self, w):
        return _as_tensor(w).clamp_min(0)


@register("constraint", aliases=("unit_norm",))
class UnitNorm(Constraint):
    """Rescales each weight vector along ``axis`` to unit L2 norm.

    Args:
        axis: int or list of ints over which norms are taken (see ``MaxNorm``). Defaults to 0.

    Example:
    >>> UnitNorm()(torch.tensor([[3.0], [4.0]]))
    tensor([[0.6000],
            [0.8000]])
    """

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = _as_tensor(w)
        return w / (config.epsilon() + _norms(w, self.axis))

    def get_config(self):
        return {"axis": self.axis}


# Module-level aliases, as in keras.constraints.
max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm


def get(identifier):
    """Resolve ``identifier`` to a constraint (None gives None).

    A name or class gives a new instance with defaults; a config dict is deserialized;
    a constraint object or any callable is returned unchanged.

    Example:
    >>> get("max_norm")
    MaxNorm(max_value=2, axis=0)
    """
    return registry.get("constraint", identifier)


def serialize(constraint):
    """``{"class_name": ..., "config": ...}`` for a constraint.

    >>> serialize(UnitNorm(axis=1))
    {'class_name': 'UnitNorm', 'config': {'axis': 1}}
    """
    return registry.serialize("constraint", constraint)


def deserialize(config, custom_objects=None):
    """Rebuild a constraint from a name or the dict written by ``serialize``.

    >>> deserialize({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": 0}})
    MaxNorm(max_value=3, axis=0)
    """
    return registry.get("constraint", config, custom_objects)
