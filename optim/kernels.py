"""numba kernel for Adam's fast path: the whole update in one pass over memory.

``Adam._update_reference`` states the update as a dozen NumPy operations; each one reads and
writes every element, so on a network of millions of weights the optimizer step costs as much
as a dense layer's backward. This kernel does the same operations, in the same order and the
same precision, element by element: it reads ``x, g, m, v`` once and writes ``x, m, v`` once.
"""
import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")      # IEEE division (no zero check): vectorises
def adam_update(x, g, m, v, v_max, amsgrad, decay, l2, one_minus_b1, b2, one_minus_b2,
                sqrt_bc2, eps, step_size):
    """Update the flat arrays ``x``, ``m``, ``v`` (and ``v_max`` with ``amsgrad``) in place.

    The scalars have the arrays' dtype: ``decay = 1 - lr * weight_decay`` (AdamW, else 1),
    ``l2`` the L2 weight decay (Adam, else 0), ``sqrt_bc2 = sqrt(1 - b2**t)`` and
    ``step_size = lr / (1 - b1**t)``. Must equal ``optim.Adam._update_reference``.
    """
    for k in range(x.size):
        xk = x[k] * decay
        gk = g[k] + xk * l2 if l2 != 0 else g[k]    # inf * 0 would turn an inf weight into nan
        m[k] += (gk - m[k]) * one_minus_b1
        v[k] = v[k] * b2 + one_minus_b2 * gk * gk      # scaled first: g*g overflows float32 sooner
        vk = v[k]
        if amsgrad:          # np.maximum's max: a nan on either side stays nan (max() would drop it)
            vk = v_max[k] = v_max[k] if v_max[k] >= vk or v_max[k] != v_max[k] else vk
        x[k] = xk - m[k] / (np.sqrt(vk) / sqrt_bc2 + eps) * step_size
