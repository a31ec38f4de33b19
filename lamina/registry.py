"""The one string → object registry behind every ``get(identifier)`` in lamina.

Built-in activations, initializers, regularizers, constraints, losses, metrics,
optimizers, learning-rate schedules and layers register themselves here with the
``register`` decorator; ``get`` resolves a name, a config dict or an object, and
``serialize`` turns an object back into a name or a config dict. This module
knows nothing about any particular kind of object.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

__all__ = ["register", "get", "serialize", "names", "lookup_class", "registered_name"]

_REGISTRY: dict[str, dict[str, Any]] = {}
_NAMES: dict[tuple[str, int], str] = {}


def register(kind: str, name: str | None = None, *, aliases: tuple[str, ...] = ()):
    """Decorator that registers a class or function under ``kind``.

    Args:
        kind: the family, e.g. ``"activation"``, ``"loss"``, ``"layer"``.
        name: the canonical name; defaults to the object's ``__name__``.
        aliases: further names that resolve to the same object (``"mse"``).

    Example:
    >>> from lamina import registry
    >>> @registry.register("doc_example", aliases=("twice",))
    ... def double(x):
    ...     return 2 * x
    >>> registry.get("doc_example", "twice")(3)
    6
    """

    def decorator(obj):
        table = _REGISTRY.setdefault(kind, {})
        canonical = name or obj.__name__
        for key in (canonical, *aliases):
            table[key] = obj
        _NAMES[(kind, id(obj))] = canonical
        return obj

    return decorator


def names(kind: str) -> list[str]:
    """Every name registered under ``kind``, sorted.

    >>> "relu" in names("activation")
    True
    """
    _ensure_loaded(kind)
    return sorted(_REGISTRY.get(kind, {}))


def registered_name(kind: str, obj: Any) -> str | None:
    """The canonical name ``obj`` (a class or function) was registered under, or None."""
    return _NAMES.get((kind, id(obj)))


def lookup_class(kind: str, name: str, custom_objects: dict | None = None):
    """Return the registered object called ``name`` without instantiating it.

    Raises ValueError listing the valid names when ``name`` is unknown.
    """
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    _ensure_loaded(kind)
    table = _REGISTRY.get(kind, {})
    if name in table:
        return table[name]
    custom = _REGISTRY.get("custom", {})
    if name in custom:
        return custom[name]
    valid = ", ".join(repr(n) for n in sorted(table))
    raise ValueError(
        f"Unknown {kind}: {name!r}. Expected one of the registered names: {valid}. "
        f"To use your own {kind}, pass the object itself, or register it with "
        f"lamina.saving.register_serializable() or pass custom_objects={{...}}."
    )


def get(kind: str, identifier: Any, custom_objects: dict | None = None):
    """Resolve ``identifier`` to an object of ``kind``.

    ``None`` gives ``None``; a string gives the registered object (a class is
    instantiated with its defaults, a function is returned as is); a dict
    ``{"class_name": ..., "config": {...}}`` gives ``cls.from_config(config)``;
    anything callable or already an instance is returned unchanged.

    Example:
    >>> from lamina import registry
    >>> registry.get("activation", "relu").__name__
    'relu'
    >>> type(registry.get("initializer", "glorot_uniform")).__name__
    'GlorotUniform'
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        obj = lookup_class(kind, identifier, custom_objects)
        return obj() if inspect.isclass(obj) else obj
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(
                f"A {kind} given as a dict needs the keys 'class_name' and 'config'; "
                f"received keys {sorted(identifier)}."
            )
        cls = lookup_class(kind, identifier["class_name"], custom_objects)
        config = identifier.get("config") or {}
        if not inspect.isclass(cls):
            return cls
        if hasattr(cls, "from_config"):
            if custom_objects and "custom_objects" in inspect.signature(cls.from_config).parameters:
                return cls.from_config(config, custom_objects=custom_objects)
            return cls.from_config(config)
        return cls(**config)
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier) or hasattr(identifier, "get_config"):
        return identifier
    raise TypeError(
        f"Could not interpret {kind} identifier {identifier!r} of type "
        f"{type(identifier).__name__}. Expected a string name, a config dict, or a "
        f"{kind} object."
    )


def serialize(kind: str, obj: Any):
    """Turn ``obj`` into a JSON-ready value that ``get(kind, ...)`` turns back.

    Registered functions become their name; objects with ``get_config`` become
    ``{"class_name": ..., "config": ...}``.

    >>> from lamina import registry
    >>> registry.serialize("activation", registry.get("activation", "relu"))
    'relu'
    """
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        name = _NAMES.get((kind, id(obj))) or _NAMES.get(("custom", id(obj)))
        if name is None:
            raise ValueError(
                f"Cannot serialize the unregistered {kind} function {obj.__name__!r}. "
                f"Register it with lamina.saving.register_serializable()."
            )
        return name
    cls = type(obj)
    name = _NAMES.get((kind, id(cls))) or _NAMES.get(("custom", id(cls))) or cls.__name__
    config = obj.get_config() if hasattr(obj, "get_config") else {}
    return {"class_name": name, "config": config}


# Modules that register each kind; imported on first lookup so that
# ``registry.get("loss", ...)`` works even if lamina.losses was never imported.
_PROVIDERS = {
    "activation": "lamina.activations",
    "initializer": "lamina.initializers",
    "regularizer": "lamina.regularizers",
    "constraint": "lamina.constraints",
    "loss": "lamina.losses",
    "metric": "lamina.metrics",
    "metric_function": "lamina.metrics",
    "optimizer": ("lamina.optimizers", "lamina.mixed_precision"),
    "schedule": "lamina.optimizers.schedules",
    "layer": "lamina.layers",
    "callback": "lamina.callbacks",
}


_LOADED: set = set()


def _ensure_loaded(kind: str) -> None:
    if kind in _LOADED:
        return
    modules = _PROVIDERS.get(kind)
    if modules is not None:
        import importlib

        for module in (modules,) if isinstance(modules, str) else modules:
            importlib.import_module(module)
    _LOADED.add(kind)
