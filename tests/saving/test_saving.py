"""Tests for lamina.saving: model.save / load_model, save_weights / load_weights, custom objects.

The archive format itself (zip members, safetensors, hostile zips) is tested in
test_archive.py; here whole models go through the public functions.
"""

import builtins
import json
import os
import pickle
import subprocess
import warnings
import zipfile

import numpy as np
import pytest
import torch

import lamina
from lamina import saving
from lamina.layers import Dense, Dropout
from lamina.saving import FormatError, load_model, register_serializable


def _data(n=24, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, 4).astype("float32")
    return x, np.eye(3, dtype="float32")[rng.randint(0, 3, n)]


def _sequential():
    return lamina.Sequential([lamina.Input((4,)), Dense(8, activation="relu"), Dropout(0.1),
                              Dense(3, activation="softmax")])


def _functional():
    inputs = lamina.Input((4,))
    hidden = Dense(8, activation="tanh", name="hidden")(inputs)
    return lamina.Model(inputs, Dense(3, activation="softmax", name="probs")(hidden))


def _trained(build=_sequential, optimizer=None, **compile_kwargs):
    model = build()
    compile_kwargs.setdefault("loss", "categorical_crossentropy")
    compile_kwargs.setdefault("metrics", ["accuracy"])
    model.compile(optimizer=optimizer or lamina.optimizers.Adam(0.01), **compile_kwargs)
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- model round trips
@pytest.mark.parametrize("build", [_sequential, _functional])
@pytest.mark.parametrize("extension", [".lamina", ".keras"])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, build, extension):
    model = _trained(build)
    path = tmp_path / f"model{extension}"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    _assert_same_weights(model, loaded)
    x, _ = _data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_model_is_also_in_lamina_models(tmp_path):
    model = _trained()
    model.save(tmp_path / "m.lamina")
    _assert_same_weights(lamina.models.load_model(tmp_path / "m.lamina"), model)


def test_load_model_restores_compile_state(tmp_path):
    model = _trained(optimizer=lamina.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                     loss=lamina.losses.CategoricalCrossentropy(label_smoothing=0.1),
                     metrics=[lamina.metrics.CategoricalAccuracy(name="cacc"), "mae"])
    model.save(tmp_path / "m.lamina")
    loaded = load_model(tmp_path / "m.lamina")
    assert loaded.compiled
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert type(loaded.loss) is type(model.loss) and loaded.loss.get_config() == model.loss.get_config()
    assert loaded.get_compile_config() == model.get_compile_config()
    x, y = _data()
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == model.evaluate(x, y, verbose=0, return_dict=True)


def test_load_model_keeps_loss_and_metric_names(tmp_path):
    model = _trained(loss="categorical_crossentropy", metrics=["acc"])
    model.save(tmp_path / "m.lamina")
    loaded = load_model(tmp_path / "m.lamina")
    assert loaded.loss == "categorical_crossentropy"
    x, y = _data()
    assert sorted(loaded.fit(x, y, epochs=1, verbose=0).history) == ["acc", "loss"]


def test_load_model_without_compile(tmp_path):
    _trained().save(tmp_path / "m.lamina")
    loaded = load_model(tmp_path / "m.lamina", compile=False)
    assert not loaded.compiled
    with pytest.raises(ValueError, match=r"compile\(\)"):
        loaded.evaluate(*_data(), verbose=0)


@pytest.mark.parametrize("optimizer", [lambda: lamina.optimizers.Adam(0.01),
                                       lambda: lamina.optimizers.SGD(0.05, momentum=0.9),
                                       lambda: lamina.optimizers.RMSprop(0.01)])
def test_load_model_resumes_training_exactly(tmp_path, optimizer):
    model = _trained(_functional, optimizer=optimizer())
    model.save(tmp_path / "m.lamina")
    loaded = load_model(tmp_path / "m.lamina")
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 6
    x, y = _data(seed=1)
    for m in (model, loaded):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-7)
    assert model.history.history == loaded.history.history


def test_save_without_optimizer_state_starts_fresh(tmp_path):
    model = _trained()
    model.save(tmp_path / "m.lamina", include_optimizer=False)
    with zipfile.ZipFile(tmp_path / "m.lamina") as archive:
        assert "optimizer.safetensors" not in archive.namelist()
    loaded = load_model(tmp_path / "m.lamina")
    assert loaded.compiled and int(loaded.optimizer.iterations) == 0


def test_save_file_holds_json_and_safetensors_only(tmp_path):
    model = _trained()
    model.save(tmp_path / "m.lamina")
    with zipfile.ZipFile(tmp_path / "m.lamina") as archive:
        names = sorted(archive.namelist())
        config = json.loads(archive.read("config.json"))
    assert names == sorted(["config.json", "metadata.json", "model.weights.safetensors", "optimizer.safetensors"])
    assert config["class_name"] == "Sequential"
    assert config["compile_config"]["loss"] == "categorical_crossentropy"


def test_save_rejects_bad_extension_and_overwrite(tmp_path):
    model = _trained()
    with pytest.raises(ValueError, match=r"\.lamina"):
        model.save(tmp_path / "model.h5x")
    model.save(tmp_path / "m.lamina")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "m.lamina", overwrite=False)


# ---------------------------------------------------------------- weights only
def test_save_weights_load_weights_round_trip(tmp_path):
    model = _trained()
    path = tmp_path / "m.weights.safetensors"
    model.save_weights(path)
    other = _sequential()
    other.load_weights(path)
    _assert_same_weights(model, other)
    x, _ = _data()
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_weights_from_a_model_file(tmp_path):
    model = _trained()
    model.save(tmp_path / "m.lamina")
    other = _sequential()
    other.load_weights(tmp_path / "m.lamina")
    _assert_same_weights(model, other)


def test_save_weights_rejects_other_extensions(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.safetensors"):
        _sequential().save_weights(tmp_path / "m.weights.pt")


def test_load_weights_shape_mismatch_raises(tmp_path):
    _trained().save_weights(tmp_path / "m.weights.safetensors")
    other = lamina.Sequential([lamina.Input((4,)), Dense(8), Dense(2)])
    with pytest.raises(ValueError, match=r"\(8, 2\).*\(8, 3\)|skip_mismatch"):
        other.load_weights(tmp_path / "m.weights.safetensors")


def test_load_weights_skip_mismatch_keeps_mismatched_weights(tmp_path):
    model = _trained()
    model.save_weights(tmp_path / "m.weights.safetensors")
    other = lamina.Sequential([lamina.Input((4,)), Dense(8), Dense(2)])
    before = other.get_weights()
    with pytest.warns(UserWarning, match="Skipping weight") as record:
        other.load_weights(tmp_path / "m.weights.safetensors", skip_mismatch=True)
    assert [str(w.message).split(" of ")[0] for w in record] == ["Skipping weight 2", "Skipping weight 3"]
    after = other.get_weights()
    np.testing.assert_array_equal(after[0], model.get_weights()[0])
    np.testing.assert_array_equal(after[1], model.get_weights()[1])
    np.testing.assert_array_equal(after[2], before[2])
    np.testing.assert_array_equal(after[3], before[3])


def test_weight_order_survives_more_than_ten_thousand_arrays():
    tensors = {f"{i:04d}/layer/kernel": torch.tensor([float(i)]) for i in range(10_002)}
    ordered = saving._ordered(tensors)
    assert [float(a[0]) for a in ordered[9998:]] == [9998.0, 9999.0, 10000.0, 10001.0]


# ---------------------------------------------------------------- custom objects
@register_serializable(package="LaminaSavingTests")
class Scale(lamina.Layer):
    """Multiplies by a constant factor (a registered custom layer)."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        config = super().get_config()
        config["factor"] = self.factor
        return config


class Unregistered(lamina.Layer):
    def call(self, inputs):
        return inputs * 3.0


def _with_layer(layer):
    return lamina.Sequential([lamina.Input((4,)), Dense(3), layer, Dense(2)])


def test_registered_custom_layer_round_trips(tmp_path):
    model = _with_layer(Scale(0.5))
    model.save(tmp_path / "m.lamina")
    loaded = load_model(tmp_path / "m.lamina")
    assert type(loaded.layers[1]) is Scale and loaded.layers[1].factor == 0.5
    x, _ = _data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_unregistered_custom_layer_fails_clearly_then_loads_with_custom_objects(tmp_path):
    model = _with_layer(Unregistered())
    model.save(tmp_path / "m.lamina")
    with pytest.raises(ValueError, match="Unregistered") as info:
        load_model(tmp_path / "m.lamina")
    assert "register_serializable" in str(info.value) and "custom_objects" in str(info.value)
    loaded = load_model(tmp_path / "m.lamina", custom_objects={"Unregistered": Unregistered})
    x, _ = _data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def _custom_loss(y_true, y_pred):
    return torch.mean(torch.square(y_true - y_pred), dim=-1)


def _custom_metric(y_true, y_pred):
    return torch.mean(torch.abs(y_true - y_pred), dim=-1)


def test_custom_loss_and_metric_functions_save_and_load_with_custom_objects(tmp_path):
    model = _trained(loss=_custom_loss, metrics=[_custom_metric])
    model.save(tmp_path / "m.lamina")  # saving works without registration, as in Keras
    with pytest.raises(ValueError, match="_custom_loss"):
        load_model(tmp_path / "m.lamina")
    loaded = load_model(tmp_path / "m.lamina",
                        custom_objects={"_custom_loss": _custom_loss, "_custom_metric": _custom_metric})
    assert loaded.loss is _custom_loss
    x, y = _data()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_register_serializable_rejects_bad_package():
    with pytest.raises(ValueError, match="without '>'"):
        register_serializable(package="a>b")


# ---------------------------------------------------------------- loading never runs code
def _rewrite_config(source, target, edit):
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as rewritten:
        for name in original.namelist():
            content = original.read(name)
            if name == "config.json":
                config = json.loads(content)
                edit(config)
                content = json.dumps(config).encode()
            rewritten.writestr(name, content)


def _set(path, value):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


_HOSTILE_EDITS = {
    "model class": _set(["class_name"], "os.system"),
    "layer class": _set(["config", "layers", 1, "class_name"], "os.system"),
    "layer module": lambda config: config["config"]["layers"][1].update(module="os", class_name="system"),
    "activation": _set(["config", "layers", 1, "config", "activation"], "os.system"),
    "activation dict": _set(["config", "layers", 1, "config", "activation"],
                            {"class_name": "subprocess.Popen", "config": {"args": "touch pwned"}}),
    "initializer": _set(["config", "layers", 1, "config", "kernel_initializer"],
                        {"class_name": "__import__", "config": {"name": "os"}}),
    "loss": _set(["compile_config", "loss"], {"class_name": "builtins.eval", "config": {}}),
    "optimizer": _set(["compile_config", "optimizer"], "os.system"),
}


@pytest.fixture
def forbid_code_execution(monkeypatch):
    """Record every attempt to unpickle, evaluate or run a command while the test runs."""
    calls = []

    def forbidden(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called while loading a file")
        return record

    for module, name in [(pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (torch, "load"),
                         (os, "system"), (subprocess, "Popen"), (builtins, "eval"), (builtins, "exec")]:
        monkeypatch.setattr(module, name, forbidden(f"{module.__name__}.{name}"))
    return calls


@pytest.mark.parametrize("edit", list(_HOSTILE_EDITS), ids=list(_HOSTILE_EDITS))
def test_load_model_refuses_hostile_config_and_runs_nothing(tmp_path, forbid_code_execution, edit):
    model = _trained()
    model.save(tmp_path / "m.lamina")
    hostile = tmp_path / "hostile.lamina"
    _rewrite_config(tmp_path / "m.lamina", hostile, _HOSTILE_EDITS[edit])
    with pytest.raises(ValueError):
        load_model(hostile)
    assert forbid_code_execution == []
    assert not (tmp_path / "pwned").exists()


def test_load_model_never_unpickles(tmp_path, forbid_code_execution):
    model = _trained()
    model.save(tmp_path / "m.lamina")
    model.save_weights(tmp_path / "m.weights.safetensors")
    loaded = load_model(tmp_path / "m.lamina")
    loaded.load_weights(tmp_path / "m.weights.safetensors")
    _assert_same_weights(model, loaded)
    assert forbid_code_execution == []


def test_load_weights_refuses_a_pickle(tmp_path, forbid_code_execution, monkeypatch):
    model = _sequential()
    path = tmp_path / "m.weights.safetensors"
    monkeypatch.undo()  # write the pickle with the real torch.save machinery
    torch.save({"kernel": torch.zeros(2)}, path)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: forbid_code_execution.append("pickle.loads"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: forbid_code_execution.append("torch.load"))
    with pytest.raises(FormatError):
        model.load_weights(path)
    assert forbid_code_execution == []


def test_load_model_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.lamina")


def test_model_checkpoint_file_loads_after_warning_free_fit(tmp_path):
    x, y = _data()
    model = _sequential()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=2, verbose=0, validation_split=0.25,
                  callbacks=[lamina.callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}.lamina")])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.lamina", "ckpt-02.lamina"]
    _assert_same_weights(load_model(tmp_path / "ckpt-02.lamina"), model)
