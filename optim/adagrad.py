"""`Adagrad`: per-coordinate step sizes shrinking with the sum of squared gradients."""
import numpy as np

from .optimizer import Optimizer, _nonneg

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011), PyTorch's ``torch.optim.Adagrad`` formula.

    For a parameter ``x`` with gradient ``g`` (both of the parameter's shape and dtype), at
    step ``t = 1, 2, ...``, every operation elementwise::

        g <- g + weight_decay * x                      (if weight_decay != 0)
        lr_t = lr / (1 + (t - 1) * lr_decay)
        s <- s + g**2                                  ("sum", starts at initial_accumulator_value)
        x <- x - lr_t * g / (sqrt(s) + eps)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate, >= 0.
    eps : float
        >= 0, added to the denominator (outside the square root).
    weight_decay : float
        >= 0, L2 penalty added to the gradient.
    lr_decay : float
        >= 0, learning-rate decay per step as above.
    initial_accumulator_value : float
        >= 0, starting value of every entry of ``s``.

    State per parameter: ``step`` and ``sum``.
    """

    _hyper_names = ("eps", "weight_decay", "lr_decay", "initial_accumulator_value")

    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0, lr_decay=0.0,
                 initial_accumulator_value=0.0):
        self.eps = _nonneg("Adagrad", "eps", eps)
        self.weight_decay = _nonneg("Adagrad", "weight_decay", weight_decay)
        self.lr_decay = _nonneg("Adagrad", "lr_decay", lr_decay)
        self.initial_accumulator_value = _nonneg("Adagrad", "initial_accumulator_value",
                                                 initial_accumulator_value)
        super().__init__(params, lr)

    def _init_state(self, p):
        st = super()._init_state(p)
        st["sum"] = np.full_like(p.data, self.initial_accumulator_value)
        return st

    def _update(self, i, x, g, st):
        g = self._l2(i, x, g, self.weight_decay)           # scratch slot 0 (or p.grad)
        s = st["sum"]
        d = self._scratch(i, 1)
        clr = self.lr / (1 + (st["step"] - 1) * self.lr_decay)

        np.multiply(g, g, out=d)                            # s <- s + g^2
        s += d
        np.sqrt(s, out=d)                                   # d <- g / (sqrt(s) + eps)
        d += self.eps
        np.divide(g, d, out=d)
        d *= clr
        x -= d
