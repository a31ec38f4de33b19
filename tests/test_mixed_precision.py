"""Tests for lamina.mixed_precision: policies, mixed precision training and loss scaling."""

import numpy as np
import pytest
import torch

import lamina
from lamina import mixed_precision, registry
from lamina.layers import Dense, Layer
from lamina.mixed_precision import DTypePolicy, LossScaleOptimizer

POLICY_NAMES = ["float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16"]


@pytest.fixture(autouse=True)
def _restore_policy():
    yield
    mixed_precision._STATE["policy"] = None


def _data(n=48, features=5, classes=3):
    rng = np.random.RandomState(0)
    x = rng.randn(n, features).astype("float32")
    return x, np.eye(classes, dtype="float32")[rng.randint(0, classes, n)]


class _Probe(Layer):
    """Records the dtype of what it receives and whether autocast is on."""

    def call(self, inputs):
        self.seen = (inputs.dtype, torch.is_autocast_enabled(inputs.device.type))
        return inputs


def _model(weights=None):
    lamina.clear_session()
    probe = _Probe()
    model = lamina.Sequential([lamina.Input((5,)), Dense(8, activation="relu"), probe,
                               Dense(3, activation="softmax")])
    if weights is not None:
        model.set_weights(weights)
    return model, probe


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_dtype_policy_matches_keras(keras, name):
    ours, theirs = DTypePolicy(name), keras.mixed_precision.DTypePolicy(name)
    assert (ours.name, ours.compute_dtype, ours.variable_dtype) == (
        theirs.name, theirs.compute_dtype, theirs.variable_dtype)
    assert repr(ours) == repr(theirs)
    assert ours.get_config() == theirs.get_config()
    assert DTypePolicy.from_config(ours.get_config()) == ours


def test_dtype_policy_rejects_unknown_names():
    with pytest.raises(ValueError, match="mixed_int8.*mixed_float16"):
        DTypePolicy("mixed_int8")
    with pytest.raises(TypeError, match="must be a string"):
        DTypePolicy(16)


def test_global_policy_default_set_and_aliases():
    assert mixed_precision.global_policy() == DTypePolicy("float32")
    mixed_precision.set_global_policy("mixed_bfloat16")
    assert mixed_precision.global_policy().compute_dtype == "bfloat16"
    mixed_precision.set_dtype_policy(DTypePolicy("mixed_float16"))
    assert mixed_precision.dtype_policy().name == "mixed_float16"
    assert DTypePolicy().name == "mixed_float16"  # a nameless policy takes the global one
    assert mixed_precision.Policy is DTypePolicy
    with pytest.raises(ValueError, match="Invalid `policy`"):
        mixed_precision.set_global_policy(3)


def test_mixed_bfloat16_runs_the_step_in_bfloat16_with_float32_weights():
    mixed_precision.set_global_policy("mixed_bfloat16")
    model, probe = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = _data()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert probe.seen == (torch.bfloat16, True)
    assert all(w.dtype == torch.float32 for w in model.weights)
    assert isinstance(model.optimizer, lamina.optimizers.Adam)  # no loss scaling for bfloat16
    assert history["loss"][-1] < history["loss"][0]
    predictions = model.predict(x, verbose=0)
    assert predictions.dtype == np.float32  # outputs in float32, as Keras recommends
    np.testing.assert_allclose(predictions.sum(-1), 1.0, atol=1e-2)


def test_mixed_bfloat16_training_stays_close_to_float32():
    x, y = _data()
    reference, _ = _model()
    weights = reference.get_weights()
    reference.compile(optimizer=lamina.optimizers.SGD(0.1), loss="categorical_crossentropy")
    expected = reference.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    mixed_precision.set_global_policy("mixed_bfloat16")
    model, _ = _model(weights)
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="categorical_crossentropy")
    found = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(found, expected, rtol=3e-2)  # bfloat16 keeps ~3 significant digits


def test_policy_is_read_at_compile_time():
    model, probe = _model()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    mixed_precision.set_global_policy("mixed_bfloat16")
    x, y = _data()
    model.fit(x, y, verbose=0)
    assert probe.seen == (torch.float32, False)


def test_mixed_float16_wraps_the_optimizer_and_trains():
    mixed_precision.set_global_policy("mixed_float16")
    model, probe = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    assert isinstance(model.optimizer, LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, lamina.optimizers.Adam)
    x, y = _data()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert probe.seen == (torch.float16, True)
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    assert model.optimizer.iterations > 0


def test_mixed_float16_without_auto_scale_loss_keeps_the_optimizer():
    mixed_precision.set_global_policy("mixed_float16")
    model, _ = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", auto_scale_loss=False)
    assert isinstance(model.optimizer, lamina.optimizers.Adam)


def test_loss_scale_optimizer_matches_keras(keras):
    """Skip and halve on a non-finite gradient, double after `dynamic_growth_steps` finite steps."""
    gradients = [[4.0, 8.0], [np.inf, 1.0], [2.0, 2.0], [4.0, 4.0], [8.0, -8.0], [1.0, np.nan]]
    theirs = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5), initial_scale=4.0,
                                                 dynamic_growth_steps=2)
    their_variable = keras.Variable(np.array([1.0, 2.0], dtype="float32"))
    theirs.build([their_variable])
    ours = LossScaleOptimizer(lamina.optimizers.SGD(0.5), initial_scale=4.0, dynamic_growth_steps=2)
    our_variable = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    ours.build([our_variable])
    for gradient in gradients:
        gradient = np.array(gradient, dtype="float32")
        theirs.apply([keras.ops.convert_to_tensor(gradient)], [their_variable])
        our_variable.grad = torch.tensor(gradient)
        ours.step()
        np.testing.assert_allclose(our_variable.detach().numpy(), np.asarray(their_variable.numpy()))
        assert float(ours.dynamic_scale) == float(theirs.dynamic_scale.numpy())
        assert int(ours.step_counter) == int(theirs.step_counter.numpy())
        assert ours.iterations == int(theirs.iterations.numpy())


def test_loss_scale_optimizer_apply_does_not_modify_gradients():
    optimizer = LossScaleOptimizer(lamina.optimizers.SGD(1.0), initial_scale=2.0)
    variable = torch.nn.Parameter(torch.tensor([0.0]))
    gradient = torch.tensor([4.0])
    optimizer.apply([gradient], [variable])
    assert float(gradient) == 4.0 and float(variable.detach()) == -2.0


def test_loss_scale_optimizer_config_round_trip_and_state():
    optimizer = LossScaleOptimizer(lamina.optimizers.Adam(0.01), initial_scale=8.0, dynamic_growth_steps=10)
    config = registry.serialize("optimizer", optimizer)
    restored = registry.get("optimizer", config)
    assert restored.get_config() == optimizer.get_config()
    assert type(restored.inner_optimizer).__name__ == "Adam"
    variable = torch.nn.Parameter(torch.ones(2))
    optimizer.build([variable])
    variable.grad = torch.tensor([8.0, np.inf])
    optimizer.step()
    other = LossScaleOptimizer(lamina.optimizers.Adam(0.01), initial_scale=8.0, dynamic_growth_steps=10)
    other.build([torch.nn.Parameter(torch.ones(2))])
    other.set_weights([v.numpy() for v in optimizer.variables])
    assert float(other.dynamic_scale) == 4.0
    assert len(other.variables) == len(optimizer.variables) == 8


def test_loss_scale_optimizer_rejects_base_arguments():
    with pytest.raises(ValueError, match="`clipnorm`.*inner_optimizer"):
        LossScaleOptimizer(lamina.optimizers.SGD(), clipnorm=1.0)
    LossScaleOptimizer(lamina.optimizers.SGD(), clipnorm=None)  # older Keras configs list defaults


def test_fit_multiplies_the_loss_by_loss_scale_factor():
    """The optimizer divides gradients by loss_scale_factor, so fit must scale the loss (Keras)."""
    x, y = _data()
    plain, _ = _model()
    weights = plain.get_weights()
    plain.compile(optimizer=lamina.optimizers.SGD(0.1), loss="categorical_crossentropy")
    scaled, _ = _model(weights)
    scaled.compile(optimizer=lamina.optimizers.SGD(0.1, loss_scale_factor=64.0), loss="categorical_crossentropy")
    plain.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    scaled.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(scaled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
