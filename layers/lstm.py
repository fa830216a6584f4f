"""`LSTM`: the long short-term memory cell, one step forward and back, and the layer."""
import numpy as np

from .activations import sigmoid
from .kernels import recurrent as kernels
from .recurrent import RecurrentBase, no_tap


def lstm_step_forward(x_t, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh, tap=no_tap):
    """One LSTM step for a batch.

    Shapes: ``x_t (N, I)``, ``h_prev, c_prev (N, H)``, ``W_ih (4H, I)``, ``W_hh (4H, H)``,
    biases ``(4H,)``; gate blocks in PyTorch's order ``i, f, g, o``::

        a = x_t @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh          (N, 4H) = [a_i a_f a_g a_o]
        i = sigmoid(a_i)   input gate: how much of the candidate to write
        f = sigmoid(a_f)   forget gate: how much of the old cell to keep
        g = tanh(a_g)      candidate values
        o = sigmoid(a_o)   output gate
        c = f * c_prev + i * g
        h = o * tanh(c)

    ``tap(name, value)`` sees (and may perturb) ``i, f, g, o, c, h``. Returns ``h, c`` and the
    cache for ``lstm_step_backward``.
    """
    a = x_t @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    i = tap("i", sigmoid(a_i))
    f = tap("f", sigmoid(a_f))
    g = tap("g", np.tanh(a_g))
    o = tap("o", sigmoid(a_o))
    c = tap("c", f * c_prev + i * g)
    tanh_c = np.tanh(c)
    h = tap("h", o * tanh_c)
    return h, c, (x_t, h_prev, c_prev, i, f, g, o, tanh_c)


def lstm_step_backward(dh, dc_next, cache, W_ih, W_hh, tap_grad=no_tap):
    """BPTT through one LSTM step, gate by gate.

    ``dh = dL/dh_t`` (from the output and from step t+1) and ``dc_next = dL/dc_t`` from step
    t+1. The cell state is reached through ``h`` too, so first its total gradient::

        dc  = dc_next + dh * o * (1 - tanh(c)^2)        dL/dc_t
        do  = dh * tanh(c)
        di  = dc * g        df = dc * c_prev        dg = dc * i
        dc_prev = dc * f                                 the cell's direct path back in time

    then through each nonlinearity to the pre-activations, ``sigmoid' = s (1 - s)`` and
    ``tanh' = 1 - t^2``::

        da = [di * i (1-i),  df * f (1-f),  dg * (1 - g^2),  do * o (1-o)]     (N, 4H)
        dx_t = da @ W_ih       dh_prev = da @ W_hh
        dW_ih = da.T @ x_t     dW_hh = da.T @ h_prev     db_ih = db_hh = da.sum(0)

    ``tap_grad(name, grad)`` sees the gradients of ``h, c, o, i, f, g``. Returns
    ``dx_t, dh_prev, dc_prev, (dW_ih, dW_hh, db_ih, db_hh)``.
    """
    x_t, h_prev, c_prev, i, f, g, o, tanh_c = cache
    dh = tap_grad("h", dh)
    dc = tap_grad("c", dc_next + dh * o * (1 - tanh_c ** 2))
    do = tap_grad("o", dh * tanh_c)
    di = tap_grad("i", dc * g)
    df = tap_grad("f", dc * c_prev)
    dg = tap_grad("g", dc * i)
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=1)
    db = da.sum(axis=0)
    return da @ W_ih, da @ W_hh, dc * f, (da.T @ x_t, da.T @ h_prev, db, db)


class LSTM(RecurrentBase):
    """Long short-term memory layer, PyTorch's ``nn.LSTM(batch_first=True)``.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False,
    dropout=0.0, return_sequences=True, stateful=False, rng=None, dtype=np.float32)``

    At every step of every layer and direction (``lstm_step_forward``)::

        [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    Why it remembers: backward, the part of ``dL/dc_{t-1}`` that comes through the cell is
    ``dL/dc_t * f`` elementwise, with no weight matrix and no squashing derivative in between,
    so the gradient along the cell survives as long as the forget gate stays open.
    ``grad_norms["c"]`` and ``["h"]`` show it.

    Shapes: ``x (N, T, I)`` -> ``(N, T, D*H)`` or, with ``return_sequences=False``,
    ``(N, D*H)``; ``state = (h0, c0)`` and ``final_state = (h_n, c_n)``, each
    ``(num_layers*D, N, H)``. Parameters ``weight_ih_l{k} (4H, I_k)``, ``weight_hh_l{k} (4H,
    H)``, ``bias_ih_l{k}``, ``bias_hh_l{k} (4H,)`` (``_reverse`` for the backward direction),
    gates in the order ``i, f, g, o``, all U(-1/sqrt(H), 1/sqrt(H)). Layers, directions,
    ``lengths``, ``stateful`` and ``grad_norms``: see ``RecurrentBase``.

    Intermediates (when recording), per step ``(N, T, H)``: ``i, f, g, o, c, h`` (suffixed
    ``_l{k}`` / ``_l{k}_reverse`` when there is more than one layer or direction). At padded
    steps they hold the discarded update.
    """

    GATES = 4
    STATE = ("h", "c")
    CELL_FLOPS = 17

    def _step_forward(self, x_t, state, w, tap):
        h, c, cache = lstm_step_forward(x_t, *state, *w, tap=tap)
        return (h, c), cache

    def _step_backward(self, d_state, cache, w, tap_grad):
        dx_t, dh_prev, dc_prev, grads = lstm_step_backward(*d_state, cache, w.W_ih, w.W_hh, tap_grad)
        return dx_t, (dh_prev, dc_prev), grads

    def _new_buffers(self, T, N, dtype):
        buffers = super()._new_buffers(T, N, dtype)
        H = self.hidden_size
        buffers.update(gates=np.empty((T, N, 4 * H), dtype), c_prev=np.empty((T, N, H), dtype),
                       tanh_c=np.empty((T, N, H), dtype))
        return buffers

    def _forward_step(self, t, xproj, gh, b_hh, lengths, state, buf):
        kernels.lstm_forward_step(t, xproj, gh, b_hh, lengths, *state,
                                  buf["y"], buf["h_prev"], buf["gates"], buf["c_prev"], buf["tanh_c"])

    def _forward_sequence(self, reverse, xproj, W_hh_T, b_hh, lengths, state, buf):
        kernels.lstm_forward_sequence(reverse, xproj, W_hh_T, b_hh, lengths, *state,
                                      buf["y"], buf["h_prev"], buf["gates"], buf["c_prev"], buf["tanh_c"])

    def _backward_step(self, t, dy, dh_rec, lengths, buf, dcarry, seq, dgates, dgates_h):
        kernels.lstm_backward_step(t, dy, dh_rec, lengths, buf["gates"], buf["c_prev"], buf["tanh_c"],
                                   *dcarry, seq["h"], seq["c"], dgates)

    def _backward_sequence(self, reverse, dy, W_hh, lengths, buf, dcarry, seq, dgates, dgates_h):
        kernels.lstm_backward_sequence(reverse, dy, W_hh, lengths, buf["gates"], buf["c_prev"], buf["tanh_c"],
                                       *dcarry, seq["h"], seq["c"], dgates)
