"""Global seeding: one call makes Python, NumPy and torch (CPU and CUDA) reproducible."""

from __future__ import annotations

import random as _random

import numpy as np
import torch

__all__ = ["set_random_seed"]


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch, so two runs give identical weights.

    Weight initialisation, shuffling and dropout all draw from these generators.

    >>> set_random_seed(7); a = torch.rand(2)
    >>> set_random_seed(7); torch.equal(a, torch.rand(2))
    True
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"set_random_seed expects an integer seed; received {seed!r}.")
    _random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
