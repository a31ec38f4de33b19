"""Global defaults: float dtype, epsilon, image data format and the compute device.

Only settings live here; nothing in this module builds layers or tensors. The
device rule (CUDA, then MPS, then CPU) is decided in ``get_device`` and nowhere else.
"""

from __future__ import annotations

import torch

__all__ = [
    "floatx", "set_floatx", "epsilon", "set_epsilon", "image_data_format",
    "set_image_data_format", "get_device", "set_device", "torch_dtype",
]

_STATE = {"floatx": "float32", "epsilon": 1e-7, "image_data_format": "channels_last", "device": None}
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def floatx() -> str:
    """The default float dtype name, ``"float32"`` as in Keras.

    >>> floatx()
    'float32'
    """
    return _STATE["floatx"]


def set_floatx(value: str) -> None:
    """Set the default float dtype (one of float16, bfloat16, float32, float64)."""
    if value not in _FLOAT_DTYPES:
        raise ValueError(f"set_floatx expects one of {_FLOAT_DTYPES}; received {value!r}.")
    _STATE["floatx"] = value


def epsilon() -> float:
    """The fuzz factor used in numeric expressions, 1e-7 as in Keras.

    >>> epsilon()
    1e-07
    """
    return _STATE["epsilon"]


def set_epsilon(value: float) -> None:
    """Set the fuzz factor returned by ``epsilon()``."""
    _STATE["epsilon"] = float(value)


def image_data_format() -> str:
    """``"channels_last"`` (Keras's default) or ``"channels_first"``.

    >>> image_data_format()
    'channels_last'
    """
    return _STATE["image_data_format"]


def set_image_data_format(value: str) -> None:
    """Set the default data format for image layers."""
    if value not in ("channels_last", "channels_first"):
        raise ValueError(
            f"image_data_format must be 'channels_last' or 'channels_first'; received {value!r}."
        )
    _STATE["image_data_format"] = value


def get_device() -> torch.device:
    """The device models train on: the one set with ``set_device``, else CUDA, MPS, CPU.

    >>> get_device().type in ("cpu", "cuda", "mps")
    True
    """
    if _STATE["device"] is not None:
        return _STATE["device"]
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_device(device: str | torch.device | None) -> None:
    """Override the automatic device choice; ``None`` restores it.

    >>> set_device("cpu"); get_device()
    device(type='cpu')
    >>> set_device(None)
    """
    _STATE["device"] = None if device is None else torch.device(device)


def torch_dtype(dtype=None) -> torch.dtype:
    """The torch dtype for a Keras dtype name (``None`` means ``floatx()``).

    >>> torch_dtype("float32")
    torch.float32
    """
    if dtype is None:
        dtype = floatx()
    if isinstance(dtype, torch.dtype):
        return dtype
    name = getattr(dtype, "name", dtype)
    try:
        return getattr(torch, str(name))
    except AttributeError:
        raise ValueError(f"Unknown dtype {dtype!r}; expected a name such as 'float32' or 'int64'.") from None
