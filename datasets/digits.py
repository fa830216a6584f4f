"""The bundled 8x8 handwritten digits (UCI Optical Recognition of Handwritten Digits).

1797 images of the digits 0-9, about 180 per class, by 13 writers; each pixel counts the
"on" pixels of a 4x4 block of a 32x32 bitmap, so it is an integer 0..16. Creators
E. Alpaydin and C. Kaynak (1998), UCI Machine Learning Repository, CC BY 4.0: see
``data/DIGITS_LICENSE.txt``. Small enough to train a CNN on in seconds.
"""
import gzip
from pathlib import Path

import numpy as np

from .checks import rng_from_seed

DIGITS_FILE = Path(__file__).parent / "data" / "digits.csv.gz"
N_DIGITS = 1797


def _read_digits():
    """Pixels ``(1797, 64)`` uint8 in 0..16 and labels ``(1797,)`` int64, in file order."""
    with gzip.open(DIGITS_FILE, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (N_DIGITS, 65):
        raise ValueError(f"{DIGITS_FILE}: expected a table of shape ({N_DIGITS}, 65), got {table.shape}")
    return table[:, :64].astype(np.uint8), table[:, 64]


def _stratified_split(labels, test_fraction, rng):
    """Indices ``(train, test)``: ``round(test_fraction * count)`` of each class go to test."""
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_digits(test_fraction=0.2, seed=0):
    """Load the 1797 8x8 digit images, split into train and test parts.

    The split is stratified: within each class, a permutation drawn from
    ``np.random.default_rng(seed)`` sends ``round(test_fraction * class_count)`` images to the
    test part and the rest to the train part; each part is then shuffled with the same
    generator, so classes are interleaved. The same ``(test_fraction, seed)`` always gives
    the same split (with the defaults: 1438 train, 359 test images).

    Parameters
    ----------
    test_fraction : float in (0, 1)
    seed : int

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x`` float32 ``(N, 1, 8, 8)``, pixel / 16 so in [0, 1]; ``y`` int64 ``(N,)`` in 0..9.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.floating)):
        raise TypeError(f"load_digits: expected test_fraction to be a float, got {type(test_fraction).__name__}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits: expected 0 < test_fraction < 1, got {test_fraction}")
    pixels, labels = _read_digits()
    x = (pixels.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    train, test = _stratified_split(labels, test_fraction, rng_from_seed("load_digits", seed))
    for part, indices in (("train", train), ("test", test)):
        if not len(indices):
            raise ValueError(f"load_digits: test_fraction={test_fraction} leaves the {part} part "
                             f"empty (about 180 images per class, rounded per class)")
    return (x[train], labels[train]), (x[test], labels[test])
