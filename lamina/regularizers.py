"""Weight regularizers with Keras 3 names, formulas, configs and string aliases.

A regularizer maps a weight tensor (in Keras layout) to a 0-d penalty tensor that the
layer adds to its losses; it never syncs with the host, so it is safe in every step.
"""

from __future__ import annotations

import math

import torch

from lamina import config, registry
from lamina.registry import register

__all__ = [
    "Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "l1", "l2", "l1_l2",
    "orthogonal_regularizer", "get", "serialize", "deserialize",
]


def _factor(value, name: str, default: float) -> float:
    """``value`` as a non-negative finite float (None means ``default``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(
            f"Expected {name} to be a non-negative finite float; received {name}={value!r}."
        )
    return float(value)


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    x = torch.as_tensor(x)
    return x if x.is_floating_point() else x.to(config.torch_dtype())


@register("regularizer", aliases=("regularizer",))
class Regularizer:
    """Base class: ``__call__(x)`` returns a scalar penalty for the weight ``x``.

    Subclasses implement ``__call__`` and ``get_config``. Any function of one tensor
    returning a scalar works as a regularizer too.

    Example:
    >>> class Sum(Regularizer):
    ...     def __call__(self, x):
    ...         return x.sum()
    ...     def get_config(self):
    ...         return {}
    >>> Sum()(torch.ones(2, 2))
    tensor(4.)
    """

    def __call__(self, x):
        return 0.0

    def get_config(self) -> dict:
        """The constructor arguments as a JSON-ready dict."""
        if type(self) is Regularizer:
            return {}
        raise NotImplementedError(
            f"{type(self).__name__} does not implement get_config(); add one returning its "
            f"constructor arguments so that it can be saved."
        )

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a regularizer from ``get_config()`` output."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register("regularizer", aliases=("l1l2", "l1_l2"))
class L1L2(Regularizer):
    """Both penalties: ``l1 * sum(abs(x)) + l2 * sum(x**2)``.

    Args:
        l1: L1 factor. Defaults to 0.0.
        l2: L2 factor. Defaults to 0.0.

    Example:
    >>> L1L2(l1=0.5, l2=0.25)(torch.tensor([1.0, -2.0]))
    tensor(2.7500)
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1", 0.0)
        self.l2 = _factor(l2, "l2", 0.0)

    def __call__(self, x):
        x = _as_tensor(x)
        penalty = x.new_zeros(())
        if self.l1:
            penalty = penalty + self.l1 * x.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * x.square().sum()
        return penalty

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


@register("regularizer", aliases=("l1",))
class L1(Regularizer):
    """L1 penalty ``l1 * sum(abs(x))``.

    Args:
        l1: the factor. Defaults to 0.01.

    Example:
    >>> L1(0.5)(torch.tensor([1.0, -2.0]))
    tensor(1.5000)
    """

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1", 0.01)

    def __call__(self, x):
        return self.l1 * _as_tensor(x).abs().sum()

    def get_config(self):
        return {"l1": self.l1}


@register("regularizer", aliases=("l2",))
class L2(Regularizer):
    """L2 penalty ``l2 * sum(x**2)`` (no factor 1/2, as in Keras).

    Args:
        l2: the factor. Defaults to 0.01.

    Example:
    >>> L2(0.5)(torch.tensor([1.0, -2.0]))
    tensor(2.5000)
    """

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2", 0.01)

    def __call__(self, x):
        return self.l2 * _as_tensor(x).square().sum()

    def get_config(self):
        return {"l2": self.l2}


@register("regularizer", aliases=("orthogonal_regularizer",))
class OrthogonalRegularizer(Regularizer):
    """Pushes the rows (or columns) of a 2-D weight towards being mutually orthogonal.

    The penalty is ``factor`` times the mean absolute cosine similarity over all
    pairs of distinct rows (``mode="rows"``) or columns (``mode="columns"``). For a
    Dense kernel ``(input_dim, units)``, rows mode decorrelates the input features.

    Args:
        factor: the regularization factor. Defaults to 0.01.
        mode: ``"rows"`` or ``"columns"``. Defaults to ``"rows"``.

    Example:
    >>> OrthogonalRegularizer(factor=1.0)(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    tensor(1.)
    """

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _factor(factor, "factor", 0.01)
        if mode not in ("rows", "columns"):
            raise ValueError(
                f"OrthogonalRegularizer expects mode to be 'rows' or 'columns'; received "
                f"mode={mode!r}."
            )
        self.mode = mode

    def __call__(self, x):
        x = _as_tensor(x)
        if x.ndim != 2:
            raise ValueError(
                f"OrthogonalRegularizer expects a 2-D weight; received shape {tuple(x.shape)}."
            )
        vectors = x if self.mode == "rows" else x.T
        size = vectors.shape[0]
        if size < 2:
            raise ValueError(
                f"OrthogonalRegularizer in mode={self.mode!r} needs at least two "
                f"{self.mode}; received a weight of shape {tuple(x.shape)}."
            )
        # Keras normalises with x * min(rsqrt(sum(x**2)), 1 / epsilon): all-zero rows stay 0.
        inverse_norm = vectors.square().sum(dim=1, keepdim=True).rsqrt().clamp(max=1.0 / config.epsilon())
        unit = vectors * inverse_norm
        # Masking (rather than subtracting the ~1 diagonal) keeps float32 precision.
        mask = 1.0 - torch.eye(size, dtype=unit.dtype, device=unit.device)
        off_diagonal = ((unit @ unit.T) * mask).abs().sum()
        num_pairs = size * (size - 1) / 2.0
        # The masked sum counts each pair twice, hence the 0.5.
        return self.factor * 0.5 * off_diagonal / num_pairs

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


# Module-level aliases, as in keras.regularizers.
l1, l2, l1_l2, orthogonal_regularizer = L1, L2, L1L2, OrthogonalRegularizer


def get(identifier):
    """Resolve ``identifier`` to a regularizer (None gives None).

    A name or class gives a new instance with defaults; a config dict is deserialized;
    a regularizer object or any callable is returned unchanged.

    Example:
    >>> get("l2")
    L2(l2=0.01)
    """
    return registry.get("regularizer", identifier)


def serialize(regularizer):
    """``{"class_name": ..., "config": ...}`` for a regularizer.

    >>> serialize(L1(0.5))
    {'class_name': 'L1', 'config': {'l1': 0.5}}
    """
    return registry.serialize("regularizer", regularizer)


def deserialize(config, custom_objects=None):
    """Rebuild a regularizer from a name or the dict written by ``serialize``.

    >>> deserialize({"class_name": "L2", "config": {"l2": 0.1}})
    L2(l2=0.1)
    """
    return registry.get("regularizer", config, custom_objects)
