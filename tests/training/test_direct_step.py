"""Tests for ``lamina/training/direct_step.py``: whole-step graphs called without Dynamo's frame.

Each test fits two copies of a model with ``jit_compile=True`` from the same weights and
seed: one calls the compiled graph directly after its first step (the default), the other
always goes through Dynamo. Their histories, weights and statistics must be the same. The
backend is ``aot_eager`` (traces like inductor, without generating code) to stay fast; the
inductor test in test_jit_compile.py checks that the direct calls are used there too.
"""

import numpy as np
import pytest
import torch

import lamina
from lamina.layers import Dense
from lamina.training import direct_step


@pytest.fixture(autouse=True)
def aot_eager(monkeypatch):
    monkeypatch.setenv("LAMINA_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _convnet():
    return lamina.Sequential([
        lamina.Input((6, 6, 2)),
        lamina.layers.Conv2D(4, 3, use_bias=False, kernel_regularizer=lamina.regularizers.L2(0.05)),
        lamina.layers.BatchNormalization(),
        lamina.layers.Activation("relu"),
        lamina.layers.Flatten(),
        lamina.layers.Dropout(0.25),
        Dense(3, activation="softmax"),
    ])


def _data(n=40, shape=(6, 6, 2), classes=3, seed=1):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, *shape).astype("float32")
    return x, np.eye(classes, dtype="float32")[rng.randint(0, classes, n)]


def _twins(build, loss="categorical_crossentropy", **compile_kwargs):
    """Two compiled copies of ``build()`` with the same weights: (direct, through_dynamo)."""
    models, weights = [], None
    for _ in range(2):
        lamina.clear_session()
        model = build()
        if weights is None:
            weights = model.get_weights()
        else:
            model.set_weights(weights)
        model.compile(optimizer=lamina.optimizers.Adam(0.01), loss=loss, jit_compile=True, **compile_kwargs)
        models.append(model)
    return models


def _fitted_twins(build, x, y, seed=1, **compile_kwargs):
    """``_twins`` after one epoch each; the second then always calls through Dynamo."""
    direct, dynamo = _twins(build, **compile_kwargs)
    first = [_fit(model, x, y, seed=seed, epochs=1) for model in (direct, dynamo)]
    _through_dynamo_only(dynamo)
    return direct, dynamo, first


def _through_dynamo_only(model):
    """Make ``model``'s compiled train step skip its direct calls (after its first fit built it)."""
    model._trainer._jit["train"].direct.call = lambda key, frame: None


def _count_dynamo_calls(model):
    step = model._trainer._jit["train"]
    compiled, calls = step.compiled, []

    def counting(*args, **kwargs):
        calls.append(1)
        return compiled(*args, **kwargs)

    step.compiled = counting
    return calls


def _fit(model, x, y, seed, **kwargs):
    lamina.utils.set_random_seed(seed)
    kwargs = {"batch_size": 16, "epochs": 2, "verbose": 0, **kwargs}
    return model.fit(x, y, **kwargs).history


def _assert_same(direct, dynamo, direct_history, dynamo_history):
    assert direct_history.keys() == dynamo_history.keys()
    for key in direct_history:
        np.testing.assert_allclose(direct_history[key], dynamo_history[key], rtol=1e-6, atol=1e-7)
    for a, b in zip(direct.get_weights(), dynamo.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_whole_step_is_called_directly_and_matches_dynamo_batchnorm_dropout_regularizer():
    x, y = _data()
    direct, dynamo, first = _fitted_twins(_convnet, x, y, seed=5, metrics=["accuracy"])
    calls = [_count_dynamo_calls(model) for model in (direct, dynamo)]
    second = [_fit(model, x, y, seed=6, epochs=3) for model in (direct, dynamo)]
    # 40 samples in batches of 16: two shapes, both seen in the first fit; 9 steps in the second.
    steps = direct._trainer._jit["train"].direct.steps
    assert len(steps) == 2 and all(step.rebuild is not None for step in steps.values())
    assert (len(calls[0]), len(calls[1])) == (0, 9)
    _assert_same(direct, dynamo, first[0], first[1])
    _assert_same(direct, dynamo, second[0], second[1])
    # The graph updated BatchNormalization's statistics on the direct calls too.
    np.testing.assert_allclose(direct.layers[1].moving_mean.detach().numpy(),
                               dynamo.layers[1].moving_mean.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert np.abs(direct.layers[1].moving_mean.detach().numpy()).max() > 0


def test_direct_calls_keep_per_output_losses_of_a_multi_output_model():
    x, _ = _data(shape=(5,))
    rng = np.random.RandomState(2)
    y = {"a": np.eye(3, dtype="float32")[rng.randint(0, 3, 40)], "b": rng.randn(40, 1).astype("float32")}

    def build():
        inputs = lamina.Input((5,))
        hidden = Dense(8, activation="relu")(inputs)
        return lamina.Model(inputs, {"a": Dense(3, activation="softmax", name="a")(hidden),
                                     "b": Dense(1, name="b")(hidden)})

    direct, dynamo, first = _fitted_twins(build, x, y, seed=3, loss={"a": "categorical_crossentropy", "b": "mse"},
                                          loss_weights={"a": 1.0, "b": 0.5}, metrics={"a": ["accuracy"]})
    second = [_fit(model, x, y, seed=4) for model in (direct, dynamo)]
    assert direct._trainer._jit["train"].direct.steps
    assert {"a_loss", "b_loss", "a_accuracy", "loss"} <= second[0].keys()
    _assert_same(direct, dynamo, first[0], first[1])
    _assert_same(direct, dynamo, second[0], second[1])


def test_new_arguments_go_through_dynamo_then_are_called_directly():
    # Sample weights change the step's arguments: that call traces a graph of its own, and
    # the direct calls made for calls without weights are not used for it.
    x, y = _data()
    weights = np.random.RandomState(3).uniform(0.0, 2.0, len(x)).astype("float32")
    direct, dynamo, first = _fitted_twins(_convnet, x, y)
    second = [_fit(model, x, y, seed=2, sample_weight=weights) for model in (direct, dynamo)]
    keys = direct._trainer._jit["train"].direct.steps
    assert sum(key[2] is None for key in keys) == 2 and sum(key[2] is not None for key in keys) == 2
    _assert_same(direct, dynamo, first[0], first[1])
    _assert_same(direct, dynamo, second[0], second[1])


def test_direct_calls_read_state_replaced_between_fits():
    # The graph's inputs are read from the trainer and model at every call: a buffer replaced
    # by a new tensor is the one the step uses.
    x, y = _data()
    direct, dynamo, _ = _fitted_twins(_convnet, x, y)
    for model in (direct, dynamo):
        model.layers[1].moving_variance = torch.full((4,), 3.0)
    second = [_fit(model, x, y, seed=2, epochs=1) for model in (direct, dynamo)]
    _assert_same(direct, dynamo, second[0], second[1])
    np.testing.assert_allclose(direct.layers[1].moving_variance.numpy(),
                               dynamo.layers[1].moving_variance.numpy(), rtol=1e-6)
    assert direct.layers[1].moving_variance.numpy().min() > 2.0  # moved from 3 by momentum 0.99
    assert len(direct._trainer._jit["train"].direct.steps) == 2


class _Recorder(lamina.layers.Layer):
    """A layer with a Python side effect in ``call`` (it keeps the last batch size)."""

    def call(self, inputs):
        self.last_batch = inputs.shape[0]
        return inputs


def test_a_step_with_other_python_side_effects_is_always_called_through_dynamo():
    x, y = _data(shape=(5,))
    lamina.clear_session()
    model = lamina.Sequential([lamina.Input((5,)), _Recorder(), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    calls = None
    for epoch in range(2):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        if calls is None:
            calls = _count_dynamo_calls(model)
    step = model._trainer._jit["train"]
    assert step.params is not None and not step.direct.steps
    assert len(calls) == 3  # every step of the second fit went through Dynamo, which replays the effect
    assert model.layers[0].last_batch == 8


def test_a_failing_direct_call_falls_back_to_dynamo():
    x, y = _data()
    direct, dynamo, _ = _fitted_twins(_convnet, x, y)
    calls = direct._trainer._jit["train"].direct

    def refuse(*args):
        raise AssertionError("input check failed")  # as inductor's input checks raise

    for step in calls.steps.values():
        step.compiled = refuse
    second = [_fit(model, x, y, seed=2) for model in (direct, dynamo)]
    assert calls.disabled and not calls.steps
    _assert_same(direct, dynamo, second[0], second[1])


def test_paths_read_what_dynamo_sources_name():
    from torch._dynamo.source import (AttrSource, GetItemSource, GlobalSource, LocalSource,
                                      TensorProperty, TensorPropertySource)

    owner = type("Owner", (), {})()
    owner.items = [torch.zeros(2), {"k": torch.ones(3, 4)}]
    frame = {"self": owner, "x": torch.zeros(7, 2)}
    matrix = GetItemSource(GetItemSource(AttrSource(LocalSource("self"), "items"), 1), "k")
    assert direct_step._reader(matrix)(frame) is owner.items[1]["k"]
    assert direct_step._reader(GetItemSource(AttrSource(LocalSource("self"), "items"), 0))(frame) is owner.items[0]
    assert direct_step._reader(TensorPropertySource(LocalSource("x"), TensorProperty.SIZE, 0))(frame) == 7
    assert direct_step._reader(TensorPropertySource(matrix, TensorProperty.STRIDE, 0))(frame) == 4
    assert direct_step._reader(LocalSource("x"))(frame) is frame["x"]
    assert direct_step._reader(AttrSource(GlobalSource("torch"), "pi")) is None


def test_a_graph_is_only_bound_to_cpu_inputs_whose_results_it_returns():
    x = torch.zeros(2, 3)
    output = torch.ones(2)
    step = direct_step.DirectStep(lambda *inputs: [output], [lambda frame: frame["x"]])
    assert not step.bind({"x": x}, [output], (torch.ones(2),))  # a result not among the outputs
    assert not step.bind({"x": x.to("meta")}, [output], (output,))  # not on the CPU
    assert step.bind({"x": x}, [output], ([output], output))
    rebuilt = step.rebuild([output])
    assert type(rebuilt) is tuple and rebuilt[0][0] is output and rebuilt[1] is output
    assert step.fits([x]) and not step.fits([x.double()]) and not step.fits([x[:1]])


def test_inputs_are_checked_again_when_a_fit_begins():
    x = torch.zeros(2, 3)
    calls = direct_step.DirectCalls()
    capture = direct_step.StepCapture(backend=None)
    output = torch.ones(2)
    capture.last = (direct_step.DirectStep(lambda *inputs: [output], [lambda frame: frame["x"]]), [output])
    key = direct_step.argument_key(None)
    calls.record(key, {"x": x}, capture, (output,))
    assert calls.call(key, {"x": x})[0] is output
    # Within one fit only the arguments are checked; as the next begins, every input again.
    assert calls.call(key, {"x": x.double()})[0] is output
    direct_step.new_generation()
    assert calls.call(key, {"x": x.double()}) is None and not calls.steps
