"""Keras 3 metrics on torch: stateful ``Metric`` objects, their function forms and ``resolve``.

Owns the metric base class, the reduction, accuracy, regression, confusion-matrix (precision,
recall, AUC) and F-score metrics, and the compile-time rule that turns ``metrics=[...]`` entries
into ``Metric`` objects. State tensors follow the device of the inputs and are updated in place,
without host syncs. Losses, and the crossentropy/hinge metrics built on them, live elsewhere.
"""

from __future__ import annotations

import inspect
import numbers
import re

import numpy as np
import torch

from lamina import config, registry
from lamina.registry import register

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

_NEG_INF = -1e10  # Keras's stand-in for "below every threshold" when top_k filters predictions.
_FUNCTION_KIND = "metric_function"  # function forms; their names clash with the class aliases


# --------------------------------------------------------------------------- helpers


def _snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _function_form(fn):
    """Register a function form under its own kind, and under "metric" for serialization only.

    Every function form is defined before the class of the same snake_case name, whose
    registration then takes over the "metric" table entry: ``registry.serialize("metric",
    binary_accuracy)`` gives ``"binary_accuracy"``, which ``registry.get`` turns into an
    equivalent ``BinaryAccuracy()`` (same name, same values), as Keras's ``metrics.get`` does.
    """
    return register("metric")(register(_FUNCTION_KIND)(fn))


def _metric(*aliases: str):
    """Register a metric class under its name, Keras's snake_case name and ``aliases``."""

    def decorator(cls):
        return register("metric", aliases=(_snake_case(cls.__name__), *aliases))(cls)

    return decorator


def _dtype_name(dtype) -> str:
    dtype = getattr(dtype, "compute_dtype", dtype) or config.floatx()
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).replace("torch.", "")
    config.torch_dtype(dtype)  # raises a ValueError naming the bad dtype
    return str(dtype)


def _as_tensor(x, dtype=None, device=None) -> torch.Tensor:
    """A detached tensor: metric updates must never extend the autograd graph."""
    if isinstance(x, torch.Tensor):
        # Per-step path: skip the no-op detach/to calls (a python call each).
        if x.requires_grad:
            x = x.detach()
        if (dtype is not None and x.dtype != dtype) or (device is not None and x.device != device):
            x = x.to(device=device, dtype=dtype)
        return x
    return torch.as_tensor(x, dtype=dtype, device=device)


def _device_of(*xs):
    return next((x.device for x in xs if isinstance(x, torch.Tensor)), None)


def _match_rank(x1, x2, expand_rank_1=True):
    """Squeeze or expand a trailing size-1 axis when ranks differ by one (Keras's rule)."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2.unsqueeze(-1)
        else:
            x1 = x1.squeeze(-1)
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1.unsqueeze(-1)
        else:
            x2 = x2.squeeze(-1)
    return x1, x2


def _divide_no_nan(a, b):
    return torch.where(b == 0, torch.zeros_like(a), a / torch.where(b == 0, torch.ones_like(b), b))


def _float_pair(y_true, y_pred, float_pred=False):
    """``y_pred`` as a tensor, ``y_true`` converted to its dtype and device, ranks matched."""
    y_pred = _as_tensor(y_pred)
    if float_pred and not y_pred.is_floating_point():
        y_pred = y_pred.to(config.torch_dtype())
    y_true = _as_tensor(y_true, y_pred.dtype, y_pred.device)
    return y_true, y_pred


class _StateTensor(torch.Tensor):
    """A plain tensor plus Keras's ``assign`` / ``assign_add`` / ``assign_sub`` (all in place).

    Ops on it return ordinary tensors (torch-function dispatch is disabled, so no overhead);
    it exists so that Keras-style custom metrics (``self.var.assign(self.var + x)``) run.
    """

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def wrap(cls, tensor):
        return torch.Tensor._make_subclass(cls, tensor, False)

    def assign(self, value):
        self.copy_(_as_tensor(value))
        return self

    def assign_add(self, value):
        self.add_(_as_tensor(value, device=self.device))
        return self

    def assign_sub(self, value):
        self.sub_(_as_tensor(value, device=self.device))
        return self

    @property
    def value(self):
        return self

    def __deepcopy__(self, memo):
        out = _StateTensor.wrap(self.detach().clone())
        memo[id(self)] = out
        return out


# --------------------------------------------------------------------------- base class


@_metric()
class Metric:
    """Base class of all metrics: state tensors plus ``update_state`` / ``result`` / ``reset_state``.

    Subclasses create state with ``add_variable`` in ``__init__`` (or on the first update when
    its shape depends on the inputs), accumulate into it in place in ``update_state``, and
    compute the value in ``result``. State lives on the device of the inputs (built-in metrics
    move it there on the first update) and none of the methods syncs with the host, so metrics
    can run every training step.

    Args:
        dtype: dtype of the state and of the result; defaults to ``config.floatx()``.
        name: name of the metric (its key in the training logs); defaults to the snake_case
            class name.

    Example:
    >>> class Count(Metric):
    ...     def __init__(self, name="count", dtype=None):
    ...         super().__init__(name=name, dtype=dtype)
    ...         self.count = self.add_variable(shape=(), initializer="zeros", name="count")
    ...     def update_state(self, y_true, y_pred, sample_weight=None):
    ...         self.count.assign_add(len(y_true))
    ...     def result(self):
    ...         return self.count + 0
    >>> m = Count()
    >>> float(m([1, 2, 3], [1, 2, 3]))
    3.0
    """

    def __init__(self, dtype=None, name=None):
        self.name = name or _snake_case(type(self).__name__)
        self._dtype = _dtype_name(dtype)
        self._variables: list[torch.Tensor] = []
        self._device = None  # where the state lives; None until the first input or variable

    @property
    def dtype(self) -> str:
        """The dtype name of the state and result, e.g. ``'float32'``."""
        return self._dtype

    @property
    def variables(self) -> list[torch.Tensor]:
        """The state tensors, in creation order."""
        return list(self._variables)

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum", name=None):
        """Create a state tensor (zeros unless ``initializer`` says otherwise) and track it."""
        shape = tuple(int(d) for d in shape)
        torch_dtype = config.torch_dtype(dtype or self._dtype)
        if self._device is None:
            self._device = config.get_device()
        device = self._device
        if initializer in (None, "zeros", "Zeros"):
            value = torch.zeros(shape, dtype=torch_dtype, device=device)
        else:
            init = registry.get("initializer", initializer)
            value = torch.as_tensor(init(shape, dtype=torch_dtype), dtype=torch_dtype).to(device)
        variable = _StateTensor.wrap(value.reshape(shape))
        self._variables.append(variable)
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        """Alias of ``add_variable`` kept for Keras backward compatibility."""
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    def update_state(self, *args, **kwargs):
        """Accumulate statistics from one batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement update_state().")

    def result(self):
        """The metric value from the accumulated state (a tensor, never a Python number)."""
        raise NotImplementedError(f"{type(self).__name__} must implement result().")

    def reset_state(self):
        """Zero every state tensor in place (called between epochs)."""
        for variable in self._variables:
            variable.zero_()

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict:
        """The constructor arguments, as plain JSON types."""
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a metric from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

    def _follow(self, device) -> torch.device:
        """Move the state to ``device`` (or keep it where it is when ``device`` is None)."""
        if device is None:
            if self._device is None:
                self._device = config.get_device()
            return self._device
        if device != self._device:
            for variable in self._variables:
                moved = _StateTensor.wrap(variable.detach().to(device))
                try:
                    # Keeps the Python object (users hold references to it); unlike ``.data =``
                    # it works between any two devices, meta included.
                    torch.utils.swap_tensors(variable, moved)
                except RuntimeError:  # e.g. a weakref (torch.compile guards) pins the object
                    variable.data = moved.data
            self._device = device
        return device


# --------------------------------------------------------------------------- reductions


def _reduce_samplewise(values, sample_weight, reduce):
    """Keras's reduce_to_samplewise_values: per-sample values and weights."""
    if sample_weight is not None:
        values, sample_weight = _match_rank(values, sample_weight)
        weight_ndim, values_ndim = sample_weight.ndim, values.ndim
        if values_ndim > weight_ndim:
            values = reduce(values, dim=tuple(range(weight_ndim, values_ndim)))
        sample_weight = torch.broadcast_to(sample_weight, values.shape)
        values = values * sample_weight
        if weight_ndim > 1:
            sample_weight = reduce(sample_weight, dim=tuple(range(1, weight_ndim)))
    if values.ndim > 1:
        values = reduce(values, dim=tuple(range(1, values.ndim)))
    return values, sample_weight


@_metric()
class Sum(Metric):
    """The (weighted) sum of the values seen so far.

    Args:
        name: name of the metric, default ``"sum"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = Sum()
    >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    >>> float(m.result())
    4.0
    """

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), name="total")

    def update_state(self, values, sample_weight=None):
        device = self._follow(_device_of(values, sample_weight))
        dtype = self.total.dtype
        values = _as_tensor(values, dtype, device)
        if isinstance(sample_weight, numbers.Real):  # a scalar weight scales the whole batch
            self.total.add_(values.sum(), alpha=sample_weight)
            return
        if sample_weight is not None:
            sample_weight = _as_tensor(sample_weight, dtype, device)
        values, _ = _reduce_samplewise(values, sample_weight, torch.sum)
        self.total.add_(values.sum())

    def result(self):
        return self.total.clone()


@_metric()
class Mean(Metric):
    """The (weighted) mean of the values seen so far: ``total / count``.

    Values with more than one axis are first averaged per sample (over all but the first
    axis), as Keras does; a weight of 0 masks a sample.

    Args:
        name: name of the metric, default ``"mean"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.

    Example:
    >>> m = Mean()
    >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    >>> float(m.result())
    2.0
    """

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), name="total")
        self.count = self.add_variable((), name="count")

    def update_state(self, values, sample_weight=None):
        device = self._follow(_device_of(values, sample_weight))
        self._accumulate(values, sample_weight, device)

    def _accumulate(self, values, sample_weight, device):
        dtype = self.total.dtype
        values = _as_tensor(values, dtype, device)
        if isinstance(sample_weight, numbers.Real):
            # Keras averages the batch and weighs it once; done here without building a
            # device tensor from a Python number every step (the loss tracker's case).
            self.total.add_(values if values.ndim == 0 else values.mean(), alpha=sample_weight)
            self.count.add_(sample_weight)
            return
        if sample_weight is not None:
            sample_weight = _as_tensor(sample_weight, dtype, device)
        values, sample_weight = _reduce_samplewise(values, sample_weight, torch.mean)
        self.total.add_(values.sum())
        if sample_weight is not None:
            self.count.add_(sample_weight.sum())
        else:
            self.count.add_(values.shape[0] if values.ndim else 1)

    def result(self):
        return _divide_no_nan(self.total, self.count)


def _serialize_fn(fn):
    if hasattr(fn, "get_config") and not inspect.isfunction(fn):
        return registry.serialize("loss", fn)
    for kind in (_FUNCTION_KIND, "loss", "custom"):
        name = registry.registered_name(kind, fn)
        if name is not None:
            return {"class_name": "function", "config": name}
    raise ValueError(
        f"Cannot serialize the metric function {getattr(fn, '__name__', fn)!r}: it is not "
        f"registered. Register it with lamina.saving.register_serializable(), or pass a "
        f"registered function."
    )


def _deserialize_fn(config, custom_objects=None):
    if callable(config):
        return config
    if isinstance(config, dict) and config.get("class_name") != "function":
        return registry.get("loss", config, custom_objects)
    name = config["config"] if isinstance(config, dict) else config
    for kind in (_FUNCTION_KIND, "loss"):
        try:
            found = registry.lookup_class(kind, name, custom_objects)
        except (ValueError, ImportError):
            continue
        if not inspect.isclass(found):
            return found
    raise ValueError(
        f"Unknown metric function {name!r}. Expected one of: "
        f"{', '.join(registry.names(_FUNCTION_KIND))}, a registered loss function, or an entry "
        f"of custom_objects."
    )


@_metric()
class MeanMetricWrapper(Mean):
    """The weighted mean of a per-sample function ``fn(y_true, y_pred, **kwargs)``.

    Args:
        fn: the function; it receives tensors and returns one value per sample (or per
            element, which are averaged per sample).
        name: name of the metric; defaults to ``"mean_metric_wrapper"``.
        dtype: dtype of the state and result; defaults to ``config.floatx()``.
        **kwargs: further keyword arguments passed to ``fn`` on every call.

    Example:
    >>> m = MeanMetricWrapper(binary_accuracy, threshold=0.3)
    >>> float(m([1, 0], [0.4, 0.2]))
    1.0
    """

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or "mean_metric_wrapper", dtype=dtype)
        if not callable(fn):
            raise TypeError(
                f"MeanMetricWrapper expects a callable fn(y_true, y_pred); received {fn!r} of "
                f"type {type(fn).__name__}."
            )
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        device = self._follow(_device_of(y_pred, y_true, sample_weight))
        values = self._fn(_as_tensor(y_true, device=device), _as_tensor(y_pred, device=device), **self._fn_kwargs)
        self._accumulate(values, sample_weight, device)

    def get_config(self):
        return {**super().get_config(), "fn": _serialize_fn(self._fn), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "fn" in config:
            config["fn"] = _deserialize_fn(config["fn"])
        return cls(**config)


class _FnMetric(MeanMetricWrapper):
    """A MeanMetricWrapper whose function is fixed by the class; config = constructor args."""

    _config_keys: tuple[str, ...] = ()

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype}
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# --------------------------------------------------------------------------- accuracy


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


# --------------------------------------------------------------------------- regression


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


# --------------------------------------------------------------------------- confusion matrix


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


# --------------------------------------------------------------------------- F-scores


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


# --------------------------------------------------------------------------- module API


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

