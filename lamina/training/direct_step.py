"""Calling a compiled whole train step without Dynamo's per-call work.

``jit_compile=True`` traces a train step with ``torch.compile``. Each call of the compiled
function then runs Dynamo's frame: the cache lookup and guards, the bytecode that unpacks the
arguments, calls the compiled graph and rebuilds the results, and the replay of Python side
effects. On a CPU that costs ~70 us a step, a sixth of a small MLP's step. This module owns a
``torch.compile`` backend wrapper that keeps, for each graph it compiles, what is needed to call
the graph directly: how to read each graph input from the step's arguments (from Dynamo's own
record of where it read them), and, after a first call through Dynamo, which graph output is
which result. ``Trainer`` (training/trainer.py) then calls the graph directly for steps whose
arguments (the batch, sample weights) have the structure, dtypes, devices, shapes and strides of
that call; the graph's other inputs (weights, buffers, metric state) and torch's global state are
checked again once as each ``fit``, ``evaluate`` or ``predict`` begins. Anything else goes
through Dynamo, which checks its guards and may compile again.

A graph is only called directly when the Python side effects Dynamo would replay after it are
ones the trainer reproduces or that restore what was there: ``torch.func.functional_call``
putting the weights back, lamina's layer-call context, and the trainer's per-head losses. Any
other side effect, a graph input read from somewhere else than the step's arguments, or torch
internals that differ from those this was written against (torch 2.13) leave every call to Dynamo.
"""

from __future__ import annotations

import logging

import torch

__all__ = ["StepCapture", "DirectCalls", "argument_key", "new_generation"]

_LOGGER = logging.getLogger("lamina")
# Sources that read nothing themselves: the value is their base's (module wrappers).
_TRANSPARENT_SOURCES = frozenset({
    "NNModuleSource", "UnspecializedNNModuleSource", "UnspecializedBuiltinNNModuleSource", "FSDPNNModuleSource",
})
# Attributes a traced step may set whose replay the trainer reproduces or that end as they began.
_TRAINER_ATTRIBUTES = frozenset({"_head_losses"})
_CONTEXT_ATTRIBUTES = frozenset({"training", "shape_inference", "whole_step"})
_MAX_ENTRIES = 16  # argument signatures kept per step (batch sizes of different fit calls)
_GENERATION = [0]  # bumped as each fit/evaluate/predict begins (see new_generation)


class DirectStep:
    """One compiled graph, callable with the traced function's local variables.

    ``readers`` read each graph input from those locals. After ``bind``, ``rebuild`` makes
    the traced function's result from the graph's outputs, and ``signature`` and ``state``
    are the inputs' metadata and torch's global state the graph was checked with.
    """

    def __init__(self, compiled, readers):
        self.compiled = compiled
        self.readers = readers
        self.rebuild = None
        self.signature = None
        self.state = None
        self.generation = -1

    def fits(self, inputs: list) -> bool:
        return argument_key(*inputs) == self.signature and _global_state() == self.state

    def bind(self, frame: dict, outputs, result) -> bool:
        """Match the graph's ``outputs`` of a call through Dynamo with its ``result``.

        Every tensor in the result must be one of the graph's outputs (not a value Dynamo
        rebuilt from elsewhere); the call's inputs then give the signature to match.
        """
        where = {id(value): i for i, value in enumerate(outputs) if isinstance(value, torch.Tensor)}
        rebuild = _rebuilder(result, where)
        inputs = [read(frame) for read in self.readers]
        if rebuild is None or not all(value.device.type == "cpu" for value in inputs
                                      if isinstance(value, torch.Tensor)):
            return False  # the direct call is verified on the CPU only
        self.rebuild = rebuild
        self.signature = argument_key(*inputs)
        self.state = _global_state()
        self.generation = _GENERATION[0]
        return True


class StepCapture:
    """A ``torch.compile`` backend: ``backend``'s graphs, each wrapped to report its calls.

    After a call of the compiled function through Dynamo, ``take()`` returns the graph that
    ran (a ``DirectStep``, or None when it cannot be called directly) and its raw outputs.
    """

    def __init__(self, backend):
        self.backend = backend
        self.last = None

    def __call__(self, gm, example_inputs):
        readers = _readers(gm)  # before compiling, which may rewrite the graph's inputs
        compiled = self.backend(gm, example_inputs)
        step = None if readers is None else DirectStep(compiled, readers)
        capture = self

        def run(*args):
            outputs = compiled(*args)
            capture.last = (step, outputs)
            return outputs

        return run

    def take(self):
        last, self.last = self.last, None
        return last or (None, None)


class DirectCalls:
    """The directly callable graphs of one compiled step, by the signature of its arguments.

    Within one ``fit``/``evaluate``/``predict`` call (see ``new_generation``) a graph is
    checked once against all its inputs' metadata and torch's global state; later steps
    check only their arguments (``argument_key``), whose batches change from step to step.
    """

    def __init__(self):
        self.steps: dict = {}
        self.disabled = False

    def call(self, key, frame: dict):
        """The traced function's result for ``frame``, or None to call it through Dynamo."""
        step = self.steps.get(key)
        if step is None:
            return None
        try:
            inputs = [read(frame) for read in step.readers]
        except Exception as error:  # noqa: BLE001 - an input moved elsewhere: Dynamo finds it
            _LOGGER.debug("lamina: calling the compiled step through Dynamo (%s: %s)", type(error).__name__, error)
            del self.steps[key]
            return None
        if step.generation != _GENERATION[0]:
            if not step.fits(inputs):
                del self.steps[key]
                return None
            step.generation = _GENERATION[0]
        try:
            outputs = step.compiled(*inputs)  # called as Dynamo's bytecode calls it
        except Exception as error:  # noqa: BLE001 - e.g. inductor's input checks: leave it to Dynamo
            _LOGGER.info("lamina: calling the compiled step directly failed (%s: %s); calling it "
                         "through Dynamo from now on", type(error).__name__, error)
            self.steps.clear()
            self.disabled = True
            return None
        return step.rebuild(outputs)

    def record(self, key, frame: dict, capture: StepCapture, result) -> None:
        """After a call through Dynamo: make the graph it ran callable directly for ``key``."""
        step, outputs = capture.take()
        if step is None or self.disabled or key in self.steps or len(self.steps) >= _MAX_ENTRIES:
            return
        if step.rebuild is not None:  # bound at another signature: the same graph, new inputs
            step = DirectStep(step.compiled, step.readers)
        try:
            bound = step.bind(frame, outputs, result)
        except Exception as error:  # noqa: BLE001 - e.g. an older torch's global-state functions
            _LOGGER.debug("lamina: the compiled step is called through Dynamo (%s: %s)", type(error).__name__, error)
            bound = False
        if bound:
            self.steps[key] = step


def new_generation() -> None:
    """Called as ``fit``, ``evaluate`` and ``predict`` begin: check every graph's inputs once more."""
    _GENERATION[0] += 1


def argument_key(*values):
    """What identifies a call's arguments: their structure and their tensors' metadata."""
    return tuple(_describe(value) for value in values)


def _describe(value):
    if isinstance(value, torch.Tensor):
        return (value.dtype, value.device, value.shape, value.stride(), value.requires_grad)
    if isinstance(value, (list, tuple)):
        return (type(value),) + tuple(_describe(v) for v in value)
    if isinstance(value, dict):
        return (dict,) + tuple((k, _describe(v)) for k, v in value.items())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return (type(value), id(value))


def _global_state() -> tuple:
    return (torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda"),
            torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype())


def _rebuilder(value, where: dict):
    """A function of the graph outputs that rebuilds ``value`` from them, or None if it cannot."""
    if isinstance(value, torch.Tensor):
        if id(value) not in where:
            return None
        index = where[id(value)]
        return lambda outputs: outputs[index]
    if type(value) in (list, tuple):
        kind = type(value)
        if all(isinstance(v, torch.Tensor) and id(v) in where for v in value):
            indices = [where[id(v)] for v in value]
            if kind is list:
                return lambda outputs: [outputs[i] for i in indices]
            return lambda outputs: tuple([outputs[i] for i in indices])
        parts = [_rebuilder(v, where) for v in value]
        if any(part is None for part in parts):
            return None
        return lambda outputs: kind([part(outputs) for part in parts])
    if type(value) is dict:
        parts = {k: _rebuilder(v, where) for k, v in value.items()}
        if any(part is None for part in parts.values()):
            return None
        return lambda outputs: {k: part(outputs) for k, part in parts.items()}
    return None


def _readers(gm):
    """How to read each input of the graph Dynamo traced, or None if it cannot be called directly."""
    try:
        readers = [_reader(node.meta["grapharg"].source)
                   for node in gm.graph.nodes if node.op == "placeholder"]
        if any(read is None for read in readers) or not _replayed_effects_are_known():
            return None
    except Exception as error:  # noqa: BLE001 - torch internals of another version: use Dynamo
        _LOGGER.debug("lamina: the compiled step is called through Dynamo (%s: %s)",
                      type(error).__name__, error)
        return None
    return readers


def _reader(source):
    """A function of the traced function's locals that reads what ``source`` names, or None."""
    path = _path(source)
    if path is None:
        return None
    name, steps = path
    if not steps:
        return lambda frame: frame[name]
    if len(steps) == 1 and steps[0][0] == "item":
        index = steps[0][1]
        return lambda frame: frame[name][index]

    def read(frame):
        value = frame[name]
        for how, what in steps:
            if how == "attr":
                value = getattr(value, what)
            elif how == "item":
                value = value[what]
            elif how == "size":
                value = value.size(what)
            elif how == "stride":
                value = value.stride(what)
            else:
                value = value.storage_offset()
        return value

    return read


def _path(source):
    """``source`` as (local variable, [(how, what), ...]) read from left to right, or None."""
    kind = type(source).__name__
    if kind == "LocalSource":
        return source.local_name, []
    base = getattr(source, "base", None)
    path = None if base is None else _path(base)
    if path is None:
        return None
    name, steps = path
    if isinstance(getattr(source, "member", None), str):  # AttrSource and its kinds (module._buffers)
        return name, steps + [("attr", source.member)]
    if kind in ("GetItemSource", "DictGetItemSource"):
        index = source.index
        if getattr(source, "index_is_slice", False) or not isinstance(index, (int, str)):
            return None
        return name, steps + [("item", index)]
    if kind == "TensorPropertySource":
        prop = {"SIZE": "size", "STRIDE": "stride", "STORAGE_OFFSET": "offset"}.get(source.prop.name)
        return None if prop is None else (name, steps + [(prop, source.idx)])
    if kind in _TRANSPARENT_SOURCES:
        return path
    return None


def _replayed_effects_are_known() -> bool:
    """True when the Python side effects Dynamo replays after this graph are the expected ones.

    Called while Dynamo compiles the graph (inside the backend), when its record of the
    traced function's side effects is complete.
    """
    from torch._dynamo.symbolic_convert import InstructionTranslator

    effects = InstructionTranslator.current_tx().output.side_effects
    if effects.tensor_hooks or effects.save_for_backward:
        return False
    for var in effects._get_modified_vars():
        mutation = type(getattr(var, "mutation_type", None)).__name__
        if mutation == "AttributeMutationNew":
            continue  # an object made during the step, invisible outside it
        source = getattr(var, "source", None)
        name = source.name if source is not None else ""
        name = name() if callable(name) else name
        attributes = set(effects.store_attr_mutations.get(var, {}))
        if mutation == "ValueMutationExisting" and name.endswith(("._parameters", "._buffers")):
            continue  # functional_call swaps the weights in and puts them back
        if mutation == "AttributeMutationExisting":
            if name == "L['self']" and attributes <= _TRAINER_ATTRIBUTES:
                continue  # the trainer sets these itself after a direct call
            if name.endswith("._CONTEXT") and attributes <= _CONTEXT_ATTRIBUTES:
                continue  # lamina's layer-call context, restored as each call returns
        return False
    return True
