"""Keras 3 metrics on torch: stateful ``Metric`` objects, their function forms and ``resolve``.

Owns the public namespace (explicit re-exports), ``get``/``serialize``/``deserialize`` and the
compile-time rule that turns ``metrics=[...]`` entries into ``Metric`` objects. The metrics live
in ``base`` (Metric, Mean, Sum, MeanMetricWrapper), ``accuracy``, ``regression``, ``confusion``
(precision, recall, AUC) and ``f_score``; crossentropy/hinge metrics live with the losses.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch  # noqa: F401  (the resolve doctest uses it)

from lamina import registry
from lamina.metrics.base import (
    Mean,
    MeanMetricWrapper,
    Metric,
    Sum,
    _deserialize_fn,
    _serialize_fn,
    _snake_case,
)
from lamina.metrics.accuracy import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from lamina.metrics.regression import (
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    R2Score,
    RootMeanSquaredError,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_logarithmic_error,
)
from lamina.metrics.confusion import (
    AUC,
    FalseNegatives,
    FalsePositives,
    Precision,
    Recall,
    TrueNegatives,
    TruePositives,
)
from lamina.metrics.f_score import F1Score, FBetaScore

__all__ = [
    "Metric", "Mean", "Sum", "MeanMetricWrapper",
    "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy",
    "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "RootMeanSquaredError", "R2Score",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives",
    "Precision", "Recall", "AUC", "FBetaScore", "F1Score",
    "get", "serialize", "deserialize", "resolve",
]


def _is_function(obj) -> bool:
    return inspect.isfunction(obj) or inspect.isbuiltin(obj)


def get(identifier):
    """Resolve a name, config dict, class, function or Metric to a metric.

    Names and classes give a Metric instance; functions and Metric instances come back as is.

    >>> type(get("mse")).__name__
    'MeanSquaredError'
    >>> get("binary_accuracy").threshold
    0.5
    """
    if isinstance(identifier, dict) and identifier.get("class_name") == "function":
        return _deserialize_fn(identifier)
    obj = registry.get("metric", identifier)
    if obj is not None and not callable(obj):
        raise ValueError(
            f"Could not interpret metric identifier {identifier!r}: expected a name, a config dict, "
            f"a function or a Metric."
        )
    return obj


def serialize(metric):
    """A JSON-ready description of a Metric or a registered metric function.

    >>> serialize(BinaryAccuracy(threshold=0.7))
    {'class_name': 'BinaryAccuracy', 'config': {'name': 'binary_accuracy', 'dtype': 'float32', 'threshold': 0.7}}
    >>> serialize(binary_accuracy)
    {'class_name': 'function', 'config': 'binary_accuracy'}
    """
    if _is_function(metric):
        return _serialize_fn(metric)
    return registry.serialize("metric", metric)


def deserialize(config, custom_objects=None):
    """The inverse of ``serialize``: a Metric instance or a metric function.

    >>> deserialize({"class_name": "Precision", "config": {"thresholds": 0.7}}).thresholds
    [0.7]
    """
    if isinstance(config, dict) and config.get("class_name") == "function":
        return _deserialize_fn(config, custom_objects)
    return registry.get("metric", config, custom_objects)


def _shape(x) -> tuple:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _object_name(obj) -> str:
    if hasattr(obj, "name"):
        return obj.name
    if hasattr(obj, "__name__"):
        return _snake_case(obj.__name__)
    return _snake_case(type(obj).__name__)


def resolve(identifier, y_true, y_pred, loss=None) -> Metric:
    """Turn one entry of ``compile(metrics=[...])`` into a Metric, as Keras's compile does.

    ``"accuracy"`` / ``"acc"`` (any case) pick BinaryAccuracy when ``y_pred``'s last axis is 1,
    SparseCategoricalAccuracy when ``y_true`` has fewer axes than ``y_pred`` (or a last axis of
    1 while ``y_pred``'s is larger), and CategoricalAccuracy otherwise. Other names and dicts go
    through ``get``; a class is instantiated; a plain function or other callable is wrapped
    in a MeanMetricWrapper. A string keeps its spelling as the metric's name (so the log key
    of ``"acc"`` stays ``"acc"``); otherwise the name is the object's name, or the snake_case
    function name. A Metric instance comes back unchanged.

    Args:
        identifier: the user's entry: a name, config dict, class, function or Metric.
        y_true: the first batch's targets (anything with a ``shape``).
        y_pred: the first batch's predictions (anything with a ``shape``).
        loss: the compiled loss. Keras 3 chooses the accuracy from shapes only, so this is
            accepted but not consulted.

    Example:
    >>> m = resolve("acc", torch.zeros(4, 1), torch.zeros(4, 1))
    >>> type(m).__name__, m.name
    ('BinaryAccuracy', 'acc')
    >>> type(resolve("accuracy", torch.zeros(4), torch.zeros(4, 3))).__name__
    'SparseCategoricalAccuracy'
    """
    if identifier is None:
        raise ValueError(
            "resolve expects a metric identifier; received None. Pass a name such as 'accuracy', "
            "a function, or a Metric."
        )
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        true_shape, pred_shape = _shape(y_true), _shape(y_pred)
        true_last = true_shape[-1] if true_shape else 1
        pred_last = pred_shape[-1] if pred_shape else 1
        if pred_last == 1:
            metric = BinaryAccuracy(name=identifier)
        elif len(true_shape) < len(pred_shape) or (true_last == 1 and pred_last > 1):
            metric = SparseCategoricalAccuracy(name=identifier)
        else:
            metric = CategoricalAccuracy(name=identifier)
    else:
        metric = get(identifier)
    name = identifier if isinstance(identifier, str) else _object_name(metric)
    if not isinstance(metric, Metric):
        metric = MeanMetricWrapper(metric)
    metric.name = name
    return metric
