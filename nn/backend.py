"""The kernel switch: run every layer's (and ``optim.Adam``'s) readable NumPy reference instead
of its fast path.

>>> with nn.use_reference():
...     y = model(x)          # the same math, written for reading, not for speed

Both paths compute the same function to float rounding; tests hold them to it. The switch
belongs to the thread (the context) that enters the block: other threads keep their own.
"""
from contextlib import contextmanager
from contextvars import ContextVar

from .checks import check_flag

_reference = ContextVar("handprop_reference", default=False)


def reference_enabled():
    """True inside ``use_reference()``: layers and ``optim.Adam`` then run their reference
    implementation."""
    return _reference.get()


@contextmanager
def use_reference(enabled=True):
    """Context manager that makes layers use their readable reference path (or, with
    ``enabled=False``, their fast path) until the block ends, in this thread. A layer
    remembers which path its forward took, so a backward after the block still matches its
    forward."""
    token = _reference.set(check_flag("use_reference", "enabled", enabled))
    try:
        yield
    finally:
        _reference.reset(token)
