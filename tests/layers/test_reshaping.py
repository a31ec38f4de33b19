"""Tests for lamina.layers.reshaping (Permute, RepeatVector, Cropping, ZeroPadding, UpSampling)
against Keras 3 on random inputs and against NumPy closed forms."""

import json

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers import reshaping
from lamina.layers.core import Dense, Flatten
from lamina.layers.misc import Masking
from lamina.layers.reshaping import (
    Cropping1D, Cropping2D, Cropping3D, Permute, RepeatVector, UpSampling1D, UpSampling2D, UpSampling3D,
    ZeroPadding1D, ZeroPadding2D, ZeroPadding3D,
)

FORMATS = ["channels_last", "channels_first"]


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _keras_out(keras, layer, x):
    return keras.ops.convert_to_numpy(layer(x))


def _compare(keras, cls, kwargs, x, atol=0.0):
    out = cls(**kwargs)(x)
    expected = _keras_out(keras, getattr(keras.layers, cls.__name__)(**kwargs), x)
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(_np(out), expected, rtol=1e-6 if atol else 0, atol=atol)
    return out


def _shape(data_format, spatial, channels=3, batch=None):
    return (batch, *spatial, channels) if data_format == "channels_last" else (batch, channels, *spatial)


# ---------------------------------------------------------------- Permute
@pytest.mark.parametrize("dims, shape", [((2, 1), (2, 3, 4)), ((1, 2), (2, 3, 4)), ((3, 1, 2), (2, 3, 4, 5)),
                                         ((2, 3, 1), (2, 3, 4, 5)), ((4, 2, 1, 3), (1, 2, 3, 4, 5))])
def test_permute_matches_keras(keras, dims, shape):
    x = _random(shape)
    out = _compare(keras, Permute, {"dims": dims}, x)
    np.testing.assert_array_equal(_np(out), np.transpose(x, (0, *dims)))


@pytest.mark.parametrize("dims, shape", [((2, 1), (None, 3, 4)), ((3, 1, 2), (None, None, 4, 5))])
def test_permute_compute_output_shape_matches_keras(keras, dims, shape):
    assert Permute(dims).compute_output_shape(shape) == tuple(keras.layers.Permute(dims).compute_output_shape(shape))


@pytest.mark.parametrize("dims", [(0, 1), (1, 3), (1, 1), (2, 3)])
def test_permute_rejects_bad_dims(dims):
    with pytest.raises(ValueError, match=r'dims.*"perm"|"perm".*dims'):
        Permute(dims, name="perm")


def test_permute_wrong_rank_names_layer_and_shape():
    with pytest.raises(ValueError, match=r'"perm".*expected ndim=3, found ndim=4.*\(2, 3, 4, 5\)'):
        Permute((2, 1), name="perm")(torch.zeros(2, 3, 4, 5))


# ---------------------------------------------------------------- RepeatVector
@pytest.mark.parametrize("n", [1, 3])
def test_repeat_vector_matches_keras(keras, n):
    x = _random((4, 5))
    out = _compare(keras, RepeatVector, {"n": n}, x)
    np.testing.assert_array_equal(_np(out), np.repeat(x[:, None, :], n, axis=1))


def test_repeat_vector_output_is_writable_copy():
    x = torch.ones(2, 3)
    out = RepeatVector(2)(x)
    out[0, 0, 0] = 5.0
    assert out[0, 1, 0] == 1.0 and x[0, 0] == 1.0


def test_repeat_vector_compute_output_shape_matches_keras(keras):
    assert RepeatVector(4).compute_output_shape((None, 7)) == tuple(
        keras.layers.RepeatVector(4).compute_output_shape((None, 7)))


@pytest.mark.parametrize("n, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError),
                                      ("3", TypeError)])
def test_repeat_vector_rejects_bad_n_as_keras(keras, n, error):
    with pytest.raises(error, match=r"`n`.*\"rep\""):
        RepeatVector(n, name="rep")
    with pytest.raises(error):
        keras.layers.RepeatVector(n)


def test_repeat_vector_wrong_rank_names_layer():
    with pytest.raises(ValueError, match=r'"rep".*expected ndim=2, found ndim=3'):
        RepeatVector(2, name="rep")(torch.zeros(2, 3, 4))


# ---------------------------------------------------------------- Cropping
CROPPING_CASES = [
    (Cropping1D, {}, (7,)), (Cropping1D, {"cropping": 2}, (8,)), (Cropping1D, {"cropping": (0, 3)}, (7,)),
    (Cropping1D, {"cropping": (2, 0)}, (5,)),
    (Cropping2D, {}, (5, 6)), (Cropping2D, {"cropping": 1}, (5, 6)), (Cropping2D, {"cropping": (2, 1)}, (7, 4)),
    (Cropping2D, {"cropping": ((1, 0), (0, 2))}, (5, 6)), (Cropping2D, {"cropping": ((0, 2), (1, 1))}, (6, 5)),
    (Cropping3D, {}, (5, 4, 3)), (Cropping3D, {"cropping": (1, 0, 2)}, (5, 4, 6)),
    (Cropping3D, {"cropping": ((0, 1), (1, 0), (0, 0))}, (3, 4, 5)),
    (Cropping3D, {"cropping": ((0, 0), (2, 1), (1, 2))}, (3, 5, 4)),
]


def _with_formats(cases):
    """(cls, kwargs, spatial, data_format) for each case and data format; Cropping1D and
    UpSampling1D take no data_format (always channels_last), as in Keras."""
    out = []
    for cls, kwargs, spatial in cases:
        if cls in (Cropping1D, UpSampling1D):
            out.append(pytest.param(cls, kwargs, spatial, "channels_last", id=f"{cls.__name__}-{kwargs}-{spatial}"))
            continue
        for data_format in FORMATS:
            out.append(pytest.param(cls, dict(kwargs, data_format=data_format), spatial, data_format,
                                    id=f"{cls.__name__}-{kwargs}-{spatial}-{data_format}"))
    return out


@pytest.mark.parametrize("cls, kwargs, spatial, data_format", _with_formats(CROPPING_CASES))
def test_cropping_matches_keras(keras, cls, kwargs, spatial, data_format):
    x = _random(_shape(data_format, spatial, batch=2))
    out = _compare(keras, cls, kwargs, x)
    assert tuple(out.shape) == cls(**kwargs).compute_output_shape(x.shape)


def test_cropping_2d_closed_form_and_views():
    x = torch.arange(30.0).reshape(1, 5, 6, 1)
    out = Cropping2D(((1, 2), (0, 3)))(x)
    torch.testing.assert_close(out[0, :, :, 0], x[0, 1:3, 0:3, 0])
    assert out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()  # a view, no copy


@pytest.mark.parametrize("cls, kwargs, spatial, data_format", _with_formats(CROPPING_CASES))
def test_cropping_compute_output_shape_matches_keras(keras, cls, kwargs, spatial, data_format):
    spatial = (None, *spatial[1:])
    shape = _shape(data_format, spatial)
    expected = tuple(getattr(keras.layers, cls.__name__)(**kwargs).compute_output_shape(shape))
    assert cls(**kwargs).compute_output_shape(shape) == expected


@pytest.mark.parametrize("cls, kwargs", [
    (Cropping1D, {"cropping": -1}), (Cropping1D, {"cropping": (1, -1)}), (Cropping1D, {"cropping": (1, 2, 3)}),
    (Cropping2D, {"cropping": -1}), (Cropping2D, {"cropping": ((1, -1), (0, 0))}), (Cropping2D, {"cropping": (1, 2, 3)}),
    (Cropping3D, {"cropping": -2}), (Cropping3D, {"cropping": (1, 1)}), (Cropping3D, {"cropping": ((0, 0), (0, 0), (-1, 0))}),
    (Cropping2D, {"cropping": 1.5}),
])
def test_cropping_rejects_negative_or_malformed_cropping(keras, cls, kwargs):
    with pytest.raises(ValueError, match=r'cropping.*"crop"'):
        cls(name="crop", **kwargs)
    with pytest.raises(ValueError):
        getattr(keras.layers, cls.__name__)(**kwargs)


@pytest.mark.parametrize("cls, kwargs, shape", [
    (Cropping1D, {"cropping": (2, 3)}, (2, 5, 3)), (Cropping1D, {"cropping": (4, 4)}, (2, 5, 3)),
    (Cropping2D, {"cropping": ((0, 0), (3, 3))}, (2, 5, 6, 3)),
    (Cropping2D, {"cropping": 2, "data_format": "channels_first"}, (2, 3, 4, 6)),
    (Cropping3D, {"cropping": ((0, 0), (0, 0), (1, 1))}, (1, 3, 3, 2, 1)),
])
def test_cropping_that_removes_everything_raises(keras, cls, kwargs, shape):
    layer = cls(name="crop", **kwargs)
    pattern = r'"crop".*' + r"\(" + r", ".join(map(str, shape)) + r"\).*cropping="
    with pytest.raises(ValueError, match=pattern):
        layer(torch.zeros(shape))
    with pytest.raises(ValueError, match=r'"crop"'):
        layer.compute_output_shape((None, *shape[1:]))
    with pytest.raises(ValueError, match=r'"crop"'):
        cls(name="crop", **kwargs)(lamina.Input(shape[1:]))
    with pytest.raises(ValueError):
        getattr(keras.layers, cls.__name__)(**kwargs).compute_output_shape((None, *shape[1:]))


def test_cropping_removes_everything_on_later_call():
    layer = Cropping1D((1, 1), name="crop")
    layer(torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match=r'"crop".*\(1, 2, 2\)'):
        layer(torch.zeros(1, 2, 2))


@pytest.mark.parametrize("cls, shape", [(Cropping1D, (2, 3)), (Cropping2D, (2, 3, 4)), (Cropping3D, (2, 3, 4, 5))])
def test_cropping_wrong_rank_names_layer_and_shape(cls, shape):
    with pytest.raises(ValueError, match=r'"crop".*expected ndim=\d, found ndim=\d.*Full shape received'):
        cls(name="crop")(torch.zeros(shape))


# ---------------------------------------------------------------- ZeroPadding
PADDING_CASES = [
    (ZeroPadding1D, {}, (5,)), (ZeroPadding1D, {"padding": 2}, (4,)), (ZeroPadding1D, {"padding": (0, 3)}, (5,)),
    (ZeroPadding2D, {}, (5, 4)), (ZeroPadding2D, {"padding": 2}, (3, 4)), (ZeroPadding2D, {"padding": (0, 1)}, (5, 4)),
    (ZeroPadding2D, {"padding": ((1, 0), (2, 3))}, (4, 5)),
    (ZeroPadding3D, {}, (3, 2, 4)), (ZeroPadding3D, {"padding": (1, 0, 2)}, (3, 4, 2)),
    (ZeroPadding3D, {"padding": ((0, 1), (2, 0), (1, 1))}, (2, 3, 3)),
]
PADDING_IDS = [f"{c.__name__}-{k.get('padding', 'default')}-{s}" for c, k, s in PADDING_CASES]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("cls, kwargs, spatial", PADDING_CASES, ids=PADDING_IDS)
def test_zero_padding_matches_keras(keras, cls, kwargs, spatial, data_format):
    kwargs = dict(kwargs, data_format=data_format)
    x = _random(_shape(data_format, spatial, batch=2))
    out = _compare(keras, cls, kwargs, x)
    assert tuple(out.shape) == cls(**kwargs).compute_output_shape(x.shape)


def test_zero_padding_2d_closed_form():
    x = np.arange(6, dtype="float32").reshape(1, 2, 3, 1)
    out = _np(ZeroPadding2D(((1, 0), (2, 1)))(x))
    np.testing.assert_array_equal(out, np.pad(x, [(0, 0), (1, 0), (2, 1), (0, 0)]))


def test_zero_padding_keeps_integer_dtype():
    out = ZeroPadding1D()(torch.ones(1, 2, 1, dtype=torch.int64))
    assert out.dtype == torch.int64 and out.flatten().tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("cls, kwargs, spatial", PADDING_CASES, ids=PADDING_IDS)
def test_zero_padding_compute_output_shape_matches_keras(keras, cls, kwargs, spatial, data_format):
    kwargs = dict(kwargs, data_format=data_format)
    shape = _shape(data_format, (None, *spatial[1:]))
    expected = tuple(getattr(keras.layers, cls.__name__)(**kwargs).compute_output_shape(shape))
    assert cls(**kwargs).compute_output_shape(shape) == expected


@pytest.mark.parametrize("cls, kwargs", [
    (ZeroPadding1D, {"padding": -1}), (ZeroPadding1D, {"padding": (1, -2)}), (ZeroPadding2D, {"padding": -1}),
    (ZeroPadding2D, {"padding": ((1, -1), (0, 0))}), (ZeroPadding2D, {"padding": (1, 2, 3)}),
    (ZeroPadding3D, {"padding": (1, 1)}), (ZeroPadding3D, {"padding": -1}), (ZeroPadding2D, {"data_format": "nhwc"}),
])
def test_zero_padding_rejects_bad_arguments(cls, kwargs):
    # Keras accepts a negative int for 2D/3D and crops silently; lamina refuses it.
    with pytest.raises(ValueError, match=r'"pad"'):
        cls(name="pad", **kwargs)


def test_zero_padding_wrong_rank_names_layer():
    with pytest.raises(ValueError, match=r'"pad".*expected ndim=4, found ndim=3'):
        ZeroPadding2D(name="pad")(torch.zeros(2, 3, 4))


# ---------------------------------------------------------------- UpSampling
UPSAMPLING_CASES = [
    (UpSampling1D, {}, (5,)), (UpSampling1D, {"size": 3}, (4,)),
    (UpSampling2D, {}, (3, 4)), (UpSampling2D, {"size": 3}, (2, 3)), (UpSampling2D, {"size": (1, 3)}, (5, 2)),
    (UpSampling2D, {"size": (2, 3), "interpolation": "bilinear"}, (5, 4)),
    (UpSampling2D, {"size": (3, 1), "interpolation": "bilinear"}, (4, 5)),
    (UpSampling2D, {"size": 2, "interpolation": "BILINEAR"}, (3, 3)),
    (UpSampling2D, {"size": (2, 3), "interpolation": "bicubic"}, (4, 5)),
    (UpSampling3D, {}, (2, 3, 2)), (UpSampling3D, {"size": (1, 2, 3)}, (3, 2, 2)),
]


@pytest.mark.parametrize("cls, kwargs, spatial, data_format", _with_formats(UPSAMPLING_CASES))
def test_up_sampling_matches_keras(keras, cls, kwargs, spatial, data_format):
    x = _random(_shape(data_format, spatial, batch=2), seed=len(spatial))
    out = _compare(keras, cls, kwargs, x, atol=1e-6 if "interpolation" in kwargs else 0.0)
    assert tuple(out.shape) == cls(**kwargs).compute_output_shape(x.shape)


@pytest.mark.parametrize("cls, kwargs, spatial, data_format", _with_formats(UPSAMPLING_CASES))
def test_up_sampling_compute_output_shape_matches_keras(keras, cls, kwargs, spatial, data_format):
    shape = _shape(data_format, (None, *spatial[1:]))
    expected = tuple(getattr(keras.layers, cls.__name__)(**kwargs).compute_output_shape(shape))
    assert cls(**kwargs).compute_output_shape(shape) == expected


def test_up_sampling_nearest_closed_form():
    x = np.arange(6, dtype="float32").reshape(1, 2, 3, 1)
    out = _np(UpSampling2D((2, 3))(x))
    np.testing.assert_array_equal(out, x.repeat(2, axis=1).repeat(3, axis=2))
    x3 = np.arange(8, dtype="float32").reshape(1, 2, 2, 2, 1)
    np.testing.assert_array_equal(_np(UpSampling3D((3, 1, 2))(x3)), x3.repeat(3, 1).repeat(2, 3))


def test_up_sampling_bilinear_closed_form_half_pixel_centres():
    # Factor 2 with half-pixel centres: outputs at x0, .75x0+.25x1, .25x0+.75x1, x1.
    x = torch.tensor([[[[0.0], [4.0]]]])  # (1, 1, 2, 1)
    out = UpSampling2D((1, 2), interpolation="bilinear")(x).flatten()
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 3.0, 4.0]))


def test_up_sampling_bilinear_integer_input_rounds_back_as_keras(keras):
    x = np.array([[[[0], [3]]]], dtype="int32")
    out = UpSampling2D((1, 2), interpolation="bilinear")(torch.as_tensor(x))
    expected = _keras_out(keras, keras.layers.UpSampling2D((1, 2), interpolation="bilinear"), x)
    assert out.dtype == torch.int32
    np.testing.assert_array_equal(_np(out), expected)


def test_up_sampling_gradient_flows():
    x = torch.randn(1, 3, 3, 2, requires_grad=True)
    (UpSampling2D(interpolation="bilinear")(x).sum() + UpSampling2D()(x).sum()).backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 8.0))


@pytest.mark.parametrize("cls, kwargs, error", [
    (UpSampling1D, {"size": 0}, ValueError), (UpSampling1D, {"size": 2.0}, TypeError),
    (UpSampling1D, {"size": (2,)}, TypeError), (UpSampling2D, {"size": (0, 1)}, ValueError),
    (UpSampling2D, {"size": (1, 2, 3)}, ValueError), (UpSampling3D, {"size": -1}, ValueError),
    (UpSampling2D, {"interpolation": "lanczos3"}, ValueError), (UpSampling3D, {"data_format": "ncdhw"}, ValueError),
])
def test_up_sampling_rejects_bad_arguments(cls, kwargs, error):
    with pytest.raises(error, match=r'"up"'):
        cls(name="up", **kwargs)


def test_up_sampling_wrong_rank_names_layer():
    with pytest.raises(ValueError, match=r'"up".*expected ndim=5, found ndim=4'):
        UpSampling3D(name="up")(torch.zeros(1, 2, 2, 2))


# ---------------------------------------------------------------- masks
MASK_CASES = [
    (Permute, {"dims": (2, 1)}), (Cropping1D, {}), (ZeroPadding1D, {}), (UpSampling1D, {}),
]


@pytest.mark.parametrize("cls, kwargs", MASK_CASES, ids=[c.__name__ for c, _ in MASK_CASES])
def test_reshaping_layers_drop_masks_as_keras(keras, cls, kwargs):
    x = _random((2, 5, 3))
    x[:, -1] = 0.0
    masked = keras.layers.Masking()(x)
    assert getattr(masked, "_keras_mask", None) is not None
    theirs = getattr(keras.layers, cls.__name__)(**kwargs)(masked)
    assert getattr(theirs, "_keras_mask", None) is None
    ours_in = Masking()(torch.as_tensor(x))
    assert getattr(ours_in, "_keras_mask", None) is not None
    assert getattr(cls(**kwargs)(ours_in), "_keras_mask", None) is None


# ---------------------------------------------------------------- config, registry, names
# (class, constructor arguments, an input shape the layer accepts)
CONFIG_CASES = [
    (Permute, {"dims": (3, 1, 2)}, (2, 3, 4, 5)), (RepeatVector, {"n": 4}, (2, 3)),
    (Cropping1D, {"cropping": (2, 0)}, (2, 5, 3)),
    (Cropping2D, {"cropping": ((1, 0), (2, 3)), "data_format": "channels_first"}, (2, 3, 4, 7)),
    (Cropping3D, {"cropping": 2, "data_format": "channels_first"}, (1, 2, 5, 6, 5)),
    (ZeroPadding1D, {"padding": (0, 2), "data_format": "channels_first"}, (2, 3, 4)),
    (ZeroPadding2D, {"padding": (1, 2), "data_format": "channels_first"}, (2, 3, 4, 5)),
    (ZeroPadding3D, {"padding": ((1, 0), (0, 2), (3, 3))}, (1, 2, 3, 4, 2)),
    (UpSampling1D, {"size": 3}, (2, 4, 3)), (UpSampling2D, {"size": (1, 2), "interpolation": "bilinear"}, (2, 3, 4, 2)),
    (UpSampling3D, {"size": (2, 1, 3), "data_format": "channels_first"}, (1, 2, 3, 2, 2)),
]
CONFIG_IDS = [c.__name__ for c, _, _ in CONFIG_CASES]


@pytest.mark.parametrize("cls, kwargs, shape", CONFIG_CASES, ids=CONFIG_IDS)
def test_reshaping_get_config_matches_keras(keras, cls, kwargs, shape):
    ours = cls(**kwargs).get_config()
    theirs = getattr(keras.layers, cls.__name__)(**kwargs).get_config()
    assert set(ours) == set(theirs)
    for key in set(theirs) - {"name", "dtype"}:
        assert ours[key] == theirs[key], key


@pytest.mark.parametrize("cls", [Cropping1D, Cropping2D, Cropping3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D,
                                 UpSampling1D, UpSampling2D, UpSampling3D])
def test_reshaping_defaults_and_names_match_keras(keras, cls):
    ours, theirs = cls().get_config(), getattr(keras.layers, cls.__name__)().get_config()
    for key in set(theirs) - {"name", "dtype"}:
        assert ours[key] == theirs[key], key
    assert ours["name"].rstrip("_0123456789") == theirs["name"].rstrip("_0123456789")


@pytest.mark.parametrize("cls, kwargs, shape", CONFIG_CASES, ids=CONFIG_IDS)
def test_reshaping_config_round_trip(cls, kwargs, shape):
    layer = cls(**kwargs)
    config = json.loads(json.dumps(layer.get_config()))
    clone = cls.from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == config
    again = registry.get("layer", registry.serialize("layer", layer))
    assert type(again) is cls and again.get_config() == layer.get_config()
    assert registry.lookup_class("layer", cls.__name__) is cls


@pytest.mark.parametrize("cls, kwargs, shape", CONFIG_CASES, ids=CONFIG_IDS)
def test_reshaping_loads_keras_config_and_computes_the_same(keras, cls, kwargs, shape):
    reference = getattr(keras.layers, cls.__name__)(**kwargs)
    config = reference.get_config()
    config.pop("dtype")  # a Keras DTypePolicy dict
    layer = cls.from_config(json.loads(json.dumps(config)))
    x = _random(shape)
    np.testing.assert_allclose(_np(layer(x)), _keras_out(keras, reference, x), atol=1e-6)


def test_reshaping_module_exports_keras_names(keras):
    for name in reshaping.__all__:
        assert getattr(keras.layers, name).__name__ == name


# ---------------------------------------------------------------- models
def test_reshaping_layers_train_in_sequential_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = lamina.Sequential([
        lamina.Input((4,)), Dense(3), RepeatVector(5), ZeroPadding1D((1, 2)), Cropping1D((2, 1)),
        UpSampling1D(2), Permute((2, 1)), Flatten(), Dense(1),
    ])
    assert model.output_shape == (None, 1)
    model.compile(optimizer="sgd", loss="mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("data_format", FORMATS)
def test_reshaping_2d_layers_in_functional_model(data_format):
    inputs = lamina.Input(_shape(data_format, (5, 4), channels=2)[1:])
    hidden = ZeroPadding2D(((1, 0), (0, 2)), data_format=data_format)(inputs)
    hidden = Cropping2D(((0, 1), (1, 0)), data_format=data_format)(hidden)
    hidden = UpSampling2D((2, 1), data_format=data_format, interpolation="bilinear")(hidden)
    assert hidden.shape == _shape(data_format, (10, 5), channels=2)
    hidden = UpSampling3D(data_format=data_format)(Permute((1, 2, 3, 4))(lamina.layers.Reshape(
        _shape(data_format, (10, 5, 1), channels=2)[1:])(hidden)))
    outputs = Dense(1)(Flatten()(hidden))
    model = lamina.Model(inputs, outputs)
    x = np.random.default_rng(1).normal(size=(6, *inputs.shape[1:])).astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, np.ones((6, 1), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert tuple(model.predict(x, verbose=0).shape) == (6, 1)


DTYPE_CASES = [(Permute, {"dims": (2, 1)}), (Cropping1D, {}), (ZeroPadding1D, {}), (UpSampling1D, {})]


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32])
@pytest.mark.parametrize("cls, kwargs", DTYPE_CASES, ids=[c.__name__ for c, _ in DTYPE_CASES])
def test_reshaping_output_dtype_matches_keras(keras, cls, kwargs, dtype):
    x = torch.arange(8).reshape(1, 4, 2).to(dtype)
    expected = getattr(keras.layers, cls.__name__)(**kwargs)(x)
    out = cls(**kwargs)(x)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(_np(out), keras.ops.convert_to_numpy(expected))
