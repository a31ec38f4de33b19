"""Reshaping layers: Permute, RepeatVector, Cropping1D-3D, ZeroPadding1D-3D, UpSampling1D-3D.

``_Cropping``, ``_ZeroPadding`` and ``_UpSampling`` hold the logic of each family; the
public classes are a docstring and a constructor. None of these layers carries a mask
forward, as in Keras 3. Flatten and Reshape live in ``core.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lamina import registry
from lamina.layers.base import InputSpec, Layer, _fmt
from lamina.layers.pooling import _autocast, _int_tuple, _standardize_data_format

__all__ = [
    "Permute", "RepeatVector", "Cropping1D", "Cropping2D", "Cropping3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
]

_ORDINALS = ("1st", "2nd", "3rd")


def _positive_int(value, arg: str, layer_name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(
            f"Expected an integer value for `{arg}` (layer \"{layer_name}\"); received "
            f"{arg}={value!r} of type {type(value).__name__}."
        )
    if int(value) <= 0:
        raise ValueError(
            f"Argument `{arg}` should be a positive integer (layer \"{layer_name}\"). "
            f"Received: {arg}={value!r}."
        )
    return int(value)


def _pairs(value, rank: int, arg: str, layer_name: str) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` per spatial axis from Keras's int / pair / tuple-of-pairs forms."""
    if rank == 1:
        return (_int_tuple(value, 2, arg, layer_name, minimum=0),)
    if not isinstance(value, (list, tuple)):
        return (_int_tuple(value, 2, arg, layer_name, minimum=0),) * rank
    if len(value) != rank:
        raise ValueError(
            f"`{arg}` should have {rank} elements, one int or (before, after) pair per spatial "
            f'axis (layer "{layer_name}"). Received: {arg}={value!r}.'
        )
    return tuple(_int_tuple(entry, 2, f"{_ORDINALS[i]} entry of {arg}", layer_name, minimum=0)
                 for i, entry in enumerate(value))


def _spatial_axes(rank: int, data_format: str) -> tuple[int, ...]:
    first = 1 if data_format == "channels_last" else 2
    return tuple(range(first, first + rank))


@registry.register("layer")
class Permute(Layer):
    """Permutes the non-batch axes of the input.

    Args:
        dims: tuple of ints, a permutation of ``1..rank`` (the batch axis 0 is
            excluded), e.g. ``(2, 1)`` swaps the two axes of a 3D input.

    Input shape:
        ``(batch, *shape)`` with ``len(shape) == len(dims)``.
    Output shape:
        ``(batch, shape[dims[0] - 1], shape[dims[1] - 1], ...)``.

    Example:
    >>> import torch
    >>> Permute((2, 1))(torch.zeros(4, 10, 64)).shape
    torch.Size([4, 64, 10])
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                f"Invalid permutation argument `dims` for Permute layer \"{self.name}\". The set "
                f"of indices in `dims` must be consecutive and start from 1 (the batch axis 0 is "
                f"not permuted). Received dims={dims}."
            )
        self.dims = tuple(int(d) for d in dims)
        self.input_spec = InputSpec(ndim=len(self.dims) + 1)

    def build(self, input_shape):
        self.input_spec.check(self, tuple(input_shape))
        self.built = True

    def call(self, inputs):
        return _autocast(self, inputs).permute(0, *self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def get_config(self):
        config = super().get_config()
        config["dims"] = self.dims
        return config


@registry.register("layer")
class RepeatVector(Layer):
    """Repeats a 2D input ``n`` times along a new time axis.

    Args:
        n: positive int, the number of repetitions.

    Input shape:
        ``(batch, features)``.
    Output shape:
        ``(batch, n, features)``.

    Example:
    >>> import torch
    >>> RepeatVector(2)(torch.tensor([[1.0, 2.0]]))
    tensor([[[1., 2.],
             [1., 2.]]])
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = _positive_int(n, "n", self.name)
        self.input_spec = InputSpec(ndim=2)

    def build(self, input_shape):
        self.input_spec.check(self, tuple(input_shape))
        self.built = True

    def call(self, inputs):
        # repeat (a copy) rather than expand: the output may be modified in place downstream.
        return _autocast(self, inputs).unsqueeze(1).repeat(1, self.n, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        config = super().get_config()
        config["n"] = self.n
        return config


class _Cropping(Layer):
    """Removes ``(before, after)`` cells from each spatial axis (logic of Cropping{1,2,3}D)."""

    def __init__(self, rank, cropping, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = _standardize_data_format(data_format, self.name) if rank > 1 else "channels_last"
        pairs = _pairs(cropping, rank, "cropping", self.name)
        self.cropping = pairs[0] if rank == 1 else pairs
        self.input_spec = InputSpec(ndim=rank + 2)

    @property
    def _crop_pairs(self):
        return (self.cropping,) if self.rank == 1 else self.cropping

    def build(self, input_shape):
        self.input_spec.check(self, tuple(input_shape))
        self.compute_output_shape(input_shape)
        self.built = True

    def call(self, inputs):
        sizes = self._cropped_sizes(tuple(inputs.shape))
        inputs = _autocast(self, inputs)
        for axis, (before, _), size in zip(_spatial_axes(self.rank, self.data_format), self._crop_pairs, sizes):
            inputs = inputs.narrow(axis, before, size)
        return inputs

    def _cropped_sizes(self, input_shape):
        axes = _spatial_axes(self.rank, self.data_format)
        sizes = tuple(None if input_shape[a] is None else input_shape[a] - sum(p)
                      for a, p in zip(axes, self._crop_pairs))
        if any(s is not None and s <= 0 for s in sizes):
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) cannot crop input of shape '
                f"{_fmt(input_shape)} by cropping={self.cropping}: nothing would remain. Each "
                f"(before, after) cropping must sum to less than the size of its spatial axis "
                f"({_fmt(tuple(input_shape[a] for a in axes))})."
            )
        return sizes

    def compute_output_shape(self, input_shape):
        output = list(input_shape)
        sizes = self._cropped_sizes(tuple(input_shape))
        for axis, size in zip(_spatial_axes(self.rank, self.data_format), sizes):
            output[axis] = size
        return tuple(output)

    def get_config(self):
        config = super().get_config()
        config["cropping"] = self.cropping
        if self.rank > 1:
            config["data_format"] = self.data_format
        return config


@registry.register("layer")
class Cropping1D(_Cropping):
    """Crops steps off the start and end of temporal data ``(batch, steps, features)``.

    Args:
        cropping: int or tuple of 2 ints ``(start, end)``, the number of steps
            removed at each end. Default ``(1, 1)``.

    Example:
    >>> import torch
    >>> Cropping1D((1, 2))(torch.arange(5.0).reshape(1, 5, 1)).flatten()
    tensor([1., 2.])
    """

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(1, cropping, **kwargs)


@registry.register("layer")
class Cropping2D(_Cropping):
    """Crops rows and columns off the borders of images.

    Args:
        cropping: int (same on every side), tuple of 2 ints ``(rows, cols)``
            (symmetric), or ``((top, bottom), (left, right))``. Default ``((0, 0), (0, 0))``.
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.

    Example:
    >>> import torch
    >>> Cropping2D(((1, 0), (1, 1)))(torch.zeros(2, 4, 5, 3)).shape
    torch.Size([2, 3, 3, 3])
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(2, cropping, data_format, **kwargs)


@registry.register("layer")
class Cropping3D(_Cropping):
    """Crops the borders of volumes along their three spatial axes.

    Args:
        cropping: int, tuple of 3 ints (symmetric per axis), or 3 ``(before, after)``
            pairs. Default ``((1, 1), (1, 1), (1, 1))``.
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.

    Example:
    >>> import torch
    >>> Cropping3D()(torch.zeros(1, 4, 5, 6, 2)).shape
    torch.Size([1, 2, 3, 4, 2])
    """

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(3, cropping, data_format, **kwargs)


class _ZeroPadding(Layer):
    """Adds ``(before, after)`` zeros on each spatial axis (logic of ZeroPadding{1,2,3}D)."""

    def __init__(self, rank, padding, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = _standardize_data_format(data_format, self.name)
        pairs = _pairs(padding, rank, "padding", self.name)
        self.padding = pairs[0] if rank == 1 else pairs
        self.input_spec = InputSpec(ndim=rank + 2)

    def build(self, input_shape):
        self.input_spec.check(self, tuple(input_shape))
        self.built = True

    def call(self, inputs):
        pairs = (self.padding,) if self.rank == 1 else self.padding
        # F.pad lists (before, after) from the last axis backwards.
        flat = [0, 0] if self.data_format == "channels_last" else []
        for before, after in reversed(pairs):
            flat += [before, after]
        return F.pad(_autocast(self, inputs), flat)

    def compute_output_shape(self, input_shape):
        pairs = (self.padding,) if self.rank == 1 else self.padding
        output = list(input_shape)
        for axis, pair in zip(_spatial_axes(self.rank, self.data_format), pairs):
            if output[axis] is not None:
                output[axis] += sum(pair)
        return tuple(output)

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "data_format": self.data_format})
        return config


@registry.register("layer")
class ZeroPadding1D(_ZeroPadding):
    """Pads temporal data with zeros at the start and end of the steps axis.

    Args:
        padding: int or tuple of 2 ints ``(start, end)``. Default 1.
        data_format: ``"channels_last"`` (``(batch, steps, features)``, default
            ``image_data_format()``) or ``"channels_first"`` (``(batch, features, steps)``).

    Example:
    >>> import torch
    >>> ZeroPadding1D((1, 2))(torch.ones(1, 2, 1)).flatten()
    tensor([0., 1., 1., 0., 0.])
    """

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(1, padding, data_format, **kwargs)


@registry.register("layer")
class ZeroPadding2D(_ZeroPadding):
    """Pads images with rows and columns of zeros.

    Args:
        padding: int (same on every side), tuple of 2 ints ``(rows, cols)``
            (symmetric), or ``((top, bottom), (left, right))``. Default ``(1, 1)``.
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.

    Example:
    >>> import torch
    >>> ZeroPadding2D(1)(torch.ones(1, 1, 1, 1))[0, :, :, 0]
    tensor([[0., 0., 0.],
            [0., 1., 0.],
            [0., 0., 0.]])
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(2, padding, data_format, **kwargs)


@registry.register("layer")
class ZeroPadding3D(_ZeroPadding):
    """Pads volumes with zeros along their three spatial axes.

    Args:
        padding: int, tuple of 3 ints (symmetric per axis), or 3 ``(before, after)``
            pairs. Default ``((1, 1), (1, 1), (1, 1))``.
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.

    Example:
    >>> import torch
    >>> ZeroPadding3D()(torch.zeros(1, 2, 2, 2, 3)).shape
    torch.Size([1, 4, 4, 4, 3])
    """

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(3, padding, data_format, **kwargs)


class _UpSampling(Layer):
    """Repeats (or interpolates) each spatial axis ``size`` times (logic of UpSampling{1,2,3}D)."""

    _INTERPOLATIONS = ("nearest", "bilinear", "bicubic")

    def __init__(self, rank, size, data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = _standardize_data_format(data_format, self.name) if rank > 1 else "channels_last"
        if rank == 1:  # Keras's UpSampling1D takes an int only (TypeError otherwise)
            size = _positive_int(size, "size", self.name)
        self.size = _int_tuple(size, rank, "size", self.name)
        self.interpolation = str(interpolation).lower()
        if self.interpolation not in self._INTERPOLATIONS:
            raise ValueError(
                f'Invalid `interpolation` for layer "{self.name}": expected one of '
                f"{self._INTERPOLATIONS}; received interpolation={interpolation!r}."
            )
        self.input_spec = InputSpec(ndim=rank + 2)

    def build(self, input_shape):
        self.input_spec.check(self, tuple(input_shape))
        self.built = True

    def call(self, inputs):
        axes = _spatial_axes(self.rank, self.data_format)
        inputs = _autocast(self, inputs)
        if self.interpolation == "nearest":
            # Each cell repeated size times: one broadcast view, one copy.
            view, expanded, final = [], [], []
            factors = dict(zip(axes, self.size))
            for axis, n in enumerate(inputs.shape):
                factor = factors.get(axis)
                view += [n] if factor is None else [n, 1]
                expanded += [n] if factor is None else [n, factor]
                final.append(n if factor is None else n * factor)
            return inputs.reshape(view).expand(expanded).reshape(final)
        # Interpolation as Keras's torch backend (F.interpolate, half-pixel centres).
        x = inputs.movedim(-1, 1) if self.data_format == "channels_last" else inputs
        dtype = x.dtype
        if not x.is_floating_point():
            x = x.to(torch.float32)
        size = tuple(n * f for n, f in zip(x.shape[2:], self.size))
        out = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False)
        if not dtype.is_floating_point:
            out = out.round().to(dtype)
        return out.movedim(1, -1) if self.data_format == "channels_last" else out

    def compute_output_shape(self, input_shape):
        output = list(input_shape)
        for axis, factor in zip(_spatial_axes(self.rank, self.data_format), self.size):
            if output[axis] is not None:
                output[axis] *= factor
        return tuple(output)

    def get_config(self):
        config = super().get_config()
        if self.rank == 1:
            config["size"] = self.size[0]
            return config
        config.update({"size": self.size, "data_format": self.data_format})
        if self.rank == 2:
            config["interpolation"] = self.interpolation
        return config


@registry.register("layer")
class UpSampling1D(_UpSampling):
    """Repeats each step of temporal data ``size`` times.

    Args:
        size: positive int, the upsampling factor. Default 2.

    Input shape:
        ``(batch, steps, features)``.
    Output shape:
        ``(batch, steps * size, features)``.

    Example:
    >>> import torch
    >>> UpSampling1D(2)(torch.tensor([[[1.0], [2.0]]])).flatten()
    tensor([1., 1., 2., 2.])
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(1, size, **kwargs)


@registry.register("layer")
class UpSampling2D(_UpSampling):
    """Upsamples images by ``size``: repeats rows and columns, or interpolates.

    Args:
        size: int or tuple of 2 ints ``(rows, cols)``, the upsampling factors.
            Default ``(2, 2)``.
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.
        interpolation: ``"nearest"`` (default, repeats each pixel), ``"bilinear"``
            or ``"bicubic"`` (half-pixel centres, as Keras's torch backend).

    Example:
    >>> import torch
    >>> x = torch.tensor([[[[1.0], [2.0]]]])
    >>> UpSampling2D((1, 2))(x).flatten()
    tensor([1., 1., 2., 2.])
    >>> UpSampling2D((1, 2), interpolation="bilinear")(x).flatten()
    tensor([1.0000, 1.2500, 1.7500, 2.0000])
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(2, size, data_format, interpolation, **kwargs)


@registry.register("layer")
class UpSampling3D(_UpSampling):
    """Repeats each cell of volumes ``size`` times along the three spatial axes.

    Args:
        size: int or tuple of 3 ints, the upsampling factors. Default ``(2, 2, 2)``.
        data_format: ``"channels_last"`` (default ``image_data_format()``) or ``"channels_first"``.

    Example:
    >>> import torch
    >>> UpSampling3D((1, 2, 3))(torch.zeros(1, 2, 2, 2, 4)).shape
    torch.Size([1, 2, 4, 6, 4])
    """

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(3, size, data_format, **kwargs)
