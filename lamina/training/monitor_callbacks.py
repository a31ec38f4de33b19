"""Monitor callbacks: ``MonitorCallback`` (the one place for monitor/mode/min_delta logic)
and the callbacks built on it: ``EarlyStopping``, ``ModelCheckpoint``, ``ReduceLROnPlateau``.
They are re-exported by ``lamina.training.callbacks``, which owns ``Callback`` itself.
"""

from __future__ import annotations

import operator
import os
import re
import warnings

import numpy as np

from lamina.registry import register
from lamina.training.callbacks import Callback, _optimizers, _scalar
from lamina.utils.progbar import print_msg


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
