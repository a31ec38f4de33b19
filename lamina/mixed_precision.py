"""Keras's mixed precision API: dtype policies, the global policy and dynamic loss scaling.

With ``set_global_policy("mixed_bfloat16")`` (or ``"mixed_float16"``) set before
``compile``, the trainer runs each step's forward pass under ``torch.autocast`` in the
policy's compute dtype while the weights stay float32, casts the model's outputs to
float32 before the loss and metrics, and (float16 only) wraps the optimizer in
``LossScaleOptimizer``. Layers themselves are not policy-aware yet.
"""

from __future__ import annotations

import torch

from lamina import config, registry
from lamina.optimizers.base import Optimizer

__all__ = [
    "DTypePolicy", "Policy", "set_global_policy", "set_dtype_policy", "global_policy",
    "dtype_policy", "LossScaleOptimizer",
]

_MIXED = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
_STATE: dict = {"policy": None}
_BASE_DEFAULTS = {
    "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
    "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
    "loss_scale_factor": None, "gradient_accumulation_steps": None,
}


class DTypePolicy:
    """A dtype policy: the dtype layers compute in and the dtype of their variables.

    ``"mixed_float16"`` and ``"mixed_bfloat16"`` compute in float16 / bfloat16 and keep
    float32 variables; any other dtype name (``"float32"``, ``"float64"``...) uses that
    dtype for both.

    Args:
        name: the policy name. Defaults to the global policy's name.

    Example:
    >>> policy = DTypePolicy("mixed_bfloat16")
    >>> policy.compute_dtype, policy.variable_dtype
    ('bfloat16', 'float32')
    >>> policy
    <DTypePolicy "mixed_bfloat16">
    """

    def __init__(self, name=None):
        if name is None:
            name = global_policy().name
        if not isinstance(name, str):
            raise TypeError(
                f"'name' must be a string, such as 'mixed_float16'; received name={name!r} "
                f"(of type {type(name).__name__})."
            )
        self._name = name
        self._compute_dtype, self._variable_dtype = _parse_name(name)

    @property
    def name(self) -> str:
        """The policy's name, e.g. ``"mixed_float16"``."""
        return self._name

    @property
    def compute_dtype(self) -> str:
        """The dtype computations run in (and layer outputs have), e.g. ``"float16"``."""
        return self._compute_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype variables are created in, e.g. ``"float32"``."""
        return self._variable_dtype

    @property
    def quantization_mode(self):
        """None: lamina has no quantized policies."""
        return None

    def get_config(self) -> dict:
        """``{"name": name}``, as Keras."""
        return {"name": self._name}

    @classmethod
    def from_config(cls, config_: dict):
        """Rebuild a policy from ``get_config()``."""
        return cls(**config_)

    def __repr__(self) -> str:
        return f'<DTypePolicy "{self._name}">'

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other._name == self._name

    def __hash__(self) -> int:
        return hash(self._name)


Policy = DTypePolicy


def _parse_name(name: str) -> tuple[str, str]:
    if name in _MIXED:
        return _MIXED[name], "float32"
    try:
        dtype = config.torch_dtype(name)
    except ValueError:
        dtype = None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(
            f"Cannot convert {name!r} to a mixed precision DTypePolicy. Valid policies include "
            f"'mixed_float16', 'mixed_bfloat16', and the name of any float dtype such as 'float32'."
        )
    short = str(dtype).replace("torch.", "")
    return short, short


def set_global_policy(policy) -> None:
    """Set the policy that ``compile`` uses from now on (Keras's ``set_dtype_policy``).

    Args:
        policy: a policy name (``"mixed_bfloat16"``, ``"mixed_float16"``, ``"float32"``...)
            or a ``DTypePolicy``.

    Example:
    >>> set_global_policy("mixed_bfloat16")
    >>> global_policy().compute_dtype
    'bfloat16'
    >>> set_global_policy("float32")
    """
    if isinstance(policy, str):
        policy = DTypePolicy(policy)
    elif not isinstance(policy, DTypePolicy):
        raise ValueError(
            "Invalid `policy` argument. Expected the string name of a policy (such as "
            f"'mixed_float16') or a `DTypePolicy` instance. Received: policy={policy!r} "
            f"(of type {type(policy).__name__})."
        )
    _STATE["policy"] = policy


set_dtype_policy = set_global_policy


def global_policy() -> DTypePolicy:
    """The current global policy; ``DTypePolicy(floatx())`` until one is set.

    >>> global_policy().name
    'float32'
    """
    policy = _STATE["policy"]
    if policy is None:
        policy = DTypePolicy(config.floatx())
    return policy


dtype_policy = global_policy


def _autocast_dtype(policy: DTypePolicy) -> torch.dtype | None:
    """The autocast dtype a policy asks for, or None when it computes in its variable dtype."""
    if policy.compute_dtype == policy.variable_dtype:
        return None
    return config.torch_dtype(policy.compute_dtype)


@registry.register("optimizer")
class LossScaleOptimizer(Optimizer):
    """An optimizer that scales the loss dynamically so that float16 gradients do not underflow.

    The loss is multiplied by ``dynamic_scale`` before ``backward()``; ``step()`` then
    divides the gradients by it. If any gradient is not finite the update is skipped
    and the scale halved; after ``dynamic_growth_steps`` finite steps in a row the scale
    doubles. ``compile`` wraps the optimizer in one automatically under the
    ``"mixed_float16"`` policy (``auto_scale_loss=True``). Checking the gradients
    reads one value on the host per step, as Keras's ``ops.cond`` does on torch.

    Args:
        inner_optimizer: the ``Optimizer`` to wrap.
        initial_scale: the starting loss scale. Defaults to ``2.0 ** 15``.
        dynamic_growth_steps: finite steps before the scale doubles. Defaults to 2000.
        name: the optimizer's name. Defaults to ``"loss_scale_optimizer"``.

    Example:
    >>> from lamina.optimizers import SGD
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> optimizer = LossScaleOptimizer(SGD(learning_rate=0.1), initial_scale=8.0)
    >>> optimizer.build([w])
    >>> optimizer.scale_loss((w * 2.0).sum()).backward()  # gradient 2 * 8
    >>> optimizer.step()
    >>> w.detach(), float(optimizer.dynamic_scale)
    (tensor([0.8000]), 8.0)
    """

    def __init__(self, inner_optimizer, initial_scale=2.0**15, dynamic_growth_steps=2000,
                 name=None, **kwargs):
        if not kwargs.pop("dynamic", True):
            raise ValueError(
                "LossScaleOptimizer no longer supports `dynamic=False`. Instead, set "
                "`loss_scale_factor` directly on the `inner_optimizer`."
            )
        # Configs of older Keras versions list the base arguments at their defaults.
        for key, default in _BASE_DEFAULTS.items():
            if key in kwargs and kwargs.pop(key) != default:
                raise ValueError(
                    f"LossScaleOptimizer does not support `{key}`. Instead, set `{key}` on "
                    f"the `inner_optimizer`."
                )
        if kwargs:
            raise ValueError(f"LossScaleOptimizer does not support arguments: {sorted(kwargs)}.")
        if not isinstance(inner_optimizer, Optimizer):
            raise TypeError(
                "LossScaleOptimizer expects a lamina optimizer to wrap; received "
                f"{inner_optimizer!r} of type {type(inner_optimizer).__name__}."
            )
        super().__init__(learning_rate=0.0, name=name or "loss_scale_optimizer")
        self.inner_optimizer = inner_optimizer
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        # The inner optimizer must not unscale a second time.
        self.inner_optimizer.loss_scale_factor = None
        self.dynamic_scale = torch.tensor(self.initial_scale, dtype=torch.float32)
        self.step_counter = torch.tensor(0, dtype=torch.int64)
        self._growth_count = 0  # python mirror of step_counter: no second host read per step

    def build(self, variables):
        if self.built:
            return
        variables = list(variables)
        self.inner_optimizer.build(variables)
        self._params = variables
        device = variables[0].device if variables else torch.device("cpu")
        self.dynamic_scale = self.dynamic_scale.to(device)
        self.step_counter = self.step_counter.to(device)
        self.built = True

    @property
    def iterations(self) -> int:
        """The inner optimizer's step count (skipped steps are not counted)."""
        return self.inner_optimizer.iterations

    @iterations.setter
    def iterations(self, value):
        self.inner_optimizer.iterations = value

    @property
    def learning_rate(self) -> float:
        """The inner optimizer's learning rate (settable)."""
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    def scale_loss(self, loss):
        """``loss * dynamic_scale`` (the initial scale before ``build``)."""
        return loss * (self.dynamic_scale.to(loss.device) if self.built else self.initial_scale)

    def zero_grad(self, set_to_none=True):
        self.inner_optimizer.zero_grad(set_to_none)

    def step(self, closure=None):
        """Unscale the ``.grad`` of each variable and step the inner optimizer if all are finite."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._require_built("step")
        params = [p for p in self._params if p.grad is not None]
        self._apply_scaled([p.grad for p in params], params, in_place=True)
        return loss

    def apply(self, grads, trainable_variables=None):
        """Apply scaled ``grads`` (Keras's ``apply``): unscale, check, step or skip."""
        grads = list(grads)
        variables = self._params if trainable_variables is None else list(trainable_variables)
        if not self.built:
            self.build(variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        grads = [torch.as_tensor(g, dtype=v.dtype, device=v.device) for g, v in pairs]
        self._apply_scaled(grads, [v for _, v in pairs], in_place=False)

    def _apply_scaled(self, grads, params, in_place):
        if not grads:
            return
        with torch.no_grad():
            found_inf = torch.zeros((), dtype=torch.float32, device=grads[0].device)
            inverse = torch.reciprocal(self.dynamic_scale.to(grads[0].device, torch.float32))
            if not in_place:
                grads = [g.clone() for g in grads]
            _unscale(grads, found_inf, inverse)
            finite = not bool(found_inf)  # the one host read per step (as Keras's ops.cond)
            if finite:
                if in_place:
                    self.inner_optimizer.step()
                else:
                    self.inner_optimizer.apply(grads, params)
                if self._growth_count == self.dynamic_growth_steps - 1:
                    self._growth_count = 0
                    self.dynamic_scale.mul_(2.0)
                else:
                    self._growth_count += 1
            else:
                self._growth_count = 0
                self.dynamic_scale.mul_(0.5)
            self.step_counter.fill_(self._growth_count)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    @property
    def variables(self) -> list[torch.Tensor]:
        """Keras's order: own ``iteration`` and ``learning_rate`` (unused), ``step_counter``,
        ``dynamic_scale``, then the inner optimizer's variables."""
        return super().variables + [self.step_counter, self.dynamic_scale] + self.inner_optimizer.variables

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The scale state plus the inner optimizer's state under ``"inner/..."`` keys,
        in ``variables`` order."""
        state = super().state_tensors()
        state.update({"step_counter": self.step_counter, "dynamic_scale": self.dynamic_scale})
        state.update({f"inner/{k}": v for k, v in self.inner_optimizer.state_tensors().items()})
        return state

    def load_state_tensors(self, state) -> None:
        """Restore ``state_tensors()`` output."""
        self._require_built("load_state_tensors")
        with torch.no_grad():
            self.step_counter.copy_(torch.as_tensor(state["step_counter"]))
            self.dynamic_scale.copy_(torch.as_tensor(state["dynamic_scale"]))
        self._growth_count = int(self.step_counter)
        self.inner_optimizer.load_state_tensors(
            {k[len("inner/"):]: v for k, v in state.items() if k.startswith("inner/")})

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "inner_optimizer": registry.serialize("optimizer", self.inner_optimizer),
            "initial_scale": self.initial_scale,
            "dynamic_growth_steps": self.dynamic_growth_steps,
        }

    @classmethod
    def from_config(cls, config_, custom_objects=None):
        config_ = dict(config_)
        inner = registry.get("optimizer", config_.pop("inner_optimizer"), custom_objects)
        return cls(inner, **config_)


def _unscale(grads, found_inf, inverse) -> None:
    """Multiply ``grads`` by ``inverse`` in place; set ``found_inf`` to 1 if any is not finite."""
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inverse)
    except (RuntimeError, NotImplementedError):  # dtypes or devices the fused op lacks
        for grad in grads:
            found_inf.add_((~torch.isfinite(grad)).any().to(found_inf.dtype))
            grad.mul_(inverse.to(grad.dtype))
        found_inf.clamp_(max=1.0)
