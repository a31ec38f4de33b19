"""Tests for lamina.models.functional: graphs built with Input, their layer order, calls,
configs and parity with Keras functional models holding the same weights."""

import json

import numpy as np
import pytest
import torch

import lamina
from lamina import Input, Model, Sequential
from lamina.layers import Dense, Dropout, Flatten, Layer, Reshape
from lamina.models import Functional


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _random_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]


def _single(m):
    x = m.Input((6,), name="x")
    h = m.layers.Dense(8, activation="relu", name="h")(x)
    h = m.layers.Dropout(0.5, name="drop")(h)
    return m.Model(x, m.layers.Dense(3, activation="softmax", name="out")(h), name="single")


def _branches(m):
    # Two inputs, a deep and a shallow branch, two outputs: exercises Keras's layer order.
    a = m.Input((5,), name="a")
    b = m.Input((3,), name="b")
    deep = m.layers.Dense(4, activation="tanh", name="deep1")(a)
    deep = m.layers.Dense(4, activation="relu", name="deep2")(deep)
    shallow = m.layers.Dense(4, name="shallow")(b)
    out1 = m.layers.Dense(2, name="out1")(deep)
    out2 = m.layers.Dense(1, name="out2")(shallow)
    return m.Model([a, b], [out1, out2], name="branches")


def _shared(m):
    a = m.Input((4,), name="left")
    b = m.Input((4,), name="right")
    encoder = m.layers.Dense(3, activation="relu", name="encoder")
    head = m.layers.Dense(2, name="head")
    return m.Model([a, b], [head(encoder(a)), head(encoder(b))], name="shared")


def _nested(m):
    inner = m.Sequential([m.layers.Dense(4, activation="relu", name="i1"), m.layers.Dense(3, name="i2")],
                         name="inner")
    x = m.Input((2, 3), name="img")
    h = m.layers.Flatten(name="flat")(x)
    return m.Model(x, m.layers.Dense(2, name="top")(inner(h)), name="nested")


def _inputs_for(model, seed=1):
    rng = np.random.default_rng(seed)
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    arrays = [rng.normal(size=(4, *shape[1:])).astype("float32") for shape in shapes]
    return arrays if len(arrays) > 1 else arrays[0]


# ---------------------------------------------------------------- construction
def test_functional_model_class_and_shapes():
    model = _single(lamina)
    assert type(model) is Functional and isinstance(model, Model)
    assert model.input_shape == (None, 6) and model.output_shape == (None, 3)
    assert [s.shape for s in model.inputs] == [(None, 6)] and [s.shape for s in model.outputs] == [(None, 3)]
    assert model.built and model.count_params() == 6 * 8 + 8 + 8 * 3 + 3


def test_functional_default_names():
    lamina.clear_session()
    x = Input((2,))
    y = Dense(1)(x)
    assert [Model(x, y).name, Model(x, y).name] == ["functional", "functional_1"]


def test_functional_layers_include_inputs_like_keras(keras):
    for build in (_single, _branches, _shared, _nested):
        ours, theirs = build(lamina), build(keras)
        assert [l.name for l in ours.layers] == [l.name for l in theirs.layers], build.__name__
        assert [type(l).__name__ for l in ours.layers] == [type(l).__name__ for l in theirs.layers]


@pytest.mark.parametrize("build", [_single, _branches, _shared, _nested])
def test_functional_weights_order_and_count_match_keras(keras, build):
    ours, theirs = build(lamina), build(keras)
    assert ours.count_params() == theirs.count_params()
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]


@pytest.mark.parametrize("build", [_single, _branches, _shared, _nested])
def test_functional_predictions_match_keras(keras, build):
    ours, theirs = build(lamina), build(keras)
    theirs.set_weights(_random_weights(theirs))
    ours.set_weights(theirs.get_weights())
    x = _inputs_for(ours)
    expected = theirs(x, training=False)
    result = ours(x)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    result = result if isinstance(result, (list, tuple)) else [result]
    assert len(result) == len(expected)
    for a, b in zip(result, expected):
        np.testing.assert_allclose(_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build", [_single, _branches], ids=["single", "branches"])
def test_functional_output_shapes_match_keras(keras, build):
    ours, theirs = build(lamina), build(keras)
    expected = theirs.output_shape
    expected = [tuple(s) for s in expected] if isinstance(expected, list) else tuple(expected)
    assert ours.output_shape == expected
    expected_in = theirs.input_shape
    assert ours.input_shape == (expected_in if isinstance(expected_in, list) else tuple(expected_in))


def test_functional_dict_inputs_and_outputs_match_keras(keras):
    def build(m):
        a, b = m.Input((3,), name="a"), m.Input((2,), name="b")
        return m.Model({"a": a, "b": b}, {"ya": m.layers.Dense(1, name="da")(a), "yb": m.layers.Dense(2, name="db")(b)})

    ours, theirs = build(lamina), build(keras)
    ours.set_weights(theirs.get_weights())
    feed = {"b": np.ones((2, 2), "float32"), "a": np.arange(6, dtype="float32").reshape(2, 3)}
    result, expected = ours(feed), theirs(feed)
    assert set(result) == {"ya", "yb"}
    for key in result:
        np.testing.assert_allclose(_numpy(result[key]), keras.ops.convert_to_numpy(expected[key]), rtol=1e-5, atol=1e-6)


def test_functional_list_model_accepts_dict_by_input_name():
    model = _branches(lamina)
    a, b = np.ones((2, 5), "float32"), np.zeros((2, 3), "float32")
    by_list = model([a, b])
    by_dict = model({"b": b, "a": a})
    for x, y in zip(by_list, by_dict):
        torch.testing.assert_close(x, y)


def test_functional_dict_missing_key_raises():
    with pytest.raises(ValueError, match=r"\['a', 'b'\].*missing \['b'\]"):
        _branches(lamina)({"a": np.ones((2, 5), "float32")})


def test_functional_wrong_number_of_inputs_raises():
    with pytest.raises(ValueError, match="expects 2 input"):
        _branches(lamina)([np.ones((2, 5), "float32")])


def test_functional_single_element_lists_unpacked_like_keras(keras):
    x = Input((3,))
    model = Model([x], [Dense(2)(x)])
    out = model(np.ones((4, 3), "float32"))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (4, 2)
    assert model.output_shape == (None, 2) and model.input_shape == (None, 3)


def test_functional_shared_layer_called_twice():
    model = _shared(lamina)
    encoder = model.get_layer("encoder")
    assert len([l for l in model.layers if l is encoder]) == 1
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    left, right = model([x, x])
    torch.testing.assert_close(left, right)
    assert len(model.weights) == 4


def test_functional_nested_sequential_as_layer():
    model = _nested(lamina)
    inner = model.get_layer("inner")
    assert isinstance(inner, Sequential) and inner.output_shape == (None, 3)
    assert tuple(model(np.ones((5, 2, 3), "float32")).shape) == (5, 2)
    assert model.count_params() == (6 * 4 + 4) + (4 * 3 + 3) + (3 * 2 + 2)


def test_functional_model_used_as_layer():
    inner = _single(lamina)
    x = Input((6,))
    outer = Model(x, Dense(1)(inner(x)))
    assert outer.output_shape == (None, 1)
    assert tuple(outer(np.ones((2, 6), "float32")).shape) == (2, 1)
    assert outer.count_params() == inner.count_params() + 4


def test_functional_custom_layer_with_several_inputs_and_outputs():
    class SumAndConcat(Layer):
        def call(self, inputs):
            a, b = inputs
            return [a + b, torch.cat([a, b], dim=-1)]

    a, b = Input((3,)), Input((3,))
    total, joined = SumAndConcat()([a, b])
    model = Model([a, b], [Dense(1)(total), joined])
    assert model.output_shape == [(None, 1), (None, 6)]
    out_total, out_joined = model([torch.ones(2, 3), torch.zeros(2, 3)])
    assert tuple(out_total.shape) == (2, 1)
    torch.testing.assert_close(out_joined, torch.cat([torch.ones(2, 3), torch.zeros(2, 3)], -1))


def test_functional_get_layer_by_name_and_index():
    model = _branches(lamina)
    assert model.get_layer("shallow").units == 4
    assert model.get_layer(index=0).name == "a"
    with pytest.raises(ValueError, match="No such layer"):
        model.get_layer("nope")


def test_functional_inputs_outputs_are_the_symbolic_tensors():
    a = Input((2,))
    y = Dense(1)(a)
    model = Model(a, y)
    assert model.inputs[0] is a and model.outputs[0] is y


def test_functional_disconnected_graph_raises():
    a, b = Input((2,), name="seen"), Input((2,), name="unseen")
    y = Dense(1)(b)
    with pytest.raises(ValueError, match=r"Graph disconnected.*unseen"):
        Model(a, y)


def test_functional_requires_symbolic_inputs():
    with pytest.raises(ValueError, match="symbolic"):
        Model(np.ones(2), np.ones(2))


def test_functional_unused_input_is_kept_as_keras(keras):
    def build(m):
        a, b = m.Input((2,), name="used"), m.Input((3,), name="extra")
        return m.Model([a, b], m.layers.Dense(1, name="d")(a))

    model = build(lamina)
    assert [l.name for l in model.layers] == [l.name for l in build(keras).layers] == ["used", "extra", "d"]
    assert tuple(model([np.ones((2, 2), "float32"), np.ones((2, 3), "float32")]).shape) == (2, 1)


def test_functional_sub_model_from_intermediate_tensor():
    x = Input((4,))
    hidden_layer = Dense(3, name="hidden")
    h = hidden_layer(x)
    out = Dense(2, name="head")(h)
    full = Model(x, out)
    head_only = Model(h, out)
    assert [l.name for l in head_only.layers] == ["head"]
    hidden = hidden_layer(torch.ones(2, 4))
    torch.testing.assert_close(head_only(hidden), full(torch.ones(2, 4)))


def test_functional_training_flag_reaches_dropout():
    x = Input((100,))
    model = Model(x, Dropout(0.5)(x))
    data = torch.ones(8, 100)
    torch.testing.assert_close(model(data), data)
    dropped = model(data, training=True)
    assert (dropped == 0).any() and (dropped == 2).any()


def test_functional_gradients_flow_to_all_weights():
    model = _branches(lamina)
    out1, out2 = model([torch.randn(3, 5), torch.randn(3, 3)])
    (out1.sum() + out2.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_functional_trainable_false():
    model = _single(lamina)
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 4


def test_functional_reshape_flatten_chain():
    x = Input((12,))
    model = Model(x, Flatten()(Dense(5)(Reshape((3, 4))(x))))
    assert model.output_shape == (None, 15)
    assert tuple(model(torch.ones(2, 12)).shape) == (2, 15)


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("build", [_single, _branches, _shared, _nested])
def test_functional_config_round_trip_same_predictions(build):
    model = build(lamina)
    config = json.loads(json.dumps(model.get_config()))
    clone = Model.from_config(config)
    assert type(clone) is Functional
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    clone.set_weights(model.get_weights())
    x = _inputs_for(model)
    result, expected = clone(x), model(x)
    result = result if isinstance(result, (list, tuple)) else [result]
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    for a, b in zip(result, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("build", [_single, _branches, _shared])
def test_functional_config_structure_matches_keras(keras, build):
    ours, theirs = build(lamina).get_config(), build(keras).get_config()
    assert {"name", "layers", "input_layers", "output_layers"} <= set(ours)
    assert [e["name"] for e in ours["layers"]] == [e["name"] for e in theirs["layers"]]
    assert [len(e["inbound_nodes"]) for e in ours["layers"]] == [len(e["inbound_nodes"]) for e in theirs["layers"]]
    assert json.loads(json.dumps(ours["input_layers"])) == json.loads(json.dumps(theirs["input_layers"]))
    assert json.loads(json.dumps(ours["output_layers"])) == json.loads(json.dumps(theirs["output_layers"]))


@pytest.mark.parametrize("build", [_single, _branches, _shared])
def test_functional_from_keras_config(keras, build):
    theirs = build(keras)
    ours = Model.from_config(json.loads(json.dumps(theirs.get_config())))
    ours.set_weights(theirs.get_weights())
    x = _inputs_for(ours)
    result, expected = ours(x), theirs(x)
    result = result if isinstance(result, (list, tuple)) else [result]
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    for a, b in zip(result, expected):
        np.testing.assert_allclose(_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-5)
