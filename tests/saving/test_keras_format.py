"""Tests for lamina.saving.keras_format: Keras 3 .keras / .weights.h5 files in both directions.

Files are written by real Keras (the ``keras`` fixture) and read by lamina, and the other way
round; predictions must agree. Hostile files must be refused before anything in them runs.
"""

import io
import json
import os
import stat
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch

import lamina
from lamina.layers import BatchNormalization, Conv2D, Dense, Flatten
from lamina.saving import archive
from lamina.saving.keras_format import (
    FormatError, is_keras_archive, load_keras, load_keras_weights, save_keras, save_keras_weights,
)

h5py = pytest.importorskip("h5py")
ATOL = 1e-5


def _np(keras, value):
    return keras.ops.convert_to_numpy(value)


def _inputs(model, seed=0):
    rng = np.random.RandomState(seed)
    arrays = []
    for tensor in model.inputs:
        shape = (3,) + tuple(tensor.shape[1:])
        if "int" in str(tensor.dtype):
            arrays.append(rng.randint(1, 9, size=shape).astype("int32"))
        else:
            arrays.append(rng.rand(*shape).astype("float32"))
    return arrays


def _keras_predict(keras, model, arrays):
    return _np(keras, model(arrays if len(arrays) > 1 else arrays[0]))


def _lamina_predict(model, arrays):
    tensors = [torch.as_tensor(a) for a in arrays]
    with torch.no_grad():
        return model(tensors if len(tensors) > 1 else tensors[0]).numpy()


def _jitter(keras, model, seed=1):
    """Move every float weight off its initial value, so zero biases and unit scales count."""
    rng = np.random.RandomState(seed)
    model.set_weights([w + np.asarray(rng.rand(*w.shape) * 0.2 + 0.05, dtype=w.dtype) if w.dtype.kind == "f" else w
                       for w in model.get_weights()])


# ---------------------------------------------------------------- Keras models used below
def _keras_mlp(keras):
    layers = keras.layers
    return keras.Sequential([keras.Input((4,)), layers.Dense(8, activation="relu", kernel_regularizer="l2"),
                             layers.Dense(3, activation="softmax")])


def _keras_convnet(keras):
    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 3)), layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.BatchNormalization(), layers.MaxPooling2D(), layers.Dropout(0.25), layers.Flatten(),
        layers.Dense(2)])


def _keras_multi_input(keras):
    layers = keras.layers
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    joined = layers.Concatenate()([layers.Dense(5, name="left")(a), layers.Add()([a, b])])
    return keras.Model([a, b], layers.Dense(2, name="out")(joined))


def _keras_embedding(keras):
    layers = keras.layers
    return keras.Sequential([keras.Input((6,), dtype="int32"), layers.Embedding(10, 4),
                             layers.GlobalAveragePooling1D(), layers.Dense(2)])


def _keras_masked_lstm(keras):
    layers = keras.layers
    return keras.Sequential([keras.Input((5,), dtype="int32"), layers.Embedding(10, 3, mask_zero=True),
                             layers.Bidirectional(layers.LSTM(4, return_sequences=True)), layers.GRU(3)])


def _keras_attention(keras):
    layers = keras.layers
    query, value = keras.Input((5, 4)), keras.Input((3, 4))
    attended = layers.MultiHeadAttention(2, 3)(query, value)
    scored = layers.Attention(use_scale=True)([query, value])
    return keras.Model([query, value], layers.LayerNormalization()(layers.Add()([attended, scored])))


def _keras_branches(keras):
    layers = keras.layers
    inputs = keras.Input((4,))
    deep = layers.Dense(3, name="deep_2")(layers.Dense(4, name="deep_1")(inputs))
    shared = layers.Dense(3, name="shared")
    merged = layers.Add()([deep, shared(layers.Dense(4, name="wide")(inputs)), shared(inputs)])
    return keras.Model(inputs, layers.Dense(2, activation="tanh")(merged))


def _keras_nested(keras):
    layers = keras.layers
    inner = keras.Sequential([layers.Dense(3, activation="tanh"), layers.Dense(3)])
    return keras.Sequential([keras.Input((4,)), inner, layers.Dense(1)])


def _keras_conv_family(keras):
    layers = keras.layers
    return keras.Sequential([
        keras.Input((9, 3)), layers.Conv1D(4, 3, padding="causal", dilation_rate=2), layers.SeparableConv1D(4, 2),
        layers.DepthwiseConv1D(2), layers.Conv1DTranspose(2, 2), layers.GroupNormalization(2),
        layers.ZeroPadding1D(1), layers.UpSampling1D(2), layers.AveragePooling1D(2), layers.GlobalMaxPooling1D()])


KERAS_MODELS = [_keras_mlp, _keras_convnet, _keras_multi_input, _keras_embedding, _keras_masked_lstm,
                _keras_attention, _keras_branches, _keras_nested, _keras_conv_family]


# ---------------------------------------------------------------- Keras -> lamina
@pytest.mark.parametrize("build", KERAS_MODELS, ids=lambda f: f.__name__[7:])
def test_load_keras_matches_keras_predictions(keras, tmp_path, build):
    model = build(keras)
    _jitter(keras, model)
    path = tmp_path / "model.keras"
    model.save(path)
    arrays = _inputs(model)
    loaded = load_keras(path)
    np.testing.assert_allclose(_lamina_predict(loaded, arrays), _keras_predict(keras, model, arrays), atol=ATOL)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_load_keras_restores_compile_and_optimizer_state(keras, tmp_path):
    model = _keras_mlp(keras)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    x = np.random.rand(16, 4).astype("float32")
    y = np.eye(3, dtype="float32")[np.random.randint(0, 3, 16)]
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = load_keras(tmp_path / "model.keras")
    assert type(loaded.optimizer).__name__ == "Adam" and loaded.optimizer.iterations == 4
    assert loaded.optimizer.learning_rate == pytest.approx(0.01)
    assert loaded._compile_config["loss"] == "categorical_crossentropy"
    # One more identical step in both frameworks keeps the weights equal: the Adam moments came across.
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for mine, theirs in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(mine, _np(keras, theirs), atol=ATOL)


def test_load_keras_compile_false_leaves_model_uncompiled(keras, tmp_path):
    model = _keras_mlp(keras)
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "model.keras")
    assert load_keras(tmp_path / "model.keras", compile=False).optimizer is None


def test_load_keras_custom_layer_through_custom_objects(keras, tmp_path):
    @keras.saving.register_keras_serializable(package="KerasFormatTest")
    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.factor = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.factor

    class LaminaScale(lamina.layers.Layer):
        def build(self, input_shape):
            self.factor = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.factor

    LaminaScale.__name__ = "Scale"  # Keras's weight layout names a layer's group after its class
    model = keras.Sequential([keras.Input((3,)), Scale(), keras.layers.Dense(2)])
    _jitter(keras, model)
    model.save(tmp_path / "model.keras")
    with pytest.raises(FormatError, match="Scale"):
        load_keras(tmp_path / "model.keras")
    loaded = load_keras(tmp_path / "model.keras", custom_objects={"KerasFormatTest>Scale": LaminaScale})
    arrays = _inputs(model)
    np.testing.assert_allclose(_lamina_predict(loaded, arrays), _keras_predict(keras, model, arrays), atol=ATOL)


def test_load_keras_lists_every_unsupported_layer(keras, tmp_path):
    layers = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 2)), layers.Resizing(4, 4), layers.RandomFlip(), layers.Flatten(),
                              layers.EinsumDense("ab,bc->ac", output_shape=2), layers.Dense(2, dtype="mixed_float16")])
    model.save(tmp_path / "model.keras")
    with pytest.raises(FormatError) as info:
        load_keras(tmp_path / "model.keras")
    message = str(info.value)
    assert "EinsumDense, RandomFlip, Resizing" in message
    assert "mixed_float16" in message and "custom_objects" in message


# ---------------------------------------------------------------- lamina -> Keras
def _lamina_convnet():
    return lamina.Sequential([lamina.Input((6, 6, 2)), Conv2D(3, 3, activation="relu"), BatchNormalization(),
                              Flatten(), Dense(4, activation="tanh", kernel_regularizer="l2"), Dense(2)])


def _lamina_branches():
    inputs = lamina.Input((4,))
    other = lamina.Input((4,))
    deep = Dense(3)(Dense(4)(inputs))
    shared = Dense(3)
    merged = lamina.layers.Add()([deep, shared(Dense(4)(other)), shared(inputs)])
    joined = lamina.layers.Concatenate()([merged, other])
    return lamina.Model([inputs, other], Dense(2, activation="softmax")(joined))


@pytest.mark.parametrize("build", [_lamina_convnet, _lamina_branches])
def test_save_keras_loads_in_keras_with_same_predictions(keras, tmp_path, build):
    model = build()
    model.set_weights([w + np.random.rand(*w.shape).astype(w.dtype) * 0.2 + 0.05 for w in model.get_weights()])
    save_keras(model, tmp_path / "model.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Keras warns about any weight it could not place
        restored = keras.saving.load_model(tmp_path / "model.keras")
    arrays = _inputs(restored)
    np.testing.assert_allclose(_keras_predict(keras, restored, arrays), _lamina_predict(model, arrays), atol=ATOL)


def test_save_keras_optimizer_state_continues_training_in_keras(keras, tmp_path):
    model = lamina.Sequential([lamina.Input((4,)), Dense(6, activation="relu"), Dense(3)])
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    x, y = np.random.rand(16, 4).astype("float32"), np.random.rand(16, 3).astype("float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    save_keras(model, tmp_path / "model.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        restored = keras.saving.load_model(tmp_path / "model.keras")
    assert type(restored.optimizer).__name__ == "Adam" and int(restored.optimizer.iterations) == 8
    restored.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for mine, theirs in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=ATOL)


def test_save_keras_writes_keras_serialization_format(tmp_path):
    inputs = lamina.Input((4,), name="features")
    model = lamina.Model(inputs, Dense(2, name="head")(inputs))
    save_keras(model, tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive_file:
        config = json.loads(archive_file.read("config.json"))
        metadata = json.loads(archive_file.read("metadata.json"))
        weights = h5py.File(io.BytesIO(archive_file.read("model.weights.h5")), "r")
    assert (config["module"], config["class_name"], config["registered_name"]) == \
        ("keras.src.models.functional", "Functional", "Functional")
    input_layer, head = config["config"]["layers"]
    assert input_layer["config"]["batch_shape"] == [None, 4] and input_layer["module"] == "keras.layers"
    assert head["config"]["dtype"] == {"module": "keras", "class_name": "DTypePolicy",
                                       "config": {"name": "float32"}, "registered_name": None}
    assert head["config"]["kernel_initializer"]["module"] == "keras.initializers"
    tensor = head["inbound_nodes"][0]["args"][0]
    assert tensor["class_name"] == "__keras_tensor__" and tensor["config"]["keras_history"] == ["features", 0, 0]
    assert "keras_version" in metadata
    assert weights["layers/dense/vars"].attrs["name"] == "head"
    np.testing.assert_array_equal(weights["layers/dense/vars/0"][()], model.get_weights()[0])
    weights.close()


def test_save_keras_replaces_the_file_atomically(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail)
    with pytest.raises(OSError, match="disk full"):
        save_keras(lamina.Sequential([lamina.Input((2,)), Dense(1)]), path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.keras"]


def test_save_keras_refuses_bad_extension_and_unbuilt_model(tmp_path):
    with pytest.raises(ValueError, match=".keras"):
        save_keras(lamina.Sequential([lamina.Input((2,)), Dense(1)]), tmp_path / "model.h5")
    with pytest.raises(ValueError, match="not built"):
        save_keras(lamina.Sequential([Dense(1)]), tmp_path / "model.keras")


# ---------------------------------------------------------------- weights-only files
def test_load_keras_weights_reads_keras_save_weights(keras, tmp_path):
    source = _keras_convnet(keras)
    _jitter(keras, source)
    source.save_weights(tmp_path / "model.weights.h5")
    target = lamina.Sequential([
        lamina.Input((8, 8, 3)), Conv2D(4, 3, padding="same", activation="relu", name="other_name"),
        BatchNormalization(), lamina.layers.MaxPooling2D(), lamina.layers.Dropout(0.25), Flatten(), Dense(2)])
    load_keras_weights(target, tmp_path / "model.weights.h5")
    arrays = _inputs(source)
    np.testing.assert_allclose(_lamina_predict(target, arrays), _keras_predict(keras, source, arrays), atol=ATOL)


def test_save_keras_weights_loads_in_keras(keras, tmp_path):
    source = _lamina_convnet()
    source.set_weights([w * 1.5 + 0.1 for w in source.get_weights()])
    save_keras_weights(source, tmp_path / "model.weights.h5")
    layers = keras.layers
    target = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                               layers.BatchNormalization(), layers.Flatten(),
                               layers.Dense(4, activation="tanh"), layers.Dense(2)])
    target.load_weights(tmp_path / "model.weights.h5")
    arrays = _inputs(target)
    np.testing.assert_allclose(_keras_predict(keras, target, arrays), _lamina_predict(source, arrays), atol=ATOL)


def test_load_keras_weights_mismatch_raises_or_skips(tmp_path):
    save_keras_weights(lamina.Sequential([lamina.Input((3,)), Dense(4), Dense(2)]), tmp_path / "a.weights.h5")
    target = lamina.Sequential([lamina.Input((3,)), Dense(5), Dense(2)])
    before = target.get_weights()
    with pytest.raises(FormatError, match=r"shapes in the file \[\(3, 4\), \(4,\)\]"):
        load_keras_weights(target, tmp_path / "a.weights.h5")
    with pytest.warns(UserWarning, match="skip_mismatch"):
        load_keras_weights(target, tmp_path / "a.weights.h5", skip_mismatch=True)
    np.testing.assert_array_equal(target.get_weights()[0], before[0])


def test_load_keras_weights_reads_weights_of_a_keras_archive(tmp_path):
    source = lamina.Sequential([lamina.Input((3,)), Dense(2)])
    save_keras(source, tmp_path / "model.keras")
    target = lamina.Sequential([lamina.Input((3,)), Dense(2)])
    load_keras_weights(target, tmp_path / "model.keras")
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- hostile and malformed files
def _write_zip(path, members):
    with zipfile.ZipFile(path, "w") as file:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            file.writestr(info, data)


def _keras_config(layer_entries):
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
               "config": {"batch_shape": [None, 2], "dtype": "float32", "name": "input_layer"}}]
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": "sequential", "layers": layers + layer_entries}}


def _hostile_archive(path, config):
    weights = io.BytesIO()
    with h5py.File(weights, "w"):
        pass
    _write_zip(path, [("config.json", json.dumps(config), stat.S_IFREG | 0o644),
                      ("model.weights.h5", weights.getvalue(), stat.S_IFREG | 0o644)])


def test_load_keras_refuses_config_naming_os_system(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args))
    probe = "lamina_keras_format_probe_module"
    entries = [
        {"module": "os", "class_name": "system", "config": {"command": "touch pwned"}, "registered_name": "system"},
        {"module": probe, "class_name": "Dense", "registered_name": None,
         "config": {"units": 1, "activation": {"module": "os", "class_name": "function", "config": "system",
                                               "registered_name": "system"}}},
    ]
    _hostile_archive(tmp_path / "evil.keras", _keras_config(entries))
    with pytest.raises(FormatError, match="system"):
        load_keras(tmp_path / "evil.keras")
    _hostile_archive(tmp_path / "evil2.keras", _keras_config(entries[1:]))
    with pytest.raises(FormatError, match="system"):
        load_keras(tmp_path / "evil2.keras")
    assert calls == [] and probe not in sys.modules and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("safe_mode", [True, False])
def test_load_keras_refuses_lambda_bytecode(keras, tmp_path, monkeypatch, safe_mode):
    import marshal

    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "lambda.keras")

    def forbidden(*args):
        raise AssertionError("bytecode from the file was unmarshalled")

    monkeypatch.setattr(marshal, "loads", forbidden)
    with pytest.raises(FormatError, match="bytecode"):
        load_keras(tmp_path / "lambda.keras", safe_mode=safe_mode)


@pytest.mark.parametrize("name, mode, reason", [
    ("../escape.txt", stat.S_IFREG | 0o644, "climbs out"),
    ("/etc/passwd", stat.S_IFREG | 0o644, "absolute path"),
    ("assets/link", stat.S_IFLNK | 0o777, "symbolic link"),
    ("payload.pkl", stat.S_IFREG | 0o644, "not a member of a Keras archive"),
])
def test_load_keras_refuses_hostile_members(tmp_path, name, mode, reason):
    source = tmp_path / "good.keras"
    save_keras(lamina.Sequential([lamina.Input((2,)), Dense(1)]), source)
    with zipfile.ZipFile(source) as file:
        members = [(n, file.read(n), stat.S_IFREG | 0o644) for n in file.namelist()]
    _write_zip(tmp_path / "evil.keras", members + [(name, b"x", mode)])
    with pytest.raises(FormatError, match=reason):
        load_keras(tmp_path / "evil.keras")
    assert not (tmp_path.parent / "escape.txt").exists()


def test_load_keras_weights_refuses_hdf5_links(tmp_path):
    path = tmp_path / "model.weights.h5"
    save_keras_weights(lamina.Sequential([lamina.Input((2,)), Dense(1)]), path)
    with h5py.File(path, "a") as file:
        del file["layers/dense/vars/0"]
        file["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/data")
    with pytest.raises(FormatError, match="ExternalLink"):
        load_keras_weights(lamina.Sequential([lamina.Input((2,)), Dense(1)]), path)


def test_load_keras_enforces_max_bytes(tmp_path):
    save_keras(lamina.Sequential([lamina.Input((64,)), Dense(64)]), tmp_path / "model.keras")
    with pytest.raises(FormatError, match="limit"):
        load_keras(tmp_path / "model.keras", max_bytes=4096)


def test_load_keras_points_lamina_archives_to_load_model(tmp_path):
    path = tmp_path / "model.keras"
    archive.write_archive(path, {"class_name": "Sequential", "config": {}}, {"w": torch.zeros(1)}, {})
    assert not is_keras_archive(path)
    with pytest.raises(FormatError, match="load_model"):
        load_keras(path)


def test_keras_format_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        save_keras_weights(lamina.Sequential([lamina.Input((2,)), Dense(1)]), tmp_path / "m.weights.h5")
