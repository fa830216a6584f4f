"""Weight initialisation, as PyTorch's defaults.

PyTorch initialises ``Linear`` and ``Conv`` weights with ``kaiming_uniform_(a=sqrt(5))`` and
their biases with U(-1/sqrt(fan_in), 1/sqrt(fan_in)); both reduce to the same bound
``1/sqrt(fan_in)``. Recurrent layers draw everything from U(-1/sqrt(H), 1/sqrt(H)).
"""
import math

import numpy as np

from .random import get_rng


def uniform(shape, bound, rng=None, dtype=np.float32):
    """An array of ``shape`` drawn from U(-bound, bound) in ``dtype``."""
    return get_rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def fan_in_bound(fan_in):
    """PyTorch's default bound for Linear/Conv weights and biases: 1 / sqrt(fan_in)."""
    return 1.0 / math.sqrt(fan_in)
