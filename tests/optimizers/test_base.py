"""The Optimizer base: learning rate, state save/resume, clipping, EMA, accumulation, errors."""

import warnings

import numpy as np
import pytest
import torch

from lamina import optimizers
from lamina.optimizers import Optimizer, schedules


def _params(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(3, 4, generator=generator)),
            torch.nn.Parameter(torch.randn(5, generator=generator))]


def _grads(step, params):
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=generator) for p in params]


def _keras_grads(keras, step, params):
    return [keras.ops.convert_to_tensor(g.numpy()) for g in _grads(step, params)]


def _train(optimizer, params, steps, start=0):
    for step in range(start, start + steps):
        for param, grad in zip(params, _grads(step, params)):
            param.grad = grad
        optimizer.step()


# ---------------------------------------------------------------- learning rate

def test_learning_rate_getter_returns_python_float():
    optimizer = optimizers.Adam(learning_rate=0.01)
    assert type(optimizer.learning_rate) is float and optimizer.learning_rate == 0.01


def test_learning_rate_setter_changes_the_next_step():
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = optimizers.SGD(learning_rate=0.1)
    optimizer.build(params)
    optimizer.learning_rate = 0.5
    params[0].grad = torch.ones(2)
    optimizer.step()
    torch.testing.assert_close(params[0].detach(), torch.full((2,), -0.5))
    assert optimizer.get_config()["learning_rate"] == 0.5


def test_learning_rate_follows_schedule_at_iterations(keras):
    schedule_args = (0.1, 3, 0.5)
    optimizer = optimizers.SGD(learning_rate=schedules.ExponentialDecay(*schedule_args))
    keras_optimizer = keras.optimizers.SGD(
        learning_rate=keras.optimizers.schedules.ExponentialDecay(*schedule_args))
    params = _params()
    optimizer.build(params)
    variables = [keras.Variable(p.detach().numpy()) for p in params]
    for step in range(4):
        assert optimizer.learning_rate == pytest.approx(float(keras_optimizer.learning_rate))
        assert optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** (step / 3))
        keras_optimizer.apply_gradients(zip(_keras_grads(keras, step, params), variables))
        grads = _grads(step, params)
        for param, grad in zip(params, grads):
            param.grad = grad
        optimizer.step()


def test_learning_rate_setter_rejects_float_under_schedule(keras):
    optimizer = optimizers.Adam(learning_rate=schedules.CosineDecay(0.1, 10))
    keras_optimizer = keras.optimizers.Adam(
        learning_rate=keras.optimizers.schedules.CosineDecay(0.1, 10))
    with pytest.raises(TypeError, match="not settable"):
        keras_optimizer.learning_rate = 0.1
    with pytest.raises(TypeError, match="not settable"):
        optimizer.learning_rate = 0.1


def test_learning_rate_setter_accepts_a_schedule():
    optimizer = optimizers.Adam(learning_rate=0.1)
    optimizer.learning_rate = schedules.PiecewiseConstantDecay([0], [0.3, 0.2])
    assert optimizer.learning_rate == 0.3
    assert "learning_rate" not in optimizer.state_tensors()


def test_learning_rate_accepts_callable():
    optimizer = optimizers.SGD(learning_rate=lambda: 0.25)
    assert optimizer.learning_rate == 0.25


@pytest.mark.parametrize("bad", ["0.1", None, [0.1]])
def test_learning_rate_rejects_non_numbers(bad):
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(learning_rate=bad)


# ---------------------------------------------------------------- iterations and state

STATE_CASES = [
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"learning_rate": schedules.CosineDecay(0.01, 10)}),
    ("AdamW", {"use_ema": True}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adamax", {}),
    ("Nadam", {}),
    ("Nadam", {"gradient_accumulation_steps": 2}),
]


@pytest.mark.parametrize("name,kwargs", STATE_CASES)
def test_state_tensors_round_trip_resumes_identically(name, kwargs):
    params = _params()
    optimizer = getattr(optimizers, name)(**kwargs)
    optimizer.build(params)
    _train(optimizer, params, 3)
    saved_state = {key: value.clone() for key, value in optimizer.state_tensors().items()}
    saved_params = [p.detach().clone() for p in params]
    _train(optimizer, params, 2, start=3)

    resumed_params = [torch.nn.Parameter(p.clone()) for p in saved_params]
    resumed = getattr(optimizers, name)(**kwargs)
    resumed.build(resumed_params)
    resumed.load_state_tensors(saved_state)
    assert resumed.iterations == 3 // kwargs.get("gradient_accumulation_steps", 1)
    _train(resumed, resumed_params, 2, start=3)
    for param, again in zip(params, resumed_params):
        assert torch.equal(param, again)


def test_state_tensor_names_are_stable():
    optimizer = optimizers.Nadam()
    optimizer.build(_params())
    assert list(optimizer.state_tensors()) == [
        "iteration", "learning_rate", "momentum/0", "velocity/0", "momentum/1", "velocity/1",
        "u_product",
    ]
    assert optimizer.state_tensors()["iteration"].dtype == torch.int64


def test_load_state_tensors_rejects_mismatches():
    optimizer = optimizers.Adam()
    with pytest.raises(ValueError, match="build"):
        optimizer.load_state_tensors({})
    optimizer.build(_params())
    state = dict(optimizer.state_tensors())
    del state["velocity/1"]
    with pytest.raises(ValueError, match=r"missing keys \['velocity/1'\]"):
        optimizer.load_state_tensors(state)
    state = dict(optimizer.state_tensors())
    state["momentum/0"] = torch.zeros(2)
    with pytest.raises(ValueError, match="shape"):
        optimizer.load_state_tensors(state)


def test_load_own_variables_from_keras_resumes_like_keras(keras):
    params = _params()
    variables = [keras.Variable(p.detach().numpy()) for p in params]
    keras_optimizer = keras.optimizers.Nadam(learning_rate=0.01)
    for step in range(3):
        keras_optimizer.apply_gradients(zip(_keras_grads(keras, step, params), variables))
    store = {}
    keras_optimizer.save_own_variables(store)

    resumed = [torch.nn.Parameter(torch.tensor(keras.ops.convert_to_numpy(v))) for v in variables]
    optimizer = optimizers.Nadam(learning_rate=0.5)
    optimizer.build(resumed)
    optimizer.load_own_variables(store)
    assert optimizer.iterations == 3 and optimizer.learning_rate == pytest.approx(0.01)
    keras_optimizer.apply_gradients(zip(_keras_grads(keras, 3, params), variables))
    _train(optimizer, resumed, 1, start=3)
    for param, variable in zip(resumed, variables):
        np.testing.assert_allclose(param.detach().numpy(), keras.ops.convert_to_numpy(variable),
                                   atol=1e-6)
    ours = {}
    optimizer.save_own_variables(ours)
    assert sorted(ours) == sorted(store)


def test_iterations_counts_steps_and_accumulation_cycles():
    params = _params()
    optimizer = optimizers.SGD(gradient_accumulation_steps=3)
    optimizer.build(params)
    _train(optimizer, params, 7)
    assert optimizer.iterations == 2
    assert int(optimizer.state_tensors()["iteration"]) == 7


def test_gradient_accumulation_applies_the_mean_every_n_steps():
    w = torch.nn.Parameter(torch.zeros(1))
    optimizer = optimizers.SGD(learning_rate=1.0, gradient_accumulation_steps=2)
    optimizer.apply_gradients([(torch.tensor([1.0]), w)])
    assert float(w.detach()) == 0.0
    optimizer.apply_gradients([(torch.tensor([3.0]), w)])
    assert float(w.detach()) == -2.0
    assert torch.equal(optimizer.state_tensors()["gradient_accumulator/0"], torch.zeros(1))


# ---------------------------------------------------------------- gradient processing

def test_clipnorm_clips_each_gradient_to_the_norm():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = optimizers.SGD(learning_rate=1.0, clipnorm=1.0)
    optimizer.apply([torch.tensor([3.0, 4.0]), torch.tensor([0.5])], params)
    torch.testing.assert_close(params[0].detach(), torch.tensor([-0.6, -0.8]))
    torch.testing.assert_close(params[1].detach(), torch.tensor([-0.5]))


def test_global_clipnorm_scales_all_gradients_together():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = optimizers.SGD(learning_rate=1.0, global_clipnorm=2.5)
    optimizer.apply([torch.tensor([3.0, 4.0]), torch.tensor([0.0])], params)
    torch.testing.assert_close(params[0].detach(), torch.tensor([-1.5, -2.0]))


def test_global_clipnorm_propagates_non_finite_norms_as_nan():
    w = torch.nn.Parameter(torch.zeros(2))
    optimizer = optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0)
    optimizer.apply([torch.tensor([float("inf"), 1.0])], [w])
    assert torch.isnan(w.detach()).all()


def test_clipvalue_clamps_elementwise_and_step_edits_grad_in_place():
    w = torch.nn.Parameter(torch.zeros(3))
    optimizer = optimizers.SGD(learning_rate=1.0, clipvalue=0.5)
    optimizer.build([w])
    w.grad = torch.tensor([-2.0, 0.1, 2.0])
    optimizer.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.5, -0.1, -0.5]))
    torch.testing.assert_close(w.grad, torch.tensor([-0.5, 0.1, 0.5]))


def test_loss_scale_factor_scales_loss_and_unscales_gradients():
    w = torch.nn.Parameter(torch.tensor([2.0]))
    optimizer = optimizers.SGD(learning_rate=0.1, loss_scale_factor=64.0)
    optimizer.build([w])
    loss = optimizer.scale_loss((w**2).sum())
    loss.backward()
    optimizer.step()
    torch.testing.assert_close(w.detach(), torch.tensor([2.0 - 0.1 * 4.0]))


def test_weight_decay_respects_exclusions():
    kept, by_list, by_name = (torch.nn.Parameter(torch.ones(1)) for _ in range(3))
    by_name.path = "dense/bias"
    optimizer = optimizers.SGD(learning_rate=0.5, weight_decay=0.2)
    optimizer.exclude_from_weight_decay(var_list=[by_list], var_names=["bias"])
    optimizer.apply([torch.zeros(1)] * 3, [kept, by_list, by_name])
    assert [float(p.detach()) for p in (kept, by_list, by_name)] == pytest.approx([0.9, 1.0, 1.0])
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.exclude_from_weight_decay(var_names=["kernel"])


def test_adamw_decay_with_exclusions_matches_adam_reference():
    params, excluded = _params(), _params()
    reference = optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    reference.build(params)
    optimizer = optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_list=[excluded[1]])
    optimizer.build(excluded)
    _train(reference, params, 2)
    _train(optimizer, excluded, 2)
    torch.testing.assert_close(params[0], excluded[0])
    undecayed = optimizers.Adam(learning_rate=0.1)
    plain = _params()
    undecayed.build(plain)
    _train(undecayed, plain, 2)
    torch.testing.assert_close(plain[1], excluded[1])


def test_constraint_attribute_is_applied_after_the_update():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    w.constraint = lambda value: value.clamp(min=0.0)
    optimizer = optimizers.SGD(learning_rate=1.0)
    optimizer.apply([torch.tensor([0.5, 0.5])], [w])
    torch.testing.assert_close(w.detach(), torch.tensor([0.5, 0.0]))


def test_ema_finalize_matches_keras(keras):
    params = _params()
    variables = [keras.Variable(p.detach().numpy()) for p in params]
    keras_optimizer = keras.optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.6)
    optimizer = optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.6)
    optimizer.build(params)
    for step in range(4):
        keras_optimizer.apply_gradients(zip(_keras_grads(keras, step, params), variables))
    _train(optimizer, params, 4)
    keras_optimizer.finalize_variable_values(variables)
    optimizer.finalize_variable_values(params)
    for param, variable in zip(params, variables):
        np.testing.assert_allclose(param.detach().numpy(), keras.ops.convert_to_numpy(variable),
                                   atol=1e-6)


# ---------------------------------------------------------------- API and errors

def test_zero_grad_sets_none_or_zero():
    params = _params()
    optimizer = optimizers.SGD()
    optimizer.build(params)
    for param in params:
        param.grad = torch.ones_like(param)
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


def test_step_requires_build_and_some_gradient():
    optimizer = optimizers.SGD()
    with pytest.raises(ValueError, match=r"build\(variables\)"):
        optimizer.step()
    optimizer.build(_params())
    with pytest.raises(ValueError, match="No gradients provided"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer.step()


def test_step_runs_closure_and_returns_its_loss():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = optimizers.SGD(learning_rate=0.5)
    optimizer.build([w])

    def closure():
        optimizer.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert float(optimizer.step(closure).detach()) == 1.0
    torch.testing.assert_close(w.detach(), torch.tensor([0.0]))


def test_apply_rejects_unknown_variables_and_wrong_lengths():
    params = _params()
    optimizer = optimizers.SGD()
    optimizer.build(params)
    with pytest.raises(ValueError, match="Unknown variable"):
        optimizer.apply([torch.zeros(2)], [torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="2 variables"):
        optimizer.apply([torch.zeros(2)])


def test_build_is_done_once_and_checks_types():
    optimizer = optimizers.Adam()
    with pytest.raises(TypeError, match="torch.nn.Parameter"):
        optimizer.build([np.zeros(3)])
    params = _params()
    optimizer.build(params)
    optimizer.build(_params(1))
    assert len(optimizer.variables) == 2 + 2 * len(params)


@pytest.mark.parametrize("kwargs,match", [
    ({"clipnorm": 1.0, "clipvalue": 1.0}, "Only one of"),
    ({"gradient_accumulation_steps": 1}, "gradient_accumulation_steps"),
    ({"use_ema": True, "ema_momentum": 1.5}, "ema_momentum"),
    ({"use_ema": True, "ema_overwrite_frequency": 0}, "ema_overwrite_frequency"),
    ({"beta_3": 0.1}, "unknown argument"),
])
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.Adam(**kwargs)


def test_constructor_warns_on_removed_decay_argument():
    with pytest.warns(UserWarning, match="decay"):
        optimizers.SGD(decay=0.1)


def test_custom_optimizer_with_update_step():
    class SignSGD(Optimizer):
        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.counts = self.add_optimizer_variables(variables, "count")

        def update_step(self, gradient, variable, learning_rate):
            self.assign_add(self.counts[self._get_variable_index(variable)], 1.0)
            self.assign_sub(variable, learning_rate * torch.sign(gradient))

    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    optimizer = SignSGD(learning_rate=0.25)
    optimizer.apply_gradients([(torch.tensor([3.0, -0.1]), w)])
    torch.testing.assert_close(w.detach(), torch.tensor([0.75, 1.25]))
    assert list(optimizer.state_tensors()) == ["iteration", "learning_rate", "count/0"]
    assert optimizer.name == "sign_sgd"


def test_base_update_step_is_abstract():
    optimizer = Optimizer(learning_rate=0.1)
    with pytest.raises(NotImplementedError):
        optimizer.apply_gradients([(torch.ones(1), torch.nn.Parameter(torch.ones(1)))])


# ---------------------------------------------------------------- device (no host syncs)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"momentum": 0.9, "nesterov": True, "global_clipnorm": 1.0, "weight_decay": 0.1}),
    ("Adam", {"amsgrad": True, "clipnorm": 1.0, "learning_rate": schedules.CosineDecay(0.1, 10)}),
    ("AdamW", {"use_ema": True, "ema_overwrite_frequency": 2, "gradient_accumulation_steps": 2}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "clipvalue": 0.1}),
    ("Adagrad", {}), ("Adadelta", {}), ("Adamax", {}), ("Nadam", {"loss_scale_factor": 8.0}),
])
def test_step_does_not_sync_with_cuda(name, kwargs):
    params = [torch.nn.Parameter(p.detach().cuda()) for p in _params()]
    optimizer = getattr(optimizers, name)(**kwargs)
    optimizer.build(params)
    if name in ("Adam", "AdamW"):
        assert optimizer._fused
    grads = [[g.cuda() for g in _grads(step, params)] for step in range(4)]
    torch.cuda.synchronize()
    try:  # inside: a failure to switch it on must still switch it off
        torch.cuda.set_sync_debug_mode("error")
        for step_grads in grads:
            for param, grad in zip(params, step_grads):
                param.grad = grad
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu_params = _params()
    reference = getattr(optimizers, name)(**kwargs)
    reference.build(cpu_params)
    _train(reference, cpu_params, 4)
    for param, expected in zip(params, cpu_params):
        torch.testing.assert_close(param.detach().cpu(), expected.detach(), rtol=1e-5, atol=1e-6)
