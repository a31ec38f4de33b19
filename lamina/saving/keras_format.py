"""Keras 3 files: read the ``.keras`` / ``.weights.h5`` files Keras writes, and write ones Keras reads.

Owns the translation between Keras's serialization format (``module`` / ``class_name`` /
``registered_name`` dicts, DTypePolicy dicts) and lamina configs, and Keras's HDF5 weight layout
(``layers/<snake_case class>/vars/<i>``). Class names resolve only through ``lamina.registry`` and
``custom_objects``: nothing named in a file is imported, unpickled or evaluated. h5py is optional
and imported on first use.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import inspect
import io
import json
import math
import os
import re
import stat
import warnings
import zipfile

import numpy as np

from lamina import registry
from lamina.saving.archive import (
    _MAX_MEMBERS, _ZIP_EPOCH, _ZIP_ERRORS, DEFAULT_MAX_BYTES, SKIP_MEMBER, FormatError,
    _member_problem, _parse_json, _read_member, atomic_write, atomic_writer,
)

__all__ = ["save_keras", "load_keras", "save_keras_weights", "load_keras_weights", "is_keras_archive"]

# The Keras release whose file layout this module writes and was checked against.
_KERAS_FORMAT_VERSION = "3.15.1"
_CONFIG, _METADATA, _WEIGHTS, _WEIGHTS_NPZ = "config.json", "metadata.json", "model.weights.h5", "model.weights.npz"
_ASSETS = "assets/"
# Config keys whose values are layer configs (Functional/Sequential, wrappers, RNN cells).
_LAYER_KEYS = ("layer", "backward_layer", "cell")
_LAYER_LIST_KEYS = ("layers", "cells")
_KEY_KINDS = (("_initializer", "initializer"), ("_regularizer", "regularizer"), ("_constraint", "constraint"))
_MODULES = {
    "initializer": "keras.initializers", "regularizer": "keras.regularizers",
    "constraint": "keras.constraints", "layer": "keras.layers", "optimizer": "keras.optimizers",
    "schedule": "keras.optimizers.schedules", "loss": "keras.losses", "metric": "keras.metrics",
}
_FLOAT_POLICIES = ("DTypePolicy", "FloatDTypePolicy")
# Keras-only options dropped when the lamina class does not take them, with the values for which
# dropping keeps every prediction identical.
_DROPPABLE = {
    "quantization_config": lambda value: value is None,
    "lora_rank": lambda value: True,   # Keras merges LoRA adapters into the kernel it saves
    "lora_alpha": lambda value: True,
    "synchronized": lambda value: True,  # cross-device BatchNorm: only multi-device training differs
    "seed": lambda value: True,        # seeds only change random ops during training
    "zero_output_for_mask": lambda value: not value,
}
_LAYER_BASE_KEYS = ("name", "trainable", "dtype", "activity_regularizer", "input_dim", "input_shape",
                    "batch_size", "batch_input_shape", "autocast")
# Keras's attribute names for the sublayers lamina keeps under other attribute names.
_ATTRIBUTE_NAMES = {"MultiHeadAttention": {"_query_dense": "query_dense", "_key_dense": "key_dense",
                                           "_value_dense": "value_dense", "_output_dense": "output_dense"}}
# Like Keras's saving_lib: an HDF5 dataset above this size may not expand more than 1000x.
_H5_BOMB_FLOOR_BYTES, _H5_MAX_EXPANSION = 2**28, 1000


# ------------------------------------------------------------------ public API
def save_keras(model, path, include_optimizer=True) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file that ``keras.saving.load_model`` reads.

    The zip holds ``metadata.json``, ``config.json`` in Keras's serialization format and
    ``model.weights.h5`` in Keras's HDF5 layout (with the optimizer state under
    ``optimizer/vars`` when the model is compiled; an optimizer not yet used is built first, with
    zero slots, since Keras builds it on load). The file is replaced atomically.

    Args:
        model: a built ``Sequential`` or functional model (or a registered subclass).
        path: target path ending in ``.keras``.
        include_optimizer: also store the compile settings and optimizer state. Default True.

    Example:
    >>> import os, tempfile
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_keras(Sequential([Input((3,)), Dense(2)]), path)
    >>> sorted(zipfile.ZipFile(path).namelist())
    ['config.json', 'metadata.json', 'model.weights.h5']
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"save_keras writes Keras archives, whose name must end in '.keras'; received {path!r}.")
    _require_built(model, "save")
    from lamina.saving.serialize import serialize_model

    entry = serialize_model(model)
    compile_config = entry.pop("compile_config", None)
    translator = _LaminaToKeras()
    config = translator.layer(entry)
    config["compile_config"] = translator.compile(compile_config) if include_optimizer and compile_config else {}
    weights = _write_h5(model, include_optimizer)
    metadata = {"keras_version": _KERAS_FORMAT_VERSION, "saved_by": "lamina", "lamina_version": _lamina_version(),
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    members = [(_METADATA, json.dumps(metadata).encode()), (_CONFIG, json.dumps(config).encode()), (_WEIGHTS, weights)]
    with atomic_writer(path) as file, zipfile.ZipFile(file, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)  # stored, as Keras writes them


def load_keras(path, custom_objects=None, compile=True, safe_mode=True, max_bytes=DEFAULT_MAX_BYTES):
    """Load a Keras 3 ``.keras`` file as a lamina model with the same weights and predictions.

    Layer classes are looked up by name in ``custom_objects`` and ``lamina.registry`` only; the
    ``module`` entries in the file are ignored, nothing is imported, unpickled or evaluated, and a
    ``Lambda`` holding Python bytecode is always refused. Every archive member is checked first
    (names, links, sizes), as ``lamina.saving.archive.read_archive`` does.

    Args:
        path: a ``.keras`` file written by Keras 3 (or by ``save_keras``).
        custom_objects: dict of name -> class or function for custom objects. Default None.
        compile: compile the model with the saved settings and restore the optimizer state. Default True.
        safe_mode: refuse layers that run Python code named in the file (``Lambda``). Default True.
        max_bytes: largest total uncompressed size accepted. Default 16 GiB.

    Raises:
        FormatError: the file is malformed, hostile, or uses layers or options lamina lacks (all
            of them are listed at once).

    Example:
    >>> import os, tempfile, torch
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((3,)), Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_keras(model, path)
    >>> x = torch.ones(1, 3)
    >>> bool(torch.equal(load_keras(path)(x), model(x)))
    True
    """
    path = os.fspath(path)
    contents = _read_keras_zip(path, max_bytes)
    config = _parse_json(contents[_CONFIG], _CONFIG)
    if _METADATA in contents:
        _parse_json(contents[_METADATA], _METADATA)  # must be valid JSON; its facts are informational
    translator = _KerasToLamina(custom_objects)
    entry = translator.model(config)
    model = _build_model(entry, custom_objects, safe_mode, path)
    reader = _H5Reader(contents[_WEIGHTS], f"{path!r} member {_WEIGHTS}", max_bytes)
    try:
        _assign_weights(model, reader, path, skip_mismatch=False)
        compile_config = config.get("compile_config")
        if compile and isinstance(compile_config, dict) and compile_config.get("optimizer") is not None:
            _compile(model, translator.compile(compile_config), custom_objects, path)
            _load_optimizer(model, reader)
    finally:
        reader.close()
    return model


def save_keras_weights(model, path) -> None:
    """Write the weights as Keras's ``model.save_weights("x.weights.h5")`` does (atomically).

    The layout is Keras's (``layers/<snake_case class>/vars/<i>``, sublayers nested, optimizer
    state under ``optimizer/vars`` for a compiled model), so ``keras_model.load_weights`` reads it.

    Example:
    >>> import os, tempfile
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> save_keras_weights(Sequential([Input((3,)), Dense(2)]), path)
    >>> os.path.getsize(path) > 0
    True
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"Keras weights files must end in '.weights.h5'; received {path!r}.")
    _require_built(model, "save the weights of")
    atomic_write(path, _write_h5(model, include_optimizer=True))


def load_keras_weights(model, path, skip_mismatch=False, max_bytes=DEFAULT_MAX_BYTES) -> None:
    """Load a Keras ``.weights.h5`` file (or the weights of a ``.keras`` file) into ``model``.

    Weights are matched by Keras's layout (layer class order), not by layer names, as Keras does.
    A compiled model also gets the optimizer state when the file holds one.

    Args:
        model: a built model with the architecture the file was saved from.
        path: a ``.weights.h5`` or ``.keras`` file.
        skip_mismatch: leave layers whose weight count or shapes differ unchanged (with a
            warning) instead of raising. Default False.
        max_bytes: largest file size accepted. Default 16 GiB.

    Example:
    >>> import os, tempfile, numpy as np
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> source, target = Sequential([Input((3,)), Dense(2)]), Sequential([Input((3,)), Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> save_keras_weights(source, path)
    >>> load_keras_weights(target, path)
    >>> all(np.array_equal(a, b) for a, b in zip(source.get_weights(), target.get_weights()))
    True
    """
    path = os.fspath(path)
    _require_built(model, "load weights into")
    if path.endswith(".keras"):
        data = _read_keras_zip(path, max_bytes)[_WEIGHTS]
    elif path.endswith(".weights.h5"):
        data = _read_file(path, max_bytes)
    else:
        raise ValueError(f"Cannot load Keras weights from {path!r}: expected a file ending in '.weights.h5' or '.keras'.")
    reader = _H5Reader(data, repr(path), max_bytes)
    try:
        _assign_weights(model, reader, path, skip_mismatch)
        if getattr(model, "optimizer", None) is not None:
            _load_optimizer(model, reader)
    finally:
        reader.close()


def is_keras_archive(path) -> bool:
    """Whether ``path`` is a zip holding Keras's ``config.json`` and ``model.weights.h5`` members.

    Lets a caller tell Keras archives from lamina archives that share the ``.keras`` extension.

    >>> import os, tempfile
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_keras(Sequential([Input((3,)), Dense(2)]), path)
    >>> is_keras_archive(path)
    True
    """
    try:
        with zipfile.ZipFile(os.fspath(path)) as archive:
            names = set(archive.namelist())
    except _ZIP_ERRORS:
        return False
    return _CONFIG in names and (_WEIGHTS in names or _WEIGHTS_NPZ in names)


# ------------------------------------------------------------------ archive and HDF5 reading
def _require_h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "Reading and writing Keras files (.keras, .weights.h5) needs the optional dependency "
            "h5py, which is not installed. Install it with `pip install h5py`."
        ) from None
    return h5py


def _read_file(path: str, max_bytes: int) -> bytes:
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:
            raise FormatError(f"{path!r} holds {size} bytes, over the max_bytes={max_bytes} limit.")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FormatError(f"{path!r} grew past the max_bytes={max_bytes} limit while being read.")
    return data


def _keras_membership(name: str) -> str | None:
    if name.startswith(_ASSETS):
        return SKIP_MEMBER  # assets of preprocessing layers: name-checked, never read
    if name not in (_CONFIG, _METADATA, _WEIGHTS, _WEIGHTS_NPZ):
        return f"is not a member of a Keras archive ({_CONFIG}, {_METADATA}, {_WEIGHTS}, {_ASSETS}...)"
    return None


def _read_keras_zip(path: str, max_bytes: int) -> dict[str, bytes]:
    """Check every member's headers, then read config.json, metadata.json and model.weights.h5."""
    with open(path, "rb") as file:
        try:
            with zipfile.ZipFile(file) as archive:
                infos = archive.infolist()
                if len(infos) > _MAX_MEMBERS:
                    raise FormatError(f"{path!r} has {len(infos)} members; at most {_MAX_MEMBERS} are read.")
                names = [info.filename for info in infos]
                if "model.weights.safetensors" in names and _WEIGHTS not in names:
                    raise FormatError(f"{path!r} is a lamina archive, not a Keras one: load it with "
                                      "lamina.saving.load_model.")
                for info in infos:
                    problem = _member_problem(info, max_bytes, _keras_membership)
                    if problem:
                        raise FormatError(f"{path!r}: archive member {info.filename!r:.200} {problem}.")
                    if names.count(info.filename) > 1:
                        raise FormatError(f"{path!r}: archive member {info.filename!r} appears more than once.")
                wanted = [info for info in infos if info.filename in (_CONFIG, _METADATA, _WEIGHTS)]
                total = sum(info.file_size for info in wanted)
                if total > max_bytes:
                    raise FormatError(f"{path!r} declares {total} uncompressed bytes, over max_bytes={max_bytes}.")
                if _WEIGHTS not in names and _WEIGHTS_NPZ in names:
                    raise FormatError(
                        f"{path!r} stores its weights as {_WEIGHTS_NPZ} (Keras's weights_format='npz'); "
                        f"lamina reads {_WEIGHTS} only. Re-save it from Keras with the default format."
                    )
                missing = [name for name in (_CONFIG, _WEIGHTS) if name not in names]
                if missing:
                    raise FormatError(f"{path!r} lacks {missing}; it is not a Keras 3 archive or it is damaged.")
                return {info.filename: _read_member(archive, info) for info in wanted}
        except FormatError:
            raise
        except _ZIP_ERRORS as error:
            raise FormatError(f"{path!r} is not a readable zip archive: {error}") from None


class _H5Reader:
    """Read-only view of a Keras weights HDF5 file that checks every link and dataset it touches.

    Soft and external links, external or virtual datasets, non-numeric dtypes and datasets that
    declare far more bytes than they store are refused, as Keras's own loader does.
    """

    def __init__(self, data: bytes, where: str, max_bytes: int):
        self._h5py = _require_h5py()
        self.where = where
        self._budget = max_bytes
        try:
            self._file = self._h5py.File(io.BytesIO(data), "r")
        except (OSError, ValueError) as error:
            raise FormatError(f"{where} is not a readable HDF5 file: {error}") from None

    def close(self) -> None:
        self._file.close()

    def _child(self, group, name: str, path: str):
        try:
            link = group.get(name, default=None, getclass=True, getlink=True)
            if link is None:
                return None
            if link is not self._h5py.HardLink:
                raise FormatError(f"{self.where}: {path!r} is a {link.__name__}; HDF5 links are refused.")
            return group[name]
        except FormatError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
            raise FormatError(f"{self.where}: cannot read {path!r}: {error}") from None

    def group(self, path: str):
        node, walked = self._file, []
        for part in path.split("/") if path else []:
            walked.append(part)
            node = self._child(node, part, "/".join(walked))
            if node is None:
                return None
            if not isinstance(node, self._h5py.Group):
                raise FormatError(f"{self.where}: {'/'.join(walked)!r} should be an HDF5 group.")
        return node

    def vars(self, path: str) -> list[np.ndarray] | None:
        """The arrays stored under ``<path>/vars`` (datasets ``0``, ``1``...), or None without that group."""
        vars_path = f"{path}/vars" if path else "vars"
        node = self.group(vars_path)
        if node is None:
            return None
        keys = list(node.keys())
        expected = [str(i) for i in range(len(keys))]
        if sorted(keys) != sorted(expected):
            raise FormatError(
                f"{self.where}: {vars_path!r} holds {sorted(keys)[:8]}; Keras weight groups hold datasets "
                "named 0, 1, 2, ... (quantized or custom layouts are not supported)."
            )
        return [self._array(node, key, f"{vars_path}/{key}") for key in expected]

    def _array(self, group, name: str, path: str) -> np.ndarray:
        dataset = self._child(group, name, path)
        if not isinstance(dataset, self._h5py.Dataset):
            raise FormatError(f"{self.where}: {path!r} should be an HDF5 dataset.")
        if dataset.external or dataset.is_virtual:
            raise FormatError(f"{self.where}: {path!r} is an external or virtual dataset; those are refused.")
        if dataset.dtype.kind not in "biuf":
            raise FormatError(f"{self.where}: {path!r} has dtype {dataset.dtype}; weights must be numeric.")
        declared = math.prod(dataset.shape) * dataset.dtype.itemsize
        stored = dataset.id.get_storage_size()
        if declared > self._budget:
            raise FormatError(f"{self.where}: {path!r} declares {declared} bytes, over the max_bytes limit.")
        if declared > _H5_BOMB_FLOOR_BYTES and declared > _H5_MAX_EXPANSION * stored:
            raise FormatError(f"{self.where}: {path!r} declares {declared} bytes but stores {stored}; "
                              "refusing a likely decompression bomb.")
        self._budget -= declared
        try:
            return np.asarray(dataset[()])
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            raise FormatError(f"{self.where}: cannot read {path!r}: {error}") from None


# ------------------------------------------------------------------ Keras's weight layout
def _keras_snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(name: str, used: dict) -> str:
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _is_graph_model(layer) -> bool:
    from lamina.models.functional import Functional
    from lamina.models.sequential import Sequential

    return isinstance(layer, (Sequential, Functional))


def _children(layer) -> list[tuple[str, object]]:
    """(Keras attribute name, sublayer or list of sublayers) in the order Keras's saver visits them."""
    if _is_graph_model(layer):
        return [("layers", list(layer.layers))]
    from lamina.layers.base import Layer

    aliases = _ATTRIBUTE_NAMES.get(type(layer).__name__, {})

    def saveable(module):
        if isinstance(module, Layer):
            return module
        if module is not None and module._modules and not hasattr(module, "call"):
            items = [saveable(m) for m in module._modules.values()]
            return [item for item in items if item is not None]  # ModuleList / ModuleDict
        return None

    found = [(aliases.get(attr, attr), saveable(module)) for attr, module in layer._modules.items()]
    # Keras walks attributes sorted by name, private ("_x") ones last.
    found.sort(key=lambda item: ("~" + item[0]) if item[0].startswith("_") else item[0])
    return [(name, value) for name, value in found if value is not None]


def _saveables(model) -> list[tuple[str, object]]:
    """(h5 path, layer) for the model and every nested layer, each once, as Keras's saver walks them."""
    out, seen = [], set()

    def visit(layer, path):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        out.append((path, layer))
        for name, child in _children(layer):
            sub = f"{path}/{name}" if path else name
            visit_container(child, sub) if isinstance(child, list) else visit(child, sub)

    def visit_container(items, path):
        used: dict = {}
        for item in items:
            if isinstance(item, list):
                visit_container(item, f"{path}/{_unique('container', used)}")
            else:  # named by class, not by layer name, so the layout does not depend on naming
                visit(item, f"{path}/{_unique(_keras_snake_case(type(item).__name__), used)}")

    visit(model, "")
    return out


def _own_arrays(model) -> tuple[list, dict[int, list[int]]]:
    """The model's weights (Keras layout) and, per owning layer, the indices of its own weights."""
    arrays = model.get_weights()
    owners: dict[int, list[int]] = {}
    for index, (owner, _, _) in enumerate(model._weight_records()):
        owners.setdefault(id(owner), []).append(index)
    return arrays, owners


def _write_h5(model, include_optimizer: bool) -> bytes:
    h5py = _require_h5py()
    arrays, owners = _own_arrays(model)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        for path, layer in _saveables(model):
            group = file.create_group(f"{path}/vars" if path else "vars")
            group.attrs["name"] = layer.name
            for position, index in enumerate(owners.get(id(layer), [])):
                group.create_dataset(str(position), data=arrays[index])
        optimizer = _built_optimizer(model) if include_optimizer else None
        if optimizer is not None:
            group = file.create_group("optimizer/vars")
            group.attrs["name"] = optimizer.name
            for index, array in enumerate(_optimizer_arrays(model, optimizer, to_keras=True)):
                group.create_dataset(str(index), data=array)
    return buffer.getvalue()


def _optimizer_arrays(model, optimizer, to_keras: bool, arrays=None) -> list[np.ndarray]:
    """The optimizer's variables (Keras's order) with each slot in its weight's Keras layout.

    Slots are kept in torch layout, like the weights they track (a Dense kernel's momentum is
    (units, features)); Keras files hold them in Keras layout. ``to_keras=False`` converts
    ``arrays`` read from a file the other way.
    """
    layouts = {id(tensor): owner._weight_layouts.get(attr) for owner, attr, tensor in model._weight_records()}
    params = list(getattr(optimizer, "_params", []) or [])
    slots = {id(tensor): key for key, tensor in getattr(optimizer, "_slot_entries", [])}
    out = []
    for position, variable in enumerate(optimizer.variables):
        value = variable.detach().cpu().numpy() if arrays is None else np.asarray(arrays[position])
        key = slots.get(id(variable), "")
        index = key.rsplit("/", 1)[-1].rstrip("_")
        perm = None
        if index.isdigit() and int(index) < len(params):
            param = params[int(index)]
            # Only slots shaped like their weight share its layout (add_variable slots do not).
            if tuple(variable.shape) == tuple(param.shape):
                perm = layouts.get(id(param))
        if perm is not None:
            value = np.transpose(value, np.argsort(perm) if to_keras else perm)
        out.append(value)
    return out


def _assign_weights(model, reader: _H5Reader, path: str, skip_mismatch: bool) -> None:
    arrays, owners = _own_arrays(model)
    covered, problems = set(), []
    for h5_path, layer in _saveables(model):
        indices = owners.get(id(layer), [])
        covered.update(indices)
        stored = reader.vars(h5_path)
        where = f"layer {layer.name!r} ({type(layer).__name__}, h5 group {h5_path or '/'!r})"
        if stored is None:
            if indices:
                problems.append(f"{where}: the file has no weights for it; expected {len(indices)}")
            continue
        if len(stored) != len(indices):
            problems.append(f"{where}: the file holds {len(stored)} weights; lamina expects {len(indices)}")
            continue
        shapes = [(arrays[i].shape, a.shape) for i, a in zip(indices, stored)]
        if any(mine != theirs for mine, theirs in shapes):
            problems.append(f"{where}: shapes in the file {[t for _, t in shapes]} differ from "
                            f"the layer's {[m for m, _ in shapes]}")
            continue
        for i, value in zip(indices, stored):
            arrays[i] = value
    uncovered = [i for i in range(len(arrays)) if i not in covered]
    if uncovered:
        records = model._weight_records()
        problems.append("lamina weights with no place in Keras's layout: "
                        f"{[f'{records[i][0].name}/{records[i][1]}' for i in uncovered]}")
    if problems:
        message = f"Cannot load the weights of {path!r} into model {model.name!r}: " + "; ".join(problems) + "."
        if not skip_mismatch:
            raise FormatError(message + " Load into a model with the architecture the file was saved from.")
        warnings.warn(message + " Those layers keep their current weights (skip_mismatch=True).",
                      UserWarning, stacklevel=3)
    model.set_weights(arrays)


def _built_optimizer(model):
    """The model's optimizer with its slots created (so Keras's loader finds every variable)."""
    optimizer = getattr(model, "optimizer", None)
    trainer = getattr(model, "_trainer", None)
    if optimizer is None:
        return None
    if not getattr(optimizer, "built", False) and hasattr(trainer, "_build_optimizer"):
        trainer._build_optimizer()
    return optimizer


def _load_optimizer(model, reader: _H5Reader) -> None:
    stored = reader.vars("optimizer")
    optimizer = _built_optimizer(model) if stored is not None else None
    if optimizer is None or not hasattr(optimizer, "load_own_variables"):
        return
    try:
        if len(stored) == len(optimizer.variables):
            stored = _optimizer_arrays(model, optimizer, to_keras=False, arrays=stored)
        optimizer.load_own_variables({str(i): value for i, value in enumerate(stored)})
    except (ValueError, TypeError) as error:
        warnings.warn(f"Skipping the optimizer state of {reader.where}: {error}", UserWarning, stacklevel=3)


# ------------------------------------------------------------------ Keras config -> lamina config
def _accepted_keys(cls) -> set[str] | None:
    """Keyword arguments a lamina layer class takes, following ``**kwargs`` up to ``Layer``."""
    from lamina.layers.base import Layer

    accepted = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        if klass is Layer:
            return accepted | set(_LAYER_BASE_KEYS)
        params = inspect.signature(klass.__init__).parameters.values()
        accepted |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        # A parent __init__ may take the child's **kwargs as one dict argument named "kwargs".
        if not any(p.kind == p.VAR_KEYWORD or p.name == "kwargs" for p in params):
            return accepted
    return None


def _short(value) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class _KerasToLamina:
    """Turns a Keras ``config.json`` tree into lamina configs, collecting every problem found."""

    def __init__(self, custom_objects):
        self.custom_objects = dict(custom_objects or {})
        self.missing: dict[str, list[str]] = {}
        self.unsupported: list[str] = []

    def model(self, config) -> dict:
        if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
            raise FormatError(f"{_CONFIG} must hold a model config with a 'class_name'; received {_short(config)}.")
        entry = self.layer(config, "the model")
        self.raise_problems()
        return entry

    def raise_problems(self) -> None:
        messages = []
        for kind, names in self.missing.items():
            messages.append(f"{kind} classes lamina does not have: {', '.join(sorted(set(names)))}")
        if self.unsupported:
            messages.append("options lamina does not support: " + "; ".join(self.unsupported))
        if messages:
            raise FormatError(
                "This Keras file cannot be loaded by lamina. " + ". ".join(messages) + ". Register "
                "equivalent classes with lamina.saving.register_serializable() or pass custom_objects={...}."
            )

    def resolve(self, kind: str, class_name: str, registered_name=None) -> str:
        """The name lamina knows this class by; records it as missing when nothing matches."""
        candidates = [n for n in (registered_name, class_name) if isinstance(n, str) and n]
        for name in candidates:
            if name in self.custom_objects:
                return name
        for name in candidates:
            try:
                registry.lookup_class(kind, name)
                return name
            except ValueError:
                continue
        self.missing.setdefault(kind, []).append(class_name)
        return class_name

    def layer(self, entry, where: str, parent: str | None = None) -> dict:
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise FormatError(f"In {where}: expected a layer config with a 'class_name'; received {_short(entry)}.")
        class_name = entry["class_name"]
        if class_name.startswith("__"):
            return self.value(entry, "layer", where)  # refuses __lambda__ and the like
        name = self.resolve("layer", class_name, entry.get("registered_name"))
        config = entry.get("config") or {}
        if not isinstance(config, dict):
            raise FormatError(f"In {where}: the config of {class_name} must be a dict; received {_short(config)}.")
        label = f"{class_name} {config.get('name', '')!r}"
        out = {}
        for key, value in config.items():
            if key in _LAYER_KEYS and isinstance(value, dict):
                out[key] = self.layer(value, label, class_name)
            elif key in _LAYER_LIST_KEYS and isinstance(value, list):
                out[key] = [self.layer(item, label, class_name) for item in value]
            elif key == "dtype":
                out[key] = self.dtype(value, label)
            else:
                out[key] = self.value(value, key, label)
        self.check_options(name, out, label, parent)
        result = {"class_name": name, "config": out}
        for key in ("name", "build_config"):
            if key in entry:
                result[key] = entry[key]
        if "inbound_nodes" in entry:
            nodes = entry["inbound_nodes"]
            if not isinstance(nodes, list) or not all(isinstance(n, dict) and {"args", "kwargs"} <= set(n) for n in nodes):
                raise FormatError(f"In {label}: inbound_nodes must be a list of {{'args', 'kwargs'}} dicts, as Keras 3 "
                                  f"writes them; received {_short(nodes)} (files from Keras 2 are not supported).")
            result["inbound_nodes"] = self.value(nodes, "inbound_nodes", label)
        return result

    def check_options(self, name: str, config: dict, label: str, parent) -> None:
        if name in self.custom_objects:
            return
        try:
            cls = registry.lookup_class("layer", name)
        except ValueError:
            return
        if not inspect.isclass(cls) or not cls.__module__.startswith("lamina.") or _is_model_class(cls):
            return
        accepted = _accepted_keys(cls)
        if accepted is None:
            return
        for key in [k for k in config if k not in accepted]:
            rule = _DROPPABLE.get(key)
            # lamina's Bidirectional sets zero_output_for_mask on its layers itself, as Keras does.
            if (rule is not None and rule(config[key])) or (key == "zero_output_for_mask" and parent == "Bidirectional"):
                del config[key]
            else:
                self.unsupported.append(f"{label} {key}={_short(config[key])}")

    def dtype(self, value, where: str):
        if value is None or isinstance(value, str):
            name = value
        elif isinstance(value, dict) and value.get("class_name") in _FLOAT_POLICIES:
            name = (value.get("config") or {}).get("name")
        else:
            self.unsupported.append(f"{where} dtype={_short(value)} (quantized dtype policies)")
            return None
        if isinstance(name, str) and name.startswith("mixed_"):
            self.unsupported.append(f"{where} dtype policy {name!r} (mixed precision)")
            return None
        return name

    def value(self, value, key: str, where: str):
        if isinstance(value, list):
            return [self.value(item, key, where) for item in value]
        if not isinstance(value, dict):
            return value
        class_name = value.get("class_name")
        if not isinstance(class_name, str):
            return {k: self.value(v, k, where) for k, v in value.items()}
        inner = value.get("config")
        if class_name == "__keras_tensor__":
            history = (inner or {}).get("keras_history")
            if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)
                    and all(isinstance(i, int) for i in history[1:])):
                raise FormatError(f"In {where}: malformed __keras_tensor__ {_short(value)}.")
            return value
        if class_name == "__lambda__":
            raise FormatError(
                f"In {where}: the file holds a Python lambda as bytecode. lamina never runs code from a "
                "file, whatever safe_mode says. Replace the Lambda with a registered layer or function."
            )
        if class_name in ("__numpy__", "__tensor__"):
            return (inner or {}).get("value")
        if class_name == "__bytes__":
            return str((inner or {}).get("value", "")).encode("utf-8")
        if class_name == "__ellipsis__":
            return Ellipsis
        if class_name == "__slice__":
            return slice(*(self.value((inner or {}).get(k), k, where) for k in ("start", "stop", "step")))
        if class_name.startswith("__"):
            raise FormatError(f"In {where}: special object {class_name!r} is not supported.")
        if class_name == "function":
            return self.function(value, where)
        if class_name in _FLOAT_POLICIES or class_name.endswith("DTypePolicy"):
            return self.dtype(value, where)
        kind = _kind_for_key(key)
        if kind == "layer":
            return self.layer(value, where)
        registered = value.get("registered_name")
        if kind:
            name = self.resolve(kind, class_name, registered)
        else:  # resolved later by the constructor that takes it (or by compile)
            name = registered if isinstance(registered, str) and ">" in registered else class_name
        config = inner if inner is not None else {}
        if isinstance(config, dict):
            config = {k: self.value(v, k, where) for k, v in config.items()}
        return {"class_name": name, "config": config}

    def function(self, value: dict, where: str):
        name, registered = value.get("config"), value.get("registered_name")
        for candidate in (registered, name):
            if isinstance(candidate, str) and candidate in self.custom_objects:
                return self.custom_objects[candidate]
        if isinstance(registered, str) and ">" in registered:
            return registered  # a lamina.saving.register_serializable name
        if not isinstance(name, str):
            raise FormatError(f"In {where}: a function config must name the function; received {_short(value)}.")
        return name

    def compile(self, config: dict) -> dict:
        """lamina ``compile`` arguments from Keras's compile_config (``compile`` resolves the names)."""
        return {key: self.value(config.get(key), None, "compile_config")
                for key in ("optimizer", "loss", "loss_weights", "metrics", "weighted_metrics")}


def _kind_for_key(key: str | None) -> str | None:
    if key is None:
        return None
    if key in ("optimizer", "loss", "metric", "layer"):
        return key
    if key in _LAYER_KEYS or key in _LAYER_LIST_KEYS:
        return "layer"
    if key == "learning_rate":
        return "schedule"
    for suffix, kind in _KEY_KINDS:
        if key.endswith(suffix):
            return kind
    return None


def _is_model_class(cls) -> bool:
    from lamina.models.model import Model

    return issubclass(cls, Model)


def _build_model(entry: dict, custom_objects, safe_mode: bool, path: str):
    from lamina.layers import base as layer_base
    from lamina.saving.serialize import deserialize_model

    _import_optional_layers()
    previous = getattr(layer_base, "_SAFE_MODE", True)
    layer_base._SAFE_MODE = bool(safe_mode)
    try:
        return deserialize_model(entry, custom_objects)
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise FormatError(f"{path!r} holds a Keras model config lamina cannot rebuild: {error}") from None
    finally:
        layer_base._SAFE_MODE = previous


def _import_optional_layers() -> None:
    """Register the layer families that ``lamina.layers`` may not import yet."""
    import importlib

    for module in ("lamina.layers.recurrent", "lamina.layers.attention"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def _compile(model, config: dict, custom_objects, path: str) -> None:
    from lamina.saving.serialize import deserialize_compile_config

    try:
        model.compile(**deserialize_compile_config(config, custom_objects))
    except (KeyError, TypeError, ValueError) as error:
        # Keras also loads the model uncompiled, with a warning, when compile_from_config fails.
        warnings.warn(f"{path!r}: could not compile the loaded model from its compile_config ({error}); "
                      "it is returned uncompiled. Call model.compile(...) yourself.", UserWarning, stacklevel=3)


# ------------------------------------------------------------------ lamina config -> Keras config
class _LaminaToKeras:
    """Adds Keras's ``module`` / ``registered_name`` / DTypePolicy dicts to lamina configs."""

    def layer(self, entry: dict, in_functional: bool = False) -> dict:
        class_name = entry["class_name"]
        module, registered = "keras.layers", None
        if class_name == "Sequential":
            module = "keras"
        elif class_name == "Functional":
            module, registered = "keras.src.models.functional", "Functional"
        elif ">" in class_name:  # register_serializable("package>Name"): Keras resolves it by that name
            module, registered, class_name = None, class_name, class_name.split(">", 1)[1]
        config = {}
        for key, value in entry["config"].items():
            if key in _LAYER_KEYS and isinstance(value, dict) and "class_name" in value:
                config[key] = self.layer(value)
            elif key in _LAYER_LIST_KEYS and isinstance(value, list):
                config[key] = [self.layer(v, in_functional=class_name == "Functional") for v in value]
            elif key == "dtype" and class_name != "InputLayer":
                config[key] = _policy(value)
            else:
                config[key] = self.value(value, _kind_for_key(key))
        out = {"module": module, "class_name": class_name, "config": config, "registered_name": registered}
        # In a functional config the graph replay builds each layer; a build_config would bypass
        # the several-input builds (MultiHeadAttention's query/value shapes).
        if "build_config" in entry and not in_functional:
            out["build_config"] = self.value(entry["build_config"], None)
        for key in ("name", "inbound_nodes"):
            if key in entry:
                out[key] = self.value(entry[key], None)
        return out

    def value(self, value, kind):
        if isinstance(value, (list, tuple)):
            return [self.value(v, kind) for v in value]
        if not isinstance(value, dict):
            return value
        class_name = value.get("class_name")
        if not isinstance(class_name, str) or class_name == "__keras_tensor__":
            return {k: self.value(v, _kind_for_key(k)) for k, v in value.items()}
        if kind == "layer":
            return self.layer(value)
        module, registered = _MODULES.get(kind or _guess_kind(class_name)), None
        if ">" in class_name:
            module, registered, class_name = None, class_name, class_name.split(">", 1)[1]
        config = value.get("config")
        if isinstance(config, dict):
            config = {k: self.value(v, _kind_for_key(k)) for k, v in config.items()}
        return {"module": module, "class_name": class_name, "config": config, "registered_name": registered}

    def compile(self, config: dict) -> dict:
        return {
            "optimizer": self.value(config.get("optimizer"), "optimizer"),
            "loss": self.value(config.get("loss"), "loss"),
            "loss_weights": config.get("loss_weights"),
            "metrics": self.value(config.get("metrics"), "metric"),
            "weighted_metrics": self.value(config.get("weighted_metrics"), "metric"),
        }


def _policy(dtype):
    if isinstance(dtype, dict) or dtype is None:
        return dtype
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": str(dtype)}, "registered_name": None}


def _guess_kind(class_name: str) -> str | None:
    for kind in ("initializer", "regularizer", "constraint", "layer"):
        try:
            registry.lookup_class(kind, class_name)
            return kind
        except ValueError:
            continue
    return None


def _require_built(model, action: str) -> None:
    if not getattr(model, "built", False):
        raise ValueError(
            f"Cannot {action} model {getattr(model, 'name', model)!r}: it is not built, so it has no weights "
            "yet. Start it with lamina.Input(shape), call it on data, or call model.build(input_shape) first."
        )


def _lamina_version() -> str:
    try:
        return importlib.metadata.version("lamina")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
