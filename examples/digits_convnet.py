"""A small convnet on scikit-learn's 8x8 handwritten digits (shipped with scikit-learn: no download).

Conv2D -> MaxPooling2D -> Conv2D -> Flatten -> Dense -> Dense(10, softmax), trained
with Adam on 80% of the 1,797 images; prints the summary, the test accuracy and the
training time. Reaches about 0.97-0.98 test accuracy in well under a minute on one CPU thread.

Run it with `python examples/digits_convnet.py`.
"""

import sys
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lamina as keras
from lamina.layers import Conv2D, Dense, Flatten, MaxPooling2D


def build_model(filters: int = 32) -> keras.Model:
    """The convnet: 8x8x1 images in, 10 class probabilities out."""
    return keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        Conv2D(filters, 3, padding="same", activation="relu"),
        MaxPooling2D(2),
        Conv2D(2 * filters, 3, padding="same", activation="relu"),
        Flatten(),
        Dense(64, activation="relu"),
        Dense(10, activation="softmax"),
    ], name="digits_convnet")


def main(epochs: int = 15, filters: int = 32, verbose: int = 2) -> float:
    """Train for ``epochs`` epochs and return the test accuracy."""
    keras.utils.set_random_seed(42)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1), values in [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=42, stratify=digits.target)

    model = build_model(filters)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if verbose:
        model.summary()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=verbose)
    elapsed = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"trained {epochs} epochs in {elapsed:.1f}s")
    print(f"test loss: {loss:.4f}")
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(0 if main() >= 0.95 else 1)
