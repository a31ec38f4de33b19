"""Multi-output compile/fit/evaluate against Keras: per-output losses, weights, metrics and History keys."""

import numpy as np
import pytest

import lamina


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((40, 4), dtype=np.float32)
    y1 = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    y2 = rng.random((40, 1), dtype=np.float32)
    return x, y1, y2


def _pair(keras, dict_outputs=False):
    models = []
    for lib in (keras, lamina):
        a = lib.Input((4,))
        h = lib.layers.Dense(8, activation="relu", name="hidden")(a)
        o1 = lib.layers.Dense(3, activation="softmax", name="cls")(h)
        o2 = lib.layers.Dense(1, name="reg")(h)
        models.append(lib.Model(a, {"p": o1, "q": o2} if dict_outputs else [o1, o2]))
    models[1].set_weights(models[0].get_weights())
    return models


@pytest.mark.parametrize("style", ["list", "dict"])
def test_multi_output_fit_matches_keras(keras, style):
    keras_model, model = _pair(keras)
    x, y1, y2 = _data()
    if style == "list":
        kwargs = dict(loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                      metrics=[["accuracy"], ["mae"]])
        y = [y1, y2]
    else:
        kwargs = dict(loss={"cls": "categorical_crossentropy", "reg": "mse"}, loss_weights={"cls": 0.3, "reg": 2.0},
                      metrics={"cls": "accuracy", "reg": ["mae"]})
        y = {"cls": y1, "reg": y2}
    keras_model.compile(optimizer=keras.optimizers.SGD(0.1), **kwargs)
    model.compile(optimizer=lamina.optimizers.SGD(0.1), **kwargs)
    expected = keras_model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, validation_split=0.25)
    got = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, validation_split=0.25)
    assert sorted(got.history) == sorted(expected.history)
    for key in expected.history:
        np.testing.assert_allclose(got.history[key], expected.history[key], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), keras_model.evaluate(x, y, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_multi_output_dict_outputs_use_keys(keras):
    keras_model, model = _pair(keras, dict_outputs=True)
    x, y1, y2 = _data()
    kwargs = dict(loss={"p": "categorical_crossentropy", "q": "mse"}, metrics={"p": ["acc"]})
    keras_model.compile(optimizer="sgd", **kwargs)
    model.compile(optimizer="sgd", **kwargs)
    expected = keras_model.evaluate(x, {"p": y1, "q": y2}, verbose=0, return_dict=True)
    got = model.evaluate(x, {"p": y1, "q": y2}, verbose=0, return_dict=True)
    assert sorted(got) == sorted(expected) == ["loss", "p_acc", "p_loss", "q_loss"]
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6)


def test_multi_output_wrong_targets_error_names_outputs():
    a = lamina.Input((4,))
    model = lamina.Model(a, [lamina.layers.Dense(2, name="first")(a), lamina.layers.Dense(1, name="second")(a)])
    model.compile(optimizer="sgd", loss="mse")
    x, _, y2 = _data()
    with pytest.raises(ValueError, match=r"2 outputs \['first', 'second'\]"):
        model.fit(x, y2, verbose=0)


def test_multi_output_loss_list_length_checked():
    a = lamina.Input((4,))
    model = lamina.Model(a, [lamina.layers.Dense(2)(a), lamina.layers.Dense(1)(a)])
    model.compile(optimizer="sgd", loss=["mse", "mse", "mse"])
    x, _, y2 = _data()
    with pytest.raises(ValueError, match="3 entries, but the model has 2 outputs"):
        model.fit(x, [y2, y2], verbose=0)
