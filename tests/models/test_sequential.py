"""Tests for lamina.models.sequential: building, add/pop, shapes, config and Keras parity."""

import json

import numpy as np
import pytest
import torch

import lamina
from lamina import Input, Sequential
from lamina.layers import Dense, Dropout, Flatten, Layer, Reshape
from lamina.layers.base import clear_session


def _architecture(module):
    return [module.Input((6,)), module.layers.Dense(8, activation="relu"), module.layers.Dropout(0.3),
            module.layers.Dense(5, activation="tanh"), module.layers.Dense(3, activation="softmax")]


def _image_architecture(module):
    return [module.Input((4, 3, 2)), module.layers.Flatten(), module.layers.Dense(6, activation="gelu"),
            module.layers.Reshape((2, 3)), module.layers.Dense(4, use_bias=False), module.layers.Flatten(),
            module.layers.Dense(2)]


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------- construction
def test_sequential_from_list_with_input():
    model = Sequential([Input((4,)), Dense(3), Dense(2)])
    assert model.built and model.input_shape == (None, 4) and model.output_shape == (None, 2)
    assert [type(l).__name__ for l in model.layers] == ["Dense", "Dense"]  # input layer excluded
    assert model.count_params() == 4 * 3 + 3 + 3 * 2 + 2


def test_sequential_add_and_pop():
    model = Sequential()
    model.add(Input((4,)))
    model.add(Dense(3, name="a"))
    assert model.output_shape == (None, 3)
    model.add(Dense(2, name="b"))
    assert model.output_shape == (None, 2)
    popped = model.pop()
    assert popped.name == "b" and [l.name for l in model.layers] == ["a"]
    assert model.output_shape == (None, 3)


def test_sequential_pop_matches_keras(keras):
    def run(module):
        model = module.Sequential([module.Input((4,)), module.layers.Dense(3), module.layers.Dense(2)])
        model.pop()
        return model.output_shape, len(model.layers), model.count_params()

    assert run(lamina) == run(keras)


def test_sequential_pop_empty_raises():
    with pytest.raises(IndexError, match="no layers"):
        Sequential().pop()


def test_sequential_add_symbolic_input_tensor_or_input_layer():
    model = Sequential([lamina.layers.InputLayer(shape=(3,)), Dense(2)])
    assert model.output_shape == (None, 2)


def test_sequential_input_only_first():
    with pytest.raises(ValueError, match="Input"):
        Sequential([Dense(2), Input((3,))])


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match="int"):
        Sequential([3])


def test_sequential_rejects_duplicate_names():
    model = Sequential([Dense(2, name="same")])
    with pytest.raises(ValueError, match='"same"'):
        model.add(Dense(3, name="same"))


def test_sequential_default_names():
    clear_session()
    names = [Sequential().name, Sequential().name, Sequential(name="mine").name]
    assert names == ["sequential", "sequential_1", "mine"]


# ---------------------------------------------------------------- input shapes
def test_sequential_input_shape_on_first_layer_is_deprecated():
    with pytest.warns(DeprecationWarning, match="input_shape"):
        first = Dense(3, input_shape=(4,))
    model = Sequential([first, Dense(2)])
    assert model.built and model.input_shape == (None, 4) and model.output_shape == (None, 2)
    assert len(model.layers) == 2


def test_sequential_input_dim_on_first_layer_is_deprecated():
    with pytest.warns(DeprecationWarning, match="input_dim"):
        model = Sequential([Dense(3, input_dim=5)])
    assert model.input_shape == (None, 5)


def test_sequential_batch_size_with_input_shape():
    with pytest.warns(DeprecationWarning):
        model = Sequential([Dense(3, input_shape=(4,), batch_size=8)])
    assert model.input_shape == (8, 4) and model.output_shape == (8, 3)


def test_sequential_build_with_shape():
    model = Sequential([Dense(3), Dense(2)])
    assert not model.built
    model.build((None, 4))
    assert model.built and model.output_shape == (None, 2) and model.count_params() == 23
    assert model.input_shape == (None, 4)


def test_sequential_lazy_build_on_first_call():
    model = Sequential([Dense(3), Dense(2)])
    with pytest.raises(AttributeError):
        model.output_shape
    out = model(np.ones((5, 4), dtype="float32"))
    assert tuple(out.shape) == (5, 2) and model.built
    assert model.input_shape == (None, 4) and model.output_shape == (None, 2)
    assert model.count_params() == 23


def test_sequential_build_without_shape_raises():
    with pytest.raises(ValueError, match="input shape"):
        Sequential([Dense(2)]).build()


def test_sequential_unbuilt_count_params_raises():
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(2)]).count_params()


@pytest.mark.parametrize("action", ["call", "build"])
def test_sequential_empty_model_errors(action):
    model = Sequential()
    with pytest.raises(ValueError, match="no layers"):
        model(torch.ones(2, 2)) if action == "call" else model.build((None, 2))


def test_sequential_wrong_input_width_names_layer():
    model = Sequential([Input((4,)), Dense(3, name="first")])
    with pytest.raises(ValueError, match=r'"first".*\(2, 5\).*\(None, 4\)'):
        model(torch.ones(2, 5))


def test_sequential_build_with_built_layer_of_other_width_raises():
    layer = Dense(3, name="used")
    layer.build((None, 4))
    with pytest.raises(ValueError, match='"used"'):
        Sequential([Input((5,)), layer])


# ---------------------------------------------------------------- numbers against Keras
@pytest.mark.parametrize("architecture", [_architecture, _image_architecture], ids=["mlp", "reshape"])
def test_sequential_count_params_and_shapes_match_keras(keras, architecture):
    ours, theirs = Sequential(architecture(lamina)), keras.Sequential(architecture(keras))
    assert ours.count_params() == theirs.count_params()
    assert ours.output_shape == tuple(theirs.output_shape)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    assert [l._output_shape for l in ours.layers] == [tuple(l.output.shape) for l in theirs.layers]


@pytest.mark.parametrize("architecture", [_architecture, _image_architecture], ids=["mlp", "reshape"])
def test_sequential_predictions_match_keras(keras, architecture):
    ours, theirs = Sequential(architecture(lamina)), keras.Sequential(architecture(keras))
    theirs.set_weights([np.random.default_rng(i).normal(size=w.shape).astype("float32")
                        for i, w in enumerate(theirs.get_weights())])
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(9).normal(size=(7, *ours.input_shape[1:])).astype("float32")
    expected = keras.ops.convert_to_numpy(theirs(x, training=False))
    np.testing.assert_allclose(_numpy(ours(x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_sequential_weights_round_trip_to_keras(keras):
    ours, theirs = Sequential(_architecture(lamina)), keras.Sequential(_architecture(keras))
    theirs.set_weights(ours.get_weights())
    for a, b in zip(theirs.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_sequential_numpy_input_and_float64():
    model = Sequential([Input((3,)), Dense(2, kernel_initializer="ones")])
    out = model(np.ones((4, 3)))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((4, 2), 3.0))


def test_sequential_training_flag_reaches_dropout():
    model = Sequential([Input((200,)), Dropout(0.5)])
    x = torch.ones(4, 200)
    torch.testing.assert_close(model(x), x)
    assert (model(x, training=True) == 0).any()


def test_sequential_nested_sequential():
    inner = Sequential([Dense(4, activation="relu"), Dense(3)], name="inner")
    model = Sequential([Input((5,)), inner, Dense(2)])
    assert model.output_shape == (None, 2) and inner.output_shape == (None, 3)
    assert model.count_params() == (5 * 4 + 4) + (4 * 3 + 3) + (3 * 2 + 2)
    assert tuple(model(torch.ones(2, 5)).shape) == (2, 2)
    assert [w.shape for w in model.get_weights()] == [(5, 4), (4,), (4, 3), (3,), (3, 2), (2,)]


def test_sequential_trainable_false_freezes_all():
    model = Sequential(_architecture(lamina))
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 6
    assert all(not p.requires_grad for p in model.parameters())


def test_sequential_frozen_before_build_creates_frozen_weights():
    model = Sequential([Dense(3), Dense(2)])
    model.trainable = False
    model.build((None, 4))
    assert model.trainable_weights == [] and not any(p.requires_grad for p in model.parameters())


def test_sequential_get_layer():
    model = Sequential([Input((2,)), Dense(3, name="hidden"), Dense(1, name="out")])
    assert model.get_layer("out").units == 1 and model.get_layer(index=0).name == "hidden"
    with pytest.raises(ValueError, match="hidden"):
        model.get_layer("missing")


def test_sequential_repr():
    model = Sequential([Input((3,)), Dense(2)], name="seq")
    assert repr(model) == "<Sequential name=seq, input_shape=(None, 3), layers=1>"


# ---------------------------------------------------------------- config
def test_sequential_config_matches_keras_structure(keras):
    ours = Sequential(_architecture(lamina), name="cfg").get_config()
    theirs = keras.Sequential(_architecture(keras), name="cfg").get_config()
    assert set(ours) == set(theirs)
    assert [e["class_name"] for e in ours["layers"]] == [e["class_name"] for e in theirs["layers"]]
    assert tuple(ours["build_input_shape"]) == tuple(theirs["build_input_shape"])
    for a, b in zip(ours["layers"][1:], theirs["layers"][1:]):
        if "build_config" in b:  # Keras leaves it out for layers without weights
            assert tuple(a["build_config"]["input_shape"]) == tuple(b["build_config"]["input_shape"])
    json.dumps(ours)


@pytest.mark.parametrize("architecture", [_architecture, _image_architecture], ids=["mlp", "reshape"])
def test_sequential_config_round_trip_same_predictions(architecture):
    model = Sequential(architecture(lamina))
    clone = Sequential.from_config(json.loads(json.dumps(model.get_config())))
    assert clone.built and clone.output_shape == model.output_shape
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    clone.set_weights(model.get_weights())
    x = torch.randn(3, *model.input_shape[1:])
    torch.testing.assert_close(clone(x), model(x))


def test_sequential_config_round_trip_built_without_input():
    model = Sequential([Dense(3), Dense(2)])
    model.build((None, 4))
    clone = Sequential.from_config(json.loads(json.dumps(model.get_config())))
    assert clone.built and clone.output_shape == (None, 2) and clone.count_params() == 23


def test_sequential_config_round_trip_unbuilt():
    clone = Sequential.from_config(Sequential([Dense(3), Dense(2)]).get_config())
    assert not clone.built and len(clone.layers) == 2


def test_sequential_from_keras_config(keras):
    theirs = keras.Sequential(_architecture(keras))
    ours = Sequential.from_config(theirs.get_config())
    assert ours.output_shape == tuple(theirs.output_shape)
    ours.set_weights(theirs.get_weights())
    x = np.ones((2, 6), dtype="float32")
    np.testing.assert_allclose(_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)


def test_sequential_registered_as_layer():
    model = Sequential([Input((2,)), Dense(1)])
    clone = lamina.registry.get("layer", lamina.registry.serialize("layer", model))
    assert isinstance(clone, Sequential) and clone.output_shape == (None, 1)


def test_sequential_custom_layer_from_config_with_custom_objects():
    class Twice(Layer):
        def call(self, x):
            return 2 * x

    model = Sequential([Input((2,)), Twice(), Dense(1)])
    clone = Sequential.from_config(model.get_config(), custom_objects={"Twice": Twice})
    assert isinstance(clone.layers[0], Twice) and clone.output_shape == (None, 1)


# ---------------------------------------------------------------- torch behaviour
def test_sequential_state_dict_round_trip():
    a, b = Sequential(_architecture(lamina)), Sequential(_architecture(lamina))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 6)
    torch.testing.assert_close(a(x), b(x))


def test_sequential_gradients_flow():
    model = Sequential([Input((3,)), Dense(4, activation="relu"), Flatten(), Reshape((2, 2)), Dense(1)])
    model(torch.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_sequential_layer_output_builds_feature_extractor():
    import numpy as np

    import lamina
    from lamina.layers import Dense

    model = lamina.Sequential([lamina.Input((4,)), Dense(8, activation="relu"), Dense(3), Dense(1)])
    features = lamina.Model(model.inputs, model.layers[-2].output)
    x = np.random.rand(5, 4).astype("float32")
    expected = model.layers[1](model.layers[0](x)).detach().numpy()
    assert features.output_shape == (None, 3)
    np.testing.assert_allclose(features.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    assert model.outputs[0].shape == (None, 1)


def test_layer_output_before_symbolic_call_raises():
    import pytest

    from lamina.layers import Dense

    with pytest.raises(AttributeError, match="never been called on a symbolic input"):
        Dense(2).output
