"""Checkpoints: a module's ``state_dict`` as an ``.npz`` file, never pickled.

``save`` writes atomically (a temporary file in the same folder, then ``os.replace``), so a
crash never leaves a half-written checkpoint under the real name. ``load`` reads with
``allow_pickle=False``, refuses files that are not handprop checkpoints, and checks every key
and shape before changing anything (``load_state_dict`` is strict).
"""
import os
import tempfile
import zipfile

import numpy as np

_MARKER = "__handprop_checkpoint__"
_FORMAT_VERSION = 1


def save(module, path):
    """Write ``module.state_dict()`` to ``path`` (an ``.npz`` file) atomically."""
    path = os.fspath(path)
    state = module.state_dict()
    if _MARKER in state:
        raise ValueError(f"save: {_MARKER!r} is reserved and cannot be a state_dict key")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{_MARKER: np.array(_FORMAT_VERSION)}, **state)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path):
    """The ``{name: array}`` stored in a handprop checkpoint, with clear errors for a
    missing, truncated, pickled or foreign file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no checkpoint at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError(f"load: {path!r} is a single .npy array, not a handprop checkpoint (.npz)")
            if _MARKER not in data.files:
                raise ValueError(f"load: {path!r} is an .npz file but not a handprop checkpoint "
                                 f"(no {_MARKER!r} entry); keys found: {sorted(data.files)[:8]}")
            return {k: data[k] for k in data.files if k != _MARKER}
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise ValueError(f"load: {path!r} contains pickled objects; refusing to unpickle a checkpoint") from e
        if str(e).startswith("load:"):
            raise
        raise ValueError(f"load: {path!r} is not a valid checkpoint ({e})") from e
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"load: {path!r} is truncated or corrupt ({type(e).__name__}: {e})") from e


def load(module, path, strict=True):
    """Load a checkpoint written by ``save`` into ``module`` (in place); returns ``module``."""
    module.load_state_dict(read_checkpoint(path), strict=strict)
    return module
