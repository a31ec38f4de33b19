"""Keras layers on PyTorch: ``lamina.layers`` mirrors ``keras.layers``."""

from lamina.layers.base import InputSpec, Layer
from lamina.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from lamina.layers.graph import Input, InputLayer

__all__ = ["Layer", "InputSpec", "Input", "InputLayer", "Dense", "Activation", "Dropout", "Flatten", "Reshape"]
