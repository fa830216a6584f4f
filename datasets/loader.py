"""``DataLoader``: mini-batches of paired arrays, in order or shuffled reproducibly."""
import math

import numpy as np

from .checks import check_flag, check_int, rng_from_seed


def _check_array(name, value):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"DataLoader: expected {name} to be a numpy array, got {type(value).__name__}")
    if value.ndim < 1:
        raise ValueError(f"DataLoader: expected {name} to have a sample axis (ndim >= 1), got a 0-d array")


class DataLoader:
    """Iterate over ``(xb, yb)`` mini-batches of two arrays that share their first axis.

    Parameters
    ----------
    x : np.ndarray, shape ``(N, ...)``
        Inputs, e.g. images ``(N, C, H, W)`` or sequences ``(N, T, F)``; any dtype.
    y : np.ndarray, shape ``(N, ...)``
        Targets, e.g. class labels ``(N,)`` / ``(N, T)`` or regression targets ``(N, K)``.
    batch_size : int >= 1
    shuffle : bool
        Visit the samples in a new random order every epoch.
    seed : int, np.random.SeedSequence, np.random.Generator or None
        Seeds the loader's own generator ``np.random.default_rng(seed)``, created once (a
        Generator is used as it is, its state shared with the caller). Each
        epoch (each ``iter(loader)``) draws the next permutation from it, so epochs differ from
        one another, while two loaders built with the same seed yield the same sequence of
        epochs. ``None`` takes fresh entropy from the operating system.
    drop_last : bool
        Skip the final batch when it is smaller than ``batch_size``.

    Yields
    ------
    (xb, yb)
        ``xb`` shaped ``(B, ...)`` like ``x`` and ``yb`` ``(B, ...)`` like ``y``, with the same
        dtypes, ``B = batch_size`` except perhaps for the last batch. Batches are copies: writing
        into them leaves ``x`` and ``y`` unchanged. Each epoch yields every sample exactly once
        (with ``drop_last``, at most once: the ``N % batch_size`` left over are skipped).

    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(self, x, y, batch_size, shuffle=False, seed=None, drop_last=False):
        _check_array("x", x)
        _check_array("y", y)
        if len(x) != len(y):
            raise ValueError(
                f"DataLoader: expected x and y with the same number of samples (first axis), "
                f"got x of shape {x.shape} and y of shape {y.shape}")
        self.x, self.y = x, y
        self.batch_size = check_int("DataLoader", "batch_size", batch_size, 1)
        self.shuffle = check_flag("DataLoader", "shuffle", shuffle)
        self.drop_last = check_flag("DataLoader", "drop_last", drop_last)
        self.rng = rng_from_seed("DataLoader", seed)

    @property
    def n_samples(self):
        """Number of samples ``N``."""
        return len(self.x)

    def __len__(self):
        if self.drop_last:
            return self.n_samples // self.batch_size
        return math.ceil(self.n_samples / self.batch_size)

    def _order(self):
        if self.shuffle:
            return self.rng.permutation(self.n_samples)
        return np.arange(self.n_samples)

    def __iter__(self):
        return self._batches(self._order())       # the epoch's order drawn now, not at first next()

    def _batches(self, order):
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]

    def __repr__(self):
        return (f"DataLoader(n_samples={self.n_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)})")
