"""Layer wrappers: ``Bidirectional`` (a recurrent layer run forwards and backwards) and
``TimeDistributed`` (a layer applied to every time step).

They hold other layers and delegate the maths to them; the recurrent layers themselves
live in ``recurrent.py``.
"""

from __future__ import annotations

import torch

from lamina import registry
from lamina.layers.base import Layer

__all__ = ["Bidirectional", "TimeDistributed"]


def _copy_layer(layer, name, **changes):
    entry = registry.serialize("layer", layer)
    entry["config"] = dict(entry["config"], name=name, **changes)
    return registry.get("layer", entry)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


@registry.register("layer")
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards, and merges their outputs.

    The forward layer is rebuilt from ``layer``'s config (fresh weights, named
    ``forward_<name>``); the backward one is ``backward_layer`` or a copy with
    ``go_backwards=True`` named ``backward_<name>``. Weights list the forward layer's, then the
    backward layer's. With ``return_sequences`` the backward outputs are flipped back to input
    order and masked steps output zeros.

    Args:
        layer: an ``RNN`` instance (LSTM, GRU, ...), or any layer with ``go_backwards``,
            ``return_sequences`` and ``return_state`` attributes and a config.
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or None (return
            both outputs as a list).
        weights: optional initial weights (forward half, then backward half), set at build.
        backward_layer: optional layer for the backward direction.

    Call arguments:
        sequences, mask, training: as in ``RNN``. initial_state: forward states, then backward.

    Example:
    >>> import torch
    >>> from lamina.layers import LSTM
    >>> Bidirectional(LSTM(4))(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 8])
    """

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(
                f"Please initialize `Bidirectional` layer with a lamina layer instance; "
                f"received {layer!r}."
            )
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ValueError(f"`backward_layer` needs to be a lamina layer instance; received {backward_layer!r}.")
        if merge_mode not in ("sum", "mul", "ave", "concat", None):
            raise ValueError(
                f'Invalid merge mode. Received: {merge_mode!r}. Merge mode should be one of '
                f'{{"sum", "mul", "ave", "concat", None}}.'
            )
        super().__init__(**kwargs)
        self.forward_layer = _copy_layer(layer, "forward_" + _strip(layer.name, "forward_"))
        if backward_layer is None:
            backward_layer = _copy_layer(layer, "backward_" + _strip(layer.name, "backward_"), go_backwards=True)
        self.backward_layer = backward_layer
        if hasattr(layer, "use_cudnn"):
            self.forward_layer.use_cudnn = layer.use_cudnn
            self.backward_layer.use_cudnn = layer.use_cudnn
        if self.forward_layer.go_backwards == self.backward_layer.go_backwards:
            raise ValueError(
                f"Forward layer and backward layer should have different `go_backwards` values; "
                f"both have go_backwards={self.forward_layer.go_backwards}."
            )
        for attribute in ("stateful", "return_sequences", "return_state"):
            forward, backward = getattr(self.forward_layer, attribute), getattr(self.backward_layer, attribute)
            if forward != backward:
                raise ValueError(
                    f'Forward layer and backward layer are expected to have the same value for '
                    f'attribute "{attribute}", got "{forward}" for forward layer and "{backward}" '
                    f"for backward layer."
                )
        for sub in (self.forward_layer, self.backward_layer):
            if hasattr(sub, "zero_output_for_mask"):
                sub.zero_output_for_mask = sub.return_sequences
        self.merge_mode = merge_mode
        self._initial_weights = weights
        self.stateful = layer.stateful
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.supports_masking = True
        self.input_spec = self.forward_layer.input_spec

    def build(self, sequences_shape, initial_state_shape=None):
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub._build_shape = tuple(sequences_shape)
                sub.build(tuple(sequences_shape))
                sub.built = True
        self.built = True
        if self._initial_weights:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def call(self, sequences, initial_state=None, mask=None, training=False):
        forward_state = backward_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            forward_state, backward_state = list(initial_state[:half]), list(initial_state[half:])
        y = self.forward_layer(sequences, initial_state=forward_state, mask=mask, training=training)
        y_rev = self.backward_layer(sequences, initial_state=backward_state, mask=mask, training=training)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = y_rev.flip(1)
        if self.merge_mode == "concat":
            output = [torch.cat([y, y_rev], -1)]
        elif self.merge_mode == "sum":
            output = [y + y_rev]
        elif self.merge_mode == "ave":
            output = [(y + y_rev) / 2]
        elif self.merge_mode == "mul":
            output = [y * y_rev]
        else:
            output = [y, y_rev]
        if self.return_state or self.merge_mode is None:
            return output + states
        return output[0]

    @property
    def states(self):
        """Both layers' stored states (forward then backward) when stateful, else None."""
        forward, backward = self.forward_layer.states, self.backward_layer.states
        if forward and backward:
            return list(forward) + list(backward)
        return None

    def reset_state(self) -> None:
        """Zero both layers' stored states."""
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    def reset_states(self) -> None:
        """Alias of ``reset_state()``."""
        self.reset_state()

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        output = self.forward_layer.compute_output_shape(sequences_shape)
        states = []
        if self.return_state:
            output, states = output[0], list(output[1:])
        if self.merge_mode == "concat":
            output = [(*output[:-1], None if output[-1] is None else 2 * output[-1])]
        elif self.merge_mode is None:
            output = [tuple(output), tuple(output)]
        else:
            output = [tuple(output)]
        if self.return_state or self.merge_mode is None:
            return output + states + states
        return output[0]

    def compute_mask(self, inputs, previous_mask=None):
        if isinstance(previous_mask, (list, tuple)):
            previous_mask = previous_mask[0]
        return previous_mask if self.return_sequences else None

    def get_config(self):
        config_ = super().get_config()
        config_["merge_mode"] = self.merge_mode
        config_["layer"] = registry.serialize("layer", self.forward_layer)
        config_["backward_layer"] = registry.serialize("layer", self.backward_layer)
        return config_

    @classmethod
    def from_config(cls, config_):
        config_ = dict(config_)
        layer = registry.get("layer", config_.pop("layer"))
        backward = config_.pop("backward_layer", None)
        if backward is not None:
            backward = registry.get("layer", backward)
        return cls(layer, backward_layer=backward, **config_)


@registry.register("layer")
class TimeDistributed(Layer):
    """Applies ``layer`` to every time slice of a ``(batch, time, ...)`` input, with shared weights.

    The slices are folded into the batch axis and the layer runs once on ``(batch * time, ...)``,
    which gives the same numbers as Keras 3's loop over time for any per-sample layer. Layers
    holding non-trainable statistics (BatchNormalization) run one slice at a time in training,
    as in Keras 3, so their batch statistics stay per time step.

    Args:
        layer: the layer to apply.

    Call arguments:
        inputs: ``(batch, time, ...)``. training: bool. mask: optional ``(batch, time)``,
        passed on (folded the same way) to layers that take a mask.

    Example:
    >>> import torch
    >>> from lamina.layers.core import Dense
    >>> TimeDistributed(Dense(4))(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 5, 4])
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(
                f"Please initialize `TimeDistributed` layer with a lamina layer instance; "
                f"received {layer!r}."
            )
        super().__init__(**kwargs)
        self.layer = layer
        self.supports_masking = True

    @staticmethod
    def _child_shape(input_shape):
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 3:
            raise ValueError(
                f"`TimeDistributed` Layer should be passed an `input_shape` with at least 3 "
                f"dimensions (batch, time, ...); received: {input_shape}."
            )
        return (input_shape[0], *tuple(input_shape)[2:])

    def build(self, input_shape):
        child = self._child_shape(input_shape)
        if not self.layer.built:
            self.layer._build_shape = child
            self.layer.build(child)
            self.layer.built = True
        self.built = True

    def call(self, inputs, training=False, mask=None):
        self._child_shape(tuple(inputs.shape))
        batch, steps = inputs.shape[0], inputs.shape[1]
        if mask is not None and (mask.ndim < 2 or tuple(mask.shape[:2]) != (batch, steps)):
            raise ValueError(
                f"The `mask` passed to the `TimeDistributed` layer has shape {tuple(mask.shape)}, "
                f"incompatible with the input shape {tuple(inputs.shape)}: its first two "
                f"dimensions must be (batch_size, timesteps) = ({batch}, {steps})."
            )
        has_training, has_mask = self.layer._call_flags()
        kwargs = {"training": training} if has_training else {}
        if training and self._has_statistics():
            outputs = []
            for t in range(steps):
                if has_mask and mask is not None:
                    kwargs["mask"] = mask[:, t]
                outputs.append(self.layer.call(inputs[:, t], **kwargs))
            return torch.stack(outputs, 1)
        if has_mask and mask is not None:
            kwargs["mask"] = mask.reshape(batch * steps, *mask.shape[2:])
        output = self.layer.call(inputs.reshape(batch * steps, *inputs.shape[2:]), **kwargs)
        return output.reshape(batch, steps, *output.shape[1:])

    def _has_statistics(self) -> bool:
        return any(not sub._weight_trainable[name] for sub in self.layer._flatten_layers()
                   for name in sub._weight_names)

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_shape(input_shape))
        return (child[0], input_shape[1], *child[1:])

    def get_config(self):
        config_ = super().get_config()
        config_["layer"] = registry.serialize("layer", self.layer)
        return config_

    @classmethod
    def from_config(cls, config_):
        config_ = dict(config_)
        layer = registry.get("layer", config_.pop("layer"))
        return cls(layer, **config_)
