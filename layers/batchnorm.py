"""`BatchNorm1D` and `BatchNorm2D`: normalise each channel over the batch, then scale and shift.

Per channel c, over the ``m`` values it has in the batch (``m = N`` for ``(N, C)`` input,
``N*L`` for ``(N, C, L)``, ``N*H*W`` for ``(N, C, H, W)``)::

    mean = (1/m) sum x                 var = (1/m) sum (x - mean)^2      (biased)
    xhat = (x - mean) / sqrt(var + eps)
    y    = gamma * xhat + beta

Training normalises with the batch's statistics and updates the running estimates
``running = (1 - momentum) * running + momentum * batch`` (the variance unbiased,
``var * m / (m - 1)``, as PyTorch); evaluation normalises with the running estimates. With
``track_running_stats=False`` there are none: every call normalises with its batch's
statistics, in evaluation too.

Backward (training). ``xhat`` depends on x directly and through ``mean`` and ``var``, which
every x of the channel feeds. Node by node (the reference path)::

    dgamma = sum(dy * xhat)            dbeta = sum(dy)
    dxhat  = dy * gamma
    dvar   = sum(dxhat * (x - mean)) * (-1/2) * (var + eps)^(-3/2)
    dmean  = -sum(dxhat) / sqrt(var + eps) + dvar * (1/m) sum(-2 (x - mean))
    dx     = dxhat / sqrt(var + eps) + dvar * 2 (x - mean) / m + dmean / m

The second term of ``dmean`` is zero (deviations from the mean sum to zero); substituting
``x - mean = xhat * sqrt(var + eps)`` collapses the rest to the closed form of the fast path::

    dx = (1/m) * inv_std * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),
    inv_std = 1 / sqrt(var + eps)

Normalising with the running estimates (evaluation, when they are tracked), mean and var are
constants, so ``dx = dxhat * inv_std``; with ``track_running_stats=False`` evaluation takes the
batch's statistics and the training backward above.
"""
import math

import numpy as np

from nn import Module, Parameter
from nn.checks import check_flag, check_float_array, check_float_dtype, check_real, check_size


class _BatchNorm(Module):
    """The normalisation shared by ``BatchNorm1D`` and ``BatchNorm2D``."""

    shapes = ()          # the accepted input layouts, e.g. (("N", "C", "H", "W"),)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        dtype = check_float_dtype(type(self).__name__, dtype)
        self.num_features = check_size(type(self).__name__, "num_features", num_features)
        self.eps = check_real(type(self).__name__, "eps", eps)
        if self.eps <= 0:            # a constant channel would give 0 / 0
            raise ValueError(f"{type(self).__name__}: expected eps > 0, got {eps!r}")
        # a Python float: a NumPy float64 momentum would promote float32 buffers to float64
        self.momentum = None if momentum is None else check_real(type(self).__name__, "momentum",
                                                                 momentum, 0.0, 1.0)
        C = self.num_features
        affine = check_flag(type(self).__name__, "affine", affine)
        self.weight = Parameter(np.ones(C, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(C, dtype=dtype)) if affine else None
        self.track_running_stats = check_flag(type(self).__name__, "track_running_stats", track_running_stats)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(C, dtype=dtype))
            self.register_buffer("running_var", np.ones(C, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    # -- helpers -----------------------------------------------------------------------------
    def _check_input(self, x):
        name = type(self).__name__
        check_float_array(name, x, dtype=self.dtype)      # None (no array held): any float dtype
        layouts = [tuple(self.num_features if d == "C" else d for d in s) for s in self.shapes]
        if not any(x.ndim == len(s) and x.shape[1] == self.num_features for s in layouts):
            shown = " or ".join("(" + ", ".join(map(str, s)) + ")" for s in layouts)
            raise ValueError(f"{name}: expected input of shape {shown}, got {x.shape}")
        m = x.size // self.num_features
        if self._uses_batch_stats() and m < 2:
            when = "when training" if self.training else "with track_running_stats=False"
            raise ValueError(f"{name}: expected more than 1 value per channel {when}, "
                             f"got input {x.shape}")
        return m

    def _uses_batch_stats(self):
        """Whether this call normalises with the batch's statistics (else the running ones)."""
        return self.training or not self.track_running_stats

    @staticmethod
    def _axes(x):
        """Every axis but the channel axis 1: the statistics reduce over these."""
        return (0,) + tuple(range(2, x.ndim))

    @staticmethod
    def _per_channel(v, x):
        """A ``(C,)`` vector shaped to broadcast against ``x``: ``(1, C, 1, ...)``."""
        return v.reshape((1, -1) + (1,) * (x.ndim - 2))

    def _gamma_beta(self, dtype):
        if self.weight is None:
            return np.ones(self.num_features, dtype), np.zeros(self.num_features, dtype)
        return self.weight.data, self.bias.data

    def _update_running(self, mean, var, m):
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean = (1 - momentum) * self.running_mean + momentum * mean
        self.running_var = (1 - momentum) * self.running_var + momentum * var * (m / (m - 1))

    # -- forward -----------------------------------------------------------------------------
    def forward(self, x):
        m = self._check_input(x)
        self._reference = self._use_reference()
        self._m = m
        self._batch_stats = self._uses_batch_stats()   # backward follows what forward did, not the mode now
        self._x = self._mean = self._var = self._inv_std = None   # kept by one path or the other
        return (self._forward_reference if self._reference else self._forward_fast)(x, m)

    def _forward_reference(self, x, m):
        axes, col = self._axes(x), (lambda v: self._per_channel(v, x))
        gamma, beta = self._gamma_beta(x.dtype)
        if self._batch_stats:
            mean = self._tap("mean", x.mean(axis=axes))
            var = self._tap("var", ((x - col(mean)) ** 2).mean(axis=axes))
            self._update_running(mean, var, m)
        else:
            mean = self._tap("mean", self.running_mean)
            var = self._tap("var", self.running_var)
        xhat = self._tap("xhat", (x - col(mean)) / np.sqrt(col(var) + self.eps))
        self._x, self._mean, self._var, self._xhat = x, mean, var, xhat
        return self._tap("y", col(gamma) * xhat + col(beta))

    def _forward_fast(self, x, m):
        x3 = x.reshape(x.shape[0], self.num_features, math.prod(x.shape[2:]))     # (N, C, L)
        gamma, beta = self._gamma_beta(x.dtype)
        if self._batch_stats:
            # Summed along L in x's dtype (NumPy's pairwise sum), then over the batch in
            # float64: one float32 running sum over millions of values loses digits.
            mean = (x3.sum(axis=2).sum(axis=0, dtype=np.float64) / m).astype(x.dtype)
            xc = x3 - mean[:, None]
            var = (np.square(xc).sum(axis=2).sum(axis=0, dtype=np.float64) / m).astype(x.dtype)
            self._update_running(mean, var, m)
        else:
            mean, var = self.running_mean, self.running_var
            xc = x3 - mean[:, None]
        self._inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        xhat = np.multiply(xc, self._inv_std[:, None], out=xc)        # in place: x - mean -> xhat
        self._xhat = xhat
        y = xhat * gamma[:, None]
        y += beta[:, None]
        return y.reshape(x.shape)

    # -- backward ----------------------------------------------------------------------------
    def backward(self, dy):
        """Per channel, summing over its ``m`` values::

            dgamma = sum(dy * xhat)      dbeta = sum(dy)      dxhat = dy * gamma
            dx = (1/m) / sqrt(var + eps) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))

        with the running statistics (evaluation, when tracked) ``dx = dxhat / sqrt(var + eps)``. The
        reference path goes node by node through ``var`` and ``mean`` (module docstring), the
        fast path takes the closed form. Adds ``dgamma``, ``dbeta`` into ``weight.grad``,
        ``bias.grad``; returns ``dx``."""
        return (self._backward_reference if self._reference else self._backward_fast)(dy)

    def _backward_reference(self, dy):
        x, mean, var, xhat, m = self._x, self._mean, self._var, self._xhat, self._m
        axes, col = self._axes(x), (lambda v: self._per_channel(v, x))
        gamma, _ = self._gamma_beta(x.dtype)
        dy = self._tap_grad("y", dy)
        if self.weight is not None:
            self.weight.grad += (dy * xhat).sum(axis=axes)
            self.bias.grad += dy.sum(axis=axes)
        dxhat = self._tap_grad("xhat", dy * col(gamma))
        inv_std = 1 / np.sqrt(var + self.eps)
        xc = x - col(mean)
        # sum(dxhat (x - mean)) (var + eps)^(-3/2) taken as sum(dxhat xhat) / (var + eps): the
        # same number, but inv_std ** 3 would fall below float32's range once std passes ~1e13.
        dvar = self._tap_grad("var", (dxhat * xhat).sum(axis=axes) * -0.5 * inv_std ** 2)
        if not self._batch_stats:        # mean and var are constants: only the direct path
            # dvar and dmean feed nothing here; they are recorded for the intermediates' check
            self._tap_grad("mean", -dxhat.sum(axis=axes) * inv_std)
            return dxhat * col(inv_std)
        dmean = self._tap_grad("mean", -dxhat.sum(axis=axes) * inv_std
                               + dvar * (-2 * xc).mean(axis=axes))
        return dxhat * col(inv_std) + col(dvar) * 2 * xc / m + col(dmean) / m

    def _backward_fast(self, dy):
        xhat, m, inv_std = self._xhat, self._m, self._inv_std               # xhat (N, C, L)
        dy3 = dy.reshape(xhat.shape)
        gamma, _ = self._gamma_beta(dy.dtype)
        dbeta = dy3.sum(axis=(0, 2))
        dgamma = np.einsum("ncl,ncl->c", dy3, xhat)
        if self.weight is not None:
            self.weight.grad += dgamma
            self.bias.grad += dbeta
        scale = (gamma * inv_std)[:, None]
        if not self._batch_stats:
            return (dy3 * scale).reshape(dy.shape)
        # the closed form, dx = gamma inv_std (dy - mean(dy) - xhat mean(dy xhat)), with
        # sum(dxhat) = gamma * dbeta and sum(dxhat * xhat) = gamma * dgamma
        dx = xhat * (dgamma / m)[:, None]
        dx += (dbeta / m)[:, None]
        np.subtract(dy3, dx, out=dx)
        dx *= scale
        return dx.reshape(dy.shape)

    # -- reporting ---------------------------------------------------------------------------
    def flops(self, input_shape, output_shape):
        """Per element: 2 with the running statistics (``x * scale + shift``); 7 with the
        batch's (mean: 1, variance: 3, normalise and scale-shift: 3 more)."""
        return int(np.prod(input_shape)) * (7 if self._uses_batch_stats() else 2)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
                + ("" if self.weight is not None else ", affine=False")
                + ("" if self.track_running_stats else ", track_running_stats=False"))


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of ``(N, C)`` features or ``(N, C, L)`` sequences, per channel C
    (PyTorch's ``BatchNorm1d``): ``x (N, C) or (N, C, L)`` -> ``y`` of the same shape, with,
    over the ``m`` values of channel c (``m = N`` or ``N*L``)::

        y = gamma * (x - mean) / sqrt(var + eps) + beta     (batch mean and biased var)
        dx = (1/m) * gamma / sqrt(var + eps) * (m * dy - sum(dy) - xhat * sum(dy * xhat))

    (in evaluation, when the running estimates are tracked, they stand in for mean and var and
    ``dx = dy * gamma / sqrt(var + eps)``); the derivation in this module's docstring.

    Parameters ``weight`` (gamma, ones) and ``bias`` (beta, zeros), ``(C,)``, unless
    ``affine=False``; buffers ``running_mean`` (zeros), ``running_var`` (ones), ``(C,)``, and
    ``num_batches_tracked`` (an int64 scalar) -- PyTorch's ``state_dict`` -- unless
    ``track_running_stats=False`` (then None, and every call uses its batch's statistics).
    ``momentum=None`` makes the running estimates a cumulative average.

    Intermediates (when recording): ``mean``, ``var`` (``(C,)``), ``xhat``, ``y``.
    """

    shapes = (("N", "C"), ("N", "C", "L"))


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` images per channel (PyTorch's ``BatchNorm2d``):
    ``y`` of the same shape, ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the mean
    and variance of each channel over its ``m = N*H*W`` values; the equations, parameters,
    buffers and intermediates of ``BatchNorm1D``."""

    shapes = (("N", "C", "H", "W"),)
