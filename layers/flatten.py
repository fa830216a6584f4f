"""`Flatten`: reshape ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)``."""
import math

from nn import Module
from nn.checks import check_float_array, check_int


class Flatten(Module):
    """``y = x.reshape(N, -1)`` from ``start_dim`` on; backward reshapes ``dy`` back to ``x``'s shape."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = check_int("Flatten", "start_dim", start_dim)

    def forward(self, x):
        check_float_array("Flatten", x)
        if not -x.ndim <= self.start_dim < x.ndim:
            raise ValueError(f"Flatten: expected start_dim={self.start_dim} to be an axis of the input, "
                             f"in [{-x.ndim}, {x.ndim - 1}], got input of shape {x.shape}")
        self._shape = x.shape
        start = self.start_dim % x.ndim
        # the size spelled out, not -1: an empty batch has no size to infer it from
        return x.reshape(x.shape[:start] + (math.prod(x.shape[start:]),))

    def backward(self, dy):
        """``dx = dy.reshape(x.shape)``: reshaping moves no value, so the gradient moves back unchanged."""
        return dy.reshape(self._shape)
