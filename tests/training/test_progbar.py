"""Progbar (lamina.utils.progbar) and ProgbarLogger (lamina.training.progbar): exact output
with fake streams and a controlled clock, compared byte for byte with Keras on a terminal."""

import contextlib
import importlib
import re
import sys
from collections.abc import Mapping

import pytest
import torch

from lamina.training import callbacks as lc
from lamina.training.progbar import ProgbarLogger
from lamina.utils import progbar as progbar_module
from lamina.utils.progbar import Progbar


class Clock:
    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


class FakeStream:
    """A stdout stand-in: a terminal or a pipe, optionally unable to encode the bar."""

    def __init__(self, tty, encoding="utf-8"):
        self.tty, self.encoding, self.parts = tty, encoding, []

    def write(self, text):
        text.encode(self.encoding)  # raises UnicodeEncodeError like a real ascii stream
        self.parts.append(text)

    def flush(self):
        pass

    def isatty(self):
        return self.tty

    def take(self):
        text, self.parts = "".join(self.parts), []
        return text


class CountingLogs(Mapping):
    """Batch logs whose value reads are counted (a lazy trainer Mapping)."""

    def __init__(self, values):
        self._values, self.reads = values, 0

    def __getitem__(self, key):
        self.reads += 1
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progbar_module, "time", clock)
    return clock


@pytest.fixture
def keras_clock(keras, clock, monkeypatch):
    monkeypatch.setattr(importlib.import_module(keras.utils.Progbar.__module__), "time", clock)
    return clock


# Streams are installed with redirect_stdout inside each test: pytest re-installs its
# own sys.stdout between fixture set-up and the test call.
@pytest.fixture
def terminal():
    return FakeStream(tty=True)


@pytest.fixture
def pipe(monkeypatch):
    monkeypatch.delenv("PYCHARM_HOSTED", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    return FakeStream(tty=False)


def run_bar(bar_class, stream, clock, target, script, **kwargs):
    """Feed ``script`` rows ``(seconds, current, values, finalize)`` to a new bar."""
    clock.now = 1000.0
    with contextlib.redirect_stdout(stream):
        bar = bar_class(target, **kwargs)
        for seconds, current, values, finalize in script:
            clock.now += seconds
            bar.update(current, values, finalize=finalize)
    return stream.take()


def steps(count, seconds, first=0.5, finalize_last=None):
    """A script of ``count`` updates with two metrics, the first update taking ``first``."""
    rows = []
    for step in range(1, count + 1):
        values = [("loss", 1.0 / step), ("acc", 0.1 * step - 0.35)]
        finalize = finalize_last if step == count else None
        rows.append((first if step == 1 else seconds, step, values, finalize))
    return rows


BAR_SCRIPTS = {
    "regular": (4, steps(4, 0.3)),
    "throttled": (20, steps(20, 0.01)),
    "unknown_target": (None, steps(5, 0.2, finalize_last=True)),
    "unfinished": (100, steps(3, 0.2)),
    "eta_minutes": (50, steps(3, 2.0)),
    "eta_hours": (1000, steps(3, 10.0)),
    "microseconds": (3, steps(3, 2e-5, first=1e-5)),
    "seconds_per_step": (2, steps(2, 3.0)),
    "tiny_and_negative": (2, [(0.1, 1, [("loss", 1e-5), ("delta", -0.5)], None),
                              (0.1, 2, [("loss", 2e-5), ("delta", -1e-4)], None)]),
    "jumps": (10, [(0.1, 3, [("loss", 1.0)], None), (0.1, 7, [("loss", 0.5)], None),
                   (0.1, 10, [("loss", 0.25)], None)]),
    "single_step": (1, [(0.4, 1, [("loss", 0.5)], None)]),
}


@pytest.mark.parametrize("verbose", [1, 2])
@pytest.mark.parametrize("metrics", [{}, {"stateful_metrics": ["acc"]}, {"stateless_metrics": ["loss"]}])
@pytest.mark.parametrize("name", sorted(BAR_SCRIPTS))
def test_progbar_matches_keras_on_terminal(keras, keras_clock, terminal, verbose, metrics, name):
    target, script = BAR_SCRIPTS[name]
    ours = run_bar(Progbar, terminal, keras_clock, target, script, verbose=verbose, **metrics)
    reference = run_bar(keras.utils.Progbar, terminal, keras_clock, target, script, verbose=verbose, **metrics)
    assert ours == reference
    finalized = script[-1][3] or (target is not None and script[-1][1] >= target)
    assert bool(ours) == (verbose == 1 or (finalized and target is not None))


def test_progbar_add_matches_keras(keras, keras_clock, terminal):
    outputs = []
    for bar_class in (Progbar, keras.utils.Progbar):
        keras_clock.now = 1000.0
        with contextlib.redirect_stdout(terminal):
            bar = bar_class(6)
            for n in (2, 2, 3):
                keras_clock.now += 0.1
                bar.add(n, [("loss", n / 10)])
        outputs.append(terminal.take())
    assert outputs[0] == outputs[1] and outputs[0].endswith(" - loss: 0.3000\n")


def _plain(text):
    """Keras's terminal output as its last visible line, without escapes or padding."""
    last = re.sub(r"\x1b\[[0-9;]*m", "", text).split("\r")[-1]
    return last.rstrip("\n").rstrip(" ") + "\n"


@pytest.mark.parametrize("name", ["regular", "throttled", "unknown_target", "jumps"])
def test_progbar_pipe_prints_only_keras_final_line(keras, keras_clock, terminal, pipe, name):
    target, script = BAR_SCRIPTS[name]
    ours = run_bar(Progbar, pipe, keras_clock, target, script)
    reference = run_bar(keras.utils.Progbar, terminal, keras_clock, target, script)
    assert ours == _plain(reference)
    assert ours.count("\n") == 1 and "\r" not in ours and "\x1b" not in ours


def test_progbar_pipe_exact_line(clock, pipe):
    script = [(0.5, 1, {"loss": 0.75}, None), (0.25, 2, {"loss": 0.5}, None), (0.25, 3, {"loss": 0.6213}, None)]
    assert run_bar(Progbar, pipe, clock, 3, script[:2]) == ""
    assert run_bar(Progbar, pipe, clock, 3, script) == (
        "3/3 ━━━━━━━━━━━━━━━━━━━━ 1s 250ms/step - loss: 0.6213\n"
    )


def test_progbar_terminal_exact_redraw(clock, terminal):
    script = [(0.5, 1, [("loss", 0.5)], None), (0.5, 2, [("loss", 0.25)], None)]
    output = run_bar(Progbar, terminal, clock, 2, script, stateful_metrics=["loss"])
    first = "\r\x1b[1m1/2\x1b[0m \x1b[32m━━━━━━━━━━\x1b[0m\x1b[37m━━━━━━━━━━\x1b[0m \x1b[1m0s\x1b[0m 500ms/step - loss: 0.5000"
    width = len("1/2 ━━━━━━━━━━━━━━━━━━━━ 0s 500ms/step - loss: 0.5000")
    second = ("\b" * width + "\r\x1b[1m2/2\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m "
              "\x1b[1m1s\x1b[0m 500ms/step - loss: 0.2500\n")
    assert output == first + second


def test_progbar_verbose_two_exact_line(clock, pipe):
    # The finalizing value replaces the running average (Keras's rule for epoch results).
    script = [(0.5, 1, [("loss", 0.5)], None), (0.5, 2, [("loss", 0.25)], None)]
    assert run_bar(Progbar, pipe, clock, 2, script, verbose=2) == "2/2 - 1s - 500ms/step - loss: 0.2500\n"


def test_progbar_verbose_zero_prints_nothing(clock, terminal):
    assert run_bar(Progbar, terminal, clock, 2, steps(2, 0.1), verbose=0) == ""
    assert run_bar(Progbar, terminal, clock, 2, steps(2, 0.1), verbose=1) != ""


def test_progbar_reads_stateful_mapping_only_when_redrawing(clock, terminal):
    logs = CountingLogs({"loss": torch.tensor(0.5), "acc": torch.tensor(0.25)})
    with contextlib.redirect_stdout(terminal):
        bar = Progbar(100, stateless_metrics=set())
        for step in range(1, 100):
            clock.now += 0.001  # 50 steps per redraw interval
            bar.update(step, logs)
        redraws = terminal.take().count("\r")
        assert redraws == 2 and logs.reads == 2 * redraws
        clock.now += 0.001
        bar.update(100, logs)
    assert logs.reads == 2 * (redraws + 1)
    assert terminal.take().endswith(" - loss: 0.5000 - acc: 0.2500\n")


def test_progbar_rejects_both_metric_sets():
    with pytest.raises(ValueError, match="only one of `stateful_metrics`"):
        Progbar(3, stateful_metrics=["a"], stateless_metrics=["b"])


def test_progbar_falls_back_to_ascii_bar(clock, pipe):
    stream = FakeStream(tty=False, encoding="ascii")
    output = run_bar(Progbar, stream, clock, 1, [(0.75, 1, [("loss", 0.5)], None)])
    assert output == "1/1 ==================== 1s 750ms/step - loss: 0.5000\n"


# --------------------------------------------------------------------------- ProgbarLogger

def _fit_epochs(logger, clock, epochs, steps_per_epoch, batch_logs, epoch_logs, validation=True):
    """Call a ProgbarLogger's hooks as fit does, with validation inside each epoch."""
    logger.on_train_begin()
    for epoch in range(epochs):
        logger.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            clock.now += 0.5 if step == 0 else 0.25
            logger.on_train_batch_begin(step)
            logger.on_train_batch_end(step, batch_logs(epoch, step))
        if validation:
            logger.on_test_begin()
            logger.on_test_batch_end(0, {"loss": 9.0})
            logger.on_test_end({"loss": 9.0})
        logger.on_epoch_end(epoch, epoch_logs(epoch))
    logger.on_train_end(epoch_logs(epochs - 1))


def _epoch_logs(epoch):
    return {"accuracy": 0.815 + epoch / 10, "loss": 0.6213, "val_accuracy": 0.7, "val_loss": 0.7}


def _tensor_batch_logs(epoch, step):
    # The order of a lamina trainer's logs ("loss" first); the bar must still sort.
    return {"loss": torch.tensor(1.0 / (step + 1)), "accuracy": torch.tensor(0.5 + epoch / 10)}


def _float_batch_logs(epoch, step):
    return {key: float(value) for key, value in sorted(_tensor_batch_logs(epoch, step).items())}


@pytest.mark.parametrize("verbose", [1, 2, "auto"])
@pytest.mark.parametrize("known_steps", [True, False])
@pytest.mark.parametrize("epochs", [1, 2])
def test_progbar_logger_fit_matches_keras_on_terminal(keras, keras_clock, terminal, verbose, known_steps, epochs):
    outputs = []
    for logger, batch_logs in ((ProgbarLogger(), _tensor_batch_logs),
                               (keras.callbacks.ProgbarLogger(), _float_batch_logs)):
        keras_clock.now = 1000.0
        logger.set_params({"verbose": verbose, "epochs": epochs, "steps": 3 if known_steps else None})
        with contextlib.redirect_stdout(terminal):
            _fit_epochs(logger, keras_clock, epochs, 3, batch_logs, _epoch_logs)
        outputs.append(terminal.take())
    assert outputs[0] == outputs[1]
    assert "val_loss: 0.7000" in outputs[0]


@pytest.mark.parametrize("mode", ["test", "predict"])
def test_progbar_logger_evaluate_and_predict_match_keras(keras, keras_clock, terminal, mode):
    outputs = []
    for logger in (ProgbarLogger(), keras.callbacks.ProgbarLogger()):
        keras_clock.now = 1000.0
        logger.set_params({"verbose": 1, "epochs": 1, "steps": 4})
        with contextlib.redirect_stdout(terminal):
            getattr(logger, f"on_{mode}_begin")()
            for step in range(4):
                keras_clock.now += 0.125
                getattr(logger, f"on_{mode}_batch_end")(step, {"loss": 2.0 - step / 4})
            getattr(logger, f"on_{mode}_end")({"loss": 1.625} if mode == "test" else None)
        outputs.append(terminal.take())
    assert outputs[0] == outputs[1] and "4/4" in outputs[0] and outputs[0].endswith("\n")


def test_progbar_logger_pipe_prints_one_line_per_epoch(clock, pipe):
    logger = ProgbarLogger()
    logger.set_params({"verbose": 1, "epochs": 2, "steps": 3})
    with contextlib.redirect_stdout(pipe):
        _fit_epochs(logger, clock, 2, 3, _tensor_batch_logs, _epoch_logs)
    assert pipe.take() == (
        "Epoch 1/2\n"
        "3/3 ━━━━━━━━━━━━━━━━━━━━ 1s 250ms/step - accuracy: 0.8150 - loss: 0.6213 - val_accuracy: 0.7000"
        " - val_loss: 0.7000\n"
        "Epoch 2/2\n"
        "3/3 ━━━━━━━━━━━━━━━━━━━━ 1s 250ms/step - accuracy: 0.9150 - loss: 0.6213 - val_accuracy: 0.7000"
        " - val_loss: 0.7000\n"
    )


def test_progbar_logger_verbose_two_exact_output(clock, terminal):
    logger = ProgbarLogger()
    logger.set_params({"verbose": 2, "epochs": 2, "steps": 3})
    with contextlib.redirect_stdout(terminal):
        _fit_epochs(logger, clock, 1, 3, _tensor_batch_logs, _epoch_logs, validation=False)
    assert terminal.take() == (
        "Epoch 1/2\n3/3 - 1s - 333ms/step - accuracy: 0.8150 - loss: 0.6213 - val_accuracy: 0.7000"
        " - val_loss: 0.7000\n"
    )


@pytest.mark.parametrize("tty", [True, False])
def test_progbar_logger_reads_batch_logs_only_when_redrawing(clock, pipe, tty):
    stream = FakeStream(tty=tty)
    logs = CountingLogs({"loss": torch.tensor(0.5), "accuracy": torch.tensor(0.25)})
    callbacks = lc.CallbackList([], add_history=True, add_progbar=True, model=type("M", (), {})(),
                                verbose=1, epochs=1, steps=200)
    with contextlib.redirect_stdout(stream):
        callbacks.on_train_begin()
        callbacks.on_epoch_begin(0)
        for step in range(200):
            clock.now += 2**-8  # exact in binary: 200 steps take 0.78 s
            callbacks.on_train_batch_begin(step)
            callbacks.on_train_batch_end(step, logs)
        redraws = stream.take().count("\r")
        assert logs.reads == 2 * redraws
        assert 10 < redraws < 20 if tty else redraws == 0
        callbacks.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.25})
        callbacks.on_train_end({"loss": 0.5})
    assert stream.take().endswith("\r\x1b[1m200/200\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m1s\x1b[0m"
                                  " 4ms/step - accuracy: 0.2500 - loss: 0.5000\n" if tty else
                                  "200/200 ━━━━━━━━━━━━━━━━━━━━ 1s 4ms/step - accuracy: 0.2500 - loss: 0.5000\n")


def test_progbar_logger_verbose_zero_is_silent(clock, terminal):
    logger = ProgbarLogger()
    logger.set_params({"verbose": 0, "epochs": 3, "steps": 2})
    with contextlib.redirect_stdout(terminal):
        _fit_epochs(logger, clock, 3, 2, _tensor_batch_logs, _epoch_logs)
    assert terminal.take() == ""
