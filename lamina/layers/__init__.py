"""Keras layers on PyTorch: ``lamina.layers`` mirrors ``keras.layers``."""

from lamina.layers.base import InputSpec, Layer
from lamina.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from lamina.layers.graph import Input, InputLayer
from lamina.layers.merging import (
    Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract,
    add, average, concatenate, dot, maximum, minimum, multiply, subtract,
)
from lamina.layers.misc import Embedding, Identity, Lambda, Masking, Rescaling

__all__ = [
    "Layer", "InputSpec", "Input", "InputLayer",
    "Dense", "Activation", "Dropout", "Flatten", "Reshape",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot",
    "Embedding", "Rescaling", "Identity", "Masking", "Lambda",
]
