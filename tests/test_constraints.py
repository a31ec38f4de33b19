"""Tests for lamina.constraints against Keras 3 and closed forms."""

import inspect
import json

import numpy as np
import pytest
import torch

from lamina import constraints, registry

CASES = [
    ("MaxNorm", {}), ("MaxNorm", {"max_value": 0.5}), ("MaxNorm", {"max_value": 1.5, "axis": 1}),
    ("MinMaxNorm", {}), ("MinMaxNorm", {"min_value": 1.0, "max_value": 2.0}),
    ("MinMaxNorm", {"min_value": 0.5, "max_value": 3.0, "rate": 0.3, "axis": 1}),
    ("NonNeg", {}), ("UnitNorm", {}), ("UnitNorm", {"axis": 1}),
]


@pytest.mark.parametrize("name, kwargs", CASES)
def test_constraint_matches_keras_on_dense_kernel(keras, name, kwargs):
    w = torch.randn(6, 5) * torch.tensor([0.05, 0.3, 1.0, 2.0, 4.0])
    expected = torch.as_tensor(getattr(keras.constraints, name)(**kwargs)(w.clone()))
    result = getattr(constraints, name)(**kwargs)(w)
    assert result.shape == w.shape and result.dtype == torch.float32
    torch.testing.assert_close(result, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name, kwargs", [
    ("MaxNorm", {"max_value": 1.0, "axis": [0, 1, 2]}),
    ("MinMaxNorm", {"min_value": 0.5, "max_value": 2.0, "axis": [0, 1, 2]}),
    ("UnitNorm", {"axis": [0, 1, 2]}), ("MaxNorm", {"axis": None}), ("UnitNorm", {"axis": -1}),
])
def test_constraint_matches_keras_on_conv_kernel(keras, name, kwargs):
    w = torch.randn(3, 3, 4, 8) * 0.5
    expected = torch.as_tensor(getattr(keras.constraints, name)(**kwargs)(w.clone()))
    torch.testing.assert_close(getattr(constraints, name)(**kwargs)(w), expected, atol=1e-6, rtol=1e-5)


def test_max_norm_closed_form():
    w = torch.tensor([[3.0, 0.3], [4.0, 0.4]])  # column norms 5 and 0.5
    result = constraints.MaxNorm(max_value=2.0)(w)
    torch.testing.assert_close(result, torch.tensor([[1.2, 0.3], [1.6, 0.4]]), atol=1e-6, rtol=0)


def test_unit_norm_gives_unit_columns():
    result = constraints.UnitNorm()(torch.randn(7, 4))
    torch.testing.assert_close(torch.linalg.vector_norm(result, dim=0), torch.ones(4))


def test_min_max_norm_rate_moves_part_of_the_way():
    w = torch.tensor([[0.6], [0.8]])  # norm 1, target 3
    result = constraints.MinMaxNorm(min_value=3.0, max_value=4.0, rate=0.25)(w)
    np.testing.assert_allclose(float(torch.linalg.vector_norm(result)), 1.5, rtol=1e-6)


def test_non_neg_clips_negatives():
    assert constraints.NonNeg()(np.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 2.0]


def test_constraint_keeps_float64():
    w = torch.randn(4, 3, dtype=torch.float64)
    assert constraints.MaxNorm(1.0)(w).dtype == torch.float64


def test_base_constraint_is_identity():
    w = torch.randn(3)
    assert constraints.Constraint()(w) is w


def _registered_classes():
    seen = []
    for name in registry.names("constraint"):
        cls = registry.lookup_class("constraint", name)
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
    restored = constraints.deserialize(constraints.serialize(instance))
    assert type(restored) is cls and restored.get_config() == config


@pytest.mark.parametrize("name, kwargs", CASES)
def test_config_matches_keras(keras, name, kwargs):
    expected = getattr(keras.constraints, name)(**kwargs).get_config()
    assert getattr(constraints, name)(**kwargs).get_config() == expected


def test_registry_covers_keras_names(keras):
    from keras.src.constraints import ALL_OBJECTS_DICT

    assert not set(ALL_OBJECTS_DICT) - set(registry.names("constraint"))


@pytest.mark.parametrize("name, cls", [
    ("max_norm", constraints.MaxNorm), ("min_max_norm", constraints.MinMaxNorm),
    ("non_neg", constraints.NonNeg), ("unit_norm", constraints.UnitNorm),
    ("MaxNorm", constraints.MaxNorm),
])
def test_get_resolves_names(name, cls):
    assert type(constraints.get(name)) is cls
    assert getattr(constraints, name) is cls


def test_get_passes_through_none_objects_and_callables():
    def custom(w):
        return w.clamp(-1, 1)

    assert constraints.get(None) is None
    assert constraints.get(custom) is custom
    instance = constraints.NonNeg()
    assert constraints.get(instance) is instance
    rebuilt = constraints.get({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": [0, 1]}})
    assert rebuilt.get_config() == {"max_value": 3, "axis": [0, 1]}


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="'max_norm'"):
        constraints.get("maxnorm")
