"""The IDX file format (MNIST, Fashion-MNIST, KMNIST, EMNIST) and the MNIST-style loaders.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the payload
in C order::

    bytes 0-1   0x00 0x00
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions (>= 1)
    4 * ndim    the dimensions, big-endian uint32
    payload     prod(dims) items, big-endian for multi-byte types

Files may be gzip-compressed (recognised by the gzip magic bytes ``0x1f 0x8b``, whatever
their name).
"""
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

#: The four standard MNIST file names (each may also end in ``.gz``).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Where the Debian/Ubuntu package ``dataset-fashion-mnist`` installs the four files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Environment variable naming a folder that holds the Fashion-MNIST files.
FASHION_MNIST_ENV = "HANDPROP_FASHION_MNIST"
# How to get the files, for the errors of whoever looks for them.
FASHION_MNIST_HOWTO = (
    "To get it, either install the Debian/Ubuntu package: apt-get install dataset-fashion-mnist\n"
    "or download the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from the Zalando Research "
    "repository https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)")


# ----------------------------------------------------------------------------- reading and writing

def _read_bytes(path):
    """The file's bytes, gunzipped when they start with the gzip magic."""
    data = Path(path).expanduser().read_bytes()      # '~' as the loaders take it
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"{path}: expected a valid gzip stream (the file starts with the gzip magic "
            f"0x1f 0x8b), but decompression failed: {exc}") from None


#: The most dimensions a NumPy array can have (the header's byte allows 255).
MAX_NDIM = 64


def _parse_header(path, data):
    """Return ``(dtype, dims, header_size)`` of IDX ``data``; raise ValueError if malformed."""
    if len(data) < 4:
        raise ValueError(f"{path}: expected an IDX file of at least 4 header bytes, got {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: expected an IDX magic number starting with bytes 0x00 0x00, "
            f"got 0x{data[0]:02x} 0x{data[1]:02x}")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise ValueError(f"{path}: expected an IDX type code in {{{known}}}, got 0x{code:02X}")
    if not 1 <= ndim <= MAX_NDIM:
        raise ValueError(f"{path}: expected 1 to {MAX_NDIM} dimensions in the IDX header (NumPy's "
                         f"limit), got {ndim}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{path}: expected {header_size} header bytes for {ndim} dimensions, "
            f"got a file of {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_TYPES[code], dims, header_size


def read_idx(path):
    """Read an IDX file, raw or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    np.ndarray
        Shaped as the header's dimensions, in native byte order, with the dtype of the type code
        (uint8, int8, int16, int32, float32 or float64). The array is writable and owns its data.

    Raises
    ------
    ValueError
        Naming the file, for a broken gzip stream, a bad magic number, an unknown type code,
        zero or more than 64 dimensions, or a payload that is shorter or longer than the
        header announces.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_idx: expected path to be a str or os.PathLike, got {type(path).__name__}")
    data = _read_bytes(path)
    dtype, dims, start = _parse_header(path, data)
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - start
    if found != expected:
        problem = "truncated" if found < expected else "trailing bytes after the data"
        raise ValueError(
            f"{path}: expected a payload of {expected} bytes for shape {dims} of {dtype.name}, "
            f"got {found} bytes ({problem})")
    array = np.frombuffer(data, dtype=dtype, offset=start).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends in ``.gz``.

    ``array`` must be a numpy array of at least 1 dimension whose dtype is one the format
    knows (uint8, int8, int16, int32, float32, float64). Returns the path written.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"write_idx: expected a numpy array, got {type(array).__name__}")
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        names = ", ".join(dt.name for dt in codes)
        raise TypeError(f"write_idx: expected an array of dtype {names}; got {array.dtype}")
    if array.ndim < 1:
        raise ValueError("write_idx: expected an array of at least 1 dimension, got a 0-d array")
    if max(array.shape) >= 2 ** 32:
        raise ValueError(f"write_idx: expected every dimension below 2**32 (the format stores "
                         f"each in 32 bits), got shape {array.shape}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(Path(path).expanduser(), "wb") as f:
        f.write(header + payload)
    return path


# ----------------------------------------------------------------------------- MNIST-style loaders

def _find_file(folder, name):
    """``folder/name`` or ``folder/name.gz``, whichever exists first; else None."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _missing_files(folder):
    """The standard MNIST file names that ``folder`` lacks (with or without ``.gz``)."""
    return [name for name in MNIST_FILES.values() if _find_file(folder, name) is None]


def _load_split(images_path, labels_path):
    """One split: images ``(N, 1, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, H, W), "
            f"got {images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (N,), "
            f"got {labels.dtype} of shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"{labels_path}: expected one label per image of {images_path} "
            f"({len(images)} images), got {len(labels)} labels")
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return x, labels.astype(np.int64)


def load_mnist(path):
    """Load MNIST (or any data set in MNIST's four-file IDX layout) from the folder ``path``.

    The folder must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each with or without ``.gz``
    (the plain name is tried first).

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x`` float32 ``(N, 1, 28, 28)`` scaled to [0, 1] (pixel / 255); ``y`` int64 ``(N,)``.
        For MNIST and Fashion-MNIST, N is 60000 (train) and 10000 (test).

    Raises
    ------
    FileNotFoundError
        If a file is missing, naming the folder and the missing names.
    ValueError
        If a file is corrupt, or image and label counts disagree (naming the file).
    """
    folder = Path(path).expanduser()
    missing = _missing_files(folder)
    if missing:
        raise FileNotFoundError(
            f"{folder}: expected the four MNIST IDX files (each with or without .gz); "
            f"missing: {', '.join(missing)}")
    found = {key: _find_file(folder, name) for key, name in MNIST_FILES.items()}
    train = _load_split(found["train_images"], found["train_labels"])
    test = _load_split(found["test_images"], found["test_labels"])
    return train, test


def _fashion_candidates(path):
    """``(description, folder)`` pairs in search order."""
    candidates = []
    if path is not None:
        candidates.append(("path argument", Path(path).expanduser()))
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        candidates.append((f"${FASHION_MNIST_ENV}", Path(env).expanduser()))
    candidates.append(("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST_DIR))
    return candidates


def load_fashion_mnist(path=None):
    """Load Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; Zalando Research, MIT license).

    Looks for the four IDX files (see :func:`load_mnist`) in, in order: the folder ``path``
    when given, the folder named by the environment variable ``HANDPROP_FASHION_MNIST`` when
    set, and ``/usr/share/datasets/fashion-mnist`` where the Debian/Ubuntu package
    ``dataset-fashion-mnist`` installs them. The first folder holding all four is loaded.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x`` float32 ``(60000, 1, 28, 28)`` / ``(10000, 1, 28, 28)`` in [0, 1];
        ``y`` int64 class labels 0..9 (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat,
        5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot).

    Raises
    ------
    FileNotFoundError
        Listing every folder searched, what each lacked, and how to get the files.
    ValueError
        If the folder found holds a corrupt file.
    """
    searched = []
    for what, folder in _fashion_candidates(path):
        missing = _missing_files(folder) if folder.is_dir() else None
        if missing == []:
            return load_mnist(folder)
        reason = "no such folder" if missing is None else "missing " + ", ".join(missing)
        searched.append(f"  - {folder} ({what}): {reason}")
    raise FileNotFoundError(
        "Fashion-MNIST not found. Searched:\n" + "\n".join(searched) + "\n" + FASHION_MNIST_HOWTO
        + f" and pass their folder as path=... or set {FASHION_MNIST_ENV}=/that/folder.")
