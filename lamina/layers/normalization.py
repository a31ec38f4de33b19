"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization,
UnitNormalization, and the preprocessing layer Normalization (with ``adapt``).

Maths runs on torch's fused kernels (``F.batch_norm``, ``F.layer_norm``, ``F.group_norm``)
where they give Keras's numbers; the weight interchange in Keras order is ``Layer``'s.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina.layers.base import InputSpec, Layer

__all__ = [
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "Normalization",
]


# ---------------------------------------------------------------- helpers
def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Keras computes normalizations in at least float32 (half inputs overflow)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _as(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x.to(dtype)`` without the call when it already has that dtype (the per-call hot path)."""
    return x if x.dtype == dtype else x.to(dtype)


def _axes(layer: Layer, axis, rank: int) -> list[int]:
    """``axis`` (int or list) as sorted non-negative ints; ValueError naming ``layer`` if out of range."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    for a in axes:
        if not isinstance(a, int) or not -rank <= a < rank:
            raise ValueError(
                f'Layer "{layer.name}" ({type(layer).__name__}) received axis={axis!r}, which is out '
                f"of bounds for inputs of rank {rank}. Expected each axis in [-{rank}, {rank}); "
                f"pass an axis of the input (e.g. -1 for the last one)."
            )
    return sorted(a % rank for a in axes)


def _check_output_axes(layer: Layer, input_shape) -> tuple:
    _axes(layer, layer.axis, len(input_shape))
    return tuple(input_shape)


def _channel_shape(ndim: int, axis: int, size: int) -> list[int]:
    shape = [1] * ndim
    shape[axis] = size
    return shape


def _channels_second(x: torch.Tensor, axis: int):
    """A view of ``x`` with its channel axis at dim 1 (torch's layout), and the inverse.

    Channels-last 4-D/5-D inputs become NCHW/NCDHW views that are already torch's
    channels_last memory format; other channels-last inputs become a contiguous
    ``(M, C)`` view, which the batch-norm kernels read without a copy.
    """
    ndim = x.ndim
    if axis == 1:
        return x, lambda y: y
    if axis == ndim - 1 and ndim not in (4, 5):
        shape = x.shape
        return x.reshape(-1, shape[-1]), lambda y: y.reshape(shape)
    return x.movedim(axis, 1), lambda y: y.movedim(1, axis)


def _resolve(layer: Layer, kind: str, **items) -> None:
    for key, value in items.items():
        setattr(layer, key, registry.get(kind, value))


def _serialized(layer: Layer, kind: str, *keys: str) -> dict:
    return {key: registry.serialize(kind, getattr(layer, key)) for key in keys}


def _add_gamma_beta(layer: Layer, shape: tuple, scale: bool, center: bool) -> None:
    """Create ``layer.gamma`` / ``layer.beta`` (or None) from its initializers, regularizers, constraints."""
    # Never pre-set them to None before creating them: a plain attribute would shadow the parameter.
    layer.gamma = layer._add_weight(shape, layer.gamma_initializer, None, True, layer.gamma_regularizer,
                                    layer.gamma_constraint, "gamma") if scale else None
    layer.beta = layer._add_weight(shape, layer.beta_initializer, None, True, layer.beta_regularizer,
                                   layer.beta_constraint, "beta") if center else None


class _SqrtOf:
    """Initializer giving the square root of another one (renorm's standard deviations)."""

    def __init__(self, initializer):
        self.initializer = initializer

    def __call__(self, shape, dtype=None):
        return torch.sqrt(torch.as_tensor(self.initializer(shape, dtype=dtype), dtype=dtype))


# ---------------------------------------------------------------- BatchNormalization
@registry.register("layer")
class BatchNormalization(Layer):
    """Normalizes each channel with batch statistics in training and moving ones in inference.

    In training (``fit``, or ``training=True``) the output is
    ``gamma * (x - mean(x)) / sqrt(var(x) + epsilon) + beta`` over the current batch, and
    the moving statistics are updated as in Keras:
    ``moving = moving * momentum + batch_stat * (1 - momentum)``, the variance being the
    biased (population) batch variance. In inference (the default for direct calls,
    ``evaluate`` and ``predict``) ``moving_mean`` and ``moving_variance`` are used instead.
    A layer whose ``trainable`` is False always runs in inference mode, even inside
    ``fit``, as in Keras. ``gamma``/``beta`` are parameters; ``moving_mean`` and
    ``moving_variance`` are buffers (non-trainable weights).

    Args:
        axis: int, the channel axis normalized separately (default -1; 1 after a
            ``channels_first`` convolution).
        momentum: momentum of the moving averages. Default 0.99.
        epsilon: small float added to the variance. Default 1e-3.
        center: whether to add the offset ``beta``. Default True.
        scale: whether to multiply by ``gamma``. Default True.
        beta_initializer, gamma_initializer: defaults ``"zeros"`` and ``"ones"``.
        moving_mean_initializer, moving_variance_initializer: defaults ``"zeros"``, ``"ones"``.
        beta_regularizer, gamma_regularizer: optional regularizers.
        beta_constraint, gamma_constraint: optional constraints.
        renorm: whether to use Batch Renormalization (extra moving statistics). Default False.
        renorm_clipping: dict with optional keys ``"rmax"``, ``"rmin"``, ``"dmax"``.
        renorm_momentum: momentum of the renorm statistics. Default 0.99.
        synchronized: only False is supported (Keras supports True on TensorFlow only).

    Call arguments:
        inputs: a tensor of any rank.
        training: bool; use (and update) batch statistics when True.
        mask: optional boolean tensor of rank ``inputs.ndim - 1``; masked positions are
            left out of the batch statistics.

    Example:
    >>> import torch
    >>> layer = BatchNormalization(momentum=0.5)
    >>> out = layer(torch.tensor([[0.0], [4.0]]), training=True)
    >>> out.detach().round(decimals=3).ravel().tolist()
    [-1.0, 1.0]
    >>> [w.ravel().tolist() for w in layer.get_weights()]  # gamma, beta, moving mean/variance
    [[1.0], [0.0], [1.0], [2.5]]
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(
                f'BatchNormalization expects axis to be an int; received axis={axis!r} (layer '
                f'"{self.name}"). Pass the channel axis, e.g. axis=-1 or axis=1.'
            )
        if synchronized:
            raise ValueError(
                f'BatchNormalization(synchronized=True) is only supported by Keras on TensorFlow; '
                f'lamina does not support it (layer "{self.name}"). Pass synchronized=False, or '
                f"convert the model with torch.nn.SyncBatchNorm for distributed training."
            )
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        _resolve(self, "initializer", beta_initializer=beta_initializer,
                 gamma_initializer=gamma_initializer, moving_mean_initializer=moving_mean_initializer,
                 moving_variance_initializer=moving_variance_initializer)
        _resolve(self, "regularizer", beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer)
        _resolve(self, "constraint", beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        self.synchronized = False
        self.renorm = bool(renorm)
        if self.renorm:
            renorm_clipping = dict(renorm_clipping or {})
            unknown = set(renorm_clipping) - {"rmax", "rmin", "dmax"}
            if unknown:
                raise ValueError(
                    f"Received invalid keys for `renorm_clipping`: {sorted(unknown)} (layer "
                    f'"{self.name}"). Expected only "rmax", "rmin" and "dmax".'
                )
            rmax, rmin, dmax = (renorm_clipping.get(k) for k in ("rmax", "rmin", "dmax"))
            if rmax is not None and rmin is not None and rmax < rmin:
                raise ValueError(
                    f"renorm_clipping needs rmax >= rmin; received rmax={rmax}, rmin={rmin} "
                    f'(layer "{self.name}").'
                )
            if dmax is not None and dmax < 0:
                raise ValueError(
                    f'renorm_clipping needs dmax >= 0; received dmax={dmax} (layer "{self.name}").'
                )
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = float(renorm_momentum)
        self.supports_masking = True

    def build(self, input_shape):
        rank = len(input_shape)
        axis = _axes(self, self.axis, rank)[0] if rank else None
        if axis is None or input_shape[axis] is None:
            raise ValueError(
                f'Layer "{self.name}" needs a known size on axis {self.axis} to build its weights; '
                f"received input shape {tuple(input_shape)}."
            )
        shape = (int(input_shape[axis]),)
        _add_gamma_beta(self, shape, self.scale, self.center)
        self.moving_mean = self._add_weight(shape, self.moving_mean_initializer, None, False,
                                            None, None, "moving_mean")
        self.moving_variance = self._add_weight(shape, self.moving_variance_initializer, None, False,
                                                None, None, "moving_variance")
        if self.renorm:
            stddev_init = _SqrtOf(self.moving_variance_initializer)
            self.moving_stddev = self._add_weight(shape, stddev_init, None, False, None, None,
                                                  "moving_stddev")
            self.renorm_mean = self._add_weight(shape, self.moving_mean_initializer, None, False,
                                                None, None, "renorm_mean")
            self.renorm_stddev = self._add_weight(shape, stddev_init, None, False, None, None,
                                                  "renorm_stddev")
        self.input_spec = InputSpec(ndim=rank, axes={self.axis: shape[0]})
        self.built = True

    def call(self, inputs, training=False, mask=None):
        if mask is not None and mask.ndim != inputs.ndim - 1:
            raise ValueError(
                f'Layer "{self.name}" expects a mask with one dimension less than the inputs; '
                f"received mask.shape={tuple(mask.shape)}, inputs.shape={tuple(inputs.shape)}."
            )
        dtype = _compute_dtype(inputs)
        x = _as(inputs, dtype)
        axis = self.axis % x.ndim
        gamma = None if self.gamma is None else _as(self.gamma, dtype)
        beta = None if self.beta is None else _as(self.beta, dtype)
        if not (training and self.trainable):
            view, restore = _channels_second(x, axis)
            out = restore(F.batch_norm(view, _as(self.moving_mean, dtype), _as(self.moving_variance, dtype),
                                       gamma, beta, False, 0.0, self.epsilon))
        elif self.renorm or mask is not None or x.numel() <= x.shape[axis]:
            out = self._train_explicit(x, axis, gamma, beta, mask)
        else:
            out = self._train_fused(x, axis, gamma, beta)
        return _as(out, config.torch_dtype(self._dtype))

    def _train_fused(self, x, axis, gamma, beta):
        # F.batch_norm normalizes with the biased batch variance but would update running
        # stats with the unbiased one; with momentum=1 fresh scratch vectors (the backward
        # pass reads them: they cannot be reused) receive the batch mean and unbiased
        # variance. Multi-tensor kernels then apply Keras's update,
        # moving * momentum + stat * (1 - momentum), the variance rescaled to the biased one
        # (_update_moving): five small kernel launches in all, where one per operation took twelve.
        channels = x.shape[axis]
        count = x.numel() // channels
        stats = list(x.new_zeros((2, channels)).unbind(0))
        view, restore = _channels_second(x, axis)
        out = restore(F.batch_norm(view, stats[0], stats[1], gamma, beta, True, 1.0, self.epsilon))
        self._update_moving(stats[0], stats[1], variance_scale=(count - 1) / count)
        return out

    def _train_explicit(self, x, axis, gamma, beta, mask):
        dims = [d for d in range(x.ndim) if d != axis]
        if mask is None:
            variance, mean = torch.var_mean(x, dim=dims, correction=0)
        else:
            mean, variance = self._masked_moments(x, dims, mask)
        if self.renorm:
            gamma, beta = self._renorm(mean, variance, gamma, beta)
        else:
            self._update_moving(mean, variance)
        shape = _channel_shape(x.ndim, axis, x.shape[axis])
        multiplier = torch.rsqrt(variance + self.epsilon)
        if gamma is not None:
            multiplier = multiplier * gamma
        out = (x - mean.reshape(shape)) * multiplier.reshape(shape)
        return out if beta is None else out + beta.reshape(shape)

    @staticmethod
    def _masked_moments(x, dims, mask):
        # As Keras: the mask covers every axis but the last and is broadcast over it;
        # counts get backend epsilon so that an all-masked channel gives 0, not NaN.
        keep = mask.to(torch.bool).unsqueeze(-1).expand(x.shape)
        count = keep.sum(dim=dims, keepdim=True).to(x.dtype) + config.epsilon()
        mean = torch.where(keep, x, 0.0).sum(dim=dims, keepdim=True) / count
        variance = torch.where(keep, x - mean, 0.0).square().sum(dim=dims, keepdim=True) / count
        return mean.reshape(-1), variance.reshape(-1)

    def _renorm(self, mean, variance, gamma, beta):
        """Batch Renormalization: the corrected (gamma, beta), and the statistics updates."""
        dtype = mean.dtype
        stddev = torch.sqrt(variance + self.epsilon)
        renorm_mean = self.renorm_mean.to(dtype)
        renorm_stddev = torch.clamp_min(self.renorm_stddev.to(dtype), math.sqrt(self.epsilon))
        r = (stddev / renorm_stddev).detach()
        d = ((mean - renorm_mean) / renorm_stddev).detach()
        clip = self.renorm_clipping
        if clip.get("rmin") is not None:
            r = torch.clamp_min(r, clip["rmin"])
        if clip.get("rmax") is not None:
            r = torch.clamp_max(r, clip["rmax"])
        if clip.get("dmax") is not None:
            d = torch.clamp(d, -clip["dmax"], clip["dmax"])
        new_gamma = r if gamma is None else r * gamma
        new_beta = d if gamma is None else d * gamma
        if beta is not None:
            new_beta = new_beta + beta
        with torch.no_grad():
            mean, stddev = mean.detach(), stddev.detach()
            self._assign_average(self.renorm_mean, mean, self.renorm_momentum)
            self._assign_average(self.renorm_stddev, stddev, self.renorm_momentum)
            self._assign_average(self.moving_mean, mean, self.momentum)
            self._assign_average(self.moving_stddev, stddev, self.momentum)
            moving_stddev = self.moving_stddev.to(dtype)
            self.moving_variance.copy_(torch.relu(moving_stddev * moving_stddev - self.epsilon))
        return new_gamma, new_beta

    def _update_moving(self, mean, variance, variance_scale=1.0):
        """Keras's update of the moving statistics, ``moving * momentum + stat * (1 - momentum)``,
        the variance scaled by ``variance_scale`` first: two multi-tensor kernels when the
        dtypes agree (one launch each on CUDA), the plain expression otherwise."""
        moving = [self.moving_mean, self.moving_variance]
        momentum = self.momentum
        with torch.no_grad():
            if moving[0].dtype != mean.dtype:
                self._assign_average(moving[0], mean, momentum)
                self._assign_average(moving[1], variance * variance_scale, momentum)
            else:
                rest = 1.0 - momentum
                scaled = torch._foreach_mul([mean, variance], [rest, rest * variance_scale])
                torch._foreach_mul_(moving, momentum)
                torch._foreach_add_(moving, scaled)

    @staticmethod
    def _assign_average(variable, value, momentum):
        # Keras's exact expression (not lerp), so the float32 rounding matches.
        variable.copy_(variable.to(value.dtype) * momentum + value * (1.0 - momentum))

    def compute_output_shape(self, input_shape):
        return _check_output_axes(self, input_shape)

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **_serialized(self, "initializer", "beta_initializer", "gamma_initializer",
                          "moving_mean_initializer", "moving_variance_initializer"),
            **_serialized(self, "regularizer", "beta_regularizer", "gamma_regularizer"),
            **_serialized(self, "constraint", "beta_constraint", "gamma_constraint"),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
        })
        return config_


# ---------------------------------------------------------------- LayerNormalization
@registry.register("layer")
class LayerNormalization(Layer):
    """Normalizes each sample over ``axis``: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    Statistics are per sample (not per batch), so training and inference behave alike.
    When the axes are the trailing ones (the usual case) the maths is ``F.layer_norm``.

    Args:
        axis: int or list of ints, the axes normalized together. Default -1.
        epsilon: small float added to the variance. Default 1e-3.
        center: whether to add the offset ``beta``. Default True.
        scale: whether to multiply by ``gamma``. Default True.
        beta_initializer, gamma_initializer: defaults ``"zeros"`` and ``"ones"``.
        beta_regularizer, gamma_regularizer: optional regularizers.
        beta_constraint, gamma_constraint: optional constraints.
        rms_scaling: deprecated in Keras 3 (warns): scale by ``rsqrt(var + epsilon)``
            without centering and without ``beta``. Default False.

    Example:
    >>> import torch
    >>> LayerNormalization(epsilon=0.0)(torch.tensor([[1.0, 3.0]]))
    tensor([[-1.,  1.]], grad_fn=<NativeLayerNormBackward0>)
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        rms_scaling=False,
        **kwargs,
    ):
        if rms_scaling:
            warnings.warn(
                "You passed `rms_scaling=True`, which is deprecated in Keras 3: it scales the "
                "input by the variance, not the root mean square. Use RMS normalization instead.",
                stacklevel=2,
            )
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            axis = list(axis)
        if not (isinstance(axis, int) or isinstance(axis, list)) or isinstance(axis, bool) or (
                isinstance(axis, list) and not all(isinstance(a, int) for a in axis)):
            raise TypeError(
                f"LayerNormalization expects axis to be an int or a list/tuple of ints; received "
                f'axis={axis!r} (layer "{self.name}").'
            )
        self.axis = axis
        self.epsilon = epsilon
        self.center = bool(center)
        self.scale = bool(scale)
        self.rms_scaling = bool(rms_scaling)
        _resolve(self, "initializer", beta_initializer=beta_initializer, gamma_initializer=gamma_initializer)
        _resolve(self, "regularizer", beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer)
        _resolve(self, "constraint", beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        axes = _axes(self, self.axis, len(input_shape))
        shape = tuple(input_shape[a] for a in axes)
        if None in shape:
            raise ValueError(
                f'Layer "{self.name}" needs known sizes on axis {self.axis} to build its weights; '
                f"received input shape {tuple(input_shape)}."
            )
        # Keras keeps the axis as a sorted list once built (and so does its config).
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        _add_gamma_beta(self, shape, self.scale or self.rms_scaling, self.center and not self.rms_scaling)
        self.built = True

    def call(self, inputs):
        dtype = _compute_dtype(inputs)
        x = inputs.to(dtype)
        axes = _axes(self, self.axis, x.ndim)
        epsilon = config.epsilon() if self.epsilon is None else self.epsilon
        gamma = None if self.gamma is None else self.gamma.to(dtype)
        beta = None if self.beta is None else self.beta.to(dtype)
        trailing = axes == list(range(x.ndim - len(axes), x.ndim))
        if trailing and not self.rms_scaling:
            out = F.layer_norm(x, tuple(x.shape[a] for a in axes), gamma, beta, epsilon)
        else:
            shape = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
            variance, mean = torch.var_mean(x, dim=axes, correction=0, keepdim=True)
            multiplier = torch.rsqrt(variance + epsilon)
            if gamma is not None:
                multiplier = multiplier * gamma.reshape(shape)
            if self.rms_scaling:
                out = x * multiplier
            else:
                offset = -mean * multiplier
                out = torch.addcmul(offset if beta is None else offset + beta.reshape(shape), x, multiplier)
        return out.to(config.torch_dtype(self._dtype))

    def compute_output_shape(self, input_shape):
        return _check_output_axes(self, input_shape)

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "rms_scaling": self.rms_scaling,
            **_serialized(self, "initializer", "beta_initializer", "gamma_initializer"),
            **_serialized(self, "regularizer", "beta_regularizer", "gamma_regularizer"),
            **_serialized(self, "constraint", "beta_constraint", "gamma_constraint"),
        })
        return config_


# ---------------------------------------------------------------- GroupNormalization
@registry.register("layer")
class GroupNormalization(Layer):
    """Splits the channels into ``groups`` and normalizes each group of each sample.

    ``groups=1`` is layer normalization over channels and space; ``groups=-1`` (one
    channel per group) is instance normalization. ``gamma``/``beta`` are per channel.

    Args:
        groups: positive int dividing the number of channels, or -1. Default 32.
        axis: int, the channel axis. Default -1.
        epsilon: small float added to the variance. Default 1e-3.
        center: whether to add the offset ``beta``. Default True.
        scale: whether to multiply by ``gamma``. Default True.
        beta_initializer, gamma_initializer: defaults ``"zeros"`` and ``"ones"``.
        beta_regularizer, gamma_regularizer: optional regularizers.
        beta_constraint, gamma_constraint: optional constraints.

    Example:
    >>> import torch
    >>> layer = GroupNormalization(groups=2, epsilon=0.0)
    >>> layer(torch.tensor([[1.0, 3.0, 5.0, 9.0]])).detach()
    tensor([[-1.,  1., -1.,  1.]])
    """

    def __init__(
        self,
        groups=32,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or (groups <= 0 and groups != -1):
            raise ValueError(
                f"GroupNormalization expects groups to be a positive integer (or -1 for instance "
                f'normalization); received groups={groups!r} (layer "{self.name}").'
            )
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(
                f'GroupNormalization expects axis to be an int; received axis={axis!r} (layer '
                f'"{self.name}").'
            )
        self.groups = groups
        self.axis = axis
        self.epsilon = epsilon
        self.center = bool(center)
        self.scale = bool(scale)
        _resolve(self, "initializer", beta_initializer=beta_initializer, gamma_initializer=gamma_initializer)
        _resolve(self, "regularizer", beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer)
        _resolve(self, "constraint", beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        axis = _axes(self, self.axis, len(input_shape))[0]
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(
                f'Layer "{self.name}" needs a known number of channels on axis {self.axis}; '
                f"received input shape {tuple(input_shape)}."
            )
        if self.groups == -1:
            self.groups = int(channels)
        if channels < self.groups or channels % self.groups:
            raise ValueError(
                f'Layer "{self.name}" (GroupNormalization) cannot split {channels} channels into '
                f"groups={self.groups}: the number of channels must be a multiple of groups. "
                f"Choose groups dividing {channels} (e.g. 1, or -1 for one channel per group)."
            )
        self.input_spec = InputSpec(ndim=len(input_shape), axes={self.axis: int(channels)})
        _add_gamma_beta(self, (int(channels),), self.scale, self.center)
        self.built = True

    def call(self, inputs):
        dtype = _compute_dtype(inputs)
        x = inputs.to(dtype)
        axis = self.axis % x.ndim
        gamma = None if self.gamma is None else self.gamma.to(dtype)
        beta = None if self.beta is None else self.beta.to(dtype)
        if axis == x.ndim - 1:
            out = self._group_norm_last(x, gamma, beta)
        else:
            view = x if axis == 1 else x.movedim(axis, 1)
            out = F.group_norm(view, self.groups, gamma, beta, self.epsilon)
            out = out if axis == 1 else out.movedim(1, axis)
        return out.to(config.torch_dtype(self._dtype))

    def _group_norm_last(self, x, gamma, beta):
        # Channels last: (..., C) -> (..., G, C/G) is a view, so no transpose is needed.
        channels = x.shape[-1]
        grouped = x.reshape(*x.shape[:-1], self.groups, channels // self.groups)
        dims = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
        variance, mean = torch.var_mean(grouped, dim=dims, correction=0, keepdim=True)
        multiplier = torch.rsqrt(variance + self.epsilon)
        if gamma is not None:
            multiplier = multiplier * gamma.reshape(self.groups, -1)
        offset = -mean * multiplier
        if beta is not None:
            offset = offset + beta.reshape(self.groups, -1)
        return torch.addcmul(offset, grouped, multiplier).reshape(x.shape)

    def compute_output_shape(self, input_shape):
        return _check_output_axes(self, input_shape)

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **_serialized(self, "initializer", "beta_initializer", "gamma_initializer"),
            **_serialized(self, "regularizer", "beta_regularizer", "gamma_regularizer"),
            **_serialized(self, "constraint", "beta_constraint", "gamma_constraint"),
        })
        return config_


# ---------------------------------------------------------------- UnitNormalization
@registry.register("layer")
class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over ``axis`` (``x / max(||x||, 1e-12)``).

    Args:
        axis: int or list of ints, the axes whose norm becomes 1. Default -1.

    Example:
    >>> import torch
    >>> UnitNormalization()(torch.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            axis = list(axis)
        if not (isinstance(axis, int) or isinstance(axis, list)) or isinstance(axis, bool) or (
                isinstance(axis, list) and not all(isinstance(a, int) for a in axis)):
            raise TypeError(
                f"UnitNormalization expects axis to be an int or a list/tuple of ints; received "
                f'axis={axis!r} (layer "{self.name}").'
            )
        self.axis = axis
        self.supports_masking = True

    def build(self, input_shape):
        _axes(self, self.axis, len(input_shape))
        self.built = True

    def call(self, inputs):
        x = inputs if inputs.is_floating_point() else inputs.to(config.torch_dtype(self._dtype))
        dim = self.axis if isinstance(self.axis, int) else tuple(self.axis)
        return F.normalize(x, p=2.0, dim=dim, eps=1e-12)

    def compute_output_shape(self, input_shape):
        return _check_output_axes(self, input_shape)

    def get_config(self):
        config_ = super().get_config()
        config_["axis"] = self.axis
        return config_


# ---------------------------------------------------------------- Normalization (preprocessing)
def _first_of(batch):
    """The inputs of a batch given as ``(x, y)`` or ``(x, y, sample_weight)``."""
    return batch[0] if isinstance(batch, tuple) else batch


@registry.register("layer")
class Normalization(Layer):
    """Preprocessing layer mapping features to ``(x - mean) / sqrt(variance)``.

    ``mean`` and ``variance`` are either given, or learned from data with ``adapt()``
    (then stored as the non-trainable weights ``mean``, ``variance`` and ``count``, as
    in Keras). As in Keras, the divisor is ``max(sqrt(variance), epsilon())`` so a
    constant feature does not divide by zero.

    Args:
        axis: int, tuple of ints or None: the axes that keep a separate mean and
            variance per index (default -1, per feature); None uses one scalar.
        mean: optional mean value(s), broadcast to the kept axes; needs ``variance``.
        variance: optional variance value(s), same shape as ``mean``.
        invert: if True, apply the inverse ``x * sqrt(variance) + mean``. Default False.

    Example:
    >>> import numpy as np
    >>> layer = Normalization(axis=None)
    >>> layer.adapt(np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype="float32"))
    >>> layer(np.array([1.0, 3.0], dtype="float32"))
    tensor([-1.4142,  0.0000])
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, int):
            axis = (axis,)
        else:
            axis = tuple(axis)
        self.axis = axis
        self.input_mean = mean
        self.input_variance = variance
        self.invert = bool(invert)
        self.supports_masking = True
        if (mean is None) != (variance is None):
            raise ValueError(
                f"Normalization needs both `mean` and `variance` when setting values directly; "
                f'received mean={mean!r} and variance={variance!r} (layer "{self.name}").'
            )
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(
                    f"Normalization needs `mean` and `variance` of the same shape; received "
                    f"shapes {np.shape(mean)} and {np.shape(variance)} (layer \"{self.name}\")."
                )
            if len(np.shape(mean)) > len(self.axis):
                raise ValueError(
                    f"The rank of `mean` must be at most the number of axes ({len(self.axis)}); "
                    f'received mean of shape {np.shape(mean)} for axis={self.axis} (layer "{self.name}").'
                )

    def build(self, input_shape):
        rank = len(input_shape)
        if any(not -rank <= a < rank for a in self.axis):
            raise ValueError(
                f'Layer "{self.name}" (Normalization) received axis={self.axis} for inputs of rank '
                f"{rank}. Expected each axis in [-{rank}, {rank})."
            )
        self._build_input_shape = tuple(input_shape)
        self._keep_axis = tuple(sorted(a % rank for a in self.axis))
        for d in self._keep_axis:
            if input_shape[d] is None:
                raise ValueError(
                    f'Layer "{self.name}" needs known sizes on the kept axes {self.axis}; received '
                    f"input shape {tuple(input_shape)} (axis {d} is unknown)."
                )
        self._reduce_axis = tuple(d for d in range(rank) if d not in self._keep_axis)
        self._broadcast_shape = [int(input_shape[d]) if d in self._keep_axis else 1 for d in range(rank)]
        self._mean_and_var_shape = tuple(int(input_shape[d]) for d in self._keep_axis)
        if self.input_mean is None:
            shape = self._mean_and_var_shape
            self._add_weight(shape, "zeros", None, False, None, None, "mean")
            self._add_weight(shape, "ones", None, False, None, None, "variance")
            # Never updated; kept so weight lists and files line up with Keras's.
            self._add_weight((), "zeros", "int32", False, None, None, "count")
        else:
            dtype = config.torch_dtype(self._dtype)
            self.register_buffer("mean", self._broadcast(self.input_mean, dtype), persistent=False)
            self.register_buffer("variance", self._broadcast(self.input_variance, dtype), persistent=False)
        self.built = True

    def _broadcast(self, value, dtype):
        value = torch.as_tensor(np.asarray(value), dtype=dtype)
        if value.ndim:
            # Align the given dims with the kept axes from the right, as Keras does.
            expanded = [1] * len(self._broadcast_shape)
            for i in range(1, value.ndim + 1):
                expanded[self._keep_axis[-i]] = value.shape[-i]
            value = value.reshape(expanded)
        try:
            return value.expand(self._broadcast_shape).contiguous()
        except RuntimeError:
            raise ValueError(
                f'Layer "{self.name}": mean/variance of shape {tuple(np.shape(self.input_mean))} '
                f"cannot be broadcast to the kept axes, shape {tuple(self._mean_and_var_shape)}."
            ) from None

    def adapt(self, data):
        """Compute ``mean`` and ``variance`` over ``data`` and store them as the layer's weights.

        Args:
            data: a NumPy array, a torch tensor, or an iterable of batches (arrays or
                tensors, or ``(x, y)`` tuples whose ``x`` is used).

        >>> import numpy as np
        >>> layer = Normalization()
        >>> layer.adapt(np.array([[0.0, 7.0], [2.0, 9.0]], dtype="float32"))
        >>> [w.tolist() for w in layer.get_weights()]
        [[1.0, 8.0], [1.0, 1.0], 0]
        """
        if self.input_mean is not None:
            raise ValueError(
                f'Layer "{self.name}" was given mean and variance at construction, so adapt() has '
                f"nothing to learn. Create Normalization() without mean/variance to adapt it."
            )
        if isinstance(data, (np.ndarray, torch.Tensor)):
            input_shape = tuple(data.shape)
        elif hasattr(data, "__iter__"):
            batches = iter(data)
            first = next(batches, None)
            if first is None:
                raise ValueError(
                    f'Layer "{self.name}": adapt() received an empty iterable. Pass at least one '
                    f"batch, e.g. layer.adapt([x])."
                )
            first = _first_of(first)
            if getattr(first, "shape", None) is None:
                raise TypeError(
                    f'Layer "{self.name}": adapt() expects an iterable of arrays or tensors with a '
                    f"`.shape`; received an element of type {type(first).__name__}."
                )
            input_shape = tuple(first.shape)
            data = itertools.chain([first], batches)
        else:
            raise TypeError(
                f'Layer "{self.name}": adapt() supports NumPy arrays, torch tensors and iterables '
                f"of batches; received {type(data).__name__}."
            )
        if not self.built:
            self.build(input_shape)
        self._check_adapt_shape(input_shape)
        with torch.no_grad():
            if isinstance(data, np.ndarray):
                mean, variance = np.mean(data, axis=self._reduce_axis), np.var(data, axis=self._reduce_axis)
            elif isinstance(data, torch.Tensor):
                mean, variance = self._tensor_moments(data)
            else:
                mean, variance = self._streamed_moments(data)
            for name, value in (("mean", mean), ("variance", variance)):
                target = self._buffers[name]
                value = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
                target.copy_(value.to(dtype=target.dtype, device=target.device).reshape(target.shape))

    def _check_adapt_shape(self, shape):
        for d in self._keep_axis:
            if len(shape) != len(self._build_input_shape) or shape[d] != self._build_input_shape[d]:
                raise ValueError(
                    f'Layer "{self.name}" was built for inputs of shape {self._build_input_shape}, '
                    f"but adapt() received data of shape {tuple(shape)}. The kept axes "
                    f"{self.axis} must have the same sizes."
                )

    def _tensor_moments(self, data):
        x = data.detach().to(_compute_dtype(data))
        if not self._reduce_axis:
            return x, torch.zeros_like(x)
        variance, mean = torch.var_mean(x, dim=self._reduce_axis, correction=0)
        return mean, variance

    def _streamed_moments(self, batches):
        # Keras's running combination (lack-of-fit sum of squares), batch by batch.
        dtype = config.torch_dtype(self._dtype)
        total_mean = torch.zeros(self._mean_and_var_shape, dtype=dtype)
        total_variance = torch.zeros(self._mean_and_var_shape, dtype=dtype)
        total_count = 0
        for batch in batches:
            batch = _first_of(batch)
            batch = batch.detach() if isinstance(batch, torch.Tensor) else torch.as_tensor(np.asarray(batch))
            batch = batch.to(dtype=dtype, device="cpu")
            self._check_adapt_shape(tuple(batch.shape))
            if self._reduce_axis:
                batch_variance, batch_mean = torch.var_mean(batch, dim=self._reduce_axis, correction=0)
                batch_count = math.prod(batch.shape[d] for d in self._reduce_axis)
            else:
                batch_mean, batch_variance, batch_count = batch, torch.zeros_like(batch), 1
            total_count += batch_count
            batch_weight = float(batch_count) / total_count
            existing_weight = 1.0 - batch_weight
            new_mean = total_mean * existing_weight + batch_mean * batch_weight
            total_variance = (total_variance + (total_mean - new_mean) ** 2) * existing_weight + (
                batch_variance + (batch_mean - new_mean) ** 2) * batch_weight
            total_mean = new_mean
        return total_mean, total_variance

    def call(self, inputs):
        dtype = config.torch_dtype(self._dtype)
        x = inputs.to(dtype)
        mean = self.mean.to(dtype).reshape(self._broadcast_shape)
        variance = self.variance.to(dtype).reshape(self._broadcast_shape)
        scale = torch.clamp_min(torch.sqrt(variance), config.epsilon())
        if self.invert:
            return mean + x * scale
        return (x - mean) / scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "axis": self.axis,
            "invert": self.invert,
            "mean": np.array(self.input_mean).tolist(),
            "variance": np.array(self.input_variance).tolist(),
        })
        return config_
