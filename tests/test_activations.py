"""Tests for lamina.activations against Keras 3 and closed forms."""

import numpy as np
import pytest
import torch

from lamina import activations, registry

# name -> keyword variants compared with keras.activations.<name>.
KERAS_CASES = [
    ("relu", {}),
    ("relu", {"negative_slope": 0.3}),
    ("relu", {"max_value": 2.5}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"threshold": 0.7}),
    ("relu", {"threshold": -0.7}),
    ("relu", {"negative_slope": 0.2, "max_value": 3.0}),
    ("relu", {"negative_slope": 0.1, "threshold": 1.0}),
    ("relu", {"negative_slope": 0.1, "max_value": 2.0, "threshold": 0.5}),
    ("relu", {"negative_slope": 0.1, "max_value": 2.0, "threshold": -0.5}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("softmax", {}),
    ("softmax", {"axis": 0}),
    ("softmax", {"axis": 1}),
    ("softmax", {"axis": (0, 2)}),
    ("log_softmax", {}),
    ("log_softmax", {"axis": 1}),
    ("linear", {}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("selu", {}),
    ("gelu", {}),
    ("gelu", {"approximate": True}),
    ("softplus", {}),
    ("softsign", {}),
    ("silu", {}),
    ("swish", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"negative_slope": 0.05}),
    ("relu6", {}),
    ("hard_sigmoid", {}),
    ("hard_silu", {}),
    ("hard_swish", {}),
    ("exponential", {}),
    ("mish", {}),
    ("celu", {"alpha": 0.7}),
    ("glu", {}),
    ("glu", {"axis": 1}),
    ("hard_shrink", {"threshold": 0.8}),
    ("hard_tanh", {}),
    ("log_sigmoid", {}),
    ("soft_shrink", {"threshold": 0.8}),
    ("sparse_plus", {}),
    ("sparse_sigmoid", {}),
    ("squareplus", {"b": 2.0}),
    ("tanh_shrink", {}),
    ("threshold", {"threshold": 0.3, "default_value": -2.0}),
]


def _inputs():
    # Spread over the piecewise boundaries (±1, ±3, ±6) of the hard/sparse variants.
    return torch.randn(3, 4, 6) * 4.0


@pytest.mark.parametrize("name, kwargs", KERAS_CASES)
def test_activation_matches_keras(keras, name, kwargs):
    x = _inputs()
    expected = getattr(keras.activations, name)(x.clone(), **kwargs)
    result = getattr(activations, name)(x, **kwargs)
    assert isinstance(result, torch.Tensor)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, torch.as_tensor(expected), atol=1e-6, rtol=1e-5)


def test_softmax_axis_none_normalises_over_all_axes(keras):
    x = torch.randn(3, 4)
    result = activations.softmax(x, axis=None)
    torch.testing.assert_close(result.sum(), torch.tensor(1.0))
    torch.testing.assert_close(result, torch.as_tensor(keras.ops.softmax(x, axis=None)))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_tuple_axis_matches_reshaped_softmax(name):
    x = torch.randn(2, 3, 4)
    result = getattr(activations, name)(x, axis=(1, 2))
    expected = getattr(torch, name)(x.reshape(2, 12), dim=-1).reshape(2, 3, 4)
    torch.testing.assert_close(result, expected)


def test_relu_matches_closed_form():
    x = torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0])
    assert activations.relu(x).tolist() == [0.0, 0.0, 0.0, 5.0, 10.0]
    assert activations.relu(x, negative_slope=0.5).tolist() == [-5.0, -2.5, 0.0, 5.0, 10.0]
    assert activations.relu(x, max_value=5.0).tolist() == [0.0, 0.0, 0.0, 5.0, 5.0]
    assert activations.relu(x, threshold=5.0).tolist() == [0.0, 0.0, 0.0, 0.0, 10.0]


def test_hard_sigmoid_is_the_keras3_definition():
    x = torch.tensor([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0])
    expected = np.clip(x.numpy() / 6.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(activations.hard_sigmoid(x).numpy(), expected, atol=1e-7)


def _numpy_sparsemax(z):
    # Martins & Astudillo (2016), Algorithm 1, one vector at a time. Keras 3.15's
    # sparsemax sums the cumulative sums for tau (keras-team/keras#23425, fixed in
    # #23469), so it is not the oracle here.
    ordered = np.sort(z)[::-1]
    cumulative = np.cumsum(ordered)
    k = np.arange(1, z.size + 1)
    size = k[1 + k * ordered > cumulative][-1]
    tau = (cumulative[size - 1] - 1) / size
    return np.maximum(z - tau, 0.0)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_sparsemax_matches_numpy_reference(axis):
    x = torch.randn(3, 5, 4) * 0.7
    result = activations.sparsemax(x, axis=axis)
    expected = np.apply_along_axis(_numpy_sparsemax, axis, x.numpy().astype(np.float64))
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-6)


def test_sparsemax_closed_form():
    result = activations.sparsemax(torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.8, -1.0]]))
    torch.testing.assert_close(result, torch.tensor([[0.0, 0.25, 0.75], [0.6, 0.4, 0.0]]))


def test_sparsemax_rows_are_sparse_distributions():
    result = activations.sparsemax(torch.randn(5, 7) * 3.0)
    torch.testing.assert_close(result.sum(dim=-1), torch.ones(5))
    assert bool((result >= 0).all()) and bool((result == 0).any())


@pytest.mark.parametrize("value", [[-1.0, 0.5, 2.0], np.array([-1.0, 0.5, 2.0]), [-1, 0, 2]])
def test_activation_accepts_lists_and_arrays(value):
    result = activations.sigmoid(value)
    assert isinstance(result, torch.Tensor) and result.is_floating_point()
    np.testing.assert_allclose(result.numpy(), 1 / (1 + np.exp(-np.asarray(value, float))), rtol=1e-6)


def test_activation_keeps_float64():
    x = torch.randn(4, dtype=torch.float64)
    assert activations.gelu(x).dtype == torch.float64
    assert activations.relu(x, max_value=1.0, threshold=0.1).dtype == torch.float64


def test_activation_is_differentiable():
    x = torch.randn(6, requires_grad=True)
    activations.relu(x, negative_slope=0.1, max_value=1.0, threshold=0.2).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_softmax_keeps_its_logits():
    x = torch.randn(2, 3)
    assert activations.softmax(x)._keras_logits is x
    assert activations.sigmoid(x)._keras_logits is x


def test_get_none_gives_linear():
    assert activations.get(None) is activations.linear


@pytest.mark.parametrize("name, function", [
    ("relu", activations.relu), ("swish", activations.silu), ("silu", activations.silu),
    ("hard_swish", activations.hard_silu), ("softmax", activations.softmax),
])
def test_get_resolves_names_and_aliases(name, function):
    assert activations.get(name) is function
    assert registry.get("activation", name) is function


def test_get_returns_callables_unchanged():
    def custom(x):
        return x * 2

    assert activations.get(custom) is custom
    assert activations.get(torch.nn.ReLU) is torch.nn.ReLU
    layer = torch.nn.GELU()
    assert activations.get(layer) is layer


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="'relu'"):
        activations.get("relux")


def test_get_rejects_non_callables():
    with pytest.raises(ValueError, match="Could not interpret"):
        activations.get(3)


@pytest.mark.parametrize("function, name", [
    (activations.relu, "relu"), (activations.swish, "silu"), (activations.hard_swish, "hard_silu"),
    (activations.log_softmax, "log_softmax"),
])
def test_serialize_gives_canonical_name(function, name):
    assert activations.serialize(function) == name
    assert activations.deserialize(name) is function


def test_serialize_matches_keras(keras):
    for name in ["relu", "swish", "gelu", "hard_swish", "linear"]:
        assert activations.serialize(activations.get(name)) == keras.activations.serialize(
            keras.activations.get(name)
        )


def test_deserialize_reads_keras_function_config(keras):
    config = keras.saving.serialize_keras_object(keras.activations.gelu)
    assert activations.deserialize(config) is activations.gelu


def test_serialize_unregistered_function_raises():
    with pytest.raises(ValueError, match="unregistered"):
        activations.serialize(lambda x: x)


def test_registry_covers_every_keras_activation(keras):
    from keras.src.activations import ALL_OBJECTS_DICT

    missing = set(ALL_OBJECTS_DICT) - set(registry.names("activation"))
    assert not missing


def test_module_exports_every_registered_name():
    for name in registry.names("activation"):
        assert name in activations.__all__
        assert getattr(activations, name) is registry.get("activation", name)
