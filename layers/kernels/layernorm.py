"""numba kernels for ``LayerNorm``, one row (one normalized group of M values) at a time.

They equal ``layers.layernorm.layernorm_forward`` / ``layernorm_backward`` (the reference),
with the row sums accumulated in float64 in a fixed order.
"""
import math

from numba import njit

JIT = dict(cache=True, error_model="numpy")


@njit(**JIT)
def layernorm_forward(x, weight, bias, eps, y, xhat, rstd):
    """For each row ``x[r] (M,)``: ``xhat = (x - mean) / sqrt(var + eps)``,
    ``y = xhat * weight + bias`` (the mean, corrected by the mean of ``x - mean``, then the
    variance around it)."""
    R, M = x.shape
    for r in range(R):
        total = 0.0
        for m in range(M):
            total += x[r, m]
        mean = total / M
        # A plain running sum can miss the mean by an ulp of a large value, which (x - mean)
        # then blows up when the spread is small: a constant row must normalize to exactly 0.
        total = 0.0
        for m in range(M):
            total += x[r, m] - mean
        mean += total / M
        total = 0.0
        for m in range(M):
            total += (x[r, m] - mean) ** 2
        rstd[r] = 1.0 / math.sqrt(total / M + eps)
        for m in range(M):
            xhat[r, m] = (x[r, m] - mean) * rstd[r]
            y[r, m] = xhat[r, m] * weight[m] + bias[m]


@njit(**JIT)
def layernorm_backward(dy, xhat, rstd, weight, dx):
    """For each row, with ``g = dy * weight``:
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``."""
    R, M = dy.shape
    for r in range(R):
        g_sum = 0.0
        gx_sum = 0.0
        for m in range(M):
            g = dy[r, m] * weight[m]
            g_sum += g
            gx_sum += g * xhat[r, m]
        g_mean, gx_mean = g_sum / M, gx_sum / M
        for m in range(M):
            dx[r, m] = rstd[r] * (dy[r, m] * weight[m] - g_mean - xhat[r, m] * gx_mean)
