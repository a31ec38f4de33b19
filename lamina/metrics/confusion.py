"""Confusion-matrix metrics: TP/FP/TN/FN counts, Precision, Recall and AUC over thresholds."""

from __future__ import annotations

import numpy as np
import torch

from lamina import config
from lamina.metrics.base import (
    _NEG_INF,
    Metric,
    _as_tensor,
    _device_of,
    _divide_no_nan,
    _match_rank,
    _metric,
)


def _evenly_spaced(thresholds) -> bool:
    count = len(thresholds)
    if count < 3:
        return False
    even = np.arange(count, dtype=np.float32) / (count - 1)
    return bool(np.allclose(thresholds, even, atol=config.epsilon()))


def _parse_thresholds(thresholds, default):
    if thresholds is None:
        return [default]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    invalid = [t for t in values if t is None or t < 0 or t > 1]
    if invalid:
        raise ValueError(f"Threshold values must be in [0, 1]; received {invalid}. Pass thresholds in [0, 1].")
    return [float(t) for t in values]


def _confusion_counts(y_true, y_pred, sample_weight, thresholds, *, evenly, with_epsilon=False,
                      top_k=None, class_id=None, multi_label=False, label_weights=None):
    """Weighted (tp, fp, tn, fn) at each threshold, each of shape (T,) or (T, labels).

    A prediction counts as positive at threshold t when ``y_pred > t``. Evenly spaced
    thresholds use Keras's bucketing (one scatter and a cumulative sum instead of a
    T x N comparison), which also reproduces its float rounding at the bucket edges.
    """
    y_pred, y_true = _match_rank(y_pred, y_true)
    if sample_weight is not None:
        _, sample_weight = _match_rank(y_true, sample_weight.unsqueeze(-1), expand_rank_1=False)
    if top_k is not None:
        top = torch.topk(y_pred, top_k, dim=-1).indices
        y_pred = torch.full_like(y_pred, _NEG_INF).scatter(-1, top, torch.gather(y_pred, -1, top))
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError(
                "When class_id is given, y_pred must be 2D (num_samples, num_classes); "
                f"received shape {tuple(y_pred.shape)}."
            )
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    weights = None
    if sample_weight is not None:
        weights = torch.broadcast_to(sample_weight, y_pred.shape)
    if label_weights is not None and not multi_label:
        label_weights = torch.broadcast_to(label_weights, y_pred.shape)
        weights = label_weights if weights is None else weights * label_weights
    positive = (y_true != 0).to(y_pred.dtype)
    # Last axis: (weight of positive labels, weight of negative labels).
    labels = torch.stack((positive, 1.0 - positive), dim=-1)
    if weights is not None:
        labels = labels * weights.unsqueeze(-1)
    if not multi_label:
        labels, y_pred = labels.reshape(-1, 2), y_pred.reshape(-1)
    num_thresholds = len(thresholds)
    if evenly:
        buckets = torch.ceil(torch.clamp(y_pred, 0.0, 1.0) * (num_thresholds - 1))  # bucket index + 1
        if with_epsilon:
            buckets = torch.clamp(buckets, min=1.0)
        index = buckets.long().clamp_(0, num_thresholds).unsqueeze(-1).expand_as(labels)
        histogram = labels.new_zeros((num_thresholds + 1, *labels.shape[1:])).scatter_add_(0, index, labels)
        above = histogram[1:].flip(0).cumsum(0).flip(0)
    else:
        thresholds = thresholds.reshape(-1, *([1] * y_pred.ndim))
        is_above = (y_pred.unsqueeze(0) > thresholds).unsqueeze(-1)
        above = torch.where(is_above, labels.unsqueeze(0), 0.0).sum(dim=1)
    totals = labels.sum(dim=0)
    tp, fp = above[..., 0], above[..., 1]
    return tp, fp, totals[..., 1] - fp, totals[..., 0] - tp


class _ThresholdMetric(Metric):
    """Shared state handling of the metrics built on thresholded confusion counts."""

    def _init_thresholds(self, thresholds, evenly, with_epsilon):
        self.thresholds = thresholds
        self._evenly = evenly
        self._with_epsilon = with_epsilon
        self._threshold_tensor = torch.tensor(thresholds, dtype=config.torch_dtype(self.dtype))

    def _counts(self, y_true, y_pred, sample_weight, **options):
        device = self._follow(_device_of(y_pred, y_true, sample_weight))
        dtype = config.torch_dtype(self.dtype)
        y_true, y_pred = _as_tensor(y_true, dtype, device), _as_tensor(y_pred, dtype, device)
        if sample_weight is not None:
            sample_weight = _as_tensor(sample_weight, dtype, device)
        if self._threshold_tensor.device != device:
            self._threshold_tensor = self._threshold_tensor.to(device)
        return _confusion_counts(
            y_true, y_pred, sample_weight, self._threshold_tensor,
            evenly=self._evenly, with_epsilon=self._with_epsilon, **options,
        )


class _ConfusionCount(_ThresholdMetric):
    """One confusion-matrix cell (tp, fp, tn or fn) per threshold."""

    _cell = 0  # index into (tp, fp, tn, fn)

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        parsed = _parse_thresholds(thresholds, 0.5)
        self._init_thresholds(parsed, _evenly_spaced(parsed), False)
        self.accumulator = self.add_variable((len(parsed),), name="accumulator")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.accumulator.add_(self._counts(y_true, y_pred, sample_weight)[self._cell])

    def result(self):
        return self.accumulator[0].clone() if len(self.thresholds) == 1 else self.accumulator.clone()

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


@_metric()
class TruePositives(_ConfusionCount):
    """The (weighted) number of true positives, at each threshold.

    Args:
        thresholds: a float or list of floats in [0, 1]; a prediction is positive when it
            exceeds the threshold; default 0.5. One threshold gives a scalar result.
        name: name of the metric, default ``"true_positives"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = TruePositives()
    >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
    >>> float(m.result())
    2.0
    """

    _cell = 0


@_metric()
class FalsePositives(_ConfusionCount):
    """The (weighted) number of false positives, at each threshold.

    Args:
        thresholds: a float or list of floats in [0, 1], default 0.5.
        name: name of the metric, default ``"false_positives"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = FalsePositives()
    >>> m.update_state([0, 1, 0, 0], [0, 0, 1, 1])
    >>> float(m.result())
    2.0
    """

    _cell = 1


@_metric()
class TrueNegatives(_ConfusionCount):
    """The (weighted) number of true negatives, at each threshold.

    Args:
        thresholds: a float or list of floats in [0, 1], default 0.5.
        name: name of the metric, default ``"true_negatives"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = TrueNegatives()
    >>> m.update_state([0, 1, 0, 0], [1, 1, 0, 0])
    >>> float(m.result())
    2.0
    """

    _cell = 2


@_metric()
class FalseNegatives(_ConfusionCount):
    """The (weighted) number of false negatives, at each threshold.

    Args:
        thresholds: a float or list of floats in [0, 1], default 0.5.
        name: name of the metric, default ``"false_negatives"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = FalseNegatives()
    >>> m.update_state([0, 1, 1, 1], [0, 1, 0, 0])
    >>> float(m.result())
    2.0
    """

    _cell = 3


class _PrecisionRecall(_ThresholdMetric):
    _other = "false_positives"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        parsed = _parse_thresholds(thresholds, 0.5 if top_k is None else _NEG_INF)
        self._init_thresholds(parsed, _evenly_spaced(parsed), False)
        self.true_positives = self.add_variable((len(parsed),), name="true_positives")
        setattr(self, self._other, self.add_variable((len(parsed),), name=self._other))

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, _, fn = self._counts(y_true, y_pred, sample_weight, top_k=self.top_k, class_id=self.class_id)
        self.true_positives.add_(tp)
        getattr(self, self._other).add_(fp if self._other == "false_positives" else fn)

    def result(self):
        value = _divide_no_nan(self.true_positives, self.true_positives + getattr(self, self._other))
        return value[0] if len(self.thresholds) == 1 else value

    def get_config(self):
        return {
            **super().get_config(),
            "thresholds": self.init_thresholds,
            "top_k": self.top_k,
            "class_id": self.class_id,
        }


@_metric()
class Precision(_PrecisionRecall):
    """The precision ``tp / (tp + fp)`` of the predictions, at each threshold.

    Args:
        thresholds: a float or list of floats in [0, 1]; a prediction is positive when it
            exceeds the threshold; default 0.5 (or "any score" when ``top_k`` is set).
        top_k: only the ``top_k`` highest predictions of each sample may count as positive.
        class_id: compute the metric for this class (last-axis index) only.
        name: name of the metric; defaults to ``"precision"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = Precision()
    >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
    >>> round(float(m.result()), 4)
    0.6667
    """

    _other = "false_positives"


@_metric()
class Recall(_PrecisionRecall):
    """The recall ``tp / (tp + fn)`` of the predictions, at each threshold.

    Args:
        thresholds: a float or list of floats in [0, 1]; a prediction is positive when it
            exceeds the threshold; default 0.5 (or "any score" when ``top_k`` is set).
        top_k: only the ``top_k`` highest predictions of each sample may count as positive.
        class_id: compute the metric for this class (last-axis index) only.
        name: name of the metric; defaults to ``"recall"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = Recall()
    >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
    >>> round(float(m.result()), 4)
    0.6667
    """

    _other = "false_negatives"


_CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
_SUMMATIONS = ("interpolation", "majoring", "minoring")


@_metric()
class AUC(_ThresholdMetric):
    """Approximate area under the ROC or precision-recall curve, from thresholded counts.

    Uses Keras's thresholds (``num_thresholds`` evenly spaced in [0, 1], the end points
    nudged by epsilon so that predictions of exactly 0 and 1 fall inside) and its summation
    formulas, including the interpolated precision-recall integral of Davis & Goadrich.

    Args:
        num_thresholds: number of thresholds, > 1; default 200.
        curve: ``"ROC"`` (default), ``"PR"`` or ``"PRGAIN"``.
        summation_method: ``"interpolation"`` (default), ``"minoring"`` or ``"majoring"``.
        name: name of the metric; defaults to ``"auc"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.
        thresholds: explicit thresholds in [0, 1] used instead of ``num_thresholds``.
        multi_label: treat each column of 2D data as its own label and average the per-label
            AUCs (default False: flatten everything into one curve).
        num_labels: number of labels when ``multi_label`` (otherwise taken from the first batch).
        label_weights: per-label weights; with ``multi_label`` they weight the average.
        from_logits: apply a sigmoid to ``y_pred`` first, default False.

    Example:
    >>> m = AUC(num_thresholds=3)
    >>> m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
    >>> float(m.result())
    0.75
    """

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None,
                 dtype=None, thresholds=None, multi_label=False, num_labels=None, label_weights=None,
                 from_logits=False):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if str(curve).lower() not in _CURVES:
            raise ValueError(f"AUC expects curve to be one of 'ROC', 'PR', 'PRGAIN'; received curve={curve!r}.")
        if str(summation_method).lower() not in _SUMMATIONS:
            raise ValueError(
                f"AUC expects summation_method to be one of {_SUMMATIONS}; received "
                f"summation_method={summation_method!r}."
            )
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
            evenly = _evenly_spaced(np.array([0.0] + inner + [1.0]))
        else:
            if num_thresholds <= 1:
                raise ValueError(f"AUC expects num_thresholds > 1; received num_thresholds={num_thresholds}.")
            self.num_thresholds = num_thresholds
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            evenly = True
        eps = config.epsilon()
        self._init_thresholds([0.0 - eps] + inner + [1.0 + eps], evenly, True)
        self.curve = _CURVES[str(curve).lower()]
        self.summation_method = str(summation_method).lower()
        self.multi_label = multi_label
        self.num_labels = num_labels
        self._label_weights = None if label_weights is None else [float(w) for w in label_weights]
        self.label_weights = (
            None if label_weights is None else torch.tensor(self._label_weights, dtype=config.torch_dtype(self.dtype))
        )
        self._from_logits = from_logits
        self._built = False
        if multi_label:
            if num_labels:
                self._build((None, num_labels))
        else:
            if num_labels:
                raise ValueError("AUC needs num_labels only when multi_label=True; received multi_label=False.")
            self._build(None)

    def _build(self, shape):
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError(
                    f"AUC with multi_label=True expects y_pred of rank 2; received shape {tuple(shape)}."
                )
            self._num_labels = shape[1]
            state_shape = (self.num_thresholds, self._num_labels)
        else:
            state_shape = (self.num_thresholds,)
        self.true_positives = self.add_variable(state_shape, name="true_positives")
        self.false_positives = self.add_variable(state_shape, name="false_positives")
        self.true_negatives = self.add_variable(state_shape, name="true_negatives")
        self.false_negatives = self.add_variable(state_shape, name="false_negatives")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        device = self._follow(_device_of(y_pred, y_true, sample_weight))
        if not self._built:
            self._build(tuple(y_pred.shape) if isinstance(y_pred, torch.Tensor) else np.shape(y_pred))
        if self._from_logits:
            y_pred = torch.sigmoid(_as_tensor(y_pred, config.torch_dtype(self.dtype), device))
        label_weights = None
        if self.label_weights is not None and not self.multi_label:
            self.label_weights = self.label_weights.to(device)
            label_weights = self.label_weights
        tp, fp, tn, fn = self._counts(
            y_true, y_pred, sample_weight, multi_label=self.multi_label, label_weights=label_weights
        )
        self.true_positives.add_(tp)
        self.false_positives.add_(fp)
        self.true_negatives.add_(tn)
        self.false_negatives.add_(fn)

    def _average_labels(self, terms):
        if not self.multi_label:
            return terms.sum()
        by_label = terms.sum(dim=0)
        if self.label_weights is None:
            return by_label.mean()
        weights = self.label_weights.to(by_label.device)
        return _divide_no_nan((by_label * weights).sum(), weights.sum())

    def _interpolate_pr_auc(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _divide_no_nan(dtp, torch.clamp(dp, min=0))
        intercept = tp[1:] - slope * p[1:]
        ratio = torch.where(
            (p[:-1] > 0) & (p[1:] > 0), _divide_no_nan(p[:-1], torch.clamp(p[1:], min=0)), torch.ones_like(p[1:])
        )
        increments = _divide_no_nan(slope * (dtp + intercept * torch.log(ratio)), torch.clamp(tp[1:] + fn[1:], min=0))
        return self._average_labels(increments)

    def result(self):
        if not self._built:  # multi_label without num_labels, before the first batch
            return torch.zeros((), dtype=config.torch_dtype(self.dtype), device=self._follow(None))
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc()
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:  # PRGAIN
            scale = _divide_no_nan(tp + fn, tn + fp)
            recall_gain = torch.where(tp == 0, 0.0, 1.0 - scale * _divide_no_nan(fn, tp))
            precision_gain = torch.where(tp == 0, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
            x, y = torch.clamp(recall_gain, min=0.0), precision_gain
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = torch.minimum(y[:-1], y[1:])
        else:
            heights = torch.maximum(y[:-1], y[1:])
        return self._average_labels((x[:-1] - x[1:]) * heights)

    def get_config(self):
        config = {
            **super().get_config(),
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": self._label_weights,
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config
