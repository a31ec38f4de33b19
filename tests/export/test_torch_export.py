"""Tests for lamina.export.torch_export: model signatures, the inference wrapper and .pt2 export."""

import numpy as np
import pytest
import torch

from lamina import Input, Model, Sequential
from lamina.export import (
    InferenceModule,
    ModelSignature,
    TensorSpec,
    export_model,
    export_torch,
    load_torch_signature,
    model_signature,
)
from lamina.layers import (
    BatchNormalization,
    Concatenate,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
)


def _trained_mlp():
    """Dense + BatchNormalization + Dropout with moving statistics moved away from (0, 1)."""
    model = Sequential([Input((6,), name="features"), Dense(8, activation="relu"), BatchNormalization(),
                        Dropout(0.5), Dense(3, activation="softmax", name="probs")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.normal(2.0, 3.0, size=(64, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[np.random.randint(0, 3, 64)]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model


def _two_input_model():
    numbers = Input((2,), name="numbers")
    tokens = Input((3,), dtype="int32", name="tokens")
    embedded = Flatten()(Embedding(10, 2)(tokens))
    hidden = Concatenate()([Dense(4, activation="relu")(numbers), embedded])
    return Model({"numbers": numbers, "tokens": tokens},
                 {"score": Dense(1, name="score")(hidden), "probs": Dense(2, activation="softmax", name="p")(hidden)})


def _two_input_data(rows):
    return {"numbers": np.random.normal(size=(rows, 2)).astype("float32"),
            "tokens": np.random.randint(0, 10, size=(rows, 3)).astype("int32")}


class _Subclassed(Model):
    def __init__(self):
        super().__init__()
        self.dense = Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


class _DataDependent(Model):
    def __init__(self):
        super().__init__()
        self.dense = Dense(2)

    def call(self, inputs):
        if float(inputs.sum()) > 0:  # Python branching on a value: cannot be traced
            return self.dense(inputs)
        return -self.dense(inputs)


# ---------------------------------------------------------------------------------- signatures
def test_model_signature_sequential_names_and_shapes():
    signature = model_signature(Sequential([Input((8,), name="x"), Dense(3, name="y")]))
    assert signature.inputs == [TensorSpec("x", (None, 8), "float32")]
    assert signature.outputs == [TensorSpec("y", (None, 3), "float32")]
    assert signature.input_structure == 0 and signature.output_structure == 0


def test_model_signature_functional_dict_inputs_and_outputs():
    signature = model_signature(_two_input_model())
    assert [(s.name, s.shape, s.dtype) for s in signature.inputs] == [
        ("numbers", (None, 2), "float32"), ("tokens", (None, 3), "int32")]
    assert [(s.name, s.shape) for s in signature.outputs] == [("score", (None, 1)), ("probs", (None, 2))]
    assert signature.input_structure == {"numbers": 0, "tokens": 1}
    assert signature.output_structure == {"score": 0, "probs": 1}


def test_model_signature_functional_list_inputs_use_input_names():
    a, b = Input((2,), name="left"), Input((3,), name="right")
    model = Model([a, b], Dense(1, name="out")(Concatenate()([a, b])))
    signature = model_signature(model)
    assert [s.name for s in signature.inputs] == ["left", "right"]
    assert signature.input_structure == [0, 1]
    assert [s.name for s in signature.outputs] == ["out"]


def test_model_signature_subclassed_model_uses_its_build_shape():
    model = _Subclassed()
    model(np.zeros((5, 4), "float32"))
    signature = model_signature(model)
    assert signature.inputs == [TensorSpec("inputs", (None, 4), "float32")]
    assert signature.outputs == [TensorSpec("output", (None, 2), "float32")]


def test_model_signature_unbuilt_model_says_how_to_fix():
    with pytest.raises(ValueError, match="input_signature"):
        model_signature(_Subclassed())


@pytest.mark.parametrize("given, expected", [
    ((None, 4), [TensorSpec("inputs", (None, 4), "float32")]),
    (np.zeros((7, 4), "float64"), [TensorSpec("inputs", (None, 4), "float64")]),
    (TensorSpec("x", (None, 4), "float32"), [TensorSpec("x", (None, 4), "float32")]),
])
def test_model_signature_input_signature_forms(given, expected):
    model = _Subclassed()
    model(np.zeros((1, 4), "float32"))
    assert model_signature(model, input_signature=given).inputs == expected


def test_model_signature_dict_input_signature_names_inputs_by_key():
    signature = model_signature(_two_input_model(), input_signature={
        "numbers": (None, 2), "tokens": TensorSpec("ignored", (None, 3), "int32")})
    assert [s.name for s in signature.inputs] == ["numbers", "ignored"]
    assert signature.input_structure == {"numbers": 0, "tokens": 1}


def test_model_signature_rejects_unusable_input_signature():
    model = _Subclassed()
    with pytest.raises(TypeError, match="input_signature entries"):
        model_signature(model, input_signature="(None, 4)")


def test_model_signature_json_round_trip():
    signature = model_signature(_two_input_model())
    assert ModelSignature.from_json(signature.to_json()) == signature


def test_inference_module_takes_and_returns_flat_tuples():
    model = _two_input_model()
    data = _two_input_data(4)
    wrapper = InferenceModule(model, model_signature(model))
    score, probs = wrapper(torch.as_tensor(data["numbers"]), torch.as_tensor(data["tokens"]))
    expected = model.predict(data, verbose=0)
    np.testing.assert_allclose(score.detach().numpy(), expected["score"], atol=1e-6)
    np.testing.assert_allclose(probs.detach().numpy(), expected["probs"], atol=1e-6)


# ---------------------------------------------------------------------------------- .pt2 files
@pytest.mark.parametrize("rows", [1, 3, 17])
def test_export_torch_matches_predict_in_inference_mode(tmp_path, rows):
    model = _trained_mlp()
    path = export_torch(model, tmp_path / "mlp.pt2", verbose=False)
    program = torch.export.load(path).module()
    x = np.random.normal(2.0, 3.0, size=(rows, 6)).astype("float32")
    output = program(torch.as_tensor(x))
    np.testing.assert_allclose(output.detach().numpy(), model.predict(x, verbose=0), atol=1e-5)


def test_export_torch_multi_input_model_at_several_batch_sizes(tmp_path):
    model = _two_input_model()
    program = torch.export.load(export_model(model, tmp_path / "two.pt2", verbose=False)).module()
    for rows in (1, 5, 12):
        data = _two_input_data(rows)
        outputs = program({"tokens": torch.as_tensor(data["tokens"]), "numbers": torch.as_tensor(data["numbers"])})
        expected = model.predict(data, verbose=0)
        assert list(outputs) == ["score", "probs"]
        np.testing.assert_allclose(outputs["score"].detach().numpy(), expected["score"], atol=1e-5)
        np.testing.assert_allclose(outputs["probs"].detach().numpy(), expected["probs"], atol=1e-5)


def test_export_torch_dynamic_sequence_axis(tmp_path):
    model = Sequential([Input((None, 4), name="sequence"), Dense(3), GlobalAveragePooling1D()])
    program = torch.export.load(export_torch(model, tmp_path / "seq.pt2", verbose=False)).module()
    for rows, steps in ((2, 5), (3, 9)):
        x = np.random.normal(size=(rows, steps, 4)).astype("float32")
        np.testing.assert_allclose(program(torch.as_tensor(x)).detach().numpy(),
                                   model.predict(x, verbose=0), atol=1e-5)


def test_export_torch_stores_the_signature(tmp_path):
    model = _two_input_model()
    path = export_torch(model, tmp_path / "two.pt2", verbose=False)
    assert load_torch_signature(path) == model_signature(model)


def test_export_torch_restores_training_mode_and_prints(tmp_path, capsys):
    model = _trained_mlp()
    model.train()
    path = export_torch(model, tmp_path / "m.pt2")
    assert model.training and all(m.training for m in model.modules())
    assert capsys.readouterr().out.strip() == f"Saved artifact at '{path}'."


def test_export_torch_subclassed_model_with_input_signature(tmp_path):
    model = _Subclassed()
    path = export_torch(model, tmp_path / "sub.pt2", input_signature=(None, 4), verbose=False)
    x = np.random.normal(size=(3, 4)).astype("float32")
    output = torch.export.load(path).module()(torch.as_tensor(x))
    np.testing.assert_allclose(output.detach().numpy(), model.predict(x, verbose=0), atol=1e-6)


def test_export_torch_list_inputs_model(tmp_path):
    a, b = Input((2,), name="left"), Input((3,), name="right")
    model = Model([a, b], [Dense(1, name="one")(Concatenate()([a, b])), Dense(2, name="two")(b)])
    program = torch.export.load(export_torch(model, tmp_path / "list.pt2", verbose=False)).module()
    x = [np.random.normal(size=(4, 2)).astype("float32"), np.random.normal(size=(4, 3)).astype("float32")]
    outputs = program([torch.as_tensor(v) for v in x])
    for got, expected in zip(outputs, model.predict(x, verbose=0)):
        np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-5)


def test_export_torch_matches_keras_torch_export(tmp_path, keras):
    """Same weights, same input: lamina's .pt2 and Keras's ``export(format="torch")`` agree
    (Keras's program has a fixed batch of 1; lamina's batch axis is dynamic)."""
    def build(module):
        return module.Sequential([module.Input((6,)), module.layers.Dense(8, activation="relu"),
                                  module.layers.BatchNormalization(), module.layers.Dropout(0.5),
                                  module.layers.Dense(3, activation="softmax")])

    reference = build(keras)
    reference.layers[1].set_weights([np.full(8, 1.5, "float32"), np.full(8, 0.2, "float32"),
                                     np.linspace(-1, 1, 8).astype("float32"), np.linspace(0.5, 2, 8).astype("float32")])
    reference.export(str(tmp_path / "keras.pt2"), format="torch", verbose=False)
    model = build(__import__("lamina"))
    model.set_weights(reference.get_weights())
    export_model(model, tmp_path / "lamina.pt2", format="torch", verbose=False)
    x = torch.randn(1, 6)
    expected = torch.export.load(tmp_path / "keras.pt2").module()(x)
    got = torch.export.load(tmp_path / "lamina.pt2").module()(x)
    torch.testing.assert_close(got.detach(), expected.detach(), atol=1e-6, rtol=0)


def test_export_torch_requires_pt2_extension(tmp_path):
    with pytest.raises(ValueError, match=r"must end in '\.pt2'"):
        export_torch(Sequential([Input((2,)), Dense(1)]), tmp_path / "model.bin")


def test_export_torch_value_dependent_model_fails_with_a_clear_error(tmp_path):
    model = _DataDependent()
    model(np.ones((2, 3), "float32"))
    with pytest.raises(RuntimeError, match="Could not export model .* to torch.export"):
        export_torch(model, tmp_path / "bad.pt2", verbose=False)
    assert not (tmp_path / "bad.pt2").exists()
