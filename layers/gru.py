"""`GRU`: the gated recurrent unit, one step forward and back, and the layer."""
import numpy as np

from .activations import sigmoid
from .kernels import recurrent as kernels
from .recurrent import RecurrentBase, no_tap


def gru_step_forward(x_t, h_prev, W_ih, W_hh, b_ih, b_hh, tap=no_tap):
    """One GRU step for a batch, PyTorch's formulation.

    Shapes: ``x_t (N, I)``, ``h_prev (N, H)``, ``W_ih (3H, I)``, ``W_hh (3H, H)``, biases
    ``(3H,)``; gate blocks in the order ``r, z, n``. The input and hidden products are kept
    apart because the reset gate scales only the hidden part of the candidate::

        gx = x_t @ W_ih.T + b_ih = [gx_r gx_z gx_n]      gh = h_prev @ W_hh.T + b_hh = [gh_r gh_z gh_n]
        r = sigmoid(gx_r + gh_r)         reset gate
        z = sigmoid(gx_z + gh_z)         update gate: how much of h_prev to keep
        n = tanh(gx_n + r * gh_n)        candidate
        h = (1 - z) * n + z * h_prev

    ``tap(name, value)`` sees (and may perturb) ``r, z, n, h``. Returns ``h`` and the cache.
    """
    gx_r, gx_z, gx_n = np.split(x_t @ W_ih.T + b_ih, 3, axis=1)
    gh_r, gh_z, gh_n = np.split(h_prev @ W_hh.T + b_hh, 3, axis=1)
    r = tap("r", sigmoid(gx_r + gh_r))
    z = tap("z", sigmoid(gx_z + gh_z))
    n = tap("n", np.tanh(gx_n + r * gh_n))
    h = tap("h", (1 - z) * n + z * h_prev)
    return h, (x_t, h_prev, r, z, n, gh_n)


def gru_step_backward(dh, cache, W_ih, W_hh, tap_grad=no_tap):
    """BPTT through one GRU step, gate by gate.

    ``dh = dL/dh_t`` (from the output and from step t+1)::

        dn = dh * (1 - z)          dz = dh * (h_prev - n)          (direct path: dh * z)
        da_n = dn * (1 - n^2)                        gradient of the candidate's pre-activation
        dr = da_n * gh_n
        da_r = dr * r (1 - r)      da_z = dz * z (1 - z)

    The input side sees ``dgx = [da_r, da_z, da_n]``; the hidden side sees the candidate's
    part through ``r``: ``dgh = [da_r, da_z, da_n * r]``::

        dx_t = dgx @ W_ih          dh_prev = dh * z + dgh @ W_hh
        dW_ih = dgx.T @ x_t        dW_hh = dgh.T @ h_prev      db_ih = dgx.sum(0)   db_hh = dgh.sum(0)

    ``tap_grad(name, grad)`` sees the gradients of ``h, n, z, r``. Returns
    ``dx_t, dh_prev, (dW_ih, dW_hh, db_ih, db_hh)``.
    """
    x_t, h_prev, r, z, n, gh_n = cache
    dh = tap_grad("h", dh)
    dn = tap_grad("n", dh * (1 - z))
    dz = tap_grad("z", dh * (h_prev - n))
    da_n = dn * (1 - n ** 2)
    dr = tap_grad("r", da_n * gh_n)
    da_r, da_z = dr * r * (1 - r), dz * z * (1 - z)
    dgx = np.concatenate([da_r, da_z, da_n], axis=1)
    dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
    dh_prev = dh * z + dgh @ W_hh
    return dgx @ W_ih, dh_prev, (dgx.T @ x_t, dgh.T @ h_prev, dgx.sum(axis=0), dgh.sum(axis=0))


class GRU(RecurrentBase):
    """Gated recurrent unit layer, PyTorch's ``nn.GRU(batch_first=True)``.

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, bidirectional=False,
    dropout=0.0, return_sequences=True, stateful=False, rng=None, dtype=np.float32)``

    At every step of every layer and direction (``gru_step_forward``)::

        r = sigmoid(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
        z = sigmoid(x_t W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)
        n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    The update gate interpolates between the old state and the candidate, so backward has a
    direct path ``dL/dh_{t-1} += dL/dh_t * z`` that, like the LSTM's cell, skips the weights.

    Shapes: ``x (N, T, I)`` -> ``(N, T, D*H)`` or ``(N, D*H)``; ``state`` / ``final_state``
    ``h (num_layers*D, N, H)``. Parameters ``weight_ih_l{k} (3H, I_k)``, ``weight_hh_l{k}
    (3H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k} (3H,)``, gates ``r, z, n``, all
    U(-1/sqrt(H), 1/sqrt(H)). Layers, directions, ``lengths``, ``stateful`` and
    ``grad_norms``: see ``RecurrentBase``.

    Intermediates (when recording), per step ``(N, T, H)``: ``r, z, n, h`` (suffixed as the
    LSTM's).
    """

    GATES = 3
    CELL_FLOPS = 14

    def _step_forward(self, x_t, state, w, tap):
        h, cache = gru_step_forward(x_t, state[0], *w, tap=tap)
        return (h,), cache

    def _step_backward(self, d_state, cache, w, tap_grad):
        dx_t, dh_prev, grads = gru_step_backward(d_state[0], cache, w.W_ih, w.W_hh, tap_grad)
        return dx_t, (dh_prev,), grads

    def _new_buffers(self, T, N, dtype):
        buffers = super()._new_buffers(T, N, dtype)
        H = self.hidden_size
        buffers.update(gates=np.empty((T, N, 2 * H), dtype), cand=np.empty((T, N, H), dtype),  # r z | n
                       gh_n=np.empty((T, N, H), dtype))
        return buffers

    def _gate_grad_buffers(self, T, N, dtype):
        shape = (T, N, 3 * self.hidden_size)
        return np.empty(shape, dtype), np.empty(shape, dtype)

    def _forward_step(self, t, xproj, gh, b_hh, lengths, state, buf):
        kernels.gru_forward_step(t, xproj, gh, b_hh, lengths, *state,
                                 buf["y"], buf["h_prev"], buf["gates"], buf["cand"], buf["gh_n"])

    def _forward_sequence(self, reverse, xproj, W_hh_T, b_hh, lengths, state, buf):
        kernels.gru_forward_sequence(reverse, xproj, W_hh_T, b_hh, lengths, *state,
                                     buf["y"], buf["h_prev"], buf["gates"], buf["cand"], buf["gh_n"])

    def _backward_step(self, t, dy, dh_rec, lengths, buf, dcarry, seq, dgates, dgates_h):
        kernels.gru_backward_step(t, dy, dh_rec, lengths, buf["gates"], buf["cand"], buf["gh_n"], buf["h_prev"],
                                  *dcarry, seq["h"], dgates, dgates_h)

    def _backward_sequence(self, reverse, dy, W_hh, lengths, buf, dcarry, seq, dgates, dgates_h):
        kernels.gru_backward_sequence(reverse, dy, W_hh, lengths, buf["gates"], buf["cand"], buf["gh_n"], buf["h_prev"],
                                      *dcarry, seq["h"], dgates, dgates_h)
