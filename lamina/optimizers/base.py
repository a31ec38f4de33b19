"""The ``Optimizer`` base class: Keras's optimizer API over ``torch.nn.Parameter`` lists.

It owns the arguments every Keras optimizer shares (learning rate or schedule,
weight decay, clipping, EMA, loss scaling, gradient accumulation), the step
counter, slot tensors and their save/resume state. Update rules live in
``lamina.optimizers.optimizers``; schedules in ``lamina.optimizers.schedules``.
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import torch

from lamina import config, registry
from lamina.optimizers.schedules import LearningRateSchedule

__all__ = ["Optimizer"]

_NAME_UIDS: dict[str, int] = {}


def _auto_name(class_name: str) -> str:
    """Keras's default optimizer names: snake_case, then ``_1``, ``_2``... for repeats."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    count = _NAME_UIDS.get(name, 0)
    _NAME_UIDS[name] = count + 1
    return name if count == 0 else f"{name}_{count}"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Optimizer:
    """Base class of lamina optimizers, with Keras 3's constructor and methods.

    An optimizer is created without variables, ``build(variables)`` attaches it
    to a list of ``torch.nn.Parameter`` once, and then each training step either
    calls ``step()`` (apply each parameter's ``.grad``, after ``loss.backward()``)
    or Keras's ``apply_gradients(zip(grads, variables))``. Per step, in Keras's
    order: gradients are divided by ``loss_scale_factor``, accumulated if
    ``gradient_accumulation_steps`` is set, clipped, the variables decay
    (``var -= var * weight_decay * lr``), the update rule runs, the EMA is updated
    and parameter ``constraint`` attributes are applied. All of it runs as
    multi-tensor ``torch._foreach_*`` ops with python-float hyper-parameters, so a
    step never waits for the device.

    To write a new optimizer, override ``build`` (create slots with
    ``add_optimizer_variables``) and either ``update_step(gradient, variable,
    learning_rate)`` (one variable at a time, as in Keras) or the multi-tensor
    ``_update(grads, params, indices, learning_rate)``.

    Args:
        learning_rate: a float, a ``LearningRateSchedule`` (evaluated at
            ``iterations`` each step) or a callable with no arguments.
        weight_decay: if set, decoupled weight decay ``var -= var * wd * lr``
            before each update. Defaults to None.
        clipnorm: clip each gradient to this L2 norm. Defaults to None.
        clipvalue: clip gradients elementwise to [-clipvalue, clipvalue]. Defaults to None.
        global_clipnorm: clip all gradients together to this global L2 norm.
            Only one of the three clipping arguments may be set. Defaults to None.
        use_ema: keep an exponential moving average of the variables. Defaults to False.
        ema_momentum: the EMA's momentum. Defaults to 0.99.
        ema_overwrite_frequency: copy the EMA into the variables every this many
            steps; None means only in ``finalize_variable_values``. Defaults to None.
        loss_scale_factor: gradients are divided by this factor (``scale_loss``
            multiplies the loss by it). Defaults to None.
        gradient_accumulation_steps: an int >= 2: update every this many steps
            with the mean of the accumulated gradients. Defaults to None.
        name: the optimizer's name. Defaults to the snake_case class name.

    Example:
    >>> import torch
    >>> from lamina.optimizers import SGD
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    >>> optimizer = SGD(learning_rate=0.1)
    >>> optimizer.build([w])
    >>> w.grad = torch.tensor([1.0, -1.0])
    >>> optimizer.step()
    >>> w.detach(), optimizer.iterations
    (tensor([0.9000, 2.1000]), 1)
    """

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.",
                          stacklevel=2)
        if kwargs:
            raise ValueError(
                f"{type(self).__name__} received unknown argument(s) {sorted(kwargs)}. "
                f"Remove them; the accepted arguments are those of keras.optimizers."
                f"{type(self).__name__}."
            )
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(value is not None for value in clips.values()) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set; received "
                + ", ".join(f"{key}={value}" for key, value in clips.items()) + "."
            )
        if gradient_accumulation_steps is not None and (
            not isinstance(gradient_accumulation_steps, int) or gradient_accumulation_steps < 2
        ):
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 2 (or None); received "
                f"gradient_accumulation_steps={gradient_accumulation_steps}."
            )
        if use_ema:
            if not 0 <= ema_momentum <= 1:
                raise ValueError(
                    "`ema_momentum` must be in the range [0, 1]; received "
                    f"ema_momentum={ema_momentum}."
                )
            if ema_overwrite_frequency is not None and (
                not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1
            ):
                raise ValueError(
                    "`ema_overwrite_frequency` must be an integer >= 1 or None; received "
                    f"ema_overwrite_frequency={ema_overwrite_frequency}."
                )
        self.name = name if name is not None else _auto_name(type(self).__name__)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._learning_rate = self._check_learning_rate(learning_rate)
        self._iterations = 0
        self.built = False
        self._params: list[torch.Tensor] = []
        self._index: dict[int, int] = {}
        self._slot_entries: list[tuple[str, torch.Tensor]] = []
        self._exclude_ids: set[int] = set()
        self._exclude_pattern = None

    @staticmethod
    def _check_learning_rate(learning_rate):
        if isinstance(learning_rate, LearningRateSchedule) or (
            callable(learning_rate) and not isinstance(learning_rate, torch.Tensor)
        ):
            return learning_rate
        if _is_number(learning_rate) or (
            isinstance(learning_rate, (torch.Tensor, np.ndarray)) and learning_rate.ndim == 0
        ):
            return float(learning_rate)
        raise ValueError(
            "Argument `learning_rate` should be a float, a LearningRateSchedule, or a callable "
            "that takes no arguments and returns the learning rate; received "
            f"learning_rate={learning_rate!r} of type {type(learning_rate).__name__}."
        )

    # ------------------------------------------------------------------ building

    def build(self, variables):
        """Attach the optimizer to ``variables`` and create its slot tensors (once).

        Later calls do nothing, as in Keras. Subclasses call ``super().build``
        first, then create their slots with ``add_optimizer_variables``.

        Args:
            variables: a list of ``torch.nn.Parameter`` (or tensors) to train.
        """
        if self.built:
            return
        variables = list(variables)
        for index, variable in enumerate(variables):
            if not isinstance(variable, torch.Tensor):
                raise TypeError(
                    f"{type(self).__name__}.build expects a list of torch.nn.Parameter; "
                    f"item {index} is a {type(variable).__name__}. Pass model.trainable_weights "
                    f"or list(module.parameters())."
                )
        self._params = variables
        self._index = {id(variable): i for i, variable in enumerate(variables)}
        self._devices = {variable.device for variable in variables}
        self._decay_flags = [self._use_weight_decay(variable) for variable in variables]
        self._decay_all = all(self._decay_flags)
        self._constraints = [
            (variable, variable.constraint) for variable in variables
            if getattr(variable, "constraint", None) is not None
        ]
        self.built = True
        self._averages = self.add_optimizer_variables(variables, "average") if self.use_ema else []
        self._accumulators = (
            self.add_optimizer_variables(variables, "gradient_accumulator")
            if self.gradient_accumulation_steps else []
        )

    def add_variable(self, shape, initializer="zeros", dtype=None, name=None):
        """Create an optimizer slot tensor of ``shape`` (Keras's ``add_variable``).

        ``initializer`` is "zeros", "ones", a number, or ``f(shape, dtype)``.
        The tensor lives on the device of the optimizer's first variable.
        """
        device = self._params[0].device if self._params else torch.device("cpu")
        return self._new_slot(tuple(shape), config.torch_dtype(dtype), device, initializer,
                              name or "variable")

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        """A slot tensor shaped, typed and placed like ``reference_variable``."""
        return self._new_slot(tuple(reference_variable.shape), reference_variable.dtype,
                              reference_variable.device, initializer, name or "var",
                              self._index.get(id(reference_variable)))

    def add_optimizer_variables(self, trainable_variables, name, initializer="zeros"):
        """One slot per variable for each name in ``name`` (a string or a list).

        Slots are created variable by variable (all names for the first
        variable, then the second...), which is the order ``variables`` lists
        them in, as in Keras. Returns a list, or a tuple of lists for a list of names.
        """
        names = [name] if isinstance(name, str) else list(name)
        initializers = initializer
        if not isinstance(initializer, (list, tuple)):
            initializers = [initializer] * len(names)
        slots = tuple([] for _ in names)
        for variable in trainable_variables:
            for position, (slot_name, slot_init) in enumerate(zip(names, initializers)):
                slot = self.add_variable_from_reference(variable, slot_name, slot_init)
                slots[position].append(slot)
        return slots[0] if isinstance(name, str) else slots

    def _new_slot(self, shape, dtype, device, initializer, name, index=None):
        if callable(initializer):
            value = torch.as_tensor(initializer(shape, dtype=dtype), dtype=dtype).to(device)
        else:
            fill = {"zeros": 0.0, "ones": 1.0}.get(initializer, initializer)
            if not _is_number(fill):
                raise ValueError(
                    f"Optimizer slot initializer must be 'zeros', 'ones', a number or a callable "
                    f"f(shape, dtype); received {initializer!r}."
                )
            value = torch.full(shape, float(fill), dtype=dtype, device=device)
        key = f"{name}/{index if index is not None else len(self._slot_entries)}"
        taken = {entry[0] for entry in self._slot_entries}
        while key in taken:
            key += "_"
        self._slot_entries.append((key, value))
        return value

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exempt variables from weight decay; call it before ``build``.

        Args:
            var_list: variables (parameters) to exempt.
            var_names: substrings (regular expressions); a variable whose ``path``
                or ``name`` attribute contains one is exempt.
        """
        if self.built:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configured before the optimizer is "
                "built; call it before build() / model.compile()."
            )
        self._exclude_ids = {id(variable) for variable in var_list or ()}
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable) -> bool:
        if id(variable) in self._exclude_ids:
            return False
        if self._exclude_pattern is not None:
            name = getattr(variable, "path", None) or getattr(variable, "name", None) or ""
            if self._exclude_pattern.search(str(name)):
                return False
        return True

    # ------------------------------------------------------------------ learning rate

    @property
    def iterations(self) -> int:
        """Number of updates applied (a python int; counts accumulated steps, as Keras)."""
        if self.gradient_accumulation_steps:
            return self._iterations // self.gradient_accumulation_steps
        return self._iterations

    @iterations.setter
    def iterations(self, value):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"iterations must be a non-negative int; received {value!r}.")
        self._iterations = int(value)
        self._iterations_changed()

    @property
    def learning_rate(self) -> float:
        """The current learning rate, a python float (a schedule's value at ``iterations``).

        Setting a float changes it; setting a ``LearningRateSchedule`` replaces it.
        Setting a float raises TypeError if the optimizer was built with a schedule.
        """
        return self._current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if isinstance(learning_rate, LearningRateSchedule) or (
            callable(learning_rate) and not isinstance(learning_rate, torch.Tensor)
        ):
            self._learning_rate = learning_rate
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not settable. "
                "If you need the learning rate to be settable, you should instantiate the "
                "optimizer with a float `learning_rate` argument."
            )
        self._learning_rate = self._check_learning_rate(learning_rate)

    def _current_learning_rate(self) -> float:
        learning_rate = self._learning_rate
        if type(learning_rate) is float:
            return learning_rate
        if isinstance(learning_rate, LearningRateSchedule):
            # Keras evaluates schedules at the raw step count, not the accumulated one.
            return float(learning_rate(self._iterations))
        return float(learning_rate())

    def scale_loss(self, loss):
        """Multiply ``loss`` by ``loss_scale_factor`` (if set) before ``backward()``."""
        if self.loss_scale_factor is not None:
            return loss * self.loss_scale_factor
        return loss

    # ------------------------------------------------------------------ applying

    def _follow_device(self, device) -> None:
        """Move the state tensors to ``device`` in place (the model moved after they were made).

        A model loaded on the CPU, with its optimizer state, then trained on a GPU needs its
        state there too; the tensors keep their identity, so every reference stays valid.

        >>> import torch
        >>> from lamina.optimizers import Adam
        >>> optimizer = Adam()
        >>> optimizer.build([torch.nn.Parameter(torch.zeros(2))])
        >>> optimizer._follow_device("cpu")  # fit() does this with its device, e.g. "cuda"
        >>> {t.device.type for t in optimizer.state_tensors().values() if t.ndim}
        {'cpu'}
        """
        device = torch.device(device)

        def elsewhere(t):
            return t.device.type != device.type or (device.index is not None and t.device.index != device.index)

        with torch.no_grad():
            for value in list(vars(self).values()):
                if isinstance(value, Optimizer):
                    value._follow_device(device)
                    continue
                for tensor in value if isinstance(value, (list, tuple)) else (value,):
                    if (isinstance(tensor, torch.Tensor) and not isinstance(tensor, torch.nn.Parameter)
                            and elsewhere(tensor)):
                        tensor.data = tensor.data.to(device)

    def _require_built(self, method: str) -> None:
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.{method}() needs a built optimizer; call "
                f"optimizer.build(variables) first (model.compile() does it for you)."
            )

    def step(self, closure=None):
        """Apply the gradients stored in each built variable's ``.grad``.

        Variables whose ``.grad`` is None are skipped (with a warning, as Keras).
        Gradient clipping and loss unscaling edit ``.grad`` in place, like
        ``torch.nn.utils.clip_grad_norm_``.

        Args:
            closure: optional callable that recomputes the loss (torch's
                ``Optimizer.step`` convention); its result is returned.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._require_built("step")
        params = self._params
        if not params:
            return loss
        grads = [param.grad for param in params]
        indices = None
        if any(grad is None for grad in grads):
            indices = [i for i, grad in enumerate(grads) if grad is not None]
            grads, params = self._filter_missing(grads, params, indices)
        self._apply(grads, params, indices, owned=True)
        return loss

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of the built variables (to None by default)."""
        for param in self._params:
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.detach_().zero_()

    def apply_gradients(self, grads_and_vars):
        """Apply ``(gradient, variable)`` pairs; builds on first use. Returns ``iterations``.

        Example:
        >>> import torch
        >>> from lamina.optimizers import SGD
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> SGD(learning_rate=0.5).apply_gradients([(torch.ones(2), w)])
        1
        >>> w.detach()
        tensor([-0.5000, -0.5000])
        """
        pairs = list(grads_and_vars)
        grads = [grad for grad, _ in pairs]
        variables = [variable for _, variable in pairs]
        self.apply(grads, variables)
        return self.iterations

    def apply(self, grads, trainable_variables=None):
        """Apply ``grads`` to ``trainable_variables`` (default: the built variables).

        Gradients may be tensors, numpy arrays or None (skipped). Builds the
        optimizer on its first call with variables. The gradients are not modified.
        """
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            self._require_built("apply")
            if len(grads) != len(self._params):
                raise ValueError(
                    f"apply() received {len(grads)} gradients but the optimizer was built with "
                    f"{len(self._params)} variables; pass one gradient per variable, in order."
                )
            params = self._params
            indices = None
        else:
            params = list(trainable_variables)
            if len(grads) != len(params):
                raise ValueError(
                    f"apply() received {len(grads)} gradients for {len(params)} variables; "
                    f"pass one gradient per variable."
                )
            if not self.built:
                self.build(params)
            indices = []
            for variable in params:
                index = self._index.get(id(variable))
                if index is None:
                    raise ValueError(
                        f"Unknown variable of shape {tuple(variable.shape)}: this optimizer can "
                        f"only be called for the variables it was built with. Create a new "
                        f"optimizer for a new set of variables."
                    )
                indices.append(index)
            if indices == list(range(len(self._params))):
                indices = None
        grads = [
            None if grad is None else torch.as_tensor(grad, dtype=param.dtype, device=param.device)
            for grad, param in zip(grads, params)
        ]
        if any(grad is None for grad in grads):
            keep = [i for i, grad in enumerate(grads) if grad is not None]
            grads, params = self._filter_missing(grads, params, keep)
            indices = [keep_i if indices is None else indices[keep_i] for keep_i in keep]
        self._apply(grads, params, indices, owned=False)

    def _filter_missing(self, grads, params, keep):
        if not keep:
            raise ValueError("No gradients provided for any variable.")
        missing = [tuple(params[i].shape) for i in range(len(params)) if grads[i] is None]
        warnings.warn(
            f"Gradients do not exist for {len(missing)} variable(s) of shapes {missing} when "
            f"minimizing the loss. If using `model.compile()`, did you forget to provide a "
            f"`loss` argument?",
            stacklevel=3,
        )
        return [grads[i] for i in keep], [params[i] for i in keep]

    @staticmethod
    def _select(slots, indices):
        return slots if indices is None else [slots[i] for i in indices]

    def _apply(self, grads, params, indices, owned):
        with torch.no_grad():
            if self.loss_scale_factor is not None:
                if owned:
                    torch._foreach_div_(grads, self.loss_scale_factor)
                else:
                    grads = list(torch._foreach_div(grads, self.loss_scale_factor))
                    owned = True
            steps = self.gradient_accumulation_steps
            if not steps:
                self._clip_decay_update(grads, params, indices, owned)
            elif (self._iterations + 1) % steps == 0:
                grads = list(torch._foreach_add(grads, self._select(self._accumulators, indices)))
                torch._foreach_div_(grads, steps)
                self._clip_decay_update(grads, params, indices, True)
                torch._foreach_zero_(self._accumulators)
            else:
                torch._foreach_add_(self._select(self._accumulators, indices), grads)
            if self.use_ema:
                self._update_moving_average()
            for param, constraint in self._constraints:
                if indices is None or self._index[id(param)] in indices:
                    param.copy_(constraint(param))
        self._iterations += 1

    def _clip_decay_update(self, grads, params, indices, owned):
        grads = self._clip_gradients(grads, owned)
        self._decay_and_update(grads, params, indices, self._current_learning_rate())

    def _clip_gradients(self, grads, owned):
        if self.clipnorm and self.clipnorm > 0:
            # Keras: g * clipnorm / max(||g||, clipnorm), per variable.
            factors = torch._foreach_clamp_min(torch._foreach_norm(grads), self.clipnorm)
            torch._foreach_reciprocal_(factors)
            torch._foreach_mul_(factors, self.clipnorm)
            return self._scale(grads, factors, owned)
        if self.global_clipnorm and self.global_clipnorm > 0:
            norms = torch._foreach_norm(grads)
            if len(self._devices) > 1:
                norms = [norm.to(grads[0].device) for norm in norms]
            total = torch.linalg.vector_norm(torch.stack(norms))
            # min(1/norm, 1/clip) is 1/clip for norm 0; adding (norm - norm) makes inf/nan
            # norms give nan, as Keras does.
            scale = torch.clamp(torch.reciprocal(total), max=1.0 / self.global_clipnorm)
            scale = scale * self.global_clipnorm + (total - total)
            if len(self._devices) > 1:
                return self._scale(grads, [scale.to(grad.device) for grad in grads], owned)
            return self._scale(grads, scale, owned)
        if self.clipvalue and self.clipvalue > 0:
            if not owned:
                return list(torch._foreach_clamp_max(
                    torch._foreach_clamp_min(grads, -self.clipvalue), self.clipvalue))
            torch._foreach_clamp_min_(grads, -self.clipvalue)
            torch._foreach_clamp_max_(grads, self.clipvalue)
        return grads

    @staticmethod
    def _scale(grads, factor, owned):
        if owned:
            torch._foreach_mul_(grads, factor)
            return grads
        return list(torch._foreach_mul(grads, factor))

    def _apply_weight_decay(self, params, indices, learning_rate):
        if not self.weight_decay:
            return
        if not self._decay_all:
            flags = self._select(self._decay_flags, indices)
            params = [param for param, flag in zip(params, flags) if flag]
        if params:
            torch._foreach_mul_(params, 1.0 - self.weight_decay * learning_rate)

    def _decay_and_update(self, grads, params, indices, learning_rate):
        self._apply_weight_decay(params, indices, learning_rate)
        self._update(grads, params, indices, learning_rate)

    def _update(self, grads, params, indices, learning_rate):
        """Multi-tensor update; the default calls ``update_step`` per variable."""
        for grad, param in zip(grads, params):
            self.update_step(grad, param, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        """Update one variable in place (Keras's per-variable hook for custom optimizers)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement update_step(gradient, variable, learning_rate) "
            f"or _update(grads, params, indices, learning_rate)."
        )

    def _get_variable_index(self, variable) -> int:
        return self._index[id(variable)]

    def assign(self, variable, value):
        """``variable[...] = value`` in place, outside autograd."""
        with torch.no_grad():
            variable.copy_(torch.as_tensor(value, dtype=variable.dtype, device=variable.device))

    def assign_add(self, variable, value):
        """``variable += value`` in place, outside autograd."""
        with torch.no_grad():
            variable.add_(torch.as_tensor(value, dtype=variable.dtype, device=variable.device))

    def assign_sub(self, variable, value):
        """``variable -= value`` in place, outside autograd."""
        with torch.no_grad():
            variable.sub_(torch.as_tensor(value, dtype=variable.dtype, device=variable.device))

    # ------------------------------------------------------------------ EMA

    def _update_moving_average(self):
        # Keras starts the average at the variables themselves on the first step.
        momentum = self.ema_momentum if self.iterations != 0 else 0.0
        torch._foreach_lerp_(self._averages, self._params, 1.0 - momentum)
        frequency = self.ema_overwrite_frequency
        if frequency and (self.iterations + 1) % frequency == 0:
            torch._foreach_copy_(self._params, self._averages)

    def finalize_variable_values(self, var_list):
        """At the end of training, copy the EMA into ``var_list`` if ``use_ema``."""
        if not self.use_ema:
            return
        var_list = list(var_list)
        if len(var_list) != len(self._averages):
            raise ValueError(
                f"finalize_variable_values received {len(var_list)} variables but the optimizer "
                f"averages {len(self._averages)}; pass the variables it was built with."
            )
        with torch.no_grad():
            torch._foreach_copy_(var_list, self._averages)

    # ------------------------------------------------------------------ state

    def _extra_scalars(self) -> list[tuple[str, float]]:
        """Python-float state a subclass keeps outside slot tensors (listed last)."""
        return []

    def _set_extra_scalar(self, name: str, value: float) -> None:
        raise KeyError(name)

    def _iterations_changed(self) -> None:
        """Hook for subclasses that mirror ``iterations`` in tensors."""

    @property
    def variables(self) -> list[torch.Tensor]:
        """The optimizer's state in Keras 3's order.

        ``iteration``, ``learning_rate`` (unless it is a schedule or callable), the
        slots in creation order, then any extra scalar (Nadam's ``u_product``).
        The scalars are fresh tensors; the slots are the live tensors.
        """
        values = [torch.tensor(self._iterations, dtype=torch.int64)]
        if type(self._learning_rate) is float:
            values.append(torch.tensor(self._learning_rate, dtype=config.torch_dtype()))
        values.extend(tensor for _, tensor in self._slot_entries)
        values.extend(
            torch.tensor(value, dtype=config.torch_dtype()) for _, value in self._extra_scalars())
        return values

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume training, by stable name.

        Keys: ``"iteration"``, ``"learning_rate"`` (for a float learning rate), one
        ``"<slot>/<variable index>"`` per slot (e.g. ``"momentum/0"``) and any extra
        scalar. Slot values are the live tensors, as in torch's ``state_dict``.

        Example:
        >>> import torch
        >>> from lamina.optimizers import SGD
        >>> optimizer = SGD(momentum=0.9)
        >>> optimizer.build([torch.nn.Parameter(torch.zeros(2))])
        >>> list(optimizer.state_tensors())
        ['iteration', 'learning_rate', 'momentum/0']
        """
        state = {"iteration": torch.tensor(self._iterations, dtype=torch.int64)}
        if type(self._learning_rate) is float:
            state["learning_rate"] = torch.tensor(self._learning_rate, dtype=torch.float64)
        state.update(self._slot_entries)
        for name, value in self._extra_scalars():
            state[name] = torch.tensor(value, dtype=torch.float64)
        return state

    def load_state_tensors(self, state) -> None:
        """Restore ``state_tensors()`` output into a built optimizer.

        ``"learning_rate"`` is optional (kept when absent, ignored under a schedule);
        every other key must match. Tensors are copied into the existing slots.
        """
        self._require_built("load_state_tensors")
        expected = set(self.state_tensors())
        given = set(state)
        missing = expected - given - {"learning_rate"}
        unexpected = given - expected - {"learning_rate"}
        if missing or unexpected:
            raise ValueError(
                f"{type(self).__name__}.load_state_tensors: missing keys {sorted(missing)}, "
                f"unexpected keys {sorted(unexpected)}. Load the state of an optimizer of the "
                f"same class and settings built on the same variables."
            )
        with torch.no_grad():
            for name, tensor in self._slot_entries:
                value = torch.as_tensor(state[name])
                if tuple(value.shape) != tuple(tensor.shape):
                    raise ValueError(
                        f"Optimizer state {name!r} has shape {tuple(tensor.shape)}; received a "
                        f"tensor of shape {tuple(value.shape)}."
                    )
                tensor.copy_(value)
        if "learning_rate" in state and type(self._learning_rate) is float:
            self._learning_rate = float(state["learning_rate"])
        for name, _ in self._extra_scalars():
            self._set_extra_scalar(name, float(state[name]))
        self._iterations = int(state["iteration"])
        self._iterations_changed()

    def set_weights(self, weights) -> None:
        """Set the state from arrays in ``variables`` order (Keras's ``set_weights``)."""
        self._require_built("set_weights")
        weights = list(weights)
        keys = list(self.state_tensors())
        if len(weights) != len(keys):
            raise ValueError(
                f"set_weights received {len(weights)} arrays; {type(self).__name__} has "
                f"{len(keys)} variables ({keys})."
            )
        self.load_state_tensors(
            {key: torch.as_tensor(np.asarray(weight)) for key, weight in zip(keys, weights)})

    def save_own_variables(self, store) -> None:
        """Write ``variables`` as numpy arrays under keys "0", "1"... (Keras's layout)."""
        for index, variable in enumerate(self.variables):
            store[str(index)] = variable.detach().cpu().numpy()

    def load_own_variables(self, store) -> None:
        """Read what ``save_own_variables`` (or Keras) wrote; warns and skips on a mismatch."""
        if len(store.keys()) != len(self.variables):
            warnings.warn(
                f"Skipping variable loading for optimizer '{self.name}', because it has "
                f"{len(self.variables)} variables whereas the saved optimizer has "
                f"{len(store.keys())} variables.",
                stacklevel=2,
            )
            return
        self.set_weights([store[str(index)] for index in range(len(store.keys()))])

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        """The constructor arguments, with Keras's keys (a schedule as a config dict)."""
        learning_rate = self._learning_rate
        if not isinstance(learning_rate, float):
            learning_rate = registry.serialize("schedule", learning_rate)
        return {
            "name": self.name,
            "learning_rate": learning_rate,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild an optimizer (without state) from ``get_config()`` output."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = registry.get(
                "schedule", config["learning_rate"], custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} iterations={self.iterations}>"
