"""lamina: the Keras 3 API on PyTorch. ``import lamina as keras`` runs Keras programs.

>>> import lamina as keras
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
>>> model.output_shape
(None, 2)
"""

from lamina import (
    activations,
    applications,
    callbacks,
    config,
    constraints,
    datasets,
    export,
    graph,
    initializers,
    layers,
    losses,
    metrics,
    mixed_precision,
    models,
    optimizers,
    regularizers,
    saving,
    utils,
)
from lamina.layers import Input, InputSpec, Layer
from lamina.layers.base import clear_session
from lamina.models import Model, Sequential
from lamina.utils import set_random_seed

__version__ = "0.1.0"

__all__ = [
    "Sequential", "Model", "Input", "Layer", "InputSpec", "activations", "applications", "callbacks", "config",
    "constraints", "datasets", "export", "graph", "initializers", "layers", "losses", "metrics", "mixed_precision", "models", "optimizers",
    "regularizers", "saving", "utils", "clear_session", "set_random_seed", "__version__",
]
