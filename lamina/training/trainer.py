"""The one training loop: compile state, the train/test/predict steps, and fit/evaluate/predict.

``Model.compile`` creates a ``Trainer``; ``Model.fit`` / ``evaluate`` / ``predict``
are thin wrappers around it. Batching lives in ``training/data.py``, callbacks in
``training/callbacks.py``. The per-step path does no host synchronisation: losses
and metrics accumulate on the device and are read when a callback asks for them.
``jit_compile=True`` compiles the train step's forward pass, loss and gradients as one
``torch.compile`` graph (``torch.func.grad`` of the loss as a function of the weights); a
mixed precision policy runs them under ``torch.autocast``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import types
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lamina import config, losses as losses_module, metrics as metrics_module, mixed_precision, optimizers, registry
from lamina.layers import base as layer_base, rnn_ops
from lamina.training import data as data_module, direct_step
from lamina.training.callbacks import Callback, CallbackList
from lamina.training.host_memory import keep_freed_host_memory

__all__ = ["Trainer", "LazyLogs", "JIT_MODES"]

_LOGGER = logging.getLogger("lamina")
# torch.compile backend for jit_compile=True; tests set "eager" or "aot_eager" to stay fast.
_BACKEND_ENV = "LAMINA_COMPILE_BACKEND"
_HALF = (torch.float16, torch.bfloat16)
# torch.compile modes that compile(jit_compile=...) also accepts (a lamina extension).
JIT_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class LazyLogs(Mapping):
    """A read-only mapping ``name -> metric.result()`` as a python float, read only on access.

    Batch-level callbacks receive it: values are floats as in Keras, but a step whose
    logs nobody reads costs no host synchronisation.

    >>> from lamina.metrics import Mean
    >>> mean = Mean()
    >>> mean.update_state([1.0, 2.0])
    >>> logs = LazyLogs([("loss", mean)])
    >>> logs["loss"], dict(logs)
    (1.5, {'loss': 1.5})
    """

    def __init__(self, named_metrics: list[tuple[str, Any]]):
        self._metrics = dict(named_metrics)

    def __getitem__(self, key):
        return _to_float(self._metrics[key].result())

    def __iter__(self):
        return iter(sorted(self._metrics))

    def __len__(self) -> int:
        return len(self._metrics)

    def floats(self) -> dict[str, float]:
        """The current values as python floats, keys sorted as in Keras's History."""
        return {k: _to_float(self[k]) for k in self}


def _to_float(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().cpu()) if value.numel() == 1 else value.detach().cpu().numpy()
    return float(value) if np.ndim(value) == 0 else np.asarray(value)


def _resolve_loss(identifier):
    if identifier is None:
        return None
    loss = registry.get("loss", identifier)
    if isinstance(loss, losses_module.Loss):
        return loss
    if callable(loss):
        if isinstance(loss, type):
            return loss()
        name = getattr(loss, "__name__", "loss")
        return losses_module.LossFunctionWrapper(loss, name=name)
    raise TypeError(f"Could not interpret loss {identifier!r}; expected a string, a Loss or a function.")


class _Head:
    """One model output: its name, loss, loss weight, metrics and loss tracker."""

    def __init__(self, name, loss_identifier, weight, metric_ids, weighted_ids):
        self.name = name
        self.loss_identifier = loss_identifier
        self.loss = _resolve_loss(loss_identifier)
        self.weight = None if weight is None else float(weight)
        self.metric_ids, self.weighted_ids = list(metric_ids), list(weighted_ids)
        self.metrics: list = []
        self.weighted_metrics: list = []
        self.tracker = metrics_module.Mean(name=f"{name}_loss" if name else "loss")

    def resolve_metrics(self, y, y_pred) -> None:
        self.metrics = [metrics_module.resolve(m, y, y_pred, self.loss_identifier) for m in self.metric_ids]
        self.weighted_metrics = [metrics_module.resolve(m, y, y_pred, self.loss_identifier)
                                 for m in self.weighted_ids]


def _per_output(value, names: list[str], what: str):
    """Spread a compile argument over the outputs: one value for all, a list by position, a dict by name."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"compile({what}=...) names outputs {unknown}, but the model's outputs are {names}. "
                f"Use the output names (the output layers' names or the keys of a dict of outputs)."
            )
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)) and what in ("loss", "loss_weights"):
        if len(value) != len(names):
            raise ValueError(
                f"compile({what}=...) has {len(value)} entries, but the model has {len(names)} "
                f"outputs {names}. Pass one entry per output, or a dict keyed by output name."
            )
        return list(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) or v is None for v in value):
        if len(value) != len(names):
            raise ValueError(
                f"compile({what}=...) has {len(value)} lists, but the model has {len(names)} outputs {names}."
            )
        return [list(v or []) for v in value]
    return [value] * len(names)


class Trainer:
    """Compile state plus the loops. Created by ``Model.compile``; one per model.

    Args:
        model: the ``lamina.Model`` being trained.
        optimizer: an optimizer name or instance.
        loss: a loss (name, function or ``Loss``; None: only ``add_loss`` losses), or
            for several outputs a list (by position) or dict (by output name) of them.
        metrics: metric identifiers, applied without sample weights; for several outputs
            a list of lists or a dict keyed by output name.
        weighted_metrics: metric identifiers that receive sample weights.
        loss_weights: a float, or a list / dict per output, scaling the losses.
        jit_compile: compile the steps with ``torch.compile``, a train step whole (forward
            pass, loss and gradients) where it can be one graph (backend from the
            ``LAMINA_COMPILE_BACKEND`` environment variable, default ``"inductor"``).
            Default False.
        jit_mode: the ``torch.compile`` mode (one of ``JIT_MODES``); None for its default.
        auto_scale_loss: under the ``"mixed_float16"`` policy, wrap the optimizer in
            ``LossScaleOptimizer``. Default True.
    """

    def __init__(self, model, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None,
                 loss_weights=None, jit_compile=False, auto_scale_loss=True, jit_mode=None):
        self.model = model
        self.optimizer = optimizers.get(optimizer)
        policy = mixed_precision.global_policy()
        self.dtype_policy = policy
        # Compute dtype of torch.autocast for the steps; None runs them in the weights' dtype.
        self._autocast_dtype = mixed_precision._autocast_dtype(policy)
        if (auto_scale_loss and policy.name == "mixed_float16" and self.optimizer is not None
                and not isinstance(self.optimizer, mixed_precision.LossScaleOptimizer)):
            self.optimizer = mixed_precision.LossScaleOptimizer(self.optimizer, name="loss_scale_optimizer")
        self.jit_compile = bool(jit_compile)
        self.jit_mode = jit_mode if jit_mode in JIT_MODES and jit_mode != "default" else None
        self.compile_time = 0.0  # seconds spent compiling (jit_compile=True), summed over steps
        self._jit: dict[str, _Jit] = {}
        self.loss_identifier = loss
        self.loss_weights = loss_weights
        self.metric_identifiers = metrics
        self.weighted_metric_identifiers = weighted_metrics
        self.loss_tracker = metrics_module.Mean(name="loss")
        self.heads: list[_Head] | None = None
        self.entries: list[tuple[str, Any]] = [("loss", self.loss_tracker)]
        self.logs: LazyLogs | None = None
        self._built = False
        self._regularized: list = []
        self._constrained = False
        self._class_weight_table: torch.Tensor | None = None
        self._train_calls: _LayerChain | None = None  # set for the length of a fit (see fit)
        if not isinstance(loss, (list, tuple, dict)):
            _resolve_loss(loss)  # unknown names fail at compile time, as in Keras

    # ------------------------------------------------------------------ building
    def _build_heads(self, y_pred) -> None:
        if self.heads is not None:
            return
        if isinstance(y_pred, torch.Tensor):
            weight = self.loss_weights
            if isinstance(weight, (list, tuple, dict)):
                values = list(weight.values()) if isinstance(weight, dict) else list(weight)
                if len(values) != 1:
                    raise ValueError(
                        f"loss_weights has {len(values)} entries, but this model has one output. "
                        f"Pass a single float or a list of one."
                    )
                weight = values[0]
            loss = self.loss_identifier
            if isinstance(loss, (list, tuple)) and len(loss) == 1:
                loss = loss[0]
            elif isinstance(loss, dict) and len(loss) == 1:
                loss = next(iter(loss.values()))
            self.heads = [_Head(None, loss, weight, _as_list(self.metric_identifiers),
                                _as_list(self.weighted_metric_identifiers))]
            return
        if isinstance(y_pred, dict):
            names = list(y_pred)
        else:
            names = list(getattr(self.model, "output_names", None) or [])
            if len(names) != len(y_pred):
                names = [f"output_{i}" for i in range(len(y_pred))]
        losses = _per_output(self.loss_identifier, names, "loss")
        weights = _per_output(self.loss_weights, names, "loss_weights")
        metrics = _per_output(self.metric_identifiers, names, "metrics")
        weighted = _per_output(self.weighted_metric_identifiers, names, "weighted_metrics")
        self.heads = [_Head(n, l, w, _as_list(m), _as_list(wm))
                      for n, l, w, m, wm in zip(names, losses, weights, metrics, weighted)]

    def _build_metrics(self, ys, preds) -> None:
        """Resolve metrics from the first batch's shapes (``"accuracy"`` depends on them).

        Called once the first batch's loss has been computed, so a batch the loss
        rejects (e.g. integer labels with categorical_crossentropy) does not leave
        metrics resolved for the wrong targets.
        """
        if self.logs is not None:
            return
        entries = [("loss", self.loss_tracker)]
        multi = len(self.heads) > 1
        if multi:
            entries += [(h.tracker.name, h.tracker) for h in self.heads if h.loss is not None]
        # Keras orders evaluate()'s list by the metrics' own (possibly repeated) names,
        # then puts the remaining log keys in sorted order; keep those names for that.
        self.order_names = [name for name, _ in entries]
        for head, y, y_pred in zip(self.heads, ys, preds):
            if y is None:
                continue
            head.resolve_metrics(y, y_pred)
            names = _log_names([m.name for m in head.metrics], [m.name for m in head.weighted_metrics])
            prefix = f"{head.name}_" if multi else ""
            objects = head.metrics + head.weighted_metrics
            entries += [(prefix + n, m) for n, m in zip(names, objects)]
            self.order_names += [prefix + m.name for m in objects]
        self.entries = entries
        self.logs = LazyLogs(entries)

    def _build_optimizer(self) -> None:
        """Give the optimizer the trainable weights; cache regularized and constrained weights."""
        if self._built:
            return
        self._built = True
        model = self.model
        self.optimizer.build(model.trainable_weights)
        self._regularized = []
        for layer in model._flatten_layers():
            for attr, reg in layer._weight_regularizers.items():
                if layer._trainable:
                    self._regularized.append((reg, layer, attr, layer._weight_layouts.get(attr)))
        self._constrained = any(l._weight_constraints for l in model._flatten_layers())

    @property
    def metrics(self) -> list | None:
        """The compiled metric objects, in log order (None until the first batch)."""
        return None if self.logs is None else [m for _, m in self.entries[1:]]

    def all_metrics(self) -> list:
        """The loss tracker followed by the per-output loss trackers and compiled metrics."""
        return [m for _, m in self.entries]

    def reset_metrics(self) -> None:
        for metric in self.all_metrics():
            metric.reset_state()

    # ------------------------------------------------------------------ steps
    def _split(self, y, y_pred) -> tuple[list, list]:
        """Targets and predictions as parallel lists, one entry per output head."""
        if len(self.heads) == 1 and isinstance(y_pred, torch.Tensor):
            return [y], [y_pred]
        names = [h.name for h in self.heads]
        preds = [y_pred[n] for n in names] if isinstance(y_pred, dict) else list(y_pred)
        if y is None:
            return [None] * len(names), preds
        if isinstance(y, dict):
            missing = [n for n in names if n not in y and self.heads[names.index(n)].loss is not None]
            if missing:
                raise ValueError(
                    f"The targets dict has keys {sorted(y)}, but outputs {missing} have a loss and no "
                    f"target. Give targets keyed by the output names {names}."
                )
            return [y.get(n) for n in names], preds
        if isinstance(y, (list, tuple)) and len(y) == len(names):
            return list(y), preds
        raise ValueError(
            f"The model has {len(names)} outputs {names}, so y must be a list of {len(names)} arrays "
            f"or a dict keyed by output name; received "
            f"{type(y).__name__}{'' if not isinstance(y, (list, tuple)) else f' of length {len(y)}'}."
        )

    def compute_loss(self, x, y, y_pred, sample_weight=None):
        """The compiled losses (times ``loss_weights``) plus regularization and ``add_loss`` losses."""
        self._build_heads(y_pred)
        total = None
        ys, preds = self._split(y, y_pred)
        self._head_losses = []
        for head, target, pred in zip(self.heads, ys, preds):
            if head.loss is None:
                continue
            if target is None:
                raise ValueError(
                    "The model was compiled with a loss, but no targets (y) were given. Pass y to "
                    "fit/evaluate, or yield (x, y) from your dataset."
                )
            value = head.loss(target, pred, sample_weight)
            self._head_losses.append((head, value))
            if head.weight is not None:
                value = value * head.weight
            total = value if total is None else total + value
        for reg, layer, attr, perm in self._regularized:
            # Read the weight now: under jit_compile's functional_call it is the traced value.
            tensor = layer._tensor(attr)
            value = reg(tensor if perm is None else tensor.permute(layer_base._inverse(perm)))
            total = value if total is None else total + value
        for owner in layer_base._LOSS_OWNERS:
            for value in owner._own_losses:
                total = value if total is None else total + value
        if total is None:
            raise ValueError(
                "No loss to compute. Provide a `loss` argument in `compile()`, or call "
                "`self.add_loss()` inside the model's layers."
            )
        return total

    def _sample_weight(self, y, sample_weight):
        table = self._class_weight_table
        if table is None or y is None:
            return sample_weight
        if not isinstance(y, torch.Tensor):
            raise ValueError("class_weight is only supported for models with a single output, as in Keras.")
        labels = y.argmax(-1) if (y.ndim > 1 and y.shape[-1] > 1) else y.reshape(y.shape[0], -1)[:, 0]
        labels = labels.round().long() if labels.is_floating_point() else labels.long()
        # Classes missing from class_weight weigh 1.0, as in Keras; masking instead of a
        # python check keeps the step free of host synchronisation.
        known = (labels >= 0) & (labels < table.shape[0])
        weights = torch.where(known, table[labels.clamp(0, table.shape[0] - 1)], 1.0)
        return weights if sample_weight is None else sample_weight * weights

    def update_metrics(self, y, y_pred, sample_weight, loss, batch_size) -> None:
        self.loss_tracker.update_state(loss.detach(), sample_weight=batch_size)
        heads = self.heads
        if len(heads) > 1:
            for head, value in self._head_losses:
                head.tracker.update_state(value.detach(), sample_weight=batch_size)
        if y is None:
            return
        if len(heads) == 1 and isinstance(y_pred, torch.Tensor):
            head = heads[0]
            for metric in head.metrics:
                metric.update_state(y, y_pred)
            for metric in head.weighted_metrics:
                metric.update_state(y, y_pred, sample_weight)
            return
        ys, preds = self._split(y, y_pred)
        for head, target, pred in zip(heads, ys, preds):
            if target is None:
                continue
            for metric in head.metrics:
                metric.update_state(target, pred)
            for metric in head.weighted_metrics:
                metric.update_state(target, pred, sample_weight)

    def _forward_loss(self, x, y, sample_weight, training: bool):
        """The model's outputs and the loss.

        What ``jit_compile`` compiles for test and predict steps, and for train steps that
        cannot be traced as one graph.
        """
        if self._autocast_dtype is None:
            chain = self._train_calls if training else None
            y_pred = self.model(x, training=training) if chain is None else chain(x)
        else:
            with torch.autocast(_device_type(x), dtype=self._autocast_dtype):
                y_pred = self.model(x, training=training)
            # Outputs in float32, as Keras recommends for the final softmax under mixed
            # precision: the loss and metrics never see half-precision probabilities.
            y_pred = _map_structure(_to_float32, y_pred)
        if not self._built:
            self._build_optimizer()
        return y_pred, self.compute_loss(x, y, y_pred, sample_weight)

    def _backward(self, loss) -> None:
        optimizer = self.optimizer
        optimizer.zero_grad()
        # Keras multiplies the loss by the optimizer's loss scale (loss_scale_factor, or
        # LossScaleOptimizer's dynamic scale); the optimizer divides the gradients by it.
        optimizer.scale_loss(loss).backward()

    def _forward_backward(self, x, y, sample_weight):
        y_pred, loss = self._forward_loss(x, y, sample_weight, True)
        if self.logs is None:
            self._build_metrics(*self._split(y, y_pred))
        self._backward(loss)
        return y_pred, loss

    def train_step(self, data):
        x, y, sample_weight = data
        if self._class_weight_table is not None:
            sample_weight = self._sample_weight(y, sample_weight)
        jit = self._jit_for("train")
        measured = False
        if jit is None:
            y_pred, loss = self._forward_backward(x, y, sample_weight)
        else:
            y_pred, loss, measured = jit.run_train(self, x, y, sample_weight)
        self.optimizer.step()
        if self._constrained:
            self.model._apply_constraints()
        if not measured:  # a whole compiled step updates the metrics in its graph
            self.update_metrics(y, y_pred, sample_weight, loss, _num_samples(x))
        return self.logs

    def test_step(self, data):
        x, y, sample_weight = data
        # class_weight is for training only: as in Keras, validation losses are unweighted.
        jit = self._jit_for("test")
        if jit is None:
            y_pred, loss = self._forward_loss(x, y, sample_weight, False)
        else:
            y_pred, loss = jit.run(x, y, sample_weight)
        if self.logs is None:
            self._build_metrics(*self._split(y, y_pred))
        self.update_metrics(y, y_pred, sample_weight, loss, _num_samples(x))
        return self.logs

    def predict_step(self, data):
        """The model's outputs for ``data[0]``, under the compile-time policy and jit setting."""
        x = data[0]
        jit = self._jit_for("predict")
        if jit is not None:
            return jit.run(x)
        return self._predict_forward(x)

    def _predict_forward(self, x):
        if self._autocast_dtype is None:
            return self.model(x, training=False)
        with torch.autocast(_device_type(x), dtype=self._autocast_dtype):
            y_pred = self.model(x, training=False)
        return _map_structure(_to_float32, y_pred)

    # ------------------------------------------------------------------ jit_compile
    def _jit_for(self, kind: str):
        """The compiled step of ``kind``, or None to run eagerly.

        The first step runs eagerly: it builds the model, the loss heads, the metrics
        and the optimizer, none of which should be traced.
        """
        if not self.jit_compile:
            return None
        if not self.model.built if kind == "predict" else (self.logs is None or not self._built):
            return None
        jit = self._jit.get(kind)
        if jit is None:
            fn = {"train": self._train_forward, "test": self._test_forward, "predict": self._predict_forward}[kind]
            jit = self._jit[kind] = _Jit(fn, self, kind)
        return None if jit.failed else jit

    # The functions jit_compile=True traces.
    def _train_grads(self, values, x, y, sample_weight, measure):
        """Outputs, loss and the gradients of ``values`` (the trained weights) in one function.

        What ``jit_compile=True`` compiles for a train step: ``torch.func.grad`` of the
        loss, with the weights swapped in by ``functional_call``, so the forward and
        backward passes are one graph and no autograd engine runs between them. With
        ``measure``, the loss tracker and metrics are updated in the same graph.
        """
        module, names = self._loss_module, self._grad_names

        def loss_of(values):
            y_pred, loss = torch.func.functional_call(module, dict(zip(names, values)),
                                                      (x, y, sample_weight))
            heads = [value for _, value in self._head_losses]
            return self.optimizer.scale_loss(loss), (y_pred, loss, heads)

        # Layers see that func.grad differentiates them (recurrent.py: custom operators cannot be).
        outer = getattr(layer_base._CONTEXT, "whole_step", False)
        layer_base._CONTEXT.whole_step = True
        try:
            grads, (y_pred, loss, heads) = torch.func.grad(loss_of, has_aux=True)(values)
        finally:
            layer_base._CONTEXT.whole_step = outer
        # In each weight's memory layout, as autograd's gradient accumulation gives them (a
        # conv kernel's comes back channels_last): fused optimizer kernels need it on CUDA.
        grads = [grad if grad.stride() == value.stride() else
                 torch.empty_like(value, memory_format=torch.preserve_format).copy_(grad)
                 for grad, value in zip(grads, values)]
        self._keep_head_losses(heads)
        if measure:
            self.update_metrics(y, y_pred, sample_weight, loss, _num_samples(x))
        return grads, y_pred, loss, heads

    def _keep_head_losses(self, heads) -> None:
        """The per-head losses kept for the logs: the whole-step graph's, not func.grad's wrappers."""
        self._head_losses = [(head, value) for (head, _), value in zip(self._head_losses, heads)]

    def _whole_step_weights(self):
        """The weights the whole-step graph differentiates: those the eager first step gave a gradient.

        A weight that gets no gradient (not used by the loss) stays out, so the optimizer
        skips it as it does in eager mode instead of seeing a zero gradient.
        """
        params = [p for p in self.model.trainable_weights if p.requires_grad and p.grad is not None]
        self._loss_module = _TrainLoss(self)
        names = {id(p): name for name, p in self._loss_module.named_parameters()}
        if not params or any(id(p) not in names for p in params):
            return None
        self._grad_names = [names[id(p)] for p in params]
        return params

    def _train_forward(self, x, y, sample_weight):
        return self._forward_loss(x, y, sample_weight, True)

    def _test_forward(self, x, y, sample_weight):
        return self._forward_loss(x, y, sample_weight, False)


class _TrainLoss(torch.nn.Module):
    """A train step's forward pass and loss as a module of the model's weights (for functional_call)."""

    def __init__(self, trainer: Trainer):
        super().__init__()
        self.model = trainer.model
        self.trainer = trainer

    def forward(self, x, y, sample_weight):
        return self.trainer._forward_loss(x, y, sample_weight, True)


def _num_samples(x) -> int:
    return x.shape[0] if isinstance(x, torch.Tensor) else data_module.num_samples(x)


def _device_type(x) -> str:
    while not isinstance(x, torch.Tensor):
        x = next(iter(x.values())) if isinstance(x, dict) else x[0]
    return x.device.type


def _to_float32(value):
    if isinstance(value, torch.Tensor) and value.dtype in _HALF:
        return value.float()
    return value


def _clone(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def _own_code(method):
    """``method`` bound to a copy of its function with a code object of its own.

    torch.compile keeps compiled graphs, and its limit of 8 recompilations, per code
    object: without a copy every model in a process would share (and exhaust) one.
    """
    function = method.__func__
    copy = types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    return types.MethodType(copy, method.__self__)


def _warn_outside_lamina(message: str) -> None:
    """A UserWarning attributed to the first stack frame outside lamina (the user's call)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("lamina"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _mark_dynamic(tensor, dim) -> None:
    from torch._dynamo import maybe_mark_dynamic

    maybe_mark_dynamic(tensor, dim)


def _compile_counter() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


class _Jit:
    """One step function compiled with ``torch.compile``, with Keras-style fallback.

    A train step compiles whole: forward pass, loss and gradients as one graph
    (``Trainer._train_grads``, traced with ``fullgraph=True``); the optimizer then applies
    the gradients with its fused multi-tensor kernels. A model that cannot be traced as one
    graph (a graph break, e.g. a recurrent layer's fused kernel, or losses added with
    ``add_loss``) compiles its forward pass and loss instead, with the backward pass
    compiled alongside by AOTAutograd and run by the autograd engine.

    The batch axis is compiled as dynamic, so an epoch's last, smaller batch reuses the
    graph. If compiling or running fails, the step is retried with static shapes (the
    last batch then compiles once more), then (train steps) as forward pass and loss only;
    if that fails too, it warns with the reason and the trainer runs that step, and all
    later ones, eagerly. Time spent compiling is added to ``Trainer.compile_time`` and
    logged. Inductor caches what it compiles on disk (``TORCHINDUCTOR_CACHE_DIR``), so a
    second process skips code generation.
    """

    def __init__(self, fn, trainer: Trainer, kind: str):
        self.eager = fn
        self.trainer = trainer
        self.kind = kind
        self.failed = False
        self.dynamic = True
        self.backend = os.environ.get(_BACKEND_ENV) or "inductor"
        # Modes only inductor knows; other backends (tests' "eager") ignore them.
        self.mode = trainer.jit_mode if self.backend == "inductor" else None
        # CUDA graphs (reduce-overhead, max-autotune) reuse their output memory at the next
        # replay: steps are marked, and predict outputs, which may be kept, are copied.
        self.graphs = self.mode in ("reduce-overhead", "max-autotune")
        # Train steps: the weights differentiated by the whole-step graph (None: forward only),
        # and whether that graph also updates the metrics.
        self.params = trainer._whole_step_weights() if kind == "train" else None
        # Not under CUDA graphs: inductor does not record a graph that mutates its inputs
        # (the metrics' state), and replaying graphs saves more than the metrics cost.
        self.measure = self.params is not None and not self.graphs
        self._compile()

    def _compile(self) -> None:
        # The batch axis is marked dynamic until a call succeeds: the graph it compiled then
        # takes any batch size, and marking costs tens of microseconds a step.
        self.marking = True
        began = time.perf_counter()  # the first torch.compile call also imports dynamo/inductor
        try:
            rnn_ops.register()  # the CPU LSTM operator, before anything is traced
            options = {} if self.mode is None else {"mode": self.mode}
            whole = self.params is not None
            fn = self.trainer._train_grads if whole else self.eager
            backend = self.backend
            self.capture = self.direct = None
            if whole and hasattr(torch.compiler, "keep_tensor_guards_unsafe"):  # torch >= 2.7
                # torch.compile takes a mode or options, not both: spell the mode as options.
                from torch._inductor import list_mode_options

                inductor = dict(list_mode_options(options.pop("mode", None) or "default"))
                options["options"] = {"guard_filter_fn": _step_guards}
                if self.graphs:
                    options["options"].update(inductor)
                else:  # graphs Dynamo compiles are also called directly (see training/direct_step.py)
                    self.capture = direct_step.StepCapture(_backend_function(backend, inductor, self.dynamic))
                    self.direct = direct_step.DirectCalls()
                    backend = self.capture
            self.compiled = torch.compile(_own_code(fn), backend=backend, fullgraph=whole,
                                          dynamic=None if self.dynamic else False, **options)
        except Exception as error:  # noqa: BLE001 - e.g. an unknown backend name
            self._fail(error)
        self.trainer.compile_time += time.perf_counter() - began

    def _begin(self, args):
        self.trainer.model._clear_losses()  # eagerly: the compiled call skips it (see Layer.__call__)
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        if self.dynamic and self.marking:
            for value in args:
                if isinstance(value, torch.Tensor):
                    if value.ndim and value.shape[0] > 1:
                        _mark_dynamic(value, 0)
                elif value is not None:
                    for tensor in data_module._flat(value):
                        if isinstance(tensor, torch.Tensor) and tensor.ndim and tensor.shape[0] > 1:
                            _mark_dynamic(tensor, 0)
        return _compile_counter(), time.perf_counter()

    def _end(self, start) -> None:
        self.marking = False
        count, began = start
        if _compile_counter() != count:
            elapsed = time.perf_counter() - began
            self.trainer.compile_time += elapsed
            _LOGGER.info("lamina: compiled the %s step with torch.compile (backend=%r) in %.2f s",
                         self.kind, self.backend, elapsed)

    def _retry(self, error, start) -> bool:
        """After a failed compiled call: True to retry with static shapes, False to run eagerly."""
        self.trainer.compile_time += time.perf_counter() - start[1]
        from torch._dynamo.exc import Unsupported

        if self.measure:
            _LOGGER.info("lamina: compiling the metrics into the train step failed (%s: %s); "
                         "updating them outside the graph", type(error).__name__, error)
            self.measure = False
            self._compile()
            return not self.failed
        # A graph break is not about shapes: a whole train step goes straight to forward-only.
        if self.dynamic and not (self.params is not None and isinstance(error, Unsupported)):
            _LOGGER.info("lamina: compiling the %s step with a dynamic batch size failed (%s: %s); "
                         "retrying with static shapes", self.kind, type(error).__name__, error)
            self.dynamic = False
            self._compile()
            return not self.failed
        if self.params is not None:
            _LOGGER.info("lamina: compiling the whole train step as one graph failed (%s: %s); "
                         "compiling its forward pass and loss instead", type(error).__name__, error)
            self.params = None
            self.dynamic = True
            self._compile()
            return not self.failed
        self._fail(error)
        return False

    def _fail(self, error) -> None:
        self.failed = True
        reason = " ".join(str(error).split("Set TORCHDYNAMO_VERBOSE")[0].split())
        if len(reason) > 600:
            reason = reason[:600] + " ..."
        _warn_outside_lamina(
            f"jit_compile=True: could not compile the {self.kind} step of model "
            f"{self.trainer.model.name!r} with torch.compile (backend={self.backend!r}); "
            f"running it eagerly instead. Reason: {type(error).__name__}: {reason}")

    def run(self, *args):
        while True:
            start = self._begin(args)
            try:
                with _quiet_tracing():
                    result = self.compiled(*args)
            except Exception as error:  # noqa: BLE001 - any compile failure falls back, as promised
                if self._retry(error, start):
                    args = _unmarked(args)
                    continue
                return self.eager(*args)
            self._end(start)
            if self.graphs and self.kind == "predict":
                result = _map_structure(_clone, result)
            return result

    def _frame(self, trainer: Trainer, x, y, sample_weight) -> dict:
        """The local variables of ``Trainer._train_grads`` for a call (what its graph inputs are read from)."""
        return {"self": trainer, "values": self.params, "x": x, "y": y,
                "sample_weight": sample_weight, "measure": self.measure}

    def _whole_step(self, trainer: Trainer, x, y, sample_weight):
        """``Trainer._train_grads`` compiled, called through Dynamo; its graph then becomes callable directly."""
        if self.direct is None:
            return self.compiled(self.params, x, y, sample_weight, self.measure)
        self.capture.take()
        result = self.compiled(self.params, x, y, sample_weight, self.measure)
        self.direct.record(direct_step.argument_key(x, y, sample_weight, self.measure),
                           self._frame(trainer, x, y, sample_weight), self.capture, result)
        return result

    def _set_grads(self, trainer: Trainer, result):
        grads, y_pred, loss, heads = result
        for param, grad in zip(self.params, grads):
            param.grad = grad
        trainer._keep_head_losses(heads)  # (Dynamo replays it; a direct call does not)
        return y_pred, loss, self.measure

    def run_train(self, trainer: Trainer, x, y, sample_weight):
        """Outputs and loss, with the weights' ``.grad`` set for the optimizer's step."""
        if self.direct is not None and not self.marking:
            trainer.model._clear_losses()
            with torch.no_grad():
                result = self.direct.call(direct_step.argument_key(x, y, sample_weight, self.measure),
                                          self._frame(trainer, x, y, sample_weight))
            if result is not None:
                return self._set_grads(trainer, result)
        while True:
            start = self._begin((x, y, sample_weight))
            try:
                if self.params is None:  # compiled forward and loss; AOTAutograd's backward
                    with _quiet_tracing():
                        y_pred, loss = self.compiled(x, y, sample_weight)
                    trainer._backward(loss)
                else:
                    # func.grad differentiates inside the graph; outside it nothing is recorded.
                    with torch.no_grad():
                        result = self._whole_step(trainer, x, y, sample_weight)
                    self._end(start)
                    return self._set_grads(trainer, result)
            except Exception as error:  # noqa: BLE001
                if self._retry(error, start):
                    x, y, sample_weight = _unmarked((x, y, sample_weight))
                    continue
                return (*trainer._forward_backward(x, y, sample_weight), False)
            self._end(start)
            return y_pred, loss, self.measure  # (False once the step is forward-only)


def _backend_function(name: str, inductor_options: dict, dynamic: bool):
    """The torch.compile backend ``name`` as a function of (graph, example inputs)."""
    if name == "inductor":
        return torch._TorchCompileInductorWrapper(None, inductor_options, None if dynamic else False)
    from torch._dynamo import lookup_backend

    return lookup_backend(name)


def _batch_hook(callback_list, name: str):
    """``callback_list.<name>``, or None when no callback overrides it (one call less per batch)."""
    base = getattr(Callback, name)
    for callback in callback_list.callbacks:
        if getattr(getattr(callback, name), "__func__", None) is not base:
            return getattr(callback_list, name)
    return None


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, dict):
        return [m for v in value.values() for m in _as_list(v)]
    return [value]


def _verbose(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; received {verbose!r}.")
    return int(verbose)


def _logs_floats(logs) -> dict:
    if isinstance(logs, LazyLogs):
        return logs.floats()
    return {k: _to_float(v) for k, v in sorted(dict(logs or {}).items())}


def _should_validate(epoch: int, validation_freq) -> bool:
    """Keras's rule: every ``validation_freq`` epochs (an int) or at the listed 1-based epochs."""
    if isinstance(validation_freq, int) and not isinstance(validation_freq, bool):
        return (epoch + 1) % validation_freq == 0
    if isinstance(validation_freq, (list, tuple)):
        return epoch + 1 in validation_freq
    raise ValueError(
        f"validation_freq must be an int or a list of epoch numbers; received {validation_freq!r}."
    )


def _training_device() -> torch.device:
    """The device of ``fit``, ``evaluate`` and ``predict``; on the CPU, host memory set up for reuse.

    Compiled steps called directly check their graphs' inputs again (training/direct_step.py).
    """
    direct_step.new_generation()
    device = config.get_device()
    if device.type == "cpu":
        keep_freed_host_memory()
    return device


def _move_to_device(model, trainer: Trainer | None, device) -> None:
    """The model, and the optimizer state built or loaded elsewhere, onto the training device."""
    model.to(device)
    optimizer = None if trainer is None else trainer.optimizer
    if optimizer is not None and getattr(optimizer, "built", False):
        optimizer._follow_device(device)


def _set_class_weight(trainer: Trainer, class_weight, device) -> None:
    if not class_weight:
        trainer._class_weight_table = None
        return
    size = max(int(k) for k in class_weight) + 1
    table = torch.ones(size, dtype=config.torch_dtype(), device=device)
    for key, weight in class_weight.items():
        table[int(key)] = float(weight)
    trainer._class_weight_table = table


def fit(model, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
        sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
        validation_batch_size=None, validation_freq=1):
    """``Model.fit``: see its docstring."""
    trainer = _require_compiled(model, "fit")
    if class_weight is not None and sample_weight is not None:
        raise ValueError(
            "fit received both class_weight and sample_weight; Keras accepts only one. Fold "
            "the class weights into sample_weight (sample_weight * weight of each sample's class)."
        )
    device = _training_device()
    _move_to_device(model, trainer, device)
    if validation_split and validation_data is None:
        if data_module._is_iterable_source(x):
            raise ValueError(
                "validation_split is only supported for arrays and tensors; received x of type "
                f"{type(x).__name__}. Pass validation_data=... instead."
            )
        x, y, sample_weight = (data_module.to_tensor(v) for v in (x, y, sample_weight))
        data_module._check_lengths(x, y, sample_weight)
        (x, y, sample_weight), validation_data = data_module.split_validation(x, y, sample_weight, validation_split)
    train = data_module.make_batches(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle,
                                     steps=steps_per_epoch, device=device)
    val = None
    if validation_data is not None:
        val = validation_data
        if isinstance(validation_data, (tuple, list)) and not data_module._is_iterable_source(validation_data):
            val = data_module.make_batches(*validation_data, batch_size=validation_batch_size or batch_size,
                                           steps=validation_steps, device=device)
    _set_class_weight(trainer, class_weight, device)
    verbose = _verbose(verbose)
    callback_list = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                                 verbose=verbose, epochs=epochs, steps=train.num_batches)
    model.stop_training = False
    callback_list.on_train_begin()
    batch_begin = _batch_hook(callback_list, "on_train_batch_begin")
    batch_end = _batch_hook(callback_list, "on_train_batch_end")
    epoch_logs: dict = {}
    trainer._train_calls = _train_chain_of(model, trainer)
    try:
        for epoch in range(initial_epoch, epochs):
            trainer.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            model.train()  # torch modules inside custom layers (nn.Dropout...) follow the mode, as in Keras
            logs = None
            train_step = model.train_step
            for step, batch in enumerate(train):
                if batch_begin is not None:
                    batch_begin(step)
                logs = train_step(batch)
                if batch_end is not None:
                    batch_end(step, logs)
                if model.stop_training:
                    break
            if logs is None:
                break
            epoch_logs = _logs_floats(logs)
            model.eval()
            if val is not None and _should_validate(epoch, validation_freq):
                val_logs = evaluate(model, val, batch_size=validation_batch_size or batch_size,
                                    steps=validation_steps, callbacks=callback_list, return_dict=True,
                                    _inside_fit=True)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
    finally:
        trainer._train_calls = None
    _set_class_weight(trainer, None, device)
    callback_list.on_train_end(epoch_logs)
    return model.history


def evaluate(model, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
             callbacks=None, return_dict=False, _inside_fit=False):
    """``Model.evaluate``: see its docstring."""
    trainer = _require_compiled(model, "evaluate")
    device = _training_device()
    if isinstance(x, (data_module.ArrayBatches, data_module.HostBatches, data_module.IterableBatches)):
        batches = x
    else:
        model.to(device)
        batches = data_module.make_batches(x, y, sample_weight, batch_size=batch_size, steps=steps, device=device)
    if _inside_fit:
        callback_list = callbacks
    else:
        callback_list = CallbackList(callbacks, add_progbar=_verbose(verbose) != 0, model=model,
                                     verbose=_verbose(verbose), epochs=1, steps=batches.num_batches)
    trainer.reset_metrics()
    model.eval()
    callback_list.on_test_begin()
    logs = None
    batch_begin = _batch_hook(callback_list, "on_test_batch_begin")
    batch_end = _batch_hook(callback_list, "on_test_batch_end")
    test_step = model.test_step
    with torch.no_grad():
        for step, batch in enumerate(batches):
            if batch_begin is not None:
                batch_begin(step)
            logs = test_step(batch)
            if batch_end is not None:
                batch_end(step, logs)
    if logs is None:
        raise ValueError("evaluate received no data: the input produced zero batches.")
    result = _logs_floats(logs)
    callback_list.on_test_end(result)
    if return_dict:
        return result
    return _flatten_in_order(trainer, result)


def _log_names(names: list[str], weighted_names: list[str]) -> list[str]:
    """Unique log keys as Keras makes them: a repeated metric name gets ``_1``, ``_2``...; a
    weighted metric whose name is taken becomes ``weighted_<name>``."""
    counters: dict[str, int] = {}
    result = []
    for name, weighted in [(n, False) for n in names] + [(n, True) for n in weighted_names]:
        if name in counters and weighted:
            name = f"weighted_{name}"
        if name in counters:
            counters[name] += 1
            name = f"{name}_{counters[name] - 1}"
        else:
            counters[name] = 1
        result.append(name)
    return result


def _flatten_in_order(trainer: Trainer, result: dict):
    # Keras's order: "loss", the per-output losses, each output's metrics, then leftovers sorted.
    names = getattr(trainer, "order_names", ["loss"])
    ordered = [result[n] for n in names if n in result] + [result[k] for k in sorted(result) if k not in names]
    return ordered[0] if len(ordered) == 1 else ordered


def predict(model, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
    """``Model.predict``: see its docstring."""
    device = _training_device()
    model.to(device)
    batches = data_module.make_batches(x, batch_size=batch_size, steps=steps, device=device)
    verbose = _verbose(verbose)
    callback_list = CallbackList(callbacks, add_progbar=verbose != 0, model=model, verbose=verbose,
                                 epochs=1, steps=batches.num_batches)
    model.eval()
    callback_list.on_predict_begin()
    total = getattr(batches, "size", None)
    if steps is not None and total is not None:
        total = min(total, int(steps) * batches.batch_size)
    # Known size: the result is allocated once and filled batch by batch, so memory
    # holds the outputs plus one batch. Unknown size (generators): batches are kept.
    outputs, chunks, offset = None, [], 0
    pending, pending_bytes = [], 0  # device outputs not yet copied to the host
    batch_begin = _batch_hook(callback_list, "on_predict_batch_begin")
    batch_end = _batch_hook(callback_list, "on_predict_batch_end")
    predict_step = _predict_step_of(model)
    with torch.inference_mode():
        for step, batch in enumerate(batches):
            if batch_begin is not None:
                batch_begin(step)
            y_pred = predict_step(batch)
            if isinstance(y_pred, torch.Tensor) and outputs is not None:
                if y_pred.device.type == "cpu":
                    n = y_pred.shape[0]
                    outputs[offset:offset + n] = y_pred.detach().numpy()
                    offset += n
                else:
                    # On an accelerator, batches wait on the device and are copied to the host
                    # some megabytes at a time: one synchronisation per chunk, not per batch.
                    pending.append(y_pred.detach())
                    pending_bytes += y_pred.element_size() * y_pred.nelement()
                    if pending_bytes >= _PREDICT_CHUNK_BYTES:
                        offset, pending_bytes = _flush(outputs, pending, offset), 0
            else:
                arrays = _to_numpy_structure(y_pred)
                if total is None:
                    chunks.append(arrays)
                else:
                    if outputs is None:
                        outputs = _map_structure(lambda a: np.empty((total,) + a.shape[1:], dtype=a.dtype), arrays)
                    n = _first(arrays).shape[0]
                    _fill(outputs, arrays, offset, n)
                    offset += n
            if batch_end is not None:
                batch_end(step, {"outputs": y_pred})
    if pending:
        offset = _flush(outputs, pending, offset)
    callback_list.on_predict_end()
    if total is None:
        if not chunks:
            raise ValueError("predict received no data: the input produced zero batches.")
        return _concat(chunks)
    if outputs is None:
        raise ValueError("predict received no data: the input produced zero batches.")
    return outputs


_PREDICT_CHUNK_BYTES = 16 << 20


def _flush(outputs, pending: list, offset: int) -> int:
    """Copy the device batches in ``pending`` to ``outputs[offset:]`` at once; the new offset."""
    block = pending[0] if len(pending) == 1 else torch.cat(pending)
    pending.clear()
    outputs[offset:offset + block.shape[0]] = block.cpu().numpy()
    return offset + block.shape[0]


def _predict_step_of(model):
    """``model.predict_step``, or, when it would only call ``model(x, training=False)`` (the
    built-in step of an eager model without mixed precision), that call itself: the same
    result through fewer Python calls per batch."""
    from lamina.models.model import Model

    step = model.predict_step
    trainer = getattr(model, "_trainer", None)
    if (getattr(step, "__func__", None) is not Model.predict_step
            or (trainer is not None and (type(trainer).predict_step is not Trainer.predict_step
                                         or type(trainer)._predict_forward is not Trainer._predict_forward
                                         or trainer.jit_compile or trainer._autocast_dtype is not None))):
        return step

    steps = _plain_sequential_calls(model)
    if steps is not None:
        # After a first batch of each shape through the full call (it builds and checks input
        # specs), the layers' own `call`s run back to back (see _LayerChain).
        chain = _LayerChain(model, steps, training=False)
        return lambda batch: chain(batch[0])

    def eager_step(batch):
        return model(batch[0], training=False)

    return eager_step


def _plain_sequential_calls(model):
    """``[(layer.call, takes_training)]`` when ``model`` is a Sequential whose layers'
    ``__call__`` adds nothing in inference beyond checks (no hooks, masks, activity
    regularizers or nested layers); None otherwise."""
    from torch.nn.modules import module as torch_module

    from lamina.models.sequential import Sequential

    if (type(model).call is not Sequential.call or type(model).__call__ is not Sequential.__call__
            or model._forward_hooks or model._forward_pre_hooks
            or torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks):
        return None
    steps = []
    for layer in model._layers:
        cls = type(layer)
        if (cls.__call__ is not layer_base.Layer.__call__ or cls.forward is not layer_base.Layer.forward
                or cls.compute_mask is not layer_base.Layer.compute_mask
                or layer.activity_regularizer is not None or layer._forward_hooks or layer._forward_pre_hooks
                or next(layer.children(), None) is not None):
            return None
        takes_training, _ = layer_base._CALL_SIGNATURES.get(cls) or layer._call_flags()
        steps.append((layer.call, takes_training))
    return steps


class _LayerChain:
    """A plain Sequential's forward pass: its layers' own ``call``s, back to back.

    ``Layer.__call__`` repeats, for every layer and batch, checks that cannot change within
    a ``fit`` once a batch of the same shape, dtype and device has passed them (input specs,
    device placement, masks, hooks: see ``_plain_sequential_calls``); on a small model that is
    a few percent of a step. A batch of a new kind, or layers holding losses from the last
    top-level call (``add_loss``: the full call clears the previous step's), go through
    ``model(x, training=training)``. Used by ``fit``'s eager train steps and by ``predict``.

    >>> import torch, lamina
    >>> model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2)])
    >>> chain = _LayerChain(model, _plain_sequential_calls(model))
    >>> x = torch.ones(4, 3)
    >>> torch.equal(chain(x), chain(x)) and torch.equal(chain(x), model(x, training=True))
    True
    """

    def __init__(self, model, calls, training: bool = True):
        self.model = model
        self.calls = calls
        self.training = training
        self.checked: set = set()  # (shape, dtype, device) of batches that went through model()

    def __call__(self, x):
        key = (x.shape, x.dtype, x.device) if isinstance(x, torch.Tensor) else None
        # Layers in _LOSS_OWNERS hold losses of the last top-level call (this model's, or
        # another's that compute_loss would add): the full call sorts them out. Other models'
        # older losses (_STALE_LOSS_OWNERS) are neither read nor changed by this call.
        if key not in self.checked or layer_base._LOSS_OWNERS:
            outputs = self.model(x, training=self.training)
            # (Outputs elsewhere than x: the full call moved x to the weights' device.)
            if (key is not None and len(self.checked) < 8 and isinstance(outputs, torch.Tensor)
                    and outputs.device == x.device):
                self.checked.add(key)
            return outputs
        context, training = layer_base._CONTEXT, self.training
        outer = getattr(context, "training", None)
        context.training = training  # what Layer.__call__ sets (layer_base.current_training())
        try:
            for call, takes_training in self.calls:
                x = call(x, training=training) if takes_training else call(x)
        finally:
            context.training = outer
        return x


def _train_chain_of(model, trainer: Trainer) -> _LayerChain | None:
    """The layer chain for ``fit``'s eager train steps when the built-in step runs a plain
    Sequential (no jit_compile, no mixed precision); None otherwise. Hooks or layers added
    during a ``fit`` take effect in the next one."""
    from lamina.models.model import Model

    if (trainer.jit_compile or trainer._autocast_dtype is not None
            or getattr(model.train_step, "__func__", None) is not Model.train_step
            or type(trainer).train_step is not Trainer.train_step
            or type(trainer)._forward_loss is not Trainer._forward_loss):
        return None
    calls = _plain_sequential_calls(model)
    return None if calls is None else _LayerChain(model, calls)


def _to_numpy_structure(value):
    return _map_structure(lambda t: t.detach().cpu().numpy(), value)


# What a whole train step's graph is checked against before each call (Dynamo's guards):
# the step's arguments (their tensors' shapes, dtypes, devices and strides, and their
# structure), every other tensor it reads (buffers such as BatchNormalization's moving
# statistics) and torch's global state (grad mode, autocast...). Guards on Python attributes
# of the trainer, model and layers are left out (~600 of them for a 3-layer MLP, ~90 us a
# step on a CPU): as with Keras's compiled train function, the step is traced once, and a
# change to a layer attribute (``trainable``, a dropout rate...) applies after ``compile()``.
_STEP_ARGUMENTS = frozenset({"x", "y", "sample_weight", "values", "measure"})
_STATE_GUARDS = frozenset({
    "TENSOR_MATCH", "GRAD_MODE", "GLOBAL_STATE", "DETERMINISTIC_ALGORITHMS", "FUNCTORCH_STACK_MATCH",
    "AUTOGRAD_SAVED_TENSORS_HOOKS", "DEFAULT_DEVICE", "TORCH_FUNCTION_STATE", "SHAPE_ENV",
})


def _step_guards(entries) -> list[bool]:
    return [entry.guard_type in _STATE_GUARDS
            or entry.name.replace("[", ".").split(".", 1)[0] in _STEP_ARGUMENTS
            for entry in entries]


@contextlib.contextmanager
def _quiet_tracing():
    """Silence what torch warns about while Dynamo resumes after a graph break.

    Tracing the frame after a graph break, Dynamo reads ``.grad`` of the intermediate
    tensors it receives, and torch warns that a non-leaf tensor's ``.grad`` is not
    populated: the warning is about Dynamo's own inspection, not the user's code.

    Also lets Dynamo keep operators whose output size depends on the data in the graph:
    the CPU LSTM operator (layers/rnn_ops.py) returns oneDNN's workspace, of a size only
    oneDNN knows. (Set and restored directly: ``config.patch`` costs ~15 us a call.)
    """
    from torch._dynamo import config as dynamo_config

    saved = dynamo_config.capture_dynamic_output_shape_ops
    dynamo_config.capture_dynamic_output_shape_ops = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The \.grad attribute of a Tensor that is not a leaf")
            yield
    finally:
        dynamo_config.capture_dynamic_output_shape_ops = saved


def _unmarked(args):
    """The same tensors as new views: the failed try's dynamic-batch marks stay on the old objects."""
    return _map_structure(lambda t: t.view_as(t) if isinstance(t, torch.Tensor) else t, args)


def _map_structure(fn, value):
    if isinstance(value, dict):
        return {k: _map_structure(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_structure(fn, v) for v in value)
    return fn(value)


def _first(value):
    while isinstance(value, (dict, list, tuple)):
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return value


def _fill(outputs, arrays, offset, n):
    if isinstance(outputs, dict):
        for k in outputs:
            _fill(outputs[k], arrays[k], offset, n)
    elif isinstance(outputs, (list, tuple)):
        for o, a in zip(outputs, arrays):
            _fill(o, a, offset, n)
    else:
        outputs[offset:offset + n] = arrays


def _concat(chunks):
    head = chunks[0]
    if isinstance(head, dict):
        return {k: _concat([c[k] for c in chunks]) for k in head}
    if isinstance(head, (list, tuple)):
        return type(head)(_concat([c[i] for c in chunks]) for i in range(len(head)))
    return np.concatenate(chunks, axis=0)


def _require_compiled(model, what: str) -> Trainer:
    trainer = getattr(model, "_trainer", None)
    if trainer is None:
        raise ValueError(
            f"You must call `compile()` before using the model for {what}: e.g. "
            f"model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])."
        )
    return trainer
