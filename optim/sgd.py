"""`SGD`: stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay."""
import numpy as np

from .optimizer import Optimizer, _flag, _nonneg, _unit

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, PyTorch's ``torch.optim.SGD`` formula.

    For a parameter ``x`` with gradient ``g`` (both of the parameter's shape and dtype), at
    step ``t = 1, 2, ...``::

        g <- g + weight_decay * x                      (if weight_decay != 0)
        if momentum != 0:
            b <- g                                     (t = 1)
            b <- momentum * b + (1 - dampening) * g    (t > 1)
            g <- g + momentum * b                      (nesterov)
            g <- b                                     (otherwise)
        x <- x - lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate, >= 0 (required).
    momentum : float
        Momentum factor, >= 0 (default 0: plain SGD, no buffer is kept).
    nesterov : bool
        Nesterov momentum in PyTorch's form above; needs ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float
        L2 penalty coefficient, >= 0, added to the gradient.
    dampening : float
        In [0, 1]; the gradient enters the momentum buffer scaled by ``1 - dampening``
        (from the second step on).

    State per parameter: ``step`` and, when ``momentum != 0``, ``momentum_buffer`` (``b``).
    """

    _hyper_names = ("momentum", "nesterov", "weight_decay", "dampening")

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        self.momentum = _nonneg("SGD", "momentum", momentum)
        self.nesterov = _flag("SGD", "nesterov", nesterov)
        self.weight_decay = _nonneg("SGD", "weight_decay", weight_decay)
        self.dampening = _unit("SGD", "dampening", dampening, closed=True)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening == 0, "
                             f"got momentum={self.momentum!r}, dampening={self.dampening!r}")
        super().__init__(params, lr)

    def _init_state(self, p):
        st = super()._init_state(p)
        if self.momentum != 0:
            st["momentum_buffer"] = np.zeros_like(p.data)
        return st

    def _update(self, i, x, g, st):
        g = self._l2(i, x, g, self.weight_decay)          # scratch slot 0 (or p.grad)
        tmp = self._scratch(i, 1)
        if self.momentum != 0:
            b = st["momentum_buffer"]
            if st["step"] == 1:
                np.copyto(b, g)
            else:
                b *= self.momentum
                if self.dampening != 0:
                    np.multiply(g, 1 - self.dampening, out=tmp)
                    b += tmp
                else:
                    b += g
            if self.nesterov:
                np.multiply(b, self.momentum, out=tmp)
                tmp += g
                g = tmp
            else:
                g = b
        np.multiply(g, self.lr, out=tmp)
        x -= tmp
