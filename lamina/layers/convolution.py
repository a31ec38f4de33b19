"""Convolution layers: Conv1D/2D/3D, their transposes, SeparableConv1D/2D, DepthwiseConv1D/2D.

One private base, ``_Conv``, owns argument checks, Keras's "same"/"causal" padding rules
on top of torch's symmetric padding, the channels_last views, output shapes and configs;
``_ConvTranspose``, ``_DepthwiseConv`` and ``_SeparableConv`` change only the weights, the
torch call and the shape formula. Pooling and cropping/padding layers live elsewhere.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina.layers.base import InputSpec, Layer

__all__ = [
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    "Convolution1D", "Convolution2D", "Convolution3D", "Convolution1DTranspose",
    "Convolution2DTranspose", "Convolution3DTranspose", "SeparableConvolution1D",
    "SeparableConvolution2D",
]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _int_tuple(value, rank: int, name: str, layer: str, allow_zero: bool = False) -> tuple[int, ...]:
    """``value`` (an int or ``rank`` ints) as a tuple of ``rank`` ints, checked for sign."""
    items = (value,) * rank if isinstance(value, int) else value
    try:
        items = tuple(items)
        ok = len(items) == rank and all(not isinstance(v, bool) and int(v) == v for v in items)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"The `{name}` argument must be an int or a tuple of {rank} integers; received "
            f"{name}={value!r} (layer \"{layer}\")."
        )
    items = tuple(int(v) for v in items)
    if any(v < 0 or (v == 0 and not allow_zero) for v in items):
        raise ValueError(
            f"The `{name}` argument must hold {'non-negative' if allow_zero else 'positive'} "
            f"integers; received {name}={value!r} (layer \"{layer}\")."
        )
    return items


def _positive_int(value, name: str, layer: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly positive integer. "
            f"Received {name}={value!r} (layer \"{layer}\")."
        )
    return value


@functools.lru_cache(maxsize=512)
def _conv_plan(spatial, kernel_size, strides, dilation_rate, padding):
    """How torch reproduces Keras's ``padding`` for inputs of spatial size ``spatial``.

    Returns ``(input_pad, torch_padding, crop)``: amounts for ``F.pad`` (or None), torch's
    symmetric padding per axis, and slices to apply to the output (or None). Keras/TF put
    the odd pixel of "same" padding at the end; torch pads both sides equally.
    """
    input_pad, torch_padding, crop, cropped = [], [], [slice(None), slice(None)], False
    for size, k, s, d in zip(spatial, kernel_size, strides, dilation_rate):
        span = d * (k - 1)
        left = right = pad = 0
        window = slice(None)
        if padding == "causal":
            # Pad `span` on both sides and drop the trailing outputs that saw right padding:
            # no copy of the input, unlike Keras's left-only pad.
            pad = span
            keep = (size - 1) // s + 1
            if (size + span - 1) // s + 1 != keep:
                window = slice(0, keep)
        elif padding == "same":
            total = max((-(-size // s) - 1) * s + span + 1 - size, 0)
            if total % 2 == 0:
                pad = total // 2
            elif s == 1:
                # One more pixel on both sides shifts the windows by one: drop the first output.
                pad, window = total // 2 + 1, slice(1, None)
            else:
                left, right = total // 2, total - total // 2
        input_pad[0:0] = [left, right]  # F.pad lists the last axis first
        torch_padding.append(pad)
        crop.append(window)
        cropped = cropped or window != slice(None)
    return (tuple(input_pad) if any(input_pad) else None, tuple(torch_padding),
            tuple(crop) if cropped else None)


def _transpose_plan(kernel_size, strides, dilation_rate, padding, output_padding):
    """torch's (padding, output_padding, crop) giving Keras's transposed-conv output.

    The full transposed convolution has ``(n - 1) * s + span + 1`` outputs. Keras
    (matching TF/JAX) keeps a window of it, cropping ``crop_left`` at the start and
    ``crop_right`` at the end (a negative crop appends zeros). torch crops ``padding`` on
    both sides and appends ``output_padding``; a slice of the output does the rest.
    """
    torch_padding, torch_output_padding, crop = [], [], [slice(None), slice(None)]
    for i, (k, s, d) in enumerate(zip(kernel_size, strides, dilation_rate)):
        span = d * (k - 1)
        extra = None if output_padding is None else output_padding[i]
        if padding == "valid":
            crop_left = 0
            crop_right = -(max(span + 1, s) - span - 1 if extra is None else extra)
        else:
            # TF/JAX pad the stride-dilated input by `total`, the larger half (at most `span`)
            # at the start; the full output corresponds to `span` on both sides.
            total = s + span - 1 if extra is None else span + (span + 1) % 2 - 1 + extra
            pad_left = min(total - total // 2, span)
            crop_left, crop_right = span - pad_left, span - (total - pad_left)
        if crop_right <= crop_left:
            pad = max(crop_right, 0)
            torch_padding.append(pad)
            torch_output_padding.append(pad - crop_right)
            crop.append(slice(crop_left - pad, None) if crop_left > pad else slice(None))
        else:
            torch_padding.append(crop_left)
            torch_output_padding.append(0)
            crop.append(slice(0, crop_left - crop_right))
    cropped = any(c != slice(None) for c in crop)
    return tuple(torch_padding), tuple(torch_output_padding), tuple(crop) if cropped else None


class _Conv(Layer):
    """Shared logic of every convolution layer; ``rank`` is the number of spatial axes.

    Subclasses set ``_weight_args`` (prefixes of their ``*_initializer`` /
    ``*_regularizer`` / ``*_constraint`` arguments, bias excluded) and ``_config_keys``,
    and override ``_create_weights``, ``_convolve`` and the shape helpers as needed.
    """

    _weight_args = ("kernel",)
    _config_keys = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
                    "groups")
    _allows_causal = True
    _allows_strided_dilation = False

    def __init__(
        self,
        rank,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
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
        # Keras configs may carry these keys as None; lamina has no LoRA.
        for key in ("lora_rank", "lora_alpha"):
            if kwargs.pop(key, None) is not None:
                raise ValueError(
                    f"{type(self).__name__}({key}=...) is not supported: lamina has no LoRA. "
                    f"Remove the argument (None is accepted)."
                )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        name = self.name
        self.rank = rank
        depthwise = self._weight_args[0] == "depthwise"  # no `filters` (separable sets its own)
        self.filters = None if depthwise else _positive_int(filters, "filters", name)
        self.groups = _positive_int(groups, "groups", name)
        if self.filters is not None and self.filters % self.groups:
            raise ValueError(
                f"The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={self.groups}, filters={self.filters} (layer \"{name}\")."
            )
        self.kernel_size = _int_tuple(kernel_size, rank, "kernel_size", name)
        self.strides = _int_tuple(strides, rank, "strides", name)
        self.dilation_rate = _int_tuple(dilation_rate, rank, "dilation_rate", name)
        allowed = ("valid", "same", "causal") if rank == 1 and self._allows_causal else ("valid", "same")
        self.padding = padding.lower() if isinstance(padding, str) else padding
        if self.padding not in allowed:
            raise ValueError(
                f"The `padding` argument must be one of {allowed}; received padding={padding!r} "
                f"(layer \"{name}\")."
            )
        fmt = data_format or config.image_data_format()
        self.data_format = fmt.lower() if isinstance(fmt, str) else fmt
        if self.data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"The `data_format` argument must be 'channels_last' or 'channels_first'; "
                f"received data_format={data_format!r} (layer \"{name}\")."
            )
        if not self._allows_strided_dilation and max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"`strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: "
                f"strides={self.strides} and dilation_rate={self.dilation_rate} (layer \"{name}\")."
            )
        self.activation = registry.get("activation", activation or "linear")
        self.use_bias = bool(use_bias)
        self._set_weight_args(self._weight_args[0], kernel_initializer, kernel_regularizer, kernel_constraint)
        self._set_weight_args("bias", bias_initializer, bias_regularizer, bias_constraint)
        self.input_spec = InputSpec(ndim=rank + 2)
        # channels_last <-> channels_first axis orders; permuted views need no copy.
        self._to_channels_first = (0, rank + 1, *range(1, rank + 1))
        self._to_channels_last = (0, *range(2, rank + 2), 1)

    def _set_weight_args(self, prefix, initializer, regularizer, constraint):
        setattr(self, f"{prefix}_initializer", registry.get("initializer", initializer))
        setattr(self, f"{prefix}_regularizer", registry.get("regularizer", regularizer))
        setattr(self, f"{prefix}_constraint", registry.get("constraint", constraint))

    def _new_weight(self, name, prefix, keras_shape, perm=None):
        """A weight created from the ``{prefix}_*`` arguments, Keras shape, torch layout."""
        return self._add_weight(
            keras_shape, getattr(self, f"{prefix}_initializer"), None, True,
            getattr(self, f"{prefix}_regularizer"), getattr(self, f"{prefix}_constraint"), name, perm=perm,
        )

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    @property
    def _kernel_perm(self) -> tuple[int, ...]:
        """Keras ``(*kernel_size, a, b)`` -> torch ``(b, a, *kernel_size)``."""
        return (self.rank + 1, self.rank, *range(self.rank))

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.compute_output_shape(input_shape)  # checks rank, channels and spatial sizes
        channels = int(input_shape[self._channel_axis])
        self._create_weights(channels)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis: channels})
        self.built = True

    def _create_weights(self, channels):
        self.kernel = self._new_weight(
            "kernel", "kernel", self.kernel_size + (channels // self.groups, self.filters), self._kernel_perm)
        self.bias = self._new_weight("bias", "bias", (self.filters,)) if self.use_bias else None

    def call(self, inputs):
        dtype = self._parameters[self._weight_names[0]].dtype
        if inputs.dtype != dtype:
            # Keras casts integer and other-precision inputs to the layer's dtype.
            inputs = inputs.to(dtype)
        x = inputs.permute(self._to_channels_first) if self.data_format == "channels_last" else inputs
        if self.data_format == "channels_last" and all(type(s) is int and s == 1 for s in x.shape[2:]):
            # With one pixel the permuted view's strides still say channels_last, so oneDNN
            # converted the kernel to that layout in each pass (a 512x512 3x3 kernel: ~2.7 ms,
            # three times a step); the same memory with contiguous strides skips the conversion.
            x = x.reshape(x.shape[:2]).view(x.shape)
        input_pad, padding, extra, crop = self._plan(tuple(x.shape[2:]))
        if input_pad is not None:
            x = F.pad(x, input_pad)
        try:
            outputs = self._convolve(x, padding, extra)
        except RuntimeError:
            self.compute_output_shape(tuple(inputs.shape))  # raises a clearer ValueError
            raise
        if crop is not None:
            outputs = outputs[crop]
        if self.data_format == "channels_last":
            outputs = outputs.permute(self._to_channels_last)
        return self.activation(outputs)

    def _plan(self, spatial):
        """(F.pad amounts, torch padding, torch output_padding, output crop) for these sizes."""
        # Symbolic sizes (torch.export / ONNX with dynamic spatial axes) cannot be cache keys,
        # and torch.compile traces the plan once (through the cache it warns that it skips it).
        cached = all(type(s) is int for s in spatial) and not torch.compiler.is_compiling()
        plan = _conv_plan if cached else _conv_plan.__wrapped__
        input_pad, padding, crop = plan(spatial, self.kernel_size, self.strides, self.dilation_rate,
                                        self.padding)
        return input_pad, padding, None, crop

    def _convolve(self, x, padding, extra):
        return _CONV[self.rank](x, self.kernel, self.bias, self.strides, padding, self.dilation_rate, self.groups)

    def _output_channels(self, channels):
        return self.filters

    def _output_size(self, size, k, s, d, i):
        """Keras's output length along spatial axis ``i`` for an input of length ``size``."""
        if self.padding == "valid":
            return (size - d * (k - 1) - 1) // s + 1
        return (size - 1) // s + 1

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        InputSpec(ndim=self.rank + 2).check(self, input_shape)
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f'Layer "{self.name}" needs a known channel dimension (axis {self._channel_axis}, '
                f"data_format={self.data_format!r}); received input shape {input_shape}."
            )
        if channels % self.groups:
            raise ValueError(
                f"The number of input channels must be evenly divisible by the number of groups. "
                f"Received groups={self.groups}, but the input has {channels} channels (full input "
                f"shape is {input_shape}) (layer \"{self.name}\")."
            )
        spatial = input_shape[1:-1] if self.data_format == "channels_last" else input_shape[2:]
        sizes = []
        for i, (size, k, s, d) in enumerate(zip(spatial, self.kernel_size, self.strides, self.dilation_rate)):
            out = None if size is None else self._output_size(int(size), k, s, d, i)
            if out is not None and out <= 0:
                raise ValueError(
                    f'Layer "{self.name}" cannot convolve an input of shape {input_shape} with '
                    f"kernel_size={self.kernel_size}, dilation_rate={self.dilation_rate}, "
                    f"strides={self.strides}, padding={self.padding!r}: the output size along "
                    f"spatial axis {i} would be {out}. Use larger inputs, a smaller kernel or "
                    f"dilation, or padding='same'."
                )
            sizes.append(out)
        filters = self._output_channels(channels)
        if self.data_format == "channels_last":
            return (input_shape[0], *sizes, filters)
        return (input_shape[0], filters, *sizes)

    def get_config(self):
        config_ = super().get_config()
        config_.update({key: getattr(self, key) for key in self._config_keys})
        config_["activation"] = registry.serialize("activation", self.activation)
        config_["use_bias"] = self.use_bias
        for prefix in (*self._weight_args, "bias"):
            for kind in ("initializer", "regularizer", "constraint"):
                config_[f"{prefix}_{kind}"] = registry.serialize(kind, getattr(self, f"{prefix}_{kind}"))
        config_["activity_regularizer"] = registry.serialize("regularizer", self.activity_regularizer)
        return config_


class _ConvTranspose(_Conv):
    """Transposed convolution: Keras kernel ``(*kernel_size, filters, in)``, no groups."""

    _config_keys = ("filters", "kernel_size", "strides", "padding", "output_padding", "data_format",
                    "dilation_rate")
    _allows_causal = False

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(
            rank, filters, kernel_size, strides, padding, data_format, dilation_rate, 1, activation,
            use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            activity_regularizer, kernel_constraint, bias_constraint, **kwargs,
        )
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = _int_tuple(output_padding, rank, "output_padding", self.name, allow_zero=True)
            if any(p >= s for p, s in zip(self.output_padding, self.strides)):
                raise ValueError(
                    f"`output_padding` must be strictly less than `strides` on every axis. "
                    f"Received: output_padding={self.output_padding}, strides={self.strides} "
                    f"(layer \"{self.name}\")."
                )
        self._transpose_plan = _transpose_plan(
            self.kernel_size, self.strides, self.dilation_rate, self.padding, self.output_padding)

    def _create_weights(self, channels):
        self.kernel = self._new_weight(
            "kernel", "kernel", self.kernel_size + (self.filters, channels), self._kernel_perm)
        self.bias = self._new_weight("bias", "bias", (self.filters,)) if self.use_bias else None

    def _plan(self, spatial):
        padding, output_padding, crop = self._transpose_plan
        return None, padding, output_padding, crop

    def _convolve(self, x, padding, output_padding):
        return _CONV_TRANSPOSE[self.rank](
            x, self.kernel, self.bias, self.strides, padding, output_padding, 1, self.dilation_rate)

    def _output_size(self, size, k, s, d, i):
        span = d * (k - 1)
        extra = None if self.output_padding is None else self.output_padding[i]
        if self.padding == "valid":
            return (size - 1) * s + span + 1 + (max(span + 1, s) - span - 1 if extra is None else extra)
        return size * s if extra is None else (size - 1) * s + (span + 1) % 2 + extra


class _DepthwiseConv(_Conv):
    """Depthwise convolution: each input channel gets ``depth_multiplier`` filters of its own.

    The kernel is stored as ``(in, depth_multiplier, *kernel_size)``, a free view of torch's
    grouped-conv weight ``(in * depth_multiplier, 1, *kernel_size)``.
    """

    _weight_args = ("depthwise",)
    _config_keys = ("depth_multiplier", "kernel_size", "strides", "padding", "data_format",
                    "dilation_rate")
    _allows_causal = False
    _allows_strided_dilation = True

    def __init__(self, rank, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(
            rank, None, kernel_size, strides, padding, data_format, dilation_rate, 1, activation, use_bias,
            depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer,
            activity_regularizer, depthwise_constraint, bias_constraint, **kwargs,
        )
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier", self.name)

    @property
    def _depthwise_perm(self) -> tuple[int, ...]:
        """Keras ``(*kernel_size, in, multiplier)`` -> ``(in, multiplier, *kernel_size)``."""
        return (self.rank, self.rank + 1, *range(self.rank))

    def _create_weights(self, channels):
        self.kernel = self._new_weight(
            "kernel", "depthwise", self.kernel_size + (channels, self.depth_multiplier), self._depthwise_perm)
        self.bias = (self._new_weight("bias", "bias", (channels * self.depth_multiplier,))
                     if self.use_bias else None)

    def _depthwise(self, x, kernel, bias, padding):
        weight = kernel.reshape(-1, 1, *self.kernel_size)
        return _CONV[self.rank](x, weight, bias, self.strides, padding, self.dilation_rate, x.shape[1])

    def _convolve(self, x, padding, extra):
        return self._depthwise(x, self.kernel, self.bias, padding)

    def _output_channels(self, channels):
        return channels * self.depth_multiplier


class _SeparableConv(_DepthwiseConv):
    """Depthwise convolution followed by a 1x1 (pointwise) convolution to ``filters`` channels."""

    _weight_args = ("depthwise", "pointwise")
    _config_keys = ("depth_multiplier", "filters", "kernel_size", "strides", "padding", "data_format",
                    "dilation_rate")

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(
            rank, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation,
            use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer,
            activity_regularizer, depthwise_constraint, bias_constraint, **kwargs,
        )
        self.filters = _positive_int(filters, "filters", self.name)
        self._set_weight_args("pointwise", pointwise_initializer, pointwise_regularizer, pointwise_constraint)

    def _create_weights(self, channels):
        self.depthwise_kernel = self._new_weight(
            "depthwise_kernel", "depthwise", self.kernel_size + (channels, self.depth_multiplier),
            self._depthwise_perm)
        self.pointwise_kernel = self._new_weight(
            "pointwise_kernel", "pointwise", (1,) * self.rank + (channels * self.depth_multiplier, self.filters),
            self._kernel_perm)
        self.bias = self._new_weight("bias", "bias", (self.filters,)) if self.use_bias else None

    def _convolve(self, x, padding, extra):
        depthwise = self._depthwise(x, self.depthwise_kernel, None, padding)
        return _CONV[self.rank](depthwise, self.pointwise_kernel, self.bias)

    def _output_channels(self, channels):
        return self.filters


_CONV_ARGS = """
        filters: positive int, the number of output channels.
        kernel_size: int or tuple of {ints}, the size of the convolution window.
        strides: int or tuple of {ints}. Default 1.
        padding: {paddings} (case-insensitive). Default ``"valid"``.
            ``"same"`` pads as TensorFlow does, the odd pixel going at the end, so
            the output size is ``ceil(input / strides)``."""
_COMMON_ARGS = """
        data_format: ``"channels_last"`` (inputs ``(batch, *spatial, channels)``) or
            ``"channels_first"`` (``(batch, channels, *spatial)``). Default None, which
            means ``lamina.config.image_data_format()`` (``"channels_last"``).
        dilation_rate: int or tuple of {ints}, the dilation of the window. Default 1.
        activation: activation name or callable; default None (linear).
        use_bias: whether to add a bias vector. Default True.
        bias_initializer: default ``"zeros"``.
        bias_regularizer, activity_regularizer, bias_constraint: default None."""
_GROUPS_ARGS = """
        groups: positive int dividing both the input channels and ``filters``; each group
            of channels is convolved separately with ``filters // groups`` filters. Default 1."""
_KWARGS = """
        **kwargs: base-layer arguments (``name``, ``trainable``, ``dtype``...)."""
_KERNEL_ARGS = """
        kernel_initializer: default ``"glorot_uniform"`` (fans from the Keras kernel shape).
        kernel_regularizer, kernel_constraint: default None; they see the kernel in
            Keras's layout."""
_DEPTHWISE_ARGS = """
        depth_multiplier: positive int, output channels per input channel. Default 1.
        depthwise_initializer: default ``"glorot_uniform"``.
        depthwise_regularizer, depthwise_constraint: default None."""


def _doc(rank, parts, paddings='``"valid"`` or ``"same"``'):
    """Fill a docstring's ``{args}`` placeholder with the shared argument text."""

    def decorate(cls):
        ints = "one int" if rank == 1 else f"{rank} ints"
        text = "".join(part.format(ints=ints, paddings=paddings) for part in (*parts, _KWARGS))
        cls.__doc__ = cls.__doc__.replace("{args}", text.strip("\n").lstrip())
        return cls

    return decorate


@registry.register("layer", aliases=("Convolution1D",))
@_doc(1, (_CONV_ARGS, _COMMON_ARGS, _GROUPS_ARGS, _KERNEL_ARGS), '``"valid"``, ``"same"`` or ``"causal"``')
class Conv1D(_Conv):
    """1D convolution (temporal convolution), e.g. over time steps of a sequence.

    ``padding="causal"`` pads only the start, so ``output[t]`` never depends on
    ``input[t + 1:]`` (WaveNet). The kernel is a ``(filters, in / groups, k)`` torch
    parameter; ``get_weights()`` gives Keras's ``(k, in / groups, filters)``.

    Args:
        {args}

    Input shape:
        ``(batch, steps, channels)`` (channels_last) or ``(batch, channels, steps)``.
    Output shape:
        ``(batch, new_steps, filters)`` (channels_last) or ``(batch, filters, new_steps)``.

    Example:
    >>> import torch
    >>> layer = Conv1D(1, 2, kernel_initializer="ones")
    >>> layer(torch.tensor([[[1.0], [2.0], [3.0]]])).tolist()
    [[[3.0], [5.0]]]
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, filters, kernel_size, strides, padding, data_format, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


@registry.register("layer", aliases=("Convolution2D",))
@_doc(2, (_CONV_ARGS, _COMMON_ARGS, _GROUPS_ARGS, _KERNEL_ARGS))
class Conv2D(_Conv):
    """2D convolution over images.

    The kernel is a ``(filters, in / groups, kh, kw)`` torch parameter, as in
    ``torch.nn.Conv2d``; ``get_weights()`` gives Keras's ``(kh, kw, in / groups, filters)``.

    Args:
        {args}

    Input shape:
        ``(batch, height, width, channels)`` or ``(batch, channels, height, width)``.
    Output shape:
        ``(batch, new_height, new_width, filters)`` or ``(batch, filters, new_height, new_width)``.

    Example:
    >>> import torch
    >>> layer = Conv2D(4, 3, strides=2, padding="same")
    >>> layer(torch.zeros(1, 5, 5, 3)).shape
    torch.Size([1, 3, 3, 4])
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 3, 4), (4,)]
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(2, filters, kernel_size, strides, padding, data_format, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


@registry.register("layer", aliases=("Convolution3D",))
@_doc(3, (_CONV_ARGS, _COMMON_ARGS, _GROUPS_ARGS, _KERNEL_ARGS))
class Conv3D(_Conv):
    """3D convolution over volumes (or video).

    The kernel is a ``(filters, in / groups, kd, kh, kw)`` torch parameter;
    ``get_weights()`` gives Keras's ``(kd, kh, kw, in / groups, filters)``.

    Args:
        {args}

    Input shape:
        ``(batch, d1, d2, d3, channels)`` or ``(batch, channels, d1, d2, d3)``.
    Output shape:
        ``(batch, new_d1, new_d2, new_d3, filters)`` or ``(batch, filters, new_d1, ...)``.

    Example:
    >>> import torch
    >>> Conv3D(2, 3)(torch.zeros(1, 4, 4, 4, 1)).shape
    torch.Size([1, 2, 2, 2, 2])
    """

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(3, filters, kernel_size, strides, padding, data_format, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


_OUTPUT_PADDING_ARGS = """
        output_padding: None, an int or a tuple of {ints}, each less than the
            stride: extra size added at the end of each spatial axis. None (default)
            gives ``input * strides`` with ``"same"`` and
            ``(input - 1) * strides + max(kernel, strides)`` with ``"valid"`` (kernel
            counted with its dilation)."""


@registry.register("layer", aliases=("Convolution1DTranspose",))
@_doc(1, (_CONV_ARGS, _OUTPUT_PADDING_ARGS, _COMMON_ARGS, _KERNEL_ARGS))
class Conv1DTranspose(_ConvTranspose):
    """1D transposed convolution (the gradient of Conv1D), used to upsample sequences.

    The kernel is a ``(in, filters, k)`` torch parameter, as in
    ``torch.nn.ConvTranspose1d``; ``get_weights()`` gives Keras's ``(k, filters, in)``.

    Args:
        {args}

    Input shape:
        ``(batch, steps, channels)`` or ``(batch, channels, steps)``.
    Output shape:
        ``(batch, new_steps, filters)`` or ``(batch, filters, new_steps)``.

    Example:
    >>> import torch
    >>> layer = Conv1DTranspose(1, 2, strides=2, kernel_initializer="ones")
    >>> layer(torch.tensor([[[1.0], [2.0]]])).tolist()
    [[[1.0], [1.0], [2.0], [2.0]]]
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(1, filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


@registry.register("layer", aliases=("Convolution2DTranspose",))
@_doc(2, (_CONV_ARGS, _OUTPUT_PADDING_ARGS, _COMMON_ARGS, _KERNEL_ARGS))
class Conv2DTranspose(_ConvTranspose):
    """2D transposed convolution, used to upsample images (decoders, segmentation heads).

    The kernel is a ``(in, filters, kh, kw)`` torch parameter, as in
    ``torch.nn.ConvTranspose2d``; ``get_weights()`` gives Keras's ``(kh, kw, filters, in)``.

    Args:
        {args}

    Input shape:
        ``(batch, height, width, channels)`` or ``(batch, channels, height, width)``.
    Output shape:
        ``(batch, new_height, new_width, filters)`` or ``(batch, filters, new_height, new_width)``.

    Example:
    >>> import torch
    >>> layer = Conv2DTranspose(4, 3, strides=2, padding="same")
    >>> layer(torch.zeros(1, 5, 5, 3)).shape
    torch.Size([1, 10, 10, 4])
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 4, 3), (4,)]
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(2, filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


@registry.register("layer", aliases=("Convolution3DTranspose",))
@_doc(3, (_CONV_ARGS, _OUTPUT_PADDING_ARGS, _COMMON_ARGS, _KERNEL_ARGS))
class Conv3DTranspose(_ConvTranspose):
    """3D transposed convolution, used to upsample volumes.

    The kernel is a ``(in, filters, kd, kh, kw)`` torch parameter; ``get_weights()``
    gives Keras's ``(kd, kh, kw, filters, in)``.

    Args:
        {args}

    Input shape:
        ``(batch, d1, d2, d3, channels)`` or ``(batch, channels, d1, d2, d3)``.
    Output shape:
        ``(batch, new_d1, new_d2, new_d3, filters)`` or ``(batch, filters, new_d1, ...)``.

    Example:
    >>> import torch
    >>> Conv3DTranspose(2, 2, strides=2)(torch.zeros(1, 3, 3, 3, 1)).shape
    torch.Size([1, 6, 6, 6, 2])
    """

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(3, filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


_POINTWISE_ARGS = """
        pointwise_initializer: default ``"glorot_uniform"``.
        pointwise_regularizer, pointwise_constraint: default None."""


@registry.register("layer", aliases=("SeparableConvolution1D",))
@_doc(1, (_CONV_ARGS, _COMMON_ARGS, _DEPTHWISE_ARGS, _POINTWISE_ARGS))
class SeparableConv1D(_SeparableConv):
    """Depthwise-separable 1D convolution: a depthwise then a pointwise (size 1) convolution.

    ``get_weights()`` gives, as Keras, ``depthwise_kernel`` ``(k, in, depth_multiplier)``,
    ``pointwise_kernel`` ``(1, in * depth_multiplier, filters)`` and ``bias`` ``(filters,)``.

    Args:
        {args}

    Input shape:
        ``(batch, steps, channels)`` or ``(batch, channels, steps)``.
    Output shape:
        ``(batch, new_steps, filters)`` or ``(batch, filters, new_steps)``.

    Example:
    >>> import torch
    >>> layer = SeparableConv1D(4, 3, depth_multiplier=2)
    >>> layer(torch.zeros(1, 6, 3)).shape
    torch.Size([1, 4, 4])
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 2), (1, 6, 4), (4,)]
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, filters, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier,
                         activation, use_bias, depthwise_initializer, pointwise_initializer, bias_initializer,
                         depthwise_regularizer, pointwise_regularizer, bias_regularizer, activity_regularizer,
                         depthwise_constraint, pointwise_constraint, bias_constraint, **kwargs)


@registry.register("layer", aliases=("SeparableConvolution2D",))
@_doc(2, (_CONV_ARGS, _COMMON_ARGS, _DEPTHWISE_ARGS, _POINTWISE_ARGS))
class SeparableConv2D(_SeparableConv):
    """Depthwise-separable 2D convolution (Xception, MobileNet): depthwise then 1x1 conv.

    ``get_weights()`` gives, as Keras, ``depthwise_kernel`` ``(kh, kw, in, depth_multiplier)``,
    ``pointwise_kernel`` ``(1, 1, in * depth_multiplier, filters)`` and ``bias``.

    Args:
        {args}

    Input shape:
        ``(batch, height, width, channels)`` or ``(batch, channels, height, width)``.
    Output shape:
        ``(batch, new_height, new_width, filters)`` or ``(batch, filters, new_height, new_width)``.

    Example:
    >>> import torch
    >>> layer = SeparableConv2D(8, 3, padding="same")
    >>> layer(torch.zeros(1, 5, 5, 3)).shape
    torch.Size([1, 5, 5, 8])
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 3, 1), (1, 1, 3, 8), (8,)]
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(2, filters, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier,
                         activation, use_bias, depthwise_initializer, pointwise_initializer, bias_initializer,
                         depthwise_regularizer, pointwise_regularizer, bias_regularizer, activity_regularizer,
                         depthwise_constraint, pointwise_constraint, bias_constraint, **kwargs)


_DEPTHWISE_GEOMETRY = """
        kernel_size: int or tuple of {ints}, the size of the convolution window.
        strides: int or tuple of {ints}. Default 1.
        padding: ``"valid"`` or ``"same"`` (TensorFlow's rule). Default ``"valid"``."""


@registry.register("layer")
@_doc(1, (_DEPTHWISE_GEOMETRY, _DEPTHWISE_ARGS, _COMMON_ARGS))
class DepthwiseConv1D(_DepthwiseConv):
    """1D depthwise convolution: each input channel is convolved with its own filters.

    Output channel ``c * depth_multiplier + m`` comes from input channel ``c``, as in
    Keras. ``get_weights()`` gives the kernel as ``(k, in, depth_multiplier)``, then the
    bias ``(in * depth_multiplier,)``.

    Args:
        {args}

    Input shape:
        ``(batch, steps, channels)`` or ``(batch, channels, steps)``.
    Output shape:
        ``(batch, new_steps, channels * depth_multiplier)`` or its channels_first transpose.

    Example:
    >>> import torch
    >>> layer = DepthwiseConv1D(2, depthwise_initializer="ones")
    >>> layer(torch.tensor([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]])).tolist()
    [[[3.0, 30.0], [5.0, 50.0]]]
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
                         activation, use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer,
                         bias_regularizer, activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)


@registry.register("layer")
@_doc(2, (_DEPTHWISE_GEOMETRY, _DEPTHWISE_ARGS, _COMMON_ARGS))
class DepthwiseConv2D(_DepthwiseConv):
    """2D depthwise convolution: each input channel is convolved with its own filters.

    ``get_weights()`` gives the kernel as ``(kh, kw, in, depth_multiplier)``, then the
    bias ``(in * depth_multiplier,)``, as Keras.

    Args:
        {args}

    Input shape:
        ``(batch, height, width, channels)`` or ``(batch, channels, height, width)``.
    Output shape:
        ``(batch, new_height, new_width, channels * depth_multiplier)`` or its
        channels_first transpose.

    Example:
    >>> import torch
    >>> layer = DepthwiseConv2D(3, depth_multiplier=2)
    >>> layer(torch.zeros(1, 5, 5, 3)).shape
    torch.Size([1, 3, 3, 6])
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 3, 2), (6,)]
    """

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(2, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
                         activation, use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer,
                         bias_regularizer, activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)


# Keras's long spellings.
Convolution1D, Convolution2D, Convolution3D = Conv1D, Conv2D, Conv3D
Convolution1DTranspose, Convolution2DTranspose, Convolution3DTranspose = (
    Conv1DTranspose, Conv2DTranspose, Conv3DTranspose)
SeparableConvolution1D, SeparableConvolution2D = SeparableConv1D, SeparableConv2D
