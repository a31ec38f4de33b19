"""Tests for lamina.layers.normalization against Keras 3 (same weights, same inputs) and
closed forms: BatchNormalization, LayerNormalization, GroupNormalization,
UnitNormalization and the preprocessing layer Normalization."""

import json

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers.core import Dense
from lamina.layers.normalization import (
    BatchNormalization,
    GroupNormalization,
    LayerNormalization,
    Normalization,
    UnitNormalization,
)


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _keras_np(keras, x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _data(shape, seed=0, loc=1.5, scale=2.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape).astype("float32")


def _random_weights(layer, seed=1):
    """Give ``layer`` (built) non-trivial weights; variances stay positive."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in layer.get_weights():
        value = rng.normal(size=w.shape).astype(w.dtype)
        weights.append(np.abs(value) + 0.5 if w.ndim and w.dtype.kind == "f" else value)
    layer.set_weights(weights)


# ================================================================ BatchNormalization
BN_CASES = [
    ((6, 5, 4, 3), -1),   # channels_last image
    ((6, 3, 4, 5), 1),    # channels_first image
    ((8, 5), -1),
    ((4, 6, 5), -1),      # sequence, channels last
    ((4, 6, 5), 1),       # a middle axis
    ((3, 4, 2, 3, 2), -1),
]


@pytest.mark.parametrize("shape, axis", BN_CASES)
def test_batch_normalization_training_steps_match_keras(keras, shape, axis):
    kwargs = dict(axis=axis, momentum=0.9, epsilon=1e-3)
    ours, theirs = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    ours.build(shape)
    theirs.build(shape)
    _random_weights(ours)
    theirs.set_weights(ours.get_weights())
    for step in range(3):
        x = _data(shape, seed=10 + step, loc=step - 1.0)
        np.testing.assert_allclose(_np(ours(x, training=True)), _keras_np(keras, theirs(x, training=True)),
                                   rtol=1e-5, atol=1e-4)
    for mine, ref in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)
    x = _data(shape, seed=99)
    np.testing.assert_allclose(_np(ours(x)), _keras_np(keras, theirs(x, training=False)), rtol=1e-5, atol=1e-4)


def test_batch_normalization_moving_statistics_closed_form():
    # momentum=0 stores the last batch statistics: the BIASED variance (ddof=0), as Keras.
    x = _data((5, 3), seed=2)
    layer = BatchNormalization(momentum=0.0)
    layer(x, training=True)
    _, _, moving_mean, moving_variance = layer.get_weights()
    np.testing.assert_allclose(moving_mean, x.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(moving_variance, x.var(axis=0), rtol=1e-5)
    assert not np.allclose(moving_variance, x.var(axis=0, ddof=1), rtol=1e-3)


def test_batch_normalization_training_output_closed_form():
    x = _data((7, 4), seed=3)
    layer = BatchNormalization(epsilon=0.01)
    layer.build(x.shape)
    gamma, beta = np.float32([1.0, 2.0, -1.0, 0.5]), np.float32([0.0, 1.0, 2.0, -3.0])
    layer.set_weights([gamma, beta, np.zeros(4, "float32"), np.ones(4, "float32")])
    expected = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + 0.01) + beta
    np.testing.assert_allclose(_np(layer(x, training=True)), expected, rtol=1e-5, atol=1e-5)
    # Inference uses the moving statistics (now updated once, momentum 0.99).
    mean = 0.01 * x.mean(0)
    variance = 0.99 + 0.01 * x.var(0)
    expected = gamma * (x - mean) / np.sqrt(variance + 0.01) + beta
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_batch_normalization_gradients_match_keras(keras):
    x = _data((6, 4, 3), seed=4)
    ours, theirs = BatchNormalization(), keras.layers.BatchNormalization()
    ours.build(x.shape)
    theirs.build(x.shape)
    _random_weights(ours)
    theirs.set_weights(ours.get_weights())
    upstream = torch.as_tensor(_data(x.shape, seed=5))
    x_ours = torch.tensor(x, requires_grad=True)
    x_theirs = torch.tensor(x, requires_grad=True)
    (ours(x_ours, training=True) * upstream).sum().backward()
    (theirs(x_theirs, training=True) * upstream).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.gamma.grad, theirs.gamma.value.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.beta.grad, theirs.beta.value.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
def test_batch_normalization_weights_order_and_shapes(keras, center, scale):
    ours = BatchNormalization(center=center, scale=scale)
    theirs = keras.layers.BatchNormalization(center=center, scale=scale)
    ours.build((None, 4, 3))
    theirs.build((None, 4, 3))
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.weights]
    names = [n for n, on in (("gamma", scale), ("beta", center)) if on] + ["moving_mean", "moving_variance"]
    assert [w.path.split("/")[-1] for w in ours.weights] == names
    assert len(ours.trainable_weights) == len(theirs.trainable_weights) == center + scale
    assert len(ours.non_trainable_weights) == 2
    assert ours.count_params() == theirs.count_params()
    # moving statistics are buffers (state_dict, .to(device)), gamma/beta parameters.
    assert set(dict(ours.named_buffers())) == {"moving_mean", "moving_variance"}
    assert set(dict(ours.named_parameters())) == {n for n in names if n in ("gamma", "beta")}
    x = _data((2, 4, 3))
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(_np(ours(x, training=True)), _keras_np(keras, theirs(x, training=True)),
                               rtol=1e-5, atol=1e-4)


def test_batch_normalization_not_trainable_runs_in_inference_mode(keras):
    x = _data((8, 3), seed=6)
    ours, theirs = BatchNormalization(), keras.layers.BatchNormalization()
    ours.build(x.shape)
    theirs.build(x.shape)
    _random_weights(ours)
    theirs.set_weights(ours.get_weights())
    ours.trainable = theirs.trainable = False
    before = ours.get_weights()
    out = _np(ours(x, training=True))
    np.testing.assert_allclose(out, _np(ours(x, training=False)), rtol=0, atol=0)
    np.testing.assert_allclose(out, _keras_np(keras, theirs(x, training=True)), rtol=1e-5, atol=1e-5)
    for a, b in zip(before, ours.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_batch_normalization_mask_matches_keras(keras):
    x = _data((4, 6, 3), seed=7)
    mask = np.random.default_rng(8).random((4, 6)) > 0.4
    ours, theirs = BatchNormalization(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    got = ours(x, training=True, mask=torch.as_tensor(mask))
    ref = theirs(x, training=True, mask=mask)
    np.testing.assert_allclose(_np(got), _keras_np(keras, ref), rtol=1e-5, atol=1e-4)
    for mine, theirs_w in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, theirs_w, rtol=1e-5, atol=1e-6)
    # Closed form: the statistics ignore the masked positions.
    kept = x[mask]
    np.testing.assert_allclose(ours.get_weights()[2], 0.5 * kept.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.get_weights()[3], 0.5 + 0.5 * kept.var(0), rtol=1e-5)


def test_batch_normalization_mask_from_previous_layer_and_passes_through():
    x = torch.as_tensor(_data((2, 3, 4)))
    x._keras_mask = torch.tensor([[True, True, False], [True, False, False]])
    layer = BatchNormalization(momentum=0.0)
    out = layer(x, training=True)
    assert out._keras_mask is x._keras_mask
    kept = _np(x)[_np(x._keras_mask)]
    np.testing.assert_allclose(layer.get_weights()[2], kept.mean(0), rtol=1e-5, atol=1e-6)


def test_batch_normalization_rejects_bad_mask_rank():
    layer = BatchNormalization(name="bn_mask")
    with pytest.raises(ValueError, match=r'"bn_mask".*mask\.shape=\(2, 3, 4\)'):
        layer(torch.zeros(2, 3, 4), training=True, mask=torch.ones(2, 3, 4, dtype=torch.bool))


def test_batch_normalization_renorm_matches_keras(keras):
    kwargs = dict(renorm=True, renorm_clipping={"rmax": 1.5, "rmin": 0.5, "dmax": 0.3},
                  renorm_momentum=0.8, momentum=0.9)
    ours, theirs = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    shape = (6, 4)
    ours.build(shape)
    theirs.build(shape)
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]
    theirs.set_weights(ours.get_weights())
    for step in range(3):
        x = _data(shape, seed=20 + step, loc=step, scale=1.0 + step)
        np.testing.assert_allclose(_np(ours(x, training=True)), _keras_np(keras, theirs(x, training=True)),
                                   rtol=1e-5, atol=1e-4)
    for mine, ref in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)


def test_batch_normalization_single_sample_matches_keras(keras):
    # One value per channel: torch's kernel refuses it, Keras gives variance 0.
    x = _data((1, 3), seed=9)
    ours, theirs = BatchNormalization(), keras.layers.BatchNormalization()
    np.testing.assert_allclose(_np(ours(x, training=True)), _keras_np(keras, theirs(x, training=True)),
                               atol=1e-5)
    for mine, ref in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)


def test_batch_normalization_fit_updates_buffers_not_trainable_weights():
    lamina.set_random_seed(0)
    x = _data((32, 4), seed=11, loc=3.0)
    y = _data((32, 1), seed=12)
    bn = BatchNormalization()
    model = lamina.Sequential([lamina.Input((4,)), bn, Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert {id(t) for t in bn.trainable_weights} == {id(bn.gamma), id(bn.beta)}
    assert all(id(t) not in {id(bn.moving_mean), id(bn.moving_variance)} for t in model.trainable_weights)
    before = bn.get_weights()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = bn.get_weights()
    assert not np.allclose(before[0], after[0])  # gamma trained
    assert not np.allclose(before[2], after[2])  # moving_mean updated by the forward pass
    assert not np.allclose(before[3], after[3])
    assert np.all(after[2] > 0)  # moved towards the data mean (3.0)


def test_batch_normalization_frozen_in_fit_keeps_moving_statistics():
    x = _data((16, 4), seed=13, loc=3.0)
    y = _data((16, 1), seed=14)
    bn = BatchNormalization()
    model = lamina.Sequential([lamina.Input((4,)), bn, Dense(1)])
    bn.trainable = False
    model.compile(optimizer="sgd", loss="mse")
    before = bn.get_weights()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_batch_normalization_in_functional_model_shapes():
    inputs = lamina.Input((5, 5, 3))
    outputs = BatchNormalization(axis=-1)(inputs)
    assert outputs.shape == (None, 5, 5, 3)
    model = lamina.Model(inputs, outputs)
    assert tuple(model.predict(_data((2, 5, 5, 3)), verbose=0).shape) == (2, 5, 5, 3)


def test_batch_normalization_config_matches_keras(keras):
    kwargs = dict(axis=1, momentum=0.9, epsilon=1e-4, center=False, gamma_regularizer="l2",
                  beta_constraint="non_neg", name="bn")
    ours, theirs = BatchNormalization(**kwargs).get_config(), keras.layers.BatchNormalization(**kwargs).get_config()
    assert set(ours) == set(theirs)
    for key in ("name", "trainable", "axis", "momentum", "epsilon", "center", "scale", "synchronized",
                "renorm", "renorm_clipping", "renorm_momentum"):
        assert ours[key] == theirs[key], key
    for key in ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                "moving_variance_initializer", "gamma_regularizer", "beta_constraint"):
        assert ours[key]["class_name"] == theirs[key]["class_name"], key
    json.dumps(ours)


def test_batch_normalization_from_keras_config(keras):
    config = keras.layers.BatchNormalization(axis=1, momentum=0.8, scale=False, name="k").get_config()
    layer = BatchNormalization.from_config(config)
    assert (layer.axis, layer.momentum, layer.scale, layer.name) == (1, 0.8, False, "k")


@pytest.mark.parametrize("axis", [2, -3])
def test_batch_normalization_rejects_out_of_range_axis(axis):
    layer = BatchNormalization(axis=axis, name="bn_axis")
    with pytest.raises(ValueError, match=rf'"bn_axis".*axis={axis}'):
        layer(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="bn_axis"):
        BatchNormalization(axis=axis, name="bn_axis").compute_output_shape((None, 3))


@pytest.mark.parametrize("kwargs, match", [
    ({"axis": 1.5}, "axis=1.5"),
    ({"synchronized": True}, "synchronized"),
    ({"renorm": True, "renorm_clipping": {"rmid": 1}}, "rmid"),
    ({"renorm": True, "renorm_clipping": {"rmax": 1, "rmin": 2}}, "rmax"),
])
def test_batch_normalization_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNormalization(**kwargs)


def test_batch_normalization_input_spec_names_layer():
    layer = BatchNormalization(name="bn_spec")
    layer(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="bn_spec"):
        layer(torch.zeros(2, 4))


# ================================================================ LayerNormalization
LN_CASES = [
    ((4, 6), -1, {}),
    ((3, 4, 5), -1, {"center": False}),
    ((3, 4, 5), [-2, -1], {"scale": False}),
    ((2, 3, 4, 5), [1, 3], {}),  # non-contiguous axes: Keras's explicit formula
    ((2, 3, 4, 5), (1, 2, 3), {"epsilon": 1e-5}),
]


@pytest.mark.parametrize("shape, axis, kwargs", LN_CASES)
def test_layer_normalization_matches_keras(keras, shape, axis, kwargs):
    ours, theirs = LayerNormalization(axis=axis, **kwargs), keras.layers.LayerNormalization(axis=axis, **kwargs)
    ours.build(shape)
    theirs.build(shape)
    _random_weights(ours)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.weights]
    theirs.set_weights(ours.get_weights())
    x = _data(shape, seed=30)
    np.testing.assert_allclose(_np(ours(x)), _keras_np(keras, theirs(x)), rtol=1e-5, atol=1e-5)
    assert ours.get_config()["axis"] == theirs.get_config()["axis"]


def test_layer_normalization_middle_axis_closed_form():
    # Keras 3.15 on torch sends a single non-last axis to F.layer_norm, which normalizes the
    # LAST axis instead; lamina normalizes the axis asked for.
    x = _data((2, 3, 4), seed=31)
    layer = LayerNormalization(axis=1, epsilon=1e-3)
    layer.build(x.shape)
    gamma, beta = np.float32([1.0, 2.0, 3.0]), np.float32([0.5, 0.0, -0.5])
    layer.set_weights([gamma, beta])
    mean, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma[:, None] + beta[:, None]
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_layer_normalization_rms_scaling_warns_and_matches_keras(keras):
    with pytest.warns(UserWarning, match="rms_scaling"):
        ours = LayerNormalization(rms_scaling=True)
    with pytest.warns(UserWarning, match="rms_scaling"):
        theirs = keras.layers.LayerNormalization(rms_scaling=True)
    x = _data((3, 5), seed=32)
    ours.build(x.shape)
    theirs.build(x.shape)
    _random_weights(ours)
    assert len(ours.get_weights()) == len(theirs.get_weights()) == 1
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(_np(ours(x)), _keras_np(keras, theirs(x)), rtol=1e-5, atol=1e-5)


def test_layer_normalization_config_matches_keras(keras):
    ours = LayerNormalization(axis=[1, 2], epsilon=1e-4, gamma_regularizer="l1").get_config()
    theirs = keras.layers.LayerNormalization(axis=[1, 2], epsilon=1e-4, gamma_regularizer="l1").get_config()
    assert set(ours) == set(theirs)
    for key in ("axis", "epsilon", "center", "scale", "rms_scaling", "beta_regularizer"):
        assert ours[key] == theirs[key], key
    assert ours["gamma_regularizer"]["class_name"] == theirs["gamma_regularizer"]["class_name"]


def test_layer_normalization_rejects_bad_axis():
    with pytest.raises(ValueError, match=r'"ln_axis".*axis=3'):
        LayerNormalization(axis=3, name="ln_axis")(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="ln_type"):
        LayerNormalization(axis="last", name="ln_type")


def test_layer_normalization_trains_in_model():
    model = lamina.Sequential([lamina.Input((6,)), Dense(4), LayerNormalization(), Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    ln = model.layers[1]
    before = ln.get_weights()
    model.fit(_data((16, 6)), _data((16, 1), seed=1), batch_size=8, epochs=1, verbose=0)
    assert not np.allclose(before[0], ln.get_weights()[0])


# ================================================================ GroupNormalization
GN_CASES = [
    ((2, 4, 4, 6), 3, -1, {}),
    ((2, 5, 8), 4, -1, {"center": False}),
    ((3, 8), 2, -1, {"scale": False}),
    ((2, 6, 3, 4), 2, 1, {}),      # channels_first: F.group_norm
    ((2, 4, 4, 6), -1, -1, {}),    # instance normalization
    ((2, 4, 4, 6), 1, -1, {"epsilon": 1e-5}),
]


@pytest.mark.parametrize("shape, groups, axis, kwargs", GN_CASES)
def test_group_normalization_matches_keras(keras, shape, groups, axis, kwargs):
    ours = GroupNormalization(groups=groups, axis=axis, **kwargs)
    theirs = keras.layers.GroupNormalization(groups=groups, axis=axis, **kwargs)
    ours.build(shape)
    theirs.build(shape)
    _random_weights(ours)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.weights]
    theirs.set_weights(ours.get_weights())
    x = _data(shape, seed=40)
    np.testing.assert_allclose(_np(ours(x)), _keras_np(keras, theirs(x)), rtol=1e-5, atol=1e-5)
    assert ours.get_config()["groups"] == theirs.get_config()["groups"]


def test_group_normalization_middle_axis_closed_form():
    x = _data((2, 4, 3), seed=41)
    layer = GroupNormalization(groups=2, axis=1, epsilon=0.0, center=False, scale=False)
    grouped = x.reshape(2, 2, 2, 3)
    expected = (grouped - grouped.mean((2, 3), keepdims=True)) / grouped.std((2, 3), keepdims=True)
    np.testing.assert_allclose(_np(layer(x)), expected.reshape(x.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels, groups", [(6, 4), (3, 4)])
def test_group_normalization_rejects_groups_not_dividing_channels(channels, groups):
    layer = GroupNormalization(groups=groups, name="gn_groups")
    with pytest.raises(ValueError, match=rf'"gn_groups".*{channels} channels.*groups={groups}'):
        layer(torch.zeros(2, channels))


@pytest.mark.parametrize("groups", [0, -2, 1.5, True])
def test_group_normalization_rejects_bad_groups(groups):
    with pytest.raises(ValueError, match=r'groups=.*layer "gn_bad"'):
        GroupNormalization(groups=groups, name="gn_bad")


def test_group_normalization_rejects_bad_axis():
    with pytest.raises(ValueError, match=r'"gn_axis".*axis=2'):
        GroupNormalization(groups=1, axis=2, name="gn_axis")(torch.zeros(2, 4))


def test_group_normalization_config_matches_keras(keras):
    ours = GroupNormalization(groups=2, axis=1, epsilon=1e-4).get_config()
    theirs = keras.layers.GroupNormalization(groups=2, axis=1, epsilon=1e-4).get_config()
    assert set(ours) == set(theirs)
    for key in ("groups", "axis", "epsilon", "center", "scale", "beta_regularizer"):
        assert ours[key] == theirs[key], key


# ================================================================ UnitNormalization
@pytest.mark.parametrize("shape, axis", [((4, 5), -1), ((2, 3, 4), [1, 2]), ((2, 3, 4), 1)])
def test_unit_normalization_matches_keras(keras, shape, axis):
    x = _data(shape, seed=50)
    x[0] = 0.0  # the zero vector stays zero
    ours, theirs = UnitNormalization(axis=axis), keras.layers.UnitNormalization(axis=axis)
    np.testing.assert_allclose(_np(ours(x)), _keras_np(keras, theirs(x)), rtol=1e-6, atol=1e-6)
    assert ours.get_weights() == []
    assert ours.get_config()["axis"] == theirs.get_config()["axis"]


def test_unit_normalization_closed_form():
    out = _np(UnitNormalization()(np.float32([[3.0, 4.0], [0.0, 0.0]])))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)


def test_unit_normalization_rejects_bad_axis():
    with pytest.raises(ValueError, match='"un_axis"'):
        UnitNormalization(axis=2, name="un_axis")(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="un_type"):
        UnitNormalization(axis=None, name="un_type")


# ================================================================ Normalization (preprocessing)
def _adapt_pair(keras, data, **kwargs):
    ours, theirs = Normalization(**kwargs), keras.layers.Normalization(**kwargs)
    ours.adapt(data)
    theirs.adapt(data)
    return ours, theirs


@pytest.mark.parametrize("shape, axis", [((20, 3), -1), ((10, 4, 3), (1, 2)), ((12, 5), None),
                                         ((7,), -1), ((6, 4, 3), 1)])
def test_normalization_adapt_array_matches_keras(keras, shape, axis):
    data = _data(shape, seed=60, loc=3.0)
    ours, theirs = _adapt_pair(keras, data, axis=axis)
    mine, ref = ours.get_weights(), theirs.get_weights()
    assert [w.shape for w in mine] == [w.shape for w in ref]
    assert [w.dtype for w in mine] == [w.dtype for w in ref]
    for a, b in zip(mine, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    x = _data(shape, seed=61)
    np.testing.assert_allclose(_np(ours(x)), _keras_np(keras, theirs(x)), rtol=1e-6, atol=1e-6)


def test_normalization_adapt_closed_form():
    data = _data((50, 3), seed=62, loc=-2.0, scale=3.0)
    layer = Normalization()
    layer.adapt(data)
    np.testing.assert_allclose(layer.get_weights()[0], data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.get_weights()[1], data.var(0), rtol=1e-5)
    out = _np(layer(data))
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-4)


def test_normalization_adapt_tensor_matches_keras(keras):
    data = torch.as_tensor(_data((30, 4), seed=63, loc=5.0))
    ours, theirs = _adapt_pair(keras, data)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _streamed_reference(batches, reduce_axis):
    """Keras 3.15's batch-by-batch combination (its iterable path needs TensorFlow to run)."""
    total_mean = total_var = np.float32(0.0)
    count = 0
    for batch in batches:
        batch_mean, batch_var = batch.mean(reduce_axis), batch.var(reduce_axis)
        batch_count = int(np.prod([batch.shape[d] for d in reduce_axis]))
        count += batch_count
        weight = batch_count / count
        new_mean = total_mean * (1 - weight) + batch_mean * weight
        total_var = (total_var + (total_mean - new_mean) ** 2) * (1 - weight) + (
            batch_var + (batch_mean - new_mean) ** 2) * weight
        total_mean = new_mean
    return total_mean, total_var


def test_normalization_adapt_batches_match_keras_formula():
    data = _data((50, 2, 3), seed=64, loc=2.0)
    batches = [data[i:i + 16] for i in range(0, 50, 16)]  # uneven last batch
    layer = Normalization(axis=-1)
    layer.adapt(batches)
    mean, variance, count = layer.get_weights()
    ref_mean, ref_var = _streamed_reference(batches, (0, 1))
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(variance, ref_var, rtol=1e-6, atol=1e-6)
    # The combination is exact: it equals the statistics of the whole data set.
    np.testing.assert_allclose(mean, data.reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(variance, data.reshape(-1, 3).var(0), rtol=1e-5)
    assert count == 0


def test_normalization_adapt_generator_of_xy_tuples():
    data = _data((24, 3), seed=65)
    layer = Normalization()
    layer.adapt((torch.as_tensor(data[i:i + 8]), np.zeros(8)) for i in range(0, 24, 8))
    np.testing.assert_allclose(layer.get_weights()[0], data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.get_weights()[1], data.var(0), rtol=1e-5)


def test_normalization_constant_feature_uses_epsilon_like_keras(keras):
    data = np.float32([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    ours, theirs = _adapt_pair(keras, data)
    x = np.float32([[1.0, 3.0], [1.5, 5.0]])
    got = _np(ours(x))
    np.testing.assert_allclose(got, _keras_np(keras, theirs(x)), rtol=1e-6)
    np.testing.assert_allclose(got[1, 0], 0.5 / 1e-7, rtol=1e-5)  # max(sqrt(0), epsilon)


@pytest.mark.parametrize("mean, variance, axis", [(3.0, 2.0, -1), ([1.0, 2.0, 3.0], [1.0, 4.0, 9.0], -1),
                                                  ([[1.0, 2.0, 3.0]], [[1.0, 4.0, 9.0]], (1, 2))])
@pytest.mark.parametrize("invert", [False, True])
def test_normalization_given_mean_variance_matches_keras(keras, mean, variance, axis, invert):
    kwargs = dict(axis=axis, mean=mean, variance=variance, invert=invert, name="norm")
    ours, theirs = Normalization(**kwargs), keras.layers.Normalization(**kwargs)
    x = _data((4, 1, 3), seed=66)
    np.testing.assert_allclose(_np(ours(x)), _keras_np(keras, theirs(x)), rtol=1e-6, atol=1e-6)
    assert ours.get_weights() == [] == theirs.get_weights()
    assert ours.get_config() == {**theirs.get_config(), "dtype": "float32"}


def test_normalization_invert_round_trips():
    data = _data((20, 3), seed=67)
    forward, inverse = Normalization(), Normalization(invert=True)
    forward.adapt(data)
    inverse.adapt(data)
    np.testing.assert_allclose(_np(inverse(forward(data))), data, rtol=1e-5, atol=1e-5)


def test_normalization_weights_order_and_buffers(keras):
    layer = Normalization()
    layer.build((None, 3))
    keras_layer = keras.layers.Normalization()
    keras_layer.build((None, 3))
    assert [w.path.split("/")[-1] for w in layer.weights] == [w.path.split("/")[-1] for w in keras_layer.weights]
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 3
    assert set(dict(layer.named_buffers())) == {"mean", "variance", "count"}


@pytest.mark.parametrize("kwargs, match", [
    ({"mean": 1.0}, "both `mean` and `variance`"),
    ({"mean": [1.0, 2.0], "variance": [1.0]}, "same shape"),
    ({"axis": None, "mean": [1.0], "variance": [1.0]}, "rank of `mean`"),
])
def test_normalization_rejects_bad_mean_variance(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Normalization(name="norm_bad", **kwargs)


def test_normalization_adapt_errors_name_layer():
    layer = Normalization(name="norm_adapt")
    layer.adapt(_data((5, 3)))
    with pytest.raises(ValueError, match=r'"norm_adapt".*\(5, 4\)'):
        layer.adapt(_data((5, 4)))
    with pytest.raises(ValueError, match="empty"):
        Normalization(name="norm_empty").adapt([])
    with pytest.raises(TypeError, match="norm_type"):
        Normalization(name="norm_type").adapt(3.0)
    with pytest.raises(ValueError, match="nothing to learn"):
        Normalization(mean=1.0, variance=1.0).adapt(_data((5, 3)))
    with pytest.raises(ValueError, match=r'"norm_rank".*axis=\(2,\)'):
        Normalization(axis=2, name="norm_rank").adapt(_data((5, 3)))


def test_normalization_in_model_predicts_normalized_features():
    data = _data((40, 3), seed=68, loc=4.0)
    norm = Normalization()
    norm.adapt(data)
    model = lamina.Sequential([lamina.Input((3,)), norm, Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(data, _data((40, 1), seed=69), batch_size=10, epochs=1, verbose=0)
    np.testing.assert_allclose(norm.get_weights()[0], data.mean(0), rtol=1e-5)  # fit leaves it alone


# ================================================================ all layers
ALL_CASES = [
    (BatchNormalization, {"axis": 1, "momentum": 0.9, "center": False, "gamma_regularizer": "l2"}),
    (BatchNormalization, {"renorm": True, "renorm_clipping": {"rmax": 2.0}}),
    (LayerNormalization, {"axis": [1, 2], "epsilon": 1e-5, "beta_constraint": "non_neg"}),
    (GroupNormalization, {"groups": 2, "axis": 1}),
    (UnitNormalization, {"axis": [1, 2]}),
    (Normalization, {"axis": None, "mean": 2.0, "variance": 3.0, "invert": True}),
    (Normalization, {"axis": (1, 2)}),
]


@pytest.mark.parametrize("cls, kwargs", ALL_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_normalization_layers_config_round_trip(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    clone = cls.from_config(json.loads(json.dumps(config)))
    assert type(clone) is cls
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    again = registry.get("layer", registry.serialize("layer", layer))
    assert type(again) is cls and again.name == layer.name


@pytest.mark.parametrize("cls, kwargs", ALL_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_normalization_layers_config_keys_match_keras(keras, cls, kwargs):
    assert set(cls(**kwargs).get_config()) == set(getattr(keras.layers, cls.__name__)(**kwargs).get_config())


@pytest.mark.parametrize("cls, kwargs", ALL_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_normalization_layers_output_shape_and_weights_match_keras(keras, cls, kwargs):
    shape = (None, 4, 6, 2)
    ours, theirs = cls(**kwargs), getattr(keras.layers, cls.__name__)(**kwargs)
    assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))
    symbolic = ours(lamina.Input(shape[1:]))
    assert symbolic.shape == shape
    theirs.build(shape)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.weights]
    assert ours.count_params() == theirs.count_params()
