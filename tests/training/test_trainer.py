"""Tests for lamina.training.trainer: fit/evaluate/predict and the *_on_batch methods.

Numbers are compared with real Keras 3 (the ``keras`` fixture) running the same model
from the same initial weights, with shuffle=False so both see the same batches.
"""

import re

import numpy as np
import pytest
import torch

import lamina
from lamina.callbacks import EarlyStopping, LambdaCallback, ModelCheckpoint
from lamina.layers import Dense, Dropout
from lamina.training import data as data_module

ATOL = 1e-5


def _data(n=24, features=4, classes=3, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, features).astype("float32")
    labels = rng.randint(0, classes, n)
    return x, np.eye(classes, dtype="float32")[labels], labels


def _mlp(lib, features=4, classes=3, regularizer=None):
    return lib.Sequential([
        lib.Input((features,)),
        lib.layers.Dense(6, activation="relu", kernel_regularizer=regularizer),
        lib.layers.Dense(classes, activation="softmax"),
    ])


def _optimizer(lib, name):
    return lib.optimizers.SGD(learning_rate=0.1) if name == "sgd" else lib.optimizers.Adam(learning_rate=0.01)


def _pair(keras, optimizer="sgd", regularizer=None, **compile_kwargs):
    """The same compiled MLP in Keras and lamina, with Keras's initial weights."""
    compile_kwargs.setdefault("loss", "categorical_crossentropy")
    keras_model = _mlp(keras, regularizer=regularizer)
    model = _mlp(lamina, regularizer=regularizer)
    model.set_weights(keras_model.get_weights())
    for lib, m in ((keras, keras_model), (lamina, model)):
        m.compile(optimizer=_optimizer(lib, optimizer), **compile_kwargs)
    return keras_model, model


def _assert_weights_close(a, b, atol=ATOL):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, atol=atol)


def _assert_history_close(expected, actual, atol=ATOL):
    assert list(actual) == list(expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=atol, err_msg=key)


# ---------------------------------------------------------------- fit against Keras
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("metric", ["accuracy", "acc"])
def test_fit_matches_keras(keras, optimizer, metric):
    x, y, _ = _data()
    keras_model, model = _pair(keras, optimizer, metrics=[metric])
    kwargs = dict(batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=(x[:6], y[:6]))
    expected = keras_model.fit(x, y, **kwargs).history
    history = model.fit(x, y, **kwargs)
    assert history is model.history
    assert list(history.history) == sorted(["loss", metric, "val_loss", f"val_{metric}"])
    assert history.epoch == [0, 1, 2]
    assert all(isinstance(v, float) for values in history.history.values() for v in values)
    _assert_history_close(expected, history.history)
    _assert_weights_close(keras_model, model)


def test_fit_validation_split_matches_keras(keras):
    x, y, _ = _data(n=30)
    keras_model, model = _pair(keras, metrics=["accuracy"])
    kwargs = dict(batch_size=8, epochs=2, shuffle=False, verbose=0, validation_split=0.3)
    _assert_history_close(keras_model.fit(x, y, **kwargs).history, model.fit(x, y, **kwargs).history)
    _assert_weights_close(keras_model, model)


def test_fit_validation_split_holds_out_last_samples_before_shuffling():
    x, y, _ = _data(n=30)
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=True, verbose=0, validation_split=0.2)
    # floor(30 * 0.8) = 24: the validation set is x[24:], whatever the shuffling.
    val_loss = model.evaluate(x[24:], y[24:], verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][-1], val_loss, atol=1e-6)


@pytest.mark.parametrize("metrics", [None, ["accuracy"], ["accuracy", "mse"]])
def test_evaluate_return_types_match_keras(keras, metrics):
    x, y, _ = _data()
    keras_model, model = _pair(keras, metrics=metrics)
    expected = keras_model.evaluate(x, y, batch_size=7, verbose=0)
    result = model.evaluate(x, y, batch_size=7, verbose=0)
    if metrics is None:
        assert isinstance(result, float) and isinstance(expected, float)
    else:
        assert isinstance(result, list) and len(result) == len(expected) == 1 + len(metrics)
    np.testing.assert_allclose(result, expected, atol=1e-6)
    as_dict = model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    expected_dict = keras_model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    assert sorted(as_dict) == sorted(expected_dict)
    for key in expected_dict:
        np.testing.assert_allclose(as_dict[key], expected_dict[key], atol=1e-6)


def test_evaluate_list_follows_compile_order(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras, metrics=["mse", "accuracy"], weighted_metrics=["mae"])
    expected = keras_model.evaluate(x, y, verbose=0)
    result = model.evaluate(x, y, verbose=0)
    by_name = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result == [by_name["loss"], by_name["mse"], by_name["accuracy"], by_name["mae"]]
    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_repeated_metric_names_match_keras(keras):
    x, y, _ = _data()
    sample_weight = np.random.RandomState(1).rand(len(x)).astype("float32")
    keras_model, model = _pair(keras, metrics=["accuracy", "mae", "mae"], weighted_metrics=["accuracy", "mae"])
    kwargs = dict(sample_weight=sample_weight, batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected = keras_model.fit(x, y, **kwargs).history
    history = model.fit(x, y, **kwargs).history
    assert list(history) == ["accuracy", "loss", "mae", "mae_1", "weighted_accuracy", "weighted_mae"]
    _assert_history_close(expected, history)
    expected_list = keras_model.evaluate(x, y, sample_weight=sample_weight, verbose=0)
    np.testing.assert_allclose(model.evaluate(x, y, sample_weight=sample_weight, verbose=0), expected_list, atol=1e-6)


def test_fit_sample_weight_matches_keras(keras):
    x, y, _ = _data()
    sample_weight = np.random.RandomState(1).rand(len(x)).astype("float32")
    keras_model, model = _pair(keras, metrics=["accuracy"], weighted_metrics=["mae"])
    kwargs = dict(sample_weight=sample_weight, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _assert_history_close(keras_model.fit(x, y, **kwargs).history, model.fit(x, y, **kwargs).history)
    _assert_weights_close(keras_model, model)
    expected = keras_model.evaluate(x, y, sample_weight=sample_weight, verbose=0)
    np.testing.assert_allclose(model.evaluate(x, y, sample_weight=sample_weight, verbose=0), expected, atol=1e-6)


@pytest.mark.parametrize("sparse", [False, True])
def test_fit_class_weight_matches_keras(keras, sparse):
    x, y, labels = _data()
    loss = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
    targets = labels if sparse else y
    keras_model, model = _pair(keras, loss=loss, weighted_metrics=["accuracy"])
    class_weight = {0: 0.5, 1: 3.0}  # class 2 is missing: it weighs 1.0, as in Keras
    # validation is not class-weighted
    kwargs = dict(class_weight=class_weight, batch_size=8, epochs=2, shuffle=False, verbose=0,
                  validation_data=(x[:10], targets[:10]))
    expected = keras_model.fit(x, targets, **kwargs).history
    _assert_history_close(expected, model.fit(x, targets, **kwargs).history)
    _assert_weights_close(keras_model, model)


def test_fit_rejects_class_weight_with_sample_weight():
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="class_weight and sample_weight"):
        model.fit(x, y, class_weight={0: 2.0}, sample_weight=np.ones(len(x)), verbose=0)


def _regularized_mlp(lib):
    return lib.Sequential([
        lib.Input((4,)),
        lib.layers.Dense(5, activation="relu", activity_regularizer=lib.regularizers.L1(0.01),
                         bias_regularizer=lib.regularizers.L2(0.1)),
        lib.layers.Dense(3, activation="softmax", kernel_regularizer=lib.regularizers.L1L2(0.01, 0.02)),
    ])


def test_fit_regularization_losses_match_keras(keras):
    x, y, _ = _data()
    keras_model, model = _regularized_mlp(keras), _regularized_mlp(lamina)
    model.set_weights(keras_model.get_weights())
    for lib, m in ((keras, keras_model), (lamina, model)):
        m.compile(optimizer=_optimizer(lib, "sgd"), loss="categorical_crossentropy", metrics=["accuracy"])
    # evaluate before any training includes the penalties too
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=7, verbose=0),
                               keras_model.evaluate(x, y, batch_size=7, verbose=0), atol=1e-6)
    kwargs = dict(batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x[:5], y[:5]))
    _assert_history_close(keras_model.fit(x, y, **kwargs).history, model.fit(x, y, **kwargs).history)
    _assert_weights_close(keras_model, model)
    np.testing.assert_allclose(model.test_on_batch(x[:8], y[:8]), keras_model.test_on_batch(x[:8], y[:8]), atol=1e-6)


def test_fit_validation_freq(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras)
    for freq in (2, [1, 3]):
        kwargs = dict(batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=(x, y),
                      validation_freq=freq)
        expected = keras_model.fit(x, y, **kwargs).history
        history = model.fit(x, y, **kwargs).history
        assert len(history["val_loss"]) == len(expected["val_loss"])
        np.testing.assert_allclose(history["val_loss"], expected["val_loss"], atol=ATOL)


def test_fit_initial_epoch_and_steps_per_epoch():
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    seen = []
    callback = LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    history = model.fit(x, y, batch_size=4, epochs=4, initial_epoch=2, steps_per_epoch=2,
                        callbacks=[callback], verbose=0)
    assert history.epoch == [2, 3]
    assert seen == [0, 1, 0, 1]


# ---------------------------------------------------------------- *_on_batch and predict
def test_train_on_batch_matches_keras(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras, metrics=["accuracy"])
    expected = keras_model.train_on_batch(x[:8], y[:8], return_dict=True)
    result = model.train_on_batch(x[:8], y[:8], return_dict=True)
    assert sorted(result) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(result[key], expected[key], atol=1e-6)
    for start in (8, 16):
        keras_model.train_on_batch(x[start:start + 8], y[start:start + 8])
        model.train_on_batch(x[start:start + 8], y[start:start + 8])
        _assert_weights_close(keras_model, model)


def test_train_on_batch_reports_only_its_batch_like_keras(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras, metrics=["accuracy"])
    for start in (0, 8):
        batch = (x[start:start + 8], y[start:start + 8])
        np.testing.assert_allclose(model.train_on_batch(*batch), keras_model.train_on_batch(*batch), atol=1e-6)
    keras_model.evaluate(x, y, verbose=0)
    model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(model.train_on_batch(x[:8], y[:8]), keras_model.train_on_batch(x[:8], y[:8]),
                               atol=1e-6)


def test_train_on_batch_class_weight_matches_keras(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras)
    class_weight = {0: 2.0, 1: 0.5, 2: 1.5}
    expected = keras_model.train_on_batch(x[:8], y[:8], class_weight=class_weight)
    np.testing.assert_allclose(model.train_on_batch(x[:8], y[:8], class_weight=class_weight), expected, atol=1e-6)
    _assert_weights_close(keras_model, model)
    # class weights apply to that one call only
    keras_model.train_on_batch(x[:8], y[:8])
    model.train_on_batch(x[:8], y[:8])
    _assert_weights_close(keras_model, model)


def test_test_and_predict_on_batch_match_keras(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras, metrics=["accuracy"])
    expected = keras_model.test_on_batch(x[:8], y[:8])
    np.testing.assert_allclose(model.test_on_batch(x[:8], y[:8]), expected, atol=1e-6)
    before = [w.copy() for w in model.get_weights()]
    model.test_on_batch(x[8:], y[8:])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    prediction = model.predict_on_batch(x[:5])
    assert isinstance(prediction, np.ndarray) and prediction.dtype == np.float32
    np.testing.assert_allclose(prediction, keras_model.predict_on_batch(x[:5]), atol=1e-6)


def test_test_on_batch_without_metrics_returns_float(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras)
    result = model.test_on_batch(x, y)
    assert isinstance(result, float)
    np.testing.assert_allclose(result, keras_model.test_on_batch(x, y), atol=1e-6)


def test_predict_matches_keras(keras):
    x, y, _ = _data(n=23)
    keras_model, model = _pair(keras)
    prediction = model.predict(x, batch_size=5, verbose=0)
    assert isinstance(prediction, np.ndarray)
    assert prediction.dtype == np.float32 and prediction.shape == (23, 3)
    np.testing.assert_allclose(prediction, keras_model.predict(x, batch_size=5, verbose=0), atol=1e-6)
    # float64 input gives the same float32 output
    np.testing.assert_allclose(model.predict(x.astype("float64"), verbose=0), prediction, atol=1e-6)


def test_predict_with_steps_matches_keras(keras):
    x, _, _ = _data(n=23)
    keras_model, model = _pair(keras)
    expected = keras_model.predict(x, batch_size=5, steps=2, verbose=0)
    prediction = model.predict(x, batch_size=5, steps=2, verbose=0)
    assert prediction.shape == expected.shape == (10, 3)
    np.testing.assert_allclose(prediction, expected, atol=1e-6)


def test_predict_from_generator_with_steps():
    x, _, _ = _data(n=20)
    model = _mlp(lamina)
    expected = model.predict(x, verbose=0)

    def batches():
        while True:
            for start in range(0, 20, 5):
                yield (x[start:start + 5],)

    np.testing.assert_allclose(model.predict(batches(), steps=3, verbose=0), expected[:15], atol=1e-6)


def test_predict_does_not_need_compile():
    x, _, _ = _data()
    assert _mlp(lamina).predict(x, verbose=0).shape == (24, 3)


# ---------------------------------------------------------------- input kinds
def _fitted_weights(x, y=None, epochs=2, **kwargs):
    """Weights after fitting a fresh seeded MLP with SGD (shuffle=False, batch 6)."""
    torch.manual_seed(0)
    model = _mlp(lamina)
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=["accuracy"])
    kwargs.setdefault("shuffle", False)
    model.fit(x, y, epochs=epochs, verbose=0, **kwargs)
    return model.get_weights()


def _assert_same_weights(a, b, atol=1e-6):
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wa, wb, atol=atol)


def test_fit_torch_tensors_equal_numpy():
    x, y, _ = _data()
    reference = _fitted_weights(x, y, batch_size=6)
    _assert_same_weights(_fitted_weights(torch.from_numpy(x), torch.from_numpy(y), batch_size=6), reference)
    _assert_same_weights(_fitted_weights(x.astype("float64"), y.astype("float64"), batch_size=6), reference)


def test_fit_generator_with_steps_per_epoch_equals_arrays():
    x, y, _ = _data()
    sample_weight = np.random.RandomState(2).rand(len(x)).astype("float32")

    def generator(with_weights):
        while True:
            for start in range(0, len(x), 6):
                part = slice(start, start + 6)
                yield (x[part], y[part], sample_weight[part]) if with_weights else (x[part], y[part])

    reference = _fitted_weights(x, y, batch_size=6)
    _assert_same_weights(_fitted_weights(generator(False), steps_per_epoch=4), reference)
    weighted = _fitted_weights(x, y, batch_size=6, sample_weight=sample_weight)
    _assert_same_weights(_fitted_weights(generator(True), steps_per_epoch=4), weighted)


def test_fit_torch_dataset_and_dataloader_equal_arrays():
    x, y, _ = _data()
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    reference = _fitted_weights(x, y, batch_size=6, epochs=3)
    _assert_same_weights(_fitted_weights(dataset, batch_size=6, epochs=3), reference)
    loader = torch.utils.data.DataLoader(dataset, batch_size=6)
    _assert_same_weights(_fitted_weights(loader, epochs=3), reference)
    # steps_per_epoch equal to the loader's length: a fresh pass every epoch
    _assert_same_weights(_fitted_weights(loader, epochs=3, steps_per_epoch=4), reference)


def test_fit_dataloader_validation_and_evaluate():
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=5)
    history = model.fit(loader, epochs=2, validation_data=loader, verbose=0)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    np.testing.assert_allclose(model.evaluate(loader, verbose=0), model.evaluate(x, y, verbose=0), atol=1e-6)
    np.testing.assert_allclose(history.history["val_loss"][-1], model.evaluate(x, y, verbose=0)[0], atol=1e-6)


def test_fit_pandas_dataframe():
    pandas = pytest.importorskip("pandas")
    x, y, _ = _data()
    frame = pandas.DataFrame(x, columns=list("abcd"))
    _assert_same_weights(_fitted_weights(frame, pandas.DataFrame(y), batch_size=6), _fitted_weights(x, y, batch_size=6))


def test_fit_batches_have_keras_dtypes():
    x, _, labels = _data()
    seen = []

    class Recorder(lamina.Sequential):
        def train_step(self, data):
            seen.append((data[0].dtype, data[1].dtype))
            return super().train_step(data)

    model = Recorder([lamina.Input((4,)), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float64"), labels.astype("int32"), batch_size=12, epochs=1, verbose=0)
    assert seen == [(torch.float32, torch.int64)] * 2


class _Concat(lamina.Layer):
    """Concatenates its list of inputs on the last axis (a custom layer taking a list)."""

    def call(self, inputs):
        return torch.cat(list(inputs), dim=-1)


def _two_input_model(lib, concat):
    a = lib.Input((4,), name="a")
    b = lib.Input((2,), name="b")
    merged = concat([lib.layers.Dense(3, name="dense_a")(a), lib.layers.Dense(3, name="dense_b")(b)])
    return lib.Model([a, b], lib.layers.Dense(1, name="out")(merged))


@pytest.mark.parametrize("as_dict", [False, True])
def test_fit_multi_input_functional_matches_keras(keras, as_dict):
    rng = np.random.RandomState(0)
    xa, xb, y = rng.randn(20, 4), rng.randn(20, 2), rng.randn(20, 1)
    inputs = {"a": xa, "b": xb} if as_dict else [xa, xb]
    keras_model = _two_input_model(keras, keras.layers.Concatenate())
    model = _two_input_model(lamina, _Concat())
    model.set_weights(keras_model.get_weights())
    for lib, m in ((keras, keras_model), (lamina, model)):
        m.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
    kwargs = dict(batch_size=8, epochs=2, shuffle=False, verbose=0, validation_split=0.25)
    keras_inputs = {"a": xa.astype("float32"), "b": xb.astype("float32")} if as_dict else [
        xa.astype("float32"), xb.astype("float32")]
    expected = keras_model.fit(keras_inputs, y.astype("float32"), **kwargs).history
    _assert_history_close(expected, model.fit(inputs, y, **kwargs).history)
    np.testing.assert_allclose(model.predict(inputs, verbose=0), keras_model.predict(keras_inputs, verbose=0),
                               atol=1e-5)


class _TorchDropout(lamina.Layer):
    """A custom layer using a raw torch module, which follows module.train()/eval()."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dropout = torch.nn.Dropout(0.5)
        self.modes = []

    def call(self, inputs):
        self.modes.append(self.dropout.training)
        return self.dropout(inputs)


def test_torch_module_mode_follows_fit_evaluate_predict():
    x, y, _ = _data()
    layer = _TorchDropout()
    model = lamina.Sequential([lamina.Input((4,)), Dense(3), layer, Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    layer.modes.clear()  # forget the shape-inference calls made while building
    model.fit(x, y, batch_size=12, epochs=1, verbose=0, validation_data=(x, y))
    assert layer.modes == [True, True, False, False]  # two training batches, two validation batches
    layer.modes.clear()
    model.evaluate(x, y, verbose=0)
    first = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)
    assert layer.modes == [False, False, False]


# ---------------------------------------------------------------- errors
def test_fit_before_compile_raises():
    x, y, _ = _data()
    with pytest.raises(ValueError, match=r"compile\(\)"):
        _mlp(lamina).fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"compile\(\)"):
        _mlp(lamina).evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"compile\(\)"):
        _mlp(lamina).train_on_batch(x, y)


def test_fit_length_mismatch_names_both_sizes():
    x, y, _ = _data(n=20)
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"20.*15"):
        model.fit(x, y[:15], verbose=0)


def test_fit_integer_labels_with_categorical_crossentropy_explains_fix():
    x, y, labels = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy") as info:
        model.fit(x, labels, verbose=0)
    assert "to_categorical" in str(info.value)
    # The failed call leaves nothing behind: fixing the labels and fitting again works.
    history = model.fit(x, y, epochs=1, verbose=0)
    assert sorted(history.history) == ["accuracy", "loss"]


def test_fit_wrong_feature_count_names_layer_and_shapes():
    model = lamina.Sequential([lamina.Input((64,)), Dense(8, name="hidden"), Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError) as info:
        model.fit(np.zeros((10, 63)), np.zeros((10, 2)), verbose=0)
    message = str(info.value)
    assert "hidden" in message and "63" in message and "64" in message


def test_fit_empty_sequential_raises():
    model = lamina.Sequential()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="no layers"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5])
def test_fit_bad_validation_split_raises(split):
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=split, verbose=0)


def test_fit_validation_split_with_generator_raises():
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(iter([(x, y)]), validation_split=0.2, verbose=0)


def test_fit_bad_verbose_raises():
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="verbose"):
        model.fit(x, y, verbose=3)


# ---------------------------------------------------------------- callbacks in fit
def _diverging_validation(n=32):
    """Binary data whose validation labels are flipped: val_loss rises as training improves."""
    rng = np.random.RandomState(0)
    x = rng.randn(n, 4).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    return x, y, (x, 1.0 - y)


def _binary_model(lib):
    return lib.Sequential([lib.Input((4,)), lib.layers.Dense(1, activation="sigmoid")])


def test_early_stopping_restores_best_weights_like_keras(keras):
    x, y, validation = _diverging_validation()
    keras_model, model = _binary_model(keras), _binary_model(lamina)
    model.set_weights(keras_model.get_weights())
    snapshots = []
    for lib, m in ((keras, keras_model), (lamina, model)):
        m.compile(optimizer=lib.optimizers.SGD(0.5), loss="binary_crossentropy")
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    kwargs = dict(batch_size=8, epochs=20, shuffle=False, verbose=0, validation_data=validation)
    expected = keras_model.fit(x, y, callbacks=[keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)],
                               **kwargs).history
    history = model.fit(x, y, callbacks=[record, stopper], **kwargs).history
    assert len(history["loss"]) == len(expected["val_loss"]) < 20
    np.testing.assert_allclose(history["val_loss"], expected["val_loss"], atol=ATOL)
    best = int(np.argmin(history["val_loss"]))
    assert stopper.best_epoch == best and stopper.stopped_epoch == len(history["loss"]) - 1
    for restored, snapshot in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(restored, snapshot)
    _assert_weights_close(keras_model, model)


def test_model_checkpoint_save_best_only_reloads_best_epoch(tmp_path):
    x, y, validation = _diverging_validation()
    model = _binary_model(lamina)
    model.compile(optimizer=lamina.optimizers.SGD(0.5), loss="binary_crossentropy", metrics=["accuracy"])
    path = tmp_path / "best.keras"
    predictions = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: predictions.append(model.predict(x, verbose=0)))
    history = model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, validation_data=validation,
                        callbacks=[record, ModelCheckpoint(path, save_best_only=True)])
    best = int(np.argmin(history.history["val_loss"]))
    reloaded = lamina.models.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), predictions[best])
    assert reloaded.compiled


def test_stop_training_from_epoch_end_callback():
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")

    def stop(epoch, logs):
        model.stop_training = epoch == 1

    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[LambdaCallback(on_epoch_end=stop)])
    assert history.epoch == [0, 1]


def test_stop_training_from_batch_callback_ends_epoch(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras)

    def stopper(m):
        def on_batch_end(batch, logs):
            if batch == 1:
                m.stop_training = True
        return on_batch_end

    kwargs = dict(batch_size=4, epochs=5, shuffle=False, verbose=0)
    expected = keras_model.fit(
        x, y, callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=stopper(keras_model))], **kwargs).history
    history = model.fit(x, y, callbacks=[LambdaCallback(on_train_batch_end=stopper(model))], **kwargs).history
    _assert_history_close(expected, history)
    _assert_weights_close(keras_model, model)


def test_batch_logs_are_floats_matching_keras(keras):
    x, y, _ = _data()
    keras_model, model = _pair(keras, metrics=["accuracy"])
    seen = {"keras": [], "lamina": []}

    def recorder(key):
        return dict(on_train_batch_end=lambda batch, logs: seen[key].append(dict(logs)))

    kwargs = dict(batch_size=8, epochs=1, shuffle=False, verbose=0)
    keras_model.fit(x, y, callbacks=[keras.callbacks.LambdaCallback(**recorder("keras"))], **kwargs)
    model.fit(x, y, callbacks=[LambdaCallback(**recorder("lamina"))], **kwargs)
    assert len(seen["lamina"]) == len(seen["keras"]) == 3
    for expected, logs in zip(seen["keras"], seen["lamina"]):
        assert sorted(logs) == sorted(expected) and all(type(v) is float for v in logs.values())
        for key in expected:
            np.testing.assert_allclose(logs[key], expected[key], atol=1e-6)


def _normalise_progress(text):
    text = re.sub(r"\d+(\.\d+)?(ms|us|s)/step", "T/step", text)
    return re.sub(r" - \d+s - ", " - Ns - ", text)


def test_progress_bar_verbose_2_matches_keras(keras, capsys):
    x, y, _ = _data()
    keras_model, model = _pair(keras, metrics=["accuracy"])
    kwargs = dict(batch_size=8, epochs=3, shuffle=False, verbose=2, validation_split=0.25)
    keras_model.fit(x, y, **kwargs)
    expected = capsys.readouterr().out
    model.fit(x, y, **kwargs)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 6
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all(re.match(r"3/3 - \d+s - ", line) for line in lines[1::2])
    assert _normalise_progress(out) == _normalise_progress(expected)


def test_progress_bar_verbose_0_prints_nothing(capsys):
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.25)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_bar_not_a_terminal_prints_no_line_per_step(capsys):
    x, y, _ = _data()
    model = _mlp(lamina)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(x, y, batch_size=2, epochs=2, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and len(lines) == 4
    assert lines[1].startswith("12/12 ")


# ---------------------------------------------------------------- the speed contract
_SYNC_METHODS = ("item", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy", "tolist")


@pytest.fixture
def no_sync_in_batches(monkeypatch):
    """Make every host-synchronising Tensor method raise while a fit epoch's batches run.

    The guard is on from the first batch of an ``ArrayBatches`` pass until the pass
    ends, so the epoch-end reading of the metrics is allowed.
    """
    state = {"on": False}

    def guarded(name, original):
        def method(self, *args, **kwargs):
            if state["on"]:
                raise AssertionError(f"Tensor.{name}() synchronised with the host inside a training step")
            return original(self, *args, **kwargs)
        return method

    for name in _SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, name, guarded(name, getattr(torch.Tensor, name)))
    original_iter = data_module.ArrayBatches.__iter__

    def guarded_iter(self):
        state["on"] = True
        try:
            yield from original_iter(self)
        finally:
            state["on"] = False

    monkeypatch.setattr(data_module.ArrayBatches, "__iter__", guarded_iter)
    return state


@pytest.mark.parametrize("optimizer, verbose", [("sgd", 0), ("adam", 0), ("rmsprop", 0), ("adam", 1)])
def test_train_step_does_not_sync_with_host(no_sync_in_batches, optimizer, verbose):
    # verbose=1 on a stream that is not a terminal draws the bar once per epoch, after the batches.
    x, y, _ = _data(n=40)
    model = lamina.Sequential([lamina.Input((4,)), Dense(8, activation="relu", kernel_regularizer="l2"),
                               Dropout(0.2), Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy", "mse"],
                  weighted_metrics=["mae"])
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=verbose, validation_split=0.2,
                        class_weight={0: 2.0})
    assert len(history.history["loss"]) == 2
    model.fit(x, y, batch_size=8, epochs=1, verbose=verbose, sample_weight=np.ones(len(x)))


def test_sync_guard_catches_a_sync(no_sync_in_batches):
    class Syncing(lamina.Sequential):
        def train_step(self, data):
            logs = super().train_step(data)
            logs["loss"].item()
            return logs

    x, y, _ = _data()
    model = Syncing([lamina.Input((4,)), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(AssertionError, match="synchronised"):
        model.fit(x, y, epochs=1, verbose=0)


def test_predict_keeps_only_the_result_and_one_batch():
    """predict fills a preallocated array: earlier batch outputs are freed as it goes."""
    import tracemalloc
    import weakref

    x = np.random.RandomState(0).randn(4096, 4).astype("float32")
    model = lamina.Sequential([lamina.Input((4,)), Dense(64), Dense(32)])
    alive_behind = []
    refs = []

    def on_batch_end(batch, logs):
        refs.append(weakref.ref(logs["outputs"]))
        alive_behind.append(sum(ref() is not None for ref in refs[:-2]))

    watch = LambdaCallback(on_predict_batch_end=on_batch_end)
    model.predict(x[:64], batch_size=64, verbose=0)  # builds before measuring
    tracemalloc.start()
    try:
        result = model.predict(x, batch_size=64, verbose=0, callbacks=[watch])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(refs) == 4096 // 64 and max(alive_behind) == 0
    assert peak < result.nbytes + 256 * 1024  # the result plus a bounded working set
    np.testing.assert_allclose(result[-64:], model.predict_on_batch(x[-64:]), rtol=1e-6)


def test_predict_fast_sequential_path_matches_model_calls():
    from lamina.layers import BatchNormalization, Dropout
    from lamina.training import trainer as trainer_module

    model = lamina.Sequential([lamina.Input((4,)), Dense(6, activation="relu"), BatchNormalization(),
                               Dropout(0.5), Dense(2, activation="softmax")])
    model.layers[1].moving_mean.data.fill_(0.3)  # inference must use the moving statistics
    x = np.random.RandomState(0).randn(37, 4).astype("float32")
    assert trainer_module._plain_sequential_calls(model) is not None
    expected = model(torch.from_numpy(x), training=False).detach().numpy()
    np.testing.assert_allclose(model.predict(x, batch_size=5, verbose=0), expected, rtol=1e-6, atol=1e-7)


def test_predict_fast_sequential_path_steps_aside_for_hooks():
    from lamina.training import trainer as trainer_module

    model = lamina.Sequential([lamina.Input((4,)), Dense(3)])
    calls = []
    model.layers[0].register_forward_hook(lambda module, inputs, output: calls.append(1))
    assert trainer_module._plain_sequential_calls(model) is None
    model.predict(np.ones((10, 4), "float32"), batch_size=2, verbose=0)
    assert len(calls) == 5


def _chain_twins(seed=0):
    """Two copies of a Sequential with BatchNormalization and Dropout, same initial weights."""
    from lamina.layers import BatchNormalization

    def make():
        return lamina.Sequential([lamina.Input((4,)), Dense(6, activation="relu"), BatchNormalization(),
                                  Dropout(0.5), Dense(3, activation="softmax")])

    fast, full = make(), make()
    full.set_weights(fast.get_weights())
    for model in (fast, full):
        model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="categorical_crossentropy",
                      metrics=["accuracy"])
    return fast, full


def test_fit_runs_a_plain_sequentials_layer_calls_back_to_back(monkeypatch):
    """After a batch of the same shape went through model(), train steps call the layers'
    `call`s directly: the same weights, BatchNormalization statistics and history as full
    calls (Dropout sees training=True: the same torch seed gives the same masks)."""
    from lamina.layers import base as layer_base
    from lamina.training import trainer as trainer_module

    x, y, _ = _data(n=40)
    fast, full = _chain_twins()
    original = layer_base.Layer.__call__
    calls = []

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(layer_base.Layer, "__call__", counting)
    torch.manual_seed(3)
    history = fast.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    fast_calls = len(calls)
    monkeypatch.setattr(trainer_module, "_train_chain_of", lambda model, trainer: None)
    calls.clear()
    torch.manual_seed(3)
    expected = full.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert len(calls) == 10 * 5  # 10 steps, the model and its 4 layers each
    assert fast_calls == 5  # the first batch only (every batch has the same shape)
    assert history.history.keys() == expected.history.keys()
    for key, values in expected.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=1e-6, atol=1e-7)
    for a, b in zip(fast.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fit_layer_chain_steps_aside_for_new_shapes_losses_and_hooks():
    """A batch of a new shape, a layer holding add_loss losses and a forward hook all go
    through model(): the last, smaller batch is checked; losses are cleared every step;
    hooks run on every step; current_training() is True inside layer calls either way."""
    from lamina.layers import Layer, base as layer_base
    from lamina.training import trainer as trainer_module

    class Penalised(Layer):
        def call(self, inputs):
            seen.append(layer_base.current_training())
            self.add_loss(inputs.abs().mean())
            return inputs

    seen = []
    x, y, _ = _data(n=20)
    model = lamina.Sequential([lamina.Input((4,)), Dense(3, activation="softmax"), Penalised()])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    seen.clear()  # (building the model ran the layer once, not training)
    chain = trainer_module._train_chain_of(model, model._trainer)
    assert chain is not None
    chain(torch.ones(8, 4))
    chain(torch.ones(8, 4))  # the layer holds a loss: a full call again, which clears it first
    assert len(model.losses) == 1
    assert chain(torch.ones(3, 4)).shape == (3, 3) and (torch.Size([3, 4]), torch.float32,
                                                       torch.device("cpu")) in chain.checked
    history = model.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    assert all(seen) and len(seen) == 6  # 3 chain calls above, 3 steps
    assert np.isfinite(history.history["loss"][0])

    # Penalised's losses stay with it (Keras keeps them until its model is called again);
    # another model's steps take the chain all the same once its first call set them aside.
    class Recorder(Layer):
        def call(self, inputs):
            seen.append(layer_base.current_training())
            return inputs

    plain = lamina.Sequential([lamina.Input((4,)), Dense(3, activation="softmax"), Recorder()])
    plain.compile(optimizer="sgd", loss="categorical_crossentropy")
    seen.clear()
    plain.fit(x, y, batch_size=4, verbose=0)
    assert seen == [True] * 5

    hooked = lamina.Sequential([lamina.Input((4,)), Dense(3, activation="softmax")])
    hooked.compile(optimizer="sgd", loss="categorical_crossentropy")
    runs = []
    hooked.layers[0].register_forward_hook(lambda module, inputs, output: runs.append(1))
    assert trainer_module._train_chain_of(hooked, hooked._trainer) is None
    hooked.fit(x, y, batch_size=5, verbose=0)
    assert len(runs) == 4
