"""numba kernels: the hot loops of the layers' fast paths, one module per layer family.

Each kernel's docstring names the readable NumPy reference it must equal.

Thread pools. A convolution alternates NumPy's OpenBLAS products with numba's parallel loops.
Both libraries' worker threads busy-wait after each call -- OpenBLAS's for about 0.1 s, those
of numba's default OpenMP layer for milliseconds -- so with several threads each pool steals
the cores the other needs next: on 2 cores the 5x5 convolution of ``benchmarks.kernels``,
forward and backward, took 155 ms instead of 25. The threads of numba's ``workqueue`` layer sleep
when idle, so handprop picks that layer unless the program chose one first
(``NUMBA_THREADING_LAYER``, or ``numba.config.THREADING_LAYER`` set before this import); the
choice is fixed at numba's first parallel call. ``workqueue`` stops the process if two Python
threads are inside parallel kernels at once, so handprop's take turns (``parallel_kernel``).
"""
import functools
import threading

import numba

if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

_launch_lock = threading.Lock()


def parallel_kernel(function):
    """``function`` compiled with ``njit(parallel=True, cache=True)`` and launched under one
    lock shared by all such kernels: called from several Python threads, they run one after
    another, each on all of numba's threads."""
    kernel = numba.njit(parallel=True, cache=True)(function)

    @functools.wraps(function)
    def launch(*args):
        with _launch_lock:
            return kernel(*args)
    return launch
