"""Test-suite settings: hypothesis draws the same examples on every run (a CI failure can be
reproduced locally) and never times out on the first, JIT-compiling call; every test leaves
the thread counts as it found them."""
import sys

import numba
import pytest
from hypothesis import settings

try:
    import torch
except ImportError:
    torch = None

settings.register_profile("handprop", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("handprop")


@pytest.fixture(autouse=True)
def restore_thread_counts():
    """A benchmark's ``main`` limits BLAS, numba and PyTorch to its ``--threads``: put them back
    after each test, so later tests (the parallel kernels') run on the threads they expect."""
    numba_threads, torch_threads = numba.get_num_threads(), torch and torch.get_num_threads()
    yield
    if "benchmarks.harness" in sys.modules:
        sys.modules["benchmarks.harness"].release_blas_limits()
    numba.set_num_threads(numba_threads)
    if torch:
        torch.set_num_threads(torch_threads)


@pytest.fixture
def numba_threads():
    """``numba_threads(n)`` runs the test on ``n`` numba threads, or skips it where numba has
    fewer (``restore_thread_counts`` puts the count back)."""
    def set_threads(n):
        if numba.config.NUMBA_NUM_THREADS < n:
            pytest.skip(f"needs {n} numba threads")
        numba.set_num_threads(n)
    return set_threads
