"""numba kernels for max pooling's fast path. (Average pooling needs none of its own: it is
im2col with a constant filter, see ``layers.pool._AvgPool._forward_fast``.)

Inputs are viewed as planes ``(N*C, H, W)``; each kernel runs in parallel over the planes and
each plane is handled by one thread in a fixed order, so results are the same bits from run to
run (overlapping windows included). Windows are clipped to the input, so the -inf padding never
wins. ``np.uint64`` indices skip numba's negative-index wrap-around in the hot loops.
"""
import numpy as np
from numba import njit, prange

from . import parallel_kernel


@njit(cache=True)
def _windows(count, stride, pad, kernel, dilation, size):
    """``taps[o] = (first, last)``: window ``o`` reads the input rows (or columns)
    ``first, first + dilation, ..., last``, clipped to the input (``layers.pool.window_taps``).
    Computed once per call: the divisions would cost more than the maxima inside the loops."""
    taps = np.empty((count, 2), np.int64)
    for o in range(count):
        start = o * stride - pad
        first = max(0, -(start // dilation))
        last = min(kernel - 1, (size - 1 - start) // dilation)
        taps[o, 0], taps[o, 1] = start + first * dilation, start + last * dilation
    return taps


@njit(cache=True)
def _last_nan(plane, h0, h1, dh, w0, w1, dw, W):
    """Flat index of the last NaN of a window in scan order (the rare path of max pooling)."""
    for h in range(h1, h0 - 1, -dh):
        for w in range(w1, w0 - 1, -dw):
            if plane[np.uint64(h * W + w)] != plane[np.uint64(h * W + w)]:
                return h * W + w
    return -1


@parallel_kernel
def maxpool_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, y, argmax):
    """``y[p, oh, ow]`` = the window's maximum, ``argmax[p, oh, ow]`` = its flat index
    ``h * W + w`` in plane p: the first maximum in row-major scan order, or the window's last
    NaN (PyTorch's rule). Every window must read at least one input (the layer checks).
    Must equal ``layers.pool.maxpool_reference``."""
    planes, H, W = x.shape
    _, OH, OW = y.shape
    rows, cols = _windows(OH, sh, ph, kh, dh, H), _windows(OW, sw, pw, kw, dw, W)
    for p in prange(planes):
        plane = x[p].reshape(H * W)
        for oh in range(OH):
            h0, h1 = rows[oh, 0], rows[oh, 1]
            for ow in range(OW):
                w0, w1 = cols[ow, 0], cols[ow, 1]
                best, where, nan = -np.inf, h0 * W + w0, False
                for h in range(h0, h1 + 1, dh):
                    for w in range(w0, w1 + 1, dw):
                        v = plane[np.uint64(h * W + w)]
                        if v > best:
                            best, where = v, h * W + w
                        nan |= v != v          # a flag, not a branch: keeps the loop fast
                if nan:
                    where = _last_nan(plane, h0, h1, dh, w0, w1, dw, W)
                    best = plane[where]
                y[p, oh, ow] = best
                argmax[p, oh, ow] = where


@parallel_kernel
def maxpool_backward(dy, argmax, dx):
    """Route each ``dy[p, oh, ow]`` to the input that won the window:
    ``dx[p, argmax[p, oh, ow]] += dy[p, oh, ow]`` (``dx`` as flat planes ``(N*C, H*W)``), zero
    elsewhere. Must equal ``layers.pool.maxpool_backward_reference``."""
    planes, OH, OW = dy.shape
    for p in prange(planes):
        for i in range(dx.shape[1]):
            dx[p, i] = 0
        for oh in range(OH):
            for ow in range(OW):
                dx[p, np.uint64(argmax[p, oh, ow])] += dy[p, oh, ow]
