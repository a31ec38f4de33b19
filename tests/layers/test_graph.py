"""Tests for lamina.layers.graph: Input, InputLayer, SymbolicTensor, Node and symbolic calls."""

import json

import pytest
import torch

import lamina
from lamina import registry
from lamina.layers import Dense, Flatten, Input, InputLayer, Layer, Reshape
from lamina.layers.base import clear_session
from lamina.layers.graph import Node, SymbolicTensor


# ---------------------------------------------------------------- Input
@pytest.mark.parametrize("kwargs", [
    {"shape": (3,)}, {"shape": (28, 28, 1)}, {"shape": [5]}, {"shape": (None, 8)}, {"shape": (3,), "batch_size": 16},
    {"batch_shape": (4, 2, 3)}, {"batch_shape": (None, 7)}, {"shape": (2,), "dtype": "int32"}, {"shape": ()},
])
def test_input_shape_and_dtype_match_keras(keras, kwargs):
    ours, theirs = Input(**kwargs), keras.Input(**kwargs)
    assert ours.shape == tuple(theirs.shape)
    assert ours.dtype == theirs.dtype
    assert ours.ndim == theirs.ndim


def test_input_int_shape_accepted():
    assert Input(5).shape == (None, 5)


def test_input_is_symbolic_and_owned_by_input_layer():
    x = Input((3,), name="features")
    assert isinstance(x, SymbolicTensor)
    layer = x.node.layer
    assert isinstance(layer, InputLayer) and layer.name == "features" and x.name == "features"
    assert layer.output is x and layer.batch_shape == (None, 3) and layer.built
    assert x.node.outputs == [x] and x.node.inputs == []


def test_input_default_names_as_keras(keras):
    clear_session()
    keras.backend.clear_session(free_memory=False)
    ours = [Input((1,)).node.layer.name for _ in range(2)]
    theirs = [keras.layers.InputLayer(shape=(1,)).name for _ in range(2)]
    assert ours == theirs == ["input_layer", "input_layer_1"]


def test_input_requires_a_shape():
    with pytest.raises(ValueError, match="shape"):
        Input()


def test_input_rejects_shape_and_batch_shape_together():
    with pytest.raises(ValueError, match="batch_shape"):
        Input(shape=(2,), batch_shape=(None, 3))


def test_input_rejects_batch_size_and_batch_shape_together():
    with pytest.raises(ValueError, match="batch_size"):
        Input(batch_size=2, batch_shape=(None, 3))


def test_input_argument_order_matches_keras(keras):
    import inspect

    assert list(inspect.signature(Input).parameters) == list(inspect.signature(keras.Input).parameters)
    assert list(inspect.signature(InputLayer).parameters) == list(inspect.signature(keras.layers.InputLayer).parameters)


def test_input_layer_legacy_input_shape_argument():
    assert InputLayer(input_shape=(4,)).batch_shape == (None, 4)
    assert InputLayer(batch_input_shape=(2, 4)).batch_shape == (2, 4)


# ---------------------------------------------------------------- InputLayer config
def test_input_layer_get_config_matches_keras(keras):
    ours = InputLayer(shape=(3, 4), name="inp").get_config()
    theirs = keras.layers.InputLayer(shape=(3, 4), name="inp").get_config()
    assert ours == theirs


def test_input_layer_config_round_trip():
    layer = InputLayer(batch_shape=(None, 3), dtype="int64", name="ids")
    clone = registry.get("layer", json.loads(json.dumps(registry.serialize("layer", layer))))
    assert isinstance(clone, InputLayer)
    assert clone.batch_shape == (None, 3) and clone.dtype == "int64" and clone.name == "ids"
    assert clone.output.shape == (None, 3) and clone.output.dtype == "int64"


def test_input_layer_call_is_identity_and_has_no_weights():
    layer = InputLayer(shape=(2,))
    x = torch.ones(3, 2)
    assert layer(x) is x
    assert layer.weights == [] and layer.count_params() == 0


# ---------------------------------------------------------------- SymbolicTensor
def test_symbolic_tensor_has_no_truth_value():
    with pytest.raises(TypeError, match="no value"):
        bool(Input((2,)))


def test_symbolic_tensor_repr():
    x = Input((2, 3), name="img")
    assert repr(x) == "<SymbolicTensor shape=(None, 2, 3), dtype=float32, name=img>"


# ---------------------------------------------------------------- symbolic calls
def test_symbolic_call_builds_layer_and_infers_shape():
    x = Input((5,))
    layer = Dense(3)
    y = layer(x)
    assert layer.built and [w.shape for w in layer.get_weights()] == [(5, 3), (3,)]
    assert isinstance(y, SymbolicTensor) and y.shape == (None, 3)
    assert isinstance(y.node, Node) and y.node.layer is layer and y.node.inputs == [x]
    assert y.node.outputs == [y]


def test_symbolic_call_chains_shapes_as_keras(keras):
    def chain(module, x):
        x = module.layers.Reshape((4, -1))(x)
        x = module.layers.Dense(6)(x)
        return module.layers.Flatten()(x)

    assert chain(lamina, Input((12,))).shape == tuple(chain(keras, keras.Input((12,))).shape)


def test_symbolic_call_keeps_fixed_batch_size():
    assert Dense(2)(Input((3,), batch_size=4)).shape == (4, 2)


def test_symbolic_call_does_not_run_data():
    class Loud(Layer):
        def call(self, inputs):
            raise AssertionError("call must not run on symbolic inputs")

        def compute_output_shape(self, input_shape):
            return input_shape

    assert Loud()(Input((3,))).shape == (None, 3)


def test_symbolic_call_custom_layer_uses_eager_shape_inference():
    class Double(Layer):
        def call(self, inputs):
            return torch.cat([inputs, inputs], dim=-1)

    assert Double()(Input((2, 3))).shape == (None, 2, 6)


def test_symbolic_call_layer_with_multiple_inputs_and_outputs():
    class Split(Layer):
        def call(self, inputs):
            a, b = inputs
            return a + b, torch.cat([a, b], dim=-1)

    a, b = Input((3,)), Input((3,))
    total, joined = Split()([a, b])
    assert total.shape == (None, 3) and joined.shape == (None, 6)
    assert total.node is joined.node and total.node.inputs == [a, b]


def test_symbolic_call_shape_mismatch_names_layer():
    layer = Dense(2, name="fixed")
    layer.build((None, 4))
    with pytest.raises(ValueError, match=r'"fixed".*\(None, 5\)'):
        layer(Input((5,)))


def test_symbolic_call_reuses_built_layer():
    layer = Dense(2)
    first = layer(Input((3,)))
    second = layer(Input((3,)))
    assert first.node is not second.node and first.node.layer is second.node.layer
    assert len(layer.weights) == 2


def test_symbolic_call_ignores_training_kwarg():
    y = Dense(2)(Input((3,)), training=True)
    assert "training" not in y.node.kwargs


def test_symbolic_output_flatten_reshape_shapes():
    x = Input((2, 3, 4))
    assert Flatten()(x).shape == (None, 24)
    assert Reshape((-1, 4))(x).shape == (None, 6, 4)
