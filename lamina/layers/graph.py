"""Symbolic tensors for model building: ``Input``, ``InputLayer``, ``SymbolicTensor`` and ``Node``.

Calling a layer on a ``SymbolicTensor`` builds the layer from the known shape,
infers the output shape without touching data, and records a ``Node`` so a
model can later replay the graph on real tensors. Running graphs is the job of
``lamina.models.functional``.
"""

from __future__ import annotations

from lamina import config, registry
from lamina.layers.base import Layer, _fmt, _is_shape

__all__ = ["Input", "InputLayer", "SymbolicTensor", "Node", "symbolic_call"]


class Node:
    """One call of ``layer`` on symbolic ``args``/``kwargs`` producing ``outputs``."""

    def __init__(self, layer: Layer, args: tuple, kwargs: dict, outputs: list["SymbolicTensor"]):
        self.layer = layer
        self.args = args
        self.kwargs = kwargs
        self.outputs = outputs

    @property
    def inputs(self) -> list["SymbolicTensor"]:
        """The symbolic tensors this call consumed, flattened in argument order."""
        found = []
        _flatten_symbolic((self.args, self.kwargs), found)
        return found


class SymbolicTensor:
    """A placeholder with a shape (batch axis ``None``) and dtype, produced by ``Input``.

    Args:
        shape: tuple including the batch axis, e.g. ``(None, 64)``.
        dtype: dtype name, default ``floatx()``.
        node: the ``Node`` that produced it (``None`` for model inputs before wiring).

    >>> x = Input((64,))
    >>> x.shape
    (None, 64)
    """

    _lamina_symbolic = True

    def __init__(self, shape, dtype=None, node: Node | None = None, index: int = 0, name: str | None = None):
        self.shape = tuple(None if s is None else int(s) for s in shape)
        self.dtype = dtype or config.floatx()
        self.node = node
        self.index = index
        self.name = name

    @property
    def ndim(self) -> int:
        """Rank including the batch axis."""
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={_fmt(self.shape)}, dtype={self.dtype}, name={self.name}>"

    def __bool__(self):
        raise TypeError(
            "A symbolic tensor (from lamina.Input) has no value; it only describes a model's "
            "inputs. Call the model on real data to get values."
        )


def _flatten_symbolic(structure, out: list) -> None:
    if isinstance(structure, SymbolicTensor):
        out.append(structure)
    elif isinstance(structure, (list, tuple)):
        for item in structure:
            _flatten_symbolic(item, out)
    elif isinstance(structure, dict):
        for item in structure.values():
            _flatten_symbolic(item, out)


def _shapes(structure):
    if isinstance(structure, SymbolicTensor):
        return structure.shape
    if isinstance(structure, (list, tuple)):
        return [_shapes(s) for s in structure]
    if isinstance(structure, dict):
        return {k: _shapes(v) for k, v in structure.items()}
    return structure


def symbolic_call(layer: Layer, args: tuple, kwargs: dict):
    """Call ``layer`` on symbolic inputs: build it, infer output shapes, record a Node."""
    kwargs = {k: v for k, v in kwargs.items() if k != "training"}
    input_shape = _shapes(args[0])
    if not layer.built:
        layer._build_shape = input_shape
        positional, named = layer._shape_arguments(layer.build, args, kwargs)
        layer.build(*positional, **named)
        layer.built = True
    if layer.input_spec is not None and isinstance(input_shape, tuple):
        layer.input_spec.check(layer, input_shape)
    positional, named = layer._shape_arguments(layer.compute_output_shape, args, kwargs)
    output_shape = layer.compute_output_shape(*positional, **named)
    dtype = layer._dtype
    node = Node(layer, args, kwargs, [])
    layer._inbound_nodes.append(node)
    if _is_shape(output_shape):
        output = SymbolicTensor(output_shape, dtype, node, 0, layer.name)
        node.outputs = [output]
        return output

    # Several outputs: one SymbolicTensor per shape, in the structure the layer returns;
    # node.outputs lists them flat, in the order the graph runner flattens real outputs.
    def make(structure):
        if _is_shape(structure):
            tensor = SymbolicTensor(structure, dtype, node, len(node.outputs), f"{layer.name}_{len(node.outputs)}")
            node.outputs.append(tensor)
            return tensor
        if isinstance(structure, dict):
            return {k: make(v) for k, v in structure.items()}
        return type(structure)(make(s) for s in structure)

    return make(output_shape)


@registry.register("layer")
class InputLayer(Layer):
    """The layer behind ``Input``: it marks where data enters a model.

    Args:
        shape: shape tuple without the batch axis.
        batch_size: optional fixed batch size.
        dtype: dtype name of the input, default ``floatx()``.
        sparse: whether the input is a sparse tensor (kept for Keras compatibility).
        ragged: whether the input is ragged (kept for Keras compatibility).
        batch_shape: full shape including the batch axis (instead of ``shape``).
        name: layer name, default ``input_layer``.

    >>> InputLayer(shape=(8,)).output.shape
    (None, 8)
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None,
                 input_tensor=None, optional=False, name=None, **kwargs):
        legacy = kwargs.pop("input_shape", None)
        legacy_batch = kwargs.pop("batch_input_shape", None)
        if shape is None and legacy is not None:
            shape = legacy
        if batch_shape is None and legacy_batch is not None:
            batch_shape = legacy_batch
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is not None and (shape is not None or batch_size is not None):
            raise ValueError(
                f"InputLayer takes either `shape` (with an optional `batch_size`) or `batch_shape`, "
                f"not both; received shape={shape!r}, batch_size={batch_size!r}, "
                f"batch_shape={batch_shape!r}."
            )
        if batch_shape is None:
            if shape is None:
                raise ValueError(
                    "InputLayer needs `shape` (without the batch axis) or `batch_shape`; "
                    "received neither. Example: lamina.Input(shape=(64,))."
                )
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            batch_shape = (batch_size, *shape)
        self.batch_shape = tuple(None if s is None else int(s) for s in batch_shape)
        self.sparse = bool(sparse)
        self.ragged = bool(ragged)
        self.optional = bool(optional)
        self.built = True
        output = SymbolicTensor(self.batch_shape, self._dtype, Node(self, (), {}, []), 0, self.name)
        output.node.outputs = [output]
        self._inbound_nodes.append(output.node)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return self.batch_shape

    def get_config(self):
        return {"batch_shape": self.batch_shape, "dtype": self._dtype, "sparse": self.sparse,
                "ragged": self.ragged, "name": self.name, "optional": self.optional}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None, name=None,
          tensor=None, optional=False) -> SymbolicTensor:
    """A symbolic model input, as ``keras.Input``: ``Input(shape=(64,))``.

    Args:
        shape: shape tuple without the batch axis.
        batch_size: optional fixed batch size.
        dtype: dtype name, default ``floatx()``.
        sparse: whether the input is sparse.
        ragged: whether the input is ragged (kept for Keras compatibility).
        batch_shape: full shape including the batch axis.
        name: name of the input (and of its InputLayer).

    >>> Input(shape=(28, 28, 1)).shape
    (None, 28, 28, 1)
    """
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, ragged=ragged,
                       batch_shape=batch_shape, name=name, optional=optional)
    return layer.output
