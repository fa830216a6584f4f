"""`Conv2D` and `Conv1D`: convolution as a matrix product (im2col), forward and backward.

A convolution slides every filter over every position of the (padded) input. Unrolling the
input patches into the columns of a matrix -- im2col -- turns it into one matrix product:

    cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]
    z[n, o, oh, ow] = sum over (c, i, j) of W[o, c, i, j] * cols[(c, i, j), (n, oh, ow)] + b[o]
                    = (W2d @ cols)[o, (n, oh, ow)] + b[o],         W2d = W.reshape(O, C*kh*kw)

(``sh, sw`` the stride, ``dh, dw`` the dilation.) With ``groups = G`` the channels split into
G independent convolutions: group g's filters see only its own ``C/G`` input channels
(``W`` is ``(O, C/G, kh, kw)``), so the product is done per group, ``W.reshape(G, O/G,
C/G*kh*kw)[g] @ cols_g`` with ``cols_g`` the rows of group g's channels.

This file holds the readable NumPy reference (``im2col``, ``col2im`` and the layer's
``_forward_reference`` / ``_backward_reference``); the fast path runs the same algorithm with
the loops in numba (``layers/kernels/conv.py``) and the products in BLAS.
"""
import math
from dataclasses import dataclass

import numba
import numpy as np

from nn import Module, Parameter
from nn.checks import check_flag, check_float_array, check_float_dtype, check_shape, check_size
from nn.init import fan_in_bound, uniform
from nn.random import get_rng

from .kernels import conv as kernels
from .kernels import share_chunks

#: The fast path runs im2col on chunks of the batch whose ``cols`` matrix takes at most this
#: many bytes, so that it is still in cache when the matrix products read it and ``col2im``
#: reads ``dcols``. On the 2-core machine of the README's tables, 1-2 MB chunks ran the
#: convolutions of ``benchmarks.kernels`` 10-30% faster than 4 MB ones.
CHUNK_BYTES = 1536 << 10


@dataclass(frozen=True)
class ConvGeometry:
    """Where each filter tap reads from: ``kernel``, ``stride``, ``dilation`` as ``(h, w)``
    pairs and ``pad`` as ``((top, bottom), (left, right))``."""
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad: tuple

    def output_size(self, H, W):
        """``(OH, OW)``: ``OH = (H + top + bottom - dh*(kh - 1) - 1) // sh + 1``, same for W;
        a non-positive size means the dilated kernel does not fit the padded input."""
        return tuple((size + sum(pad) - d * (k - 1) - 1) // s + 1 for size, pad, k, s, d in
                     zip((H, W), self.pad, self.kernel, self.stride, self.dilation))


# ----------------------------------------------------------------------------- reference

def im2col(x, geom):
    """Unroll the patches of ``x (N, C, H, W)`` into ``cols (C*kh*kw, N*OH*OW)``.

    One strided slice of the zero-padded input per filter tap ``(i, j)``: tap (i, j) of the
    window at (oh, ow) reads ``xpad[:, :, oh*sh + i*dh, ow*sw + j*dw]``.
    """
    (kh, kw), (sh, sw), (dh, dw), (pad_h, pad_w) = geom.kernel, geom.stride, geom.dilation, geom.pad
    N, C, H, W = x.shape
    OH, OW = geom.output_size(H, W)
    xpad = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w))
    cols = np.empty((C, kh, kw, N, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = xpad[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh,
                       j * dw: j * dw + sw * (OW - 1) + 1: sw]           # (N, C, OH, OW)
            cols[:, i, j] = tap.transpose(1, 0, 2, 3)
    return cols.reshape(C * kh * kw, N * OH * OW)


def col2im(dcols, x_shape, geom):
    """The adjoint of ``im2col``: every entry of ``dcols`` flows back to the input position
    it was copied from, and positions read by several windows sum their gradients.
    Gradient that lands in the padding is dropped."""
    (kh, kw), (sh, sw), (dh, dw), (pad_h, pad_w) = geom.kernel, geom.stride, geom.dilation, geom.pad
    N, C, H, W = x_shape
    OH, OW = geom.output_size(H, W)
    dcols = dcols.reshape(C, kh, kw, N, OH, OW)
    dxpad = np.zeros((N, C, H + sum(pad_h), W + sum(pad_w)), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh,
                  j * dw: j * dw + sw * (OW - 1) + 1: sw] += dcols[:, i, j].transpose(1, 0, 2, 3)
    return dxpad[:, :, pad_h[0]: pad_h[0] + H, pad_w[0]: pad_w[0] + W]


# ----------------------------------------------------------------------------- arguments

def _ntuple(value, n, owner, what):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),) * n
    if isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    raise TypeError(f"{owner}: expected {what} to be an int or a tuple of {n} ints, got {value!r}")


def as_2d(t, spatial, fill):
    """A per-dimension tuple of a 1-D layer, ``(L,)``, as the 2-D ``(fill, L)`` its kernels
    run on (a 1-D input is a 2-D one of height 1); a 2-D layer's unchanged."""
    return ((fill,) + t) if spatial == 1 else t


def as_given(t, spatial):
    """A per-dimension tuple as the user wrote it: ``(k,)`` shown as ``k`` for a 1-D layer."""
    return t[0] if spatial == 1 else t


def _resolve_padding(padding, kernel, stride, dilation, owner):
    """``((before, after), ...)`` per spatial dimension from an int, a tuple, 'valid' or
    'same' (PyTorch's rule: total ``d*(k-1)``, the odd extra on the right/bottom)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{owner}: padding='same' needs stride 1, got stride {stride}")
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise ValueError(f"{owner}: expected padding to be an int, a tuple, 'same' or 'valid', got {padding!r}")
    pads = _ntuple(padding, n, owner, "padding")
    if any(p < 0 for p in pads):
        raise ValueError(f"{owner}: expected non-negative padding, got {padding!r}")
    return tuple((p, p) for p in pads)


# ----------------------------------------------------------------------------- the layer

class _Conv(Module):
    """The convolution shared by ``Conv2D`` and ``Conv1D`` (which runs it on ``(N, C, 1, L)``)."""

    spatial = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        dtype = check_float_dtype(type(self).__name__, dtype)
        name, n = type(self).__name__, self.spatial
        self.in_channels = check_size(name, "in_channels", in_channels)
        self.out_channels = check_size(name, "out_channels", out_channels)
        self.groups = check_size(name, "groups", groups)
        bias = check_flag(name, "bias", bias)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.kernel_size = _ntuple(kernel_size, n, name, "kernel_size")
        self.stride = _ntuple(stride, n, name, "stride")
        self.dilation = _ntuple(dilation, n, name, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1:
            raise ValueError(f"{name}: expected kernel_size, stride and dilation >= 1, got "
                             f"{self.kernel_size}, {self.stride}, {self.dilation}")
        self.padding = padding
        pad = _resolve_padding(padding, self.kernel_size, self.stride, self.dilation, name)
        self.geometry = ConvGeometry(as_2d(self.kernel_size, n, 1), as_2d(self.stride, n, 1),
                                     as_2d(self.dilation, n, 1), as_2d(pad, n, (0, 0)))

        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        bound = fan_in_bound(int(np.prod(shape[1:])))
        rng = get_rng(rng, type(self).__name__)    # one stream for weight and bias
        self.weight = Parameter(uniform(shape, bound, rng, dtype))
        self.bias = Parameter(uniform((self.out_channels,), bound, rng, dtype)) if bias else None
        self._scratch_buffers = {}

    # -- shapes --------------------------------------------------------------------------
    def _check_input(self, x):
        name = type(self).__name__
        check_float_array(name, x, dtype=self.weight.dtype)
        spatial = ("H", "W") if self.spatial == 2 else ("L",)
        check_shape(name, x, ("N", self.in_channels) + spatial)
        x4 = x if self.spatial == 2 else x[:, :, None, :]
        if min(x4.shape[2:]) == 0:                      # padding alone would make an output
            raise ValueError(f"{name}: expected an input with a non-empty spatial size, got {x.shape}")
        OH, OW = self.geometry.output_size(*x4.shape[2:])
        if OH < 1 or OW < 1:
            (kh, kw), (dh, dw), (ph, pw) = self.geometry.kernel, self.geometry.dilation, self.geometry.pad
            padded = (x4.shape[2] + sum(ph), x4.shape[3] + sum(pw))
            extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
            if self.spatial == 1:
                padded, extent = padded[1:], extent[1:]
            raise ValueError(f"{name}: expected a padded input of spatial size at least "
                             f"{extent} (the dilated kernel), got input {x.shape} padded to {padded}")
        return x4, (OH, OW)

    def _weight2d(self, array):
        """``W`` (or its gradient) as ``(G, O/G, C/G*kh*kw)``: one matrix per group."""
        G = self.groups
        return array.reshape(G, self.out_channels // G, -1)

    def _grouped(self, rows):
        """A ``(C*kh*kw or O, columns)`` matrix as ``(G, rows/G, columns)``: group g's block."""
        return rows.reshape(self.groups, rows.shape[0] // self.groups, rows.shape[1])

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x):
        x4, (OH, OW) = self._check_input(x)
        self._reference = self._use_reference()
        self._x_shape = x4.shape
        self._x = self._cols = None         # only the path taken below keeps its cache
        z = (self._forward_reference if self._reference else self._forward_fast)(x4, OH, OW)
        return self._tap("z", z if self.spatial == 2 else z[:, :, 0, :])

    def _forward_reference(self, x, OH, OW):
        """``cols = im2col(x)``; per group ``z2_g = W2d_g @ cols_g``; ``z = z2`` reordered to
        ``(N, O, OH, OW)``, plus ``b``."""
        N, O = x.shape[0], self.out_channels
        cols = self._tap("cols", im2col(x, self.geometry))
        z2 = self._weight2d(self.weight.data) @ self._grouped(cols)         # (G, O/G, N*P)
        z = z2.reshape(O, N, OH, OW).transpose(1, 0, 2, 3)
        if self.bias is not None:
            z = z + self.bias.data[:, None, None]
        self._cols = cols
        return np.ascontiguousarray(z)

    def _forward_fast(self, x, OH, OW):
        """The reference's algorithm, a chunk of the batch at a time (see ``CHUNK_BYTES``),
        the chunks shared among numba's threads (``share_chunks`` in ``layers/kernels``)."""
        x = np.ascontiguousarray(x)
        N, O, P, dtype = x.shape[0], self.out_channels, OH * OW, x.dtype
        W = self._weight2d(self.weight.data)
        bias = self.bias.data if self.bias is not None else np.zeros(O, dtype=dtype)
        z = np.empty((N, O, P), dtype=dtype)                # z2's (O, n, P) reordered, plus b

        def forward_chunks(thread, chunks):
            for n0, n1 in chunks:
                cols = self._im2col_fast(x[n0:n1], OH, OW, thread)
                z2 = self._scratch("z2", thread, (O, cols.shape[1]), dtype)
                np.matmul(W, self._grouped(cols), out=self._grouped(z2))
                np.add(z2.reshape(O, n1 - n0, P).transpose(1, 0, 2), bias[:, None], out=z[n0:n1])

        share_chunks(forward_chunks, self._chunks(N, P, dtype))
        self._x = x
        return z.reshape(N, O, OH, OW)

    def _chunks(self, N, P, dtype):
        """``[(n0, n1), ...]``: the batch cut into near-equal chunks whose ``cols`` take at
        most ``CHUNK_BYTES`` (or one sample each), as many as a multiple of numba's threads
        when the batch allows, so that each thread gets the same work."""
        per_sample = self.in_channels * math.prod(self.geometry.kernel) * P * dtype.itemsize
        count = -(-N // max(1, CHUNK_BYTES // per_sample))
        if count > 1:
            threads = numba.get_num_threads()
            count = min(N, -(-count // threads) * threads)
        bounds = [round(i * N / count) for i in range(count + 1)] if N else [0]   # N = 0: none
        return list(zip(bounds[:-1], bounds[1:]))

    def _im2col_fast(self, x, OH, OW, thread):
        cols = self._scratch("cols", thread, (x.shape[1] * math.prod(self.geometry.kernel),
                                              x.shape[0] * OH * OW), x.dtype)
        kernels.im2col(x, *self._kernel_args(), OH, OW, cols)
        return cols

    def _kernel_args(self):
        """``kh, kw, sh, sw, dh, dw, pad_top, pad_left``: what the numba kernels take."""
        g = self.geometry
        return (*g.kernel, *g.stride, *g.dilation, g.pad[0][0], g.pad[1][0])

    def _scratch(self, name, thread, shape, dtype):
        """A C-contiguous work array of ``shape``, one per ``(name, thread)``, carved from a
        buffer kept between calls (allocating tens of megabytes every step costs page
        faults); every user overwrites it."""
        size = math.prod(shape)
        buf = self._scratch_buffers.get((name, thread))
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._scratch_buffers[name, thread] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    # -- backward --------------------------------------------------------------------------
    def backward(self, dz):
        """With ``dz2 = dz`` reordered to ``(O, N*OH*OW)`` (the layout of ``W2d @ cols``),
        per group g:

            dW_g = dz2_g @ cols_g.T          (a correlation of the input with dz)
            db   = dz.sum over (n, oh, ow)
            dcols_g = W2d_g.T @ dz2_g
            dX = col2im(dcols)               (a transposed convolution of dz with W)

        ``dW`` and ``db`` are added into the parameters' ``.grad``; ``dX`` is returned.
        """
        dz = self._tap_grad("z", dz)
        if self.spatial == 1:
            dz = dz[:, :, None, :]
        dx = (self._backward_reference if self._reference else self._backward_fast)(dz)
        return dx if self.spatial == 2 else dx[:, :, 0, :]

    def _backward_reference(self, dz):
        N, O, OH, OW = dz.shape
        G = self.groups
        dz2 = dz.transpose(1, 0, 2, 3).reshape(G, O // G, N * OH * OW)
        cols = self._grouped(self._cols)
        self.weight.grad += (dz2 @ cols.transpose(0, 2, 1)).reshape(self.weight.shape)
        if self.bias is not None:
            self.bias.grad += dz.sum(axis=(0, 2, 3))
        dcols = self._weight2d(self.weight.data).transpose(0, 2, 1) @ dz2
        dcols = self._tap_grad("cols", dcols.reshape(self._cols.shape))
        return col2im(dcols, self._x_shape, self.geometry)

    def _backward_fast(self, dz):
        """The reference's equations a chunk at a time, shared among threads like forward;
        each chunk's ``cols`` is rebuilt (cheap while it is in cache) rather than kept from
        forward. Each thread sums ``dW`` and ``db`` over its own chunks; their sums are
        added in thread order."""
        N, O, OH, OW = dz.shape
        P, dtype = OH * OW, dz.dtype
        dz = np.ascontiguousarray(dz).reshape(N, O, P)
        W = self._weight2d(self.weight.data)
        dx = np.empty(self._x.shape, dtype=dtype)

        def backward_chunks(thread, chunks):
            dW, db = np.zeros(W.shape, dtype=dtype), np.zeros(O, dtype=dtype)
            for n0, n1 in chunks:
                cols = self._im2col_fast(self._x[n0:n1], OH, OW, thread)
                dz2 = self._scratch("z2", thread, (O, cols.shape[1]), dtype)
                np.copyto(dz2.reshape(O, n1 - n0, P), dz[n0:n1].transpose(1, 0, 2))
                db += dz2.sum(axis=1)
                dW += self._grouped(dz2) @ self._grouped(cols).transpose(0, 2, 1)
                dcols = self._scratch("dcols", thread, cols.shape, dtype)
                np.matmul(W.transpose(0, 2, 1), self._grouped(dz2), out=self._grouped(dcols))
                kernels.col2im(dcols, *self._kernel_args(), OH, OW, dx[n0:n1])
            return dW, db

        for dW, db in share_chunks(backward_chunks, self._chunks(N, P, dtype)):
            self.weight.grad += dW.reshape(self.weight.shape)
            if self.bias is not None:
                self.bias.grad += db
        return dx

    # -- reporting -------------------------------------------------------------------------
    def flops(self, input_shape, output_shape):
        """``2 * N * O * OH*OW * (C/G)*kh*kw``: a multiply and an add per tap (the bias's add
        in place of the one a sum of ``K`` terms does not need), the rule of every layer."""
        return 2 * int(np.prod(output_shape)) * int(np.prod(self.weight.shape[1:]))

    def extra_repr(self):
        one = lambda t: as_given(t, self.spatial)
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={one(self.kernel_size)}"
        if self.stride != (1,) * self.spatial:
            s += f", stride={one(self.stride)}"
        if self.padding not in (0, (0,) * self.spatial, "valid"):
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self.spatial:
            s += f", dilation={one(self.dilation)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv2D(_Conv):
    """2-D convolution (PyTorch's ``Conv2d``; like it, a cross-correlation).

    Shapes: ``x (N, C, H, W)`` -> ``z (N, O, OH, OW)`` with
    ``OH = (H + pad_top + pad_bottom - dilation*(kh - 1) - 1) // stride + 1`` (same for W);
    ``weight (O, C/groups, kh, kw)``, ``bias (O,)``, both initialised U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) with ``fan_in = C/groups * kh * kw``.

    ``z[n, o, oh, ow] = b[o] + sum over k < C/groups, i, j of W[o, k, i, j] * xpad[n, g*C/groups + k,
    oh*s + i*d, ow*s + j*d]``, with ``g`` the group of filter ``o``.

    ``padding``: an int or ``(ph, pw)`` (both sides), ``'valid'`` (none) or ``'same'``
    (stride 1 only; output size = input size, the odd extra row/column at the bottom/right).
    ``stride`` and ``dilation``: an int or ``(sh, sw)``; ``groups`` divides ``C`` and ``O``.
    ``bias=False`` leaves ``b`` out (``self.bias`` is None); ``rng`` (a Generator or an int
    seed; default the global generator, ``nn.seed``) draws the initial weights; ``dtype`` is
    float32 (default) or float64.

    Intermediates (when recording): ``cols`` (the im2col matrix, ``(C*kh*kw, N*OH*OW)``) and
    ``z`` (the output).
    """


class Conv1D(_Conv):
    """1-D convolution (PyTorch's ``Conv1d``): ``x (N, C, L)`` -> ``z (N, O, OL)``, ``weight
    (O, C/groups, k)``, ``bias (O,)``.

    ``z[n, o, t] = b[o] + sum over k < C/groups, i of W[o, k, i] * xpad[n, g*C/groups + k, t*s + i*d]``,
    with ``g`` the group of filter ``o``.

    Computed as ``Conv2D`` on ``(N, C, 1, L)`` with a ``(1, k)`` kernel; ``cols`` has rows
    ``(c, i)`` and columns ``(n, t)``. Arguments and intermediates as ``Conv2D``.
    """

    spatial = 1
