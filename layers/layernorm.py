"""`LayerNorm`: normalize each sample over its last dimensions, then scale and shift."""
import numpy as np

from nn import Module, Parameter
from nn.checks import check_flag, check_float_array, check_float_dtype, check_real

from .kernels import layernorm as kernels


def layernorm_forward(x, weight, bias, eps):
    """Reference forward on rows ``x (R, M)``: returns ``y``, ``xhat`` and ``rstd (R, 1)``::

        mean = x.mean(1)     var = ((x - mean)^2).mean(1)     rstd = 1 / sqrt(var + eps)
        xhat = (x - mean) * rstd          y = xhat * weight + bias

    The statistics are taken in float64, as the kernel takes them: in float32, rows of
    values far from 0 (``1000 + 0.01 * noise``) would lose to rounding the very digits the
    normalisation magnifies.
    """
    x64 = x.astype(np.float64)
    xc = x64 - x64.mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt((xc ** 2).mean(axis=1, keepdims=True) + eps)
    xhat = (xc * rstd).astype(x.dtype)
    return xhat * weight + bias, xhat, rstd.astype(x.dtype)


def layernorm_backward(dy, xhat, rstd, weight):
    """Reference backward on rows: returns ``dx, dweight, dbias``.

    Derivation, for one row of M values (``mu``, ``var`` depend on every ``x_j``)::

        xhat_i = (x_i - mu) r,   r = (var + eps)^(-1/2),   mu = mean(x),   var = mean((x - mu)^2)
        dmu/dx_j = 1/M,   dvar/dx_j = 2 (x_j - mu) / M,   dr/dx_j = -r^2 xhat_j / M
        dxhat_i/dx_j = r (delta_ij - 1/M) - r xhat_i xhat_j / M

    With ``g = dL/dxhat = dy * weight`` the chain rule sums over ``i``::

        dx_j = sum_i g_i dxhat_i/dx_j = r (g_j - mean(g) - xhat_j mean(g * xhat))

    and the affine part gives ``dweight = sum over rows of dy * xhat``, ``dbias = sum of dy``.
    """
    g = dy * weight
    dx = rstd * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


class LayerNorm(Module):
    """Layer normalization (Ba et al., 2016), PyTorch's ``nn.LayerNorm``.

    Normalizes over the last ``len(normalized_shape)`` dimensions of each sample (for a
    sequence ``(N, T, F)`` with ``normalized_shape=F``: every step of every sample on its
    own, independently of the batch, the same in training and eval)::

        y = (x - mean) / sqrt(var + eps) * weight + bias          (biased variance)

    Shapes: ``x (..., *normalized_shape)`` -> the same; ``weight`` (ones) and ``bias`` (zeros)
    of ``normalized_shape`` and of ``dtype`` when ``elementwise_affine``. Without them
    (``elementwise_affine=False``) ``weight`` and ``bias`` are None, as in PyTorch, and, holding
    no array, the layer takes input of any float dtype. ``eps`` (>= 0) keeps a constant row
    from dividing by zero. Backward: ``layernorm_backward``.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=np.float32):
        super().__init__()
        dtype = check_float_dtype(type(self).__name__, dtype)
        shape = normalized_shape if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
        if not shape or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1 for s in shape):
            raise ValueError(f"LayerNorm: expected normalized_shape to be a positive int or a tuple of them, "
                             f"got {normalized_shape!r}")
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = check_real("LayerNorm", "eps", eps, low=0.0)
        self.elementwise_affine = check_flag("LayerNorm", "elementwise_affine", elementwise_affine)
        affine = self.elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, dtype)) if affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype)) if affine else None

    def _affine(self, dtype):
        if self.weight is not None:
            return self.weight.data.reshape(-1), self.bias.data.reshape(-1)
        M = int(np.prod(self.normalized_shape))
        return np.ones(M, dtype), np.zeros(M, dtype)

    def forward(self, x):
        check_float_array("LayerNorm", x, dtype=self.dtype)
        k = len(self.normalized_shape)
        if x.ndim < k or x.shape[x.ndim - k:] != self.normalized_shape:
            expected = "(..., " + ", ".join(map(str, self.normalized_shape)) + ")"
            raise ValueError(f"LayerNorm: expected input of shape {expected}, got {x.shape}")
        rows = x.reshape(-1, int(np.prod(self.normalized_shape)))
        weight, bias = self._affine(x.dtype)
        self._reference = self._use_reference()
        if self._reference:
            y, self._xhat, self._rstd = layernorm_forward(rows, weight, bias, self.eps)
        else:
            y, self._xhat = np.empty_like(rows), np.empty_like(rows)
            self._rstd = np.empty((rows.shape[0], 1), x.dtype)
            kernels.layernorm_forward(np.ascontiguousarray(rows), weight, bias, self.eps,
                                      y, self._xhat, self._rstd[:, 0])
        return y.reshape(x.shape)

    def backward(self, dy):
        """``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` with ``g = dy * weight``;
        ``dweight += sum(dy * xhat)``, ``dbias += sum(dy)`` (see ``layernorm_backward``)."""
        rows = dy.reshape(self._xhat.shape)
        weight, _ = self._affine(dy.dtype)
        if self._reference:
            dx, dweight, dbias = layernorm_backward(rows, self._xhat, self._rstd, weight)
        else:
            dx = np.empty_like(rows)
            kernels.layernorm_backward(np.ascontiguousarray(rows), self._xhat, self._rstd[:, 0], weight, dx)
            dweight, dbias = (rows * self._xhat).sum(axis=0), rows.sum(axis=0)
        if self.weight is not None:
            self.weight.grad += dweight.reshape(self.normalized_shape)
            self.bias.grad += dbias.reshape(self.normalized_shape)
        return dx.reshape(dy.shape)

    def flops(self, input_shape, output_shape):
        """Per element: 8 (mean: 1, variance: 3, normalise: 2, scale and shift: 2)."""
        return 8 * int(np.prod(input_shape))

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
