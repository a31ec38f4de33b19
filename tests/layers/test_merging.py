"""Tests for lamina.layers.merging against closed forms and Keras 3 (values, shapes, masks, configs)."""

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers import Dense
from lamina.layers.merging import (
    Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract,
    add, average, concatenate, dot, maximum, minimum, multiply, subtract,
)
from lamina.layers.misc import Embedding

ELEMENTWISE = [Add, Subtract, Multiply, Average, Maximum, Minimum]
FUNCTIONS = {"add": (add, Add), "subtract": (subtract, Subtract), "multiply": (multiply, Multiply),
             "average": (average, Average), "maximum": (maximum, Maximum), "minimum": (minimum, Minimum)}

# Shape lists Keras accepts: equal shapes, size-1 broadcasting, lower-rank inputs.
BROADCAST_CASES = [
    [(2, 3, 4), (2, 3, 4)],
    [(2, 3, 4), (2, 3, 4), (2, 3, 4)],
    [(2, 3, 4), (2, 1, 4)],
    [(2, 3, 1), (2, 1, 4)],
    [(2, 3, 4), (2, 4)],
    [(2, 5), (2, 3, 5)],
    [(2, 3, 4), (2,)],
    [(2, 3, 4), (2, 1), (2, 3, 1)],
    [(2, 6), (2, 6)],
]


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _random(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype("float32") for s in shapes]


def _keras_out(keras, layer, xs):
    return np.asarray(keras.ops.convert_to_numpy(layer([keras.ops.convert_to_tensor(x) for x in xs])))


def _none_batch(shapes):
    return [(None,) + tuple(s[1:]) for s in shapes]


# ---------------------------------------------------------------- elementwise: numbers
def test_add_matches_closed_form():
    x, y, z = _random([(2, 3), (2, 3), (2, 3)])
    np.testing.assert_allclose(_np(Add()([x, y, z])), x + y + z, atol=1e-6)


def test_subtract_average_maximum_minimum_multiply_closed_forms():
    x, y = _random([(3, 4), (3, 4)])
    np.testing.assert_allclose(_np(Subtract()([x, y])), x - y, atol=1e-6)
    np.testing.assert_allclose(_np(Average()([x, y])), (x + y) / 2, atol=1e-6)
    np.testing.assert_allclose(_np(Maximum()([x, y])), np.maximum(x, y), atol=0)
    np.testing.assert_allclose(_np(Minimum()([x, y])), np.minimum(x, y), atol=0)
    np.testing.assert_allclose(_np(Multiply()([x, y])), x * y, atol=1e-6)


@pytest.mark.parametrize("shapes", BROADCAST_CASES, ids=str)
@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
def test_elementwise_matches_keras(keras, cls, shapes):
    if cls is Subtract and len(shapes) != 2:
        pytest.skip("Subtract takes exactly two inputs")
    xs = _random(shapes, seed=len(shapes))
    out = _np(cls()(xs))
    reference = _keras_out(keras, getattr(keras.layers, cls.__name__)(), xs)
    assert out.shape == reference.shape
    np.testing.assert_allclose(out, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shapes", BROADCAST_CASES, ids=str)
@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
def test_elementwise_compute_output_shape_matches_keras(keras, cls, shapes):
    if cls is Subtract and len(shapes) != 2:
        pytest.skip("Subtract takes exactly two inputs")
    for case in (shapes, _none_batch(shapes)):
        expected = getattr(keras.layers, cls.__name__)().compute_output_shape(case)
        assert cls().compute_output_shape(case) == tuple(expected)


@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
def test_elementwise_output_shape_matches_runtime(cls):
    shapes = [(2, 3, 1), (2, 1, 4)]
    layer = cls()
    assert tuple(layer(_random(shapes)).shape) == layer.compute_output_shape(shapes) == (2, 3, 4)


@pytest.mark.parametrize("shapes", [[(2, 3), (2, 4)], [(2, 3, 4), (2, 3)], [(2, 2, 3), (2, 3, 3), (2, 3)]], ids=str)
@pytest.mark.parametrize("cls", [Add, Multiply, Maximum], ids=lambda c: c.__name__)
def test_elementwise_incompatible_shapes_error_names_layer_and_shapes(keras, cls, shapes):
    with pytest.raises(ValueError):  # Keras refuses these shapes as well
        getattr(keras.layers, cls.__name__)().build(shapes)
    layer = cls(name="merge_me")
    with pytest.raises(ValueError) as info:
        layer(_random(shapes))
    message = str(info.value)
    assert '"merge_me"' in message and cls.__name__ in message
    for shape in shapes:
        assert str(tuple(shape)) in message
    with pytest.raises(ValueError, match="merge_me"):
        layer.compute_output_shape(_none_batch(shapes))


def test_elementwise_incompatible_shapes_after_build_raise_value_error():
    layer = Add(name="built_add")
    layer([torch.ones(2, 3), torch.ones(2, 3)])
    with pytest.raises(ValueError, match=r'"built_add".*\(2, 3\).*\(2, 4\)'):
        layer([torch.ones(2, 3), torch.ones(2, 4)])


def test_merge_rejects_different_batch_sizes(keras):
    with pytest.raises(ValueError):
        keras.layers.Add().build([(2, 3), (4, 3)])
    with pytest.raises(ValueError, match=r"different batch sizes.*\(2, 3\).*\(4, 3\)"):
        Add()([torch.ones(2, 3), torch.ones(4, 3)])


@pytest.mark.parametrize("cls", [Add, Concatenate, Dot], ids=lambda c: c.__name__)
def test_merge_rejects_a_single_tensor(cls):
    layer = cls(axes=1) if cls is Dot else cls()
    with pytest.raises(ValueError, match="list"):
        layer(torch.ones(2, 3))


@pytest.mark.parametrize("cls", [Subtract, Dot], ids=lambda c: c.__name__)
def test_two_input_layers_reject_three_inputs(cls):
    layer = cls(axes=-1) if cls is Dot else cls(name="two_only")
    with pytest.raises(ValueError, match=r"exactly 2 inputs; received 3"):
        layer([torch.ones(2, 3)] * 3)


def test_merge_accepts_numpy_inputs_as_float32():
    out = Add()([np.ones((2, 2)), np.ones((2, 2))])
    assert out.dtype == torch.float32
    np.testing.assert_allclose(_np(out), 2.0)


# ---------------------------------------------------------------- Concatenate
CONCAT_CASES = [
    (-1, [(2, 3, 4), (2, 3, 5)]),
    (1, [(2, 3, 4), (2, 1, 4), (2, 2, 4)]),
    (2, [(2, 3, 4), (2, 3, 1)]),
    (-2, [(2, 3, 4), (2, 5, 4)]),
    (-1, [(2, 4), (2, 6)]),
]


@pytest.mark.parametrize("axis,shapes", CONCAT_CASES, ids=str)
def test_concatenate_matches_keras(keras, axis, shapes):
    xs = _random(shapes)
    out = _np(Concatenate(axis=axis)(xs))
    np.testing.assert_array_equal(out, np.concatenate(xs, axis=axis))
    np.testing.assert_array_equal(out, _keras_out(keras, keras.layers.Concatenate(axis=axis), xs))


@pytest.mark.parametrize("axis,shapes", CONCAT_CASES, ids=str)
def test_concatenate_compute_output_shape_matches_keras(keras, axis, shapes):
    for case in (shapes, _none_batch(shapes), [(None, *s[1:axis % len(s)], None, *s[axis % len(s) + 1:])
                                                 for s in shapes]):
        expected = keras.layers.Concatenate(axis=axis).compute_output_shape(case)
        assert Concatenate(axis=axis).compute_output_shape(case) == tuple(expected)


@pytest.mark.parametrize("axis,shapes", [(-1, [(2, 3, 4), (2, 2, 5)]), (1, [(2, 3, 4), (2, 3)]),
                                         (1, [(2, 3, 4), (3, 3, 4)])], ids=str)
def test_concatenate_mismatched_shapes_error(keras, axis, shapes):
    with pytest.raises(ValueError):
        keras.layers.Concatenate(axis=axis).build(shapes)
    with pytest.raises(ValueError) as info:
        Concatenate(axis=axis, name="cat_me")(_random(shapes))
    assert '"cat_me"' in str(info.value)
    for shape in shapes:
        assert str(tuple(shape)) in str(info.value)


def test_concatenate_config_matches_keras(keras):
    ours = Concatenate(axis=1, name="c").get_config()
    theirs = keras.layers.Concatenate(axis=1, name="c").get_config()
    assert set(ours) == set(theirs)
    assert ours["axis"] == theirs["axis"] == 1


# ---------------------------------------------------------------- Dot
DOT_CASES = [
    (1, [(2, 5), (2, 5)]),
    (-1, [(2, 5), (2, 5)]),
    (1, [(2, 3, 5), (2, 3, 4)]),
    (2, [(2, 3, 5), (2, 4, 5)]),
    (-1, [(2, 3, 5), (2, 4, 5)]),
    ((1, 2), [(2, 5, 2), (2, 2, 5)]),
    ((1, 2), [(2, 5), (2, 3, 5)]),
    ((2, 1), [(2, 3, 5), (2, 5)]),
    ((3, 1), [(2, 2, 3, 4), (2, 4, 5)]),
    ((1, 2), [(2, 3, 4), (2, 2, 3, 5)]),
    ((-1, -2), [(2, 3, 4), (2, 4, 6)]),
    ([2, 1], [(2, 3, 4), (2, 4, 2)]),
]


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("axes,shapes", DOT_CASES, ids=str)
def test_dot_matches_keras(keras, axes, shapes, normalize):
    xs = _random(shapes, seed=3)
    out = _np(Dot(axes=axes, normalize=normalize)(xs))
    reference = _keras_out(keras, keras.layers.Dot(axes=axes, normalize=normalize), xs)
    assert out.shape == reference.shape
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axes,shapes", DOT_CASES, ids=str)
def test_dot_compute_output_shape_matches_keras(keras, axes, shapes):
    for case in (shapes, _none_batch(shapes)):
        expected = keras.layers.Dot(axes=axes).compute_output_shape(case)
        assert Dot(axes=axes).compute_output_shape(case) == tuple(expected)
    assert tuple(Dot(axes=axes)(_random(shapes)).shape) == Dot(axes=axes).compute_output_shape(shapes)


def test_dot_matches_einsum_and_cosine():
    x, y = _random([(4, 6), (4, 6)])
    np.testing.assert_allclose(_np(Dot(axes=1)([x, y])), (x * y).sum(1, keepdims=True), atol=1e-5)
    cosine = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(_np(Dot(axes=1, normalize=True)([x, y]))[:, 0], cosine, atol=1e-6)
    a, b = _random([(2, 3, 5), (2, 4, 5)])
    np.testing.assert_allclose(_np(Dot(axes=2)([a, b])), np.einsum("bik,bjk->bij", a, b), atol=1e-5)


def test_dot_normalize_zero_vector_gives_zero_not_nan():
    out = _np(Dot(axes=1, normalize=True)([torch.zeros(1, 3), torch.ones(1, 3)]))
    np.testing.assert_array_equal(out, [[0.0]])


def test_dot_axis_size_mismatch_error(keras):
    shapes = [(2, 3, 5), (2, 4, 6)]
    with pytest.raises(ValueError):
        keras.layers.Dot(axes=2).build(shapes)
    with pytest.raises(ValueError, match=r'"dot_me".*5.*6.*\(2, 3, 5\).*\(2, 4, 6\)'):
        Dot(axes=2, name="dot_me")(_random(shapes))


def test_dot_refuses_batch_axis():
    with pytest.raises(ValueError, match="not 0"):
        Dot(axes=0)(_random([(2, 3), (2, 3)]))


@pytest.mark.parametrize("axes,error", [("1", TypeError), ((1, 2, 3), ValueError), ((1.0, 2), ValueError)])
def test_dot_invalid_axes_argument(axes, error):
    with pytest.raises(error, match="axes"):
        Dot(axes=axes)


def test_dot_config_matches_keras(keras):
    ours = Dot(axes=(1, 2), normalize=True, name="d").get_config()
    theirs = keras.layers.Dot(axes=(1, 2), normalize=True, name="d").get_config()
    assert set(ours) == set(theirs)
    assert (ours["axes"], ours["normalize"]) == (tuple(theirs["axes"]), theirs["normalize"])


# ---------------------------------------------------------------- masks
def _masked_pair(keras, seed=0):
    """Two masked (2, 4, 3) sequences from Embedding(mask_zero=True), in lamina and in Keras."""
    ids_a = np.array([[1, 2, 0, 0], [3, 0, 4, 0]])
    ids_b = np.array([[5, 0, 6, 0], [1, 1, 0, 0]])
    table = np.random.default_rng(seed).normal(size=(8, 3)).astype("float32")
    ours = Embedding(8, 3, mask_zero=True, weights=table)
    theirs = keras.layers.Embedding(8, 3, mask_zero=True)
    theirs.build()
    theirs.set_weights([table])
    return ([ours(torch.as_tensor(ids_a)), ours(torch.as_tensor(ids_b))],
            [theirs(keras.ops.convert_to_tensor(ids_a)), theirs(keras.ops.convert_to_tensor(ids_b))])


def _mask(x):
    m = getattr(x, "_keras_mask", None)
    return None if m is None else np.asarray(m.detach().cpu().numpy())


MASK_LAYERS = [(c.__name__, {}) for c in ELEMENTWISE] + [("Concatenate", {"axis": 1}),
                                                         ("Concatenate", {"axis": -1}),
                                                         ("Dot", {"axes": 2})]


@pytest.mark.parametrize("name,kwargs", MASK_LAYERS, ids=str)
def test_merge_masks_match_keras_when_all_inputs_masked(keras, name, kwargs):
    ours_in, keras_in = _masked_pair(keras)
    ours = getattr(lamina.layers.merging, name)(**kwargs)(ours_in)
    theirs = getattr(keras.layers, name)(**kwargs)(keras_in)
    np.testing.assert_allclose(_np(ours), keras.ops.convert_to_numpy(theirs), atol=1e-6)
    if _mask(theirs) is None:
        assert _mask(ours) is None
    else:
        np.testing.assert_array_equal(_mask(ours), _mask(theirs))


@pytest.mark.parametrize("name,kwargs", MASK_LAYERS, ids=str)
def test_merge_masks_match_keras_when_one_input_unmasked(keras, name, kwargs):
    ours_in, keras_in = _masked_pair(keras)
    plain = np.random.default_rng(5).normal(size=(2, 4, 3)).astype("float32")
    ours = getattr(lamina.layers.merging, name)(**kwargs)([ours_in[0], torch.as_tensor(plain)])
    theirs = getattr(keras.layers, name)(**kwargs)([keras_in[0], keras.ops.convert_to_tensor(plain)])
    np.testing.assert_allclose(_np(ours), keras.ops.convert_to_numpy(theirs), atol=1e-6)
    if _mask(theirs) is None:
        assert _mask(ours) is None
    else:
        np.testing.assert_array_equal(_mask(ours), _mask(theirs))


def test_maximum_skips_masked_entries_closed_form():
    x = torch.tensor([[[5.0], [1.0]]])
    y = torch.tensor([[[2.0], [3.0]]])
    x._keras_mask = torch.tensor([[False, True]])
    y._keras_mask = torch.tensor([[True, True]])
    out = Maximum()([x, y])
    assert out.flatten().tolist() == [2.0, 3.0]  # x's 5.0 is masked out
    assert out._keras_mask.tolist() == [[True, True]]


def test_merge_compute_mask_is_or_of_masks():
    layer = Add()
    a, b = torch.tensor([[True, False, False]]), torch.tensor([[False, False, True]])
    assert layer.compute_mask([torch.zeros(1, 3, 2)] * 2, [a, b]).tolist() == [[True, False, True]]
    assert layer.compute_mask([torch.zeros(1, 3, 2)] * 2, [a, None]) is None
    assert layer.compute_mask([torch.zeros(1, 3, 2)] * 2, None) is None
    with pytest.raises(ValueError, match="same length"):
        layer.compute_mask([torch.zeros(1, 3, 2)] * 2, [a])


# ---------------------------------------------------------------- functional forms
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functional_forms_match_keras_and_layer(keras, name):
    fn, cls = FUNCTIONS[name]
    xs = _random([(2, 3), (2, 3)], seed=7)
    out = _np(fn(xs, name=f"{name}_fn"))
    np.testing.assert_allclose(out, _np(cls()(xs)), atol=0)
    np.testing.assert_allclose(out, _keras_out(keras, lambda t: getattr(keras.layers, name)(t), xs), atol=1e-6)


def test_concatenate_and_dot_functional_forms_match_keras(keras):
    x, y = _random([(2, 3, 4), (2, 3, 4)])
    kx, ky = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    np.testing.assert_array_equal(_np(concatenate([x, y], axis=1)),
                                  keras.ops.convert_to_numpy(keras.layers.concatenate([kx, ky], axis=1)))
    np.testing.assert_allclose(_np(dot([x, y], axes=1, normalize=True)),
                               keras.ops.convert_to_numpy(keras.layers.dot([kx, ky], axes=1, normalize=True)),
                               atol=1e-6)
    np.testing.assert_allclose(_np(dot([x, y])), keras.ops.convert_to_numpy(keras.layers.dot([kx, ky])), atol=1e-5)


def test_functional_forms_build_symbolic_tensors():
    a, b = lamina.Input((4,)), lamina.Input((4,))
    assert add([a, b]).shape == (None, 4)
    assert concatenate([a, b]).shape == (None, 8)
    assert dot([a, b], axes=1).shape == (None, 1)


# ---------------------------------------------------------------- configs and models
ALL_LAYERS = [Add(), Subtract(), Multiply(), Average(), Maximum(), Minimum(), Concatenate(axis=1),
              Dot(axes=(1, 2), normalize=True)]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda l: type(l).__name__)
def test_merge_config_round_trip(keras, layer):
    config = layer.get_config()
    clone = registry.get("layer", registry.serialize("layer", layer))
    assert type(clone) is type(layer) and clone.get_config() == config
    kwargs = {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}
    theirs = getattr(keras.layers, type(layer).__name__)(**kwargs).get_config()
    assert set(config) == set(theirs)


def test_merge_layers_in_functional_model_infer_shapes_and_train():
    a, b = lamina.Input((4,)), lamina.Input((3, 4))
    ha = Dense(4)(a)
    merged = Add()([ha, b])  # (None, 4) broadcasts over (None, 3, 4)
    both = Concatenate(axis=1)([merged, b])
    scores = Dot(axes=(2, 2))([both, merged])
    out = Dense(1)(lamina.layers.Flatten()(Maximum()([Average()([scores, scores]), scores])))
    assert (merged.shape, both.shape, scores.shape, out.shape) == ((None, 3, 4), (None, 6, 4), (None, 6, 3), (None, 1))
    model = lamina.Model([a, b], out)
    model.compile(optimizer=lamina.optimizers.SGD(0.01), loss="mse")
    xa, xb = _random([(16, 4), (16, 3, 4)])
    y = np.random.default_rng(1).normal(size=(16, 1)).astype("float32")
    before = model.get_weights()
    history = model.fit([xa, xb], y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(w0, w1) for w0, w1 in zip(before, model.get_weights()))
    assert tuple(model.predict([xa, xb], verbose=0).shape) == (16, 1)


def test_merge_functional_model_config_round_trip():
    a, b = lamina.Input((3,)), lamina.Input((3,))
    out = Dense(2)(Concatenate()([Subtract()([a, b]), Multiply()([a, b])]))
    model = lamina.Model([a, b], out)
    clone = registry.get("layer", registry.serialize("layer", model))
    clone.set_weights(model.get_weights())
    xs = _random([(5, 3), (5, 3)])
    np.testing.assert_allclose(_np(clone(xs)), _np(model(xs)), atol=1e-6)
