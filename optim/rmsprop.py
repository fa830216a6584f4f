"""`RMSprop`: divide the gradient by a running root mean square of recent gradients."""
import numpy as np

from .optimizer import Optimizer, _flag, _nonneg, _unit

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012), PyTorch's ``torch.optim.RMSprop`` formula.

    For a parameter ``x`` with gradient ``g`` (both of the parameter's shape and dtype), every
    operation elementwise::

        g <- g + weight_decay * x                      (if weight_decay != 0)
        v <- alpha * v + (1 - alpha) * g**2            ("square_avg")
        gm <- alpha * gm + (1 - alpha) * g             (centered: "grad_avg")
        d <- sqrt(v - gm**2) + eps                     (centered)
        d <- sqrt(v) + eps                             (otherwise)
        b <- momentum * b + g / d;  x <- x - lr * b    (momentum > 0)
        x <- x - lr * g / d                            (otherwise)

    ``eps`` is added outside the square root. All buffers start at zero.

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate, >= 0.
    alpha : float
        In [0, 1], smoothing constant of the running averages.
    eps : float
        >= 0, added to the denominator.
    momentum : float
        >= 0.
    weight_decay : float
        >= 0, L2 penalty added to the gradient.
    centered : bool
        Divide by the square root of an estimate of the gradient's variance (its second
        moment minus its squared mean) instead of the root of its second moment.

    State per parameter: ``step``, ``square_avg``, ``grad_avg`` (centered) and
    ``momentum_buffer`` (momentum > 0).
    """

    _hyper_names = ("alpha", "eps", "momentum", "weight_decay", "centered")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0, centered=False):
        self.alpha = _unit("RMSprop", "alpha", alpha, closed=True)     # > 1 makes v negative
        self.eps = _nonneg("RMSprop", "eps", eps)
        self.momentum = _nonneg("RMSprop", "momentum", momentum)
        self.weight_decay = _nonneg("RMSprop", "weight_decay", weight_decay)
        self.centered = _flag("RMSprop", "centered", centered)
        super().__init__(params, lr)

    def _init_state(self, p):
        st = super()._init_state(p)
        st["square_avg"] = np.zeros_like(p.data)
        if self.momentum > 0:
            st["momentum_buffer"] = np.zeros_like(p.data)
        if self.centered:
            st["grad_avg"] = np.zeros_like(p.data)
        return st

    def _update(self, i, x, g, st):
        alpha = self.alpha
        g = self._l2(i, x, g, self.weight_decay)           # scratch slot 0 (or p.grad)
        v = st["square_avg"]
        d = self._scratch(i, 1)

        v *= alpha                                          # v <- alpha v + (1 - alpha) g^2
        np.multiply(g, 1 - alpha, out=d)                    # ((1 - alpha) g) g: g*g overflows float32 sooner
        d *= g
        v += d
        if self.centered:
            gm = st["grad_avg"]                             # gm <- gm + (1 - alpha) (g - gm)
            np.subtract(g, gm, out=d)
            d *= 1 - alpha
            gm += d
            np.multiply(gm, gm, out=d)                      # d <- sqrt(v - gm^2)
            with np.errstate(invalid="ignore"):             # inf - inf where v overflowed...
                np.subtract(v, d, out=d)
            if not v.max(initial=0) < np.inf:               # ...is inf there, as torch's fused op
                np.copyto(d, v, where=np.isinf(v))          # ("not <": a NaN in v makes max NaN)
            np.sqrt(d, out=d)
        else:
            np.sqrt(v, out=d)
        d += self.eps

        np.divide(g, d, out=d)                              # d <- g / d
        if self.momentum > 0:
            b = st["momentum_buffer"]
            b *= self.momentum
            b += d
            np.multiply(b, self.lr, out=d)
        else:
            d *= self.lr
        x -= d
