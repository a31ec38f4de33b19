"""Tests for lamina.serving.runtime: one predictor per model file format, same answers as predict."""

import numpy as np
import pytest

from lamina import Input, Model, Sequential
from lamina.export import TensorSpec, export_model
from lamina.layers import Concatenate, Dense
from lamina.saving import FormatError, save_model
from lamina.serving.runtime import (
    LaminaPredictor,
    OnnxPredictor,
    TorchExportPredictor,
    load_predictor,
)


def _two_input_model():
    a, b = Input((2,), name="a"), Input((3,), name="b")
    hidden = Dense(4, activation="relu")(Concatenate()([a, b]))
    return Model({"a": a, "b": b}, {"score": Dense(1, name="score")(hidden), "probs": Dense(2, name="p")(hidden)})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    model = _two_input_model()
    save_model(model, folder / "m.lamina")
    export_model(model, folder / "m.pt2", verbose=False)
    if _has("onnxscript") and _has("onnxruntime"):
        export_model(model, folder / "m.onnx", verbose=False)
    return model, folder


def _has(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("name, kind", [("m.lamina", LaminaPredictor), ("m.pt2", TorchExportPredictor),
                                        ("m.onnx", OnnxPredictor)])
def test_load_predictor_every_format_matches_predict(files, name, kind):
    model, folder = files
    if not (folder / name).exists():
        pytest.skip("onnx / onnxscript / onnxruntime not installed")
    predictor = load_predictor(folder / name)
    assert isinstance(predictor, kind)
    assert [(s.name, s.shape, s.dtype) for s in predictor.inputs] == [("a", (None, 2), "float32"),
                                                                        ("b", (None, 3), "float32")]
    assert [(s.name, s.shape) for s in predictor.outputs] == [("score", (None, 1)), ("probs", (None, 2))]
    data = {"a": np.random.normal(size=(5, 2)).astype("float32"), "b": np.random.normal(size=(5, 3)).astype("float32")}
    score, probs = predictor.predict([data["a"], data["b"]])
    expected = model.predict(data, verbose=0)
    np.testing.assert_allclose(score, expected["score"], atol=1e-5)
    np.testing.assert_allclose(probs, expected["probs"], atol=1e-5)


def test_predictor_predict_in_batches_equals_one_call(files):
    _, folder = files
    predictor = load_predictor(folder / "m.lamina")
    arrays = [np.random.normal(size=(11, 2)).astype("float32"), np.random.normal(size=(11, 3)).astype("float32")]
    for whole, chunked in zip(predictor.predict(arrays), predictor.predict_in_batches(arrays, batch_size=4)):
        np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_predictor_metadata_is_plain_json(files):
    _, folder = files
    metadata = load_predictor(folder / "m.pt2").metadata()
    assert metadata["format"] == "torch" and metadata["name"] == "m"
    assert metadata["inputs"][0] == {"name": "a", "shape": [None, 2], "dtype": "float32"}


def test_lamina_predictor_runs_in_inference_mode():
    from lamina.layers import Dropout

    predictor = LaminaPredictor(Sequential([Input((50,)), Dropout(0.9)]))
    x = np.ones((4, 50), "float32")
    np.testing.assert_array_equal(predictor.predict([x])[0], x)


def test_load_predictor_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"expected a model file ending in \.lamina, \.keras, \.onnx, \.pt2"):
        load_predictor(tmp_path / "model.h5")


def test_load_predictor_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such model file"):
        load_predictor(tmp_path / "absent.lamina")


@pytest.mark.parametrize("name, error, match", [
    ("bad.lamina", FormatError, "not a readable zip archive"),
    ("bad.pt2", ValueError, "not a valid torch.export"),
    ("bad.onnx", ValueError, "not a valid ONNX model"),
])
def test_load_predictor_invalid_file(tmp_path, name, error, match):
    if name.endswith(".onnx") and not _has("onnxruntime"):
        pytest.skip("onnxruntime not installed")
    (tmp_path / name).write_bytes(b"this is not a model")
    with pytest.raises(error, match=match):
        load_predictor(tmp_path / name)


def test_torch_export_predictor_needs_a_lamina_signature(tmp_path):
    import torch

    program = torch.export.export(torch.nn.Linear(2, 1), (torch.zeros(2, 2),))
    torch.export.save(program, tmp_path / "plain.pt2")
    with pytest.raises(ValueError, match="has no lamina signature"):
        load_predictor(tmp_path / "plain.pt2")


def test_tensor_spec_json_round_trip():
    spec = TensorSpec("x", (None, 3), "int32")
    assert TensorSpec.from_json(spec.to_json()) == spec
