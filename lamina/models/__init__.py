"""Models: ``Model`` (subclassed or functional), ``Sequential``, and loading saved models."""

from lamina.models.functional import Functional
from lamina.models.model import Model
from lamina.models.sequential import Sequential
from lamina.saving import load_model

__all__ = ["Model", "Sequential", "Functional", "load_model"]
