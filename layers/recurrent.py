"""`RecurrentBase`: what RNN, LSTM and GRU share, whatever their cell.

A cell maps ``(x_t, state_{t-1}) -> state_t``; this file runs it over time, over layers and in
both directions, and runs backpropagation through time (BPTT) back.

Time, layers, directions
------------------------
Input ``x (N, T, I)`` is batch first. Internally everything is time-major ``(T, N, F)`` so
that each step's rows are contiguous. Layer ``l`` reads the output of layer ``l - 1`` (both
directions concatenated, ``D * H`` features); with ``dropout`` each layer's output but the last
is multiplied by an inverted-dropout mask in training (the same mask scales the gradient).

The reverse direction visits ``t = T-1, ..., 0``. Its parameters carry the ``_reverse``
suffix, as in PyTorch.

Variable lengths
----------------
With ``lengths`` (one per sequence), step ``t`` of sequence ``n`` is *valid* when
``t < lengths[n]``. At a padded step the state is held, the output is zero and, in backward,
the state gradient passes through unchanged while the step's gates receive nothing:

    h_t = h_new if valid else h_{t-1}       y_t = h_new if valid else 0

Because the held state is whatever came before, the reverse direction, which meets the padding
first, keeps its initial state through it and starts on each sequence's last valid step:
exactly PyTorch's packed sequences. The padded steps of ``x`` are never read (they are zeroed
in the layer's copy), so whatever they hold, NaN included, changes nothing. Both directions
therefore end holding the state of their last valid step, so the final state (PyTorch's
``h_n``) is the forward direction's state at ``lengths[n] - 1`` and the reverse direction's at
step 0. The "last" output (``return_sequences=False``) is the last layer's final ``h``, both
directions concatenated.

Two implementations of the time loop
------------------------------------
* reference (``nn.use_reference()`` or ``record_intermediates()``): a Python loop over steps
  calling the cell's readable ``*_step_forward`` / ``*_step_backward`` NumPy functions;
  intermediates are tapped per step.
* fast: the input projection of all steps is one BLAS product ``x2d @ W_ih.T``; the time loop
  runs in numba kernels (``layers/kernels/recurrent.py``). Normally each step does
  ``h @ W_hh.T`` on BLAS and one kernel call fuses the rest; when that product is tiny
  (``SEQUENCE_KERNEL_MAX_MACS``) one kernel call runs the whole sequence, the product
  included as loops, since Python's per-step overhead would cost more than the arithmetic.
  Backward accumulates ``dW_ih``, ``dW_hh`` and ``dx`` as single products over all steps.

  On several threads the batch is cut into blocks of samples, one per thread, and each
  thread runs all of the above for its block on one core (``share_chunks``): the samples of
  a batch never meet in the recurrence, so the blocks need no step-by-step synchronisation,
  only their weight gradients summed at the end. (Splitting each step's small product
  among the threads instead would wake them twice a step.)

Truncated BPTT
--------------
With ``stateful=True`` each forward starts from the previous call's final state (when no
``state`` is passed). That state is a constant for the new chunk: backward stops at the chunk
boundary. ``reset_state()`` forgets it (new, unrelated sequences)::

    lstm = layers.LSTM(1, 32, stateful=True)
    for chunk in np.split(long_x, T // 50, axis=1):   # (N, 50, 1) windows of one long series
        lstm.zero_grad(); y = lstm(chunk); ...; lstm.backward(dy); opt.step()
    lstm.reset_state()
"""
import math
import warnings
from collections import namedtuple

import numba
import numpy as np

from nn import Module, Parameter
from nn.checks import check_flag, check_float_array, check_float_dtype, check_real, check_shape, check_size
from nn.init import uniform
from nn.random import get_rng

from .dropout import dropout_scale
from .kernels import share_chunks

#: When one step's recurrent product ``h @ W_hh.T`` has at most this many multiply-adds
#: (``N * G*H * H``), the whole sequence runs in one numba call with that product as loops;
#: above it each step calls BLAS from Python. The one call saves ~4 us of Python and dispatch
#: per step, the loops lose to OpenBLAS on anything but tiny products. Measured (AMD EPYC,
#: bidirectional GRU and LSTM, fwd+bwd): at a batch of 16 the one call is 1.2-2x faster for
#: H = 4..16; at a batch of 100 the two are within 10% up to H = 8, BLAS pulls ahead beyond.
#: (The MNIST-1D GRU, H = 6 and a batch of 100, is 10.8k multiply-adds per step.)
SEQUENCE_KERNEL_MAX_MACS = 16384

#: On several threads a batch is shared out in blocks of at least this many samples (smaller
#: ones make each step's product too small for BLAS to run at speed) and of at least this many
#: multiply-adds in one direction's forward: waking a thread for a block costs 0.3-0.4 ms here,
#: what ~8M multiply-adds take; a GRU with 6 units and a batch of 100 does 0.5M a direction.
MIN_BLOCK_SAMPLES = 16
MIN_BLOCK_MACS = 2**23

Weights = namedtuple("Weights", "W_ih W_hh b_ih b_hh")


def time_steps(T, reverse):
    """The order in which a direction visits the steps."""
    return range(T - 1, -1, -1) if reverse else range(T)


def on_threads(work, items):
    """``[work(item) for item in items]``, the items shared among numba's threads
    (``share_chunks``: each thread runs its own with BLAS on one thread); in the items' order."""
    done = share_chunks(lambda _, mine: [(k, work(item)) for k, item in mine], list(enumerate(items)))
    return [result for _, result in sorted((pair for part in done for pair in part), key=lambda p: p[0])]


def no_tap(name, value):
    """The default ``tap`` / ``tap_grad`` of the step functions: record nothing."""
    return value


class RecurrentBase(Module):
    """Multi-layer, optionally bidirectional recurrent layer around one cell type.

    Subclasses (``RNN``, ``LSTM``, ``GRU``) define the cell: ``GATES`` (gate blocks of size
    ``H`` in ``W_ih``), ``STATE`` (``("h",)`` or ``("h", "c")``), the reference step pair
    ``_step_forward`` / ``_step_backward`` and the fast kernels' calls.

    Parameters
    ----------
    input_size, hidden_size : int
        ``I`` and ``H``.
    num_layers : int
        Stacked layers; layer ``l > 0`` reads ``D * H`` features.
    bias : bool
        Whether ``bias_ih_l*`` and ``bias_hh_l*`` exist.
    bidirectional : bool
        ``D = 2`` directions, outputs concatenated ``[forward, reverse]``.
    dropout : float
        Inverted dropout on each layer's output but the last, in training only.
    return_sequences : bool
        Output every step ``(N, T, D*H)`` (default) or the last layer's final hidden state
        ``(N, D*H)``: the forward direction's output at each sequence's last valid step, the
        reverse direction's at step 0 (where it ends), as PyTorch's ``h_n``.
    stateful : bool
        Start each forward from the previous final state, detached (truncated BPTT); one
        direction only (the reverse direction starts each chunk at its end).
    rng : np.random.Generator or int, optional
        Draws the initial weights and the dropout masks (default: the global generator).
    dtype : float32 (default) or float64.

    Parameters are PyTorch's, in its order: for each layer ``l`` and direction,
    ``weight_ih_l{l} (G*H, I_l)``, ``weight_hh_l{l} (G*H, H)``, ``bias_ih_l{l}``,
    ``bias_hh_l{l}`` (``G*H``), gates stacked in PyTorch's order, all drawn from
    U(-1/sqrt(H), 1/sqrt(H)).

    ``forward(x, state=None, lengths=None)``: ``x (N, T, I)``; ``state`` the initial state
    ``(num_layers*D, N, H)`` (a pair ``(h0, c0)`` for the LSTM), zeros when omitted;
    ``lengths`` integers ``(N,)`` in ``[1, T]``. After it: ``final_state`` (same structure as
    ``state``, PyTorch's ``h_n`` / ``(h_n, c_n)``).

    ``backward(dy, dstate=None) -> dx``: ``dy`` the gradient of the output (or None when only
    ``dstate``, a gradient for ``final_state``, flows back; for the LSTM either part of the
    pair may be None, a zero gradient). After it: ``initial_state_grad``
    (structure of ``state``) and ``grad_norms``: for each state name (``"h"``, and ``"c"`` for
    the LSTM) an array ``(num_layers*D, T)`` whose entry ``[l*D + d, t]`` is

        || dL/dh_t ||  =  sqrt( sum over samples n and units j of (dL/dh_t[n, j])^2 )

    for layer ``l``, direction ``d``, where ``dL/dh_t`` is the total gradient reaching the
    state of step ``t``: from its output and from every step the direction takes after it.
    Padded steps count as zero. These are the BPTT norms that show vanishing gradients; they
    come from gradients backward computes anyway. ``input_gradients()`` returns
    ``{"state": initial_state_grad}`` when a state was passed (what ``nn.gradcheck`` checks).

    ``stateful=True``, ``reset_state()``: truncated BPTT, see the module docstring.
    """

    GATES = 1
    STATE = ("h",)
    CELL_FLOPS = 0          # elementwise flops per hidden unit per step, for flops()
    _dy_optional = True     # backward(None, dstate): a gradient for the final state only

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, bidirectional=False,
                 dropout=0.0, return_sequences=True, stateful=False, rng=None, dtype=np.float32):
        super().__init__()
        dtype = check_float_dtype(type(self).__name__, dtype)
        name = type(self).__name__
        self.input_size = check_size(name, "input_size", input_size)
        self.hidden_size = check_size(name, "hidden_size", hidden_size)
        self.num_layers = check_size(name, "num_layers", num_layers)
        dropout = check_real(name, "dropout", dropout, 0.0, 1.0)
        if dropout > 0 and self.num_layers == 1:
            own_init = "__init__" in type(self).__dict__       # RNN's: one frame more to the caller
            warnings.warn(f"{name}: dropout={dropout} acts between stacked layers only, and "
                          "num_layers=1 has none: it changes nothing", UserWarning,
                          stacklevel=3 if own_init else 2)
        self.dropout = dropout
        self.bias, self.bidirectional, self.return_sequences, self.stateful = (
            check_flag(name, flag, value) for flag, value in (
                ("bias", bias), ("bidirectional", bidirectional),
                ("return_sequences", return_sequences), ("stateful", stateful)))
        if self.stateful and self.bidirectional:
            raise ValueError(f"{name}: stateful=True carries each chunk's final state into the next "
                             "chunk, which only the forward direction reads in order; a "
                             "bidirectional layer cannot be stateful")
        self.num_directions = 2 if self.bidirectional else 1
        self._rng = None if rng is None else get_rng(rng, type(self).__name__)   # None: the global one
        self._make_parameters(np.dtype(dtype))
        self.final_state = self.initial_state_grad = self.grad_norms = None
        self._carried_state = None
        self._state_given = False

    def _make_parameters(self, dtype):
        H, G = self.hidden_size, self.GATES
        bound = 1.0 / math.sqrt(H)
        for l in range(self.num_layers):
            fan_in = self.input_size if l == 0 else self.num_directions * H
            for d in range(self.num_directions):
                sfx = self._suffix(l, d)
                setattr(self, f"weight_ih{sfx}", Parameter(uniform((G * H, fan_in), bound, self._rng, dtype)))
                setattr(self, f"weight_hh{sfx}", Parameter(uniform((G * H, H), bound, self._rng, dtype)))
                if self.bias:
                    setattr(self, f"bias_ih{sfx}", Parameter(uniform((G * H,), bound, self._rng, dtype)))
                    setattr(self, f"bias_hh{sfx}", Parameter(uniform((G * H,), bound, self._rng, dtype)))

    @staticmethod
    def _suffix(l, d):
        return f"_l{l}" + ("_reverse" if d else "")

    def _weights(self, l, d):
        p = self._parameters
        sfx = self._suffix(l, d)
        W_ih, W_hh = p[f"weight_ih{sfx}"].data, p[f"weight_hh{sfx}"].data
        if self.bias:
            return Weights(W_ih, W_hh, p[f"bias_ih{sfx}"].data, p[f"bias_hh{sfx}"].data)
        zeros = np.zeros(W_hh.shape[0], W_hh.dtype)
        return Weights(W_ih, W_hh, zeros, zeros)

    def _tap_suffix(self, l, d):
        """Intermediates are named ``i``, ``h``, ... for one layer and direction, else
        ``i_l0``, ``i_l1_reverse``, ..."""
        return "" if self.num_layers == 1 and not self.bidirectional else self._suffix(l, d)

    # ------------------------------------------------------------------ state handling
    def reset_state(self):
        """Forget the state a ``stateful`` layer carries from call to call."""
        self._carried_state = None

    @property
    def carried_state(self):
        """A copy of the state a ``stateful`` layer starts its next call from (``h``, or
        ``(h, c)`` for the LSTM, as ``final_state``); None after ``reset_state()``. Assignable
        (cast to the layer's dtype), e.g. to put back one read earlier (``nn.evaluate`` does,
        so evaluation never moves the state training carries)."""
        if self._carried_state is None:
            return None
        return self._public(tuple(s.astype(self.dtype) for s in self._carried_state))   # a copy

    @carried_state.setter
    def carried_state(self, state):
        name = f"{type(self).__name__}.carried_state"
        if not self.stateful:
            raise ValueError(f"{name}: only a layer built with stateful=True carries a state")
        if state is None:
            self._carried_state = None
            return
        def cast(s):      # a state read before astype() comes back in the layer's dtype now
            return s.astype(self.dtype, copy=False) if isinstance(s, np.ndarray) and s.dtype.kind == "f" else s
        state = tuple(map(cast, state)) if isinstance(state, (tuple, list)) else cast(state)
        h = state[0] if isinstance(state, tuple) and state else state
        N = h.shape[1] if isinstance(h, np.ndarray) and h.ndim == 3 else None
        self._carried_state = tuple(s.copy() for s in self._check_state(state, N, "the state", name))

    def _public(self, parts):
        """Internal states are tuples ``(h,)`` / ``(h, c)``; users see ``h`` / ``(h, c)``."""
        return tuple(parts) if len(self.STATE) == 2 else parts[0]

    def _check_state(self, state, N, what, name=None):
        name = name or type(self).__name__
        expected = (self.num_layers * self.num_directions, N, self.hidden_size)
        shown = f"({expected[0]}, {'N' if N is None else N}, {expected[2]})"
        if len(self.STATE) == 2:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name}: expected {what} to be a pair (h, c) of arrays of shape {shown}, "
                                f"got {_describe(state)}")
            parts = tuple(state)
        else:
            if not isinstance(state, np.ndarray):
                raise TypeError(f"{name}: expected {what} to be an array h of shape {shown}, "
                                f"got {_describe(state)}")
            parts = (state,)
        for label, s in zip(self.STATE, parts):
            check_float_array(name, s, f"{what} {label}", dtype=self.dtype)
            if s.shape != expected:
                raise ValueError(f"{name}: expected {what} {label} of shape {shown} "
                                 f"(num_layers*num_directions, N, hidden_size), got {s.shape}")
        return parts

    def _check_lengths(self, lengths, N, T):
        name = type(self).__name__
        if lengths is None:
            return np.full(N, T, np.int64)
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected lengths to be integers, shape ({N},), got dtype {arr.dtype}")
        if arr.shape != (N,):
            raise ValueError(f"{name}: expected lengths of shape ({N},) (one per sequence), got {arr.shape}")
        if arr.min() < 1 or arr.max() > T:
            raise ValueError(f"{name}: expected every length in [1, {T}] (T = x.shape[1]), "
                             f"got values from {arr.min()} to {arr.max()}")
        return arr.astype(np.int64)

    def _initial_state(self, state, N):
        """The state to start from: the one given, else the carried one (stateful), else zeros."""
        if state is not None:      # copied: the reference path caches it, the caller may reuse it
            return tuple(s.copy() for s in self._check_state(state, N, "state"))
        if self._carried_state is not None:
            carried_N = self._carried_state[0].shape[1]
            if carried_N != N:
                raise ValueError(f"{type(self).__name__}: the stateful layer carries a state for a batch of "
                                 f"{carried_N}, got a batch of {N}; call reset_state() first")
            return tuple(s.astype(self.dtype, copy=False) for s in self._carried_state)
        shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        return tuple(np.zeros(shape, self.dtype) for _ in self.STATE)

    def input_gradients(self):
        """``{"state": initial_state_grad}`` when forward was given a state (for gradcheck)."""
        return {"state": self.initial_state_grad} if self._state_given else {}

    # ------------------------------------------------------------------ forward
    def forward(self, x, state=None, lengths=None):
        name = type(self).__name__
        check_float_array(name, x, dtype=self.dtype)
        check_shape(name, x, ("N", "T", self.input_size))
        N, T, _ = x.shape
        if N == 0 or T == 0:
            raise ValueError(f"{name}: expected at least one sequence and one step, got input of shape {x.shape}")
        lengths = self._check_lengths(lengths, N, T)
        self._state_given, state = state is not None, self._initial_state(state, N)
        self._reference = self._use_reference()
        self._lengths, self._runs, self._masks = lengths, [], []

        layer_input = x.transpose(1, 0, 2)
        if lengths.min() < T:       # padding is never read: NaN there must not reach dW_ih
            valid = np.arange(T)[:, None] < lengths
            layer_input = np.where(valid[:, :, None], layer_input, 0)
        layer_input = np.ascontiguousarray(layer_input)
        finals = [[] for _ in self.STATE]
        for l in range(self.num_layers):
            outputs = []
            for d in range(self.num_directions):
                k = l * self.num_directions + d
                y, final, run = self._run_forward(layer_input, tuple(s[k] for s in state), l, d)
                outputs.append(y)
                self._runs.append(run)
                for store, s in zip(finals, final):
                    store.append(s)
            out = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)
            mask = self._dropout_mask(out.shape, out.dtype) if l < self.num_layers - 1 else None
            self._masks.append(mask)
            layer_input = out if mask is None else out * mask

        final = tuple(np.stack(f) for f in finals)
        self.final_state = self._public(final)
        if self.stateful:
            self._carried_state = tuple(f.copy() for f in final)
        if self.return_sequences:
            return out.transpose(1, 0, 2).copy()      # a copy even when N or T is 1: out is cached
        first_of_last = (self.num_layers - 1) * self.num_directions
        return np.concatenate(final[0][first_of_last:], axis=1)

    def _dropout_mask(self, shape, dtype):
        if not self.training or self.dropout == 0.0:
            return None
        return dropout_scale(self._rng, shape, self.dropout, dtype)

    def _run_forward(self, x, state0, l, d):
        """One layer, one direction over time-major ``x (T, N, I_l)`` from ``state0``.
        Returns the outputs ``(T, N, H)``, the final state and what backward needs (as
        ``cache``: the reference's per-step caches, or the fast path's blocks of samples, each
        ``(rows, x_b, buffers)``)."""
        w, reverse = self._weights(l, d), d == 1
        if self._reference:
            y, final, cache = self._reference_forward(x, state0, w, reverse, self._tap_suffix(l, d))
        else:
            y, final, cache = self._fast_forward(x, state0, w, reverse)
        return y, final, dict(cache=cache, x=x, w=w, reverse=reverse, l=l, d=d)

    def _reference_forward(self, x, state, w, reverse, tag):
        T, N, _ = x.shape
        y = np.zeros((T, N, self.hidden_size), x.dtype)
        caches = [None] * T
        for t in time_steps(T, reverse):
            valid = (t < self._lengths)[:, None]
            tap = lambda name, value, t=t: self._tap(name + tag, value, step=t)    # noqa: E731
            new_state, caches[t] = self._step_forward(x[t], state, w, tap)
            state = tuple(np.where(valid, new, old) for new, old in zip(new_state, state))
            y[t] = np.where(valid, new_state[0], 0)
        return y, state, caches

    def _fast_forward(self, x, state, w, reverse):
        """The batch's blocks of samples (one, or one per thread) each through
        ``_fast_forward_block``; their outputs and final states put together."""
        blocks = self._sample_blocks(x)
        if len(blocks) == 1:
            y, final, buffers = self._fast_forward_block(x, state, w, reverse, self._lengths)
            return y, final, [(blocks[0], x, buffers)]
        y = np.empty(x.shape[:2] + (self.hidden_size,), x.dtype)
        final = tuple(np.empty_like(s) for s in state)

        def forward_block(rows):
            x_b = np.ascontiguousarray(x[:, rows])
            y_b, final_b, buffers = self._fast_forward_block(
                x_b, tuple(s[rows] for s in state), w, reverse, self._lengths[rows])
            y[:, rows] = y_b
            for whole, part in zip(final, final_b):
                whole[rows] = part
            return rows, x_b, buffers
        return y, final, on_threads(forward_block, blocks)

    def _sample_blocks(self, x):
        """Contiguous slices of the batch of ``x (T, N, I)``, one per numba thread (as
        ``numba.set_num_threads`` sets for the calling thread) while each keeps at least
        ``MIN_BLOCK_SAMPLES`` and ``MIN_BLOCK_MACS``; one slice of all on one thread."""
        T, N, I = x.shape
        macs = T * N * self.GATES * self.hidden_size * (I + self.hidden_size)
        count = max(1, min(numba.get_num_threads(), N // MIN_BLOCK_SAMPLES, macs // MIN_BLOCK_MACS))
        edges = [N * k // count for k in range(count + 1)]
        return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]

    def _fast_forward_block(self, x, state, w, reverse, lengths):
        """One direction of one layer for a block of samples, on the calling thread."""
        T, N, I = x.shape
        xproj = (x.reshape(T * N, I) @ w.W_ih.T).reshape(T, N, -1)
        xproj += w.b_ih
        state = tuple(s.copy() for s in state)            # the kernels update it in place
        buffers = self._new_buffers(T, N, x.dtype)
        if self._whole_sequence_in_one_call(N):
            W_hh_T = np.ascontiguousarray(w.W_hh.T)
            self._forward_sequence(reverse, xproj, W_hh_T, w.b_hh, lengths, state, buffers)
        else:
            gh = np.empty((N, w.W_hh.shape[0]), x.dtype)
            W_hh_T = w.W_hh.T
            for t in time_steps(T, reverse):
                np.matmul(state[0], W_hh_T, out=gh)
                self._forward_step(t, xproj, gh, w.b_hh, lengths, state, buffers)
        return buffers["y"], state, buffers

    # ------------------------------------------------------------------ backward
    def backward(self, dy, dstate=None):
        """BPTT through every layer and direction.

        Per direction, going back in time from the final state gradient ``dstate`` (zeros if
        None) and, when ``return_sequences=False``, ``dy`` added to the last layer's ``dh_n``::

            dL/dh_t = dy_t + (gradient from the direction's next step, through the cell)
            the cell's step backward turns it into gate gradients dgates_t and dL/dh_{t-1}
            dW_ih = sum_t dgates_t.T @ x_t      dW_hh = sum_t dgates_t.T @ h_{t-1}
            db    = sum_t sum_n dgates_t        dx_t = dgates_t @ W_ih

        (the GRU's ``W_hh`` sees its own gate gradients, see ``gru_step_backward``). Layer
        ``l``'s ``dx`` is the output gradient of layer ``l - 1``, times its dropout mask.
        """
        T, N = self._runs[0]["x"].shape[:2]
        H, D, LD = self.hidden_size, self.num_directions, self.num_layers * self.num_directions
        dfinal, d_out = self._starting_grads(dy, dstate, N)
        initial_grads = [np.empty((LD, N, H), self.dtype) for _ in self.STATE]
        norms = {s: np.zeros((LD, T)) for s in self.STATE}
        for l in reversed(range(self.num_layers)):
            dx = 0
            for d in range(D):
                k = l * D + d
                dy_d = (np.zeros((T, N, H), self.dtype) if d_out is None
                        else np.ascontiguousarray(d_out[:, :, d * H:(d + 1) * H]))
                dx_d, dstate0, sq = self._run_backward(self._runs[k], dy_d, tuple(g[k] for g in dfinal))
                dx = dx + dx_d
                for store, g in zip(initial_grads, dstate0):
                    store[k] = g
                for s in self.STATE:
                    norms[s][k] = np.sqrt(sq[s])
            mask = self._masks[l - 1] if l > 0 else None
            d_out = dx if mask is None else dx * mask

        self.initial_state_grad = self._public(tuple(initial_grads))
        self.grad_norms = norms
        return np.ascontiguousarray(d_out.transpose(1, 0, 2))

    def _starting_grads(self, dy, dstate, N):
        """Where BPTT starts: ``dfinal``, per state name ``(L*D, N, H)`` -- ``dstate``, zeros
        where None, plus ``dy`` on the last layer's ``h_n`` when ``return_sequences=False`` --
        and ``d_out``, the last layer's output gradient ``(T, N, D*H)`` (None if none)."""
        name = type(self).__name__
        if isinstance(dstate, (tuple, list)) and all(g is None for g in dstate):
            dstate = None                                  # (None, None): no state gradient
        if dy is None and dstate is None:
            raise ValueError(f"{name}.backward: got neither dy nor dstate; pass at least one")
        H, D, LD = self.hidden_size, self.num_directions, self.num_layers * self.num_directions
        if isinstance(dstate, (tuple, list)) and len(self.STATE) == 2:     # (dh_n, None): dc_n = 0
            dstate = tuple(np.zeros((LD, N, H), self.dtype) if g is None else g for g in dstate)
        if dstate is None:
            dfinal = [np.zeros((LD, N, H), self.dtype) for _ in self.STATE]
        else:
            dfinal = [g.copy() for g in self._check_state(dstate, N, "dstate", f"{name}.backward")]
        if dy is None or self.return_sequences:
            return dfinal, None if dy is None else dy.transpose(1, 0, 2)
        for d in range(D):                                 # the last layer's directions
            dfinal[0][LD - D + d] += dy[:, d * H:(d + 1) * H]
        return dfinal, None

    def _run_backward(self, run, dy, dstate):
        """One layer and direction: returns ``dx (T, N, I_l)``, the initial state's gradient
        and, per state name, the squared BPTT norms ``(T,)``; adds the parameter gradients."""
        if self._reference:
            dx, dstate0, grads, sq = self._reference_backward(run, dy, dstate)
        else:
            dx, dstate0, grads, sq = self._fast_backward(run, dy, dstate)
        sfx = self._suffix(run["l"], run["d"])
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        for pname, g in zip(names, grads):
            self._parameters[pname + sfx].grad += g
        return dx, dstate0, sq

    def _reference_backward(self, run, dy, dstate):
        x, w, caches = run["x"], run["w"], run["cache"]
        T = x.shape[0]
        tag = self._tap_suffix(run["l"], run["d"])
        grads = [np.zeros_like(a) for a in w]
        dx = np.zeros_like(x)
        sq = {s: np.zeros(T) for s in self.STATE}
        for t in reversed(time_steps(T, run["reverse"])):
            valid = (t < self._lengths)[:, None]
            carried = (dstate[0] + np.where(valid, dy[t], 0),) + dstate[1:]    # dh_t total, dc_t ...

            def tap_grad(name, g, t=t):
                if name in sq:                              # the state gradients: BPTT norms
                    sq[name][t] = np.sum(np.square(g, dtype=np.float64))   # float32 would overflow at 2e19
                return self._tap_grad(name + tag, g, step=t)

            d_in = tuple(np.where(valid, g, 0) for g in carried)
            dx[t], d_prev, step_grads = self._step_backward(d_in, caches[t], w, tap_grad)
            for total, g in zip(grads, step_grads):
                total += g
            dstate = tuple(np.where(valid, new, old) for new, old in zip(d_prev, carried))
        return dx, dstate, grads, sq

    def _fast_backward(self, run, dy, dstate):
        """``_fast_backward_block`` for each block of samples the forward ran (shared among
        the threads there are now); the parameter gradients and BPTT norms summed over the
        blocks in order."""
        w, reverse, blocks = run["w"], run["reverse"], run["cache"]
        if len(blocks) == 1:
            _, x, buffers = blocks[0]
            return self._fast_backward_block(x, w, buffers, dy, dstate, reverse, self._lengths)
        dx = np.empty(run["x"].shape, dy.dtype)
        dstate0 = tuple(np.empty_like(g) for g in dstate)

        def backward_block(block):
            rows, x_b, buffers = block
            dx_b, d0, grads, sq = self._fast_backward_block(
                x_b, w, buffers, np.ascontiguousarray(dy[:, rows]), tuple(g[rows] for g in dstate),
                reverse, self._lengths[rows])
            dx[:, rows] = dx_b
            for whole, part in zip(dstate0, d0):
                whole[rows] = part
            return grads, sq
        sums = on_threads(backward_block, blocks)
        grads = [sum(g) for g in zip(*(grads for grads, _ in sums))]
        sq = {s: sum(block_sq[s] for _, block_sq in sums) for s in self.STATE}
        return dx, dstate0, grads, sq

    def _fast_backward_block(self, x, w, buffers, dy, dstate, reverse, lengths):
        """BPTT through one direction of one layer for a block of samples: ``dx``, the
        initial state's gradient, the parameter gradients and the squared BPTT norms."""
        T, N, I = x.shape
        H = self.hidden_size
        dcarry = tuple(g.copy() for g in dstate)           # carried state gradient, in place
        dgates, dgates_h = self._gate_grad_buffers(T, N, x.dtype)
        seq = {s: np.empty((T, N, H), x.dtype) for s in self.STATE}
        if self._whole_sequence_in_one_call(N):
            self._backward_sequence(reverse, dy, w.W_hh, lengths, buffers, dcarry, seq, dgates, dgates_h)
        else:
            # The kernel runs the elementwise part of step t; the recurrent product, dh_rec =
            # dgates_h[t] @ W_hh (the gradient reaching h_{t-1} through the gates), is left to
            # BLAS and handed to the next step. After step 0 it belongs to the initial state.
            dh_rec = np.zeros((N, H), x.dtype)
            for t in reversed(time_steps(T, reverse)):
                self._backward_step(t, dy, dh_rec, lengths, buffers, dcarry, seq, dgates, dgates_h)
                np.matmul(dgates_h[t], w.W_hh, out=dh_rec)
            dcarry[0][...] += dh_rec
        g_x = dgates.reshape(T * N, -1)
        g_h = dgates_h.reshape(T * N, -1)
        # dW = dgates2d.T @ inputs2d, formed as (inputs2d.T @ dgates2d).T: the operand order
        # in which OpenBLAS runs this tall-skinny product faster.
        # db sums T*N rows: in float64, as a float32 running sum over thousands drifts.
        grads = ((x.reshape(T * N, I).T @ g_x).T, (buffers["h_prev"].reshape(T * N, H).T @ g_h).T,
                 g_x.sum(axis=0, dtype=np.float64).astype(g_x.dtype),
                 g_h.sum(axis=0, dtype=np.float64).astype(g_h.dtype))
        dx = (g_x @ w.W_ih).reshape(T, N, I)
        sq = {s: np.einsum("tnh,tnh->t", v, v, dtype=np.float64) for s, v in seq.items()}
        return dx, dcarry, grads, sq

    def _whole_sequence_in_one_call(self, N):
        return N * self.GATES * self.hidden_size ** 2 <= SEQUENCE_KERNEL_MAX_MACS

    def _gate_grad_buffers(self, T, N, dtype):
        """``(dgates, dgates_h)``: the gate gradients seen by ``W_ih`` and by ``W_hh`` (the
        same array except for the GRU)."""
        dgates = np.empty((T, N, self.GATES * self.hidden_size), dtype)
        return dgates, dgates

    # ------------------------------------------------------------------ the cell (subclasses)
    def _step_forward(self, x_t, state, w, tap):
        """Reference: one step ``(x_t, state tuple) -> (new state tuple, cache)``."""
        raise NotImplementedError

    def _step_backward(self, d_state, cache, w, tap_grad):
        """Reference: ``(dL/dstate_t tuple, cache) -> (dx_t, dL/dstate_{t-1} tuple,
        (dW_ih, dW_hh, db_ih, db_hh))``."""
        raise NotImplementedError

    def _new_buffers(self, T, N, dtype):
        """Fast path: the arrays the forward kernels fill (at least ``y`` and ``h_prev``)."""
        H = self.hidden_size
        return {"y": np.empty((T, N, H), dtype), "h_prev": np.empty((T, N, H), dtype)}

    def _forward_step(self, t, xproj, gh, b_hh, lengths, state, buffers):
        """Fast path: step ``t`` for the whole batch given ``gh = h @ W_hh.T``; updates the
        ``state`` arrays in place and fills ``buffers[...][t]``."""
        raise NotImplementedError

    def _forward_sequence(self, reverse, xproj, W_hh_T, b_hh, lengths, state, buffers):
        """Fast path: every step in one kernel call (tiny products)."""
        raise NotImplementedError

    def _backward_step(self, t, dy, dh_rec, lengths, buffers, dcarry, seq, dgates, dgates_h):
        """Fast path: BPTT through step ``t`` given ``dh_rec`` from the step processed before;
        updates the carried gradients ``dcarry`` in place, fills ``seq[...][t]`` (the BPTT norms'
        ``dL/dh_t``) and the gate gradients at ``t``."""
        raise NotImplementedError

    def _backward_sequence(self, reverse, dy, W_hh, lengths, buffers, dcarry, seq, dgates, dgates_h):
        """Fast path: BPTT through every step in one kernel call (tiny products)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ misc
    def flops(self, input_shape, output_shape):
        """Products counted exactly (2 flops per multiply-add), the cell's elementwise work
        as ``CELL_FLOPS`` per hidden unit and step."""
        N, T = input_shape[0], input_shape[1]
        H, G, D = self.hidden_size, self.GATES, self.num_directions
        total = 0
        for l in range(self.num_layers):
            fan_in = self.input_size if l == 0 else D * H
            total += D * N * T * (2 * G * H * (fan_in + H) + self.CELL_FLOPS * H)
        return total

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for arg, default in (("bias", True), ("bidirectional", False), ("dropout", 0.0),
                             ("return_sequences", True), ("stateful", False)):
            if getattr(self, arg) != default:
                s += f", {arg}={getattr(self, arg)}"
        return s


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
