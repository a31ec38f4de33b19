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
        ordered_nodes, layers, self._nodes_by_depth = self._map_graph()
        # Input-layer nodes have nothing to run; the runner replays the others in order.
        self._nodes = [node for node in ordered_nodes if not _is_input_node(node)]
        for node in self._nodes:
            shapes = [o.shape for o in node.outputs]
            node.layer._output_shape = shapes[0] if len(shapes) == 1 else shapes
        for sym in flat_inputs:
            sym.node.layer._output_shape = sym.shape
        self._graph_layers = nn.ModuleList(layers)
        self._build_shape = flat_inputs[0].shape if len(flat_inputs) == 1 else [s.shape for s in flat_inputs]
        self.built = True

    def _map_graph(self) -> tuple[list[Node], list, dict[int, list[Node]]]:
        """Nodes in topological order, the layers and the nodes by depth, as Keras's map_graph.

        Layers are sorted by decreasing depth (longest path to an output), ties in the
        order a depth-first walk from the outputs first meets them, so ``layers`` and the
        weights come in Keras's order and Keras weight lists load unchanged.
        """
        input_ids = {id(s) for s in self._flat_inputs}
        order, finished, in_progress, layer_index = [], set(), set(), {}

        def visit(tensor: SymbolicTensor):
            node = tensor.node
            if node is None or id(node) in finished:
                return
            if id(tensor) in input_ids and not _is_input_node(node):
                finished.add(id(node))  # an intermediate tensor used as a model input
                return
            if _is_input_node(node) and id(tensor) not in input_ids:
                raise ValueError(
                    f"Graph disconnected: the output depends on the input {tensor!r} (layer "
                    f"{node.layer.name!r}), which is not among the model's inputs "
                    f"{[s.name for s in self._flat_inputs]}. Pass every Input the outputs use to "
                    f"Model(inputs=...)."
                )
            if id(node) in in_progress:
                raise ValueError(f"The graph has a cycle through layer {node.layer.name!r}.")
            layer_index.setdefault(id(node.layer), len(layer_index))
            in_progress.add(id(node))
            for parent in node.inputs:
                visit(parent)
            in_progress.discard(id(node))
            finished.add(id(node))
            order.append(node)

        for output in self._flat_outputs:
            visit(output)
        in_graph = {id(node) for node in order}
        node_depth, layer_depth, layers = {}, {}, {}
        for node in reversed(order):
            depth = max(node_depth.get(id(node), 0), layer_depth.get(id(node.layer), 0))
            layer_depth[id(node.layer)] = node_depth[id(node)] = depth
            layers[id(node.layer)] = node.layer
            for parent in node.inputs:
                if id(parent.node) in in_graph:
                    node_depth[id(parent.node)] = max(depth + 1, node_depth.get(id(parent.node), 0))
        for sym in self._flat_inputs:  # inputs the outputs do not use
            if _is_input_node(sym.node) and id(sym.node.layer) not in layers:
                layers[id(sym.node.layer)] = sym.node.layer
                layer_depth[id(sym.node.layer)], layer_index[id(sym.node.layer)] = 0, -1
                node_depth[id(sym.node)] = 0
                order.insert(0, sym.node)
        by_depth: dict[int, list[Node]] = {}
        for node in order:
            by_depth.setdefault(node_depth[id(node)], []).append(node)
        ranked = sorted(layers, key=lambda key: (-layer_depth[key], layer_index[key]))
        return order, [layers[key] for key in ranked], by_depth

    @property
    def layers(self):
        """Every layer of the graph, input layers first, in call order."""
        return list(self._graph_layers)

    def _summary_layers(self):
        return self.layers

    def _summary_sequential_like(self) -> bool:
        """Keras's test for the 3-column summary: one node per depth, each with at most
        one input tensor, and no layer called twice in the graph."""
        nodes = [n for depth_nodes in self._nodes_by_depth.values() for n in depth_nodes]
        if any(len(v) > 1 or len(v[0].inputs) > 1 for v in self._nodes_by_depth.values()):
            return False
        return len({id(n.layer) for n in nodes}) == len(nodes)

    def _summary_connections(self, layer) -> str:
        """``producer[node_index][tensor_index]`` for each input of each call of ``layer``."""
        in_graph = {id(n) for depth_nodes in self._nodes_by_depth.values() for n in depth_nodes}
        found = []
        for node in getattr(layer, "_inbound_nodes", []):
            if id(node) not in in_graph:
                continue
            for parent in node.inputs:
                producer = parent.node.layer
                found.append(f"{producer.name}[{producer._inbound_nodes.index(parent.node)}][{parent.index}]")
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
    def output_names(self) -> list[str]:
        """Names of the outputs: the dict keys of dict outputs, else the producing layers' names."""
        if isinstance(self._output_structure, dict):
            return list(self._output_structure)
        return [s.node.layer.name for s in self._flat_outputs]

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
        if isinstance(inputs, dict):
            # Match dict inputs by key (or by Input name), whatever order the caller used.
            names = list(self._input_structure) if isinstance(self._input_structure, dict) else \
                [s.name for s in self._flat_inputs]
            missing = [name for name in names if name not in inputs]
            if missing:
                raise ValueError(
                    f'Model "{self.name}" expects inputs named {names}, but the dict given has keys '
                    f"{sorted(inputs)} (missing {missing}). Use the names of the model's Inputs as keys."
                )
            inputs = [inputs[name] for name in names]
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
        outputs = _pack(self._output_structure, values)
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            return outputs[0]  # Model(x, [y]) returns a tensor, as in Keras
        return outputs

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
            progress, blocked = False, set()
            for item in list(pending):
                layer, node = item
                if id(layer) in blocked:
                    continue  # a shared layer's calls must replay in order (node indices)
                try:
                    args, kwargs = decode(node["args"]), decode(node["kwargs"])
                except KeyError:
                    blocked.add(id(layer))
                    continue
                result = layer(*args, **kwargs)
                index = counts.get(layer.name, 0)
                counts[layer.name] = index + 1
                outputs[(layer.name, index)] = _flat_outputs(result)
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


def _is_input_node(node: Node) -> bool:
    return isinstance(node.layer, InputLayer) and not node.inputs


def _flat_outputs(result) -> list:
    flat: list = []
    _flatten_values(result, flat)
    return flat


def _flatten_values(structure, out: list) -> None:
    if isinstance(structure, dict):
        for v in structure.values():
            _flatten_values(v, out)
    elif isinstance(structure, (list, tuple)):
        for v in structure:
            _flatten_values(v, out)
    else:
        out.append(structure)
