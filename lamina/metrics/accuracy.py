"""Accuracy metrics: binary, categorical, sparse and top-k accuracy, as classes and functions."""

from __future__ import annotations

import torch

from lamina import config
from lamina.metrics.base import _as_tensor, _float_pair, _FnMetric, _function_form, _match_rank, _metric


def _accuracy(y_true, y_pred):
    y_true, y_pred = _float_pair(y_true, y_pred)
    y_true, y_pred = _match_rank(y_true, y_pred)
    return (y_true == y_pred).to(config.torch_dtype())


@_function_form
def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per-sample: 1.0 where ``y_pred > threshold`` equals ``y_true``, else 0.0.

    >>> binary_accuracy([1, 0, 1], [0.9, 0.6, 0.4]).tolist()
    [1.0, 0.0, 0.0]
    """
    y_pred = _as_tensor(y_pred)
    y_true = _as_tensor(y_true, device=y_pred.device)
    y_true, y_pred = _match_rank(y_true, y_pred)
    return (y_true == (y_pred > threshold).to(y_true.dtype)).to(config.torch_dtype())


def _exact_class_ids(y_pred) -> bool:
    """Whether every class id of ``y_pred``'s last axis is exact in ``y_pred``'s dtype."""
    limit = {torch.float32: 2**24, torch.float64: 2**53}.get(y_pred.dtype, 0)
    return y_pred.ndim > 0 and y_pred.shape[-1] <= limit


@_function_form
def categorical_accuracy(y_true, y_pred):
    """Per-sample: 1.0 where the argmax of one-hot ``y_true`` equals the argmax of ``y_pred``.

    >>> categorical_accuracy([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]).tolist()
    [0.0, 1.0]
    """
    y_pred = _as_tensor(y_pred)
    labels = torch.argmax(_as_tensor(y_true, device=y_pred.device), dim=-1)
    predicted = torch.argmax(y_pred, dim=-1)
    if not _exact_class_ids(y_pred):
        # Keras compares the class ids in y_pred's dtype; that rounds large ids in half
        # precision, so keep the casts there (elsewhere they change nothing).
        labels = labels.to(y_pred.dtype)
        predicted = predicted.to(labels.dtype)
    label_shape = labels.shape
    if labels.ndim == y_pred.ndim:
        labels = labels.squeeze(-1)
    matches = (labels == predicted).to(config.torch_dtype())
    return matches.reshape(label_shape) if len(label_shape) == y_pred.ndim else matches


@_function_form
def sparse_categorical_accuracy(y_true, y_pred):
    """Per-sample: 1.0 where the integer label ``y_true`` equals the argmax of ``y_pred``.

    >>> sparse_categorical_accuracy([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]]).tolist()
    [0.0, 1.0]
    """
    y_true, y_pred = _float_pair(y_true, y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    matches = (y_true == torch.argmax(y_pred, dim=-1).to(y_true.dtype)).to(config.torch_dtype())
    return matches


def _in_top_k(targets, predictions, k):
    """Whether each target's score reaches the k-th largest score (ties count as in)."""
    k = min(int(k), predictions.shape[-1])
    kth = torch.topk(predictions, k, dim=-1).values[..., -1:]
    target_scores = torch.gather(predictions, -1, targets.long().unsqueeze(-1))
    return (target_scores >= kth).squeeze(-1)


@_function_form
def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Per-sample: 1.0 where the one-hot label is among the ``k`` highest scores.

    >>> top_k_categorical_accuracy([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], k=1).tolist()
    [0.0, 1.0]
    """
    y_pred = _as_tensor(y_pred)
    labels = torch.argmax(_as_tensor(y_true, device=y_pred.device), dim=-1)
    matches = _in_top_k(labels.reshape(-1), y_pred.reshape(-1, y_pred.shape[-1]), k)
    return matches.to(config.torch_dtype()).reshape(labels.shape)


@_function_form
def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """Per-sample: 1.0 where the integer label is among the ``k`` highest scores.

    With ``from_sorted_ids=True``, ``y_pred`` holds class ids sorted by decreasing score.

    >>> sparse_top_k_categorical_accuracy([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], k=2).tolist()
    [1.0, 1.0]
    """
    y_pred = _as_tensor(y_pred)
    y_true = _as_tensor(y_true, y_pred.dtype if from_sorted_ids else torch.int64, y_pred.device)
    labels_shape = y_true.shape
    y_true = y_true.reshape(-1)
    y_pred = y_pred.reshape(-1, y_pred.shape[-1])
    if from_sorted_ids:
        matches = (y_true.unsqueeze(1) == y_pred[:, :k]).any(dim=1)
    else:
        matches = _in_top_k(y_true, y_pred, k)
    return matches.to(config.torch_dtype()).reshape(labels_shape)


@_metric("acc")
class Accuracy(_FnMetric):
    """How often predictions equal labels exactly.

    Args:
        name: name of the metric, default ``"accuracy"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = Accuracy()
    >>> m.update_state([[1], [2], [3], [4]], [[0], [2], [3], [4]])
    >>> float(m.result())
    0.75
    """

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(_accuracy, name=name, dtype=dtype)
        self._direction = "up"


@_metric()
class BinaryAccuracy(_FnMetric):
    """How often ``y_pred > threshold`` matches binary labels.

    Args:
        name: name of the metric, default ``"binary_accuracy"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.
        threshold: probability above which a prediction counts as 1, default 0.5.

    Example:
    >>> m = BinaryAccuracy()
    >>> m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    >>> float(m.result())
    0.75
    """

    _config_keys = ("threshold",)

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold
        self._direction = "up"


@_metric()
class CategoricalAccuracy(_FnMetric):
    """How often the argmax of ``y_pred`` matches one-hot labels.

    Args:
        name: name of the metric, default ``"categorical_accuracy"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = CategoricalAccuracy()
    >>> m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    >>> float(m.result())
    0.5
    """

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"


@_metric()
class SparseCategoricalAccuracy(_FnMetric):
    """How often the argmax of ``y_pred`` matches integer labels.

    Args:
        name: name of the metric, default ``"sparse_categorical_accuracy"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = SparseCategoricalAccuracy()
    >>> m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], sample_weight=[0.7, 0.3])
    >>> float(m.result())
    0.3
    """

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"


@_metric()
class TopKCategoricalAccuracy(_FnMetric):
    """How often one-hot targets are among the ``k`` highest predictions.

    Args:
        k: how many of the top predictions to look at, default 5.
        name: name of the metric, default ``"top_k_categorical_accuracy"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = TopKCategoricalAccuracy(k=1)
    >>> m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    >>> float(m.result())
    0.5
    """

    _config_keys = ("k",)

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k
        self._direction = "up"


@_metric()
class SparseTopKCategoricalAccuracy(_FnMetric):
    """How often integer targets are among the ``k`` highest predictions.

    Args:
        k: how many of the top predictions to look at, default 5.
        name: name of the metric, default ``"sparse_top_k_categorical_accuracy"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.
        from_sorted_ids: ``y_pred`` holds class ids sorted by decreasing score rather than
            scores for every class, default False.

    Example:
    >>> m = SparseTopKCategoricalAccuracy(k=1)
    >>> m.update_state([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    >>> float(m.result())
    0.5
    """

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False):
        super().__init__(
            sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k, from_sorted_ids=from_sorted_ids
        )
        self.k = k
        self.from_sorted_ids = from_sorted_ids
        self._direction = "up"

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype, "k": self.k}
        if self.from_sorted_ids:  # Keras writes the key only when it is set
            config["from_sorted_ids"] = True
        return config
