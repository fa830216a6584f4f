"""`Embedding`: a trainable lookup table from integer ids to vectors."""
import numpy as np

from nn import Module, Parameter
from nn.checks import check_float_dtype, check_size
from nn.random import get_rng


def one_hot(idx, num_classes, dtype):
    """``(..., num_classes)`` with a 1 at each index: the matrix that turns a lookup into a
    product."""
    out = np.zeros(idx.shape + (num_classes,), dtype)
    np.put_along_axis(out, idx[..., None], 1, axis=-1)
    return out


class Embedding(Module):
    """``y[...] = W[idx[...]]``: row ``idx`` of the table for every id.

    Shapes: ``idx`` integers of any shape with values in ``[0, num_embeddings)`` ->
    ``y (*idx.shape, embedding_dim)``; ``weight W (num_embeddings, embedding_dim)``, drawn from
    N(0, 1) as PyTorch's ``nn.Embedding``.

    A lookup is a product with a one-hot matrix, ``y = onehot(idx) @ W``, so backward is that
    product's weight gradient::

        dW += onehot(idx).T @ dy          every row receives the sum of the gradients of the
                                          positions that looked it up

    (The reference path computes these products as written, so a nan or inf anywhere in ``W``
    or ``dy`` spreads to every output or row through ``0 * nan``; the fast path, a lookup and a
    scatter-add, keeps it where it is, as PyTorch does.)

    ``padding_idx`` (negative values count from the end): that row starts at zero and never
    receives a gradient, so padding positions stay a zero vector. (Its reported gradient is
    zero by design, not the derivative: ``nn.gradcheck`` fails that row when the ids use it.)

    ``rng`` (a Generator or an int seed; default the global generator, ``nn.seed``) draws the
    initial table; ``dtype`` is float32 (default) or float64.

    ``backward(dy)`` returns None: integer ids have no gradient (in a ``Sequential`` the
    embedding is the first layer and nothing needs one).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, rng=None, dtype=np.float32):
        super().__init__()
        dtype = check_float_dtype(type(self).__name__, dtype)
        self.num_embeddings = check_size("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = check_size("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if not isinstance(padding_idx, (int, np.integer)) or isinstance(padding_idx, bool):
                raise TypeError(f"Embedding: expected padding_idx to be an integer or None, got {padding_idx!r}")
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: expected padding_idx in [{-num_embeddings}, {num_embeddings}), "
                                 f"got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        rng = get_rng(rng, type(self).__name__)
        weight = rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight)
        self._idx = None

    def forward(self, idx):
        if not isinstance(idx, np.ndarray):
            raise TypeError(f"Embedding: expected the indices to be a numpy array, got {type(idx).__name__}")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: expected integer indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise ValueError(f"Embedding: expected indices in [0, {self.num_embeddings}), "
                             f"got values from {idx.min()} to {idx.max()}")
        self._idx, self._reference = idx, self._use_reference()
        W = self.weight.data
        if self._reference:
            return one_hot(idx, self.num_embeddings, W.dtype) @ W
        return W[idx]

    def backward(self, dy):
        """``dW += onehot(idx).T @ dy`` (the fast path scatter-adds ``dy`` into the looked-up
        rows instead); the padding row gets nothing. Returns None."""
        rows = self._idx.reshape(-1)
        dy = dy.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = rows != self.padding_idx
            rows, dy = rows[keep], dy[keep]
        if self._reference:
            self.weight.grad += one_hot(rows, self.num_embeddings, dy.dtype).T @ dy
        else:
            np.add.at(self.weight.grad, rows, dy)
        return None

    def extra_repr(self):
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
