"""numba kernels for the convolution's fast path: the loops around its matrix products.

``Conv2D``'s fast path is im2col -> one BLAS product per group (through NumPy) -> col2im, the
same algorithm as the reference in ``layers/conv.py``; these kernels are its loops. Each is one
serial loop that releases the GIL: over a range of the rows of ``cols`` (``im2col``) or of the
(sample, channel) planes of ``dx`` (``col2im``). A large call splits its range among threads
(``share_chunks``); every thread owns the part of the output it writes and loops inside it in
a fixed order, so results are the same bits from run to run, for any thread count.

Layouts (C-contiguous, ``P = OH * OW``):
    x, dx   (N, C, H, W)
    cols    (C * kh * kw, N * P)   row (c, i, j), column (n, oh, ow)

Both kernels index flat views of the arrays with ``np.uint64`` offsets: numba then creates no
array view per row and skips its negative-index wrap-around, which lets LLVM vectorise the
row copies (this matters on small feature maps, where rows are a few elements long). With
stride 1 and the width kept (``'same'`` padding), a tap is the whole plane shifted, so it is
copied as one long span; the columns whose read wrapped around a row edge are padding, and a
mask (``_inside_columns``) selects zero for them within the same vectorised loop (zeroing them
after the copy, a few scalar stores per row, made ``im2col`` 1.6 times slower).
"""
import functools

import numba
import numpy as np
from numba import njit

from . import share_chunks

#: Below this many elements of ``cols``, ``im2col`` and ``col2im`` run their loop over the whole
#: range on the calling thread; they do the same whenever numba is set to one thread (as inside
#: ``share_chunks``). Waking threads costs hundreds of microseconds, more than copying the
#: ``cols`` of a ``CHUNK_BYTES`` chunk (1.5 MB: 0.15 ms serial, 0.3 ms on 2 threads here), so
#: only a sample whose ``cols`` alone is several times larger is worth splitting (6.5M
#: elements: 3.7 ms serial, 2.3 ms on 2 threads).
SERIAL_BELOW = 1 << 21


@njit(cache=True)
def _valid_range(offset, stride, size, count):
    """The outputs ``o`` in ``[lo, hi)`` for which ``o * stride + offset`` lies in ``[0, size)``
    (``lo <= count`` even when the tap lies left of ``x`` for every output)."""
    lo = min(count, max(0, -(offset // stride)))     # ceil(-offset / stride), clipped to [0, count]
    hi = min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _shifted_span(H, OH, OW, dr, dc):
    """For stride 1 and ``OW == W`` a tap is the flat plane shifted by ``dr * W + dc``: the
    flat span ``[a, b)`` of output positions, in the rows whose tap row lies inside the plane,
    whose shifted index stays inside it (``a == b`` when none does). Outside it, and where
    ``_inside_columns`` is false, the tap reads padding."""
    r0, r1 = max(0, -dr), min(OH, H - dr)
    if r1 <= r0 or dc <= -OW or dc >= OW:
        return 0, 0
    return r0 * OW + max(0, -dc), r1 * OW - max(0, dc)


@njit(cache=True)
def _inside_columns(OH, OW, W, kw, dw, pl):
    """``inside[j, oh * OW + ow]``: whether tap column ``j`` of the window at ``ow`` reads
    inside its row, ``0 <= ow + j*dw - pl < W`` (stride 1); the shifted copies take zero where
    it does not."""
    inside = np.empty((kw, OH * OW), dtype=np.bool_)
    for j in range(kw):
        for q in range(OH * OW):
            inside[j, q] = 0 <= q % OW + j * dw - pl < W
    return inside


@functools.lru_cache(maxsize=16)
def _shifted_masks(W, kw, sh, sw, dw, pl, OH, OW):
    """``_inside_columns`` when every tap is a shifted plane (stride 1, ``OW == W``), for the
    kernels' shifted copies; else an empty mask, which tells them to copy row by row. Kept per
    geometry: a convolution calls the kernels once per chunk of its batch."""
    if sh == 1 and sw == 1 and OW == W:
        return _inside_columns(OH, OW, W, kw, dw, pl)
    return np.empty((kw, 0), dtype=np.bool_)


@njit(cache=True, nogil=True)
def _im2col_rows(x, r_start, r_stop, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, inside, cols):
    """Rows ``[r_start, r_stop)`` of ``cols``; row ``r = (c, i, j)`` is tap (i, j) of channel
    c, for every window. ``inside``: ``_shifted_masks``."""
    N, C, H, W = x.shape
    P = OH * OW
    src, dst, keep = x.reshape(-1), cols.reshape(-1), inside.reshape(-1)
    zero = x.dtype.type(0)
    shifted = inside.shape[1] != 0     # one long shifted copy per plane (vectorises)
    for r in range(r_start, r_stop):
        c, i, j = r // (kh * kw), r // kw % kh, r % kw
        dr, dc = i * dh - pt, j * dw - pl
        if shifted:
            a, b = _shifted_span(H, OH, OW, dr, dc)
            m = j * P
            for n in range(N):
                o, s = (r * N + n) * P, (n * C + c) * H * W + dr * W + dc
                for q in range(a):
                    dst[np.uint64(o + q)] = 0
                for q in range(a, b):
                    dst[np.uint64(o + q)] = src[np.uint64(s + q)] if keep[np.uint64(m + q)] else zero
                for q in range(b, P):
                    dst[np.uint64(o + q)] = 0
            continue
        h0, h1 = _valid_range(dr, sh, H, OH)     # the windows whose tap lies inside x
        w0, w1 = _valid_range(dc, sw, W, OW)
        for n in range(N):
            for oh in range(OH):
                o = (r * N + n) * P + oh * OW
                lo, hi = (w0, w1) if h0 <= oh < h1 else (OW, OW)   # the columns read from x
                s = ((n * C + c) * H + oh * sh + dr) * W + dc
                for q in range(lo):
                    dst[np.uint64(o + q)] = 0
                for q in range(lo, hi):
                    dst[np.uint64(o + q)] = src[np.uint64(s + q * sw)]
                for q in range(hi, OW):
                    dst[np.uint64(o + q)] = 0


@njit(cache=True, nogil=True)
def _col2im_planes(dcols, t_start, t_stop, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, inside, dx):
    """The planes ``dx[n, c]`` of tasks ``t = c * N + n`` in ``[t_start, t_stop)``
    (neighbouring tasks read neighbouring stretches of ``dcols``). ``inside``: ``_shifted_masks``."""
    N, C, H, W = dx.shape
    P = OH * OW
    src, dst, keep = dcols.reshape(-1), dx.reshape(-1), inside.reshape(-1)
    zero = dx.dtype.type(0)
    shifted = inside.shape[1] != 0
    for t in range(t_start, t_stop):
        c, n = t // N, t % N
        plane = (n * C + c) * H * W
        for q in range(H * W):
            dst[np.uint64(plane + q)] = 0
        for i in range(kh):
            dr = i * dh - pt
            h0, h1 = _valid_range(dr, sh, H, OH)
            for j in range(kw):
                dc = j * dw - pl
                o = (((c * kh + i) * kw + j) * N + n) * P
                if shifted:     # the adjoint of the shifted copy: one long masked addition
                    a, b = _shifted_span(H, OH, OW, dr, dc)
                    d, m = plane + dr * W + dc, j * P
                    for q in range(a, b):
                        dst[np.uint64(d + q)] += src[np.uint64(o + q)] if keep[np.uint64(m + q)] else zero
                    continue
                w0, w1 = _valid_range(dc, sw, W, OW)
                for oh in range(h0, h1):
                    d = plane + (oh * sh + dr) * W + dc
                    for q in range(w0, w1):
                        dst[np.uint64(d + q * sw)] += src[np.uint64(o + oh * OW + q)]


def _run(loop, count, size):
    """``loop(start, stop)`` over ``[0, count)``: on the calling thread below ``SERIAL_BELOW``
    elements (or on one numba thread), else as one contiguous range per thread."""
    threads = numba.get_num_threads()
    if size < SERIAL_BELOW or threads == 1:
        loop(0, count)
        return
    bounds = [round(i * count / threads) for i in range(threads + 1)]
    share_chunks(lambda thread, ranges: [loop(*r) for r in ranges], list(zip(bounds[:-1], bounds[1:])))


def im2col(x, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, cols):
    """Fill ``cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]``, zero in
    the padding; a large call splits the rows of ``cols`` among threads. Must equal
    ``layers.conv.im2col``."""
    inside = _shifted_masks(x.shape[3], kw, sh, sw, dw, pl, OH, OW)
    _run(lambda r0, r1: _im2col_rows(x, r0, r1, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, inside, cols),
         cols.shape[0], cols.size)


def col2im(dcols, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, dx):
    """The adjoint of ``im2col``: ``dx[n, c, h, w]`` = the sum of ``dcols`` over every
    (i, j, oh, ow) that read ``x[n, c, h, w]``; gradient that fell in the padding is dropped.
    A large call splits the (sample, channel) planes of ``dx`` among threads. Must equal
    ``layers.conv.col2im``."""
    inside = _shifted_masks(dx.shape[3], kw, sh, sw, dw, pl, OH, OW)
    _run(lambda t0, t1: _col2im_planes(dcols, t0, t1, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, inside, dx),
         dx.shape[0] * dx.shape[1], dcols.size)
