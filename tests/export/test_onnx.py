"""Tests for lamina.export.onnx and export_model: ONNX files checked with onnxruntime against predict."""

import importlib.util

import numpy as np
import pytest

from lamina import Input, Model, Sequential
from lamina.export import export_model, export_onnx
from lamina.layers import (
    LSTM,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    MaxPooling2D,
)

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _mixed_model():
    """Three inputs (image, int tokens, float sequence), convolution, BatchNormalization,
    Dropout, Embedding and LSTM, two named outputs: most of what a deployed model uses."""
    image = Input((8, 8, 2), name="image")
    tokens = Input((5,), dtype="int32", name="tokens")
    series = Input((4, 3), name="series")
    x = Conv2D(4, 3, activation="relu")(image)
    x = BatchNormalization()(MaxPooling2D()(x))
    x = Flatten()(Dropout(0.3)(x))
    t = Flatten()(Embedding(12, 2)(tokens))
    s = LSTM(3)(series)
    hidden = Dense(6, activation="tanh")(Concatenate()([x, t, s]))
    return Model({"image": image, "tokens": tokens, "series": series},
                 {"score": Dense(1, name="score")(hidden), "probs": Dense(3, activation="softmax", name="p")(hidden)})


def _mixed_data(rows, seed):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(rows, 8, 8, 2)).astype("float32"),
            "tokens": rng.integers(0, 12, size=(rows, 5)).astype("int32"),
            "series": rng.normal(size=(rows, 4, 3)).astype("float32")}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = _mixed_model()
    # Move BatchNormalization's moving statistics away from (0, 1) so inference mode matters.
    model.compile(optimizer="sgd", loss={"score": "mse", "probs": "categorical_crossentropy"})
    data = _mixed_data(32, seed=1)
    targets = {"score": np.ones((32, 1), "float32"), "probs": np.eye(3, dtype="float32")[np.arange(32) % 3]}
    model.fit(data, targets, epochs=1, batch_size=8, verbose=0)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "mixed.onnx", verbose=False)
    return model, path, _session(path)


@pytest.mark.parametrize("rows", [1, 2, 7, 33])
def test_export_onnx_matches_predict_at_several_batch_sizes(mixed, rows):
    model, _, session = mixed
    data = _mixed_data(rows, seed=rows)
    expected = model.predict(data, verbose=0)
    score, probs = session.run(["score", "probs"], data)
    np.testing.assert_allclose(score, expected["score"], atol=1e-5)
    np.testing.assert_allclose(probs, expected["probs"], atol=1e-5)


def test_export_onnx_names_inputs_and_outputs_after_the_model(mixed):
    _, _, session = mixed
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("image", ["batch", 8, 8, 2], "tensor(float)"),
        ("tokens", ["batch", 5], "tensor(int32)"),
        ("series", ["batch", 4, 3], "tensor(float)"),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("score", ["batch", 1]), ("probs", ["batch", 3])]


def test_export_onnx_writes_one_self_contained_file(mixed):
    _, path, _ = mixed
    model_proto = onnx.load(path)
    onnx.checker.check_model(model_proto)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model_proto.graph.initializer)


def test_export_onnx_sequential_dropout_is_off_and_training_mode_restored(tmp_path, capsys):
    model = Sequential([Input((5,), name="x"), Dense(16, activation="relu"), Dropout(0.9), Dense(2, name="y")])
    model.train()
    path = export_model(model, tmp_path / "seq.onnx")
    assert capsys.readouterr().out.strip() == f"Saved artifact at '{path}'."
    assert model.training and all(m.training for m in model.modules())
    x = np.random.normal(size=(6, 5)).astype("float32")
    (y,) = _session(path).run(["y"], {"x": x})
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


def test_export_model_infers_format_from_extension(tmp_path):
    import torch

    model = Sequential([Input((3,), name="x"), Dense(1)])
    assert export_model(model, tmp_path / "m.onnx", verbose=False) == str(tmp_path / "m.onnx")
    assert onnx.load(tmp_path / "m.onnx").graph.input[0].name == "x"
    assert export_model(model, tmp_path / "m.pt2", verbose=False) == str(tmp_path / "m.pt2")
    assert torch.export.load(tmp_path / "m.pt2").module()(torch.ones(2, 3)).shape == (2, 1)


def test_export_model_explicit_format_overrides_extension(tmp_path):
    model = Sequential([Input((3,), name="x"), Dense(1)])
    path = export_model(model, tmp_path / "model.bin", format="onnx", verbose=False)
    assert [i.name for i in _session(path).get_inputs()] == ["x"]


@pytest.mark.parametrize("path, format, match", [
    ("m.txt", None, "Cannot tell the export format"),
    ("m.onnx", "tflite", "Unknown export format"),
    ("m", "tf_saved_model", "does not offer"),
])
def test_export_model_rejects_unknown_formats(tmp_path, path, format, match):
    with pytest.raises(ValueError, match=match):
        export_model(Sequential([Input((3,)), Dense(1)]), tmp_path / path, format=format)


def test_export_onnx_missing_packages_name_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ImportError, match=r'onnxscript.*pip install "lamina\[export\]"'):
        export_onnx(Sequential([Input((3,)), Dense(1)]), tmp_path / "m.onnx")
