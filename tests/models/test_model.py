"""Tests for lamina.models.model: subclassed models, Model(inputs, outputs) dispatch,
building, inspection and parity with a Keras subclassed model holding the same weights."""

import numpy as np
import pytest
import torch

import lamina
from lamina import Input, Model, Sequential
from lamina.layers import Dense, Layer
from lamina.models import Functional


def _make_model_class(module):
    """The same subclassed model written against ``module`` (lamina or keras)."""

    class Classifier(module.Model):
        def __init__(self, hidden=8, **kwargs):
            super().__init__(**kwargs)
            self.hidden = module.layers.Dense(hidden, activation="relu")
            self.dropout = module.layers.Dropout(0.5)
            self.head = module.layers.Dense(3, activation="softmax")

        def call(self, inputs, training=None):
            return self.head(self.dropout(self.hidden(inputs), training=training))

    return Classifier


class Recorder(Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = Dense(2)
        self.calls = []

    def call(self, inputs, training=None):
        self.calls.append(training)
        return self.dense(inputs)


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------- subclassing
def test_model_subclass_builds_on_first_call():
    model = _make_model_class(lamina)()
    assert not model.built and model.weights == []
    out = model(np.ones((4, 5), "float32"))
    assert model.built and tuple(out.shape) == (4, 3)
    torch.testing.assert_close(out.sum(-1), torch.ones(4))
    assert model.count_params() == 5 * 8 + 8 + 8 * 3 + 3


def test_model_subclass_first_call_runs_once():
    model = Recorder()
    model(torch.ones(1, 3))
    assert model.calls == [False]


def test_model_subclass_receives_training_flag():
    model = Recorder()
    model(torch.ones(1, 3), training=True)
    model(torch.ones(1, 3), training=False)
    model(torch.ones(1, 3))
    assert model.calls == [True, False, False]


def test_model_training_flag_reaches_nested_dropout():
    model = _make_model_class(lamina)(hidden=200)
    x = torch.ones(4, 5)
    torch.testing.assert_close(model(x), model(x))
    assert not torch.equal(model(x, training=True), model(x, training=True))


def test_model_build_with_input_shape():
    model = _make_model_class(lamina)()
    model.build((None, 5))
    assert model.built and model.count_params() == 75
    assert [w.shape for w in model.get_weights()] == [(5, 8), (8,), (8, 3), (3,)]


def test_model_subclass_weights_and_predictions_match_keras(keras):
    ours, theirs = _make_model_class(lamina)(), _make_model_class(keras)()
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    ours(x)
    theirs(x)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    assert ours.count_params() == theirs.count_params()
    theirs.set_weights([np.random.default_rng(i).normal(size=w.shape).astype("float32")
                        for i, w in enumerate(theirs.get_weights())])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_model_subclass_layers_in_assignment_order_like_keras(keras):
    ours, theirs = _make_model_class(lamina)(), _make_model_class(keras)()
    assert [type(l).__name__ for l in ours.layers] == [type(l).__name__ for l in theirs.layers]
    assert [type(l).__name__ for l in ours.layers] == ["Dense", "Dropout", "Dense"]


def test_model_subclass_default_name_like_keras(keras):
    lamina.clear_session()
    keras.backend.clear_session(free_memory=False)
    assert _make_model_class(lamina)().name == _make_model_class(keras)().name == "classifier"


def test_model_subclass_rejects_positional_arguments():
    class Plain(Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="keyword"):
        Plain(Input((2,)))


def test_model_subclass_name_and_trainable():
    model = _make_model_class(lamina)(name="clf", trainable=False)
    model(torch.ones(1, 5))
    assert model.name == "clf" and model.trainable_weights == [] and len(model.non_trainable_weights) == 4


def test_model_base_call_not_implemented():
    with pytest.raises(NotImplementedError):
        Model()(torch.ones(1, 2))


def test_model_get_layer():
    model = _make_model_class(lamina)()
    assert model.get_layer(index=1) is model.dropout
    assert model.get_layer(model.head.name) is model.head
    with pytest.raises(ValueError, match="No such layer"):
        model.get_layer("missing")


def test_model_layer_list_attribute_tracked():
    class Stack(Model):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Dense(4), Dense(2)])

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    model = Stack()
    model(torch.ones(1, 3))
    assert len(model.layers) == 2 and model.count_params() == 3 * 4 + 4 + 4 * 2 + 2


def test_model_state_dict_and_torch_optimizer():
    model = _make_model_class(lamina)()
    model(torch.ones(1, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.get_weights()
    loss = model(torch.randn(4, 5), training=True).square().sum()
    loss.backward()
    optimizer.step()
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    clone = _make_model_class(lamina)()
    clone(torch.ones(1, 5))
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 5)
    torch.testing.assert_close(clone(x), model(x))


# ---------------------------------------------------------------- Model(inputs, outputs)
def test_model_with_inputs_outputs_is_functional():
    x = Input((3,))
    model = Model(x, Dense(2)(x))
    assert type(model) is Functional and isinstance(model, Model)
    model = Model(inputs=x, outputs=Dense(2)(x), name="kw")
    assert type(model) is Functional and model.name == "kw"


def test_model_functional_and_subclass_agree():
    x = Input((5,))
    hidden, head = Dense(8, activation="relu"), Dense(3, activation="softmax")
    functional = Model(x, head(hidden(x)))
    subclassed = _make_model_class(lamina)()
    subclassed(torch.ones(1, 5))
    subclassed.set_weights(functional.get_weights())
    data = torch.randn(4, 5)
    torch.testing.assert_close(subclassed(data), functional(data))


def test_model_sequential_is_a_model():
    assert isinstance(Sequential(), Model)


# ---------------------------------------------------------------- compile and friends
def test_model_compile_sets_optimizer_and_loss():
    model = Sequential([Input((4,)), Dense(2)])
    assert not model.compiled and model.optimizer is None and model.metrics_names == []
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert model.compiled and type(model.optimizer).__name__ == "SGD" and model.loss == "mse"
    assert model.metrics_names == ["loss", "compile_metrics"]


def test_model_compile_rejects_unknown_jit_compile_values():
    # jit_compile=True is supported (tests/training/test_jit_compile.py); other values are not.
    model = Sequential([Input((4,)), Dense(2)])
    with pytest.raises(ValueError, match="jit_compile"):
        model.compile(optimizer="sgd", loss="mse", jit_compile="xla")


def test_model_subclass_fit_reduces_loss():
    model = _make_model_class(lamina)()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = np.eye(3, dtype="float32")[(x[:, 0] > 0).astype(int)]
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_model_predict_before_fit_on_unbuilt_model():
    model = _make_model_class(lamina)()
    x = np.ones((8, 5), "float32")
    assert model.predict(x, verbose=0).shape == (8, 3)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((8, 3), "float32"), epochs=1, verbose=0)


def test_model_predict_on_batch_matches_call():
    model = _make_model_class(lamina)()
    x = np.ones((3, 5), "float32")
    np.testing.assert_allclose(model.predict_on_batch(x), _numpy(model(x)), rtol=1e-6)


def test_model_subclass_with_custom_layer_and_add_loss():
    class Penalty(Layer):
        def call(self, x):
            self.add_loss(x.abs().mean())
            return x

    class WithPenalty(Model):
        def __init__(self):
            super().__init__()
            self.penalty = Penalty()
            self.out = Dense(1, kernel_initializer="ones")

        def call(self, x, training=None):
            return self.out(self.penalty(x))

    model = WithPenalty()
    model(torch.full((2, 3), -2.0))
    assert [float(v) for v in model.losses] == [2.0]
