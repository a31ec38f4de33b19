"""Saving and loading: ``model.save`` / ``load_model`` and weights-only files.

``.lamina`` files are one zip of ``config.json``, ``model.weights.safetensors``,
``optimizer.safetensors`` and ``metadata.json``. ``.keras`` files are Keras 3's own
format (``lamina.saving.keras_format``), readable by Keras; ``.weights.h5`` are Keras
weights files and ``.weights.safetensors`` lamina's. Every write is atomic, and
loading never unpickles, evaluates or imports anything named in the file.
"""

from __future__ import annotations

import os

import torch

from lamina.saving.archive import (
    FormatError,
    read_archive,
    read_weights_file,
    write_archive,
    write_weights_file,
)
from lamina.saving.keras_format import (
    is_keras_archive,
    load_keras,
    load_keras_weights,
    save_keras,
    save_keras_weights,
)
from lamina.saving.serialize import (
    deserialize_compile_config,
    deserialize_model,
    register_serializable,
    serialize_model,
)

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "register_serializable", "FormatError"]

_MODEL_EXTENSIONS = (".lamina", ".keras")
_WEIGHTS_EXTENSIONS = (".weights.safetensors", ".weights.h5")


def _check_path(filepath, extensions, what: str, overwrite: bool) -> str:
    path = os.fspath(filepath)
    if not path.endswith(extensions):
        raise ValueError(
            f"Invalid filepath extension for saving {what}: received {path!r}. The filename must "
            f"end in {' or '.join(repr(e) for e in extensions)}."
        )
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it.")
    return path


def _named_weights(model) -> dict[str, torch.Tensor]:
    # Keras layout and order; the index prefix keeps the order in the file.
    arrays = model.get_weights()
    records = model._weight_records()
    return {f"{i:04d}/{owner.name}/{attr}": torch.from_numpy(a)
            for i, ((owner, attr, _), a) in enumerate(zip(records, arrays))}


def _ordered(tensors: dict) -> list:
    # Numeric order of the index prefix: past 9,999 weights a plain string sort would misplace them.
    return [tensors[k].numpy() for k in sorted(tensors, key=_weight_index)]


def _weight_index(key: str):
    prefix = key.split("/", 1)[0]
    return (0, int(prefix), key) if prefix.isdigit() else (1, 0, key)


def save_model(model, filepath, overwrite=True, include_optimizer=True) -> None:
    """Save a model's architecture, weights, compile settings and optimizer state in one file.

    Args:
        model: the model.
        filepath: target path ending in ``.lamina``, or ``.keras`` for Keras 3's format.
        overwrite: replace an existing file (default True).
        include_optimizer: also store the optimizer state, to resume training.

    >>> import os, tempfile
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((3,)), Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.lamina")
    >>> model.save(path)
    >>> [w.shape for w in load_model(path).get_weights()]
    [(3, 2), (2,)]
    """
    path = _check_path(filepath, _MODEL_EXTENSIONS, "a model", overwrite)
    if path.endswith(".keras"):
        return save_keras(model, path, include_optimizer=include_optimizer)
    config = serialize_model(model)
    extra = {}
    optimizer = model.optimizer if include_optimizer and hasattr(model, "optimizer") else None
    if optimizer is not None and getattr(optimizer, "built", False):
        extra["optimizer"] = {k: v.detach().cpu() for k, v in optimizer.state_tensors().items()}
    write_archive(path, config, _named_weights(model), {"saved_by": "lamina"}, extra)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model saved by ``model.save``: architecture, weights, compile state, optimizer state.

    Args:
        filepath: a ``.lamina`` file, or a ``.keras`` file written by Keras 3 or lamina.
        custom_objects: dict of name -> class/function for custom objects not
            registered with ``register_serializable``.
        compile: re-compile the model with its saved settings (default True).
        safe_mode: refuse layers that run arbitrary Python code (default True).

    Raises:
        FormatError: the file is malformed or hostile; nothing in it was executed.
    """
    path = os.fspath(filepath)
    if path.endswith(".keras") and is_keras_archive(path):
        return load_keras(path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    config, tensors, _metadata, extra = read_archive(path)
    from lamina.layers import base as layer_base

    previous = getattr(layer_base, "_SAFE_MODE", True)
    layer_base._SAFE_MODE = bool(safe_mode)
    try:
        model = deserialize_model(config, custom_objects)
    except (KeyError, TypeError) as error:
        raise FormatError(f"{path!r} holds a model config lamina cannot rebuild: {error}") from None
    finally:
        layer_base._SAFE_MODE = previous
    _assign(model, _ordered(tensors), path, skip_mismatch=False)
    if compile and config.get("compile_config"):
        model.compile(**deserialize_compile_config(config["compile_config"], custom_objects))
        state = extra.get("optimizer")
        if state:
            model._trainer._build_optimizer()
            model.optimizer.load_state_tensors(state)
    return model


def save_weights(model, filepath, overwrite=True) -> None:
    """Write the model's weights (Keras order and layouts) to a ``.weights.safetensors`` file."""
    path = _check_path(filepath, _WEIGHTS_EXTENSIONS, "weights", overwrite)
    if path.endswith(".weights.h5"):
        return save_keras_weights(model, path)
    write_weights_file(path, _named_weights(model))


def load_weights(model, filepath, skip_mismatch=False) -> None:
    """Load weights from a ``.weights.safetensors`` file or a saved model file.

    With ``skip_mismatch=True``, weights whose shapes differ are left unchanged
    (with a warning) instead of raising.
    """
    path = os.fspath(filepath)
    if path.endswith(".weights.h5") or (path.endswith(".keras") and is_keras_archive(path)):
        return load_keras_weights(model, path, skip_mismatch=skip_mismatch)
    if path.endswith(_MODEL_EXTENSIONS):
        _, tensors, _, _ = read_archive(path)
    elif path.endswith(_WEIGHTS_EXTENSIONS):
        tensors = read_weights_file(path)
    else:
        raise ValueError(
            f"Cannot load weights from {path!r}: expected a file ending in "
            f"{_WEIGHTS_EXTENSIONS + _MODEL_EXTENSIONS}."
        )
    _assign(model, _ordered(tensors), path, skip_mismatch)


def _assign(model, arrays: list, path: str, skip_mismatch: bool) -> None:
    import warnings

    current = model.get_weights()
    if len(current) != len(arrays) and not skip_mismatch:
        raise ValueError(
            f"{path!r} holds {len(arrays)} weight arrays but model {model.name!r} has "
            f"{len(current)}. Load into a model with the same architecture, or pass skip_mismatch=True."
        )
    merged = []
    for i, mine in enumerate(current):
        theirs = arrays[i] if i < len(arrays) else None
        if theirs is not None and theirs.shape == mine.shape:
            merged.append(theirs)
        elif skip_mismatch:
            warnings.warn(
                f"Skipping weight {i} of model {model.name!r}: the file has shape "
                f"{None if theirs is None else theirs.shape}, the model {mine.shape}.", UserWarning, stacklevel=3)
            merged.append(mine)
        else:
            raise ValueError(
                f"Weight {i} of model {model.name!r} has shape {mine.shape}, but {path!r} holds "
                f"shape {theirs.shape}. Pass skip_mismatch=True to skip it."
            )
    model.set_weights(merged)
