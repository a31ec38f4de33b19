"""The text progress bar that ``fit``/``evaluate``/``predict`` print, in Keras 3's format.

Owns ``Progbar`` and the one helper that writes messages to ``sys.stdout``. It knows
nothing about models or callbacks; ``lamina.training.callbacks.ProgbarLogger`` drives it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["Progbar"]

_BOLD, _GREEN, _WHITE, _RESET = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"


def print_msg(message, line_break=True):
    """Write ``message`` to the current ``sys.stdout`` and flush it.

    ``sys.stdout`` is looked up at each call, so redirections and pytest's capsys
    see the output. On a stream that cannot encode the bar character ``━`` it
    falls back to ``=`` as Keras does.

    >>> print_msg("Epoch 1/2")
    Epoch 1/2
    """
    message = f"{message}\n" if line_break else str(message)
    stream = sys.stdout
    try:
        stream.write(message)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        message = message.replace("━", "=").encode(encoding, errors="ignore").decode(encoding)
        stream.write(message)
    stream.flush()


def _number(value) -> float:
    """A displayable float from a python number, numpy value or torch tensor (may sync)."""
    if isinstance(value, (float, int)):
        return float(value)
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean())
    return float(np.mean(value))


class Progbar:
    """Displays a progress bar, exactly as ``keras.utils.Progbar`` does.

    On a terminal (``sys.stdout.isatty()``, or inside Jupyter/PyCharm) ``verbose=1``
    redraws one line in place with ``\\r``, at most every ``interval`` seconds, in
    Keras's colours. Anywhere else (a log file, a pipe) it prints one plain line
    when the bar is finalized and nothing per step. ``verbose=2`` prints one line
    per finalized bar (``"45/45 - 1s - 3ms/step - loss: 0.6213"``).

    If neither ``stateful_metrics`` nor ``stateless_metrics`` is given, every
    metric is stateless: the bar shows its average over the updates (a finalizing
    update's value replaces the average, as in Keras). Values are
    python numbers, numpy values or 0-d torch tensors; stateful values passed in a
    ``Mapping`` are read only when the bar is redrawn, so a training loop can pass
    device tensors every step without waiting for them.

    Args:
        target: total number of steps expected, ``None`` if unknown.
        width: the bar's width in characters. Defaults to 20.
        verbose: 0 (silent), 1 (bar) or 2 (one line when finalized). Defaults to 1.
        interval: minimum seconds between two redraws. Defaults to 0.05.
        stateful_metrics: names of metrics shown as they are (not averaged).
        stateless_metrics: names of metrics averaged over time; every other metric
            is then stateful. Give at most one of the two.
        unit_name: what a step is called in the display. Defaults to ``"step"``.

    Example:
    >>> bar = Progbar(target=2, verbose=2)
    >>> bar.update(1, {"loss": 0.5})
    >>> bar.update(2, {"loss": 0.25})  # doctest: +ELLIPSIS
    2/2 - 0s - ...s/step - loss: 0.2500
    """

    def __init__(
        self,
        target,
        width=20,
        verbose=1,
        interval=0.05,
        stateful_metrics=None,
        stateless_metrics=None,
        unit_name="step",
    ):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError(
                "Progbar accepts only one of `stateful_metrics` (metrics not averaged; all "
                "others are averaged) and `stateless_metrics` (metrics averaged; all others "
                f"are shown as is). Received stateful_metrics={stateful_metrics!r} and "
                f"stateless_metrics={stateless_metrics!r}; pass only one of them."
            )
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        if stateless_metrics is not None:
            self.stateful_metrics = None
            self.stateless_metrics = set(stateless_metrics)
        else:
            self.stateful_metrics = set(stateful_metrics or ())
            self.stateless_metrics = None
        isatty = getattr(sys.stdout, "isatty", None)
        self._dynamic_display = bool(
            (isatty is not None and isatty())
            or "ipykernel" in sys.modules
            or "PYCHARM_HOSTED" in os.environ
        )
        self._seen_so_far = 0
        # name -> [sum, count]; dict order is display order (first appearance).
        self._values = {}
        # name -> the Mapping holding its latest stateful value, read at redraw.
        self._pending = {}
        self._start = time.time()
        self._last_update = 0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def update(self, current, values=None, finalize=None):
        """Record step ``current`` and redraw if it is time to.

        Args:
            current: index of the current step (1-based).
            values: ``(name, value)`` pairs for this step, or a Mapping of them.
            finalize: whether this is the last update; defaults to
                ``current >= target``.

        >>> Progbar(target=1, verbose=0).update(1, {"loss": 0.5})
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._record(current, values, finalize)
        self._seen_so_far = current
        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if not finalize and (
                not self._dynamic_display or now - self._last_update < self.interval
            ):
                return
            self._resolve_pending()
            print_msg(self._bar_line(current, now, time_per_unit, finalize), line_break=False)
        elif self.verbose == 2 and finalize and self.target is not None and self.target > 0:
            self._resolve_pending()
            print_msg(self._summary_line(current, now, time_per_unit), line_break=False)
        self._last_update = now

    def add(self, n, values=None):
        """Advance the bar by ``n`` steps.

        >>> bar = Progbar(target=4, verbose=0)
        >>> bar.add(3)
        >>> bar._seen_so_far
        3
        """
        self.update(self._seen_so_far + n, values)

    def _is_stateless(self, name):
        if self.stateful_metrics is not None:
            return name not in self.stateful_metrics
        return name in self.stateless_metrics

    def _record(self, current, values, finalize):
        lazy = isinstance(values, Mapping)
        for item in values or ():
            name, value = (item, None) if lazy else item
            if not self._is_stateless(name):
                if lazy:
                    # Keep only a reference: the value is read when the bar redraws.
                    self._values.setdefault(name, None)
                    self._pending[name] = values
                else:
                    self._values[name] = [value, 1]
                    self._pending.pop(name, None)
                continue
            if lazy:
                value = values[name]
            if finalize:
                # A finalizing value is already the epoch's aggregate (Keras's rule).
                self._values[name] = [value, 1]
            else:
                weight = max(current - self._seen_so_far, 1)
                entry = self._values.get(name)
                if entry is None:
                    self._values[name] = [value * weight, weight]
                else:
                    entry[0] = entry[0] + value * weight
                    entry[1] += weight

    def _resolve_pending(self):
        for name, source in self._pending.items():
            self._values[name] = [source[name], 1]
        self._pending.clear()

    def _metric_averages(self):
        for name, (total, count) in self._values.items():
            yield name, _number(total) / max(1, count)

    def _bar_line(self, current, now, time_per_unit, finalize):
        styled = self._dynamic_display

        def style(text, code):
            return f"{code}{text}{_RESET}" if styled else text

        # Escape codes take no room on screen; Keras subtracts their length.
        special_chars = 0
        if self.target is not None and self.target > 0:
            num_digits = int(math.log10(self.target)) + 1
            bar = style(f"%{num_digits}d/%d" % (current, self.target), _BOLD) + " "
            special_chars += 8
            progress_width = int(self.width * float(current) / self.target)
            if progress_width > 0:
                bar += style("━" * progress_width, _GREEN)
                special_chars += 9
            bar += style("━" * (self.width - progress_width), _WHITE)
            special_chars += 9
        else:
            bar = "%7d/Unknown" % current

        if self.target is not None and self.target > 0 and not finalize:
            eta = time_per_unit * (self.target - current)
            if eta > 3600:
                eta_text = "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
            elif eta > 60:
                eta_text = "%d:%02d" % (eta // 60, eta % 60)
            else:
                eta_text = "%ds" % eta
            info = " " + style(eta_text, _BOLD)
        else:
            info = " " + style(f"{now - self._start:.0f}s", _BOLD)
        special_chars += 8
        info += _format_time(time_per_unit, self.unit_name)
        for name, average in self._metric_averages():
            info += f" - {name}: {average:.4f}" if abs(average) > 1e-3 else f" - {name}: {average:.4e}"

        if not styled:
            return bar + info + "\n"
        total_width = len(bar) + len(info) - special_chars
        message = "\b" * self._prev_total_width + "\r" + bar + info
        if self._prev_total_width > total_width:
            message += " " * (self._prev_total_width - total_width)
        if finalize:
            message += "\n"
        self._prev_total_width = total_width
        return message

    def _summary_line(self, current, now, time_per_unit):
        num_digits = int(math.log10(self.target)) + 1
        info = f"%{num_digits}d/%d" % (current, self.target) + f" - {now - self._start:.0f}s"
        info += " -" + _format_time(time_per_unit, self.unit_name)
        for name, average in self._metric_averages():
            # Keras compares without abs() here, so negative values print as 1e.
            info += f" - {name}: {average:.4f}" if average > 1e-3 else f" - {name}: {average:.4e}"
        return info + "\n"

    def _estimate_step_duration(self, current, now):
        """Seconds per step, leaving out the (slow, warm-up) first step once possible."""
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit


def _format_time(time_per_unit, unit_name):
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1000.0:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1000000.0:.0f}us/{unit_name}"
