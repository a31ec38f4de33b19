"""Utilities from ``keras.utils``: one-hot labels, normalisation, seeding, the progress bar."""

from lamina.layers.base import clear_session
from lamina.utils.numerical import normalize, to_categorical
from lamina.utils.progbar import Progbar
from lamina.utils.random import set_random_seed

__all__ = ["to_categorical", "normalize", "set_random_seed", "Progbar", "clear_session"]
