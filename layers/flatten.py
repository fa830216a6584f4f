"""`Flatten`: reshape ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)``."""
import math

from nn import Module
from nn.checks import check_float_array, check_int


class Flatten(Module):
    """``Flatten(start_dim=1, end_dim=-1)``, PyTorch's: the axes ``start_dim`` to ``end_dim``
    (inclusive) become one, ``(N, C, H, W) -> (N, C*H*W)`` by default; backward reshapes ``dy``
    back to ``x``'s shape."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = check_int("Flatten", "start_dim", start_dim)
        self.end_dim = check_int("Flatten", "end_dim", end_dim)

    def forward(self, x):
        check_float_array("Flatten", x)
        if x.ndim == 0:
            raise ValueError("Flatten: expected an input with at least one axis, got a 0-d array")
        for name, axis in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -x.ndim <= axis < x.ndim:
                raise ValueError(f"Flatten: expected {name}={axis} to be an axis of the input, "
                                 f"in [{-x.ndim}, {x.ndim - 1}], got input of shape {x.shape}")
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        if start > end:
            raise ValueError(f"Flatten: expected start_dim={self.start_dim} at or before "
                             f"end_dim={self.end_dim}, got input of shape {x.shape}")
        self._shape = x.shape
        # the size spelled out, not -1: an empty batch has no size to infer it from
        return x.reshape(x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])

    def backward(self, dy):
        """``dx = dy.reshape(x.shape)``: reshaping moves no value, so the gradient moves back unchanged."""
        return dy.reshape(self._shape)

    def extra_repr(self):
        return "" if (self.start_dim, self.end_dim) == (1, -1) else f"start_dim={self.start_dim}, end_dim={self.end_dim}"
