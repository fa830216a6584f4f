"""MNIST-1D (Greydanus & Kobak, 2020): 5000 one-dimensional "digits" of 40 samples each.

Each signal is one of ten hand-made 1-D templates, padded, scaled, translated, sheared,
with correlated and i.i.d. noise added, then resampled to 40 points, so a class is told by a
shape that can sit anywhere in the signal. It separates models with and without a spatial
prior far better than MNIST does. The authors report test accuracies of 32% (logistic
regression), 68% (MLP), 94% (CNN) and 91% (GRU); on the "shuffled" variant, with the 40
positions permuted, the MLP is unchanged while the CNN and GRU fall to 56% and 57%.

The arrays ship in ``data/mnist1d.npz``: exactly what the ``mnist1d`` package's generator
produces with its default arguments (``make_dataset(get_dataset_args())``: 5000 samples,
seed 42, 4000/1000 train/test split, zero mean and unit variance over the whole set), stored
as float32. Refresh them with ``python -m datasets.mnist1d`` (needs ``pip install mnist1d``).
Source: https://github.com/greydanus/mnist1d, Apache License 2.0; see
``data/MNIST1D_LICENSE.txt``.
"""
import random
from pathlib import Path

import numpy as np

from .checks import check_flag

MNIST1D_FILE = Path(__file__).parent / "data" / "mnist1d.npz"
_KEYS = ("x_train", "y_train", "x_test", "y_test", "shuffle_permutation")


def _split(arrays, shuffle):
    """Keras-style tuple from the stored arrays; columns permuted when ``shuffle``."""
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if shuffle:
        perm = arrays["shuffle_permutation"]
        x_train, x_test = x_train[:, perm], x_test[:, perm]
    return ((x_train.astype(np.float32), arrays["y_train"].astype(np.int64)),
            (x_test.astype(np.float32), arrays["y_test"].astype(np.int64)))


def load_mnist1d(shuffle=False):
    """Load MNIST-1D from the bundled file (no network, no extra package).

    Parameters
    ----------
    shuffle : bool
        Return the "shuffled" variant of the paper: the 40 positions of every signal, train
        and test alike, reordered by one fixed permutation. It is the permutation the
        ``mnist1d`` generator itself draws for ``shuffle_seq=True`` (from NumPy's global
        generator seeded with 42, right after it shuffles the samples), stored in the
        bundled file as ``shuffle_permutation``; so this equals the package's own shuffled
        data set.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x_train`` float32 ``(4000, 40)``, ``y_train`` int64 ``(4000,)``, ``x_test`` float32
        ``(1000, 40)``, ``y_test`` int64 ``(1000,)``; labels 0..9. For a ``Conv1D`` add the
        channel axis: ``x[:, None, :]`` is ``(N, 1, 40)``; for an RNN, ``x[:, :, None]`` is
        ``(N, 40, 1)``.
    """
    check_flag("load_mnist1d", "shuffle", shuffle)
    with np.load(MNIST1D_FILE, allow_pickle=False) as f:
        arrays = {key: f[key] for key in _KEYS}
    return _split(arrays, shuffle)


def _import_generator():
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ImportError(
            "generating MNIST-1D needs the mnist1d package: pip install \"handprop[bench]\" "
            "or pip install mnist1d (load_mnist1d() needs neither: it reads the bundled copy)"
        ) from exc
    return get_dataset_args, make_dataset


def generate_mnist1d():
    """Run the ``mnist1d`` package's generator with its default arguments.

    The generator reseeds NumPy's and Python's global random generators; their states are
    restored afterwards.

    Returns
    -------
    dict of np.ndarray
        ``x_train`` float32 ``(4000, 40)``, ``y_train`` int64 ``(4000,)``, ``x_test`` float32
        ``(1000, 40)``, ``y_test`` int64 ``(1000,)``, ``shuffle_permutation`` int64 ``(40,)``
        (the permutation the generator would apply with ``shuffle_seq=True``).

    Raises
    ------
    ImportError
        If ``mnist1d`` is not installed, saying how to install it.
    """
    get_dataset_args, make_dataset = _import_generator()
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        args = get_dataset_args()
        data = make_dataset(args)
        # With shuffle_seq=True the generator's next draw would be this permutation.
        perm = np.random.permutation(args.final_seq_length)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x_train": data["x"].astype(np.float32), "y_train": data["y"].astype(np.int64),
            "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64),
            "shuffle_permutation": perm.astype(np.int64)}


def write_mnist1d_cache(path=MNIST1D_FILE):
    """Regenerate MNIST-1D (see :func:`generate_mnist1d`) and save it, compressed, to ``path``.

    The file is written to a temporary name first, then renamed. Returns the path.
    """
    path = Path(path)
    arrays = generate_mnist1d()
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


if __name__ == "__main__":
    print(f"wrote {write_mnist1d_cache()}")
