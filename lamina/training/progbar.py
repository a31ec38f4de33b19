"""``ProgbarLogger``: the callback that prints ``Epoch 1/10`` and the progress bar.

It turns callback hooks into ``lamina.utils.Progbar`` updates without reading batch
logs between redraws. The bar's format lives in ``lamina.utils.progbar``.
"""

from __future__ import annotations

from collections.abc import Mapping

from lamina.registry import register
from lamina.training.callbacks import Callback
from lamina.utils.progbar import Progbar, print_msg

__all__ = ["ProgbarLogger"]


class _SortedLogs(Mapping):
    """A key-sorted, read-through view of batch logs: orders the bar as Keras does
    without reading (or copying) any value."""

    __slots__ = ("_logs",)

    def __init__(self, logs):
        self._logs = logs

    def __getitem__(self, key):
        return self._logs[key]

    def __iter__(self):
        return iter(sorted(self._logs))

    def __len__(self):
        return len(self._logs)


@register("callback")
class ProgbarLogger(Callback):
    """Prints the ``Epoch 1/10`` line and a progress bar with the metrics.

    ``fit`` adds one when ``verbose != 0``. It reads ``verbose``, ``epochs`` and
    ``steps`` from ``params``. Inside ``fit`` the validation pass is silent. Batch
    logs are read only when the bar redraws (see ``lamina.utils.Progbar``).

    Example:
    >>> logger = ProgbarLogger()
    >>> logger.set_params({"verbose": 2, "epochs": 2, "steps": 1})
    >>> logger.on_train_begin()
    >>> logger.on_epoch_begin(0)
    Epoch 1/2
    >>> logger.on_train_batch_end(0, {"loss": 0.5})
    >>> logger.on_epoch_end(0, {"loss": 0.5})  # doctest: +ELLIPSIS
    1/1 - 0s - ...s/step - loss: 0.5000
    """

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)  # predictions are not metrics

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def get_config(self):
        return {}

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self):
        if self.progbar is None:
            # Every metric is stateful: the trainer already averages over the epoch.
            self.progbar = Progbar(
                target=self.target, verbose=self.verbose, unit_name="step", stateless_metrics=set()
            )

    def _update_progbar(self, batch, logs):
        self._maybe_init_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, _SortedLogs(logs) if logs else None, finalize=False)

    def _finalize_progbar(self, logs):
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.target
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)
