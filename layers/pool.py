"""Pooling: `MaxPool2D`, `AvgPool2D`, their 1-D versions, and `GlobalAvgPool2D`.

A pooling layer has no parameters: each output summarises one window of its input plane, and
its backward is gradient routing -- every output sends its gradient back to the inputs that
made it. Max pooling copies one input (the window's maximum), so that input alone receives the
gradient; average pooling weighs every input of a window by ``1 / divisor``, so each receives
that share.

Window ``(oh, ow)`` reads input rows ``oh*sh - ph + i*dh`` for ``i = 0 .. kh-1`` (columns
alike; the dilation ``dh`` is 1 -- neighbouring rows -- except for max pooling's ``dilation``),
clipped to the input: max pooling pads with -inf (padding never wins), average pooling with
zeros. ``OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1``; with ``ceil_mode`` the division rounds
up, so a last, partial window covers the rows left over -- unless it would start in the right
padding (PyTorch's rule). The divisor of a window is the number of positions it covers in the
padded input (``kh * kw`` except for those partial windows: PyTorch's default
``count_include_pad=True``), or with ``count_include_pad=False`` only those in the input, or a
fixed ``divisor_override``.

This file holds the readable NumPy references (loops over the output positions). The fast
path of max pooling runs the same loops compiled (``layers/kernels/pool.py``), in parallel over
the planes; average pooling's fast path is the convolution's im2col and col2im kernels.
"""
import numpy as np

from nn import Module
from nn.checks import check_flag, check_float_array, check_shape, check_size

from .conv import _ntuple, as_2d, as_given
from .kernels import conv as conv_kernels
from .kernels import pool as kernels


def output_size(size, kernel, stride, pad, ceil_mode, dilation=1):
    """Windows along one axis: ``(size + 2*pad - dilation*(kernel - 1) - 1) / stride + 1``
    rounded down, or up with ``ceil_mode`` as long as the last window starts inside the input
    or the left padding."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    return out - 1 if ceil_mode and (out - 1) * stride >= size + pad else out


def window_taps(o, stride, pad, kernel, size, dilation=1):
    """The input positions window ``o`` reads along one axis, clipped to the input, as a
    slice: ``o*stride - pad + i*dilation`` for the ``i`` in ``[0, kernel)`` that land inside
    ``[0, size)`` (an empty slice if none does)."""
    start = o * stride - pad
    first = max(0, -(start // dilation))              # ceil(-start / dilation), clipped at 0
    last = min(kernel - 1, (size - 1 - start) // dilation)
    return slice(start + first * dilation, start + max(first, last + 1) * dilation, dilation)


def _windows(out_size, stride, pad, kernel, in_size, dilation=1):
    """``(o, taps)`` for every output position along one axis (``window_taps``)."""
    for o in range(out_size):
        yield o, window_taps(o, stride, pad, kernel, in_size, dilation)


# ----------------------------------------------------------------------------- reference

def maxpool_reference(x, kernel, stride, pad, out_size, dilation=(1, 1)):
    """``y[n, c, oh, ow] = max of the window``; ``argmax[n, c, oh, ow] = h * W + w`` of the
    first maximum in row-major scan order -- or, when the window holds NaN (which propagates),
    of its last NaN: PyTorch's rule (it scans keeping ``v > best or isnan(v)``)."""
    N, C, H, W = x.shape
    y = np.empty((N, C) + out_size, dtype=x.dtype)
    argmax = np.empty((N, C) + out_size, dtype=np.intp)
    for oh, rows in _windows(out_size[0], stride[0], pad[0], kernel[0], H, dilation[0]):
        for ow, cols in _windows(out_size[1], stride[1], pad[1], kernel[1], W, dilation[1]):
            window = x[:, :, rows, cols]
            width = window.shape[3]
            window = window.reshape(N, C, window.shape[2] * width)      # explicit: N may be 0
            nan = np.isnan(window)
            last_nan = window.shape[2] - 1 - nan[:, :, ::-1].argmax(axis=2)
            k = np.where(nan.any(axis=2), last_nan, window.argmax(axis=2))
            y[:, :, oh, ow] = window.max(axis=2)
            h, w = rows.start + k // width * rows.step, cols.start + k % width * cols.step
            argmax[:, :, oh, ow] = h * W + w
    return y, argmax


def maxpool_backward_reference(dy, argmax, x_shape):
    """``dx[n, c].flat[argmax[n, c, oh, ow]] += dy[n, c, oh, ow]``: each output's gradient
    goes to the input it copied; an input that won several windows sums their gradients."""
    N, C, H, W = x_shape
    dx = np.zeros((N * C, H * W), dtype=dy.dtype)
    planes, P = np.arange(N * C)[:, None], dy.shape[2] * dy.shape[3]
    np.add.at(dx, (planes, argmax.reshape(N * C, P)), dy.reshape(N * C, P))
    return dx.reshape(x_shape)


def avgpool_divisor(in_size, kernel, stride, pad, out_size, count_include_pad):
    """``divisor[oh, ow]``: how many positions window ``(oh, ow)`` averages over -- those it
    covers in the padded input, or with ``count_include_pad=False`` in the input alone. Both
    factor into rows times columns."""
    def counts(size, k, s, p, n):
        start = np.arange(n) * s - p
        if count_include_pad:
            return np.minimum(start + k, size + p) - start
        return np.minimum(start + k, size) - np.maximum(start, 0)
    return np.outer(*(counts(*axis) for axis in zip(in_size, kernel, stride, pad, out_size)))


def avgpool_reference(x, kernel, stride, pad, out_size, divisor):
    """``y[n, c, oh, ow] = sum of the window / divisor[oh, ow]`` (padding adds zeros)."""
    N, C, H, W = x.shape
    y = np.empty((N, C) + out_size, dtype=x.dtype)
    for oh, rows in _windows(out_size[0], stride[0], pad[0], kernel[0], H):
        for ow, cols in _windows(out_size[1], stride[1], pad[1], kernel[1], W):
            y[:, :, oh, ow] = x[:, :, rows, cols].sum(axis=(2, 3)) / divisor[oh, ow]
    return y


def avgpool_backward_reference(dy, x_shape, kernel, stride, pad, divisor):
    """``dx[window] += dy[n, c, oh, ow] / divisor[oh, ow]`` for every window: each input
    receives that share of the gradient of every window it lies in."""
    N, C, H, W = x_shape
    dx = np.zeros(x_shape, dtype=dy.dtype)
    out_size = dy.shape[2:]
    for oh, rows in _windows(out_size[0], stride[0], pad[0], kernel[0], H):
        for ow, cols in _windows(out_size[1], stride[1], pad[1], kernel[1], W):
            dx[:, :, rows, cols] += dy[:, :, oh, ow, None, None] / divisor[oh, ow]
    return dx


# ----------------------------------------------------------------------------- layers

class _Pool(Module):
    """Arguments, shape checks and the 1-D view shared by the pooling layers; a 1-D layer
    pools ``(N, C, L)`` as ``(N, C, 1, L)`` with a ``(1, k)`` window."""

    spatial = 2

    def __init__(self, kernel_size, stride=None, padding=0, *, ceil_mode=False, dilation=1):
        super().__init__()
        self.ceil_mode = check_flag(type(self).__name__, "ceil_mode", ceil_mode)
        name, n = type(self).__name__, self.spatial
        self.kernel_size = _ntuple(kernel_size, n, name, "kernel_size")
        self.stride = self.kernel_size if stride is None else _ntuple(stride, n, name, "stride")
        self.padding = _ntuple(padding, n, name, "padding")
        self.dilation = _ntuple(dilation, n, name, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"{name}: expected kernel_size, stride, dilation >= 1 and padding >= 0, "
                             f"got {self.kernel_size}, {self.stride}, {self.dilation}, {self.padding}")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size}")
        self._kernel, self._stride = as_2d(self.kernel_size, n, 1), as_2d(self.stride, n, 1)
        self._pad, self._dilation = as_2d(self.padding, n, 0), as_2d(self.dilation, n, 1)

    def _check_input(self, x):
        name = type(self).__name__
        check_float_array(name, x)
        check_shape(name, x, ("N", "C", "H", "W") if self.spatial == 2 else ("N", "C", "L"))
        x4 = x if self.spatial == 2 else x[:, :, None, :]
        if min(x4.shape[2:]) < 1:
            raise ValueError(f"{name}: expected an input with a non-empty spatial size, got {x.shape}")
        axes = list(zip(x4.shape[2:], self._kernel, self._stride, self._pad, self._dilation))
        out_size = tuple(output_size(size, k, s, p, self.ceil_mode, d) for size, k, s, p, d in axes)
        lift = (lambda t: t) if self.spatial == 2 else (lambda t: t[1:])
        if min(out_size) < 1:
            need = tuple(max(1, d * (k - 1) + 1 - 2 * p - (s - 1 if self.ceil_mode else 0))
                         for _, k, s, p, d in axes)
            raise ValueError(f"{name}: expected an input of spatial size at least {lift(need)} "
                             f"(kernel {self.kernel_size}, padding {self.padding}"
                             + (f", dilation {self.dilation}" if max(self.dilation) > 1 else "")
                             + f"), got {x.shape}")
        for (size, k, s, p, d), out in zip(axes, out_size):
            if d == 1:                  # a window then always reads input: padding is at most k/2
                continue
            # Only a window starting in the padding can miss the input: the first few, and
            # with ceil_mode the last.
            edges = [o for o in range(out) if not 0 <= o * s - p < size]
            empty = [o for o in edges if not range(size)[window_taps(o, s, p, k, size, d)]]
            if empty:
                raise ValueError(f"{name}: window {empty[0]} of an axis of size {size} reads only "
                                 f"padding (kernel {self.kernel_size}, padding {self.padding}, "
                                 f"dilation {self.dilation}); pad less or dilate less")
        return x4, out_size

    def forward(self, x):
        x4, out_size = self._check_input(x)
        reference = self._use_reference()
        y = (self._forward_reference if reference else self._forward_fast)(x4, out_size)
        self._reference, self._x_shape = reference, x4.shape
        return y if self.spatial == 2 else y[:, :, 0, :]

    def backward(self, dy):
        """Gradient routing, window by window: max pooling ``dx[argmax] += dy``, average
        pooling ``dx[window] += dy / divisor``."""
        if self.spatial == 1:
            dy = dy[:, :, None, :]
        dx = (self._backward_reference if self._reference else self._backward_fast)(dy)
        return dx if self.spatial == 2 else dx[:, :, 0, :]

    def _planes(self, a):
        """``(N, C, H, W)`` -> contiguous ``(N*C, H, W)``."""
        return np.ascontiguousarray(a).reshape((-1,) + a.shape[2:])

    def flops(self, input_shape, output_shape):
        """One comparison (or addition) per window element."""
        return int(np.prod(output_shape)) * int(np.prod(self.kernel_size))

    def extra_repr(self):
        one = lambda t: as_given(t, self.spatial)
        return (f"kernel_size={one(self.kernel_size)}, stride={one(self.stride)}, "
                f"padding={one(self.padding)}"
                + (f", dilation={one(self.dilation)}" if max(self.dilation) > 1 else "")
                + (", ceil_mode=True" if self.ceil_mode else ""))


class _MaxPool(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, *, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode, dilation=dilation)

    def _forward_reference(self, x, out_size):
        y, self._argmax = maxpool_reference(x, self._kernel, self._stride, self._pad, out_size,
                                            self._dilation)
        return y

    def _forward_fast(self, x, out_size):
        planes = self._planes(x)
        y = np.empty((planes.shape[0],) + out_size, dtype=x.dtype)
        self._argmax = np.empty(y.shape, dtype=np.intp)     # a flat index into a plane
        kernels.maxpool_forward(planes, *self._kernel, *self._stride, *self._pad, *self._dilation,
                                y, self._argmax)
        return y.reshape(x.shape[:2] + out_size)

    def _backward_reference(self, dy):
        """Gradient routing: ``dx[argmax] += dy``."""
        return maxpool_backward_reference(dy, self._argmax, self._x_shape)

    def _backward_fast(self, dy):
        N, C, H, W = self._x_shape
        dx = np.empty((N * C, H * W), dtype=dy.dtype)
        kernels.maxpool_backward(self._planes(dy), self._argmax, dx)
        return dx.reshape(self._x_shape)


class _AvgPool(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):     # PyTorch's positional order
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode)
        self.count_include_pad = check_flag(type(self).__name__, "count_include_pad", count_include_pad)
        self.divisor_override = (None if divisor_override is None else
                                 check_size(type(self).__name__, "divisor_override", divisor_override))

    def _window_divisor(self, x, out_size):
        """``divisor (OH, OW)`` for this input, kept for backward."""
        if self.divisor_override is not None:
            divisor = np.full(out_size, self.divisor_override)
        else:
            divisor = avgpool_divisor(x.shape[2:], self._kernel, self._stride, self._pad,
                                      out_size, self.count_include_pad)
        self._divisor = divisor.astype(x.dtype)
        return self._divisor

    def _forward_reference(self, x, out_size):
        return avgpool_reference(x, self._kernel, self._stride, self._pad, out_size,
                                 self._window_divisor(x, out_size))

    def _forward_fast(self, x, out_size):
        """Average pooling is a convolution of each plane with a constant filter: im2col
        (padding as zeros), then each column's sum over its window's divisor."""
        cols = self._cols(x.shape[0] * x.shape[1] * out_size[0] * out_size[1], x.dtype)
        conv_kernels.im2col(self._planes(x)[:, None], *self._geometry(), *out_size, cols)
        return cols.sum(axis=0).reshape(x.shape[:2] + out_size) / self._window_divisor(x, out_size)

    def _backward_reference(self, dy):
        """Gradient routing: every input of a window receives ``dy / divisor``."""
        return avgpool_backward_reference(dy, self._x_shape, self._kernel, self._stride,
                                          self._pad, self._divisor)

    def _backward_fast(self, dy):
        """``dcols`` = each ``dy / divisor`` repeated for the window's taps; ``dx = col2im(dcols)``."""
        N, C, H, W = self._x_shape
        dcols = self._cols(dy.size, dy.dtype)
        dcols[:] = (dy / self._divisor).reshape(-1)
        dx = np.empty((N * C, 1, H, W), dtype=dy.dtype)
        conv_kernels.col2im(dcols, *self._geometry(), *dy.shape[2:], dx)
        return dx.reshape(self._x_shape)

    def _cols(self, outputs, dtype):
        """An im2col matrix for these windows: ``(kh * kw, outputs = N*C*OH*OW)``."""
        return np.empty((self._kernel[0] * self._kernel[1], outputs), dtype=dtype)

    def _geometry(self):
        """``kh, kw, sh, sw, dh, dw, pad_top, pad_left`` for the convolution kernels."""
        return (*self._kernel, *self._stride, 1, 1, *self._pad)

    def extra_repr(self):
        return (super().extra_repr() + ("" if self.count_include_pad else ", count_include_pad=False")
                + ("" if self.divisor_override is None else f", divisor_override={self.divisor_override}"))


class MaxPool2D(_MaxPool):
    """2-D max pooling (PyTorch's ``MaxPool2d``).

    ``MaxPool2D(kernel_size, stride=None, padding=0, dilation=1, *, ceil_mode=False)``
    (PyTorch's fifth positional argument, ``return_indices``, has no counterpart). Shapes:
    ``x (N, C, H, W)`` -> ``y (N, C, OH, OW)``, ``OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1``
    (rounded up with ``ceil_mode``, see ``output_size``); ``stride`` defaults to
    ``kernel_size``; ``padding`` (at most half the kernel) is -inf; ``dilation`` spaces the
    window's taps ``dh`` rows and ``dw`` columns apart.

    ``y[n, c, oh, ow] = max over the window of x``. Backward routes the gradient:
    ``dx[n, c, h*, w*] += dy[n, c, oh, ow]`` where ``(h*, w*)`` is the window's maximum -- on
    ties the first one in row-major scan order, and if the window holds NaN its last NaN, as
    PyTorch -- and zero elsewhere.
    """


class MaxPool1D(_MaxPool):
    """1-D max pooling: ``x (N, C, L)`` -> ``y (N, C, OL)``,
    ``OL = (L + 2*p - d*(k - 1) - 1) // s + 1`` (rounded up with ``ceil_mode``); the arguments,
    math and tie rule of ``MaxPool2D`` along one axis."""

    spatial = 1


class AvgPool2D(_AvgPool):
    """2-D average pooling (PyTorch's ``AvgPool2d``).

    ``AvgPool2D(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None)``.
    Shapes: ``x (N, C, H, W)`` -> ``y (N, C, OH, OW)``, ``OH = (H + 2*ph - kh) // sh + 1``
    (rounded up with ``ceil_mode``, see ``output_size``); ``stride`` defaults to
    ``kernel_size``; ``padding`` (at most half the kernel) is zeros.

    ``y[n, c, oh, ow] = (1 / divisor[oh, ow]) * sum over the window of x``, the divisor being
    ``kh*kw`` unless the window is a partial one of ``ceil_mode`` or, with
    ``count_include_pad=False``, overlaps the padding (``avgpool_divisor``); a
    ``divisor_override`` (a positive int) replaces it for every window. Backward:
    ``dx[n, c, h, w] = sum over the windows containing (h, w) of dy[n, c, oh, ow] / divisor[oh, ow]``.
    """


class AvgPool1D(_AvgPool):
    """1-D average pooling: ``x (N, C, L)`` -> ``y (N, C, OL)``, ``OL = (L + 2*p - k) // s + 1``
    (rounded up with ``ceil_mode``); the arguments and math of ``AvgPool2D`` along one axis."""

    spatial = 1


class GlobalAvgPool2D(Module):
    """``y[n, c] = mean over (h, w) of x[n, c, h, w]``: ``(N, C, H, W)`` -> ``(N, C)``.

    Backward spreads the gradient evenly: ``dx[n, c, h, w] = dy[n, c] / (H * W)``. One NumPy
    reduction is already both the readable and the fast implementation.
    """

    def forward(self, x):
        check_float_array("GlobalAvgPool2D", x)
        check_shape("GlobalAvgPool2D", x, ("N", "C", "H", "W"))
        if x.shape[2] * x.shape[3] == 0:
            raise ValueError(f"GlobalAvgPool2D: expected an input with a non-empty spatial size, "
                             f"got {x.shape}")
        self._x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        """``dx = dy[:, :, None, None] / (H * W)``, broadcast over each plane."""
        H, W = self._x_shape[2:]
        return np.ascontiguousarray(np.broadcast_to((dy / (H * W))[:, :, None, None], self._x_shape))

    def flops(self, input_shape, output_shape):
        return int(np.prod(input_shape))
