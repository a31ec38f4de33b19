"""Config ↔ object: models, layers and compile settings to plain JSON and back.

Only classes registered in ``lamina.registry`` (built-ins and what users register
with ``register_serializable`` or pass as ``custom_objects``) can be created from a
config: nothing named in a file is imported or evaluated.
"""

from __future__ import annotations

import inspect

from lamina import registry

__all__ = [
    "register_serializable", "serialize_model", "deserialize_model",
    "serialize_compile_config", "deserialize_compile_config",
]


def register_serializable(package: str = "Custom", name: str | None = None):
    """Decorator registering a custom layer, model, loss, metric or function for saving.

    A registered class is saved as ``"package>Name"`` and is the only way (with
    ``custom_objects=``) a file can name it on load.

    >>> import torch
    >>> from lamina.layers import Layer
    >>> @register_serializable(package="Docs")
    ... class Twice(Layer):
    ...     def call(self, inputs):
    ...         return 2 * inputs
    >>> registry.lookup_class("layer", "Docs>Twice") is Twice
    True
    """
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"register_serializable needs a package name without '>'; received {package!r}.")

    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        registry.register("custom", key, aliases=(obj.__name__,) if name is None else ())(obj)
        return obj

    return decorator


def serialize_model(model) -> dict:
    """``{"class_name", "config", "compile_config", "build_config"}`` for ``model``."""
    entry = registry.serialize("layer", model)
    build_shape = getattr(model, "_build_shape", None)
    if build_shape is not None:
        entry["build_config"] = {"input_shape": _listify(build_shape)}
    entry["compile_config"] = model.get_compile_config() if hasattr(model, "get_compile_config") else None
    return entry


def deserialize_model(config: dict, custom_objects: dict | None = None):
    """Rebuild a (not yet compiled) model from ``serialize_model``'s output."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError("A model config must be a dict with 'class_name' and 'config' keys.")
    cls = registry.lookup_class("layer", config["class_name"], custom_objects)
    if not inspect.isclass(cls):
        raise ValueError(f"{config['class_name']!r} does not name a layer or model class.")
    inner = config.get("config") or {}
    params = inspect.signature(cls.from_config).parameters
    model = cls.from_config(inner, custom_objects) if "custom_objects" in params else cls.from_config(inner)
    build = config.get("build_config") or {}
    if not model.built and build.get("input_shape") is not None:
        shape = build["input_shape"]
        model.build(tuple(shape) if shape and not isinstance(shape[0], list) else shape)
    return model


def _listify(shape):
    if isinstance(shape, (list, tuple)):
        return [_listify(s) for s in shape]
    return shape


def _serialize_item(kind: str, value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_serialize_item(kind, v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _serialize_item(kind, v) for k, v in value.items()}
    if inspect.isfunction(value) and not (registry.registered_name(kind, value)
                                          or registry.registered_name("custom", value)):
        # An unregistered function (a custom loss or metric) is saved by name, as Keras
        # does, so saving (and ModelCheckpoint) works; loading it needs custom_objects.
        return value.__name__
    return registry.serialize(kind, value)


def serialize_compile_config(model) -> dict:
    """The arguments given to ``compile`` as JSON (optimizer, loss, metrics, loss_weights, jit_compile)."""
    raw = model._compile_config
    return {
        "optimizer": registry.serialize("optimizer", model.optimizer),
        "loss": _serialize_item("loss", raw["loss"]),
        "loss_weights": raw["loss_weights"],
        "metrics": _serialize_item("metric", raw["metrics"]),
        "weighted_metrics": _serialize_item("metric", raw["weighted_metrics"]),
        "jit_compile": bool(getattr(model, "jit_compile", False)),
    }


def deserialize_compile_config(config: dict, custom_objects: dict | None = None) -> dict:
    """Keyword arguments for ``compile`` from ``serialize_compile_config``'s output."""
    def item(kind, value):
        if isinstance(value, list):
            return [item(kind, v) for v in value]
        if isinstance(value, dict) and "class_name" in value:
            return registry.get(kind, value, custom_objects)
        if isinstance(value, dict):
            return {k: item(kind, v) for k, v in value.items()}
        if isinstance(value, str) and custom_objects and value in custom_objects:
            return custom_objects[value]
        if isinstance(value, str) and ">" in value:  # "package>name" from register_serializable
            return registry.lookup_class("custom", value)
        if isinstance(value, str) and kind in ("metric", "loss"):
            return value  # names such as "accuracy" or "mse" are resolved by compile, as given
        return registry.get(kind, value, custom_objects) if isinstance(value, str) else value

    return {
        "optimizer": item("optimizer", config.get("optimizer")),
        "loss": item("loss", config.get("loss")),
        "loss_weights": config.get("loss_weights"),
        "metrics": item("metric", config.get("metrics")),
        "weighted_metrics": item("metric", config.get("weighted_metrics")),
        "jit_compile": config.get("jit_compile") is True,
    }
