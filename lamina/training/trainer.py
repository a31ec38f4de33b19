"""The one training loop: compile state, the train/test/predict steps, and fit/evaluate/predict.

``Model.compile`` creates a ``Trainer``; ``Model.fit`` / ``evaluate`` / ``predict``
are thin wrappers around it. Batching lives in ``training/data.py``, callbacks in
``training/callbacks.py``. The per-step path does no host synchronisation: losses
and metrics accumulate on the device and are read when a callback asks for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lamina import config, losses as losses_module, metrics as metrics_module, optimizers, registry
from lamina.layers import base as layer_base
from lamina.training import data as data_module
from lamina.training.callbacks import CallbackList

__all__ = ["Trainer", "LazyLogs"]


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


class Trainer:
    """Compile state plus the loops. Created by ``Model.compile``; one per model.

    Args:
        model: the ``lamina.Model`` being trained.
        optimizer: an optimizer name or instance.
        loss: a loss name, function or ``Loss`` (None: only ``add_loss`` losses).
        metrics: list of metric identifiers, applied without sample weights.
        weighted_metrics: list of metric identifiers that receive sample weights.
        loss_weights: a float scaling the loss (single-output models).
    """

    def __init__(self, model, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None,
                 loss_weights=None):
        self.model = model
        self.optimizer = optimizers.get(optimizer)
        self.loss_identifier = loss
        self.loss = _resolve_loss(loss)
        if isinstance(loss_weights, (list, tuple)):
            if len(loss_weights) != 1:
                raise ValueError(
                    f"loss_weights has {len(loss_weights)} entries, but this model has one output "
                    f"and one loss. Pass a single float or a list of one."
                )
            loss_weights = loss_weights[0]
        if isinstance(loss_weights, dict):
            loss_weights = next(iter(loss_weights.values())) if len(loss_weights) == 1 else None
        self.loss_weight = None if loss_weights is None else float(loss_weights)
        self.metric_identifiers = list(_as_list(metrics))
        self.weighted_metric_identifiers = list(_as_list(weighted_metrics))
        self.loss_tracker = metrics_module.Mean(name="loss")
        self.metrics: list | None = None
        self.weighted_metrics: list = []
        self.logs: LazyLogs | None = None
        self._built = False
        self._regularized: list = []
        self._constrained = False
        self._class_weight_table: torch.Tensor | None = None

    # ------------------------------------------------------------------ building
    def _build_metrics(self, y, y_pred) -> None:
        """Resolve metrics from the first batch's shapes (``"accuracy"`` depends on them).

        Called once the first batch's loss has been computed, so a batch the loss
        rejects (e.g. integer labels with categorical_crossentropy) does not leave
        metrics resolved for the wrong targets.
        """
        if self.metrics is None:
            self.metrics = [metrics_module.resolve(m, y, y_pred, self.loss_identifier)
                            for m in self.metric_identifiers]
            self.weighted_metrics = [metrics_module.resolve(m, y, y_pred, self.loss_identifier)
                                     for m in self.weighted_metric_identifiers]
            names = _log_names([m.name for m in self.metrics], [m.name for m in self.weighted_metrics])
            self.logs = LazyLogs([("loss", self.loss_tracker)]
                                 + list(zip(names, self.metrics + self.weighted_metrics)))

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
                    self._regularized.append((reg, layer._tensor(attr), layer._weight_layouts.get(attr)))
        self._constrained = any(l._weight_constraints for l in model._flatten_layers())

    def all_metrics(self) -> list:
        """The loss tracker followed by the compiled metrics (``model.metrics``)."""
        return [self.loss_tracker] + list(self.metrics or []) + list(self.weighted_metrics)

    def reset_metrics(self) -> None:
        for metric in self.all_metrics():
            metric.reset_state()

    # ------------------------------------------------------------------ steps
    def compute_loss(self, x, y, y_pred, sample_weight=None):
        """The compiled loss (times ``loss_weights``) plus regularization and ``add_loss`` losses."""
        total = None
        if self.loss is not None:
            if y is None:
                raise ValueError(
                    "The model was compiled with a loss, but no targets (y) were given. Pass y to "
                    "fit/evaluate, or yield (x, y) from your dataset."
                )
            total = self.loss(y, y_pred, sample_weight)
            if self.loss_weight is not None:
                total = total * self.loss_weight
        for reg, tensor, perm in self._regularized:
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
        labels = y.argmax(-1) if (y.ndim > 1 and y.shape[-1] > 1) else y.reshape(y.shape[0], -1)[:, 0]
        labels = labels.round().long() if labels.is_floating_point() else labels.long()
        # Classes missing from class_weight weigh 1.0, as in Keras; masking instead of a
        # python check keeps the step free of host synchronisation.
        known = (labels >= 0) & (labels < table.shape[0])
        weights = torch.where(known, table[labels.clamp(0, table.shape[0] - 1)], 1.0)
        return weights if sample_weight is None else sample_weight * weights

    def update_metrics(self, y, y_pred, sample_weight, loss, batch_size) -> None:
        self.loss_tracker.update_state(loss.detach(), sample_weight=batch_size)
        if y is None:
            return
        for metric in self.metrics:
            metric.update_state(y, y_pred)
        for metric in self.weighted_metrics:
            metric.update_state(y, y_pred, sample_weight)

    def train_step(self, data):
        x, y, sample_weight = data
        model = self.model
        y_pred = model(x, training=True)
        self._build_optimizer()
        sample_weight = self._sample_weight(y, sample_weight)
        loss = self.compute_loss(x, y, y_pred, sample_weight)
        self._build_metrics(y, y_pred)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self._constrained:
            model._apply_constraints()
        self.update_metrics(y, y_pred, sample_weight, loss, data_module.num_samples(x))
        return self.logs

    def test_step(self, data):
        x, y, sample_weight = data
        y_pred = self.model(x, training=False)
        self._build_optimizer()  # also collects the regularized weights compute_loss adds
        # class_weight is for training only: as in Keras, validation losses are unweighted.
        loss = self.compute_loss(x, y, y_pred, sample_weight)
        self._build_metrics(y, y_pred)
        self.update_metrics(y, y_pred, sample_weight, loss, data_module.num_samples(x))
        return self.logs


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
    device = config.get_device()
    model.to(device)
    if validation_split and validation_data is None:
        if data_module._is_iterable_source(x):
            raise ValueError(
                "validation_split is only supported for arrays and tensors; received x of type "
                f"{type(x).__name__}. Pass validation_data=... instead."
            )
        x, y, sample_weight = (data_module.to_tensor(v, device) for v in (x, y, sample_weight))
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
    epoch_logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        trainer.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        model.train()  # torch modules inside custom layers (nn.Dropout...) follow the mode, as in Keras
        logs = None
        for step, batch in enumerate(train):
            callback_list.on_train_batch_begin(step)
            logs = model.train_step(batch)
            callback_list.on_train_batch_end(step, logs)
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
    _set_class_weight(trainer, None, device)
    callback_list.on_train_end(epoch_logs)
    return model.history


def evaluate(model, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
             callbacks=None, return_dict=False, _inside_fit=False):
    """``Model.evaluate``: see its docstring."""
    trainer = _require_compiled(model, "evaluate")
    device = config.get_device()
    if isinstance(x, (data_module.ArrayBatches, data_module.IterableBatches)):
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
    with torch.no_grad():
        for step, batch in enumerate(batches):
            callback_list.on_test_batch_begin(step)
            logs = model.test_step(batch)
            callback_list.on_test_batch_end(step, logs)
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
    # Keras's order: "loss", then each compiled metric by its own name, then leftover keys sorted.
    names = ["loss"] + [m.name for m in (trainer.metrics or []) + trainer.weighted_metrics]
    ordered = [result[n] for n in names if n in result] + [result[k] for k in sorted(result) if k not in names]
    return ordered[0] if len(ordered) == 1 else ordered


def predict(model, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
    """``Model.predict``: see its docstring."""
    device = config.get_device()
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
    outputs, chunks, offset = None, [], 0
    with torch.inference_mode():
        for step, batch in enumerate(batches):
            callback_list.on_predict_batch_begin(step)
            y_pred = model.predict_step(batch)
            arrays = _to_numpy_structure(y_pred)
            if total is None:
                chunks.append(arrays)
            else:
                if outputs is None:
                    outputs = _map_structure(lambda a: np.empty((total,) + a.shape[1:], dtype=a.dtype), arrays)
                n = _first(arrays).shape[0]
                _fill(outputs, arrays, offset, n)
                offset += n
            callback_list.on_predict_batch_end(step, {"outputs": y_pred})
    callback_list.on_predict_end()
    if total is None:
        if not chunks:
            raise ValueError("predict received no data: the input produced zero batches.")
        return _concat(chunks)
    if outputs is None:
        raise ValueError("predict received no data: the input produced zero batches.")
    return outputs


def _to_numpy_structure(value):
    return _map_structure(lambda t: t.detach().cpu().numpy(), value)


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
