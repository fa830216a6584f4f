"""Input validation shared by every layer: clear errors that name the layer, what was
expected and what came. Nothing is silently cast or broadcast."""
import numpy as np


#: The dtypes every layer computes in (the fast paths' kernels are compiled for these two).
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(owner, dtype, what="dtype"):
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise (None too: NumPy
    would read it as float64)."""
    try:
        resolved = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        resolved = None
    # not ``resolved in FLOAT_DTYPES`` alone: NumPy's dtype == None is True for float64
    if resolved is None or resolved not in FLOAT_DTYPES:
        shown = repr(dtype) if resolved is None else resolved
        raise TypeError(f"{owner}: expected {what} float32 or float64, got {shown}")
    return resolved


def check_size(owner, name, value):
    """Return ``value`` as an int if it is a positive integer (a size: features, channels,
    units), else raise."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
        raise ValueError(f"{owner}: expected {name} to be a positive int, got {value!r}")
    return int(value)


def check_flag(owner, name, value):
    """Return ``value`` as a bool if it is True or False (a string such as ``'no'`` would be
    truthy), else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected {name} to be True or False, got {value!r}")
    return bool(value)


def check_int(owner, name, value):
    """Return ``value`` as an int if it is an integer (not a bool), else raise."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected {name} to be an int, got {value!r}")
    return int(value)


def check_real(owner, name, value, low=-np.inf, high=np.inf):
    """Return ``value`` as a float if it is a finite real number in ``[low, high]`` (not a
    bool or a string), else raise."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected {name} to be a number, got {value!r}")
    if not (np.isfinite(value) and low <= value <= high):
        bounds = f"in [{low}, {high}]" if np.isfinite(low) and np.isfinite(high) else (
            f">= {low}" if np.isfinite(low) else f"<= {high}" if np.isfinite(high) else "finite")
        raise ValueError(f"{owner}: expected {name} {bounds}, got {value!r}")
    return float(value)


def check_float_array(owner, x, what="input", dtype=None):
    """Return ``x`` if it is a float32 or float64 ndarray (of ``dtype`` when given), else raise."""
    if not isinstance(x, np.ndarray) or isinstance(x, (np.matrix, np.ma.MaskedArray)):
        # np.matrix's * is a matrix product; a masked array's mask would be ignored
        raise TypeError(f"{owner}: expected {what} to be a numpy array, got {type(x).__name__}")
    if dtype is not None and x.dtype != dtype:
        layer = f" or the layer with .astype(np.{x.dtype})" if x.dtype in FLOAT_DTYPES else ""
        raise TypeError(
            f"{owner}: expected {what} of dtype {np.dtype(dtype)} (the layer's dtype), got {x.dtype}; "
            f"convert the array with .astype(np.{np.dtype(dtype)}){layer}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: expected {what} of dtype float32 or float64, got {x.dtype}")
    return x


def check_shape(owner, x, expected, what="input"):
    """Check ``x.shape`` against ``expected``, a tuple whose entries are ints or a name
    (str) for a free dimension, e.g. ``("N", 3, "H", "W")``."""
    ok = x.ndim == len(expected) and all(
        isinstance(e, str) or x.shape[i] == e for i, e in enumerate(expected))
    if not ok:
        shown = "(" + ", ".join(str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ValueError(f"{owner}: expected {what} of shape {shown}, got {x.shape}")
    return x
