"""Embedding, Rescaling, Identity, Masking and Lambda: small layers that don't form a family.

``Embedding(mask_zero=True)`` and ``Masking`` create masks (the ``_keras_mask``
attribute of their outputs). ``Lambda`` wraps a Python function; its config names
the function by its registered name only, and loading one is refused in safe mode.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina.layers import base
from lamina.layers.base import Layer, _is_shape, deprecated_argument

__all__ = ["Embedding", "Rescaling", "Identity", "Masking", "Lambda"]


@registry.register("layer")
class Embedding(Layer):
    """Turns non-negative integer indices into dense vectors of size ``output_dim``.

    The ``(input_dim, output_dim)`` table is the same matrix ``torch.nn.Embedding``
    holds, looked up with ``F.embedding``. Inputs are integer tensors of any rank;
    the output appends one axis of size ``output_dim``.

    Args:
        input_dim: positive int, the vocabulary size (largest index + 1).
        output_dim: positive int, the size of each embedding vector.
        embeddings_initializer: default ``"uniform"`` (uniform in [-0.05, 0.05]).
        embeddings_regularizer: regularizer of the table, added to the loss. Default None.
        embeddings_constraint: constraint applied to the table after each update. Default None.
        mask_zero: whether index 0 is padding: the output then carries the mask
            ``inputs != 0`` for downstream layers (so index 0 cannot be a real token). Default False.
        weights: optional initial table, an array of shape ``(input_dim, output_dim)``
            (or a one-element list holding it).
        lora_rank: must be None; lamina has no LoRA.

    Input shape:
        ``(batch, ...)`` integers.
    Output shape:
        ``(batch, ..., output_dim)``.

    Example:
    >>> import torch
    >>> layer = Embedding(10, 3, mask_zero=True)
    >>> out = layer(torch.tensor([[1, 2, 0]]))
    >>> tuple(out.shape), out._keras_mask.tolist()
    ((1, 3, 3), [[True, True, False]])
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        mask_zero=False,
        weights=None,
        lora_rank=None,
        **kwargs,
    ):
        # Keras 3 configs carry these keys (None when unused), so None is accepted to load them.
        for key, value in (("lora_rank", lora_rank), ("lora_alpha", kwargs.pop("lora_alpha", None)),
                           ("quantization_config", kwargs.pop("quantization_config", None))):
            if value is not None:
                raise ValueError(
                    f"Embedding({key}={value!r}) is not supported: lamina has no LoRA or quantization. "
                    f"Remove the argument (None is accepted)."
                )
        if kwargs.pop("input_length", None) is not None:
            deprecated_argument("Embedding(input_length=...) is deprecated in Keras 3; just remove it.")
        super().__init__(**kwargs)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"`{arg}` must be a positive integer. Received: {arg}={value!r} (of type "
                    f'{type(value).__name__}, layer "{self.name}").'
                )
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = registry.get("initializer", embeddings_initializer)
        self.embeddings_regularizer = registry.get("regularizer", embeddings_regularizer)
        self.embeddings_constraint = registry.get("constraint", embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        if weights is not None:
            self.build()
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.set_weights(weights)

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = self._add_weight(
            (self.input_dim, self.output_dim), self.embeddings_initializer, None, True,
            self.embeddings_regularizer, self.embeddings_constraint, "embeddings",
        )
        self.built = True

    def call(self, inputs):
        if inputs.dtype not in (torch.int32, torch.int64):
            inputs = inputs.to(torch.int64)
        try:
            return F.embedding(inputs, self.embeddings)
        except IndexError:
            low, high = int(inputs.min()), int(inputs.max())
            raise ValueError(
                f'Layer "{self.name}" (Embedding with input_dim={self.input_dim}) received indices '
                f"from {low} to {high}; every index must be in [0, {self.input_dim}). Make input_dim "
                f"the vocabulary size (largest index + 1)."
            ) from None

    def compute_mask(self, inputs, previous_mask=None):
        """``inputs != 0`` when ``mask_zero`` is True, else None."""
        if not self.mask_zero:
            return None
        return torch.as_tensor(inputs) != 0

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": registry.serialize("initializer", self.embeddings_initializer),
            "embeddings_regularizer": registry.serialize("regularizer", self.embeddings_regularizer),
            "activity_regularizer": registry.serialize("regularizer", self.activity_regularizer),
            "embeddings_constraint": registry.serialize("constraint", self.embeddings_constraint),
            "mask_zero": self.mask_zero,
        })
        return config


def _plain(value):
    """A JSON-ready copy of a scale/offset: numbers stay numbers, arrays become lists."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_keras_array(value):
    # Keras serializes numpy scales as {"class_name": "__numpy__", "config": {"value": [...]}}.
    if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tensor__"):
        return value["config"]["value"]
    return value


@registry.register("layer")
class Rescaling(Layer):
    """Computes ``inputs * scale + offset`` in the layer's float dtype (``[0, 255] -> [0, 1]``).

    Args:
        scale: float, or a per-channel array (broadcast against the last axis,
            or against the channel axis of ``(channels, h, w)`` inputs when
            ``image_data_format()`` is ``"channels_first"``).
        offset: float or array, added after scaling. Default 0.0.

    Example:
    >>> import torch
    >>> Rescaling(1.0 / 255)(torch.tensor([[0, 255]]))
    tensor([[0., 1.]])
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _from_keras_array(scale)
        self.offset = _from_keras_array(offset)
        self.supports_masking = True
        dtype = config.torch_dtype(self._dtype)
        scale_tensor = torch.as_tensor(np.asarray(_plain(self.scale)), dtype=dtype)
        if scale_tensor.ndim > 0 and config.image_data_format() == "channels_first":
            scale_tensor = scale_tensor.reshape(tuple(scale_tensor.shape) + (1,) * (3 - scale_tensor.ndim))
        # Non-persistent buffers follow .to(device) without entering weights or state_dict.
        self.register_buffer("_scale", scale_tensor, persistent=False)
        self.register_buffer("_offset", torch.as_tensor(np.asarray(_plain(self.offset)), dtype=dtype),
                             persistent=False)

    def call(self, inputs):
        return inputs.to(self._scale.dtype) * self._scale + self._offset

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": _plain(self.scale), "offset": _plain(self.offset)})
        return config


@registry.register("layer")
class Identity(Layer):
    """Returns its input unchanged (a placeholder); masks pass through.

    Example:
    >>> import torch
    >>> Identity()(torch.tensor([1.0, 2.0]))
    tensor([1., 2.])
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


@registry.register("layer")
class Masking(Layer):
    """Masks timesteps whose features all equal ``mask_value``, and zeroes them.

    The output carries a ``(batch, timesteps)`` mask, False at those timesteps,
    for downstream layers that support masking (RNNs, pooling, attention).

    Args:
        mask_value: the padding value. Default 0.0.

    Example:
    >>> import torch
    >>> x = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]]])
    >>> Masking()(x)._keras_mask
    tensor([[ True, False,  True]])
    """

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = _plain(_from_keras_array(mask_value))
        self.supports_masking = True
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        """True at timesteps with at least one feature different from ``mask_value``."""
        return torch.any(torch.as_tensor(inputs) != self.mask_value, dim=-1)

    def call(self, inputs):
        keep = torch.any(inputs != self.mask_value, dim=-1, keepdim=True)
        return torch.where(keep, inputs, torch.zeros((), dtype=inputs.dtype, device=inputs.device))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["mask_value"] = self.mask_value
        return config


def _function_name(layer_name: str, what: str, fn) -> str:
    """The name a config stores for ``fn``: its registered name, else its ``def`` name (never code).

    An unregistered named function is saved by name, as Keras does, and loading it
    needs ``custom_objects``; a ``lambda`` has no name to save.
    """
    for kind in ("custom", "activation"):
        name = registry.registered_name(kind, fn)
        if name is not None:
            return name
    name = getattr(fn, "__name__", None)
    if inspect.isfunction(fn) and name and name != "<lambda>":
        return name
    raise ValueError(
        f'Cannot serialize the {what} {name or fn!r} of Lambda layer "{layer_name}": lamina saves '
        f"functions by name only (never bytecode), and a lambda or callable object has none. Define "
        f"it with def and register it with @lamina.saving.register_serializable(), or subclass "
        f"Layer instead."
    )


def _resolve_function(value, custom_objects):
    """The function a config names, looked up only in custom_objects and the registry."""
    if value is None or callable(value):
        return value
    if isinstance(value, dict):
        if value.get("class_name") == "__lambda__":
            raise ValueError(
                "This Lambda config holds Python bytecode (a Keras-saved lambda). lamina never "
                "loads code from a file: define the function with def, register it with "
                "@lamina.saving.register_serializable() and re-create the layer."
            )
        registered = value.get("registered_name")
        value = registered if registered not in (None, "function") else value.get("config")
    if not isinstance(value, str):
        raise ValueError(f"A Lambda config names functions by string; received {value!r}.")
    try:
        return registry.lookup_class("custom", value, custom_objects)
    except ValueError:
        pass
    try:
        return registry.lookup_class("activation", value)
    except ValueError:
        raise ValueError(
            f"The Lambda config names the function {value!r}, which is not registered. Register it "
            f"with @lamina.saving.register_serializable() or pass custom_objects={{{value!r}: fn}}."
        ) from None


@registry.register("layer")
class Lambda(Layer):
    """Wraps a Python function as a layer: ``Lambda(lambda x: x ** 2)``.

    Prefer a ``Layer`` subclass for anything you want to save. A saved Lambda
    stores its function by name only, never its code: register the function with
    ``lamina.saving.register_serializable`` (or pass it in ``custom_objects`` when
    loading). Loading a Lambda runs that function, so it is refused unless
    ``load_model(..., safe_mode=False)``.

    Args:
        function: callable taking the input (and optionally ``mask`` /
            ``training`` keyword arguments).
        output_shape: optional output shape without the batch axis, or a function
            of the full input shape; by default inferred by a tiny eager call.
        mask: optional output mask: a callable ``mask(inputs, previous_mask)`` or a
            fixed tensor.
        arguments: optional dict of keyword arguments passed to ``function``.

    Example:
    >>> import torch
    >>> Lambda(lambda x, power: x ** power, arguments={"power": 2})(torch.tensor([3.0]))
    tensor([9.])
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(
                f'Lambda expects a callable function; received {function!r} (layer "{self.name}").'
            )
        self.function = function
        self.arguments = dict(arguments or {})
        self.mask = mask
        self.supports_masking = mask is not None
        if isinstance(output_shape, list) and _is_shape(output_shape):
            output_shape = tuple(output_shape)
        self._output_shape_arg = output_shape
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            params = {}
        self._fn_expects_training_arg = "training" in params
        self._fn_expects_mask_arg = "mask" in params

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if self._fn_expects_mask_arg:
            kwargs["mask"] = mask
        if self._fn_expects_training_arg:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_mask(self, inputs, previous_mask=None):
        """``mask(inputs, previous_mask)`` if ``mask`` is callable, else ``mask`` itself."""
        if callable(self.mask):
            return self.mask(inputs, previous_mask)
        return self.mask

    def compute_output_shape(self, input_shape):
        if self._output_shape_arg is None:
            try:
                return super().compute_output_shape(input_shape)
            except Exception as error:
                raise ValueError(
                    f'Could not infer the output shape of Lambda layer "{self.name}" for input shape '
                    f"{input_shape} ({type(error).__name__}: {error}). Pass output_shape=... ."
                ) from error
        if callable(self._output_shape_arg):
            return self._output_shape_arg(input_shape)
        first = input_shape
        while not _is_shape(first):
            first = next(iter(first.values())) if isinstance(first, dict) else first[0]
        batch = first[0] if first else None

        def with_batch(shape):
            if _is_shape(shape):
                return (batch, *shape)
            if isinstance(shape, dict):
                return {k: with_batch(v) for k, v in shape.items()}
            return type(shape)(with_batch(s) for s in shape)

        return with_batch(self._output_shape_arg)

    def get_config(self):
        config = super().get_config()
        config["function"] = _function_name(self.name, "function", self.function)
        if self._output_shape_arg is not None:
            config["output_shape"] = (_function_name(self.name, "output_shape function", self._output_shape_arg)
                                      if callable(self._output_shape_arg) else self._output_shape_arg)
        if self.mask is not None:
            config["mask"] = (_function_name(self.name, "mask function", self.mask)
                              if callable(self.mask) else _plain(self.mask))
        config["arguments"] = self.arguments
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None, safe_mode=None):
        """Create a Lambda from its config; refused in safe mode, since it runs Python code.

        Functions are looked up by name in ``custom_objects`` and the registry only.
        ``safe_mode=None`` follows ``load_model(..., safe_mode=...)`` (True by default).
        """
        if safe_mode is None:
            safe_mode = getattr(base, "_SAFE_MODE", True)
        if safe_mode:
            raise ValueError(
                f"Refusing to create the Lambda layer {config.get('name')!r} from a config: a Lambda "
                f"runs arbitrary Python code, which safe mode forbids. If you trust this file, load it "
                f"with lamina.saving.load_model(path, safe_mode=False) (its functions must be "
                f"registered with register_serializable or passed in custom_objects), or call "
                f"Lambda.from_config(config, safe_mode=False)."
            )
        config = dict(config)
        config["function"] = _resolve_function(config["function"], custom_objects)
        output_shape = config.get("output_shape")
        if isinstance(output_shape, (str, dict)):
            config["output_shape"] = _resolve_function(output_shape, custom_objects)
        mask = config.get("mask")
        if isinstance(mask, (str, dict)):
            config["mask"] = _resolve_function(mask, custom_objects)
        elif isinstance(mask, list):
            config["mask"] = torch.as_tensor(mask)
        return cls(**config)
