"""Keras's built-in optimizers and their update rules, as multi-tensor torch ops.

Adam and AdamW run torch's fused Adam kernel (its epsilon adjusted each step so
the result is Keras's rule); the other rules differ from torch.optim's (epsilon
placement, lr inside the momentum buffer...) and are written with
``torch._foreach_*`` ops. Shared behaviour lives in ``lamina.optimizers.base``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.adam import adam as _torch_adam
from torch.optim.adamw import adamw as _torch_adamw

from lamina.optimizers.base import Optimizer
from lamina.registry import register

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam"]


def _fused_device_types() -> set[str]:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return set(_get_fused_kernels_supported_devices())
    except ImportError:  # older torch: fused Adam is known to exist on these
        return {"cuda", "cpu"}


def _fused_adam_supported(params) -> bool:
    device_types = _fused_device_types()
    return bool(params) and all(
        type(param) in (torch.Tensor, torch.nn.Parameter)
        and param.device.type in device_types
        and torch.is_floating_point(param)
        for param in params
    )


@register("optimizer", aliases=("sgd",))
class SGD(Optimizer):
    """Gradient descent, with optional (Nesterov) momentum.

    Without momentum ``w -= lr * g``. With momentum, Keras keeps the
    learning rate inside the velocity: ``v = momentum * v - lr * g; w += v``, and
    with ``nesterov=True``, ``w += momentum * v - lr * g``.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.01.
        momentum: float in [0, 1]. Defaults to 0.0.
        nesterov: use Nesterov momentum. Defaults to False.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> optimizer = SGD(learning_rate=0.1, momentum=0.5)
    >>> for _ in range(2):
    ...     _ = optimizer.apply_gradients([(torch.tensor([1.0]), w)])
    >>> w.detach()  # 1 - 0.1 - (0.5 * 0.1 + 0.1)
    tensor([0.7500])
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
                         ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not (
            0 <= momentum <= 1
        ):
            raise ValueError(
                f"`momentum` must be a float between [0, 1]; received momentum={momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = nesterov

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums = (
            self.add_optimizer_variables(variables, "momentum") if self.momentum != 0 else []
        )

    def _update(self, grads, params, indices, learning_rate):
        if self.momentum == 0:
            torch._foreach_add_(params, grads, alpha=-learning_rate)
            return
        velocities = self._select(self._momentums, indices)
        torch._foreach_mul_(velocities, self.momentum)
        torch._foreach_add_(velocities, grads, alpha=-learning_rate)
        if self.nesterov:
            torch._foreach_add_(params, grads, alpha=-learning_rate)
            torch._foreach_add_(params, velocities, alpha=self.momentum)
        else:
            torch._foreach_add_(params, velocities)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@register("optimizer", aliases=("adam",))
class Adam(Optimizer):
    """Adam, with Keras's epsilon placement.

    ``m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    w -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + epsilon)`` with ``t = iterations + 1``
    (``v`` replaced by its running maximum when ``amsgrad``). On devices with a fused
    kernel this runs torch's fused Adam with ``eps = epsilon / sqrt(1 - b2^t)``,
    which is algebraically the same update.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.001.
        beta_1: decay rate of the first moment. Defaults to 0.9.
        beta_2: decay rate of the second moment. Defaults to 0.999.
        epsilon: added to ``sqrt(v)``. Defaults to 1e-7.
        amsgrad: use the AMSGrad variant. Defaults to False.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> _ = Adam(learning_rate=0.5).apply_gradients([(torch.tensor([3.0, -0.1]), w)])
    >>> w.detach()  # the first step moves each weight by about lr
    tensor([ 0.5000, -0.5000])
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
                         ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums, self._velocities = self.add_optimizer_variables(
            variables, ["momentum", "velocity"])
        self._velocity_hats = (
            self.add_optimizer_variables(variables, "velocity_hat") if self.amsgrad else []
        )
        # torch's fused kernel reads a step count per tensor; these mirror `iterations`.
        self._fused = _fused_adam_supported(self._params)
        # One device and dtype: call the fused kernel directly, skipping torch.optim's
        # per-step regrouping of the tensors (tens of microseconds of python per step).
        self._fused_direct = self._fused and len({(p.device, p.dtype) for p in self._params}) == 1
        if self._fused_direct:
            # The kernel only reads the counts: one tensor serves every variable, and a
            # step increments it once (a multi-tensor add over all of them cost ~30 us on a CPU).
            count = torch.zeros((), dtype=torch.float32, device=self._params[0].device)
            self._steps = [count] * len(self._params)
        else:
            self._steps = [
                torch.zeros((), dtype=torch.float32, device=param.device) for param in self._params
            ] if self._fused else []

    def _iterations_changed(self):
        for step in self._steps:
            step.fill_(float(self.iterations))

    def _decay_and_update(self, grads, params, indices, learning_rate):
        if not self._fused:
            super()._decay_and_update(grads, params, indices, learning_rate)
            return
        weight_decay = 0.0
        if self.weight_decay and self._decay_all:
            # torch's decoupled decay, p *= 1 - lr*wd before the update, is Keras's.
            weight_decay = self.weight_decay
        else:
            self._apply_weight_decay(params, indices, learning_rate)
        steps = self._select(self._steps, indices)
        if self._fused_direct:
            if indices is not None:
                # torch.optim's function below increments each count it is given: fresh ones.
                steps = [torch.full_like(self._steps[0], float(self.iterations)) for _ in steps]
            self._steps[0].add_(1)
        elif indices is not None:
            # Keep skipped variables' step counts equal to `iterations`.
            chosen = set(indices)
            skipped = [step for i, step in enumerate(self._steps) if i not in chosen]
            if skipped:
                torch._foreach_add_(skipped, 1.0)
        bias_correction_2 = 1.0 - self.beta_2 ** (self.iterations + 1)
        # torch divides sqrt(v) by sqrt(bias_correction_2) before adding eps; Keras adds
        # epsilon to sqrt(v) itself, so scale eps to make the two updates identical.
        eps = self.epsilon / math.sqrt(bias_correction_2) if bias_correction_2 > 0 else math.inf
        if self._fused_direct and indices is None:
            kernel = torch._fused_adamw_ if weight_decay else torch._fused_adam_
            kernel(
                params, grads, self._momentums, self._velocities, self._velocity_hats, steps,
                amsgrad=self.amsgrad, lr=learning_rate, beta1=self.beta_1, beta2=self.beta_2,
                weight_decay=weight_decay, eps=eps, maximize=False, grad_scale=None, found_inf=None,
            )
            return
        update = _torch_adamw if weight_decay else _torch_adam
        update(
            params, grads, self._select(self._momentums, indices),
            self._select(self._velocities, indices),
            self._select(self._velocity_hats, indices) if self.amsgrad else [], steps,
            fused=True, amsgrad=self.amsgrad, beta1=self.beta_1, beta2=self.beta_2,
            lr=learning_rate, weight_decay=weight_decay, eps=eps, maximize=False,
        )

    def _update(self, grads, params, indices, learning_rate):
        step = self.iterations + 1
        alpha = learning_rate * math.sqrt(1.0 - self.beta_2**step) / (1.0 - self.beta_1**step)
        momentums = self._select(self._momentums, indices)
        velocities = self._select(self._velocities, indices)
        torch._foreach_lerp_(momentums, grads, 1.0 - self.beta_1)
        torch._foreach_mul_(velocities, self.beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, value=1.0 - self.beta_2)
        if self.amsgrad:
            velocity_hats = self._select(self._velocity_hats, indices)
            torch._foreach_maximum_(velocity_hats, velocities)
            velocities = velocity_hats
        denominators = torch._foreach_sqrt(velocities)
        torch._foreach_add_(denominators, self.epsilon)
        torch._foreach_addcdiv_(params, momentums, denominators, value=-alpha)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


@register("optimizer", aliases=("adamw",))
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Keras's AdamW is Adam whose ``weight_decay`` defaults to 0.004 and may not be
    None: each step first shrinks the variables, ``w -= w * weight_decay * lr``.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.001.
        weight_decay: the decoupled decay rate. Defaults to 0.004.
        beta_1, beta_2, epsilon, amsgrad: as in ``Adam``.
        clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> _ = AdamW(learning_rate=0.1, weight_decay=0.5).apply_gradients([(torch.tensor([0.0]), w)])
    >>> w.detach()  # decayed by 1 - 0.5 * 0.1; a zero gradient moves nothing
    tensor([0.9500])
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm,
                         clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
                         name, **kwargs)
        if self.weight_decay is None:
            raise ValueError(
                "AdamW expects `weight_decay` to be a float; received weight_decay=None. "
                "Use Adam for no weight decay."
            )


@register("optimizer", aliases=("rmsprop",))
class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square.

    ``v = rho*v + (1-rho)*g^2; step = lr * g / sqrt(v + epsilon)`` (with
    ``centered``, ``v - mean(g)^2`` under the root). With momentum, Keras keeps the
    learning rate inside the buffer: ``buf = momentum*buf + step; w -= buf``.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.001.
        rho: decay rate of the squared-gradient average. Defaults to 0.9.
        momentum: momentum factor. Defaults to 0.0.
        epsilon: added under the square root. Defaults to 1e-7.
        centered: normalise by the estimated variance instead. Defaults to False.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> _ = RMSprop(learning_rate=0.1, rho=0.75).apply_gradients([(torch.tensor([2.0]), w)])
    >>> w.detach()  # 1 - 0.1 * 2 / sqrt(0.25 * 4)
    tensor([0.8000])
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
                         ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._velocities = self.add_optimizer_variables(variables, "velocity")
        self._momentums = (
            self.add_optimizer_variables(variables, "momentum") if self.momentum > 0 else []
        )
        self._average_gradients = (
            self.add_optimizer_variables(variables, "average_gradient") if self.centered else []
        )

    def _update(self, grads, params, indices, learning_rate):
        rho = self.rho
        velocities = self._select(self._velocities, indices)
        torch._foreach_mul_(velocities, rho)
        torch._foreach_addcmul_(velocities, grads, grads, value=1.0 - rho)
        if self.centered:
            averages = self._select(self._average_gradients, indices)
            torch._foreach_mul_(averages, rho)
            torch._foreach_add_(averages, grads, alpha=1.0 - rho)
            denominators = torch._foreach_addcmul(velocities, averages, averages, value=-1.0)
            torch._foreach_add_(denominators, self.epsilon)
        else:
            denominators = torch._foreach_add(velocities, self.epsilon)
        torch._foreach_sqrt_(denominators)
        if self.momentum > 0:
            buffers = self._select(self._momentums, indices)
            torch._foreach_mul_(buffers, self.momentum)
            torch._foreach_addcdiv_(buffers, grads, denominators, value=learning_rate)
            torch._foreach_sub_(params, buffers)
        else:
            torch._foreach_addcdiv_(params, grads, denominators, value=-learning_rate)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


@register("optimizer", aliases=("adagrad",))
class Adagrad(Optimizer):
    """Adagrad: per-coordinate rates from the sum of squared gradients.

    ``acc += g^2; w -= lr * g / sqrt(acc + epsilon)``, with ``acc`` starting at
    ``initial_accumulator_value``.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.001.
        initial_accumulator_value: starting value of the accumulators. Defaults to 0.1.
        epsilon: added under the square root. Defaults to 1e-7.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> optimizer = Adagrad(learning_rate=0.1, initial_accumulator_value=0.0, epsilon=0.0)
    >>> _ = optimizer.apply_gradients([(torch.tensor([4.0]), w)])
    >>> w.detach()
    tensor([0.9000])
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
                         ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulators_sq = self.add_optimizer_variables(
            variables, "accumulator", initializer=self.initial_accumulator_value)

    def _update(self, grads, params, indices, learning_rate):
        accumulators = self._select(self._accumulators_sq, indices)
        torch._foreach_addcmul_(accumulators, grads, grads)
        denominators = torch._foreach_add(accumulators, self.epsilon)
        torch._foreach_sqrt_(denominators)
        torch._foreach_addcdiv_(params, grads, denominators, value=-learning_rate)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


@register("optimizer", aliases=("adadelta",))
class Adadelta(Optimizer):
    """Adadelta: gradient steps scaled by running averages of updates and gradients.

    ``Eg = rho*Eg + (1-rho)*g^2; d = sqrt(Ed + eps) / sqrt(Eg + eps) * g;
    Ed = rho*Ed + (1-rho)*d^2; w -= lr * d`` (the same rule as torch.optim.Adadelta,
    written here as foreach ops since torch's functional form also keeps step
    counters this rule never reads).

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.001.
        rho: decay rate of both averages. Defaults to 0.95.
        epsilon: added under the square roots. Defaults to 1e-7.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> optimizer = Adadelta(learning_rate=1.0, rho=0.0, epsilon=1.0)
    >>> _ = optimizer.apply_gradients([(torch.tensor([0.0]), w)])
    >>> w.detach()  # a zero gradient gives a zero step
    tensor([1.])
    """

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
                         ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulated_grads, self._accumulated_delta_vars = self.add_optimizer_variables(
            variables, ["accumulated_grad", "accumulated_delta_var"])

    def _update(self, grads, params, indices, learning_rate):
        rho = self.rho
        accumulated_grads = self._select(self._accumulated_grads, indices)
        accumulated_deltas = self._select(self._accumulated_delta_vars, indices)
        torch._foreach_mul_(accumulated_grads, rho)
        torch._foreach_addcmul_(accumulated_grads, grads, grads, value=1.0 - rho)
        grad_rms = torch._foreach_add(accumulated_grads, self.epsilon)
        torch._foreach_sqrt_(grad_rms)
        deltas = torch._foreach_add(accumulated_deltas, self.epsilon)
        torch._foreach_sqrt_(deltas)
        torch._foreach_div_(deltas, grad_rms)
        torch._foreach_mul_(deltas, grads)
        torch._foreach_mul_(accumulated_deltas, rho)
        torch._foreach_addcmul_(accumulated_deltas, deltas, deltas, value=1.0 - rho)
        torch._foreach_add_(params, deltas, alpha=-learning_rate)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


@register("optimizer", aliases=("adamax",))
class Adamax(Optimizer):
    """Adamax: Adam with the infinity norm in place of the second moment.

    ``m = b1*m + (1-b1)*g; u = max(b2*u, |g|); w -= lr * m / ((1-b1^t) * (u + epsilon))``.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.001.
        beta_1: decay rate of the first moment. Defaults to 0.9.
        beta_2: decay rate of the infinity norm. Defaults to 0.999.
        epsilon: added to the norm. Defaults to 1e-7.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> _ = Adamax(learning_rate=0.1, epsilon=0.0).apply_gradients([(torch.tensor([5.0]), w)])
    >>> w.detach()
    tensor([0.9000])
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
                         ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m, self._u = self.add_optimizer_variables(variables, ["momentum", "norm"])

    def _update(self, grads, params, indices, learning_rate):
        bias_correction_1 = 1.0 - self.beta_1 ** (self.iterations + 1)
        momentums = self._select(self._m, indices)
        norms = self._select(self._u, indices)
        torch._foreach_lerp_(momentums, grads, 1.0 - self.beta_1)
        torch._foreach_mul_(norms, self.beta_2)
        torch._foreach_maximum_(norms, torch._foreach_abs(grads))
        denominators = torch._foreach_add(norms, self.epsilon)
        torch._foreach_addcdiv_(params, momentums, denominators,
                                value=-learning_rate / bias_correction_1)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


@register("optimizer", aliases=("nadam",))
class Nadam(Optimizer):
    """Nadam: Adam with Nesterov momentum and Keras's momentum schedule.

    With ``u_t = b1 * (1 - 0.5 * 0.96^t)`` and their running product ``U_t``,
    ``m_hat = u_{t+1} m / (1 - U_{t+1}) + (1 - u_t) g / (1 - U_t)``,
    ``v_hat = v / (1 - b2^t)`` and ``w -= lr * m_hat / (sqrt(v_hat) + epsilon)``.
    ``U_t`` is a python float (state ``"u_product"``), so the schedule costs no
    device work.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.001.
        beta_1: decay rate of the first moment. Defaults to 0.9.
        beta_2: decay rate of the second moment. Defaults to 0.999.
        epsilon: added to ``sqrt(v_hat)``. Defaults to 1e-7.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps,
        name: as in ``Optimizer``.

    Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> _ = Nadam(learning_rate=0.1).apply_gradients([(torch.tensor([2.0]), w)])
    >>> w.detach()  # a first step a little over lr: the Nesterov term adds m_hat's lookahead
    tensor([0.8937])
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
                         ema_momentum, ema_overwrite_frequency, loss_scale_factor,
                         gradient_accumulation_steps, name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._momentums, self._velocities = self.add_optimizer_variables(
            variables, ["momentum", "velocity"])
        self._u_product = 1.0

    def _extra_scalars(self):
        return [("u_product", self._u_product)] if self.built else []

    def _set_extra_scalar(self, name, value):
        if name != "u_product":
            raise KeyError(name)
        self._u_product = value

    def _update(self, grads, params, indices, learning_rate):
        step = self.iterations + 1
        beta_1, beta_2 = self.beta_1, self.beta_2
        u_t = beta_1 * (1.0 - 0.5 * 0.96**step)
        u_next = beta_1 * (1.0 - 0.5 * 0.96 ** (step + 1))
        self._u_product *= u_t
        u_product_next = self._u_product * u_next
        momentums = self._select(self._momentums, indices)
        velocities = self._select(self._velocities, indices)
        torch._foreach_lerp_(momentums, grads, 1.0 - beta_1)
        torch._foreach_mul_(velocities, beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, value=1.0 - beta_2)
        denominators = torch._foreach_div(velocities, 1.0 - beta_2**step)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, self.epsilon)
        torch._foreach_addcdiv_(params, momentums, denominators,
                                value=-learning_rate * u_next / (1.0 - u_product_next))
        torch._foreach_addcdiv_(params, grads, denominators,
                                value=-learning_rate * (1.0 - u_t) / (1.0 - self._u_product))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}
