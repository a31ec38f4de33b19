"""Shared test set-up: one torch thread, seeded generators, restored global config."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
# On a GPU, float32 matrix products and convolutions in full float32 (no TF32), so that
# the same tolerances hold on every device.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(autouse=True)
def _seed_and_restore_config():
    from lamina import config

    saved = dict(config._STATE)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    config._STATE.clear()
    config._STATE.update(saved)


@pytest.fixture
def keras():
    """Real Keras 3 on its torch backend, as a test oracle; skips where it is not installed."""
    return pytest.importorskip("keras")
