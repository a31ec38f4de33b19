"""Callbacks driven with scripted logs (no training), checked against real Keras callbacks."""

import csv
import json
import operator
import types
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from lamina import registry
from lamina.training import callbacks as lc
from lamina.training.progbar import ProgbarLogger


class TinyModel:
    """Stand-in for a model: weights, an optimizer with a float learning rate, save files."""

    def __init__(self, learning_rate=0.1, metrics=None):
        self.stop_training = False
        self.weights = [np.zeros(2)]
        self.optimizer = types.SimpleNamespace(learning_rate=learning_rate)
        self.history = None
        self.saves = []
        if metrics is not None:
            self.metrics = metrics

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, filepath, overwrite=True):
        self._write("save", filepath)

    def save_weights(self, filepath, overwrite=True):
        self._write("save_weights", filepath)

    def _write(self, method, filepath):
        with open(filepath, "w") as file:
            file.write(method)
        self.saves.append((method, str(filepath)))


def drive(callback, model, epoch_logs, batches=0, batch_logs=None):
    """Call the hooks in fit's order; epoch ``e`` has weights ``[e, e]``. Returns epochs run."""
    callback.set_model(model)
    callback.on_train_begin()
    ran, logs = [], {}
    for epoch, logs in enumerate(epoch_logs):
        model.weights = [np.full(2, float(epoch))]
        callback.on_epoch_begin(epoch)
        for step in range(batches):
            callback.on_train_batch_begin(step)
            callback.on_train_batch_end(step, batch_logs(epoch, step) if batch_logs else {})
        callback.on_epoch_end(epoch, dict(logs))
        ran.append(epoch)
        if model.stop_training:
            break
    callback.on_train_end(dict(logs))
    return ran


# Keras resolves mode="auto" for metric names only through a compiled model's metrics;
# the stand-in model has none, so Keras gets the mode explicitly (lamina stays on auto).
KERAS_MODE = {"val_acc": "max", "auc": "max", "val_mse": "min"}


def run_both(keras, capsys, name, kwargs, script, lamina_warning=None, **drive_kwargs):
    """Drive lamina's and Keras's callback ``name`` alike; return both outcomes."""
    outcomes = []
    for module in (lc, keras.callbacks):
        model = TinyModel()
        arguments = dict(kwargs)
        auto = arguments.get("mode", "auto") == "auto"
        if module is not lc and auto and arguments.get("monitor") in KERAS_MODE:
            arguments["mode"] = KERAS_MODE[arguments["monitor"]]
        callback = getattr(module, name)(**arguments)
        if module is lc and lamina_warning is not None:
            with pytest.warns(UserWarning, match=lamina_warning):
                ran = drive(callback, model, script, **drive_kwargs)
        else:
            ran = drive(callback, model, script, **drive_kwargs)
        outcomes.append((callback, model, ran, capsys.readouterr().out))
    return outcomes


# --------------------------------------------------------------------------- EarlyStopping

LOSSES = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_patience(patience):
    stopper = lc.EarlyStopping(monitor="loss", patience=patience)
    drive(stopper, TinyModel(), [{"loss": loss} for loss in LOSSES])
    assert stopper.stopped_epoch == max(patience, 1) + 2


EARLY_STOPPING_CASES = [
    ({"monitor": "loss", "patience": 2}, [{"loss": v} for v in LOSSES]),
    ({"monitor": "loss", "min_delta": 0.5, "patience": 1}, [{"loss": v} for v in [1.0, 0.8, 0.6, 0.4]]),
    ({"monitor": "loss", "min_delta": 0.15, "patience": 1}, [{"loss": v} for v in [1.0, 0.8, 0.7, 0.4]]),
    ({"monitor": "val_acc", "patience": 1}, [{"val_acc": v} for v in [0.5, 0.6, 0.55, 0.58, 0.7]]),
    ({"monitor": "val_accuracy", "mode": "min", "patience": 0}, [{"val_accuracy": v} for v in [0.5, 0.4, 0.6]]),
    ({"monitor": "auc", "patience": 1, "verbose": 1}, [{"auc": v} for v in [0.5, 0.7, 0.6, 0.65]]),
    ({"monitor": "val_mse", "patience": 1}, [{"val_mse": v} for v in [0.5, 0.4, 0.45, 0.3, 0.35, 0.36]]),
    ({"monitor": "loss", "baseline": 0.5, "patience": 2}, [{"loss": v} for v in [0.9, 0.95, 0.97, 0.99]]),
    ({"monitor": "loss", "baseline": 0.5, "patience": 2}, [{"loss": v} for v in [0.9, 0.8, 0.7, 0.6, 0.55]]),
    ({"monitor": "loss", "baseline": 0.5, "patience": 2}, [{"loss": v} for v in [0.6, 0.4, 0.45, 0.46, 0.47]]),
    ({"monitor": "loss", "patience": 2, "restore_best_weights": True, "verbose": 1},
     [{"loss": v} for v in [1.0, 0.5, 0.7, 0.8, 0.9]]),
    ({"monitor": "loss", "patience": 5, "restore_best_weights": True, "verbose": 1},
     [{"loss": v} for v in [1.0, 0.5, 0.7]]),
    ({"monitor": "loss", "patience": 1, "baseline": 0.1, "restore_best_weights": True},
     [{"loss": v} for v in [1.0, 0.5, 0.7, 0.8]]),
    ({"monitor": "loss", "patience": 0, "start_from_epoch": 2}, [{"loss": v} for v in [1.0, 2.0, 3.0, 2.5, 2.6]]),
    ({"monitor": "val_loss", "patience": 0, "mode": "max", "verbose": 1},
     [{"val_loss": v} for v in [1.0, 2.0, 3.0, 2.5]]),
]


@pytest.mark.parametrize("kwargs, script", EARLY_STOPPING_CASES)
def test_early_stopping_matches_keras(keras, capsys, kwargs, script):
    (ours, our_model, our_ran, our_out), (ref, ref_model, ref_ran, ref_out) = run_both(
        keras, capsys, "EarlyStopping", kwargs, script
    )
    assert our_ran == ref_ran
    assert (ours.stopped_epoch, ours.best, ours.best_epoch, ours.wait) == (
        ref.stopped_epoch, ref.best, ref.best_epoch, ref.wait)
    assert our_model.stop_training == ref_model.stop_training
    np.testing.assert_array_equal(our_model.weights[0], ref_model.weights[0])
    assert our_out == ref_out


def test_early_stopping_restore_best_weights_sets_best_epoch_weights(capsys):
    stopper = lc.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True, verbose=1)
    model = TinyModel()
    ran = drive(stopper, model, [{"loss": v} for v in [1.0, 0.5, 0.7, 0.8, 0.9]])
    assert ran == [0, 1, 2, 3]
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])
    assert capsys.readouterr().out == (
        "Epoch 4: early stopping\nRestoring model weights from the end of the best epoch: 2.\n"
    )


def test_early_stopping_warns_about_missing_monitor(keras, capsys):
    script = [{"loss": 1.0, "acc": 0.5}] * 3
    (ours, model, ran, _), (ref, _, ref_ran, _) = run_both(
        keras, capsys, "EarlyStopping", {"monitor": "val_loss"}, script,
        lamina_warning="Early stopping conditioned on metric `val_loss` which is not available. "
                       "Available metrics are: loss,acc",
    )
    assert ran == ref_ran == [0, 1, 2] and not model.stop_training


def test_early_stopping_never_stops_at_epoch_zero(keras):
    # Only reachable when `best` is already set at epoch 0, e.g. a hook driven by hand.
    for module in (lc, keras.callbacks):
        stopper = module.EarlyStopping(monitor="loss", patience=0)
        model = TinyModel()
        stopper.set_model(model)
        stopper.on_train_begin()
        stopper.best = 0.1
        stopper.on_epoch_end(0, {"loss": 1.0})
        assert not model.stop_training
        stopper.on_epoch_end(1, {"loss": 1.0})
        assert model.stop_training and stopper.stopped_epoch == 1


def test_early_stopping_reuse_resets_state():
    stopper = lc.EarlyStopping(monitor="loss", patience=1)
    model = TinyModel()
    assert drive(stopper, model, [{"loss": v} for v in [1.0, 2.0, 3.0]]) == [0, 1]
    model.stop_training = False
    assert drive(stopper, model, [{"loss": v} for v in [5.0, 4.0, 3.0]]) == [0, 1, 2]
    assert stopper.best == 3.0 and stopper.stopped_epoch == 0


# --------------------------------------------------------------------------- MonitorCallback

@pytest.mark.parametrize("monitor, mode, expected", [
    ("val_loss", "auto", operator.lt), ("loss", "auto", operator.lt), ("acc", "auto", operator.gt),
    ("val_accuracy", "auto", operator.gt), ("auc", "auto", operator.gt), ("val_mse", "auto", operator.lt),
    ("hinge", "auto", operator.lt), ("f1_score", "auto", operator.gt), ("val_loss", "max", operator.gt),
    ("accuracy", "min", operator.lt), ("anything", "max", operator.gt),
])
def test_monitor_callback_resolves_mode(monitor, mode, expected):
    callback = lc.MonitorCallback(monitor=monitor, mode=mode)
    callback._set_monitor_op()
    assert callback.monitor_op is expected


def _keras_metric_instances(keras):
    for name in dir(keras.metrics):
        cls = getattr(keras.metrics, name)
        if not (isinstance(cls, type) and issubclass(cls, keras.metrics.Metric)):
            continue
        for kwargs in ({}, {"num_classes": 2}, {"num_classes": 2, "target_class_ids": [0]},
                       {"recall": 0.5}, {"precision": 0.5}, {"specificity": 0.5}, {"sensitivity": 0.5}):
            try:
                yield cls(**kwargs)
                break
            except (TypeError, ValueError):
                continue


def test_monitor_callback_auto_mode_agrees_with_keras_metric_directions(keras):
    checked = 0
    for metric in _keras_metric_instances(keras):
        direction = getattr(metric, "_direction", None)
        if direction is None:
            continue
        callback = lc.MonitorCallback(monitor=f"val_{metric.name}")
        callback._set_monitor_op()
        assert callback.monitor_op is (operator.gt if direction == "up" else operator.lt), metric.name
        checked += 1
    assert checked >= 30


def test_monitor_callback_auto_mode_agrees_with_compiled_keras_model(keras):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(loss="mae", optimizer="sgd",
                  metrics=["mse", "acc", "accuracy", "hinge", keras.metrics.F1Score(name="f1_score")])
    x, y = np.zeros((4, 3), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    for monitor in ["val_mse", "loss", "acc", "val_accuracy", "hinge", "f1_score", "val_loss"]:
        reference = keras.callbacks.EarlyStopping(monitor=monitor)
        reference.set_model(model)
        reference._set_monitor_op()
        ours = lc.EarlyStopping(monitor=monitor)
        ours._set_monitor_op()
        expected = operator.gt if reference.monitor_op is keras.ops.greater else operator.lt
        assert ours.monitor_op is expected, monitor


def test_monitor_callback_reads_model_metric_direction():
    custom = types.SimpleNamespace(name="custom", _direction="up")
    container = types.SimpleNamespace(name="compile_metrics", metrics=[custom])
    callback = lc.MonitorCallback(monitor="val_custom")
    callback.set_model(TinyModel(metrics=[container]))
    callback._set_monitor_op()
    assert callback.monitor_op is operator.gt


def test_monitor_callback_unknown_metric_raises():
    callback = lc.MonitorCallback(monitor="val_custom")
    with pytest.raises(ValueError, match="mode='max'"):
        callback._set_monitor_op()


def test_monitor_callback_unknown_mode_warns_and_falls_back():
    with pytest.warns(UserWarning, match="mode 'bigger' is unknown, fallback to auto mode"):
        callback = lc.EarlyStopping(monitor="val_accuracy", mode="bigger")
    assert callback.mode == "auto"


@pytest.mark.parametrize("monitor, current, reference, improved", [
    ("loss", 0.95, 1.0, False), ("loss", 0.85, 1.0, True),
    ("accuracy", 0.55, 0.5, False), ("accuracy", 0.65, 0.5, True), ("loss", 3.0, None, True),
])
def test_monitor_callback_min_delta(monitor, current, reference, improved):
    callback = lc.MonitorCallback(monitor=monitor, min_delta=-0.1)
    callback._set_monitor_op()
    assert callback._is_improvement(current, reference) is improved


# --------------------------------------------------------------------------- ModelCheckpoint

CHECKPOINT_CASES = [
    ({"filepath": "{epoch:02d}-{loss:.2f}.keras", "verbose": 1}, [{"loss": v} for v in [0.5, 0.4]]),
    ({"filepath": "best.keras", "save_best_only": True, "verbose": 1},
     [{"val_loss": v} for v in [0.5, 0.4, 0.45, 0.3]]),
    ({"filepath": "{epoch:02d}-{val_acc:.3f}.keras", "monitor": "val_acc", "save_best_only": True,
      "mode": "max", "verbose": 1}, [{"val_acc": v} for v in [0.5, 0.4, 0.6, 0.6]]),
    ({"filepath": "best.keras", "save_best_only": True, "mode": "max", "verbose": 1},
     [{"val_loss": v} for v in [0.5, 0.4, 0.6]]),
    ({"filepath": "best.keras", "save_best_only": True, "initial_value_threshold": 0.35, "verbose": 1},
     [{"val_loss": v} for v in [0.5, 0.4, 0.3, 0.2]]),
    ({"filepath": "w-{epoch}.weights.h5", "save_weights_only": True}, [{"loss": 1.0}] * 2),
    ({"filepath": "sub/dir/m{epoch}.keras"}, [{"loss": 1.0}] * 2),
]


def _relative_saves(model, root):
    return [(method, path.replace(str(root), "ROOT")) for method, path in model.saves]


@pytest.mark.parametrize("kwargs, script", CHECKPOINT_CASES)
def test_model_checkpoint_matches_keras(keras, capsys, tmp_path, kwargs, script):
    kwargs = dict(kwargs, filepath=str(tmp_path / kwargs["filepath"]))
    (ours, our_model, _, our_out), (ref, ref_model, _, ref_out) = run_both(
        keras, capsys, "ModelCheckpoint", kwargs, script
    )
    assert _relative_saves(our_model, tmp_path) == _relative_saves(ref_model, tmp_path)
    assert our_model.saves  # every case saves at least once
    assert our_out == ref_out
    assert ours.best == ref.best


@pytest.mark.parametrize("save_freq, batches", [(2, 3), (3, 3), (1, 2), (4, 3)])
def test_model_checkpoint_save_freq_matches_keras(keras, capsys, tmp_path, save_freq, batches):
    kwargs = {"filepath": str(tmp_path / "e{epoch}-b{batch}-{loss:.1f}.keras"), "save_freq": save_freq}

    def batch_logs(epoch, step):
        return {"loss": 1.0 + epoch + step / 10}

    script = [{"loss": 1.0}] * 3
    (_, our_model, _, _), (_, ref_model, _, _) = run_both(
        keras, capsys, "ModelCheckpoint", kwargs, script, batches=batches, batch_logs=batch_logs
    )
    assert _relative_saves(our_model, tmp_path) == _relative_saves(ref_model, tmp_path)
    assert len(our_model.saves) == (3 * batches) // save_freq


def test_model_checkpoint_batch_level_best_only_reads_tensor_logs(tmp_path):
    checkpoint = lc.ModelCheckpoint(str(tmp_path / "b{batch}.keras"), monitor="loss",
                                    save_best_only=True, save_freq=1)
    model = TinyModel()
    losses = [0.5, 0.6, 0.4, 0.45]
    drive(checkpoint, model, [{"loss": 0.4}], batches=4,
          batch_logs=lambda epoch, step: {"loss": torch.tensor(losses[step])})
    assert [path.rsplit("/", 1)[1] for _, path in model.saves] == ["b1.keras", "b3.keras"]
    assert checkpoint.best == pytest.approx(0.4)


@pytest.mark.parametrize("filepath, weights_only", [
    ("m.lamina", False), ("m.keras", False), ("m.h5", False), ("w.weights.safetensors", True),
    ("w.weights.h5", True),
])
def test_model_checkpoint_accepts_extensions(tmp_path, filepath, weights_only):
    checkpoint = lc.ModelCheckpoint(tmp_path / filepath, save_weights_only=weights_only)
    model = TinyModel()
    drive(checkpoint, model, [{"val_loss": 1.0}])
    assert model.saves == [("save_weights" if weights_only else "save", str(tmp_path / filepath))]


@pytest.mark.parametrize("kwargs", [
    {"filepath": "model.pt"}, {"filepath": "model.keras", "save_weights_only": True},
    {"filepath": "w.safetensors", "save_weights_only": True}, {"filepath": "m.keras", "save_freq": "batch"},
])
def test_model_checkpoint_rejects_bad_arguments_like_keras(keras, kwargs):
    for module in (lc, keras.callbacks):
        with pytest.raises(ValueError):
            module.ModelCheckpoint(**kwargs)


def test_model_checkpoint_missing_template_key_raises(tmp_path):
    checkpoint = lc.ModelCheckpoint(str(tmp_path / "{epoch}-{val_acc}.keras"), monitor="loss")
    checkpoint.set_model(TinyModel())
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        checkpoint.on_epoch_end(0, {"loss": 1.0})


def test_model_checkpoint_best_only_without_monitor_warns_and_saves(tmp_path):
    checkpoint = lc.ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)
    model = TinyModel()
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        drive(checkpoint, model, [{"loss": 1.0}])
    assert len(model.saves) == 1


# --------------------------------------------------------------------------- ReduceLROnPlateau

PLATEAU_CASES = [
    ({"monitor": "loss", "factor": 0.5, "patience": 2, "verbose": 1},
     [{"loss": v} for v in [1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.8]]),
    ({"monitor": "loss", "factor": 0.5, "patience": 1, "cooldown": 2, "verbose": 1},
     [{"loss": 1.0}] * 8),
    ({"monitor": "loss", "factor": 0.1, "patience": 0, "min_lr": 0.002, "verbose": 1},
     [{"loss": 1.0}] * 5),
    ({"monitor": "val_acc", "factor": 0.5, "patience": 1, "mode": "max"},
     [{"val_acc": v} for v in [0.5, 0.6, 0.55, 0.56, 0.9]]),
    ({"monitor": "loss", "factor": 0.5, "patience": 1, "min_delta": 0.2},
     [{"loss": v} for v in [1.0, 0.9, 0.85, 0.5, 0.45]]),
]


@pytest.mark.parametrize("kwargs, script", PLATEAU_CASES)
def test_reduce_lr_on_plateau_matches_keras(keras, capsys, kwargs, script):
    rates = []
    for module in (lc, keras.callbacks):
        model = TinyModel(learning_rate=0.1)
        callback = module.ReduceLROnPlateau(**kwargs)
        callback.set_model(model)
        callback.on_train_begin()
        trace = []
        for epoch, logs in enumerate(script):
            logs = dict(logs)
            callback.on_epoch_end(epoch, logs)
            trace.append((model.optimizer.learning_rate, logs["learning_rate"], callback.wait,
                          callback.cooldown_counter))
        rates.append((trace, capsys.readouterr().out))
    assert rates[0] == rates[1]


def test_reduce_lr_on_plateau_honours_min_lr_and_cooldown():
    callback = lc.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=1, min_lr=0.03)
    model = TinyModel(learning_rate=0.1)
    drive(callback, model, [{"loss": 1.0}] * 7)
    # Reductions at epochs 1, 3 and 5 (cooldown 1 skips one epoch each time), floored at 0.03.
    assert model.optimizer.learning_rate == 0.03


def test_reduce_lr_on_plateau_rejects_factor_above_one():
    with pytest.raises(ValueError, match="factor=1.5"):
        lc.ReduceLROnPlateau(factor=1.5)


# --------------------------------------------------------------------------- LearningRateScheduler

@pytest.mark.parametrize("schedule", [
    lambda epoch, lr: lr * 0.5 if epoch % 2 else lr,
    lambda epoch: 0.1 / (epoch + 1),
    lambda epoch, lr: np.float32(lr * 0.9),
])
def test_learning_rate_scheduler_matches_keras(keras, capsys, schedule):
    traces = []
    for module in (lc, keras.callbacks):
        model = TinyModel(learning_rate=0.1)
        callback = module.LearningRateScheduler(schedule, verbose=1)
        callback.set_model(model)
        trace = []
        for epoch in range(4):
            logs = {"loss": 1.0}
            callback.on_epoch_begin(epoch)
            callback.on_epoch_end(epoch, logs)
            trace.append((float(model.optimizer.learning_rate), logs["learning_rate"]))
        traces.append((trace, capsys.readouterr().out))
    assert traces[0] == traces[1]


@pytest.mark.parametrize("result", [1, "0.1", None])
def test_learning_rate_scheduler_rejects_non_float_like_keras(keras, result):
    for module in (lc, keras.callbacks):
        callback = module.LearningRateScheduler(lambda epoch, lr: result)
        callback.set_model(TinyModel())
        with pytest.raises(ValueError, match="should be a float"):
            callback.on_epoch_begin(0)


def test_learning_rate_scheduler_accepts_scalar_tensor():
    callback = lc.LearningRateScheduler(lambda epoch, lr: torch.tensor(lr) * 0.5)
    model = TinyModel(learning_rate=0.5)
    callback.set_model(model)
    callback.on_epoch_begin(0)
    assert model.optimizer.learning_rate == 0.25 and isinstance(model.optimizer.learning_rate, float)


# --------------------------------------------------------------------------- CSVLogger

CSV_CASES = [
    ({}, [{"loss": 0.5, "acc": 0.25}, {"loss": 0.4, "acc": 0.5}]),
    ({}, [{"loss": 0.5, "val_loss": 0.75}, {"loss": 0.25}]),
    ({"separator": ";"}, [{"loss": 0.5, "note": "x;y", "vector": np.array([1, 2])}]),
    ({}, [{}]),
]


@pytest.mark.parametrize("kwargs, script", CSV_CASES)
@pytest.mark.parametrize("runs", [1, 2])
@pytest.mark.parametrize("append", [False, True])
def test_csv_logger_matches_keras(keras, tmp_path, kwargs, script, runs, append):
    contents = []
    for module in (lc, keras.callbacks):
        path = tmp_path / f"{module.__name__}.csv"
        for _ in range(runs):
            drive(module.CSVLogger(path, append=append, **kwargs), TinyModel(), script)
        contents.append(path.read_bytes())
    assert contents[0] == contents[1]


def test_csv_logger_append_writes_one_header(tmp_path):
    path = tmp_path / "log.csv"
    drive(lc.CSVLogger(path), TinyModel(), [{"loss": 1.0}])
    drive(lc.CSVLogger(path, append=True), TinyModel(), [{"loss": 0.5}, {"loss": 0.25}])
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    assert rows == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"], ["0", "0.5", "NA"], ["1", "0.25", "NA"]]


# --------------------------------------------------------------------------- TerminateOnNaN

@pytest.mark.parametrize("losses", [[0.5, float("nan"), 0.3], [0.5, float("inf")], [0.5, 0.4]])
def test_terminate_on_nan_matches_keras(keras, capsys, losses):
    results = []
    for module in (lc, keras.callbacks):
        model = TinyModel()
        callback = module.TerminateOnNaN()
        callback.set_model(model)
        stopped_at = None
        for batch, loss in enumerate(losses):
            callback.on_train_batch_end(batch, {"loss": loss})
            if model.stop_training:
                stopped_at = batch
                break
        results.append((stopped_at, capsys.readouterr().out))
    assert results[0] == results[1]


def test_terminate_on_nan_reads_tensor_loss_and_can_raise():
    callback = lc.TerminateOnNaN(raise_error=True)
    callback.set_model(TinyModel())
    callback.on_train_batch_end(0, {"loss": torch.tensor(0.5)})
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
        callback.on_train_batch_end(1, {"loss": torch.tensor(float("nan"))})


# --------------------------------------------------------------------------- LambdaCallback

def _recording_lambda(module, events):
    def record(name):
        return lambda *args, **kwargs: events.append((name, args, kwargs))

    return module.LambdaCallback(
        on_epoch_begin=record("epoch_begin"), on_epoch_end=record("epoch_end"),
        on_train_begin=record("train_begin"), on_train_end=record("train_end"),
        on_train_batch_begin=record("batch_begin"), on_train_batch_end=record("batch_end"),
        on_test_end=record("test_end"),
    )


def test_lambda_callback_matches_keras(keras):
    recorded = []
    for module in (lc, keras.callbacks):
        events = []
        callbacks = module.CallbackList([_recording_lambda(module, events)], model=TinyModel())
        callbacks.on_train_begin()
        callbacks.on_epoch_begin(0)
        callbacks.on_train_batch_begin(0)
        callbacks.on_train_batch_end(0, {"loss": 1.0})
        callbacks.on_test_begin()
        callbacks.on_test_end({"loss": 2.0})
        callbacks.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
        callbacks.on_train_end({"loss": 1.0})
        recorded.append(events)
    assert recorded[0] == recorded[1]
    assert [name for name, _, _ in recorded[0]] == [
        "train_begin", "epoch_begin", "batch_begin", "batch_end", "test_end", "epoch_end", "train_end"]


# --------------------------------------------------------------------------- History

def test_history_matches_keras(keras):
    histories = []
    for module in (lc, keras.callbacks):
        model = TinyModel()
        history = module.History()
        drive(history, model, [{"loss": 1.0, "acc": 0.5}, {"loss": 0.5, "acc": 0.75}])
        drive(history, model, [{"loss": 0.25, "acc": 1.0}])
        assert model.history is history
        histories.append((history.history, history.epoch))
    assert histories[0] == histories[1] == ({"loss": [1.0, 0.5, 0.25], "acc": [0.5, 0.75, 1.0]}, [0])


# --------------------------------------------------------------------------- CallbackList

def _recorder_class(base):
    class Recorder(base):
        def __init__(self, name, events):
            super().__init__()
            self.name, self.events = name, events

        def _log(self, hook, *args):
            self.events.append((self.name, hook, *args))

        def on_train_begin(self, logs=None):
            self._log("train_begin", logs)

        def on_epoch_begin(self, epoch, logs=None):
            self._log("epoch_begin", epoch, logs)

        def on_batch_end(self, batch, logs=None):  # the legacy alias of on_train_batch_end
            self._log("batch_end", batch, dict(logs))

        def on_test_batch_end(self, batch, logs=None):
            self._log("test_batch_end", batch, dict(logs))

        def on_predict_batch_begin(self, batch, logs=None):
            self._log("predict_batch_begin", batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self._log("epoch_end", epoch, list(logs.items()))

        def on_train_end(self, logs=None):
            self._log("train_end", list(logs.items()))

    return Recorder


def _drive_list(callbacks):
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    for step in range(2):
        callbacks.on_train_batch_begin(step)
        callbacks.on_train_batch_end(step, {"loss": 1.0 + step, "acc": 0.5})
    callbacks.on_test_begin()
    callbacks.on_test_batch_end(0, {"loss": 3.0})
    callbacks.on_test_end({"loss": 3.0})
    callbacks.on_epoch_end(0, {"loss": 1.5, "acc": 0.5, "val_loss": 3.0, "count": 2, "note": "x"})
    callbacks.on_train_end({"loss": 1.5})
    callbacks.on_predict_begin()
    callbacks.on_predict_batch_begin(0)
    callbacks.on_predict_end()


def test_callback_list_dispatch_order_matches_keras(keras):
    recorded = []
    for module in (lc, keras.callbacks):
        events = []
        recorder = _recorder_class(module.Callback)
        callbacks = module.CallbackList([recorder("a", events), recorder("b", events)],
                                        add_history=True, model=TinyModel())
        _drive_list(callbacks)
        recorded.append(events)
        assert [type(cb).__name__ for cb in callbacks.callbacks] == ["Recorder", "Recorder", "History"]
    assert recorded[0] == recorded[1]
    assert recorded[0][0] == ("a", "train_begin", {}) and recorded[0][1] == ("b", "train_begin", {})


def test_callback_list_passes_batch_logs_untouched():
    received = []

    class Reader(lc.Callback):
        def on_train_batch_end(self, batch, logs=None):
            received.append(logs)

    logs = {"loss": torch.tensor(0.5)}
    callbacks = lc.CallbackList([Reader(), Reader()], add_history=True, model=TinyModel())
    callbacks.on_train_batch_end(0, logs)
    assert received[0] is logs and received[1] is logs


class CountingLogs(Mapping):
    """Batch logs whose values are counted when read (a lazy trainer Mapping)."""

    def __init__(self, values):
        self._values, self.reads = values, 0

    def __getitem__(self, key):
        self.reads += 1
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)


def test_callback_list_default_callbacks_read_no_batch_values(tmp_path):
    logs = CountingLogs({"loss": torch.tensor(0.5), "acc": torch.tensor(0.25)})
    user = [lc.EarlyStopping(monitor="loss"), lc.ModelCheckpoint(str(tmp_path / "m.keras")),
            lc.ReduceLROnPlateau(monitor="loss"), lc.CSVLogger(tmp_path / "log.csv")]
    callbacks = lc.CallbackList(user, add_history=True, add_progbar=False, model=TinyModel(),
                                verbose=0, epochs=1, steps=100)
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    for step in range(100):
        callbacks.on_train_batch_begin(step)
        callbacks.on_train_batch_end(step, logs)
    callbacks.on_epoch_end(0, {"loss": 0.5})
    callbacks.on_train_end({"loss": 0.5})
    assert logs.reads == 0


def test_callback_list_epoch_logs_match_keras_pythonify(keras):
    from keras.src.utils.python_utils import pythonify_logs

    raw = {"val_loss": torch.tensor(0.5), "loss": np.float32(0.25), "acc": 1, "nested": {"b": 2.0, "a": 1.0},
           "note": "text", "vector": np.array([1.0, 2.0])}
    seen = []
    callbacks = lc.CallbackList([lc.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs))])
    callbacks.on_epoch_end(0, raw)
    expected = pythonify_logs(raw)
    assert list(seen[0]) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(seen[0][key], value)
        assert type(seen[0][key]) is type(value)


def test_callback_list_shares_epoch_logs_so_history_records_learning_rate():
    model = TinyModel(learning_rate=0.1)
    callbacks = lc.CallbackList([lc.ReduceLROnPlateau(monitor="loss")], add_history=True, model=model)
    callbacks.on_train_begin()
    callbacks.on_epoch_end(0, {"loss": 1.0})
    callbacks.on_train_end()
    assert model.history.history == {"loss": [1.0], "learning_rate": [0.1]}


def test_callback_list_reuses_given_history_and_sets_params():
    history, model = lc.History(), TinyModel()
    callbacks = lc.CallbackList([history], add_history=True, add_progbar=True, model=model,
                                verbose=2, epochs=3, steps=5)
    assert callbacks.callbacks[0] is history and model.history is history
    assert isinstance(callbacks.callbacks[1], ProgbarLogger) and len(callbacks.callbacks) == 2
    assert all(cb.params == {"verbose": 2, "epochs": 3, "steps": 5} for cb in callbacks.callbacks)
    assert all(cb.model is model for cb in callbacks.callbacks)


def test_callback_list_end_without_begin_raises():
    callbacks = lc.CallbackList([])
    callbacks.on_train_begin()
    callbacks.on_test_begin()
    callbacks.on_test_end()
    callbacks.on_train_end()
    with pytest.raises(ValueError, match="without the matching on_\\*_begin"):
        callbacks.on_predict_end()


def test_callback_list_flattens_nested_lists():
    first, second, third = lc.History(), lc.TerminateOnNaN(), lc.LambdaCallback()
    assert lc.CallbackList([first, [second, (third,)]]).callbacks == [first, second, third]
    assert lc.CallbackList(first).callbacks == [first]


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match="received 'early' of type str"):
        lc.CallbackList(["early"])


def test_callback_unwraps_distributed_data_parallel():
    model = TinyModel()
    wrapper = object.__new__(torch.nn.parallel.DistributedDataParallel)
    wrapper.__dict__["module"] = model
    callback = lc.Callback()
    callback.set_model(wrapper)
    assert callback.model is model


def test_callback_subclass_without_super_init_works():
    class Bare(lc.Callback):
        def __init__(self):
            pass

    callback = Bare()
    assert callback.model is None and callback.params is None


# --------------------------------------------------------------------------- registry

REGISTERED_ARGUMENTS = {
    "History": {}, "ProgbarLogger": {}, "TerminateOnNaN": {"raise_error": True},
    "EarlyStopping": {"monitor": "val_accuracy", "min_delta": 0.01, "patience": 3, "verbose": 1,
                      "mode": "max", "baseline": 0.5, "restore_best_weights": True, "start_from_epoch": 2},
    "ModelCheckpoint": {"filepath": "ckpt-{epoch:02d}.keras", "monitor": "loss", "verbose": 1,
                        "save_best_only": True, "save_weights_only": False, "mode": "min",
                        "save_freq": 10, "initial_value_threshold": 0.5},
    "ReduceLROnPlateau": {"monitor": "loss", "factor": 0.5, "patience": 2, "verbose": 1, "mode": "min",
                          "min_delta": 0.001, "cooldown": 1, "min_lr": 1e-5},
    "CSVLogger": {"filename": "log.csv", "separator": ";", "append": True},
}


def test_registered_callbacks_round_trip_config():
    assert sorted(registry.names("callback")) == sorted(REGISTERED_ARGUMENTS)
    for name, arguments in REGISTERED_ARGUMENTS.items():
        callback = registry.get("callback", {"class_name": name, "config": arguments})
        config = callback.get_config()
        assert config == arguments
        assert json.loads(json.dumps(config)) == config
        assert type(callback).from_config(config).get_config() == config


def test_registry_get_callback_by_name():
    stopper = registry.get("callback", "EarlyStopping")
    assert isinstance(stopper, lc.EarlyStopping) and stopper.monitor == "val_loss"


def test_public_callbacks_namespace_matches_keras(keras):
    import lamina.callbacks

    assert set(lamina.callbacks.__all__) <= set(dir(keras.callbacks))
    for name in lamina.callbacks.__all__:
        assert hasattr(lamina.callbacks, name)


@pytest.mark.parametrize("monitor, expected", [
    ("val_auc_17", "max"), ("val_cls_accuracy", "max"), ("val_reg_loss", "min"), ("loss_1", "min"),
    ("reg_mean_absolute_error", "min"),
])
def test_monitor_callback_auto_mode_handles_suffixed_and_output_names(monitor, expected):
    callback = lc.EarlyStopping(monitor=monitor)
    callback._set_monitor_op()
    assert callback.monitor_op is (operator.gt if expected == "max" else operator.lt)
