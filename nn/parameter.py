"""`Parameter`: a trainable array and the gradient that backward accumulates into it."""
import numpy as np

from .checks import check_float_dtype


class Parameter:
    """A trainable tensor.

    Attributes
    ----------
    data : np.ndarray
        The value, updated in place by optimizers.
    grad : np.ndarray
        dL/d(data), same shape and dtype as ``data``. Layers' ``backward`` ADDS into it
        (weight sharing and recurrence rely on that); ``zero_grad`` clears it.
    name : str
        The name under which the owning module registered it (e.g. ``"weight"``).
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name=""):
        data = np.asarray(data)
        check_float_dtype(f"Parameter {name!r}", data.dtype, "an array of dtype")
        self.data = data if data.flags.c_contiguous else data.copy(order="C")
        self.grad = np.zeros_like(self.data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        self.grad.fill(0)

    def astype(self, dtype):
        """Convert value and gradient to ``dtype`` in place (keeps the Parameter object)."""
        check_float_dtype(f"Parameter {self.name!r}.astype", dtype)
        self.data = self.data.astype(dtype)
        self.grad = self.grad.astype(dtype)
        return self

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"
