"""Losses: the ``Loss`` base class with Keras's reductions, the built-in loss functions and classes.

Functions return per-sample losses; classes wrap them and reduce with ``sample_weight`` and masks.
String lookup (``"mse"``, ``"CategoricalCrossentropy"``) goes through ``lamina.registry``.
The functions double as Keras's metric functions (``keras.metrics.mean_squared_error``).
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina.registry import register

__all__ = [
    "Loss", "LossFunctionWrapper",
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "Huber", "LogCosh", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryFocalCrossentropy",
    "KLDivergence", "Poisson", "Hinge", "SquaredHinge", "CategoricalHinge", "CosineSimilarity",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "huber", "log_cosh", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_focal_crossentropy",
    "kl_divergence", "poisson", "hinge", "squared_hinge", "categorical_hinge", "cosine_similarity",
    "get", "serialize", "deserialize",
]

_REDUCTIONS = ("sum_over_batch_size", "sum", "none", None, "mean", "mean_with_sample_weight")
_MIXED_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
_NAME_COUNTS: dict[str, int] = {}


# ----------------------------------------------------------------------------- helpers


def _auto_name(class_name: str) -> str:
    """snake_case of ``class_name``, suffixed ``_1``, ``_2``... on reuse, as Keras names objects."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", class_name))
    name = re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
    count = _NAME_COUNTS.get(name, 0)
    _NAME_COUNTS[name] = count + 1
    return f"{name}_{count}" if count else name


def _tensor(x, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """``x`` as a tensor; numpy keeps its dtype, Python floats become ``floatx()`` as in Keras."""
    if isinstance(x, torch.Tensor):
        if (dtype is not None and x.dtype != dtype) or (device is not None and x.device != device):
            return x.to(device=device, dtype=dtype)
        return x
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
        if dtype is None and x.dtype == np.float64:
            dtype = config.torch_dtype()
    return torch.as_tensor(x, dtype=dtype, device=device)


def _pred_true(y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert ``y_pred`` to a float tensor and cast ``y_true`` to its dtype and device."""
    y_pred = _tensor(y_pred)
    if not y_pred.is_floating_point():
        y_pred = y_pred.to(config.torch_dtype())
    return _tensor(y_true, y_pred.dtype, y_pred.device), y_pred


def _check_broadcast(fn_name: str, y_true: torch.Tensor, y_pred: torch.Tensor) -> None:
    # A Python-side shape check: torch's own broadcast error is a RuntimeError naming no loss.
    if y_true.shape != y_pred.shape:
        try:
            torch.broadcast_shapes(y_true.shape, y_pred.shape)
        except RuntimeError:
            raise ValueError(
                f"{fn_name} expects y_true and y_pred of the same (or broadcastable) shape; "
                f"received y_true.shape={tuple(y_true.shape)} and "
                f"y_pred.shape={tuple(y_pred.shape)}. Reshape one of them so the shapes match."
            ) from None


def _squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1: bool = True):
    """Squeeze or expand a trailing size-1 axis when the ranks differ by exactly one, as Keras."""
    rank1, rank2 = x1.dim(), x2.dim()
    if rank1 == rank2 + 1 and x1.shape[-1] == 1:
        if rank2 == 1 and expand_rank_1:
            x2 = x2.unsqueeze(-1)
        else:
            x1 = x1.squeeze(-1)
    elif rank2 == rank1 + 1 and x2.shape[-1] == 1:
        if rank1 == 1 and expand_rank_1:
            x1 = x1.unsqueeze(-1)
        else:
            x2 = x2.squeeze(-1)
    return x1, x2


def _divide_no_nan(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    # Divide by a safe denominator first so that the unused branch has no NaN gradient.
    is_zero = denominator == 0
    safe = torch.where(is_zero, torch.ones_like(denominator), denominator)
    return torch.where(is_zero, torch.zeros_like(numerator), numerator / safe)


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"Invalid reduction={reduction!r}. Expected one of {list(_REDUCTIONS)}: "
            "'sum_over_batch_size' (the default) and 'mean' divide the sum by the number of "
            "loss values, 'mean_with_sample_weight' by the sum of the sample weights."
        )
    return reduction


def _resolve_dtype(dtype) -> str:
    if dtype is None:
        return config.floatx()
    if isinstance(dtype, torch.dtype):
        return str(dtype).replace("torch.", "")
    name = getattr(dtype, "compute_dtype", None) or getattr(dtype, "name", dtype)
    return _MIXED_POLICIES.get(name, name)


def _reduce_weighted_values(values, sample_weight=None, mask=None,
                            reduction="sum_over_batch_size", dtype=None):
    """Weight ``values`` by ``sample_weight`` and ``mask``, then reduce as Keras does."""
    dtype = values.dtype if dtype is None else dtype
    values = _tensor(values, dtype)
    if sample_weight is not None:
        sample_weight = _tensor(sample_weight, dtype, values.device)
    if mask is not None:
        mask = _tensor(mask, device=values.device)
        if reduction in ("mean", "sum_over_batch_size"):
            # Valid entries weigh total/valid, so that dividing by the total count later
            # divides by the number of valid entries instead.
            valid = mask.sum(dtype=dtype)
            weight = _divide_no_nan(torch.full_like(valid, mask.numel()), valid)
            float_mask = torch.where(mask.bool(), weight, torch.zeros_like(weight))
        else:
            float_mask = mask.to(dtype)
        if sample_weight is not None:
            float_mask, sample_weight = _squeeze_or_expand_to_same_rank(float_mask, sample_weight)
            sample_weight = sample_weight * float_mask
        else:
            sample_weight = float_mask
    if sample_weight is not None:
        values, sample_weight = _squeeze_or_expand_to_same_rank(values, sample_weight)
        try:
            torch.broadcast_shapes(values.shape, sample_weight.shape)
        except RuntimeError:
            raise ValueError(
                f"sample_weight of shape {tuple(sample_weight.shape)} cannot be broadcast to the "
                f"per-sample losses of shape {tuple(values.shape)}. Pass one weight per sample, "
                "of shape (batch,) or (batch, 1)."
            ) from None
        values = values * sample_weight
    if reduction in (None, "none") or values.dim() == 0 or tuple(values.shape) == (0,):
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return _divide_no_nan(values.sum(), sample_weight.sum().to(values.dtype))
    if values.numel():
        # Keras's sum / count; torch's mean is that sum divided by the count, in one op (one
        # autograd node fewer a step).
        return values.mean()
    return torch.zeros_like(values.sum())


# ----------------------------------------------------------------------------- base classes


@register("loss")
class Loss:
    """Base class of losses: subclasses implement ``call(y_true, y_pred)``.

    ``__call__`` converts both inputs to ``dtype``, runs ``call`` to get per-sample
    losses, multiplies them by ``sample_weight`` (and any ``_keras_mask`` on ``y_pred``
    or on the losses) and reduces them to a 0-d tensor.

    Args:
        name: name of the instance; defaults to the snake_case class name.
        reduction: ``"sum_over_batch_size"`` (default) and ``"mean"`` sum the weighted
            losses and divide by their count (not by the sum of the weights);
            ``"mean_with_sample_weight"`` divides by the sum of the weights; ``"sum"``
            sums; ``"none"`` or ``None`` returns the weighted per-sample losses.
        dtype: dtype of the computation; defaults to ``lamina.config.floatx()``.

    Example:
    >>> class Absolute(Loss):
    ...     def call(self, y_true, y_pred):
    ...         return (y_pred - y_true).abs().mean(dim=-1)
    >>> float(Absolute()([[0.0, 1.0]], [[1.0, 1.0]]))
    0.5
    """

    # Subclasses whose labels are integer class ids keep them unconverted.
    _cast_y_true = True

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or _auto_name(type(self).__name__)
        self.reduction = _check_reduction(reduction)
        self._dtype = _resolve_dtype(dtype)

    @property
    def dtype(self) -> str:
        """Name of the dtype the loss computes in, e.g. ``"float32"``."""
        return self._dtype

    def __call__(self, y_true, y_pred, sample_weight=None):
        in_mask = getattr(y_pred, "_keras_mask", None)
        dtype = config.torch_dtype(self._dtype)
        y_pred = _tensor(y_pred, dtype)
        y_true = _tensor(y_true, dtype if self._cast_y_true else None, y_pred.device)
        losses = self.call(y_true, y_pred)
        out_mask = getattr(losses, "_keras_mask", None)
        if in_mask is not None and out_mask is not None:
            mask = in_mask.bool() & out_mask.bool()
        else:
            mask = in_mask if out_mask is None else out_mask
        return _reduce_weighted_values(losses, sample_weight, mask, self.reduction, dtype)

    def call(self, y_true, y_pred):
        """Per-sample losses for ``y_true`` and ``y_pred``; subclasses implement it."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement call(y_true, y_pred) returning "
            "per-sample losses."
        )

    def get_config(self) -> dict:
        """The constructor arguments as plain JSON types (Keras's keys)."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a loss from ``get_config()``."""
        return cls(**config)


@register("loss")
class LossFunctionWrapper(Loss):
    """A ``Loss`` around a function ``fn(y_true, y_pred, **kwargs)`` of per-sample losses.

    ``compile`` uses it for the functions users pass as ``loss``. Before calling ``fn``
    a trailing size-1 axis is squeezed or added so ``y_true`` and ``y_pred`` have the
    same rank, as Keras does.

    Args:
        fn: the loss function.
        reduction: how to reduce the per-sample losses; see ``Loss``.
            Defaults to ``"sum_over_batch_size"``.
        name: name of the instance; defaults to ``"loss_function_wrapper"``.
        dtype: dtype of the computation; defaults to ``floatx()``.
        **kwargs: further keyword arguments passed to ``fn``.

    Example:
    >>> loss = LossFunctionWrapper(mean_squared_error, reduction="sum")
    >>> float(loss([[0.0], [1.0]], [[1.0], [1.0]]))
    1.0
    """

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not callable(fn):
            raise TypeError(
                f"LossFunctionWrapper expects a callable fn(y_true, y_pred); received {fn!r}."
            )
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        try:
            fn = registry.serialize("loss", self.fn)
        except ValueError:
            # Unregistered function: store its name, as Keras does; loading it needs custom_objects.
            fn = getattr(self.fn, "__name__", repr(self.fn))
        config["fn"] = fn
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if "fn" in config:
            config["fn"] = registry.get("loss", config["fn"])
        return cls(**config)

    def __repr__(self):
        return f"<LossFunctionWrapper({self.fn}, kwargs={self._fn_kwargs})>"


class _BuiltinLoss(LossFunctionWrapper):
    """A built-in loss class: its function's keyword arguments are its own attributes and config."""

    def __init__(self, fn, reduction, name, dtype, **kwargs):
        super().__init__(fn, reduction=reduction, name=name, dtype=dtype, **kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)

    def get_config(self) -> dict:
        return {**Loss.get_config(self), **self._fn_kwargs}


# ----------------------------------------------------------------------------- regression


@register("loss", aliases=("mse", "MSE"))
def mean_squared_error(y_true, y_pred):
    """Mean of ``(y_true - y_pred) ** 2`` over the last axis.

    >>> mean_squared_error([[1.0, 0.0]], [[0.5, 1.0]])
    tensor([0.6250])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast("mean_squared_error", y_true, y_pred)
    return (y_true - y_pred).square().mean(dim=-1)


@register("loss", aliases=("mae", "MAE"))
def mean_absolute_error(y_true, y_pred):
    """Mean of ``|y_true - y_pred|`` over the last axis.

    >>> mean_absolute_error([[1.0, 0.0]], [[0.5, 1.0]])
    tensor([0.7500])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast("mean_absolute_error", y_true, y_pred)
    return (y_true - y_pred).abs().mean(dim=-1)


@register("loss", aliases=("mape", "MAPE"))
def mean_absolute_percentage_error(y_true, y_pred):
    """``100 * mean(|y_true - y_pred| / max(|y_true|, epsilon))`` over the last axis.

    >>> mean_absolute_percentage_error([[100.0, 200.0]], [[90.0, 210.0]])
    tensor([7.5000])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast("mean_absolute_percentage_error", y_true, y_pred)
    diff = ((y_true - y_pred) / y_true.abs().clamp_min(config.epsilon())).abs()
    return 100.0 * diff.mean(dim=-1)


@register("loss", aliases=("msle", "MSLE"))
def mean_squared_logarithmic_error(y_true, y_pred):
    """Mean of ``(log(y_pred + 1) - log(y_true + 1)) ** 2``, inputs floored at epsilon.

    >>> mean_squared_logarithmic_error([[0.0]], [[math.e - 1]])
    tensor([1.])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast("mean_squared_logarithmic_error", y_true, y_pred)
    eps = config.epsilon()
    diff = torch.log(y_pred.clamp_min(eps) + 1.0) - torch.log(y_true.clamp_min(eps) + 1.0)
    return diff.square().mean(dim=-1)


@register("loss", aliases=("huber_loss",))
def huber(y_true, y_pred, delta=1.0):
    """Huber loss: ``0.5 * e**2`` where ``|e| <= delta``, else ``delta * (|e| - 0.5 * delta)``.

    Averaged over the last axis; ``e = y_pred - y_true``.

    >>> huber([[0.0, 0.0]], [[0.5, 3.0]])
    tensor([1.3125])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast("huber", y_true, y_pred)
    if isinstance(delta, torch.Tensor):
        error = (y_pred - y_true).abs()
        delta = delta.to(error)
        quadratic = 0.5 * error.square()
        return torch.where(error <= delta, quadratic, delta * error - 0.5 * delta.square()).mean(-1)
    y_pred, y_true = torch.broadcast_tensors(y_pred, y_true)
    return F.huber_loss(y_pred, y_true, reduction="none", delta=float(delta)).mean(dim=-1)


@register("loss", aliases=("logcosh",))
def log_cosh(y_true, y_pred):
    """Mean of ``log(cosh(y_pred - y_true))`` over the last axis, computed without overflow.

    >>> log_cosh([[0.0]], [[1.0]])
    tensor([0.4338])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast("log_cosh", y_true, y_pred)
    error = y_pred - y_true
    # log(cosh(x)) = x + softplus(-2x) - log(2) stays finite for large |x|.
    return (error + F.softplus(-2.0 * error) - math.log(2.0)).mean(dim=-1)


@register("loss")
def cosine_similarity(y_true, y_pred, axis=-1):
    """Negative cosine similarity along ``axis``: -1 for parallel vectors, 0 for orthogonal.

    >>> cosine_similarity([[1.0, 0.0], [1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]])
    tensor([-1., 0.])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    y_true, y_pred = _squeeze_or_expand_to_same_rank(y_true, y_pred)
    _check_broadcast("cosine_similarity", y_true, y_pred)
    eps = config.epsilon()
    y_true = F.normalize(y_true, dim=axis, eps=eps)
    y_pred = F.normalize(y_pred, dim=axis, eps=eps)
    return -(y_true * y_pred).sum(dim=axis)


# ----------------------------------------------------------------------------- probabilistic


@register("loss", aliases=("kld", "KLD", "kullback_leibler_divergence"))
def kl_divergence(y_true, y_pred):
    """``sum(y_true * log(y_true / y_pred))`` over the last axis, both clipped to [epsilon, 1].

    >>> kl_divergence([[0.5, 0.5]], [[0.25, 0.75]])
    tensor([0.1438])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    _check_broadcast("kl_divergence", y_true, y_pred)
    eps = config.epsilon()
    y_true = y_true.clamp(eps, 1.0)
    y_pred = y_pred.clamp(eps, 1.0)
    return (y_true * torch.log(y_true / y_pred)).sum(dim=-1)


@register("loss")
def poisson(y_true, y_pred):
    """Mean of ``y_pred - y_true * log(y_pred + epsilon)`` over the last axis.

    >>> poisson([[1.0]], [[math.e]])
    tensor([1.7183])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    _check_broadcast("poisson", y_true, y_pred)
    return (y_pred - y_true * torch.log(y_pred + config.epsilon())).mean(dim=-1)


def _check_same_shape(fn_name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{fn_name} expects y_true and y_pred of the same shape; received "
            f"y_true.shape={tuple(y_true.shape)} and y_pred.shape={tuple(y_pred.shape)}. "
            "Reshape y_true to y_pred's shape."
        )


@register("loss", aliases=("bce", "BCE"))
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary crossentropy, averaged over ``axis``.

    Probabilities are clipped to [epsilon, 1 - epsilon]; with ``from_logits=True`` the
    fused, numerically stable ``binary_cross_entropy_with_logits`` is used. Label
    smoothing moves targets towards 0.5: ``y * (1 - s) + 0.5 * s``.

    >>> binary_crossentropy([[1.0, 0.0]], [[0.9, 0.2]])
    tensor([0.1643])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    _check_same_shape("binary_crossentropy", y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        losses = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
    else:
        eps = config.epsilon()
        losses = F.binary_cross_entropy(y_pred.clamp(eps, 1.0 - eps), y_true, reduction="none")
    return losses.mean(dim=axis)


@register("loss")
def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25,
                              gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary crossentropy scaled by ``(1 - p_t) ** gamma``, averaged over ``axis``.

    ``p_t`` is the predicted probability of the true class; with
    ``apply_class_balancing=True`` positives are further weighted by ``alpha`` and
    negatives by ``1 - alpha``.

    >>> binary_focal_crossentropy([[1.0, 0.0]], [[0.9, 0.2]], gamma=0.0)
    tensor([0.1643])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    _check_same_shape("binary_focal_crossentropy", y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = torch.sigmoid(y_pred)
    eps = config.epsilon()
    bce = F.binary_cross_entropy(y_pred.clamp(eps, 1.0 - eps), y_true, reduction="none")
    p_t = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
    focal_bce = (1.0 - p_t).pow(gamma) * bce
    if apply_class_balancing:
        focal_bce = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * focal_bce
    return focal_bce.mean(dim=axis)


def _categorical_shape_error(y_true, y_pred):
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    message = (
        f"categorical_crossentropy expects one-hot y_true of the same shape as y_pred; "
        f"received y_true.shape={true_shape} and y_pred.shape={pred_shape}."
    )
    looks_sparse = y_true.dim() == y_pred.dim() - 1 or (
        y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1
    )
    if looks_sparse:
        message += (
            " These look like integer class labels: use loss='sparse_categorical_crossentropy' "
            "(or SparseCategoricalCrossentropy()), or one-hot encode the labels with "
            "lamina.utils.to_categorical(y, num_classes)."
        )
    return ValueError(message)


@register("loss")
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Crossentropy between one-hot (or soft) labels and predictions along ``axis``.

    Probabilities are renormalized to sum to 1 and clipped to [epsilon, 1 - epsilon];
    with ``from_logits=True`` a stable ``log_softmax`` is used. Label smoothing mixes
    the labels with the uniform distribution: ``y * (1 - s) + s / num_classes``. For
    integer labels use ``sparse_categorical_crossentropy``.

    >>> categorical_crossentropy([[0.0, 1.0, 0.0]], [[0.05, 0.9, 0.05]])
    tensor([0.1054])
    """
    if isinstance(axis, bool):
        raise ValueError(f"categorical_crossentropy expects an int axis; received axis={axis!r}.")
    y_true, y_pred = _pred_true(y_true, y_pred)
    if y_true.shape != y_pred.shape:
        raise _categorical_shape_error(y_true, y_pred)
    if y_pred.dim() < 1:
        raise ValueError("categorical_crossentropy expects y_pred of rank >= 1; received a scalar.")
    if y_pred.shape[-1] == 1:
        warnings.warn(
            "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, "
            f"num_classes) with num_classes > 1. Received: y_pred.shape={tuple(y_pred.shape)}. "
            "Consider using 'binary_crossentropy' if you only have 2 classes.",
            stacklevel=2,
        )
    if label_smoothing:
        # Keras counts classes along the last axis whatever ``axis`` is.
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]
    if from_logits:
        log_prob = F.log_softmax(y_pred, dim=axis)
    else:
        eps = config.epsilon()
        y_pred = y_pred / y_pred.sum(dim=axis, keepdim=True)
        log_prob = torch.log(y_pred.clamp(eps, 1.0 - eps))
    return -(y_true * log_prob).sum(dim=axis)


@register("loss")
def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Crossentropy between integer class labels and predicted class scores along ``axis``.

    ``y_true`` holds class ids, of ``y_pred``'s shape without the class axis (a
    trailing size-1 axis is allowed). Uses torch's fused ``cross_entropy`` /
    ``nll_loss``, so no one-hot matrix is built. Entries whose label equals
    ``ignore_class`` get loss 0 and are masked out of the reduction of a ``Loss``.

    >>> sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    tensor([0.0513, 2.3026])
    """
    y_pred = _tensor(y_pred)
    if not y_pred.is_floating_point():
        y_pred = y_pred.to(config.torch_dtype())
    y_true = _tensor(y_true, device=y_pred.device)
    if y_pred.dim() < 1:
        raise ValueError(
            "sparse_categorical_crossentropy expects y_pred of rank >= 1; received a scalar."
        )
    class_axis = axis % y_pred.dim()
    if y_true.dim() == y_pred.dim() and y_true.shape[class_axis] == 1:
        y_true = y_true.squeeze(class_axis)
    expected = y_pred.shape[:class_axis] + y_pred.shape[class_axis + 1:]
    if y_true.shape != expected:
        hint = (
            " y_true looks one-hot encoded: use loss='categorical_crossentropy' instead."
            if y_true.shape == y_pred.shape
            else " Pass one integer class id per sample."
        )
        raise ValueError(
            "sparse_categorical_crossentropy expects integer labels y_true of y_pred's shape "
            f"without the class axis, i.e. {tuple(expected)}; received "
            f"y_true.shape={tuple(y_true.shape)} and y_pred.shape={tuple(y_pred.shape)}.{hint}"
        )
    target = y_true.long()
    # torch wants the class axis at position 1 (and a batch axis).
    if y_pred.dim() == 1:
        scores, target = y_pred.unsqueeze(0), target.unsqueeze(0)
    else:
        scores = y_pred.movedim(class_axis, 1) if class_axis != 1 else y_pred
    ignore_index = -100 if ignore_class is None else int(ignore_class)
    if from_logits:
        losses = F.cross_entropy(scores, target, reduction="none", ignore_index=ignore_index)
    else:
        eps = config.epsilon()
        scores = (scores / scores.sum(dim=1, keepdim=True)).clamp(eps, 1.0 - eps)
        losses = F.nll_loss(torch.log(scores), target, reduction="none", ignore_index=ignore_index)
    if y_pred.dim() == 1:
        losses = losses.squeeze(0)
    if ignore_class is not None:
        losses._keras_mask = (target != ignore_index).reshape(losses.shape)
    return losses


# ----------------------------------------------------------------------------- hinge


def _hinge_labels(y_true):
    # Labels that are all 0/1 become -1/+1; computing both and selecting avoids a host sync.
    is_binary = ((y_true == 0) | (y_true == 1)).all()
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)


@register("loss")
def hinge(y_true, y_pred):
    """Mean of ``max(1 - y_true * y_pred, 0)`` over the last axis; 0/1 labels become -1/1.

    >>> hinge([[1.0, 0.0]], [[0.5, -2.0]])
    tensor([0.2500])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    _check_broadcast("hinge", y_true, y_pred)
    return (1.0 - _hinge_labels(y_true) * y_pred).clamp_min(0.0).mean(dim=-1)


@register("loss")
def squared_hinge(y_true, y_pred):
    """Mean of ``max(1 - y_true * y_pred, 0) ** 2`` over the last axis; 0/1 labels become -1/1.

    >>> squared_hinge([[1.0, 0.0]], [[0.5, -2.0]])
    tensor([0.1250])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    _check_broadcast("squared_hinge", y_true, y_pred)
    return (1.0 - _hinge_labels(y_true) * y_pred).clamp_min(0.0).square().mean(dim=-1)


@register("loss")
def categorical_hinge(y_true, y_pred):
    """Categorical hinge ``max(neg - pos + 1, 0)`` for one-hot labels.

    ``pos = sum(y_true * y_pred)`` and ``neg = max((1 - y_true) * y_pred)`` over the last axis.

    >>> categorical_hinge([[0.0, 1.0, 0.0]], [[0.3, 0.6, 0.1]])
    tensor([0.7000])
    """
    y_true, y_pred = _pred_true(y_true, y_pred)
    _check_broadcast("categorical_hinge", y_true, y_pred)
    pos = (y_true * y_pred).sum(dim=-1)
    neg = ((1.0 - y_true) * y_pred).amax(dim=-1)
    return (neg - pos + 1.0).clamp_min(0.0)


# ----------------------------------------------------------------------------- classes


@register("loss")
class MeanSquaredError(_BuiltinLoss):
    """Mean of squared errors between labels and predictions; see ``mean_squared_error``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"mean_squared_error"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(MeanSquaredError()([1.0, 0.0, 1.0], [0.9, 0.1, 0.8]))
    0.02
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, reduction, name, dtype)


@register("loss")
class MeanAbsoluteError(_BuiltinLoss):
    """Mean of absolute errors between labels and predictions; see ``mean_absolute_error``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"mean_absolute_error"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(MeanAbsoluteError()([1.0, 0.3, 1.0], [1.9, 0.3, 1.8]))
    0.5666667
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, reduction, name, dtype)


@register("loss")
class MeanAbsolutePercentageError(_BuiltinLoss):
    """Mean absolute percentage error; see ``mean_absolute_percentage_error``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"mean_absolute_percentage_error"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(MeanAbsolutePercentageError()([100.0, 200.0, 300.0], [90.0, 210.0, 310.0]))
    6.111111
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_percentage_error",
                 dtype=None):
        super().__init__(mean_absolute_percentage_error, reduction, name, dtype)


@register("loss")
class MeanSquaredLogarithmicError(_BuiltinLoss):
    """Mean squared logarithmic error; see ``mean_squared_logarithmic_error``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"mean_squared_logarithmic_error"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(MeanSquaredLogarithmicError()([[0.0]], [[math.e - 1]]))
    1.0
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_logarithmic_error",
                 dtype=None):
        super().__init__(mean_squared_logarithmic_error, reduction, name, dtype)


@register("loss")
class Huber(_BuiltinLoss):
    """Huber loss, quadratic for errors up to ``delta`` and linear beyond; see ``huber``.

    Args:
        delta: the error at which the loss turns from quadratic to linear. Defaults to 1.0.
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"huber_loss"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(Huber(delta=2.0)([[0.0, 0.0]], [[1.0, 4.0]]))
    3.25
    """

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(huber, reduction, name, dtype, delta=delta)


@register("loss")
class LogCosh(_BuiltinLoss):
    """Logarithm of the hyperbolic cosine of the prediction error; see ``log_cosh``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"log_cosh"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(LogCosh()([[0.0]], [[1.0]]))
    0.4338
    """

    def __init__(self, reduction="sum_over_batch_size", name="log_cosh", dtype=None):
        super().__init__(log_cosh, reduction, name, dtype)


@register("loss")
class CosineSimilarity(_BuiltinLoss):
    """Negative cosine similarity between labels and predictions; see ``cosine_similarity``.

    Args:
        axis: the axis along which the similarity is computed. Defaults to -1.
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"cosine_similarity"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(CosineSimilarity()([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]))
    -0.5
    """

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity",
                 dtype=None):
        super().__init__(cosine_similarity, reduction, name, dtype, axis=axis)


@register("loss")
class KLDivergence(_BuiltinLoss):
    """Kullback-Leibler divergence between labels and predictions; see ``kl_divergence``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"kl_divergence"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(KLDivergence()([[0.5, 0.5]], [[0.25, 0.75]]))
    0.1438
    """

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None):
        super().__init__(kl_divergence, reduction, name, dtype)


@register("loss")
class Poisson(_BuiltinLoss):
    """Poisson loss ``y_pred - y_true * log(y_pred)``; see ``poisson``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"poisson"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(Poisson()([[1.0]], [[math.e]]))
    1.7183
    """

    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None):
        super().__init__(poisson, reduction, name, dtype)


@register("loss")
class BinaryCrossentropy(_BuiltinLoss):
    """Crossentropy for binary (0/1) labels; see ``binary_crossentropy``.

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
            Defaults to False.
        label_smoothing: in [0, 1]; smooths labels towards 0.5. Defaults to 0.0.
        axis: the axis to average over. Defaults to -1.
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"binary_crossentropy"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> bce = BinaryCrossentropy(from_logits=True)
    >>> float(bce([[0.0, 1.0]], [[0.0, 0.0]]))
    0.6931
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(binary_crossentropy, reduction, name, dtype, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis)


@register("loss")
class BinaryFocalCrossentropy(_BuiltinLoss):
    """Binary crossentropy that down-weights easy examples; see ``binary_focal_crossentropy``.

    Args:
        apply_class_balancing: whether to weight positives by ``alpha`` and negatives
            by ``1 - alpha``. Defaults to False.
        alpha: the class-balancing weight. Defaults to 0.25.
        gamma: the focusing exponent. Defaults to 2.0.
        from_logits: whether ``y_pred`` holds logits. Defaults to False.
        label_smoothing: in [0, 1]; smooths labels towards 0.5. Defaults to 0.0.
        axis: the axis to average over. Defaults to -1.
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"binary_focal_crossentropy"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(BinaryFocalCrossentropy(gamma=0.0)([[1.0, 0.0]], [[0.9, 0.2]]))
    0.1643
    """

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                 label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_focal_crossentropy", dtype=None):
        super().__init__(binary_focal_crossentropy, reduction, name, dtype,
                         apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


@register("loss")
class CategoricalCrossentropy(_BuiltinLoss):
    """Crossentropy for one-hot labels; see ``categorical_crossentropy``.

    For integer labels use ``SparseCategoricalCrossentropy``.

    Args:
        from_logits: whether ``y_pred`` holds logits. Defaults to False.
        label_smoothing: in [0, 1]; mixes labels with the uniform distribution.
            Defaults to 0.0.
        axis: the class axis. Defaults to -1.
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"categorical_crossentropy"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> cce = CategoricalCrossentropy()
    >>> float(cce([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]))
    1.177
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(categorical_crossentropy, reduction, name, dtype, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis)


@register("loss")
class SparseCategoricalCrossentropy(_BuiltinLoss):
    """Crossentropy for integer class labels; see ``sparse_categorical_crossentropy``.

    Labels stay integers (they are not cast to ``dtype``), of shape ``(batch,)`` or
    ``(batch, 1)``. With ``ignore_class``, entries of that label are masked out and
    ``"sum_over_batch_size"`` divides by the number of remaining entries.

    Args:
        from_logits: whether ``y_pred`` holds logits. Defaults to False.
        ignore_class: a label value whose entries are ignored. Defaults to None.
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        axis: the class axis of ``y_pred``. Defaults to -1.
        name: defaults to ``"sparse_categorical_crossentropy"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> scce = SparseCategoricalCrossentropy()
    >>> float(scce([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]))
    1.177
    """

    _cast_y_true = False

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(sparse_categorical_crossentropy, reduction, name, dtype,
                         from_logits=from_logits, ignore_class=ignore_class, axis=axis)


@register("loss")
class Hinge(_BuiltinLoss):
    """Hinge loss for -1/1 (or 0/1) labels; see ``hinge``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"hinge"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(Hinge()([[1.0, 0.0]], [[0.5, -2.0]]))
    0.25
    """

    def __init__(self, reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(hinge, reduction, name, dtype)


@register("loss")
class SquaredHinge(_BuiltinLoss):
    """Squared hinge loss for -1/1 (or 0/1) labels; see ``squared_hinge``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"squared_hinge"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(SquaredHinge()([[1.0, 0.0]], [[0.5, -2.0]]))
    0.125
    """

    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge", dtype=None):
        super().__init__(squared_hinge, reduction, name, dtype)


@register("loss")
class CategoricalHinge(_BuiltinLoss):
    """Categorical hinge loss for one-hot labels; see ``categorical_hinge``.

    Args:
        reduction: see ``Loss``; defaults to ``"sum_over_batch_size"``.
        name: defaults to ``"categorical_hinge"``.
        dtype: dtype of the computation; defaults to ``floatx()``.

    Example:
    >>> float(CategoricalHinge()([[0.0, 1.0, 0.0]], [[0.3, 0.6, 0.1]]))
    0.7
    """

    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge", dtype=None):
        super().__init__(categorical_hinge, reduction, name, dtype)


# ----------------------------------------------------------------------------- lookup


def get(identifier):
    """Resolve a loss: a function name gives the function, a class name an instance.

    A config dict gives ``from_config``; a callable is returned unchanged.

    >>> get("mse").__name__
    'mean_squared_error'
    >>> get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}}).from_logits
    True
    """
    return registry.get("loss", identifier)


def serialize(loss):
    """A registered function's name, or ``{"class_name": ..., "config": ...}`` for a ``Loss``.

    >>> serialize(Huber(delta=2.0))["config"]["delta"]
    2.0
    """
    return registry.serialize("loss", loss)


def deserialize(name, custom_objects=None):
    """Inverse of ``serialize``: a loss from a name or a config dict.

    >>> deserialize("mae").__name__
    'mean_absolute_error'
    """
    return registry.get("loss", name, custom_objects)
