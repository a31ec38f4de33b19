"""Tests for ``compile(jit_compile=True)``: torch.compile of the steps, with eager fallback.

The backend comes from ``LAMINA_COMPILE_BACKEND``; these tests use ``"aot_eager"`` (traces
forward and backward like inductor, without generating code) so they stay fast.
"""

import numpy as np
import pytest
import torch

import lamina
from lamina.layers import Dense


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setenv("LAMINA_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _data(n=40, features=5, classes=3):
    rng = np.random.RandomState(0)
    x = rng.randn(n, features).astype("float32")
    return x, np.eye(classes, dtype="float32")[rng.randint(0, classes, n)]


def _model(jit_compile, weights=None, **compile_kwargs):
    lamina.clear_session()
    model = lamina.Sequential([lamina.Input((5,)), Dense(8, activation="relu"), Dense(3, activation="softmax")])
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile, **compile_kwargs)
    return model


def _pair(**compile_kwargs):
    eager = _model(False, **compile_kwargs)
    jit = _model(True, eager.get_weights(), **compile_kwargs)
    return eager, jit


def test_jit_compile_fit_matches_eager(aot_eager):
    x, y = _data()
    eager, jit = _pair()
    # 40 samples in batches of 16: the last batch is smaller and reuses the dynamic graph.
    eager_history = eager.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    jit_history = jit.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    assert jit.jit_compile and not eager.jit_compile
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jit_history["accuracy"], eager_history["accuracy"], atol=1e-6)
    for a, b in zip(jit.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_jit_compile_evaluate_and_predict_match_eager(aot_eager):
    x, y = _data()
    eager, jit = _pair()
    np.testing.assert_allclose(jit.evaluate(x, y, batch_size=16, verbose=0),
                               eager.evaluate(x, y, batch_size=16, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jit.predict(x, batch_size=16, verbose=0),
                               eager.predict(x, batch_size=16, verbose=0), rtol=1e-5, atol=1e-6)


def test_jit_compile_records_compile_time(aot_eager):
    x, y = _data()
    eager, jit = _pair()
    eager.fit(x, y, batch_size=16, verbose=0)
    jit.fit(x, y, batch_size=16, verbose=0)
    assert eager.compile_time == 0.0
    assert jit.compile_time > 0.0
    first = jit.compile_time
    jit.fit(x, y, batch_size=16, verbose=0)  # same shapes: nothing new to compile
    assert jit.compile_time == pytest.approx(first, abs=0.05)


def test_jit_compile_falls_back_with_warning_when_backend_fails(monkeypatch):
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    torch._dynamo.reset()
    torch._dynamo.register_backend(name="lamina_test_failing", compiler_fn=failing_backend)
    monkeypatch.setenv("LAMINA_COMPILE_BACKEND", "lamina_test_failing")
    x, y = _data()
    eager, jit = _pair()
    eager_history = eager.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    with pytest.warns(UserWarning, match="could not compile the train step.*cannot compile anything"):
        jit_history = jit.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-6)
    for a, b in zip(jit.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    torch._dynamo.reset()


def test_jit_compile_falls_back_with_warning_for_unknown_backend(monkeypatch):
    monkeypatch.setenv("LAMINA_COMPILE_BACKEND", "no_such_backend")
    x, y = _data()
    model = _model(True)
    with pytest.warns(UserWarning, match="running it eagerly instead"):
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


@pytest.mark.parametrize("value, expected", [("auto", False), (False, False), (None, False), (True, True)])
def test_jit_compile_auto_means_eager(value, expected):
    model = _model(value)
    assert model.jit_compile is expected


def test_jit_compile_with_run_eagerly_warns_and_runs_eagerly():
    model = lamina.Sequential([lamina.Input((5,)), Dense(3)])
    with pytest.warns(UserWarning, match="run_eagerly"):
        model.compile(optimizer="sgd", loss="mse", jit_compile=True, run_eagerly=True)
    assert model.jit_compile is False


def test_jit_compile_rejects_other_values():
    model = lamina.Sequential([lamina.Input((5,)), Dense(3)])
    with pytest.raises(ValueError, match="jit_compile='yes'"):
        model.compile(optimizer="sgd", loss="mse", jit_compile="yes")


def test_jit_compile_accepts_torch_compile_modes(aot_eager):
    x, y = _data()
    eager, jit = _pair()
    jit.compile(optimizer=lamina.optimizers.Adam(0.01), loss="categorical_crossentropy",
                metrics=["accuracy"], jit_compile="reduce-overhead")
    assert jit.jit_compile and jit._trainer.jit_mode == "reduce-overhead"
    eager_history = eager.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    jit_history = jit.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-5, atol=1e-6)
    # The mode goes to inductor only: other backends run without it.
    assert jit._trainer._jit["train"].mode is None


def test_jit_compile_default_mode_is_plain_true():
    model = _model("default")
    assert model.jit_compile and model._trainer.jit_mode is None


def test_jit_compile_rejects_unknown_mode():
    with pytest.raises(ValueError, match="reduce-overhead"):
        _model("fastest")


def _fit_pair(build, x, y, loss="categorical_crossentropy", epochs=2, batch_size=16):
    """The same model (same initial weights) fitted eagerly and with jit_compile=True."""
    histories, models = [], []
    weights = None
    for jit_compile in (False, True):
        lamina.clear_session()
        model = build()
        if weights is None:
            weights = model.get_weights()
        else:
            model.set_weights(weights)
        model.compile(optimizer=lamina.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"],
                      jit_compile=jit_compile)
        histories.append(model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False,
                                   verbose=0).history)
        models.append(model)
    return histories, models


def test_jit_compile_train_step_is_one_graph_of_forward_and_backward(aot_eager):
    x, y = _data()
    (eager_history, jit_history), (eager, jit) = _fit_pair(
        lambda: lamina.Sequential([lamina.Input((5,)), Dense(8, activation="relu"),
                                   Dense(3, activation="softmax")]), x, y)
    step = jit._trainer._jit["train"]
    assert step.params is not None  # the whole-step graph (torch.func.grad), not forward-only
    assert [tuple(p.shape) for p in step.params] == [(8, 5), (8,), (3, 8), (3,)]
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jit_history["accuracy"], eager_history["accuracy"], atol=1e-6)


def test_jit_compile_whole_step_batchnorm_statistics_and_regularizer_match_eager(aot_eager):
    rng = np.random.RandomState(1)
    x = rng.randn(40, 6, 6, 2).astype("float32")
    y = np.eye(3, dtype="float32")[rng.randint(0, 3, 40)]

    def build():
        return lamina.Sequential([
            lamina.Input((6, 6, 2)),
            # No bias before BatchNormalization: its gradient is zero up to rounding, and Adam
            # would turn that rounding noise into full-size steps that differ between runs.
            lamina.layers.Conv2D(4, 3, use_bias=False, kernel_regularizer=lamina.regularizers.L2(0.05)),
            lamina.layers.BatchNormalization(),
            lamina.layers.Activation("relu"),
            lamina.layers.Flatten(),
            Dense(3, activation="softmax"),
        ])

    (eager_history, jit_history), (eager, jit) = _fit_pair(build, x, y)
    assert jit._trainer._jit["train"].params is not None
    # The L2 term is part of the loss and of its gradient (weights would drift apart otherwise).
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-5, atol=1e-6)
    # BatchNormalization's moving mean and variance (non-trainable) are updated by the graph.
    for a, b in zip(jit.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    moving_mean = jit.layers[1].moving_mean.detach().cpu().numpy()
    assert np.abs(moving_mean).max() > 0


def test_jit_compile_dropout_traces_with_a_dynamic_batch(aot_eager):
    x, y = _data()

    def build():
        return lamina.Sequential([lamina.Input((5,)), Dense(16, activation="relu"),
                                  lamina.layers.Dropout(0.5), Dense(3, activation="softmax")])

    lamina.clear_session()
    model = build()
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    step = model._trainer._jit["train"]
    assert step.params is not None
    if not torch.cuda.is_available():  # (torch 2.11 on CUDA retried with static shapes)
        assert step.dynamic  # no retry with static shapes was needed


def test_dropout_under_torch_compile_keeps_keras_scaling():
    layer = lamina.layers.Dropout(0.25)
    inputs = torch.ones(4000, 50)
    layer(inputs)  # built eagerly, as a model's first (eager) step builds its layers
    compiled = torch.compile(lambda t: layer(t, training=True), backend="aot_eager", fullgraph=True)
    torch._dynamo.reset()
    out = compiled(inputs)
    torch._dynamo.reset()
    # Each value is dropped, or kept and scaled by 1 / (1 - rate).
    np.testing.assert_allclose(np.unique(out.numpy()), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(float((out == 0).float().mean()) - 0.25) < 0.01


@pytest.mark.parametrize("recurrent, mask_zero", [("LSTM", False), ("LSTM", True), ("GRU", False)])
def test_jit_compile_recurrent_model_compiles_forward_only_and_matches_eager(aot_eager, recurrent, mask_zero):
    from torch._dynamo.utils import counters

    rng = np.random.RandomState(2)
    x = rng.randint(0, 20, (24, 7))
    x[:5, 4:] = 0  # padding: masked steps when mask_zero
    y = rng.randint(0, 2, (24, 1)).astype("float32")

    def build():
        return lamina.Sequential([lamina.Input((7,), dtype="int64"),
                                  lamina.layers.Embedding(20, 4, mask_zero=mask_zero),
                                  getattr(lamina.layers, recurrent)(5), Dense(1, activation="sigmoid")])

    counters.clear()
    (eager_history, jit_history), (eager, jit) = _fit_pair(build, x, y, loss="binary_crossentropy",
                                                           batch_size=8)
    step = jit._trainer._jit["train"]
    # The recurrent kernel cannot be differentiated by func.grad: the step compiles forward-only.
    assert step.params is None and not step.failed
    # On the CPU the LSTM kernel is one custom operator in that graph (layers/rnn_ops.py); the
    # GRU's runs eagerly, which splits the step into several graphs.
    one_graph = recurrent == "LSTM" and torch.backends.mkldnn.is_available()
    assert (sum(counters["graph_break"].values()) == 0) == one_graph
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(jit.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jit.predict(x, verbose=0), eager.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_jit_compile_add_loss_model_falls_back_to_forward_only(aot_eager):
    x, y = _data()

    def build():
        return lamina.Sequential([lamina.Input((5,)),
                                  Dense(8, activation="relu", activity_regularizer="l2"),
                                  Dense(3, activation="softmax")])

    (eager_history, jit_history), (eager, jit) = _fit_pair(build, x, y)
    assert not jit._trainer._jit["train"].failed
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-5, atol=1e-6)


def test_jit_compile_whole_step_follows_a_change_of_arguments(aot_eager):
    # The compiled step keeps the guards on its arguments: a fit with sample weights after
    # one without (same shapes otherwise) must not reuse the graph traced without them.
    x, y = _data()
    weights = np.random.RandomState(3).uniform(0.0, 2.0, len(x)).astype("float32")
    eager, jit = _pair()
    results = []
    for model in (eager, jit):
        first = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history["loss"]
        second = model.fit(x, y, sample_weight=weights, batch_size=16, epochs=1, shuffle=False,
                           verbose=0).history["loss"]
        results.append(first + second)
    assert jit._trainer._jit["train"].params is not None
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)


def test_jit_compile_inductor_updates_metrics_inside_the_train_graph(monkeypatch):
    # The one test with inductor itself (a few seconds of C++ compiling): with it, the loss
    # tracker and metrics are updated inside the compiled train step. (aot_eager, which the
    # other tests use, cannot analyse those in-place updates and keeps them outside.)
    monkeypatch.setenv("LAMINA_COMPILE_BACKEND", "inductor")
    torch._dynamo.reset()
    x, y = _data()
    eager, jit = _pair()
    eager_history = eager.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    jit_history = jit.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    step = jit._trainer._jit["train"]
    assert step.params is not None and step.measure
    # After its first call through Dynamo, the graph of each batch shape is called directly.
    assert len(step.direct.steps) == 2 and not step.direct.disabled
    np.testing.assert_allclose(jit_history["loss"], eager_history["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jit_history["accuracy"], eager_history["accuracy"], atol=1e-6)
    for a, b in zip(jit.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Under CUDA graphs ("reduce-overhead") the metrics stay outside: inductor will not record
    # a graph that mutates its inputs. (Building the step compiles nothing until it runs.)
    trainer = jit._trainer
    trainer.jit_mode, trainer._jit = "reduce-overhead", {}
    graphs_step = trainer._jit_for("train")
    assert graphs_step.graphs and graphs_step.params is not None and not graphs_step.measure
    torch._dynamo.reset()


def test_jit_compile_whole_step_gradients_keep_the_weights_memory_layout(aot_eager):
    # func.grad returns a conv kernel's gradient channels_last (the activations' layout); the
    # step hands the optimizer gradients in each weight's own layout, as autograd would.
    rng = np.random.RandomState(4)
    x = rng.randn(32, 8, 8, 3).astype("float32")
    y = np.eye(4, dtype="float32")[rng.randint(0, 4, 32)]
    lamina.clear_session()
    model = lamina.Sequential([lamina.Input((8, 8, 3)), lamina.layers.Conv2D(6, 3, activation="relu"),
                               lamina.layers.Conv2D(5, 3), lamina.layers.Flatten(),
                               Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    step = model._trainer._jit["train"]
    assert step.params is not None
    assert [p.grad.stride() for p in step.params] == [p.stride() for p in step.params]


def test_whole_step_guards_keep_arguments_tensors_and_torch_state_only():
    from types import SimpleNamespace

    from lamina.training.trainer import _step_guards

    entries = [SimpleNamespace(guard_type=kind, name=name) for kind, name in [
        ("TENSOR_MATCH", "self.model._modules['dense']._buffers['moving_mean']"),
        ("CONSTANT_MATCH", "sample_weight"),
        ("SEQUENCE_LENGTH", "values"),
        ("TYPE_MATCH", "x[0]"),
        ("GRAD_MODE", ""),
        ("CONSTANT_MATCH", "self.model._modules['dropout'].rate"),
        ("ID_MATCH", "self.model"),
        ("CLOSURE_MATCH", "G['torch'].nn.functional.relu"),
    ]]
    assert _step_guards(entries) == [True, True, True, True, True, False, False, False]
