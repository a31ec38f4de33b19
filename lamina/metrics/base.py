"""Metric base machinery: ``Metric``, ``Sum``, ``Mean``, ``MeanMetricWrapper`` and shared helpers.

Owns state tensors, registration decorators, tensor coercion and the per-sample reduction.
Concrete metric families live in the sibling modules of ``lamina.metrics``.
"""

from __future__ import annotations

import inspect
import numbers
import re

import torch

from lamina import config, registry
from lamina.registry import register

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
    >>> from lamina.metrics import binary_accuracy
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
