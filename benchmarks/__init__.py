"""Runnable benchmark scripts: ``python -m benchmarks.NAME``. Never imported by the library.

Every script alternates NumPy's OpenBLAS products with numba's parallel loops. OpenBLAS's
threads busy-wait for about 0.1 s after each product, taking the cores that the loops need next
(handprop's own choice of numba's sleeping ``workqueue`` threads, in ``layers/kernels``, covers
numba's side). Unless set otherwise, OpenBLAS's threads here sleep at once; this must happen
before NumPy is imported, hence here. ``layers`` is imported right after, so that its choice of
numba's threading layer is made before a script first sets numba's thread count.
"""
import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import layers  # noqa: E402,F401
