"""Embedding(mask_zero=True) -> LSTM -> Dense(sigmoid) on a generated sentiment-like task.

Each "sentence" is a sequence of 6 to 30 token ids from a 50-word vocabulary, padded
with zeros at the end to length 30. Tokens 1-5 are "positive" words, 6-10 "negative"
words and the rest neutral filler; each sentence holds 1, 3 or 5 sentiment words at
random places, and its label is 1 when the positive words outnumber the negative
ones. The LSTM has to count across the sentence, and the padding after the last real
token is masked (Embedding's mask_zero), so it changes nothing. Prints the loss by
epoch, the test accuracy and the training time (about 0.97 in a few seconds on one
CPU thread).

Run it with `python examples/text_lstm.py`.
"""

import sys
import time

import numpy as np
import torch

import lamina as keras
from lamina.layers import LSTM, Dense, Embedding

VOCABULARY_SIZE = 50  # token 0 is padding
POSITIVE_WORDS = np.arange(1, 6)
NEGATIVE_WORDS = np.arange(6, 11)
FIRST_NEUTRAL_WORD = 11


def make_sentences(num_samples: int, max_length: int = 30, seed: int = 0):
    """Token ids ``(num_samples, max_length)`` (0 = padding, at the end) and 0/1 labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, max_length + 1, num_samples)
    tokens = rng.integers(FIRST_NEUTRAL_WORD, VOCABULARY_SIZE, (num_samples, max_length))
    num_sentiment = rng.choice([1, 3, 5], num_samples)  # odd, so there is never a tie
    labels = np.zeros(num_samples, dtype="float32")
    for i in range(num_samples):
        places = rng.choice(lengths[i], num_sentiment[i], replace=False)
        is_positive = rng.integers(0, 2, num_sentiment[i]).astype(bool)
        tokens[i, places] = np.where(is_positive, rng.choice(POSITIVE_WORDS, len(places)),
                                     rng.choice(NEGATIVE_WORDS, len(places)))
        labels[i] = 2 * is_positive.sum() > num_sentiment[i]
    tokens[np.arange(max_length)[None, :] >= lengths[:, None]] = 0
    return tokens.astype("int64"), labels


def build_model(embedding_dim: int = 16, units: int = 32) -> keras.Model:
    """Token ids in, the probability that the keyword occurs out."""
    tokens = keras.Input(shape=(None,), dtype="int64", name="tokens")
    x = Embedding(VOCABULARY_SIZE, embedding_dim, mask_zero=True, name="embedding")(tokens)
    x = LSTM(units, name="lstm")(x)
    outputs = Dense(1, activation="sigmoid", name="keyword_probability")(x)
    return keras.Model(tokens, outputs, name="text_lstm")


def main(num_train: int = 2000, num_test: int = 500, epochs: int = 8, max_length: int = 30,
         units: int = 32, verbose: int = 2) -> float:
    """Train on generated sentences and return the test accuracy."""
    keras.utils.set_random_seed(0)
    x_train, y_train = make_sentences(num_train, max_length, seed=1)
    x_test, y_test = make_sentences(num_test, max_length, seed=2)

    model = build_model(units=units)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="binary_crossentropy",
                  metrics=["accuracy"])
    if verbose:
        model.summary()
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=verbose)
    elapsed = time.perf_counter() - start
    print("training loss by epoch:", " ".join(f"{loss:.3f}" for loss in history.history["loss"]))
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"trained {epochs} epochs on {num_train} sentences in {elapsed:.1f}s")
    print(f"test loss: {loss:.4f}")
    print(f"test accuracy: {accuracy:.4f} (chance: 0.50)")
    return accuracy


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(0 if main() >= 0.9 else 1)
