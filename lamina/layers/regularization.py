"""Regularization layers: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout
and ActivityRegularization.

All are the identity outside training. Plain ``Dropout`` lives in ``core.py``.
"""

from __future__ import annotations

import math

import torch

from lamina import config, registry
from lamina.layers.base import InputSpec, Layer

__all__ = [
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization",
]

# SELU's constants; AlphaDropout keeps SELU's fixed point (mean 0, variance 1).
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _check_rate(layer: Layer, value, name: str = "rate") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a float value between 0 and "
            f'1. Received: {name}={value!r} (layer "{layer.name}").'
        )
    return float(value)


class _RandomLayer(Layer):
    """Holds the optional seed: with an int seed the layer draws a reproducible sequence."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._generator = None
        self.supports_masking = True

    def _torch_generator(self, device: torch.device):
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._generator

    def _uniform(self, shape, inputs):
        return torch.rand(shape, generator=self._torch_generator(inputs.device), device=inputs.device)

    def _normal(self, mean: float, stddev: float, inputs):
        dtype = config.torch_dtype(self._dtype)
        return torch.normal(mean, stddev, size=tuple(inputs.shape), dtype=dtype, device=inputs.device,
                            generator=self._torch_generator(inputs.device))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


# ---------------------------------------------------------------- spatial dropout
class _SpatialDropout(_RandomLayer):
    """Dropout of whole channels: one keep/drop draw per (sample, channel)."""

    _rank = 0

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None, **kwargs):
        super().__init__(seed=seed, name=name, dtype=dtype, **kwargs)
        self.rate = _check_rate(self, rate)
        data_format = config.image_data_format() if data_format is None else str(data_format).lower()
        if data_format not in ("channels_first", "channels_last"):
            raise ValueError(
                f"The `data_format` argument must be one of 'channels_first', 'channels_last'. "
                f'Received: data_format={data_format!r} (layer "{self.name}").'
            )
        self.data_format = data_format
        self.input_spec = InputSpec(ndim=self._rank)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return torch.zeros_like(inputs)
        shape = [1] * inputs.ndim
        shape[0] = inputs.shape[0]
        channel_axis = 1 if self.data_format == "channels_first" else -1
        shape[channel_axis] = inputs.shape[channel_axis]
        # Scale the small mask, then one broadcast multiply over the data.
        keep = (self._uniform(shape, inputs) >= self.rate).to(inputs.dtype) / (1.0 - self.rate)
        return inputs * keep

    def get_config(self):
        # Keras's spatial dropouts serialize exactly these keys (no "trainable").
        config_ = {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self._dtype}
        if self._rank != 3:
            config_["data_format"] = self.data_format
        return config_


@registry.register("layer")
class SpatialDropout1D(_SpatialDropout):
    """Drops entire 1-D feature maps (channels) of ``(batch, steps, channels)`` inputs.

    Kept channels are scaled by ``1 / (1 - rate)``; the identity outside training.

    Args:
        rate: float in [0, 1], the fraction of channels to drop.
        seed: optional int for a reproducible sequence of masks.

    Example:
    >>> import torch
    >>> out = SpatialDropout1D(0.5, seed=1)(torch.ones(1, 3, 4), training=True)
    >>> bool((out == out[:, :1]).all())  # each channel is all kept or all dropped
    True
    """

    _rank = 3

    def __init__(self, rate, seed=None, name=None, dtype=None, **kwargs):
        super().__init__(rate, data_format="channels_last", seed=seed, name=name, dtype=dtype, **kwargs)


@registry.register("layer")
class SpatialDropout2D(_SpatialDropout):
    """Drops entire 2-D feature maps (channels) of 4-D inputs.

    Args:
        rate: float in [0, 1], the fraction of channels to drop.
        data_format: ``"channels_last"`` (``(batch, rows, cols, channels)``, the default from
            ``lamina.config.image_data_format()``) or ``"channels_first"``.
        seed: optional int for a reproducible sequence of masks.

    Example:
    >>> import torch
    >>> out = SpatialDropout2D(0.5, seed=1)(torch.ones(1, 2, 2, 4), training=True)
    >>> bool((out == out[:, :1, :1]).all())
    True
    """

    _rank = 4


@registry.register("layer")
class SpatialDropout3D(_SpatialDropout):
    """Drops entire 3-D feature maps (channels) of 5-D inputs.

    Args:
        rate: float in [0, 1], the fraction of channels to drop.
        data_format: ``"channels_last"`` (``(batch, dim1, dim2, dim3, channels)``, the
            default) or ``"channels_first"``.
        seed: optional int for a reproducible sequence of masks.

    Example:
    >>> import torch
    >>> SpatialDropout3D(0.5)(torch.ones(1, 2, 2, 2, 3)).shape
    torch.Size([1, 2, 2, 2, 3])
    """

    _rank = 5


# ---------------------------------------------------------------- noise
@registry.register("layer")
class GaussianNoise(_RandomLayer):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` during training.

    Args:
        stddev: float in [0, 1], the noise's standard deviation.
        seed: optional int for a reproducible noise sequence.

    Example:
    >>> import torch
    >>> GaussianNoise(0.1)(torch.ones(2))
    tensor([1., 1.])
    """

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = _check_rate(self, stddev, "stddev")

    def call(self, inputs, training=False):
        if not training or self.stddev == 0:
            return inputs
        return inputs + self._normal(0.0, self.stddev, inputs)

    def get_config(self):
        config_ = super().get_config()
        config_.update({"stddev": self.stddev, "seed": self.seed})
        return config_


@registry.register("layer")
class GaussianDropout(_RandomLayer):
    """Multiplies inputs by Gaussian noise of mean 1 and variance ``rate / (1 - rate)``.

    Args:
        rate: float in [0, 1], the equivalent dropout probability.
        seed: optional int for a reproducible noise sequence.

    Example:
    >>> import torch
    >>> GaussianDropout(0.5)(torch.ones(2))
    tensor([1., 1.])
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = _check_rate(self, rate)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        stddev = math.sqrt(self.rate / (1.0 - self.rate)) if self.rate < 1 else math.inf
        return inputs * self._normal(1.0, stddev, inputs)

    def get_config(self):
        config_ = super().get_config()
        config_.update({"rate": self.rate, "seed": self.seed})
        return config_


@registry.register("layer")
class AlphaDropout(_RandomLayer):
    """Dropout for SELU networks: keeps the inputs' mean and variance.

    Dropped units are set to SELU's negative saturation ``-alpha * scale`` and the result
    goes through the affine map ``a * x + b`` with
    ``a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5`` and ``b = -a * alpha_p * rate``
    (``alpha_p = -alpha * scale``), exactly as Keras.

    Args:
        rate: float in [0, 1], the drop probability.
        noise_shape: optional shape of the keep/drop mask, broadcast against the input
            (``None`` entries take the input's size).
        seed: optional int for a reproducible mask sequence.

    Example:
    >>> import torch
    >>> AlphaDropout(0.2)(torch.ones(2))
    tensor([1., 1.])
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = _check_rate(self, rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            raise ValueError(
                f'AlphaDropout(rate=1) drops every unit, so its affine correction is undefined '
                f'(layer "{self.name}"). Use a rate below 1.'
            )
        shape = tuple(inputs.shape) if self.noise_shape is None else tuple(
            inputs.shape[i] if s is None else s for i, s in enumerate(self.noise_shape))
        alpha_p = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * self.rate
        kept = self._uniform(shape, inputs) >= self.rate
        dropped = torch.where(kept, inputs, torch.tensor(alpha_p, dtype=inputs.dtype, device=inputs.device))
        return dropped * a + b

    def get_config(self):
        config_ = super().get_config()
        config_.update({"rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape})
        return config_


# ---------------------------------------------------------------- activity regularization
@registry.register("layer")
class ActivityRegularization(Layer):
    """The identity, adding ``l1 * sum(|x|) + l2 * sum(x**2)`` (over the batch size) to the loss.

    Args:
        l1: L1 factor. Default 0.0.
        l2: L2 factor. Default 0.0.

    Example:
    >>> import torch
    >>> layer = ActivityRegularization(l1=0.5)
    >>> layer(torch.tensor([[1.0, -3.0]]))
    tensor([[ 1., -3.]])
    >>> [float(loss) for loss in layer.losses]
    [2.0]
    """

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        kwargs.pop("activity_regularizer", None)
        regularizer = registry.get("regularizer", {"class_name": "L1L2", "config": {"l1": l1, "l2": l2}})
        super().__init__(activity_regularizer=regularizer, **kwargs)
        self.l1 = l1
        self.l2 = l2
        self.supports_masking = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config_ = super().get_config()
        config_.pop("activity_regularizer", None)
        config_.update({"l1": self.l1, "l2": self.l2})
        return config_
