"""The Layer base class: a ``torch.nn.Module`` with Keras's lazy build, weights API and config.

Owns naming, ``add_weight`` / ``add_loss``, the Keras weight interchange
(``get_weights`` / ``set_weights`` in Keras layouts), the ``training`` call context and
input checks. Concrete layers live in the family modules (``core.py``, ...); models
and training live elsewhere.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
import threading
import warnings
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from lamina import config, registry

__all__ = ["Layer", "InputSpec", "clear_session", "deprecated_argument"]

_NAME_UIDS: dict[str, int] = {}
_CONTEXT = threading.local()
_CALL_SIGNATURES: dict[type, tuple[bool, bool]] = {}
# Layers that added losses (add_loss, activity regularizers) during the current or last
# top-level call: what the trainer adds to the loss.
_LOSS_OWNERS: list = []
# Layers still holding losses from an earlier top-level call of another layer tree: as in
# Keras, a layer keeps its losses until its own tree is called again.
_STALE_LOSS_OWNERS: list = []
# While False (load_model(safe_mode=False)), layers that run arbitrary Python code may load.
_SAFE_MODE = True
_SHAPE_SIGNATURES: dict = {}


def clear_session() -> None:
    """Reset the automatic layer-name counters (``dense``, ``dense_1``, ...), as Keras does.

    >>> from lamina import clear_session
    >>> from lamina.layers import Dense
    >>> clear_session(); Dense(2).name
    'dense'
    """
    _NAME_UIDS.clear()


def _snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    """``base`` the first time, then ``base_1``, ``base_2``... until ``clear_session()``."""
    count = _NAME_UIDS.get(base, 0)
    _NAME_UIDS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def deprecated_argument(message: str) -> None:
    """Warn (DeprecationWarning) at the first stack frame outside lamina, so users see it."""
    # stacklevel=1 is this function, 2 its caller (frame 1 here).
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("lamina"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def current_training() -> bool:
    """The ``training`` flag of the enclosing layer call (False outside any call)."""
    return getattr(_CONTEXT, "training", False)


class InputSpec:
    """What a layer accepts: ``ndim`` / ``min_ndim`` and fixed sizes on some axes.

    Args:
        ndim: exact rank expected, or None.
        min_ndim: minimum rank, or None.
        axes: dict mapping an axis (e.g. ``-1``) to its required size.

    >>> InputSpec(min_ndim=2, axes={-1: 64}).axes
    {-1: 64}
    """

    def __init__(self, ndim: int | None = None, min_ndim: int | None = None, axes: dict | None = None):
        self.ndim = ndim
        self.min_ndim = min_ndim
        self.axes = dict(axes or {})

    def check(self, layer: "Layer", shape: tuple) -> None:
        """Raise a ValueError naming ``layer`` if ``shape`` does not satisfy this spec."""
        rank = len(shape)
        if self.ndim is not None and rank != self.ndim:
            raise ValueError(
                f'Input 0 of layer "{layer.name}" is incompatible with the layer: expected '
                f"ndim={self.ndim}, found ndim={rank}. Full shape received: {_fmt(shape)}"
            )
        if self.min_ndim is not None and rank < self.min_ndim:
            raise ValueError(
                f'Input 0 of layer "{layer.name}" is incompatible with the layer: expected '
                f"min_ndim={self.min_ndim}, found ndim={rank}. Full shape received: {_fmt(shape)}"
            )
        for axis, size in self.axes.items():
            if size is not None and (axis >= rank or -axis > rank or shape[axis] != size):
                raise ValueError(
                    f'Input 0 of layer "{layer.name}" is incompatible with the layer: expected '
                    f"axis {axis} of input shape to have value {size}, but received input with "
                    f"shape {_fmt(shape)}. The layer was built for inputs of shape "
                    f"{_fmt(_spec_shape(self, rank))}; pass data with {size} features on axis "
                    f"{axis} or build a new layer for this shape."
                )


def _spec_shape(spec: InputSpec, rank: int) -> tuple:
    shape = [None] * max(rank, spec.ndim or 0, spec.min_ndim or 0)
    for axis, size in spec.axes.items():
        if -len(shape) <= axis < len(shape):
            shape[axis] = size
    return tuple(shape)


def _fmt(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _jit_tracing() -> bool:
    """True while ``torch.compile`` traces a step (jit_compile), not in eager mode or ``torch.export``.

    Layers use it to pick formulations that compile well; an export keeps the eager ops.
    """
    if not torch.compiler.is_compiling():
        return False
    exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.6
    return exporting is None or not exporting()


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


class Layer(nn.Module):
    """Base class of every lamina layer, and of user layers written as in Keras.

    A layer is a ``torch.nn.Module`` that creates its weights lazily in
    ``build(input_shape)`` on its first call, then runs ``call(inputs, ...)``.
    Weights made with ``add_weight`` are ``nn.Parameter`` attributes (non-trainable
    ones are buffers), so ``state_dict()``, ``.to(device)`` and ``torch.compile``
    work as PyTorch users expect, while ``get_weights()`` / ``set_weights()``
    exchange NumPy arrays in Keras's order and layouts.

    Args:
        name: the layer's name; by default the snake-cased class name, made
            unique (``dense``, ``dense_1``, ...).
        trainable: whether the layer's weights are updated by training. Default True.
        dtype: the dtype of the weights and computations. Default ``floatx()``.
        activity_regularizer: regularizer applied to the layer's output, added
            to the training loss (divided by the batch size, as Keras 3).
        input_shape: (deprecated in Keras 3, still accepted) the input shape
            without the batch dimension, for the first layer of a Sequential.
        input_dim: (deprecated) ``input_shape=(input_dim,)``.
        batch_size: fixed batch size paired with ``input_shape``.

    Example:
    >>> import torch
    >>> class Scale(Layer):
    ...     def build(self, input_shape):
    ...         self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")
    ...     def call(self, inputs):
    ...         return inputs * self.w
    >>> layer = Scale()
    >>> layer(torch.ones(2, 3)).shape
    torch.Size([2, 3])
    >>> [w.shape for w in layer.get_weights()]
    [(3,)]
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype=None,
        activity_regularizer=None,
        **kwargs,
    ):
        super().__init__()
        input_dim = kwargs.pop("input_dim", None)
        input_shape = kwargs.pop("input_shape", None)
        batch_size = kwargs.pop("batch_size", None)
        batch_input_shape = kwargs.pop("batch_input_shape", None)
        kwargs.pop("autocast", None)
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {sorted(kwargs)}. "
                f"Check the spelling against the layer's documented arguments."
            )
        if input_dim is not None or input_shape is not None:
            deprecated_argument(
                f"Passing `input_shape` / `input_dim` to a layer ({type(self).__name__}) is "
                f"deprecated, as in Keras 3: start the model with lamina.Input(shape) instead."
            )
        if input_dim is not None:
            input_shape = (int(input_dim),)
        if batch_input_shape is not None:
            batch_size, input_shape = batch_input_shape[0], tuple(batch_input_shape[1:])
        if input_shape is not None:
            input_shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else (input_shape,)
        self._input_shape_arg = input_shape
        self._batch_size_arg = batch_size
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Layer name must be a string; received name={name!r}.")
        self.name = name or unique_name(_snake_case(type(self).__name__))
        if isinstance(dtype, torch.dtype):  # torch.float16 -> "float16"
            dtype = str(dtype).replace("torch.", "")
        self._dtype = dtype or config.floatx()
        if isinstance(self._dtype, dict):  # a serialized Keras DTypePolicy
            self._dtype = self._dtype.get("config", {}).get("name", config.floatx())
        self._trainable = bool(trainable)
        self.built = False
        self.input_spec: InputSpec | None = None
        self.supports_masking = False
        # Bookkeeping kept outside nn.Module's registries (plain object attributes).
        object.__setattr__(self, "_weight_names", [])
        object.__setattr__(self, "_weight_trainable", {})
        object.__setattr__(self, "_weight_layouts", {})
        object.__setattr__(self, "_weight_regularizers", {})
        object.__setattr__(self, "_weight_constraints", {})
        object.__setattr__(self, "_own_losses", [])
        object.__setattr__(self, "_inbound_nodes", [])  # symbolic calls (graph.Node), in order
        self.activity_regularizer = registry.get("regularizer", activity_regularizer)
        self._build_shape = None

    # ------------------------------------------------------------------ weights
    def add_weight(
        self,
        shape=None,
        initializer=None,
        dtype=None,
        trainable: bool = True,
        regularizer=None,
        constraint=None,
        name: str | None = None,
        **kwargs,
    ):
        """Create a weight of ``shape`` and track it; returns the tensor.

        Trainable weights are ``nn.Parameter`` attributes, non-trainable ones are
        buffers. ``initializer`` defaults to ``"glorot_uniform"`` for float
        weights and ``"zeros"`` otherwise, as in Keras.

        >>> layer = Layer()
        >>> w = layer.add_weight(shape=(2, 3), initializer="zeros", name="kernel")
        >>> tuple(w.shape), float(layer.get_weights()[0].sum())
        ((2, 3), 0.0)
        """
        for key in ("autocast", "aggregation", "overwrite_with_gradient", "synchronization"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"add_weight got unexpected keyword argument(s) {sorted(kwargs)}.")
        return self._add_weight(shape, initializer, dtype, trainable, regularizer, constraint, name)

    def _add_weight(self, shape, initializer, dtype, trainable, regularizer, constraint, name, perm=None):
        """Like ``add_weight``; ``shape`` is Keras's and ``perm`` permutes it to the stored layout."""
        shape = tuple(int(s) for s in (shape or ()))
        torch_dtype = config.torch_dtype(dtype or self._dtype)
        if initializer is None:
            initializer = "glorot_uniform" if torch_dtype.is_floating_point else "zeros"
        init = registry.get("initializer", initializer)
        with torch.no_grad():
            value = torch.as_tensor(init(shape, dtype=torch_dtype), dtype=torch_dtype).reshape(shape)
            if perm is not None:
                value = value.permute(perm)
            value = value.contiguous()
        base = name or "variable"
        attr, i = base, 1
        while attr in self._weight_names or (attr in self.__dict__) or attr in self._parameters or attr in self._buffers:
            attr, i = f"{base}_{i}", i + 1
        if trainable:
            tensor = nn.Parameter(value, requires_grad=self._trainable)
            self.register_parameter(attr, tensor)
        else:
            tensor = value
            self.register_buffer(attr, tensor)
        tensor.path = f"{self.name}/{attr}"  # Keras's variable path, used by the optimizer's filters
        self._weight_names.append(attr)
        self._weight_trainable[attr] = bool(trainable)
        if perm is not None:
            self._weight_layouts[attr] = perm
        if regularizer is not None:
            self._weight_regularizers[attr] = registry.get("regularizer", regularizer)
        if constraint is not None:
            self._weight_constraints[attr] = registry.get("constraint", constraint)
        return tensor

    def __setattr__(self, name: str, value: Any) -> None:
        # ``self.w = self.add_weight(name="kernel")`` renames the tracked weight to "w",
        # so state_dict keys follow the attribute the user chose.
        if isinstance(value, torch.Tensor) and "_weight_names" in self.__dict__:
            for old in self._weight_names:
                if old != name and (self._parameters.get(old) is value or self._buffers.get(old) is value):
                    self._rename_weight(old, name)
                    return
        super().__setattr__(name, value)

    def _rename_weight(self, old: str, new: str) -> None:
        self.__dict__.pop(new, None)  # e.g. ``self.bias = None`` set before the weight existed
        if old in self._parameters:
            self._parameters[new] = self._parameters.pop(old)
        else:
            self._buffers[new] = self._buffers.pop(old)
        self._weight_names[self._weight_names.index(old)] = new
        self._tensor(new).path = f"{self.name}/{new}"
        for table in (self._weight_trainable, self._weight_layouts, self._weight_regularizers, self._weight_constraints):
            if old in table:
                table[new] = table.pop(old)

    def _tensor(self, attr: str) -> torch.Tensor:
        return self._parameters[attr] if attr in self._parameters else self._buffers[attr]

    def _sublayers(self) -> list["Layer"]:
        """Direct child layers, in assignment order (looks through ModuleList/ModuleDict)."""
        found, stack = [], list(self._modules.values())
        while stack:
            module = stack.pop(0)
            if isinstance(module, Layer):
                found.append(module)
            elif module is not None:
                stack[0:0] = list(module._modules.values())
        return found

    def _flatten_layers(self) -> list["Layer"]:
        """This layer and every nested layer, depth first, each once."""
        out, seen = [], set()

        def visit(layer):
            if id(layer) in seen:
                return
            seen.add(id(layer))
            out.append(layer)
            for sub in layer._sublayers():
                visit(sub)

        visit(self)
        return out

    def _weight_records(self) -> list[tuple["Layer", str, torch.Tensor]]:
        """(owner, attribute, tensor) for every weight in Keras order: for each layer
        depth first, its declared-trainable weights, then its other weights."""
        out, seen = [], set()
        for layer in self._flatten_layers():
            names = [n for n in layer._weight_names if layer._weight_trainable[n]]
            names += [n for n in layer._weight_names if not layer._weight_trainable[n]]
            for n in names:
                tensor = layer._tensor(n)
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    out.append((layer, n, tensor))
        return out

    @property
    def weights(self) -> list[torch.Tensor]:
        """All weights (own, then sublayers'), in Keras order; tensors in torch layout."""
        return [t for _, _, t in self._weight_records()]

    @property
    def trainable_weights(self) -> list[torch.Tensor]:
        """The weights the optimizer updates (empty when ``trainable`` is False)."""
        if not self._trainable:
            return []
        return [t for l, n, t in self._weight_records() if l._trainable and l._weight_trainable[n]]

    @property
    def non_trainable_weights(self) -> list[torch.Tensor]:
        """Weights not updated by the optimizer (all of them when ``trainable`` is False)."""
        if not self._trainable:
            return self.weights
        return [t for l, n, t in self._weight_records() if not (l._trainable and l._weight_trainable[n])]

    @property
    def variables(self) -> list[torch.Tensor]:
        """Same as ``weights``."""
        return self.weights

    @property
    def trainable_variables(self) -> list[torch.Tensor]:
        """Same as ``trainable_weights``."""
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list[torch.Tensor]:
        """Same as ``non_trainable_weights``."""
        return self.non_trainable_weights

    @property
    def trainable(self) -> bool:
        """Whether training updates this layer's weights; setting it applies to sublayers too."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        value = bool(value)
        self._trainable = value
        for n in self._weight_names:
            if n in self._parameters:
                self._parameters[n].requires_grad_(value and self._weight_trainable[n])
        for layer in self._sublayers():
            layer.trainable = value

    @property
    def output(self):
        """The symbolic output of the layer's first call on symbolic inputs (functional API).

        >>> from lamina import Input
        >>> from lamina.layers import Dense
        >>> layer = Dense(2)
        >>> _ = layer(Input((3,)))
        >>> layer.output.shape
        (None, 2)
        """
        node = self._first_node("output")
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    @property
    def input(self):
        """The symbolic input of the layer's first call on symbolic inputs (functional API)."""
        node = self._first_node("input")
        if not node.args:  # an InputLayer is its own input
            return node.outputs[0]
        inputs = node.inputs
        return inputs[0] if len(inputs) == 1 else inputs

    def __getattr__(self, name: str):
        # A property that raises AttributeError falls back here; keep its explanation.
        if name == "output" or name == "input":
            self._first_node(name)
        return nn.Module.__getattr__(self, name)

    def _first_node(self, what: str):
        if not self._inbound_nodes:
            raise AttributeError(
                f'Layer "{self.name}" has never been called on a symbolic input (lamina.Input), '
                f"so it has no defined {what}. Call it on lamina.Input(...) or build the model "
                f"from an Input first."
            )
        return self._inbound_nodes[0]

    @property
    def dtype(self) -> str:
        """The layer's dtype name (``"float32"`` by default)."""
        return self._dtype

    def get_weights(self) -> list[np.ndarray]:
        """The weights as NumPy arrays, in Keras's order and layouts.

        >>> from lamina.layers import Dense
        >>> layer = Dense(3)
        >>> layer.build((None, 2))
        >>> [w.shape for w in layer.get_weights()]
        [(2, 3), (3,)]
        """
        arrays = []
        for owner, attr, tensor in self._weight_records():
            perm = owner._weight_layouts.get(attr)
            t = tensor.detach()
            if perm is not None:
                t = t.permute(_inverse(perm))
            arrays.append(t.cpu().numpy().copy())
        return arrays

    def set_weights(self, weights: Iterable) -> None:
        """Set the weights from NumPy arrays in Keras's order and layouts (as ``get_weights``).

        >>> from lamina.layers import Dense
        >>> import numpy as np
        >>> layer = Dense(1, kernel_initializer="zeros")
        >>> layer.build((None, 2))
        >>> layer.set_weights([np.ones((2, 1)), np.zeros(1)])
        >>> layer.get_weights()[0].ravel().tolist()
        [1.0, 1.0]
        """
        weights = list(weights)
        records = self._weight_records()
        if len(weights) != len(records):
            raise ValueError(
                f'Layer "{self.name}" expects {len(records)} weight arrays '
                f"({[tuple(self._keras_shape(o, a, t)) for o, a, t in records]}), but received "
                f"{len(weights)}. Pass the list returned by get_weights() of a layer with the same "
                f"architecture."
            )
        with torch.no_grad():
            for (owner, attr, tensor), value in zip(records, weights):
                expected = self._keras_shape(owner, attr, tensor)
                array = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
                if tuple(array.shape) != tuple(expected):
                    raise ValueError(
                        f'Layer "{owner.name}" weight "{attr}" has shape {tuple(expected)}, but the '
                        f"value given has shape {tuple(array.shape)}. Weights must be in Keras "
                        f"layout and order, as returned by get_weights()."
                    )
                perm = owner._weight_layouts.get(attr)
                if perm is not None:
                    array = array.permute(perm)
                tensor.copy_(array.to(dtype=tensor.dtype, device=tensor.device))

    @staticmethod
    def _keras_shape(owner: "Layer", attr: str, tensor: torch.Tensor) -> tuple:
        perm = owner._weight_layouts.get(attr)
        shape = tuple(tensor.shape)
        return shape if perm is None else tuple(shape[i] for i in _inverse(perm))

    def count_params(self) -> int:
        """Number of scalars in all weights.

        >>> from lamina.layers import Dense
        >>> layer = Dense(4); layer.build((None, 3)); layer.count_params()
        16
        """
        if not self.built:
            raise ValueError(
                f'You tried to call count_params() on layer "{self.name}", but the layer is not '
                f"built. Call it on data or call build(input_shape) first."
            )
        return int(sum(w.numel() for w in self.weights))

    # ------------------------------------------------------------------ losses
    def add_loss(self, loss) -> None:
        """Add a scalar loss (a tensor) to the training objective; call it inside ``call``.

        >>> import torch
        >>> layer = Layer(); layer.add_loss(torch.tensor(2.0)); [float(l) for l in layer.losses]
        [2.0]
        """
        if getattr(_CONTEXT, "shape_inference", False):
            return  # the zeros call of compute_output_shape records no losses
        if not any(owner is self for owner in _LOSS_OWNERS):
            self._own_losses.clear()  # left from an earlier top-level call
            _LOSS_OWNERS.append(self)
        self._own_losses.append(loss)

    @property
    def losses(self) -> list[torch.Tensor]:
        """Losses from ``add_loss`` and activity regularizers of the last call, plus weight regularization."""
        out = []
        for layer in self._flatten_layers():
            out.extend(layer._own_losses)
        out.extend(self._regularization_losses())
        return out

    def _regularization_losses(self) -> list[torch.Tensor]:
        out = []
        for layer in self._flatten_layers():
            if not layer._trainable:
                continue
            for attr, reg in layer._weight_regularizers.items():
                tensor = layer._parameters.get(attr)
                if tensor is None:
                    continue
                perm = layer._weight_layouts.get(attr)
                out.append(reg(tensor if perm is None else tensor.permute(_inverse(perm))))
        return out

    def _clear_losses(self) -> None:
        """Start a top-level call: forget this layer tree's losses, keep other layers'."""
        holders = _LOSS_OWNERS + _STALE_LOSS_OWNERS
        _LOSS_OWNERS.clear()
        _STALE_LOSS_OWNERS.clear()
        if not holders:
            return
        mine = {id(layer) for layer in self._flatten_layers()}
        kept = set()
        for layer in holders:
            if id(layer) in mine:
                layer._own_losses.clear()
            elif layer._own_losses and id(layer) not in kept:
                kept.add(id(layer))
                _STALE_LOSS_OWNERS.append(layer)

    def _apply_constraints(self) -> None:
        """Project constrained weights in place (the trainer calls this after each update)."""
        with torch.no_grad():
            for layer in self._flatten_layers():
                for attr, constraint in layer._weight_constraints.items():
                    tensor = layer._parameters.get(attr)
                    if tensor is None:
                        tensor = layer._buffers[attr]
                    perm = layer._weight_layouts.get(attr)
                    keras_view = tensor if perm is None else tensor.permute(_inverse(perm))
                    projected = constraint(keras_view)
                    tensor.copy_(projected if perm is None else projected.permute(perm))

    # ------------------------------------------------------------------ calling
    def build(self, input_shape) -> None:
        """Create the weights for inputs of ``input_shape``; the default creates none."""
        self.built = True

    def call(self, *args, **kwargs):
        """The layer's computation; subclasses implement it."""
        raise NotImplementedError(
            f"Layer {type(self).__name__} does not implement call(). Subclasses of Layer must "
            f"define call(self, inputs)."
        )

    def forward(self, *args, **kwargs):
        return self.call(*args, **kwargs)

    def _call_flags(self) -> tuple[bool, bool]:
        cls = type(self)
        flags = _CALL_SIGNATURES.get(cls)
        if flags is None:
            params = inspect.signature(self.call).parameters
            flags = ("training" in params, "mask" in params)
            _CALL_SIGNATURES[cls] = flags
        return flags

    def _shape_arguments(self, method, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Shapes to pass to ``build``/``compute_output_shape``: the first input's shape, or,
        when the method takes several ``<name>_shape`` arguments (``build(query_shape,
        value_shape)``), the shapes of the call arguments of those names, as Keras does."""
        key = (type(self), method.__name__)
        names = _SHAPE_SIGNATURES.get(key)
        if names is None:
            params = [p for p in inspect.signature(method).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            names = tuple(p.name for p in params)
            _SHAPE_SIGNATURES[key] = names
        if len(names) <= 1:
            return (_shape_of(args[0] if args else next(iter(kwargs.values()))),), {}
        bound = dict(zip(inspect.signature(self.call).parameters, args))
        bound.update(kwargs)
        shapes = {}
        for name in names:
            value = bound.get(name[:-6] if name.endswith("_shape") else name)
            if value is not None:
                shapes[name] = _shape_of(value)
        return (), shapes

    def _find_weights_device(self):
        """The device of this layer's weights (False when it has none), cached until ``to()``."""
        device = next((t.device for t in itertools.chain(self.parameters(), self.buffers())), False)
        self.__dict__["_weights_device"] = device
        return device

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda() / .cpu() all come here (for every sub-layer too): forget the device.
        self.__dict__.pop("_weights_device", None)
        return super()._apply(fn, *args, **kwargs)

    def _maybe_build(self, inputs, args: tuple = (), kwargs: dict | None = None) -> None:
        shape = _shape_of(inputs)
        self._build_shape = shape
        # A first call under torch.inference_mode (predict) must still create ordinary
        # weights: inference tensors could never be trained afterwards.
        with torch.inference_mode(False):
            if args or kwargs:
                positional, named = self._shape_arguments(self.build, args, kwargs or {})
                self.build(*positional, **named)
            else:
                self.build(shape)
            self.built = True
            device = _device_of(inputs)
            if device is not None and device.type != "cpu":
                self.to(device)  # (inside: moved copies made under inference_mode could not train)

    def __call__(self, *args, **kwargs):
        # The hot path of every forward pass: checks for the common case (a tensor, no
        # mask, no pending losses) come first and cost a few attribute lookups.
        if args:
            first = args[0]
            if not isinstance(first, torch.Tensor):
                if _is_symbolic(first):
                    from lamina.layers.graph import symbolic_call

                    return symbolic_call(self, args, kwargs)
                if not isinstance(first, (list, tuple, dict)):
                    first = _to_tensor(first)
                    args = (first,) + args[1:]
        training = kwargs.pop("training", None)
        outer = getattr(_CONTEXT, "training", None)
        if outer is None and args and self.built and not torch.compiler.is_compiling():
            # The outermost call takes inputs where the weights are, as Keras does: a
            # model trained on the GPU can be called on NumPy arrays or CPU tensors.
            # (Not in compiled steps: the trainer's batches are on the device already.)
            device = self.__dict__.get("_weights_device")
            if device is None:
                device = self._find_weights_device()
            if device is not False:
                if isinstance(first, torch.Tensor):
                    if first.device != device:
                        args = tuple(_to_device(a, device) for a in args)
                elif isinstance(first, (list, tuple, dict)):  # several inputs, maybe NumPy arrays
                    args = tuple(_to_device(a, device) for a in args)
        if training is None:
            training = bool(outer)
        has_training, has_mask = _CALL_SIGNATURES.get(type(self)) or self._call_flags()
        if has_training:
            kwargs["training"] = training
        previous_mask = kwargs.get("mask")
        if previous_mask is None and args:
            previous_mask = getattr(args[0], "_keras_mask", None)
        if has_mask:
            if previous_mask is not None:
                kwargs["mask"] = previous_mask
        else:
            kwargs.pop("mask", None)
        if not self.built:
            self._maybe_build(args[0] if args else next(iter(kwargs.values())), args, kwargs)
        if self.input_spec is not None and args and isinstance(args[0], torch.Tensor):
            shape, checked = args[0].shape, self.__dict__.get("_checked_input")
            # A shape that passed this spec once passes again: check each new shape only.
            # (Not while tracing: comparing whole shapes would pin a dynamic batch size.)
            if torch.compiler.is_compiling():
                self.input_spec.check(self, tuple(shape))
            elif checked is None or checked[0] is not self.input_spec or checked[1] != shape:
                self.input_spec.check(self, tuple(shape))
                self.__dict__["_checked_input"] = (self.input_spec, shape)
        # Under torch.compile the trainer clears losses eagerly before the compiled step,
        # so the traced graph never looks at other models' layers.
        if (outer is None and (_LOSS_OWNERS or _STALE_LOSS_OWNERS)
                and not getattr(_CONTEXT, "shape_inference", False)
                and not torch.compiler.is_compiling()):
            self._clear_losses()  # (a no-op while no layer holds losses)
        _CONTEXT.training = training
        try:
            outputs = nn.Module.__call__(self, *args, **kwargs)
        finally:
            _CONTEXT.training = outer
        if self.activity_regularizer is not None and isinstance(outputs, torch.Tensor):
            loss = self.activity_regularizer(outputs)
            if outputs.ndim > 0 and outputs.shape[0] > 0:
                loss = loss / outputs.shape[0]
            self.add_loss(loss)
        # Without an incoming mask, only an overridden compute_mask can make one.
        if ((previous_mask is not None or type(self).compute_mask is not Layer.compute_mask)
                and args and isinstance(outputs, torch.Tensor) and self._propagates_mask):
            mask = self.compute_mask(args[0], previous_mask)
            if mask is not None:
                outputs._keras_mask = mask
        return outputs

    @property
    def _propagates_mask(self) -> bool:
        return self.supports_masking or type(self).compute_mask is not Layer.compute_mask

    def compute_mask(self, inputs, previous_mask=None):
        """The mask of the output: the input's mask for layers that support masking, else None.

        Layers that create masks (``Embedding(mask_zero=True)``) or change them
        (pooling over time) override this. Masks travel between layers as the
        ``_keras_mask`` attribute of tensors, as in Keras.
        """
        return previous_mask if self.supports_masking else None

    def compute_output_shape(self, input_shape):
        """Output shape for ``input_shape`` (batch dim may be None), found by a tiny eager call.

        ``input_shape`` may be a list / tuple / dict of shapes for a layer taking several
        inputs; the result has the structure of the layer's output.
        """
        weights = self.weights
        device = weights[0].device if weights else None
        previous = getattr(_CONTEXT, "shape_inference", False)
        _CONTEXT.shape_inference = True
        try:
            with torch.no_grad():
                out = self(_zeros(input_shape, config.torch_dtype(self._dtype), device), training=False)
        finally:
            _CONTEXT.shape_inference = previous
        first = input_shape
        while not _is_shape(first):
            first = next(iter(first.values())) if isinstance(first, dict) else first[0]
        return _output_shapes(out, bool(first) and first[0] is None)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        """The constructor arguments as plain JSON types (Keras keys).

        >>> Layer(name="plain").get_config()
        {'name': 'plain', 'trainable': True, 'dtype': 'float32'}
        """
        config_ = {"name": self.name, "trainable": self._trainable, "dtype": self._dtype}
        if self.activity_regularizer is not None:
            config_["activity_regularizer"] = registry.serialize("regularizer", self.activity_regularizer)
        if self._input_shape_arg is not None and self._build_shape is None:
            config_["batch_input_shape"] = (self._batch_size_arg, *self._input_shape_arg)
        return config_

    @classmethod
    def from_config(cls, config_: dict):
        """Create a layer from ``get_config()``'s output."""
        return cls(**config_)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _is_symbolic(x) -> bool:
    if isinstance(x, torch.Tensor):
        return False
    if isinstance(x, (list, tuple)) and x:
        x = x[0]
    elif isinstance(x, dict) and x:
        x = next(iter(x.values()))
    return getattr(x, "_lamina_symbolic", False)


def _to_tensor(x) -> torch.Tensor:
    array = np.asarray(x)
    if array.dtype.kind == "f":
        return torch.as_tensor(array, dtype=config.torch_dtype())
    return torch.as_tensor(array)


def _shape_of(x):
    if isinstance(x, torch.Tensor) or getattr(x, "_lamina_symbolic", False):
        return tuple(x.shape)
    if isinstance(x, (list, tuple)):
        return [_shape_of(v) for v in x]
    if isinstance(x, dict):
        return {k: _shape_of(v) for k, v in x.items()}
    return tuple(np.shape(x))


def _to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, np.ndarray):
        return _to_tensor(x).to(device)
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    return x


def _device_of(x):
    if isinstance(x, torch.Tensor):
        return x.device
    if isinstance(x, (list, tuple)) and x:
        return _device_of(x[0])
    if isinstance(x, dict) and x:
        return _device_of(next(iter(x.values())))
    return None


def _is_shape(x) -> bool:
    """Whether ``x`` is one shape (ints / None) rather than a structure of shapes."""
    return isinstance(x, (tuple, list)) and all(s is None or isinstance(s, (int, np.integer)) for s in x)


def _zeros(shape, dtype, device):
    if _is_shape(shape):
        return torch.zeros(tuple(1 if s is None else int(s) for s in shape), dtype=dtype, device=device)
    if isinstance(shape, dict):
        return {k: _zeros(v, dtype, device) for k, v in shape.items()}
    return type(shape)(_zeros(s, dtype, device) for s in shape)


def _output_shapes(out, none_batch: bool):
    if isinstance(out, torch.Tensor):
        shape = tuple(out.shape)
        return (None,) + shape[1:] if none_batch and shape else shape
    if isinstance(out, dict):
        return {k: _output_shapes(v, none_batch) for k, v in out.items()}
    return type(out)(_output_shapes(v, none_batch) for v in out)

