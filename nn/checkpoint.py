"""Checkpoints: a module's (or an optimizer's) ``state_dict`` as an ``.npz`` file, never
pickled.

``save`` writes atomically (a temporary file in the same folder, then ``os.replace``), so a
crash never leaves a half-written checkpoint under the real name. ``load`` reads with
``allow_pickle=False``, refuses files that are not handprop checkpoints, and checks every key
and shape before changing anything (``load_state_dict`` is strict).
"""
import math
import os
import uuid
import warnings
import zipfile
import zlib

import numpy as np

_MARKER = "__handprop_checkpoint__"
_FORMAT_VERSION = 1
_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"


def save(obj, path):
    """Write ``obj.state_dict()`` to ``path`` (an ``.npz`` file) atomically: a module's, or an
    optimizer's (its numbers stored as 0-d arrays), to resume training from. A symbolic link
    is written through: its target gets the checkpoint."""
    path = _as_path(path, "save")
    if os.path.islink(path):
        path = os.path.realpath(path)
    state = _numeric_state(obj)
    if _MARKER in state:
        raise ValueError(f"save: {_MARKER!r} is reserved and cannot be a state_dict key")
    if os.path.isdir(path) or not os.path.basename(path):
        raise IsADirectoryError(f"save: {path!r} is a folder; expected a file name such as model.npz")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: no folder {folder!r} to write {path!r} into")
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}.npz")   # open() applies the umask
    try:
        with open(tmp, "xb") as f:
            _write_npz(f, {_MARKER: np.array(_FORMAT_VERSION), **state})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _as_path(path, owner):
    """``path`` (a str or an ``os.PathLike``, ``~`` expanded) as a str, or a clear error."""
    try:
        return os.path.expanduser(os.fspath(path))
    except TypeError:
        raise TypeError(f"{owner}: expected path to be a str or os.PathLike, "
                        f"got {type(path).__name__}") from None


def _numeric_state(obj):
    """``obj.state_dict()`` as numeric arrays (numbers as 0-d arrays), or a clear error."""
    if not callable(getattr(obj, "state_dict", None)) or not callable(getattr(obj, "load_state_dict", None)):
        raise TypeError(f"save: expected an nn.Module or an optimizer (with state_dict() and "
                        f"load_state_dict()), got {type(obj).__name__}")
    state = {}
    for key, value in obj.state_dict().items():
        if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            what = f"a {value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
            raise TypeError(f"save: state_dict entry {key!r} is {what}; a checkpoint holds numeric "
                            "arrays only, never pickled objects")
        state[key] = value
    return state


def _write_npz(f, arrays):
    """The ``.npz`` that ``np.savez`` writes (one ``NAME.npy`` per array in an uncompressed
    zip), for any key: ``np.savez`` takes its arrays as keyword arguments, so a key named
    ``file`` or ``allow_pickle`` would collide with its own parameters."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, value, allow_pickle=False)


def read_checkpoint(path):
    """The ``{name: array}`` stored in a handprop checkpoint, with clear errors for a
    missing, empty, truncated, pickled or foreign file. Only a zip (``.npz``) is ever opened,
    and with ``allow_pickle=False``."""
    path = _as_path(path, "load")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint at {path!r}")
    with open(path, "rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if magic.startswith(_NPY_MAGIC):
        raise ValueError(f"load: {path!r} is a single .npy array, not a handprop checkpoint (.npz)")
    if not magic.startswith(_ZIP_MAGIC):
        what = "empty" if not magic else "not an .npz file"
        raise ValueError(f"load: {path!r} is {what}, not a handprop checkpoint")
    try:
        with np.load(path, allow_pickle=False) as data:
            if _MARKER not in data.files:
                raise ValueError(f"load: {path!r} is a zip archive (as .npz files are) but not a "
                                 f"handprop checkpoint (no {_MARKER!r} entry); keys found: "
                                 f"{sorted(data.files)[:8]}")
            marker = _entry(data, _MARKER, path)
            if marker.shape != () or not np.issubdtype(marker.dtype, np.integer):
                raise ValueError(f"load: {path!r} is not a valid checkpoint (its {_MARKER!r} entry "
                                 f"should be an integer format number, got {marker.dtype} of "
                                 f"shape {marker.shape})")
            version = int(marker)
            if not 1 <= version <= _FORMAT_VERSION:     # formats are numbered from 1
                raise ValueError(f"load: {path!r} has checkpoint format {version}; this handprop "
                                 f"reads formats 1 to {_FORMAT_VERSION}")
            return {k: _entry(data, k, path) for k in data.files if k != _MARKER}
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise ValueError(f"load: {path!r} contains pickled objects; refusing to unpickle a checkpoint") from e
        if str(e).startswith("load:"):
            raise
        raise ValueError(f"load: {path!r} is not a valid checkpoint ({e})") from e
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, zlib.error) as e:
        raise ValueError(f"load: {path!r} is truncated or corrupt ({type(e).__name__}: {e})") from e


def _entry(data, key, path):
    """Entry ``key`` of an open ``.npz``, once its header's shape fits the bytes the entry
    holds (a corrupt header must not ask for terabytes); NumPy hands back raw bytes for an
    entry that is not an ``.npy`` array."""
    member = key + ".npy"
    if member in data.zip.namelist():
        with data.zip.open(member) as f:
            magic = f.read(len(_NPY_MAGIC) + 2)           # the prefix, then the format version
            read_header = {b"\x01\x00": np.lib.format.read_array_header_1_0,
                           b"\x02\x00": np.lib.format.read_array_header_2_0}.get(magic[-2:])
            if magic.startswith(_NPY_MAGIC) and read_header is not None:
                shape, _, dtype = read_header(f)
                needed = math.prod(shape) * dtype.itemsize
                held = data.zip.getinfo(member).file_size - f.tell()
                if needed > held:
                    raise ValueError(f"load: {path!r} is truncated or corrupt (its entry {key!r} "
                                     f"claims shape {shape} of {dtype}, {needed} bytes, and holds "
                                     f"{held})")
    value = data[key]
    if not isinstance(value, np.ndarray):
        raise ValueError(f"load: {path!r} is not a valid checkpoint (its entry {key!r} is not "
                         f"an .npy array)")
    return value


def load(obj, path, strict=True):
    """Load a checkpoint written by ``save`` into ``obj``, a module or an optimizer (in place);
    returns ``obj``. With ``strict=False`` (modules only) keys may be missing or unexpected:
    a warning lists them."""
    from .module import Module
    if not callable(getattr(obj, "load_state_dict", None)):
        raise TypeError(f"load: expected an nn.Module or an optimizer (with load_state_dict()), "
                        f"got {type(obj).__name__}")
    if not isinstance(obj, Module) and not strict:
        raise ValueError(f"load: strict=False is for modules; an optimizer's state loads whole, "
                         f"got strict=False for {type(obj).__name__}")
    path = _as_path(path, "load")
    state = read_checkpoint(path)
    try:
        result = obj.load_state_dict(state, strict=strict) if isinstance(obj, Module) else obj.load_state_dict(state)
    except (ValueError, TypeError) as e:
        raise type(e)(f"load: {path!r}: {e}") from e
    if not strict and (result[0] or result[1]):
        warnings.warn(f"load: {path!r} into {type(obj).__name__} (strict=False) left "
                      f"{len(result[0])} keys missing {result[0][:8]} and {len(result[1])} unexpected "
                      f"{result[1][:8]}", UserWarning, stacklevel=2)
    return obj
