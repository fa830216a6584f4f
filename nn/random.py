"""Seeding. Layers draw initial weights and dropout masks from a ``np.random.Generator``:
the one passed as their ``rng`` argument, else the global one that ``seed`` resets."""
import numpy as np

_global_rng = np.random.default_rng()


def seed(value):
    """Reset the global generator from ``value``, a non-negative int or a
    ``np.random.SeedSequence`` (None: fresh entropy); the same seed gives the same weights
    and masks."""
    global _global_rng
    if not (value is None or isinstance(value, np.random.SeedSequence) or (
            isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0)):
        raise TypeError(f"seed: expected a non-negative int, a np.random.SeedSequence or None, "
                        f"got {value!r}")
    _global_rng = np.random.default_rng(value)
    return _global_rng


def get_rng(rng=None, owner="get_rng"):
    """``rng`` if given (a Generator, or a non-negative int seed), else the global generator.
    A bool is refused: ``Dropout(0.5, True)``, PyTorch's ``inplace`` in that place, would
    otherwise seed every such layer alike."""
    if rng is None:
        return _global_rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"{owner}: expected rng to be a numpy Generator, a non-negative int seed or "
                    f"None, got {rng!r}")
