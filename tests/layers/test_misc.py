"""Tests for lamina.layers.misc (Embedding, Rescaling, Identity, Masking, Lambda) against closed
forms and Keras 3, including mask creation/propagation and Lambda's safe-mode refusal."""

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers import Dense, Layer
from lamina.layers import base as layer_base
from lamina.layers.misc import Embedding, Identity, Lambda, Masking, Rescaling
from lamina.saving import register_serializable

# Config keys Keras 3 has that lamina leaves out (no quantization).
KERAS_ONLY_KEYS = {"quantization_config"}


@register_serializable(package="TestMisc")
def square_plus(x, shift=0.0):
    return x * x + shift


@register_serializable(package="TestMisc")
def drop_last_axis_shape(input_shape):
    return tuple(input_shape[:-1])


@register_serializable(package="TestMisc")
def first_feature_mask(inputs, previous_mask):
    return inputs[..., 0] > 0


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _mask(x):
    m = getattr(x, "_keras_mask", None)
    return None if m is None else np.asarray(m.detach().cpu().numpy())


@pytest.fixture
def unsafe(monkeypatch):
    """Loading as ``load_model(..., safe_mode=False)`` does."""
    monkeypatch.setattr(layer_base, "_SAFE_MODE", False, raising=False)


class MaskedMean(Layer):
    """Consumes a mask: the mean over time of unmasked timesteps."""

    def call(self, inputs, mask=None):
        self.seen_mask = mask
        if mask is None:
            return inputs.mean(dim=1)
        weights = mask.to(inputs.dtype).unsqueeze(-1)
        return (inputs * weights).sum(1) / weights.sum(1).clamp_min(1.0)


# ---------------------------------------------------------------- Embedding
def _keras_embedding(keras, ours, **kwargs):
    layer = keras.layers.Embedding(ours.input_dim, ours.output_dim, **kwargs)
    layer.build()
    layer.set_weights(ours.get_weights())
    return layer


def test_embedding_looks_up_rows_closed_form():
    table = np.arange(12, dtype="float32").reshape(4, 3)
    layer = Embedding(4, 3, weights=table)
    np.testing.assert_array_equal(_np(layer(np.array([[3, 0], [1, 1]]))), table[[[3, 0], [1, 1]]])


@pytest.mark.parametrize("shape", [(5,), (2, 4), (2, 3, 4)])
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_embedding_matches_keras_any_rank(keras, shape, dtype):
    ids = np.random.default_rng(0).integers(0, 10, size=shape).astype(dtype)
    ours = Embedding(10, 4)
    out = _np(ours(torch.as_tensor(ids)))
    theirs = _keras_embedding(keras, ours)
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(theirs(ids)), atol=0)
    assert out.shape == shape + (4,) == ours.compute_output_shape(shape)
    assert ours.compute_output_shape((None,) + shape[1:]) == tuple(theirs.compute_output_shape((None,) + shape[1:]))


def test_embedding_float_indices_are_cast_like_keras(keras):
    ours = Embedding(5, 2)
    ids = np.array([[1.0, 3.0]], dtype="float32")
    np.testing.assert_array_equal(_np(ours(ids)), keras.ops.convert_to_numpy(_keras_embedding(keras, ours)(ids)))


def test_embedding_weights_count_params_and_default_init_match_keras(keras):
    ours = Embedding(50, 8)
    ours.build()
    theirs = keras.layers.Embedding(50, 8)
    theirs.build()
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()] == [(50, 8)]
    assert ours.count_params() == theirs.count_params() == 400
    values = ours.get_weights()[0]
    assert values.min() >= -0.05 and values.max() <= 0.05 and values.std() > 0.02  # "uniform" as Keras


def test_embedding_weights_argument_sets_table():
    table = np.random.default_rng(1).normal(size=(6, 2)).astype("float32")
    for given in (table, [table]):
        layer = Embedding(6, 2, weights=given)
        assert layer.built
        np.testing.assert_array_equal(layer.get_weights()[0], table)


def test_embedding_table_is_torch_embedding_layout():
    layer = Embedding(7, 3)
    layer.build()
    reference = torch.nn.Embedding(7, 3)
    reference.load_state_dict({"weight": layer.embeddings.detach()})
    ids = torch.tensor([[0, 6, 2]])
    torch.testing.assert_close(layer(ids), reference(ids))


@pytest.mark.parametrize("ids", [[[0, 10]], [[-1, 2]]])
def test_embedding_out_of_range_index_error_names_layer_and_input_dim(ids):
    layer = Embedding(10, 2, name="words")
    with pytest.raises(ValueError, match=r'"words".*input_dim=10.*\[0, 10\)'):
        layer(torch.tensor(ids))


@pytest.mark.parametrize("kwargs", [{"input_dim": 0, "output_dim": 2}, {"input_dim": 3, "output_dim": 2.5},
                                    {"input_dim": True, "output_dim": 2}])
def test_embedding_rejects_invalid_dims(kwargs):
    with pytest.raises(ValueError, match="positive integer"):
        Embedding(**kwargs)


@pytest.mark.parametrize("key", ["lora_rank", "lora_alpha", "quantization_config"])
def test_embedding_rejects_lora_and_quantization(key):
    with pytest.raises(ValueError, match="LoRA"):
        Embedding(4, 2, **{key: 4})
    Embedding(4, 2, **{key: None})  # Keras configs carry None


def test_embedding_mask_zero_mask_matches_keras(keras):
    ids = np.array([[3, 0, 2, 0], [0, 0, 1, 5]])
    ours = Embedding(6, 3, mask_zero=True)
    out = ours(torch.as_tensor(ids))
    theirs = _keras_embedding(keras, ours, mask_zero=True)(keras.ops.convert_to_tensor(ids))
    np.testing.assert_array_equal(_mask(out), ids != 0)
    np.testing.assert_array_equal(_mask(out), _mask(theirs))
    np.testing.assert_array_equal(_np(ours.compute_mask(torch.as_tensor(ids))), ids != 0)


def test_embedding_without_mask_zero_creates_no_mask():
    layer = Embedding(6, 3)
    assert _mask(layer(torch.tensor([[0, 1]]))) is None
    assert layer.compute_mask(torch.tensor([[0, 1]])) is None


def test_embedding_mask_propagates_through_dense_like_keras(keras):
    ids = np.array([[3, 0, 2], [0, 1, 1]])
    emb = Embedding(6, 3, mask_zero=True)
    dense = Dense(2)
    out = dense(emb(torch.as_tensor(ids)))
    k_emb = _keras_embedding(keras, emb, mask_zero=True)
    k_dense = keras.layers.Dense(2)
    k_dense.build((None, 3, 3))
    k_dense.set_weights(dense.get_weights())
    k_out = k_dense(k_emb(keras.ops.convert_to_tensor(ids)))
    np.testing.assert_array_equal(_mask(out), _mask(k_out))
    np.testing.assert_allclose(_np(out), keras.ops.convert_to_numpy(k_out), atol=1e-6)


def test_embedding_mask_reaches_mask_consuming_layer_in_functional_model():
    inputs = lamina.Input((4,), dtype="int64")
    emb = Embedding(5, 2, mask_zero=True, weights=np.arange(10, dtype="float32").reshape(5, 2))
    pool = MaskedMean()
    model = lamina.Model(inputs, pool(emb(inputs)))
    ids = np.array([[1, 2, 0, 0], [4, 0, 0, 0]])
    out = _np(model(torch.as_tensor(ids)))
    np.testing.assert_array_equal(_np(pool.seen_mask), ids != 0)
    np.testing.assert_allclose(out, [[3.0, 4.0], [8.0, 9.0]])  # means of rows 1, 2 and of row 4


def test_embedding_regularizer_adds_loss():
    layer = Embedding(3, 2, weights=np.ones((3, 2), "float32"), embeddings_regularizer=lamina.regularizers.L2(0.5))
    layer(torch.tensor([[0]]))
    assert [float(l.detach()) for l in layer.losses] == [pytest.approx(3.0)]


def test_embedding_config_matches_keras(keras):
    ours = Embedding(9, 4, mask_zero=True, embeddings_initializer="ones", name="e").get_config()
    theirs = keras.layers.Embedding(9, 4, mask_zero=True, embeddings_initializer="ones", name="e").get_config()
    assert set(ours) == set(theirs) - KERAS_ONLY_KEYS
    for key in ("input_dim", "output_dim", "mask_zero", "embeddings_regularizer", "embeddings_constraint",
                "activity_regularizer"):
        assert ours[key] == theirs[key]
    assert ours["embeddings_initializer"]["class_name"] == theirs["embeddings_initializer"]["class_name"]


def test_embedding_trains_in_sequential_model():
    model = lamina.Sequential([lamina.Input((3,), dtype="int64"), Embedding(8, 4), lamina.layers.Flatten(),
                               Dense(1)])
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).integers(0, 8, size=(16, 3))
    y = np.random.default_rng(1).normal(size=(16, 1)).astype("float32")
    before = model.get_weights()[0]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, model.get_weights()[0])


# ---------------------------------------------------------------- Rescaling
@pytest.mark.parametrize("scale,offset", [(1 / 255, 0.0), (1 / 127.5, -1), (2.0, 0.5),
                                          (np.array([1.0, 0.5, 0.25]), np.array([0.0, 1.0, -1.0]))])
def test_rescaling_matches_keras(keras, scale, offset):
    x = np.random.default_rng(0).integers(0, 256, size=(2, 4, 4, 3)).astype("uint8")
    out = _np(Rescaling(scale, offset)(torch.as_tensor(x)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x.astype("float32") * np.float32(scale) + np.float32(offset), rtol=1e-6)
    reference = keras.ops.convert_to_numpy(keras.layers.Rescaling(scale, offset)(x))
    np.testing.assert_allclose(out, reference, rtol=1e-6, atol=1e-6)


def test_rescaling_channels_first_scale(keras):
    lamina.config.set_image_data_format("channels_first")
    keras.config.set_image_data_format("channels_first")
    try:
        x = np.random.default_rng(1).normal(size=(2, 3, 2, 2)).astype("float32")
        scale = np.array([1.0, 2.0, 3.0])
        out = _np(Rescaling(scale)(x))
        reference = keras.ops.convert_to_numpy(keras.layers.Rescaling(scale)(x))
    finally:
        keras.config.set_image_data_format("channels_last")
    np.testing.assert_allclose(out, x * scale.reshape(3, 1, 1), rtol=1e-6)
    np.testing.assert_allclose(out, reference, rtol=1e-6)


def test_rescaling_config_matches_keras_and_round_trips(keras):
    layer = Rescaling(0.5, offset=-1.0, name="r")
    theirs = keras.layers.Rescaling(0.5, offset=-1.0, name="r").get_config()
    assert set(layer.get_config()) == set(theirs)
    assert (layer.get_config()["scale"], layer.get_config()["offset"]) == (theirs["scale"], theirs["offset"])
    array_layer = Rescaling(np.array([1.0, 2.0]))
    clone = registry.get("layer", registry.serialize("layer", array_layer))
    assert clone.get_config()["scale"] == [1.0, 2.0]
    np.testing.assert_array_equal(_np(clone(torch.ones(1, 2))), [[1.0, 2.0]])
    # Keras's serialized numpy scale loads too.
    keras_array = keras.layers.Rescaling(np.array([1.0, 2.0])).get_config()["scale"]
    np.testing.assert_array_equal(_np(Rescaling(keras_array)(torch.ones(1, 2))), [[1.0, 2.0]])


def test_rescaling_keeps_mask_and_shape():
    x = torch.ones(1, 2, 3)
    x._keras_mask = torch.tensor([[True, False]])
    out = Rescaling(2.0)(x)
    assert out._keras_mask.tolist() == [[True, False]]
    assert Rescaling(2.0).compute_output_shape((None, 2, 3)) == (None, 2, 3)


# ---------------------------------------------------------------- Identity
def test_identity_returns_input_and_keeps_mask(keras):
    x = torch.randn(2, 3)
    x._keras_mask = torch.tensor([True, False])
    out = Identity()(x)
    assert torch.equal(out, x) and out._keras_mask.tolist() == [True, False]
    assert Identity().compute_output_shape((None, 3)) == keras.layers.Identity().compute_output_shape((None, 3))
    assert set(Identity(name="i").get_config()) == set(keras.layers.Identity(name="i").get_config())


def test_identity_passes_through_structures():
    a, b = torch.ones(1), torch.zeros(1)
    assert Identity()([a, b]) == [a, b]


# ---------------------------------------------------------------- Masking
@pytest.mark.parametrize("mask_value", [0.0, -1.0])
def test_masking_matches_keras(keras, mask_value):
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    x[0, 1] = mask_value
    x[1, [0, 4]] = mask_value
    x[1, 2, 0] = mask_value  # a single matching feature does not mask the timestep
    out = Masking(mask_value)(torch.as_tensor(x))
    theirs = keras.layers.Masking(mask_value)(keras.ops.convert_to_tensor(x))
    np.testing.assert_array_equal(_np(out), keras.ops.convert_to_numpy(theirs))
    np.testing.assert_array_equal(_mask(out), _mask(theirs))
    expected_mask = np.array([[1, 0, 1, 1, 1], [0, 1, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(_mask(out), expected_mask)
    np.testing.assert_array_equal(_np(out)[~expected_mask], 0.0)


def test_masking_mask_reaches_downstream_layers():
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]]])
    pool = MaskedMean()
    out = pool(Dense(2, kernel_initializer="identity")(Masking()(x)))
    assert pool.seen_mask.tolist() == [[True, False, True]]
    np.testing.assert_allclose(_np(out), [[2.0, 3.0]])


def test_masking_config_matches_keras(keras):
    ours, theirs = Masking(2.5, name="m").get_config(), keras.layers.Masking(2.5, name="m").get_config()
    assert set(ours) == set(theirs) and ours["mask_value"] == theirs["mask_value"]
    assert registry.get("layer", registry.serialize("layer", Masking(2.5))).mask_value == 2.5


# ---------------------------------------------------------------- Lambda
def test_lambda_matches_keras(keras):
    x = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    ours = _np(Lambda(square_plus, arguments={"shift": 1.5})(torch.as_tensor(x)))
    theirs = keras.ops.convert_to_numpy(keras.layers.Lambda(square_plus, arguments={"shift": 1.5})(x))
    np.testing.assert_allclose(ours, x * x + 1.5, atol=1e-6)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_lambda_passes_mask_and_training_when_function_asks():
    seen = {}

    def fn(x, mask=None, training=None):
        seen.update(mask=mask, training=training)
        return x

    x = torch.ones(1, 2, 3)
    x._keras_mask = torch.tensor([[True, False]])
    Lambda(fn)(x, training=True)
    assert seen["mask"].tolist() == [[True, False]] and seen["training"] is True


@pytest.mark.parametrize("output_shape", [None, (3,), drop_last_axis_shape])
def test_lambda_compute_output_shape_matches_keras(keras, output_shape):
    def fn(x):
        return x[..., 0]

    ours = Lambda(fn, output_shape=output_shape).compute_output_shape((None, 3, 4))
    theirs = keras.layers.Lambda(fn, output_shape=output_shape).compute_output_shape((None, 3, 4))
    assert ours == tuple(theirs) == (None, 3)


def test_lambda_symbolic_call_and_functional_model():
    inputs = lamina.Input((4,))
    out = Lambda(square_plus)(inputs)
    assert out.shape == (None, 4)
    model = lamina.Model(inputs, out)
    np.testing.assert_allclose(_np(model(torch.full((2, 4), 3.0))), 9.0)


def test_lambda_mask_argument_callable_and_fixed():
    x = torch.tensor([[[1.0], [-1.0]]])
    assert Lambda(lambda t: t * 1, mask=first_feature_mask)(x)._keras_mask.tolist() == [[True, False]]
    fixed = torch.tensor([[False, True]])
    assert Lambda(lambda t: t * 1, mask=fixed)(x)._keras_mask.tolist() == [[False, True]]
    x._keras_mask = torch.tensor([[True, True]])
    assert _mask(Lambda(lambda t: t * 1)(x)) is None  # no `mask` argument: the mask is dropped, as Keras


def test_lambda_config_stores_registered_name_only(keras):
    layer = Lambda(square_plus, output_shape=drop_last_axis_shape, mask=first_feature_mask,
                   arguments={"shift": 1.0}, name="lam")
    config = layer.get_config()
    assert config["function"] == "TestMisc>square_plus"
    assert config["output_shape"] == "TestMisc>drop_last_axis_shape"
    assert config["mask"] == "TestMisc>first_feature_mask"
    assert config["arguments"] == {"shift": 1.0}
    theirs = keras.layers.Lambda(square_plus, output_shape=drop_last_axis_shape, mask=first_feature_mask,
                                 arguments={"shift": 1.0}, name="lam").get_config()
    assert set(config) == set(theirs)
    assert set(Lambda(square_plus).get_config()) == set(keras.layers.Lambda(square_plus).get_config())


def test_lambda_config_refuses_python_lambda():
    with pytest.raises(ValueError, match="register_serializable"):
        Lambda(lambda x: x + 1, name="anon").get_config()


def test_lambda_config_saves_unregistered_def_by_name_for_custom_objects(unsafe):
    def local_triple(x):
        return 3 * x

    config = Lambda(local_triple).get_config()
    assert config["function"] == "local_triple"
    with pytest.raises(ValueError, match="custom_objects"):
        Lambda.from_config(config)
    assert Lambda.from_config(config, custom_objects={"local_triple": local_triple}).function is local_triple


def test_lambda_from_config_refused_in_safe_mode():
    config = Lambda(square_plus).get_config()
    assert getattr(layer_base, "_SAFE_MODE", True) is True
    with pytest.raises(ValueError, match="safe_mode=False"):
        Lambda.from_config(config)
    with pytest.raises(ValueError, match="safe_mode=False"):
        registry.get("layer", {"class_name": "Lambda", "config": config})


def test_lambda_from_config_resolves_registered_function_when_unsafe(unsafe):
    layer = Lambda(square_plus, output_shape=(4,), arguments={"shift": 2.0})
    clone = registry.get("layer", registry.serialize("layer", layer))
    assert clone.function is square_plus and clone.get_config() == layer.get_config()
    np.testing.assert_allclose(_np(clone(torch.full((1, 4), 2.0))), 6.0)
    explicit = Lambda.from_config(layer.get_config(), safe_mode=False)
    assert explicit.function is square_plus


def test_lambda_from_config_uses_custom_objects_and_rejects_unknown_names(unsafe):
    def local_double(x):
        return 2 * x

    config = {"name": "lam", "function": "local_double", "arguments": {}}
    assert Lambda.from_config(config, custom_objects={"local_double": local_double}).function is local_double
    with pytest.raises(ValueError, match="not registered"):
        Lambda.from_config(config)


def test_lambda_from_keras_configs(keras, unsafe):
    registered = keras.layers.Lambda(square_plus).get_config()
    registered["function"]["registered_name"] = "TestMisc>square_plus"
    assert Lambda.from_config(registered).function is square_plus
    by_name = keras.layers.Lambda(square_plus).get_config()  # {"class_name": "function", "config": "square_plus"}
    assert Lambda.from_config(by_name).function is square_plus
    bytecode = keras.layers.Lambda(lambda x: x + 1).get_config()
    with pytest.raises(ValueError, match="bytecode"):
        Lambda.from_config(bytecode)


def test_load_model_with_lambda_needs_safe_mode_false(tmp_path):
    model = lamina.Sequential([lamina.Input((3,)), Lambda(square_plus, arguments={"shift": 1.0}), Dense(2)])
    path = tmp_path / "lambda.lamina"
    model.save(path)
    with pytest.raises(ValueError, match="safe_mode=False"):
        lamina.saving.load_model(path)
    loaded = lamina.saving.load_model(path, safe_mode=False)
    x = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), atol=1e-6)
    assert getattr(layer_base, "_SAFE_MODE", True) is True


# ---------------------------------------------------------------- round trip
@pytest.mark.parametrize("layer", [Embedding(5, 2, mask_zero=True, embeddings_regularizer="l2"),
                                   Rescaling(0.5, 1.0), Identity(), Masking(-1.0)],
                         ids=lambda l: type(l).__name__)
def test_misc_config_round_trip(layer):
    clone = registry.get("layer", registry.serialize("layer", layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
