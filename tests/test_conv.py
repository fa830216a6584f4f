"""Conv2D and Conv1D: finite differences, fast path == reference, PyTorch equality,
determinism and bad input."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import layers
import nn
from nn.inspect import check_intermediates


@st.composite
def conv_configs(draw):
    """A random convolution that fits its input: 1-D or 2-D, odd sizes, stride 1-3,
    dilation 1-3, groups 1/2/4, padding an int, a tuple, 'same' or 'valid'."""
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2, 4]))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = (1,) * dims if kind == "same" else tuple(draw(st.integers(1, 3)) for _ in range(dims))
    pads = tuple(draw(st.integers(0, 4)) for _ in range(dims))     # may be wider than x
    if kind == "int":
        padding, before = pads[0], (pads[0],) * dims
    elif kind == "tuple":
        padding, before = pads, pads
    else:
        padding, before = kind, (0,) * dims
    sizes = tuple(max(1, d * (k - 1) + 1 - 2 * p + draw(st.integers(0, 5)))
                  for k, d, p in zip(kernel, dilation, before))
    return dict(dims=dims, N=draw(st.integers(1, 3)), C=groups * draw(st.integers(1, 2)),
                O=groups * draw(st.integers(1, 2)), kernel=kernel if dims == 2 else kernel[0],
                stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), sizes=sizes)


def make_conv(cfg, dtype=np.float64, seed=0):
    cls = layers.Conv2D if cfg["dims"] == 2 else layers.Conv1D
    layer = cls(cfg["C"], cfg["O"], cfg["kernel"], stride=cfg["stride"], padding=cfg["padding"],
                dilation=cfg["dilation"], groups=cfg["groups"], bias=cfg["bias"], rng=seed, dtype=dtype)
    if layer.bias is not None:                      # non-zero biases of either sign
        layer.bias.data[:] = np.random.default_rng(seed + 1).standard_normal(cfg["O"])
    x = np.random.default_rng(seed + 2).standard_normal((cfg["N"], cfg["C"]) + cfg["sizes"]).astype(dtype)
    return layer, x


def run(layer, x, dy=None, reference=False):
    """Forward and backward on one path: ``[z, dx, *parameter grads]`` (and ``dy`` used)."""
    layer.zero_grad()
    with nn.use_reference(reference):
        z = layer(x)
    if dy is None:
        dy = np.random.default_rng(7).standard_normal(z.shape).astype(z.dtype)
    dx = layer.backward(dy)
    return [z, dx] + [p.grad.copy() for p in layer.parameters()], dy


def assert_close(actual, expected, rtol):
    for a, b in zip(actual, expected):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


CONFIGS = [
    dict(dims=2, N=2, C=4, O=6, kernel=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1),
         groups=2, bias=True, sizes=(7, 6)),
    dict(dims=2, N=2, C=3, O=2, kernel=3, stride=(1, 1), padding="same", dilation=(1, 1),
         groups=1, bias=False, sizes=(5, 4)),
    dict(dims=1, N=3, C=4, O=4, kernel=4, stride=(1,), padding="same", dilation=(2,),
         groups=4, bias=True, sizes=(9,)),
    dict(dims=1, N=2, C=2, O=3, kernel=3, stride=(3,), padding=1, dilation=(1,),
         groups=1, bias=True, sizes=(10,)),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_gradcheck(cfg):
    layer, x = make_conv(cfg)
    report = nn.gradcheck(layer, x)
    assert report.passed, report


@pytest.mark.parametrize("cfg", CONFIGS[:3:2])
def test_intermediates_gradcheck(cfg):
    layer, x = make_conv(cfg)
    report = check_intermediates(layer, x)
    assert report.passed, report
    layer.record_intermediates()
    z = layer(x)
    assert set(layer.intermediates) == {"cols", "z"}
    np.testing.assert_array_equal(layer.intermediates["z"], z)


@settings(max_examples=30, deadline=None)
@given(conv_configs(), st.sampled_from([np.float32, np.float64]))
def test_fast_equals_reference(cfg, dtype):
    layer, x = make_conv(cfg, dtype)
    fast, dy = run(layer, x)
    reference, _ = run(layer, x, dy, reference=True)
    assert_close(fast, reference, 1e-5 if dtype == np.float32 else 1e-10)


# Stride 1 with the width kept: every tap a shifted plane (the kernels' long masked copies).
SHIFTED = [
    dict(dims=2, N=2, C=2, O=2, kernel=5, stride=(1, 1), padding=2, dilation=(1, 1),
         groups=1, bias=True, sizes=(6, 7)),
    dict(dims=2, N=1, C=2, O=2, kernel=(2, 4), stride=(1, 1), padding="same", dilation=(2, 1),
         groups=2, bias=True, sizes=(5, 6)),
    dict(dims=2, N=3, C=1, O=1, kernel=3, stride=(1, 1), padding=(0, 2), dilation=(1, 2),
         groups=1, bias=False, sizes=(4, 5)),
]


@pytest.mark.parametrize("serial_below", [0, 1 << 62])          # the parallel loops, the serial
@pytest.mark.parametrize("cfg", CONFIGS + SHIFTED)
def test_kernels_keep_non_finite_values_out_of_the_padding(cfg, serial_below, monkeypatch,
                                                           numba_threads):
    """The padding is zero even where the kernels' shifted copies read a neighbouring row's
    NaN or inf, and gradient on padding entries is dropped even when it is NaN: the kernels
    equal the reference ``im2col`` and ``col2im`` exactly."""
    monkeypatch.setattr(layers.kernels.conv, "SERIAL_BELOW", serial_below)
    numba_threads(2)
    layer, x = make_conv(cfg)
    x4 = x if cfg["dims"] == 2 else x[:, :, None, :]
    x4 = x4.copy()
    x4[..., 0], x4[..., -1] = np.nan, np.inf                # every row's edges
    geom, args = layer.geometry, layer._kernel_args()
    OH, OW = geom.output_size(*x4.shape[2:])
    cols = np.empty((x4.shape[1] * np.prod(geom.kernel), x4.shape[0] * OH * OW))
    layers.kernels.conv.im2col(x4, *args, OH, OW, cols)
    np.testing.assert_array_equal(cols, layers.conv.im2col(x4, geom))

    inside = layers.conv.im2col(np.ones_like(x4), geom) == 1
    dcols = np.where(inside, np.random.default_rng(3).standard_normal(cols.shape), np.nan)
    dx = np.empty_like(x4)
    layers.kernels.conv.col2im(dcols, *args, OH, OW, dx)
    np.testing.assert_allclose(dx, layers.conv.col2im(dcols, x4.shape, geom), rtol=1e-12, atol=1e-12)
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("serial_below", [0, 1 << 62])
def test_im2col_writes_inside_cols_only(serial_below, monkeypatch, numba_threads):
    """A filter tap left of the input for every window (padding wider than the input,
    dilation 4) is a row of zeros, and not one element more: the kernel writes nothing past
    its row, past ``cols``, or, split among threads, into another thread's rows."""
    monkeypatch.setattr(layers.kernels.conv, "SERIAL_BELOW", serial_below)
    numba_threads(2)
    layer = layers.Conv2D(2, 2, (1, 4), stride=(3, 1), padding=(0, 6), dilation=(3, 4), dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 1))
    geom, args = layer.geometry, layer._kernel_args()
    OH, OW = geom.output_size(*x.shape[2:])
    rows, P = 2 * 4, OH * OW
    memory = np.full(rows * P + 8, 7.0)                   # cols, then 8 guard values
    cols = memory[:rows * P].reshape(rows, P)
    layers.kernels.conv.im2col(x, *args, OH, OW, cols)
    np.testing.assert_array_equal(cols, layers.conv.im2col(x, geom))
    np.testing.assert_array_equal(memory[rows * P:], 7.0)


# (CHUNK_BYTES, SERIAL_BELOW, numba threads) -> (im2col and col2im split among threads, chunks
# shared among threads): one sample per chunk, shared by two threads, whose kernels run whole
# even where SERIAL_BELOW would split them; one chunk on two threads: the kernels split; the
# same input small: whole; one thread: whole.
@pytest.mark.parametrize("chunk_bytes, serial_below, threads, parallel, shared", [
    (1, 0, 2, False, True), (1 << 62, 0, 2, True, False), (1 << 62, 1 << 62, 2, False, False),
    (1, 0, 1, False, False)])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_fast_path_in_chunks_equals_reference(cfg, chunk_bytes, serial_below, threads, parallel,
                                              shared, monkeypatch, numba_threads):
    monkeypatch.setattr(layers.conv, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(layers.kernels.conv, "SERIAL_BELOW", serial_below)
    numba_threads(threads)
    calls, callers = [], set()
    share = layers.kernels.conv.share_chunks
    monkeypatch.setattr(layers.kernels.conv, "share_chunks",
                        lambda work, ranges: calls.append(len(ranges)) or share(work, ranges))
    im2col = layers.kernels.conv.im2col
    monkeypatch.setattr(layers.kernels.conv, "im2col",
                        lambda *args: callers.add(threading.get_ident()) or im2col(*args))
    layer, x = make_conv(cfg)
    fast, dy = run(layer, x)
    reference, _ = run(layer, x, dy, reference=True)
    assert_close(fast, reference, 1e-10)
    assert calls == ([2, 2, 2] if parallel else [])     # im2col in forward and backward, col2im
    assert threading.get_ident() in callers and len(callers) == (2 if shared else 1)
    assert {thread for _, thread in layer._scratch_buffers} == ({0, 1} if shared else {0})


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("N", [1, 2, 5, 64, 200])
@pytest.mark.parametrize("chunk_bytes", [1, 5000, 1536 << 10, 1 << 62])
def test_chunks_cover_the_batch_within_chunk_bytes(N, chunk_bytes, threads, monkeypatch,
                                                   numba_threads):
    monkeypatch.setattr(layers.conv, "CHUNK_BYTES", chunk_bytes)
    numba_threads(threads)
    layer = layers.Conv2D(3, 4, 3)
    per_sample = 3 * 9 * 100 * 4                       # cols bytes of a sample, P = 100, float32
    chunks = layer._chunks(N, 100, np.dtype(np.float32))
    starts, stops = zip(*chunks)
    assert starts[0] == 0 and stops[-1] == N and list(starts[1:]) == list(stops[:-1])
    sizes = [n1 - n0 for n0, n1 in chunks]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert max(sizes) == 1 or max(sizes) * per_sample <= chunk_bytes
    if len(chunks) > 1 and len(chunks) < N:
        assert len(chunks) % threads == 0


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=40, deadline=None)
@given(conv_configs())
def test_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    layer, x = make_conv(cfg)
    cls = torch.nn.Conv2d if cfg["dims"] == 2 else torch.nn.Conv1d
    twin = cls(cfg["C"], cfg["O"], cfg["kernel"], stride=cfg["stride"], padding=cfg["padding"],
               dilation=cfg["dilation"], groups=cfg["groups"], bias=cfg["bias"]).double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    ours, dy = run(layer, x)
    xt = torch.from_numpy(x).requires_grad_(True)
    zt = twin(xt)
    zt.backward(torch.from_numpy(dy))
    theirs = [zt.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in twin.parameters()]
    assert_close(ours, theirs, 1e-10)


def test_float32_matches_torch():
    torch = pytest.importorskip("torch")
    layer = layers.Conv2D(8, 16, 3, stride=2, padding=1, groups=2, rng=0)
    x = np.random.default_rng(0).standard_normal((4, 8, 15, 13)).astype(np.float32)
    twin = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    ours, dy = run(layer, x)
    xt = torch.from_numpy(x).requires_grad_(True)
    zt = twin(xt)
    zt.backward(torch.from_numpy(dy))
    assert_close(ours, [zt.detach().numpy(), xt.grad.numpy(), twin.weight.grad.numpy(),
                        twin.bias.grad.numpy()], 1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_same_bits_twice(threads, monkeypatch, numba_threads):
    monkeypatch.setattr(layers.conv, "CHUNK_BYTES", 1)          # one sample per chunk
    numba_threads(threads)
    results = []
    for _ in range(2):
        layer = layers.Conv2D(3, 8, 3, padding=1, rng=np.random.default_rng(5))
        x = np.random.default_rng(6).standard_normal((16, 3, 12, 11)).astype(np.float32)
        results.append(run(layer, x)[0] + run(layer, x)[0])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_backward_adds_into_grad():
    layer, x = make_conv(CONFIGS[0])
    (z, dx, dW, db), dy = run(layer, x)
    layer.backward(dy)                               # a second backward of the same forward
    np.testing.assert_allclose(layer.weight.grad, 2 * dW)
    np.testing.assert_allclose(layer.bias.grad, 2 * db)


def test_state_dict_flops_repr():
    conv = layers.Conv2D(4, 8, (3, 5), groups=2)
    assert {k: v.shape for k, v in conv.state_dict().items()} == {"weight": (8, 2, 3, 5), "bias": (8,)}
    conv1 = layers.Conv1D(4, 6, 3, bias=False)
    assert {k: v.shape for k, v in conv1.state_dict().items()} == {"weight": (6, 4, 3)}
    bound = 1 / np.sqrt(2 * 3 * 5)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    first = layers.Conv2D(1, 32, 3, padding=1)
    assert first.flops((64, 1, 28, 28), (64, 32, 28, 28)) == 64 * 32 * 784 * 2 * 9
    assert repr(first) == "Conv2D(1, 32, kernel_size=(3, 3), padding=1)"
    assert repr(layers.Conv1D(2, 4, 5, stride=2, padding=2, dilation=2, groups=2, bias=False)) == \
        "Conv1D(2, 4, kernel_size=5, stride=2, padding=2, dilation=2, groups=2, bias=False)"


def test_astype_float64():
    layer = layers.Conv2D(2, 3, 3, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    layer(x.astype(np.float32))
    z = layer.astype(np.float64)(x)
    assert z.dtype == np.float64 and layer.backward(np.ones_like(z)).dtype == np.float64


@pytest.mark.parametrize("make, x, error, message", [
    (lambda: layers.Conv2D(3, 4, 3), np.zeros((2, 2, 5, 5), np.float32), ValueError,
     r"Conv2D: expected input of shape \(N, 3, H, W\), got \(2, 2, 5, 5\)"),
    (lambda: layers.Conv2D(3, 4, 3), np.zeros((2, 3, 5), np.float32), ValueError,
     r"Conv2D: expected input of shape \(N, 3, H, W\), got \(2, 3, 5\)"),
    (lambda: layers.Conv1D(3, 4, 3), np.zeros((2, 3, 5, 5), np.float32), ValueError,
     r"Conv1D: expected input of shape \(N, 3, L\), got \(2, 3, 5, 5\)"),
    (lambda: layers.Conv2D(1, 1, 5, padding=1), np.zeros((1, 1, 2, 9), np.float32), ValueError,
     r"Conv2D: expected a padded input of spatial size at least \(5, 5\) \(the dilated kernel\), "
     r"got input \(1, 1, 2, 9\) padded to \(4, 11\)"),
    (lambda: layers.Conv1D(1, 1, 3, dilation=3), np.zeros((1, 1, 6), np.float32), ValueError,
     r"Conv1D: expected a padded input of spatial size at least \(7,\) .* got input \(1, 1, 6\)"),
    (lambda: layers.Conv2D(3, 4, 3), np.zeros((2, 3, 5, 5)), TypeError,
     r"Conv2D: expected input of dtype float32 \(the layer's dtype\), got float64"),
    (lambda: layers.Conv2D(3, 4, 3), np.zeros((2, 3, 5, 5), np.int64), TypeError,
     r"Conv2D: expected input of dtype float32 \(the layer's dtype\), got int64"),
    (lambda: layers.Conv1D(2, 3, 3, padding=2), np.zeros((4, 2, 0), np.float32), ValueError,
     r"Conv1D: expected an input with a non-empty spatial size, got \(4, 2, 0\)"),   # padding alone would fit
    (lambda: layers.Conv2D(2, 3, 1, padding=1), np.zeros((1, 2, 5, 0), np.float32), ValueError,
     r"Conv2D: expected an input with a non-empty spatial size, got \(1, 2, 5, 0\)"),
])
def test_bad_input(make, x, error, message):
    with pytest.raises(error, match=message):
        make()(x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2),
     r"Conv2D: groups=2 must divide in_channels=3 and out_channels=4"),
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=4),
     r"Conv2D: groups=4 must divide in_channels=4 and out_channels=6"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, stride=2, padding="same"),
     r"Conv2D: padding='same' needs stride 1, got stride \(2, 2\)"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, padding="full"),
     r"Conv2D: expected padding to be an int, a tuple, 'same' or 'valid', got 'full'"),
    (dict(in_channels=1, out_channels=1, kernel_size=(3, 3, 3)),
     r"Conv2D: expected kernel_size to be an int or a tuple of 2 ints, got \(3, 3, 3\)"),
    (dict(in_channels=1, out_channels=1, kernel_size=0),
     r"Conv2D: expected kernel_size, stride and dilation >= 1"),
    (dict(in_channels=-3, out_channels=4, kernel_size=3),
     r"Conv2D: expected in_channels to be a positive int, got -3"),
    (dict(in_channels=3, out_channels=0, kernel_size=3),
     r"Conv2D: expected out_channels to be a positive int, got 0"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, groups=0),
     r"Conv2D: expected groups to be a positive int, got 0"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        layers.Conv2D(**kwargs)


def test_backward_checks_dy():
    layer = layers.Conv2D(1, 2, 3)
    with pytest.raises(ValueError, match="Conv2D.backward called before forward"):
        layer.backward(np.zeros((1, 2, 3, 3), np.float32))
    layer(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D.backward: expected dy of shape \(1, 2, 3, 3\)"):
        layer.backward(np.zeros((1, 2, 5, 5), np.float32))
