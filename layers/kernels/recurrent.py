"""numba kernels for the recurrent cells' time loop (RNN, LSTM, GRU).

Each kernel computes the equations of a reference step function in ``layers/rnn.py``,
``layers/lstm.py`` or ``layers/gru.py``, for every sample of the batch, to rounding (its own
``exp``, ``sigmoid`` and ``tanh`` below are within a few ulp of NumPy's),
with the padding rule of ``layers/recurrent.py``: at a step ``t >= lengths[n]`` sample ``n``
keeps its state, outputs zeros and passes its state gradient through untouched.

Two ways to run the time loop (``RecurrentBase`` picks by the size of the recurrent product,
``SEQUENCE_KERNEL_MAX_MACS``):

* ``*_forward_step`` / ``*_backward_step``: one time step for the whole batch. The caller does
  the recurrent product on BLAS first (``gh = h @ W_hh.T`` forward, ``dh_rec = dgates @ W_hh``
  backward) and the kernel fuses everything elementwise: gate nonlinearities, state update, the
  gates' derivatives.
* ``*_forward_sequence`` / ``*_backward_sequence``: the same loop over time moved into one
  call, the products done as loops (``_matmul``). For a tiny product, Python's per-step
  overhead costs more than the arithmetic; for anything larger BLAS wins.

Array conventions (time-major, so that one step's rows are contiguous): ``xproj (T, N, G*H)`` is
``x @ W_ih.T + b_ih`` for every step (one BLAS product, done by the caller); ``h``, ``c``
``(N, H)`` are the running state, updated in place; caches ``(T, N, ...)`` are filled for the
backward, which writes the gate gradients ``dgates (T, N, G*H)`` (and for the GRU the part
seen by ``W_hh``, ``dgates_h``) so the caller can form ``dW = dgates2d.T @ inputs2d`` as one
product over all steps. ``dh_seq`` (and ``dc_seq``) receive ``dL/dh_t`` (``dL/dc_t``), the
total gradient reaching each step's state: it is what the BPTT norms are computed from.

The kernels are serial: on several threads, each thread runs them for its own block of the
batch (``RecurrentBase._fast_forward``), with BLAS on one thread, so no pool wakes between
one step's product and its kernel. Every loop runs in a fixed order, so results are
bit-for-bit reproducible (for a given number of threads, which changes the blocks and so the
order of the weight gradients' sums).
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

# error_model="numpy": no ZeroDivisionError checks inside the loops, so LLVM can vectorize them.
# fastmath "contract" only lets LLVM fuse a * b + c into one FMA instruction (~15% faster
# gates; no reordering, so results stay reproducible). Constants are typed from the arrays
# (``one = h.dtype.type(1)``): a bare ``1`` would promote float32 arithmetic to float64.
# nogil: blocks of a batch run on several Python threads at once (``RecurrentBase``).
JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


# ---------------------------------------------------------------------------------------------
# exp, sigmoid, tanh that vectorize. numba's math.exp is a scalar libm call; these are the
# Cephes range reduction and polynomial, plain arithmetic that LLVM turns into SIMD code.
# Accuracy: within 2 ulp of np.exp for x in [-87, 88] (float32) or [-708, 709] (float64); below
# that exp is 0 and above it inf, so that sigmoid and tanh saturate to exactly 0 and +-1 (the
# reference's values, which decide how an inf input turns into NaN downstream).

def exp(x):
    """Vectorizable ``e**x`` for use inside kernels (numba picks the dtype's version; run as
    Python, with ``NUMBA_DISABLE_JIT=1``, it is NumPy's, which overflows to inf as they do)."""
    return np.exp(x)


def _exp_float32(x):
    lo, hi = np.float32(-87.0), np.float32(88.0)
    y = min(max(x, lo), hi)                       # in range for 2**k's bits below
    k = np.floor(y * np.float32(1.44269504088896341) + np.float32(0.5))   # y = k ln2 + r
    r = y - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
    p = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
           + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
         + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
    two_k = np.int32((np.int32(k) + 127) << 23).view(np.float32)          # 2**k from its bits
    e = (p * r * r + r + np.float32(1.0)) * two_k
    return np.float32(0.0) if x < lo else np.float32(np.inf) if x > hi else e


def _exp_float64(x):
    lo, hi = -708.0, 709.0
    y = min(max(x, lo), hi)
    k = np.floor(y * 1.4426950408889634 + 0.5)
    r = y - k * 6.93145751953125e-1 - k * 1.42860682030941723212e-6
    rr = r * r
    p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 1.0)
    q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
         + 2.27265548208155028766e-1) * rr + 2.0
    two_k = np.int64((np.int64(k) + 1023) << 52).view(np.float64)
    e = (1.0 + 2.0 * p / (q - p)) * two_k
    return 0.0 if x < lo else np.inf if x > hi else e


def _per_dtype(generic, for_float32, for_float64):
    """Inside kernels, numba compiles a call of ``generic`` as the version for its argument's dtype."""
    @overload(generic, jit_options=dict(error_model="numpy", fastmath={"contract"}))
    def choose(x):
        if x == types.float32:
            return for_float32
        if x == types.float64:
            return for_float64


_per_dtype(exp, _exp_float32, _exp_float64)


def tanh_near_zero(x):
    """Vectorizable ``tanh(x)`` for ``|x| < 0.625`` (numba picks the dtype's version; as
    Python, NumPy's)."""
    return np.tanh(x)


def _tanh_near_zero_float32(x):
    # Cephes tanhf: tanh x = x + x^3 P(x^2), an odd polynomial, no cancellation near 0.
    z = x * x
    p = ((((np.float32(-5.70498872745e-3) * z + np.float32(2.06390887954e-2)) * z
           - np.float32(5.37397155531e-2)) * z + np.float32(1.33314422036e-1)) * z
         - np.float32(3.33332819422e-1))
    return x + x * z * p


def _tanh_near_zero_float64(x):
    # Cephes tanh: tanh x = x + x^3 P(x^2) / Q(x^2).
    z = x * x
    p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3
    q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
    return x + x * z * (p / q)


_per_dtype(tanh_near_zero, _tanh_near_zero_float32, _tanh_near_zero_float64)


@njit(inline="always", **JIT)
def sigmoid(x):
    """``1 / (1 + e^-x)`` of one scalar, in its own precision."""
    one = type(x)(1)
    return one / (one + exp(-x))


@njit(inline="always", **JIT)
def tanh(x):
    """``tanh(x)`` of one scalar, within a few ulp of NumPy's: ``1 - 2 / (1 + e^{2x})`` for
    ``|x| >= 0.625``, where it saturates to exactly +-1 as ``exp`` does; below, where that
    difference would cancel, Cephes' odd polynomial. Both are computed and one is picked, a
    select that vectorizes."""
    one = type(x)(1)
    far = one - (one + one) / (one + exp(x + x))
    return tanh_near_zero(x) if abs(x) < type(x)(0.625) else far


# ---------------------------------------------------------------------------------------------
# Shared pieces. Each loop is one equation over the units of one sample, writing one block:
# a loop touching few arrays is one LLVM can vectorize (it must rule out overlaps between
# every pair of arrays at run time, and gives up beyond a handful).

@njit(**JIT)
def _time_steps(T, reverse):
    """The order in which a direction visits the steps (``RecurrentBase`` uses the same)."""
    return range(T - 1, -1, -1) if reverse else range(T)


@njit(inline="always", **JIT)
def _sigmoid_gates(t, n, xproj, gh, b_hh, gates, start, stop):
    for k in range(start, stop):
        gates[t, n, k] = sigmoid(xproj[t, n, k] + gh[n, k] + b_hh[k])


@njit(inline="always", **JIT)
def _tanh_gates(t, n, xproj, gh, b_hh, gates, start, stop):
    for k in range(start, stop):
        gates[t, n, k] = tanh(xproj[t, n, k] + gh[n, k] + b_hh[k])


@njit(inline="always", **JIT)
def _copy_state(t, n, state, into):
    """``into[t, n] = state[n]``: keep a step's state (or output it)."""
    for j in range(state.shape[1]):
        into[t, n, j] = state[n, j]


@njit(inline="always", **JIT)
def _total_dh(t, n, dy, dh_rec, dh, dh_seq):
    """``dL/dh_t = dh (carried) + dh_rec (through W_hh) + dy_t (the output)``."""
    for j in range(dh.shape[1]):
        dh_seq[t, n, j] = dh[n, j] + dh_rec[n, j] + dy[t, n, j]


@njit(inline="always", **JIT)
def _hold(t, n, y, h_prev):
    """A padded step: output zero (and a finite ``h_prev`` for the weight-gradient product)."""
    for j in range(y.shape[2]):
        y[t, n, j] = 0
        h_prev[t, n, j] = 0


@njit(inline="always", **JIT)
def _pass_through(t, n, dh, dh_rec, dh_seq, dgates):
    """Backward through a padded step: the state gradient goes on unchanged, no gate gradient."""
    for j in range(dh.shape[1]):
        dh[n, j] += dh_rec[n, j]
        dh_seq[t, n, j] = 0
    for k in range(dgates.shape[2]):
        dgates[t, n, k] = 0


@njit(inline="always", **JIT)
def _zero(t, n, a):
    for k in range(a.shape[2]):
        a[t, n, k] = 0


@njit(**JIT)
def _matmul(a, b, out):
    """``out = a @ b`` as loops, only for products too small to be worth a BLAS call (``b``
    contiguous; the innermost loop runs along rows of ``b`` and ``out``, so it vectorizes)."""
    for n in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[n, k] = 0
        for m in range(a.shape[1]):
            for k in range(out.shape[1]):
                out[n, k] += a[n, m] * b[m, k]


# ---------------------------------------------------------------------------------------------
# RNN: h = act(x W_ih^T + b_ih + h_prev W_hh^T + b_hh)        reference: layers/rnn.py

@njit(inline="always", **JIT)
def _rnn_cell_forward(t, n, relu, xproj, gh, b_hh, h, y, h_prev):
    zero = h.dtype.type(0)
    _copy_state(t, n, h, h_prev)
    for j in range(h.shape[1]):                                       # h = act(a)
        a = xproj[t, n, j] + gh[n, j] + b_hh[j]
        h[n, j] = max(a, zero) if relu else tanh(a)
    _copy_state(t, n, h, y)


@njit(inline="always", **JIT)
def _rnn_cell_backward(t, n, relu, dy, dh_rec, y, dh, dh_seq, dgates):
    one = dh.dtype.type(1)
    _total_dh(t, n, dy, dh_rec, dh, dh_seq)
    for j in range(dh.shape[1]):          # da = dh * act'(a), read off the output h
        h = y[t, n, j]                    # (relu: a NaN passes dh on, as PyTorch's does)
        dgates[t, n, j] = dh_seq[t, n, j] * (not h <= 0) if relu else dh_seq[t, n, j] * (one - h * h)
    for j in range(dh.shape[1]):          # dh_prev flows only through W_hh (dh_rec, next step)
        dh[n, j] = 0


@njit(**JIT)
def rnn_forward_step(t, relu, xproj, gh, b_hh, lengths, h, y, h_prev):
    """Step ``t`` of ``rnn_step_forward`` for the whole batch, given ``gh = h @ W_hh.T``."""
    for n in range(h.shape[0]):
        if t < lengths[n]:
            _rnn_cell_forward(t, n, relu, xproj, gh, b_hh, h, y, h_prev)
        else:
            _hold(t, n, y, h_prev)


@njit(**JIT)
def rnn_backward_step(t, relu, dy, dh_rec, lengths, y, dh, dh_seq, dgates):
    """Step ``t`` of ``rnn_step_backward``, given ``dh_rec = dgates[t'] @ W_hh`` of the step
    processed before (zeros at first); ``dh`` carries the rest of the state gradient."""
    for n in range(dh.shape[0]):
        if t < lengths[n]:
            _rnn_cell_backward(t, n, relu, dy, dh_rec, y, dh, dh_seq, dgates)
        else:
            _pass_through(t, n, dh, dh_rec, dh_seq, dgates)


@njit(**JIT)
def rnn_forward_sequence(reverse, relu, xproj, W_hh_T, b_hh, lengths, h, y, h_prev):
    """The whole sequence (tiny products): the loop over time of ``rnn_forward_step`` with
    ``gh = h @ W_hh.T`` done as loops (``W_hh_T`` is ``W_hh.T``, contiguous)."""
    gh = np.empty((h.shape[0], W_hh_T.shape[1]), h.dtype)
    for t in _time_steps(xproj.shape[0], reverse):
        _matmul(h, W_hh_T, gh)
        rnn_forward_step(t, relu, xproj, gh, b_hh, lengths, h, y, h_prev)


@njit(**JIT)
def rnn_backward_sequence(reverse, relu, dy, W_hh, lengths, y, dh, dh_seq, dgates):
    """The whole sequence (tiny products): the loop back over time of ``rnn_backward_step``
    with ``dh_rec = dgates[t] @ W_hh`` done as loops."""
    dh_rec = np.zeros_like(dh)
    for t in _time_steps(dy.shape[0], not reverse):
        rnn_backward_step(t, relu, dy, dh_rec, lengths, y, dh, dh_seq, dgates)
        _matmul(dgates[t], W_hh, dh_rec)
    dh += dh_rec


# ---------------------------------------------------------------------------------------------
# LSTM: gates i, f, g, o; c = f c_prev + i g; h = o tanh(c)    reference: layers/lstm.py

@njit(inline="always", **JIT)
def _lstm_cell_forward(t, n, xproj, gh, b_hh, h, c, y, h_prev, gates, c_prev, tanh_c):
    H = h.shape[1]
    _sigmoid_gates(t, n, xproj, gh, b_hh, gates, 0, 2 * H)           # i, f
    _tanh_gates(t, n, xproj, gh, b_hh, gates, 2 * H, 3 * H)          # g
    _sigmoid_gates(t, n, xproj, gh, b_hh, gates, 3 * H, 4 * H)       # o
    _copy_state(t, n, h, h_prev)
    _copy_state(t, n, c, c_prev)
    for j in range(H):                                                # c = f c_prev + i g
        c[n, j] = gates[t, n, H + j] * c[n, j] + gates[t, n, j] * gates[t, n, 2 * H + j]
    for j in range(H):
        tanh_c[t, n, j] = tanh(c[n, j])
    for j in range(H):                                                # h = o tanh(c)
        h[n, j] = gates[t, n, 3 * H + j] * tanh_c[t, n, j]
    _copy_state(t, n, h, y)


@njit(inline="always", **JIT)
def _lstm_cell_backward(t, n, dy, dh_rec, gates, c_prev, tanh_c, dh, dc, dh_seq, dc_seq, dgates):
    H, one = dh.shape[1], dh.dtype.type(1)
    _total_dh(t, n, dy, dh_rec, dh, dh_seq)
    for j in range(H):                    # dc = dc_next + dh o (1 - tanh(c)^2)
        tc = tanh_c[t, n, j]
        dc_seq[t, n, j] = dc[n, j] + dh_seq[t, n, j] * gates[t, n, 3 * H + j] * (one - tc * tc)
    for j in range(H):                    # dc_prev = dc f
        dc[n, j] = dc_seq[t, n, j] * gates[t, n, H + j]
    for j in range(H):                    # da_i = dc g i (1 - i)
        i = gates[t, n, j]
        dgates[t, n, j] = dc_seq[t, n, j] * gates[t, n, 2 * H + j] * i * (one - i)
    for j in range(H):                    # da_f = dc c_prev f (1 - f)
        f = gates[t, n, H + j]
        dgates[t, n, H + j] = dc_seq[t, n, j] * c_prev[t, n, j] * f * (one - f)
    for j in range(H):                    # da_g = dc i (1 - g^2)
        g = gates[t, n, 2 * H + j]
        dgates[t, n, 2 * H + j] = dc_seq[t, n, j] * gates[t, n, j] * (one - g * g)
    for j in range(H):                    # da_o = dh tanh(c) o (1 - o)
        o = gates[t, n, 3 * H + j]
        dgates[t, n, 3 * H + j] = dh_seq[t, n, j] * tanh_c[t, n, j] * o * (one - o)
    for j in range(H):                    # dh_prev flows only through W_hh (dh_rec, next step)
        dh[n, j] = 0


@njit(**JIT)
def lstm_forward_step(t, xproj, gh, b_hh, lengths, h, c, y, h_prev, gates, c_prev, tanh_c):
    """Step ``t`` of ``lstm_step_forward`` for the whole batch, given ``gh = h @ W_hh.T``."""
    for n in range(h.shape[0]):
        if t < lengths[n]:
            _lstm_cell_forward(t, n, xproj, gh, b_hh, h, c, y, h_prev, gates, c_prev, tanh_c)
        else:
            _hold(t, n, y, h_prev)


@njit(**JIT)
def lstm_backward_step(t, dy, dh_rec, lengths, gates, c_prev, tanh_c, dh, dc, dh_seq, dc_seq, dgates):
    """Step ``t`` of ``lstm_step_backward``, given ``dh_rec = dgates[t'] @ W_hh`` of the step
    processed before; ``dc`` is carried (and left untouched at padded steps)."""
    for n in range(dh.shape[0]):
        if t < lengths[n]:
            _lstm_cell_backward(t, n, dy, dh_rec, gates, c_prev, tanh_c, dh, dc, dh_seq, dc_seq, dgates)
        else:
            _pass_through(t, n, dh, dh_rec, dh_seq, dgates)
            _zero(t, n, dc_seq)


@njit(**JIT)
def lstm_forward_sequence(reverse, xproj, W_hh_T, b_hh, lengths, h, c, y, h_prev, gates, c_prev, tanh_c):
    """The whole sequence (tiny products): the loop over time of ``lstm_forward_step`` with
    ``gh = h @ W_hh.T`` done as loops (``W_hh_T`` is ``W_hh.T``, contiguous)."""
    gh = np.empty((h.shape[0], W_hh_T.shape[1]), h.dtype)
    for t in _time_steps(xproj.shape[0], reverse):
        _matmul(h, W_hh_T, gh)
        lstm_forward_step(t, xproj, gh, b_hh, lengths, h, c, y, h_prev, gates, c_prev, tanh_c)


@njit(**JIT)
def lstm_backward_sequence(reverse, dy, W_hh, lengths, gates, c_prev, tanh_c, dh, dc, dh_seq, dc_seq, dgates):
    """The whole sequence (tiny products): the loop back over time of ``lstm_backward_step``
    with ``dh_rec = dgates[t] @ W_hh`` done as loops."""
    dh_rec = np.zeros_like(dh)
    for t in _time_steps(dy.shape[0], not reverse):
        lstm_backward_step(t, dy, dh_rec, lengths, gates, c_prev, tanh_c, dh, dc, dh_seq, dc_seq, dgates)
        _matmul(dgates[t], W_hh, dh_rec)
    dh += dh_rec


# ---------------------------------------------------------------------------------------------
# GRU: gates r, z = sigmoid(...); n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)); h = (1-z) n + z h_prev
# (the candidate n is ``cand`` here, ``n`` being the sample)   reference: layers/gru.py

@njit(inline="always", **JIT)
def _gru_cell_forward(t, n, xproj, gh, b_hh, h, y, h_prev, gates, cand, gh_n):
    H, one = h.shape[1], h.dtype.type(1)
    _sigmoid_gates(t, n, xproj, gh, b_hh, gates, 0, 2 * H)           # r, z
    for j in range(H):                                                # gh_n = h W_hn^T + b_hn
        gh_n[t, n, j] = gh[n, 2 * H + j] + b_hh[2 * H + j]
    for j in range(H):                                                # n = tanh(gx_n + r gh_n)
        cand[t, n, j] = tanh(xproj[t, n, 2 * H + j] + gates[t, n, j] * gh_n[t, n, j])
    _copy_state(t, n, h, h_prev)
    for j in range(H):                                                # h = (1-z) n + z h_prev
        z = gates[t, n, H + j]
        h[n, j] = (one - z) * cand[t, n, j] + z * h[n, j]
    _copy_state(t, n, h, y)


@njit(inline="always", **JIT)
def _gru_cell_backward(t, n, dy, dh_rec, gates, cand, gh_n, h_prev, dh, dh_seq, dgates, dgates_h):
    H, one = dh.shape[1], dh.dtype.type(1)
    _total_dh(t, n, dy, dh_rec, dh, dh_seq)
    for j in range(H):                    # da_r = da_n gh_n r (1 - r),  da_n = dh (1 - z) (1 - n^2)
        r, z, n_j = gates[t, n, j], gates[t, n, H + j], cand[t, n, j]
        dgates[t, n, j] = dh_seq[t, n, j] * (one - z) * (one - n_j * n_j) * gh_n[t, n, j] * r * (one - r)
    for j in range(H):                    # da_z = dh (h_prev - n) z (1 - z)
        z = gates[t, n, H + j]
        dgates[t, n, H + j] = dh_seq[t, n, j] * (h_prev[t, n, j] - cand[t, n, j]) * z * (one - z)
    for j in range(H):                    # da_n
        z, n_j = gates[t, n, H + j], cand[t, n, j]
        dgates[t, n, 2 * H + j] = dh_seq[t, n, j] * (one - z) * (one - n_j * n_j)
    for k in range(2 * H):                # W_hh sees [da_r, da_z, da_n r]
        dgates_h[t, n, k] = dgates[t, n, k]
    for j in range(H):
        dgates_h[t, n, 2 * H + j] = dgates[t, n, 2 * H + j] * gates[t, n, j]
    for j in range(H):                    # the direct path h_prev -> h; W_hh's part comes next step
        dh[n, j] = dh_seq[t, n, j] * gates[t, n, H + j]


@njit(**JIT)
def gru_forward_step(t, xproj, gh, b_hh, lengths, h, y, h_prev, gates, cand, gh_n):
    """Step ``t`` of ``gru_step_forward`` for the whole batch, given ``gh = h @ W_hh.T``."""
    for n in range(h.shape[0]):
        if t < lengths[n]:
            _gru_cell_forward(t, n, xproj, gh, b_hh, h, y, h_prev, gates, cand, gh_n)
        else:
            _hold(t, n, y, h_prev)


@njit(**JIT)
def gru_backward_step(t, dy, dh_rec, lengths, gates, cand, gh_n, h_prev, dh, dh_seq, dgates, dgates_h):
    """Step ``t`` of ``gru_step_backward``, given ``dh_rec = dgates_h[t'] @ W_hh`` of the step
    processed before."""
    for n in range(dh.shape[0]):
        if t < lengths[n]:
            _gru_cell_backward(t, n, dy, dh_rec, gates, cand, gh_n, h_prev, dh, dh_seq, dgates, dgates_h)
        else:
            _pass_through(t, n, dh, dh_rec, dh_seq, dgates)
            _zero(t, n, dgates_h)


@njit(**JIT)
def gru_forward_sequence(reverse, xproj, W_hh_T, b_hh, lengths, h, y, h_prev, gates, cand, gh_n):
    """The whole sequence (tiny products): the loop over time of ``gru_forward_step`` with
    ``gh = h @ W_hh.T`` done as loops (``W_hh_T`` is ``W_hh.T``, contiguous)."""
    gh = np.empty((h.shape[0], W_hh_T.shape[1]), h.dtype)
    for t in _time_steps(xproj.shape[0], reverse):
        _matmul(h, W_hh_T, gh)
        gru_forward_step(t, xproj, gh, b_hh, lengths, h, y, h_prev, gates, cand, gh_n)


@njit(**JIT)
def gru_backward_sequence(reverse, dy, W_hh, lengths, gates, cand, gh_n, h_prev, dh, dh_seq, dgates, dgates_h):
    """The whole sequence (tiny products): the loop back over time of ``gru_backward_step``
    with ``dh_rec = dgates_h[t] @ W_hh`` done as loops."""
    dh_rec = np.zeros_like(dh)
    for t in _time_steps(dy.shape[0], not reverse):
        gru_backward_step(t, dy, dh_rec, lengths, gates, cand, gh_n, h_prev, dh, dh_seq, dgates, dgates_h)
        _matmul(dgates_h[t], W_hh, dh_rec)
    dh += dh_rec
