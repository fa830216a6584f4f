"""Runnable benchmark scripts: ``python -m benchmarks.NAME``. Never imported by the library."""
