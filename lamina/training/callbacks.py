"""Callbacks: the hooks that ``fit``/``evaluate``/``predict`` call, and Keras's built-in ones.

Owns ``Callback``, ``CallbackList`` (dispatch), ``MonitorCallback`` (the one place for
monitor/mode/min_delta logic) and the built-ins. Callbacks see only ``(epoch or batch,
logs)`` and ``self.model``, and stop training by setting ``model.stop_training``.
``ProgbarLogger`` lives in ``lamina.training.progbar``; the loop lives in the trainer.
"""

from __future__ import annotations

import collections
import csv
import math
import operator
import os
import re
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from lamina.registry import register
from lamina.utils.progbar import print_msg

__all__ = [
    "Callback", "CallbackList", "MonitorCallback", "History", "EarlyStopping",
    "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler",
    "CSVLogger", "TerminateOnNaN", "LambdaCallback",
]


class Callback:
    """Base class for callbacks: override the ``on_*`` hooks you need.

    ``fit``, ``evaluate`` and ``predict`` call the hooks with an epoch or batch index
    and a ``logs`` dict. Epoch-level logs hold python floats (``{"loss": 0.2,
    "val_loss": 0.3}``); batch-level logs may hold 0-d torch tensors, so read them
    only when you need the numbers (reading one waits for the device).

    Attributes:
        params: dict of training parameters (``verbose``, ``epochs``, ``steps``).
        model: the model being trained (unwrapped from ``DistributedDataParallel``).

    Example:
    >>> class Printer(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print(epoch, logs)
    >>> Printer().on_epoch_end(0, {"loss": 0.5})
    0 {'loss': 0.5}
    """

    # Class-level defaults keep subclasses working when they skip super().__init__().
    params = None
    _model = None

    def __init__(self):
        self.params = None
        self._model = None

    def set_params(self, params):
        """Store the training parameters dict."""
        self.params = params

    def set_model(self, model):
        """Attach the model the callback works on."""
        self._model = model

    @property
    def model(self):
        """The attached model; a ``DistributedDataParallel`` wrapper gives its module."""
        if isinstance(self._model, DistributedDataParallel):
            return self._model.module
        return self._model

    @classmethod
    def from_config(cls, config):
        """Build the callback from ``get_config()``'s dict."""
        return cls(**config)

    def on_batch_begin(self, batch, logs=None):
        """Backwards-compatible alias of ``on_train_batch_begin``."""

    def on_batch_end(self, batch, logs=None):
        """Backwards-compatible alias of ``on_train_batch_end``."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of epoch ``epoch`` (0-based) of ``fit``."""

    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of an epoch with its results (``val_`` keys included)."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before training batch ``batch``; calls ``on_batch_begin``."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after a training batch with the running results; calls ``on_batch_end``."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        """Called before a batch of ``evaluate`` (or of validation in ``fit``)."""

    def on_test_batch_end(self, batch, logs=None):
        """Called after a batch of ``evaluate`` (or of validation in ``fit``)."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Called before a batch of ``predict``."""

    def on_predict_batch_end(self, batch, logs=None):
        """Called after a batch of ``predict``."""

    def on_train_begin(self, logs=None):
        """Called once when ``fit`` starts."""

    def on_train_end(self, logs=None):
        """Called once when ``fit`` ends, with the last epoch's logs."""

    def on_test_begin(self, logs=None):
        """Called when ``evaluate`` (or validation) starts."""

    def on_test_end(self, logs=None):
        """Called when ``evaluate`` (or validation) ends, with its results."""

    def on_predict_begin(self, logs=None):
        """Called when ``predict`` starts."""

    def on_predict_end(self, logs=None):
        """Called when ``predict`` ends."""


def _flatten_callbacks(callbacks):
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    flat = []
    for item in callbacks:
        if isinstance(item, (list, tuple)):
            flat.extend(_flatten_callbacks(item))
        elif isinstance(item, Callback):
            flat.append(item)
        else:
            raise TypeError(
                "callbacks must be a list of lamina.callbacks.Callback instances; received "
                f"{item!r} of type {type(item).__name__}. Subclass lamina.callbacks.Callback, "
                "or wrap functions in lamina.callbacks.LambdaCallback."
            )
    return flat


def _python_value(value):
    """A python float where the value is a scalar, else the value unchanged."""
    if isinstance(value, torch.Tensor):
        return float(value) if value.ndim == 0 else value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _pythonify_logs(logs):
    """Epoch-level logs as Keras passes them: a new dict, sorted, nested dicts flattened."""
    result = {}
    for key in sorted(logs or {}):
        value = logs[key]
        if isinstance(value, Mapping):
            result.update(_pythonify_logs(value))
        else:
            result[key] = _python_value(value)
    return result


def _named(function, name, doc):
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


def _batch_hook(name):
    def hook(self, batch, logs=None):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            getattr(callback, name)(batch, logs=logs)

    return _named(hook, name, f"Call ``{name}(batch, logs=logs)`` on every callback.")


def _epoch_hook(name):
    def hook(self, epoch, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            getattr(callback, name)(epoch, logs)

    return _named(hook, name, f"Call ``{name}(epoch, logs)`` on every callback.")


def _begin_hook(name):
    def hook(self, logs=None):
        self._in_begin_end_block_count += 1
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            getattr(callback, name)(logs)

    return _named(hook, name, f"Call ``{name}(logs)`` on every callback.")


def _end_hook(name):
    def hook(self, logs=None):
        logs = _pythonify_logs(logs)
        for callback in self.callbacks:
            getattr(callback, name)(logs)
        self._in_begin_end_block_count -= 1
        if self._in_begin_end_block_count < 0:
            raise ValueError(
                f"CallbackList.{name} was called without the matching on_*_begin. Call "
                "on_train_begin (or on_test_begin, on_predict_begin) first."
            )

    return _named(hook, name, f"Call ``{name}(logs)`` on every callback.")


class CallbackList(Callback):
    """Calls a list of callbacks together; the trainer drives this one object.

    Epoch-level hooks get one fresh, key-sorted dict of python floats, shared by all
    callbacks in order (so a callback that adds ``learning_rate`` is seen by
    ``History``). Batch-level hooks pass the trainer's ``logs`` object through
    untouched: nothing is copied or converted per batch.

    Args:
        callbacks: a list of ``Callback`` instances (nested lists are flattened).
        add_history: add a ``History`` callback unless one is in ``callbacks``.
            Defaults to False.
        add_progbar: add a ``ProgbarLogger`` unless one is in ``callbacks``.
            Defaults to False.
        model: the model the callbacks work on; its ``history`` attribute is set to
            the ``History`` callback.
        **params: passed to every callback's ``set_params`` (``verbose``, ``epochs``,
            ``steps``).

    Example:
    >>> callbacks = CallbackList([LambdaCallback(on_epoch_end=lambda e, logs: print(logs))])
    >>> callbacks.on_epoch_end(0, {"val_loss": 0.5, "loss": 1})
    {'loss': 1.0, 'val_loss': 0.5}
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        self.callbacks = _flatten_callbacks(callbacks)
        self._in_begin_end_block_count = 0
        self._add_default_callbacks(add_history, add_progbar)
        self.set_model(model)
        self.set_params(params)

    def _add_default_callbacks(self, add_history, add_progbar):
        from lamina.training.progbar import ProgbarLogger  # it imports this module

        self._history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self._progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)

    def set_params(self, params):
        """Store ``params`` and pass them to every callback (if not empty)."""
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def set_model(self, model):
        """Attach ``model`` to every callback and set ``model.history``."""
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    # Batch-level hooks pass the logs object through untouched; epoch-level hooks
    # share one converted dict (see the class docstring).
    on_batch_begin = _batch_hook("on_batch_begin")
    on_batch_end = _batch_hook("on_batch_end")
    on_train_batch_begin = _batch_hook("on_train_batch_begin")
    on_train_batch_end = _batch_hook("on_train_batch_end")
    on_test_batch_begin = _batch_hook("on_test_batch_begin")
    on_test_batch_end = _batch_hook("on_test_batch_end")
    on_predict_batch_begin = _batch_hook("on_predict_batch_begin")
    on_predict_batch_end = _batch_hook("on_predict_batch_end")
    on_epoch_begin = _epoch_hook("on_epoch_begin")
    on_epoch_end = _epoch_hook("on_epoch_end")
    on_train_begin = _begin_hook("on_train_begin")
    on_train_end = _end_hook("on_train_end")
    on_test_begin = _begin_hook("on_test_begin")
    on_test_end = _end_hook("on_test_end")
    on_predict_begin = _begin_hook("on_predict_begin")
    on_predict_end = _end_hook("on_predict_end")


@register("callback")
class History(Callback):
    """Records every epoch's logs; ``fit`` returns it and sets ``model.history`` to it.

    ``history`` maps each log key to the list of its values, one per epoch; ``epoch``
    lists the epoch indices. A reused instance keeps appending across ``fit`` calls.

    Example:
    >>> history = History()
    >>> history.on_train_begin()
    >>> history.on_epoch_end(0, {"loss": 0.5})
    >>> history.on_epoch_end(1, {"loss": 0.25})
    >>> history.history, history.epoch
    ({'loss': [0.5, 0.25]}, [0, 1])
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self

    def get_config(self):
        return {}


# Metric names whose direction mode="auto" knows without the model (the `_direction`
# of Keras's built-in metrics, under their default names and compile() aliases).
_MAXIMIZED = frozenset((
    "acc", "accuracy", "binary_accuracy", "categorical_accuracy",
    "sparse_categorical_accuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "auc", "precision", "recall", "f1_score",
    "fbeta_score", "r2_score", "cosine_similarity", "pearson_correlation",
    "concordance_correlation", "io_u", "binary_io_u", "mean_io_u", "one_hot_io_u",
    "one_hot_mean_io_u", "precision_at_recall", "recall_at_precision",
    "sensitivity_at_specificity", "specificity_at_sensitivity",
))
_MINIMIZED = frozenset((
    "loss", "mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
    "root_mean_squared_error", "logcosh", "kl_divergence", "kld", "poisson", "hinge",
    "squared_hinge", "categorical_hinge", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy",
))


def _model_metric_direction(model, name):
    """The ``_direction`` ('up'/'down') of the model's metric called ``name``, if any."""
    direction = None
    pending = list(getattr(model, "metrics", None) or ())
    while pending:
        metric = pending.pop(0)
        inner = getattr(metric, "metrics", None)
        if isinstance(inner, (list, tuple)):
            pending.extend(inner)
        if getattr(metric, "name", None) == name and getattr(metric, "_direction", None) in ("up", "down"):
            direction = metric._direction
    return direction


def _scalar(value):
    """A python float from a float or 0-d tensor/array (a tensor waits for the device)."""
    return value if isinstance(value, float) else float(value)


class MonitorCallback(Callback):
    """Base class for callbacks that watch one logged quantity for improvement.

    Resolves ``mode="auto"`` on first use: ``loss``/``val_loss`` and error metrics are
    minimized; accuracy-like metrics (``acc``, ``accuracy``, ``auc``, ``precision``,
    ...) are maximized; otherwise a model metric's ``_direction`` decides, as in Keras.
    An improvement must beat the reference by more than ``min_delta``.

    Args:
        monitor: the log key to watch. Defaults to ``"val_loss"``.
        mode: ``"auto"``, ``"min"`` or ``"max"``. Defaults to ``"auto"``.
        baseline: the initial best value; ``None`` (default) takes the first value.
        min_delta: the smallest change that counts as an improvement. Defaults to 0.

    Example:
    >>> watcher = MonitorCallback(monitor="val_accuracy", min_delta=0.01)
    >>> watcher._set_monitor_op()
    >>> watcher._is_improvement(0.905, 0.9), watcher._is_improvement(0.92, 0.9)
    (False, True)
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.",
                stacklevel=2,
            )
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = operator.lt
        elif self.mode == "max":
            self.monitor_op = operator.gt
        else:
            name = self.monitor.removeprefix("val_")
            direction = _model_metric_direction(self.model, name)
            if direction is None and name not in _MINIMIZED and name not in _MAXIMIZED:
                # "auc_3" (a repeated metric) or "cls_accuracy" (an output's metric).
                name = re.sub(r"_\d+$", "", name)
                for known in sorted(_MINIMIZED | _MAXIMIZED, key=len, reverse=True):
                    if name.endswith("_" + known):
                        name = known
                        break
            if direction is not None:
                self.monitor_op = operator.gt if direction == "up" else operator.lt
            elif name in _MINIMIZED:
                self.monitor_op = operator.lt
            elif name in _MAXIMIZED:
                self.monitor_op = operator.gt
            else:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, but "
                    "cannot tell whether that metric should be maximized or minimized. Pass "
                    "mode='max' to monitor the highest value, or mode='min' to monitor the "
                    "lowest value."
                )
        # Stored negated for minimization, so `current - min_delta` works both ways.
        if self.monitor_op is operator.lt:
            self.min_delta = -abs(self.min_delta)

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        return bool(self.monitor_op(monitor_value - self.min_delta, reference_value))


@register("callback")
class EarlyStopping(MonitorCallback):
    """Stops training when a monitored quantity has stopped improving.

    At each epoch end it compares ``logs[monitor]`` with the best value so far; after
    ``patience`` epochs without an improvement larger than ``min_delta`` it sets
    ``model.stop_training = True``. It warns when ``monitor`` is not in the logs.

    Args:
        monitor: the quantity to watch. Defaults to ``"val_loss"``.
        min_delta: minimum change that counts as an improvement. Defaults to 0.
        patience: epochs without improvement before stopping. Defaults to 0.
        verbose: 1 prints a message when it stops or restores. Defaults to 0.
        mode: ``"auto"``, ``"min"`` or ``"max"``. Defaults to ``"auto"``.
        baseline: training stops unless the model beats this value within
            ``patience`` epochs. Defaults to None.
        restore_best_weights: at the end of training, set the weights of the best
            epoch (even if training did not stop early). Defaults to False.
        start_from_epoch: epochs of warm-up before monitoring starts. Defaults to 0.

    Example:
    >>> class Model:
    ...     stop_training = False
    >>> stopper = EarlyStopping(monitor="loss", patience=1)
    >>> stopper.set_model(Model())
    >>> stopper.on_train_begin()
    >>> for epoch, loss in enumerate([0.5, 0.4, 0.45]):
    ...     stopper.on_epoch_end(epoch, {"loss": loss})
    >>> stopper.model.stop_training, stopper.stopped_epoch
    (True, 2)
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        # Reset, so one instance can serve several fit() calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()  # late, so the model's metrics exist
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Only beating the baseline as well restarts the patience count.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print_msg(
                    f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        """``logs[monitor]``, or None with a warning listing the available keys."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not "
                f"available. Available metrics are: {','.join(list(logs.keys()))}",
                stacklevel=2,
            )
        return value

    def get_config(self):
        return {
            "monitor": self.monitor, "min_delta": abs(self.min_delta), "patience": self.patience,
            "verbose": self.verbose, "mode": self.mode, "baseline": self.baseline,
            "restore_best_weights": self.restore_best_weights,
            "start_from_epoch": self.start_from_epoch,
        }


_MODEL_EXTENSIONS = (".keras", ".lamina", ".h5")
_WEIGHTS_EXTENSIONS = (".weights.h5", ".weights.safetensors")


@register("callback")
class ModelCheckpoint(MonitorCallback):
    """Saves the model or its weights every epoch or every ``save_freq`` batches.

    ``filepath`` may hold ``str.format`` fields filled from ``epoch`` (1-based),
    ``batch`` (1-based, batch-level saving) and the log keys, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.2f}.keras"``. Full models need a ``.keras``,
    ``.lamina`` or ``.h5`` path; ``save_weights_only=True`` needs ``.weights.h5`` or
    ``.weights.safetensors``. Missing directories are created.

    Args:
        filepath: str or PathLike, where to save (a template, see above).
        monitor: the quantity ``save_best_only`` compares. Defaults to ``"val_loss"``.
        verbose: 1 prints a message for each decision. Defaults to 0.
        save_best_only: save only when ``monitor`` improved (a fixed ``filepath`` is
            then overwritten by each better model). Defaults to False.
        save_weights_only: call ``model.save_weights`` instead of ``model.save``.
            Defaults to False.
        mode: ``"auto"``, ``"min"`` or ``"max"``. Defaults to ``"auto"``.
        save_freq: ``"epoch"`` or an int: save after this many batches. Defaults to
            ``"epoch"``.
        initial_value_threshold: the best value to beat before the first save with
            ``save_best_only``. Defaults to None.

    Example:
    >>> class Model:
    ...     def save(self, filepath, overwrite=True):
    ...         print("saved", filepath)
    >>> checkpoint = ModelCheckpoint("model-{epoch:02d}-{loss:.2f}.keras", monitor="loss")
    >>> checkpoint.set_model(Model())
    >>> checkpoint.on_epoch_end(2, {"loss": 0.1234})
    saved model-03-0.12.keras
    """

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
        save_freq="epoch",
        initial_value_threshold=None,
    ):
        super().__init__(monitor, mode, initial_value_threshold)
        self.verbose = verbose
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None
        self._current_epoch = 0
        if save_freq != "epoch" and not isinstance(save_freq, int):
            raise ValueError(
                f"Unrecognized save_freq: {save_freq!r}. Expected save_freq='epoch' or an "
                "integer number of batches between saves."
            )
        if save_weights_only and not self.filepath.endswith(_WEIGHTS_EXTENSIONS):
            raise ValueError(
                "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath must "
                "end in `.weights.h5` or `.weights.safetensors`. Received: "
                f"filepath={self.filepath}"
            )
        if not save_weights_only and not self.filepath.endswith(_MODEL_EXTENSIONS):
            raise ValueError(
                "The filepath provided to `ModelCheckpoint` must end in `.keras`, `.lamina` "
                "or `.h5` to save the whole model, or pass save_weights_only=True with a "
                f"`.weights.safetensors` path. Received: filepath={self.filepath}"
            )

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(epoch=self._current_epoch, batch=batch, logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch=epoch, batch=None, logs=logs)

    def get_config(self):
        return {
            "filepath": self.filepath, "monitor": self.monitor, "verbose": self.verbose,
            "save_best_only": self.save_best_only, "save_weights_only": self.save_weights_only,
            "mode": self.mode, "save_freq": self.save_freq,
            "initial_value_threshold": self.initial_value_threshold,
        }

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            added = batch + 1  # a new epoch started; batches are 0-based
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _should_save_model(self, epoch, logs, filepath):
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        if getattr(current, "ndim", 0) > 0:
            warnings.warn(
                "Can save best model only when `monitor` is a scalar value. Received: "
                f"{current}. Falling back to `save_best_only=False`.",
                stacklevel=3,
            )
            return True
        current = _scalar(current)
        best_text = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_text} to "
                    f"{current:.5f}, saving model to {filepath}"
                )
            self.best = current
            return True
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_text}")
        return False

    def _save_model(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, logs, filepath):
            return
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        try:
            if self.save_weights_only:
                self.model.save_weights(filepath, overwrite=True)
            else:
                self.model.save(filepath, overwrite=True)
        except IsADirectoryError:
            raise IOError(
                "Please specify a non-directory filepath for ModelCheckpoint. Filepath used "
                f"is an existing directory: {filepath}"
            ) from None
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch, batch, logs):
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as error:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {error}. '
                "Use only {epoch}, {batch} and keys present in the logs."
            ) from None


@register("callback")
class ReduceLROnPlateau(MonitorCallback):
    """Multiplies the learning rate by ``factor`` when a metric stops improving.

    After ``patience`` epochs without an improvement larger than ``min_delta`` the
    optimizer's ``learning_rate`` becomes ``max(lr * factor, min_lr)``; then
    ``cooldown`` epochs pass before counting again. It adds ``learning_rate`` to the
    epoch logs (so ``History`` records it).

    Args:
        monitor: the quantity to watch. Defaults to ``"val_loss"``.
        factor: the multiplier, below 1. Defaults to 0.1.
        patience: epochs without improvement before a reduction. Defaults to 10.
        verbose: 1 prints a message at each reduction. Defaults to 0.
        mode: ``"auto"``, ``"min"`` or ``"max"``. Defaults to ``"auto"``.
        min_delta: minimum change that counts as an improvement. Defaults to 1e-4.
        cooldown: epochs to wait after a reduction. Defaults to 0.
        min_lr: lower bound on the learning rate. Defaults to 0.0.

    Example:
    >>> class Model:
    ...     class optimizer:
    ...         learning_rate = 0.1
    >>> reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
    >>> reduce.set_model(Model())
    >>> reduce.on_train_begin()
    >>> for epoch, loss in enumerate([1.0, 1.0, 1.0]):
    ...     reduce.on_epoch_end(epoch, {"loss": loss})
    >>> Model.optimizer.learning_rate
    0.025
    """

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(
                f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}. "
                "Pass a factor below 1, e.g. factor=0.1."
            )
        self.factor = factor
        self.min_lr = min_lr
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs or {}
        for name, optimizer in _optimizers(self.model.optimizer):
            key = f"learning_rate_{name}" if name else "learning_rate"
            logs[key] = float(optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is "
                f"not available. Available metrics are: {','.join(list(logs.keys()))}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                reduced = False
                for name, optimizer in _optimizers(self.model.optimizer):
                    reduced = self._reduce_optimizer_lr(optimizer, epoch, name) or reduced
                if reduced:
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def in_cooldown(self):
        """Whether the callback is waiting out ``cooldown`` after a reduction."""
        return self.cooldown_counter > 0

    def _reduce_optimizer_lr(self, optimizer, epoch, name=""):
        old_lr = float(optimizer.learning_rate)
        # Keras compares with the float32 min_lr, so a lr already at min_lr stays put.
        if old_lr <= np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            name_text = f" {name}" if name else ""
            print_msg(
                f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing{name_text} learning rate "
                f"to {new_lr}."
            )
        return True

    def get_config(self):
        return {
            "monitor": self.monitor, "factor": self.factor, "patience": self.patience,
            "verbose": self.verbose, "mode": self.mode, "min_delta": abs(self.min_delta),
            "cooldown": self.cooldown, "min_lr": self.min_lr,
        }


def _optimizers(optimizer):
    """``(name, optimizer)`` pairs: the optimizer itself (name ``""``), or the parts of
    a multi-optimizer exposing ``optimizers``."""
    parts = getattr(optimizer, "optimizers", None)
    if parts is None:
        return [("", optimizer)]
    return [(part.name, part) for part in parts]


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch start to ``schedule(epoch, lr)``.

    ``schedule`` gets the 0-based epoch and the current learning rate (a float) and
    returns the new one as a float; a one-argument ``schedule(epoch)`` also works.
    It adds ``learning_rate`` to the epoch logs.

    Args:
        schedule: the function ``(epoch, lr) -> float``.
        verbose: 1 prints the rate set at each epoch. Defaults to 0.

    Example:
    >>> class Model:
    ...     class optimizer:
    ...         learning_rate = 0.1
    >>> scheduler = LearningRateScheduler(lambda epoch, lr: lr / 2 if epoch > 0 else lr)
    >>> scheduler.set_model(Model())
    >>> for epoch in range(3):
    ...     scheduler.on_epoch_begin(epoch)
    >>> Model.optimizer.learning_rate
    0.025
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def _update_optimizer_lr(self, optimizer, epoch):
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError(
                'Optimizer must have a "learning_rate" attribute for LearningRateScheduler; '
                f"received {type(optimizer).__name__}."
            )
        try:
            learning_rate = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # the older one-argument schedule(epoch)
            learning_rate = self.schedule(epoch)
        if isinstance(learning_rate, torch.Tensor) and learning_rate.ndim == 0:
            learning_rate = float(learning_rate)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError(
                "The output of the `schedule` function should be a float. "
                f"Got: {learning_rate!r} of type {type(learning_rate).__name__}. "
                "Return e.g. float(new_lr)."
            )
        optimizer.learning_rate = float(learning_rate)
        return learning_rate

    def on_epoch_begin(self, epoch, logs=None):
        for name, optimizer in _optimizers(self.model.optimizer):
            learning_rate = self._update_optimizer_lr(optimizer, epoch)
            if self.verbose > 0:
                target = f"{name} learning rate" if name else "learning rate"
                print_msg(
                    f"\nEpoch {epoch + 1}: LearningRateScheduler setting {target} to "
                    f"{learning_rate}."
                )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for name, optimizer in _optimizers(self.model.optimizer):
            key = f"learning_rate_{name}" if name else "learning_rate"
            logs[key] = float(optimizer.learning_rate)


@register("callback")
class CSVLogger(Callback):
    """Streams each epoch's logs to a CSV file, one row per epoch.

    Columns are ``epoch`` then the sorted log keys of the first epoch (plus ``val_``
    columns when the first epoch has none, filled with ``NA``). 1-D values are written
    as ``"[a, b]"``.

    Args:
        filename: the CSV file, e.g. ``"run/log.csv"``.
        separator: the column separator. Defaults to ``","``.
        append: append to an existing file (no second header) instead of
            overwriting it. Defaults to False.

    Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> logger = CSVLogger(path)
    >>> logger.on_train_begin()
    >>> logger.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.75})
    >>> logger.on_train_end()
    >>> path.read_text().splitlines()
    ['epoch,loss,val_loss', '0,0.5,0.75']
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as file:
                    self.append_header = not bool(len(file.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode)
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs.keys())
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend([f"val_{key}" for key in self.keys])
        if self.writer is None:
            dialect = type("_Dialect", (csv.excel,), {"delimiter": self.sep})
            self.writer = csv.DictWriter(
                self.csv_file, fieldnames=["epoch"] + self.keys, dialect=dialect
            )
            if self.append_header:
                self.writer.writeheader()
        row = collections.OrderedDict({"epoch": epoch})
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None

    def get_config(self):
        return {"filename": self.filename, "separator": self.sep, "append": self.append}


def _csv_value(value):
    if isinstance(value, str):
        return value
    is_scalar_array = isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 0
    if isinstance(value, Iterable) and not is_scalar_array:
        return f'"[{", ".join(map(str, value))}]"'
    return value


@register("callback")
class TerminateOnNaN(Callback):
    """Stops training as soon as a batch's ``loss`` is NaN or infinite.

    It reads ``logs["loss"]`` after every training batch, which makes the host wait
    for the device each batch.

    Args:
        raise_error: raise ``RuntimeError`` at once (skipping the other callbacks'
            ``on_train_end``) instead of setting ``model.stop_training``.
            Defaults to False.

    Example:
    >>> class Model:
    ...     stop_training = False
    >>> terminate = TerminateOnNaN()
    >>> terminate.set_model(Model())
    >>> terminate.on_train_batch_end(3, {"loss": float("nan")})
    Batch 3: Invalid loss, terminating training
    >>> terminate.model.stop_training
    True
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = _scalar(loss)
        if math.isnan(loss) or math.isinf(loss):
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                    "Terminating training immediately."
                )
            print_msg(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True

    def get_config(self):
        return {"raise_error": self.raise_error}


class LambdaCallback(Callback):
    """Builds a callback from plain functions, one per hook.

    ``on_epoch_begin``/``on_epoch_end`` take ``(epoch, logs)``; ``on_train_begin``/
    ``on_train_end`` take ``(logs)``; batch hooks take ``(batch, logs=...)``. Any
    other hook can be passed by name as a keyword argument (``on_test_end=...``).

    Args:
        on_epoch_begin: called at the start of every epoch.
        on_epoch_end: called at the end of every epoch.
        on_train_begin: called when training starts.
        on_train_end: called when training ends.
        on_train_batch_begin: called before every training batch.
        on_train_batch_end: called after every training batch.
        **kwargs: any other hook, as ``hook_name=function``.

    Example:
    >>> callback = LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
    >>> callback.on_epoch_end(4, {"loss": 0.5})
    4 0.5
    """

    def __init__(
        self,
        on_epoch_begin=None,
        on_epoch_end=None,
        on_train_begin=None,
        on_train_end=None,
        on_train_batch_begin=None,
        on_train_batch_end=None,
        **kwargs,
    ):
        super().__init__()
        self.__dict__.update(kwargs)
        hooks = {
            "on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin, "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
        }
        for name, function in hooks.items():
            if function is not None:
                setattr(self, name, function)
