"""numba kernels: the hot loops of the layers' fast paths, one module per layer family.

Each kernel's docstring names the readable NumPy reference it must equal.

Thread pools. A network alternates NumPy's OpenBLAS products (convolutions, dense layers) with
numba's parallel loops (max pooling). Both libraries' worker threads busy-wait after each call
-- OpenBLAS's for about 0.1 s, those of numba's default OpenMP layer for milliseconds -- so with
several threads each pool steals the cores the other needs next: on 2 cores, forward and
backward of the 5x5 convolution of ``benchmarks.kernels`` followed by a 2x2 max-pool took 35 ms
on the OpenMP layer and 24 ms on ``workqueue``. The threads of numba's ``workqueue`` layer
sleep when idle, so handprop picks that layer unless the program chose one first
(``NUMBA_THREADING_LAYER``, or ``numba.config.THREADING_LAYER`` set before this import); the
choice is fixed at numba's first parallel call or thread-count query (a recurrent layer's
forward asks how many threads to share its batch among). ``workqueue`` stops the process if
two Python threads are inside parallel kernels at once, so handprop's take turns
(``parallel_kernel``).

A convolution's matrix products, cut into chunks of the batch that fit in cache (32 by 400 by
768 for the 5x5 convolution of ``benchmarks.kernels``), are too small for OpenBLAS to split
well over two threads: forward and backward ran no faster on two threads than on one. So
``share_chunks`` deals whole chunks to the threads instead, each running its chunks with numba
and BLAS on one thread (the 5x5 convolution 1.8x faster than on one thread in the README's
table). Its threads also share out a single large im2col or col2im
(``layers/kernels/conv.py``): plain Python threads running a loop that releases the GIL, with
nothing to compile beyond the serial loop.
"""
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
from threadpoolctl import ThreadpoolController

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


_share_lock = threading.Lock()
_executor = _blas = _blas_limit = None


def _forget_threads_in_child():
    """A forked child has none of its parent's threads, nor a lock one of them held, nor the
    reason for a BLAS limit one of them had set: it gets fresh locks, its BLAS threads back,
    and starts its own pool when it needs one."""
    global _launch_lock, _share_lock, _executor, _blas, _blas_limit
    if _blas_limit is not None:
        _blas_limit.restore_original_limits()
    _launch_lock, _share_lock = threading.Lock(), threading.Lock()
    _executor = _blas = _blas_limit = None


if hasattr(os, "register_at_fork"):          # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_threads_in_child)


def _alone(work, t, part):
    """``work(t, part)`` with numba on one thread: the threads are the parallelism, their
    kernels run serially (numba's count is per thread: the caller gets its own back)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return work(t, part)
    finally:
        numba.set_num_threads(before)


def share_chunks(work, chunks):
    """``[work(t, chunks[t::T]) for t in range(T)]``, the ``T`` calls running at once -- the
    first on the calling thread, the others on threads of a pool -- ``T`` being numba's thread
    count (at most one thread per chunk); with one thread, a plain call. Inside the calls
    numba runs on one thread, and BLAS too -- in the whole process, as threadpoolctl sets it:
    another Python thread's BLAS products run on one thread meanwhile. Calls from several
    Python threads take turns. The results come in order of ``t``, so a sum over them is the
    same bits from run to run (for a given thread count)."""
    global _executor, _blas, _blas_limit
    T = min(numba.get_num_threads(), len(chunks))
    if T <= 1:
        return [work(0, chunks)]
    with _share_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS - 1, "handprop")
            _blas = ThreadpoolController()
        futures = []
        try:
            with _blas.limit(limits=1, user_api="blas") as _blas_limit:
                try:
                    for t in range(1, T):   # (waking a pool thread costs 0.3-0.4 ms here: one fewer)
                        futures.append(_executor.submit(_alone, work, t, chunks[t::T]))
                except RuntimeError:        # the interpreter is exiting: no new threads
                    pass
                try:
                    first = _alone(work, 0, chunks[0::T])
                finally:
                    wait(futures)   # after Ctrl-C too, the calls end before BLAS and the lock are freed
        finally:
            _blas_limit = None      # once BLAS is restored: a child forked before restores it itself
        # Parts no thread could take (at exit) run here, in order, numba on one thread as in
        # the pool: a kernel inside must not come back for the lock this thread holds.
        return ([first] + [future.result() for future in futures]
                + [_alone(work, t, chunks[t::T]) for t in range(len(futures) + 1, T)])
