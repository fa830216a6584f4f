"""Runnable benchmark scripts: ``python -m benchmarks.NAME``. Never imported by the library.

Every script alternates NumPy's OpenBLAS products with numba's parallel loops. Out of the box
both thread pools busy-wait after each call, so on a small machine each steals the cores the
other needs next. Unless set otherwise, OpenBLAS's threads sleep at once and numba runs on its
``workqueue`` layer; this must happen before NumPy and numba are imported, hence here.
"""
import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
