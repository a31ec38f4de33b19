"""Tests for lamina.utils.numerical: to_categorical and normalize against keras.utils."""

import numpy as np
import pytest
import torch

from lamina.utils import normalize, to_categorical


@pytest.mark.parametrize(
    "labels, num_classes",
    [
        ([0, 2, 1, 2], None),
        ([0, 2, 1, 2], 5),
        (np.array([[1], [0], [3]]), None),  # trailing axis of 1 is dropped
        (np.array([[1, 0], [2, 2]], dtype=np.int32), 3),  # extra axes kept
        (np.array([1.0, 0.0, 2.0]), 3),  # integral floats
        (np.array([4], dtype=np.uint8), None),
    ],
)
def test_to_categorical_matches_keras(keras, labels, num_classes):
    expected = keras.utils.to_categorical(labels, num_classes)
    result = to_categorical(labels, num_classes)
    assert isinstance(result, np.ndarray)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)


def test_to_categorical_tensor_matches_keras(keras):
    labels = torch.tensor([[2], [0], [1]])
    expected = keras.utils.to_categorical(labels, 3)
    result = to_categorical(labels, 3)
    # Keras's torch backend returns int64 here (its JAX and TF backends return floats);
    # lamina returns floatx, which every loss accepts.
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float32
    torch.testing.assert_close(result, expected.cpu().float())


@pytest.mark.parametrize(
    "labels, num_classes, message",
    [
        ([0, 1.5], None, "non-integer"),
        ([0, -1], 3, ">= 0"),
        ([0, 3], 3, "out of range"),
        (["a", "b"], None, "integer class labels"),
    ],
)
def test_to_categorical_rejects_bad_labels(labels, num_classes, message):
    with pytest.raises(ValueError, match=message):
        to_categorical(labels, num_classes)


@pytest.mark.parametrize("order", [1, 2, 3, np.inf])
@pytest.mark.parametrize("axis", [-1, 1])
def test_normalize_matches_keras(keras, order, axis):
    x = np.random.RandomState(0).randn(4, 5)
    x[1] = 0.0  # a zero vector stays zero
    expected = keras.utils.normalize(x, axis=axis, order=order)
    result = normalize(x, axis=axis, order=order)
    assert result.dtype == expected.dtype
    np.testing.assert_allclose(result, expected, rtol=1e-12)
    np.testing.assert_array_equal(result[1], 0.0)


def test_normalize_axis_0_matches_numpy_formula():
    # (Keras's NumPy path turns axis=0 into -1; the closed form is the reference here.)
    x = np.random.RandomState(1).randn(3, 4)
    np.testing.assert_allclose(normalize(x, axis=0), x / np.sqrt((x ** 2).sum(axis=0, keepdims=True)))


def test_normalize_tensor_matches_keras(keras):
    x = torch.randn(3, 4)
    expected = keras.utils.normalize(x, axis=-1, order=2)
    result = normalize(x)
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float32
    torch.testing.assert_close(result, expected.cpu(), atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(torch.linalg.vector_norm(result, dim=-1).numpy(), 1.0, rtol=1e-6)
