"""Tests for lamina.regularizers against Keras 3 and closed forms."""

import inspect
import json

import numpy as np
import pytest
import torch

from lamina import regularizers, registry

CASES = [
    ("L1", {}), ("L1", {"l1": 0.3}), ("L2", {}), ("L2", {"l2": 0.7}),
    ("L1L2", {}), ("L1L2", {"l1": 0.2}), ("L1L2", {"l2": 0.4}), ("L1L2", {"l1": 0.1, "l2": 0.5}),
    ("OrthogonalRegularizer", {}), ("OrthogonalRegularizer", {"factor": 0.5}),
    ("OrthogonalRegularizer", {"factor": 0.5, "mode": "columns"}),
]


@pytest.mark.parametrize("shape", [(5, 7), (7, 5)])
@pytest.mark.parametrize("name, kwargs", CASES)
def test_regularizer_matches_keras(keras, name, kwargs, shape):
    x = torch.randn(shape)
    expected = torch.as_tensor(getattr(keras.regularizers, name)(**kwargs)(x.clone()))
    result = getattr(regularizers, name)(**kwargs)(x)
    assert isinstance(result, torch.Tensor) and result.ndim == 0 and result.dtype == torch.float32
    torch.testing.assert_close(result, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name, kwargs", [("L1", {"l1": 0.3}), ("L2", {}), ("L1L2", {"l1": 0.1, "l2": 0.2})])
def test_regularizer_matches_keras_on_conv_kernel(keras, name, kwargs):
    x = torch.randn(3, 3, 4, 8)
    expected = torch.as_tensor(getattr(keras.regularizers, name)(**kwargs)(x.clone()))
    torch.testing.assert_close(getattr(regularizers, name)(**kwargs)(x), expected, rtol=1e-5, atol=1e-6)


def test_l1_l2_closed_form():
    x = np.array([[1.0, -2.0], [3.0, -0.5]])
    assert float(regularizers.L1(0.1)(x)) == pytest.approx(0.1 * 6.5)
    assert float(regularizers.L2(0.1)(x)) == pytest.approx(0.1 * 14.25)
    assert float(regularizers.L1L2(0.1, 0.2)(x)) == pytest.approx(0.65 + 0.2 * 14.25)
    assert float(regularizers.L1L2()(x)) == 0.0


def test_orthogonal_regularizer_closed_form():
    # Rows (1, 0), (1, 1), (0, 2): |cosines| 1/sqrt(2), 0, 1/sqrt(2) over 3 pairs.
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    expected = 2.0 * (2 / np.sqrt(2)) / 3
    assert float(regularizers.OrthogonalRegularizer(factor=2.0)(x)) == pytest.approx(expected, rel=1e-6)
    assert float(regularizers.OrthogonalRegularizer(factor=2.0)(torch.eye(3))) == 0.0


def test_orthogonal_regularizer_zero_rows_stay_finite():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, -1.0]])
    assert float(regularizers.OrthogonalRegularizer(factor=1.0)(x)) == 0.0


def test_orthogonal_regularizer_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        regularizers.OrthogonalRegularizer()(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="at least two"):
        regularizers.OrthogonalRegularizer(mode="columns")(torch.ones(4, 1))
    with pytest.raises(ValueError, match="mode"):
        regularizers.OrthogonalRegularizer(mode="diagonal")


@pytest.mark.parametrize("cls, kwargs", [
    (regularizers.L1, {"l1": -1.0}), (regularizers.L2, {"l2": float("nan")}),
    (regularizers.L1L2, {"l1": "0.1"}), (regularizers.OrthogonalRegularizer, {"factor": float("inf")}),
])
def test_regularizer_rejects_bad_factors(cls, kwargs):
    with pytest.raises(ValueError, match="non-negative"):
        cls(**kwargs)


def test_none_factor_means_default():
    assert regularizers.L1(None).l1 == 0.01
    assert regularizers.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}


def test_l1_l2_gradient_closed_form_in_float64():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    penalty = regularizers.L1L2(0.1, 0.2)(x)
    assert penalty.dtype == torch.float64
    penalty.backward()
    torch.testing.assert_close(x.grad, 0.1 * torch.sign(x.detach()) + 0.4 * x.detach())


def test_orthogonal_regularizer_gradient_is_finite():
    x = torch.randn(4, 3, requires_grad=True)
    regularizers.OrthogonalRegularizer()(x).backward()
    assert bool(torch.isfinite(x.grad).all()) and bool((x.grad != 0).any())


def test_l2_gradient_closed_form():
    x = torch.randn(4, 3, requires_grad=True)
    regularizers.L2(0.25)(x).backward()
    torch.testing.assert_close(x.grad, 0.5 * x.detach())


def _registered_classes():
    seen = []
    for name in registry.names("regularizer"):
        cls = registry.lookup_class("regularizer", name)
        if cls not in seen:
            seen.append(cls)
    return seen


@pytest.mark.parametrize("cls", _registered_classes(), ids=lambda c: c.__name__)
def test_config_round_trip(cls):
    instance = cls()
    config = instance.get_config()
    assert json.loads(json.dumps(config)) == config
    assert set(config) == set(inspect.signature(cls).parameters)
    assert cls.from_config(config).get_config() == config
    restored = regularizers.deserialize(regularizers.serialize(instance))
    assert type(restored) is cls and restored.get_config() == config


@pytest.mark.parametrize("name, kwargs", CASES)
def test_config_matches_keras(keras, name, kwargs):
    expected = getattr(keras.regularizers, name)(**kwargs).get_config()
    # Keras keeps l1 and factor as float32 tensors, so its configs are float32-rounded.
    ours = getattr(regularizers, name)(**kwargs).get_config()
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == (pytest.approx(value, rel=1e-7) if isinstance(value, float) else value)


def test_custom_subclass_without_get_config_explains_itself():
    class Custom(regularizers.Regularizer):
        def __init__(self, strength):
            self.strength = strength

    with pytest.raises(NotImplementedError, match="get_config"):
        Custom(1.0).get_config()


def test_registry_covers_keras_names(keras):
    from keras.src.regularizers import ALL_OBJECTS_DICT

    assert not set(ALL_OBJECTS_DICT) - set(registry.names("regularizer"))


@pytest.mark.parametrize("name, cls, config", [
    ("l1", regularizers.L1, {"l1": 0.01}), ("l2", regularizers.L2, {"l2": 0.01}),
    ("l1_l2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}), ("l1l2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}),
    ("orthogonal_regularizer", regularizers.OrthogonalRegularizer, {"factor": 0.01, "mode": "rows"}),
    ("L2", regularizers.L2, {"l2": 0.01}),
])
def test_get_resolves_names(name, cls, config):
    instance = regularizers.get(name)
    assert type(instance) is cls and instance.get_config() == config


def test_module_aliases_construct_like_keras():
    assert regularizers.l2(1e-4).get_config() == {"l2": 1e-4}
    assert regularizers.l1_l2(l1=0.1, l2=0.2).get_config() == {"l1": 0.1, "l2": 0.2}


def test_get_passes_through_none_objects_and_callables():
    def custom(x):
        return x.sum()

    assert regularizers.get(None) is None
    assert regularizers.get(custom) is custom
    instance = regularizers.L1()
    assert regularizers.get(instance) is instance


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="'l2'"):
        regularizers.get("l3")
