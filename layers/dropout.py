"""`Dropout`: inverted dropout."""
import numpy as np

from nn import Module
from nn.checks import check_float_array, check_real
from nn.random import get_rng


def dropout_scale(rng, shape, p, dtype):
    """``m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` per element, drawn from ``rng`` (the
    global generator when None); all zeros for ``p = 1``."""
    keep = (rng or get_rng()).random(shape) >= p
    return keep * np.asarray(0.0 if p == 1.0 else 1.0 / (1.0 - p), dtype=dtype)


class Dropout(Module):
    """In training ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` drawn per element, so
    ``E[y] = x`` and eval needs no rescaling: in eval mode ``y = x``.

    Backward applies the same mask: ``dx = dy * m / (1 - p)``. ``p = 1`` drops everything.
    Shapes: ``x`` of any shape -> ``y`` of the same shape.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_real("Dropout", "p", p, 0.0, 1.0)
        # None: the global generator at each call
        self._rng = None if rng is None else get_rng(rng, type(self).__name__)
        self._scale = None

    def forward(self, x):
        check_float_array("Dropout", x)
        if not self.training or self.p == 0.0:
            self._scale = None
            return x
        self._scale = dropout_scale(self._rng, x.shape, self.p, x.dtype)
        return x * self._scale

    def backward(self, dy):
        """``dx = dy * m / (1 - p)`` with the forward's mask (identity in eval)."""
        return dy if self._scale is None else dy * self._scale

    def extra_repr(self):
        return f"p={self.p}"
