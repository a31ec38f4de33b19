"""The main demo: the Keras tutorial's digit classifier, trained with lamina.

Trains Dense(128) -> Dense(128) -> Dense(10, softmax) on scikit-learn's handwritten
digits (1,797 8x8 images, shipped with scikit-learn: no download), with a held-out
test split, EarlyStopping and ModelCheckpoint, then prints the test accuracy and a
few predictions. Leaves the best model in demo_output/digits_best.keras, a Keras 3
file that Keras itself can load.

Run it with `make demo` (or `python examples/digits_mlp.py`).
"""

import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lamina as keras
from lamina.callbacks import EarlyStopping, ModelCheckpoint
from lamina.layers import Dense
from lamina.models import Sequential


def main(epochs: int = 50, out_dir: str = "demo_output") -> float:
    keras.utils.set_random_seed(42)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)
    num_classes = 10
    y_train_1h = keras.utils.to_categorical(y_train, num_classes)
    y_test_1h = keras.utils.to_categorical(y_test, num_classes)

    model = Sequential()
    model.add(keras.Input(shape=(x.shape[1],)))
    model.add(Dense(units=128, activation="relu"))
    model.add(Dense(units=128, activation="relu"))
    model.add(Dense(units=num_classes, activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.summary()

    os.makedirs(out_dir, exist_ok=True)
    best_path = os.path.join(out_dir, "digits_best.keras")
    model.fit(
        x_train, y_train_1h, batch_size=32, epochs=epochs, validation_split=0.2,
        callbacks=[EarlyStopping(patience=5, restore_best_weights=True),
                   ModelCheckpoint(best_path, save_best_only=True)],
    )
    loss, accuracy = model.evaluate(x_test, y_test_1h, verbose=0)
    print(f"test loss: {loss:.4f}")
    print(f"test accuracy: {accuracy:.4f}")

    best = keras.models.load_model(best_path)
    predicted = best.predict(x_test[:10], verbose=0).argmax(axis=1)
    print("predicted:", " ".join(str(p) for p in predicted))
    print("labels:   ", " ".join(str(t) for t in y_test[:10]))
    print(f"best model saved to {best_path}")
    return accuracy


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    accuracy = main()
    sys.exit(0 if accuracy >= 0.95 else 1)
