"""Smoke tests for the layer examples (digits_convnet, cifar_resnet, text_lstm) with small settings."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _epoch_losses(output: str) -> list[float]:
    line = re.search(r"training loss by epoch: (.*)", output).group(1)
    return [float(v) for v in line.split()]


def test_digits_convnet_beats_chance(capsys):
    pytest.importorskip("sklearn")
    accuracy = _load("digits_convnet").main(epochs=2, filters=8, verbose=0)
    assert accuracy > 0.6  # chance is 0.1
    out = capsys.readouterr().out
    assert f"test accuracy: {accuracy:.4f}" in out and re.search(r"trained 2 epochs in [\d.]+s", out)


def test_cifar_resnet_loss_falls_and_beats_chance(capsys):
    cifar_resnet = _load("cifar_resnet")
    accuracy = cifar_resnet.main(num_train=640, num_test=200, epochs=5, image_size=16, verbose=0)
    assert accuracy > 0.4  # chance is 0.25
    losses = _epoch_losses(capsys.readouterr().out)
    assert len(losses) == 5 and losses[-1] < 0.5 * losses[0]


def test_cifar_resnet_shapes_are_balanced_images():
    images, labels = _load("cifar_resnet").make_shapes(400, size=16, seed=3)
    assert images.shape == (400, 16, 16, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert np.bincount(labels, minlength=4).min() > 60


def test_text_lstm_beats_chance(capsys):
    accuracy = _load("text_lstm").main(num_train=600, num_test=200, epochs=3, verbose=0)
    assert accuracy > 0.75  # chance is 0.5
    losses = _epoch_losses(capsys.readouterr().out)
    assert losses[-1] < losses[0]


def test_text_lstm_sentences_and_padding_mask():
    text_lstm = _load("text_lstm")
    tokens, labels = text_lstm.make_sentences(200, max_length=30, seed=3)
    assert tokens.shape == (200, 30) and set(np.unique(labels)) == {0.0, 1.0}
    # Padding only at the end: once a row reaches 0 it stays 0.
    is_padding = tokens == 0
    assert (np.diff(is_padding.astype(int), axis=1) >= 0).all()
    positive = np.isin(tokens, text_lstm.POSITIVE_WORDS).sum(axis=1)
    negative = np.isin(tokens, text_lstm.NEGATIVE_WORDS).sum(axis=1)
    np.testing.assert_array_equal(labels, (positive > negative).astype("float32"))
    # mask_zero makes extra trailing padding invisible to the LSTM.
    model = text_lstm.build_model()
    padded = np.pad(tokens[:16], ((0, 0), (0, 7)))
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(tokens[:16], verbose=0),
                               atol=1e-6)
