"""Tests for lamina.layers.attention (MultiHeadAttention, Attention, AdditiveAttention) against
Keras 3 with the same weights, against closed forms, and inside a functional model that trains."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lamina
from lamina import registry
from lamina.layers import Dense, Flatten
from lamina.layers.attention import AdditiveAttention, Attention, MultiHeadAttention
from lamina.models.functional import Functional

# Keras-only config keys lamina does not write: none for these layers. Keras's dtype is a
# DTypePolicy dict where lamina writes the name.
TOL = dict(rtol=1e-5, atol=2e-6)


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _k(keras, x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _mha_pair(keras, query_shape, value_shape, key_shape=None, seed=0, **kwargs):
    """A Keras and a lamina MultiHeadAttention built for the shapes, holding the same random weights."""
    reference = keras.layers.MultiHeadAttention(**kwargs)
    layer = MultiHeadAttention(**kwargs)
    shapes = (query_shape, value_shape) + (() if key_shape is None else (key_shape,))
    reference.build(*shapes)
    layer.build(*shapes)
    rng = np.random.default_rng(seed)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return layer, reference


def _call_both(keras, layer, reference, query, value, key=None, **kwargs):
    """Call both layers on fresh tensors (Keras strips the inputs' masks), with numpy masks."""
    theirs = reference(query, value, key=key, **kwargs)
    ours = layer(torch.tensor(query), torch.tensor(value), key=None if key is None else torch.tensor(key), **kwargs)
    if isinstance(theirs, tuple):
        return [_np(o) for o in ours], [_k(keras, t) for t in theirs]
    return _np(ours), _k(keras, theirs)


# ---------------------------------------------------------------- MultiHeadAttention: numbers
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("case", [
    dict(kwargs=dict(num_heads=2, key_dim=3), shapes=((2, 5, 6), (2, 5, 6))),
    dict(kwargs=dict(num_heads=3, key_dim=4, value_dim=2), shapes=((2, 5, 6), (2, 4, 7))),
    dict(kwargs=dict(num_heads=2, key_dim=3, value_dim=5), shapes=((2, 5, 6), (2, 4, 7), (2, 4, 3))),
    dict(kwargs=dict(num_heads=2, key_dim=3, use_bias=False), shapes=((3, 4, 6), (3, 6, 6))),
    dict(kwargs=dict(num_heads=2, key_dim=3, output_shape=(2, 3)), shapes=((2, 5, 6), (2, 4, 6))),
    dict(kwargs=dict(num_heads=2, key_dim=3, output_shape=7), shapes=((2, 5, 6), (2, 4, 6))),
    dict(kwargs=dict(num_heads=2, key_dim=3, use_gate=True), shapes=((2, 5, 6), (2, 4, 6))),
], ids=["self", "cross", "cross_key", "no_bias", "output_shape", "output_int", "gate"])
def test_multi_head_attention_matches_keras(keras, case, scores):
    shapes = case["shapes"]
    layer, reference = _mha_pair(keras, *shapes, **case["kwargs"])
    query, value = _random(shapes[0], 1), _random(shapes[1], 2)
    key = _random(shapes[2], 3) if len(shapes) > 2 else None
    ours, theirs = _call_both(keras, layer, reference, query, value, key, return_attention_scores=scores)
    if scores:
        assert ours[1].shape == theirs[1].shape == (shapes[0][0], case["kwargs"]["num_heads"], shapes[0][1],
                                                    shapes[1][1])
        np.testing.assert_allclose(ours[1], theirs[1], **TOL)
        ours, theirs = ours[0], theirs[0]
    np.testing.assert_allclose(ours, theirs, **TOL)


def test_multi_head_attention_matches_closed_form():
    layer = MultiHeadAttention(num_heads=1, key_dim=2, kernel_initializer="zeros")
    layer.build((None, 2, 2), (None, 3, 2))
    eye = np.eye(2, dtype="float32").reshape(2, 1, 2)
    zeros = np.zeros((1, 2), "float32")
    # Identity projections: output = softmax(q k^T / sqrt(2)) v.
    layer.set_weights([eye, zeros, eye, zeros, eye, zeros, eye.reshape(1, 2, 2), np.zeros(2, "float32")])
    query = np.array([[[1.0, 0.0], [0.0, 2.0]]], "float32")
    value = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], "float32")
    logits = query[0] @ value[0].T / np.sqrt(2.0)
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    output, scores = layer(query, value, return_attention_scores=True)
    np.testing.assert_allclose(_np(scores)[0, 0], weights, atol=1e-6)
    np.testing.assert_allclose(_np(output)[0], weights @ value[0], atol=1e-6)
    np.testing.assert_allclose(_np(layer(query, value)), _np(output), atol=1e-6)


@pytest.mark.parametrize("scores", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("lengths", [(5, 5), (5, 3), (3, 5)])
def test_multi_head_attention_causal_mask_matches_keras(keras, lengths, scores):
    layer, reference = _mha_pair(keras, (2, lengths[0], 6), (2, lengths[1], 6), num_heads=2, key_dim=3)
    query, value = _random((2, lengths[0], 6), 1), _random((2, lengths[1], 6), 2)
    ours, theirs = _call_both(keras, layer, reference, query, value, use_causal_mask=True,
                              return_attention_scores=scores)
    if scores:
        upper = np.triu(np.ones(lengths, bool), k=1)
        assert np.all(ours[1][:, :, upper] == 0)
        np.testing.assert_allclose(ours[1], theirs[1], **TOL)
        ours, theirs = ours[0], theirs[0]
    np.testing.assert_allclose(ours, theirs, **TOL)


@pytest.mark.parametrize("scores", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("mask_rank", [2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_attention_mask_matches_keras(keras, mask_rank, causal, scores):
    layer, reference = _mha_pair(keras, (2, 4, 6), (2, 5, 6), num_heads=2, key_dim=3)
    query, value = _random((2, 4, 6), 1), _random((2, 5, 6), 2)
    shape = {2: (4, 5), 3: (2, 4, 5), 4: (2, 2, 4, 5)}[mask_rank]
    mask = np.random.default_rng(3).random(shape) > 0.4
    mask[..., 0, :] = False  # a fully masked query row: Keras averages (fused) or zeroes (explicit) it
    ours, theirs = _call_both(keras, layer, reference, query, value, attention_mask=mask, use_causal_mask=causal,
                              return_attention_scores=scores)
    if scores:
        np.testing.assert_allclose(ours[1], theirs[1], **TOL)
        ours, theirs = ours[0], theirs[0]
    np.testing.assert_allclose(ours, theirs, **TOL)


def test_multi_head_attention_fully_masked_rows_follow_keras_paths():
    layer = MultiHeadAttention(num_heads=1, key_dim=2, bias_initializer="ones")
    query, value = torch.randn(1, 2, 3), torch.randn(1, 4, 3)
    layer.build(tuple(query.shape), tuple(value.shape))
    weights = layer.get_weights()
    weights[0][:], weights[1][:] = 0.0, 0.0  # a zero query projection: every score is 0
    layer.set_weights(weights)
    mask = torch.tensor([[[False] * 4, [True] * 4]])
    fused = layer(query, value, attention_mask=mask)
    explicit, scores = layer(query, value, attention_mask=mask, return_attention_scores=True)
    assert torch.all(scores[0, 0, 0] == 0)
    # Explicit softmax zeroes the row, so the output is the output bias; the fused path
    # (Keras's additive -0.7 * max mask) averages all values, like the unmasked equal scores.
    torch.testing.assert_close(explicit[0, 0], torch.ones(3))
    torch.testing.assert_close(fused[0, 0], layer(query, value)[0, 0])
    assert not torch.allclose(fused[0, 0], torch.ones(3))
    torch.testing.assert_close(fused[0, 1], explicit[0, 1])


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("with_key", [False, True])
def test_multi_head_attention_masks_from_arguments_match_keras(keras, with_key, scores):
    layer, reference = _mha_pair(keras, (2, 4, 6), (2, 5, 6), (2, 5, 6), num_heads=2, key_dim=3)
    query, value, key = _random((2, 4, 6), 1), _random((2, 5, 6), 2), _random((2, 5, 6), 3)
    value_mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]], bool)
    key_mask = np.array([[1, 0, 1, 1, 1], [1, 1, 1, 1, 0]], bool) if with_key else None
    ours, theirs = _call_both(keras, layer, reference, query, value, key if with_key else None,
                              value_mask=value_mask, key_mask=key_mask, return_attention_scores=scores)
    for o, t in zip(ours if scores else [ours], theirs if scores else [theirs]):
        np.testing.assert_allclose(o, t, **TOL)


def _masked_inputs(keras):
    query, value = _random((2, 4, 6), 1), _random((2, 5, 6), 2)
    query_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    value_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)

    def tensors():
        q, v = torch.tensor(query), torch.tensor(value)
        q._keras_mask, v._keras_mask = torch.tensor(query_mask), torch.tensor(value_mask)
        return q, v

    return tensors, query_mask, value_mask


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scores", [False, True])
def test_multi_head_attention_keras_masks_of_inputs_match_keras(keras, causal, scores):
    layer, reference = _mha_pair(keras, (2, 4, 6), (2, 5, 6), num_heads=2, key_dim=3)
    tensors, query_mask, value_mask = _masked_inputs(keras)
    theirs = reference(*tensors(), use_causal_mask=causal, return_attention_scores=scores)
    ours = layer(*tensors(), use_causal_mask=causal, return_attention_scores=scores)
    output = ours[0] if scores else ours
    for o, t in zip(ours if scores else [ours], theirs if scores else [theirs]):
        np.testing.assert_allclose(_np(o), _k(keras, t), **TOL)
    # The query's mask travels on the output, as Keras.
    np.testing.assert_array_equal(_np(output._keras_mask), query_mask)
    # The same numbers from the explicit combined mask.
    combined = query_mask[:, :, None] & value_mask[:, None, :]
    if causal:
        combined = combined & np.tril(np.ones((4, 5), bool))
    manual = layer(*(torch.tensor(t) for t in (_random((2, 4, 6), 1), _random((2, 5, 6), 2))),
                   attention_mask=combined, return_attention_scores=scores)
    np.testing.assert_allclose(_np(output), _np(manual[0] if scores else manual), **TOL)


def test_multi_head_attention_query_mask_argument_ignored_as_keras(keras):
    layer, reference = _mha_pair(keras, (2, 4, 6), (2, 5, 6), num_heads=2, key_dim=3)
    query, value = _random((2, 4, 6), 1), _random((2, 5, 6), 2)
    query_mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    theirs = _k(keras, reference(query, value, query_mask=query_mask))
    ours = _np(layer(query, value, query_mask=query_mask))
    np.testing.assert_allclose(ours, theirs, **TOL)
    np.testing.assert_allclose(ours, _np(layer(query, value)), **TOL)


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("axes", [None, (2,), (1, 2), (-2,)], ids=["default", "axis2", "axes12", "negative"])
def test_multi_head_attention_attention_axes_4d_match_keras(keras, axes, scores):
    layer, reference = _mha_pair(keras, (2, 3, 5, 6), (2, 3, 4, 6), num_heads=2, key_dim=3, attention_axes=axes)
    query, value = _random((2, 3, 5, 6), 1), _random((2, 3, 4, 6), 2)
    ours, theirs = _call_both(keras, layer, reference, query, value, return_attention_scores=scores)
    if scores:
        assert ours[1].shape == theirs[1].shape
    for o, t in zip(ours if scores else [ours], theirs if scores else [theirs]):
        np.testing.assert_allclose(o, t, **TOL)
    assert layer.get_config()["attention_axes"] == reference.get_config()["attention_axes"]


def test_multi_head_attention_sliding_window_matches_keras(keras):
    layer, reference = _mha_pair(keras, (1, 6, 8), (1, 6, 8), num_heads=2, key_dim=4, sliding_window=3)
    x = _random((1, 6, 8), 1)
    for causal in (False, True):
        ours, theirs = _call_both(keras, layer, reference, x, x, use_causal_mask=causal, return_attention_scores=True)
        band = np.abs(np.arange(6)[:, None] - np.arange(6)[None, :]) < 3
        if causal:
            band &= np.tril(np.ones((6, 6), bool))
        assert np.all(ours[1][0, :, ~band] == 0) and np.all(ours[1][0, :, band] > 0)
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(o, t, **TOL)


def test_multi_head_attention_uses_fused_kernel_when_maths_matches(monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    layer = MultiHeadAttention(num_heads=2, key_dim=3)
    x = torch.randn(2, 4, 6)
    layer(x, x, use_causal_mask=True)
    assert len(calls) == 1 and calls[0]["is_causal"] is True and calls[0]["attn_mask"] is None
    layer(x, x, attention_mask=torch.ones(4, 4, dtype=torch.bool))
    assert len(calls) == 2 and calls[1]["attn_mask"].shape == (1, 1, 4, 4)
    layer(x, x, return_attention_scores=True)
    assert len(calls) == 2
    # With dropout configured, Keras uses the explicit softmax whenever a row could be fully masked.
    dropped = MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.5)
    dropped(x, x)
    assert len(calls) == 3
    dropped(x, x, attention_mask=torch.ones(4, 4, dtype=torch.bool))
    assert len(calls) == 3


@pytest.mark.parametrize("flash", [True, False])
def test_multi_head_attention_flash_attention_setting_keeps_numbers(flash):
    x = torch.randn(2, 5, 8)
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    layer.build((2, 5, 8), (2, 5, 8))
    other = MultiHeadAttention(num_heads=2, key_dim=4, flash_attention=flash)
    other.build((2, 5, 8), (2, 5, 8))
    other.set_weights(layer.get_weights())
    for kwargs in (dict(use_causal_mask=True), dict(attention_mask=torch.ones(5, 5, dtype=torch.bool)), {}):
        torch.testing.assert_close(other(x, x, **kwargs), layer(x, x, **kwargs), rtol=1e-5, atol=1e-6)


def test_multi_head_attention_accepts_numpy_and_keyword_inputs(keras):
    layer, reference = _mha_pair(keras, (2, 4, 6), (2, 5, 6), num_heads=2, key_dim=3)
    query, value = _random((2, 4, 6), 1), _random((2, 5, 6), 2)
    theirs = _k(keras, reference(query=query, value=value))
    np.testing.assert_allclose(_np(layer(query=query, value=value)), theirs, **TOL)
    np.testing.assert_allclose(_np(layer(query, value.astype("float64"))), theirs, **TOL)


# ---------------------------------------------------------------- MultiHeadAttention: training mode
def test_multi_head_attention_dropout_statistics():
    layer = MultiHeadAttention(num_heads=1, key_dim=2, dropout=0.5)
    x = torch.randn(1, 100, 2)
    out, scores = layer(x, x, return_attention_scores=True)
    torch.testing.assert_close(layer(x, x), out)
    torch.testing.assert_close(layer(x, x, training=True, return_attention_scores=True)[1], scores)
    trained = [layer(x, x, training=True) for _ in range(3)]
    assert not torch.allclose(trained[0], trained[1])
    # Dropping probabilities keeps them unbiased: the mean over many draws approaches the output.
    mean = torch.stack([layer(x, x, training=True) for _ in range(100)]).mean(0)
    assert (mean - out).abs().mean() < 0.15 * out.abs().mean()


def test_multi_head_attention_seeded_dropout_is_reproducible():
    x = torch.randn(2, 6, 4)
    outputs = []
    for _ in range(2):
        layer = MultiHeadAttention(num_heads=2, key_dim=2, dropout=0.5, seed=7, kernel_initializer="ones")
        outputs.append([layer(x, x, training=True) for _ in range(2)])
    torch.testing.assert_close(outputs[0][0], outputs[1][0])
    torch.testing.assert_close(outputs[0][1], outputs[1][1])
    assert not torch.allclose(outputs[0][0], outputs[0][1])


# ---------------------------------------------------------------- MultiHeadAttention: weights, shapes, config
@pytest.mark.parametrize("kwargs", [dict(), dict(value_dim=5, use_gate=True), dict(use_bias=False),
                                    dict(output_shape=(2, 3))], ids=["default", "gate", "no_bias", "output_shape"])
def test_multi_head_attention_weights_match_keras_layout(keras, kwargs):
    layer = MultiHeadAttention(num_heads=2, key_dim=3, **kwargs)
    reference = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, **kwargs)
    layer.build((None, 4, 6), (None, 5, 7))
    reference.build((None, 4, 6), (None, 5, 7))
    assert [w.shape for w in layer.get_weights()] == [w.shape for w in reference.get_weights()]
    assert [w.path.split("/")[-2:] for w in layer.weights] == [w.path.split("/")[-2:] for w in reference.weights]
    assert layer.count_params() == reference.count_params()
    # The query kernel is stored (heads, key_dim, dim) so the projection is one F.linear.
    assert tuple(layer.query_dense.kernel.shape) == (2, 3, 6)
    np.testing.assert_array_equal(layer.query_dense.kernel.detach().numpy().transpose(2, 0, 1),
                                  layer.get_weights()[0])


def test_multi_head_attention_initializer_fans_match_einsum_dense():
    layer = MultiHeadAttention(num_heads=4, key_dim=16)
    layer.build((None, 3, 64), (None, 3, 64))
    query_kernel, _, _, _, _, _, output_kernel, _ = layer.get_weights()
    # Keras's EinsumDense: fan_in = 64, fan_out = heads * key_dim = 64, so limit = sqrt(6 / 128).
    limit = np.sqrt(6.0 / 128)
    for kernel in (query_kernel, output_kernel):
        assert limit * 0.95 < np.abs(kernel).max() <= limit
    assert not np.allclose(layer.get_weights()[0], layer.get_weights()[2])


@pytest.mark.parametrize("kwargs", [dict(), dict(output_shape=(2, 3)), dict(attention_axes=2)])
def test_multi_head_attention_compute_output_shape_matches_keras(keras, kwargs):
    query_shape, value_shape = (None, 3, 4, 6), (None, 3, 5, 7)
    layer = MultiHeadAttention(num_heads=2, key_dim=3, **kwargs)
    reference = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, **kwargs)
    assert layer.compute_output_shape(query_shape, value_shape) == tuple(
        reference.compute_output_shape(query_shape, value_shape))
    out = layer(torch.zeros(2, 3, 4, 6), torch.zeros(2, 3, 5, 7))
    assert tuple(out.shape) == (2,) + layer.compute_output_shape(query_shape, value_shape)[1:]


def test_multi_head_attention_get_config_matches_keras(keras):
    kwargs = dict(num_heads=2, key_dim=3, value_dim=4, dropout=0.25, use_bias=False, output_shape=(5,),
                  attention_axes=(1,), sliding_window=2, kernel_initializer="he_normal",
                  kernel_regularizer="l2", bias_constraint="non_neg", seed=3)
    layer, reference = MultiHeadAttention(**kwargs), keras.layers.MultiHeadAttention(**kwargs)
    ours, theirs = layer.get_config(), reference.get_config()
    assert set(ours) == set(theirs)
    for key in ("num_heads", "key_dim", "value_dim", "dropout", "use_bias", "use_gate", "output_shape",
                "attention_axes", "sliding_window", "seed"):
        assert ours[key] == theirs[key], key
    for key in ("kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_constraint"):
        assert ours[key]["class_name"] == theirs[key]["class_name"], key
    assert ours["dtype"] == "float32" and ours["activity_regularizer"] is None
    # value_dim defaults to key_dim, attention_axes is normalised on build: both as Keras.
    plain, plain_keras = MultiHeadAttention(2, 3), keras.layers.MultiHeadAttention(2, 3)
    assert plain.get_config()["value_dim"] == plain_keras.get_config()["value_dim"] == 3
    plain.build((None, 4, 6), (None, 4, 6))
    plain_keras.build((None, 4, 6), (None, 4, 6))
    assert plain.get_config()["attention_axes"] == tuple(plain_keras.get_config()["attention_axes"]) == (1,)


def test_multi_head_attention_loads_keras_config(keras):
    reference = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, output_shape=4, kernel_initializer="ones")
    reference.build((None, 4, 6), (None, 4, 6))
    layer = MultiHeadAttention.from_config(reference.get_config())
    layer.build((None, 4, 6), (None, 4, 6))
    layer.set_weights(reference.get_weights())
    x = _random((2, 4, 6), 1)
    np.testing.assert_allclose(_np(layer(x, x)), _k(keras, reference(x, x)), **TOL)


@pytest.mark.parametrize("layer", [
    MultiHeadAttention(2, 3, value_dim=4, dropout=0.1, output_shape=(2, 3), attention_axes=(1,), seed=1,
                       kernel_regularizer="l1", activity_regularizer="l2", kernel_constraint="non_neg"),
    Attention(use_scale=True, score_mode="concat", dropout=0.2, seed=3),
    AdditiveAttention(use_scale=False, dropout=0.1),
], ids=["mha", "attention", "additive"])
def test_attention_layers_config_round_trip(layer):
    config = json.loads(json.dumps(registry.serialize("layer", layer)))
    rebuilt = registry.get("layer", config)
    assert type(rebuilt) is type(layer)
    assert json.loads(json.dumps(rebuilt.get_config())) == config["config"]


def test_multi_head_attention_regularization_losses_match_keras(keras):
    kwargs = dict(num_heads=2, key_dim=3, kernel_regularizer="l2", bias_regularizer="l1",
                  activity_regularizer="l2", bias_initializer="ones")
    layer, reference = _mha_pair(keras, (2, 4, 6), (2, 5, 6), **kwargs)
    query, value = _random((2, 4, 6), 1), _random((2, 5, 6), 2)
    reference(query, value)
    layer(query, value)
    assert len(layer.losses) == len(reference.losses) == 12
    theirs = sum(float(_k(keras, loss)) for loss in reference.losses)
    assert float(sum(layer.losses).detach()) == pytest.approx(theirs, rel=1e-5)


def test_multi_head_attention_constraints_apply_to_kernels():
    layer = MultiHeadAttention(num_heads=2, key_dim=3, kernel_constraint="non_neg")
    layer.build((None, 4, 6), (None, 4, 6))
    layer._apply_constraints()
    kernels = layer.get_weights()[0::2]
    assert all(k.min() >= 0 for k in kernels) and any(k.max() > 0 for k in kernels)


def test_multi_head_attention_state_dict_and_trainable():
    layer = MultiHeadAttention(num_heads=2, key_dim=3)
    layer.build((None, 4, 6), (None, 4, 6))
    assert list(layer.state_dict()) == [f"_{p}_dense.{w}" for p in ("query", "key", "value", "output")
                                        for w in ("kernel", "bias")]
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 8


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_heads=0, key_dim=2), "num_heads"),
    (dict(num_heads=2, key_dim=2.5), "key_dim"),
    (dict(num_heads=2, key_dim=2, value_dim=-1), "value_dim"),
    (dict(num_heads=2, key_dim=2, attention_axes="1"), "attention_axes"),
    (dict(num_heads=2, key_dim=2, sliding_window=0), "sliding_window"),
    (dict(num_heads=2, key_dim=2, dropout=0.1, flash_attention=True), "flash"),
    (dict(num_heads=2, key_dim=2, output_shape="x"), "output_shape"),
])
def test_multi_head_attention_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_multi_head_attention_rejects_bad_shapes_and_flash_scores():
    layer = MultiHeadAttention(num_heads=2, key_dim=2)
    with pytest.raises(ValueError, match="value_shape"):
        layer.build((None, 4, 6), (None, 5, 6), (None, 3, 6))
    with pytest.raises(ValueError, match="at least 3 axes"):
        MultiHeadAttention(2, 2)(torch.zeros(2, 6), torch.zeros(2, 6))
    flash = MultiHeadAttention(num_heads=2, key_dim=2, flash_attention=True)
    with pytest.raises(ValueError, match="flash attention"):
        flash(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), return_attention_scores=True)


# ---------------------------------------------------------------- MultiHeadAttention: in a model
def test_multi_head_attention_symbolic_shapes():
    query, value = lamina.Input((5, 6)), lamina.Input((4, 7))
    output, scores = MultiHeadAttention(2, 3)(query, value, return_attention_scores=True)
    assert output.shape == (None, 5, 6) and scores.shape == (None, 2, 5, 4)
    assert MultiHeadAttention(2, 3, output_shape=8)(query=query, value=value, key=value).shape == (None, 5, 8)
    attended, weights = Attention()([query, lamina.Input((4, 6))], return_attention_scores=True)
    assert attended.shape == (None, 5, 6) and weights.shape == (None, 5, 4)
    assert AdditiveAttention()(inputs=[query, query]).shape == (None, 5, 6)


def test_multi_head_attention_functional_model_trains():
    query, value = lamina.Input((5, 6)), lamina.Input((4, 7))
    attended = MultiHeadAttention(num_heads=2, key_dim=3)(query, value)
    decoded = MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.1)(attended, attended, use_causal_mask=True)
    outputs = Dense(1)(Flatten()(Attention()([decoded, attended])))
    model = lamina.Model([query, value], outputs)
    # query/output kernels (6, 2, 3) / (2, 3, 6), key/value kernels (7 or 6, 2, 3), biases 6 each; Dense 30 + 1.
    assert model.count_params() == (36 + 2 * 42 + 36 + 4 * 6) + 4 * (36 + 6) + 31
    rng = np.random.default_rng(0)
    x, v, y = rng.normal(size=(16, 5, 6)), rng.normal(size=(16, 4, 7)), rng.normal(size=(16, 1))
    x, v, y = x.astype("float32"), v.astype("float32"), y.astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    history = model.fit([x, v], y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    changed = [not np.allclose(a, b) for a, b in zip(before, model.get_weights())]
    # Every weight trains except the key biases: q.(k + b) shifts all of a query's scores
    # equally, so softmax gives them a zero gradient (as in any multi-head attention).
    assert [i for i, c in enumerate(changed) if not c] == [3, 11]
    rebuilt = Functional.from_config(json.loads(json.dumps(model.get_config())))
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(_np(rebuilt([x, v])), _np(model([x, v])), atol=1e-6)


# ---------------------------------------------------------------- Attention / AdditiveAttention
ATTENTION_CASES = [
    ("Attention", dict()),
    ("Attention", dict(use_scale=True)),
    ("Attention", dict(score_mode="concat")),
    ("Attention", dict(use_scale=True, score_mode="concat")),
    ("AdditiveAttention", dict()),
    ("AdditiveAttention", dict(use_scale=False)),
]


def _attention_pair(keras, name, kwargs, shapes, seed=0):
    layer = {"Attention": Attention, "AdditiveAttention": AdditiveAttention}[name](**kwargs)
    reference = getattr(keras.layers, name)(**kwargs)
    layer.build(list(shapes))
    reference.build(list(shapes))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return layer, reference


@pytest.mark.parametrize("with_key", [False, True])
@pytest.mark.parametrize("name, kwargs", ATTENTION_CASES)
def test_attention_matches_keras(keras, name, kwargs, with_key):
    shapes = [(2, 3, 4), (2, 5, 4)] + ([(2, 5, 4)] if with_key else [])
    layer, reference = _attention_pair(keras, name, kwargs, shapes)
    inputs = [_random(s, i) for i, s in enumerate(shapes)]
    query_mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    value_mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)
    for call in (dict(), dict(mask=[query_mask, value_mask]), dict(use_causal_mask=True),
                 dict(mask=[None, value_mask], use_causal_mask=True)):
        theirs = reference(inputs, return_attention_scores=True, **call)
        ours = layer([torch.tensor(x) for x in inputs], return_attention_scores=True, **call)
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(_np(o), _k(keras, t), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(layer([torch.tensor(x) for x in inputs], **call)), _np(ours[0]))


@pytest.mark.parametrize("name, kwargs", ATTENTION_CASES[:1] + ATTENTION_CASES[4:5])
def test_attention_masks_from_inputs_match_keras(keras, name, kwargs):
    shapes = [(2, 3, 4), (2, 5, 4)]
    layer, reference = _attention_pair(keras, name, kwargs, shapes)
    arrays = [_random(s, i) for i, s in enumerate(shapes)]
    masks = [np.array([[1, 1, 0], [1, 0, 1]], bool), np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0]], bool)]

    def tensors():
        out = [torch.tensor(a) for a in arrays]
        for t, m in zip(out, masks):
            t._keras_mask = torch.tensor(m)
        return out

    theirs = reference(tensors())
    ours = layer(tensors())
    np.testing.assert_allclose(_np(ours), _k(keras, theirs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_np(ours._keras_mask), masks[0])
    np.testing.assert_allclose(_np(ours), _np(layer([torch.tensor(a) for a in arrays], mask=masks)))


def test_attention_matches_closed_form():
    layer = Attention(use_scale=True)
    layer.build([(None, 1, 2), (None, 2, 2)])
    layer.set_weights([np.array(2.0, "float32")])
    query = torch.tensor([[[1.0, 0.0]]])
    value = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    output, scores = layer([query, value], return_attention_scores=True)
    weights = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    np.testing.assert_allclose(_np(scores)[0, 0], weights, atol=1e-6)
    np.testing.assert_allclose(_np(output)[0, 0], weights @ _np(value)[0], atol=1e-6)
    additive = AdditiveAttention(use_scale=False)
    _, additive_scores = additive([query, value], return_attention_scores=True)
    logits = np.tanh(_np(query)[0, 0] + _np(value)[0]).sum(-1)
    np.testing.assert_allclose(_np(additive_scores)[0, 0], np.exp(logits) / np.exp(logits).sum(), atol=1e-6)


@pytest.mark.parametrize("name, kwargs", ATTENTION_CASES)
def test_attention_weights_shapes_and_config_match_keras(keras, name, kwargs):
    shapes = [(None, 3, 4), (None, 5, 4)]
    layer = {"Attention": Attention, "AdditiveAttention": AdditiveAttention}[name](**kwargs)
    reference = getattr(keras.layers, name)(**kwargs)
    layer.build(shapes)
    reference.build(shapes)
    assert [w.shape for w in layer.get_weights()] == [w.shape for w in reference.get_weights()]
    ours, theirs = layer.get_config(), reference.get_config()
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours.items() if k not in ("name", "dtype")} == {
        k: v for k, v in theirs.items() if k not in ("name", "dtype")}
    assert layer.compute_output_shape([(None, 3, 4), (None, 5, 7)]) == tuple(
        reference.compute_output_shape([(None, 3, 4), (None, 5, 7)]))


def test_additive_attention_scale_initializer_is_glorot():
    layer = AdditiveAttention()
    layer.build([(None, 3, 600), (None, 5, 600)])
    scale = layer.get_weights()[0]
    limit = np.sqrt(6.0 / 1200)
    assert scale.shape == (600,) and 0.9 * limit < np.abs(scale).max() <= limit


def test_attention_dropout_only_in_training():
    layer = Attention(dropout=0.5)
    query, value = torch.randn(2, 50, 4), torch.randn(2, 60, 4)
    torch.testing.assert_close(layer([query, value]), Attention()([query, value]))
    _, scores = layer([query, value], return_attention_scores=True, training=True)
    torch.testing.assert_close(scores.sum(-1), torch.ones(2, 50))
    seeded = [Attention(dropout=0.5, seed=4)([query, value], training=True) for _ in range(2)]
    torch.testing.assert_close(seeded[0], seeded[1])
    assert not torch.allclose(seeded[0], layer([query, value]))


@pytest.mark.parametrize("inputs, mask, match", [
    (torch.zeros(2, 3, 4), None, "list of inputs"),
    ([torch.zeros(2, 3, 4)], None, "length 2 or 3"),
    ([torch.zeros(2, 3, 4)] * 2, torch.ones(2, 3), "mask must be a list"),
    ([torch.zeros(2, 3, 4)] * 2, [None], "mask list of length"),
])
def test_attention_rejects_bad_inputs(inputs, mask, match):
    with pytest.raises(ValueError, match=match):
        Attention()(inputs, mask=mask)


def test_attention_rejects_bad_score_mode():
    with pytest.raises(ValueError, match="score_mode"):
        Attention(score_mode="cosine")
