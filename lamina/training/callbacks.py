"""Callbacks: the hooks that ``fit``/``evaluate``/``predict`` call, and Keras's built-in ones.

Owns ``Callback``, ``CallbackList`` (dispatch) and the built-ins that need no monitor. The
monitor-based ones live in ``lamina.training.monitor_callbacks`` and are re-exported here.
"""

from __future__ import annotations

import collections
import csv
import math
import os
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


def _scalar(value):
    """A python float from a float or 0-d tensor/array (a tensor waits for the device)."""
    return value if isinstance(value, float) else float(value)


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


# Re-exported last: monitor_callbacks imports Callback and the helpers above from this module.
from lamina.training.monitor_callbacks import (  # noqa: E402
    EarlyStopping,
    ModelCheckpoint,
    MonitorCallback,
    ReduceLROnPlateau,
)
