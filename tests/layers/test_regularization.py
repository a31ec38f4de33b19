"""Tests for lamina.layers.regularization: identity outside training, Keras's training-time
statistics and closed forms (AlphaDropout's affine correction), configs against Keras 3."""

import json
import math

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers.core import Dense
from lamina.layers.regularization import (
    ActivityRegularization,
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)

ALPHA_P = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _keras_np(keras, x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _data(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


ALL_CASES = [
    (SpatialDropout1D, {"rate": 0.3, "seed": 2}),
    (SpatialDropout2D, {"rate": 0.3, "data_format": "channels_first", "seed": 3}),
    (SpatialDropout3D, {"rate": 0.5}),
    (GaussianNoise, {"stddev": 0.2, "seed": 4}),
    (GaussianDropout, {"rate": 0.25}),
    (AlphaDropout, {"rate": 0.1, "noise_shape": (None, 1, 4), "seed": 5}),
    (ActivityRegularization, {"l1": 0.01, "l2": 0.02}),
]
INPUT_SHAPES = {SpatialDropout1D: (3, 5, 4), SpatialDropout2D: (3, 4, 2, 2), SpatialDropout3D: (2, 2, 2, 2, 3)}
IDS = [cls.__name__ for cls, _ in ALL_CASES]


# ---------------------------------------------------------------- common behaviour
@pytest.mark.parametrize("cls, kwargs", ALL_CASES, ids=IDS)
def test_regularization_layers_are_identity_outside_training(keras, cls, kwargs):
    x = torch.as_tensor(_data(INPUT_SHAPES.get(cls, (3, 5, 4))))
    layer = cls(**kwargs)
    assert layer(x) is x
    assert layer(x, training=False) is x
    np.testing.assert_array_equal(_np(getattr(keras.layers, cls.__name__)(**kwargs)(_np(x))), _np(x))


@pytest.mark.parametrize("cls, kwargs", ALL_CASES, ids=IDS)
def test_regularization_layers_config_matches_keras(keras, cls, kwargs):
    ours = cls(name="reg", **kwargs).get_config()
    theirs = getattr(keras.layers, cls.__name__)(name="reg", **kwargs).get_config()
    assert set(ours) == set(theirs)
    for key in set(ours) - {"dtype"}:
        value = list(ours[key]) if isinstance(ours[key], tuple) else ours[key]
        expected = list(theirs[key]) if isinstance(theirs[key], tuple) else theirs[key]
        assert value == expected, key
    json.dumps(ours)


@pytest.mark.parametrize("cls, kwargs", ALL_CASES, ids=IDS)
def test_regularization_layers_config_round_trip(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    clone = cls.from_config(json.loads(json.dumps(config)))
    assert type(clone) is cls
    assert json.loads(json.dumps(clone.get_config())) == json.loads(json.dumps(config))
    again = registry.get("layer", registry.serialize("layer", layer))
    assert type(again) is cls and again.name == layer.name


@pytest.mark.parametrize("cls, kwargs", ALL_CASES, ids=IDS)
def test_regularization_layers_shapes_and_no_weights(keras, cls, kwargs):
    shape = (None,) + INPUT_SHAPES.get(cls, (3, 5, 4))[1:]
    layer = cls(**kwargs)
    theirs = getattr(keras.layers, cls.__name__)(**kwargs)
    assert layer.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape)) == shape
    assert layer(lamina.Input(shape[1:])).shape == shape
    assert layer.get_weights() == [] and layer.count_params() == 0


@pytest.mark.parametrize("cls, kwargs", ALL_CASES[:-1], ids=IDS[:-1])
def test_regularization_layers_seed_gives_reproducible_sequence(cls, kwargs):
    x = torch.ones(INPUT_SHAPES.get(cls, (3, 5, 4)))
    kwargs = {**kwargs, "seed": 7}
    first, second = cls(**kwargs), cls(**kwargs)
    a1, a2 = first(x, training=True), first(x, training=True)
    b1, b2 = second(x, training=True), second(x, training=True)
    torch.testing.assert_close(a1, b1)
    torch.testing.assert_close(a2, b2)
    assert not torch.equal(a1, a2)


@pytest.mark.parametrize("cls, kwargs", ALL_CASES[:-1], ids=IDS[:-1])
def test_regularization_layers_pass_masks_through(cls, kwargs):
    x = torch.ones(INPUT_SHAPES.get(cls, (3, 5, 4)))
    x._keras_mask = torch.ones(x.shape[:-1], dtype=torch.bool)
    assert cls(**kwargs)(x, training=True)._keras_mask is x._keras_mask


@pytest.mark.parametrize("cls, arg", [(SpatialDropout1D, "rate"), (SpatialDropout2D, "rate"),
                                      (SpatialDropout3D, "rate"), (GaussianNoise, "stddev"),
                                      (GaussianDropout, "rate"), (AlphaDropout, "rate")])
@pytest.mark.parametrize("value", [-0.1, 1.5, "a"])
def test_regularization_layers_reject_bad_rate(cls, arg, value):
    with pytest.raises(ValueError, match=rf'{arg}=.*layer "bad_rate"'):
        cls(value, name="bad_rate")


# ---------------------------------------------------------------- spatial dropout
@pytest.mark.parametrize("cls, shape, data_format, channel_axis", [
    (SpatialDropout1D, (64, 5, 32), None, 2),
    (SpatialDropout2D, (64, 3, 3, 32), "channels_last", 3),
    (SpatialDropout2D, (64, 32, 3, 3), "channels_first", 1),
    (SpatialDropout3D, (32, 2, 2, 2, 32), "channels_last", 4),
    (SpatialDropout3D, (32, 32, 2, 2, 2), "channels_first", 1),
])
def test_spatial_dropout_drops_whole_channels_like_keras(keras, cls, shape, data_format, channel_axis):
    rate = 0.4
    kwargs = {} if data_format is None else {"data_format": data_format}
    x = np.ones(shape, dtype="float32")
    outputs = {"ours": _np(cls(rate, **kwargs)(torch.as_tensor(x), training=True)),
               "keras": _keras_np(keras, getattr(keras.layers, cls.__name__)(rate, **kwargs)(x, training=True))}
    for out in outputs.values():
        np.testing.assert_allclose(np.unique(out), [0.0, 1 / (1 - rate)], rtol=1e-6)
        # Constant over every axis except batch and channels.
        per_channel = np.moveaxis(out, channel_axis, 1).reshape(shape[0], shape[channel_axis], -1)
        assert (per_channel == per_channel[..., :1]).all()
        dropped = (per_channel[..., 0] == 0).mean()
        assert abs(dropped - rate) < 0.06  # 2048 or 1024 Bernoulli draws
        assert abs(out.mean() - 1.0) < 0.1


def test_spatial_dropout_rate_one_and_zero():
    x = torch.ones(2, 3, 4)
    assert torch.equal(SpatialDropout1D(1.0)(x, training=True), torch.zeros_like(x))
    assert SpatialDropout1D(0.0)(x, training=True) is x


@pytest.mark.parametrize("cls, rank", [(SpatialDropout1D, 3), (SpatialDropout2D, 4), (SpatialDropout3D, 5)])
def test_spatial_dropout_rejects_wrong_rank(cls, rank):
    with pytest.raises(ValueError, match=rf'"sd_rank".*expected ndim={rank}'):
        cls(0.5, name="sd_rank")(torch.ones((2,) * (rank - 1)))


def test_spatial_dropout_rejects_bad_data_format():
    with pytest.raises(ValueError, match=r"data_format='channels_middle'.*sd_fmt"):
        SpatialDropout2D(0.5, data_format="channels_middle", name="sd_fmt")


def test_spatial_dropout_default_data_format_follows_config():
    lamina.config.set_image_data_format("channels_first")
    assert SpatialDropout2D(0.5).data_format == "channels_first"


# ---------------------------------------------------------------- noise layers
def test_gaussian_noise_statistics_match_keras(keras):
    x = np.full((200, 500), 3.0, dtype="float32")
    ours = _np(GaussianNoise(0.3)(torch.as_tensor(x), training=True)) - x
    theirs = _keras_np(keras, keras.layers.GaussianNoise(0.3)(x, training=True)) - x
    for noise in (ours, theirs):
        assert abs(noise.mean()) < 0.005 and abs(noise.std() - 0.3) < 0.005
    assert abs(ours.std() - theirs.std()) < 0.005


def test_gaussian_dropout_statistics_match_keras(keras):
    rate = 0.3
    x = np.full((200, 500), 2.0, dtype="float32")
    ours = _np(GaussianDropout(rate)(torch.as_tensor(x), training=True)) / x
    theirs = _keras_np(keras, keras.layers.GaussianDropout(rate)(x, training=True)) / x
    stddev = math.sqrt(rate / (1 - rate))
    for factor in (ours, theirs):
        assert abs(factor.mean() - 1.0) < 0.01 and abs(factor.std() - stddev) < 0.01


def test_gaussian_noise_gradient_is_identity():
    x = torch.randn(4, 3, requires_grad=True)
    GaussianNoise(0.5)(x, training=True).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(4, 3))


# ---------------------------------------------------------------- AlphaDropout
def _alpha_affine(rate):
    a = ((1 - rate) * (1 + rate * ALPHA_P ** 2)) ** -0.5
    return a, -a * ALPHA_P * rate


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_alpha_dropout_affine_correction_matches_keras(keras, rate):
    x = _data((100, 100), seed=1)
    a, b = _alpha_affine(rate)
    outputs = {"ours": _np(AlphaDropout(rate, seed=3)(torch.as_tensor(x), training=True)),
               "keras": _keras_np(keras, keras.layers.AlphaDropout(rate, seed=3)(x, training=True))}
    for out in outputs.values():
        kept = np.isclose(out, a * x + b, rtol=0, atol=1e-6)
        dropped = np.isclose(out, a * ALPHA_P + b, rtol=0, atol=1e-6)
        assert (kept | dropped).all()
        assert abs(dropped.mean() - rate) < 0.02


def test_alpha_dropout_keeps_selu_fixed_point():
    x = torch.randn(400, 500)
    out = AlphaDropout(0.2)(x, training=True)
    assert abs(float(out.mean())) < 0.01 and abs(float(out.var()) - 1.0) < 0.02


def test_alpha_dropout_noise_shape_broadcasts():
    x = torch.as_tensor(_data((3, 5, 4)))
    out = _np(AlphaDropout(0.5, noise_shape=(None, 1, 4), seed=1)(x, training=True))
    a, b = _alpha_affine(0.5)
    dropped = np.isclose(out, a * ALPHA_P + b, atol=1e-6)
    assert (dropped == dropped[:, :1]).all()  # same decision along the broadcast axis
    assert 0 < dropped.mean() < 1


def test_alpha_dropout_rate_one_is_an_error_in_training():
    layer = AlphaDropout(1.0, name="ad_one")
    assert torch.equal(layer(torch.ones(2)), torch.ones(2))
    with pytest.raises(ValueError, match='rate=1.*"ad_one"'):
        layer(torch.ones(2), training=True)


# ---------------------------------------------------------------- ActivityRegularization
def test_activity_regularization_losses_match_keras(keras):
    x = _data((4, 3), seed=2)
    ours = ActivityRegularization(l1=0.1, l2=0.05)
    theirs = keras.layers.ActivityRegularization(l1=0.1, l2=0.05)
    np.testing.assert_array_equal(_np(ours(x)), x)
    theirs(x)
    got = [float(v) for v in ours.losses]
    ref = [float(_keras_np(keras, v)) for v in theirs.losses]
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # Divided by the batch size, as in Keras 3.
    np.testing.assert_allclose(got, [(0.1 * np.abs(x).sum() + 0.05 * (x ** 2).sum()) / 4], rtol=1e-5)


def test_activity_regularization_adds_to_training_loss():
    lamina.set_random_seed(0)
    x, y = _data((8, 3), seed=3), _data((8, 1), seed=4)

    def loss_of(l2):
        lamina.set_random_seed(0)
        model = lamina.Sequential([lamina.Input((3,)), Dense(2), ActivityRegularization(l2=l2), Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model.evaluate(x, y, verbose=0), model

    plain, _ = loss_of(0.0)
    regularized, model = loss_of(1.0)
    hidden = _np(model.layers[0](torch.as_tensor(x)))
    assert regularized == pytest.approx(plain + (hidden ** 2).sum() / 8, rel=1e-4)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)


def test_regularization_layers_train_in_model():
    x, y = _data((16, 4, 3), seed=5), _data((16, 1), seed=6)
    model = lamina.Sequential([
        lamina.Input((4, 3)), SpatialDropout1D(0.2), GaussianNoise(0.1), GaussianDropout(0.1),
        AlphaDropout(0.1), lamina.layers.Flatten(), Dense(1),
    ])
    model.compile(optimizer="sgd", loss="mse")
    before = model.layers[-1].get_weights()[0]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(before, model.layers[-1].get_weights()[0])
    # predict is deterministic: every layer is the identity outside training.
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))
