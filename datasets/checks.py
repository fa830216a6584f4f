"""Argument checks shared by the data loaders and generators: clear errors that name the
function, what was expected and what came (``datasets`` uses NumPy only, so it keeps its own)."""
import numpy as np


def check_int(func, name, value, minimum):
    """Raise unless ``value`` is an int (not a bool) ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{func}: expected {name} >= {minimum}, got {value}")


def check_flag(func, name, value):
    """Raise unless ``value`` is True or False (a string such as ``'no'`` would be truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: expected {name} to be True or False, got {value!r}")
