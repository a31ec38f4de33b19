"""NumPy helpers from ``keras.utils``: one-hot encoding and normalisation.

NumPy (and list) inputs give NumPy arrays; torch tensors give torch tensors, as Keras
on its torch backend does.
"""

from __future__ import annotations

import numpy as np
import torch

from lamina import config

__all__ = ["to_categorical", "normalize"]


def to_categorical(x, num_classes=None):
    """One-hot encode integer class labels, as ``keras.utils.to_categorical``.

    Args:
        x: array-like (or torch tensor) of integer labels in ``[0, num_classes)``;
            a trailing axis of size 1 is dropped, as in Keras.
        num_classes: number of classes; default ``max(x) + 1``.

    Returns:
        A float64 NumPy array of shape ``x.shape + (num_classes,)`` as Keras 3
        returns (a ``floatx()`` tensor when ``x`` is a torch tensor).

    >>> to_categorical([0, 2, 1], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]])
    """
    is_tensor = isinstance(x, torch.Tensor)
    labels = x.detach().cpu().numpy() if is_tensor else np.asarray(x)
    if labels.dtype.kind == "f":
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError("to_categorical expects integer class labels; received non-integer floats.")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"to_categorical expects integer class labels; received dtype {labels.dtype}.")
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical expects labels >= 0; received a minimum of {labels.min()}.")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"to_categorical received label {int(labels.max())}, which is out of range for "
            f"num_classes={num_classes}. Labels must lie in [0, num_classes)."
        )
    out = np.zeros(labels.shape + (int(num_classes),), dtype=np.float64)
    np.put_along_axis(out, labels[..., None], 1.0, axis=-1)
    if is_tensor:
        return torch.from_numpy(out).to(device=x.device, dtype=config.torch_dtype())
    return out


def normalize(x, axis=-1, order=2):
    """Scale ``x`` to unit ``order``-norm along ``axis`` (zero vectors stay zero).

    A torch tensor is divided by ``max(norm, epsilon())`` as ``keras.ops.normalize``
    does, and stays a tensor.

    >>> normalize(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]])
    """
    if isinstance(x, torch.Tensor):
        norm = torch.linalg.vector_norm(x, ord=order, dim=axis, keepdim=True)
        return x / norm.clamp_min(config.epsilon())
    array = np.asarray(x)
    norm = np.linalg.norm(array, ord=order, axis=axis, keepdims=True)
    norm = np.where(norm == 0, 1, norm)
    return array / norm
