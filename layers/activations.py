"""Element-wise activations and softmax. Each caches the one array its derivative needs."""
import numpy as np

from nn import Module
from nn.checks import check_float_array, check_int, check_real


class Activation(Module):
    """Shared bookkeeping: ``y = f(x)`` element-wise, ``dx = dy * f'(x)``. Shapes: ``x`` of any
    shape -> ``y`` of the same shape and dtype."""

    def _check(self, x):
        return check_float_array(type(self).__name__, x)

    def flops(self, input_shape, output_shape):
        return int(np.prod(output_shape))


class ReLU(Activation):
    """``y = max(x, 0)``;  ``dx = dy * [x > 0]`` (the subgradient at 0 is taken as 0). Any
    shape -> the same shape."""

    def forward(self, x):
        self._cut = self._check(x) <= 0
        return np.maximum(x, 0)        # like torch.relu, NaN stays NaN

    def backward(self, dy):
        """``dx = dy * [x > 0]``, written ``dy`` where not ``x <= 0``: as in PyTorch, a NaN
        input passes its gradient on, so a NaN upstream is not hidden here."""
        return np.where(self._cut, dy.dtype.type(0), dy)


class LeakyReLU(Activation):
    """``y = x if x > 0 else slope * x``;  ``dx = dy * (1 if x > 0 else slope)``. Any shape ->
    the same shape."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_real("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x):
        self._positive = self._check(x) > 0
        return np.where(self._positive, x, x * self.negative_slope).astype(x.dtype, copy=False)

    def backward(self, dy):
        """``dx = dy * (1 if x > 0 else negative_slope)``"""
        return np.where(self._positive, dy, dy * self.negative_slope).astype(dy.dtype, copy=False)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(Activation):
    """``y = tanh(x)``;  ``dx = dy * (1 - y^2)``. Any shape -> the same shape."""

    def forward(self, x):
        self._y = np.tanh(self._check(x))
        return self._y

    def backward(self, dy):
        """``dx = dy * (1 - y^2)``"""
        return dy * (1 - self._y * self._y)


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow: uses ``e = exp(-|x|) <= 1`` on both sides."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(Activation):
    """``y = 1 / (1 + exp(-x))`` (stable for large ``|x|``);  ``dx = dy * y (1 - y)``. Any
    shape -> the same shape."""

    def forward(self, x):
        self._y = sigmoid(self._check(x))
        return self._y

    def backward(self, dy):
        """``dx = dy * y * (1 - y)``"""
        return dy * self._y * (1 - self._y)


class Softmax(Activation):
    """``y_i = exp(x_i - max x) / sum_j exp(x_j - max x)`` along ``axis`` (default last); any
    shape -> the same shape, each slice along ``axis`` summing to 1.

    Its Jacobian is ``dy_i/dx_j = y_i (delta_ij - y_j)``, so
    ``dx = y * (dy - sum(dy * y, axis))``. For classification prefer raw logits with
    ``CrossEntropyLoss``, which fuses softmax and log for stability.
    """

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = check_int("Softmax", "axis", axis)

    def forward(self, x):
        self._check(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax: expected an input with an axis {self.axis}, got shape {x.shape}")
        if x.shape[self.axis] == 0:
            raise ValueError(f"Softmax: expected an input with a non-empty axis {self.axis}, got shape {x.shape}")
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        self._y = e / e.sum(axis=self.axis, keepdims=True)
        return self._y

    def backward(self, dy):
        """``dx = y * (dy - sum(dy * y, axis))``"""
        y = self._y
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))
