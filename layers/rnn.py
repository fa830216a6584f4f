"""`RNN`: the plain (Elman) recurrent cell, one step forward and back, and the layer."""
import numpy as np

from .kernels import recurrent as kernels
from .recurrent import RecurrentBase, no_tap


def rnn_step_forward(x_t, h_prev, W_ih, W_hh, b_ih, b_hh, relu=False, tap=no_tap):
    """One step of the plain RNN for a batch.

    Shapes: ``x_t (N, I)``, ``h_prev (N, H)``, ``W_ih (H, I)``, ``W_hh (H, H)``, biases
    ``(H,)``::

        a = x_t @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh
        h = tanh(a)            (or max(a, 0) with relu=True)

    ``tap(name, value)`` sees (and may perturb) ``a`` and ``h``. Returns ``h`` and the cache.
    """
    a = tap("a", x_t @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh)
    h = tap("h", np.maximum(a, 0) if relu else np.tanh(a))
    return h, (x_t, h_prev, a, h)


def rnn_step_backward(dh, cache, W_ih, W_hh, relu=False, tap_grad=no_tap):
    """BPTT through one step of the plain RNN.

    ``dh = dL/dh_t`` (from the output and from step t+1)::

        da = dh * (1 - h^2)          (relu: dh * [a > 0], and dh where a is NaN, as PyTorch)
        dx_t = da @ W_ih             dh_prev = da @ W_hh
        dW_ih = da.T @ x_t           dW_hh = da.T @ h_prev        db_ih = db_hh = da.sum(0)

    Every step back multiplies the gradient by ``W_hh`` and by ``tanh'(a) <= 1``: unless
    ``W_hh`` is large it shrinks geometrically with distance (vanishing gradients), and if
    it is large it can explode. ``tap_grad(name, grad)`` sees ``h`` and ``a``. Returns
    ``dx_t, dh_prev, (dW_ih, dW_hh, db_ih, db_hh)``.
    """
    x_t, h_prev, a, h = cache
    dh = tap_grad("h", dh)
    da = tap_grad("a", dh * ~(a <= 0) if relu else dh * (1 - h ** 2))    # a NaN passes dh on
    db = da.sum(axis=0)
    return da @ W_ih, da @ W_hh, (da.T @ x_t, da.T @ h_prev, db, db)


class RNN(RecurrentBase):
    """Plain recurrent layer, PyTorch's ``nn.RNN(batch_first=True)``.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    bidirectional=False, dropout=0.0, return_sequences=True, stateful=False, rng=None,
    dtype=np.float32)``

    At every step of every layer and direction (``rnn_step_forward``)::

        h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)        (or relu)

    Shapes: ``x (N, T, I)`` -> ``(N, T, D*H)`` or ``(N, D*H)``; ``state`` / ``final_state``
    ``h (num_layers*D, N, H)``. Parameters ``weight_ih_l{k} (H, I_k)``, ``weight_hh_l{k} (H,
    H)``, ``bias_ih_l{k}``, ``bias_hh_l{k} (H,)``, all U(-1/sqrt(H), 1/sqrt(H)). Layers,
    directions, ``lengths``, ``stateful`` and ``grad_norms``: see ``RecurrentBase``.

    Intermediates (when recording), per step ``(N, T, H)``: ``a`` (pre-activation) and ``h``.
    """

    GATES = 1
    CELL_FLOPS = 3

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 bidirectional=False, dropout=0.0, return_sequences=True, stateful=False, rng=None,
                 dtype=np.float32):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, bidirectional, dropout,
                         return_sequences, stateful, rng, dtype)
        self.nonlinearity = nonlinearity
        self._relu = nonlinearity == "relu"

    def _step_forward(self, x_t, state, w, tap):
        h, cache = rnn_step_forward(x_t, state[0], *w, relu=self._relu, tap=tap)
        return (h,), cache

    def _step_backward(self, d_state, cache, w, tap_grad):
        dx_t, dh_prev, grads = rnn_step_backward(d_state[0], cache, w.W_ih, w.W_hh, self._relu, tap_grad)
        return dx_t, (dh_prev,), grads

    def _forward_step(self, t, xproj, gh, b_hh, lengths, state, buf):
        kernels.rnn_forward_step(t, self._relu, xproj, gh, b_hh, lengths, *state, buf["y"], buf["h_prev"])

    def _forward_sequence(self, reverse, xproj, W_hh_T, b_hh, lengths, state, buf):
        kernels.rnn_forward_sequence(reverse, self._relu, xproj, W_hh_T, b_hh, lengths, *state, buf["y"], buf["h_prev"])

    def _backward_step(self, t, dy, dh_rec, lengths, buf, dcarry, seq, dgates, dgates_h):
        kernels.rnn_backward_step(t, self._relu, dy, dh_rec, lengths, buf["y"], *dcarry, seq["h"], dgates)

    def _backward_sequence(self, reverse, dy, W_hh, lengths, buf, dcarry, seq, dgates, dgates_h):
        kernels.rnn_backward_sequence(reverse, self._relu, dy, W_hh, lengths, buf["y"], *dcarry, seq["h"], dgates)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")
