"""Tests for lamina.initializers: statistics against Keras's formulas, fans, seeds, configs."""

import inspect
import json
import math

import numpy as np
import pytest
import torch

from lamina import config, initializers, registry

_TRUNCATED_STDDEV = 0.87962566103423978
BIG = (400, 500)  # 200k samples: the std of a sample std is ~0.2%.


def _fans(shape):
    # Independent restatement of Keras's rule: (in, out) for 2-D, (*spatial, in, out) above.
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


@pytest.mark.parametrize("shape", [(), (7,), (5, 3), (3, 4, 5), (3, 3, 16, 32), (2, 3, 4, 5, 6)])
def test_compute_fans_matches_keras(keras, shape):
    from keras.src.initializers.random_initializers import compute_fans

    assert initializers.compute_fans(shape) == compute_fans(shape)


def test_compute_fans_with_axes_matches_keras(keras):
    from keras.src.initializers.random_initializers import compute_fans

    shape = (4, 5, 6, 7)
    expected = compute_fans(shape, input_axes=[0, 2], output_axes=[1, 3])
    assert initializers.compute_fans(shape, input_axes=[0, 2], output_axes=[1, 3]) == expected
    assert expected == (24, 35)


def test_compute_fans_conv_kernel_uses_receptive_field():
    assert initializers.compute_fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)
    assert initializers.compute_fans((64, 10)) == (64, 10)


def _check_uniform(values, limit):
    assert float(values.min()) >= -limit and float(values.max()) <= limit
    assert float(values.max()) > 0.99 * limit and float(values.min()) < -0.99 * limit
    np.testing.assert_allclose(float(values.std()), limit / math.sqrt(3), rtol=0.01)
    assert abs(float(values.mean())) < 0.01 * limit


def _check_truncated(values, stddev_before_truncation):
    bound = 2 * stddev_before_truncation
    assert float(values.abs().max()) <= bound * (1 + 1e-6)
    assert float(values.abs().max()) > 0.99 * bound
    np.testing.assert_allclose(
        float(values.std()), stddev_before_truncation * _TRUNCATED_STDDEV, rtol=0.01
    )
    assert abs(float(values.mean())) < 0.01 * stddev_before_truncation


@pytest.mark.parametrize("shape", [BIG, (5, 5, 80, 100)])
@pytest.mark.parametrize("name, scale, fan", [
    ("GlorotUniform", 1.0, "avg"), ("HeUniform", 2.0, "in"), ("LecunUniform", 1.0, "in"),
])
def test_uniform_variance_scaling_matches_keras_limit(name, scale, fan, shape):
    fan_in, fan_out = _fans(shape)
    n = {"in": fan_in, "avg": (fan_in + fan_out) / 2}[fan]
    values = getattr(initializers, name)(seed=1)(shape)
    assert values.shape == shape and values.dtype == torch.float32
    _check_uniform(values, math.sqrt(3 * scale / n))


@pytest.mark.parametrize("shape", [BIG, (5, 5, 80, 100)])
@pytest.mark.parametrize("name, scale, fan", [
    ("GlorotNormal", 1.0, "avg"), ("HeNormal", 2.0, "in"), ("LecunNormal", 1.0, "in"),
])
def test_truncated_variance_scaling_has_requested_stddev(name, scale, fan, shape):
    fan_in, fan_out = _fans(shape)
    n = {"in": fan_in, "avg": (fan_in + fan_out) / 2}[fan]
    values = getattr(initializers, name)(seed=1)(shape)
    assert values.shape == shape
    # Keras divides by the truncated stddev so that the samples' std is sqrt(scale / n).
    np.testing.assert_allclose(float(values.std()), math.sqrt(scale / n), rtol=0.01)
    _check_truncated(values, math.sqrt(scale / n) / _TRUNCATED_STDDEV)


@pytest.mark.parametrize("mode, n", [("fan_in", 400), ("fan_out", 500), ("fan_avg", 450)])
def test_variance_scaling_untruncated_normal(mode, n):
    values = initializers.VarianceScaling(scale=3.0, mode=mode, distribution="untruncated_normal",
                                          seed=2)(BIG)
    np.testing.assert_allclose(float(values.std()), math.sqrt(3.0 / n), rtol=0.01)
    assert float(values.abs().max()) > 3 * math.sqrt(3.0 / n)


@pytest.mark.parametrize("name, kwargs", [
    ("GlorotUniform", {}), ("GlorotNormal", {}), ("HeUniform", {}), ("HeNormal", {}),
    ("LecunUniform", {}), ("LecunNormal", {}), ("RandomNormal", {"mean": 0.3, "stddev": 0.2}),
    ("RandomUniform", {"minval": -0.1, "maxval": 0.4}), ("TruncatedNormal", {"stddev": 0.3}),
    ("VarianceScaling", {"scale": 2.0, "mode": "fan_out", "distribution": "uniform"}),
])
def test_random_initializer_statistics_match_keras(keras, name, kwargs):
    shape = (3, 3, 40, 60)
    ours = getattr(initializers, name)(seed=3, **kwargs)(shape)
    theirs = torch.as_tensor(getattr(keras.initializers, name)(seed=3, **kwargs)(shape))
    assert tuple(ours.shape) == tuple(theirs.shape) and ours.dtype == theirs.dtype
    np.testing.assert_allclose(float(ours.std()), float(theirs.std()), rtol=0.03)
    np.testing.assert_allclose(float(ours.mean()), float(theirs.mean()), atol=0.03 * float(theirs.std()))
    np.testing.assert_allclose(float(ours.abs().max()), float(theirs.abs().max()), rtol=0.2)


def test_random_normal_statistics():
    values = initializers.RandomNormal(mean=1.5, stddev=0.3, seed=4)(BIG)
    np.testing.assert_allclose(float(values.mean()), 1.5, atol=0.003)
    np.testing.assert_allclose(float(values.std()), 0.3, rtol=0.01)


def test_random_uniform_bounds():
    values = initializers.RandomUniform(minval=2.0, maxval=3.0, seed=4)(BIG)
    assert float(values.min()) >= 2.0 and float(values.max()) < 3.0
    np.testing.assert_allclose(float(values.mean()), 2.5, atol=0.003)


def test_truncated_normal_truncates_at_two_stddev():
    values = initializers.TruncatedNormal(mean=-1.0, stddev=0.5, seed=4)(BIG)
    _check_truncated(values + 1.0, 0.5)


@pytest.mark.parametrize("shape", [(6, 6), (20, 8), (8, 20), (3, 3, 4, 8)])
def test_orthogonal_is_orthogonal(shape):
    values = initializers.Orthogonal(gain=2.0, seed=5)(shape)
    assert values.shape == shape
    matrix = values.reshape(-1, shape[-1]).double() / 2.0
    rows, cols = matrix.shape
    gram = matrix.T @ matrix if rows >= cols else matrix @ matrix.T
    torch.testing.assert_close(gram, torch.eye(min(rows, cols), dtype=torch.float64), atol=1e-5, rtol=0)


def test_orthogonal_rejects_vectors():
    with pytest.raises(ValueError, match="at least two axes"):
        initializers.Orthogonal()((5,))


def test_identity_matches_keras(keras):
    for shape in [(3, 3), (2, 4), (4, 2)]:
        expected = torch.as_tensor(keras.initializers.Identity(gain=1.5)(shape))
        torch.testing.assert_close(initializers.Identity(gain=1.5)(shape), expected)


def test_identity_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        initializers.Identity()((2, 2, 2))


@pytest.mark.parametrize("name, kwargs, fill", [
    ("Zeros", {}, 0.0), ("Ones", {}, 1.0), ("Constant", {"value": 2.5}, 2.5),
    ("Constant", {"value": np.float32(-1.0)}, -1.0),
])
def test_constant_initializers(name, kwargs, fill):
    values = getattr(initializers, name)(**kwargs)((2, 3))
    assert values.dtype == torch.float32
    assert values.tolist() == [[fill] * 3] * 2


@pytest.mark.parametrize("dtype, expected", [("float64", torch.float64), ("int32", torch.int32),
                                             (torch.bfloat16, torch.bfloat16)])
def test_constant_initializers_honour_dtype(dtype, expected):
    assert initializers.Constant(2)((2,), dtype=dtype).dtype == expected


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("name", ["RandomNormal", "TruncatedNormal", "RandomUniform",
                                  "GlorotNormal", "Orthogonal"])
def test_random_initializers_honour_dtype(name, dtype):
    values = getattr(initializers, name)(seed=1)((4, 3), dtype=dtype)
    assert values.dtype == getattr(torch, dtype) and values.shape == (4, 3)


def test_default_dtype_follows_floatx():
    config.set_floatx("float64")
    assert initializers.HeNormal()((3, 2)).dtype == torch.float64
    assert initializers.Zeros()((3,)).dtype == torch.float64


def test_random_initializer_rejects_integer_dtype():
    with pytest.raises(ValueError, match="float dtype"):
        initializers.RandomNormal()((2,), dtype="int32")


@pytest.mark.parametrize("name", ["RandomNormal", "RandomUniform", "TruncatedNormal",
                                  "VarianceScaling", "GlorotUniform", "HeNormal", "Orthogonal"])
def test_int_seed_repeats_values(name):
    first = getattr(initializers, name)(seed=7)((6, 5))
    torch.manual_seed(123)  # the global RNG must not matter
    again = getattr(initializers, name)(seed=7)
    torch.testing.assert_close(again((6, 5)), first, rtol=0, atol=0)
    torch.testing.assert_close(again((6, 5)), first, rtol=0, atol=0)
    assert not torch.equal(getattr(initializers, name)(seed=8)((6, 5)), first)


@pytest.mark.parametrize("name", ["RandomNormal", "GlorotUniform", "Orthogonal"])
def test_no_seed_follows_global_rng(name):
    initializer = getattr(initializers, name)()
    torch.manual_seed(42)
    first, second = initializer((6, 5)), initializer((6, 5))
    assert not torch.equal(first, second)
    torch.manual_seed(42)
    torch.testing.assert_close(initializer((6, 5)), first, rtol=0, atol=0)


def test_seed_must_be_an_int():
    with pytest.raises(ValueError, match="seed"):
        initializers.RandomNormal(seed="1")


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": 0.0}, "scale"), ({"mode": "fan"}, "mode"), ({"distribution": "gamma"}, "distribution"),
])
def test_variance_scaling_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        initializers.VarianceScaling(**kwargs)


def test_variance_scaling_normal_means_truncated():
    assert initializers.VarianceScaling(distribution="Normal").distribution == "truncated_normal"


def test_shape_is_exact():
    assert initializers.GlorotUniform()([2, 3]).shape == (2, 3)
    assert initializers.Zeros()(torch.Size([4])).shape == (4,)
    assert initializers.Ones()(5).shape == (5,)


def _registered_classes():
    seen = []
    for name in registry.names("initializer"):
        cls = registry.lookup_class("initializer", name)
        if cls not in seen:
            seen.append(cls)
    return seen


@pytest.mark.parametrize("cls", _registered_classes(), ids=lambda c: c.__name__)
def test_config_round_trip(cls):
    instance = cls()
    config_dict = instance.get_config()
    assert json.loads(json.dumps(config_dict)) == config_dict
    rebuilt = cls.from_config(config_dict)
    assert type(rebuilt) is cls and rebuilt.get_config() == config_dict
    restored = initializers.deserialize(initializers.serialize(instance))
    assert type(restored) is cls and restored.get_config() == config_dict


@pytest.mark.parametrize("cls", _registered_classes(), ids=lambda c: c.__name__)
def test_default_config_matches_keras(keras, cls):
    ours = cls().get_config()
    theirs = getattr(keras.initializers, cls.__name__)().get_config()
    # Keras's Identity forgets its gain in get_config; ours keeps every constructor argument.
    assert {key: ours[key] for key in theirs} == theirs
    assert set(ours) == set(inspect.signature(cls).parameters)


@pytest.mark.parametrize("name, kwargs", [
    ("VarianceScaling", {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform", "seed": 3}),
    ("RandomNormal", {"mean": 1.0, "stddev": 0.1, "seed": 2}), ("Constant", {"value": 3.0}),
    ("GlorotUniform", {"seed": 5}), ("Orthogonal", {"gain": 2.0, "seed": 1}),
])
def test_config_matches_keras(keras, name, kwargs):
    expected = getattr(keras.initializers, name)(**kwargs).get_config()
    assert getattr(initializers, name)(**kwargs).get_config() == expected
    assert initializers.get({"class_name": name, "config": expected}).get_config() == expected


def test_seeded_config_round_trip_repeats_values():
    initializer = initializers.HeUniform(seed=11)
    clone = initializers.deserialize(initializers.serialize(initializer))
    torch.testing.assert_close(clone((3, 4)), initializer((3, 4)), rtol=0, atol=0)


def test_registry_covers_keras_aliases(keras):
    from keras.src.initializers import ALL_OBJECTS_DICT

    missing = set(ALL_OBJECTS_DICT) - set(registry.names("initializer")) - {"STFT", "stft", "STFTInitializer"}
    assert not missing


@pytest.mark.parametrize("name, cls", [
    ("glorot_uniform", initializers.GlorotUniform), ("zeros", initializers.Zeros),
    ("he_normal", initializers.HeNormal), ("orthogonal", initializers.Orthogonal),
    ("identity", initializers.Identity), ("constant", initializers.Constant),
    ("random_normal", initializers.RandomNormal), ("truncated_normal", initializers.TruncatedNormal),
    ("variance_scaling", initializers.VarianceScaling), ("uniform", initializers.RandomUniform),
    ("IdentityInitializer", initializers.Identity), ("GlorotNormal", initializers.GlorotNormal),
])
def test_get_resolves_names(name, cls):
    assert type(initializers.get(name)) is cls
    assert getattr(initializers, name, cls) is cls


def test_get_passes_through_none_and_callables():
    def custom(shape, dtype=None):
        return torch.zeros(shape)

    assert initializers.get(None) is None
    assert initializers.get(custom) is custom
    instance = initializers.Ones()
    assert initializers.get(instance) is instance
    assert type(initializers.get(initializers.HeNormal)) is initializers.HeNormal


def test_get_tensor_value_returns_it_for_its_shape():
    value = np.arange(6.0).reshape(2, 3)
    initializer = initializers.get(value)
    torch.testing.assert_close(initializer((2, 3)), torch.as_tensor(value, dtype=torch.float32))
    with pytest.raises(ValueError, match="shape"):
        initializer((3, 2))


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="'glorot_uniform'"):
        initializers.get("glorot")
