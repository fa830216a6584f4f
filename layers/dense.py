"""`Dense`: the fully connected (affine) layer."""
import numpy as np

from nn import Module, Parameter
from nn.checks import check_flag, check_float_array, check_float_dtype, check_size
from nn.init import fan_in_bound, uniform
from nn.random import get_rng


class Dense(Module):
    """``z = x @ W.T + b``.

    Shapes: ``x (..., in_features)`` -> ``z (..., out_features)`` (one or more leading
    dimensions, so it also maps every step of a ``(N, T, F)`` sequence); ``weight W
    (out_features, in_features)``, ``bias b (out_features,)`` -- PyTorch's ``Linear`` layout
    and default initialisation U(-1/sqrt(in), 1/sqrt(in)).

    ``bias=False`` leaves ``b`` out (``self.bias`` is None); ``rng`` (a Generator or an int
    seed; default the global generator, ``nn.seed``) draws the initial weights; ``dtype`` is
    float32 (default) or float64.

    Intermediates (when recording): ``z``.
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        dtype = check_float_dtype(type(self).__name__, dtype)
        self.in_features = check_size("Dense", "in_features", in_features)
        self.out_features = check_size("Dense", "out_features", out_features)
        bias = check_flag("Dense", "bias", bias)
        bound = fan_in_bound(self.in_features)
        rng = get_rng(rng, type(self).__name__)    # one stream for weight and bias
        self.weight = Parameter(uniform((self.out_features, self.in_features), bound, rng, dtype))
        self.bias = Parameter(uniform((self.out_features,), bound, rng, dtype)) if bias else None
        self._x = None

    def forward(self, x):
        check_float_array("Dense", x, dtype=self.weight.dtype)
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"Dense: expected input of shape (N, ..., {self.in_features}), got {x.shape}")
        self._x = x
        z = x @ self.weight.data.T
        if self.bias is not None:
            z += self.bias.data
        return self._tap("z", z)

    def backward(self, dz):
        """With ``X`` and ``dZ`` flattened to rows (one per sample and step)::

            dW += dZ.T @ X,   db += dZ.sum(0),   dX = dZ @ W
        """
        dz = self._tap_grad("z", dz)
        x2 = self._x.reshape(-1, self.in_features)
        dz2 = dz.reshape(-1, self.out_features)
        self.weight.grad += dz2.T @ x2
        if self.bias is not None:
            self.bias.grad += dz2.sum(axis=0)
        return dz @ self.weight.data

    def flops(self, input_shape, output_shape):
        """``2 * N * in * out``: a multiply and an add per weight (the bias's add in place of
        the one a sum of ``in`` terms does not need)."""
        return 2 * int(np.prod(input_shape[:-1])) * self.in_features * self.out_features

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
