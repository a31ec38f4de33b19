"""Tests for lamina.layers.core (Dense, Activation, Dropout, Flatten, Reshape) against closed
forms and against Keras 3 with the same weights."""

import json

import numpy as np
import pytest
import torch

import lamina
from lamina import constraints, registry, regularizers
from lamina.layers import Activation, Dense, Dropout, Flatten, Reshape

# "threshold" needs extra arguments in Keras, so a Dense layer cannot use it by name; Keras
# 3.15's torch sparsemax returns all-zero rows for some inputs (rows must sum to 1), so
# sparsemax is checked against its closed form instead.
ACTIVATIONS = [name for name in registry.names("activation") if name not in ("threshold", "sparsemax")]


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _keras_out(keras, layer, x):
    return np.asarray(keras.ops.convert_to_numpy(layer(x)))


def _keras_dense_like(keras, lamina_layer, input_shape, **kwargs):
    """A keras Dense built for ``input_shape`` holding ``lamina_layer``'s weights."""
    layer = keras.layers.Dense(**kwargs)
    layer.build(input_shape)
    layer.set_weights(lamina_layer.get_weights())
    return layer


# ---------------------------------------------------------------- Dense: numbers
def test_dense_matches_closed_form():
    layer = Dense(2)
    layer.build((None, 3))
    kernel = np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]], dtype="float32")
    bias = np.array([0.5, -2.0], dtype="float32")
    layer.set_weights([kernel, bias])
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 2.0]], dtype="float32")
    np.testing.assert_allclose(_np(layer(x)), x @ kernel + bias, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_np(layer(x)), [[5.5, 7.0], [-0.5, 5.0]], atol=1e-6)


def test_dense_kernel_ones_literal_output():
    layer = Dense(2, kernel_initializer="ones", bias_initializer="ones")
    np.testing.assert_allclose(_np(layer(torch.tensor([[1.0, 2.0, 3.0]]))), [[7.0, 7.0]])


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_matches_keras_every_activation(keras, activation, use_bias):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6)).astype("float32")
    layer = Dense(4, activation=activation, use_bias=use_bias, bias_initializer="random_normal")
    out = _np(layer(x))
    reference = _keras_dense_like(keras, layer, x.shape, units=4, activation=activation, use_bias=use_bias)
    np.testing.assert_allclose(out, _keras_out(keras, reference, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ["relu", "softmax", "tanh", None])
def test_dense_matches_keras_on_3d_input(keras, activation, use_bias):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 5)).astype("float32")
    layer = Dense(7, activation=activation, use_bias=use_bias, bias_initializer="random_normal")
    out = _np(layer(x))
    assert out.shape == (3, 4, 7)
    reference = _keras_dense_like(keras, layer, x.shape, units=7, activation=activation, use_bias=use_bias)
    np.testing.assert_allclose(out, _keras_out(keras, reference, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_get_weights_shapes_and_order_match_keras(keras, use_bias):
    layer = Dense(3, use_bias=use_bias, bias_initializer="ones")
    layer.build((None, 5))
    reference = keras.layers.Dense(3, use_bias=use_bias, bias_initializer="ones")
    reference.build((None, 5))
    ours, theirs = layer.get_weights(), reference.get_weights()
    assert [w.shape for w in ours] == [w.shape for w in theirs]
    assert [w.dtype for w in ours] == [w.dtype for w in theirs]
    if use_bias:
        np.testing.assert_array_equal(ours[1], theirs[1])
    # The torch parameter is stored transposed, as torch.nn.Linear does.
    assert tuple(layer.kernel.shape) == (3, 5)
    np.testing.assert_array_equal(layer.kernel.detach().numpy().T, ours[0])


def test_dense_sparsemax_closed_form():
    layer = Dense(3, activation="sparsemax", use_bias=False)
    layer.build((None, 2))
    layer.set_weights([np.array([[1.0, 0.0, 0.0], [0.0, 1.2, 0.0]], dtype="float32")])
    # z = (1, 1.2, 0): tau = (1 + 1.2 - 1) / 2 = 0.6, so p = (0.4, 0.6, 0).
    np.testing.assert_allclose(_np(layer(np.ones((1, 2), "float32"))), [[0.4, 0.6, 0.0]], atol=1e-6)


def test_dense_weights_copy_one_to_one_from_torch_linear():
    linear = torch.nn.Linear(4, 3)
    layer = Dense(3)
    layer.build((None, 4))
    layer.load_state_dict({"kernel": linear.weight, "bias": linear.bias})
    x = torch.randn(2, 4)
    torch.testing.assert_close(layer(x), linear(x))
    np.testing.assert_array_equal(layer.get_weights()[0], linear.weight.detach().numpy().T)


def test_dense_get_weights_from_keras_round_trip(keras):
    reference = keras.layers.Dense(3, bias_initializer="random_normal")
    reference.build((None, 4))
    layer = Dense(3)
    layer.build((None, 4))
    layer.set_weights(reference.get_weights())
    for ours, theirs in zip(layer.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_dense_glorot_uniform_default_range():
    layer = Dense(300)
    layer.build((None, 200))
    kernel, bias = layer.get_weights()
    limit = np.sqrt(6.0 / (200 + 300))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(bias, np.zeros(300, dtype="float32"))


def test_dense_output_shape_and_dtype():
    layer = Dense(4)
    out = layer(torch.zeros(2, 3, 5))
    assert tuple(out.shape) == (2, 3, 4) and out.dtype == torch.float32
    assert layer.compute_output_shape((None, 3, 5)) == (None, 3, 4)


@pytest.mark.parametrize("x", [np.ones((3, 4)), np.ones((3, 4), dtype="int64"), torch.ones(3, 4, dtype=torch.float64),
                               torch.ones(3, 4, dtype=torch.int64)], ids=["np64", "npint", "torch64", "torchint"])
def test_dense_casts_inputs_to_layer_dtype_as_keras(keras, x):
    layer = Dense(2, kernel_initializer="ones")
    out = layer(x)
    reference = keras.layers.Dense(2, kernel_initializer="ones")(x)
    assert out.dtype == torch.float32 == reference.dtype
    torch.testing.assert_close(out, torch.full((3, 2), 4.0))


def test_dense_follows_module_to_float64():
    layer = Dense(2, kernel_initializer="ones")
    layer.build((None, 3))
    layer.to(torch.float64)
    out = layer(torch.ones(1, 3, dtype=torch.float64))
    assert out.dtype == torch.float64 and layer.get_weights()[0].dtype == np.float64


# ---------------------------------------------------------------- Dense: config
# Keys Keras 3 has that lamina does not (quantization lives outside the layer).
KERAS_ONLY_DENSE_KEYS = {"quantization_config", "lora_rank", "lora_alpha"}


def test_dense_get_config_keys_match_keras(keras):
    ours = Dense(3).get_config()
    theirs = keras.layers.Dense(3).get_config()
    assert set(ours) == set(theirs) - KERAS_ONLY_DENSE_KEYS
    assert set(ours) == {
        "name", "trainable", "dtype", "units", "activation", "use_bias", "kernel_initializer",
        "bias_initializer", "kernel_regularizer", "bias_regularizer", "kernel_constraint",
        "bias_constraint",
    }


def test_dense_get_config_values_match_keras(keras):
    ours = Dense(3, activation="relu", use_bias=False, name="d").get_config()
    theirs = keras.layers.Dense(3, activation="relu", use_bias=False, name="d").get_config()
    for key in ("name", "trainable", "units", "activation", "use_bias", "kernel_regularizer",
                "bias_regularizer", "kernel_constraint", "bias_constraint"):
        assert ours[key] == theirs[key], key
    assert ours["dtype"] == "float32"
    assert ours["kernel_initializer"]["class_name"] == theirs["kernel_initializer"]["class_name"]
    assert ours["bias_initializer"]["class_name"] == theirs["bias_initializer"]["class_name"]
    json.dumps(ours)


def test_dense_get_config_activity_regularizer_key_as_keras(keras):
    ours = Dense(3, activity_regularizer="l2").get_config()
    theirs = keras.layers.Dense(3, activity_regularizer="l2").get_config()
    assert "activity_regularizer" in ours and "activity_regularizer" in theirs
    assert ours["activity_regularizer"]["class_name"] == theirs["activity_regularizer"]["class_name"]
    assert ours["activity_regularizer"]["config"] == pytest.approx(theirs["activity_regularizer"]["config"])


def test_dense_from_keras_config(keras):
    config = keras.layers.Dense(3, activation="relu", use_bias=False, name="from_keras").get_config()
    layer = Dense.from_config(config)
    assert (layer.units, layer.use_bias, layer.name, layer.dtype) == (3, False, "from_keras", "float32")
    assert registry.serialize("activation", layer.activation) == "relu"


@pytest.mark.parametrize("key, value", [("quantization_config", {"mode": "int8"}), ("lora_rank", 4)])
def test_dense_rejects_unsupported_keras_extras(key, value):
    with pytest.raises(ValueError, match=key):
        Dense(3, **{key: value})


def test_dense_config_round_trip_keeps_predictions():
    layer = Dense(3, activation="tanh", kernel_regularizer=regularizers.L2(0.1),
                  kernel_constraint="max_norm", bias_initializer="ones", name="head")
    x = torch.randn(2, 4)
    out = layer(x)
    clone = Dense.from_config(json.loads(json.dumps(layer.get_config())))
    assert clone.get_config() == layer.get_config()
    clone.build((None, 4))
    clone.set_weights(layer.get_weights())
    torch.testing.assert_close(clone(x), out)
    assert isinstance(clone.kernel_regularizer, regularizers.L2)
    assert isinstance(clone.kernel_constraint, constraints.MaxNorm)


LAYER_CASES = [
    (Dense, {"units": 3, "activation": "relu", "use_bias": False}),
    (Activation, {"activation": "sigmoid"}),
    (Dropout, {"rate": 0.3, "noise_shape": (None, 1), "seed": 4}),
    (Flatten, {"data_format": "channels_first"}),
    (Reshape, {"target_shape": (2, -1)}),
]


@pytest.mark.parametrize("cls, kwargs", LAYER_CASES, ids=[c.__name__ for c, _ in LAYER_CASES])
def test_core_layer_config_round_trip(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    clone = cls.from_config(json.loads(json.dumps(config)))
    assert type(clone) is cls
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    # The registry resolves the serialized form too.
    again = registry.get("layer", registry.serialize("layer", layer))
    assert type(again) is cls and again.name == layer.name


@pytest.mark.parametrize("cls, kwargs", LAYER_CASES, ids=[c.__name__ for c, _ in LAYER_CASES])
def test_core_layer_config_keys_match_keras(keras, cls, kwargs):
    theirs = getattr(keras.layers, cls.__name__)(**kwargs).get_config()
    assert set(cls(**kwargs).get_config()) == set(theirs) - KERAS_ONLY_DENSE_KEYS


# ---------------------------------------------------------------- Dense: regularizers, constraints
def test_dense_regularization_losses_match_keras(keras):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3)).astype("float32")
    layer = Dense(2, kernel_regularizer=regularizers.L2(0.1), bias_regularizer=regularizers.L1(0.2),
                  activity_regularizer=regularizers.L2(0.05), bias_initializer="random_normal")
    layer(x)
    reference = keras.layers.Dense(
        2, kernel_regularizer=keras.regularizers.L2(0.1), bias_regularizer=keras.regularizers.L1(0.2),
        activity_regularizer=keras.regularizers.L2(0.05))
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    out = layer(x)
    reference(x)
    ours = [float(v.detach()) for v in layer.losses]
    theirs = [float(keras.ops.convert_to_numpy(v)) for v in reference.losses]
    assert len(ours) == len(theirs) == 3
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    kernel, bias = layer.get_weights()
    # Activity regularization is divided by the batch size, as in Keras 3.
    expected = [0.05 * float((_np(out) ** 2).sum()) / 4, 0.1 * float((kernel ** 2).sum()),
                0.2 * float(np.abs(bias).sum())]
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_dense_activity_loss_replaced_on_next_call():
    layer = Dense(2, activity_regularizer="l2")
    layer(torch.ones(3, 2))
    layer(torch.ones(5, 2))
    assert len(layer.losses) == 1


def test_dense_regularizer_losses_are_differentiable():
    layer = Dense(2, kernel_regularizer="l2")
    layer.build((None, 3))
    sum(layer.losses).backward()
    torch.testing.assert_close(layer.kernel.grad, 2 * 0.01 * layer.kernel.detach())


@pytest.mark.parametrize("name, kwargs", [
    ("MaxNorm", {"max_value": 1.0}), ("MaxNorm", {"max_value": 0.5, "axis": 1}),
    ("UnitNorm", {}), ("NonNeg", {}), ("MinMaxNorm", {"min_value": 0.5, "max_value": 0.8}),
])
def test_dense_constraints_applied_in_keras_layout(keras, name, kwargs):
    layer = Dense(4, kernel_constraint=getattr(constraints, name)(**kwargs),
                  bias_constraint=constraints.NonNeg())
    layer.build((None, 3))
    rng = np.random.default_rng(5)
    kernel = (3 * rng.normal(size=(3, 4))).astype("float32")
    bias = rng.normal(size=(4,)).astype("float32")
    layer.set_weights([kernel, bias])
    layer._apply_constraints()
    expected_kernel = keras.ops.convert_to_numpy(getattr(keras.constraints, name)(**kwargs)(kernel))
    expected_bias = keras.ops.convert_to_numpy(keras.constraints.NonNeg()(bias))
    new_kernel, new_bias = layer.get_weights()
    np.testing.assert_allclose(new_kernel, expected_kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_bias, expected_bias, rtol=1e-6)
    # The parameter object is updated in place (an optimizer keeps its reference).
    assert isinstance(layer.kernel, torch.nn.Parameter) and tuple(layer.kernel.shape) == (4, 3)


# ---------------------------------------------------------------- Dense: arguments
def test_dense_output_dim_is_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="output_dim"):
        layer = Dense(output_dim=10)
    assert layer.units == 10


def test_dense_input_dim_is_deprecated_and_sets_input_shape():
    with pytest.warns(DeprecationWarning, match="input_dim"):
        layer = Dense(4, input_dim=3)
    assert layer._input_shape_arg == (3,)
    model = lamina.Sequential([layer])
    assert model.input_shape == (None, 3) and model.output_shape == (None, 4)


def test_dense_input_shape_is_deprecated():
    with pytest.warns(DeprecationWarning, match="input_shape"):
        layer = Dense(4, input_shape=(3,))
    assert layer._input_shape_arg == (3,)


def test_dense_deprecation_warning_points_at_caller():
    with pytest.warns(DeprecationWarning) as record:
        Dense(output_dim=2)
    assert record[0].filename == __file__


@pytest.mark.parametrize("units", [0, -1, "a", 2.5, None, True])
def test_dense_rejects_bad_units(units):
    with pytest.raises(ValueError, match=r'units=.*layer "my_dense"'):
        Dense(units, name="my_dense")


def test_dense_float_integer_units_accepted():
    assert Dense(3.0).units == 3


def test_dense_unknown_argument_raises_type_error():
    with pytest.raises(TypeError, match="unitz"):
        Dense(3, unitz=4)


def test_dense_wrong_feature_count_names_layer_and_shapes():
    layer = Dense(8, name="hidden")
    layer(torch.zeros(2, 64))
    with pytest.raises(ValueError) as info:
        layer(torch.zeros(2, 63))
    message = str(info.value)
    assert '"hidden"' in message and "(2, 63)" in message and "(None, 64)" in message


def test_dense_wrong_feature_count_symbolic():
    layer = Dense(8, name="hidden_2")
    layer.build((None, 64))
    with pytest.raises(ValueError, match=r'"hidden_2".*\(None, 63\).*\(None, 64\)'):
        layer(lamina.Input((63,)))


def test_dense_rejects_rank_1_input():
    with pytest.raises(ValueError, match="min_ndim=2"):
        Dense(2)(torch.zeros(3))


# ---------------------------------------------------------------- Activation
@pytest.mark.parametrize("activation", ["relu", "softmax", "gelu", "elu", "sigmoid", "log_softmax", "swish"])
def test_activation_matches_keras(keras, activation):
    x = np.random.default_rng(6).normal(size=(3, 5)).astype("float32")
    out = _np(Activation(activation)(x))
    np.testing.assert_allclose(out, _keras_out(keras, keras.layers.Activation(activation), x), rtol=1e-5, atol=1e-6)


def test_activation_accepts_callable_and_keeps_shape():
    layer = Activation(torch.abs)
    x = torch.tensor([[-1.0, 2.0]])
    torch.testing.assert_close(layer(x), torch.tensor([[1.0, 2.0]]))
    assert layer.compute_output_shape((None, 2)) == (None, 2)
    assert layer.get_weights() == []


def test_activation_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="relu"):
        Activation("not_an_activation")


# ---------------------------------------------------------------- Dropout
@pytest.mark.parametrize("training", [False, None])
def test_dropout_identity_outside_training(training):
    x = torch.randn(8, 16)
    torch.testing.assert_close(Dropout(0.5)(x, training=training), x)
    torch.testing.assert_close(Dropout(0.5)(x), x)


@pytest.mark.parametrize("kwargs", [{}, {"seed": 3}, {"noise_shape": (None, 200)}])
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_training_drops_rate_and_scales(rate, kwargs):
    x = torch.ones(100, 200)
    out = Dropout(rate, **kwargs)(x, training=True)
    kept = out != 0
    assert abs(1 - kept.float().mean().item() - rate) < 0.02
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / (1 - rate)))


def test_dropout_preserves_expected_sum():
    x = torch.rand(200, 300)
    out = Dropout(0.4)(x, training=True)
    assert out.sum().item() == pytest.approx(x.sum().item(), rel=0.02)


def test_dropout_noise_shape_broadcasts():
    x = torch.ones(4, 50, 6)
    out = Dropout(0.5, noise_shape=(None, 1, 6))(x, training=True)
    # One mask per (sample, feature), shared along axis 1.
    assert torch.equal(out, out[:, :1, :].expand_as(out))
    assert 0 < (out == 0).float().mean().item() < 1


def test_dropout_noise_shape_literal_batch():
    out = Dropout(0.5, noise_shape=(1, 10))(torch.ones(7, 10), training=True)
    assert torch.equal(out, out[:1].expand_as(out))


def test_dropout_seed_reproducible():
    x = torch.ones(10, 10)
    first = Dropout(0.5, seed=7)(x, training=True)
    second = Dropout(0.5, seed=7)(x, training=True)
    torch.testing.assert_close(first, second)
    other = Dropout(0.5, seed=8)(x, training=True)
    assert not torch.equal(first, other)


def test_dropout_seeded_layer_draws_new_masks_each_call():
    layer = Dropout(0.5, seed=1)
    x = torch.ones(10, 10)
    assert not torch.equal(layer(x, training=True), layer(x, training=True))


def test_dropout_rate_zero_is_identity_in_training():
    x = torch.randn(3, 4)
    torch.testing.assert_close(Dropout(0.0)(x, training=True), x)


@pytest.mark.parametrize("kwargs", [{}, {"seed": 1}, {"noise_shape": (None, 1)}])
def test_dropout_rate_one_gives_zeros_as_keras(keras, kwargs):
    x = np.ones((2, 3), "float32")
    expected = keras.ops.convert_to_numpy(keras.layers.Dropout(1.0, **kwargs)(x, training=True))
    np.testing.assert_array_equal(_np(Dropout(1.0, **kwargs)(x, training=True)), expected)
    np.testing.assert_array_equal(expected, np.zeros((2, 3)))


@pytest.mark.parametrize("rate", [-0.1, 1.5, "a"])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match=r'rate=.*layer "drop"'):
        Dropout(rate, name="drop")


def test_dropout_gradient_flows_through_kept_units():
    x = torch.ones(5, 20, requires_grad=True)
    out = Dropout(0.5, seed=2)(x, training=True)
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())


def test_dropout_get_config_matches_keras(keras):
    ours = Dropout(0.25, noise_shape=(None, 1), seed=3).get_config()
    theirs = keras.layers.Dropout(0.25, noise_shape=(None, 1), seed=3).get_config()
    for key in ("rate", "seed", "trainable"):
        assert ours[key] == theirs[key]
    assert tuple(ours["noise_shape"]) == tuple(theirs["noise_shape"])


def test_dropout_training_flag_reaches_nested_layer_in_sequential():
    model = lamina.Sequential([lamina.Input((100,)), Dense(100, kernel_initializer="identity"), Dropout(0.5)])
    x = torch.ones(10, 100)
    torch.testing.assert_close(model(x), x)
    torch.testing.assert_close(model(x, training=False), x)
    dropped = model(x, training=True)
    assert (dropped == 0).any() and (dropped == 2).any()


# ---------------------------------------------------------------- Flatten
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (2, 3, 4, 5), (2, 2, 3, 4, 2)])
def test_flatten_matches_keras(keras, data_format, shape):
    x = np.arange(np.prod(shape), dtype="float32").reshape(shape)
    out = _np(Flatten(data_format=data_format)(x))
    np.testing.assert_array_equal(out, _keras_out(keras, keras.layers.Flatten(data_format=data_format), x))


def test_flatten_channels_first_moves_channels_last():
    x = torch.arange(12.0).reshape(1, 3, 2, 2)  # (batch, channels, h, w)
    out = Flatten(data_format="channels_first")(x)
    torch.testing.assert_close(out[0], x[0].permute(1, 2, 0).reshape(-1))


def test_flatten_default_data_format_follows_config():
    lamina.config.set_image_data_format("channels_first")
    assert Flatten().data_format == "channels_first"


def test_flatten_rank_1_input():
    assert tuple(Flatten()(torch.zeros(4)).shape) == (4, 1)


@pytest.mark.parametrize("shape", [(None, 3, 4), (None, 2, None)])
def test_flatten_compute_output_shape_matches_keras(keras, shape):
    assert Flatten().compute_output_shape(shape) == keras.layers.Flatten().compute_output_shape(shape)


# ---------------------------------------------------------------- Reshape
@pytest.mark.parametrize("target", [(3, 4), (3, -1), (-1, 2, 2), (12,), (2, 3, 2)])
def test_reshape_matches_keras(keras, target):
    x = np.arange(24, dtype="float32").reshape(2, 12)
    out = _np(Reshape(target)(x))
    np.testing.assert_array_equal(out, _keras_out(keras, keras.layers.Reshape(target), x))


@pytest.mark.parametrize("target", [(3, -1), (2, 3, 2), (-1,)])
def test_reshape_compute_output_shape_matches_keras(keras, target):
    shape = (None, 4, 3)
    assert Reshape(target).compute_output_shape(shape) == keras.layers.Reshape(target).compute_output_shape(shape)


def test_reshape_symbolic_output_shape():
    assert Reshape((3, -1))(lamina.Input((12,))).shape == (None, 3, 4)


@pytest.mark.parametrize("target", [(5,), (5, -1)])
def test_reshape_incompatible_target_raises(target):
    with pytest.raises(ValueError, match=r'"bad".*\(2, 12\).*12 values'):
        Reshape(target, name="bad")(torch.zeros(2, 12))


@pytest.mark.parametrize("target", [(-1, -1), (0, 3), (-2, 3)])
def test_reshape_rejects_bad_target_shape(target):
    with pytest.raises(ValueError, match="target_shape"):
        Reshape(target)
