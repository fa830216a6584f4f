"""numba kernels: the hot loops of the layers' fast paths, one module per layer family.

Each kernel's docstring names the readable NumPy reference it must equal."""
