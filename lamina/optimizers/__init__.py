"""Keras 3's ``keras.optimizers`` on PyTorch: optimizers, schedules and their lookup.

``get``, ``serialize`` and ``deserialize`` resolve optimizers through the registry
(kind ``"optimizer"``); ``lamina.optimizers.schedules`` holds the learning-rate
schedules (kind ``"schedule"``).
"""

from lamina import registry
from lamina.optimizers import schedules
from lamina.optimizers.base import Optimizer
from lamina.optimizers.optimizers import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Nadam, RMSprop

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam",
    "schedules", "get", "serialize", "deserialize",
]


def _lookup(identifier, custom_objects=None):
    try:
        return registry.get("optimizer", identifier, custom_objects)
    except ValueError:
        # Keras matches built-in names case-insensitively ("ADAM", {"class_name": "adam"}).
        if isinstance(identifier, str):
            return registry.get("optimizer", identifier.lower(), custom_objects)
        if isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str):
            lowered = {**identifier, "class_name": identifier["class_name"].lower()}
            return registry.get("optimizer", lowered, custom_objects)
        raise


def get(identifier):
    """An optimizer from a name, a config dict or an instance (returned as is).

    Example:
    >>> get("adam").get_config()["learning_rate"]
    0.001
    >>> type(get({"class_name": "SGD", "config": {"momentum": 0.9}})).__name__
    'SGD'
    """
    if identifier is None:
        return None
    optimizer = _lookup(identifier)
    if not isinstance(optimizer, Optimizer):
        raise ValueError(
            f"Could not interpret optimizer identifier: {identifier!r}. Expected an optimizer "
            f"name such as 'adam', a config dict, or a lamina.optimizers.Optimizer."
        )
    return optimizer


def serialize(optimizer):
    """An optimizer as ``{"class_name": ..., "config": ...}``.

    Example:
    >>> serialize(SGD())["class_name"]
    'SGD'
    """
    return registry.serialize("optimizer", optimizer)


def deserialize(config, custom_objects=None):
    """Rebuild an optimizer from ``serialize`` output.

    Example:
    >>> deserialize(serialize(Adam(learning_rate=0.01))).learning_rate
    0.01
    """
    return _lookup(config, custom_objects)
