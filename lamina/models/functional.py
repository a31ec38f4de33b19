"""``Functional``: a model defined by wiring ``lamina.Input`` tensors through layers.

Owns the graph runner: the nodes recorded by symbolic calls are put in
topological order once, and ``call`` replays them on real tensors.
"""

from __future__ import annotations

from torch import nn

from lamina import registry
from lamina.layers.base import unique_name
from lamina.layers.graph import InputLayer, Node, SymbolicTensor, _flatten_symbolic
from lamina.models.model import Model

__all__ = ["Functional"]


def _pack(structure, values: dict):
    if isinstance(structure, SymbolicTensor):
        return values[id(structure)]
    if isinstance(structure, (list, tuple)):
        return type(structure)(_pack(s, values) for s in structure)
    if isinstance(structure, dict):
        return {k: _pack(v, values) for k, v in structure.items()}
    return structure


@registry.register("layer")
class Functional(Model):
    """A model built from symbolic inputs and outputs: ``Model(inputs, outputs)``.

    Args:
        inputs: an ``Input`` tensor, or a list / dict of them.
        outputs: the symbolic tensor(s) computed from ``inputs``.
        name: model name, default ``"functional"``.

    Example:
    >>> from lamina import Input, Model
    >>> from lamina.layers import Dense
    >>> inputs = Input((4,))
    >>> outputs = Dense(2)(Dense(8, activation="relu")(inputs))
    >>> model = Model(inputs, outputs)
    >>> model.output_shape, model.count_params()
    ((None, 2), 58)
    """

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        super().__init__(name=name or unique_name("functional"), trainable=trainable, **kwargs)
        self._input_structure, self._output_structure = inputs, outputs
        flat_inputs, flat_outputs = [], []
        _flatten_symbolic(inputs, flat_inputs)
        _flatten_symbolic(outputs, flat_outputs)
        if not flat_inputs or not flat_outputs:
            raise ValueError(
                "Model(inputs, outputs) needs symbolic tensors from lamina.Input as inputs and "
                f"the tensors computed from them as outputs; received inputs={inputs!r}, outputs={outputs!r}."
            )
        self._flat_inputs, self._flat_outputs = flat_inputs, flat_outputs
        self._nodes = self._topological_nodes()
        layers = []
        for sym in flat_inputs:
            layers.append(sym.node.layer)
        for node in self._nodes:
            if node.layer not in layers:
                layers.append(node.layer)
            shapes = [o.shape for o in node.outputs]
            node.layer._output_shape = shapes[0] if len(shapes) == 1 else shapes
        for sym in flat_inputs:
            sym.node.layer._output_shape = sym.shape
        self._graph_layers = nn.ModuleList(layers)
        self._build_shape = flat_inputs[0].shape if len(flat_inputs) == 1 else [s.shape for s in flat_inputs]
        self.built = True

    def _topological_nodes(self) -> list[Node]:
        input_ids = {id(s) for s in self._flat_inputs}
        order, visited = [], set()

        def visit(tensor: SymbolicTensor, path: tuple):
            node = tensor.node
            if id(tensor) in input_ids:
                return
            if node is None or isinstance(node.layer, InputLayer):
                raise ValueError(
                    f"Graph disconnected: the output {tensor!r} depends on an input "
                    f"({getattr(node, 'layer', None) and node.layer.name}) that is not among the "
                    f"model's inputs {[s.name for s in self._flat_inputs]}. Pass every Input the "
                    f"outputs use to Model(inputs=...)."
                )
            if id(node) in visited:
                return
            for parent in node.inputs:
                visit(parent, path + (node.layer.name,))
            visited.add(id(node))
            order.append(node)

        for output in self._flat_outputs:
            visit(output, ())
        return order

    @property
    def layers(self):
        """Every layer of the graph, input layers first, in call order."""
        return list(self._graph_layers)

    def _summary_layers(self):
        return self.layers

    def _summary_connections(self, layer) -> str:
        found = []
        for node in self._nodes:
            if node.layer is layer:
                for parent in node.inputs:
                    producer = parent.node.layer
                    index = 0
                    found.append(f"{producer.name}[{index}][{parent.index}]")
        return ", ".join(found) or "-"

    @property
    def inputs(self) -> list[SymbolicTensor]:
        """The model's symbolic inputs."""
        return list(self._flat_inputs)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        """The model's symbolic outputs."""
        return list(self._flat_outputs)

    @property
    def input_shape(self):
        """Input shape(s) including the batch axis."""
        shapes = [s.shape for s in self._flat_inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        """Output shape(s) including the batch axis."""
        shapes = [s.shape for s in self._flat_outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def call(self, inputs, training=None):
        if isinstance(inputs, dict) and not isinstance(self._input_structure, dict):
            inputs = [inputs[s.name] for s in self._flat_inputs]
        flat = []
        _flatten_values(inputs, flat)
        if len(flat) != len(self._flat_inputs):
            raise ValueError(
                f'Model "{self.name}" expects {len(self._flat_inputs)} input(s) '
                f"{[s.shape for s in self._flat_inputs]}, but received {len(flat)}."
            )
        values = {id(s): t for s, t in zip(self._flat_inputs, flat)}
        for node in self._nodes:
            args = _pack(node.args, values)
            kwargs = _pack(node.kwargs, values)
            result = node.layer(*args, **kwargs)
            flat_result = []
            _flatten_values(result, flat_result)
            for sym, value in zip(node.outputs, flat_result):
                values[id(sym)] = value
        return _pack(self._output_structure, values)

    def compute_output_shape(self, input_shape):
        return self.output_shape

    # ------------------------------------------------------------------ config
    def _node_index(self, node: Node) -> int:
        if isinstance(node.layer, InputLayer):
            return 0
        return [n for n in self._nodes if n.layer is node.layer].index(node)

    def _tensor_ref(self, tensor: SymbolicTensor) -> list:
        return [tensor.node.layer.name, self._node_index(tensor.node), tensor.index]

    def _encode(self, value):
        if isinstance(value, SymbolicTensor):
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(value.shape), "dtype": value.dtype,
                               "keras_history": self._tensor_ref(value)}}
        if isinstance(value, (list, tuple)):
            return [self._encode(v) for v in value]
        if isinstance(value, dict):
            return {k: self._encode(v) for k, v in value.items()}
        return value

    def _structure(self, structure):
        if isinstance(structure, SymbolicTensor):
            return self._tensor_ref(structure)
        if isinstance(structure, dict):
            return {k: self._structure(v) for k, v in structure.items()}
        return [self._structure(v) for v in structure]

    def get_config(self) -> dict:
        """Keras's functional config: layers with their inbound nodes, input and output layers."""
        layers = []
        for layer in self.layers:
            entry = registry.serialize("layer", layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [
                {"args": self._encode(list(node.args)), "kwargs": self._encode(node.kwargs)}
                for node in self._nodes if node.layer is layer
            ]
            layers.append(entry)
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": self._structure(self._input_structure),
                "output_layers": self._structure(self._output_structure)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild the graph by replaying each layer's inbound nodes in dependency order."""
        created, outputs, pending = {}, {}, []
        for entry in config["layers"]:
            layer = registry.get("layer", {"class_name": entry["class_name"], "config": entry["config"]},
                                 custom_objects)
            created[entry["name"]] = layer
            if isinstance(layer, InputLayer):
                outputs[(entry["name"], 0)] = [layer.output]
            for node in entry.get("inbound_nodes", []):
                pending.append((layer, node))

        def decode(value):
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                name, node_index, tensor_index = value["config"]["keras_history"]
                return outputs[(name, node_index)][tensor_index]
            if isinstance(value, list):
                return [decode(v) for v in value]
            if isinstance(value, dict):
                return {k: decode(v) for k, v in value.items()}
            return value

        counts: dict[str, int] = {}
        while pending:
            progress = False
            for item in list(pending):
                layer, node = item
                try:
                    args, kwargs = decode(node["args"]), decode(node["kwargs"])
                except KeyError:
                    continue
                result = layer(*args, **kwargs)
                index = counts.get(layer.name, 0)
                counts[layer.name] = index + 1
                outputs[(layer.name, index)] = result if isinstance(result, list) else [result]
                pending.remove(item)
                progress = True
            if not progress:
                raise ValueError("The functional model config has layers whose inputs are never produced.")

        def lookup(structure):
            if isinstance(structure, dict):
                return {k: lookup(v) for k, v in structure.items()}
            if structure and isinstance(structure[0], str):
                return outputs[(structure[0], structure[1])][structure[2]]
            return [lookup(v) for v in structure]

        return cls(lookup(config["input_layers"]), lookup(config["output_layers"]),
                   name=config.get("name"), trainable=config.get("trainable", True))


def _flatten_values(structure, out: list) -> None:
    if isinstance(structure, dict):
        for v in structure.values():
            _flatten_values(v, out)
    elif isinstance(structure, (list, tuple)):
        for v in structure:
            _flatten_values(v, out)
    else:
        out.append(structure)
