"""Runnable benchmark scripts: ``python -m benchmarks.NAME``. Never imported by the library.

Every script alternates NumPy's OpenBLAS products with numba's parallel loops, and OpenBLAS's
threads busy-wait for about 0.1 s after each product, taking the cores the loops need next
(``layers/kernels/__init__.py`` explains, and settles numba's side). Unless set otherwise they
sleep at once in the benchmarks: the setting must precede NumPy's import, hence this file.
``layers`` is imported right after, so that it picks numba's threading layer before a script
sets numba's thread count.
"""
import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import layers  # noqa: E402,F401
