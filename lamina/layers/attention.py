"""Attention layers: MultiHeadAttention, Attention (Luong) and AdditiveAttention (Bahdanau).

Weights, masks, configs and outputs follow Keras 3; the maths runs on torch, through
``F.scaled_dot_product_attention`` where it gives the same numbers as Keras's explicit
softmax. Padding masks arrive as arguments or as the ``_keras_mask`` of the inputs.
"""

from __future__ import annotations

import math
import string

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lamina import registry
from lamina.layers.base import Layer

__all__ = ["MultiHeadAttention", "Attention", "AdditiveAttention"]

# Keras's masked softmax writes -1e9 (-3e4 in float16) into masked scores; its fused path
# adds -0.7 * the dtype's max instead. Both are kept so fully masked rows match Keras.
_SOFTMAX_FILL = {torch.float16: -3e4}
_FUSED_FILL = {torch.float16: -0.7 * 65500.0}


def _as_tensor(x, like: torch.Tensor | None = None, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if like is None else x.to(device=like.device)
    array = np.asarray(x)
    if dtype is None and array.dtype.kind == "f" and like is not None:
        dtype = like.dtype
    return torch.as_tensor(array, dtype=dtype, device=None if like is None else like.device)


def _as_bool_mask(mask, like: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    mask = _as_tensor(mask, like)
    return mask if mask.dtype == torch.bool else mask != 0


def _clone_initializer(initializer, input_axes=None, output_axes=None):
    """A fresh copy per projection (as Keras), with EinsumDense's fans for variance scaling."""
    if not hasattr(initializer, "get_config"):
        return initializer
    config = dict(initializer.get_config())
    if input_axes is not None and "input_axes" in config and config.get("input_axes") is None:
        config["input_axes"], config["output_axes"] = list(input_axes), list(output_axes)
    return type(initializer).from_config(config)


def _dropout(layer, x: torch.Tensor, rate: float) -> torch.Tensor:
    """Dropout on attention probabilities; a seeded layer draws from its own generator."""
    if layer.seed is None:
        return F.dropout(x, rate, True)
    generator = layer.__dict__.get("_generator")
    if generator is None or generator.device != x.device:
        generator = torch.Generator(device=x.device).manual_seed(int(layer.seed))
        layer.__dict__["_generator"] = generator
    keep = torch.rand(x.shape, device=x.device, generator=generator) >= rate
    return x * keep.to(x.dtype) / (1.0 - rate)


class _Projection(Layer):
    """MultiHeadAttention's EinsumDense: maps the last ``len(input_dims)`` axes to ``output_dims``.

    The kernel's Keras shape is ``(*input_dims, *output_dims)``; it is stored as
    ``(*output_dims, *input_dims)`` so the maths is one ``F.linear`` on a flattened view.
    """

    def __init__(self, output_dims, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                 bias_regularizer, kernel_constraint, bias_constraint, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.output_dims = tuple(int(d) for d in output_dims)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel_constraint = kernel_constraint
        self.bias_constraint = bias_constraint
        self.activation = activation

    def build(self, input_dims):
        input_dims = tuple(int(d) for d in input_dims)
        n_in, n_out = len(input_dims), len(self.output_dims)
        perm = tuple(range(n_in, n_in + n_out)) + tuple(range(n_in))
        initializer = _clone_initializer(self.kernel_initializer, range(n_in), range(n_in, n_in + n_out))
        self.kernel = self._add_weight(input_dims + self.output_dims, initializer, None, True,
                                       self.kernel_regularizer, self.kernel_constraint, "kernel", perm=perm)
        if self.use_bias:
            self.bias = self._add_weight(self.output_dims, _clone_initializer(self.bias_initializer), None, True,
                                         self.bias_regularizer, self.bias_constraint, "bias")
        else:
            self.bias = None
        self._n_in = n_in
        self.built = True

    def call(self, inputs):
        weight = self.kernel.reshape(math.prod(self.output_dims), -1)
        bias = None if self.bias is None else self.bias.reshape(-1)
        x = inputs.flatten(-self._n_in) if self._n_in > 1 else inputs
        out = F.linear(x.to(weight.dtype), weight, bias)
        if len(self.output_dims) > 1:
            out = out.unflatten(-1, self.output_dims)
        return out if self.activation is None else self.activation(out)


def _attention_equations(rank: int, attention_axes: tuple[int, ...]):
    """Einsum equations for projected tensors ``(batch, ..., heads, channels)`` of ``rank``.

    Returns (scores equation ``key,query->scores``, combine equation ``scores,value->output``,
    scores rank). Scores are laid out as (batch dims incl. heads, query attention axes, key
    attention axes), so the softmax runs over the trailing ``len(attention_axes)`` axes.
    """
    letters = string.ascii_lowercase
    query = letters[:rank]
    batch_axes = [i for i in range(rank - 1) if i not in attention_axes]
    fresh = iter(letters[rank:])
    key = "".join(next(fresh) if i in attention_axes else query[i] for i in range(rank))
    scores = "".join([query[i] for i in batch_axes] + [query[i] for i in attention_axes]
                     + [key[i] for i in attention_axes])
    return f"{key},{query}->{scores}", f"{scores},{key}->{query}", len(scores)


class _AttentionCall(Layer):
    """Lets ``compute_output_shape`` see ``return_attention_scores`` during a symbolic call.

    ``graph.symbolic_call`` infers output shapes from the input shapes alone; the flag set
    here for the duration of one call makes the inferred output a (output, scores) pair.
    """

    _call_names: tuple[str, ...] = ()

    def __call__(self, *args, **kwargs):
        # Keras code often passes the tensors by name (mha(query=x, value=y)); the base
        # class builds and recognises symbolic inputs from the positional ones.
        args = list(args)
        for name in self._call_names[len(args):]:
            if name not in kwargs:
                break
            args.append(kwargs.pop(name))
        self.__dict__["_scores_requested"] = bool(kwargs.get("return_attention_scores", False))
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.__dict__["_scores_requested"] = False


@registry.register("layer")
class MultiHeadAttention(_AttentionCall):
    """Multi-head attention (Vaswani et al., 2017), as ``keras.layers.MultiHeadAttention``.

    ``query``, ``key`` and ``value`` are projected to ``num_heads`` heads, scaled
    dot-product attention runs per head, and the heads are projected back to the
    query's last dimension (or ``output_shape``). Without dropout or requested
    scores the attention runs through ``F.scaled_dot_product_attention`` (fused
    kernels, ``is_causal`` for a causal-only mask); otherwise an explicit masked
    softmax does, exactly as Keras. Weights follow Keras's EinsumDense layouts
    and order: query, key, (gate), value kernels ``(dim, num_heads, key_dim)``
    with biases ``(num_heads, key_dim)``, then the output kernel
    ``(num_heads, value_dim, dim)`` and bias ``(dim,)``.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head for query and key.
        value_dim: size of each head for value; default None (``key_dim``).
        dropout: dropout rate on the attention probabilities. Default 0.0.
        use_bias: whether the projections have biases. Default True.
        output_shape: int or tuple, the output's trailing shape; default None
            (the query's last dimension).
        attention_axes: axes of the input (excluding batch and features) over which
            attention runs; default None (every axis but batch, heads and features).
        sliding_window: optional positive int; each query attends only to keys within
            ``sliding_window - 1`` positions. Default None.
        flash_attention: None (torch picks the kernel), True (require the flash kernel;
            no dropout, no returned scores) or False (never the flash kernel).
        kernel_initializer: default ``"glorot_uniform"`` (fans as Keras's EinsumDense).
        bias_initializer: default ``"zeros"``.
        kernel_regularizer, bias_regularizer: regularizers of the projections.
        activity_regularizer: regularizer of each projection's output, as Keras.
        kernel_constraint, bias_constraint: constraints of the projections.
        use_gate: whether a sigmoid gate projected from the query scales the heads
            before the output projection. Default False.
        seed: optional int seeding the dropout.

    Call arguments:
        query: ``(batch, T, dim)`` tensor.
        value: ``(batch, S, value_dim_in)`` tensor.
        key: optional ``(batch, S, key_dim_in)`` tensor; default ``value``.
        query_mask: ignored, as in Keras 3: the query's padding mask is read from
            ``query._keras_mask`` (and set on the output).
        value_mask, key_mask: boolean ``(batch, S)`` masks; default the
            ``_keras_mask`` of ``value`` / ``key``.
        attention_mask: boolean mask broadcastable to ``(batch, heads, T, S)``
            (``(batch, T, S)`` and ``(T, S)`` gain the head axis); True attends.
        return_attention_scores: also return the ``(batch, heads, T, S)`` probabilities.
        training: whether dropout is active.
        use_causal_mask: whether position ``i`` may attend only to ``j <= i``.

    Output shape:
        ``(batch, T, dim)`` or ``(batch, T, *output_shape)``.

    Example:
    >>> import torch
    >>> layer = MultiHeadAttention(num_heads=2, key_dim=4)
    >>> query, value = torch.ones(3, 5, 8), torch.ones(3, 7, 6)
    >>> output, scores = layer(query, value, return_attention_scores=True)
    >>> tuple(output.shape), tuple(scores.shape)
    ((3, 5, 8), (3, 2, 5, 7))
    >>> [w.shape for w in layer.get_weights()][:2]
    [(8, 2, 4), (2, 4)]
    """

    _call_names = ("query", "value")

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 attention_axes=None, sliding_window=None, flash_attention=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        for arg, value, optional in (("num_heads", num_heads, False), ("key_dim", key_dim, False),
                                     ("value_dim", value_dim, True)):
            if optional and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"Received an invalid value for argument `{arg}`, expected a positive integer"
                    f"{' or None' if optional else ''}. Received: {arg}={value!r} (layer \"{self.name}\")."
                )
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(
                f"MultiHeadAttention expects dropout to be a float in [0, 1]; received dropout={dropout!r} "
                f"(layer \"{self.name}\")."
            )
        if output_shape:
            if isinstance(output_shape, (int, np.integer)):
                output_shape = (output_shape,)
            if not isinstance(output_shape, (list, tuple)):
                raise ValueError(
                    f"Invalid `output_shape`: {output_shape!r}. When specified, `output_shape` should be "
                    f"an int, a tuple or a list (layer \"{self.name}\")."
                )
            output_shape = tuple(int(d) for d in output_shape)
        if isinstance(attention_axes, (int, np.integer)):
            attention_axes = (int(attention_axes),)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(
                f"`attention_axes` must be an int, list, or tuple. Received: attention_axes={attention_axes!r} "
                f"(layer \"{self.name}\")."
            )
        if sliding_window is not None and (not isinstance(sliding_window, int) or isinstance(sliding_window, bool)
                                           or sliding_window <= 0):
            raise ValueError(
                f"`sliding_window` must be `None` or a positive integer. Received: sliding_window="
                f"{sliding_window!r} (layer \"{self.name}\")."
            )
        if flash_attention and dropout > 0.0:
            raise ValueError(
                f"Dropout is not supported when flash attention is enabled; received dropout={dropout} with "
                f"flash_attention=True (layer \"{self.name}\"). Set dropout=0.0 or flash_attention=None."
            )
        self._num_heads = int(num_heads)
        self._key_dim = int(key_dim)
        self._value_dim = int(value_dim) if value_dim else self._key_dim
        self._dropout = float(dropout)
        self._use_bias = bool(use_bias)
        self._use_gate = bool(use_gate)
        # Not ``_output_shape``: functional models record each layer's output shape there.
        self._attention_output_shape = output_shape or None
        self._attention_axes = None if attention_axes is None else tuple(int(a) for a in attention_axes)
        self._sliding_window = sliding_window
        self._flash_attention = flash_attention
        self._kernel_initializer = registry.get("initializer", kernel_initializer)
        self._bias_initializer = registry.get("initializer", bias_initializer)
        self._kernel_regularizer = registry.get("regularizer", kernel_regularizer)
        self._bias_regularizer = registry.get("regularizer", bias_regularizer)
        # Keras hands the activity regularizer to the projections, not to the layer's output.
        self._activity_regularizer = registry.get("regularizer", activity_regularizer)
        self._kernel_constraint = registry.get("constraint", kernel_constraint)
        self._bias_constraint = registry.get("constraint", bias_constraint)
        self.seed = seed
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self._key_dim))
        self.supports_masking = True

    @property
    def num_heads(self) -> int:
        """Number of attention heads."""
        return self._num_heads

    @property
    def key_dim(self) -> int:
        """Size of each query/key head."""
        return self._key_dim

    @property
    def value_dim(self) -> int:
        """Size of each value head."""
        return self._value_dim

    @property
    def dropout(self) -> float:
        """Dropout rate on the attention probabilities."""
        return self._dropout

    @property
    def use_bias(self) -> bool:
        """Whether the projections have biases."""
        return self._use_bias

    @property
    def attention_axes(self):
        """The attention axes (normalised to projected-tensor axes once built)."""
        return self._attention_axes

    @property
    def query_dense(self):
        return self._query_dense

    @property
    def key_dense(self):
        return self._key_dense

    @property
    def value_dense(self):
        return self._value_dense

    @property
    def output_dense(self):
        return self._output_dense

    def _projection(self, output_dims, name, activation=None):
        return _Projection(
            output_dims, self._use_bias, self._kernel_initializer, self._bias_initializer,
            self._kernel_regularizer, self._bias_regularizer, self._kernel_constraint, self._bias_constraint,
            activation=activation, name=name, dtype=self._dtype,
        )

    def build(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                f"All dimensions of `value` and `key`, except the last one, must be equal. Received: "
                f"value_shape={value_shape} and key_shape={key_shape} (layer \"{self.name}\")."
            )
        for arg, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) < 3 or shape[-1] is None:
                raise ValueError(
                    f'Layer "{self.name}" expects `{arg}` of shape (batch, ..., features) with at least '
                    f"3 axes and a known last axis; received {arg} shape {shape}."
                )
        heads = self._num_heads
        self._query_dense = self._projection((heads, self._key_dim), "query")
        self._query_dense.build((query_shape[-1],))
        self._key_dense = self._projection((heads, self._key_dim), "key")
        self._key_dense.build((key_shape[-1],))
        if self._use_gate:
            self._gate_dense = self._projection((heads, self._value_dim), "gate", torch.sigmoid)
            self._gate_dense.build((query_shape[-1],))
        self._value_dense = self._projection((heads, self._value_dim), "value")
        self._value_dense.build((value_shape[-1],))
        self._build_attention(len(query_shape) + 1)
        output_dims = self._attention_output_shape or (query_shape[-1],)
        self._output_dense = self._projection(output_dims, "attention_output")
        self._output_dense.build((heads, self._value_dim))
        self.built = True

    def _build_attention(self, rank: int) -> None:
        """Normalise ``attention_axes`` for projected tensors of ``rank`` and build the einsums."""
        if self._attention_axes is None:
            self._attention_axes = tuple(range(1, rank - 2))
        else:
            # As Keras: a negative axis counts from the end of the *input* shape.
            self._attention_axes = tuple(a if a >= 0 else (rank - 1) + a for a in self._attention_axes)
        for axis in self._attention_axes:
            if not 1 <= axis < rank - 2:
                raise ValueError(
                    f"attention_axes must name axes of the input other than batch and features, i.e. in "
                    f"[1, {rank - 3}]; received attention_axes={self._attention_axes} for inputs of rank "
                    f"{rank - 1} (layer \"{self.name}\")."
                )
        self._dot_product_equation, self._combine_equation, _ = _attention_equations(rank, self._attention_axes)

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores=False, training=None, use_causal_mask=False):
        query = _as_tensor(query)
        value = _as_tensor(value, query)
        if value_mask is None:
            value_mask = getattr(value, "_keras_mask", None)
        if key is None:
            key = value
        else:
            key = _as_tensor(key, query)
            if key_mask is None:
                key_mask = getattr(key, "_keras_mask", None)
        # Keras 3 reads the query's padding mask from the tensor and ignores `query_mask`.
        query_mask = getattr(query, "_keras_mask", None)
        causal_only = (
            use_causal_mask and query_mask is None and value_mask is None and key_mask is None
            and attention_mask is None and self._sliding_window is None
            and type(self)._compute_attention is MultiHeadAttention._compute_attention
        )
        if causal_only:
            attention_mask = None
        else:
            attention_mask = self._compute_attention_mask(
                query, value, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
                attention_mask=attention_mask, use_causal_mask=use_causal_mask,
            )
        gate = self._project(self._gate_dense, query) if self._use_gate else None
        projected_query = self._project(self._query_dense, query)
        projected_key = self._project(self._key_dense, key)
        projected_value = self._project(self._value_dense, value)
        extra = {"use_causal_mask": True} if causal_only else {}
        attention_output, attention_scores = self._compute_attention(
            projected_query, projected_key, projected_value, attention_mask, training, return_attention_scores,
            **extra,
        )
        if gate is not None:
            attention_output = attention_output * gate
        attention_output = self._project(self._output_dense, attention_output)
        if query_mask is not None:
            attention_output._keras_mask = query_mask
        if return_attention_scores:
            return attention_output, attention_scores
        return attention_output

    def _project(self, projection: _Projection, x: torch.Tensor) -> torch.Tensor:
        out = projection.call(x)
        if self._activity_regularizer is not None:
            loss = self._activity_regularizer(out)
            self.add_loss(loss / out.shape[0] if out.ndim > 0 and out.shape[0] > 0 else loss)
        return out

    def _compute_attention_mask(self, query, value, query_mask=None, value_mask=None, key_mask=None,
                                attention_mask=None, use_causal_mask=False):
        """The boolean ``(batch, T, S)`` mask combining the padding, causal, window and given masks."""
        auto_mask = None
        if query_mask is not None:
            auto_mask = _as_bool_mask(query_mask, query).unsqueeze(-1)
        for mask in (value_mask, key_mask):
            if mask is not None:
                mask = _as_bool_mask(mask, query).unsqueeze(-2)
                auto_mask = mask if auto_mask is None else auto_mask & mask
        if use_causal_mask:
            mask = self._compute_causal_mask(query, value)
            auto_mask = mask if auto_mask is None else auto_mask & mask
        if self._sliding_window is not None:
            mask = self._compute_sliding_window_mask(query, value)
            auto_mask = mask if auto_mask is None else auto_mask & mask
        attention_mask = _as_bool_mask(attention_mask, query)
        if auto_mask is not None:
            attention_mask = auto_mask if attention_mask is None else attention_mask & auto_mask
        return attention_mask

    def _compute_causal_mask(self, query, value=None):
        """``(1, T, S)`` lower-triangular boolean mask: query ``i`` sees keys ``j <= i``."""
        length = query.shape[1]
        source = length if value is None else value.shape[1]
        return torch.ones((length, source), dtype=torch.bool, device=query.device).tril().unsqueeze(0)

    def _compute_sliding_window_mask(self, query, value=None):
        """``(1, T, S)`` band mask: query ``i`` sees keys with ``|i - j| < sliding_window``."""
        length = query.shape[1]
        source = length if value is None else value.shape[1]
        rows = torch.arange(length, device=query.device).reshape(1, length, 1)
        cols = torch.arange(source, device=query.device).reshape(1, 1, source)
        return (rows - cols).abs() < self._sliding_window

    def _expand_mask(self, mask: torch.Tensor, rank: int) -> torch.Tensor:
        # Missing axes are the batch-like ones before the attention axes (heads first).
        if mask.ndim > rank:
            raise ValueError(
                f"The attention mask must be broadcastable to the attention scores and must not have more "
                f"axes; received a mask of shape {tuple(mask.shape)} for scores of rank {rank} "
                f"(layer \"{self.name}\")."
            )
        axis = -2 * len(self._attention_axes) - 1
        while mask.ndim < rank:
            mask = mask.unsqueeze(axis)
        return mask

    def _masked_softmax(self, attention_scores, attention_mask=None):
        mask = None
        if attention_mask is not None:
            mask = self._expand_mask(attention_mask, attention_scores.ndim)
            attention_scores = attention_scores.masked_fill(
                ~mask, _SOFTMAX_FILL.get(attention_scores.dtype, -1e9))
        count = len(self._attention_axes)
        if count == 1:
            probabilities = torch.softmax(attention_scores, dim=-1)
        else:
            probabilities = torch.softmax(attention_scores.flatten(-count), dim=-1).reshape(attention_scores.shape)
        if mask is not None:
            # A fully masked row would otherwise come out uniform; Keras zeroes it.
            probabilities = probabilities.masked_fill(~mask, 0.0)
        return probabilities

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        """Attention of projected ``(batch, T, heads, key_dim)`` tensors; override to customise.

        Returns ``(attention_output, attention_scores)``; the scores are None on the fused path.
        """
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                f"Returning attention scores is not supported when flash attention is enabled "
                f"(layer \"{self.name}\"). Pass flash_attention=None to get the scores."
            )
        rate = self._dropout if training else 0.0
        # The fused kernel gives Keras's numbers when Keras uses it (no dropout configured) and
        # whenever no row can be fully masked; a seeded dropout needs the explicit path.
        fused = query.ndim == 4 and not return_attention_scores and (
            self._dropout == 0.0 or (attention_mask is None and (rate == 0.0 or self.seed is None)))
        if fused:
            return self._fused_attention(query, key, value, attention_mask, rate, use_causal_mask), None
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else attention_mask & causal
        query = query * self._inverse_sqrt_key_dim
        attention_scores = torch.einsum(self._dot_product_equation, key, query)
        attention_scores = self._masked_softmax(attention_scores, attention_mask)
        probabilities = _dropout(self, attention_scores, rate) if rate > 0 else attention_scores
        attention_output = torch.einsum(self._combine_equation, probabilities, value)
        return attention_output, attention_scores

    def _fused_attention(self, query, key, value, attention_mask, rate, use_causal_mask):
        bias = None
        if attention_mask is not None:
            mask = self._expand_mask(attention_mask, 4)
            if use_causal_mask:
                mask = mask & self._compute_causal_mask(query, value).unsqueeze(0)
            # An additive mask as Keras's fused path: a fully masked row averages all values.
            bias = (~mask).to(query.dtype) * _FUSED_FILL.get(query.dtype, -0.7 * 3.38953e38)
            use_causal_mask = False
        q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        attend = lambda: F.scaled_dot_product_attention(  # noqa: E731
            q, k, v, attn_mask=bias, dropout_p=rate, is_causal=bool(use_causal_mask),
            scale=self._inverse_sqrt_key_dim)
        if self._flash_attention is None:
            out = attend()
        else:
            backends = [SDPBackend.FLASH_ATTENTION] if self._flash_attention else [
                SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH, SDPBackend.CUDNN_ATTENTION]
            with sdpa_kernel(backends):
                out = attend()
        return out.transpose(1, 2)

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = query_shape if value_shape is None else tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                f"All dimensions of `value` and `key`, except the last one, must be equal. Received: "
                f"value_shape={value_shape} and key_shape={key_shape} (layer \"{self.name}\")."
            )
        output_shape = query_shape
        if self._attention_output_shape:
            output_shape = query_shape[:-1] + self._attention_output_shape
        if not self.__dict__.get("_scores_requested"):
            return output_shape
        rank = len(query_shape) + 1
        axes = self._attention_axes if self.built else tuple(range(1, rank - 2))
        projected = query_shape[:-1] + (self._num_heads,)
        scores = [projected[i] for i in range(rank - 1) if i not in axes]
        scores += [query_shape[i] for i in axes] + [value_shape[i] for i in axes]
        # Keras reports (batch, heads, T, T) here; the scores really are (batch, heads, T, S).
        return output_shape, tuple(scores)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self._num_heads,
            "key_dim": self._key_dim,
            "value_dim": self._value_dim,
            "dropout": self._dropout,
            "use_bias": self._use_bias,
            "use_gate": self._use_gate,
            "output_shape": self._attention_output_shape,
            "attention_axes": self._attention_axes,
            "sliding_window": self._sliding_window,
            "kernel_initializer": registry.serialize("initializer", self._kernel_initializer),
            "bias_initializer": registry.serialize("initializer", self._bias_initializer),
            "kernel_regularizer": registry.serialize("regularizer", self._kernel_regularizer),
            "bias_regularizer": registry.serialize("regularizer", self._bias_regularizer),
            "activity_regularizer": registry.serialize("regularizer", self._activity_regularizer),
            "kernel_constraint": registry.serialize("constraint", self._kernel_constraint),
            "bias_constraint": registry.serialize("constraint", self._bias_constraint),
            "seed": self.seed,
        })
        return config


@registry.register("layer")
class Attention(_AttentionCall):
    """Dot-product (Luong-style) attention over ``[query, value]`` or ``[query, value, key]``.

    ``scores = query @ key^T`` (``score_mode="dot"``) or
    ``sum(tanh(query + key))`` (``"concat"``), softmax over the value axis, then a
    weighted sum of ``value``. Masked value positions get ``scores - 1e9``;
    masked query positions give zero outputs.

    Args:
        use_scale: whether to learn a scalar ``scale`` multiplying the scores. Default False.
        score_mode: ``"dot"`` (default) or ``"concat"`` (which adds a scalar
            ``concat_score_weight``).
        dropout: dropout rate on the attention probabilities in training. Default 0.0.
        seed: optional int seeding the dropout.

    Call arguments:
        inputs: list ``[query (batch, Tq, dim), value (batch, Tv, dim)]`` and optionally ``key``.
        mask: list ``[query_mask (batch, Tq), value_mask (batch, Tv)]``; default the
            ``_keras_mask`` of the inputs.
        training: whether dropout is active.
        return_attention_scores: also return the ``(batch, Tq, Tv)`` probabilities.
        use_causal_mask: whether query ``i`` may attend only to positions ``j <= i``.

    Output shape:
        ``(batch, Tq, value_dim)``.

    Example:
    >>> import torch
    >>> query = torch.tensor([[[1.0, 0.0]]])
    >>> value = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> output, scores = Attention()([query, value], return_attention_scores=True)
    >>> [round(s, 4) for s in scores[0, 0].tolist()]
    [0.7311, 0.2689]
    """

    _call_names = ("inputs",)

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(
                f"Invalid value for argument score_mode. Expected one of {{'dot', 'concat'}}. "
                f"Received: score_mode={score_mode!r} (layer \"{self.name}\")."
            )
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(
                f"{type(self).__name__} expects dropout to be a float in [0, 1]; received "
                f"dropout={dropout!r} (layer \"{self.name}\")."
            )
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = float(dropout)
        self.seed = seed

    def _validate_inputs(self, inputs, mask=None):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"{name} layer must be called on a list of inputs, namely [query, value] or "
                f"[query, value, key]. Received: inputs of type {type(inputs).__name__} (layer \"{self.name}\")."
            )
        if not 2 <= len(inputs) <= 3:
            raise ValueError(
                f"{name} layer accepts inputs list of length 2 or 3, namely [query, value] or "
                f"[query, value, key]. Received length: {len(inputs)} (layer \"{self.name}\")."
            )
        if mask is not None:
            if not isinstance(mask, (list, tuple)):
                raise ValueError(
                    f"{name} layer mask must be a list, namely [query_mask, value_mask]. Received: mask of "
                    f"type {type(mask).__name__} (layer \"{self.name}\")."
                )
            if not 2 <= len(mask) <= 3:
                raise ValueError(
                    f"{name} layer accepts mask list of length 2 or 3; received length {len(mask)} "
                    f"(layer \"{self.name}\")."
                )

    def build(self, input_shape):
        self._validate_inputs(input_shape)
        # Weights first: a plain attribute of the same name would shadow the parameter.
        if self.use_scale:
            self.scale = self._add_weight((), "ones", None, True, None, None, "scale")
        else:
            self.scale = None
        if self.score_mode == "concat":
            self.concat_score_weight = self._add_weight((), "ones", None, True, None, None, "concat_score_weight")
        else:
            self.concat_score_weight = None
        self.built = True

    def _calculate_scores(self, query, key):
        """``(batch, Tq, Tv)`` scores of ``query`` against ``key``."""
        if self.score_mode == "dot":
            scores = torch.matmul(query, key.transpose(-2, -1))
            return scores if self.scale is None else scores * self.scale
        pairs = query.unsqueeze(-2) + key.unsqueeze(-3)
        if self.scale is not None:
            pairs = self.scale * pairs
        return self.concat_score_weight * torch.tanh(pairs).sum(-1)

    def call(self, inputs, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        self._validate_inputs(inputs, mask)
        query = _as_tensor(inputs[0])
        value = _as_tensor(inputs[1], query)
        key = _as_tensor(inputs[2], query) if len(inputs) > 2 else value
        if mask is None:
            mask = [getattr(x, "_keras_mask", None) for x in inputs]
        query_mask = _as_bool_mask(mask[0], query)
        value_mask = _as_bool_mask(mask[1], query)
        scores = self._calculate_scores(query, key)
        if use_causal_mask:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril().unsqueeze(0)
            value_mask = causal if value_mask is None else value_mask.unsqueeze(-2) & causal
        if value_mask is not None:
            if value_mask.ndim == 2:
                value_mask = value_mask.unsqueeze(-2)
            # Keras subtracts (not replaces): masked scores keep their order, shifted by -1e9.
            shift = 65504.0 if scores.dtype == torch.float16 else 1.0e9
            scores = torch.where(value_mask, scores, scores - shift)
        attention_scores = torch.softmax(scores, dim=-1)
        weights = attention_scores
        if training and self.dropout > 0:
            weights = _dropout(self, weights, self.dropout)
        attention_output = torch.matmul(weights, value)
        if query_mask is not None:
            attention_output = torch.where(query_mask.unsqueeze(-1), attention_output, 0.0)
            attention_output._keras_mask = query_mask
        if return_attention_scores:
            return attention_output, attention_scores
        return attention_output

    def compute_mask(self, inputs, previous_mask=None):
        if previous_mask is None:
            if not isinstance(inputs, (list, tuple)):
                return None
            previous_mask = [getattr(x, "_keras_mask", None) for x in inputs]
        self._validate_inputs(inputs, previous_mask)
        if previous_mask[0] is None:
            return None
        return _as_tensor(previous_mask[0], inputs[0] if isinstance(inputs[0], torch.Tensor) else None)

    def compute_output_shape(self, input_shape):
        query_shape, value_shape = tuple(input_shape[0]), tuple(input_shape[1])
        output_shape = (*query_shape[:-1], value_shape[-1])
        if not self.__dict__.get("_scores_requested"):
            return output_shape
        key_shape = tuple(input_shape[2]) if len(input_shape) > 2 else value_shape
        return output_shape, (*query_shape[:-1], key_shape[-2])

    def get_config(self):
        config = super().get_config()
        config.update({"use_scale": self.use_scale, "score_mode": self.score_mode, "dropout": self.dropout,
                       "seed": self.seed})
        return config


@registry.register("layer")
class AdditiveAttention(Attention):
    """Additive (Bahdanau-style) attention: ``scores = sum(scale * tanh(query + key))``.

    Called like ``Attention`` on ``[query, value]`` or ``[query, value, key]``.

    Args:
        use_scale: whether to learn a ``(dim,)`` ``scale`` vector (glorot-uniform
            initialised). Default True.
        dropout: dropout rate on the attention probabilities in training. Default 0.0.
        seed: optional int seeding the dropout.

    Example:
    >>> import torch
    >>> layer = AdditiveAttention(use_scale=False)
    >>> layer([torch.zeros(1, 2, 3), torch.ones(1, 4, 3)]).shape
    torch.Size([1, 2, 3])
    """

    def __init__(self, use_scale=True, dropout=0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape):
        self._validate_inputs(input_shape)
        if self.use_scale:
            self.scale = self._add_weight((input_shape[0][-1],), "glorot_uniform", None, True, None, None, "scale")
        else:
            self.scale = None
        self.concat_score_weight = None
        self.built = True

    def _calculate_scores(self, query, key):
        pairs = torch.tanh(query.unsqueeze(-2) + key.unsqueeze(-3))
        if self.use_scale:
            pairs = self.scale * pairs
        return pairs.sum(-1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config
