"""`Adam` and `AdamW`: adaptive moment estimation, with L2 or decoupled weight decay.

The two differ only in where the weight decay enters, so `AdamW` is `Adam` with one switch
(``_decoupled``) turned on and a different default ``weight_decay``.
"""
import numpy as np

from nn.backend import reference_enabled

from . import kernels
from .optimizer import Optimizer, _flag, _nonneg, _unit

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), PyTorch's ``torch.optim.Adam`` formula.

    For a parameter ``x`` with gradient ``g`` (both of the parameter's shape and dtype), at
    step ``t = 1, 2, ...``, with ``(b1, b2) = betas`` and every operation elementwise::

        g <- g + weight_decay * x                      (Adam, if weight_decay != 0)
        x <- x * (1 - lr * weight_decay)               (AdamW: decoupled decay)
        m <- b1 * m + (1 - b1) * g                     (first moment, "exp_avg")
        v <- b2 * v + (1 - b2) * g**2                  (second moment, "exp_avg_sq")
        v_max <- max(v_max, v)                         (amsgrad; v_max replaces v below)
        x <- x - lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)

    Note where ``eps`` goes: it is added to the bias-corrected ``sqrt(v)``, as in PyTorch.
    ``m`` and ``v`` start at zero; ``m`` is updated in the equivalent form
    ``m <- m + (1 - b1) * (g - m)``.

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate, >= 0.
    betas : pair of float
        ``(b1, b2)``, each in [0, 1): decay rates of the first and second moments.
    eps : float
        >= 0, added to the denominator.
    weight_decay : float
        >= 0. L2 penalty added to the gradient (Adam) or decoupled decay (AdamW).
    amsgrad : bool
        Normalize by the running maximum of ``v`` (Reddi et al., 2018).

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq`` and, with ``amsgrad``,
    ``max_exp_avg_sq``.

    ``_update_reference`` writes the update as NumPy array operations; the fast path
    (``optim/kernels.py``) fuses them into one pass over memory. ``nn.use_reference()``
    selects the reference.
    """

    _hyper_names = ("betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        name = type(self).__name__
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_unit(name, "betas[0]", b1), _unit(name, "betas[1]", b2))
        self.eps = _nonneg(name, "eps", eps)
        self.weight_decay = _nonneg(name, "weight_decay", weight_decay)
        self.amsgrad = _flag(name, "amsgrad", amsgrad)
        super().__init__(params, lr)

    def _init_state(self, p):
        st = super()._init_state(p)
        st["exp_avg"] = np.zeros_like(p.data)
        st["exp_avg_sq"] = np.zeros_like(p.data)
        if self.amsgrad:
            st["max_exp_avg_sq"] = np.zeros_like(p.data)
        return st

    def _update(self, i, x, g, st):
        m, v = st["exp_avg"], st["exp_avg_sq"]
        v_max = st.get("max_exp_avg_sq", v)             # read only with amsgrad
        if reference_enabled() or not all(a.flags.c_contiguous for a in (x, g, m, v, v_max)):
            return self._update_reference(i, x, g, st)
        lr, (b1, b2), t, wd = self.lr, self.betas, st["step"], self.weight_decay
        s = x.dtype.type                                 # scalars in the arrays' precision
        kernels.adam_update(
            x.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), v_max.reshape(-1),
            self.amsgrad, decay=s(1 - lr * wd if self._decoupled else 1),
            l2=s(0 if self._decoupled else wd), one_minus_b1=s(1 - b1), b2=s(b2),
            one_minus_b2=s(1 - b2), sqrt_bc2=s((1 - b2 ** t) ** 0.5), eps=s(self.eps),
            step_size=s(lr / (1 - b1 ** t)))

    def _update_reference(self, i, x, g, st):
        lr, (b1, b2), t = self.lr, self.betas, st["step"]
        if self.weight_decay != 0:
            if self._decoupled:
                x *= 1 - lr * self.weight_decay
            else:
                g = self._l2(i, x, g, self.weight_decay)   # scratch slot 0
        m, v = st["exp_avg"], st["exp_avg_sq"]
        tmp = self._scratch(i, 1)

        np.subtract(g, m, out=tmp)                          # m <- m + (1 - b1) (g - m)
        tmp *= 1 - b1
        m += tmp
        v *= b2                                             # v <- b2 v + (1 - b2) g^2
        np.multiply(g, 1 - b2, out=tmp)                     # ((1 - b2) g) g: g*g overflows float32 sooner
        tmp *= g
        v += tmp
        if self.amsgrad:
            v = np.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])

        bias_correction1 = 1 - b1 ** t
        bias_correction2 = 1 - b2 ** t
        np.sqrt(v, out=tmp)                                 # denominator
        tmp /= bias_correction2 ** 0.5
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr / bias_correction1
        x -= tmp


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), ``torch.optim.AdamW``.

    The same update as `Adam` except that the decay does not pass through the moments: before
    the Adam step, ``x <- x * (1 - lr * weight_decay)``. Default ``weight_decay=1e-2``.
    Parameters and state as for `Adam`.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
