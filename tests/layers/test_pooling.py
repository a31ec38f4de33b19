"""Tests for lamina.layers.pooling against Keras 3 and a NumPy reference with TensorFlow's
'same' semantics (uneven padding; max ignores padding; average divides by real cells)."""

import itertools
import json

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers import pooling
from lamina.layers.core import Dense
from lamina.layers.pooling import (
    AveragePooling1D, AveragePooling2D, AveragePooling3D, GlobalAveragePooling1D, GlobalAveragePooling2D,
    GlobalAveragePooling3D, GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPooling1D,
    MaxPooling2D, MaxPooling3D,
)

POOLS = {("max", 1): MaxPooling1D, ("max", 2): MaxPooling2D, ("max", 3): MaxPooling3D,
         ("average", 1): AveragePooling1D, ("average", 2): AveragePooling2D, ("average", 3): AveragePooling3D}
GLOBAL_POOLS = [GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D,
                GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D]

# (spatial shape, pool_size, strides, padding): odd and even sizes, strides != pool_size,
# strides > pool_size, 'same' on odd sizes with even and uneven padding.
CASES = {
    1: [((7,), 2, None, "valid"), ((8,), 3, 2, "valid"), ((7,), 2, 3, "valid"), ((7,), 3, 1, "same"),
        ((7,), 2, None, "same"), ((8,), 3, 2, "same"), ((7,), 4, 1, "same"), ((6,), 5, 2, "same")],
    2: [((7, 6), (2, 2), None, "valid"), ((7, 6), (3, 2), (2, 1), "valid"), ((6, 7), (2, 3), (3, 2), "valid"),
        ((7, 6), (3, 3), (1, 1), "same"), ((7, 5), (2, 2), None, "same"), ((7, 6), (3, 2), (2, 3), "same"),
        ((5, 6), (4, 3), (1, 2), "same")],
    3: [((5, 4, 3), (2, 2, 2), None, "valid"), ((5, 4, 6), (3, 2, 2), (1, 2, 3), "valid"),
        ((5, 4, 3), (3, 3, 3), (1, 1, 1), "same"), ((5, 4, 3), (2, 2, 2), None, "same"),
        ((5, 6, 3), (2, 4, 3), (2, 1, 2), "same")],
}
POOL_PARAMS = [(mode, rank, *case) for mode in ("max", "average") for rank in (1, 2, 3) for case in CASES[rank]]
POOL_IDS = [f"{m}{r}d-{s}-{p}-{st}-{pad}" for m, r, s, p, st, pad in POOL_PARAMS]


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _tuple(value, n):
    return (value,) * n if isinstance(value, int) else tuple(value)


def _same_pads(size, pool, stride):
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + pool - size)
    return total // 2, total - total // 2


def _reference_pool(x, mode, pool_size, strides, padding):
    """NumPy pooling of channels_last ``x`` with TensorFlow's semantics (padding cells are NaN)."""
    rank = x.ndim - 2
    pool_size = _tuple(pool_size, rank)
    strides = pool_size if strides is None else _tuple(strides, rank)
    spatial = x.shape[1:-1]
    if padding == "same":
        pads = [_same_pads(n, k, s) for n, k, s in zip(spatial, pool_size, strides)]
    else:
        pads = [(0, 0)] * rank
    padded = np.pad(x.astype("float64"), [(0, 0), *pads, (0, 0)], constant_values=np.nan)
    out_sizes = [(n + sum(p) - k) // s + 1 for n, p, k, s in zip(spatial, pads, pool_size, strides)]
    out = np.empty((x.shape[0], *out_sizes, x.shape[-1]))
    reduce = np.nanmax if mode == "max" else np.nanmean
    for index in itertools.product(*(range(n) for n in out_sizes)):
        window = tuple(slice(i * s, i * s + k) for i, s, k in zip(index, strides, pool_size))
        block = padded[(slice(None), *window, slice(None))]
        out[(slice(None), *index, slice(None))] = reduce(block.reshape(x.shape[0], -1, x.shape[-1]), axis=1)
    return out.astype("float32")


def _re_shape(shape):
    return r"\(" + r", ".join(str(s) for s in shape) + r"\)"


def _to_format(x_last, data_format):
    return x_last if data_format == "channels_last" else np.moveaxis(x_last, -1, 1).copy()


def _from_format(x, data_format):
    return x if data_format == "channels_last" else np.moveaxis(x, 1, -1)


# ---------------------------------------------------------------- pooling: numbers
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode, rank, spatial, pool_size, strides, padding", POOL_PARAMS, ids=POOL_IDS)
def test_pool_matches_tensorflow_semantics_reference(mode, rank, spatial, pool_size, strides, padding, data_format):
    x = np.random.default_rng(rank).normal(size=(2, *spatial, 3)).astype("float32")
    layer = POOLS[mode, rank](pool_size, strides=strides, padding=padding, data_format=data_format)
    out = _from_format(_np(layer(_to_format(x, data_format))), data_format)
    np.testing.assert_allclose(out, _reference_pool(x, mode, pool_size, strides, padding), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode, rank, spatial, pool_size, strides, padding", POOL_PARAMS, ids=POOL_IDS)
def test_pool_matches_keras(keras, mode, rank, spatial, pool_size, strides, padding, data_format):
    pools = _tuple(pool_size, rank)
    stride_t = pools if strides is None else _tuple(strides, rank)
    pads = [_same_pads(n, k, s) for n, k, s in zip(spatial, pools, stride_t)] if padding == "same" else []
    if mode == "average" and any(a != b and k != 2 for (a, b), k in zip(pads, pools)):
        # Keras 3.15's torch backend pads unevenly with replicated edge values, so its border
        # averages differ from TensorFlow/JAX (fixed upstream in keras-team/keras#23233) except
        # for 2-wide windows; these cases are checked against the reference above.
        pytest.skip("Keras torch backend averages replicated padding on uneven 'same' padding")
    x = _to_format(np.random.default_rng(rank + 10).normal(size=(2, *spatial, 3)).astype("float32"), data_format)
    kwargs = dict(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format)
    name = ("MaxPooling" if mode == "max" else "AveragePooling") + f"{rank}D"
    expected = keras.ops.convert_to_numpy(getattr(keras.layers, name)(**kwargs)(x))
    np.testing.assert_allclose(_np(POOLS[mode, rank](**kwargs)(x)), expected, rtol=1e-5, atol=1e-6)


def test_average_pooling_same_counts_only_real_cells_at_borders():
    # pool 4, stride 1 on 5 steps: padding (1, 2); each border window averages its real steps only.
    x = torch.arange(1.0, 6.0).reshape(1, 5, 1)
    out = AveragePooling1D(4, strides=1, padding="same")(x).flatten()
    torch.testing.assert_close(out, torch.tensor([2.0, 2.5, 3.5, 4.0, 4.5]))


def test_average_pooling_same_even_padding_excludes_padding():
    x = torch.ones(1, 3, 3, 1)
    torch.testing.assert_close(AveragePooling2D(3, strides=1, padding="same")(x), x)


def test_max_pooling_same_pads_with_minus_infinity():
    x = -torch.arange(1.0, 6.0).reshape(1, 5, 1)  # all negative: zero padding would win
    out = MaxPooling1D(4, strides=1, padding="same")(x).flatten()
    torch.testing.assert_close(out, torch.tensor([-1.0, -1.0, -2.0, -3.0, -4.0]))
    out = MaxPooling1D(3, strides=1, padding="same")(x).flatten()
    torch.testing.assert_close(out, torch.tensor([-1.0, -1.0, -2.0, -3.0, -4.0]))


def test_max_pooling_2d_literal_example_from_keras_docs():
    x = torch.arange(1.0, 13.0).reshape(1, 3, 4, 1)
    out = MaxPooling2D(pool_size=(2, 2), strides=(2, 2))(x)[0, :, :, 0]
    torch.testing.assert_close(out, torch.tensor([[6.0, 8.0]]))


def test_pool_gradient_flows():
    x = torch.randn(2, 7, 6, 3, requires_grad=True)
    (AveragePooling2D(4, strides=1, padding="same")(x).sum() + MaxPooling2D(3, padding="same")(x).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_pool_casts_integer_inputs_to_float():
    out = AveragePooling1D(2)(torch.tensor([[[1], [2], [4], [8]]]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([1.5, 6.0]))


def test_pool_default_data_format_follows_config():
    lamina.config.set_image_data_format("channels_first")
    layer = MaxPooling2D()
    assert layer.data_format == "channels_first"
    assert tuple(layer(torch.zeros(1, 3, 4, 6)).shape) == (1, 3, 2, 3)


# ---------------------------------------------------------------- pooling: shapes and config
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("mode, rank, spatial, pool_size, strides, padding", POOL_PARAMS, ids=POOL_IDS)
def test_pool_compute_output_shape_matches_keras_and_call(keras, mode, rank, spatial, pool_size, strides,
                                                          padding, data_format):
    kwargs = dict(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format)
    shape = (None, *spatial, 3) if data_format == "channels_last" else (None, 3, *spatial)
    name = ("MaxPooling" if mode == "max" else "AveragePooling") + f"{rank}D"
    layer = POOLS[mode, rank](**kwargs)
    expected = tuple(getattr(keras.layers, name)(**kwargs).compute_output_shape(shape))
    assert layer.compute_output_shape(shape) == expected
    assert tuple(layer(torch.zeros((2, *shape[1:]))).shape) == (2, *expected[1:])


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pool_compute_output_shape_unknown_spatial_dims(keras, padding):
    shape = (None, None, 8, 3)
    ours = MaxPooling2D(3, strides=2, padding=padding).compute_output_shape(shape)
    assert ours == tuple(keras.layers.MaxPooling2D(3, strides=2, padding=padding).compute_output_shape(shape))
    assert ours[:2] == (None, None)


def test_pool_symbolic_output_shape():
    assert AveragePooling2D(2, padding="same")(lamina.Input((7, 5, 3))).shape == (None, 4, 3, 3)


@pytest.mark.parametrize("mode, rank", list(POOLS), ids=[c.__name__ for c in POOLS.values()])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_pool_get_config_matches_keras(keras, mode, rank, data_format):
    kwargs = dict(pool_size=3, strides=(2,) * rank, padding="same", data_format=data_format)
    ours = POOLS[mode, rank](**kwargs).get_config()
    theirs = getattr(keras.layers, POOLS[mode, rank].__name__)(**kwargs).get_config()
    assert set(ours) == set(theirs)
    for key in ("pool_size", "strides", "padding", "data_format", "trainable"):
        assert ours[key] == theirs[key], key


@pytest.mark.parametrize("cls", [MaxPooling1D, MaxPooling2D, MaxPooling3D])
def test_max_pooling_defaults_match_keras(keras, cls):
    ours, theirs = cls().get_config(), getattr(keras.layers, cls.__name__)().get_config()
    assert (ours["pool_size"], ours["strides"], ours["padding"]) == (
        theirs["pool_size"], theirs["strides"], theirs["padding"])


def test_average_pooling_requires_pool_size_as_keras():
    with pytest.raises(TypeError):
        AveragePooling2D()


def test_pool_padding_is_case_insensitive():
    assert MaxPooling1D(padding="SAME").padding == "same"


# ---------------------------------------------------------------- pooling: errors
@pytest.mark.parametrize("cls, shape", [(MaxPooling2D, (2, 4, 4)), (AveragePooling1D, (2, 4, 4, 1)),
                                        (MaxPooling3D, (2, 4, 4, 4))])
def test_pool_wrong_rank_names_layer_and_shape(cls, shape):
    layer = cls(2, name="pool")
    with pytest.raises(ValueError, match=r'"pool".*expected ndim=\d, found ndim=\d.*' + _re_shape(shape)):
        layer(torch.zeros(shape))


def test_pool_wrong_rank_symbolic_names_layer():
    with pytest.raises(ValueError, match=r'"pool".*expected ndim=4, found ndim=3'):
        MaxPooling2D(name="pool")(lamina.Input((5, 3)))


def test_pool_larger_than_input_valid_raises_on_call():
    with pytest.raises(ValueError, match=r'"big".*\(2, 3, 2\).*pool_size=\(5,\).*padding=\'same\''):
        MaxPooling1D(5, name="big")(torch.zeros(2, 3, 2))


def test_pool_larger_than_input_valid_raises_on_later_call():
    layer = AveragePooling2D(3, name="big")
    layer(torch.zeros(1, 6, 6, 1))
    with pytest.raises(ValueError, match=r'"big".*\(1, 2, 6, 1\)'):
        layer(torch.zeros(1, 2, 6, 1))


def test_pool_larger_than_input_valid_raises_in_compute_output_shape_and_symbolic(keras):
    with pytest.raises(ValueError):
        keras.layers.MaxPooling1D(5).compute_output_shape((None, 3, 2))
    with pytest.raises(ValueError, match=r'"big"'):
        MaxPooling1D(5, name="big").compute_output_shape((None, 3, 2))
    with pytest.raises(ValueError, match=r'"big"'):
        MaxPooling2D((2, 5), name="big")(lamina.Input((4, 3, 1)))


def test_pool_larger_than_input_same_is_fine():
    out = MaxPooling1D(5, padding="same")(torch.arange(3.0).reshape(1, 3, 1))
    torch.testing.assert_close(out.flatten(), torch.tensor([2.0]))


@pytest.mark.parametrize("kwargs, match", [
    ({"pool_size": 0}, "pool_size"), ({"pool_size": (2, 2, 2)}, "pool_size"), ({"pool_size": -1}, "pool_size"),
    ({"pool_size": 2.5}, "pool_size"), ({"strides": 0}, "strides"), ({"strides": (1,)}, "strides"),
    ({"padding": "full"}, "padding"), ({"data_format": "NHWC"}, "data_format"),
])
def test_pool_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=rf"{match}.*\"bad\"|\"bad\".*{match}"):
        MaxPooling2D(**{"name": "bad", **kwargs})


# ---------------------------------------------------------------- global pooling
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("cls", GLOBAL_POOLS, ids=[c.__name__ for c in GLOBAL_POOLS])
def test_global_pool_matches_keras(keras, cls, data_format, keepdims):
    rank = int(cls.__name__[-2])
    x = np.random.default_rng(rank).normal(size=(2, 3, *(5, 4, 3)[:rank])).astype("float32")
    kwargs = dict(data_format=data_format, keepdims=keepdims)
    out = _np(cls(**kwargs)(x))
    expected = keras.ops.convert_to_numpy(getattr(keras.layers, cls.__name__)(**kwargs)(x))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    axes = tuple(range(1, rank + 1)) if data_format == "channels_last" else tuple(range(2, rank + 2))
    reduce = np.max if "Max" in cls.__name__ else np.mean
    np.testing.assert_allclose(out, reduce(x, axis=axes, keepdims=keepdims), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("cls", GLOBAL_POOLS, ids=[c.__name__ for c in GLOBAL_POOLS])
def test_global_pool_compute_output_shape_matches_keras(keras, cls, data_format, keepdims):
    rank = int(cls.__name__[-2])
    shape = (None, *(None, 4, 3)[:rank], 6) if data_format == "channels_last" else (None, 6, *(5, None, 3)[:rank])
    kwargs = dict(data_format=data_format, keepdims=keepdims)
    expected = tuple(getattr(keras.layers, cls.__name__)(**kwargs).compute_output_shape(shape))
    assert cls(**kwargs).compute_output_shape(shape) == expected


@pytest.mark.parametrize("cls", GLOBAL_POOLS, ids=[c.__name__ for c in GLOBAL_POOLS])
def test_global_pool_get_config_matches_keras(keras, cls):
    ours = cls(data_format="channels_first", keepdims=True).get_config()
    theirs = getattr(keras.layers, cls.__name__)(data_format="channels_first", keepdims=True).get_config()
    assert set(ours) == set(theirs)
    assert (ours["data_format"], ours["keepdims"]) == (theirs["data_format"], theirs["keepdims"])


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_global_average_pooling_1d_mask_matches_keras(keras, data_format, keepdims):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 6, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=bool)
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, 2).copy()
    kwargs = dict(data_format=data_format, keepdims=keepdims)
    out = _np(GlobalAveragePooling1D(**kwargs)(x, mask=torch.as_tensor(mask)))
    expected = keras.ops.convert_to_numpy(keras.layers.GlobalAveragePooling1D(**kwargs)(x, mask=mask))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    steps = 1 if data_format == "channels_last" else 2
    weights = np.expand_dims(mask, 2 if data_format == "channels_last" else 1)
    closed = (x * weights).sum(steps, keepdims=keepdims) / weights.sum(steps, keepdims=keepdims)
    np.testing.assert_allclose(out, closed, rtol=1e-5, atol=1e-6)


def test_global_average_pooling_1d_mask_excludes_non_finite_masked_steps():
    x = torch.tensor([[[1.0], [3.0], [float("inf")]]])
    out = GlobalAveragePooling1D()(x, mask=torch.tensor([[1.0, 1.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[2.0]]))


def test_global_average_pooling_1d_receives_mask_from_previous_layer_and_drops_it():
    x = torch.tensor([[[2.0], [4.0], [9.0]]])
    x._keras_mask = torch.tensor([[True, True, False]])
    out = GlobalAveragePooling1D()(x)
    torch.testing.assert_close(out, torch.tensor([[3.0]]))
    assert getattr(out, "_keras_mask", None) is None


def test_global_average_pooling_1d_mask_inside_model_matches_keras(keras):
    ids = np.array([[3, 5, 0, 0], [1, 2, 7, 0]])
    table = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    embedded = table[ids]
    mask = ids != 0
    expected = keras.ops.convert_to_numpy(keras.layers.GlobalAveragePooling1D()(embedded, mask=mask))
    x = torch.as_tensor(embedded)
    x._keras_mask = torch.as_tensor(mask)
    np.testing.assert_allclose(_np(GlobalAveragePooling1D()(x)), expected, atol=1e-6)


@pytest.mark.parametrize("cls", [GlobalMaxPooling1D, GlobalAveragePooling2D])
def test_global_pool_other_layers_ignore_masks(cls):
    assert not cls().supports_masking
    x = torch.randn(2, 3, 4) if cls is GlobalMaxPooling1D else torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(cls()(x, mask=torch.zeros(x.shape[:2], dtype=torch.bool)), cls()(x))


def test_global_pool_wrong_rank_names_layer():
    with pytest.raises(ValueError, match=r'"gap".*expected ndim=4, found ndim=3.*\(2, 3, 4\)'):
        GlobalAveragePooling2D(name="gap")(torch.zeros(2, 3, 4))


def test_global_pool_rejects_bad_data_format():
    with pytest.raises(ValueError, match=r"data_format.*\"gmp\""):
        GlobalMaxPooling2D(data_format="nhwc", name="gmp")


# ---------------------------------------------------------------- registry, aliases, models
ALIASES = {
    "MaxPool1D": MaxPooling1D, "MaxPool2D": MaxPooling2D, "MaxPool3D": MaxPooling3D,
    "AvgPool1D": AveragePooling1D, "AvgPool2D": AveragePooling2D, "AvgPool3D": AveragePooling3D,
    "GlobalMaxPool1D": GlobalMaxPooling1D, "GlobalMaxPool2D": GlobalMaxPooling2D,
    "GlobalMaxPool3D": GlobalMaxPooling3D, "GlobalAvgPool1D": GlobalAveragePooling1D,
    "GlobalAvgPool2D": GlobalAveragePooling2D, "GlobalAvgPool3D": GlobalAveragePooling3D,
}


@pytest.mark.parametrize("alias, cls", ALIASES.items(), ids=list(ALIASES))
def test_pool_aliases_match_keras_exports(keras, alias, cls):
    assert getattr(pooling, alias) is cls
    assert getattr(keras.layers, alias) is getattr(keras.layers, cls.__name__)
    assert registry.lookup_class("layer", alias) is cls
    assert registry.lookup_class("layer", cls.__name__) is cls


def test_pool_module_exports_every_keras_pooling_name(keras):
    for name in pooling.__all__:
        assert hasattr(keras.layers, name), name


CONFIG_CASES = [(cls, {"pool_size": 3, "strides": 2, "padding": "same", "data_format": "channels_first"})
                for cls in POOLS.values()]
CONFIG_CASES += [(cls, {"data_format": "channels_first", "keepdims": True}) for cls in GLOBAL_POOLS]


@pytest.mark.parametrize("cls, kwargs", CONFIG_CASES, ids=[c.__name__ for c, _ in CONFIG_CASES])
def test_pool_config_round_trip(cls, kwargs):
    layer = cls(**kwargs)
    config = json.loads(json.dumps(layer.get_config()))
    clone = cls.from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == config
    again = registry.get("layer", registry.serialize("layer", layer))
    assert type(again) is cls and again.get_config() == layer.get_config()


@pytest.mark.parametrize("cls, kwargs", CONFIG_CASES, ids=[c.__name__ for c, _ in CONFIG_CASES])
def test_pool_loads_keras_config(keras, cls, kwargs):
    config = getattr(keras.layers, cls.__name__)(**kwargs).get_config()
    config.pop("dtype")  # a Keras DTypePolicy dict; lamina reads its name but compare the rest
    layer = cls.from_config(json.loads(json.dumps(config)))
    for key, value in kwargs.items():
        expected = _tuple(value, int(cls.__name__[-2])) if key in ("pool_size", "strides") else value
        assert getattr(layer, key) == expected


def test_pool_layers_train_in_sequential_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 6, 2)).astype("float32")
    y = x.mean(axis=(1, 2, 3))[:, None]
    model = lamina.Sequential([
        lamina.Input((8, 6, 2)), Dense(4), MaxPooling2D(2, padding="same"), AveragePooling2D(3, strides=1,
                                                                                              padding="same"),
        GlobalAveragePooling2D(), Dense(1),
    ])
    assert model.output_shape == (None, 1)
    model.compile(optimizer="sgd", loss="mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def test_pool_layers_in_functional_model_with_mask_free_1d_stack():
    inputs = lamina.Input((9, 3))
    hidden = MaxPooling1D(3, strides=2, padding="same")(Dense(4)(inputs))
    outputs = Dense(1)(GlobalMaxPooling1D()(AveragePooling1D(2)(hidden)))
    model = lamina.Model(inputs, outputs)
    assert hidden.shape == (None, 5, 4)
    x = np.random.default_rng(1).normal(size=(8, 9, 3)).astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, np.ones((8, 1), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert tuple(model.predict(x, verbose=0).shape) == (8, 1)


DTYPE_CASES = [(MaxPooling1D, {}), (AveragePooling1D, {"pool_size": 2}), (GlobalMaxPooling1D, {}),
               (GlobalAveragePooling1D, {})]


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32])
@pytest.mark.parametrize("cls, kwargs", DTYPE_CASES, ids=[c.__name__ for c, _ in DTYPE_CASES])
def test_pool_output_dtype_matches_keras(keras, cls, kwargs, dtype):
    x = torch.arange(8).reshape(1, 4, 2).to(dtype)
    out = cls(**kwargs)(x)
    if dtype == torch.int32 and cls in (MaxPooling1D, AveragePooling1D):
        # Keras's torch backend raises on integer windows; lamina pools them as floats.
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, cls(**kwargs)(x.float()))
        return
    expected = getattr(keras.layers, cls.__name__)(**kwargs)(x)
    assert out.dtype == expected.dtype
    np.testing.assert_allclose(_np(out), keras.ops.convert_to_numpy(expected))


def test_global_average_pooling_1d_after_masking_in_model_matches_keras(keras):
    from lamina.layers.misc import Masking

    x = np.random.default_rng(2).normal(size=(4, 6, 3)).astype("float32")
    x[0, 3:] = 0.0
    x[2, :2] = 0.0
    reference = keras.Sequential([keras.Input((6, 3)), keras.layers.Masking(), keras.layers.GlobalAveragePooling1D(),
                                  keras.layers.Dense(2)])
    model = lamina.Sequential([lamina.Input((6, 3)), Masking(), GlobalAveragePooling1D(), Dense(2)])
    model.set_weights(reference.get_weights())
    expected = keras.ops.convert_to_numpy(reference(x))
    np.testing.assert_allclose(_np(model(torch.as_tensor(x))), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    unmasked = x.mean(axis=1) @ reference.get_weights()[0] + reference.get_weights()[1]
    assert not np.allclose(expected, unmasked, atol=1e-3)  # the mask changed the answer


@pytest.mark.parametrize("shape, pool", [((3, 8, 8, 4), (2, 2)), ((2, 7, 9, 3), (2, 2)),
                                         ((2, 9, 9, 2), (3, 3)), ((2, 6, 7, 5), (2, 3))])
def test_tiled_max_pool_matches_torch_values_and_first_max_gradients(shape, pool):
    from lamina.layers.pooling import _TiledMaxPool2D

    # Small integers: many windows hold tied maxima, whose gradient goes to the first one.
    torch.manual_seed(0)
    x = torch.randint(-2, 3, shape).float().requires_grad_()
    reference = x.detach().clone().requires_grad_()
    out = _TiledMaxPool2D.apply(x, pool)[0]
    expected = torch.nn.functional.max_pool2d(reference.movedim(-1, 1), pool).movedim(1, -1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    upstream = torch.randn(expected.shape)
    out.backward(upstream)
    expected.backward(upstream)
    torch.testing.assert_close(x.grad, reference.grad, rtol=0, atol=0)


def test_max_pooling_under_torch_compile_matches_eager():
    layer = MaxPooling2D(2)
    x = torch.randn(4, 6, 5, 3)
    layer(x)  # build

    def loss_and_grad(fn, x):
        x = x.clone().requires_grad_()
        out = fn(x)
        (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
        return out.detach(), x.grad

    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    got = loss_and_grad(compiled, x)
    torch._dynamo.reset()
    want = loss_and_grad(layer, x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
