"""Data for handprop: mini-batching, image data sets, and generated sequence tasks.

Everything here needs only NumPy and the standard library.

- :class:`DataLoader` -- ``(xb, yb)`` mini-batches, shuffled reproducibly with ``seed``.
- Image data sets, returned Keras-style as ``((x_train, y_train), (x_test, y_test))`` with
  ``x`` float32 ``(N, 1, H, W)`` in [0, 1] and ``y`` int64 ``(N,)``:
  :func:`load_digits` (8x8, bundled), :func:`load_mnist` and :func:`load_fashion_mnist`
  (28x28, read from IDX files by :func:`read_idx`).
- :func:`load_mnist1d`: MNIST-1D, ``(4000, 40)`` / ``(1000, 40)`` signals, bundled.
- Sequence tasks, batch first ``(N, T, F)``: :func:`adding_problem` and :func:`copy_task`
  (long memory), :func:`noisy_sine` and :func:`mackey_glass` with :func:`sliding_windows`
  (forecasting), :func:`image_rows` (an image read row by row).

Example::

    (x, y), (x_test, y_test) = datasets.load_digits()
    for xb, yb in datasets.DataLoader(x, y, batch_size=64, shuffle=True, seed=0):
        ...
"""
from .digits import load_digits
from .idx import load_fashion_mnist, load_mnist, read_idx, write_idx
from .loader import DataLoader
from .mnist1d import generate_mnist1d, load_mnist1d
from .sequences import (adding_problem, copy_task, image_rows, mackey_glass, noisy_sine,
                        sliding_windows)

__all__ = [
    "DataLoader",
    "read_idx", "write_idx", "load_mnist", "load_fashion_mnist",
    "load_digits",
    "load_mnist1d", "generate_mnist1d",
    "adding_problem", "copy_task", "noisy_sine", "mackey_glass", "sliding_windows", "image_rows",
]
