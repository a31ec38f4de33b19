"""Regression metrics: MSE, MAE, MAPE, MSLE (classes and functions), RMSE and R2Score."""

from __future__ import annotations

import torch

from lamina import config
from lamina.metrics.base import (
    Mean,
    Metric,
    _as_tensor,
    _device_of,
    _float_pair,
    _FnMetric,
    _function_form,
    _match_rank,
    _metric,
)


@_function_form
def mean_squared_error(y_true, y_pred):
    """``mean(square(y_true - y_pred), axis=-1)``.

    >>> mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]]).tolist()
    [0.5]
    """
    y_true, y_pred = _match_rank(*_float_pair(y_true, y_pred, float_pred=True))
    return torch.square(y_true - y_pred).mean(dim=-1)


@_function_form
def mean_absolute_error(y_true, y_pred):
    """``mean(abs(y_true - y_pred), axis=-1)``.

    >>> mean_absolute_error([[0.0, 1.0]], [[2.0, 1.0]]).tolist()
    [1.0]
    """
    y_true, y_pred = _match_rank(*_float_pair(y_true, y_pred, float_pred=True))
    return torch.abs(y_true - y_pred).mean(dim=-1)


@_function_form
def mean_absolute_percentage_error(y_true, y_pred):
    """``100 * mean(abs((y_true - y_pred) / max(abs(y_true), epsilon)), axis=-1)``.

    >>> mean_absolute_percentage_error([[2.0, 4.0]], [[1.0, 4.0]]).tolist()
    [25.0]
    """
    y_true, y_pred = _match_rank(*_float_pair(y_true, y_pred, float_pred=True))
    denominator = torch.clamp(torch.abs(y_true), min=config.epsilon())
    return 100.0 * torch.abs((y_true - y_pred) / denominator).mean(dim=-1)


@_function_form
def mean_squared_logarithmic_error(y_true, y_pred):
    """``mean(square(log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1)), axis=-1)``.

    >>> round(mean_squared_logarithmic_error([[0.0]], [[1.718281828]]).item(), 4)
    1.0
    """
    y_true, y_pred = _match_rank(*_float_pair(y_true, y_pred, float_pred=True))
    eps = config.epsilon()
    difference = torch.log(torch.clamp(y_pred, min=eps) + 1.0) - torch.log(torch.clamp(y_true, min=eps) + 1.0)
    return torch.square(difference).mean(dim=-1)


@_metric("mse", "MSE")
class MeanSquaredError(_FnMetric):
    """The mean of ``square(y_true - y_pred)``.

    Args:
        name: name of the metric, default ``"mean_squared_error"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = MeanSquaredError()
    >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
    >>> float(m.result())
    0.25
    """

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, dtype=dtype)
        self._direction = "down"


@_metric("mae", "MAE")
class MeanAbsoluteError(_FnMetric):
    """The mean of ``abs(y_true - y_pred)``.

    Args:
        name: name of the metric, default ``"mean_absolute_error"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = MeanAbsoluteError()
    >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
    >>> float(m.result())
    0.25
    """

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, dtype=dtype)
        self._direction = "down"


@_metric("mape", "MAPE")
class MeanAbsolutePercentageError(_FnMetric):
    """The mean absolute percentage error, ``100 * mean(abs((y_true - y_pred) / y_true))``.

    Args:
        name: name of the metric, default ``"mean_absolute_percentage_error"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = MeanAbsolutePercentageError()
    >>> m.update_state([[2.0, 4.0]], [[1.0, 4.0]])
    >>> float(m.result())
    25.0
    """

    def __init__(self, name="mean_absolute_percentage_error", dtype=None):
        super().__init__(mean_absolute_percentage_error, name=name, dtype=dtype)
        self._direction = "down"


@_metric("msle", "MSLE")
class MeanSquaredLogarithmicError(_FnMetric):
    """The mean of ``square(log(y_true + 1) - log(y_pred + 1))``.

    Args:
        name: name of the metric, default ``"mean_squared_logarithmic_error"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = MeanSquaredLogarithmicError()
    >>> m.update_state([[0.0]], [[1.718281828]])
    >>> round(float(m.result()), 4)
    1.0
    """

    def __init__(self, name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(mean_squared_logarithmic_error, name=name, dtype=dtype)
        self._direction = "down"


@_metric()
class RootMeanSquaredError(Mean):
    """The square root of the (weighted) mean squared error.

    Args:
        name: name of the metric, default ``"root_mean_squared_error"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = RootMeanSquaredError()
    >>> m.update_state([[0, 2], [0, 0]], [[2, 2], [0, 0]])
    >>> float(m.result())
    1.0
    """

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None):
        device = self._follow(_device_of(y_pred, y_true, sample_weight))
        dtype = self.total.dtype
        y_true, y_pred = _match_rank(_as_tensor(y_true, dtype, device), _as_tensor(y_pred, dtype, device))
        self._accumulate(torch.square(y_pred - y_true), sample_weight, device)

    def result(self):
        return torch.sqrt(super().result())


def _check_2d(metric, y_true, y_pred):
    if y_true.ndim != 2 or y_pred.ndim != 2:
        raise ValueError(
            f"{type(metric).__name__} expects 2D inputs of shape (batch_size, output_dim); "
            f"received y_true.shape={tuple(y_true.shape)} and y_pred.shape={tuple(y_pred.shape)}. "
            f"Reshape the inputs to 2D."
        )


@_metric()
class R2Score(Metric):
    """The coefficient of determination, per output and aggregated, optionally adjusted.

    Args:
        class_aggregation: how to combine per-output scores: ``"uniform_average"`` (default),
            ``"variance_weighted_average"`` or ``None`` (one score per output).
        num_regressors: number of independent regressors; when > 0 the adjusted R2 is
            returned (falling back to the plain score when there are too few samples).
        name: name of the metric, default ``"r2_score"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = R2Score()
    >>> m.update_state([[1.0], [2.0], [3.0]], [[1.0], [2.0], [2.0]])
    >>> float(m.result())
    0.5
    """

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError(
                "R2Score expects class_aggregation to be one of None, 'uniform_average', "
                f"'variance_weighted_average'; received class_aggregation={class_aggregation!r}."
            )
        if num_regressors < 0:
            raise ValueError(f"R2Score expects num_regressors >= 0; received num_regressors={num_regressors}.")
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self._direction = "up"
        self.num_samples = self.add_variable((), name="num_samples")
        self._built = False

    def update_state(self, y_true, y_pred, sample_weight=None):
        device = self._follow(_device_of(y_pred, y_true, sample_weight))
        dtype = self.num_samples.dtype
        y_true, y_pred = _match_rank(_as_tensor(y_true, dtype, device), _as_tensor(y_pred, dtype, device))
        if not self._built:
            _check_2d(self, y_true, y_pred)
            outputs = (y_pred.shape[-1],)
            self.squared_sum = self.add_variable(outputs, name="squared_sum")
            self.sum = self.add_variable(outputs, name="sum")
            self.total_mse = self.add_variable(outputs, name="residual")
            self.count = self.add_variable(outputs, name="count")
            self._built = True
        weight = _as_tensor(1.0 if sample_weight is None else sample_weight, dtype, device)
        if weight.ndim == 1:
            weight = weight.unsqueeze(1)
        weight = torch.broadcast_to(weight, y_true.shape)
        weighted_y_true = y_true * weight
        self.sum.add_(weighted_y_true.sum(dim=0))
        self.squared_sum.add_((y_true * weighted_y_true).sum(dim=0))
        self.total_mse.add_((torch.square(y_true - y_pred) * weight).sum(dim=0))
        self.count.add_(weight.sum(dim=0))
        self.num_samples.add_(y_true.numel())

    def result(self):
        if not self._built:
            return torch.zeros((), dtype=self.num_samples.dtype, device=self.num_samples.device)
        mean = self.sum / self.count
        total = self.squared_sum - self.sum * mean
        raw_scores = 1 - self.total_mse / total
        raw_scores = torch.where(torch.isinf(raw_scores), torch.zeros_like(raw_scores), raw_scores)
        if self.class_aggregation == "uniform_average":
            score = raw_scores.mean()
        elif self.class_aggregation == "variance_weighted_average":
            score = (total * raw_scores).sum() / total.sum()
        else:
            score = raw_scores
        if self.num_regressors:
            # Keras warns and falls back when n - 1 <= p; a where keeps this free of host syncs.
            n, p = self.num_samples, float(self.num_regressors)
            adjusted = 1.0 - (1.0 - score) * (n - 1.0) / (n - p - 1.0)
            score = torch.where(p < n - 1.0, adjusted, score)
        return score

    def get_config(self):
        return {
            **super().get_config(),
            "class_aggregation": self.class_aggregation,
            "num_regressors": self.num_regressors,
        }
