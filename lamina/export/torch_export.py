"""``torch.export`` for lamina models (``.pt2`` files), and the model signature every exporter shares.

Owns how a model's inputs and outputs are described (``TensorSpec``: name, shape with
``None`` for dynamic axes, dtype), the inference-mode wrapper that takes and returns
flat tuples of tensors, and tracing it with a dynamic batch axis. ONNX files are
written by ``lamina.export.onnx``; serving reads signatures through ``ModelSignature``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from lamina import config

__all__ = ["TensorSpec", "ModelSignature", "model_signature", "export_torch", "load_torch_signature"]

# The name of the JSON member ``export_torch`` adds to a ``.pt2`` archive.
SIGNATURE_FILE = "lamina_signature.json"


class TensorSpec(NamedTuple):
    """Name, shape and dtype of one model input or output.

    Args:
        name: the tensor's name (an ``Input``'s name, an output layer's name or a dict key).
        shape: tuple including the batch axis; ``None`` marks a dynamic axis.
        dtype: dtype name such as ``"float32"`` or ``"int32"``.

    Example:
    >>> spec = TensorSpec("x", (None, 8), "float32")
    >>> spec.to_json()
    {'name': 'x', 'shape': [None, 8], 'dtype': 'float32'}
    """

    name: str
    shape: tuple
    dtype: str

    def to_json(self) -> dict:
        """The spec as plain JSON types."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, value: dict) -> "TensorSpec":
        """The inverse of ``to_json``."""
        return cls(str(value["name"]), tuple(value["shape"]), str(value["dtype"]))


@dataclass
class ModelSignature:
    """A model's flat inputs and outputs, and how to rebuild the structures the model uses.

    ``input_structure`` and ``output_structure`` are templates whose leaves are indices
    into the flat lists: ``0`` for one tensor, ``[0, 1]`` for a list, ``{"a": 0, "b": 1}``
    for a dict. They are plain JSON, so a signature can travel inside an exported file.

    Args:
        inputs: list of ``TensorSpec``, in the order exported programs take them.
        outputs: list of ``TensorSpec``, in the order exported programs return them.
        input_structure: template of the model's input structure (default ``0``).
        output_structure: template of the model's output structure (default ``0``).

    Example:
    >>> signature = ModelSignature([TensorSpec("a", (None, 2), "float32"),
    ...                             TensorSpec("b", (None, 3), "float32")],
    ...                            [TensorSpec("y", (None, 1), "float32")], {"a": 0, "b": 1}, 0)
    >>> signature.pack_inputs(["A", "B"])
    {'a': 'A', 'b': 'B'}
    """

    inputs: list
    outputs: list
    input_structure: Any = 0
    output_structure: Any = 0

    def pack_inputs(self, flat: list):
        """The model's input structure filled with ``flat`` values, in signature order."""
        return _pack(self.input_structure, flat)

    def flatten_outputs(self, outputs) -> list:
        """The leaves of a model output (tensor, list or dict), in signature order."""
        flat: list = []
        _flatten(outputs, flat)
        return flat

    def to_json(self) -> dict:
        """The signature as plain JSON types."""
        return {"inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
                "input_structure": self.input_structure, "output_structure": self.output_structure}

    @classmethod
    def from_json(cls, value: dict) -> "ModelSignature":
        """The inverse of ``to_json``."""
        return cls([TensorSpec.from_json(s) for s in value["inputs"]],
                   [TensorSpec.from_json(s) for s in value["outputs"]],
                   value.get("input_structure", 0), value.get("output_structure", 0))


def _pack(template, flat: list):
    if isinstance(template, dict):
        return {k: _pack(v, flat) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return [_pack(v, flat) for v in template]
    return flat[template]


def _flatten(value, out: list) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _flatten(item, out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _flatten(item, out)
    else:
        out.append(value)


def _template(value, counter: list, names: list, key=None):
    """Index template of ``value`` (leaves numbered depth-first); dict keys are collected as names."""
    if isinstance(value, dict):
        return {k: _template(v, counter, names, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_template(v, counter, names, key) for v in value]
    counter[0] += 1
    names.append(key)
    return counter[0] - 1


def _dtype_name(dtype) -> str:
    if isinstance(dtype, torch.dtype):
        return str(dtype).replace("torch.", "")
    return str(getattr(dtype, "name", dtype))


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(s is None or isinstance(s, (int, np.integer)) for s in value)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


# ---------------------------------------------------------------------------------- inputs
def _leaf_spec(value, name: str | None) -> TensorSpec:
    """A ``TensorSpec`` from one ``input_signature`` leaf."""
    if isinstance(value, TensorSpec):
        return value if name is None or value.name else value._replace(name=name)
    if getattr(value, "_lamina_symbolic", False):
        return TensorSpec(name or value.name, tuple(value.shape), _dtype_name(value.dtype))
    if isinstance(value, (torch.Tensor, np.ndarray)):
        shape = (None, *tuple(int(s) for s in value.shape[1:])) if value.ndim else ()
        return TensorSpec(name, shape, _dtype_name(value.dtype))
    if _is_shape(value):
        return TensorSpec(name, tuple(None if s is None else int(s) for s in value), config.floatx())
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and _is_shape(tuple(shape)):
        return TensorSpec(name or getattr(value, "name", None), tuple(shape), _dtype_name(dtype or config.floatx()))
    raise TypeError(
        f"input_signature entries must be shapes such as (None, 8), TensorSpec, lamina.Input "
        f"tensors, or example arrays; received {value!r} of type {type(value).__name__}."
    )


def _specs_from(structure) -> tuple[list[TensorSpec], Any]:
    """Flat specs and index template from a structure of signature leaves."""
    specs: list = []

    def walk(value, key):
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and not _is_shape(value) and not isinstance(value, TensorSpec):
            return [walk(v, None) for v in value]
        specs.append(_leaf_spec(value, key))
        return len(specs) - 1

    template = walk(structure, None)
    names = [s.name or ("inputs" if len(specs) == 1 else f"input_{i}") for i, s in enumerate(specs)]
    return [s._replace(name=n) for s, n in zip(specs, _unique(names))], template


def _model_inputs(model, input_signature=None) -> tuple[list[TensorSpec], Any]:
    if input_signature is not None:
        return _specs_from(input_signature)
    structure = getattr(model, "_input_structure", None)
    if structure is not None:  # functional: the Input tensors, keyed as the model takes them
        return _specs_from(structure)
    input_layer = getattr(model, "_input_layer", None)
    if input_layer is not None:  # Sequential
        return [TensorSpec(input_layer.name, tuple(input_layer.batch_shape), input_layer.dtype)], 0
    build_shape = getattr(model, "_build_shape", None)
    if build_shape is not None:  # a subclassed model that has been called or built

        def relax(shape):
            if _is_shape(shape):
                return (None, *tuple(shape)[1:])
            if isinstance(shape, dict):
                return {k: relax(v) for k, v in shape.items()}
            return [relax(v) for v in shape]

        return _specs_from(relax(build_shape))
    raise ValueError(
        f"Cannot tell the input shape of model {getattr(model, 'name', model)!r}: it was never built "
        f"or called. Start it with lamina.Input(shape), call it once on data, or pass "
        f"input_signature=(None, ...) (the shape with None for the batch axis)."
    )


def _sample_inputs(specs: list[TensorSpec], device) -> list[torch.Tensor]:
    # Batch 2 (a size-1 axis would be specialised to a constant by torch.export);
    # other dynamic axes 3, so an accidental equality with the batch axis cannot sneak in.
    tensors = []
    for spec in specs:
        shape = tuple((2 if axis == 0 else 3) if s is None else s for axis, s in enumerate(spec.shape))
        tensors.append(torch.zeros(shape, dtype=config.torch_dtype(spec.dtype), device=device))
    return tensors


def _model_device(model) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------- outputs
def _output_names(model, count: int, dict_keys: list) -> list[str]:
    if all(k is not None for k in dict_keys):
        return [str(k) for k in dict_keys]
    names = getattr(model, "output_names", None)
    flat = getattr(model, "_flat_outputs", None)
    if not names and flat:
        names = [s.node.layer.name for s in flat]
    layers = getattr(model, "_layers", None)
    if not names and layers is not None and len(layers) and count == 1:  # Sequential
        names = [layers[-1].name]
    if not names or len(names) != count:
        names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    return list(names)


def _declared_output_shapes(model, count: int):
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, TypeError):
        return None
    if _is_shape(shape):
        return [tuple(shape)] if count == 1 else None
    flat: list = []

    def walk(value):
        if _is_shape(value):
            flat.append(tuple(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        else:
            for v in value:
                walk(v)

    walk(shape)
    return flat if len(flat) == count else None


@contextlib.contextmanager
def inference_mode(model):
    """Put ``model`` in eval mode for the block and restore each module's mode after it.

    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dropout
    >>> model = Sequential([Input((2,)), Dropout(0.5)])
    >>> with inference_mode(model):
    ...     model.training
    False
    >>> model.training
    True
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


def model_signature(model, input_signature=None) -> ModelSignature:
    """The flat inputs and outputs of a lamina model, with the structures it takes and returns.

    Inputs come from the model (a Sequential's ``Input``, a functional model's inputs,
    or the shape a subclassed model was built with) unless ``input_signature`` is given.
    Outputs are found by one inference call on zeros. Names: ``Input`` names (or dict
    keys); output layer names (or dict keys).

    Args:
        model: a built lamina model.
        input_signature: optional shape ``(None, ...)``, ``TensorSpec``, ``lamina.Input``,
            example array, or a list / dict of them (one per input).

    Example:
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((8,), name="features"), Dense(3, name="scores")])
    >>> signature = model_signature(model)
    >>> signature.inputs, signature.outputs
    ([TensorSpec(name='features', shape=(None, 8), dtype='float32')], [TensorSpec(name='scores', shape=(None, 3), dtype='float32')])
    """
    inputs, input_structure = _model_inputs(model, input_signature)
    with inference_mode(model), torch.inference_mode():
        sample = _sample_inputs(inputs, _model_device(model))
        result = model(_pack(input_structure, sample), training=False)
    counter, keys = [0], []
    output_structure = _template(result, counter, keys)
    flat: list = []
    _flatten(result, flat)
    if not all(isinstance(t, torch.Tensor) for t in flat):
        raise TypeError(
            f"Model {model.name!r} returned {[type(t).__name__ for t in flat]}; exporting and serving "
            f"need a model whose outputs are tensors (or lists / dicts of tensors)."
        )
    names = _unique(_output_names(model, len(flat), keys))
    shapes = _declared_output_shapes(model, len(flat))
    if shapes is None or any(len(s) != t.ndim for s, t in zip(shapes, flat)):
        shapes = [(None, *t.shape[1:]) if t.ndim else () for t in flat]
    outputs = [TensorSpec(n, tuple(s), _dtype_name(t.dtype)) for n, s, t in zip(names, shapes, flat)]
    return ModelSignature(inputs, outputs, input_structure, output_structure)


# ---------------------------------------------------------------------------------- tracing
class InferenceModule(torch.nn.Module):
    """``model`` in inference mode (``training=False``), as a module to trace.

    With ``flat=True`` (ONNX, which knows only flat lists) ``forward(*inputs)`` takes one
    tensor per ``signature.inputs`` entry and returns a tuple with one per
    ``signature.outputs`` entry. With ``flat=False`` (``.pt2``, as Keras's torch export)
    ``forward(inputs)`` takes and returns the model's own structures.

    Args:
        model: the lamina model.
        signature: its ``ModelSignature``.
        flat: flat tuples in and out (default True).

    Example:
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((4,)), Dense(2)])
    >>> wrapper = InferenceModule(model, model_signature(model))
    >>> [tuple(t.shape) for t in wrapper(torch.zeros(3, 4))]
    [(3, 2)]
    >>> InferenceModule(model, model_signature(model), flat=False)(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(self, model, signature: ModelSignature, flat: bool = True):
        super().__init__()
        self.model = model
        self.signature = signature
        self.flat = flat

    def forward(self, *inputs):
        if not self.flat:
            return self.model(inputs[0], training=False)
        outputs = self.model(self.signature.pack_inputs(list(inputs)), training=False)
        return tuple(self.signature.flatten_outputs(outputs))


def _dynamic_shapes(specs: list[TensorSpec]) -> list:
    """One ``{axis: Dim}`` per input; every input shares the batch Dim, the other ``None`` axes get their own."""
    batch = torch.export.Dim("batch", min=1)
    shapes = []
    for spec in specs:
        axes = {}
        for axis, size in enumerate(spec.shape):
            if size is None:
                name = re.sub(r"\W", "_", f"{spec.name}_axis{axis}")
                axes[axis] = batch if axis == 0 else torch.export.Dim(name, min=1)
        shapes.append(axes or None)
    return shapes


@contextlib.contextmanager
def _quiet_export():
    """Silence torch's own deprecation chatter and logging while exporting (not lamina's errors)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export",
                                                     "torch.fx.experimental.symbolic_shapes")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*not properly registered as a submodule.*")
        # torch's tracers warn about their own internals (axis naming, while_loop tracing of
        # recurrent layers); warnings attributed to lamina or user code still come through.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _prepare(model, input_signature=None, flat: bool = True):
    """The wrapper, sample arguments, dynamic shapes and signature used by the exporters.

    ``forward(*args)`` receives everything as its one ``*args`` parameter, so the dynamic
    shapes come wrapped in a 1-tuple, as ``torch.export`` expects.
    """
    signature = model_signature(model, input_signature)
    wrapper = InferenceModule(model, signature, flat)
    sample = _sample_inputs(signature.inputs, _model_device(model))
    dims = _dynamic_shapes(signature.inputs)
    if flat:
        return wrapper, tuple(sample), (tuple(dims),), signature
    return wrapper, (signature.pack_inputs(sample),), ((signature.pack_inputs(dims),),), signature


def _failed(model, format_name: str, error: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not export model {model.name!r} to {format_name}: {type(error).__name__}: {error}\n"
        f"Common causes: Python control flow that depends on tensor values, or an axis declared "
        f"dynamic (None) that the model treats as fixed; in that case pass input_signature with "
        f"that axis set to a number."
    )


def export_torch(model, filepath, input_signature=None, verbose=None, **kwargs) -> str:
    """Export ``model`` for inference as a ``torch.export`` program (``.pt2``), batch axis dynamic.

    The file holds an ATen-level graph and the weights; load it with
    ``torch.export.load(path)`` and call ``.module()`` as you would call the model in
    inference mode: same input structure (a tensor, a list or a dict of tensors), same
    output structure, as Keras's ``export(format="torch")``. lamina is not needed to run
    it. The model signature is stored in the archive as ``lamina_signature.json``.

    Args:
        model: a built lamina model.
        filepath: target path, ending in ``.pt2``.
        input_signature: optional input description (see ``model_signature``).
        verbose: print where the file was written (default True, as Keras).
        **kwargs: passed to ``torch.export.export`` (e.g. ``strict``,
            ``prefer_deferred_runtime_asserts_over_guards``).

    Returns:
        The path written.

    Example:
    >>> import os, tempfile
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((4,)), Dense(2)])
    >>> path = export_torch(model, os.path.join(tempfile.mkdtemp(), "m.pt2"), verbose=False)
    >>> program = torch.export.load(path)
    >>> program.module()(torch.ones(5, 4)).shape
    torch.Size([5, 2])
    """
    path = os.fspath(filepath)
    if not path.endswith(".pt2"):
        raise ValueError(f"A torch.export file must end in '.pt2'; received filepath={path!r}.")
    kwargs.setdefault("strict", False)
    # A .pt2 program keeps the device of its weights: a model trained on a GPU is exported
    # from the CPU (and moved back), so that the file loads and serves anywhere.
    device = _model_device(model)
    if device.type != "cpu":
        model.to("cpu")
    try:
        wrapper, sample, dynamic_shapes, signature = _prepare(model, input_signature, flat=False)
        try:
            with inference_mode(wrapper), _quiet_export():
                program = torch.export.export(wrapper, sample, dynamic_shapes=dynamic_shapes, **kwargs)
        except Exception as error:  # torch raises many unrelated types; one clear message instead
            raise _failed(model, "torch.export", error) from error
        # Saved before the model moves back: the program shares the model's parameter objects.
        torch.export.save(program, path, extra_files={SIGNATURE_FILE: json.dumps(signature.to_json())})
    finally:
        if device.type != "cpu":
            model.to(device)
    if verbose is None or verbose:
        print(f"Saved artifact at '{path}'.")
    return path


def load_torch_signature(filepath) -> ModelSignature | None:
    """The ``ModelSignature`` stored in a ``.pt2`` written by ``export_torch`` (None if absent).

    >>> import os, tempfile
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt2")
    >>> _ = export_torch(Sequential([Input((4,), name="x"), Dense(2)]), path, verbose=False)
    >>> load_torch_signature(path).inputs
    [TensorSpec(name='x', shape=(None, 4), dtype='float32')]
    """
    import zipfile

    with zipfile.ZipFile(os.fspath(filepath)) as archive:
        for member in archive.namelist():
            if member.endswith("/extra/" + SIGNATURE_FILE) or member == "extra/" + SIGNATURE_FILE:
                return ModelSignature.from_json(json.loads(archive.read(member)))
    return None
