"""Reuse of freed host memory between CPU steps: glibc's malloc told to keep what it frees.

Owns one process-wide setting, applied once when a CPU ``fit``, ``evaluate`` or ``predict``
starts. Nothing else here: device memory belongs to torch's caching allocators.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_host_memory"]

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap, not from their own mmap (glibc's largest
# allowed value on 64-bit systems), and up to TRIM_THRESHOLD bytes of free memory at the top
# of the heap stay with the process instead of going back to the kernel.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
OPT_OUT_ENV = "LAMINA_KEEP_HOST_MEMORY"
# The user's own malloc settings win: with any of these set, lamina changes nothing.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "MALLOC_MMAP_MAX_")

_state: dict = {"decided": False, "applied": False}


def keep_freed_host_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse; once per process. Returns whether it did.

    A CPU training step allocates and frees the same large buffers (a convolution's
    activations and gradients, several MiB each) every step. glibc's defaults give the
    largest of them their own ``mmap`` and return freed memory at the top of the heap to
    the kernel, so every step faults the same pages in again and the kernel zeroes them: on
    the reference 2-core machine a small convnet's epoch took 1.2-1.4x as long (300-600
    thousand page faults an epoch). lamina raises ``M_MMAP_THRESHOLD`` to 32 MiB and
    ``M_TRIM_THRESHOLD`` to 1 GiB with ``mallopt``: the process keeps up to 1 GiB of freed
    memory for later steps, as TensorFlow's and XLA's allocators do, and its peak memory is
    unchanged.

    It does nothing on systems without glibc (macOS, Windows, musl), when the process set
    glibc's malloc itself (``MALLOC_*_`` environment variables or ``GLIBC_TUNABLES`` with
    ``glibc.malloc``; jemalloc or tcmalloc preloaded ignore it), or with the environment
    variable ``LAMINA_KEEP_HOST_MEMORY=0``.

    Example:
    >>> from lamina.training.host_memory import keep_freed_host_memory
    >>> keep_freed_host_memory() in (True, False)
    True
    """
    if _state["decided"]:
        return _state["applied"]
    _state["decided"] = True
    _state["applied"] = _allowed() and _mallopt_all()
    return _state["applied"]


def _allowed() -> bool:
    if os.environ.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return sys.platform.startswith("linux") and _libc_name() == "glibc"


def _libc_name() -> str:
    try:  # "glibc 2.36"; musl and other C libraries do not define it
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").split(" ")[0]
    except (ValueError, OSError, AttributeError):
        return ""


def _mallopt_all() -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success, 0 on a rejected value.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
