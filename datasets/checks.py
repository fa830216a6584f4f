"""Argument checks shared by the data loaders and generators: clear errors that name the
function, what was expected and what came (``datasets`` uses NumPy only, so it keeps its own)."""
import numpy as np


def check_int(func, name, value, minimum):
    """``value`` as an int if it is one (not a bool) ``>= minimum``, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{func}: expected {name} >= {minimum}, got {value}")
    return int(value)


def check_flag(func, name, value):
    """``value`` as a bool if it is True or False (a string such as ``'no'`` would be truthy),
    else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: expected {name} to be True or False, got {value!r}")
    return bool(value)


def rng_from_seed(func, seed):
    """``np.random.default_rng(seed)`` for a seed it takes -- None, an int >= 0, a
    ``SeedSequence`` or a ``Generator`` (used as it is) -- else raise."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        check_int(func, "seed", seed, 0)
    elif not (seed is None or isinstance(seed, (np.random.SeedSequence, np.random.Generator))):
        raise TypeError(f"{func}: expected seed to be a non-negative int, a np.random.SeedSequence, "
                        f"a np.random.Generator or None, got {seed!r}")
    return np.random.default_rng(seed)
