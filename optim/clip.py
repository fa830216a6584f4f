"""Gradient clipping: rescale all gradients to a maximum total norm, or clamp each entry.

Both functions work in place on ``p.grad`` (a writable floating-point array, every one checked
before any changes) and are called between ``backward`` and ``Optimizer.step``; parameters
whose ``grad`` is None, or frozen (``requires_grad=False``: in PyTorch their gradient is
None), are ignored.
"""
import math

import numpy as np

from .optimizer import _collect_params, _flag, _label, _nonneg

__all__ = ["clip_grad_norm", "clip_grad_value"]


def _grads(params, owner):
    """The gradients to clip in place, all checked first: none is changed unless all can be."""
    params = _collect_params(params, owner, allow_empty=True, allow_single=True)
    grads = []
    for i, p in enumerate(params):
        g = p.grad
        if g is None or not p.requires_grad:
            continue
        if type(g) is not np.ndarray or not np.issubdtype(g.dtype, np.floating) or not g.flags.writeable:
            got = (type(g).__name__ if type(g) is not np.ndarray else
                   f"dtype {g.dtype}" if not np.issubdtype(g.dtype, np.floating) else "a read-only array")
            raise TypeError(f"{owner}: {_label(i, p)} needs a writable floating-point numpy.ndarray "
                            f"gradient to scale in place, got {got}")
        grads.append(g)
    return grads


def clip_grad_norm(params, max_norm, norm_type=2.0, error_if_nonfinite=False):
    r"""Scale the gradients so that their joint norm is at most ``max_norm``; return that norm.

    The total norm treats all gradients ``g_1 .. g_k`` as one concatenated vector::

        total_norm = (sum_j ||g_j||_p ** p) ** (1 / p)      (p = norm_type)
        total_norm = max_j max |g_j|                         (p = inf)
        c = max_norm / (total_norm + 1e-6)
        g_j <- c * g_j                                       (only if c < 1)

    as ``torch.nn.utils.clip_grad_norm_`` does. A non-finite ``total_norm`` gives a nan or zero
    ``c`` and is applied, as in PyTorch, unless ``error_if_nonfinite`` raises instead.

    Parameters
    ----------
    params : Parameter or iterable of Parameter
    max_norm : float
        >= 0; ``math.inf`` measures the norm without clipping.
    norm_type : float or 'inf'
        The ``p`` of the norm: > 0, or ``math.inf``.
    error_if_nonfinite : bool
        Raise FloatingPointError (and leave the gradients alone) when the total norm is nan or
        inf.

    Returns
    -------
    float
        The total norm of the gradients before clipping (0.0 when there are none).
    """
    owner = "clip_grad_norm"
    grads = _grads(params, owner)
    max_norm = _nonneg(owner, "max_norm", max_norm, allow_inf=True)
    error_if_nonfinite = _flag(owner, "error_if_nonfinite", error_if_nonfinite)
    if isinstance(norm_type, str) and norm_type == "inf":     # PyTorch's spelling of math.inf
        norm_type = math.inf
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, (int, float, np.number)):
        raise TypeError(f"{owner}: norm_type must be a positive number, math.inf or 'inf', "
                        f"got {type(norm_type).__name__} {norm_type!r}")
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"{owner}: norm_type must be > 0 or math.inf, got {norm_type!r}")
    if not grads:
        return 0.0

    if p == math.inf:
        norms = [max(g.max(), -g.min()) if g.size else 0.0 for g in grads]
        total = float(np.max(np.asarray(norms, dtype=np.float64)))
    else:
        norms = [np.linalg.norm(g.ravel(), ord=p) for g in grads]
        total = float(np.linalg.norm(np.asarray(norms, dtype=np.float64), ord=p))

    if error_if_nonfinite and not math.isfinite(total):
        raise FloatingPointError(f"{owner}: the total norm of order {norm_type} of the gradients is "
                                 f"{total}; they were left unchanged")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:                 # c < 1, or nan (propagated into the gradients)
        for g in grads:
            g *= coef
    return total


def clip_grad_value(params, clip_value):
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` in place.

    Parameters
    ----------
    params : Parameter or iterable of Parameter
    clip_value : float
        >= 0 (``math.inf`` leaves the gradients as they are).
    """
    owner = "clip_grad_value"
    grads = _grads(params, owner)
    clip_value = _nonneg(owner, "clip_value", clip_value, allow_inf=True)
    for g in grads:
        np.clip(g, -clip_value, clip_value, out=g)
