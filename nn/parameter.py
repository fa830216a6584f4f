"""`Parameter`: a trainable array and the gradient that backward accumulates into it."""
import numpy as np

from .checks import check_flag, check_float_dtype


class Parameter:
    """A trainable tensor.

    Attributes
    ----------
    data : np.ndarray
        The value, updated in place by optimizers: a writeable, C-contiguous float array (one
        that is not contiguous is copied; a read-only one is refused). It may be replaced, but
        a module's forward and backward refuse a parameter whose shape is no longer the one
        it was registered with (its kernels are sized by the layer's configuration).
    grad : np.ndarray or None
        dL/d(data), same shape and dtype as ``data`` (assigning anything else is refused; a new
        ``data`` of another shape or dtype sets it to None). Layers' ``backward`` ADDS into it
        (weight sharing and recurrence rely on that); ``zero_grad`` clears it. Set to None it
        means "no gradient" (as in PyTorch): optimizers skip the parameter, and the next
        ``backward`` of its module or ``zero_grad`` starts it again from zeros.
    name : str
        The name under which the owning module registered it (e.g. ``"weight"``).
    requires_grad : bool
        False freezes it (PyTorch's flag, e.g. a pretrained part of a model being fine-tuned):
        optimizers, ``clip_grad_norm`` and ``clip_grad_value`` leave it alone. Its module's
        backward still computes its gradient (every layer here computes all of them), so
        ``grad`` holds a value, unused -- which is why the flag itself is what optimizers
        look at. (PyTorch's look at ``grad is None`` only: a parameter frozen there while it
        still holds a gradient, or momentum, keeps moving until its gradient is set to None;
        here it stops.) ``requires_grad_(False)`` sets it and returns self.
    """

    __slots__ = ("_data", "_grad", "_requires_grad", "name")

    def __init__(self, data, name="", requires_grad=True):
        self.name = name
        self._grad = None
        self.data = data
        self.grad = np.zeros_like(self.data)
        self.requires_grad = requires_grad

    @property
    def requires_grad(self):
        return getattr(self, "_requires_grad", True)     # unset in one pickled before the flag

    @requires_grad.setter
    def requires_grad(self, value):
        self._requires_grad = check_flag(f"Parameter {self.name!r}", "requires_grad", value)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        value = np.asarray(value)
        owner = f"Parameter {self.name!r}"
        check_float_dtype(owner, value.dtype, "an array of dtype")
        if not value.flags.writeable:
            raise ValueError(f"{owner}: expected a writeable array (optimizers update it in "
                             f"place), got a read-only one of shape {value.shape}; pass a copy")
        self._data = value if value.flags.c_contiguous else value.copy(order="C")
        grad = self._grad
        if grad is not None and (grad.shape != value.shape or grad.dtype != value.dtype):
            self._grad = None           # a gradient of the old value's shape or dtype: none now

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            owner = f"Parameter {self.name!r}"
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{owner}: expected grad to be a numpy array or None, got "
                                f"{type(value).__name__}")
            if value.shape != self._data.shape or value.dtype != self._data.dtype:
                raise ValueError(f"{owner}: expected grad of the data's shape {self._data.shape} and "
                                 f"dtype {self._data.dtype}, got {value.shape} {value.dtype}")
            if not value.flags.writeable:
                raise ValueError(f"{owner}: expected a writable grad (backward adds into it), got a "
                                 "read-only array; pass a copy")
        self._grad = value

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self, set_to_none=False):
        """Zero the gradient (in place when there is one); with ``set_to_none=True`` set it
        to None instead, "no gradient", as PyTorch's ``zero_grad`` does by default."""
        if check_flag(f"Parameter {self.name!r}.zero_grad", "set_to_none", set_to_none):
            self.grad = None
        elif self.grad is None:
            self.grad = np.zeros_like(self.data)
        else:
            self.grad.fill(0)

    def astype(self, dtype):
        """Convert value and gradient to ``dtype`` in place (keeps the Parameter object)."""
        check_float_dtype(f"Parameter {self.name!r}.astype", dtype)
        grad = self.grad
        self.data = self.data.astype(dtype)
        if grad is not None:
            self.grad = grad.astype(dtype)
        return self

    def __repr__(self):
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype}{frozen})"
