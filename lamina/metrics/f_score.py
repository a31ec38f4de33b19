"""F-score metrics: ``FBetaScore`` and ``F1Score`` on 2D class scores."""

from __future__ import annotations

import torch

from lamina import config
from lamina.metrics.base import Metric, _as_tensor, _device_of, _metric
from lamina.metrics.regression import _check_2d


@_metric()
class FBetaScore(Metric):
    """The F-beta score, ``(1 + beta^2) * precision * recall / (beta^2 * precision + recall)``.

    Inputs are 2D, ``(batch_size, num_classes)``. Predictions become 0/1 by ``threshold``,
    or, when it is None, by marking each row's highest score as 1.

    Args:
        average: None (one score per class, default), ``"micro"`` (pool all classes),
            ``"macro"`` (unweighted mean of class scores) or ``"weighted"`` (mean weighted
            by each class's number of true labels).
        beta: weight of recall relative to precision, a float > 0; default 1.0.
        threshold: float in (0, 1]; predictions above it count as positive. Default None.
        name: name of the metric, default ``"fbeta_score"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = FBetaScore(beta=2.0, average="micro", threshold=0.5)
    >>> m.update_state([[1, 0], [1, 1]], [[0.9, 0.1], [0.8, 0.2]])
    >>> round(float(m.result()), 4)
    0.7143
    """

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(
                "FBetaScore expects average to be one of None, 'micro', 'macro', 'weighted'; "
                f"received average={average!r}."
            )
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"FBetaScore expects beta to be a Python float > 0; received beta={beta!r}.")
        if threshold is not None and (not isinstance(threshold, float) or not 0.0 < threshold <= 1.0):
            raise ValueError(
                f"FBetaScore expects threshold to be None or a Python float in (0, 1]; "
                f"received threshold={threshold!r}."
            )
        self.average = average
        self.beta = beta
        self.threshold = threshold
        self.axis = None if average == "micro" else 0
        self._built = False

    def update_state(self, y_true, y_pred, sample_weight=None):
        device = self._follow(_device_of(y_pred, y_true, sample_weight))
        dtype = config.torch_dtype(self.dtype)
        y_true, y_pred = _as_tensor(y_true, dtype, device), _as_tensor(y_pred, dtype, device)
        if not self._built:
            _check_2d(self, y_true, y_pred)
            shape = () if self.average == "micro" else (y_pred.shape[-1],)
            self.true_positives = self.add_variable(shape, name="true_positives")
            self.false_positives = self.add_variable(shape, name="false_positives")
            self.false_negatives = self.add_variable(shape, name="false_negatives")
            self.intermediate_weights = self.add_variable(shape, name="intermediate_weights")
            self._built = True
        if self.threshold is None:
            y_pred = (y_pred >= y_pred.amax(dim=-1, keepdim=True)) & (torch.abs(y_pred) > 1e-9)
        else:
            y_pred = y_pred > self.threshold
        y_pred = y_pred.to(dtype)
        # Rows (tp, fp, fn, true labels) summed in one reduction.
        cells = torch.stack((y_pred * y_true, y_pred * (1 - y_true), (1 - y_pred) * y_true, y_true))
        if sample_weight is not None:
            cells = cells * _as_tensor(sample_weight, dtype, device).reshape(1, -1, 1)
        sums = cells.sum(dim=(1, 2)) if self.axis is None else cells.sum(dim=1)
        self.true_positives.add_(sums[0])
        self.false_positives.add_(sums[1])
        self.false_negatives.add_(sums[2])
        self.intermediate_weights.add_(sums[3])

    def result(self):
        if not self._built:
            return torch.zeros((), dtype=config.torch_dtype(self.dtype), device=config.get_device())
        eps = config.epsilon()
        tp = self.true_positives
        precision = tp / (tp + self.false_positives + eps)
        recall = tp / (tp + self.false_negatives + eps)
        beta_squared = self.beta**2
        score = precision * recall / (beta_squared * precision + recall + eps) * (1 + beta_squared)
        if self.average == "weighted":
            weights = self.intermediate_weights / (self.intermediate_weights.sum() + eps)
            return (score * weights).sum()
        if self.average is not None:
            return score.mean()
        return score

    def get_config(self):
        return {
            **super().get_config(),
            "average": self.average,
            "beta": self.beta,
            "threshold": self.threshold,
        }


@_metric()
class F1Score(FBetaScore):
    """The F1 score, the harmonic mean of precision and recall (``FBetaScore`` with beta=1).

    Args:
        average: None (one score per class, default), ``"micro"``, ``"macro"`` or ``"weighted"``.
        threshold: float in (0, 1]; predictions above it count as positive. Default None
            (each row's highest score counts as positive).
        name: name of the metric, default ``"f1_score"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = F1Score(average="macro", threshold=0.5)
    >>> m.update_state([[1, 0], [0, 1]], [[0.9, 0.1], [0.8, 0.2]])
    >>> round(float(m.result()), 4)
    0.3333
    """

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config
