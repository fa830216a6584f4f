"""numba kernels for the convolution's fast path: the loops around its matrix products.

``Conv2D``'s fast path is im2col -> one BLAS product per group (through NumPy) -> col2im, the
same algorithm as the reference in ``layers/conv.py``; these kernels are its loops. They run in
parallel over the (channel, sample) planes; every task owns the part of the output it writes
and loops inside it in a fixed order, so results are the same bits from run to run.

Layouts (C-contiguous, ``P = OH * OW``):
    x, dx   (N, C, H, W)
    cols    (C * kh * kw, N * P)   row (c, i, j), column (n, oh, ow)

Hot loops index with ``np.uint64``: numba then skips its negative-index wrap-around, which
lets LLVM vectorise the row copies (several times faster on short rows).
"""
import numpy as np
from numba import njit, prange


@njit(cache=True)
def _valid_range(offset, stride, size, count):
    """The outputs ``o`` in ``[lo, hi)`` for which ``o * stride + offset`` lies in ``[0, size)``."""
    lo = max(0, -(offset // stride))             # ceil(-offset / stride), clipped at 0
    hi = min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _tap_by_rows(plane, H, W, out, OH, OW, sh, sw, dr, dc):
    """One filter tap: ``out[oh*OW + ow] = plane[(oh*sh + dr) * W + ow*sw + dc]``, zero where
    that falls outside the plane. A row at a time."""
    lo, hi = _valid_range(dc, sw, W, OW)
    for oh in range(OH):
        h = oh * sh + dr
        a, b = (lo, hi) if 0 <= h < H else (0, 0)
        o, s = oh * OW, h * W + dc
        for q in range(a):
            out[np.uint64(o + q)] = 0
        for q in range(a, b):
            out[np.uint64(o + q)] = plane[np.uint64(s + q * sw)]
        for q in range(b, OW):
            out[np.uint64(o + q)] = 0


@njit(cache=True)
def _shifted_span(H, W, OH, OW, dr, dc):
    """For stride 1 and ``OW == W`` a tap is the flat plane shifted by ``dr * W + dc``: the
    output rows ``[r0, r1)`` that read inside the plane and the flat span ``[a, b)`` of them
    whose shifted index stays inside it (``a == b`` when nothing does)."""
    r0, r1 = max(0, -dr), min(OH, H - dr)
    if r1 <= r0 or dc <= -OW or dc >= OW:
        return r0, r0, 0, 0
    return r0, r1, r0 * OW + max(0, -dc), r1 * OW - max(0, dc)


@njit(cache=True)
def _zero_wrapped_columns(flat, r0, r1, OW, dc):
    """Zero the columns of rows ``[r0, r1)`` of a flat ``(OH * OW)`` tap whose shifted read
    wrapped around a row edge (they are padding)."""
    lo, hi = (0, -dc) if dc < 0 else (OW - dc, OW)
    for oh in range(r0, r1):
        for q in range(lo, hi):
            flat[np.uint64(oh * OW + q)] = 0


@njit(cache=True)
def _tap_shifted(plane, H, W, out, OH, OW, dr, dc):
    """``_tap_by_rows`` for stride 1 and ``OW == W``: one long (vectorised) copy of the
    shifted plane, then the wrapped columns zeroed -- much faster than short rows."""
    r0, r1, a, b = _shifted_span(H, W, OH, OW, dr, dc)
    for p in range(a):
        out[p] = 0
    for p in range(b, OH * OW):
        out[p] = 0
    src, dst = plane[max(0, a + dr * W + dc):], out[a:]
    for q in range(b - a):
        dst[q] = src[q]
    _zero_wrapped_columns(out, r0, r1, OW, dc)


@njit(cache=True)
def _add_tap_by_rows(plane, H, W, src, OH, OW, sh, sw, dr, dc):
    """The adjoint of ``_tap_by_rows``: ``plane[(oh*sh + dr) * W + ow*sw + dc] += src[oh*OW + ow]``
    where that lies inside the plane."""
    lo, hi = _valid_range(dc, sw, W, OW)
    for oh in range(OH):
        h = oh * sh + dr
        if 0 <= h < H:
            for q in range(lo, hi):
                plane[np.uint64(h * W + dc + q * sw)] += src[np.uint64(oh * OW + q)]


@njit(cache=True)
def _add_tap_shifted(plane, H, W, src, OH, OW, dr, dc):
    """The adjoint of ``_tap_shifted``. The entries of ``src`` that read the padding are
    zeroed in place first, so one long addition can run over the span."""
    r0, r1, a, b = _shifted_span(H, W, OH, OW, dr, dc)
    _zero_wrapped_columns(src, r0, r1, OW, dc)
    s, d = src[a:], plane[max(0, a + dr * W + dc):]
    for q in range(b - a):
        d[q] += s[q]


@njit(parallel=True, cache=True)
def im2col(x, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, cols):
    """Fill ``cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]``, zero in
    the padding. Must equal ``layers.conv.im2col``."""
    N, C, H, W = x.shape
    P = OH * OW
    shifted = sh == 1 and sw == 1 and OW == W
    for t in prange(C * N):                      # task t: channel c of sample n
        c, n = t // N, t % N
        plane = x[n, c].reshape(H * W)
        for i in range(kh):
            for j in range(kw):
                out = cols[(c * kh + i) * kw + j, n * P:(n + 1) * P]
                if shifted:
                    _tap_shifted(plane, H, W, out, OH, OW, i * dh - pt, j * dw - pl)
                else:
                    _tap_by_rows(plane, H, W, out, OH, OW, sh, sw, i * dh - pt, j * dw - pl)


@njit(parallel=True, cache=True)
def col2im(dcols, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, dx):
    """The adjoint of ``im2col``: ``dx[n, c, h, w]`` = the sum of ``dcols`` over every
    (i, j, oh, ow) that read ``x[n, c, h, w]``; gradient that fell in the padding is dropped
    (and may be zeroed in ``dcols``, a scratch array). Must equal ``layers.conv.col2im``."""
    N, C, H, W = dx.shape
    P = OH * OW
    shifted = sh == 1 and sw == 1 and OW == W
    for t in prange(C * N):                      # task t owns the plane dx[n, c]
        c, n = t // N, t % N
        plane = dx[n, c].reshape(H * W)
        for q in range(H * W):
            plane[q] = 0
        for i in range(kh):
            for j in range(kw):
                src = dcols[(c * kh + i) * kw + j, n * P:(n + 1) * P]
                if shifted:
                    _add_tap_shifted(plane, H, W, src, OH, OW, i * dh - pt, j * dw - pl)
                else:
                    _add_tap_by_rows(plane, H, W, src, OH, OW, sh, sw, i * dh - pt, j * dw - pl)
