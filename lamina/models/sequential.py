"""``Sequential``: a plain stack of layers, each feeding the next.

Owns ``add`` / ``pop``, shape inference from a known input shape (so ``summary``
works before any data is seen), and the Sequential config. Training comes from
``Model``.
"""

from __future__ import annotations

from torch import nn

from lamina import registry
from lamina.layers.base import Layer, _fmt
from lamina.layers.graph import InputLayer, SymbolicTensor
from lamina.models.model import Model

__all__ = ["Sequential"]


@registry.register("layer")
class Sequential(Model):
    """A linear stack of layers.

    Args:
        layers: optional list of layers (an ``Input`` may come first).
        trainable: whether the model's weights are trained. Default True.
        name: model name, default ``"sequential"``.

    Example:
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((64,)), Dense(128, activation="relu"), Dense(10, activation="softmax")])
    >>> model.count_params()
    9610
    >>> model.output_shape
    (None, 10)
    """

    def __init__(self, layers=None, trainable=True, name=None, **kwargs):
        super().__init__(trainable=trainable, name=name, **kwargs)
        self._layers = nn.ModuleList()
        self._input_layer: InputLayer | None = None
        self._output_shape = None
        self._symbolic_output = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build_from_known_shape()

    @property
    def layers(self) -> list[Layer]:
        """The layers, in order (the input layer excluded, as in Keras)."""
        return list(self._layers)

    def add(self, layer, rebuild=True) -> None:
        """Append a layer (or an ``Input``, only as the first entry).

        >>> from lamina import Input
        >>> from lamina.layers import Dense
        >>> model = Sequential()
        >>> model.add(Input((3,)))
        >>> model.add(Dense(2))
        >>> model.output_shape
        (None, 2)
        """
        if isinstance(layer, SymbolicTensor):
            layer = layer.node.layer
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or len(self._layers):
                raise ValueError(
                    f'Sequential model "{self.name}" received an Input after other layers. An '
                    f"Input may only be the first entry of a Sequential model."
                )
            self._input_layer = layer
            if rebuild:
                self._maybe_build_from_known_shape()
            return
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Only instances of lamina.layers.Layer can be added to a Sequential model; "
                f"received {layer!r} (of type {type(layer).__name__})."
            )
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(
                f'All layers added to a Sequential model should have unique names. Name '
                f'"{layer.name}" is already the name of a layer in this model. Update the '
                f"`name` argument to pass a unique name."
            )
        if not len(self._layers) and self._input_layer is None and layer._input_shape_arg is not None:
            self._input_layer = InputLayer(shape=layer._input_shape_arg, batch_size=layer._batch_size_arg)
        self._layers.append(layer)
        if rebuild:
            self._maybe_build_from_known_shape()

    def pop(self, rebuild=True) -> Layer:
        """Remove and return the last layer.

        >>> from lamina import Input
        >>> from lamina.layers import Dense
        >>> model = Sequential([Input((3,)), Dense(4), Dense(2)])
        >>> model.pop().units, model.output_shape
        (2, (None, 4))
        """
        if not len(self._layers):
            raise IndexError(f'Sequential model "{self.name}" has no layers to pop.')
        layer = self._layers[-1]
        del self._layers[-1]
        if rebuild:
            self._output_shape = None
            self._maybe_build_from_known_shape()
        return layer

    def _maybe_build_from_known_shape(self) -> None:
        if self._input_layer is not None and len(self._layers):
            self.build(self._input_layer.batch_shape)

    def build(self, input_shape=None):
        """Build every layer from ``input_shape`` (batch axis included) by shape inference."""
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError(
                    f'Sequential model "{self.name}" cannot be built without an input shape. '
                    f"Start it with lamina.Input(shape) or call build((None, ...))."
                )
            input_shape = self._input_layer.batch_shape
        if not len(self._layers):
            raise ValueError(
                f'Sequential model "{self.name}" has no layers yet. Add layers with model.add() '
                f"before building, training or calling it."
            )
        shape = (None, *tuple(input_shape)[1:]) if self._input_layer is None else tuple(input_shape)
        if self._input_layer is None:
            self._input_layer = InputLayer(batch_shape=shape)
        self._build_shape = shape
        # Build by calling each layer on the symbolic input: this builds the layers, checks
        # their input specs, infers shapes and records the graph, so that `layer.output`
        # and `Model(model.inputs, model.layers[-2].output)` work as in Keras.
        x = self._input_layer.output
        for layer in self._layers:
            layer._inbound_nodes.clear()
        for layer in self._layers:
            x = layer(x)
            if not getattr(x, "_lamina_symbolic", False):
                raise ValueError(
                    f'Layer "{layer.name}" in Sequential model "{self.name}" returns several '
                    f"tensors; a Sequential model needs layers with a single output each."
                )
            layer._output_shape = x.shape
        self._symbolic_output = x
        self._output_shape = x.shape
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._layers:
            x = layer(x)
        return x

    def __call__(self, *args, **kwargs):
        if not len(self._layers):
            raise ValueError(
                f'Sequential model "{self.name}" has no layers. Add layers with model.add() '
                f"before calling, training or evaluating it."
            )
        return super().__call__(*args, **kwargs)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    @property
    def input_shape(self):
        """Input shape including the batch axis (``(None, ...)``), once known."""
        if self._input_layer is None:
            raise AttributeError(f'Sequential model "{self.name}" has no defined input shape yet.')
        return self._input_layer.batch_shape

    @property
    def output_shape(self):
        """Output shape including the batch axis, once the input shape is known."""
        if self._output_shape is None:
            raise AttributeError(f'Sequential model "{self.name}" has no defined output shape yet.')
        return self._output_shape

    @property
    def inputs(self) -> list[SymbolicTensor]:
        """The model's symbolic input, once its shape is known."""
        return [] if self._input_layer is None else [self._input_layer.output]

    @property
    def outputs(self) -> list[SymbolicTensor]:
        """The model's symbolic output, once its input shape is known."""
        output = getattr(self, "_symbolic_output", None)
        return [] if output is None or not self.built else [output]

    def get_config(self) -> dict:
        """Name, trainable, dtype and the layers' configs (input layer first)."""
        layers = []
        if self._input_layer is not None:
            layers.append(registry.serialize("layer", self._input_layer))
        for layer in self._layers:
            entry = registry.serialize("layer", layer)
            entry["config"].pop("batch_input_shape", None)
            if layer._build_shape is not None and isinstance(layer._build_shape, tuple):
                entry["build_config"] = {"input_shape": _none_batch_list(layer._build_shape)}
            layers.append(entry)
        config = {"name": self.name, "trainable": self.trainable, "dtype": self._dtype, "layers": layers}
        if self._build_shape is not None:
            config["build_input_shape"] = _none_batch_list(self._build_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild a Sequential model from ``get_config()``."""
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config.get("layers", []):
            layer = registry.get("layer", {"class_name": entry["class_name"], "config": entry["config"]},
                                 custom_objects)
            model.add(layer, rebuild=False)
            build = entry.get("build_config")
            if build and not model._input_layer and not layer.built:
                layer._build_shape = tuple(build["input_shape"])
        if model._input_layer is None and config.get("build_input_shape"):
            model._input_layer = InputLayer(batch_shape=tuple(config["build_input_shape"]))
        model._maybe_build_from_known_shape()
        return model

    def __repr__(self) -> str:
        shape = "?" if self._input_layer is None else _fmt(self._input_layer.batch_shape)
        return f"<Sequential name={self.name}, input_shape={shape}, layers={len(self._layers)}>"


def _none_batch_list(shape) -> list:
    return [None, *shape[1:]]
