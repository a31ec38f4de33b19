"""Recurrent layers: the cells (SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells), the generic
``RNN`` loop, and SimpleRNN / LSTM / GRU. The Bidirectional and TimeDistributed wrappers live
in ``wrappers.py``.

Whole sequences run through torch's fused kernels (``torch.lstm`` / ``torch.gru`` /
``torch.rnn_tanh``, cuDNN on CUDA) whenever the cell maths allows it; otherwise a Python loop
over time steps runs each cell's Keras maths. Both paths follow Keras's masking semantics.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lamina import config, registry
from lamina.layers import rnn_ops
from lamina.layers.base import _CONTEXT, InputSpec, Layer, _jit_tracing

__all__ = ["SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells", "RNN", "SimpleRNN", "LSTM", "GRU"]

# Pre-activation offset that pins a sigmoid gate at exactly 0 or 1 in float32/float16/bfloat16
# (sigmoid(-1e4) == 0.0, sigmoid(1e4) == 1.0) while staying finite in float16.
_SATURATE = 1e4


# ---------------------------------------------------------------------------------- helpers
def _flatten(structure) -> list:
    if isinstance(structure, (list, tuple)):
        return [t for item in structure for t in _flatten(item)]
    return [structure]


def _pack_like(structure, flat):
    """Rebuild ``structure``'s nesting from the iterator ``flat``."""
    if isinstance(structure, (list, tuple)):
        return [_pack_like(item, flat) for item in structure]
    return next(flat)


def _activation(name_or_fn):
    return registry.get("activation", name_or_fn if name_or_fn is not None else "linear")


_BUILTIN_ACTIVATIONS: dict = {}


def _is_activation(fn, name: str) -> bool:
    # Called on every forward pass (fast-path eligibility): resolve the name once, not per call.
    builtin = _BUILTIN_ACTIVATIONS.get(name)
    if builtin is None:
        builtin = _BUILTIN_ACTIVATIONS[name] = registry.get("activation", name)
    return fn is builtin or fn is getattr(torch, name, None)


def _last_valid(outputs: torch.Tensor, initial: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's output at its last valid step of a left-packed sequence, ``initial`` if none."""
    padded = torch.cat([initial.unsqueeze(1), outputs], 1)
    index = lengths.view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
    return padded.gather(1, index).squeeze(1)


def _run_kernel(kernel, x, *args):
    if _jit_tracing():
        # torch.compile would decompose the fused kernel into one set of ops per time step
        # (minutes of compiling for a slower loop). On the CPU an LSTM's kernel is one opaque
        # operator in the graph (rnn_ops.py); otherwise it runs eagerly, as for nn.LSTM.
        if (kernel is torch.lstm and args[-1] and not getattr(_CONTEXT, "whole_step", False)
                and rnn_ops.lstm_applies(x, *args[:5], args[6])):
            hx, params, _, _, _, train = args[:6]
            return rnn_ops.lstm(x, hx, params, train)
        return _eager_kernel(kernel, x, *args)
    return _call_kernel(kernel, x, *args)


def _call_kernel(kernel, x, *args):
    # On CUDA, cuDNN warns on every call that per-call parameter lists are "not part of single
    # contiguous chunk of memory" and compacts them; that copy is the price of keeping weights in
    # Keras's layout, so the warning carries no information here.
    if x.is_cuda:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            return kernel(x, *args)
    return kernel(x, *args)


def _eager_kernel_impl(kernel, x, *args):
    return _call_kernel(kernel, x, *args)


# torch.compiler.disable, applied when first called: the decorator imports Dynamo (~1 s), which
# `import lamina` must not pay (torch's own lazy form; the public one where it is missing).
_eager_kernel = getattr(torch, "_disable_dynamo", torch.compiler.disable)(_eager_kernel_impl)


# ------------------------------------------------------------------------------------ cells
class _Cell(Layer):
    """Shared logic of the built-in cells: arguments, weights, dropout masks, config."""

    _gates = 1
    _mask_count = None  # None: one dropout mask; k: one per gate (Keras's implementation=1)
    _fused_owner = None  # the class whose ``call`` ``_fused_sequence`` reproduces

    def __init__(self, units, activation, use_bias, kernel_initializer, recurrent_initializer,
                 bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                 kernel_constraint, recurrent_constraint, bias_constraint, dropout, recurrent_dropout,
                 seed, **kwargs):
        implementation = kwargs.pop("implementation", 2)
        super().__init__(**kwargs)
        if isinstance(units, float) and units.is_integer():
            units = int(units)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                f"Received an invalid value for argument `units`, expected a positive integer; "
                f"received units={units!r} (layer \"{self.name}\")."
            )
        self.units = units
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = registry.get("initializer", kernel_initializer)
        self.recurrent_initializer = registry.get("initializer", recurrent_initializer)
        self.bias_initializer = registry.get("initializer", bias_initializer)
        self.kernel_regularizer = registry.get("regularizer", kernel_regularizer)
        self.recurrent_regularizer = registry.get("regularizer", recurrent_regularizer)
        self.bias_regularizer = registry.get("regularizer", bias_regularizer)
        self.kernel_constraint = registry.get("constraint", kernel_constraint)
        self.recurrent_constraint = registry.get("constraint", recurrent_constraint)
        self.bias_constraint = registry.get("constraint", bias_constraint)
        # Keras clamps the rates into [0, 1] rather than rejecting them.
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.implementation = 1 if self.recurrent_dropout != 0.0 else implementation
        self.seed = seed
        self.state_size = units
        self.output_size = units
        self._generator = None
        self._mask_cache = None  # a dict while an RNN runs a sequence: one mask set per sequence

    def _build_kernels(self, input_dim):
        if input_dim is None:
            raise ValueError(
                f'Layer "{self.name}" needs a known feature dimension to build its kernel; '
                f"received step input shape with last axis None."
            )
        width = self._gates * self.units
        # Keras shapes (in, gates*units) / (units, gates*units), stored transposed: torch's
        # (gates*units, in) weight_ih / weight_hh layout, which the fused kernels take as is.
        self.kernel = self._add_weight(
            (int(input_dim), width), self.kernel_initializer, None, True, self.kernel_regularizer,
            self.kernel_constraint, "kernel", perm=(1, 0))
        self.recurrent_kernel = self._add_weight(
            (self.units, width), self.recurrent_initializer, None, True, self.recurrent_regularizer,
            self.recurrent_constraint, "recurrent_kernel", perm=(1, 0))

    def _build_bias(self, shape, initializer):
        if self.use_bias:
            self.bias = self._add_weight(shape, initializer, None, True, self.bias_regularizer,
                                         self.bias_constraint, "bias")
        else:
            self.bias = None

    # -------------------------------------------------------------- dropout masks
    def _random_mask(self, like, rate, count):
        if self.seed is not None and (self._generator is None or self._generator.device != like.device):
            self._generator = torch.Generator(device=like.device).manual_seed(int(self.seed))
        generator = self._generator if self.seed is not None else None

        def draw():
            keep = torch.rand(like.shape, device=like.device, generator=generator) >= rate
            return keep.to(like.dtype) / (1.0 - rate)

        return draw() if count is None else [draw() for _ in range(count)]

    def _step_masks(self, inputs, state, training):
        """(input mask, recurrent mask), each None, a tensor, or one tensor per gate.

        Inside an RNN sequence the masks are drawn once and reused at every step, as in Keras.
        """
        if not training:
            return None, None
        if self._mask_cache is not None and "masks" in self._mask_cache:
            return self._mask_cache["masks"]
        count = self._mask_count if self.implementation == 1 else None
        rate, recurrent_rate = self.dropout, self.recurrent_dropout
        masks = (
            self._random_mask(inputs, rate, count) if 0.0 < rate < 1.0 else None,
            self._random_mask(state, recurrent_rate, count) if 0.0 < recurrent_rate < 1.0 else None,
        )
        if self._mask_cache is not None:
            self._mask_cache["masks"] = masks
        return masks

    # -------------------------------------------------------------- fused path
    def _fused_ready(self, training) -> bool:
        """Whether ``_fused_sequence`` reproduces this cell's maths for the call."""
        owner = self._fused_owner
        if owner is None or type(self).call is not owner.call or not self._fused_activations():
            return False
        if training and 0.0 < self.recurrent_dropout < 1.0:
            return False
        if training and 0.0 < self.dropout < 1.0 and self.implementation == 1 and self._mask_count:
            return False
        return True

    def _fused_input_dropout(self, x, training):
        """Keras's fused path drops the same input units at every time step."""
        if training and 0.0 < self.dropout < 1.0:
            return x * self._random_mask(x[:, 0], self.dropout, None).unsqueeze(1)
        return x

    def _zero_bias(self):
        return torch.zeros_like(self.bias)

    def _kernel_params(self, w_ih, cudnn_mode: int) -> list:
        """``[w_ih, w_hh, b_ih, b_hh]`` for torch's fused kernels (Keras's one bias, zeros).

        On CUDA the weights become views of one cuDNN weight buffer, as ``torch.nn.LSTM``
        keeps them (``flatten_parameters``): cuDNN then uses them in place, where separate
        tensors would be copied into a new buffer on every call. The buffer is rebuilt when
        the weights move (``model.to``); any failure falls back to separate tensors.
        """
        if not (w_ih is self.kernel and w_ih.is_cuda and self.__dict__.get("_flat_ok", True)
                and not torch.compiler.is_compiling()):
            return [w_ih, self.recurrent_kernel] + ([self.bias, self._zero_bias()] if self.use_bias else [])
        zero = self.__dict__.get("_flat_zero")
        params = [w_ih, self.recurrent_kernel] + ([self.bias, zero] if self.use_bias else [])
        storage = w_ih.untyped_storage().data_ptr()
        if all(p is not None and p.untyped_storage().data_ptr() == storage for p in params[1:]):
            return params
        try:
            if self.use_bias:
                params[3] = torch.zeros_like(self.bias)
            with torch.no_grad():
                torch._cudnn_rnn_flatten_weight(params, len(params), w_ih.shape[1], cudnn_mode,
                                                self.recurrent_kernel.shape[1], 0, 1, True, False)
            self.__dict__["_flat_zero"] = params[3] if self.use_bias else None
        except (RuntimeError, AttributeError):  # no cuDNN, or another torch: copy per call
            self.__dict__["_flat_ok"] = False
            return self._kernel_params(w_ih, cudnn_mode)
        return params

    def get_initial_state(self, batch_size=None):
        """Zero states, one ``(batch_size, size)`` tensor per entry of ``state_size``."""
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        device = self.kernel.device if self.built else None
        dtype = config.torch_dtype(self._dtype)
        return [torch.zeros(batch_size, size, dtype=dtype, device=device) for size in sizes]

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "units": self.units,
            "activation": registry.serialize("activation", self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": registry.serialize("initializer", self.kernel_initializer),
            "recurrent_initializer": registry.serialize("initializer", self.recurrent_initializer),
            "bias_initializer": registry.serialize("initializer", self.bias_initializer),
            "kernel_regularizer": registry.serialize("regularizer", self.kernel_regularizer),
            "recurrent_regularizer": registry.serialize("regularizer", self.recurrent_regularizer),
            "bias_regularizer": registry.serialize("regularizer", self.bias_regularizer),
            "kernel_constraint": registry.serialize("constraint", self.kernel_constraint),
            "recurrent_constraint": registry.serialize("constraint", self.recurrent_constraint),
            "bias_constraint": registry.serialize("constraint", self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        })
        return config_


@registry.register("layer")
class SimpleRNNCell(_Cell):
    """One step of a fully-connected RNN: ``h = activation(x @ kernel + bias + h_prev @ recurrent_kernel)``.

    Args:
        units: positive int, size of the output and state.
        activation: default ``"tanh"``; None means linear.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: default None.
        kernel_constraint, recurrent_constraint, bias_constraint: default None.
        dropout: fraction of input units dropped in training, default 0.
        recurrent_dropout: fraction of state units dropped in training, default 0.
        seed: optional int seeding the dropout masks.

    Call arguments:
        inputs: ``(batch, features)``. states: ``[h]`` with h ``(batch, units)``. training: bool.

    Example:
    >>> import torch
    >>> cell = SimpleRNNCell(4)
    >>> output, states = cell(torch.ones(2, 3), [torch.zeros(2, 4)])
    >>> output.shape, len(states)
    (torch.Size([2, 4]), 1)
    """

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, **kwargs):
        super().__init__(units, activation, use_bias, kernel_initializer, recurrent_initializer,
                         bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                         kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, **kwargs)

    def build(self, input_shape):
        self._build_kernels(input_shape[-1])
        self._build_bias((self.units,), self.bias_initializer)
        self.built = True

    def call(self, inputs, states, training=False):
        previous = states[0] if isinstance(states, (list, tuple)) else states
        dropout_mask, recurrent_mask = self._step_masks(inputs, previous, training)
        if dropout_mask is not None:
            inputs = inputs * dropout_mask
        if recurrent_mask is not None:
            previous = previous * recurrent_mask
        output = F.linear(inputs, self.kernel, self.bias) + F.linear(previous, self.recurrent_kernel)
        output = self.activation(output)
        return output, [output] if isinstance(states, (list, tuple)) else output

    def _fused_activations(self):
        return _is_activation(self.activation, "tanh") or _is_activation(self.activation, "relu")

    def _fused_sequence(self, x, states, valid, lengths, need_states):
        tanh = _is_activation(self.activation, "tanh")
        kernel = torch.rnn_tanh if tanh else torch.rnn_relu
        params = self._kernel_params(self.kernel, 1 if tanh else 0)  # cuDNN's RNN_TANH / RNN_RELU
        h0 = states[0]
        outputs, h_n = _run_kernel(kernel, x, h0.unsqueeze(0).contiguous(), params, self.use_bias, 1,
                                   0.0, torch.is_grad_enabled(), False, True)
        h_n = _last_valid(outputs, h0, lengths) if valid is not None else h_n[0]
        return outputs, [h_n]


SimpleRNNCell._fused_owner = SimpleRNNCell


@registry.register("layer")
class LSTMCell(_Cell):
    """One step of a Long Short-Term Memory layer (Hochreiter 1997), gates in Keras order i, f, c, o.

    Args:
        units: positive int, size of the output and of each state.
        activation: default ``"tanh"``; None means linear.
        recurrent_activation: gate activation, default ``"sigmoid"``.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        unit_forget_bias: add 1 to the forget-gate bias at initialization. Default True.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: default None.
        kernel_constraint, recurrent_constraint, bias_constraint: default None.
        dropout: fraction of input units dropped in training, default 0.
        recurrent_dropout: fraction of state units dropped in training, default 0.
        seed: optional int seeding the dropout masks.

    Call arguments:
        inputs: ``(batch, features)``. states: ``[h, c]``, each ``(batch, units)``. training: bool.

    Example:
    >>> import torch
    >>> cell = LSTMCell(4)
    >>> output, (h, c) = cell(torch.ones(2, 3), [torch.zeros(2, 4), torch.zeros(2, 4)])
    >>> output.shape, c.shape
    (torch.Size([2, 4]), torch.Size([2, 4]))
    >>> cell.get_weights()[2].tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 8
    True
    """

    _gates = 4
    _mask_count = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, **kwargs):
        super().__init__(units, activation, use_bias, kernel_initializer, recurrent_initializer,
                         bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                         kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, **kwargs)
        self.recurrent_activation = _activation(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [units, units]

    def build(self, input_shape):
        self._build_kernels(input_shape[-1])
        initializer = self.bias_initializer
        if self.unit_forget_bias:
            base, units = self.bias_initializer, self.units

            def initializer(shape, dtype=None):
                dtype = config.torch_dtype(dtype)
                parts = [base((units,), dtype=dtype), torch.ones(units, dtype=dtype),
                         base((2 * units,), dtype=dtype)]
                return torch.cat([torch.as_tensor(p, dtype=dtype) for p in parts])

        self._build_bias((4 * self.units,), initializer)
        self.built = True

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states[0], states[1]
        dropout_mask, recurrent_mask = self._step_masks(inputs, h_prev, training)
        if isinstance(dropout_mask, list) or isinstance(recurrent_mask, list):
            # Keras's implementation=1: one dropout mask per gate, so per-gate products.
            u, pre = self.units, []
            for k in range(4):
                x_k = inputs if dropout_mask is None else inputs * dropout_mask[k]
                h_k = h_prev if recurrent_mask is None else h_prev * recurrent_mask[k]
                bias = None if self.bias is None else self.bias[k * u:(k + 1) * u]
                pre.append(F.linear(x_k, self.kernel[k * u:(k + 1) * u], bias)
                           + F.linear(h_k, self.recurrent_kernel[k * u:(k + 1) * u]))
        else:
            if dropout_mask is not None:
                inputs = inputs * dropout_mask
            z = F.linear(inputs, self.kernel) + F.linear(h_prev, self.recurrent_kernel)
            if self.bias is not None:
                z = z + self.bias
            pre = z.chunk(4, dim=-1)
        i = self.recurrent_activation(pre[0])
        f = self.recurrent_activation(pre[1])
        c = f * c_prev + i * self.activation(pre[2])
        o = self.recurrent_activation(pre[3])
        h = o * self.activation(c)
        return h, [h, c]

    def _fused_activations(self):
        return _is_activation(self.activation, "tanh") and _is_activation(self.recurrent_activation, "sigmoid")

    def _fused_sequence(self, x, states, valid, lengths, need_states):
        # Keras's gate order i, f, c, o is torch's i, f, g, o: the stored weights go in unchanged.
        h0, c0 = states
        w_ih = self.kernel
        if valid is not None and need_states:
            # An extra input feature, 1 on padded steps, saturates the input gate at 0 and the
            # forget gate at 1 there, so the kernel's final c is exactly c at the last valid step.
            x = torch.cat([x, (~valid).unsqueeze(-1).to(x.dtype)], -1)
            u = self.units
            column = torch.zeros(4 * u, 1, dtype=w_ih.dtype, device=w_ih.device)
            column[:u] = -_SATURATE
            column[u:2 * u] = _SATURATE
            w_ih = torch.cat([w_ih, column], 1)
        params = self._kernel_params(w_ih, 2)  # cuDNN's LSTM mode
        hx = (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous())
        outputs, h_n, c_n = _run_kernel(torch.lstm, x, hx, params, self.use_bias, 1, 0.0,
                                        torch.is_grad_enabled(), False, True)
        h_n = _last_valid(outputs, h0, lengths) if valid is not None else h_n[0]
        return outputs, [h_n, c_n[0]]

    def get_config(self):
        config_ = super().get_config()
        config_["recurrent_activation"] = registry.serialize("activation", self.recurrent_activation)
        config_["unit_forget_bias"] = self.unit_forget_bias
        return config_


LSTMCell._fused_owner = LSTMCell


@registry.register("layer")
class GRUCell(_Cell):
    """One step of a Gated Recurrent Unit (Cho 2014), gates in Keras order z, r, h.

    With ``reset_after=True`` (the default, cuDNN-compatible) the reset gate multiplies the
    recurrent projection and the bias has shape ``(2, 3 * units)`` (input bias, recurrent bias);
    with False it multiplies the state before the projection and the bias is ``(3 * units,)``.

    Args:
        units: positive int, size of the output and state.
        activation: default ``"tanh"``; None means linear.
        recurrent_activation: gate activation, default ``"sigmoid"``.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: default None.
        kernel_constraint, recurrent_constraint, bias_constraint: default None.
        dropout: fraction of input units dropped in training, default 0.
        recurrent_dropout: fraction of state units dropped in training, default 0.
        reset_after: default True.
        seed: optional int seeding the dropout masks.

    Call arguments:
        inputs: ``(batch, features)``. states: ``[h]`` (or h). training: bool.

    Example:
    >>> import torch
    >>> cell = GRUCell(4)
    >>> output, states = cell(torch.ones(2, 3), [torch.zeros(2, 4)])
    >>> output.shape, [w.shape for w in cell.get_weights()]
    (torch.Size([2, 4]), [(3, 12), (4, 12), (2, 12)])
    """

    _gates = 3
    _mask_count = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, reset_after=True, seed=None,
                 **kwargs):
        super().__init__(units, activation, use_bias, kernel_initializer, recurrent_initializer,
                         bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                         kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, **kwargs)
        self.recurrent_activation = _activation(recurrent_activation)
        self.reset_after = bool(reset_after)

    def build(self, input_shape):
        self._build_kernels(input_shape[-1])
        shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        self._build_bias(shape, self.bias_initializer)
        self.built = True

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        u = self.units
        input_bias = recurrent_bias = None
        if self.bias is not None:
            input_bias, recurrent_bias = (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, None)
        dropout_mask, recurrent_mask = self._step_masks(inputs, h_prev, training)
        per_gate = isinstance(dropout_mask, list) or isinstance(recurrent_mask, list)
        if per_gate:
            xs = [inputs if dropout_mask is None else inputs * dropout_mask[k] for k in range(3)]
            hs = [h_prev if recurrent_mask is None else h_prev * recurrent_mask[k] for k in range(3)]
            x_z, x_r, x_h = (F.linear(xs[k], self.kernel[k * u:(k + 1) * u],
                                      None if input_bias is None else input_bias[k * u:(k + 1) * u])
                             for k in range(3))
        else:
            if dropout_mask is not None:
                inputs = inputs * dropout_mask
            x_z, x_r, x_h = F.linear(inputs, self.kernel, input_bias).chunk(3, dim=-1)
            hs = [h_prev] * 3
        rec = self.recurrent_kernel
        if self.reset_after and not per_gate:
            r_z, r_r, r_h = F.linear(h_prev, rec, recurrent_bias).chunk(3, dim=-1)
        elif self.reset_after:
            r_z, r_r, r_h = (F.linear(hs[k], rec[k * u:(k + 1) * u],
                                      None if recurrent_bias is None else recurrent_bias[k * u:(k + 1) * u])
                             for k in range(3))
        else:
            r_z, r_r = F.linear(hs[0], rec[:u]), F.linear(hs[1], rec[u:2 * u])
        z = self.recurrent_activation(x_z + r_z)
        r = self.recurrent_activation(x_r + r_r)
        if self.reset_after:
            hh = self.activation(x_h + r * r_h)
        else:
            hh = self.activation(x_h + F.linear(r * hs[2], rec[2 * u:]))
        h = z * h_prev + (1 - z) * hh
        return h, [h] if isinstance(states, (list, tuple)) else h

    def _fused_activations(self):
        return (self.reset_after and _is_activation(self.activation, "tanh")
                and _is_activation(self.recurrent_activation, "sigmoid"))

    def _fused_sequence(self, x, states, valid, lengths, need_states):
        # Weights stay in Keras's gate order (z, r, h) so get_weights/set_weights, regularizers,
        # constraints, optimizer slots and saved files all see Keras's layout through the one
        # conversion in Layer; torch wants (r, z, n), so each call re-slices the gates: one copy
        # of 3u x (in + u + 2) numbers, small next to the sequence's B x T x 3u x (in + u) work.
        u = self.units

        def torch_order(weight, dim):
            z, r, h = weight.split(u, dim)
            return torch.cat([r, z, h], dim)

        params = [torch_order(self.kernel, 0), torch_order(self.recurrent_kernel, 0)]
        if self.use_bias:
            bias = torch_order(self.bias, 1)
            params += [bias[0], bias[1]]
        h0 = states[0]
        outputs, h_n = _run_kernel(torch.gru, x, h0.unsqueeze(0).contiguous(), params, self.use_bias, 1,
                                   0.0, torch.is_grad_enabled(), False, True)
        h_n = _last_valid(outputs, h0, lengths) if valid is not None else h_n[0]
        return outputs, [h_n]

    def get_config(self):
        config_ = super().get_config()
        config_["recurrent_activation"] = registry.serialize("activation", self.recurrent_activation)
        config_["reset_after"] = self.reset_after
        return config_


GRUCell._fused_owner = GRUCell


def _call_cell(cell, inputs, states, training):
    """One step of any cell (built-in, user-written, or a plain object with ``call``)."""
    if isinstance(cell, Layer) and cell._call_flags()[0]:
        return cell.call(inputs, states, training=training)
    return cell.call(inputs, states)


def _set_sequence_mode(cell, on: bool) -> None:
    """Make cells draw their dropout masks once per sequence (on) or once per call (off)."""
    if isinstance(cell, _Cell):
        cell._mask_cache = {} if on else None
    for sub in getattr(cell, "cells", ()):
        _set_sequence_mode(sub, on)


@registry.register("layer")
class StackedRNNCells(Layer):
    """Several cells run as one: each step feeds the output of one cell to the next.

    Args:
        cells: list of cells (``LSTMCell``, ``GRUCell``, ... or any object with ``call`` and
            ``state_size``).

    Example:
    >>> import torch
    >>> layer = RNN(StackedRNNCells([LSTMCell(4), GRUCell(3)]), return_state=True)
    >>> output, (lstm_h, lstm_c), (gru_h,) = layer(torch.zeros(2, 5, 6))
    >>> output.shape, lstm_c.shape, gru_h.shape
    (torch.Size([2, 3]), torch.Size([2, 4]), torch.Size([2, 3]))
    """

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        for cell in cells:
            if not hasattr(cell, "call") or not hasattr(cell, "state_size"):
                raise ValueError(
                    f"Every cell of StackedRNNCells needs a `call` method and a `state_size` "
                    f"attribute; received {cell!r}."
                )
        self.cells = nn.ModuleList(cells) if all(isinstance(c, nn.Module) for c in cells) else list(cells)

    @property
    def state_size(self):
        """One entry per cell: its ``state_size``."""
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self):
        """The last cell's output size."""
        last = self.cells[-1]
        if getattr(last, "output_size", None) is not None:
            return last.output_size
        return last.state_size[0] if isinstance(last.state_size, (list, tuple)) else last.state_size

    def get_initial_state(self, batch_size=None):
        """Each cell's initial state (a list for multi-state cells)."""
        states = []
        for cell in self.cells:
            if hasattr(cell, "get_initial_state"):
                state = cell.get_initial_state(batch_size=batch_size)
            elif isinstance(cell.state_size, (list, tuple)):
                state = [torch.zeros(batch_size, s) for s in cell.state_size]
            else:
                state = torch.zeros(batch_size, cell.state_size)
            states.append(state)
        return states

    def build(self, input_shape):
        shape = tuple(input_shape)
        for cell in self.cells:
            if isinstance(cell, Layer) and not cell.built:
                cell._build_shape = shape
                cell.build(shape)
                cell.built = True
            size = getattr(cell, "output_size", None)
            if size is None:
                size = cell.state_size[0] if isinstance(cell.state_size, (list, tuple)) else cell.state_size
            shape = (shape[0], size)
        self.built = True

    def call(self, inputs, states, training=False):
        new_states = []
        for cell, state in zip(self.cells, states):
            is_list = isinstance(state, (list, tuple))
            inputs, state = _call_cell(cell, inputs, list(state) if is_list else [state], training)
            if not isinstance(state, (list, tuple)):
                state = [state]
            new_states.append(state[0] if len(state) == 1 and not is_list else list(state))
        return inputs, new_states

    def get_config(self):
        config_ = super().get_config()
        config_["cells"] = [registry.serialize("layer", cell) for cell in self.cells]
        return config_

    @classmethod
    def from_config(cls, config_):
        config_ = dict(config_)
        cells = [registry.get("layer", c) for c in config_.pop("cells")]
        return cls(cells, **config_)


# ------------------------------------------------------------------------------------ RNN
@registry.register("layer")
class RNN(Layer):
    """Runs a cell over the time axis of a ``(batch, timesteps, features)`` sequence.

    The built-in cells (SimpleRNNCell with tanh/relu, LSTMCell and GRUCell with tanh/sigmoid and
    ``reset_after=True``) run the whole sequence in one fused torch kernel (cuDNN on CUDA),
    with or without a mask; other cells, custom activations and recurrent dropout in training
    run a Python loop over time steps with each cell's own maths.

    Masking follows Keras: a masked step keeps the previous states, and its output repeats the
    previous step's output (zeros before the first valid step, or always zeros with
    ``zero_output_for_mask=True``).

    Args:
        cell: a cell (an object with ``call(inputs, states)`` and ``state_size``), or a list of
            cells, stacked with ``StackedRNNCells``.
        return_sequences: return every step's output instead of the last. Default False.
        return_state: also return the final states: ``[output, *states]``. Default False.
        go_backwards: process the sequence in reverse (outputs come in processing order).
            Default False.
        stateful: keep each sample's final states as the next batch's initial states
            (needs a fixed batch size; ``reset_states()`` zeros them). Default False.
        unroll: accepted for Keras compatibility; both paths already run eagerly. Default False.
        zero_output_for_mask: output zeros at masked steps. Default False.

    Call arguments:
        sequences: ``(batch, timesteps, features)``.
        initial_state: optional list of initial state tensors.
        mask: optional ``(batch, timesteps)`` boolean tensor, True for steps to use.
        training: bool, enables dropout.

    Example:
    >>> import torch
    >>> layer = RNN(LSTMCell(4), return_sequences=True, return_state=True)
    >>> outputs, h, c = layer(torch.zeros(2, 5, 3))
    >>> outputs.shape, h.shape, c.shape
    (torch.Size([2, 5, 4]), torch.Size([2, 4]), torch.Size([2, 4]))
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(list(cell))
        if not hasattr(cell, "call") or not hasattr(cell, "state_size"):
            raise ValueError(
                f"Argument `cell` should have a `call` method and a `state_size` attribute (an "
                f"int, or one int per state); received cell={cell!r}."
            )
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.use_cudnn = "auto"
        self.supports_masking = True
        state_size = cell.state_size
        if not isinstance(state_size, (int, list, tuple)):
            raise ValueError(
                f"The cell's state_size must be an int or a list of ints; received {state_size!r}."
            )
        self.single_state = isinstance(state_size, int)
        self.state_size = [state_size] if self.single_state else list(state_size)
        self._state_names: list[str] = []

    # ----------------------------------------------------------------- build and states
    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) < 3:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                f"(batch, timesteps, features) sequences, found ndim={len(sequences_shape)}. Full "
                f"shape received: {tuple(sequences_shape)}"
            )
        step_shape = (sequences_shape[0], *tuple(sequences_shape)[2:])
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell._build_shape = step_shape
            self.cell.build(step_shape)
            self.cell.built = True
        if self.stateful and not self._state_names:
            if sequences_shape[0] is None:
                raise ValueError(
                    f'Layer "{self.name}" is stateful, so its batch size must be fixed; received '
                    f"input shape {tuple(sequences_shape)}. Pass batch_size=... to Input()."
                )
            self._set_states(self.get_initial_state(int(sequences_shape[0])))
        self.built = True

    def get_initial_state(self, batch_size):
        """Zero initial states for ``batch_size`` sequences, one tensor per state."""
        make = getattr(self.cell, "get_initial_state", None)
        if make is None:
            return [torch.zeros(batch_size, size) for size in self.state_size]
        states = make(batch_size=batch_size)
        return list(states) if isinstance(states, (list, tuple)) else [states]

    def _set_states(self, states) -> None:
        # Non-persistent buffers: they follow .to(device) but stay out of weights and state_dict,
        # as Keras keeps RNN states out of get_weights(). Replacing (not copying into) them keeps
        # the previous batch's graph intact for its backward pass.
        flat = [s.detach() for s in _flatten(states)]
        if not self._state_names:
            self._state_names = [f"_state_{i}" for i in range(len(flat))]
            object.__setattr__(self, "_state_structure", _pack_like(states, iter([None] * len(flat))))
        for name, value in zip(self._state_names, flat):
            self.register_buffer(name, value, persistent=False)

    @property
    def states(self):
        """The stored states of a stateful layer (None otherwise), in the cell's structure."""
        if not self._state_names:
            return None
        return _pack_like(self._state_structure, iter([self._buffers[n] for n in self._state_names]))

    def reset_state(self) -> None:
        """Zero the stored states of a stateful layer."""
        if self._state_names:
            for name in self._state_names:
                self.register_buffer(name, torch.zeros_like(self._buffers[name]), persistent=False)

    def reset_states(self) -> None:
        """Alias of ``reset_state()`` (the Keras 2 spelling)."""
        self.reset_state()

    # ----------------------------------------------------------------- call
    def call(self, sequences, initial_state=None, mask=None, training=False):
        x = sequences
        dtype = config.torch_dtype(self._dtype)
        if x.dtype != dtype:
            x = x.to(dtype)
        batch = x.shape[0]
        if initial_state is None:
            states = self.states if self.stateful else self.get_initial_state(batch)
        else:
            given = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            if len(_flatten(given)) != len(_flatten(self.state_size)):
                raise ValueError(
                    f'Layer "{self.name}" expects {len(_flatten(self.state_size))} initial state '
                    f"tensor(s) (state_size={self.state_size}); received {len(_flatten(given))}."
                )
            states = _pack_like(given, iter(torch.as_tensor(s, dtype=dtype, device=x.device)
                                            for s in _flatten(given)))
        if self.stateful:
            expected = _flatten(states)[0].shape[0]
            if expected != batch:
                raise ValueError(
                    f'Layer "{self.name}" is stateful and holds states for batch size {expected}, '
                    f"but received a batch of {batch} sequences. Feed batches of exactly {expected} "
                    f"samples (for fit: batch_size={expected} and a sample count divisible by it)."
                )
        states = _pack_like(states, iter(s.to(device=x.device, dtype=dtype) for s in _flatten(states)))
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device)
            if mask.ndim == 3 and mask.shape[-1] == 1:
                mask = mask[..., 0]
            mask = mask.bool()
        if self._use_fused(x, training):
            last, outputs, states = self._fused_pass(x, states, mask, training)
        else:
            last, outputs, states = self._loop_pass(x, states, mask, training)
        if self.stateful:
            self._set_states(states)
        output = outputs if self.return_sequences else last
        if self.return_state:
            if mask is not None and self.return_sequences:
                output._keras_mask = mask
            return [output, *states]
        return output

    def _use_fused(self, x, training) -> bool:
        ready = (self.use_cudnn is not False and x.ndim == 3 and isinstance(self.cell, _Cell)
                 and self.cell._fused_ready(training))
        if self.use_cudnn is True and not ready:
            raise ValueError(
                f'Layer "{self.name}" was created with use_cudnn=True, but this configuration '
                f"cannot use the fused kernel (it needs tanh/sigmoid activations, no recurrent "
                f"dropout in training, reset_after=True for GRU and 3D inputs). Pass "
                f"use_cudnn='auto' to fall back to the step-by-step loop."
            )
        return ready

    def _fused_pass(self, x, states, mask, training):
        cell = self.cell
        x = cell._fused_input_dropout(x, training)
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        need_states = self.return_state or self.stateful
        if mask is None:
            outputs, states = cell._fused_sequence(x, states, None, None, need_states)
            return outputs[:, -1], outputs, states
        # Any mask becomes right padding: each row's valid steps are moved to the front (a stable
        # sort keeps their order), the kernel runs, and every step t then reads the output of the
        # last valid step at or before t. Exact for arbitrary masks, with no host sync.
        batch, steps = mask.shape
        lengths = mask.sum(1)
        order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
        packed = x.gather(1, order.unsqueeze(-1).expand_as(x))
        valid = torch.arange(steps, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        packed_out, states = cell._fused_sequence(packed, states, valid, lengths, need_states)
        zero = packed_out.new_zeros(batch, 1, packed_out.shape[-1])
        position = mask.cumsum(1).unsqueeze(-1).expand(-1, -1, packed_out.shape[-1])
        outputs = torch.cat([zero, packed_out], 1).gather(1, position)
        if self.zero_output_for_mask:
            outputs = torch.where(mask.unsqueeze(-1), outputs, torch.zeros_like(outputs))
        return outputs[:, -1], outputs, states

    def _loop_pass(self, x, states, mask, training):
        steps = range(x.shape[1] - 1, -1, -1) if self.go_backwards else range(x.shape[1])
        outputs, previous = [], None
        _set_sequence_mode(self.cell, True)
        try:
            for t in steps:
                output, new_states = _call_cell(self.cell, x[:, t], states, training)
                if not isinstance(new_states, (list, tuple)):
                    new_states = [new_states]
                if mask is not None:
                    keep = mask[:, t].view(-1, *([1] * (output.ndim - 1)))
                    if previous is None or self.zero_output_for_mask:
                        previous = torch.zeros_like(output)
                    output = torch.where(keep, output, previous)
                    merged = []
                    for new, old in zip(_flatten(new_states), _flatten(states)):
                        merged.append(torch.where(keep.view(-1, *([1] * (new.ndim - 1))), new, old))
                    new_states = _pack_like(new_states, iter(merged))
                    previous = output
                states = list(new_states)
                if self.return_sequences or not outputs:
                    outputs.append(output)
                else:
                    outputs[0] = output
        finally:
            _set_sequence_mode(self.cell, False)
        stacked = torch.stack(outputs, 1) if self.return_sequences else None
        return output, stacked, states

    # ----------------------------------------------------------------- shapes and config
    def _output_size(self):
        size = getattr(self.cell, "output_size", None)
        if size is None:
            size = self.state_size[0]
        return size

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch = sequences_shape[0]
        size = self._output_size()
        output = (batch, sequences_shape[1], size) if self.return_sequences else (batch, size)
        if not self.return_state:
            return output
        states = [(batch, s) if isinstance(s, int) else [(batch, t) for t in s] for s in self.state_size]
        return [output, *states]

    def compute_mask(self, inputs, previous_mask=None):
        if isinstance(previous_mask, (list, tuple)):
            previous_mask = previous_mask[0]
        return previous_mask if self.return_sequences else None

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "cell": registry.serialize("layer", self.cell),
        })
        return config_

    @classmethod
    def from_config(cls, config_):
        config_ = dict(config_)
        cell = registry.get("layer", config_.pop("cell"))
        return cls(cell, **config_)


class _RecurrentLayer(RNN):
    """SimpleRNN / LSTM / GRU: an RNN over one built-in cell whose arguments it exposes."""

    _cell_class = None
    _cell_name = None

    def __init__(self, cell_kwargs, return_sequences, return_state, go_backwards, stateful, unroll,
                 activity_regularizer, use_cudnn, kwargs):
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                f"Invalid value received for argument `use_cudnn`. Expected one of "
                f"{{'auto', True, False}}; received use_cudnn={use_cudnn!r}."
            )
        cell = self._cell_class(**cell_kwargs, dtype=kwargs.get("dtype"), trainable=kwargs.get("trainable", True),
                                name=self._cell_name, implementation=kwargs.pop("implementation", 2))
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         activity_regularizer=activity_regularizer, **kwargs)
        self.use_cudnn = use_cudnn
        self.input_spec = InputSpec(ndim=3)

    def build(self, sequences_shape, initial_state_shape=None):
        super().build(sequences_shape)
        if sequences_shape[-1] is not None:
            self.input_spec = InputSpec(ndim=3, axes={-1: int(sequences_shape[-1])})

    def get_config(self):
        config_ = super().get_config()
        del config_["cell"]
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        config_.update(cell_config)
        config_["activity_regularizer"] = registry.serialize("regularizer", self.activity_regularizer)
        return config_

    @classmethod
    def from_config(cls, config_):
        return cls(**config_)


def _forward_to_cell(names):
    def decorate(cls):
        for name in names:
            setattr(cls, name, property(lambda self, _n=name: getattr(self.cell, _n),
                                        doc=f"The cell's ``{name}``."))
        return cls

    return decorate


_COMMON = ("units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer",
           "bias_initializer", "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
           "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
           "recurrent_dropout", "seed")


@registry.register("layer")
@_forward_to_cell(_COMMON)
class SimpleRNN(_RecurrentLayer):
    """Fully-connected RNN whose output is fed back as the next step's state.

    Runs ``torch.rnn_tanh`` / ``torch.rnn_relu`` over the whole sequence when the activation is
    tanh or relu (and no recurrent dropout in training); otherwise a loop over
    ``SimpleRNNCell`` steps. Weights (``get_weights()``): kernel ``(features, units)``,
    recurrent_kernel ``(units, units)``, bias ``(units,)``.

    Args:
        units: positive int, size of the output.
        activation: default ``"tanh"``.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer:
            default None.
        kernel_constraint, recurrent_constraint, bias_constraint: default None.
        dropout: fraction of input units dropped in training, default 0.
        recurrent_dropout: fraction of state units dropped in training, default 0.
        return_sequences, return_state, go_backwards, stateful, unroll: as in ``RNN``.
        seed: optional int seeding the dropout masks.

    Call arguments:
        sequences: ``(batch, timesteps, features)``. initial_state, mask, training: as in ``RNN``.

    Example:
    >>> import torch
    >>> SimpleRNN(4)(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 4])
    """

    _cell_class = SimpleRNNCell
    _cell_name = "simple_rnn_cell"

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, seed=None, **kwargs):
        cell_kwargs = dict(
            units=units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed)
        super().__init__(cell_kwargs, return_sequences, return_state, go_backwards, stateful, unroll,
                         activity_regularizer, kwargs.pop("use_cudnn", "auto"), kwargs)


@registry.register("layer")
@_forward_to_cell(_COMMON + ("recurrent_activation", "unit_forget_bias"))
class LSTM(_RecurrentLayer):
    """Long Short-Term Memory layer (Hochreiter 1997).

    With tanh / sigmoid activations (the defaults) and no recurrent dropout in training, the
    whole sequence runs in ``torch.lstm`` (cuDNN on CUDA), masks included; otherwise a loop over
    ``LSTMCell`` steps. Keras's gate order i, f, c, o is torch's i, f, g, o, so the weights
    feed the kernel without reordering. Weights (``get_weights()``): kernel
    ``(features, 4 * units)``, recurrent_kernel ``(units, 4 * units)``, bias ``(4 * units,)``.

    Args:
        units: positive int, size of the output.
        activation: default ``"tanh"``.
        recurrent_activation: default ``"sigmoid"``.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        unit_forget_bias: add 1 to the forget-gate bias at initialization. Default True.
        kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer:
            default None.
        kernel_constraint, recurrent_constraint, bias_constraint: default None.
        dropout: fraction of input units dropped in training, default 0.
        recurrent_dropout: fraction of state units dropped in training, default 0.
        seed: optional int seeding the dropout masks.
        return_sequences, return_state, go_backwards, stateful, unroll: as in ``RNN``.
        use_cudnn: ``"auto"`` (default) uses the fused kernel when possible; False always
            loops over steps; True raises if the fused kernel cannot be used.

    Call arguments:
        sequences: ``(batch, timesteps, features)``. initial_state (``[h, c]``), mask,
        training: as in ``RNN``.

    Example:
    >>> import torch
    >>> output, h, c = LSTM(4, return_state=True)(torch.zeros(2, 5, 3))
    >>> output.shape, h.shape, c.shape
    (torch.Size([2, 4]), torch.Size([2, 4]), torch.Size([2, 4]))
    """

    _cell_class = LSTMCell
    _cell_name = "lstm_cell"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, use_cudnn="auto", **kwargs):
        cell_kwargs = dict(
            units=units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias, kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint, dropout=dropout, recurrent_dropout=recurrent_dropout,
            seed=seed)
        super().__init__(cell_kwargs, return_sequences, return_state, go_backwards, stateful, unroll,
                         activity_regularizer, use_cudnn, kwargs)


@registry.register("layer")
@_forward_to_cell(_COMMON + ("recurrent_activation", "reset_after"))
class GRU(_RecurrentLayer):
    """Gated Recurrent Unit (Cho 2014), Keras's cuDNN-compatible variant by default.

    With tanh / sigmoid activations, ``reset_after=True`` and no recurrent dropout in training,
    the whole sequence runs in ``torch.gru`` (cuDNN on CUDA), masks included; otherwise a loop
    over ``GRUCell`` steps. Weights (``get_weights()``): kernel ``(features, 3 * units)``,
    recurrent_kernel ``(units, 3 * units)``, bias ``(2, 3 * units)`` (``(3 * units,)`` with
    ``reset_after=False``), gates in Keras order z, r, h.

    Args:
        units: positive int, size of the output.
        activation: default ``"tanh"``.
        recurrent_activation: default ``"sigmoid"``.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer:
            default None.
        kernel_constraint, recurrent_constraint, bias_constraint: default None.
        dropout: fraction of input units dropped in training, default 0.
        recurrent_dropout: fraction of state units dropped in training, default 0.
        seed: optional int seeding the dropout masks.
        return_sequences, return_state, go_backwards, stateful, unroll: as in ``RNN``.
        reset_after: apply the reset gate after the recurrent projection. Default True.
        use_cudnn: ``"auto"`` (default), False (always loop) or True (fused kernel or error).

    Call arguments:
        sequences: ``(batch, timesteps, features)``. initial_state, mask, training: as in ``RNN``.

    Example:
    >>> import torch
    >>> GRU(4, return_sequences=True)(torch.zeros(2, 5, 3)).shape
    torch.Size([2, 5, 4])
    """

    _cell_class = GRUCell
    _cell_name = "gru_cell"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, reset_after=True, use_cudnn="auto", **kwargs):
        cell_kwargs = dict(
            units=units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, dropout=dropout,
            recurrent_dropout=recurrent_dropout, reset_after=reset_after, seed=seed)
        super().__init__(cell_kwargs, return_sequences, return_state, go_backwards, stateful, unroll,
                         activity_regularizer, use_cudnn, kwargs)
