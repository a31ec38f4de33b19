"""The tutorial program of issue 2, verbatim except the imports, the data and the epochs.

Keras-1 spellings (``input_dim=``, ``Dense(output_dim=...)``) must work with a
DeprecationWarning; everything else is the program as a Keras user wrote it.
"""

import os

import numpy as np
import pytest

from lamina.callbacks import EarlyStopping, ModelCheckpoint
from lamina.layers import Dense
from lamina.models import Sequential, load_model
from lamina.utils import set_random_seed, to_categorical


@pytest.fixture
def digits():
    """A stratified slice of scikit-learn's digits, scaled to [0, 1], one-hot labels."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    data = sklearn_datasets.load_digits()
    x = (data.data / 16.0).astype("float32")
    y = to_categorical(data.target, 10)
    order = np.random.RandomState(0).permutation(len(x))[:900]
    x, y = x[order], y[order]
    return x[:700], y[:700], x[700:], y[700:]


def test_tutorial_program_runs_unchanged(digits, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # 'best.keras' below lands in tmp_path
    set_random_seed(0)
    x_train, y_train, x_test, y_test = digits
    input_shape, num_classes = x_train.shape[1], 10
    x_batch, y_batch = x_train[:32], y_train[:32]

    # ---- the program (epochs=50 -> 8 to keep the test fast)
    model = Sequential()
    with pytest.warns(DeprecationWarning, match="input_dim"):
        model.add(Dense(units=128, activation='relu', input_dim=input_shape))
    model.add(Dense(units=128, activation='relu'))
    with pytest.warns(DeprecationWarning, match="output_dim"):
        model.add(Dense(output_dim=num_classes, activation='softmax'))
    model.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])
    model.summary()
    history = model.fit(x_train, y_train, batch_size=32, epochs=8, validation_split=0.2,
                        callbacks=[EarlyStopping(patience=5, restore_best_weights=True),
                                   ModelCheckpoint('best.keras', save_best_only=True)])
    scores = model.evaluate(x_test, y_test); predictions = model.predict(x_test); batch_scores = model.train_on_batch(x_batch, y_batch)  # noqa: E702,E501
    # ---- end of the program

    out = capsys.readouterr().out
    assert "Total params: 26,122" in out
    assert "Epoch 1/8" in out and "val_accuracy" in out

    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history.history["loss"]) == 8
    assert history.history["loss"][-1] < history.history["loss"][0]

    loss, accuracy = scores
    assert isinstance(loss, float) and isinstance(accuracy, float)
    assert accuracy > 0.85

    assert predictions.shape == (200, 10) and predictions.dtype == np.float32
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(predictions.argmax(1) == y_test.argmax(1)) == pytest.approx(accuracy, abs=1e-6)

    assert isinstance(batch_scores, list) and len(batch_scores) == 2

    # The checkpoint holds the best epoch, whose weights EarlyStopping restored before
    # train_on_batch changed them.
    assert os.path.exists(tmp_path / "best.keras")
    best = load_model("best.keras")
    best_epoch = int(np.argmin(history.history["val_loss"]))
    assert best.evaluate(x_train[-140:], y_train[-140:], verbose=0, return_dict=True)["loss"] == pytest.approx(
        history.history["val_loss"][best_epoch], abs=1e-6)
    np.testing.assert_allclose(best.predict(x_test, verbose=0), predictions, atol=1e-6)
