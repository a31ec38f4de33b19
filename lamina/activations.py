"""Activation functions with Keras 3 names, signatures and string aliases.

Each function maps a tensor to a tensor of the same shape, mostly through one fused
``torch.nn.functional`` op, and is registered under the kind ``"activation"``.
Activation *layers* (``ReLU``, ``Softmax``, ...) live in ``lamina.layers``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina.registry import register

__all__ = [
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink", "threshold", "get", "serialize", "deserialize",
]


def _float_tensor(x) -> torch.Tensor:
    """``x`` as a floating-point tensor: python numbers become ``floatx()``, ints are cast."""
    if not isinstance(x, torch.Tensor):
        dtype = None if isinstance(x, (np.ndarray, np.generic)) else config.torch_dtype()
        x = torch.as_tensor(x, dtype=dtype)
    if not (x.is_floating_point() or x.is_complex()):
        x = x.to(config.torch_dtype())
    return x


def _keep_logits(output: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    # Keras tags sigmoid/softmax outputs with their logits so that a crossentropy
    # loss can work on the logits instead of the (less stable) probabilities.
    try:
        output._keras_logits = logits
    except AttributeError:
        pass
    return output


@register("activation")
def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Rectified linear unit: ``max(x, 0)``, optionally leaky, capped or shifted.

    Values above ``threshold`` pass through (capped at ``max_value``); values below
    it become ``negative_slope * (x - threshold)``.

    Args:
        x: input tensor.
        negative_slope: slope for values below ``threshold``. Defaults to 0.0.
        max_value: largest value returned, or None for no cap. Defaults to None.
        threshold: values at or below it are damped. Defaults to 0.0.

    Example:
    >>> relu(torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0]))
    tensor([ 0.,  0.,  0.,  5., 10.])
    >>> relu(torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0]), negative_slope=0.5, max_value=5.0)
    tensor([-5.0000, -2.5000,  0.0000,  5.0000,  5.0000])
    """
    x = _float_tensor(x)
    if threshold == 0 and max_value is None:
        return F.relu(x) if negative_slope == 0 else F.leaky_relu(x, negative_slope)
    if threshold != 0:
        positive = F.threshold(x, threshold, 0.0)
        if max_value is not None:
            positive = positive.clamp(0.0, max_value)
    else:
        positive = x.clamp(0.0, max_value)
    if negative_slope == 0:
        return positive
    return positive - negative_slope * F.relu(threshold - x)


@register("activation")
def leaky_relu(x, negative_slope=0.2):
    """Leaky ReLU: ``x`` if ``x >= 0`` else ``negative_slope * x``.

    Args:
        x: input tensor.
        negative_slope: slope of the negative part. Defaults to 0.2.

    Example:
    >>> leaky_relu(torch.tensor([-2.0, 3.0]))
    tensor([-0.4000,  3.0000])
    """
    return F.leaky_relu(_float_tensor(x), negative_slope)


@register("activation")
def relu6(x):
    """ReLU capped at 6: ``min(max(x, 0), 6)``.

    >>> relu6(torch.tensor([-1.0, 3.0, 9.0]))
    tensor([0., 3., 6.])
    """
    return F.relu6(_float_tensor(x))


@register("activation")
def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``.

    >>> sigmoid(torch.tensor([0.0]))
    tensor([0.5000])
    """
    x = _float_tensor(x)
    return _keep_logits(torch.sigmoid(x), x)


@register("activation")
def tanh(x):
    """Hyperbolic tangent.

    >>> tanh(torch.tensor([0.0]))
    tensor([0.])
    """
    return torch.tanh(_float_tensor(x))


def _axes(x: torch.Tensor, axis) -> tuple[int, ...]:
    # None means every axis (torch would read it as the last one).
    return tuple(range(x.ndim)) if axis is None else tuple(axis)


@register("activation")
def softmax(x, axis=-1):
    """Softmax ``exp(x) / sum(exp(x))`` along ``axis``: a probability distribution.

    Args:
        x: input tensor.
        axis: int, tuple of ints, or None (all axes) to normalise over. Defaults to -1.

    Example:
    >>> softmax(torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    tensor([[0.5000, 0.5000],
            [0.2689, 0.7311]])
    """
    x = _float_tensor(x)
    if isinstance(axis, int):
        output = F.softmax(x, dim=axis)
    else:
        output = torch.exp(x - torch.logsumexp(x, dim=_axes(x, axis), keepdim=True))
    return _keep_logits(output, x)


@register("activation")
def log_softmax(x, axis=-1):
    """Logarithm of the softmax, computed stably as ``x - logsumexp(x)``.

    Args:
        x: input tensor.
        axis: int, tuple of ints, or None (all axes) to normalise over. Defaults to -1.

    Example:
    >>> log_softmax(torch.tensor([0.0, 0.0]))
    tensor([-0.6931, -0.6931])
    """
    x = _float_tensor(x)
    if isinstance(axis, int):
        return F.log_softmax(x, dim=axis)
    return x - torch.logsumexp(x, dim=_axes(x, axis), keepdim=True)


@register("activation")
def linear(x):
    """Identity: returns ``x`` unchanged.

    >>> linear(3.0)
    3.0
    """
    return x


@register("activation")
def exponential(x):
    """Exponential ``exp(x)``.

    >>> exponential(torch.tensor([0.0]))
    tensor([1.])
    """
    return torch.exp(_float_tensor(x))


@register("activation")
def elu(x, alpha=1.0):
    """Exponential linear unit: ``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``.

    Args:
        x: input tensor.
        alpha: scale of the negative part. Defaults to 1.0.

    Example:
    >>> elu(torch.tensor([0.0, 2.0]))
    tensor([0., 2.])
    """
    return F.elu(_float_tensor(x), alpha)


@register("activation")
def selu(x):
    """Scaled ELU with the self-normalising constants (alpha≈1.6733, scale≈1.0507).

    Pair it with the ``lecun_normal`` initializer.

    >>> selu(torch.tensor([0.0, 1.0]))
    tensor([0.0000, 1.0507])
    """
    return F.selu(_float_tensor(x))


@register("activation")
def celu(x, alpha=1.0):
    """Continuously differentiable ELU: ``x`` if ``x >= 0`` else ``alpha * (exp(x / alpha) - 1)``.

    Args:
        x: input tensor.
        alpha: scale of the negative part. Defaults to 1.0.

    Example:
    >>> celu(torch.tensor([0.0, 2.0]))
    tensor([0., 2.])
    """
    return F.celu(_float_tensor(x), alpha)


@register("activation")
def gelu(x, approximate=False):
    """Gaussian error linear unit ``x * P(N(0, 1) <= x)``.

    Args:
        x: input tensor.
        approximate: use the tanh approximation. Defaults to False.

    Example:
    >>> gelu(torch.tensor([0.0, 1.0]))
    tensor([0.0000, 0.8413])
    """
    return F.gelu(_float_tensor(x), approximate="tanh" if approximate else "none")


@register("activation")
def softplus(x):
    """Softplus ``log(exp(x) + 1)``.

    >>> softplus(torch.tensor([0.0]))
    tensor([0.6931])
    """
    return F.softplus(_float_tensor(x))


@register("activation")
def softsign(x):
    """Softsign ``x / (abs(x) + 1)``.

    >>> softsign(torch.tensor([1.0, -3.0]))
    tensor([ 0.5000, -0.7500])
    """
    return F.softsign(_float_tensor(x))


@register("activation", aliases=("swish",))
def silu(x):
    """SiLU, also called Swish: ``x * sigmoid(x)``.

    >>> silu(torch.tensor([0.0, 1.0]))
    tensor([0.0000, 0.7311])
    """
    return F.silu(_float_tensor(x))


@register("activation")
def hard_sigmoid(x):
    """Piecewise-linear sigmoid: 0 below -3, 1 above 3, ``x / 6 + 0.5`` between.

    This is the Keras 3 definition (Keras 2 used ``0.2 * x + 0.5``).

    >>> hard_sigmoid(torch.tensor([-4.0, 0.0, 1.5, 4.0]))
    tensor([0.0000, 0.5000, 0.7500, 1.0000])
    """
    return F.hardsigmoid(_float_tensor(x))


@register("activation", aliases=("hard_swish",))
def hard_silu(x):
    """Hard SiLU (Hard Swish): ``x * hard_sigmoid(x)``.

    >>> hard_silu(torch.tensor([-4.0, 0.0, 4.0]))
    tensor([-0., 0., 4.])
    """
    return F.hardswish(_float_tensor(x))


@register("activation")
def hard_tanh(x):
    """Tanh clipped to a line: -1 below -1, 1 above 1, ``x`` between.

    >>> hard_tanh(torch.tensor([-2.0, 0.5, 2.0]))
    tensor([-1.0000,  0.5000,  1.0000])
    """
    return F.hardtanh(_float_tensor(x), -1.0, 1.0)


@register("activation")
def mish(x):
    """Mish ``x * tanh(softplus(x))``.

    >>> mish(torch.tensor([0.0]))
    tensor([0.])
    """
    return F.mish(_float_tensor(x))


@register("activation")
def log_sigmoid(x):
    """Logarithm of the sigmoid, ``-softplus(-x)``, computed stably.

    >>> log_sigmoid(torch.tensor([0.0]))
    tensor([-0.6931])
    """
    return F.logsigmoid(_float_tensor(x))


@register("activation")
def tanh_shrink(x):
    """Tanh shrink ``x - tanh(x)``.

    >>> tanh_shrink(torch.tensor([0.0]))
    tensor([0.])
    """
    return F.tanhshrink(_float_tensor(x))


@register("activation")
def soft_shrink(x, threshold=0.5):
    """Soft shrink: moves ``x`` towards 0 by ``threshold``; 0 inside ``[-threshold, threshold]``.

    Args:
        x: input tensor.
        threshold: width of the dead zone. Defaults to 0.5.

    Example:
    >>> soft_shrink(torch.tensor([-1.0, 0.2, 1.0]))
    tensor([-0.5000,  0.0000,  0.5000])
    """
    return F.softshrink(_float_tensor(x), threshold)


@register("activation")
def hard_shrink(x, threshold=0.5):
    """Hard shrink: ``x`` if ``abs(x) > threshold`` else 0.

    Args:
        x: input tensor.
        threshold: width of the dead zone. Defaults to 0.5.

    Example:
    >>> hard_shrink(torch.tensor([-1.0, 0.2, 1.0]))
    tensor([-1.,  0.,  1.])
    """
    return F.hardshrink(_float_tensor(x), threshold)


@register("activation")
def threshold(x, threshold, default_value):
    """``x`` if ``x > threshold`` else ``default_value``.

    Args:
        x: input tensor.
        threshold: values at or below it are replaced.
        default_value: the replacement value.

    Example:
    >>> threshold(torch.tensor([0.5, 2.0]), 1.0, -1.0)
    tensor([-1.,  2.])
    """
    return F.threshold(_float_tensor(x), threshold, default_value)


@register("activation")
def squareplus(x, b=4):
    """Squareplus ``(x + sqrt(x**2 + b)) / 2``, a smooth ReLU.

    Args:
        x: input tensor.
        b: smoothness, >= 0. Defaults to 4.

    Example:
    >>> squareplus(torch.tensor([0.0]))
    tensor([1.])
    """
    x = _float_tensor(x)
    return (x + torch.sqrt(x * x + b)) / 2


@register("activation")
def sparse_plus(x):
    """SparsePlus: 0 for ``x <= -1``, ``(x + 1)**2 / 4`` for ``-1 < x < 1``, ``x`` above.

    >>> sparse_plus(torch.tensor([-2.0, 0.0, 2.0]))
    tensor([0.0000, 0.2500, 2.0000])
    """
    x = _float_tensor(x)
    shifted = (x + 1).clamp(0.0, 2.0)
    return torch.where(x >= 1, x, 0.25 * shifted * shifted)


@register("activation")
def sparse_sigmoid(x):
    """Sparse sigmoid: 0 for ``x <= -1``, ``(x + 1) / 2`` between, 1 for ``x >= 1``.

    >>> sparse_sigmoid(torch.tensor([-2.0, 0.0, 2.0]))
    tensor([0.0000, 0.5000, 1.0000])
    """
    return ((_float_tensor(x) + 1) * 0.5).clamp(0.0, 1.0)


@register("activation")
def glu(x, axis=-1):
    """Gated linear unit: splits ``x`` in halves ``a, b`` along ``axis``; returns ``a * sigmoid(b)``.

    Args:
        x: input tensor; its size along ``axis`` must be even.
        axis: axis to split. Defaults to -1.

    Example:
    >>> glu(torch.tensor([2.0, 0.0]))
    tensor([1.])
    """
    return F.glu(_float_tensor(x), dim=axis)


@register("activation")
def sparsemax(x, axis=-1):
    """Sparsemax: the Euclidean projection of ``x`` onto the probability simplex.

    Like softmax it returns a distribution along ``axis``, but with exact zeros.

    Args:
        x: input tensor.
        axis: axis to normalise over. Defaults to -1.

    Example:
    >>> sparsemax(torch.tensor([1.0, 0.0, -1.0]))
    tensor([1., 0., 0.])
    """
    x = _float_tensor(x)
    ordered, _ = torch.sort(x, dim=axis, descending=True)
    cumulative = ordered.cumsum(dim=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    rank = torch.arange(1, x.shape[axis] + 1, device=x.device, dtype=x.dtype).view(shape)
    # The support holds the k largest entries with 1 + k * z_k > sum of the top k, and
    # tau uses the sum of the support (Keras 3.15 sums the cumulative sums instead,
    # keras-team/keras#23425, which does not give a distribution).
    support = (1 + rank * ordered > cumulative).to(x.dtype)
    size = support.sum(dim=axis, keepdim=True)
    tau = ((ordered * support).sum(dim=axis, keepdim=True) - 1) / size
    return (x - tau).clamp_min(0.0)


# Module-level aliases, as in keras.activations.
swish = silu
hard_swish = hard_silu


def get(identifier):
    """Resolve ``identifier`` to an activation callable.

    None gives ``linear``; a string gives the registered function; a config dict is
    deserialized; a callable (function or layer) is returned unchanged.

    Example:
    >>> get("swish") is silu, get(None) is linear
    (True, True)
    """
    if identifier is None:
        return linear
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return registry.get("activation", identifier)
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret activation identifier {identifier!r} of type "
        f"{type(identifier).__name__}. Expected None, a name such as 'relu', a config "
        f"dict, or a callable."
    )


def serialize(activation):
    """The name of a built-in activation (its canonical name for aliases).

    Activation objects with ``get_config`` become a ``{"class_name", "config"}`` dict.

    Example:
    >>> serialize(swish)
    'silu'
    """
    return registry.serialize("activation", activation)


def deserialize(config, custom_objects=None):
    """Turn a name or config dict (as written by ``serialize`` or Keras) into an activation.

    Args:
        config: a name, or a dict such as Keras's ``{"class_name": "function", "config": "relu"}``.
        custom_objects: optional dict of extra names to objects.

    Example:
    >>> deserialize({"class_name": "function", "config": "relu"}) is relu
    True
    """
    if isinstance(config, dict) and config.get("class_name") == "function":
        config = config.get("config")
    return registry.get("activation", config, custom_objects)
