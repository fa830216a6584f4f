"""RNN, LSTM, GRU: finite differences, fast path = reference, PyTorch equality (packed
sequences included), final-state gradients, truncated BPTT, vanishing gradients, dropout,
reproducibility, bad input."""
import copy

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import layers
import nn
from layers import recurrent

CELLS = ["RNN", "LSTM", "GRU"]
SETTINGS = dict(max_examples=8, deadline=None)


@st.composite
def configs(draw):
    """Tiny layers over every option the driver handles."""
    return dict(num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                bias=draw(st.booleans()), return_sequences=draw(st.booleans()),
                with_state=draw(st.booleans()), with_lengths=draw(st.booleans()),
                N=draw(st.integers(1, 3)), T=draw(st.integers(1, 4)), I=draw(st.integers(1, 3)),
                H=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**16)))


def build(cell, cfg, dtype=np.float64, **extra):
    """The layer, its input and forward kwargs (``state``, ``lengths``) for a config."""
    rng = np.random.default_rng(cfg["seed"])
    layer = getattr(layers, cell)(cfg["I"], cfg["H"], num_layers=cfg["num_layers"], bias=cfg["bias"],
                                  bidirectional=cfg["bidirectional"],
                                  return_sequences=cfg["return_sequences"], rng=rng, dtype=dtype, **extra)
    N, T = cfg["N"], cfg["T"]
    x = rng.standard_normal((N, T, cfg["I"])).astype(dtype)
    kwargs = {}
    if cfg["with_state"]:
        kwargs["state"] = random_state(layer, N, rng)
    if cfg["with_lengths"]:
        kwargs["lengths"] = rng.integers(1, T + 1, N)
    return layer, x, kwargs


def state_shape(layer, N):
    return (layer.num_layers * layer.num_directions, N, layer.hidden_size)


def random_state(layer, N, rng):
    parts = tuple(rng.standard_normal(state_shape(layer, N)).astype(layer.dtype) for _ in layer.STATE)
    return parts if len(parts) == 2 else parts[0]


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def run(layer, x, kwargs, dy, dstate, reference=False):
    """Forward and backward on a copy of ``layer``; everything they produce."""
    layer = copy.deepcopy(layer)
    with nn.use_reference(reference):
        out = layer(x, **kwargs)
        dx = layer.backward(dy, dstate=dstate)
    return dict(out=out, dx=dx, final=as_tuple(layer.final_state),
                initial_grad=as_tuple(layer.initial_state_grad),
                grads={name: p.grad for name, p in layer.named_parameters()},
                norms=layer.grad_norms)


def assert_runs_close(a, b, rtol, atol):
    for key in ("out", "dx"):
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)
    for key in ("final", "initial_grad"):
        for u, v in zip(a[key], b[key]):
            np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=key)
    for name in a["grads"]:
        np.testing.assert_allclose(a["grads"][name], b["grads"][name], rtol=rtol, atol=atol, err_msg=name)
    for name in a["norms"]:
        np.testing.assert_allclose(a["norms"][name], b["norms"][name], rtol=rtol, atol=atol, err_msg=name)


def upstream(layer, x, kwargs, rng):
    """Random ``dy`` for the output and ``dstate`` for the final state."""
    out = copy.deepcopy(layer)(x, **kwargs)
    dy = rng.standard_normal(out.shape).astype(out.dtype)
    return dy, random_state(layer, x.shape[0], rng)


@pytest.fixture(params=["sequence", "step"])
def time_loop(request, monkeypatch):
    """Run the fast path with the whole-sequence kernels or the per-step BLAS loop."""
    limit = 10**9 if request.param == "sequence" else 0
    monkeypatch.setattr(recurrent, "SEQUENCE_KERNEL_MAX_MACS", limit)
    return request.param


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("cell", CELLS)
@settings(**SETTINGS)
@given(cfg=configs(), reference=st.booleans())
def test_gradcheck(cell, cfg, reference):
    layer, x, kwargs = build(cell, cfg)
    with nn.use_reference(reference):
        report = nn.gradcheck(layer, x, forward_kwargs=kwargs)
    assert report.passed, report
    checked = {r.name for r in report.results}
    assert {"input"} | {name for name, _ in layer.named_parameters()} <= checked
    if cfg["with_state"]:
        assert {"state"} <= checked or {"state[0]", "state[1]"} <= checked


def test_gradcheck_relu_rnn_and_intermediates():
    from nn.inspect import check_intermediates
    rng = np.random.default_rng(0)
    layer = layers.RNN(2, 3, num_layers=2, nonlinearity="relu", bidirectional=True, rng=rng, dtype=np.float64)
    x = rng.standard_normal((3, 4, 2))
    kwargs = {"lengths": np.array([4, 1, 3])}
    assert nn.gradcheck(layer, x, forward_kwargs=kwargs).passed
    lstm = layers.LSTM(2, 3, num_layers=2, bidirectional=True, rng=rng, dtype=np.float64)
    kwargs["state"] = random_state(lstm, 3, rng)
    report = check_intermediates(lstm, x, forward_kwargs=kwargs, max_samples=8)
    assert report.passed, report
    assert {"i_l0", "c_l1_reverse", "h_l1"} <= {row.name for row in report.rows}


# ------------------------------------------------------------------ fast path = reference

@pytest.mark.parametrize("cell", CELLS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs(), use_dstate=st.booleans())
def test_fast_equals_reference(cell, cfg, use_dstate, time_loop):
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        layer, x, kwargs = build(cell, cfg, dtype)
        dy, dstate = upstream(layer, x, kwargs, np.random.default_rng(1))
        fast = run(layer, x, kwargs, dy, dstate if use_dstate else None)
        ref = run(layer, x, kwargs, dy, dstate if use_dstate else None, reference=True)
        assert_runs_close(fast, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", CELLS)
def test_fast_equals_reference_large_hidden(cell, time_loop):
    """Sizes where the kernels' vectorized loops and remainders both run (H = 37)."""
    cfg = dict(num_layers=2, bidirectional=True, bias=True, return_sequences=True, with_state=True,
               with_lengths=True, N=5, T=7, I=4, H=37, seed=3)
    layer, x, kwargs = build(cell, cfg, np.float32)
    dy, dstate = upstream(layer, x, kwargs, np.random.default_rng(2))
    assert_runs_close(run(layer, x, kwargs, dy, dstate), run(layer, x, kwargs, dy, dstate, reference=True),
                      rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ blocks of the batch on threads

@pytest.fixture
def blocks(monkeypatch, numba_threads):
    """Two threads, sharing out every batch in blocks of samples however small."""
    numba_threads(2)
    monkeypatch.setattr(recurrent, "MIN_BLOCK_SAMPLES", 1)
    monkeypatch.setattr(recurrent, "MIN_BLOCK_MACS", 1)


BLOCKS_CFG = dict(num_layers=2, bidirectional=True, bias=True, return_sequences=True, with_state=True,
                  with_lengths=True, N=5, T=7, I=4, H=9, seed=4)


@pytest.mark.parametrize("cell", CELLS)
def test_blocks_of_the_batch_on_two_threads_equal_the_reference(cell, time_loop, blocks):
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        layer, x, kwargs = build(cell, BLOCKS_CFG, dtype)
        assert layer._sample_blocks(x.transpose(1, 0, 2)) == [slice(0, 2), slice(2, 5)]
        dy, dstate = upstream(layer, x, kwargs, np.random.default_rng(5))
        fast = run(layer, x, kwargs, dy, dstate)
        assert_runs_close(fast, run(layer, x, kwargs, dy, dstate, reference=True), rtol=tol, atol=tol)
        assert_runs_close(fast, run(layer, x, kwargs, dy, dstate), rtol=0, atol=0)    # same bits twice


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_with_blocks_of_the_batch(cell, blocks):
    layer, x, kwargs = build(cell, {**BLOCKS_CFG, "return_sequences": False})
    report = nn.gradcheck(layer, x, forward_kwargs=kwargs, max_samples=30)
    assert report.passed, report


@pytest.mark.parametrize("cell", CELLS)
def test_blocks_of_the_batch_match_torch_packed_sequences(cell, blocks):
    torch = pytest.importorskip("torch")
    layer, x, kwargs = build(cell, {**BLOCKS_CFG, "return_sequences": False})
    twin = torch_twin(torch, cell, layer)
    dy, dstate = upstream(layer, x, kwargs, np.random.default_rng(7))
    assert_matches_torch(run(layer, x, kwargs, dy, dstate), torch_run(torch, twin, layer, x, kwargs, dy, dstate))


def test_a_batch_is_split_only_where_blocks_pay(numba_threads):
    numba_threads(2)
    lstm, gru = layers.LSTM(28, 128), layers.GRU(1, 6, bidirectional=True)
    assert lstm._sample_blocks(np.empty((28, 64, 28))) == [slice(0, 32), slice(32, 64)]
    assert lstm._sample_blocks(np.empty((28, 20, 28))) == [slice(0, 20)]      # blocks under 16
    assert gru._sample_blocks(np.empty((40, 100, 1))) == [slice(0, 100)]      # 0.5M multiply-adds
    numba.set_num_threads(1)
    assert lstm._sample_blocks(np.empty((28, 64, 28))) == [slice(0, 64)]


# ------------------------------------------------------------------ PyTorch

def torch_twin(torch, cell, layer, from_torch=False):
    """PyTorch's layer with the same weights (copied from ours, or ours from it)."""
    kwargs = dict(num_layers=layer.num_layers, bias=layer.bias, bidirectional=layer.bidirectional,
                  batch_first=True)
    if cell == "RNN":
        kwargs["nonlinearity"] = layer.nonlinearity
    twin = getattr(torch.nn, cell)(layer.input_size, layer.hidden_size, **kwargs).double()
    if from_torch:
        layer.load_state_dict(twin.state_dict())
    else:
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    return twin


def torch_run(torch, twin, layer, x, kwargs, dy, dstate):
    """PyTorch's outputs and gradients for ``L = sum(out * dy) + sum(final_state * dstate)``,
    ``lengths`` through ``pack_padded_sequence(enforce_sorted=False)``."""
    xt = torch.tensor(x, requires_grad=True)
    state = None
    if "state" in kwargs:
        state = tuple(torch.tensor(s, requires_grad=True) for s in as_tuple(kwargs["state"]))
    inp = xt
    lengths = kwargs.get("lengths")
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=True,
                                                      enforce_sorted=False)
    out, final = twin(inp, None if state is None else (state if len(state) == 2 else state[0]))
    if lengths is not None:
        out = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]
    final = as_tuple(final)
    D = layer.num_directions
    if not layer.return_sequences:                      # the last layer's h_n, directions side by side
        out = torch.cat([final[0][-D + d] for d in range(D)], dim=1)
    loss = 0
    if dy is not None:
        loss = loss + (out * torch.tensor(dy)).sum()
    if dstate is not None:
        loss = loss + sum((f * torch.tensor(g)).sum() for f, g in zip(final, as_tuple(dstate)))
    loss.backward()
    return dict(out=out.detach().numpy(), dx=xt.grad.numpy(), final=tuple(f.detach().numpy() for f in final),
                initial_grad=None if state is None else tuple(s.grad.numpy() for s in state),
                grads={name: p.grad.numpy() for name, p in twin.named_parameters()})


def assert_matches_torch(ours, theirs, tol=1e-10):
    for key in ("out", "dx"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=tol, atol=tol, err_msg=key)
    for u, v in zip(ours["final"], theirs["final"]):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol, err_msg="final_state")
    if theirs["initial_grad"] is not None:
        for u, v in zip(ours["initial_grad"], theirs["initial_grad"]):
            np.testing.assert_allclose(u, v, rtol=tol, atol=tol, err_msg="initial_state_grad")
    assert set(ours["grads"]) == set(theirs["grads"])
    for name, g in theirs["grads"].items():
        np.testing.assert_allclose(ours["grads"][name], g, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
@settings(**SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs(), from_torch=st.booleans(), use_dstate=st.booleans(), relu=st.booleans(),
       reference=st.booleans())
def test_matches_torch(cell, cfg, from_torch, use_dstate, relu, reference, time_loop):
    torch = pytest.importorskip("torch")
    extra = {"nonlinearity": "relu"} if cell == "RNN" and relu else {}
    layer, x, kwargs = build(cell, cfg, **extra)
    twin = torch_twin(torch, cell, layer, from_torch)
    dy, dstate = upstream(layer, x, kwargs, np.random.default_rng(5))
    dstate = dstate if use_dstate else None
    assert_matches_torch(run(layer, x, kwargs, dy, dstate, reference),
                         torch_run(torch, twin, layer, x, kwargs, dy, dstate))


@pytest.mark.parametrize("cell", CELLS)
def test_final_state_gradient_alone_matches_torch(cell):
    """``backward(None, dstate)``: a loss on h_n (and c_n) only, as an encoder under a decoder."""
    torch = pytest.importorskip("torch")
    cfg = dict(num_layers=2, bidirectional=True, bias=True, return_sequences=True, with_state=True,
               with_lengths=True, N=4, T=5, I=3, H=4, seed=11)
    layer, x, kwargs = build(cell, cfg)
    twin = torch_twin(torch, cell, layer)
    _, dstate = upstream(layer, x, kwargs, np.random.default_rng(6))
    assert_matches_torch(run(layer, x, kwargs, None, dstate), torch_run(torch, twin, layer, x, kwargs, None, dstate))


@pytest.mark.parametrize("missing", [0, 1])
def test_an_lstm_state_gradient_may_leave_out_h_or_c(missing):
    """``dstate=(dh_n, None)`` (a decoder that reads only h_n) is ``(dh_n, 0)``."""
    layer = layers.LSTM(2, 3, num_layers=2, rng=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 5, 2))
    layer(x)
    given = np.random.default_rng(1).standard_normal((2, 4, 3))
    full = [given, given]
    full[missing] = np.zeros_like(given)
    partial = [given, given]
    partial[missing] = None
    dx_full = layer.backward(None, dstate=tuple(full))
    np.testing.assert_array_equal(layer.backward(None, dstate=tuple(partial)), dx_full)
    with pytest.raises(ValueError, match="got neither dy nor dstate"):
        layer.backward(None, dstate=(None, None))


def test_last_output_reads_each_sequence_like_torch_packed():
    """The reverse half of the last output is the reverse direction at step 0 (torch's h_n),
    the forward half the output at each sequence's last valid step."""
    torch = pytest.importorskip("torch")
    layer = layers.GRU(2, 3, bidirectional=True, return_sequences=False, rng=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 5, 2))
    lengths = np.array([5, 2, 3])
    twin = torch_twin(torch, "GRU", layer)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.as_tensor(lengths),
                                                     batch_first=True, enforce_sorted=False)
    out = torch.nn.utils.rnn.pad_packed_sequence(twin(packed)[0], batch_first=True)[0].detach().numpy()
    last = layer(x, lengths=lengths)
    np.testing.assert_allclose(last[:, :3], out[np.arange(3), lengths - 1, :3], atol=1e-12)
    np.testing.assert_allclose(last[:, 3:], out[:, 0, 3:], atol=1e-12)


# ------------------------------------------------------------------ stateful (truncated BPTT)

@pytest.mark.parametrize("cell", CELLS)
def test_stateful_chunks_continue_the_sequence_and_stop_the_gradient(cell):
    rng = np.random.default_rng(0)
    cls = getattr(layers, cell)
    layer = cls(2, 3, num_layers=2, stateful=True, rng=1, dtype=np.float64)
    whole = cls(2, 3, num_layers=2, rng=2, dtype=np.float64)
    whole.load_state_dict(layer.state_dict())
    x = rng.standard_normal((4, 8, 2))
    y_whole = whole(x)

    y1 = layer(x[:, :5])
    carried = layer.final_state
    y2 = layer(x[:, 5:])
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), y_whole, atol=1e-12)
    for u, v in zip(as_tuple(layer.final_state), as_tuple(whole.final_state)):
        np.testing.assert_allclose(u, v, atol=1e-12)

    # The second chunk's backward is that of a layer started from a constant state.
    dy = rng.standard_normal(y2.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    fixed = copy.deepcopy(whole)
    fixed.zero_grad()
    fixed(x[:, 5:], state=carried)
    np.testing.assert_allclose(dx, fixed.backward(dy), atol=1e-12)
    for (name, p), (_, q) in zip(layer.named_parameters(), fixed.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, atol=1e-12, err_msg=name)
    assert layer.input_gradients() == {}                 # the carried state is not an input

    layer.reset_state()
    np.testing.assert_array_equal(layer(x[:, :5]), y1)
    with pytest.raises(ValueError, match=rf"{cell}: the stateful layer carries a state for a batch of 4, "
                                         r"got a batch of 2; call reset_state\(\)"):
        layer(x[:2, :5])


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_reads_and_puts_back_the_state_of_the_next_call(cell):
    cls = getattr(layers, cell)
    layer = cls(2, 3, stateful=True, rng=1, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 5, 2))
    assert layer.carried_state is None
    layer(x)
    held = layer.carried_state
    for u, v in zip(as_tuple(held), as_tuple(layer.final_state)):
        np.testing.assert_array_equal(u, v)
    after = layer(x)
    layer.carried_state = held                       # back to where the second call started
    np.testing.assert_array_equal(layer(x), after)
    with pytest.raises(ValueError, match=rf"{cell}.carried_state: expected the state h of shape \(1, 4, 3\)"):
        layer.carried_state = tuple(np.zeros((2, 4, 3)) for _ in as_tuple(held)) if cell == "LSTM" \
            else np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match=rf"{cell}.carried_state: only a layer built with stateful=True"):
        cls(2, 3).carried_state = held
    as_tuple(layer.carried_state)[0][...] = 7.0         # a copy: the layer's state stays
    assert not np.any(as_tuple(layer.carried_state)[0] == 7.0)
    with pytest.raises(ValueError, match=rf"{cell}.carried_state: expected the state h of shape \(1, N, 3\)"):
        layer.carried_state = tuple(np.zeros((4, 3)) for _ in as_tuple(held)) if cell == "LSTM" \
            else np.zeros((4, 3))
    layer.astype(np.float32)
    assert all(s.dtype == np.float32 for s in as_tuple(layer.carried_state))   # carried from before astype
    layer.carried_state = held                           # float64: cast to the layer's dtype
    assert as_tuple(layer.carried_state)[0].dtype == np.float32


# ------------------------------------------------------------------ vanishing gradients

def bptt_ratio(cls, seed, x, forget_bias=None):
    """||dL/dh_0|| / ||dL/dh_{T-1}|| for a loss on the last output only."""
    layer = cls(x.shape[2], 32, return_sequences=False, rng=seed, dtype=np.float64)
    if forget_bias is not None:
        H = layer.hidden_size
        layer.bias_ih_l0.data[H:2 * H] = forget_bias
        layer.bias_hh_l0.data[H:2 * H] = 0.0
    y = layer(x)
    layer.backward(np.random.default_rng(1).standard_normal(y.shape))
    norms = layer.grad_norms["h"][0]
    assert norms.shape == (x.shape[1],)
    return norms[0] / norms[-1]


def test_lstm_gradient_vanishes_far_more_slowly_than_tanh_rnn():
    """T = 100, at initialisation (PyTorch's, forget bias as is), geometric mean over 4 seeds.
    Measured: tanh RNN ~1e-25, LSTM ~1e-20. Both vanish at this init, because the forget gate
    starts near sigmoid(0) = 0.5; opening it (forget bias 3, f ~ 0.95) lets the cell carry the
    gradient across all 100 steps (~5e-2), which no setting of the RNN's biases can do."""
    x = np.random.default_rng(0).standard_normal((16, 100, 4))
    seeds = range(4)

    def mean_ratio(cls, **kw):
        return np.exp(np.mean([np.log(bptt_ratio(cls, s, x, **kw)) for s in seeds]))
    rnn, lstm = mean_ratio(layers.RNN), mean_ratio(layers.LSTM)
    assert rnn < 1e-15
    assert lstm > 100 * rnn
    assert mean_ratio(layers.LSTM, forget_bias=3.0) > 1e-3


def test_grad_norms_are_the_norms_of_the_recorded_state_gradients():
    layer = layers.LSTM(2, 3, bidirectional=True, rng=0, dtype=np.float64).record_intermediates()
    x = np.random.default_rng(0).standard_normal((4, 5, 2))
    lengths = np.array([5, 2, 4, 1])
    y = layer(x, lengths=lengths)
    layer.backward(np.ones_like(y))
    for k, tag in enumerate(("_l0", "_l0_reverse")):
        for s in ("h", "c"):
            g = layer.intermediate_grads[s + tag]
            np.testing.assert_allclose(layer.grad_norms[s][k], np.sqrt((g ** 2).sum(axis=(0, 2))), rtol=1e-12)
            assert np.all(g[np.arange(5)[None, :] >= lengths[:, None]] == 0)   # padded steps: zero


@pytest.mark.parametrize("reference", [False, True])
def test_grad_norms_of_exploding_float32_gradients_stay_finite(reference):
    """An exploding gradient's squares pass float32's largest number long before the norm
    does: the norms are summed in float64, as the float64 layer computes them."""
    x = np.abs(np.random.default_rng(0).standard_normal((4, 30, 2)))
    norms = []
    for dtype in (np.float32, np.float64):
        layer = layers.RNN(2, 8, nonlinearity="relu", rng=0, dtype=dtype)
        layer.weight_hh_l0.data[...] = 6 * np.eye(8)
        with nn.use_reference(reference):
            y = layer(x.astype(dtype))
            layer.backward(np.ones_like(y))
        norms.append(layer.grad_norms["h"][0])
    assert norms[0].max() > 1e23                   # squares near 1e46: past float32's 3.4e38
    np.testing.assert_allclose(norms[0], norms[1], rtol=1e-5)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("cls", [layers.RNN, layers.LSTM, layers.GRU])
@pytest.mark.parametrize("N", [1, 3])
def test_padding_is_never_read(cls, N, reference):
    # Like PyTorch's packed sequences: NaN in the padded steps changes no output and no gradient
    # (0 * NaN in dW_ih would), and the caller's array is left as it was.
    x = np.random.default_rng(0).standard_normal((N, 5, 2))
    lengths = np.array([2, 5, 3][:N])
    runs = []
    for pad in (0.0, np.nan):
        xp = x.copy()
        xp[np.arange(5)[None, :] >= lengths[:, None]] = pad
        before = xp.copy()
        layer = cls(2, 3, num_layers=2, bidirectional=True, rng=0, dtype=np.float64)
        with nn.use_reference(reference):
            y = layer(xp, lengths=lengths)
        dx = layer.backward(np.ones_like(y))
        np.testing.assert_array_equal(xp, before)
        runs.append([y, dx, *(p.grad for p in layer.parameters())])
    for clean, nan in zip(*runs):
        np.testing.assert_array_equal(clean, nan)


# ------------------------------------------------------------------ dropout between layers

def test_dropout_between_layers_only_in_training():
    rng = np.random.default_rng(0)
    layer = layers.LSTM(3, 5, num_layers=2, dropout=0.5, rng=1, dtype=np.float64)
    plain = layers.LSTM(3, 5, num_layers=2, rng=2, dtype=np.float64)
    plain.load_state_dict(layer.state_dict())
    x = rng.standard_normal((4, 6, 3))
    assert not np.allclose(layer(x), layer(x))            # a fresh mask each call
    assert nn.gradcheck(layer, x).passed                   # the same mask scales the gradient
    layer.eval()
    np.testing.assert_array_equal(layer(x), plain(x))
    with pytest.warns(UserWarning, match="GRU: dropout=0.5 acts between stacked layers only"):
        one_layer = layers.GRU(3, 5, dropout=0.5, rng=1, dtype=np.float64)   # nothing to drop between
    with pytest.warns(UserWarning, match="RNN: dropout") as caught:
        layers.RNN(3, 5, dropout=0.5)
    assert caught[0].filename == __file__                # the warning names the caller's line
    twin = layers.GRU(3, 5, rng=1, dtype=np.float64)
    np.testing.assert_array_equal(one_layer(x), twin(x))


def test_dropout_of_one_feeds_the_upper_layer_zeros():
    layer = layers.GRU(3, 5, num_layers=2, dropout=1.0, rng=1, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 6, 3))
    out = layer(x)
    upper_alone = layers.GRU(5, 5, rng=2, dtype=np.float64)
    upper_alone.load_state_dict({k.replace("_l1", "_l0"): v for k, v in layer.state_dict().items()
                                 if "_l1" in k})
    np.testing.assert_allclose(out, upper_alone(np.zeros((4, 6, 5))), rtol=1e-12)
    np.testing.assert_array_equal(layer.backward(np.ones_like(out)), 0.0)   # nothing reaches x
    assert np.all(layer.weight_ih_l0.grad == 0) and np.any(layer.weight_hh_l1.grad != 0)


# ------------------------------------------------------------------ reproducibility, misc

@pytest.mark.parametrize("cell", CELLS)
def test_same_bits_twice(cell, time_loop):
    cfg = dict(num_layers=2, bidirectional=True, bias=True, return_sequences=True, with_state=True,
               with_lengths=True, N=6, T=9, I=5, H=40, seed=4)
    first, second = (build(cell, cfg, np.float32) for _ in range(2))
    dy, dstate = upstream(*first, np.random.default_rng(3))
    a, b = run(*first, dy, dstate), run(*second, dy, dstate)
    for key in ("out", "dx"):
        assert np.array_equal(a[key], b[key])
    assert all(np.array_equal(a["grads"][k], b["grads"][k]) for k in a["grads"])
    assert all(np.array_equal(u, v) for u, v in zip(a["initial_grad"], b["initial_grad"]))


def test_parameters_follow_pytorch_names_shapes_and_init():
    lstm = layers.LSTM(3, 4, num_layers=2, bidirectional=True, rng=0)
    names = [name for name, _ in lstm.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert names[4] == "weight_ih_l0_reverse" and len(names) == 16
    assert lstm.weight_ih_l1.shape == (16, 8) and lstm.weight_hh_l1_reverse.shape == (16, 4)
    assert all(np.abs(p.data).max() <= 0.5 for p in lstm.parameters())     # U(-1/sqrt(4), 1/sqrt(4))
    assert lstm.weight_ih_l0.dtype == np.float32
    gru = layers.GRU(3, 4, bias=False, dtype=np.float64)
    assert [n for n, _ in gru.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert gru.weight_hh_l0.shape == (12, 4)


def test_recorded_intermediates_are_named_per_layer_and_direction():
    x = np.random.default_rng(0).standard_normal((2, 3, 2))
    single = layers.GRU(2, 4, rng=0, dtype=np.float64).record_intermediates()
    single.backward(np.ones_like(single(x)))
    assert set(single.intermediates) == {"r", "z", "n", "h"} and single.intermediates["n"].shape == (2, 3, 4)
    assert set(single.intermediate_grads) == {"r", "z", "n", "h"}
    deep = layers.RNN(2, 4, num_layers=2, rng=0, dtype=np.float64).record_intermediates()
    deep(x)
    assert set(deep.intermediates) == {"a_l0", "h_l0", "a_l1", "h_l1"}


def test_flops_and_repr():
    lstm = layers.LSTM(3, 4, num_layers=2, bidirectional=True)
    N, T = 2, 5
    per_layer = [2 * 16 * (3 + 4) + 17 * 4, 2 * 16 * (8 + 4) + 17 * 4]
    assert lstm.flops((N, T, 3), (N, T, 8)) == 2 * N * T * sum(per_layer)
    assert repr(lstm) == "LSTM(3, 4, num_layers=2, bidirectional=True)"


# ------------------------------------------------------------------ bad input

def _lstm():
    return layers.LSTM(3, 4, rng=0)


def _gru():
    return layers.GRU(3, 4, rng=0)


X = np.zeros((2, 5, 3), np.float32)
H0 = np.zeros((1, 2, 4), np.float32)

BAD_CALLS = [
    (lambda: _lstm()(np.zeros((2, 5, 2), np.float32)), ValueError,
     r"LSTM: expected input of shape \(N, T, 3\), got \(2, 5, 2\)"),
    (lambda: _lstm()(np.zeros((5, 3), np.float32)), ValueError,
     r"LSTM: expected input of shape \(N, T, 3\), got \(5, 3\)"),
    (lambda: _lstm()(X.astype(np.float64)), TypeError,
     r"LSTM: expected input of dtype float32 .*got float64"),
    (lambda: _gru()(X.astype(np.int64)), TypeError, r"GRU: expected input of dtype float32 \(the layer's dtype\), got int64"),
    (lambda: _gru()(np.zeros((2, 0, 3), np.float32)), ValueError,
     r"GRU: expected at least one sequence and one step"),
    (lambda: _gru()(X, lengths=np.array([5, 0])), ValueError,
     r"GRU: expected every length in \[1, 5\] .*got values from 0 to 5"),
    (lambda: _gru()(X, lengths=np.array([6, 2])), ValueError,
     r"GRU: expected every length in \[1, 5\] .*from 2 to 6"),
    (lambda: _gru()(X, lengths=np.array([5, 2, 1])), ValueError,
     r"GRU: expected lengths of shape \(2,\) .*got \(3,\)"),
    (lambda: _gru()(X, lengths=np.array([5.0, 2.0])), TypeError,
     r"GRU: expected lengths to be integers, shape \(2,\), got dtype float64"),
    (lambda: _lstm()(X, state=H0), TypeError,
     r"LSTM: expected state to be a pair \(h, c\) of arrays of shape \(1, 2, 4\), got an array of shape \(1, 2, 4\)"),
    (lambda: _gru()(X, state=(H0, H0)), TypeError,
     r"GRU: expected state to be an array h of shape \(1, 2, 4\), got a tuple of 2"),
    (lambda: _lstm()(X, state=(H0, np.zeros((1, 3, 4), np.float32))), ValueError,
     r"LSTM: expected state c of shape \(1, 2, 4\) .*got \(1, 3, 4\)"),
    (lambda: _gru()(X, state=H0.astype(np.float64)), TypeError, r"GRU: expected state h of dtype float32"),
    (lambda: layers.GRU(3, 0), ValueError, r"GRU: expected hidden_size to be a positive int, got 0"),
    (lambda: layers.LSTM(3, 4, dropout=1.5), ValueError, r"LSTM: expected dropout in \[0.0, 1.0\], got 1.5"),
    (lambda: layers.RNN(3, 4, dropout="0.5"), TypeError, r"RNN: expected dropout to be a number, got '0.5'"),
    (lambda: layers.GRU(3, 4, dropout=False), TypeError, r"GRU: expected dropout to be a number, got False"),
    (lambda: layers.GRU(3, 4, bidirectional=True, stateful=True), ValueError,
     r"GRU: stateful=True carries .* a bidirectional layer cannot be stateful"),
    (lambda: layers.RNN(3, 4, nonlinearity="sigmoid"), ValueError,
     r"RNN: expected nonlinearity 'tanh' or 'relu', got 'sigmoid'"),
    (lambda: _lstm().backward(np.zeros((2, 5, 4), np.float32)), ValueError,
     r"LSTM.backward called before forward"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_backward_arguments():
    lstm = _lstm()
    y = lstm(X)
    with pytest.raises(ValueError, match=r"LSTM.backward: expected dy of shape \(2, 5, 4\)"):
        lstm.backward(y[:, :3])
    with pytest.raises(ValueError, match=r"LSTM.backward: got neither dy nor dstate"):
        lstm.backward(None)
    with pytest.raises(ValueError, match=r"LSTM.backward: expected dstate h of shape \(1, 2, 4\)"):
        lstm.backward(y, dstate=(np.zeros((2, 2, 4), np.float32), H0))


def test_a_refused_state_leaves_the_last_forward_as_it_was():
    gru = _gru()
    y = gru(X)
    with pytest.raises(ValueError, match="expected state h of shape"):
        gru(X, state=np.zeros((1, 5, 4), np.float32))
    gru.backward(np.ones_like(y))
    assert gru.input_gradients() == {}                   # the forward that ran had no state


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("shape", [(1, 4, 2), (3, 1, 2)])
def test_editing_the_output_does_not_change_the_gradients(cell, reference, shape):
    """The output is the caller's: even when ``N`` or ``T`` is 1 (where the time-major
    output transposed is already contiguous), it shares no memory with backward's cache."""
    x = np.random.default_rng(0).standard_normal(shape)
    dy = np.ones(shape[:2] + (3,))
    layer = getattr(layers, cell)(2, 3, rng=0, dtype=np.float64)
    with nn.use_reference(reference):
        layer(x)
    expected = layer.backward(dy)
    with nn.use_reference(reference):
        y = layer(x)
    y *= 0.0
    np.testing.assert_array_equal(layer.backward(dy), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_exp_sigmoid_tanh_match_numpy(dtype):
    from numba import njit
    from layers.kernels.recurrent import exp, sigmoid, tanh

    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[0, i], out[1, i], out[2, i] = exp(x[i]), sigmoid(x[i]), tanh(x[i])
    x = np.concatenate([np.linspace(-100, 100, 20001), np.geomspace(1e-30, 1, 301),
                        -np.geomspace(1e-30, 1, 301), [0.0, 1e4, -1e4]]).astype(dtype)
    out = np.empty((3, x.size), dtype)
    apply(x, out)
    x64 = x.astype(np.float64)
    ulp = np.finfo(dtype).eps
    small = np.abs(x64) < 80                                # where exp is finite in float32
    np.testing.assert_allclose(out[0][small], np.exp(x64[small]), rtol=2 * ulp, atol=0)
    with np.errstate(over="ignore"):                        # exp(1e4) = inf: sigmoid 0
        expected_sigmoid = 1 / (1 + np.exp(-x64))
    np.testing.assert_allclose(out[1], expected_sigmoid, rtol=4 * ulp, atol=1e-38)
    np.testing.assert_allclose(out[2], np.tanh(x64), rtol=4 * ulp, atol=0)
    far = np.abs(x64) > 1000                                # saturated exactly, as NumPy's
    assert (out[0][far] == np.where(x64[far] > 0, np.inf, 0)).all()
    assert (out[1][far] == (x64[far] > 0)).all() and (out[2][far] == np.sign(x64[far])).all()


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_tiny_activations_agree_with_the_reference_in_relative_terms(cell):
    """Pre-activations near 1e-4: where ``tanh`` is small the fast path keeps its relative
    precision (``1 - 2/(1 + e^2x)`` alone would be ~1e-3 off there in float32)."""
    x = 1e-4 * np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    layer = getattr(layers, cell)(4, 6, rng=0)
    for p in layer.parameters():
        p.data[...] *= 1e-2
    outputs = []
    for reference in (False, True):
        with nn.use_reference(reference):
            outputs.append(layer(x))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=0)


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_an_infinite_input_gives_the_same_nan_and_inf_on_both_paths(cell):
    x = np.random.default_rng(0).standard_normal((2, 3, 6)).astype(np.float32)
    x[0, 0, 1] = np.inf
    results = []
    for reference in (False, True):
        layer = getattr(layers, cell)(6, 4, rng=0)
        with nn.use_reference(reference), np.errstate(invalid="ignore"):
            y = layer(x)
            dx = layer.backward(np.ones_like(y))
        results.append([y, dx] + [p.grad for p in layer.parameters()])
    for fast, ref in zip(*results):
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
        np.testing.assert_array_equal(np.isposinf(fast), np.isposinf(ref))
        finite = np.isfinite(ref)
        np.testing.assert_allclose(fast[finite], ref[finite], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reference", [False, True])
def test_a_relu_rnn_passes_the_gradient_through_a_nan_as_torch(reference):
    """ReLU's derivative at a NaN pre-activation is 1 in PyTorch's threshold_backward (NaN <= 0
    is false): the steps before the NaN get a finite gradient, the same in both."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer = layers.RNN(2, 3, nonlinearity="relu", rng=0, dtype=np.float64)
    twin = torch.nn.RNN(2, 3, nonlinearity="relu", batch_first=True).double()
    layer.load_state_dict(twin.state_dict())
    x, dy = rng.standard_normal((2, 6, 2)), rng.standard_normal((2, 6, 3))
    x[0, 4, 0] = np.nan
    xt = torch.from_numpy(x).requires_grad_()
    twin(xt)[0].backward(torch.from_numpy(dy))
    with nn.use_reference(reference):
        layer(x)
        dx = layer.backward(dy)
    np.testing.assert_allclose(dx[:, :4], xt.grad.numpy()[:, :4], rtol=1e-10)
