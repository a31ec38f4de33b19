"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

Each is called on a list of tensors, as in Keras, and has a lowercase functional
form (``add([x, y])``). The private base ``_Merge`` owns the list checks, Keras's
broadcasting rule (inputs of lower rank gain axes after the batch axis) and mask
merging; the public classes only name their elementwise operation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina.layers.base import Layer, _fmt, _to_tensor

__all__ = [
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot",
]


def _shapes_text(shapes) -> str:
    return "[" + ", ".join("None" if s is None else _fmt(s) for s in shapes) + "]"


def _input_masks(inputs) -> list:
    return [getattr(x, "_keras_mask", None) for x in inputs]


class _Merge(Layer):
    """Base of the elementwise merge layers: checks the list of inputs, broadcasts and merges masks.

    Subclasses implement ``_merge_function(inputs, masks)`` on a list of tensors of
    equal rank (``masks`` holds each input's mask or None).
    """

    _min_inputs = 1
    _exact_inputs: int | None = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self._reshape_required = False

    def _check_list(self, input_shape) -> list:
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
            s is None or isinstance(s, (list, tuple)) for s in input_shape
        ) or all(s is None for s in input_shape):
            raise ValueError(
                f'A merge layer ({type(self).__name__}, layer "{self.name}") should be called on a list '
                f"of input tensors; received input_shape={input_shape!r}. Call it as "
                f"{type(self).__name__}()([x1, x2])."
            )
        count = len(input_shape)
        if (self._exact_inputs is not None and count != self._exact_inputs) or count < self._min_inputs:
            expected = self._exact_inputs or f"at least {self._min_inputs}"
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) should be called on exactly {expected} '
                f"inputs; received {count} inputs with shapes {_shapes_text(input_shape)}."
            )
        return [None if s is None else tuple(s) for s in input_shape]

    def _broadcast(self, shape1, shape2, shapes):
        """Keras's elementwise shape rule, aligning trailing axes (batch axis excluded)."""
        if shape1 is None or shape2 is None:
            return None
        if len(shape1) < len(shape2):
            shape1, shape2 = shape2, shape1
        if not shape2:
            return tuple(shape1)
        out = list(shape1[: len(shape1) - len(shape2)])
        for a, b in zip(shape1[len(shape1) - len(shape2):], shape2):
            if a is None or b is None:
                out.append(None)
            elif a == 1 or b == 1:
                out.append(b if a == 1 else a)
            elif a != b:
                raise ValueError(
                    f'Layer "{self.name}" ({type(self).__name__}) received inputs with incompatible '
                    f"shapes {_shapes_text(shapes)}: after the batch axis, sizes {a} and {b} can "
                    f"neither match nor broadcast. Inputs must have equal shapes, or sizes of 1 "
                    f"where they differ."
                )
            else:
                out.append(a)
        return tuple(out)

    def build(self, input_shape):
        shapes = self._check_list(input_shape)
        batch_sizes = {s[0] for s in shapes if s} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) cannot merge tensors with different '
                f"batch sizes; received shapes {_shapes_text(shapes)}."
            )
        self._merged_shape(shapes)
        self._reshape_required = None in shapes or len({len(s) for s in shapes}) != 1
        self.built = True

    def _merged_shape(self, shapes):
        out = None if shapes[0] is None else shapes[0][1:]
        for shape in shapes[1:]:
            out = self._broadcast(out, None if shape is None else shape[1:], shapes)
        return out

    def call(self, inputs, mask=None):
        inputs = self._as_tensors(inputs)
        masks = list(mask) if isinstance(mask, (list, tuple)) else _input_masks(inputs)
        ranks = [x.ndim for x in inputs]
        merge_masks = masks
        if len(set(ranks)) != 1:
            # Keras adds axes right after the batch axis until the ranks agree; the
            # reshaped tensors carry no mask, so only full-rank inputs keep theirs.
            top = max(ranks)
            inputs = [x.reshape(x.shape[:1] + (1,) * (top - x.ndim) + x.shape[1:]) if x.ndim < top else x
                      for x in inputs]
            merge_masks = [m if r == top else None for m, r in zip(masks, ranks)]
        try:
            output = self._merge_function(inputs, merge_masks)
        except RuntimeError as error:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) cannot merge inputs of shapes '
                f"{_shapes_text([tuple(x.shape) for x in inputs])}: {error}"
            ) from None
        # The base Layer only sees the mask of a single first input, so a list's masks are merged here.
        if any(m is not None for m in masks):
            output_mask = self.compute_mask(inputs, masks)
            if output_mask is not None:
                output._keras_mask = output_mask
        return output

    def _as_tensors(self, inputs) -> list:
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f'A merge layer ({type(self).__name__}, layer "{self.name}") should be called on a list '
                f"of tensors; received {type(inputs).__name__}. Call it as {type(self).__name__}()([x1, x2])."
            )
        return [x if isinstance(x, torch.Tensor) else _to_tensor(x) for x in inputs]

    def _merge_function(self, inputs, masks):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        shapes = self._check_list(input_shape)
        out = self._merged_shape(shapes)
        batch_sizes = {s[0] for s in shapes if s} - {None}
        batch = next(iter(batch_sizes)) if len(batch_sizes) == 1 else None
        return None if out is None else (batch,) + tuple(out)

    def compute_mask(self, inputs, mask=None):
        """The OR of the inputs' masks, or None when any input is unmasked (as Keras)."""
        if mask is None:
            return None
        self._check_masks(inputs, mask)
        if any(m is None for m in mask):
            return None
        output = mask[0]
        for m in mask[1:]:
            output = torch.logical_or(output, m)
        return output

    def _check_masks(self, inputs, mask):
        if not isinstance(mask, (list, tuple)) or not isinstance(inputs, (list, tuple)) or len(mask) != len(inputs):
            raise ValueError(
                f'Layer "{self.name}" expects `inputs` and `mask` to be lists of the same length; '
                f"received {type(inputs).__name__} inputs and mask={mask!r}."
            )

    def _masked_reduce(self, op, inputs, masks):
        """``op`` over the inputs, where masked entries take the other operand's value (Keras's rule)."""
        output = output_mask = None
        for x, mask in zip(inputs, masks):
            if mask is not None:
                mask = mask.unsqueeze(-1).expand(x.shape)
            if output is None:
                output, output_mask = x, mask
                continue
            if mask is not None:
                x = torch.where(mask, x, output)
            if output_mask is not None:
                output = torch.where(output_mask, output, x)
            output_mask = torch.logical_or(output_mask, mask) if mask is not None and output_mask is not None else None
            output = op(output, x)
        return output


@registry.register("layer")
class Add(_Merge):
    """Adds a list of tensors elementwise (shapes broadcast as in Keras).

    Example:
    >>> import torch
    >>> Add()([torch.ones(2, 3), torch.full((2, 3), 2.0)])
    tensor([[3., 3., 3.],
            [3., 3., 3.]])
    """

    def _merge_function(self, inputs, masks):
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        return output


@registry.register("layer")
class Subtract(_Merge):
    """Subtracts the second of exactly two tensors from the first.

    Example:
    >>> import torch
    >>> Subtract()([torch.tensor([[3.0, 5.0]]), torch.tensor([[1.0, 1.0]])])
    tensor([[2., 4.]])
    """

    _exact_inputs = 2

    def _merge_function(self, inputs, masks):
        return inputs[0] - inputs[1]


@registry.register("layer")
class Multiply(_Merge):
    """Multiplies a list of tensors elementwise.

    Masked entries count as 1 in the product; where every input is masked
    the output is 0, as in Keras.

    Example:
    >>> import torch
    >>> Multiply()([torch.tensor([[2.0, 3.0]]), torch.tensor([[4.0, 0.5]])])
    tensor([[8.0000, 1.5000]])
    """

    def _merge_function(self, inputs, masks):
        all_masked = all(m is not None for m in masks)
        output = output_mask = None
        for x, mask in zip(inputs, masks):
            if mask is not None:
                mask = mask.unsqueeze(-1).expand(x.shape)
                x = torch.where(mask, x, torch.ones((), dtype=x.dtype, device=x.device))
                if all_masked:
                    output_mask = mask if output_mask is None else torch.logical_or(output_mask, mask)
            output = x if output is None else output * x
        if all_masked:
            output = torch.where(output_mask, output, torch.zeros((), dtype=output.dtype, device=output.device))
        return output


@registry.register("layer")
class Average(_Merge):
    """The elementwise mean of a list of tensors.

    Example:
    >>> import torch
    >>> Average()([torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 6.0]])])
    tensor([[2., 4.]])
    """

    def _merge_function(self, inputs, masks):
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        return output / len(inputs)


@registry.register("layer")
class Maximum(_Merge):
    """The elementwise maximum of a list of tensors (masked entries are skipped).

    Example:
    >>> import torch
    >>> Maximum()([torch.tensor([[1.0, 5.0]]), torch.tensor([[3.0, 2.0]])])
    tensor([[3., 5.]])
    """

    def _merge_function(self, inputs, masks):
        return self._masked_reduce(torch.maximum, inputs, masks)


@registry.register("layer")
class Minimum(_Merge):
    """The elementwise minimum of a list of tensors (masked entries are skipped).

    Example:
    >>> import torch
    >>> Minimum()([torch.tensor([[1.0, 5.0]]), torch.tensor([[3.0, 2.0]])])
    tensor([[1., 2.]])
    """

    def _merge_function(self, inputs, masks):
        return self._masked_reduce(torch.minimum, inputs, masks)


@registry.register("layer")
class Concatenate(_Merge):
    """Concatenates a list of tensors along ``axis``; the other axes must match.

    Args:
        axis: int, the concatenation axis. Default -1.

    Example:
    >>> import torch
    >>> Concatenate(axis=1)([torch.zeros(2, 2, 5), torch.ones(2, 1, 5)]).shape
    torch.Size([2, 3, 5])
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise TypeError(f'Concatenate expects an int axis; received axis={axis!r} (layer "{self.name}").')
        self.axis = axis

    def build(self, input_shape):
        shapes = self._check_list(input_shape)
        known = [s for s in shapes if s is not None]
        if len({len(s) for s in known}) > 1 or any(not -len(s) <= self.axis < len(s) for s in known):
            raise ValueError(self._mismatch(shapes, "all inputs need the same rank, with axis in range"))
        if known:
            axis = self.axis % len(known[0])
            for i in range(len(known[0])):
                sizes = {s[i] for s in known} - {None}
                if i != axis and len(sizes) > 1:
                    raise ValueError(self._mismatch(shapes, f"sizes {sorted(sizes)} differ on axis {i}"))
        self.built = True

    def _mismatch(self, shapes, detail: str) -> str:
        return (
            f'A Concatenate layer (layer "{self.name}", axis={self.axis}) requires inputs with matching '
            f"shapes except for the concatenation axis; received shapes {_shapes_text(shapes)} "
            f"({detail})."
        )

    def call(self, inputs, mask=None):
        inputs = self._as_tensors(inputs)
        masks = list(mask) if isinstance(mask, (list, tuple)) else _input_masks(inputs)
        try:
            output = torch.cat(inputs, dim=self.axis)
        except (RuntimeError, IndexError) as error:
            raise ValueError(self._mismatch([tuple(x.shape) for x in inputs], str(error))) from None
        if any(m is not None for m in masks):
            output._keras_mask = self.compute_mask(inputs, masks)
        return output

    def compute_output_shape(self, input_shape):
        shapes = self._check_list(input_shape)
        output = list(shapes[0])
        for shape in shapes[1:]:
            if output[self.axis] is None or shape[self.axis] is None:
                output[self.axis] = None
                break
            output[self.axis] += shape[self.axis]
        return tuple(output)

    def compute_mask(self, inputs, mask=None):
        """Each input's mask (all True where unmasked) concatenated along ``axis``, then any over the last axis."""
        if mask is None:
            return None
        self._check_masks(inputs, mask)
        if all(m is None for m in mask):
            return None
        full = []
        for x, m in zip(inputs, mask):
            if m is None:
                full.append(torch.ones(x.shape, dtype=torch.bool, device=x.device))
            elif m.ndim < x.ndim:
                full.append(m.unsqueeze(-1).expand(x.shape))
            else:
                full.append(m)
        return torch.cat(full, dim=self.axis).any(dim=-1)

    def get_config(self):
        config_ = super().get_config()
        config_["axis"] = self.axis
        return config_


@registry.register("layer")
class Dot(_Merge):
    """The dot product of two batched tensors along the given axes (Keras's ``batch_dot``).

    For inputs of shapes ``(batch, *x_rest)`` and ``(batch, *y_rest)`` the output
    is ``(batch, *x_rest_without_axis, *y_rest_without_axis)``, or ``(batch, 1)``
    when nothing is left.

    Args:
        axes: int, or a pair of ints: the axis of each input to sum over (never 0,
            the batch axis). A negative int counts from the end of each input.
        normalize: whether to L2-normalize both inputs along those axes first,
            giving the cosine similarity. Default False.

    Example:
    >>> import torch
    >>> x = torch.arange(10.0).reshape(1, 5, 2)
    >>> y = torch.arange(10.0, 20.0).reshape(1, 2, 5)
    >>> Dot(axes=(1, 2))([x, y])
    tensor([[[260., 360.],
             [320., 445.]]])
    """

    _exact_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, list):
            axes = tuple(axes)
        if not isinstance(axes, (int, tuple)) or isinstance(axes, bool):
            raise TypeError(
                f"Invalid type for argument `axes`: expected an int or a pair of ints; received "
                f'axes={axes!r} (layer "{self.name}").'
            )
        if isinstance(axes, tuple) and (len(axes) != 2 or not all(isinstance(a, int) for a in axes)):
            raise ValueError(
                f"Invalid format for argument `axes`: expected two integers, one axis per input; "
                f'received axes={axes!r} (layer "{self.name}").'
            )
        self.axes = axes
        self.normalize = bool(normalize)

    def _axes_for(self, rank1: int, rank2: int) -> tuple[int, int]:
        if isinstance(self.axes, int):
            pair = (self.axes, self.axes) if self.axes >= 0 else (self.axes % rank1, self.axes % rank2)
        else:
            pair = (self.axes[0] % rank1 if self.axes[0] < 0 else self.axes[0],
                    self.axes[1] % rank2 if self.axes[1] < 0 else self.axes[1])
        return pair

    def build(self, input_shape):
        shapes = self._check_list(input_shape)
        if None in shapes:
            self.built = True
            return
        shape1, shape2 = shapes
        if len(shape1) < 2 or len(shape2) < 2:
            raise ValueError(
                f'Layer "{self.name}" (Dot) needs inputs of rank >= 2 (a batch axis and one more); '
                f"received shapes {_shapes_text(shapes)}."
            )
        a1, a2 = self._axes_for(len(shape1), len(shape2))
        if not (0 < a1 < len(shape1) and 0 < a2 < len(shape2)):
            raise ValueError(
                f'Layer "{self.name}" (Dot) cannot take the dot product over axes={self.axes!r} for '
                f"inputs of shapes {_shapes_text(shapes)}: each axis must be a non-batch axis "
                f"(not 0) of its input."
            )
        d1, d2 = shape1[a1], shape2[a2]
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(
                f'Layer "{self.name}" (Dot) received incompatible input shapes: axis values {d1} (at '
                f"axis {a1}) != {d2} (at axis {a2}). Full input shapes: {_shapes_text(shapes)}."
            )
        self.built = True

    def call(self, inputs, mask=None):
        inputs = self._as_tensors(inputs)
        if len(inputs) != 2:
            raise ValueError(
                f'A Dot layer (layer "{self.name}") should be called on exactly 2 inputs; received '
                f"{len(inputs)}."
            )
        x, y = inputs
        a1, a2 = self._axes_for(x.ndim, y.ndim)
        if self.normalize:
            x = F.normalize(x, p=2.0, dim=a1, eps=config.epsilon())
            y = F.normalize(y, p=2.0, dim=a2, eps=config.epsilon())
        # One batched matmul: (batch, rest_x, d) @ (batch, d, rest_y).
        x = x.movedim(a1, -1)
        y = y.movedim(a2, 1)
        batch, depth = x.shape[0], x.shape[-1]
        try:
            result = torch.bmm(x.reshape(batch, -1, depth), y.reshape(y.shape[0], depth, -1))
        except RuntimeError as error:
            raise ValueError(
                f'Layer "{self.name}" (Dot, axes={self.axes!r}) cannot multiply inputs of shapes '
                f"{_shapes_text([tuple(t.shape) for t in inputs])}: {error}"
            ) from None
        rest = tuple(x.shape[1:-1]) + tuple(y.shape[2:])
        return result.reshape((batch,) + (rest or (1,)))

    def compute_output_shape(self, input_shape):
        shapes = self._check_list(input_shape)
        shape1, shape2 = list(shapes[0]), list(shapes[1])
        a1, a2 = self._axes_for(len(shape1), len(shape2))
        shape1.pop(a1)
        shape2.pop(a2)
        output = shape1 + shape2[1:]
        return tuple(output + [1] if len(output) == 1 else output)

    def compute_mask(self, inputs, mask=None):
        """Always None: a dot product has no per-timestep mask."""
        return None

    def get_config(self):
        config_ = super().get_config()
        config_.update({"axes": self.axes, "normalize": self.normalize})
        return config_


def add(inputs, **kwargs):
    """Functional form of ``Add``: ``add([x1, x2]) == Add()([x1, x2])``.

    >>> import torch
    >>> add([torch.ones(1, 2), torch.ones(1, 2)])
    tensor([[2., 2.]])
    """
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Functional form of ``Subtract`` (exactly two inputs).

    >>> import torch
    >>> subtract([torch.ones(1, 2), torch.ones(1, 2)])
    tensor([[0., 0.]])
    """
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Functional form of ``Multiply``.

    >>> import torch
    >>> multiply([torch.full((1, 2), 2.0), torch.full((1, 2), 3.0)])
    tensor([[6., 6.]])
    """
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Functional form of ``Average``.

    >>> import torch
    >>> average([torch.zeros(1, 2), torch.full((1, 2), 4.0)])
    tensor([[2., 2.]])
    """
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Functional form of ``Maximum``.

    >>> import torch
    >>> maximum([torch.tensor([[1.0, 4.0]]), torch.tensor([[2.0, 3.0]])])
    tensor([[2., 4.]])
    """
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Functional form of ``Minimum``.

    >>> import torch
    >>> minimum([torch.tensor([[1.0, 4.0]]), torch.tensor([[2.0, 3.0]])])
    tensor([[1., 3.]])
    """
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional form of ``Concatenate``.

    >>> import torch
    >>> concatenate([torch.zeros(2, 3), torch.ones(2, 1)]).shape
    torch.Size([2, 4])
    """
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, **kwargs):
    """Functional form of ``Dot`` (``normalize`` goes in ``kwargs``).

    >>> import torch
    >>> dot([torch.ones(2, 3), torch.ones(2, 3)])
    tensor([[3.],
            [3.]])
    """
    return Dot(axes=axes, **kwargs)(inputs)
