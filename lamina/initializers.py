"""Weight initializers with Keras 3 names, defaults, configs and string aliases.

An initializer maps a shape in KERAS layout (Dense kernel ``(in, out)``, conv kernel
``(*spatial, in, out)``) to a new CPU tensor of exactly that shape; layers move it to
their device and convert it to the torch layout. With ``seed=None`` values come from
torch's global RNG (``torch.manual_seed`` makes them reproducible); with an int seed
every call returns the same values, drawn from a private ``torch.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lamina import config, registry
from lamina.registry import register

__all__ = [
    "Initializer", "Constant", "Zeros", "Ones", "Identity", "IdentityInitializer",
    "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling", "GlorotUniform",
    "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal",
    "OrthogonalInitializer", "compute_fans", "constant", "zeros", "ones", "identity",
    "random_normal", "random_uniform", "truncated_normal", "variance_scaling",
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "orthogonal", "get", "serialize", "deserialize",
]

# Standard deviation of a unit normal truncated to [-2, 2]; VarianceScaling divides
# by it so that the *truncated* samples have the requested variance.
_TRUNCATED_STDDEV = 0.87962566103423978


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    try:
        return tuple(int(dim) for dim in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"An initializer expects shape to be a tuple of ints; received shape={shape!r}."
        ) from None


def compute_fans(shape, input_axes=None, output_axes=None) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` in Keras layout.

    A 1-D shape has ``fan_in = fan_out = shape[0]``; a 2-D shape is ``(in, out)``;
    longer shapes are conv kernels ``(*spatial, in, out)`` whose fans are multiplied
    by the receptive field ``prod(spatial)``. ``input_axes``/``output_axes`` (both
    given) pick the axes whose sizes multiply into each fan instead.

    Example:
    >>> compute_fans((3, 3, 16, 32))
    (144, 288)
    """
    shape = _shape(shape)
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


@register("initializer", aliases=("initializer",))
class Initializer:
    """Base class: ``__call__(shape, dtype=None)`` returns a tensor of exactly ``shape``.

    Subclasses implement ``__call__`` and, if they take arguments, ``get_config``.

    Example:
    >>> class Twos(Initializer):
    ...     def __call__(self, shape, dtype=None):
    ...         return torch.full(shape, 2.0, dtype=config.torch_dtype(dtype))
    >>> Twos()((2,))
    tensor([2., 2.])
    """

    def __call__(self, shape, dtype=None):
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(self, shape, dtype=None)."
        )

    def get_config(self) -> dict:
        """The constructor arguments as a JSON-ready dict."""
        return {}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild an initializer from ``get_config()`` output."""
        return cls(**config)

    def clone(self):
        """A new initializer with the same config.

        >>> Constant(3.0).clone().value
        3.0
        """
        return self.__class__.from_config(self.get_config())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register("initializer", aliases=("constant",))
class Constant(Initializer):
    """Fills the tensor with one scalar value.

    Args:
        value: a Python scalar. Defaults to 0.0.

    Example:
    >>> Constant(3.0)((2, 2))
    tensor([[3., 3.],
            [3., 3.]])
    """

    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        dtype = config.torch_dtype(dtype)
        # copy_ broadcasts, so a 0-d tensor or numpy scalar works as well as a number.
        return torch.empty(_shape(shape), dtype=dtype).copy_(torch.as_tensor(self.value))

    def get_config(self):
        value = self.value.tolist() if hasattr(self.value, "tolist") else self.value
        return {"value": value}


@register("initializer", aliases=("zeros", "zero"))
class Zeros(Initializer):
    """Fills the tensor with 0.

    >>> Zeros()((3,))
    tensor([0., 0., 0.])
    """

    def __call__(self, shape, dtype=None):
        return torch.zeros(_shape(shape), dtype=config.torch_dtype(dtype))


@register("initializer", aliases=("ones", "one"))
class Ones(Initializer):
    """Fills the tensor with 1.

    >>> Ones()((3,), dtype="int32")
    tensor([1, 1, 1], dtype=torch.int32)
    """

    def __call__(self, shape, dtype=None):
        return torch.ones(_shape(shape), dtype=config.torch_dtype(dtype))


@register("initializer", aliases=("identity", "IdentityInitializer"))
class Identity(Initializer):
    """The (possibly rectangular) identity matrix times ``gain``; 2-D shapes only.

    Args:
        gain: multiplicative factor. Defaults to 1.0.

    Example:
    >>> Identity(gain=2.0)((2, 3))
    tensor([[2., 0., 0.],
            [0., 2., 0.]])
    """

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        shape = _shape(shape)
        if len(shape) != 2:
            raise ValueError(
                f"Identity can only initialize 2-D matrices; received shape={shape} of rank "
                f"{len(shape)}. Use it for Dense kernels, or pick another initializer."
            )
        return self.gain * torch.eye(*shape, dtype=config.torch_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain}


class _RandomInitializer(Initializer):
    """Shared seed handling: None uses torch's global RNG, an int a fresh private generator."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(
                f"{type(self).__name__} expects seed to be an int or None; received "
                f"seed={seed!r} of type {type(seed).__name__}."
            )
        self.seed = None if seed is None else int(seed)

    def _sample(self, shape, dtype, fill):
        """A new tensor of ``shape`` filled in place by ``fill(tensor, generator)``."""
        dtype = config.torch_dtype(dtype)
        if not dtype.is_floating_point:
            raise ValueError(
                f"{type(self).__name__} draws floating-point values; received dtype={dtype}. "
                f"Pass a float dtype such as 'float32'."
            )
        # Half-precision sampling (erfinv, QR) is missing or inaccurate on CPU:
        # draw in float32 and cast.
        work_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        tensor = torch.empty(_shape(shape), dtype=work_dtype)
        with torch.no_grad():
            tensor = fill(tensor, generator)
        return tensor.to(dtype)

    def get_config(self):
        return {"seed": self.seed}


@register("initializer", aliases=("random_normal", "normal"))
class RandomNormal(_RandomInitializer):
    """Samples from a normal distribution.

    Args:
        mean: mean of the values. Defaults to 0.0.
        stddev: standard deviation of the values. Defaults to 0.05.
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.

    Example:
    >>> RandomNormal(seed=1)((2, 3)).shape
    torch.Size([2, 3])
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        return self._sample(shape, dtype, lambda t, g: t.normal_(self.mean, self.stddev, generator=g))

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


@register("initializer", aliases=("truncated_normal",))
class TruncatedNormal(_RandomInitializer):
    """Samples from a normal distribution truncated to ``mean ± 2 * stddev``.

    ``stddev`` is that of the normal before truncation (the samples' own standard
    deviation is about ``0.88 * stddev``).

    Args:
        mean: mean of the values. Defaults to 0.0.
        stddev: standard deviation before truncation. Defaults to 0.05.
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.

    Example:
    >>> bool(TruncatedNormal(stddev=1.0, seed=1)((1000,)).abs().max() <= 2.0)
    True
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        return self._sample(shape, dtype, _truncated_normal(self.mean, self.stddev))

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


def _truncated_normal(mean, stddev):
    low, high = mean - 2.0 * stddev, mean + 2.0 * stddev
    return lambda t, g: torch.nn.init.trunc_normal_(t, mean, stddev, low, high, generator=g)


@register("initializer", aliases=("random_uniform", "uniform"))
class RandomUniform(_RandomInitializer):
    """Samples uniformly from ``[minval, maxval)``.

    Args:
        minval: lower bound. Defaults to -0.05.
        maxval: upper bound. Defaults to 0.05.
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.

    Example:
    >>> w = RandomUniform(0.0, 1.0, seed=1)((100,))
    >>> bool(w.min() >= 0.0 and w.max() < 1.0)
    True
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = minval
        self.maxval = maxval
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        return self._sample(shape, dtype, lambda t, g: t.uniform_(self.minval, self.maxval, generator=g))

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


@register("initializer", aliases=("variance_scaling",))
class VarianceScaling(_RandomInitializer):
    """Scales the spread of the values to the fans of the weight (see ``compute_fans``).

    With ``n`` = fan_in, fan_out or their mean (``mode``), normal distributions have
    standard deviation ``sqrt(scale / n)`` (after truncation at 2 standard deviations
    for ``"truncated_normal"``), and ``"uniform"`` draws from ``[-limit, limit]`` with
    ``limit = sqrt(3 * scale / n)``.

    Args:
        scale: positive scaling factor. Defaults to 1.0.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``. Defaults to ``"fan_in"``.
        distribution: ``"truncated_normal"`` (alias ``"normal"``), ``"untruncated_normal"``
            or ``"uniform"``. Defaults to ``"truncated_normal"``.
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.
        input_axes: optional axes whose sizes multiply into fan_in. Defaults to None.
        output_axes: optional axes whose sizes multiply into fan_out. Defaults to None.

    Example:
    >>> w = VarianceScaling(scale=3.0, distribution="uniform", seed=1)((100, 10))
    >>> bool(w.abs().max() <= 0.3)
    True
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        if not scale > 0.0:
            raise ValueError(
                f"VarianceScaling expects scale to be a positive float; received scale={scale!r}."
            )
        if mode not in self._MODES:
            raise ValueError(
                f"VarianceScaling expects mode to be one of {self._MODES}; received mode={mode!r}."
            )
        distribution = str(distribution).lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(
                f"VarianceScaling expects distribution to be one of {self._DISTRIBUTIONS} (or "
                f"'normal'); received distribution={distribution!r}."
            )
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.input_axes = input_axes
        self.output_axes = output_axes
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "truncated_normal":
            fill = _truncated_normal(0.0, math.sqrt(variance) / _TRUNCATED_STDDEV)
        elif self.distribution == "untruncated_normal":
            stddev = math.sqrt(variance)
            fill = lambda t, g: t.normal_(0.0, stddev, generator=g)  # noqa: E731
        else:
            limit = math.sqrt(3.0 * variance)
            fill = lambda t, g: t.uniform_(-limit, limit, generator=g)  # noqa: E731
        return self._sample(shape, dtype, fill)

    def get_config(self):
        return {
            **super().get_config(), "scale": self.scale, "mode": self.mode,
            "distribution": self.distribution, "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling preset; subclasses set ``_PRESET = (scale, mode, distribution)``."""

    _PRESET: tuple[float, str, str]

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        scale, mode, distribution = self._PRESET
        super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


@register("initializer", aliases=("glorot_uniform",))
class GlorotUniform(_FixedVarianceScaling):
    """Glorot (Xavier) uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``.

    Args:
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.
        input_axes: optional axes whose sizes multiply into fan_in. Defaults to None.
        output_axes: optional axes whose sizes multiply into fan_out. Defaults to None.

    Example:
    >>> bool(GlorotUniform(seed=1)((4, 2)).abs().max() <= 1.0)
    True
    """

    _PRESET = (1.0, "fan_avg", "uniform")


@register("initializer", aliases=("glorot_normal",))
class GlorotNormal(_FixedVarianceScaling):
    """Glorot (Xavier) normal: truncated normal with ``stddev = sqrt(2 / (fan_in + fan_out))``.

    Args:
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.
        input_axes: optional axes whose sizes multiply into fan_in. Defaults to None.
        output_axes: optional axes whose sizes multiply into fan_out. Defaults to None.

    Example:
    >>> GlorotNormal(seed=1)((3, 3, 8, 16)).shape
    torch.Size([3, 3, 8, 16])
    """

    _PRESET = (1.0, "fan_avg", "truncated_normal")


@register("initializer", aliases=("he_uniform",))
class HeUniform(_FixedVarianceScaling):
    """He uniform: ``U(-limit, limit)`` with ``limit = sqrt(6 / fan_in)``.

    Args:
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.
        input_axes: optional axes whose sizes multiply into fan_in. Defaults to None.
        output_axes: optional axes whose sizes multiply into fan_out. Defaults to None.

    Example:
    >>> bool(HeUniform(seed=1)((6, 2)).abs().max() <= 1.0)
    True
    """

    _PRESET = (2.0, "fan_in", "uniform")


@register("initializer", aliases=("he_normal",))
class HeNormal(_FixedVarianceScaling):
    """He normal: truncated normal with ``stddev = sqrt(2 / fan_in)``.

    Args:
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.
        input_axes: optional axes whose sizes multiply into fan_in. Defaults to None.
        output_axes: optional axes whose sizes multiply into fan_out. Defaults to None.

    Example:
    >>> HeNormal(seed=1)((5, 2)).shape
    torch.Size([5, 2])
    """

    _PRESET = (2.0, "fan_in", "truncated_normal")


@register("initializer", aliases=("lecun_uniform",))
class LecunUniform(_FixedVarianceScaling):
    """LeCun uniform: ``U(-limit, limit)`` with ``limit = sqrt(3 / fan_in)``.

    Args:
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.
        input_axes: optional axes whose sizes multiply into fan_in. Defaults to None.
        output_axes: optional axes whose sizes multiply into fan_out. Defaults to None.

    Example:
    >>> bool(LecunUniform(seed=1)((3, 2)).abs().max() <= 1.0)
    True
    """

    _PRESET = (1.0, "fan_in", "uniform")


@register("initializer", aliases=("lecun_normal",))
class LecunNormal(_FixedVarianceScaling):
    """LeCun normal: truncated normal with ``stddev = sqrt(1 / fan_in)``; pairs with ``selu``.

    Args:
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.
        input_axes: optional axes whose sizes multiply into fan_in. Defaults to None.
        output_axes: optional axes whose sizes multiply into fan_out. Defaults to None.

    Example:
    >>> LecunNormal(seed=1)((5, 2)).shape
    torch.Size([5, 2])
    """

    _PRESET = (1.0, "fan_in", "truncated_normal")


@register("initializer", aliases=("orthogonal", "OrthogonalInitializer"))
class Orthogonal(_RandomInitializer):
    """A random orthogonal matrix (times ``gain``), from the QR decomposition of normal noise.

    A shape with more than two axes is treated as the matrix
    ``(prod(shape[:-1]), shape[-1])``. The result has orthonormal columns, or
    orthonormal rows if it has fewer rows than columns.

    Args:
        gain: multiplicative factor. Defaults to 1.0.
        seed: int for repeatable values, or None for torch's global RNG. Defaults to None.

    Example:
    >>> w = Orthogonal(seed=1)((4, 3))
    >>> torch.allclose(w.T @ w, torch.eye(3), atol=1e-5)
    True
    """

    def __init__(self, gain=1.0, seed=None):
        self.gain = gain
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape = _shape(shape)
        if len(shape) < 2:
            raise ValueError(
                f"Orthogonal needs a shape with at least two axes; received shape={shape} "
                f"of rank {len(shape)}."
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]

        def fill(tensor, generator):
            noise = torch.randn(max(rows, cols), min(rows, cols), generator=generator,
                                dtype=tensor.dtype)
            q, r = torch.linalg.qr(noise)
            # Fixing the signs by diag(r) makes q uniformly distributed (Haar measure).
            q = q * torch.sign(torch.diagonal(r))
            if rows < cols:
                q = q.T
            return (self.gain * q).reshape(shape)

        return self._sample(shape, dtype, fill)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


# Module-level aliases, as in keras.initializers.
IdentityInitializer = Identity
OrthogonalInitializer = Orthogonal
constant, zeros, ones, identity = Constant, Zeros, Ones, Identity
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling, orthogonal = VarianceScaling, Orthogonal
glorot_uniform, glorot_normal, he_uniform, he_normal = GlorotUniform, GlorotNormal, HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal


def get(identifier):
    """Resolve ``identifier`` to an initializer.

    None gives None; a name or class gives a new instance with defaults; a config dict
    is deserialized; a tensor or array becomes an initializer returning (a copy of) it;
    any other callable ``f(shape, dtype=None)`` is returned unchanged.

    Example:
    >>> get("he_normal")
    HeNormal(seed=None, input_axes=None, output_axes=None)
    """
    if isinstance(identifier, (torch.Tensor, np.ndarray, np.generic)):
        return _from_value(identifier)
    return registry.get("initializer", identifier)


def _from_value(value):
    value = torch.as_tensor(value)

    def initialize(shape, dtype=None):
        if _shape(shape) != tuple(value.shape):
            raise ValueError(
                f"This initializer was given a tensor of shape {tuple(value.shape)}, so it "
                f"can only fill that shape; received shape={tuple(shape)}."
            )
        return value.detach().to(config.torch_dtype(dtype), copy=True)

    return initialize


def serialize(initializer):
    """``{"class_name": ..., "config": ...}`` for an initializer.

    >>> serialize(Zeros())
    {'class_name': 'Zeros', 'config': {}}
    """
    return registry.serialize("initializer", initializer)


def deserialize(config, custom_objects=None):
    """Rebuild an initializer from a name or the dict written by ``serialize``.

    >>> deserialize({"class_name": "Constant", "config": {"value": 2.0}}).value
    2.0
    """
    return registry.get("initializer", config, custom_objects)
