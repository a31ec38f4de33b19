"""Core layers: Dense, Activation, Dropout, Flatten, Reshape.

Each is a docstring, a constructor that validates its arguments, ``build``,
``call`` (torch.nn.functional maths on torch weight layouts), and ``get_config``.
The weight interchange in Keras layouts is handled by ``Layer``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lamina import registry
from lamina.layers.base import InputSpec, Layer, _jit_tracing, deprecated_argument

__all__ = ["Dense", "Activation", "Dropout", "Flatten", "Reshape"]


def _serialize_activation(fn) -> str | dict:
    return registry.serialize("activation", fn)


@registry.register("layer")
class Dense(Layer):
    """A densely-connected layer: ``output = activation(inputs @ kernel + bias)``.

    The kernel is stored as a ``(units, input_dim)`` parameter so the maths is
    ``F.linear`` (the same kernel ``torch.nn.Linear`` runs); ``get_weights()``
    returns it in Keras's ``(input_dim, units)`` layout.

    Args:
        units: positive int, the output size. (``output_dim``, the Keras 1
            spelling, is accepted with a DeprecationWarning.)
        activation: activation name or callable; default None (linear).
        use_bias: whether to add a bias vector. Default True.
        kernel_initializer: default ``"glorot_uniform"``.
        bias_initializer: default ``"zeros"``.
        kernel_regularizer, bias_regularizer: regularizers added to the loss.
        activity_regularizer: regularizer on the layer's output.
        kernel_constraint, bias_constraint: constraints applied after each update.
        **kwargs: base-layer arguments (``name``, ``trainable``, ``dtype``,
            ``input_shape``, ``input_dim``...).

    Input shape:
        ``(batch, ..., input_dim)``.
    Output shape:
        ``(batch, ..., units)``.

    Example:
    >>> import torch
    >>> layer = Dense(2, kernel_initializer="ones")
    >>> layer(torch.tensor([[1.0, 2.0, 3.0]]))
    tensor([[6., 6.]], grad_fn=<AddmmBackward0>)
    """

    def __init__(
        self,
        units=None,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        if "output_dim" in kwargs:
            output_dim = kwargs.pop("output_dim")
            deprecated_argument(
                "Dense(output_dim=...) is the Keras 1 spelling; use Dense(units=...) instead."
            )
            if units is None:
                units = output_dim
        for old, new in (("init", "kernel_initializer"), ("W_regularizer", "kernel_regularizer"),
                         ("b_regularizer", "bias_regularizer"), ("bias", "use_bias")):
            if old in kwargs:
                deprecated_argument(f"Dense({old}=...) is a Keras 1 spelling; use {new}= instead.")
                value = kwargs.pop(old)
                if new == "kernel_initializer":
                    kernel_initializer = value
                elif new == "kernel_regularizer":
                    kernel_regularizer = value
                elif new == "bias_regularizer":
                    bias_regularizer = value
                else:
                    use_bias = value
        # Keras 3 configs carry these keys (None when unused), so accept None to load them.
        for key in ("lora_rank", "lora_alpha", "quantization_config"):
            if kwargs.pop(key, None) is not None:
                raise ValueError(
                    f"Dense({key}=...) is not supported: lamina has no LoRA or quantization. "
                    f"Remove the argument (None is accepted)."
                )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(units, float) and units.is_integer():
            units = int(units)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                f"Received an invalid value for `units`, expected a positive integer. "
                f"Received: units={units!r} (layer \"{self.name}\"). Pass the number of output "
                f"features, e.g. Dense(units=64)."
            )
        self.units = units
        self.activation = registry.get("activation", activation or "linear")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = registry.get("initializer", kernel_initializer)
        self.bias_initializer = registry.get("initializer", bias_initializer)
        self.kernel_regularizer = registry.get("regularizer", kernel_regularizer)
        self.bias_regularizer = registry.get("regularizer", bias_regularizer)
        self.kernel_constraint = registry.get("constraint", kernel_constraint)
        self.bias_constraint = registry.get("constraint", bias_constraint)
        self.input_spec = InputSpec(min_ndim=2)
        self.supports_masking = True

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f'Layer "{self.name}" needs a known last input dimension to build its kernel; '
                f"received input shape {tuple(input_shape)}."
            )
        self.kernel = self._add_weight(
            (input_dim, self.units), self.kernel_initializer, None, True,
            self.kernel_regularizer, self.kernel_constraint, "kernel", perm=(1, 0),
        )
        if self.use_bias:
            self.bias = self._add_weight(
                (self.units,), self.bias_initializer, None, True,
                self.bias_regularizer, self.bias_constraint, "bias",
            )
        else:
            self.bias = None
        self.input_spec = InputSpec(min_ndim=2, axes={-1: int(input_dim)})
        self.built = True

    def call(self, inputs):
        kernel = self.kernel
        if inputs.dtype != kernel.dtype and (
                not inputs.is_floating_point() or not torch.is_autocast_enabled(inputs.device.type)):
            # Keras casts integer and other-precision inputs to the layer's dtype; under a
            # mixed-precision policy (autocast) float inputs stay in the compute dtype.
            inputs = inputs.to(kernel.dtype)
        return self.activation(F.linear(inputs, kernel, self.bias))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "activation": _serialize_activation(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": registry.serialize("initializer", self.kernel_initializer),
            "bias_initializer": registry.serialize("initializer", self.bias_initializer),
            "kernel_regularizer": registry.serialize("regularizer", self.kernel_regularizer),
            "bias_regularizer": registry.serialize("regularizer", self.bias_regularizer),
            "kernel_constraint": registry.serialize("constraint", self.kernel_constraint),
            "bias_constraint": registry.serialize("constraint", self.bias_constraint),
        })
        return config


@registry.register("layer")
class Activation(Layer):
    """Applies an activation function to its input.

    Args:
        activation: an activation name (``"relu"``) or a callable.

    Example:
    >>> import torch
    >>> Activation("relu")(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = registry.get("activation", activation)
        self.supports_masking = True

    def call(self, inputs):
        return self.activation(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["activation"] = _serialize_activation(self.activation)
        return config


@registry.register("layer")
class Dropout(Layer):
    """Randomly sets input units to 0 with frequency ``rate`` during training.

    Kept units are scaled by ``1 / (1 - rate)`` so the expected sum is unchanged.
    Outside training (``training=False``, the default for direct calls,
    ``evaluate`` and ``predict``) the layer is the identity.

    Args:
        rate: float in [0, 1), the fraction of units to drop.
        noise_shape: optional shape of the binary mask, broadcast against the
            input (``None`` entries take the input's size), e.g. ``(batch, 1, features)``.
        seed: optional int for a reproducible mask sequence.

    Call arguments:
        inputs: a tensor.
        training: bool; drop only when True.

    Example:
    >>> import torch
    >>> layer = Dropout(0.5)
    >>> layer(torch.ones(2, 2))
    tensor([[1., 1.],
            [1., 1.]])
    >>> sorted(set(layer(torch.ones(100), training=True).tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(
                f"Invalid value received for argument `rate`. Expected a float value between 0 "
                f"and 1. Received: rate={rate!r} (layer \"{self.name}\")."
            )
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._generator = None
        self.supports_masking = True

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.noise_shape is None and self.seed is None:
            if _jit_tracing() and self.rate < 1:
                # The same mask distribution and scaling as F.dropout, in ops torch.compile
                # can trace with a dynamic batch size under torch.func.grad.
                keep = torch.rand_like(inputs) >= self.rate
                return inputs * keep.to(inputs.dtype) * (1.0 / (1.0 - self.rate))
            return F.dropout(inputs, self.rate, True)
        shape = inputs.shape if self.noise_shape is None else tuple(
            inputs.shape[i] if s is None else s for i, s in enumerate(self.noise_shape))
        generator = None
        if self.seed is not None:
            if self._generator is None or self._generator.device != inputs.device:
                self._generator = torch.Generator(device=inputs.device).manual_seed(int(self.seed))
            generator = self._generator
        keep = torch.rand(shape, device=inputs.device, generator=generator) >= self.rate
        if self.rate >= 1.0:  # everything dropped; 1 / (1 - rate) would turn the zeros into NaN
            return inputs * keep.to(inputs.dtype)
        return inputs * keep.to(inputs.dtype) / (1.0 - self.rate)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed})
        return config


@registry.register("layer")
class Flatten(Layer):
    """Flattens every axis but the batch axis.

    Args:
        data_format: ``"channels_last"`` (default) or ``"channels_first"``; with
            channels_first the channel axis is moved last before flattening,
            as in Keras, so weights trained on either ordering agree.

    Example:
    >>> import torch
    >>> Flatten()(torch.zeros(4, 2, 3)).shape
    torch.Size([4, 6])
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        from lamina import config as _config

        self.data_format = data_format or _config.image_data_format()
        self.input_spec = InputSpec(min_ndim=1)

    def call(self, inputs):
        if self.data_format == "channels_first" and inputs.ndim > 2:
            inputs = inputs.permute(0, *range(2, inputs.ndim), 1)
        return inputs.reshape(inputs.shape[0], -1)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(s is None for s in rest) else math.prod(rest)
        return (input_shape[0], size)

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


@registry.register("layer")
class Reshape(Layer):
    """Reshapes the input (batch axis excluded) to ``target_shape``.

    Args:
        target_shape: tuple of ints, without the batch axis; one entry may be -1.

    Example:
    >>> import torch
    >>> Reshape((3, -1))(torch.zeros(2, 12)).shape
    torch.Size([2, 3, 4])
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = tuple(int(s) for s in target_shape)
        if sum(1 for s in target_shape if s == -1) > 1 or any(s < -1 or s == 0 for s in target_shape):
            raise ValueError(
                f"Reshape expects target_shape of positive ints with at most one -1; received "
                f"target_shape={target_shape} (layer \"{self.name}\")."
            )
        self.target_shape = target_shape

    def build(self, input_shape):
        size = math.prod(s for s in input_shape[1:]) if None not in input_shape[1:] else None
        known = math.prod(s for s in self.target_shape if s != -1)
        if size is not None and (size % known if -1 in self.target_shape else size != known):
            raise ValueError(
                f'Layer "{self.name}" cannot reshape input of shape {tuple(input_shape)} '
                f"({size} values per sample) into target_shape {self.target_shape}. The "
                f"product of target_shape must equal the number of values per sample."
            )
        self.built = True

    def call(self, inputs):
        return inputs.reshape((inputs.shape[0],) + self.target_shape)

    def compute_output_shape(self, input_shape):
        shape = list(self.target_shape)
        if -1 in shape:
            rest = input_shape[1:]
            if None in rest:
                shape[shape.index(-1)] = None
            else:
                shape[shape.index(-1)] = math.prod(rest) // math.prod(s for s in shape if s != -1)
        return (input_shape[0], *shape)

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = self.target_shape
        return config
