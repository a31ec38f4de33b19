"""Tests for lamina.utils.random.set_random_seed."""

import random

import numpy as np
import pytest
import torch

import lamina
from lamina.layers import Dense, Dropout
from lamina.utils import set_random_seed


def _draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_set_random_seed_seeds_python_numpy_and_torch():
    set_random_seed(7)
    first = _draws()
    set_random_seed(7)
    assert _draws() == first
    set_random_seed(8)
    assert all(a != b for a, b in zip(_draws(), first))


def test_set_random_seed_is_exported_at_top_level():
    assert lamina.set_random_seed is set_random_seed is lamina.utils.set_random_seed


def test_set_random_seed_accepts_large_seeds():
    set_random_seed(2**40 + 3)
    first = _draws()
    set_random_seed(2**40 + 3)
    assert _draws() == first


@pytest.mark.parametrize("seed", [1.5, "1", None, True])
def test_set_random_seed_rejects_non_integers(seed):
    with pytest.raises(ValueError, match="integer seed"):
        set_random_seed(seed)


def test_set_random_seed_reproduces_build_and_fit():
    x = np.random.RandomState(0).randn(30, 5).astype("float32")
    y = (x[:, :1] > 0).astype("float32")

    def run(seed):
        set_random_seed(seed)
        model = lamina.Sequential([lamina.Input((5,)), Dense(8, activation="relu"), Dropout(0.3),
                                   Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=True, verbose=0, validation_split=0.2)
        return model.get_weights(), history.history

    (weights, history), (again, history_again) = run(11), run(11)
    assert history == history_again
    for a, b in zip(weights, again):
        np.testing.assert_array_equal(a, b)
    other, _ = run(12)
    assert not np.array_equal(other[0], weights[0])
