"""Pooling layers: Max/AveragePooling1D-3D and GlobalMax/GlobalAveragePooling1D-3D.

``_Pool`` and ``_GlobalPool`` hold the logic; the public classes are a docstring and a
constructor. Windows follow TensorFlow/Keras: ``"same"`` pads unevenly (the extra cell
at the end), max pooling never sees the padding, and average pooling divides by the
number of real cells in each window. Adaptive pooling is not here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina.layers.base import InputSpec, Layer, _fmt, _jit_tracing

__all__ = [
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
]

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _TiledMaxPool2D(torch.autograd.Function):
    """Max pooling over non-overlapping windows of an NHWC tensor, for torch.compile.

    The same values and gradients as ``F.max_pool2d`` (each window's gradient goes to its
    first maximum in row-major order, as in TensorFlow and torch), written so that inductor
    fuses it into vectorised loops over the channels: the forward pass reduces each window
    to its maximum and the position of its first maximum, the backward pass broadcasts the
    gradient to that position. Inductor's own lowering of ``max_pool2d_with_indices``
    backward scatters element by element (a third of a small convnet's step on the CPU).
    """

    @staticmethod
    def forward(x, pool_size):
        # Window cell by window cell, on strided views: elementwise ops over the output,
        # which inductor fuses into one loop (a reduction over the window dims does not vectorise).
        tiles = _tiles(x, pool_size)
        (kh, kw) = pool_size
        cells = [tiles[:, :, i, :, j] for i in range(kh) for j in range(kw)]
        out = cells[0]
        for cell in cells[1:]:
            out = torch.maximum(out, cell)
        first = torch.full_like(out, len(cells), dtype=torch.int32)
        for position in range(len(cells) - 1, -1, -1):
            first = torch.where(cells[position] == out, position, first)
        return out, first

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.pool_size, ctx.shape = inputs[1], inputs[0].shape
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad, _):
        (first,), (kh, kw), (n, h, w, c) = ctx.saved_tensors, ctx.pool_size, ctx.shape
        ho, wo = h // kh, w // kw
        chosen = _positions(ctx.pool_size, first.device) == first.unsqueeze(2).unsqueeze(4)
        result = torch.where(chosen, grad.unsqueeze(2).unsqueeze(4), 0.0).reshape(n, ho * kh, wo * kw, c)
        if ho * kh != h or wo * kw != w:  # the cells no window covers get no gradient
            result = F.pad(result, (0, 0, 0, w - wo * kw, 0, h - ho * kh))
        return result, None


def _positions(pool_size, device):
    """Each window cell's row-major position, shaped (kh, 1, kw, 1) to broadcast over tiles."""
    kh, kw = pool_size
    return torch.arange(kh * kw, device=device, dtype=torch.int32).reshape(kh, 1, kw, 1)


def _tiles(x, pool_size):
    """``x`` (N, H, W, C) viewed as (N, H/kh, kh, W/kw, kw, C), cropped to whole windows."""
    (kh, kw), (_, h, w, _) = pool_size, x.shape
    ho, wo = h // kh, w // kw
    return x[:, :ho * kh, :wo * kw].unflatten(1, (ho, kh)).unflatten(3, (wo, kw))


def _standardize_data_format(data_format, layer_name: str) -> str:
    if data_format is None:
        return config.image_data_format()
    value = str(data_format).lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(
            f'The `data_format` argument must be one of "channels_first", "channels_last" '
            f'(layer "{layer_name}"). Received: data_format={data_format!r}.'
        )
    return value


def _int_tuple(value, n: int, arg: str, layer_name: str, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``n`` ints, each >= ``minimum``) as a tuple of ``n`` ints."""
    items = (value,) * n if not isinstance(value, (list, tuple)) else tuple(value)
    ok = len(items) == n and all(
        not isinstance(v, bool) and hasattr(v, "__index__") and int(v) >= minimum for v in items
    )
    if not ok:
        kind = "positive" if minimum >= 1 else "non-negative"
        raise ValueError(
            f"The `{arg}` argument must be a {kind} int or a tuple of {n} {kind} ints "
            f'(layer "{layer_name}"). Received: {arg}={value!r}.'
        )
    return tuple(int(v) for v in items)


def _autocast(layer: Layer, inputs: torch.Tensor, integers: bool = False) -> torch.Tensor:
    """Float inputs (and integer ones when ``integers``) in the layer's dtype, as Keras autocasts."""
    if inputs.is_floating_point() or integers:
        dtype = config.torch_dtype(layer.dtype)
        if inputs.dtype != dtype:
            return inputs.to(dtype)
    return inputs


def _same_padding(size: int, pool: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) for one axis; the odd cell goes after."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + pool - size)
    return total // 2, total - total // 2


class _Pool(Layer):
    """Max or average pooling over ``rank`` spatial axes (the logic of every *Pooling{1,2,3}D)."""

    def __init__(self, rank, mode, pool_size, strides, padding, data_format, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.rank = rank
        self.mode = mode
        self.pool_size = _int_tuple(pool_size, rank, "pool_size", self.name)
        self.strides = _int_tuple(pool_size if strides is None else strides, rank, "strides", self.name)
        self.padding = str(padding).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(
                f'The `padding` argument must be "valid" or "same" (layer "{self.name}"). '
                f"Received: padding={padding!r}."
            )
        self.data_format = _standardize_data_format(data_format, self.name)
        self.input_spec = InputSpec(ndim=rank + 2)

    def build(self, input_shape):
        self.input_spec.check(self, tuple(input_shape))
        self.compute_output_shape(input_shape)
        self.built = True

    def call(self, inputs):
        inputs = _autocast(self, inputs, integers=True)
        if (self.mode == "max" and self.rank == 2 and self.data_format == "channels_last"
                and self.padding == "valid" and self.strides == self.pool_size
                and _jit_tracing()):
            self._check_fits(tuple(inputs.shape[1:3]), tuple(inputs.shape))
            return _TiledMaxPool2D.apply(inputs, self.pool_size)[0]
        # A channels_last tensor moved to NC... is a view in torch's channels_last memory
        # format, which the pooling kernels read without a copy.
        x = inputs.movedim(-1, 1) if self.data_format == "channels_last" else inputs
        spatial = tuple(x.shape[2:])
        if self.padding == "valid":
            self._check_fits(spatial, tuple(inputs.shape))
            pads = [(0, 0)] * self.rank
        else:
            pads = [_same_padding(n, k, s) for n, k, s in zip(spatial, self.pool_size, self.strides)]
        if all(before == after for before, after in pads):
            # torch pads implicitly with -inf (max) / excludes the cells (avg), as TF does.
            padding = [before for before, _ in pads]
            if self.mode == "max":
                out = _MAX_POOL[self.rank](x, self.pool_size, self.strides, padding)
            else:
                out = _AVG_POOL[self.rank](x, self.pool_size, self.strides, padding, count_include_pad=False)
        else:
            # Uneven padding, which torch's kernels cannot express: pad explicitly.
            flat = [p for pair in reversed(pads) for p in pair]
            if self.mode == "max":
                out = _MAX_POOL[self.rank](F.pad(x, flat, value=float("-inf")), self.pool_size, self.strides)
            else:
                # Zero padding, then divide by the fraction of real cells in each window.
                pool = _AVG_POOL[self.rank]
                ones = torch.ones((1, 1) + spatial, dtype=x.dtype, device=x.device)
                out = pool(F.pad(x, flat), self.pool_size, self.strides) / pool(
                    F.pad(ones, flat), self.pool_size, self.strides)
        return out.movedim(1, -1) if self.data_format == "channels_last" else out

    def _check_fits(self, spatial, full_shape):
        if any(n is not None and n < k for n, k in zip(spatial, self.pool_size)):
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) cannot pool input of shape '
                f"{_fmt(full_shape)}: with padding='valid' every spatial size must be at least "
                f"pool_size={self.pool_size}, but the spatial sizes are {_fmt(spatial)}. Use "
                f"padding='same', a smaller pool_size, or a larger input."
            )

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channels_last = self.data_format == "channels_last"
        spatial = input_shape[1:-1] if channels_last else input_shape[2:]
        if self.padding == "valid":
            self._check_fits(spatial, input_shape)
            sizes = tuple(None if n is None else (n - k) // s + 1
                          for n, k, s in zip(spatial, self.pool_size, self.strides))
        else:
            sizes = tuple(None if n is None else -(-n // s) for n, s in zip(spatial, self.strides))
        if channels_last:
            return (input_shape[0], *sizes, input_shape[-1])
        return (input_shape[0], input_shape[1], *sizes)

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        })
        return config_


@registry.register("layer", aliases=("MaxPool1D",))
class MaxPooling1D(_Pool):
    """Max pooling over the steps of temporal data.

    The window of ``pool_size`` steps moves by ``strides``. With ``padding="valid"``
    the output has ``(steps - pool_size) // strides + 1`` steps, with ``"same"``
    ``ceil(steps / strides)`` (padding split as TensorFlow does, the odd cell at the end).

    Args:
        pool_size: int, the window size. Default 2.
        strides: int or None (the default, meaning ``pool_size``).
        padding: ``"valid"`` (default) or ``"same"``, case-insensitive.
        data_format: ``"channels_last"`` (``(batch, steps, features)``) or
            ``"channels_first"`` (``(batch, features, steps)``); default
            ``image_data_format()``.
        name: the layer's name.

    Example:
    >>> import torch
    >>> x = torch.tensor([[[1.0], [3.0], [2.0], [5.0], [4.0]]])
    >>> MaxPooling1D(pool_size=2)(x).flatten()
    tensor([3., 5.])
    >>> MaxPooling1D(pool_size=2, padding="same")(x).flatten()
    tensor([3., 5., 4.])
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(1, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


@registry.register("layer", aliases=("MaxPool2D",))
class MaxPooling2D(_Pool):
    """Max pooling over the height and width of images.

    Args:
        pool_size: int or tuple of 2 ints, the window size. Default ``(2, 2)``.
        strides: int, tuple of 2 ints, or None (the default, meaning ``pool_size``).
        padding: ``"valid"`` (default) or ``"same"``, case-insensitive.
        data_format: ``"channels_last"`` (``(batch, height, width, channels)``) or
            ``"channels_first"`` (``(batch, channels, height, width)``); default
            ``image_data_format()``.
        name: the layer's name.

    Example:
    >>> import torch
    >>> x = torch.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    >>> MaxPooling2D(pool_size=2, strides=1)(x)[0, :, :, 0]
    tensor([[5., 6.],
            [8., 9.]])
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(2, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


@registry.register("layer", aliases=("MaxPool3D",))
class MaxPooling3D(_Pool):
    """Max pooling over the three spatial axes of volumes.

    Args:
        pool_size: int or tuple of 3 ints, the window size. Default ``(2, 2, 2)``.
        strides: int, tuple of 3 ints, or None (the default, meaning ``pool_size``).
        padding: ``"valid"`` (default) or ``"same"``, case-insensitive.
        data_format: ``"channels_last"`` (``(batch, dim1, dim2, dim3, channels)``) or
            ``"channels_first"`` (``(batch, channels, dim1, dim2, dim3)``); default
            ``image_data_format()``.
        name: the layer's name.

    Example:
    >>> import torch
    >>> MaxPooling3D()(torch.arange(8.0).reshape(1, 2, 2, 2, 1)).flatten()
    tensor([7.])
    """

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, name=None,
                 **kwargs):
        super().__init__(3, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


@registry.register("layer", aliases=("AvgPool1D",))
class AveragePooling1D(_Pool):
    """Average pooling over the steps of temporal data.

    With ``padding="same"`` each window is averaged over its real steps only
    (padding is not counted), as in TensorFlow/Keras.

    Args:
        pool_size: int, the window size (required, as in Keras).
        strides: int or None (the default, meaning ``pool_size``).
        padding: ``"valid"`` (default) or ``"same"``, case-insensitive.
        data_format: ``"channels_last"`` (``(batch, steps, features)``) or
            ``"channels_first"`` (``(batch, features, steps)``); default
            ``image_data_format()``.
        name: the layer's name.

    Example:
    >>> import torch
    >>> x = torch.tensor([[[1.0], [3.0], [2.0], [6.0], [4.0]]])
    >>> AveragePooling1D(pool_size=2)(x).flatten()
    tensor([2., 4.])
    >>> AveragePooling1D(pool_size=2, padding="same")(x).flatten()
    tensor([2., 4., 4.])
    """

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(1, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


@registry.register("layer", aliases=("AvgPool2D",))
class AveragePooling2D(_Pool):
    """Average pooling over the height and width of images.

    With ``padding="same"`` each window is averaged over its real pixels only.

    Args:
        pool_size: int or tuple of 2 ints, the window size (required, as in Keras).
        strides: int, tuple of 2 ints, or None (the default, meaning ``pool_size``).
        padding: ``"valid"`` (default) or ``"same"``, case-insensitive.
        data_format: ``"channels_last"`` (``(batch, height, width, channels)``) or
            ``"channels_first"`` (``(batch, channels, height, width)``); default
            ``image_data_format()``.
        name: the layer's name.

    Example:
    >>> import torch
    >>> x = torch.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    >>> AveragePooling2D(pool_size=2, padding="same")(x)[0, :, :, 0]
    tensor([[3.0000, 4.5000],
            [7.5000, 9.0000]])
    """

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(2, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


@registry.register("layer", aliases=("AvgPool3D",))
class AveragePooling3D(_Pool):
    """Average pooling over the three spatial axes of volumes.

    With ``padding="same"`` each window is averaged over its real cells only.

    Args:
        pool_size: int or tuple of 3 ints, the window size (required, as in Keras).
        strides: int, tuple of 3 ints, or None (the default, meaning ``pool_size``).
        padding: ``"valid"`` (default) or ``"same"``, case-insensitive.
        data_format: ``"channels_last"`` (``(batch, dim1, dim2, dim3, channels)``) or
            ``"channels_first"`` (``(batch, channels, dim1, dim2, dim3)``); default
            ``image_data_format()``.
        name: the layer's name.

    Example:
    >>> import torch
    >>> AveragePooling3D(pool_size=2)(torch.arange(8.0).reshape(1, 2, 2, 2, 1)).flatten()
    tensor([3.5000])
    """

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(3, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


class _GlobalPool(Layer):
    """Max or mean over all ``rank`` spatial axes (the logic of every Global*Pooling{1,2,3}D)."""

    def __init__(self, rank, mode, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.mode = mode
        self.data_format = _standardize_data_format(data_format, self.name)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=rank + 2)

    def build(self, input_shape):
        self.input_spec.check(self, tuple(input_shape))
        self.built = True

    def call(self, inputs, mask=None):
        first = 1 if self.data_format == "channels_last" else 2
        axes = tuple(range(first, first + self.rank))
        inputs = _autocast(self, inputs, integers=self.mode == "average")
        if self.mode == "max":
            return torch.amax(inputs, dim=axes, keepdim=self.keepdims)
        if mask is None or not self.supports_masking:
            return torch.mean(inputs, dim=axes, keepdim=self.keepdims)
        # Masked steps are left out of both the sum and the count (all masked -> nan, as Keras).
        keep = torch.as_tensor(mask, device=inputs.device).to(torch.bool)
        keep = keep.unsqueeze(-1 if self.data_format == "channels_last" else 1)
        total = torch.where(keep, inputs, 0).sum(dim=axes, keepdim=self.keepdims)
        return total / keep.sum(dim=axes, keepdim=self.keepdims).to(inputs.dtype)

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.data_format == "channels_last":
            channels = input_shape[-1]
            return (input_shape[0], *([1] * self.rank), channels) if self.keepdims else (input_shape[0], channels)
        channels = input_shape[1]
        return (input_shape[0], channels, *([1] * self.rank)) if self.keepdims else (input_shape[0], channels)

    def get_config(self):
        config_ = super().get_config()
        config_.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config_


@registry.register("layer", aliases=("GlobalMaxPool1D",))
class GlobalMaxPooling1D(_GlobalPool):
    """The maximum over all steps of temporal data.

    Args:
        data_format: ``"channels_last"`` (``(batch, steps, features)``) or
            ``"channels_first"`` (``(batch, features, steps)``); default ``image_data_format()``.
        keepdims: keep the steps axis with size 1. Default False.

    Output shape:
        ``(batch, features)``; with keepdims ``(batch, 1, features)`` or ``(batch, features, 1)``.

    Example:
    >>> import torch
    >>> GlobalMaxPooling1D()(torch.tensor([[[1.0, 5.0], [3.0, 2.0]]]))
    tensor([[3., 5.]])
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, "max", data_format, keepdims, **kwargs)


@registry.register("layer", aliases=("GlobalMaxPool2D",))
class GlobalMaxPooling2D(_GlobalPool):
    """The maximum over the height and width of images.

    Args:
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.
        keepdims: keep the spatial axes with size 1. Default False.

    Example:
    >>> import torch
    >>> GlobalMaxPooling2D()(torch.arange(8.0).reshape(1, 2, 2, 2))
    tensor([[6., 7.]])
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, "max", data_format, keepdims, **kwargs)


@registry.register("layer", aliases=("GlobalMaxPool3D",))
class GlobalMaxPooling3D(_GlobalPool):
    """The maximum over the three spatial axes of volumes.

    Args:
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.
        keepdims: keep the spatial axes with size 1. Default False.

    Example:
    >>> import torch
    >>> GlobalMaxPooling3D(keepdims=True)(torch.zeros(2, 3, 4, 5, 6)).shape
    torch.Size([2, 1, 1, 1, 6])
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(3, "max", data_format, keepdims, **kwargs)


@registry.register("layer", aliases=("GlobalAvgPool1D",))
class GlobalAveragePooling1D(_GlobalPool):
    """The mean over all steps of temporal data; masked steps are left out of the mean.

    Args:
        data_format: ``"channels_last"`` (``(batch, steps, features)``) or
            ``"channels_first"`` (``(batch, features, steps)``); default ``image_data_format()``.
        keepdims: keep the steps axis with size 1. Default False.

    Call arguments:
        inputs: a 3D tensor.
        mask: optional ``(batch, steps)`` boolean tensor; False steps are excluded
            from the average (received automatically after ``Embedding(mask_zero=True)``
            or ``Masking``). The output carries no mask.

    Example:
    >>> import torch
    >>> x = torch.tensor([[[1.0], [3.0], [8.0]]])
    >>> GlobalAveragePooling1D()(x)
    tensor([[4.]])
    >>> GlobalAveragePooling1D()(x, mask=torch.tensor([[True, True, False]]))
    tensor([[2.]])
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, "average", data_format, keepdims, **kwargs)
        self.supports_masking = True


@registry.register("layer", aliases=("GlobalAvgPool2D",))
class GlobalAveragePooling2D(_GlobalPool):
    """The mean over the height and width of images.

    Args:
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.
        keepdims: keep the spatial axes with size 1. Default False.

    Example:
    >>> import torch
    >>> GlobalAveragePooling2D()(torch.arange(8.0).reshape(1, 2, 2, 2))
    tensor([[3., 4.]])
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, "average", data_format, keepdims, **kwargs)


@registry.register("layer", aliases=("GlobalAvgPool3D",))
class GlobalAveragePooling3D(_GlobalPool):
    """The mean over the three spatial axes of volumes.

    Args:
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.
        keepdims: keep the spatial axes with size 1. Default False.

    Example:
    >>> import torch
    >>> GlobalAveragePooling3D(data_format="channels_first")(torch.ones(2, 3, 4, 4, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(3, "average", data_format, keepdims, **kwargs)


# Keras's short aliases (keras.layers.MaxPool2D is keras.layers.MaxPooling2D).
MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = (
    GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D)
